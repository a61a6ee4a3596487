"""The TLS layer on real captures (captures/tls/, made by lab/tls.py): decryption is
independent of how records fall into segments, and what cannot be decrypted (wrong key,
missing key log line, cut record, garbage) is a reported anomaly and a hole, never
plaintext, while the connection stays listed."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authtrace.http.messages import HttpConnection
from authtrace.net.decoder import PacketDecoder
from authtrace.net.packets import TcpSegment
from authtrace.pipeline import Pipeline, read_connections
from authtrace.readers.capture import open_capture
from authtrace.tcp.events import Direction, StreamData, StreamEnd, StreamEvent, StreamGap
from authtrace.tcp.reassembly import TcpReassembler
from authtrace.tls.connection import UNKNOWN_LENGTH, TlsConnection
from authtrace.tls.keylog import KeyLog
from authtrace.tls.model import KeyStatus, TlsFacts

TLS = Path(__file__).resolve().parent.parent / "captures" / "tls"
TLS13 = TLS / "tls13-aes128gcm-basic.pcap"
TLS12 = TLS / "tls12-ecdhe-aes128gcm-ntlm.pcap"
CBC = TLS / "tls12-cbc-suites-basic.pcap"


def keylog(text: bytes) -> KeyLog:
    log = KeyLog()
    log.add_text(text, "test.keys")
    return log


def stream_events(capture: Path, connection: int = 0) -> list[StreamEvent]:
    """The reassembled stream events of one connection, in order."""
    decoder, tcp = PacketDecoder(), TcpReassembler()
    events: list[StreamEvent] = []
    with open_capture(capture) as frames:
        for frame in frames:
            packet = decoder.decode(frame)
            if type(packet) is TcpSegment:
                events.extend(tcp.feed(packet))
    events.extend(tcp.finish())
    return [
        e
        for e in events
        if isinstance(e, StreamData | StreamGap | StreamEnd) and e.connection == connection
    ]


def decrypt(
    events: list[StreamEvent], log: KeyLog | None
) -> tuple[dict[Direction, bytes], TlsConnection]:
    tls = TlsConnection(0, log)
    plain = {Direction.TO_SERVER: b"", Direction.TO_CLIENT: b""}
    for event in events:
        for out in tls.feed(event):
            if isinstance(out, StreamData):
                plain[out.direction] += out.data
    return plain, tls


def test_decrypts_both_directions_of_a_real_connection() -> None:
    plain, tls = decrypt(stream_events(TLS13), keylog(TLS13.with_suffix(".keys").read_bytes()))
    assert plain[Direction.TO_SERVER].startswith(b"GET / HTTP/1.1\r\n")
    assert plain[Direction.TO_CLIENT].startswith(b"HTTP/1.0 401") or plain[
        Direction.TO_CLIENT
    ].startswith(b"HTTP/1.1 401")
    assert tls.facts().keys is KeyStatus.DECRYPTED
    assert tls.facts().server_name == "tls-lab.authtrace.test"
    assert tls.facts().certificates  # TLS 1.3: read from the decrypted handshake
    assert not tls.anomalies


def _rechunk(events: list[StreamEvent], rng: random.Random) -> list[StreamEvent]:
    """The same bytes per direction, in the same order, cut at random points and
    with runs of one direction's segments sometimes joined."""
    out: list[StreamEvent] = []
    for event in events:
        if not isinstance(event, StreamData):
            out.append(event)
            continue
        last = out[-1] if out else None
        if (
            isinstance(last, StreamData)
            and last.direction is event.direction
            and rng.random() < 0.5
        ):
            out[-1] = StreamData(
                last.connection,
                last.direction,
                last.data + event.data,
                last.first_frame,
                event.frame,
                event.timestamp,
            )
            continue
        data = event.data
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 6))))
        for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
            out.append(
                StreamData(
                    event.connection,
                    event.direction,
                    data[start:end],
                    event.first_frame,
                    event.frame,
                    event.timestamp,
                )
            )
    return out


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    capture=st.sampled_from([TLS13, TLS12, TLS / "tls13-keyupdate-basic.pcap"]),
)
def test_records_split_or_coalesced_across_segments_decrypt_the_same(
    seed: int, capture: Path
) -> None:
    log = keylog(capture.with_suffix(".keys").read_bytes())
    events = stream_events(capture)
    expected, baseline = decrypt(events, log)
    found, tls = decrypt(_rechunk(events, random.Random(seed)), log)
    assert found == expected
    assert expected[Direction.TO_CLIENT]
    assert [a.kind for a in tls.anomalies] == [a.kind for a in baseline.anomalies]
    assert tls.facts() == baseline.facts()


def _damaged(text: bytes) -> bytes:
    """Every secret with its last hex digit changed."""
    lines = []
    for line in text.splitlines():
        if line and not line.startswith(b"#"):
            last = line[-1:]
            line = line[:-1] + (b"0" if last != b"0" else b"1")
        lines.append(line)
    return b"\n".join(lines) + b"\n"


def test_wrong_key_is_reported_and_the_connection_stays_listed() -> None:
    for capture in (TLS13, TLS12, CBC):
        log = keylog(_damaged(capture.with_suffix(".keys").read_bytes()))
        connections, result = read_connections([capture], keylog=log)
        assert connections == []
        assert result.encrypted, capture.name
        for listed in result.encrypted:
            assert listed.facts.keys is KeyStatus.WRONG_KEY
            assert listed.facts.records_failed > 0
            assert listed.facts.records_opened == 0
            assert "tls-record-undecryptable" in {a.kind for a in listed.anomalies}


def test_missing_key_log_line_is_reported_and_what_could_be_read_is_kept() -> None:
    text = TLS13.with_suffix(".keys").read_bytes()
    without = b"\n".join(
        line for line in text.splitlines() if not line.startswith(b"SERVER_TRAFFIC_SECRET_0")
    )
    connections, result = read_connections([TLS13], keylog=keylog(without))
    (connection,) = connections  # the requests are still decrypted
    assert "tls-key-missing" in {a.kind for a in connection.anomalies}
    requests = [e.request for e in connection.exchanges if e.request is not None]
    assert [r.uri for r in requests][:1] == ["/"]
    # The responses are not seen: never reported as absent by inventing bytes.
    assert all(e.response is None for e in connection.exchanges)


def test_no_line_at_all_for_a_tls12_connection_keeps_its_cleartext_facts() -> None:
    connections, result = read_connections([TLS12], keylog=keylog(b"# nothing here\n"))
    assert connections == []
    (listed,) = result.encrypted
    assert listed.facts.keys is KeyStatus.KEY_MISSING
    assert listed.facts.version == "TLS 1.2"
    assert listed.facts.certificates  # in clear in TLS 1.2
    assert "tls-key-missing" in {a.kind for a in listed.anomalies}
    assert result.keylog is not None and result.keylog.comments == 1


def test_truncated_last_record_is_reported_as_a_hole() -> None:
    log = keylog(TLS13.with_suffix(".keys").read_bytes())
    events = stream_events(TLS13)
    # The server's last data segment loses its second half, then its direction ends.
    index = max(
        i
        for i, e in enumerate(events)
        if isinstance(e, StreamData) and e.direction is Direction.TO_CLIENT and len(e.data) > 40
    )
    cut = events[index]
    assert isinstance(cut, StreamData)
    shortened = StreamData(
        cut.connection,
        cut.direction,
        cut.data[: len(cut.data) // 2],
        cut.first_frame,
        cut.frame,
        cut.timestamp,
    )
    end = StreamEnd(cut.connection, cut.direction, cut.frame, cut.timestamp)
    tls = TlsConnection(0, log)
    holes = []
    for event in [*events[:index], shortened, end]:
        holes += [o for o in tls.feed(event) if isinstance(o, StreamGap)]
    assert "tls-record-truncated" in {a.kind for a in tls.anomalies}
    assert holes and holes[-1].length == UNKNOWN_LENGTH


def test_garbage_instead_of_records_loses_only_that_direction() -> None:
    log = keylog(TLS13.with_suffix(".keys").read_bytes())
    events = stream_events(TLS13)
    index = next(
        i
        for i, e in enumerate(events)
        if isinstance(e, StreamData) and e.direction is Direction.TO_CLIENT and i > 4
    )
    cut = events[index]
    assert isinstance(cut, StreamData)
    garbage = StreamData(
        cut.connection, cut.direction, b"\x00GARBAGE" * 8, cut.first_frame, cut.frame, cut.timestamp
    )
    plain, tls = decrypt([*events[:index], garbage, *events[index + 1 :]], log)
    assert "tls-record-malformed" in {a.kind for a in tls.anomalies}
    assert plain[Direction.TO_SERVER].startswith(b"GET / HTTP/1.1")


def test_a_tcp_gap_is_a_hole_of_unknown_length() -> None:
    log = keylog(TLS13.with_suffix(".keys").read_bytes())
    events = stream_events(TLS13)
    index = next(
        i
        for i, e in enumerate(events)
        if isinstance(e, StreamData) and e.direction is Direction.TO_CLIENT and i > 6
    )
    cut = events[index]
    gap = StreamGap(cut.connection, cut.direction, len(cut.data), cut.frame, cut.timestamp)
    tls = TlsConnection(0, log)
    out = []
    for event in [*events[:index], gap, *events[index + 1 :]]:
        out += tls.feed(event)
    assert "tls-gap" in {a.kind for a in tls.anomalies}
    assert any(isinstance(o, StreamGap) and o.length == UNKNOWN_LENGTH for o in out)


def test_without_keys_the_connection_is_listed_with_its_handshake_facts() -> None:
    connections, result = read_connections([TLS13])
    assert connections == []
    (listed,) = result.encrypted
    facts = listed.facts
    assert facts.keys is KeyStatus.NO_KEY_LOG
    assert facts.server_name == "tls-lab.authtrace.test"
    assert facts.alpn_offered == ("http/1.1",)
    assert facts.version == "TLS 1.3"
    assert str(listed.server) == "127.0.0.40:443"


def test_secrets_embedded_in_pcapng_are_used_without_any_option() -> None:
    connections, result = read_connections([TLS / "tls13-secrets-in-pcapng.pcapng"])
    assert connections and all(c.tls is not None for c in connections)
    assert result.keylog is not None and result.keylog.sources == 1
    assert result.keylog.secrets >= 4


def _records_summed(connection: HttpConnection) -> HttpConnection:
    """The connection with its TLS records counted without decrypting (only
    with the lane on) added to those decrypted."""
    tls = connection.tls
    if tls is None:
        return connection
    return dataclasses.replace(
        connection,
        tls=dataclasses.replace(
            tls, records_opened=tls.records_opened + tls.records_counted, records_counted=0
        ),
    )


def test_fast_lane_changes_nothing_with_keys() -> None:
    """With the lane, segments that only fill an unfinished record skip the
    normal path, and body-only TLS 1.2 AEAD records are counted, not opened:
    the HTTP read is the same (only the decrypted / counted split differs)."""
    for capture in sorted(TLS.glob("*.pcap")):
        log_text = capture.with_suffix(".keys").read_bytes()
        results = []
        for lane in (True, False):
            pipeline = Pipeline(fast_lane=lane, keylog=keylog(log_text))
            connections = [_records_summed(c) for c in pipeline.connections([capture])]
            results.append((connections, pipeline.result.encrypted, pipeline.result.anomalies))
        assert results[0] == results[1], capture.name


def _tls_facts(name: str, fast_lane: bool) -> list[TlsFacts | None]:
    path = TLS / name
    pipeline = Pipeline(fast_lane=fast_lane, keylog=keylog(path.with_suffix(".keys").read_bytes()))
    return [c.tls for c in pipeline.connections([path])]


def test_body_only_tls12_records_are_counted_not_decrypted() -> None:
    """tls12-ecdhe-aes128gcm-ntlm's 40 KB body spans three records: the ones
    that only carry body bytes are counted (the last, which ends the body, is
    opened); TLS 1.3 records are always opened (their type is encrypted)."""
    (counted,) = _tls_facts("tls12-ecdhe-aes128gcm-ntlm.pcap", True)
    (opened,) = _tls_facts("tls12-ecdhe-aes128gcm-ntlm.pcap", False)
    assert counted is not None and opened is not None
    assert counted.records_counted >= 2 and opened.records_counted == 0
    assert counted.records_opened + counted.records_counted == opened.records_opened
    (tls13,) = _tls_facts("tls13-aes256gcm-ntlm.pcap", True)
    assert tls13 is not None and tls13.records_counted == 0 and tls13.records_opened > 0


def _first_response_event(events: list[StreamEvent], log: KeyLog) -> int:
    """The index of the server segment that carries the first decrypted response."""
    tls = TlsConnection(0, log)
    for index, event in enumerate(events):
        outputs = tls.feed(event)
        if any(isinstance(o, StreamData) and o.direction is Direction.TO_CLIENT for o in outputs):
            return index
    raise AssertionError("no response decrypted")


@pytest.mark.parametrize("capture", [TLS13, TLS12, CBC], ids=lambda p: p.name)
def test_records_are_found_again_after_a_gap(capture: Path) -> None:
    """A lost segment loses what it held, not the rest of the connection: the
    next whole record opens at a later sequence number and the HTTP after it
    is read again."""
    log = keylog(capture.with_suffix(".keys").read_bytes())
    events = stream_events(capture)
    expected, _ = decrypt(events, log)
    index = _first_response_event(events, log)
    lost = events[index]
    assert isinstance(lost, StreamData)
    gap = StreamGap(lost.connection, lost.direction, len(lost.data), lost.frame, lost.timestamp)
    found, tls = decrypt([*events[:index], gap, *events[index + 1 :]], log)
    kinds = [a.kind for a in tls.anomalies]
    assert "tls-gap" in kinds and "tls-resynchronised" in kinds
    after = found[Direction.TO_CLIENT]
    assert after and expected[Direction.TO_CLIENT].endswith(after)
    assert len(after) < len(expected[Direction.TO_CLIENT])  # nothing invented for the gap
    assert found[Direction.TO_SERVER] == expected[Direction.TO_SERVER]


def test_http_after_a_tls_gap_is_read_again() -> None:
    from authtrace.http.exchanges import HttpConnectionTracker

    log = keylog(TLS13.with_suffix(".keys").read_bytes())
    events = stream_events(TLS13)
    index = _first_response_event(events, log)
    lost = events[index]
    assert isinstance(lost, StreamData)
    gap = StreamGap(lost.connection, lost.direction, len(lost.data), lost.frame, lost.timestamp)
    tls = TlsConnection(0, log)
    http = HttpConnectionTracker(0)
    exchanges = []
    for event in [*events[:index], gap, *events[index + 1 :]]:
        for out in tls.feed(event):
            exchanges += http.feed(out)
    exchanges += http.close(events[-1].frame, 0.0)
    statuses = [e.response.status for e in exchanges if e.response is not None]
    assert 200 in statuses  # the responses after the gap are read again


@settings(max_examples=200, deadline=None)
@given(
    chunks=st.lists(st.tuples(st.booleans(), st.binary(max_size=300)), min_size=1, max_size=12),
    prefix=st.sampled_from([b"", b"\x16\x03\x01", b"\x16\x03\x03\x00\x40\x01\x00\x00\x3c\x03\x03"]),
)
def test_hostile_bytes_never_raise_and_never_become_plaintext(
    chunks: list[tuple[bool, bytes]], prefix: bytes
) -> None:
    """Whatever arrives, the TLS layer returns holes and anomalies, never an
    exception, and without a key that opens a record never any plaintext."""
    log = keylog(TLS13.with_suffix(".keys").read_bytes())
    tls = TlsConnection(0, log)
    for number, (to_server, data) in enumerate(chunks, start=1):
        direction = Direction.TO_SERVER if to_server else Direction.TO_CLIENT
        payload = prefix + data if number == 1 else data
        for out in tls.feed(StreamData(0, direction, payload, number, number, 0.0)):
            assert not isinstance(out, StreamData)
    for direction in Direction:
        tls.feed(StreamEnd(0, direction, len(chunks) + 1, 0.0))
    assert tls.facts().records_opened == 0
