"""Hostile HTTP heads: nothing silent. Every anomaly the HTTP layer records
reaches the report (text and JSON of analyze, connections --json) with its
frame; a head cut at the limit keeps the names and sizes of its headers, and a
cut Authorization is "present, too large to decode", never "no credentials"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _pcap import tcp_capture
from click.testing import CliRunner

from authtrace.cli import main
from authtrace.http.messages import HttpRequest
from authtrace.http.parser import MAX_HEAD, HttpParser, MessageComplete, Role
from authtrace.pipeline import analyze

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
ANONYMOUS = b"GET /app HTTP/1.1\r\nHost: web01\r\n\r\n"
CHALLENGE = (
    b"HTTP/1.1 401 Unauthorized\r\nServer: Microsoft-IIS/10.0\r\n"
    b"WWW-Authenticate: Negotiate\r\nContent-Length: 0\r\n\r\n"
)


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def _big_credentials(tmp_path: Path, value: bytes, name: str = "big.pcap") -> Path:
    request = (
        b"GET /app HTTP/1.1\r\nHost: web01\r\nAuthorization: " + value + b"\r\nX-Tail: 1\r\n\r\n"
    )
    return tcp_capture(
        tmp_path / name,
        [(True, ANONYMOUS), (False, CHALLENGE), (True, request), (False, CHALLENGE)],
    )


def test_huge_negotiate_answered_401_is_present_not_absent(tmp_path: Path) -> None:
    token = b"Negotiate YII" + b"A" * 267_000
    capture = _big_credentials(tmp_path, token)
    report = analyze([capture])
    rules = {f.rule for f in report.findings}
    assert "client-ignores-negotiate" not in rules and "no-common-scheme" not in rules
    kinds = [(a.kind, a.connection) for a in report.anomalies]
    assert ("http-header-too-large", 0) in kinds
    assert all(a.frame for a in report.anomalies if a.kind.startswith("http-"))
    step = report.view.timelines[0].steps[1]
    assert step.credentials is not None and step.outcome is not None
    assert step.outcome.value == "incomplete"
    # The JSON says what was there and how big it was.
    _code, output = _run("analyze", "--json", str(capture))
    data = json.loads(output)
    request = data["exchanges"][1]["request"]
    assert request["head_cut"] is True
    assert request["cut_headers"][0] == {
        "name": "Authorization",
        "bytes": len(b"Authorization: ") + len(token),
        "whole": True,
    }
    credentials = [a for a in data["exchanges"][1]["auth"] if a["direction"] == "credentials"]
    assert credentials[0]["summary"] == (
        f"Negotiate present, too large to decode ({len('Authorization: ') + len(token)} bytes)"
    )
    assert any(a["kind"] == "http-header-too-large" and a["frame"] for a in data["anomalies"])
    text = _run("analyze", str(capture))[1]
    assert "http-header-too-large frame " in text
    assert "Negotiate present, too large to decode" in text


def test_huge_digest_is_not_an_anonymous_request(tmp_path: Path) -> None:
    value = (
        b'Digest username="alice", realm="r", nonce="n", uri="/app", response="' + b"0" * 889_000
    )
    report = analyze([_big_credentials(tmp_path, value + b'"')])
    step = report.view.timelines[0].steps[1]
    assert step.sent.value != "nothing"
    assert step.credentials is not None and step.credentials.scheme == "Digest"
    assert step.leg.value != "anonymous_challenged"


def test_head_that_never_ends_is_http_traffic(tmp_path: Path) -> None:
    head = b"POST /upload HTTP/1.1\r\nHost: web01\r\nX-Pad: " + b"a" * (17 * 1024 * 1024)
    capture = tcp_capture(tmp_path / "endless.pcap", [(True, head)], segment=65_000)
    code, text = _run("analyze", str(capture))
    assert code == 0
    assert "No HTTP traffic" not in text
    assert "web01: 1 connection, 1 exchange;" in text
    assert "http-resync frame" in text and "header block never ended" in text
    data = json.loads(_run("connections", "--json", str(capture))[1])
    request = data["connections"][0]["exchanges"][0]["request"]
    assert request["method"] == "POST" and request["head_cut"] is True
    # Seen up to where the parser gave up on the block: its end was never seen.
    [cut] = request["cut_headers"]
    assert cut["name"] == "X-Pad" and cut["whole"] is False and cut["bytes"] > MAX_HEAD
    kinds = {a["kind"] for a in data["anomalies"]}
    assert {"http-header-too-large", "http-resync"} <= kinds


def test_huge_header_capture_anomaly_reaches_every_output() -> None:
    capture = str(CAPTURES / "http" / "huge-header.pcap.gz")
    analyzed = json.loads(_run("analyze", "--json", capture)[1])
    listed = json.loads(_run("connections", "--json", capture)[1])
    for data in (analyzed, listed):
        found = [a for a in data["anomalies"] if a["kind"] == "http-header-too-large"]
        assert found and found[0]["frame"] and found[0]["connection"] is not None
    assert "http-header-too-large" in _run("analyze", capture)[1]


def _parse(data: bytes, size: int) -> HttpRequest:
    parser = HttpParser(Role.REQUEST, 0)
    events = []
    for start in range(0, len(data), size):
        events += parser.feed(data[start : start + size], 1, start + 1, 0.0)
    events += parser.close(len(data) + 1, 0.0)
    messages = [e.message for e in events if isinstance(e, MessageComplete)]
    assert len(messages) == 1 and isinstance(messages[0], HttpRequest)
    return messages[0]


@pytest.mark.parametrize("size", [1, 7, 1460, 1 << 20])
def test_cut_head_names_and_sizes_whatever_the_segmentation(size: int) -> None:
    pad = b"Cookie: " + b"c" * (MAX_HEAD - 100)
    data = (
        b"GET / HTTP/1.1\r\nHost: h\r\n"
        + pad
        + b"\r\nAuthorization: NTLM "
        + b"T" * 5000
        + b"\r\n folded part\r\nX-Last: v\r\n\r\n"
    )
    request = _parse(data, size)
    assert request.head_cut and request.header_bytes == len(data)
    assert [h.name for h in request.headers] == ["Host", "Cookie"]
    names = [(c.name, c.size, c.whole, c.first_word) for c in request.cut_headers]
    assert names == [
        ("Authorization", len(b"Authorization: NTLM ") + 5000 + len(b" folded part"), True, "NTLM"),
        ("X-Last", len(b"X-Last: v"), True, "v"),
    ]


def test_head_cut_by_the_capture_keeps_the_name_of_its_last_line() -> None:
    parser = HttpParser(Role.REQUEST, 0)
    parser.feed(b"GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Negotiate YIIab", 1, 1, 0.0)
    events = parser.gap(100, 2, 0.0)
    request = next(e.message for e in events if isinstance(e, MessageComplete))
    assert request.head_cut and not request.complete
    assert [(c.name, c.whole, c.first_word) for c in request.cut_headers] == [
        ("Authorization", False, "Negotiate")
    ]


@pytest.mark.parametrize(
    "capture", sorted((CAPTURES / "http").glob("*.pcap*")), ids=lambda p: p.name
)
def test_every_http_anomaly_reaches_the_report_with_its_frame(capture: Path) -> None:
    """What the HTTP layer recorded on each connection is in Report.anomalies,
    each with the frame it was seen in (roles swapped included)."""
    from authtrace.pipeline import read_connections

    connections, _result = read_connections([capture])
    recorded = [a for c in connections for a in c.anomalies]
    reported = [a for a in analyze([capture]).anomalies if a.kind.startswith("http-")]
    assert reported == recorded
    assert all(a.frame for a in reported), [a for a in reported if not a.frame]


def test_lines_past_the_cut_are_looked_at_a_bounded_number_of_times() -> None:
    """A cut head of tiny lines (headers or not) costs no Python step per line
    past MAX_CUT_SCAN: the rest is only counted."""
    from authtrace.http.parser import MAX_CUT_SCAN, _CutLines

    cut = _CutLines()
    cut.feed(b"x\n" * 100_000 + b"Authorization: NTLM abc\n")
    assert cut.seen == MAX_CUT_SCAN and cut.full
    assert cut.finish() == ()
