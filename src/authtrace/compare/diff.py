"""Comparing a working capture with a failing one, host by host.

This module owns the order in which two negotiations are compared and the
sentence that says where the failing one departs. Hosts align by name
(`profile.py`), never by address or port. Aspects are compared in the order a
negotiation unfolds: what the server offered, what the KDC said about the
SPN, which mechanism the client used and how its token looked, how the
connections carried the handshake (and through which proxy), and the final
status. The first aspect that differs and bears on authentication leads.

Invariant: an aspect one capture cannot see (no Kerberos traffic in a capture
taken on the server, no NTLM in a Kerberos capture) is never reported as a
difference; it becomes a note instead.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from authtrace.compare.profile import HEADER_SIZE_BANDS, HostProfile, KdcAnswer, profile_hosts
from authtrace.diagnose.context import is_ip_literal
from authtrace.diagnose.finding import Finding, Severity
from authtrace.report.model import Report
from authtrace.words import counted

WORKING = "working"
FAILING = "failing"


class Presence(enum.Enum):
    """Where a host appears."""

    BOTH = "both"
    WORKING_ONLY = "working-only"
    FAILING_ONLY = "failing-only"


@dataclass(frozen=True, slots=True)
class Difference:
    """One aspect on which the two captures disagree about one host.

    aspect: stable id (`ASPECTS`). working / failing: the value each capture
    shows, short. working_says / failing_says: the same as a clause of the
    lead sentence ("the KDC issued a ticket for HTTP/web01.contoso.com").
    affects_auth: False for context (Via headers, HTTP version) that does not
    by itself change how authentication went.
    """

    aspect: str
    working: str
    failing: str
    working_frames: tuple[int, ...]
    failing_frames: tuple[int, ...]
    working_says: str
    failing_says: str
    affects_auth: bool = True


@dataclass(frozen=True, slots=True)
class OneSidedFinding:
    """A finding (by rule id and host) that only one of the captures raised, or,
    when both raised it, the values only one side's findings name (`values`:
    field name and those values, e.g. the users whose logon failed only in the
    failing capture; frames: where that side shows them)."""

    side: str  # WORKING or FAILING
    rule: str
    host: str | None
    severity: Severity
    title: str
    frames: tuple[int, ...]
    values: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class HostComparison:
    """One host compared. first: the first difference that bears on
    authentication (None when there is none); differences: all of them in
    negotiation order; headline: the plain sentence that leads the report."""

    host: str
    presence: Presence
    working: HostProfile | None
    failing: HostProfile | None
    differences: tuple[Difference, ...]
    first: Difference | None
    headline: str
    findings: tuple[OneSidedFinding, ...]
    notes: tuple[str, ...]

    @property
    def differs(self) -> bool:
        """Authentication differs: an auth aspect, a host with authentication
        seen on one side only, or an error/warning raised on one side only."""
        if self.presence is not Presence.BOTH:
            profile = self.working or self.failing
            return profile is not None and profile.involves_auth
        if self.first is not None:
            return True
        return any(f.severity is not Severity.INFO for f in self.findings)


@dataclass(frozen=True, slots=True)
class Comparison:
    """working / failing: the capture names of each side; hosts: common hosts
    first (by name), then hosts of one side only; headline: the one sentence
    that leads."""

    working: tuple[str, ...]
    failing: tuple[str, ...]
    hosts: tuple[HostComparison, ...]
    headline: str

    @property
    def differs(self) -> bool:
        return any(host.differs for host in self.hosts)

    @property
    def common_hosts(self) -> tuple[str, ...]:
        return tuple(h.host for h in self.hosts if h.presence is Presence.BOTH)

    @property
    def lead(self) -> HostComparison | None:
        """The host the headline is about."""
        for host in self.hosts:
            if host.differs:
                return host
        return None


# The order a negotiation unfolds in; the first difference is the first here.
ASPECTS = (
    "schemes-offered",
    "kdc-answer",
    "spn",
    "mechanism",
    "ntlmv1",
    "channel-binding",
    "header-size",
    "connections-per-handshake",
    "keep-alive",
    "proxy",
    "http-version",
    "final-status",
)
# Clauses of the lead sentence: the first difference and the next ones.
HEADLINE_CLAUSES = 3


def compare(working: Report, failing: Report, hosts: Iterable[str] = ()) -> Comparison:
    """Compare two analysed captures host by host (only `hosts` when given)."""
    left = profile_hosts(working)
    right = profile_hosts(failing)
    wanted = {h.strip().lower() for h in hosts}
    names = sorted(set(left) | set(right))
    if wanted:
        names = [name for name in names if name in wanted]
    common = [name for name in names if name in left and name in right]
    only = [name for name in names if name not in common]
    compared = [_compare_host(name, left[name], right[name], working, failing) for name in common]
    compared += [
        _one_side(name, left.get(name), right.get(name), working, failing) for name in only
    ]
    return Comparison(
        working=tuple(c.name for c in working.captures),
        failing=tuple(c.name for c in failing.captures),
        hosts=tuple(compared),
        headline=_headline(compared, sorted(left), sorted(right), wanted),
    )


def _headline(
    compared: list[HostComparison], working: list[str], failing: list[str], wanted: set[str]
) -> str:
    if not compared:
        if wanted:
            return f"neither capture has HTTP traffic to {', '.join(sorted(wanted))}"
        return "neither capture has HTTP traffic to compare"
    if not any(host.presence is Presence.BOTH for host in compared):
        return (
            "no server host in common: the working capture talked to "
            f"{_names(working)}, the failing capture to {_names(failing)}; the "
            "negotiations cannot be aligned (compare captures of the same site, or name "
            "the site the same way in both)"
        )
    for host in compared:
        if host.differs:
            return f"{host.host}: {host.headline}"
    return "authentication does not differ between the captures"


def _names(hosts: list[str]) -> str:
    return ", ".join(hosts) if hosts else "no HTTP server"


def _compare_host(
    name: str, working: HostProfile, failing: HostProfile, left: Report, right: Report
) -> HostComparison:
    differences: list[Difference] = []
    notes: list[str] = []
    for aspect in ASPECTS:
        found = _COMPARERS[aspect](working, failing, notes)
        if found is not None:
            differences.append(found)
    notes.extend(_path_notes(working, failing))
    auth = [d for d in differences if d.affects_auth]
    first = auth[0] if auth else None
    findings = _one_sided_findings(name, left, right)
    if first is not None:
        story = auth[:HEADLINE_CLAUSES]
        headline = (
            f"working: {_join([d.working_says for d in story])}; "
            f"failing: {_join([d.failing_says for d in story])}"
        )
    elif any(f.severity is not Severity.INFO and not f.values for f in findings):
        rules = ", ".join(
            sorted({f.rule for f in findings if f.severity is not Severity.INFO and not f.values})
        )
        headline = f"the negotiations look alike, but only one capture raised {rules}"
    elif any(f.severity is not Severity.INFO for f in findings):
        rules = ", ".join(sorted({f.rule for f in findings if f.severity is not Severity.INFO}))
        headline = (
            f"the negotiations look alike, but {rules} names users in one capture that the "
            "other's does not"
        )
    else:
        headline = "authentication does not differ"
    return HostComparison(
        host=name,
        presence=Presence.BOTH,
        working=working,
        failing=failing,
        differences=tuple(differences),
        first=first,
        headline=headline,
        findings=findings,
        notes=tuple(notes),
    )


def _one_side(
    name: str,
    working: HostProfile | None,
    failing: HostProfile | None,
    left: Report,
    right: Report,
) -> HostComparison:
    presence = Presence.WORKING_ONLY if working is not None else Presence.FAILING_ONLY
    side = WORKING if working is not None else FAILING
    profile = working or failing
    assert profile is not None
    what = "with authentication" if profile.involves_auth else "without authentication"
    notes: tuple[str, ...] = ()
    if is_ip_literal(name):
        # DESIGN: a site reached by address gets no Kerberos ticket (no SPN
        # names an address), so Negotiate falls back to NTLM.
        notes = (
            f"the {side} capture names the server by its address {name}: clients ask no "
            "Kerberos ticket for an address, and the other capture's host name cannot be "
            "matched to it here",
        )
    return HostComparison(
        host=name,
        presence=presence,
        working=working,
        failing=failing,
        differences=(),
        first=None,
        headline=f"only the {side} capture has traffic to {name} ({what})",
        findings=_one_sided_findings(name, left, right),
        notes=notes,
    )


def _join(clauses: list[str]) -> str:
    if len(clauses) <= 1:
        return "".join(clauses)
    return ", ".join(clauses[:-1]) + " and " + clauses[-1]


# The listed fields a diff compares value by value: who failed. Addresses,
# workstations, stream ids and token sizes differ between any two captures (two
# machines, two days) and say nothing about why one fails.
COMPARED_VALUES = ("user", "client_principal")


def _one_sided_findings(host: str, left: Report, right: Report) -> tuple[OneSidedFinding, ...]:
    """Findings whose (rule, host) pair only one capture raised; for a pair both
    raised, the users (COMPARED_VALUES) that only one side's findings name:
    folding puts a hundred users in one finding, and a user who fails in one
    capture only must still show as a difference."""
    mine = _by_rule(left.findings, host)
    theirs = _by_rule(right.findings, host)
    found = [_one_sided(WORKING, f) for rule, f in mine.items() if rule not in theirs]
    found += [_one_sided(FAILING, f) for rule, f in theirs.items() if rule not in mine]
    for rule in (r for r in mine if r in theirs):
        ours = _listed_values(left.findings, host, rule)
        other = _listed_values(right.findings, host, rule)
        for side, this, that, first in (
            (WORKING, ours, other, mine[rule]),
            (FAILING, other, ours, theirs[rule]),
        ):
            only = tuple(
                (name, tuple(sorted(v for v in values if v not in that.get(name, {}))))
                for name, values in this.items()
            )
            only = tuple((name, values) for name, values in only if values)
            if not only:
                continue
            where = {c for name, values in only for v in values for c in this[name][v]}
            frames = tuple(
                sorted(
                    {
                        c.frame
                        for f in (left if side == WORKING else right).findings
                        if f.rule == rule and (f.host or "").lower() == host
                        for c in f.citations
                        if c.connection in where
                    }
                )
            )
            found.append(
                OneSidedFinding(side, rule, first.host, first.severity, first.title, frames, only)
            )
    return tuple(found)


def _listed_values(
    findings: Iterable[Finding], host: str, rule: str
) -> dict[str, dict[str, set[int]]]:
    """Per field of COMPARED_VALUES in the rule's findings for `host` (folded or
    not): each value and the connections where it occurs."""
    out: dict[str, dict[str, set[int]]] = {}
    for finding in findings:
        if finding.rule != rule or (finding.host or "").lower() != host:
            continue
        pairs = [(n, v, finding.connections) for n, v in finding.fields]
        pairs += [(h.name, e.value, e.connections) for h in finding.values for e in h.values]
        for name, value, connections in pairs:
            if value and name in COMPARED_VALUES:
                out.setdefault(name, {}).setdefault(value, set()).update(connections)
    return out


def _by_rule(findings: Iterable[Finding], host: str) -> dict[str, Finding]:
    first: dict[str, Finding] = {}
    for finding in findings:
        if (finding.host or "").lower() == host and finding.rule not in first:
            first[finding.rule] = finding
    return first


def _one_sided(side: str, finding: Finding) -> OneSidedFinding:
    return OneSidedFinding(
        side, finding.rule, finding.host, finding.severity, finding.title, finding.frames
    )


def _path_notes(working: HostProfile, failing: HostProfile) -> list[str]:
    mine = {path for path, _status in working.final_status}
    theirs = {path for path, _status in failing.final_status}
    notes = []
    if mine - theirs:
        notes.append(f"only the working capture requests {_paths(mine - theirs)}")
    if theirs - mine:
        notes.append(f"only the failing capture requests {_paths(theirs - mine)}")
    return notes


def _paths(paths: set[str], limit: int = 5) -> str:
    ordered = sorted(paths)
    more = f" and {len(ordered) - limit} more" if len(ordered) > limit else ""
    return ", ".join(ordered[:limit]) + more


# --- aspects ---------------------------------------------------------------
# Each comparer returns a Difference, or None when the aspect agrees or one
# capture cannot see it (then it may add a note).

Comparer = Callable[[HostProfile, HostProfile, list[str]], Difference | None]


def _difference(
    aspect: str,
    working: HostProfile,
    failing: HostProfile,
    values: tuple[str, str],
    says: tuple[str, str],
    affects_auth: bool = True,
) -> Difference:
    return Difference(
        aspect=aspect,
        working=values[0],
        failing=values[1],
        working_frames=working.frames(aspect),
        failing_frames=failing.frames(aspect),
        working_says=says[0],
        failing_says=says[1],
        affects_auth=affects_auth,
    )


def _listed(values: Iterable[str], empty: str = "none") -> str:
    values = list(values)
    return ", ".join(values) if values else empty


def _schemes(working: HostProfile, failing: HostProfile, notes: list[str]) -> Difference | None:
    mine, theirs = set(working.schemes_offered), set(failing.schemes_offered)
    if mine == theirs:
        return None
    for side, profile, offered in ((WORKING, working, mine), (FAILING, failing, theirs)):
        if not offered and profile.mechanisms:
            # RFC 4559 section 4.1 lets a client send Negotiate first; such a
            # capture never shows what the server would have offered.
            notes.append(f"the {side} client sent credentials before any challenge")
            return None

    def says(offered: tuple[str, ...]) -> str:
        if not offered:
            return "the server asked for no authentication"
        return f"the server offered {_listed(offered)}"

    return _difference(
        "schemes-offered",
        working,
        failing,
        (_listed(working.schemes_offered), _listed(failing.schemes_offered)),
        (says(working.schemes_offered), says(failing.schemes_offered)),
    )


def _kdc(working: HostProfile, failing: HostProfile, notes: list[str]) -> Difference | None:
    if working.kdc is None or failing.kdc is None:
        blind = [side for side, p in ((WORKING, working), (FAILING, failing)) if p.kdc is None]
        if len(blind) == 1 and (working.kdc or failing.kdc) != (KdcAnswer.NO_REQUEST,):
            notes.append(
                f"the {blind[0]} capture holds no Kerberos traffic (taken away from the client, "
                f"or the client asked no KDC), so the KDC's answers for {working.spn} cannot be "
                "compared"
            )
        return None
    if working.kdc == failing.kdc:
        return None
    return _difference(
        "kdc-answer",
        working,
        failing,
        (_listed(working.kdc), _listed(failing.kdc)),
        (_kdc_says(working), _kdc_says(failing)),
    )


def _kdc_says(profile: HostProfile) -> str:
    spn = profile.spn
    clauses = []
    for answer in profile.kdc or ():
        if answer == KdcAnswer.TICKET:
            clauses.append(f"the KDC issued a ticket for {spn}")
        elif answer == KdcAnswer.UNANSWERED:
            clauses.append(f"the KDC never answered the ticket request for {spn}")
        elif answer == KdcAnswer.NO_REQUEST:
            clauses.append(f"the client asked the KDC for no ticket for {spn}")
        elif answer == KdcAnswer.UNREACHABLE:
            clauses.append(f"the KDC could not be reached to ask for {spn}")
        else:
            clauses.append(f"the KDC answered {answer} for {spn}")
    return " then ".join(clauses)


def _spn(working: HostProfile, failing: HostProfile, notes: list[str]) -> Difference | None:
    mine, theirs = working.ticket_spns, failing.ticket_spns
    if not mine or not theirs or {s.lower() for s in mine} == {s.lower() for s in theirs}:
        return None
    return _difference(
        "spn",
        working,
        failing,
        (_listed(mine), _listed(theirs)),
        (
            f"the client presented a ticket for {_listed(mine)}",
            f"the client presented a ticket for {_listed(theirs)}",
        ),
    )


def _mechanism(working: HostProfile, failing: HostProfile, notes: list[str]) -> Difference | None:
    if set(working.mechanisms) == set(failing.mechanisms):
        return None

    def says(profile: HostProfile, other: HostProfile) -> str:
        if not profile.mechanisms:
            return "the client sent no credentials"
        used = _listed(profile.mechanisms)
        kerberos_before = any(m.startswith("Kerberos") for m in other.mechanisms)
        kerberos_now = any(m.startswith("Kerberos") for m in profile.mechanisms)
        if kerberos_before and not kerberos_now and any("NTLM" in m for m in profile.mechanisms):
            return f"the client fell back to {used}"
        return f"the client used {used}"

    return _difference(
        "mechanism",
        working,
        failing,
        (_listed(working.mechanisms), _listed(failing.mechanisms)),
        (says(working, failing), says(failing, working)),
    )


def _ntlmv1(working: HostProfile, failing: HostProfile, notes: list[str]) -> Difference | None:
    mine, theirs = working.ntlm_responses, failing.ntlm_responses
    if not mine or not theirs or mine == theirs:
        return None
    return _difference(
        "ntlmv1",
        working,
        failing,
        (_listed(mine), _listed(theirs)),
        (
            f"the NTLM AUTHENTICATE carried {_listed(mine)} responses",
            f"the NTLM AUTHENTICATE carried {_listed(theirs)} responses",
        ),
    )


def _bindings(working: HostProfile, failing: HostProfile, notes: list[str]) -> Difference | None:
    mine, theirs = working.channel_bindings, failing.channel_bindings
    if not mine or not theirs or mine == theirs:
        return None
    return _difference(
        "channel-binding",
        working,
        failing,
        (_listed(mine), _listed(theirs)),
        (
            f"channel binding {_listed(mine)} in the NTLMv2 AUTHENTICATE",
            f"channel binding {_listed(theirs)} in the NTLMv2 AUTHENTICATE",
        ),
    )


def _band(size: int) -> int:
    return sum(1 for limit in HEADER_SIZE_BANDS if size >= limit)


def _header_size(working: HostProfile, failing: HostProfile, notes: list[str]) -> Difference | None:
    mine, theirs = working.largest_credentials, failing.largest_credentials
    if not mine or not theirs or _band(mine) == _band(theirs):
        return None
    return _difference(
        "header-size",
        working,
        failing,
        (f"{mine} bytes", f"{theirs} bytes"),
        (
            f"the largest credentials header was {mine} bytes",
            f"the largest credentials header was {theirs} bytes",
        ),
    )


def _connections(working: HostProfile, failing: HostProfile, notes: list[str]) -> Difference | None:
    if not working.handshakes or not failing.handshakes:
        return None
    if bool(working.splits) == bool(failing.splits):
        return None

    def value(profile: HostProfile) -> str:
        if not profile.splits:
            return "one connection"
        return f"two connections ({counted(profile.splits, 'split handshake')})"

    def says(profile: HostProfile) -> str:
        if not profile.splits:
            return "the handshake stayed on one connection"
        who = "the proxy" if profile.split_by_proxy else "something in the path"
        return f"{who} split the handshake over two connections"

    return _difference(
        "connections-per-handshake",
        working,
        failing,
        (value(working), value(failing)),
        (says(working), says(failing)),
    )


def _keep_alive(working: HostProfile, failing: HostProfile, notes: list[str]) -> Difference | None:
    if bool(working.closing_refusals) == bool(failing.closing_refusals):
        return None

    def value(profile: HostProfile) -> str:
        if not profile.closing_refusals:
            return "kept open across 401/407"
        return f"{profile.closing_refusals} 401/407 closed the connection"

    def says(profile: HostProfile) -> str:
        if not profile.closing_refusals:
            return "the connection stayed open across the 401s"
        return (
            f"{counted(profile.closing_refusals, '401/407 response')} closed the connection "
            "(Connection: close or HTTP/1.0) in the middle of the handshake"
        )

    return _difference(
        "keep-alive",
        working,
        failing,
        (value(working), value(failing)),
        (says(working), says(failing)),
    )


def _proxy_value(profile: HostProfile) -> str:
    parts = [f"Via: {via}" for via in profile.via]
    if profile.forwarded_for:
        parts.append("X-Forwarded-For")
    if profile.proxy_challenges:
        parts.append(f"{profile.proxy_challenges} x 407")
    return "; ".join(parts) if parts else "none"


def _proxy(working: HostProfile, failing: HostProfile, notes: list[str]) -> Difference | None:
    def seen(profile: HostProfile) -> tuple[bool, bool]:
        return bool(profile.via or profile.forwarded_for), bool(profile.proxy_challenges)

    if seen(working) == seen(failing):
        return None

    def says(profile: HostProfile) -> str:
        value = _proxy_value(profile)
        if value == "none":
            return "no proxy was in the path"
        return f"a proxy was in the path ({value})"

    return _difference(
        "proxy",
        working,
        failing,
        (_proxy_value(working), _proxy_value(failing)),
        (says(working), says(failing)),
        # Via / X-Forwarded-For alone are context; a proxy asking for
        # credentials (407) is a negotiation of its own.
        affects_auth=seen(working)[1] != seen(failing)[1],
    )


def _http_version(
    working: HostProfile, failing: HostProfile, notes: list[str]
) -> Difference | None:
    mine, theirs = working.http_versions, failing.http_versions
    if not mine or not theirs or mine == theirs:
        return None
    return _difference(
        "http-version",
        working,
        failing,
        (_listed(mine), _listed(theirs)),
        (f"{_listed(mine)} was spoken", f"{_listed(theirs)} was spoken"),
        affects_auth=False,
    )


def _final_status(
    working: HostProfile, failing: HostProfile, notes: list[str]
) -> Difference | None:
    mine, theirs = dict(working.final_status), dict(failing.final_status)
    common = [path for path, _status in working.final_status if path in theirs]
    if common:
        differing = [path for path in common if mine[path] != theirs[path]]
        if not differing:
            return None
        shown = differing[:5]
        values = (
            "; ".join(f"{p}: {mine[p]}" for p in shown),
            "; ".join(f"{p}: {theirs[p]}" for p in shown),
        )
        path = differing[0]
        says = (
            f"the final status was {mine[path]} for {path}",
            f"the final status was {theirs[path]} for {path}",
        )
    else:
        # No URL in common: the host's last answer is all that aligns.
        last_mine, last_theirs = working.last_status, failing.last_status
        if last_mine is None or last_theirs is None or last_mine == last_theirs:
            return None
        values = (str(last_mine), str(last_theirs))
        says = (f"the last status was {last_mine}", f"the last status was {last_theirs}")
    return _difference("final-status", working, failing, values, says)


_COMPARERS: dict[str, Comparer] = {
    "schemes-offered": _schemes,
    "kdc-answer": _kdc,
    "spn": _spn,
    "mechanism": _mechanism,
    "ntlmv1": _ntlmv1,
    "channel-binding": _bindings,
    "header-size": _header_size,
    "connections-per-handshake": _connections,
    "keep-alive": _keep_alive,
    "proxy": _proxy,
    "http-version": _http_version,
    "final-status": _final_status,
}
