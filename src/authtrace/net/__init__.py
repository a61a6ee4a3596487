"""net layer: link, IP (with fragment reassembly), tunnels, TCP and UDP headers.

Public API: `PacketDecoder` with `decode(frame) -> TcpSegment | UdpDatagram |
None`, `finish()` and `.anomalies`; the result types live in `net.packets`.
"""

from authtrace.net.decoder import PacketDecoder
from authtrace.net.packets import TcpSegment, UdpDatagram

__all__ = ["PacketDecoder", "TcpSegment", "UdpDatagram"]
