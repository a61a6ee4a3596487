"""`authtrace connections`: every TCP connection that carried HTTP, and its
exchanges with their decoded authentication steps, one line each."""

from __future__ import annotations

import json
import sys

import click

from authtrace.cli import main
from authtrace.cli.common import (
    EXIT_OK,
    all_appearances_option,
    capture_argument,
    fail,
    progress_option,
    progress_printer,
    read_keylogs,
    read_options,
    show_secrets_option,
    tls_keylog_option,
    wants_progress,
)
from authtrace.pipeline import CaptureError, Pipeline
from authtrace.report.connections import connection_json, connection_text
from authtrace.report.tls import encrypted_lines, encrypted_to_dict, keylog_line, keylog_to_dict
from authtrace.schemas import Schema, document_head
from authtrace.visible import visible, visible_lines


@main.command("connections")
@capture_argument()
@click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON object (schema authtrace.connections/1)."
)
@tls_keylog_option()
@all_appearances_option()
@show_secrets_option()
@progress_option()
def connections_command(
    captures: tuple[str, ...],
    as_json: bool,
    tls_keylogs: tuple[str, ...],
    all_appearances: bool,
    show_secrets: bool,
    progress: bool | None,
) -> None:
    """List each TCP connection carrying HTTP and its exchanges.

    \b
    One line per exchange: frame of the request, method and URI, the decoded
    Authorization step, the status and frame of the response, the decoded
    WWW-Authenticate steps. CAPTURE is a pcap, pcapng, Network Monitor or ETL
    file (netsh trace, pktmon; optionally gzip'd), or - for standard input.
    HTTP is found by content on any port. Frame numbers are Wireshark's (an
    ETL's as etl2pcapng numbers them).

    \b
    Examples:
      authtrace connections trace.pcapng
      tcpdump -i eth0 -w - port 80 | authtrace connections -
      authtrace connections --json trace.pcap | jq '.connections[].exchanges[]'
    """
    # The connections stream to stdout as they close: on a terminal, a bar on the
    # same screen would be drawn over them, so it is shown by default only when
    # stdout goes elsewhere.
    display = progress_printer(
        wants_progress(progress) and (progress is True or not sys.stdout.isatty())
    )
    pipeline = Pipeline(
        display, keylog=read_keylogs(tls_keylogs), read_options=read_options(all_appearances)
    )
    out = sys.stdout
    first = True
    try:
        if as_json:
            out.write(json.dumps(document_head(Schema.CONNECTIONS))[:-1] + ', "connections": [')
        for connection in pipeline.connections(captures):
            if as_json:
                out.write(
                    ("" if first else ",")
                    + "\n  "
                    + json.dumps(connection_json(connection, show_secrets))
                )
            else:
                out.write(connection_text(connection, pipeline.frame_name) + "\n")
            first = False
    except CaptureError as error:
        fail(str(error))
    finally:
        if display is not None:
            display.close()
    result = pipeline.result
    if as_json:
        anomalies = [
            {"kind": a.kind, "message": a.message, "frame": a.frame, "connection": a.connection}
            for a in result.anomalies
        ]
        captures_info = [
            {
                "name": c.name,
                "format": c.format,
                "frames": c.frames,
                "first_frame": c.first_frame,
                "stream": c.stream,
            }
            for c in result.captures
        ]
        out.write("\n],\n")
        out.write(f' "captures": {json.dumps(captures_info)},\n')
        out.write(f' "other_tcp_connections": {result.other_connections},\n')
        tls = [encrypted_to_dict(c) for c in result.encrypted]
        out.write(f' "tls_not_read": {json.dumps(tls)},\n')
        out.write(f' "tls_not_read_total": {result.not_read.total},\n')
        out.write(f' "tls_keylog": {json.dumps(keylog_to_dict(result.keylog))},\n')
        out.write(f' "anomalies": {json.dumps(anomalies)}\n}}\n')
    else:
        keylog = keylog_line(result.keylog)
        if keylog:
            out.write(visible(keylog) + "\n")
        if first and not result.encrypted:
            out.write("No HTTP connection found.\n")
        elif first:
            out.write("No HTTP connection could be read.\n")
        not_read = result.not_read
        encrypted = encrypted_lines(not_read.groups(), not_read.total, result.keylog)
        if encrypted:
            out.write(visible_lines(encrypted) + "\n")
        for anomaly in result.anomalies[:20]:
            where = f" (frame {anomaly.frame})" if anomaly.frame else ""
            click.echo(visible(f"note: {anomaly.kind}{where}: {anomaly.message}"), err=True)
    sys.exit(EXIT_OK)
