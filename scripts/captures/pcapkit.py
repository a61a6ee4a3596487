"""A small kit for writing hand-built test captures: TCP conversations with
real handshakes, sequence numbers and acknowledgements, UDP datagrams, and
HTTP message bytes. Every capture builder script in this folder uses it.

Only documentation addresses (RFC 5737 / RFC 3849) are used by default.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet
from scapy.utils import wrpcap

CLIENT_MAC = "02:00:00:00:00:01"
SERVER_MAC = "02:00:00:00:00:02"


@dataclass
class CaptureBuilder:
    """Collects packets in capture order with increasing timestamps."""

    start: float = 1_700_000_000.0
    step: float = 0.001
    packets: list[Packet] = field(default_factory=list)
    _clock: float = 0.0
    _ports: Iterable[int] = field(default_factory=lambda: itertools.count(49152))

    def __post_init__(self) -> None:
        self._clock = self.start

    def next_port(self) -> int:
        return next(iter(self._ports))

    def add(self, packet: Packet, delay: float | None = None) -> Packet:
        self._clock += self.step if delay is None else delay
        packet.time = self._clock
        self.packets.append(packet)
        return packet

    def wait(self, seconds: float) -> None:
        self._clock += seconds

    def tcp(
        self,
        client: tuple[str, int | None] = ("192.0.2.10", None),
        server: tuple[str, int] = ("198.51.100.20", 80),
        handshake: bool = True,
        client_isn: int = 1000,
        server_isn: int = 5000,
    ) -> TcpConversation:
        """A TCP connection; with handshake=True the three-way handshake is written now."""
        port = client[1] if client[1] is not None else self.next_port()
        conversation = TcpConversation(self, (client[0], port), server, client_isn, server_isn)
        if handshake:
            conversation.open()
        return conversation

    def udp(self, src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> Packet:
        return self.add(_ip(src[0], dst[0]) / UDP(sport=src[1], dport=dst[1]) / payload)

    def write(self, path: str) -> None:
        wrpcap(path, self.packets)


def _ip(src: str, dst: str) -> Packet:
    if ":" in src:
        return Ether(src=CLIENT_MAC, dst=SERVER_MAC) / IPv6(src=src, dst=dst)
    return Ether(src=CLIENT_MAC, dst=SERVER_MAC) / IP(src=src, dst=dst)


@dataclass
class TcpConversation:
    """One TCP connection. `send` is client -> server, `reply` server -> client."""

    capture: CaptureBuilder
    client: tuple[str, int]
    server: tuple[str, int]
    client_seq: int
    server_seq: int
    mss: int = 1460

    def _segment(self, from_client: bool, flags: str, payload: bytes = b"") -> Packet:
        if from_client:
            src, dst, seq, ack = self.client, self.server, self.client_seq, self.server_seq
        else:
            src, dst, seq, ack = self.server, self.client, self.server_seq, self.client_seq
        tcp = TCP(sport=src[1], dport=dst[1], flags=flags, seq=seq, ack=ack if "A" in flags else 0)
        return _ip(src[0], dst[0]) / tcp / payload if payload else _ip(src[0], dst[0]) / tcp

    def open(self) -> None:
        self.capture.add(self._segment(True, "S"))
        self.client_seq += 1
        self.capture.add(self._segment(False, "SA"))
        self.server_seq += 1
        self.capture.add(self._segment(True, "A"))

    def segments(self, from_client: bool, data: bytes, size: int | None = None) -> list[Packet]:
        """Cut data into segments without writing them (for reordering tests)."""
        size = size or self.mss
        out = []
        for start in range(0, len(data), size):
            chunk = data[start : start + size]
            out.append(self._segment(from_client, "PA", chunk))
            if from_client:
                self.client_seq += len(chunk)
            else:
                self.server_seq += len(chunk)
        return out

    def send(self, data: bytes, size: int | None = None) -> list[Packet]:
        """Client -> server data, then the server's bare ACK."""
        packets = [self.capture.add(p) for p in self.segments(True, data, size)]
        self.capture.add(self._segment(False, "A"))
        return packets

    def reply(self, data: bytes, size: int | None = None) -> list[Packet]:
        """Server -> client data, then the client's bare ACK."""
        packets = [self.capture.add(p) for p in self.segments(False, data, size)]
        self.capture.add(self._segment(True, "A"))
        return packets

    def close(self, by: str = "client") -> None:
        """Orderly FIN exchange started by `by` ("client" or "server")."""
        first = by == "client"
        self.capture.add(self._segment(first, "FA"))
        if first:
            self.client_seq += 1
        else:
            self.server_seq += 1
        self.capture.add(self._segment(not first, "FA"))
        if first:
            self.server_seq += 1
        else:
            self.client_seq += 1
        self.capture.add(self._segment(first, "A"))

    def ack(self, from_client: bool) -> Packet:
        """A bare ACK acknowledging everything the peer has sent so far."""
        return self.capture.add(self._segment(from_client, "A"))

    def reset(self, by: str = "server") -> None:
        self.capture.add(self._segment(by == "client", "RA"))


def http_request(
    method: str,
    uri: str,
    host: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    version: str = "HTTP/1.1",
) -> bytes:
    lines = [f"{method} {uri} {version}", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers or []]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def http_response(
    status: int,
    reason: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    version: str = "HTTP/1.1",
    content_length: bool = True,
) -> bytes:
    lines = [f"{version} {status} {reason}"]
    lines += [f"{name}: {value}" for name, value in headers or []]
    if content_length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
