"""`authtrace analyze`: what went wrong with HTTP authentication, the frames
that prove it, and the fix."""

from __future__ import annotations

import json
import sys

import click

from authtrace.cli import main
from authtrace.cli.common import (
    EXIT_FINDINGS,
    EXIT_OK,
    capture_argument,
    fail,
    progress_printer,
    wants_progress,
)
from authtrace.pipeline import CaptureError, analyze
from authtrace.report.as_json import report_to_dict
from authtrace.report.as_text import render_report
from authtrace.report.filters import filter_report


@main.command("analyze")
@capture_argument()
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema authtrace.analyze/1).")
@click.option(
    "--host",
    "hosts",
    multiple=True,
    help="Only this server host (Host header or address); repeatable.",
)
@click.option("--client", "clients", multiple=True, help="Only this client address; repeatable.")
@click.option(
    "--no-ladders",
    is_flag=True,
    help="Text output: leave out the per-connection handshake ladders.",
)
@click.option(
    "--show-secrets", is_flag=True, help="Show passwords, hashes and tokens (redacted by default)."
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Report reading progress on stderr (default: on a terminal).",
)
def analyze_command(
    captures: tuple[str, ...],
    as_json: bool,
    hosts: tuple[str, ...],
    clients: tuple[str, ...],
    no_ladders: bool,
    show_secrets: bool,
    progress: bool | None,
) -> None:
    """Explain every HTTP 401/407 in the captures.

    \b
    Rebuilds every HTTP/1.x connection, follows the Negotiate / NTLM / Kerberos
    / Basic / Digest / Bearer negotiation on each, links it to the Kerberos
    traffic to the KDC, and reports what went wrong: the summary per host, each
    finding with its evidence frames (Wireshark's numbers), the IIS log line it
    most likely produced and the fix, then each connection's handshake.
    The normal 401s of a healthy handshake are counted, not reported.

    \b
    Exit status: 0 no error or warning, 1 findings, 2 unusable input.

    \b
    Examples:
      authtrace analyze failing.pcapng
      authtrace analyze --host web01.contoso.com --client 10.1.2.3 trace.pcap
      authtrace analyze --json trace.pcap | jq '.findings[] | {rule, frames}'
    """
    try:
        report = analyze(captures, progress_printer(wants_progress(progress)))
    except CaptureError as error:
        fail(str(error))
    if hosts or clients:
        report = filter_report(report, hosts, clients)
    if as_json:
        click.echo(json.dumps(report_to_dict(report, show_secrets), indent=2))
    else:
        click.echo(render_report(report, show_ladders=not no_ladders), nl=False)
    sys.exit(EXIT_FINDINGS if report.has_problems else EXIT_OK)
