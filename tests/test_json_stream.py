"""`analyze --json` writes its document one entry at a time
(report/as_json.py write_report_json, issue 10): the text is exactly what
`json.dumps(report_to_dict(report), indent=2)` gives, on every scenario
capture, with secrets shown or not, with an IIS log joined, and with the
lists empty; nothing else changes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from authtrace.cli import main  # noqa: E402
from authtrace.iis.capture_log import log_join_to_dict  # noqa: E402
from authtrace.iis.w3c import parse_lines  # noqa: E402
from authtrace.pipeline import analyze  # noqa: E402
from authtrace.report.as_json import report_to_dict, write_report_json  # noqa: E402

SCENARIOS = ROOT / "captures" / "scenarios"
CAPTURES = sorted(SCENARIOS.glob("*.pcap"))


def _streamed(report, show_secrets: bool = False, extra=()) -> str:  # type: ignore[no-untyped-def]
    pieces: list[str] = []
    write_report_json(report, pieces.append, show_secrets, extra)
    assert len(pieces) > 10  # written in pieces, not as one string
    return "".join(pieces)


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda path: path.stem)
def test_streamed_document_is_the_dumped_dict(capture: Path) -> None:
    report = analyze([capture])
    for show_secrets in (False, True):
        expected = json.dumps(report_to_dict(report, show_secrets), indent=2) + "\n"
        assert _streamed(report, show_secrets) == expected


def test_extra_fields_come_last_and_empty_lists_stay_brackets() -> None:
    report = analyze([SCENARIOS / "healthy-kdc-benign.pcap"])
    data = report_to_dict(report)
    assert [] in (data["connections"], data["exchanges"], data["tls_not_read"])
    extra = [("iis_log", {"matched": [], "note": "two\nlines", "nested": {"a": [1, {}]}})]
    expected = json.dumps({**data, **dict(extra)}, indent=2) + "\n"
    assert _streamed(report, extra=extra) == expected


def test_cli_json_with_iis_log_is_the_dumped_dict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(SCENARIOS)  # the capture named as the user gave it, in both
    capture = Path("resource-acl-denied-logged.pcap")
    log = Path("resource-acl-denied-logged.log")
    out = CliRunner().invoke(main, ["analyze", "--json", str(capture), "--iis-log", str(log)])
    assert out.exit_code in (0, 1), out.output
    entries, _parsed = parse_lines(log.read_text().splitlines(), str(log))
    report = analyze([capture], iis_log=entries)
    assert report.iis_log is not None
    data = report_to_dict(report)
    data["iis_log"] = log_join_to_dict(report.iis_log)
    assert out.output == json.dumps(data, indent=2) + "\n"
