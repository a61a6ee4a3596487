"""The pcapng file format (draft-ietf-opsawg-pcapng): sections, interfaces,
packet blocks.

Owns: walking blocks, remembering each section's byte order and each
interface's link type and time-stamp resolution (if_tsresol, if_tsoffset),
and yielding one `Frame` per Enhanced, Simple or obsolete Packet Block (and
per systemd Journal Export Block and Custom Block, which Wireshark also
numbers as frames), and handing on the contents of Decryption Secrets Blocks
(section 4.7) to whoever reads them (the TLS layer).
Unknown blocks are skipped. With a `WalkerFor` (the pipeline's fast lane),
Enhanced and Simple Packet Blocks may be taken straight from the buffer before
a Frame is built: per section and interface table the reader asks for one
walker (readers/base.py `BlockLayout`), numbers what it took like any frame
and counts every frame in a `Tally`.

Invariant: memory is one read chunk plus one block (bounded by MAX_BLOCK;
larger blocks that carry no packet are skipped without being held). Damage
stops reading with an anomaly; nothing is raised after the first block.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from authtrace.anomalies import Anomaly, AnomalyKind
from authtrace.readers.base import BlockLayout, Frame, Tally, Walker, WalkerFor, make_frame
from authtrace.readers.linktypes import LINKTYPE_PCAPNG_CUSTOM, LINKTYPE_SYSTEMD_JOURNAL
from authtrace.readers.pcap import MAX_RECORD, report_end
from authtrace.readers.source import CHUNK, Input
from authtrace.strict import internal_error

SHB_TYPE = b"\x0a\x0d\x0d\x0a"  # section header block: the same in both byte orders
MAX_BLOCK = MAX_RECORD + 64 * 1024  # a packet of the largest size plus generous options

# Block types (draft-ietf-opsawg-pcapng section 4 and 11.1)
_IDB = 0x00000001
_OPB = 0x00000002  # obsolete Packet Block (appendix A)
_SPB = 0x00000003
_EPB = 0x00000006
_JOURNAL = 0x00000009
_DSB = 0x0000000A
_CUSTOM = (0x00000BAD, 0x40000BAD)  # section 4.8: copyable / not copyable
_PACKET_BLOCKS = (_OPB, _SPB, _EPB, _JOURNAL, *_CUSTOM)

# Interface Description Block options (section 4.2)
_IF_TSRESOL = 9
_IF_TSOFFSET = 14

_BOM_LE = b"\x4d\x3c\x2b\x1a"
_BOM_BE = b"\x1a\x2b\x3c\x4d"


class _Interface:
    __slots__ = ("link_type", "divisor", "offset", "snaplen")

    def __init__(self, link_type: int, divisor: float, offset: int, snaplen: int) -> None:
        self.link_type = link_type
        self.divisor = divisor
        self.offset = offset
        self.snaplen = snaplen


# 2**32 as a float. An Enhanced Packet Block's time stamp is two 32-bit
# halves (section 4.3); high * TWO_32 + low is their value as a float rounded
# once, the very float that ((high << 32) | low) converts to in the division,
# without building a two-digit int for every block.
TWO_32 = 4294967296.0


def _parse_interface(block: bytes, order: str) -> _Interface:
    """Interface Description Block (section 4.2); default resolution is 10^-6 s."""
    link_type, _reserved, snaplen = struct.unpack_from(order + "HHI", block, 8)
    divisor: float = 1e6
    offset = 0
    pos = 16
    end = len(block) - 4
    option = struct.Struct(order + "HH")
    # Options: code, length, value padded to 32 bits; bounded by the block.
    while pos + 4 <= end:
        code, length = option.unpack_from(block, pos)
        value = block[pos + 4 : pos + 4 + length]
        if code == 0:
            break
        if code == _IF_TSRESOL and length >= 1:
            # Most significant bit set: a negative power of two, else of ten.
            exponent = value[0] & 0x7F
            base = 2 if value[0] & 0x80 else 10
            divisor = float(base**exponent)
        elif code == _IF_TSOFFSET and length == 8:
            (offset,) = struct.unpack(order + "q", value)
        pos += 4 + ((length + 3) & ~3)
    return _Interface(link_type, divisor, offset, snaplen)


def _walker(walker_for: WalkerFor, order: str, interfaces: list[_Interface]) -> Walker | None:
    """The walker for a section's interfaces as they stand: for the first link
    type (in interface order) that `walker_for` wants; blocks of interfaces of
    other link types stop that walker and take the normal path."""
    seen: set[int] = set()
    for interface in interfaces:
        link_type = interface.link_type
        if link_type in seen:
            continue
        seen.add(link_type)
        clocks = tuple(
            (i.divisor, i.offset) if i.link_type == link_type else None for i in interfaces
        )
        first = interfaces[0]
        simple = first.snaplen if first.link_type == link_type else None
        layout = BlockLayout(order, clocks, simple, MAX_RECORD, MAX_BLOCK)
        walk = walker_for(link_type, layout)
        if walk is not None:
            return walk
    return None


def frames(
    source: Input,
    buffer: bytes,
    anomalies: list[Anomaly],
    label: str,
    walker_for: WalkerFor | None = None,
    tally: Tally | None = None,
    first_number: int = 1,
    secrets: list[tuple[int, bytes, int]] | None = None,
) -> Iterator[Frame]:
    """Frames from a pcapng stream whose first bytes are `buffer`, numbered from
    `first_number`.

    `walker_for` (readers/base.py) may give walkers that take packet blocks
    before a Frame is built for them; `tally` receives the count and the
    first/last timestamps of every frame numbered, taken or not, when
    reading stops. `secrets` receives each Decryption Secrets Block as
    (secrets type, secrets data, number of the last frame before it).
    """
    start = first_number - 1
    number = start
    first = last = 0.0
    walk: Walker | None = None
    try:
        read = source.read
        buf = buffer
        pos = 0
        size = len(buf)
        header = struct.Struct("<II")
        epb = struct.Struct("<IIIII")
        opb = struct.Struct("<HHIIII")
        spb = struct.Struct("<I")
        interfaces: list[_Interface] = []
        order = "<"
        while True:
            # The walker gets no chance before the first frame, so `first` is
            # always a frame the reader numbered itself.
            if walk is not None and number > start:
                taken_to, number, taken_last = walk(buf, pos, size, number)
                if taken_to != pos:
                    pos = taken_to
                    last = taken_last
            if size - pos < 12:
                more = read(CHUNK)
                if not more:
                    break
                buf = buf[pos:] + more
                pos = 0
                size = len(buf)
                continue
            if buf[pos : pos + 4] == SHB_TYPE:
                # A new section may switch byte order; its interfaces start afresh.
                bom = buf[pos + 8 : pos + 12]
                if bom == _BOM_LE:
                    order = "<"
                elif bom == _BOM_BE:
                    order = ">"
                else:
                    _stop(anomalies, label, number, "section header with an unknown byte order")
                    return
                header = struct.Struct(order + "II")
                epb = struct.Struct(order + "IIIII")
                opb = struct.Struct(order + "HHIIII")
                spb = struct.Struct(order + "I")
                interfaces = []
                walk = None
            block_type, length = header.unpack_from(buf, pos)
            if length < 12 or length % 4:
                _stop(anomalies, label, number, f"block of impossible length {length}")
                return
            if length > MAX_BLOCK:
                if block_type in _PACKET_BLOCKS or block_type in (_IDB, 0x0A0D0D0A):
                    _stop(anomalies, label, number, f"block claims {length} bytes")
                    return
                # A large block without packets (name resolution, decryption
                # secrets): skip it without holding it in memory.
                if block_type == _DSB:
                    anomalies.append(
                        Anomaly(
                            AnomalyKind.TLS_SECRETS_TOO_LARGE,
                            f"{label}: a decryption secrets block of {length} bytes after frame "
                            f"{number} was skipped (give its key log with --tls-keylog instead)",
                            number + 1,
                        )
                    )
                if size - pos >= length:
                    pos += length
                    continue
                skip = length - (size - pos)
                buf, pos, size = b"", 0, 0
                while skip > 0:
                    more = read(min(CHUNK, skip))
                    if not more:
                        break
                    skip -= len(more)
                if skip > 0:
                    report_end(source, length - skip, number, anomalies, label)
                    return
                continue
            end = pos + length
            if end > size:
                more = read(max(CHUNK, length))
                if not more:
                    break
                buf = buf[pos:] + more
                pos = 0
                size = len(buf)
                continue
            if block_type == _EPB or block_type == _OPB:
                # Enhanced Packet Block (section 4.3), and the obsolete Packet Block
                # (appendix A: a 16-bit interface id and a drops count): the same
                # fields at the same offsets once unpacked.
                if block_type == _EPB:
                    interface_id, high, low, captured, original = epb.unpack_from(buf, pos + 8)
                else:
                    interface_id, _drops, high, low, captured, original = opb.unpack_from(
                        buf, pos + 8
                    )
                if captured > length - 32 or captured > MAX_RECORD:
                    _stop(anomalies, label, number, f"packet block claims {captured} bytes")
                    return
                if interface_id >= len(interfaces):
                    _stop(anomalies, label, number, f"undeclared interface {interface_id}")
                    return
                interface = interfaces[interface_id]
                number += 1
                last = (high * TWO_32 + low) / interface.divisor + interface.offset
                if number == start + 1:
                    first = last
                yield make_frame(
                    number,
                    last,
                    interface.link_type,
                    buf[pos + 28 : pos + 28 + captured],
                    original,
                )
            elif block_type == _SPB:
                # Simple Packet Block (section 4.4): interface 0, no time stamp;
                # captured length is what the block holds, at most the snaplen.
                if not interfaces:
                    _stop(anomalies, label, number, "simple packet block before any interface")
                    return
                interface = interfaces[0]
                (original,) = spb.unpack_from(buf, pos + 8)
                captured = min(original, length - 16)
                if interface.snaplen:
                    captured = min(captured, interface.snaplen)
                number += 1
                last = 0.0  # no time stamp (`first` starts at 0.0)
                yield make_frame(
                    number,
                    0.0,
                    interface.link_type,
                    buf[pos + 12 : pos + 12 + captured],
                    original,
                )
            elif block_type == _IDB:
                if length < 20:
                    _stop(anomalies, label, number, "interface block too short")
                    return
                interfaces.append(_parse_interface(buf[pos:end], order))
                if walker_for is not None:
                    walk = _walker(walker_for, order, interfaces)
            elif block_type == _DSB and secrets is not None:
                # Decryption Secrets Block (section 4.7): type, length, data.
                if length < 20:
                    _stop(anomalies, label, number, "decryption secrets block too short")
                    return
                kind, secrets_length = header.unpack_from(buf, pos + 8)
                if secrets_length > length - 20:
                    _stop(anomalies, label, number, "decryption secrets block overflows")
                    return
                secrets.append((kind, bytes(buf[pos + 16 : pos + 16 + secrets_length]), number))
            elif block_type == _JOURNAL:
                # systemd Journal Export Block (section 4.7): a frame with no packet.
                entry = buf[pos + 8 : end - 4]
                number += 1
                last = 0.0  # no time stamp (`first` starts at 0.0)
                yield make_frame(number, 0.0, LINKTYPE_SYSTEMD_JOURNAL, entry, len(entry))
            elif block_type in _CUSTOM:
                # Custom Block (section 4.8): Wireshark shows it as a frame, so
                # it takes a frame number; its body (PEN + data) is the frame.
                body = buf[pos + 8 : end - 4]
                number += 1
                last = 0.0  # no time stamp (`first` starts at 0.0)
                yield make_frame(number, 0.0, LINKTYPE_PCAPNG_CUSTOM, body, len(body))
            pos = end
        report_end(source, size - pos, number, anomalies, label)
    except Exception as exc:  # noqa: BLE001 - a reader never raises after the header
        internal_error(exc)
        _stop(anomalies, label, number, f"reading stopped: {exc!r}")
    finally:
        if tally is not None:
            tally.settle(number - start, first, last)


def _stop(anomalies: list[Anomaly], label: str, number: int, reason: str) -> None:
    anomalies.append(
        Anomaly(
            AnomalyKind.CAPTURE_CORRUPT,
            f"{label}: {reason} after frame {number}; reading stopped",
            number + 1,
        )
    )
