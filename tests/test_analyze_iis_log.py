"""`authtrace analyze --iis-log`: log lines matched to the capture's exchanges
despite a clock offset; the logged triple shown beside the predicted one, and
the log wins where they differ."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from click.testing import CliRunner

from authtrace.cli import main
from authtrace.iis.capture_log import join_log
from authtrace.iis.w3c import parse_lines
from authtrace.pipeline import analyze

CAPTURE = Path(__file__).resolve().parent.parent / "captures" / "scenarios" / "pooling-proxy.pcap"
HEADER = [
    "#Software: Microsoft Internet Information Services 10.0",
    "#Version: 1.0",
    "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip "
    "cs(User-Agent) sc-status sc-substatus sc-win32-status time-taken",
]
# What this server logged, by response frame (frame 25 differs from the prediction).
LOGGED = {
    9: "401 2 5",
    13: "401 1 2148074254",
    17: "401 2 5",
    21: "401 1 2148074254",
    25: "401 1 1326",
    29: "401 1 2148074248",
}
OFFSET = 42.0  # the server's clock runs ahead of the capturing machine's


def _log_lines() -> list[str]:
    report = analyze([CAPTURE])
    rows = []
    for timeline in report.view.timelines:
        for step in timeline.steps:
            response = step.exchange.response
            assert response is not None and step.exchange.request is not None
            rows.append((response.timestamp, response.shown_frame, step.exchange.request.uri))
    lines = list(HEADER)
    for when, frame, uri in sorted(rows):  # IIS writes lines as responses end
        stamp = datetime.datetime.fromtimestamp(when + OFFSET, datetime.UTC)
        lines.append(
            f"{stamp:%Y-%m-%d %H:%M:%S} 198.51.100.20 GET {uri} - 80 - 203.0.113.5 "
            f"Mozilla/5.0 {LOGGED[frame]} 15"
        )
    return lines


def test_join_reports_offset_and_disagreement() -> None:
    entries, _report = parse_lines(_log_lines(), "u_ex.log")
    join = join_log(analyze([CAPTURE]).view, entries)
    assert round(join.offset) == OFFSET
    by_frame = {item.response_frame: item for item in join.matched}
    assert set(by_frame) == set(LOGGED)
    assert all(str(item.logged) == LOGGED[frame] for frame, item in by_frame.items())
    assert [frame for frame, item in by_frame.items() if not item.agrees] == [25]
    assert join.unmatched_401s == 0


def test_cli_shows_logged_next_to_predicted(tmp_path: Path) -> None:
    log = tmp_path / "u_ex231114.log"
    log.write_text("\n".join(_log_lines()) + "\n")
    result = CliRunner().invoke(
        main, ["analyze", "--no-ladders", str(CAPTURE), "--iis-log", str(log)]
    )
    assert result.exit_code == 1
    line = next(x for x in result.output.splitlines() if x.strip().startswith("frame 25 "))
    assert "logged 401 1 1326" in line and "predicted 401 1 2148074248" in line
    assert "the log wins" in line
    data = json.loads(
        CliRunner().invoke(main, ["analyze", "--json", str(CAPTURE), "--iis-log", str(log)]).output
    )
    assert len(data["iis_log"]["matched"]) == 6


def test_unreadable_log_is_reported_not_raised(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["analyze", str(CAPTURE), "--iis-log", str(tmp_path / "missing.log")]
    )
    assert result.exit_code == 1  # the capture's findings still stand
    assert "Traceback" not in result.output
