"""Narrowing a report to some hosts and clients (`--host`, `--client`)."""

from __future__ import annotations

import dataclasses

from authtrace.handshake.links import host_of
from authtrace.report.model import Report


def filter_report(report: Report, hosts: tuple[str, ...], clients: tuple[str, ...]) -> Report:
    """Keep the connections (and findings) of these hosts and client addresses."""
    wanted_hosts = {h.lower() for h in hosts}
    wanted_clients = set(clients)

    def keep(timeline) -> bool:  # type: ignore[no-untyped-def]
        connection = timeline.connection
        if wanted_clients and connection.client.ip not in wanted_clients:
            return False
        if not wanted_hosts:
            return True
        names = {host_of(step, connection) for step in timeline.steps}
        names |= {str(connection.server), connection.server.ip}
        return bool(names & wanted_hosts)

    timelines = tuple(t for t in report.view.timelines if keep(t))
    kept = {t.connection.id for t in timelines}
    findings = tuple(
        f
        for f in report.findings
        if (f.connections and set(f.connections) & kept)
        or (not f.connections and (not wanted_hosts or (f.host or "").lower() in wanted_hosts))
    )
    view = dataclasses.replace(
        report.view,
        timelines=timelines,
        by_id={t.connection.id: t for t in timelines},
    )
    return dataclasses.replace(report, view=view, findings=findings)
