"""What the network layer yields for one frame: a TCP segment or a UDP datagram."""

from __future__ import annotations

from dataclasses import dataclass

from authtrace.fastinit import constructor

# TCP flag bits (RFC 9293 section 3.1)
FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10


@dataclass(frozen=True, slots=True)
class TcpSegment:
    """One TCP segment as seen on the wire.

    src/dst: textual IP addresses ("192.0.2.1", "2001:db8::1").
    payload: the captured payload bytes; missing: how many payload bytes the
        IP length promised but the capture did not hold (snaplen), never invented.
    """

    frame: int
    timestamp: float
    src: str
    dst: str
    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int
    payload: bytes
    missing: int = 0


# One segment per TCP frame: the decoder builds them with this (authtrace/fastinit.py).
make_tcp_segment = constructor(TcpSegment)


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    """One UDP datagram (after IP reassembly)."""

    frame: int
    timestamp: float
    src: str
    dst: str
    src_port: int
    dst_port: int
    payload: bytes
    missing: int = 0
