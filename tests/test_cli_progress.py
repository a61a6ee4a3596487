"""The progress display (cli/common.py): a bar of bytes read with rate and time
left on a terminal, each later phase by name, the line cleared before the
report; nothing on stderr off a terminal unless --progress, then phase names."""

from __future__ import annotations

import io
from pathlib import Path

from click.testing import CliRunner

from authtrace.cli import main
from authtrace.cli.common import ProgressDisplay
from authtrace.pipeline import Phase, ProgressReport, analyze

SPLIT = str(
    Path(__file__).resolve().parent.parent / "captures" / "scenarios" / "pooling-proxy.pcap"
)


KERBEROS = SPLIT.replace("pooling-proxy.pcap", "healthy-kerberos.pcap")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_shows_a_bar_then_phases_and_clears_the_line() -> None:
    screen = Terminal()
    display = ProgressDisplay(screen)
    display.MIN_INTERVAL = 0.0  # type: ignore[misc]
    for done in (0, 250_000, 500_000, 1_000_000):
        display(ProgressReport(Phase.READING, done, 1_000_000))
    reading = screen.getvalue()
    assert "reading" in reading and "100%" in reading and "MB/s" in reading
    assert "#" in reading  # the bar itself
    # A later phase that knows its total shows its position (none does today:
    # connections are judged while they are read).
    display(ProgressReport(Phase.LINKING, 500, 1000))
    assert "linking connections" in screen.getvalue() and "500/1000" in screen.getvalue()
    display(ProgressReport(Phase.DIAGNOSING, 0, None))
    display.close()
    text = screen.getvalue()
    assert "finding problems" in text
    # The last thing written blanks the line and shows the cursor again.
    tail = text[text.rindex("linking connections") :]
    assert tail.rstrip("\x1b[?25h").endswith("\r") and "\x1b[?25h" in tail


def test_reading_a_stream_of_unknown_size_shows_bytes_and_rate() -> None:
    screen = Terminal()
    display = ProgressDisplay(screen)
    display(ProgressReport(Phase.READING, 0, None))
    display.MIN_INTERVAL = 0.0  # type: ignore[misc]
    display(ProgressReport(Phase.READING, 3_000_000, None))
    assert "3 MB" in screen.getvalue() and "MB/s" in screen.getvalue()


def test_not_a_terminal_gets_each_phase_name_once() -> None:
    log = io.StringIO()
    display = ProgressDisplay(log)
    for done in (0, 10, 20):
        display(ProgressReport(Phase.READING, done, 20))
    display(ProgressReport(Phase.DIAGNOSING, 0, None))
    display.close()
    assert log.getvalue() == "reading\nfinding problems\n"


def test_analyze_reports_every_phase_in_order() -> None:
    seen: list[ProgressReport] = []
    analyze([SPLIT], seen.append)
    phases = list(dict.fromkeys(report.phase for report in seen))
    # Connections are judged as they close, while reading.
    assert phases == [Phase.READING, Phase.LINKING, Phase.DIAGNOSING]
    reading = [r for r in seen if r.phase is Phase.READING]
    assert reading[-1].total == Path(SPLIT).stat().st_size
    assert all(0 <= r.done <= (r.total or 0) for r in reading)


def test_cli_is_silent_off_a_terminal_unless_asked() -> None:
    runner = CliRunner()
    quiet = runner.invoke(main, ["analyze", "--no-ladders", SPLIT])
    assert quiet.exit_code == 1 and quiet.stderr == ""
    loud = runner.invoke(main, ["analyze", "--progress", "--no-ladders", SPLIT])
    assert loud.stderr.splitlines() == [
        "reading",
        "linking connections",
        "finding problems",
    ]
    assert loud.stdout == quiet.stdout


def test_json_into_a_file_is_written_as_a_phase_of_its_own() -> None:
    """analyze --json is a third of a big run: off the terminal that draws the
    progress (into a file, a pipe) its writing is a phase, and the document
    is the same as without progress."""
    runner = CliRunner()
    quiet = runner.invoke(main, ["analyze", "--json", SPLIT])
    loud = runner.invoke(main, ["analyze", "--json", "--progress", SPLIT])
    assert loud.stderr.splitlines() == [
        "reading",
        "linking connections",
        "finding problems",
        "writing the report",
    ]
    assert loud.stdout == quiet.stdout


def test_writing_the_json_counts_connections_then_kdc_exchanges(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from authtrace.report import as_json
    from authtrace.report.as_json import write_report_json

    monkeypatch.setattr(as_json, "PROGRESS_EVERY", 1)
    report = analyze([KERBEROS])
    told: list[tuple[int, int]] = []
    pieces: list[str] = []
    write_report_json(
        report, pieces.append, progress=lambda done, total: told.append((done, total))
    )
    total = len(report.view.timelines) + len(report.kdc)
    assert len(report.kdc) > 0
    assert told == [(done, total) for done in range(1, total + 1)]
    plain: list[str] = []
    write_report_json(report, plain.append)
    assert "".join(pieces) == "".join(plain)


def test_the_writing_phase_shows_its_position_on_a_terminal() -> None:
    screen = Terminal()
    display = ProgressDisplay(screen)
    display.MIN_INTERVAL = 0.0  # type: ignore[misc]
    display(ProgressReport(Phase.WRITING, 200, 16_000))
    assert "writing the report" in screen.getvalue() and "200/16000" in screen.getvalue()
