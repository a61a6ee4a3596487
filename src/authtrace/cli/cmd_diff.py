"""`authtrace diff`: where a failing capture's authentication departs from a
working one's, host by host."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from authtrace.cli import main
from authtrace.cli.common import (
    EXIT_FINDINGS,
    EXIT_OK,
    ProgressDisplay,
    all_appearances_option,
    fail,
    progress_printer,
    read_keylogs,
    read_options,
    show_secrets_option,
    tls_keylog_option,
    wants_progress,
    write_html,
)
from authtrace.compare.diff import compare
from authtrace.compare.render import comparison_to_dict, render_comparison
from authtrace.pipeline import CaptureError, analyze
from authtrace.readers.base import ReadOptions
from authtrace.report.filters import choices, listed
from authtrace.report.model import Report
from authtrace.words import agreeing, counted


@main.command("diff")
@click.argument("working", metavar="WORKING")
@click.argument("failing", metavar="FAILING")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (schema authtrace.diff/1).")
@click.option(
    "--host",
    "hosts",
    multiple=True,
    help="Only this server host (as the Host header names it); repeatable.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Show progress on stderr: a bar of the bytes read with rate and time left, then "
    "each later phase (default: only when stderr is a terminal).",
)
@click.option(
    "--html",
    "html",
    type=click.Path(allow_dash=True, dir_okay=False, path_type=Path),
    help="Also write a self-contained HTML page (the comparison, then each capture's findings "
    "and ladders) to this file; `--html -` writes it to stdout instead of the text.",
)
@show_secrets_option()
@tls_keylog_option()
@all_appearances_option()
def diff_command(
    working: str,
    failing: str,
    as_json: bool,
    hosts: tuple[str, ...],
    progress: bool | None,
    tls_keylogs: tuple[str, ...],
    html: Path | None,
    show_secrets: bool,
    all_appearances: bool,
) -> None:
    """Compare a WORKING capture with a FAILING one.

    \b
    Aligns the two captures by server host (the Host header) and URL path,
    never by address or port, so they may come from different machines (the
    client side of one, the server side of the other). Per host it compares the
    negotiation as it unfolds: schemes offered, the KDC's answer for
    HTTP/<host>, the mechanism the client really used (Kerberos or NTLM inside
    Negotiate, NTLM, Basic...), NTLMv1 and channel bindings, header sizes,
    whether a handshake stayed on one connection, Connection: close on 401s,
    proxies in the path, HTTP version and the final status per URL. It leads
    with the first point where the failing capture departs, then lists the
    other differences and the findings only one capture raised.

    \b
    Exit status: 0 authentication does not differ, 1 it differs,
    2 unusable input.

    \b
    Examples:
      authtrace diff from-my-desk.pcapng from-branch-office.pcapng
      authtrace diff --host web01.contoso.com before-proxy.pcap after-proxy.pcap
      authtrace diff --json ok.pcap bad.pcap | jq '.hosts[0].first_difference'
      authtrace diff ok.pcap bad.pcap --html diff.html
    """
    show = progress_printer(wants_progress(progress))
    # Key logs are read once per capture: a KeyLog is only read from after loading.
    try:
        options = read_options(all_appearances)
        left = _read(working, show, tls_keylogs, options)
        right = _read(failing, show, tls_keylogs, options)
    finally:
        if show is not None:
            show.close()
    comparison = compare(left, right, hosts)
    if hosts and not comparison.hosts:
        fail(
            f"no HTTP traffic to {', '.join(hosts)} in either capture; "
            f"hosts in {working}: {listed(choices(left).hosts)}; "
            f"in {failing}: {listed(choices(right).hosts)}"
        )
    if html is not None:
        # Imported only for --html (the template engine is a tenth of the start-up).
        from authtrace.report.html import render_diff_html

        if write_html(html, render_diff_html(comparison, left, right, show_secrets)):
            sys.exit(EXIT_FINDINGS if comparison.differs else EXIT_OK)
    if as_json:
        click.echo(json.dumps(comparison_to_dict(comparison), indent=2))
    else:
        click.echo(render_comparison(comparison), nl=False)
    sys.exit(EXIT_FINDINGS if comparison.differs else EXIT_OK)


def _read(
    path: str, show: ProgressDisplay | None, keylogs: tuple[str, ...], options: ReadOptions
) -> Report:
    try:
        report = analyze([path], show, read_keylogs(keylogs), read_options=options)
    except CaptureError as error:
        fail(str(error))  # names the file already
    except OSError as error:
        fail(f"{path}: {error.strerror or error}")
    if not report.view.timelines and report.encrypted_total:
        fail(
            f"{path}: no HTTP exchange could be read "
            f"({counted(report.encrypted_total, 'TLS connection')} "
            f"{agreeing(report.encrypted_total, 'stays')} encrypted: give "
            f"{agreeing(report.encrypted_total, 'its')} key log with --tls-keylog FILE)"
        )
    if not report.view.timelines:
        fail(f"{path}: no HTTP exchange in the capture, nothing to compare")
    return report
