"""`authtrace iislog LOGFILE...`: summarise the 401s and 403s of IIS W3C logs.

The only place that opens log files: plain or gzip (recognised by its magic
bytes, not its name), read line by line with a bounded line length, decoded as
UTF-8 with undecodable bytes replaced (IIS writes UTF-8 or the ANSI code page).
Exit codes: 0 no failures, 1 failures, 2 nothing readable.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from authtrace.cli import main
from authtrace.cli.logfiles import read_log_entries
from authtrace.iis.render import format_summary, summary_to_dict
from authtrace.iis.w3c import ParseReport, summarize
from authtrace.schemas import Schema, document_head


@main.command("iislog")
@click.argument("logfiles", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema authtrace.iislog/1).")
def iislog_command(logfiles: tuple[Path, ...], as_json: bool) -> None:
    """Summarise 401/403 lines of IIS W3C logs (plain or gzip): failures first,
    normal handshake legs counted apart, per URL and client.

    Exit status: 0 no failures, 1 failures, 2 nothing readable.
    """
    errors: list[str] = []
    reports: list[ParseReport] = []
    summary = summarize(
        entry for path in logfiles for entry in read_log_entries(path, reports, errors)
    )
    if as_json:
        document = {
            **document_head(Schema.IISLOG),
            **summary_to_dict(summary, tuple(reports), tuple(errors)),
        }
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(format_summary(summary, tuple(reports), tuple(errors)))
    if not summary.entries:
        if not as_json:
            click.echo("nothing readable: no W3C log entries found", err=True)
        raise SystemExit(2)
    raise SystemExit(1 if summary.has_failures else 0)
