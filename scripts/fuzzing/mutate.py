"""Mutation of capture files for the fuzz campaigns (tests/test_fuzz.py, scripts/fuzz).

Owns the ways a seed capture is damaged. Each mutant is the seed (gunzipped
first when it is gzip) with one to three of these applied:
- bit flips anywhere;
- truncation at any byte;
- huge length fields: a pcap record's captured length, a pcapng block's total
  length, a Content-Length or chunk size, four random aligned bytes;
- records duplicated, removed or swapped (classic pcap and pcapng);
- damage inside auth tokens: base64 characters replaced, deleted or doubled,
  junk appended, the token split by a space, padding moved.
Invariant: deterministic for a given seed and `random.Random` state (a failing
mutant is rebuilt from its seed file, seed number and index alone), and
bounded: a mutant is at most a few times its seed's size.
"""

from __future__ import annotations

import gzip
import random
import re
import struct
import zlib
from collections.abc import Callable, Iterator

MAX_SEED = 4 * 1024 * 1024
_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_TOKEN = re.compile(rb"(?:NTLM|Negotiate|Basic|Bearer|Kerberos) ([A-Za-z0-9+/=_.\-]{8,})")
_DIGEST_VALUE = re.compile(rb'(?:response|nonce|username)="([^"\r\n]{1,200})"')
_LENGTH_TEXT = re.compile(rb"Content-Length: *([0-9]{1,12})|\r\n([0-9a-fA-F]{1,8})\r\n")
_HUGE_32 = (0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0x00FFFFFF, 0x00010001)


def unwrap(seed: bytes) -> bytes:
    """The capture inside a gzip seed (bounded), or the seed itself."""
    if seed[:2] != b"\x1f\x8b":
        return seed
    try:
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return decompressor.decompress(seed, MAX_SEED) or seed
    except zlib.error:
        return seed


# -- records ----------------------------------------------------------------------


def pcap_records(data: bytes) -> tuple[str, list[tuple[int, int]]] | None:
    """Byte order and (start, end) of each record of a classic pcap, or None."""
    if len(data) < 24:
        return None
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        order = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        order = ">"
    else:
        return None
    records = []
    pos = 24
    while pos + 16 <= len(data) and len(records) < 100_000:
        (captured,) = struct.unpack_from(order + "I", data, pos + 8)
        end = pos + 16 + captured
        if end > len(data):
            break
        records.append((pos, end))
        pos = end
    return order, records


def pcapng_blocks(data: bytes) -> tuple[str, list[tuple[int, int]]] | None:
    """Byte order and (start, end) of each block of a pcapng file, or None."""
    if len(data) < 28 or data[:4] != b"\x0a\x0d\x0d\x0a":
        return None
    order = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    blocks = []
    pos = 0
    while pos + 12 <= len(data) and len(blocks) < 100_000:
        (length,) = struct.unpack_from(order + "I", data, pos + 4)
        if length < 12 or pos + length > len(data):
            break
        blocks.append((pos, pos + length))
        pos += length
    return order, blocks


def _units(data: bytes) -> tuple[str, list[tuple[int, int]], int] | None:
    """(byte order, records or blocks, offset of the length field in one)."""
    found = pcap_records(data)
    if found is not None:
        return found[0], found[1], 8
    found = pcapng_blocks(data)
    if found is not None:
        # The section header block stays: without it nothing is read at all.
        return found[0], found[1][1:], 4
    return None


# -- operators --------------------------------------------------------------------


def bit_flips(data: bytearray, rng: random.Random) -> str:
    count = rng.randint(1, 8)
    for _ in range(count):
        position = rng.randrange(len(data))
        data[position] ^= 1 << rng.randrange(8)
    return f"flip{count}"


def truncate(data: bytearray, rng: random.Random) -> str:
    cut = rng.randrange(len(data))
    del data[cut:]
    return f"cut@{cut}"


def huge_length(data: bytearray, rng: random.Random) -> str:
    units = _units(bytes(data))
    choice = rng.random()
    if units is not None and units[1] and choice < 0.5:
        order, spans, offset = units
        start, _end = rng.choice(spans)
        value = rng.choice(_HUGE_32 + (_end - start + rng.randint(1, 4096),))
        struct.pack_into(order + "I", data, start + offset, value & 0xFFFFFFFF)
        return f"reclen@{start}={value:#x}"
    texts = list(_LENGTH_TEXT.finditer(data))
    if texts and choice < 0.8:
        match = rng.choice(texts)
        group = 1 if match.group(1) is not None else 2
        start, end = match.span(group)
        value = rng.choice((b"999999999999", b"18446744073709551616", b"fffffff", b"-1", b"0"))
        data[start:end] = value
        return f"textlen@{start}"
    if len(data) >= 8:
        position = rng.randrange(0, len(data) - 4) & ~3
        data[position : position + 4] = struct.pack("<I", rng.choice(_HUGE_32))
        return f"word@{position}"
    return "none"


def shuffle_records(data: bytearray, rng: random.Random) -> str:
    units = _units(bytes(data))
    if units is None or len(units[1]) < 2:
        return bit_flips(data, rng)
    _order, spans, _offset = units
    index = rng.randrange(len(spans))
    start, end = spans[index]
    piece = bytes(data[start:end])
    action = rng.choice(("duplicate", "remove", "swap"))
    if action == "duplicate":
        times = rng.choice((1, 2, 50))
        data[end:end] = piece * times
    elif action == "remove":
        del data[start:end]
    else:
        other_start, other_end = spans[(index + 1) % len(spans)]
        if other_start < start:
            return f"keep@{index}"
        other = bytes(data[other_start:other_end])
        data[start:other_end] = other + bytes(data[end:other_start]) + piece
    return f"{action}@{index}"


def damage_token(data: bytearray, rng: random.Random) -> str:
    tokens = list(_TOKEN.finditer(data)) + list(_DIGEST_VALUE.finditer(data))
    if not tokens:
        return bit_flips(data, rng)
    match = rng.choice(tokens)
    start, end = match.span(1)
    position = rng.randrange(start, end)
    action = rng.choice(("replace", "delete", "double", "junk", "split", "pad", "nul"))
    if action == "replace":
        data[position] = rng.choice(_B64)
    elif action == "delete":
        del data[position]
    elif action == "double":
        data[position:position] = data[position : position + 1]
    elif action == "junk":
        data[end:end] = b"==x\x1b[2J junk"
    elif action == "split":
        data[position:position] = b" "
    elif action == "pad":
        data[position:position] = b"=="
    else:
        data[position] = 0
    return f"token-{action}@{position}"


OPERATORS: tuple[Callable[[bytearray, random.Random], str], ...] = (
    bit_flips,
    truncate,
    huge_length,
    shuffle_records,
    damage_token,
    damage_token,  # the auth layer is what this tool is about: twice the weight
)


def mutants(seed: bytes, rng: random.Random, count: int) -> Iterator[tuple[str, bytes]]:
    """`count` mutants of `seed`: (what was done, the bytes)."""
    inner = unwrap(seed[: MAX_SEED * 4])[:MAX_SEED]
    if not inner:
        return
    for _ in range(count):
        data = bytearray(inner)
        steps = []
        for _ in range(rng.choice((1, 1, 2, 3))):
            if not data:
                break
            steps.append(rng.choice(OPERATORS)(data, rng))
        out = bytes(data)
        if seed[:2] == b"\x1f\x8b" and rng.random() < 0.3:
            out = gzip.compress(out, mtime=0)
            steps.append("gzip")
        yield "+".join(steps), out


def secrets_of(seed: bytes) -> list[bytes]:
    """What of the seed must never be printed: auth tokens as written (a
    24-byte window of each), Basic passwords, Digest responses."""
    import base64
    import binascii

    data = unwrap(seed)
    found: list[bytes] = []
    for match in _TOKEN.finditer(data):
        token = match.group(1)
        if len(token) >= 24:
            middle = len(token) // 2
            found.append(token[max(0, middle - 12) : middle + 12])
        if match.group(0).startswith(b"Basic "):
            try:
                decoded = base64.b64decode(token + b"==", validate=False)
            except (binascii.Error, ValueError):
                continue
            _user, colon, password = decoded.partition(b":")
            secret = password if colon else decoded
            if len(secret) >= 6:
                found.append(secret)
    for match in re.finditer(rb'response="([0-9a-fA-F]{16,})"', data):
        found.append(match.group(1)[:16])
    return sorted(set(found))
