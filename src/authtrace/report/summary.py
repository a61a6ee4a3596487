"""Per-host summary of a report: which mechanism actually authenticated, how many
401/407s were normal legs and how many failures. Pure data, shared by the text
and JSON renderers; and the line that counts the findings, shared by the text
and HTML reports."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from authtrace.diagnose.finding import Severity
from authtrace.handshake.links import host_of
from authtrace.handshake.model import Leg, Outcome
from authtrace.iis.category import logon_succeeded_behind
from authtrace.report.model import Report
from authtrace.words import counted

_ACCEPTED = {
    Leg.NTLM_ACCEPTED,
    Leg.NTLM_OUT_OF_SEQUENCE_ACCEPTED,
    Leg.KERBEROS_ACCEPTED,
    Leg.SPNEGO_ACCEPTED,
    Leg.BASIC_ACCEPTED,
    Leg.DIGEST_ACCEPTED,
    Leg.BEARER_ACCEPTED,
    # The logon succeeded, the request was refused behind it (IIS 401.3/4/5).
    Leg.REFUSED_AFTER_LOGON,
}


@dataclass(frozen=True, slots=True)
class HostSummary:
    host: str
    connections: int
    exchanges: int
    authenticated_with: tuple[tuple[str, int], ...]  # (mechanism, successful logons)
    normal_401: int
    failed_401: int
    incomplete_401: int
    rules: tuple[str, ...]

    @property
    def logon_seen(self) -> str:
        """Whether a logon to this host succeeded in the capture: "yes" (some
        mechanism authenticated), "no" (none did, and no leg was cut), "not
        seen" (none did, but the capture cut legs that could not be judged: a
        cut capture means "not seen", never "not sent")."""
        if self.authenticated_with:
            return "yes"
        return "not seen" if self.incomplete_401 else "no"


def summarize(report: Report) -> list[HostSummary]:
    connections: dict[str, set[int]] = defaultdict(set)
    exchanges: Counter[str] = Counter()
    mechanisms: dict[str, Counter[str]] = defaultdict(Counter)
    outcomes: dict[str, Counter[Outcome]] = defaultdict(Counter)
    logged = report.logged()
    for timeline in report.view.timelines:
        seen: set[int] = set()
        for step in timeline.steps:
            host = host_of(step, timeline.connection)
            connections[host].add(timeline.connection.id)
            if step.exchange.index not in seen:
                seen.add(step.exchange.index)
                exchanges[host] += 1
            if step.credentials is not None and (
                step.leg in _ACCEPTED
                # An NTLM or Basic logon the log or the error page puts in
                # 401.3-401.5: the logon succeeded, as the rules say.
                or (
                    step.outcome is Outcome.FAILURE
                    and logon_succeeded_behind(
                        step, logged.get((step.exchange.connection, step.exchange.index))
                    )
                )
            ):
                mechanisms[host][step.credentials.mechanism.value] += 1
            if step.outcome is not None:
                outcomes[host][step.outcome] += 1
    rules: dict[str, list[str]] = defaultdict(list)
    for finding in report.findings:
        if finding.host and finding.rule not in rules[finding.host]:
            rules[finding.host].append(finding.rule)
    return [
        HostSummary(
            host=host,
            connections=len(connections[host]),
            exchanges=exchanges[host],
            authenticated_with=tuple(mechanisms[host].most_common()),
            normal_401=outcomes[host][Outcome.NORMAL],
            failed_401=outcomes[host][Outcome.FAILURE],
            incomplete_401=outcomes[host][Outcome.INCOMPLETE],
            rules=tuple(rules[host]),
        )
        for host in sorted(connections)
    ]


_SEVERITY_NOUNS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def findings_count(report: Report) -> str:
    """ "1 error, 0 warnings, 2 notes; 3 other TCP connections carried no HTTP"."""
    severities = ", ".join(
        counted(sum(1 for f in report.findings if f.severity is severity), noun)
        for severity, noun in _SEVERITY_NOUNS.items()
    )
    other = counted(report.other_connections, "other TCP connection")
    return f"{severities}; {other} carried no HTTP"
