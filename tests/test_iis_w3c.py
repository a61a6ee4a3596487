"""iis.w3c: W3C extended log lines into entries, problems counted, and the summary."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from authtrace.iis.codes import Verdict
from authtrace.iis.w3c import (
    MAX_LINE_CHARS,
    MAX_REPORTED_LINES,
    LogEntry,
    ParseReport,
    ProblemKind,
    W3CLogParser,
    parse_lines,
    summarize,
)

DATA = Path(__file__).parent / "data" / "iis"


def _parse(name: str) -> tuple[list[LogEntry], ParseReport]:
    text = (DATA / name).read_text(encoding="utf-8")
    return parse_lines(text.splitlines(keepends=True), name)


def _problems(report: ParseReport) -> dict[ProblemKind, tuple[int, tuple[int, ...]]]:
    return {p.kind: (p.count, p.first_lines) for p in report.problems}


def test_iis10_line_fields() -> None:
    entries, report = _parse("iis10_handshakes.log")
    assert len(entries) == 17 and report.skipped == 0
    assert report.software == ("Microsoft Internet Information Services 10.0",)
    first, third = entries[0], entries[2]
    assert first.line == 5 and first.source == "iis10_handshakes.log"
    assert first.timestamp == datetime(2024, 3, 4, 9, 0, 1, tzinfo=UTC)
    assert (first.status, first.substatus, first.win32_status) == (401, 2, 5)
    assert first.username is None and first.uri_query is None
    assert first.user_agent == "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Edg/122.0"
    assert (first.client_ip, first.server_ip, first.server_port) == (
        "10.0.0.21",
        "10.0.0.5",
        80,
    )
    assert third.username == "CONTOSO\\alice" and third.time_taken == 15
    payroll = entries[10]
    assert (payroll.uri_stem, payroll.uri_query) == ("/hr/payroll.aspx", "id=7")


def test_several_fields_blocks_and_garbage() -> None:
    entries, report = _parse("iis10_two_fields_blocks_garbage.log")
    problems = _problems(report)
    assert problems == {
        ProblemKind.OTHER_FORMAT: (1, (7,)),  # Apache combined line
        ProblemKind.FIELD_COUNT: (1, (9,)),  # cut line
        ProblemKind.BAD_VALUE: (2, (17, 19)),  # status "OK", date "2024-03-05-bad"
    }
    assert report.fields_blocks == 2
    assert [e.line for e in entries] == [5, 6, 8, 14, 15, 16, 18]
    # Second block: columns in another order, date after time, cs-host present.
    carol = entries[5]
    assert carol.timestamp == datetime(2024, 3, 5, 11, 0, 1, tzinfo=UTC)
    assert (carol.username, carol.host, carol.uri_stem, carol.server_port) == (
        "CONTOSO\\carol",
        "app.contoso.com",
        "/app/",
        443,
    )
    # First block has no s-port column: absent, not invented.
    assert entries[0].server_port is None and entries[0].host is None


def test_iis6_layout() -> None:
    entries, report = _parse("iis6.log")
    assert len(entries) == 4 and report.skipped == 0
    assert entries[2].username == "CORP\\erin" and entries[2].status == 200
    assert entries[3].win32_status == 1909
    assert entries[0].user_agent == "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 5.1)"


def test_date_directive_fills_lines_without_a_date_column() -> None:
    lines = [
        "#Date: 2024-02-29 00:00:00\n",
        "#Fields: time c-ip sc-status\n",
        "23:59:59 10.0.0.1 401\n",
        "23:59:59.250 10.0.0.1 200\n",
    ]
    entries, report = parse_lines(lines)
    assert [e.timestamp for e in entries] == [
        datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC),
        datetime(2024, 2, 29, 23, 59, 59, 250000, tzinfo=UTC),
    ]
    assert entries[0].substatus is None and entries[0].win32_status is None
    assert report.skipped == 0


def test_lines_before_fields_and_missing_status() -> None:
    lines = [
        "2024-01-01 00:00:00 GET / 401 2 5\n",
        '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326\n',
        "#Fields: date time cs-method cs-uri-stem\n",
        "2024-01-01 00:00:00 GET /\n",
    ]
    entries, report = parse_lines(lines)
    assert entries == []
    assert _problems(report) == {
        ProblemKind.NO_FIELDS: (1, (1,)),
        ProblemKind.OTHER_FORMAT: (1, (2,)),
        ProblemKind.MISSING_STATUS: (1, (4,)),
    }


def test_bounds_on_line_length_and_reported_lines() -> None:
    parser = W3CLogParser("x")
    parser.feed("#Fields: c-ip sc-status\n")
    parser.feed("a" * (MAX_LINE_CHARS + 1))
    for _ in range(20):
        parser.feed("not a w3c line at all\n")
    problems = _problems(parser.finish())
    assert problems[ProblemKind.LINE_TOO_LONG] == (1, (2,))
    count, first = problems[ProblemKind.FIELD_COUNT]
    assert count == 20 and first == tuple(range(3, 3 + MAX_REPORTED_LINES))


_COLUMNS = [
    "date",
    "time",
    "c-ip",
    "cs-method",
    "cs-uri-stem",
    "sc-status",
    "sc-substatus",
    "sc-win32-status",
    "cs-username",
    "cs(User-Agent)",
]
_ROW = [
    "2024-03-04",
    "09:00:01",
    "10.0.0.9",
    "GET",
    "/a",
    "401",
    "1",
    "2148074254",
    "-",
    "curl/8.4.0+(x)",
]


@given(st.permutations(range(len(_COLUMNS))))
@settings(max_examples=40)
def test_field_order_does_not_change_entries(order: list[int]) -> None:
    lines = [
        "#Fields: " + " ".join(_COLUMNS[i] for i in order),
        " ".join(_ROW[i] for i in order),
    ]
    entries, report = parse_lines(lines)
    assert report.skipped == 0
    reference, _ = parse_lines(["#Fields: " + " ".join(_COLUMNS), " ".join(_ROW)])
    assert entries == reference


@given(st.lists(st.text(max_size=80), max_size=30))
@settings(max_examples=150)
def test_hostile_lines_never_raise(lines: list[str]) -> None:
    entries, report = parse_lines(["#Fields: date time c-ip sc-status sc-substatus", *lines])
    assert report.lines == len(lines) + 1
    assert len(entries) + report.skipped <= len(lines)


def test_summary_of_the_design_examples() -> None:
    entries, _ = _parse("iis10_handshakes.log")
    summary = summarize(entries)
    groups = {g.explanation.triple: g for g in summary.groups}
    # Failures lead: the split NTLM handshake (2x), then the wrong password.
    assert [g.explanation.triple for g in summary.groups[:2]] == ["401 1 2148074248", "401 1 1326"]
    assert groups["401 1 2148074248"].clients[0].key == "10.0.0.35"
    assert groups["401 1 1326"].users[0].key == "CONTOSO\\bob"
    assert groups["401 2 5"].verdict is Verdict.NORMAL_LEG
    assert groups["401 2 5"].count == 7  # 1 (alice) + 2 (split) + 1 (bob) + 3 (curl)
    # curl never sends credentials: its three 401.2 are not normal legs.
    never = [p for p in summary.per_client_url if p.never_authenticated]
    assert [(p.client, p.url, p.normal_legs) for p in never] == [("10.0.0.50", "/api/report", 3)]
    assert summary.normal_legs == (7 + 4) - 3
    assert summary.failures == 2 + 1 + 3
    assert summary.successes == 2  # the 404 is neither
    assert [(c.key, c.count) for c in summary.success_users] == [("CONTOSO\\alice", 2)]
    alice = next(p for p in summary.per_client_url if p.client == "10.0.0.21")
    assert (alice.normal_legs, alice.failures, alice.successes, alice.users) == (
        2,
        0,
        1,
        ("CONTOSO\\alice",),
    )
    assert summary.first_time == datetime(2024, 3, 4, 9, 0, 1, tzinfo=UTC)


def test_healthy_log_has_no_failures() -> None:
    entries, _ = _parse("iis10_handshakes.log")
    healthy = [e for e in entries if e.client_ip == "10.0.0.21"]
    summary = summarize(healthy)
    assert not summary.has_failures and summary.normal_legs == 2
