"""iis.match: log lines paired with captured requests despite a clock offset."""

from __future__ import annotations

import random
from pathlib import Path

from authtrace.iis.match import match_entries
from authtrace.iis.w3c import LogEntry, parse_lines

DATA = Path(__file__).parent / "data" / "iis"


def _entries() -> list[LogEntry]:
    text = (DATA / "iis10_handshakes.log").read_text()
    entries, _ = parse_lines(text.splitlines(), "iis10_handshakes.log")
    return entries


def _as_captured(entry: LogEntry, skew: float, jitter: float) -> tuple[float, str, str, str, int]:
    assert entry.timestamp is not None and entry.uri_stem is not None
    # The capture sees the request time_taken before IIS writes the line,
    # on a clock `skew` seconds behind, and the log truncates to the second.
    when = entry.timestamp.timestamp() - (entry.time_taken or 0) / 1000 - skew + jitter
    uri = entry.uri_stem + (f"?{entry.uri_query}" if entry.uri_query else "")
    return (when, entry.client_ip or "", entry.method or "", uri, entry.status)


def test_offset_is_estimated_and_every_request_matched() -> None:
    entries = _entries()
    rng = random.Random(6)
    requests = [_as_captured(e, 37.0, rng.uniform(0.0, 0.9)) for e in entries]
    result = match_entries(entries, requests)
    assert abs(result.offset - 37.0) <= 1.0
    assert len(result.matches) == len(entries) and not result.unmatched_requests
    assert result.unmatched_entries == 0
    assert "ahead of" in result.note
    for match in result.matches:
        assert match.same_client
        assert (match.entry.method, match.entry.status) == (
            match.observed.method,
            match.observed.status,
        )
    # One log line per request: no entry used twice.
    assert len({m.entry.line for m in result.matches}) == len(entries)


def test_identical_requests_pair_in_time_order() -> None:
    # curl's three identical 401 2 5 lines (09:03:00, :05, :09) must pair one to one.
    entries = [e for e in _entries() if e.client_ip == "10.0.0.50"]
    requests = [_as_captured(e, -120.0, 0.2) for e in reversed(entries)]
    result = match_entries(entries, requests)
    pairs = sorted((m.observed.timestamp, m.entry.line) for m in result.matches)
    assert [line for _, line in pairs] == sorted(e.line for e in entries)
    assert "behind" in result.note


def test_nat_client_address_and_proxy_form_uri() -> None:
    entries = [e for e in _entries() if e.uri_stem == "/hr/payroll.aspx"]
    requests = [
        (t, "192.0.2.1", m, "http://intranet.contoso.com/hr/Payroll%2Easpx?id=7", s)
        for t, _ip, m, _uri, s in (_as_captured(e, 0.0, 0.1) for e in entries)
    ]
    result = match_entries(entries, requests)
    assert len(result.matches) == 3
    assert not any(m.same_client for m in result.matches)


def test_disagreeing_status_or_time_is_not_matched() -> None:
    entries = [e for e in _entries() if e.client_ip == "10.0.0.40"]
    wrong_status = [
        (t, ip, m, u, 200) for t, ip, m, u, _s in (_as_captured(e, 0, 0) for e in entries)
    ]
    result = match_entries(entries, wrong_status)
    assert not result.matches and len(result.unmatched_requests) == 3
    too_far = [_as_captured(e, 0, 0) for e in entries]
    result = match_entries(entries, too_far, max_offset=10.0)
    assert len(result.matches) == 3
    shifted = [(t - 3600, ip, m, u, s) for t, ip, m, u, s in too_far]
    result = match_entries(entries, shifted, max_offset=10.0)
    assert not result.matches


def test_odd_input_does_not_raise() -> None:
    result = match_entries(_entries(), [(None, None, None, None, None), ("x", "", "", "", "")])  # type: ignore[list-item]
    assert not result.matches
    assert match_entries([], []).note == "no requests to match"
