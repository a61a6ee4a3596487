"""A tiny pcap writer for hand-built hostile captures: one TCP connection
(handshake, data in segments, FIN) over Ethernet/IPv4, in pure Python, fast
enough to build a capture of megabytes inside a test."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

CLIENT = ("192.0.2.10", 50000)
SERVER = ("192.0.2.80", 80)


def _ip_bytes(address: str) -> bytes:
    return bytes(int(part) for part in address.split("."))


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _frame(
    src: tuple[str, int], dst: tuple[str, int], seq: int, ack: int, flags: int, payload: bytes
) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", src[1], dst[1], seq, ack, 5 << 4, flags, 65535, 0, 0)
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, total, 1, 0x4000, 64, 6, 0, _ip_bytes(src[0]), _ip_bytes(dst[0])
    )
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    ether = b"\x00\x11\x22\x33\x44\x55" + b"\x66\x77\x88\x99\xaa\xbb" + b"\x08\x00"
    return ether + ip + tcp + payload


def tcp_capture(path: Path, messages: Iterable[tuple[bool, bytes]], segment: int = 1460) -> Path:
    """Write one connection: each (from_client, data) is sent in `segment`-byte
    segments, each answered by an ACK; SYN handshake first, FIN from the client last."""
    SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01
    frames: list[bytes] = []
    seq = {True: 1000, False: 5000}

    def send(from_client: bool, flags: int, payload: bytes = b"") -> None:
        src, dst = (CLIENT, SERVER) if from_client else (SERVER, CLIENT)
        frames.append(_frame(src, dst, seq[from_client], seq[not from_client], flags, payload))
        seq[from_client] = (seq[from_client] + len(payload)) & 0xFFFFFFFF

    frames.append(_frame(CLIENT, SERVER, 999, 0, SYN, b""))
    frames.append(_frame(SERVER, CLIENT, 4999, 1000, SYN | ACK, b""))
    send(True, ACK)
    for from_client, data in messages:
        for start in range(0, len(data), segment):
            send(from_client, ACK | PSH, data[start : start + segment])
            send(not from_client, ACK)
    send(True, FIN | ACK)
    seq[True] += 1
    send(False, FIN | ACK)
    seq[False] += 1
    send(True, ACK)
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
    for number, frame in enumerate(frames):
        out += struct.pack(
            "<IIII", 1_700_000_000 + number // 1000, (number % 1000) * 1000, len(frame), len(frame)
        )
        out += frame
    path.write_bytes(bytes(out))
    return path
