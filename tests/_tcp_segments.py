"""Private test helper: a capture file -> TcpSegment values, through scapy.

Stands in for the project's readers and net decoder in the tcp/http tests
(the integrator will switch these tests to the real readers). Frame numbers
count every record, as Wireshark numbers them.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

from authtrace.net.packets import TcpSegment


@functools.cache
def read_segments(path: Path) -> tuple[TcpSegment, ...]:
    """Every TCP segment of the capture, decoded once per test session.

    Uses the project's readers and net decoder when present; scapy stands in
    for them otherwise.
    """
    try:
        from authtrace.net.decoder import PacketDecoder
        from authtrace.readers.capture import open_capture
    except ImportError:
        return tuple(_read(path))
    decoder = PacketDecoder()
    segments = []
    with open_capture(str(path)) as capture:
        for frame in capture:
            decoded = decoder.decode(frame)
            if isinstance(decoded, TcpSegment):
                segments.append(decoded)
    decoder.finish()
    return tuple(segments)


def _read(path: Path) -> list[TcpSegment]:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6
    from scapy.packet import Raw
    from scapy.utils import PcapNgReader, PcapReader

    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    import io

    stream = io.BytesIO(raw)
    reader_type = PcapNgReader if raw[:4] == b"\x0a\x0d\x0d\x0a" else PcapReader
    segments: list[TcpSegment] = []
    with reader_type(stream) as reader:  # type: ignore[no-untyped-call]
        for number, packet in enumerate(reader, start=1):
            timestamp = float(packet.time)
            if TCP not in packet and Raw in packet and IP not in packet and IPv6 not in packet:
                # scapy leaves some link layers (BSD loopback, AF_INET6=24/28/30)
                # undecoded: decode the IP header by its version nibble.
                raw = bytes(packet[Raw].load)
                packet = IPv6(raw) if raw and raw[0] >> 4 == 6 else IP(raw)
            if TCP not in packet:
                continue
            ip = packet[IP] if IP in packet else packet[IPv6] if IPv6 in packet else None
            if ip is None:
                continue
            tcp = packet[TCP]
            payload = bytes(tcp.payload)
            if IP in packet and ip.len:
                declared = ip.len - ip.ihl * 4 - tcp.dataofs * 4
            elif IPv6 in packet and ip.plen:
                declared = ip.plen - tcp.dataofs * 4 - _ext_len(ip)
            else:
                # IP length 0: segmentation offload on the capturing host; the
                # captured bytes are the segment (Wireshark presumes the same).
                declared = len(payload)
            if declared < len(payload):
                payload = payload[: max(declared, 0)]  # Ethernet padding
            segments.append(
                TcpSegment(
                    frame=number,
                    timestamp=timestamp,
                    src=ip.src,
                    dst=ip.dst,
                    src_port=tcp.sport,
                    dst_port=tcp.dport,
                    seq=tcp.seq,
                    ack=tcp.ack,
                    flags=int(tcp.flags),
                    payload=payload,
                    missing=max(0, declared - len(payload)),
                )
            )
    return segments


def _ext_len(ipv6: object) -> int:
    # Bytes of IPv6 extension headers between the fixed header and TCP.
    from scapy.layers.inet import TCP

    total = 0
    layer = ipv6.payload  # type: ignore[attr-defined]
    while layer is not None and not isinstance(layer, TCP):
        total += len(layer) - len(layer.payload)
        layer = layer.payload
    return total


# tshark options per capture (by file name), with the reason. They change what
# tshark dissects as HTTP, never its tcp.stream numbering.
TSHARK_OPTIONS = {
    # tshark 4.0 does not reassemble out-of-order segments unless asked.
    "reordered.pcap": ("-o", "tcp.reassemble_out_of_order:TRUE"),
    # 1024 is not an HTTP port for tshark; authtrace finds HTTP by content.
    "ports-8080-1024.pcap": ("-d", "tcp.port==1024,http"),
}


@functools.cache
def tshark_rows(path: Path) -> tuple[tuple[str, ...], ...]:
    """One tshark run per capture, shared by the tcp and http oracles: per frame
    (frame.number, tcp.stream, http.request, http.response, icmp.type, icmpv6.type).

    A file cut short mid-packet makes tshark exit with status 2 after printing
    every whole frame, which is also what the readers yield.
    """
    import subprocess

    command = ["tshark", "-r", str(path), *TSHARK_OPTIONS.get(path.name, ())]
    command += ["-T", "fields", "-E", "occurrence=a"]
    for field in ("frame.number", "tcp.stream", "http.request", "http.response"):
        command += ["-e", field]
    command += ["-e", "icmp.type", "-e", "icmpv6.type"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode not in (0, 2):
        raise RuntimeError(result.stderr)
    rows = []
    for line in result.stdout.splitlines():
        fields = line.split("\t")
        rows.append(tuple(fields + [""] * (6 - len(fields))))
    return tuple(rows)
