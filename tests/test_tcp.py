"""TCP reassembly: ordering, holes, connection ids and closes, read like traces.

Segments are built directly as TcpSegment values (the readers are another
layer); the oracle test compares connection ids with tshark's tcp.stream on
every capture in captures/ and ../shared/captures.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authtrace.net.packets import ACK, FIN, PSH, RST, SYN, TcpSegment
from authtrace.tcp.events import (
    CloseReason,
    ConnectionClosed,
    ConnectionOpened,
    Direction,
    StreamData,
    StreamEnd,
    StreamGap,
)
from authtrace.tcp.reassembly import TcpReassembler

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "captures"
C, S = "192.0.2.10", "198.51.100.20"


class Trace:
    """Writes segments of one connection with real sequence numbers."""

    def __init__(self, client_isn: int = 1000, server_isn: int = 5000, cport: int = 50000):
        self.frame = 0
        self.cseq = client_isn
        self.sseq = server_isn
        self.cport = cport
        self.segments: list[TcpSegment] = []

    def seg(self, from_client: bool, flags: int, payload: bytes = b"", **kw: int) -> TcpSegment:
        self.frame += 1
        if from_client:
            src, dst, sp, dp, seq, ack = C, S, self.cport, 80, self.cseq, self.sseq
        else:
            src, dst, sp, dp, seq, ack = S, C, 80, self.cport, self.sseq, self.cseq
        seq = kw.get("seq", seq) & 0xFFFFFFFF
        segment = TcpSegment(
            self.frame,
            float(self.frame),
            src,
            dst,
            sp,
            dp,
            seq,
            ack & 0xFFFFFFFF,
            flags,
            payload,
            kw.get("missing", 0),
        )
        self.segments.append(segment)
        return segment

    def handshake(self) -> None:
        self.seg(True, SYN)
        self.cseq += 1
        self.seg(False, SYN | ACK)
        self.sseq += 1
        self.seg(True, ACK)

    def data(self, from_client: bool, payload: bytes, advance: bool = True) -> TcpSegment:
        segment = self.seg(from_client, PSH | ACK, payload)
        if advance:
            if from_client:
                self.cseq = (self.cseq + len(payload)) & 0xFFFFFFFF
            else:
                self.sseq = (self.sseq + len(payload)) & 0xFFFFFFFF
        return segment

    def fin(self, from_client: bool) -> None:
        self.seg(from_client, FIN | ACK)
        if from_client:
            self.cseq += 1
        else:
            self.sseq += 1


def run(segments: list[TcpSegment], **kw: int) -> tuple[list[object], TcpReassembler]:
    reassembler = TcpReassembler(**kw)
    events: list[object] = []
    for segment in segments:
        events += reassembler.feed(segment)
    events += reassembler.finish()
    return events, reassembler


def stream_bytes(events: list[object], direction: Direction) -> bytes:
    return b"".join(
        e.data for e in events if isinstance(e, StreamData) and e.direction is direction
    )


def test_in_order_exchange_fin_close_and_stream_ends() -> None:
    t = Trace()
    t.handshake()
    t.data(True, b"GET / HTTP/1.1\r\n\r\n")
    t.data(False, b"HTTP/1.1 200 OK\r\n")
    t.data(False, b"Content-Length: 0\r\n\r\n")
    t.fin(False)
    t.fin(True)
    events, _ = run(t.segments)
    opened = events[0]
    assert isinstance(opened, ConnectionOpened) and opened.syn_seen
    assert (opened.client.ip, opened.client.port, opened.server.port) == (C, 50000, 80)
    assert stream_bytes(events, Direction.TO_SERVER) == b"GET / HTTP/1.1\r\n\r\n"
    assert (
        stream_bytes(events, Direction.TO_CLIENT) == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    )
    ends = [e for e in events if isinstance(e, StreamEnd)]
    assert [(e.direction, e.frame) for e in ends] == [
        (Direction.TO_CLIENT, 7),
        (Direction.TO_SERVER, 8),
    ]
    closed = [e for e in events if isinstance(e, ConnectionClosed)]
    assert len(closed) == 1
    assert closed[0].reason is CloseReason.FIN and closed[0].closed_by is Direction.TO_CLIENT
    assert closed[0].frame == 8 and closed[0].packets == 8 and closed[0].gap_bytes == 0


def test_out_of_order_is_held_and_delivered_when_the_hole_fills() -> None:
    t = Trace()
    t.handshake()
    first = t.data(True, b"AAAA")
    second = t.data(True, b"BBBB")
    t.segments[-2:] = [second, first]  # capture order: BBBB then AAAA
    events, _ = run(t.segments)
    data = [e for e in events if isinstance(e, StreamData)]
    assert [d.data for d in data] == [b"AAAA", b"BBBB"]
    # BBBB was carried by its own frame but only became deliverable with AAAA's.
    assert (data[1].first_frame, data[1].frame) == (second.frame, first.frame)


def test_retransmission_and_overlap_first_copy_wins() -> None:
    t = Trace()
    t.handshake()
    start = t.cseq
    t.data(True, b"0123456789")
    t.seg(True, PSH | ACK, b"XXXXXXXX", seq=start + 5)  # overlaps 5..9, adds 3 new bytes
    t.seg(True, PSH | ACK, b"0123456789", seq=start)  # plain retransmission
    events, reassembler = run(t.segments)
    assert stream_bytes(events, Direction.TO_SERVER) == b"0123456789XXX"
    assert not [e for e in events if isinstance(e, StreamGap)]
    assert not reassembler.anomalies


def test_sequence_wraparound() -> None:
    t = Trace(client_isn=0xFFFFFFF0)
    t.handshake()
    chunks = [b"a" * 10, b"b" * 10, b"c" * 10]
    for chunk in chunks:
        t.data(True, chunk)
    # swap the last two to exercise holding across the wrap
    t.segments[-2], t.segments[-1] = t.segments[-1], t.segments[-2]
    events, _ = run(t.segments)
    assert stream_bytes(events, Direction.TO_SERVER) == b"".join(chunks)


def test_acked_but_never_captured_bytes_become_a_gap_of_known_length() -> None:
    t = Trace()
    t.handshake()
    t.data(False, b"HTTP/1.1 200 OK\r\n")
    t.data(False, b"L" * 100, advance=True)
    lost = t.segments.pop()  # the capture never saw it
    t.frame -= 1
    t.data(False, b"tail")
    t.seg(True, ACK)  # the client acknowledges everything, including the lost bytes
    events, reassembler = run(t.segments)
    gaps = [e for e in events if isinstance(e, StreamGap)]
    assert [(g.direction, g.length) for g in gaps] == [(Direction.TO_CLIENT, len(lost.payload))]
    assert stream_bytes(events, Direction.TO_CLIENT) == b"HTTP/1.1 200 OK\r\ntail"
    assert any(a.kind == "tcp-gap" for a in reassembler.anomalies)


def test_snaplen_missing_bytes_are_a_gap_not_invented() -> None:
    t = Trace()
    t.handshake()
    t.seg(True, PSH | ACK, b"GET /", missing=95)
    t.cseq += 100
    t.data(True, b"next")
    events, _ = run(t.segments)
    kinds = [(type(e).__name__, getattr(e, "length", None)) for e in events[1:]]
    assert kinds[:3] == [("StreamData", None), ("StreamGap", 95), ("StreamData", None)]
    assert stream_bytes(events, Direction.TO_SERVER) == b"GET /next"


def test_hold_limit_gives_up_on_the_hole() -> None:
    t = Trace()
    t.handshake()
    t.data(True, b"h" * 50)
    t.segments.pop()  # lost, and nobody ACKs it
    t.frame -= 1
    for _ in range(5):
        t.data(True, b"x" * 10)
    events, _ = run(t.segments, max_held_segments=3)
    gaps = [e for e in events if isinstance(e, StreamGap)]
    assert gaps and gaps[0].length == 50
    assert stream_bytes(events, Direction.TO_SERVER) == b"x" * 50


def test_retransmission_after_both_fins_still_fills_the_hole() -> None:
    t = Trace()
    t.handshake()
    t.data(False, b"head ")
    late = t.data(False, b"lost-then-resent ")
    t.segments.pop()
    t.frame -= 1
    t.fin(False)  # nothing is held: the hole sits right before the FIN
    t.fin(True)  # the client's FIN acks only what it got: no proof of loss yet
    t.segments[-1] = TcpSegment(
        t.frame, float(t.frame), C, S, 50000, 80, t.cseq - 1, late.seq, FIN | ACK, b""
    )
    t.frame += 1
    t.segments.append(
        TcpSegment(
            t.frame, float(t.frame), S, C, 80, 50000, late.seq, t.cseq, PSH | ACK, late.payload
        )
    )
    events, _ = run(t.segments)
    assert stream_bytes(events, Direction.TO_CLIENT) == b"head lost-then-resent "
    assert not [e for e in events if isinstance(e, StreamGap)]
    closed = [e for e in events if isinstance(e, ConnectionClosed)]
    assert [(c.reason, c.frame) for c in closed] == [(CloseReason.FIN, t.frame)]


def test_rst_closes_with_the_side_that_sent_it() -> None:
    t = Trace()
    t.handshake()
    t.data(True, b"hello")
    t.seg(False, RST | ACK)
    events, _ = run(t.segments)
    closed = [e for e in events if isinstance(e, ConnectionClosed)]
    assert len(closed) == 1
    assert closed[0].reason is CloseReason.RST and closed[0].closed_by is Direction.TO_CLIENT
    assert closed[0].rst_seen


def test_end_of_capture_closes_open_connections() -> None:
    t = Trace()
    t.handshake()
    t.data(True, b"partial")
    events, _ = run(t.segments)
    closed = [e for e in events if isinstance(e, ConnectionClosed)]
    assert [c.reason for c in closed] == [CloseReason.END_OF_CAPTURE]


def test_port_reuse_new_isn_starts_a_new_connection_id() -> None:
    first = Trace(client_isn=100)
    first.handshake()
    first.data(True, b"one")
    first.fin(True)
    first.fin(False)
    first.seg(True, ACK)  # straggler after the close stays on connection 0
    second = Trace(client_isn=999999)
    second.frame = first.frame
    second.seg(True, SYN)  # retransmitted below with the same ISN
    second.seg(True, SYN)
    segments = first.segments + second.segments
    reassembler = TcpReassembler()
    ids = []
    opened = []
    for segment in segments:
        opened += [e for e in reassembler.feed(segment) if isinstance(e, ConnectionOpened)]
        ids.append(reassembler.last_connection)
    assert ids == [0] * len(first.segments) + [1, 1]
    assert [o.connection for o in opened] == [0, 1]


def test_new_isn_on_an_open_connection_closes_it_as_port_reused() -> None:
    t = Trace(client_isn=100)
    t.handshake()
    t.data(True, b"one")
    t.seg(True, SYN, seq=123456)
    events, _ = run(t.segments)
    closed = [e for e in events if isinstance(e, ConnectionClosed)]
    assert closed[0].reason is CloseReason.PORT_REUSED and closed[0].connection == 0
    assert [e.connection for e in events if isinstance(e, ConnectionOpened)] == [0, 1]


def test_without_syn_the_higher_port_is_the_client_unless_syn_ack_says_otherwise() -> None:
    t = Trace(cport=50000)
    t.seg(False, PSH | ACK, b"HTTP/1.1 200 OK\r\n")  # first packet from the server (port 80)
    events, _ = run(t.segments)
    opened = events[0]
    assert isinstance(opened, ConnectionOpened) and not opened.syn_seen
    assert opened.client.port == 50000
    t2 = Trace(cport=50000)
    t2.seg(False, SYN | ACK)
    events, _ = run(t2.segments)
    assert events[0].client.port == 50000 and events[0].syn_seen  # type: ignore[attr-defined]


def test_garbage_segments_never_raise() -> None:
    reassembler = TcpReassembler()
    weird = [
        TcpSegment(1, 0.0, C, S, 1, 2, -5, -1, 0xFFFF, b"x"),
        TcpSegment(2, 0.0, C, S, 1, 2, 2**40, 0, FIN | SYN | RST, b"", missing=-3),
        TcpSegment(3, 0.0, S, C, 2, 1, 0, 2**33, ACK, b"y" * 10, missing=10**6),
    ]
    for segment in weird:
        reassembler.feed(segment)
    reassembler.finish()


# -- properties -------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    payload=st.binary(min_size=1, max_size=600),
    cuts=st.lists(st.integers(min_value=1, max_value=599), max_size=8),
    order=st.randoms(use_true_random=False),
    duplicates=st.lists(st.integers(min_value=0, max_value=20), max_size=4),
    isn=st.integers(min_value=0, max_value=0xFFFFFFFF),
)
def test_delivered_bytes_do_not_depend_on_order_or_duplication(
    payload: bytes, cuts: list[int], order: object, duplicates: list[int], isn: int
) -> None:
    t = Trace(client_isn=isn)
    t.handshake()
    bounds = sorted({c for c in cuts if c < len(payload)} | {0, len(payload)})
    data_segments = []
    for start, end in zip(bounds, bounds[1:], strict=False):
        data_segments.append(t.data(True, payload[start:end]))
    head = t.segments[:3]
    shuffled = list(data_segments)
    order.shuffle(shuffled)  # type: ignore[attr-defined]
    for index in duplicates:
        shuffled.append(data_segments[index % len(data_segments)])
    events, _ = run(head + shuffled)
    assert stream_bytes(events, Direction.TO_SERVER) == payload
    assert not [e for e in events if isinstance(e, StreamGap)]


# -- oracle: connection ids against tshark's tcp.stream ------------------------------------


def _captures() -> list[Path]:
    found = sorted((REPO / "captures").rglob("*.pcap*"))
    if SHARED.is_dir():
        found += sorted(
            p for p in SHARED.rglob("*") if p.suffix in {".pcap", ".pcapng", ".cap", ".gz"}
        )
    return [p for p in found if p.is_file()]


# A NetMon capture of ETW event records: no link-layer frames, no TCP for either tool
# (and scapy, which stands in for the readers here, cannot read it).
_NOT_FRAMES = {"examples__PktMon.cap"}


@pytest.mark.oracle
@pytest.mark.parametrize(
    "capture",
    [p for p in _captures() if p.name not in _NOT_FRAMES],  # nothing to compare there
    ids=lambda p: p.name[:60],
)
def test_connection_ids_match_tshark_tcp_stream(capture: Path) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    from _tcp_segments import read_segments, tshark_rows

    expected = {}
    for number, stream, _, _, icmp, icmpv6 in tshark_rows(capture):
        # ICMP errors quote a TCP header; tshark gives those quotes a tcp.stream,
        # the net layer does not hand them to reassembly.
        if stream and not icmp and not icmpv6:
            expected[int(number)] = int(stream.split(",")[0])
    reassembler = TcpReassembler()
    ours = {}
    for segment in read_segments(capture):
        reassembler.feed(segment)
        ours[segment.frame] = reassembler.last_connection
    # tshark numbers a few frames the net layer rejects (a TCP header length
    # under 20): those never reach reassembly, so only frames it got are judged,
    # and every one of them must be a frame tshark put on a stream.
    assert set(ours) <= set(expected)
    assert ours == {frame: expected[frame] for frame in ours}
    # Nearly every frame tshark numbers must have reached reassembly.
    assert len(expected) - len(ours) <= max(2, len(expected) // 100)
