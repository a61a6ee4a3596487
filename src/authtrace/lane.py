"""The pipeline's fast lane: most frames of a large capture are taken straight
from the pcap or pcapng reader's buffer, without building a Frame, a
TcpSegment or a StreamData, because all the layers would do with them is count.

Owns: the per-packet code of that shortcut (the `claim` closure of
`FastLane._claimer`: the one place that decides and applies; the walkers
`FastLane.walker_for` builds only find records or packet blocks in the buffer)
and the table of lanes it consults (one per live connection and direction,
installed by the pipeline once the normal path has shown what the connection
is).

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
from collections.abc import Callable
from typing import Any

from authtrace.anomalies import Anomaly, AnomalyKind
from authtrace.http.exchanges import Detection, HttpConnectionTracker
from authtrace.http.parser import HttpParser, _State
from authtrace.net.packets import TcpSegment
from authtrace.readers.base import BlockLayout, RecordLayout, Walker
from authtrace.readers.linktypes import LINKTYPE_ETHERNET
from authtrace.readers.pcapng import TWO_32
from authtrace.strict import internal_error
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
# pcapng block types (draft-ietf-opsawg-pcapng section 11.1)
_EPB = 0x00000006
_SPB = 0x00000003


class _AcksOnly:
    """The `parser` of a lane that takes ACK-only frames but no data (the HTTP
    layer has not decided what the connection is yet, or it is Kerberos): its
    state is never BODY_LENGTH, so the walker's parser test refuses every payload."""

    __slots__ = ()
    _state = None


_ACKS_ONLY = _AcksOnly()


class _Entry:
    """One direction's lane: the objects a claimed frame updates. parser: the
    direction's HTTP parser, None when the connection is not HTTP (its data is
    dropped unseen), or _ACKS_ONLY."""

    __slots__ = ("conn", "half", "other", "parser")

    def __init__(
        self, conn: _Connection, half: _Half, other: _Half, parser: HttpParser | _AcksOnly | None
    ) -> None:
        self.conn = conn
        self.half = half
        self.other = other
        self.parser = parser


class FastLane:
    """Lanes for one pipeline's reassembler. `walker_for` is handed to the reader."""

    def __init__(self, reassembler: TcpReassembler) -> None:
        self._tcp = reassembler
        self._lanes: dict[bytes, _Entry] = {}
        self._by_connection: dict[int, list[bytes]] = {}
        # Per connection, the (source address, source port) of the directions
        # whose lane is open for data: nothing more for `offer` to do there, so
        # it returns before building the lane key (most of its cost).
        self._settled: dict[int, set[tuple[str, int]]] = {}
        # Frames taken so far (the tests check that the lane is really used).
        self.taken = 0
        # Set when the lane met an internal error and switched itself off.
        self.anomalies: list[Anomaly] = []
        self._off = False

    def switch_off(self, error: Exception, frame: int) -> None:
        """An internal error in `claim`: the lane stops taking frames for the
        rest of the run and the normal path carries on with this frame, which
        claim had not changed anything for yet (it decides before it applies).
        Never reported as damage of the capture: it is authtrace's own bug
        (and raises under strict mode, authtrace/strict.py)."""
        internal_error(error)
        if self._off:
            return
        self._lanes.clear()  # claim's table: every later look-up misses
        self._settled.clear()
        self._off = True
        self.anomalies.append(
            Anomaly(
                AnomalyKind.LANE_INTERNAL_ERROR, f"fast lane switched off after {error!r}", frame
            )
        )

    def offer(
        self,
        segment: TcpSegment,
        connection: int,
        tracker: HttpConnectionTracker | None,
        opaque: bool = False,
    ) -> None:
        """After the normal path handled `segment` of `connection`: open a lane for
        its direction, for ACK-only frames at first, and for data too once the
        HTTP layer knows what the connection is (`tracker` None: not routed
        yet, or not an HTTP candidate at all) or once the connection's owner
        says none of its data is needed any more (`opaque`: a TLS connection
        without keys, tls/connection.py). Never raises."""
        if self._off:
            return
        settled = self._settled.get(connection)
        if settled is not None and (segment.src, segment.src_port) in settled:
            return
        try:
            if ":" in segment.src:
                return
            key = (
                socket.inet_pton(_AF4, segment.src)
                + socket.inet_pton(_AF4, segment.dst)
                + _PORTS.pack(segment.src_port, segment.dst_port)
            )
            entry = self._lanes.get(key)
            if entry is not None and entry.parser is not _ACKS_ONLY:
                self._settled.setdefault(connection, set()).add((segment.src, segment.src_port))
                return  # already open for data
            known = opaque or (tracker is not None and tracker.detection is not Detection.UNKNOWN)
            if entry is not None and not known:
                return
            handles = self._tcp.lane_handles(
                segment.src, segment.src_port, segment.dst, segment.dst_port
            )
            if handles is None:
                return
            conn, half, other = handles
            if conn.id != connection or half.base_seq is None:
                return
            parser: HttpParser | _AcksOnly | None = _ACKS_ONLY
            if opaque or (tracker is not None and tracker.detection is Detection.NOT_HTTP):
                parser = None
            elif known:
                assert tracker is not None
                direction = Direction.TO_SERVER if half is conn.to_server else Direction.TO_CLIENT
                parser = tracker.parser_for(direction) or _ACKS_ONLY
            if entry is not None:
                entry.parser = parser
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
        self._settled.pop(connection, None)

    def __len__(self) -> int:
        return len(self._lanes)

    def walker_for(self, link_type: int, layout: RecordLayout | BlockLayout) -> Walker | None:
        """The walker a reader calls (readers/base.py): Ethernet only, for a
        classic pcap file (`RecordLayout`) or a pcapng section (`BlockLayout`).
        Both walkers only find each record's bytes and time stamp; whether the
        frame is taken, and what that changes, is decided in one place: the
        `claim` closure of `_claimer`."""
        if link_type != LINKTYPE_ETHERNET:
            return None
        claim = self._claimer()
        if isinstance(layout, BlockLayout):
            return self._block_walker(layout, claim)
        return self._record_walker(layout, claim)

    def _claimer(self) -> Callable[[bytes, int, int, float, int], bool]:
        """`claim(buf, start, captured, ts, number)`: the per-frame code of the
        lane. The frame's link-layer bytes are buf[start:start + captured] (all
        present), its time stamp `ts` and its frame number `number`. Returns
        True after applying the frame's whole effect (module docstring), or
        False, having changed nothing, when the frame needs the normal path."""
        # Everything the per-frame code uses is a local of this closure: in
        # CPython a local is several times cheaper to reach than an attribute
        # or a global, and this code runs for nine frames in ten.
        head = _HEAD.unpack_from
        lanes = self._lanes

        def claim(buf: bytes, start: int, captured: int, ts: float, number: int) -> bool:
            if captured < _MIN:
                return False
            ethertype, vihl, total, fragment, proto, key, seq, ack, offset, flags = head(buf, start)
            # IPv4 without options, not a fragment (MF or an offset), TCP,
            # ACK without SYN/FIN/RST.
            if (
                ethertype != 0x0800
                or vihl != 0x45
                or proto != 6
                or fragment & 0x3FFF
                or flags & _FLAG_MASK != _ACK_ONLY
            ):
                return False
            entry = lanes.get(key)
            if entry is None:
                return False
            size = total - 20 - (offset >> 4) * 4
            # A TCP header shorter than 20 bytes, an IP length too small for
            # its headers, or bytes the capture cut (snaplen): normal path.
            if size < 0 or offset < 0x50 or 14 + total > captured:
                return False
            other_next = entry.other.next_seq
            if other_next is not None and 0 < ((ack - other_next) & _MASK) < _HALF:
                return False  # this ACK proves bytes lost the other way: a gap
            if size:
                half = entry.half
                if seq != half.next_seq or half.held or half.fin_done:
                    return False
                parser: Any = entry.parser  # HttpParser, _ACKS_ONLY or None
                if parser is not None:
                    # parser.py `feed`'s first fast path, to the letter.
                    if (
                        parser._state is not _BODY_LENGTH
                        or parser._body is not None
                        or size >= parser._remaining
                    ):
                        return False
                    parser._frame = parser._first_frame = number
                    parser._ts = ts
                    parser._body_size += size
                    parser._remaining -= size
                half.next_seq = (seq + size) & _MASK
            conn = entry.conn
            conn.last_frame = number
            conn.last_timestamp = ts
            conn.packets += 1
            return True

        return claim

    def _record_walker(
        self, layout: RecordLayout, claim: Callable[[bytes, int, int, float, int], bool]
    ) -> Walker:
        """Classic pcap: fixed-size record headers, one link type for the file."""
        record = layout.header.unpack_from
        record_size = layout.size
        scale = layout.scale
        max_record = layout.max_record
        lane = self

        def walk(buf: bytes, pos: int, end: int, number: int) -> tuple[int, int, float]:
            """Take records from buf[pos:end] while each qualifies (module docstring)."""
            ts = 0.0
            taken = 0
            if lane._off:  # switched off by an internal error: the normal path reads
                return pos, number, ts
            while end - pos >= record_size:
                seconds, fraction, captured, _ = record(buf, pos)
                start = pos + record_size
                stop = start + captured
                if stop > end or captured > max_record:
                    break
                when = seconds + fraction * scale
                try:
                    claimed = claim(buf, start, captured, when, number + 1)
                except Exception as error:  # noqa: BLE001 - the lane's bug, not the capture's
                    lane.switch_off(error, number + 1)
                    claimed = False
                if not claimed:
                    break
                ts = when
                number += 1
                taken += 1
                pos = stop
            lane.taken += taken
            return pos, number, ts

        return walk

    def _block_walker(
        self, layout: BlockLayout, claim: Callable[[bytes, int, int, float, int], bool]
    ) -> Walker:
        """pcapng (draft-ietf-opsawg-pcapng): Enhanced Packet Blocks (section
        4.3) of the interfaces the layout names, and Simple Packet Blocks
        (section 4.4, interface 0, no time stamp) when it allows them. Any
        other block, a block that is incomplete or whose lengths the reader
        would report as corrupt stops the walk."""
        # type, total length, then (EPB) interface id, time stamp high and
        # low, captured and original length; (SPB) original length first.
        block = struct.Struct(layout.order + "7I").unpack_from
        clocks = layout.interfaces
        count = len(clocks)
        simple = layout.simple
        max_record = layout.max_record
        max_block = layout.max_block
        lane = self

        def walk(buf: bytes, pos: int, end: int, number: int) -> tuple[int, int, float]:
            """Take packet blocks from buf[pos:end] while each qualifies."""
            ts = 0.0
            taken = 0
            if lane._off:  # switched off by an internal error: the normal path reads
                return pos, number, ts
            # 28 bytes: an EPB header; any frame the lane takes is longer.
            while end - pos >= 28:
                kind, length, interface, high, low, captured, original = block(buf, pos)
                stop = pos + length
                if stop > end or length & 3 or length > max_block:
                    break
                if kind == _EPB:
                    if interface >= count or captured > length - 32 or captured > max_record:
                        break
                    clock = clocks[interface]
                    if clock is None:
                        break
                    when = (high * TWO_32 + low) / clock[0] + clock[1]
                    start = pos + 28
                elif kind == _SPB and simple is not None:
                    # The captured length is what the block holds, at most the
                    # snaplen (the reader computes it the same way).
                    captured = min(interface, length - 16)
                    if simple:
                        captured = min(captured, simple)
                    when = 0.0
                    start = pos + 12
                else:
                    break
                try:
                    claimed = claim(buf, start, captured, when, number + 1)
                except Exception as error:  # noqa: BLE001 - the lane's bug, not the capture's
                    lane.switch_off(error, number + 1)
                    claimed = False
                if not claimed:
                    break
                ts = when
                number += 1
                taken += 1
                pos = stop
            lane.taken += taken
            return pos, number, ts

        return walk
