"""The pipeline's fast lane: most frames of a large capture are taken straight
from the pcap or pcapng reader's buffer, without building a Frame, a
TcpSegment or a StreamData, because all the layers would do with them is count.

Owns: the per-packet code of that shortcut (the `claim` closure of
`FastLane._claimer`: the one place that decides and applies; the walkers
`FastLane.walker_for` builds only find records or packet blocks in the buffer)
and the table of lanes it consults (one per live connection and direction,
installed by the pipeline once the normal path has shown what the connection
is).

When a lane opens. Looking a frame up in the table costs about as much as
the normal path of a bare ACK, so a lane that could take only the bare ACKs
costs more than it saves (on captures where every connection is a short
authenticated exchange, a third of the frames are ACKs and the lane made
reading 6-11% slower). So the lanes of a connection open only once the layer
reading it says they pay (`LaneOwner.lane_pays`: a counted body in progress,
a connection known not to be HTTP, TLS records that span segments), and stay
open until it closes; until then, and for connections not routed yet or read
by the Kerberos tracker, every frame takes the normal path.

Which frames qualify. A lane exists for a direction of a live TCP connection
(IPv4) once the connection's lanes opened (above) and a segment of that
direction went through the normal path. Each layer says what the lane may do
there, and the lane only asks: the reassembler's `DirectionLane.take` applies
a segment whose effect there is bookkeeping, and the layer reading the
direction answers `count_only` (tcp/events.py LaneSink) through the sink its
owner gave (`lane_sink(direction)` of the HTTP tracker, the HTTP/2 reader or
the TLS connection; while it gives none, ACK-only frames). Here only the link, IP and TCP headers
are checked: Ethernet II, IPv4 with a 20-byte header, not a fragment, TCP
with ACK and without SYN, FIN or RST, a known 4-tuple, and every byte the IP
length announces captured (so `TcpSegment.missing` would be 0; padding is
not payload). Anything else takes the normal path.

Flows read elsewhere. A reader of part of a capture (authtrace/parallel.py)
reads every frame, but of a flow another reader owns it keeps only the
identity (tcp/reassembly.py `_Foreign`), which only its SYN, FIN and RST
frames can change. Once the reassembler has seen a direction's first
segment it lends that direction an `ElsewhereLane` (`offer_elsewhere`), and
the same check of the headers above then takes every frame of it but those
(and those the check sends to the normal path anyway), before a Frame, a
TcpSegment or a look-up in the reassembler is made for it; the lanes of a
flow that ended are dropped at the frame that ended it. Memory: two lanes
per live flow read elsewhere at most.

Invariant: a claimed frame changes exactly the state the normal path would
have changed, in the layers' own objects and through their own methods, and
produces no event, because the normal path would have produced none that
any layer keeps: no bytes are invented or dropped, and a gap is always found
by the normal path. The only difference: `TcpReassembler.last_connection` is
not updated. tests/test_lane.py runs captures with and without the lane and
compares everything.
Memory: two lanes per live connection at most; removed when it closes.
Cost: one struct unpack and one dict look-up per frame offered to `claim`.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from typing import Protocol

from authtrace.anomalies import Anomaly, AnomalyKind
from authtrace.net.packets import TcpSegment
from authtrace.readers.base import BlockLayout, RecordLayout, Walker
from authtrace.readers.linktypes import LINKTYPE_ETHERNET
from authtrace.readers.pcapng import TWO_32
from authtrace.strict import internal_error
from authtrace.tcp.events import Direction, LaneSink
from authtrace.tcp.reassembly import DirectionLane, ElsewhereLane, TcpReassembler

# Ethernet II + IPv4 + TCP at fixed offsets (RFC 791 section 3.1, RFC 9293
# section 3.1): ethertype, version/IHL, total length, flags/fragment offset,
# protocol, the 12 bytes source address, destination address, source port,
# destination port (the lane's key, as they sit in the packet), sequence
# number, acknowledgment number, data offset, flags.
_HEAD = struct.Struct("!12xHBxH2xHxB2x12sIIBB")
_MIN = 54  # 14 Ethernet + 20 IPv4 + 20 TCP
# TCP flags: FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10; the lane wants ACK alone
# among these (PSH, URG, ECE, CWR do not matter to reassembly).
_FLAG_MASK = 0x17
_ACK_ONLY = 0x10
_AF4 = socket.AF_INET
_PORTS = struct.Struct("!HH")
# SYN, FIN, RST: the only frames that can end a flow read elsewhere.
_ENDS = 0x07
# pcapng block types (draft-ietf-opsawg-pcapng section 11.1)
_EPB = 0x00000006
_SPB = 0x00000003


class LaneOwner(Protocol):
    """The layer that reads a connection's data (the HTTP tracker, the TLS
    connection): it says, per direction, what the lane may skip."""

    def lane_sink(self, direction: Direction) -> LaneSink | None: ...

    def lane_pays(self) -> bool:
        """Whether the connection's lanes are worth opening now (module docstring)."""
        ...


class FastLane:
    """Lanes for one pipeline's reassembler. `walker_for` is handed to the reader."""

    def __init__(self, reassembler: TcpReassembler) -> None:
        self._tcp = reassembler
        # By the 12 bytes of addresses and ports as the packet holds them: the
        # lanes of this reader's connections, and those of flows read elsewhere.
        self._lanes: dict[bytes, DirectionLane | ElsewhereLane] = {}
        self._by_connection: dict[int, list[bytes]] = {}
        # Per connection, the (source address, source port) of the directions
        # whose lane is open for data: nothing more for `offer` to do there, so
        # it returns before building the lane key (most of its cost).
        self._settled: dict[int, set[tuple[str, int]]] = {}
        # The connections whose owner said the lane pays (module docstring).
        self._paying: set[int] = set()
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
        self._paying.clear()
        self._off = True
        self.anomalies.append(
            Anomaly(
                AnomalyKind.LANE_INTERNAL_ERROR, f"fast lane switched off after {error!r}", frame
            )
        )

    def offer(self, segment: TcpSegment, connection: int, owner: LaneOwner | None) -> None:
        """After the normal path handled `segment` of `connection`: once the layer
        reading the connection (`owner`; None: not routed yet, or Kerberos)
        says the lane pays, open a lane for the segment's direction, for
        ACK-only frames at first, and for data too once the owner gives a sink
        for that direction. Never raises."""
        if self._off or owner is None:
            return
        settled = self._settled.get(connection)
        if settled is not None and (segment.src, segment.src_port) in settled:
            return
        if connection not in self._paying:
            # Only data changes what a layer would count, so a bare ACK need not ask.
            if not segment.payload or not owner.lane_pays():
                return
            self._paying.add(connection)
        try:
            if ":" in segment.src:
                return
            key = (
                socket.inet_pton(_AF4, segment.src)
                + socket.inet_pton(_AF4, segment.dst)
                + _PORTS.pack(segment.src_port, segment.dst_port)
            )
            entry = self._lanes.get(key)
            # A flow read elsewhere never shares a 4-tuple with one read here
            # (pipeline.Ownership decides by the 4-tuple); were one ever found
            # here, this connection's own lane would replace it.
            if not isinstance(entry, DirectionLane):
                entry = self._tcp.lane(segment.src, segment.src_port, segment.dst, segment.dst_port)
                if entry is None or entry.connection != connection:
                    return
                self._lanes[key] = entry
                self._by_connection.setdefault(connection, []).append(key)
            sink = owner.lane_sink(entry.direction)
            if sink is not None:
                entry.sink = sink
                self._settled.setdefault(connection, set()).add((segment.src, segment.src_port))
        except (OSError, ValueError):
            return  # not an IPv4 address pair: no lane

    def offer_elsewhere(self, segment: TcpSegment) -> None:
        """After the normal path handled `segment` of no connection this
        reader reads (a reader of part of a capture, authtrace/parallel.py):
        open a lane for its direction when the reassembler says the flow is
        read elsewhere (`TcpReassembler.elsewhere`), so that the flow's later
        ACK-only frames (all but its SYN, FIN and RST frames) are taken
        before they are decoded; drop the lanes of a flow read elsewhere that
        has ended (only a SYN, FIN or RST frame, which the lane never takes,
        ends one). Never raises."""
        if self._off:
            return
        try:
            if ":" in segment.src:
                return
            src = socket.inet_pton(_AF4, segment.src)
            dst = socket.inet_pton(_AF4, segment.dst)
            key = src + dst + _PORTS.pack(segment.src_port, segment.dst_port)
            if segment.flags & _ENDS:
                rev = dst + src + _PORTS.pack(segment.dst_port, segment.src_port)
                for side in (key, rev):
                    entry = self._lanes.get(side)
                    if type(entry) is ElsewhereLane and not entry.live:
                        del self._lanes[side]
            if key in self._lanes:
                return
            lane = self._tcp.elsewhere(segment.src, segment.src_port, segment.dst, segment.dst_port)
            if lane is not None:
                self._lanes[key] = lane
        except (OSError, ValueError):
            return  # not an IPv4 address pair: no lane

    def remove(self, connection: int) -> None:
        """The connection closed: its lanes go (a later segment of the 4-tuple is
        a straggler or a new connection, which the normal path decides)."""
        for key in self._by_connection.pop(connection, ()):
            self._lanes.pop(key, None)
        self._settled.pop(connection, None)
        self._paying.discard(connection)

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
            return entry.take(seq, ack, buf, start + 14 + total - size, size, number, ts)

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
        lanes = self._lanes

        def walk(buf: bytes, pos: int, end: int, number: int) -> tuple[int, int, float]:
            """Take records from buf[pos:end] while each qualifies (module docstring)."""
            ts = 0.0
            taken = 0
            # No lane open (none pays yet, or switched off by an internal error,
            # which empties the table): the normal path reads, at the cost of this call.
            if not lanes:
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
        lanes = self._lanes

        def walk(buf: bytes, pos: int, end: int, number: int) -> tuple[int, int, float]:
            """Take packet blocks from buf[pos:end] while each qualifies."""
            ts = 0.0
            taken = 0
            if not lanes:  # none open, or switched off (see the record walker)
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
