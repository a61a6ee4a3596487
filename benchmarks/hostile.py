"""Cost of hostile bodies: `authtrace connections` against tshark on the same files.

    python3 -m benchmarks.hostile            # 20 MB bodies
    python3 -m benchmarks.hostile --mb 50

Writes one capture per body framing (one connection: a request, then a
response whose body is MB megabytes framed as Content-Length, as 1-byte
chunks, as 16-byte chunks, as 255-byte chunks, and as 1-byte chunks with a
chunk extension, which the parser reads line by line and stops following at
its per-connection cap), then times `authtrace connections` and `tshark -r F
-Y http -T fields -e tcp.stream` on each (best of --repeat), and prints the
seconds per MB and each ratio: to the Content-Length case (the issue's "100x
slower per byte") and to tshark in the same run.
"""

from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
SEGMENT = 1460


def _frame(src: int, dst: int, seq: int, ack: int, flags: int, payload: bytes) -> bytes:
    """Ethernet, IPv4 (192.0.2.x), TCP from port 50000 to 80 or back."""
    sport, dport = (50000, 80) if src == 10 else (80, 50000)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 0x50, flags, 65535, 0, 0)
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        40 + len(payload),
        0,
        0x4000,
        64,
        6,
        0,
        bytes([192, 0, 2, src]),
        bytes([192, 0, 2, dst]),
    )
    return b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\x08\x00" + ip + tcp + payload


def write_capture(path: Path, body: bytes, head: bytes) -> int:
    """One connection: handshake, request, the response in segments (each ACKed), FIN."""
    request = b"GET /big HTTP/1.1\r\nHost: web01\r\n\r\n"
    response = head + body
    frames = [
        _frame(10, 80, 999, 0, 0x02, b""),
        _frame(80, 10, 4999, 1000, 0x12, b""),
        _frame(10, 80, 1000, 5000, 0x10, b""),
        _frame(10, 80, 1000, 5000, 0x18, request),
    ]
    client = 1000 + len(request)
    server = 5000
    for start in range(0, len(response), SEGMENT):
        piece = response[start : start + SEGMENT]
        frames.append(_frame(80, 10, server, client, 0x18, piece))
        server += len(piece)
        frames.append(_frame(10, 80, client, server, 0x10, b""))
    frames.append(_frame(10, 80, client, server, 0x11, b""))
    frames.append(_frame(80, 10, server, client + 1, 0x11, b""))
    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for number, frame in enumerate(frames):
            out.write(
                struct.pack("<IIII", 1_700_000_000, number % 1_000_000, len(frame), len(frame))
            )
            out.write(frame)
    return len(frames)


def _chunks(unit: bytes, size: int) -> bytes:
    return unit * (size // len(unit)) + b"0\r\n\r\n"


def _best(command: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=20, help="body size in MB (default 20)")
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs (default 3)")
    parser.add_argument("--out-dir", type=Path, default=OUT)
    args = parser.parse_args()
    size = args.mb * 1_000_000
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    cases = [
        ("content-length", b"z" * size, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size),
        ("1-byte chunks", _chunks(b"1\r\nx\r\n", size), chunked),
        ("16-byte chunks", _chunks(b"10\r\n" + b"y" * 16 + b"\r\n", size), chunked),
        ("255-byte chunks", _chunks(b"ff\r\n" + b"y" * 255 + b"\r\n", size), chunked),
        ("1-byte chunks, extension", _chunks(b"1;e=1\r\nx\r\n", size), chunked),
    ]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    tshark = shutil.which("tshark")
    print(
        f"{'body framing':26} {'frames':>7} {'authtrace':>10} {'s/MB':>7} {'vs CL':>6} "
        f"{'tshark':>8} {'ratio':>6}"
    )
    reference = None
    for name, body, head in cases:
        path = args.out_dir / f"hostile-{name.replace(' ', '-').replace(',', '')}-{args.mb}mb.pcap"
        frames = write_capture(path, body, head)
        ours = _best([sys.executable, "-m", "authtrace", "connections", str(path)], args.repeat)
        reference = reference or ours
        theirs = (
            _best(
                [tshark, "-r", str(path), "-Y", "http", "-T", "fields", "-e", "tcp.stream"],
                args.repeat,
            )
            if tshark
            else float("nan")
        )
        print(
            f"{name:26} {frames:7} {ours:9.2f}s {ours / args.mb:7.3f} {ours / reference:6.1f} "
            f"{theirs:7.2f}s {ours / theirs:6.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
