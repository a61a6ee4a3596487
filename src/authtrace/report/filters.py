"""Narrowing a report to some hosts and clients (`--host`, `--client`).

This module owns what a host or client filter matches and what there was to
match. Invariant: a filter that keeps nothing is never silent; `choices` lists
the hosts and clients the report does have, for the CLI to say so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from authtrace.diagnose import merge_repeats
from authtrace.diagnose.finding import Finding
from authtrace.handshake.links import host_of
from authtrace.handshake.timeline import ConnectionTimeline
from authtrace.report.model import Report


@dataclass(frozen=True, slots=True)
class Choices:
    """What a filter could have matched, in first-seen order.

    hosts: each server as the clients named it (Host header) with the
        address it was reached at, e.g. ``web01.contoso.com (198.51.100.20:80)``,
        or the address alone when no request named it.
    clients: the client addresses.
    """

    hosts: tuple[str, ...]
    clients: tuple[str, ...]


def _names(timeline: ConnectionTimeline) -> set[str]:
    """Every string `--host` matches for this connection (lower case)."""
    connection = timeline.connection
    names = {host_of(step, connection) for step in timeline.steps}
    return names | {str(connection.server), connection.server.ip}


def filter_report(report: Report, hosts: tuple[str, ...], clients: tuple[str, ...]) -> Report:
    """Keep the connections (and findings) of these hosts and client addresses;
    a folded finding is folded again from the occurrences that touch them."""
    wanted_hosts = {h.strip().lower() for h in hosts}
    wanted_clients = {c.strip() for c in clients}

    def keep(timeline: ConnectionTimeline) -> bool:
        connection = timeline.connection
        if wanted_clients and connection.client.ip not in wanted_clients:
            return False
        return not wanted_hosts or bool(_names(timeline) & wanted_hosts)

    timelines = tuple(t for t in report.view.timelines if keep(t))
    kept = {t.connection.id for t in timelines}

    def wanted(finding: Finding) -> bool:
        if finding.connections:
            return bool(set(finding.connections) & kept)
        return not wanted_hosts or (finding.host or "").lower() in wanted_hosts

    findings: list[Finding] = []
    for finding in report.findings:
        # A folded finding keeps the occurrences the filter keeps, folded again:
        # `--client X` shows X's users and counts, not every client's.
        occurrences = [o for o in finding.occurrences_kept if wanted(o)]
        if len(occurrences) == len(finding.occurrences_kept):
            findings.append(finding)
        elif occurrences:
            findings.extend(merge_repeats(occurrences))
    view = dataclasses.replace(
        report.view,
        timelines=timelines,
        by_id={t.connection.id: t for t in timelines},
    )
    # The tally counted every timeline: the summary counts the kept ones again.
    return dataclasses.replace(report, view=view, findings=tuple(findings), tally=None)


def choices(report: Report) -> Choices:
    """The hosts and clients of every HTTP connection of the report. Cost: one
    pass over the judged exchanges."""
    hosts: dict[str, None] = {}
    clients: dict[str, None] = {}
    for timeline in report.view.timelines:
        connection = timeline.connection
        server = str(connection.server)
        named = {host_of(step, connection) for step in timeline.steps} - {server}
        for name in sorted(named) or [""]:
            hosts.setdefault(f"{name} ({server})" if name else server)
        clients.setdefault(connection.client.ip)
    return Choices(tuple(hosts), tuple(clients))


def listed(items: tuple[str, ...], limit: int = 12) -> str:
    """At most `limit` items joined by commas, then how many more there are."""
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def no_match_message(
    hosts: tuple[str, ...], clients: tuple[str, ...], available: Choices, where: str = "the capture"
) -> str:
    """One line: which filter kept nothing, and what `where` does have."""
    asked = " ".join([f"--host {h}" for h in hosts] + [f"--client {c}" for c in clients])
    if not available.hosts:
        return f"no connection matches {asked}: {where} has no HTTP connection"
    parts = [f"hosts in {where}: {listed(available.hosts)}"]
    if clients:
        parts.append(f"clients: {listed(available.clients)}")
    return f"no connection matches {asked}; " + "; ".join(parts)
