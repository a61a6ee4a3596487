"""HTTP/2 read from byte streams (src/authtrace/http2/): frames, HPACK, streams as
Exchanges; the state lost at a capture start or a gap is "not decodable", never
"malformed"; hostile input gives anomalies, never a traceback; how the bytes are
cut into segments changes nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts" / "captures"))

import h2kit  # noqa: E402

from authtrace.anomalies import AnomalyKind  # noqa: E402
from authtrace.http.messages import Exchange  # noqa: E402
from authtrace.http2 import frames as fr  # noqa: E402
from authtrace.http2.connection import Http2Connection  # noqa: E402
from authtrace.http2.headers import MAX_HEADER_LIST  # noqa: E402
from authtrace.http2.model import ErrorCode, Side, error_name  # noqa: E402
from authtrace.tcp.events import (  # noqa: E402
    CloseReason,
    ConnectionClosed,
    Direction,
    StreamData,
    StreamEvent,
    StreamGap,
)

UP, DOWN = Direction.TO_SERVER, Direction.TO_CLIENT
NTLM_NEGOTIATE = "NTLM TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAKAGFKAAAADw=="


def data(direction: Direction, payload: bytes, frame: int) -> StreamData:
    return StreamData(0, direction, payload, frame, frame, float(frame))


def closed(frame: int) -> ConnectionClosed:
    return ConnectionClosed(
        0, CloseReason.FIN, None, frame, float(frame), 1, frame, True, True, False, 0, frame
    )


def run(events: list[StreamEvent], **kwargs: object) -> tuple[list[Exchange], Http2Connection]:
    connection = Http2Connection(0, **kwargs)  # type: ignore[arg-type]
    out: list[Exchange] = []
    for event in events:
        out += connection.feed(event)
    out += connection.feed(closed(999))
    return out, connection


def two_requests() -> tuple[bytes, bytes]:
    """A client's and a server's bytes: an anonymous GET answered 401, then the
    NTLM NEGOTIATE on stream 3 answered 401 with a challenge (dynamic table used:
    the second blocks refer to entries the first ones added)."""
    client, server = h2kit.Endpoint(), h2kit.Endpoint()
    up = (
        h2kit.PREFACE
        + h2kit.settings((1, 4096))
        + client.headers(1, h2kit.request_fields("GET", "/", "web01"), end_stream=True)
        + client.headers(
            3,
            h2kit.request_fields("GET", "/", "web01", [("authorization", NTLM_NEGOTIATE)]),
            end_stream=True,
        )
    )
    down = (
        h2kit.settings()
        + server.headers(1, h2kit.response_fields(401, [("www-authenticate", "NTLM")]))
        + h2kit.data(1, b"denied")
        + server.headers(3, h2kit.response_fields(401, [("www-authenticate", "NTLM TlRM")]))
        + h2kit.data(3, b"", end_stream=True)
    )
    return up, down


def test_streams_become_exchanges_in_stream_order() -> None:
    up, down = two_requests()
    exchanges, connection = run([data(UP, up, 4), data(DOWN, down, 5)])
    assert [e.index for e in exchanges] == [0, 1]
    first, second = exchanges
    assert first.request is not None and first.response is not None
    assert (first.request.method, first.request.uri, first.request.version) == (
        "GET",
        "/",
        "HTTP/2",
    )
    assert first.request.host == "web01"  # :authority stands for Host (RFC 9113 8.3.1)
    assert first.response.status == 401 and first.response.body_size == len(b"denied")
    assert second.request is not None and second.request.header("authorization") == NTLM_NEGOTIATE
    assert second.response is not None and second.response.header("www-authenticate") == "NTLM TlRM"
    assert [e.stream.id for e in exchanges if e.stream] == [1, 3]
    assert first.stream is not None and first.stream.request_frame == 4
    assert first.stream.response_frame == 5
    assert connection.anomalies == []


def test_a_stream_that_finishes_first_waits_for_the_ones_opened_before_it() -> None:
    client, server = h2kit.Endpoint(), h2kit.Endpoint()
    up = h2kit.PREFACE + client.headers(1, h2kit.request_fields("GET", "/a", "w"), True)
    up += client.headers(3, h2kit.request_fields("GET", "/b", "w"), True)
    conn = Http2Connection(0)
    assert conn.feed(data(UP, up, 4)) == []
    answer_b = server.headers(3, h2kit.response_fields(200), end_stream=True)
    assert conn.feed(data(DOWN, answer_b, 5)) == []  # stream 1 still open
    answer_a = server.headers(1, h2kit.response_fields(204), end_stream=True)
    out = conn.feed(data(DOWN, answer_a, 6))
    assert [(e.request.uri, e.response.status) for e in out if e.request and e.response] == [
        ("/a", 204),
        ("/b", 200),
    ]


def test_rst_stream_http_1_1_required_is_kept_with_its_name_and_frame() -> None:
    client = h2kit.Endpoint()
    up = h2kit.PREFACE + client.headers(1, h2kit.request_fields("GET", "/", "iis"), True)
    down = h2kit.settings() + h2kit.rst_stream(1, h2kit.HTTP_1_1_REQUIRED)
    exchanges, _ = run([data(UP, up, 4), data(DOWN, down, 6)])
    (exchange,) = exchanges
    assert exchange.response is None and exchange.stream is not None
    reset = exchange.stream.reset
    assert reset is not None
    assert (reset.code, reset.name, reset.by, reset.frame) == (
        0xD,
        "HTTP_1_1_REQUIRED",
        Side.SERVER,
        6,
    )


def test_error_codes_keep_their_number_and_unknown_ones_say_so() -> None:
    assert error_name(0xD) == ErrorCode.HTTP_1_1_REQUIRED.name
    assert error_name(0x77) == "UNKNOWN (0x77)"


def test_padded_priority_and_continuation_frames_decode() -> None:
    client, server = h2kit.Endpoint(), h2kit.Endpoint()
    long_header = [("authorization", "Negotiate " + "A" * 3000)]
    up = h2kit.PREFACE + client.headers(
        1,
        h2kit.request_fields("POST", "/upload", "w", long_header),
        pad=7,
        priority=True,
        split=1000,
    )
    up += h2kit.data(1, b"x" * 100, pad=20)
    down = server.headers(1, h2kit.response_fields(200), end_stream=True)
    exchanges, connection = run([data(UP, up, 4), data(DOWN, down, 5)])
    (exchange,) = exchanges
    assert exchange.request is not None
    assert exchange.request.header("authorization") == long_header[0][1]
    assert exchange.request.body_size == 100  # padding is not body
    assert connection.anomalies == []


def test_interim_responses_and_server_push() -> None:
    client, server = h2kit.Endpoint(), h2kit.Endpoint()
    up = h2kit.PREFACE + client.headers(1, h2kit.request_fields("GET", "/", "w"), True)
    down = (
        server.headers(1, h2kit.response_fields(103, [("link", "</s.css>")]))
        + server.push_promise(1, 2, h2kit.request_fields("GET", "/s.css", "w"))
        + server.headers(1, h2kit.response_fields(200), end_stream=True)
        + server.headers(2, h2kit.response_fields(200), end_stream=True)
    )
    exchanges, _ = run([data(UP, up, 4), data(DOWN, down, 5)])
    main, pushed = exchanges
    assert [r.status for r in main.interim] == [103]
    assert main.response is not None and main.response.status == 200
    assert pushed.request is not None and pushed.request.uri == "/s.css"
    assert pushed.stream is not None and pushed.stream.pushed_by == 1


def test_a_capture_started_inside_the_connection_lists_streams_as_not_decodable() -> None:
    client, server = h2kit.Endpoint(), h2kit.Endpoint()
    # Blocks that lean on the dynamic table built before the capture began.
    client.block(h2kit.request_fields("GET", "/", "w", [("authorization", NTLM_NEGOTIATE)]))
    server.block(h2kit.response_fields(401, [("www-authenticate", "NTLM")]))
    up = client.headers(
        5, h2kit.request_fields("GET", "/", "w", [("authorization", NTLM_NEGOTIATE)]), True
    )
    down = server.headers(5, h2kit.response_fields(401, [("www-authenticate", "NTLM")]), True)
    exchanges, connection = run([data(UP, up, 10), data(DOWN, down, 11)], start_unseen=True)
    (exchange,) = exchanges
    assert exchange.request is None and exchange.response is None  # nothing invented
    assert exchange.stream is not None and exchange.stream.not_decodable
    assert (exchange.stream.request_frame, exchange.stream.response_frame) == (10, 11)
    kinds = {a.kind for a in connection.anomalies}
    assert AnomalyKind.HTTP2_HEADERS_NOT_DECODABLE in kinds
    assert AnomalyKind.HTTP2_FRAME_MALFORMED not in kinds


def test_a_gap_inside_data_keeps_hpack_and_a_gap_over_frames_loses_it() -> None:
    client, server = h2kit.Endpoint(), h2kit.Endpoint()
    up = h2kit.PREFACE + client.headers(1, h2kit.request_fields("GET", "/", "w"), True)
    up2 = client.headers(3, h2kit.request_fields("GET", "/", "w"), True)
    head = server.headers(1, h2kit.response_fields(200))
    body = h2kit.data(1, b"y" * 1000)
    after = server.headers(3, h2kit.response_fields(200), end_stream=True)
    # 400 body octets lost inside the DATA frame: framing and HPACK survive.
    events: list[StreamEvent] = [
        data(UP, up + up2, 4),
        data(DOWN, head + body[:300], 5),
        StreamGap(0, DOWN, 400, 6, 6.0),
        data(DOWN, body[700:] + after, 7),
    ]
    exchanges, connection = run(events)
    assert [e.response.status for e in exchanges if e.response] == [200, 200]
    assert not any(e.stream and e.stream.not_decodable for e in exchanges)
    # Now the gap eats the next frame's header: frames are lost, so is HPACK.
    events = [
        data(UP, up + up2, 4),
        data(DOWN, head + body, 5),
        StreamGap(0, DOWN, 20, 6, 6.0),
        data(DOWN, after, 7),
    ]
    _, connection = run(events)
    kinds = [a.kind for a in connection.anomalies]
    assert AnomalyKind.HTTP2_FRAMING_LOST in kinds


def test_frames_are_found_again_after_a_gap() -> None:
    reader = fr.FrameReader()
    frames = h2kit.settings((1, 4096)) + h2kit.frame(h2kit.PING, 0, 0, b"12345678")
    assert len(reader.feed(frames, 1, 1, 1.0)) == 2
    out = reader.gap(5, 2, 2.0)
    assert isinstance(out[0], fr.FramingLost)
    # Garbage, then two well-formed frames.
    events = reader.feed(b"\xff" * 13 + frames, 3, 3, 3.0)
    assert isinstance(events[0], fr.FramingFound) and events[0].skipped == 13
    assert [e.type for e in events[1:] if isinstance(e, fr.Frame)] == [
        fr.FrameType.SETTINGS,
        fr.FrameType.PING,
    ]


def test_an_hpack_bomb_is_bounded_and_reported() -> None:
    client = h2kit.Endpoint()
    client.encoder.header_table_size = 4096
    big = ("x-bomb", "v" * 4000)
    first = client.headers(1, h2kit.request_fields("GET", "/", "w", [big]), True)
    # Each repetition is one octet on the wire, 4 KB decoded.
    index = 62  # the entry just added to the dynamic table (RFC 7541 section 2.3.3)
    bomb_block = client.block(h2kit.request_fields("GET", "/", "w")) + bytes([0x80 | index]) * (
        MAX_HEADER_LIST // 4000 + 10
    )
    bomb = h2kit.frame(h2kit.HEADERS, h2kit.END_HEADERS | h2kit.END_STREAM, 3, bomb_block)
    exchanges, connection = run([data(UP, h2kit.PREFACE + first + bomb, 4)])
    assert exchanges[0].request is not None
    assert exchanges[1].request is None and exchanges[1].stream is not None
    assert exchanges[1].stream.request_not_decodable
    assert any(a.kind is AnomalyKind.HTTP2_HEADERS_NOT_DECODABLE for a in connection.anomalies)


def test_hostile_frames_give_anomalies_never_a_traceback() -> None:
    up = (
        h2kit.PREFACE
        + h2kit.frame(h2kit.SETTINGS, 0, 0, b"\0" * 5)  # not a multiple of 6
        + h2kit.frame(h2kit.RST_STREAM, 0, 1, b"\0")  # 1 octet, 4 fixed
        + h2kit.frame(0x42, 0xFF, 7, b"unknown type")  # ignored (section 5.5)
        + h2kit.frame(h2kit.CONTINUATION, h2kit.END_HEADERS, 9, b"\x82")  # no block open
        + h2kit.frame(h2kit.HEADERS, h2kit.PADDED | h2kit.END_HEADERS, 11, b"\xff\x82")
        + h2kit.frame(h2kit.GOAWAY, 0, 0, b"\0\0")
        + (2**24 - 1).to_bytes(3, "big")
        + bytes([h2kit.HEADERS, 0])
        + b"\0\0\0\x0d"
        + b"\0" * 1000
    )
    exchanges, connection = run([data(UP, up, 4)])
    kinds = {a.kind for a in connection.anomalies}
    assert AnomalyKind.HTTP2_FRAME_MALFORMED in kinds
    assert len(connection.anomalies) <= 101


def test_a_missing_preface_is_reported_and_headers_are_not_guessed() -> None:
    client = h2kit.Endpoint()
    up = client.headers(1, h2kit.request_fields("GET", "/", "w"), True)
    _, connection = run([data(UP, b"GET / HTTP/1.1\r\n\r\n" + up, 4)])
    assert AnomalyKind.HTTP2_PREFACE_MISSING in {a.kind for a in connection.anomalies}


def test_frames_are_recognised_inside_a_stream_begun_before_the_capture() -> None:
    tail = b"x" * 50 + h2kit.data(1, b"") + h2kit.frame(h2kit.PING, 0, 0, b"12345678")
    assert fr.looks_like_frames(tail)
    assert not fr.looks_like_frames(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert not fr.looks_like_frames(b"\x00" * 8)
    from authtrace.stack import Stack, decide

    assert decide(50000, 80, tail, start_seen=False) is Stack.HTTP2
    # With the SYN seen, only the preface makes a connection HTTP/2.
    assert decide(50000, 80, tail, start_seen=True) is Stack.HTTP1


def _cut(payload: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(payload) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points:
        pieces.append(payload[last:point])
        last = point
    pieces.append(payload[last:])
    return [p for p in pieces if p]


def _shape(exchanges: list[Exchange]) -> list[tuple[object, ...]]:
    return [
        (
            e.index,
            e.request.headers if e.request else None,
            e.response.headers if e.response else None,
            e.response.body_size if e.response else None,
            e.stream.id if e.stream else None,
        )
        for e in exchanges
    ]


@settings(max_examples=60, deadline=None)
@given(
    up_cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
    down_cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
def test_how_frames_are_split_or_coalesced_changes_nothing(
    up_cuts: list[int], down_cuts: list[int]
) -> None:
    up, down = two_requests()
    whole, _ = run([data(UP, up, 4), data(DOWN, down, 5)])
    events: list[StreamEvent] = [data(UP, piece, 4) for piece in _cut(up, up_cuts)]
    events += [data(DOWN, piece, 5) for piece in _cut(down, down_cuts)]
    split, connection = run(events)
    assert _shape(split) == _shape(whole)
    assert connection.anomalies == []


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=0, max_value=3))
def test_any_bytes_after_the_preface_never_raise(garbage: bytes, where: int) -> None:
    up, down = two_requests()
    spliced = up[: len(h2kit.PREFACE) + where * 7] + garbage + up[len(h2kit.PREFACE) + where * 7 :]
    # Strict mode (conftest) turns any internal error into a test failure.
    exchanges, connection = run([data(UP, spliced, 4), data(DOWN, garbage + down, 5)])
    for exchange in exchanges:
        assert exchange.stream is not None


@pytest.mark.parametrize("missing", [1, 5])
def test_a_frame_cut_by_the_end_of_the_stream_is_handed_on_cut(missing: int) -> None:
    client = h2kit.Endpoint()
    up = h2kit.PREFACE + client.headers(1, h2kit.request_fields("GET", "/", "w"), True)
    exchanges, _ = run([data(UP, up[:-missing], 4)])
    # The cut block is not decoded (nothing guessed); its stream is still listed.
    assert [e.request for e in exchanges] == [None]
    assert exchanges[0].stream is not None and exchanges[0].stream.request_not_decodable


def test_a_frame_header_cut_by_the_end_of_the_stream_names_no_stream() -> None:
    client = h2kit.Endpoint()
    up = h2kit.PREFACE + client.headers(1, h2kit.request_fields("GET", "/", "w"), True)
    exchanges, _ = run([data(UP, up[: len(h2kit.PREFACE) + 5], 4)])
    assert exchanges == []


def test_the_fast_lane_counts_data_payloads_with_the_same_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP/2 answers the lane (tcp/events.py LaneSink) through its frame reader:
    the middle of a DATA payload is only counted. Same results with the lane on
    and off, on h2c with 30 KB bodies (padded and not) and on h2 in TLS."""
    from pcapkit import CaptureBuilder

    from authtrace.pipeline import Pipeline
    from authtrace.tls.keylog import KeyLog

    capture = CaptureBuilder()
    conv = capture.tcp(("192.0.2.1", 40000), ("198.51.100.9", 80))
    client, server = h2kit.Endpoint(), h2kit.Endpoint()
    conv.send(h2kit.PREFACE + h2kit.settings())
    for stream, pad in ((1, 0), (3, 9), (5, 0)):
        conv.send(client.headers(stream, h2kit.request_fields("GET", f"/{stream}", "w"), True))
        conv.reply(server.headers(stream, h2kit.response_fields(200)))
        conv.reply(h2kit.data(stream, b"b" * 30_000, pad=pad))
    conv.close()
    path = tmp_path / "h2c-bodies.pcap"
    capture.write(str(path))
    taken: list[int] = []
    original = fr.FrameReader.count_only

    def counting(self, *args):  # type: ignore[no-untyped-def]
        counted = original(self, *args)
        taken.append(counted)
        return counted

    monkeypatch.setattr(fr.FrameReader, "count_only", counting)

    def run_pipeline(source: Path, lane: bool, keys: Path | None = None) -> list[object]:
        keylog = None
        if keys is not None:
            keylog = KeyLog()
            keylog.add_text(keys.read_bytes(), keys.name)
        pipeline = Pipeline(fast_lane=lane, keylog=keylog)
        return [*pipeline.connections([source]), pipeline.result.anomalies]

    with_lane = run_pipeline(path, True)
    assert sum(taken) > 20, "the lane counted the middle of the DATA payloads"
    assert with_lane == run_pipeline(path, False)
    (connection, _anomalies) = with_lane
    sizes = [e.response.body_size for e in connection.exchanges if e.response]  # type: ignore[attr-defined]
    assert sizes == [30_000, 30_000, 30_000]
    # TLS 1.3 (Apache) and TLS 1.2 AEAD (nginx: body-only records are counted).
    for name in ("h2-apache-basic.pcap", "h2-nginx-basic.pcap"):
        tls = REPO / "captures" / "h2" / name
        keys = tls.with_suffix(".keys")
        assert run_pipeline(tls, True, keys) == run_pipeline(tls, False, keys), name
