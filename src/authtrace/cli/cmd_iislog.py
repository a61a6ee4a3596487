"""`authtrace iislog LOGFILE...`: summarise the 401s and 403s of IIS W3C logs.

The only place that opens log files: plain or gzip (recognised by its magic
bytes, not its name), read line by line with a bounded line length, decoded as
UTF-8 with undecodable bytes replaced (IIS writes UTF-8 or the ANSI code page).
Exit codes: 0 no failures, 1 failures, 2 a file that cannot be opened, or no W3C
entry in any file (one line on stderr and no report, in text and JSON alike).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from authtrace.cli import main
from authtrace.cli.common import fail
from authtrace.cli.logfiles import read_log_entries, unopenable
from authtrace.iis.render import format_summary, summary_to_dict
from authtrace.iis.w3c import ParseReport, summarize
from authtrace.schemas import Schema, document_head


@main.command("iislog")
@click.argument("logfiles", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema authtrace.iislog/1).")
def iislog_command(logfiles: tuple[Path, ...], as_json: bool) -> None:
    """Summarise 401/403 lines of IIS W3C logs (plain or gzip): failures first,
    normal handshake legs counted apart, per URL and client.

    \b
    Exit status: 0 no failures, 1 failures, 2 a file that cannot be opened,
    or no W3C entry in any (one line on stderr, no report).
    """
    problems = unopenable(logfiles)
    if problems:
        fail("; ".join(problems))
    errors: list[str] = []
    reports: list[ParseReport] = []
    summary = summarize(
        entry for path in logfiles for entry in read_log_entries(path, reports, errors)
    )
    if not summary.entries:
        fail("no W3C log entries in " + "; ".join(_why_empty(logfiles, reports, errors)))
    if as_json:
        document = {
            **document_head(Schema.IISLOG),
            **summary_to_dict(summary, tuple(reports), tuple(errors)),
        }
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(format_summary(summary, tuple(reports), tuple(errors)))
    raise SystemExit(1 if summary.has_failures else 0)


def _why_empty(
    logfiles: tuple[Path, ...], reports: list[ParseReport], errors: list[str]
) -> list[str]:
    """Per file, what was there instead of W3C entries."""
    by_name = {report.source: report for report in reports}
    out = []
    for path in logfiles:
        report = by_name.get(path.name)
        if report is None or not report.problems:
            error = next((e for e in errors if e.startswith(f"{path.name}: ")), None)
            out.append(error or f"{path}: empty")
            continue
        kinds = ", ".join(f"{p.count:,} x {p.kind.value} ({p.reason})" for p in report.problems)
        out.append(f"{path}: {report.lines:,} lines, {kinds}")
    return out
