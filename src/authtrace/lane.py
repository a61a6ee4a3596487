"""The pipeline's fast lane: most frames of a large capture are taken straight
from the pcap reader's buffer, without building a Frame, a TcpSegment or a
StreamData, because all the layers would do with them is count.

Owns: the per-packet code of that shortcut (`FastLane.claim`) and the table
of lanes it consults (one per live connection and direction, installed by the
pipeline once the normal path has shown what the connection is).

Which frames qualify. A lane exists for a direction of a live TCP connection
(IPv4) once the HTTP layer has decided what the connection is (HTTP, or not
HTTP) and the direction's first segment went through the normal path. A frame
is claimed only when all of these hold; anything else (another link layer, IP
options or fragments, SYN/FIN/RST, a snaplen cut, an unknown 4-tuple, out of
order data, held segments, header bytes...) takes the normal path:
- Ethernet II, IPv4 with a 20-byte header, not a fragment, TCP with ACK and
  without SYN, FIN or RST, and every byte the IP length announces captured
  (so `TcpSegment.missing` would be 0; padding is not payload);
- the 4-tuple has a lane;
- its ACK proves no loss in the other direction: it does not acknowledge
  beyond what the reassembler delivered there (otherwise `_acked` would
  report a gap: that is the normal path's job);
- a segment with payload starts exactly at the direction's next sequence
  number, nothing is held out of order and the direction has not ended, so
  the reassembler would deliver it at once as one StreamData; and either the
  connection is not HTTP (its tracker drops data without any state change),
  or the direction's HTTP parser is inside a Content-Length body that this
  payload does not finish and whose bytes it does not keep, so `feed` would
  only count them (parser.py's first fast path).

Invariant: a claimed frame changes exactly the state the normal path would
have changed, in the same objects (the reassembler's connection and half, the
parser), and produces no event, because the normal path would have produced
none that any layer keeps: no bytes are invented or dropped, and a gap is
always found by the normal path (a claimed segment never moves past a hole,
and an ACK that proves one is never claimed). The only difference:
`TcpReassembler.last_connection` is not updated. tests/test_lane.py runs
captures with and without the lane and compares everything.
Memory: two lanes per live connection at most; removed when it closes.
"""

from __future__ import annotations

import socket
import struct

from authtrace.http.exchanges import Detection, HttpConnectionTracker
from authtrace.http.parser import HttpParser, _State
from authtrace.net.packets import TcpSegment
from authtrace.readers.base import Claim
from authtrace.readers.linktypes import LINKTYPE_ETHERNET
from authtrace.tcp.events import Direction
from authtrace.tcp.reassembly import TcpReassembler, _Connection, _Half

# Ethernet II + IPv4 + TCP at fixed offsets (RFC 791 section 3.1, RFC 9293
# section 3.1): ethertype, version/IHL, total length, flags/fragment offset,
# protocol, the 12 bytes source address, destination address, source port,
# destination port (the lane's key, as they sit in the packet), sequence
# number, acknowledgment number, data offset, flags.
_HEAD = struct.Struct("!12xHBxH2xHxB2x12sIIBB")
_MIN = 54  # 14 Ethernet + 20 IPv4 + 20 TCP
_MASK = 0xFFFFFFFF
_HALF = 0x80000000  # RFC 9293 section 3.4: sequence numbers compare modulo 2**32
# TCP flags: FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10; the lane wants ACK alone
# among these (PSH, URG, ECE, CWR do not matter to reassembly).
_FLAG_MASK = 0x17
_ACK_ONLY = 0x10
_BODY_LENGTH = _State.BODY_LENGTH
_AF4 = socket.AF_INET
_PORTS = struct.Struct("!HH")


class _Entry:
    """One direction's lane: the objects a claimed frame updates."""

    __slots__ = ("conn", "half", "other", "parser")

    def __init__(
        self, conn: _Connection, half: _Half, other: _Half, parser: HttpParser | None
    ) -> None:
        self.conn = conn
        self.half = half
        self.other = other
        self.parser = parser


class FastLane:
    """Lanes for one pipeline's reassembler. `claim_for` is handed to the reader."""

    def __init__(self, reassembler: TcpReassembler) -> None:
        self._tcp = reassembler
        self._lanes: dict[bytes, _Entry] = {}
        self._by_connection: dict[int, list[bytes]] = {}

    def claim_for(self, link_type: int) -> Claim | None:
        return self.claim if link_type == LINKTYPE_ETHERNET else None

    def offer(self, segment: TcpSegment, connection: int, tracker: HttpConnectionTracker) -> None:
        """After the normal path handled `segment` of `connection`: open a lane for
        its direction when the connection's nature is known. Never raises."""
        try:
            if tracker.detection is Detection.UNKNOWN or ":" in segment.src:
                return
            key = (
                socket.inet_pton(_AF4, segment.src)
                + socket.inet_pton(_AF4, segment.dst)
                + _PORTS.pack(segment.src_port, segment.dst_port)
            )
            if key in self._lanes:
                return
            handles = self._tcp.lane_handles(
                segment.src, segment.src_port, segment.dst, segment.dst_port
            )
            if handles is None:
                return
            conn, half, other = handles
            if conn.id != connection or half.base_seq is None:
                return
            parser = None
            if tracker.detection is Detection.HTTP:
                direction = Direction.TO_SERVER if half is conn.to_server else Direction.TO_CLIENT
                parser = tracker.parser_for(direction)
                if parser is None:
                    return
            self._lanes[key] = _Entry(conn, half, other, parser)
            self._by_connection.setdefault(connection, []).append(key)
        except (OSError, ValueError):
            return  # not an IPv4 address pair: no lane

    def remove(self, connection: int) -> None:
        """The connection closed: its lanes go (a later segment of the 4-tuple is
        a straggler or a new connection, which the normal path decides)."""
        for key in self._by_connection.pop(connection, ()):
            self._lanes.pop(key, None)

    def __len__(self) -> int:
        return len(self._lanes)

    def claim(self, buf: bytes, start: int, end: int, number: int, ts: float) -> bool:
        """Take the record buf[start:end] (frame `number`) when it qualifies (see
        the module docstring); True when taken. Never raises: a record it cannot
        read is left to the normal path."""
        if end - start < _MIN:
            return False
        ethertype, vihl, total, fragment, proto, key, seq, ack, offset, flags = _HEAD.unpack_from(
            buf, start
        )
        # IPv4 without options, not a fragment (MF or an offset), TCP, ACK
        # without SYN/FIN/RST.
        if (
            ethertype != 0x0800
            or vihl != 0x45
            or proto != 6
            or fragment & 0x3FFF
            or flags & _FLAG_MASK != _ACK_ONLY
        ):
            return False
        entry = self._lanes.get(key)
        if entry is None:
            return False
        size = total - 20 - (offset >> 4) * 4
        # A TCP header shorter than 20 bytes, an IP length too small for its
        # headers, or bytes the capture cut (snaplen): the normal path reports.
        if size < 0 or offset < 0x50 or 14 + total > end - start:
            return False
        other_next = entry.other.next_seq
        if other_next is not None and 0 < ((ack - other_next) & _MASK) < _HALF:
            return False  # this ACK proves bytes lost the other way: a gap
        if size:
            half = entry.half
            if seq != half.next_seq or half.held or half.fin_done:
                return False
            parser = entry.parser
            if parser is not None:
                # parser.py `feed`'s first fast path, to the letter.
                if (
                    parser._state is not _BODY_LENGTH
                    or parser._body is not None
                    or size >= parser._remaining
                ):
                    return False
                parser._frame = number
                parser._first_frame = number
                parser._ts = ts
                parser._body_size += size
                parser._remaining -= size
            half.next_seq = (seq + size) & _MASK
        conn = entry.conn
        conn.last_frame = number
        conn.last_timestamp = ts
        conn.packets += 1
        return True
