"""Per-host summary of a report: which mechanism actually authenticated, how many
401/407s were normal legs and how many failures. Pure data, shared by the text
and JSON renderers; and the line that counts the findings, shared by the text
and HTML reports."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from authtrace.diagnose.finding import Severity
from authtrace.handshake.links import host_of
from authtrace.handshake.model import Leg, Outcome
from authtrace.iis.category import logon_succeeded_behind
from authtrace.report.model import Report
from authtrace.words import counted

if TYPE_CHECKING:
    from authtrace.diagnose.finding import Finding
    from authtrace.handshake.timeline import ConnectionTimeline
    from authtrace.iis.category import LoggedLine

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


class HostTally:
    """The counts behind `summarize`, fed one judged timeline at a time, in
    any order: analyze feeds each block's timelines while its rules hold
    them, so that neither report walks every connection again for its
    summary (issue 10: a spilled timeline read back costs about 120 us).
    Memory: a few counters per host, not per connection."""

    __slots__ = ("_connections", "_exchanges", "_logons", "_first", "_outcomes", "with_auth")

    def __init__(self) -> None:
        self._connections: Counter[str] = Counter()
        self._exchanges: Counter[str] = Counter()
        self._logons: dict[str, Counter[str]] = defaultdict(Counter)  # host -> mechanism -> n
        # (host, mechanism) -> where a logon was first counted (connection id,
        # step position): equal counts are ordered as a walk in connection
        # order meets them, whatever order the timelines come in.
        self._first: dict[tuple[str, str], tuple[int, int]] = {}
        self._outcomes: dict[str, Counter[Outcome]] = defaultdict(Counter)
        self.with_auth = 0
        """How many timelines hold a credential or a challenge (the ladders' count)."""

    @classmethod
    def of(cls, report: Report) -> HostTally:
        """The tally of every timeline of `report`: one walk of its view."""
        tally = cls()
        logged = report.logged()
        for timeline in report.view.timelines:
            tally.add(timeline, logged)
        return tally

    def add(
        self, timeline: ConnectionTimeline, logged: Mapping[tuple[int, int], LoggedLine]
    ) -> None:
        """Count one timeline (logged: Report.logged(), the IIS log lines). O(steps)."""
        connection = timeline.connection
        hosts: set[str] = set()
        seen: set[int] = set()
        for position, step in enumerate(timeline.steps):
            host = host_of(step, connection)
            hosts.add(host)
            if step.exchange.index not in seen:
                seen.add(step.exchange.index)
                self._exchanges[host] += 1
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
                mechanism = step.credentials.mechanism.value
                self._logons[host][mechanism] += 1
                place = (connection.id, position)
                first = self._first.setdefault((host, mechanism), place)
                if place < first:
                    self._first[(host, mechanism)] = place
            if step.outcome is not None:
                self._outcomes[host][step.outcome] += 1
        self._connections.update(hosts)
        self.with_auth += authenticates(timeline)

    def hosts(self, findings: Iterable[Finding]) -> list[HostSummary]:
        """One summary per host, by host name; `findings` name each host's rules."""
        rules: dict[str, list[str]] = defaultdict(list)
        for finding in findings:
            if finding.host and finding.rule not in rules[finding.host]:
                rules[finding.host].append(finding.rule)
        return [
            HostSummary(
                host=host,
                connections=self._connections[host],
                exchanges=self._exchanges[host],
                authenticated_with=tuple(
                    sorted(
                        self._logons[host].items(),
                        key=lambda item: (-item[1], self._first[(host, item[0])]),
                    )
                ),
                normal_401=self._outcomes[host][Outcome.NORMAL],
                failed_401=self._outcomes[host][Outcome.FAILURE],
                incomplete_401=self._outcomes[host][Outcome.INCOMPLETE],
                rules=tuple(rules[host]),
            )
            for host in sorted(self._connections)
        ]


def authenticates(timeline: ConnectionTimeline) -> bool:
    """Whether a connection carried authentication (a credential or a
    challenge): those the ladders draw or count as left out."""
    return any(step.credentials is not None or step.challenges for step in timeline.steps)


def tally_of(report: Report) -> HostTally:
    """The report's tally: the one analyze fed as it judged (`Report.tally`),
    else one walk of its timelines."""
    return report.tally if report.tally is not None else HostTally.of(report)


def summarize(report: Report) -> list[HostSummary]:
    """One summary per host the capture's HTTP named, by host name."""
    return tally_of(report).hosts(report.findings)


_SEVERITY_NOUNS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def findings_count(report: Report) -> str:
    """ "1 error, 0 warnings, 2 notes; 3 other TCP connections carried no HTTP"."""
    severities = ", ".join(
        counted(sum(1 for f in report.findings if f.severity is severity), noun)
        for severity, noun in _SEVERITY_NOUNS.items()
    )
    other = counted(report.other_connections, "other TCP connection")
    return f"{severities}; {other} carried no HTTP"
