"""`authtrace analyze`: what went wrong with HTTP authentication, the frames
that prove it, and the fix."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from authtrace.cli import main
from authtrace.cli.common import (
    EXIT_FINDINGS,
    EXIT_OK,
    ProgressDisplay,
    all_appearances_option,
    capture_argument,
    fail,
    is_terminal,
    progress_option,
    progress_printer,
    read_keylogs,
    read_options,
    show_secrets_option,
    tls_keylog_option,
    wants_progress,
    write_html,
)
from authtrace.cli.logfiles import read_log_entries, unopenable
from authtrace.iis.capture_log import log_join_to_dict, render_log_join
from authtrace.iis.w3c import LogEntry
from authtrace.pipeline import CaptureError, Phase, ProgressReport, analyze
from authtrace.report.as_json import write_report_json
from authtrace.report.as_text import Ladders, render_report
from authtrace.report.filters import choices, filter_report, no_match_message
from authtrace.visible import visible


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
    "--ladders",
    "ladders",
    type=click.Choice([choice.value for choice in Ladders]),
    default=Ladders.FINDINGS.value,
    show_default=True,
    help="Draw the handshake ladder of the connections a finding names, of every connection, "
    "or of none (text output; the --html page always draws the findings' ladders, and every "
    "connection's with `all`).",
)
@click.option(
    "--no-ladders",
    is_flag=True,
    help="Same as --ladders none.",
)
@click.option(
    "--iis-log",
    "iis_logs",
    multiple=True,
    type=click.Path(path_type=Path),
    help="IIS W3C log (plain or gzip'd) of the server: show the logged status triple of each "
    "401 next to the predicted one; a logged substatus decides the finding (401.3 ACL, 401.4 "
    "filter, 401.5 application) over what the wire suggests. Repeatable.",
)
@click.option(
    "--html",
    "html",
    type=click.Path(allow_dash=True, dir_okay=False, path_type=Path),
    help="Also write a self-contained HTML report (findings, summary, SVG ladders, decoded "
    "tokens) to this file; the text or JSON report still goes to stdout. `--html -` writes "
    "the HTML to stdout instead of the text report.",
)
@click.option(
    "--jobs",
    "-j",
    "jobs",
    default="auto",
    show_default=True,
    metavar="N|auto",
    callback=lambda _ctx, _param, value: _jobs(value),
    help="Read the captures in N processes, each reassembling and judging a share of the "
    "TCP connections (the report is the same as with 1). `auto`: one per usable core but "
    "one (the main process links and judges), at most 4, for capture files of 8 MiB or "
    "more; 1 on 2 cores or fewer and for smaller files. Standard input is always read in "
    "one process.",
)
@tls_keylog_option()
@all_appearances_option()
@show_secrets_option()
@progress_option(writing=True)
def analyze_command(
    captures: tuple[str, ...],
    as_json: bool,
    hosts: tuple[str, ...],
    clients: tuple[str, ...],
    ladders: str,
    no_ladders: bool,
    iis_logs: tuple[Path, ...],
    tls_keylogs: tuple[str, ...],
    all_appearances: bool,
    show_secrets: bool,
    progress: bool | None,
    html: Path | None,
    jobs: int | None,
) -> None:
    """Explain every HTTP 401/407 in the captures.

    \b
    Rebuilds every HTTP/1.x connection, follows the Negotiate / NTLM / Kerberos
    / Basic / Digest / Bearer negotiation on each, links it to the Kerberos
    traffic to the KDC, and reports what went wrong: the summary per host, each
    finding with its evidence frames (Wireshark's numbers), the IIS log line it
    most likely produced and the fix, then the handshake of each connection a
    finding names (`--ladders all` for every connection). A finding that covers
    many connections shows their count and the first and last frames; `--json`
    lists them all. The normal 401s of a healthy handshake are counted, not
    reported.

    \b
    Exit status: 0 no error or warning, 1 findings, 2 unusable input (or a
    --host/--client that matches no connection: the hosts and clients the
    capture has are listed).

    \b
    Examples:
      authtrace analyze failing.pcapng
      authtrace analyze --host web01.contoso.com --client 10.1.2.3 trace.pcap
      authtrace analyze --json trace.pcap | jq '.findings[] | {rule, frames}'
      authtrace analyze trace.pcap --iis-log u_ex231114.log
      authtrace analyze https.pcapng --tls-keylog sslkeys.log
      authtrace analyze trace.pcap --html report.html
      authtrace analyze NetTrace.etl
      authtrace analyze --jobs 2 big-trace.pcapng
    """
    if iis_logs and (problems := unopenable(iis_logs)):
        # The capture's findings still stand: say which log is left out, once.
        for problem in problems:
            click.echo(f"authtrace: --iis-log {visible(problem)} (left out)", err=True)
        iis_logs = tuple(p for p in iis_logs if not unopenable((p,)))
    entries: list[LogEntry] = []
    if iis_logs:
        errors: list[str] = []
        entries = [e for path in iis_logs for e in read_log_entries(path, [], errors)]
        for problem in errors:
            click.echo(f"authtrace: {visible(problem)}", err=True)
    # Imported here: multiprocessing is not needed by the other commands' start-up.
    from authtrace.parallel import WorkerFailed, jobs_for

    display = progress_printer(wants_progress(progress))
    try:
        report = analyze(
            captures,
            display,
            read_keylogs(tls_keylogs),
            iis_log=entries,
            read_options=read_options(all_appearances),
            jobs=jobs_for(captures, jobs),
        )
    except (CaptureError, WorkerFailed) as error:
        fail(str(error))
    finally:
        if display is not None:
            display.close()
    if hosts or clients:
        kept = filter_report(report, hosts, clients)
        if not kept.view.timelines:
            where = "the captures" if len(captures) > 1 else "the capture"
            fail(no_match_message(hosts, clients, choices(report), where))
        report = kept
    join = report.iis_log
    if html is not None:
        # Imported only for --html: the template engine is a tenth of the start-up
        # of every other run.
        from authtrace.report.html import render_report_html

        page = render_report_html(
            report,
            show_secrets,
            draw_all=not no_ladders and Ladders(ladders) is Ladders.ALL,
            iis_section=render_log_join(join) if join is not None else "",
        )
        if write_html(html, page):
            sys.exit(EXIT_FINDINGS if report.has_problems else EXIT_OK)
    if as_json:
        extra = [("iis_log", log_join_to_dict(join))] if join is not None else []
        out = _Echo()
        # Writing takes a while on a big capture (about a third of the run):
        # shown as a phase of its own, unless the document goes to the very
        # terminal the progress is drawn on.
        writing = display if display is not None and not is_terminal(sys.stdout) else None
        try:
            write_report_json(
                report, out.write, show_secrets, extra, _phase_progress(writing, Phase.WRITING)
            )
        finally:
            if writing is not None:
                writing.close()
        out.flush()
    else:
        section = render_log_join(join) if join is not None else ""
        click.echo(
            render_report(
                report,
                Ladders.NONE if no_ladders else Ladders(ladders),
                after_findings=section,
            ),
            nl=False,
        )
    sys.exit(EXIT_FINDINGS if report.has_problems else EXIT_OK)


class _Echo:
    """Text for standard output gathered into pieces of about 64 KiB, each
    written with click.echo (a document written one entry at a time would
    otherwise be hundreds of thousands of writes)."""

    LIMIT = 1 << 16

    def __init__(self) -> None:
        self._pieces: list[str] = []
        self._size = 0

    def write(self, text: str) -> None:
        self._pieces.append(text)
        self._size += len(text)
        if self._size >= self.LIMIT:
            self.flush()

    def flush(self) -> None:
        if self._pieces:
            click.echo("".join(self._pieces), nl=False)
            self._pieces, self._size = [], 0


def _jobs(value: str) -> int | None:
    """--jobs: a number of processes (1 or more), or `auto` (None)."""
    if value.strip().lower() == "auto":
        return None
    try:
        jobs = int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number of processes or 'auto'") from None
    if jobs < 1:
        raise click.BadParameter("needs at least 1 process")
    return jobs


def _phase_progress(
    display: ProgressDisplay | None, phase: Phase
) -> Callable[[int, int], None] | None:
    """A (done, total) callback that draws `phase` on `display` (None for none)."""
    if display is None:
        return None

    def tell(done: int, total: int) -> None:
        display(ProgressReport(phase, done, total))

    return tell
