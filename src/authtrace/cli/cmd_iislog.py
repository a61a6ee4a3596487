"""`authtrace iislog LOGFILE...`: summarise the 401s and 403s of IIS W3C logs.

The only place that opens log files: plain or gzip (recognised by its magic
bytes, not its name), read line by line with a bounded line length, decoded as
UTF-8 with undecodable bytes replaced (IIS writes UTF-8 or the ANSI code page).
Exit codes: 0 no failures, 1 failures, 2 nothing readable.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import click

from authtrace.cli import main
from authtrace.iis.render import format_summary, summary_to_dict
from authtrace.iis.w3c import MAX_LINE_CHARS, LogEntry, ParseReport, W3CLogParser, summarize

_GZIP_MAGIC = b"\x1f\x8b"


def _lines(stream: BinaryIO) -> Iterator[str]:
    while True:
        # One byte over the cap so an over-long line is seen as such by the parser.
        raw = stream.readline(MAX_LINE_CHARS + 1)
        if not raw:
            return
        if len(raw) > MAX_LINE_CHARS and not raw.endswith(b"\n"):
            # Skip the rest of the over-long line without holding it.
            while (rest := stream.readline(MAX_LINE_CHARS)) and not rest.endswith(b"\n"):
                pass
        yield raw.decode("utf-8", errors="replace")


def _read(path: Path, reports: list[ParseReport], errors: list[str]) -> Iterator[LogEntry]:
    """Yield the entries of one file; its report (and any error) is appended at the end.

    Entries are streamed into the summary so memory does not grow with the log.
    """
    parser = W3CLogParser(path.name)
    try:
        with path.open("rb") as raw:
            magic = raw.read(2)
            raw.seek(0)
            stream: BinaryIO = gzip.GzipFile(fileobj=raw) if magic == _GZIP_MAGIC else raw  # type: ignore[assignment]
            for line in _lines(stream):
                entry = parser.feed(line)
                if entry is not None:
                    yield entry
    except OSError as exc:
        # gzip.BadGzipFile is an OSError too; a cut gzip raises EOFError (below).
        errors.append(f"{path.name}: {exc.strerror or exc} (after line {parser.finish().lines})")
    except (EOFError, zlib.error) as exc:
        read = parser.finish().lines
        errors.append(f"{path.name}: compressed data cut or corrupt after line {read} ({exc})")
    report = parser.finish()
    if report.lines:
        reports.append(report)


@main.command("iislog")
@click.argument("logfiles", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
def iislog_command(logfiles: tuple[Path, ...], as_json: bool) -> None:
    """Summarise 401/403 lines of IIS W3C logs (plain or gzip): failures first,
    normal handshake legs counted apart, per URL and client.

    Exit status: 0 no failures, 1 failures, 2 nothing readable.
    """
    errors: list[str] = []
    reports: list[ParseReport] = []
    summary = summarize(entry for path in logfiles for entry in _read(path, reports, errors))
    if as_json:
        click.echo(json.dumps(summary_to_dict(summary, tuple(reports), tuple(errors)), indent=2))
    else:
        click.echo(format_summary(summary, tuple(reports), tuple(errors)))
    if not summary.entries:
        if not as_json:
            click.echo("nothing readable: no W3C log entries found", err=True)
        raise SystemExit(2)
    raise SystemExit(1 if summary.has_failures else 0)
