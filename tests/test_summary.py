"""The per-host summary (report/summary.py) says whether a logon was seen:
`logon_seen` is "yes" when some mechanism authenticated, "no" when none did
and the capture cut nothing, "not seen" when none did but the capture cut legs
it could not judge (a cut capture means "not seen", never "not sent"). The
text report and `analyze --json` say the same, and the JSON stays within its
schema."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from authtrace.cli import main
from authtrace.pipeline import analyze
from authtrace.report.summary import HostSummary, HostTally, summarize
from authtrace.schemas import Schema

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from test_json_schemas import _check  # noqa: E402

SCENARIOS = ROOT / "captures" / "scenarios"
ETL_DIR = ROOT / "captures" / "etl"

_CUT = "nothing seen (legs the capture cut)"
# (capture, logon_seen, what the text summary says after "authenticated with:")
CASES = [
    # Anonymous 401, NEGOTIATE, CHALLENGE, AUTHENTICATE, 200: the logon is seen.
    (SCENARIOS / "healthy-ntlm.pcap", "yes", "ntlm x1"),
    # The same three legs, the AUTHENTICATE answered 401: no logon, nothing cut.
    (SCENARIOS / "ntlm-logon-failed.pcap", "no", "nothing"),
    # That failed logon again, each packet cut short by the tracer: its three
    # 401s cannot be judged, so no logon is "not seen", not "none".
    (ETL_DIR / "ntlm-logon-failed-truncated.netsh.etl", "not seen", _CUT),
    (ETL_DIR / "ntlm-logon-failed-truncated.pktmon.etl", "not seen", _CUT),
]
_IDS = [capture.name for capture, _seen, _words in CASES]


@pytest.mark.parametrize(("capture", "seen", "_words"), CASES, ids=_IDS)
def test_logon_seen_of_the_host(capture: Path, seen: str, _words: str) -> None:
    (host,) = summarize(analyze([capture]))
    assert host.host == "web01.contoso.com"
    assert host.logon_seen == seen


@pytest.mark.parametrize(("capture", "seen", "_words"), CASES, ids=_IDS)
def test_json_summary_says_whether_a_logon_was_seen(capture: Path, seen: str, _words: str) -> None:
    result = CliRunner().invoke(main, ["analyze", "--json", str(capture)])
    assert result.exit_code in (0, 1), result.output[:300]
    document = json.loads(result.stdout)
    _check(Schema.ANALYZE, document)
    (host,) = document["summary"]["hosts"]
    assert host["logon_seen"] == seen


@pytest.mark.parametrize(("capture", "_seen", "words"), CASES, ids=_IDS)
def test_text_summary_says_the_same(capture: Path, _seen: str, words: str) -> None:
    result = CliRunner().invoke(main, ["analyze", str(capture)])
    assert result.exit_code in (0, 1), result.output[:300]
    (line,) = [x for x in result.output.splitlines() if "authenticated with:" in x]
    said = line.split("authenticated with: ", 1)[1]
    assert said == words


def _host(authenticated_with: tuple[tuple[str, int], ...], incomplete: int) -> HostSummary:
    return HostSummary("web01", 2, 4, authenticated_with, 1, 1, incomplete, ())


def test_a_logon_seen_wins_over_legs_the_capture_cut() -> None:
    assert _host((("ntlm", 1),), incomplete=0).logon_seen == "yes"
    assert _host((("kerberos", 2),), incomplete=3).logon_seen == "yes"
    assert _host((), incomplete=0).logon_seen == "no"
    assert _host((), incomplete=1).logon_seen == "not seen"


# A 401 to credentials that the error page or the IIS log puts in 401.3-401.5:
# the logon succeeded and the request was refused behind it, as the findings
# say ("Authenticated, but ..."). (capture, IIS log or None, summary words)
BEHIND = [
    # NTLM, the error page says 401.3.
    (SCENARIOS / "resource-acl-denied.pcap", None, "ntlm x1"),
    # NTLM, the error page says 401.5.
    (SCENARIOS / "application-denied.pcap", None, "ntlm x1"),
    # NTLM, no error page: the sequence reads a refused logon ...
    (SCENARIOS / "resource-acl-denied-logged.pcap", None, "nothing"),
    # ... the log line (401 3 5) says the logon succeeded.
    (
        SCENARIOS / "resource-acl-denied-logged.pcap",
        SCENARIOS / "resource-acl-denied-logged.log",
        "ntlm x1",
    ),
    # Basic, the log line says 401.4 (a filter).
    (SCENARIOS / "filter-denied.pcap", SCENARIOS / "filter-denied.log", "basic x1"),
]


@pytest.mark.parametrize(
    ("capture", "log", "words"), BEHIND, ids=[f"{c.stem}-{bool(g)}" for c, g, _w in BEHIND]
)
def test_a_refusal_behind_the_logon_counts_the_logon(
    capture: Path, log: Path | None, words: str
) -> None:
    args = ["analyze", str(capture)] + (["--iis-log", str(log)] if log else [])
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output[:300]
    (line,) = [x for x in result.output.splitlines() if "authenticated with:" in x]
    assert line.split("authenticated with: ", 1)[1] == words
    document = json.loads(CliRunner().invoke(main, [*args, "--json"]).stdout)
    (host,) = document["summary"]["hosts"]
    assert host["logon_seen"] == ("no" if words == "nothing" else "yes")


def test_the_ladder_does_not_call_a_logon_the_page_says_succeeded_refused() -> None:
    """The error page says 401.3: the ladder line of that 401 says the request
    was refused after the logon, not that the NTLM logon was refused."""
    result = CliRunner().invoke(main, ["analyze", str(SCENARIOS / "resource-acl-denied.pcap")])
    (line,) = [x for x in result.output.splitlines() if "page says 401.3" in x]
    assert "= FAILURE: refused after the logon (behind authentication)" in line
    assert "NTLM logon refused" not in line
    # Without such evidence the words stay: the AUTHENTICATE was refused.
    failed = CliRunner().invoke(main, ["analyze", str(SCENARIOS / "ntlm-logon-failed.pcap")])
    assert "= FAILURE: NTLM logon refused" in failed.output


def test_with_the_iis_log_the_ladder_says_what_iis_wrote() -> None:
    """The log line (401 3 5) wins in the ladder as in the findings: its triple
    and its category, not the predicted 401 1 1326 and a refused logon; the
    HTML ladder says the same."""
    capture = SCENARIOS / "resource-acl-denied-logged.pcap"
    args = ["analyze", str(capture), "--iis-log", str(capture.with_suffix(".log"))]
    text = CliRunner().invoke(main, args).output
    (line,) = [x for x in text.splitlines() if "NTLM AUTHENTICATE" in x and " = " in x]
    said = "= FAILURE: refused after the logon (behind authentication), IIS log 401 3 5"
    assert line.endswith(said)
    page = CliRunner().invoke(main, [*args, "--html", "-"]).output
    assert "refused after the logon (behind authentication), IIS log 401 3 5" in page
    assert "NTLM logon refused, IIS 401 1 1326" not in page
    # Without the log the ladder keeps the prediction (and says so: no "log").
    bare = CliRunner().invoke(main, ["analyze", str(capture)]).output
    assert "= FAILURE: NTLM logon refused, IIS 401 1 1326" in bare


def _tallied(report):  # type: ignore[no-untyped-def]
    assert report.tally is not None, "analyze feeds the summary's counts as it judges"
    return report.tally.hosts(report.findings), report.tally.with_auth


def _walked(report):  # type: ignore[no-untyped-def]
    walked = HostTally.of(report)
    return walked.hosts(report.findings), walked.with_auth


@pytest.mark.parametrize("capture", sorted(SCENARIOS.glob("*.pcap*")), ids=lambda p: p.stem)
def test_the_counts_fed_block_by_block_are_those_of_one_walk(capture: Path) -> None:
    """analyze counts each block's timelines for the summary while its rules
    hold them (Report.tally): the same hosts, counts, mechanisms in the same
    order and connections with authentication as one walk of every timeline."""
    log = capture.with_suffix(".log")
    if log.exists():
        from authtrace.iis.w3c import parse_lines

        report = analyze([capture], iis_log=parse_lines(log.read_text().splitlines())[0])
    else:
        report = analyze([capture])
    assert _tallied(report) == _walked(report)


def test_a_filtered_report_counts_what_it_kept() -> None:
    """The tally counts every timeline: a report filtered to one client (or
    host) counts the connections it kept, not the capture's."""
    from authtrace.report.filters import filter_report

    report = analyze([SCENARIOS / "reverse-proxy-second-client.pcap"])
    clients = sorted({t.connection.client.ip for t in report.view.timelines if t.steps})
    assert len(clients) > 1
    for client in clients:
        kept = filter_report(report, (), (client,))
        assert kept.tally is None
        assert sum(h.connections for h in summarize(kept)) == sum(
            1 for t in report.view.timelines if t.connection.client.ip == client and t.steps
        )


def test_the_counts_of_captures_analysed_side_by_side_are_those_of_one_walk(
    tmp_path: Path,
) -> None:
    """Two captures of the same time are two streams, each linked and judged on
    its own: the tally counts both, as one walk of the joined view does."""
    first = tmp_path / "a.pcap"
    second = tmp_path / "b.pcap"
    first.write_bytes((SCENARIOS / "healthy-ntlm.pcap").read_bytes())
    second.write_bytes((SCENARIOS / "ntlm-logon-failed.pcap").read_bytes())
    report = analyze([first, second])
    assert report.streams == 2
    assert _tallied(report) == _walked(report)
    assert sum(h.connections for h in summarize(report)) == sum(
        1 for t in report.view.timelines if t.steps
    )
