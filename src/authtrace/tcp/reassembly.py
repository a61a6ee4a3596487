"""TCP reassembly: TcpSegment values in capture order -> per-connection stream events.

This module owns everything that decides which connection a segment belongs
to, which side is the client, and which bytes each direction delivered.

Invariants:
- bytes are never invented: a hole that cannot be filled becomes a
  `StreamGap` of known length; bytes sent before the capture started are
  simply absent (``syn_seen=False``);
- the first copy of a byte wins (retransmissions and overlaps never replace
  bytes already delivered);
- connection ids are 0-based in order of first packet and follow Wireshark's
  ``tcp.stream``: the same 4-tuple is the same stream, except that a SYN
  (without ACK) whose sequence number differs from the first sequence number
  seen from that endpoint starts a new stream (port reuse);
- memory is bounded by live connections: out-of-order data is held up to
  `max_held_bytes` / `max_held_segments` per direction, and a closed
  connection leaves only a small tombstone (bounded in number) used to
  decide port reuse.

Flows read elsewhere (`owns`). Several readers of one capture (worker
processes, authtrace/parallel.py) each reassemble only the flows they own, yet
must all give every connection the id one reader gives. Which segment opens a
connection depends only on the segments of its own 4-tuple: a 4-tuple not known
yet, or a SYN (without ACK) whose sequence number differs from the first one
seen from that endpoint (`_starts_anew`), whether the connection is live or
closed. So for a flow it does not own the reassembler keeps only its identity
(id, client side, first sequence number of each side: `_Foreign`, the same
fields as a tombstone), decides with the same `_lookup_new` / `_starts_anew`,
and emits one `ConnectionElsewhere` instead of the connection's events. A
foreign flow becomes a tombstone once both FINs or a RST were seen (by then its
first sequence numbers are all known, or frozen as a closed connection's are),
so ids are exactly one reader's while the tombstones (`max_tombstones`) are not
evicted; past that, the order in which the oldest are forgotten may differ.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from authtrace.anomalies import Anomaly, AnomalyKind
from authtrace.net.packets import ACK, FIN, RST, SYN, TcpSegment
from authtrace.strict import internal_error
from authtrace.tcp.events import (
    CloseReason,
    ConnectionClosed,
    ConnectionElsewhere,
    ConnectionOpened,
    Direction,
    Endpoint,
    LaneSink,
    StreamEnd,
    StreamGap,
    TcpEvent,
    make_stream_data,
)
from authtrace.words import agreeing, counted

# RFC 9293 section 3.4: sequence numbers are compared modulo 2**32.
_MASK = 0xFFFFFFFF
_HALF = 0x80000000
# Anomalies kept per reassembler; StreamGap events still report every hole.
MAX_ANOMALIES = 10000

TO_SERVER = Direction.TO_SERVER
TO_CLIENT = Direction.TO_CLIENT

_Key = tuple[str, int, str, int]


class _Half:
    """One direction of a connection (bytes sent by one endpoint)."""

    __slots__ = (
        "base_seq",
        "next_seq",
        "held",
        "held_bytes",
        "fin_seq",
        "fin_done",
        "gap_bytes",
    )

    def __init__(self) -> None:
        # First sequence number seen from this endpoint (Wireshark's base_seq),
        # used only for the port-reuse decision.
        self.base_seq: int | None = None
        # Next sequence number to deliver; None until the direction's first
        # segment fixes where its stream starts.
        self.next_seq: int | None = None
        # Out-of-order segments: (seq, payload, missing, frame, timestamp).
        self.held: list[tuple[int, bytes, int, int, float]] = []
        self.held_bytes = 0
        self.fin_seq: int | None = None
        self.fin_done = False
        self.gap_bytes = 0


class _Connection:
    __slots__ = (
        "id",
        "client_key",
        "to_server",
        "to_client",
        "first_frame",
        "last_frame",
        "last_timestamp",
        "syn_seen",
        "rst_seen",
        "packets",
        "first_fin",
    )

    def __init__(self, cid: int, client_key: _Key, frame: int, syn_seen: bool) -> None:
        self.id = cid
        # The 4-tuple as the client sends it: (client ip, port, server ip, port).
        self.client_key = client_key
        # Two attributes rather than a dict keyed by Direction: enum hashing
        # is a Python-level call and this is the hot path.
        self.to_server = _Half()
        self.to_client = _Half()
        self.first_frame = frame
        self.last_frame = frame
        self.last_timestamp = 0.0
        self.syn_seen = syn_seen
        self.rst_seen = False
        self.packets = 0
        # The side that sent the first FIN (the one that closed the connection).
        self.first_fin: Direction | None = None


class _Tombstone:
    """What a closed connection leaves behind: its id and base sequence numbers."""

    __slots__ = ("id", "client_key", "base_to_server", "base_to_client")

    def __init__(
        self, cid: int, client_key: _Key, base_to_server: int | None, base_to_client: int | None
    ) -> None:
        self.id = cid
        self.client_key = client_key
        self.base_to_server = base_to_server
        self.base_to_client = base_to_client

    @classmethod
    def of(cls, conn: _Connection) -> _Tombstone:
        return cls(conn.id, conn.client_key, conn.to_server.base_seq, conn.to_client.base_seq)


class _Foreign(_Tombstone):
    """A live connection another reader owns: its identity only (see the module
    docstring), which sides sent a FIN (bit 1 to the server, 2 to the client),
    and whether it is still live (False once retired: `ElsewhereLane`)."""

    __slots__ = ("fins", "live")

    def __init__(self, cid: int, client_key: _Key) -> None:
        super().__init__(cid, client_key, None, None)
        self.fins = 0
        self.live = True


def _starts_anew(flags: int, base: int | None, seq: int) -> bool:
    """Whether a segment of a known 4-tuple starts a new connection: a SYN
    without ACK whose sequence number is not the first one seen from its
    sender (port reuse; Wireshark's rule for a new tcp.stream)."""
    return flags & (SYN | ACK) == SYN and base is not None and base != (seq & _MASK)


class DirectionLane:
    """One direction of a live connection, for the fast lane: `take` applies a
    segment whose only effect here is bookkeeping, and refuses any other.
    `sink` is what the layer reading the direction lets the lane skip (None:
    nothing, ACK-only segments only)."""

    __slots__ = ("_conn", "_half", "_other", "connection", "direction", "sink")

    def __init__(self, conn: _Connection, half: _Half, other: _Half, direction: Direction) -> None:
        self._conn = conn
        self._half = half
        self._other = other
        self.connection = conn.id
        self.direction = direction
        self.sink: LaneSink | None = None

    def take(
        self, seq: int, ack: int, buf: bytes, start: int, size: int, frame: int, timestamp: float
    ) -> bool:
        """A segment with ACK and without SYN/FIN/RST, fully captured, whose
        payload is buf[start:start + size]: apply what `feed` would do and
        return True when that is only bookkeeping; else change nothing and
        return False. Only bookkeeping means: its ACK proves no loss the
        other way (`_acked` would report a gap), and a payload starts at the
        direction's next sequence number with nothing held and no FIN
        delivered (`_feed`'s in-order hot path would deliver it at once, as
        one StreamData), which the sink counts. `last_connection` is not set."""
        other_next = self._other.next_seq
        if other_next is not None and 0 < ((ack - other_next) & _MASK) < _HALF:
            return False
        if size:
            half = self._half
            if seq != half.next_seq or half.held or half.fin_done:
                return False
            sink = self.sink
            if sink is None or not sink.count_only(buf, start, size, frame, timestamp):
                return False
            half.next_seq = (seq + size) & _MASK
        conn = self._conn
        conn.last_frame = frame
        conn.last_timestamp = timestamp
        conn.packets += 1
        return True


class ElsewhereLane:
    """One direction of a live flow another reader owns, for the fast lane: a
    segment with ACK and without SYN, FIN or RST changes nothing here once the
    direction's first sequence number is known (`_elsewhere` would only set
    `last_connection`), so `take` accepts it while the flow is live, whatever
    its payload; once the flow is retired (both FINs, a RST, a SYN that starts
    anew) it refuses, and the normal path decides."""

    __slots__ = ("_foreign", "connection")

    def __init__(self, foreign: _Foreign) -> None:
        self._foreign = foreign
        self.connection = foreign.id

    @property
    def live(self) -> bool:
        return self._foreign.live

    def take(
        self, seq: int, ack: int, buf: bytes, start: int, size: int, frame: int, timestamp: float
    ) -> bool:
        """As `DirectionLane.take`, for a segment of a flow read elsewhere."""
        return self._foreign.live


class TcpReassembler:
    """Feed segments in capture order; collect stream events.

    `feed` never raises for any segment value; oddities go to `anomalies`.
    """

    def __init__(
        self,
        max_held_bytes: int = 1 << 20,
        max_held_segments: int = 256,
        max_tombstones: int = 65536,
        first_id: int = 0,
        owns: Callable[[_Key], bool] | None = None,
    ) -> None:
        """first_id: the id of the first connection (several captures analysed
        as separate streams number their connections on, so ids stay unique).
        owns: given a new connection's 4-tuple as its client sends it, whether
        this reassembler reads it (None: every one); asked once per new
        connection, in the order of their ids, so that readers of one capture
        that answer alike for the same questions in the same order agree
        (pipeline.Ownership; module docstring)."""
        self.max_held_bytes = max_held_bytes
        self.max_held_segments = max_held_segments
        self.max_tombstones = max_tombstones
        self.anomalies: list[Anomaly] = []
        # Each live connection is stored under both orientations of its
        # 4-tuple so that a lookup is one dict access.
        self._live: dict[_Key, _Connection] = {}
        self._closed: OrderedDict[_Key, _Tombstone] = OrderedDict()
        # Live flows another reader owns, under both orientations (`owns`).
        self._foreign: dict[_Key, _Foreign] = {}
        self._owns = owns
        self._next_id = first_id
        # The connection id of the segment fed last (Wireshark's tcp.stream of
        # that frame), or None when it belonged to none (dropped straggler).
        self.last_connection: int | None = None

    # -- entry points -------------------------------------------------------

    def feed(self, segment: TcpSegment) -> list[TcpEvent]:
        events: list[TcpEvent] = []
        self.last_connection = None
        try:
            self._feed(segment, events)
        except Exception as error:  # hostile input must never escape this layer
            internal_error(error)
            self.anomalies.append(
                Anomaly(
                    AnomalyKind.TCP_INTERNAL_ERROR, f"segment skipped: {error!r}", segment.frame
                )
            )
        return events

    def finish(self) -> list[TcpEvent]:
        """Close every live connection (END_OF_CAPTURE unless both FINs were
        seen) and forget the closed ones: the reassembler of a finished capture."""
        events: list[TcpEvent] = []
        seen: set[int] = set()
        for conn in list(self._live.values()):
            if conn.id in seen:
                continue
            seen.add(conn.id)
            try:
                both_fin = conn.to_server.fin_seq is not None and conn.to_client.fin_seq is not None
                reason = CloseReason.FIN if both_fin else CloseReason.END_OF_CAPTURE
                closed_by = conn.first_fin if both_fin else None
                self._close(conn, reason, closed_by, conn.last_frame, conn.last_timestamp, events)
            except Exception as error:
                internal_error(error)
                self.anomalies.append(
                    Anomaly(
                        AnomalyKind.TCP_INTERNAL_ERROR, f"close failed: {error!r}", None, conn.id
                    )
                )
        self._live.clear()
        for foreign in self._foreign.values():
            foreign.live = False
        self._foreign.clear()
        # The capture is over: no straggler can come for a closed connection,
        # and its tombstone (about 470 bytes, up to max_tombstones of them)
        # would stay as long as the pipeline does, through the rules and the report.
        self._closed.clear()
        events.sort(key=_close_order)
        return events

    @property
    def next_id(self) -> int:
        """The id the next new connection will get."""
        return self._next_id

    def lane(self, src: str, src_port: int, dst: str, dst_port: int) -> DirectionLane | None:
        """For the pipeline's fast lane (authtrace/lane.py): the direction of the
        live connection this 4-tuple (as its sender writes it) sends on, once its
        first segment went through `feed`; None otherwise."""
        conn = self._live.get((src, src_port, dst, dst_port))
        if conn is None:
            return None
        if (src, src_port, dst, dst_port) == conn.client_key:
            half, other, direction = conn.to_server, conn.to_client, TO_SERVER
        else:
            half, other, direction = conn.to_client, conn.to_server, TO_CLIENT
        if half.base_seq is None:
            return None
        return DirectionLane(conn, half, other, direction)

    def elsewhere(self, src: str, src_port: int, dst: str, dst_port: int) -> ElsewhereLane | None:
        """For the pipeline's fast lane: the direction this 4-tuple (as its
        sender writes it) sends on of a live flow another reader owns, once
        that direction's first sequence number is known; None otherwise."""
        key = (src, src_port, dst, dst_port)
        foreign = self._foreign.get(key)
        if foreign is None:
            return None
        base = foreign.base_to_server if key == foreign.client_key else foreign.base_to_client
        return None if base is None else ElsewhereLane(foreign)

    # -- the per-segment path -------------------------------------------------

    def _feed(self, seg: TcpSegment, events: list[TcpEvent]) -> None:
        key = (seg.src, seg.src_port, seg.dst, seg.dst_port)
        flags = seg.flags
        conn = self._live.get(key)
        if conn is None:
            foreign = self._foreign.get(key)
            if foreign is not None and self._elsewhere(foreign, seg, key, flags):
                return
            conn = self._lookup_new(seg, key, flags, events)
            if conn is None:
                return
        elif flags & (SYN | ACK) == SYN:
            conn = self._maybe_reused(conn, seg, key, events)

        frame = seg.frame
        ts = seg.timestamp
        self.last_connection = conn.id
        conn.last_frame = frame
        conn.last_timestamp = ts
        conn.packets += 1
        if key == conn.client_key:
            direction = TO_SERVER
            half = conn.to_server
            other = conn.to_client
        else:
            direction = TO_CLIENT
            half = conn.to_client
            other = conn.to_server
        seq = seg.seq & _MASK
        if half.base_seq is None:
            half.base_seq = seq

        if flags & SYN:
            conn.syn_seen = True
            if half.next_seq is None:
                half.next_seq = (seq + 1) & _MASK
            seq = (seq + 1) & _MASK  # SYN occupies one sequence number (RFC 9293 3.4)

        payload = seg.payload
        missing = seg.missing if seg.missing > 0 else 0
        if payload or missing:
            if half.next_seq is None:
                half.next_seq = seq
            if seq == half.next_seq and not half.held and not half.fin_done:
                # Hot path: in-order data and nothing held.
                if payload:
                    events.append(make_stream_data(conn.id, direction, payload, frame, frame, ts))
                if missing:
                    self._gap(conn, half, direction, missing, frame, ts, events)
                half.next_seq = (seq + len(payload) + missing) & _MASK
            else:
                self._insert(conn, half, direction, seq, payload, missing, frame, ts, events)

        if flags & FIN:
            end = (seq + len(payload) + missing) & _MASK
            if half.fin_seq is None:
                half.fin_seq = end
                if conn.first_fin is None:
                    conn.first_fin = direction
            if half.next_seq is None:
                half.next_seq = end
            self._check_fin(conn, half, direction, frame, ts, events)

        if flags & ACK and other.next_seq is not None:
            # Only an ACK beyond what the peer's stream delivered matters.
            if 0 < ((seg.ack - other.next_seq) & _MASK) < _HALF:
                self._acked(conn, other, direction, seg.ack & _MASK, frame, ts, events)

        if flags & RST:
            conn.rst_seen = True
            self._close(conn, CloseReason.RST, direction, frame, ts, events)
            return
        # Closed by FIN once both directions delivered everything up to their
        # FIN; a hole before a FIN may still be filled by a retransmission.
        if conn.first_fin is not None and conn.to_server.fin_done and conn.to_client.fin_done:
            self._close(conn, CloseReason.FIN, conn.first_fin, frame, ts, events)

    def _elsewhere(self, foreign: _Foreign, seg: TcpSegment, key: _Key, flags: int) -> bool:
        """A segment of a live flow another reader owns: keep its identity up
        to date and return True, or return False when it starts a new
        connection (then the flow is a tombstone and `_lookup_new` decides)."""
        to_server = key == foreign.client_key
        base = foreign.base_to_server if to_server else foreign.base_to_client
        if _starts_anew(flags, base, seg.seq):
            self._retire(foreign)
            return False
        self.last_connection = foreign.id
        if base is None:
            if to_server:
                foreign.base_to_server = seg.seq & _MASK
            else:
                foreign.base_to_client = seg.seq & _MASK
        if flags & FIN:
            foreign.fins |= 1 if to_server else 2
        if flags & RST or foreign.fins == 3:
            self._retire(foreign)
        return True

    def _retire(self, foreign: _Foreign) -> None:
        """A foreign flow that ended: from now on a tombstone like any other."""
        foreign.live = False
        key = foreign.client_key
        rev = (key[2], key[3], key[0], key[1])
        self._foreign.pop(key, None)
        self._foreign.pop(rev, None)
        self._bury(
            _Tombstone(foreign.id, key, foreign.base_to_server, foreign.base_to_client), key, rev
        )

    def _lookup_new(
        self, seg: TcpSegment, key: _Key, flags: int, events: list[TcpEvent]
    ) -> _Connection | None:
        """A segment of no live connection: a new one, or a straggler of a closed one."""
        tomb = self._closed.get(key)
        if tomb is not None:
            # Wireshark keeps later segments on the old stream unless a SYN
            # with a new initial sequence number shows the 4-tuple was reused.
            base = tomb.base_to_server if key == tomb.client_key else tomb.base_to_client
            if not _starts_anew(flags, base, seg.seq):
                self.last_connection = tomb.id
                return None
            self._forget(tomb)
        cid = self._next_id
        self._next_id += 1
        rev = (seg.dst, seg.dst_port, seg.src, seg.src_port)
        if flags & SYN:
            client_key = key if not flags & ACK else rev
        elif seg.src_port != seg.dst_port:
            # Capture started mid-connection: clients use ephemeral (higher) ports.
            client_key = key if seg.src_port > seg.dst_port else rev
        else:
            client_key = key
        if self._owns is not None and not self._owns(client_key):
            foreign = _Foreign(cid, client_key)
            self._foreign[key] = foreign
            self._foreign[rev] = foreign
            events.append(ConnectionElsewhere(cid, seg.frame))
            self._elsewhere(foreign, seg, key, flags)
            return None
        conn = _Connection(cid, client_key, seg.frame, bool(flags & SYN))
        self._live[key] = conn
        self._live[rev] = conn
        client = Endpoint(client_key[0], client_key[1])
        server = Endpoint(client_key[2], client_key[3])
        events.append(
            ConnectionOpened(cid, client, server, seg.frame, seg.timestamp, bool(flags & SYN))
        )
        return conn

    def _maybe_reused(
        self, conn: _Connection, seg: TcpSegment, key: _Key, events: list[TcpEvent]
    ) -> _Connection:
        """A SYN on a live connection: a retransmission, or a new connection (port reuse)."""
        direction = TO_SERVER if key == conn.client_key else TO_CLIENT
        base = (conn.to_server if direction is TO_SERVER else conn.to_client).base_seq
        if not _starts_anew(seg.flags, base, seg.seq):
            return conn
        self.anomalies.append(
            Anomaly(
                AnomalyKind.TCP_PORT_REUSED,
                "a new SYN reused the 4-tuple of a connection that was still open",
                seg.frame,
                conn.id,
            )
        )
        self._close(conn, CloseReason.PORT_REUSED, direction, seg.frame, seg.timestamp, events)
        tomb = self._closed.get(key)
        if tomb is not None:
            self._forget(tomb)
        new = self._lookup_new(seg, key, seg.flags, events)
        return new if new is not None else conn

    # -- ordering, holes and gaps ------------------------------------------------

    def _insert(
        self,
        conn: _Connection,
        half: _Half,
        direction: Direction,
        seq: int,
        payload: bytes,
        missing: int,
        frame: int,
        ts: float,
        events: list[TcpEvent],
    ) -> None:
        nxt = half.next_seq
        assert nxt is not None
        diff = (seq - nxt) & _MASK
        if diff >= _HALF:
            # Starts before what was delivered: a retransmission or an overlap.
            tail = _new_tail(diff, payload, missing)
            if tail is None:
                return
            payload, missing = tail
            seq = nxt
            diff = 0
        if diff == 0 and not half.fin_done:
            self._deliver(conn, half, direction, payload, missing, frame, frame, ts, events)
            if half.held:
                self._drain(conn, half, direction, frame, ts, events)
            return
        if half.fin_done:
            return  # data after the FIN: nothing more belongs to this stream
        half.held.append((seq, payload, missing, frame, ts))
        half.held_bytes += len(payload)
        if half.held_bytes > self.max_held_bytes or len(half.held) > self.max_held_segments:
            # Give up on the hole: report it and carry on after it.
            self._skip_hole(conn, half, direction, frame, ts, events)

    def _deliver(
        self,
        conn: _Connection,
        half: _Half,
        direction: Direction,
        payload: bytes,
        missing: int,
        first_frame: int,
        frame: int,
        ts: float,
        events: list[TcpEvent],
    ) -> None:
        assert half.next_seq is not None
        if payload:
            events.append(make_stream_data(conn.id, direction, payload, first_frame, frame, ts))
        if missing:
            self._gap(conn, half, direction, missing, frame, ts, events)
        half.next_seq = (half.next_seq + len(payload) + missing) & _MASK
        self._check_fin(conn, half, direction, frame, ts, events)

    def _drain(
        self,
        conn: _Connection,
        half: _Half,
        direction: Direction,
        frame: int,
        ts: float,
        events: list[TcpEvent],
        after_hole: bool = False,
    ) -> None:
        """Deliver every held segment that has become contiguous.

        A segment that fills a hole completes the held bytes after it, so they
        are delivered at its frame (where Wireshark completes the reassembly).
        After a hole given up on (`after_hole`), nothing completed them: each
        held segment is delivered at its own frame and time, where Wireshark
        shows what it carries."""
        progress = True
        while progress and half.held and not half.fin_done:
            progress = False
            start = half.next_seq
            assert start is not None
            keep: list[tuple[int, bytes, int, int, float]] = []
            # Lowest start first; among equal starts the earliest copy first.
            ordered = sorted(
                enumerate(half.held), key=lambda item: ((item[1][0] - start) & _MASK, item[0])
            )
            for _, entry in ordered:
                seq, payload, missing, seg_frame, _ = entry
                nxt = half.next_seq
                assert nxt is not None
                diff = (seq - nxt) & _MASK
                if diff >= _HALF:
                    tail = _new_tail(diff, payload, missing)
                    if tail is None:
                        continue
                    payload, missing = tail
                    diff = 0
                if diff == 0 and not half.fin_done:
                    at, at_ts = (seg_frame, entry[4]) if after_hole else (frame, ts)
                    self._deliver(
                        conn, half, direction, payload, missing, seg_frame, at, at_ts, events
                    )
                    progress = True
                elif not half.fin_done:
                    keep.append(entry)
            half.held = keep
            half.held_bytes = sum(len(entry[1]) for entry in keep)

    def _skip_hole(
        self,
        conn: _Connection,
        half: _Half,
        direction: Direction,
        frame: int,
        ts: float,
        events: list[TcpEvent],
    ) -> None:
        """Report the hole before the lowest held segment as lost and move past it."""
        nxt = half.next_seq
        if not half.held or nxt is None:
            return
        lowest = min((entry[0] - nxt) & _MASK for entry in half.held)
        self._gap(conn, half, direction, lowest, frame, ts, events)
        half.next_seq = (nxt + lowest) & _MASK
        self._drain(conn, half, direction, frame, ts, events, after_hole=True)

    def _acked(
        self,
        conn: _Connection,
        half: _Half,
        ack_direction: Direction,
        ack: int,
        frame: int,
        ts: float,
        events: list[TcpEvent],
    ) -> None:
        """The peer acknowledged bytes of `half` the capture never delivered: they
        were lost by the capture (not by the network, or they would not be ACKed)."""
        nxt = half.next_seq
        assert nxt is not None
        ahead = (ack - nxt) & _MASK
        if ahead == 0 or ahead >= _HALF or half.fin_done:
            return
        if half.fin_seq is not None and ack == (half.fin_seq + 1) & _MASK:
            ahead -= 1  # the FIN's own sequence number
            ack = half.fin_seq
            if ahead == 0:
                return
        direction = TO_CLIENT if ack_direction is TO_SERVER else TO_SERVER
        while True:
            nxt = half.next_seq
            assert nxt is not None
            remaining = (ack - nxt) & _MASK
            if remaining == 0 or remaining >= _HALF or half.fin_done:
                return
            starts = [(entry[0] - nxt) & _MASK for entry in half.held]
            lowest = min(starts) if starts else remaining
            hole = min(lowest, remaining)
            if hole:
                self._gap(conn, half, direction, hole, frame, ts, events)
                half.next_seq = (nxt + hole) & _MASK
                self._check_fin(conn, half, direction, frame, ts, events)
            if not half.held:
                return
            self._drain(conn, half, direction, frame, ts, events, after_hole=bool(hole))

    def _gap(
        self,
        conn: _Connection,
        half: _Half,
        direction: Direction,
        length: int,
        frame: int,
        ts: float,
        events: list[TcpEvent],
    ) -> None:
        half.gap_bytes += length
        events.append(StreamGap(conn.id, direction, length, frame, ts))
        if len(self.anomalies) >= MAX_ANOMALIES:
            return  # a capture full of loss must not grow this list without bound
        self.anomalies.append(
            Anomaly(
                AnomalyKind.TCP_GAP,
                f"{counted(length, 'byte')} {direction.value} {agreeing(length, 'was')} not "
                "captured",
                frame,
                conn.id,
            )
        )

    @staticmethod
    def _check_fin(
        conn: _Connection,
        half: _Half,
        direction: Direction,
        frame: int,
        ts: float,
        events: list[TcpEvent],
    ) -> None:
        if half.fin_seq is not None and not half.fin_done and half.next_seq == half.fin_seq:
            half.fin_done = True
            half.held = []
            half.held_bytes = 0
            events.append(StreamEnd(conn.id, direction, frame, ts))

    # -- closing ------------------------------------------------------------------

    def _close(
        self,
        conn: _Connection,
        reason: CloseReason,
        closed_by: Direction | None,
        frame: int,
        ts: float,
        events: list[TcpEvent],
    ) -> None:
        # Whatever is still held is delivered after its hole: the hole will
        # never be filled now.
        for direction, half in ((TO_SERVER, conn.to_server), (TO_CLIENT, conn.to_client)):
            guard = 0
            while half.held and not half.fin_done and guard < self.max_held_segments + 1:
                guard += 1
                self._skip_hole(conn, half, direction, frame, ts, events)
            if half.fin_seq is not None and not half.fin_done and half.next_seq is not None:
                # Bytes announced by the FIN's position that never arrived.
                short = (half.fin_seq - half.next_seq) & _MASK
                if 0 < short < _HALF:
                    self._gap(conn, half, direction, short, frame, ts, events)
                    half.next_seq = half.fin_seq
                    half.fin_done = True
                    events.append(StreamEnd(conn.id, direction, frame, ts))
        fin_seen = conn.to_server.fin_seq is not None or conn.to_client.fin_seq is not None
        events.append(
            ConnectionClosed(
                connection=conn.id,
                reason=reason,
                closed_by=closed_by,
                frame=frame,
                timestamp=ts,
                first_frame=conn.first_frame,
                last_frame=conn.last_frame,
                syn_seen=conn.syn_seen,
                fin_seen=fin_seen,
                rst_seen=conn.rst_seen,
                gap_bytes=conn.to_server.gap_bytes + conn.to_client.gap_bytes,
                packets=conn.packets,
            )
        )
        key = conn.client_key
        rev = (key[2], key[3], key[0], key[1])
        if self._live.get(key) is conn:
            del self._live[key]
        if self._live.get(rev) is conn:
            del self._live[rev]
        self._bury(_Tombstone.of(conn), key, rev)

    def _bury(self, tomb: _Tombstone, key: _Key, rev: _Key) -> None:
        self._closed[key] = tomb
        self._closed[rev] = tomb
        self._closed.move_to_end(key)
        self._closed.move_to_end(rev)
        while len(self._closed) > 2 * self.max_tombstones:
            self._closed.popitem(last=False)

    def _forget(self, tomb: _Tombstone) -> None:
        key = tomb.client_key
        self._closed.pop(key, None)
        self._closed.pop((key[2], key[3], key[0], key[1]), None)


def _close_order(event: TcpEvent) -> tuple[int, int]:
    # finish(): the data flushed for a connection stays before its close.
    return (event.connection, 1 if isinstance(event, ConnectionClosed) else 0)


def _new_tail(diff: int, payload: bytes, missing: int) -> tuple[bytes, int] | None:
    """The part of a segment that starts `_MASK + 1 - diff` bytes before what was
    already delivered and lies beyond it (the first copy of a byte wins), with
    the count of its bytes the capture did not hold; None when nothing is new."""
    behind = _MASK + 1 - diff
    if behind >= len(payload) + missing:
        return None
    if behind >= len(payload):
        return b"", missing - (behind - len(payload))
    return payload[behind:], missing
