"""The text form of reports: summary and findings first (what went wrong, the
frames that prove it, the fix), then each connection's handshake as a ladder.
Pure functions returning strings; the CLI prints them."""

from __future__ import annotations

import enum
import textwrap
from collections.abc import Callable, Iterable, Mapping

from authtrace.auth.render import describe_step
from authtrace.diagnose.finding import EXAMPLES_FIRST, FieldValues, Finding, plural_of
from authtrace.handshake.links import HandshakeView, StepRef
from authtrace.handshake.model import AuthExchange, Leg, Outcome, Realm
from authtrace.handshake.timeline import ConnectionTimeline
from authtrace.http.messages import Pairing
from authtrace.iis.category import LoggedLine, logon_succeeded_behind
from authtrace.kerberos.kdc import KdcExchange
from authtrace.report.connections import LOST_TEXT, pairing_note, stream_note
from authtrace.report.model import Report
from authtrace.report.summary import (
    HostSummary,
    authenticates,
    findings_count,
    summarize,
    tally_of,
)
from authtrace.report.tls import (
    binding_text,
    channel_bindings,
    encrypted_lines,
    facts_text,
    keylog_line,
)
from authtrace.visible import visible, visible_lines
from authtrace.words import agreeing, counted

# How a frame number is written: "#12", or "capture.pcap#12" (Report.frame_name).
FrameNames = Callable[[int], str]

_WIDTH = 100
_LEG_WORDS = {
    Leg.ANONYMOUS_CHALLENGED: "anonymous request challenged",
    Leg.ANONYMOUS_REFUSED: "anonymous request refused, no scheme offered",
    Leg.NTLM_CHALLENGE: "NTLM challenge leg",
    Leg.SPNEGO_CONTINUE: "Negotiate continue leg",
    Leg.DIGEST_STALE: "Digest stale nonce",
    Leg.REAUTH_CHALLENGED: "challenged on an authenticated connection",
    Leg.ABANDONED: "handshake abandoned",
    Leg.NTLM_NEGOTIATE_REJECTED: "NTLM NEGOTIATE refused",
    Leg.NTLM_REJECTED: "NTLM logon refused",
    Leg.NTLM_OUT_OF_SEQUENCE: "NTLM AUTHENTICATE without its CHALLENGE on this connection",
    Leg.KERBEROS_REJECTED: "Kerberos ticket refused",
    Leg.BASIC_REJECTED: "Basic logon refused",
    Leg.DIGEST_REJECTED: "Digest refused",
    Leg.BEARER_REJECTED: "Bearer token refused",
    Leg.SCHEME_NOT_OFFERED: "scheme not offered",
    Leg.DENIED: "refused",
    Leg.HEADER_TOO_LARGE: "headers too large",
    Leg.REFUSED_AFTER_LOGON: "refused after the logon (behind authentication)",
    Leg.UNFOLLOWED: "not followed",
    Leg.NOT_SEEN: "headers cut by the capture, not seen",
    Leg.AFTER_NOT_SEEN: "after a leg the capture cut",
}
_AUTHENTICATED = {
    Leg.NTLM_ACCEPTED: "authenticated (NTLM)",
    Leg.NTLM_OUT_OF_SEQUENCE_ACCEPTED: "authenticated (NTLM, out of sequence)",
    Leg.KERBEROS_ACCEPTED: "authenticated (Kerberos)",
    Leg.SPNEGO_ACCEPTED: "authenticated (Negotiate)",
    Leg.BASIC_ACCEPTED: "authenticated (Basic)",
    Leg.DIGEST_ACCEPTED: "authenticated (Digest)",
    Leg.BEARER_ACCEPTED: "authorized (Bearer)",
    Leg.REUSED: "connection already authenticated",
}


class Ladders(enum.Enum):
    """Which connections get a ladder in the text report."""

    FINDINGS = "findings"  # the connections some finding names (the default)
    ALL = "all"  # every connection that carried authentication
    NONE = "none"


def captures_text(report: Report) -> str:
    """ "a.pcap (pcap, 12 frames), b.etl (etl, 1 frame)", as both reports head."""
    return ", ".join(
        f"{capture.name} ({capture.format}, {counted(capture.frames, 'frame')})"
        for capture in report.captures
    )


def render_report(
    report: Report, ladders: Ladders = Ladders.FINDINGS, after_findings: str = ""
) -> str:
    """The whole text report; `after_findings` is a section placed before the
    anomalies and ladders (e.g. the IIS log comparison). Cost: linear in the
    findings and in the ladders shown."""
    lines: list[str] = []
    lines.append(f"authtrace analysis of {captures_text(report)}")
    keylog = keylog_line(report.keylog)
    if keylog:
        lines.append(keylog)
    lines.append("")
    lines.extend(_summary_lines(report))
    lines.append("")
    if report.findings:
        lines.append(f"Findings ({len(report.findings)})")
        lines.append("")
        for number, finding in enumerate(report.findings, 1):
            lines.extend(render_finding(finding, number))
            lines.append("")
    else:
        lines.append("No authentication problem found.")
        lines.append("")
    if after_findings:
        # Its own lines (already made visible by its renderer).
        lines.extend(after_findings.rstrip().split("\n"))
        lines.append("")
    encrypted = encrypted_lines(report.encrypted_groups, report.encrypted_total, report.keylog)
    if encrypted:
        lines.extend(encrypted)
        lines.append("")
    if report.anomalies:
        lines.append(f"Capture anomalies ({len(report.anomalies)})")
        for anomaly in report.anomalies[:20]:
            where = f" frame {_bare(report.frame_name(anomaly.frame))}" if anomaly.frame else ""
            lines.append(f"  - {anomaly.kind}{where}: {anomaly.message}")
        if len(report.anomalies) > 20:
            lines.append(f"  ... and {len(report.anomalies) - 20} more (see --json)")
        lines.append("")
    lines.extend(_ladder_lines(report, ladders))
    return visible_lines(lines).rstrip() + "\n"


def ladder_connections(findings: tuple[Finding, ...]) -> tuple[set[int], int]:
    """The connections the default ladders draw, and how many connections the
    findings name that are left out. A folded finding draws the connections of
    its examples (its first EXAMPLES_FIRST occurrences and its last: both
    connections of a split handshake, not one of each): the story is the same on
    the others."""
    drawn: set[int] = set()
    named: set[int] = set()
    for finding in findings:
        named.update(finding.connections)
        for occurrence in finding.examples:
            drawn.update(occurrence.connections)
    return drawn, len(named - drawn)


def _ladder_lines(report: Report, ladders: Ladders) -> list[str]:
    if ladders is Ladders.NONE:
        return []
    drawn, named_left_out = ladder_connections(report.findings)
    logged = report.logged()
    lines: list[str] = []
    view = report.view
    if ladders is Ladders.FINDINGS:
        # Only the drawn connections are read (a spilled timeline read back
        # costs); the tally counts those with authentication.
        by_id = view.by_id
        timelines: Iterable[ConnectionTimeline] = (by_id[i] for i in sorted(drawn) if i in by_id)
    else:
        timelines = view.timelines
    shown = 0
    for timeline in timelines:
        if not authenticates(timeline):
            continue
        shown += 1
        lines.extend(render_ladder(timeline, view, report.frame_name, logged))
        lines.append("")
    left_out = tally_of(report).with_auth - shown if ladders is Ladders.FINDINGS else 0
    if named_left_out and ladders is Ladders.FINDINGS:
        lines.append(
            f"({counted(named_left_out, 'connection')} that findings name not drawn: a finding "
            f"met many times draws its first {EXAMPLES_FIRST} occurrences and its last; "
            "`--ladders all` draws every one)"
        )
    if left_out > named_left_out:
        others = left_out - named_left_out
        lines.append(
            f"({counted(others, 'other connection')} with authentication not drawn: no finding "
            f"names {agreeing(others, 'it')}; `--ladders all` draws every one)"
        )
    return lines


def _nothing(host: HostSummary) -> str:
    """No logon seen: where the capture cut legs it could not judge, one may
    have been there ("not seen", never "none")."""
    return "nothing seen (legs the capture cut)" if host.logon_seen == "not seen" else "nothing"


def _summary_lines(report: Report) -> list[str]:
    hosts = summarize(report)
    lines = ["Summary"]
    if not hosts and report.encrypted_total:
        # Never "no HTTP" when TLS hid it: the section after the findings says more.
        lines.append(
            f"  No HTTP could be read: {counted(report.encrypted_total, 'TLS connection')} "
            f"{agreeing(report.encrypted_total, 'stays')} encrypted (see below)."
        )
    elif not hosts and report.view.timelines:
        # HTTP seen, nothing judged (HTTP/2 headers not decodable): not "no HTTP".
        count = len(report.view.timelines)
        lines.append(
            f"  HTTP on {counted(count, 'connection')}, but no request or response whose headers "
            "could be read (see the anomalies): nothing to judge."
        )
    elif not hosts:
        lines.append("  No HTTP traffic found in the capture.")
    for host in hosts:
        mechanisms = ", ".join(f"{name} x{count}" for name, count in host.authenticated_with)
        lines.append(
            f"  {host.host}: {counted(host.connections, 'connection')}, "
            f"{counted(host.exchanges, 'exchange')}; "
            f"authenticated with: {mechanisms or _nothing(host)}"
        )
        total = host.normal_401 + host.failed_401 + host.incomplete_401
        if total:
            lines.append(
                f"    401/407 responses: {total} — "
                f"{counted(host.normal_401, 'normal handshake leg')}, "
                f"{counted(host.failed_401, 'failure')}"
                + (
                    f", {host.incomplete_401} not judged (capture cut)"
                    if host.incomplete_401
                    else ""
                )
            )
        if host.rules:
            lines.append(f"    findings: {', '.join(host.rules)}")
    lines.append(f"  {findings_count(report)}")
    return lines


# How many of a long list a finding shows: the first ones and the last ones.
_LAST_SHOWN = 3


def _some(name: str, numbers: tuple[object, ...], limit: int) -> str:
    """All of `numbers` when there are at most `limit`, else a count with the
    first and last few, and where to find them all."""
    if len(numbers) <= limit:
        return f"{name} " + ", ".join(map(str, numbers))
    first = ", ".join(map(str, numbers[: limit - _LAST_SHOWN]))
    last = ", ".join(map(str, numbers[-_LAST_SHOWN:]))
    return f"{len(numbers)} {name}: {first} ... {last} (--json lists all)"


def _hash(number: int) -> str:
    return f"#{number}"


def _bare(name: str) -> str:
    """ "12" for "#12" (the words around say it is a frame); "a.pcap#12" stays."""
    return name[1:] if name.startswith("#") else name


# How many distinct values of a folded field the text names (--json lists all).
VALUES_SHOWN = 5


def values_text(held: FieldValues, limit: int = VALUES_SHOWN) -> str:
    """'users (87): CONTOSO\\ann (3), CONTOSO\\bob (2), ... and 82 more (--json
    lists all)': the most frequent values of a folded field first, with the
    number of occurrences where more than one."""
    label, listed = values_parts(held, limit)
    return f"{label}: {listed}"


def values_parts(held: FieldValues, limit: int = VALUES_SHOWN) -> tuple[str, str]:
    """values_text as (label, list), for the HTML page."""
    shown = [
        f"{each.value or '(empty)'} ({each.count})" if each.count > 1 else each.value or "(empty)"
        for each in held.values[:limit]
    ]
    more = len(held.values) - limit
    tail = f" ... and {more} more (--json lists all)" if more > 0 else ""
    return f"{plural_of(held.name)} ({len(held.values)})", ", ".join(shown) + tail


def render_finding(finding: Finding, number: int) -> list[str]:
    """Frames are written as the finding's citations name them (by file when
    the captures were analysed as separate streams)."""
    head = f"{number}. [{finding.severity.value.upper()}] {finding.title}  ({finding.rule})"
    lines = [head]
    if finding.host:
        lines.append(f"   host: {finding.host}")
    # Capture text is made visible before wrapping: textwrap would turn a CR
    # or a tab into a space (the report's lines are made visible again, harmlessly).
    lines.extend(
        textwrap.wrap(
            visible(finding.explanation), _WIDTH, initial_indent="   ", subsequent_indent="   "
        )
    )
    evidence = []
    if finding.frames:
        evidence.append(_some("frames", tuple(finding.name_of(f) for f in finding.frames), 12))
    if finding.connections:
        evidence.append(_some("connections", finding.connections, 8))
    evidence.extend(f"{name} {value}" for name, value in finding.fields if value)
    evidence.extend(values_text(held) for held in finding.values)
    if finding.iis:
        certainty = "" if finding.iis.certain else " (likely)"
        evidence.append(f"IIS log: {finding.iis}{certainty}")
    if evidence:
        lines.extend(
            textwrap.wrap(
                visible("evidence: " + "; ".join(evidence)),
                _WIDTH,
                initial_indent="   ",
                subsequent_indent="     ",
            )
        )
    lines.extend(
        textwrap.wrap(
            visible("fix: " + finding.fix), _WIDTH, initial_indent="   ", subsequent_indent="     "
        )
    )
    return lines


def render_ladder(
    timeline: ConnectionTimeline,
    view: HandshakeView | None = None,
    name: FrameNames = _hash,
    logged: Mapping[tuple[int, int], LoggedLine] | None = None,
) -> list[str]:
    """One connection's ladder: a line per exchange with its verdict (with
    `logged`, the IIS log line of each exchange the log recorded: its triple
    and category, not the predicted ones)."""
    connection = timeline.connection
    closing = connection.close_reason.value.replace("_", " ")
    first, last = _bare(name(connection.first_frame)), _bare(name(connection.last_frame))
    lines = [
        f"Connection {connection.id}  {connection.client} -> {connection.server}  "
        f"(frames {first}-{last.rpartition('#')[2]}, "
        f"{'SYN seen' if connection.syn_seen else 'started before the capture'}, {closing})"
    ]
    if connection.tls is not None:
        lines.append("  TLS: " + facts_text(connection.tls))
        bindings = binding_text(channel_bindings(connection))
        if bindings:
            lines.append("  " + bindings)
    previous: AuthExchange | None = None
    for position, step in enumerate(timeline.steps):
        if previous is not None and previous.exchange is step.exchange:
            # The same exchange seen through the other realm (a 200 through a proxy
            # that authenticated it): one line per exchange, plus what this realm adds.
            more = _other_realm_line(step, _logged_line(step, logged))
            if more:
                lines.append("          " + more)
        else:
            lines.append("  " + ladder_line(step, name, _logged_line(step, logged)))
        previous = step
        kdc = view.kdc_for(StepRef(connection.id, position)) if view is not None else ()
        if kdc:
            lines.append("          " + kdc_note(kdc, name))
    return lines


def kdc_note(kdc: tuple[KdcExchange, ...], name: FrameNames = _hash) -> str:
    """'ticket for HTTP/web01 from the KDC: #1 -> #2 ticket' (the last few exchanges)."""
    parts = []
    for exchange in kdc[-3:]:
        answer = exchange.error_name or exchange.result.value
        asked = name(exchange.request_frame) if exchange.request_frame else "#?"
        reply = name(exchange.reply_frame) if exchange.reply_frame else "#?"
        parts.append(f"{asked} -> {reply} {answer}")
    return f"KDC, {kdc[-1].service}: " + "; ".join(parts)


def _logged_line(
    step: AuthExchange, logged: Mapping[tuple[int, int], LoggedLine] | None
) -> LoggedLine | None:
    return logged.get((step.exchange.connection, step.exchange.index)) if logged else None


def ladder_line(
    step: AuthExchange, name: FrameNames = _hash, logged: LoggedLine | None = None
) -> str:
    exchange = step.exchange
    request, response = exchange.request, exchange.response
    left = f"{request.method} {_short(request.uri)}" if request else "(request not captured)"
    frame = name(request.shown_frame) if request else "#?"
    sent = f"  [{describe_step(step.credentials)}]" if step.credentials else ""
    reset = exchange.stream.reset if exchange.stream is not None else None
    if response is None and reset is not None:
        right = f"RST_STREAM {reset.name} {name(reset.frame)}"
    elif response is None:
        right = "no response" if exchange.pairing is not Pairing.RESPONSE_LOST else LOST_TEXT
    else:
        right = f"{response.status} {name(response.shown_frame)}"
        offered = [describe_step(c) for c in step.challenges]
        if offered:
            right += "  [" + "; ".join(offered) + "]"
    right += pairing_note(exchange) + stream_note(exchange.stream)
    verdict = _verdict(step, logged)
    realm = " (proxy)" if step.realm is Realm.PROXY else ""
    return f"{frame:>7} {left}{sent}{realm} -> {right}{verdict}"


def _other_realm_line(step: AuthExchange, logged: LoggedLine | None = None) -> str:
    """What a second realm's step of an exchange adds to its ladder line, or ''."""
    sent = f"[{describe_step(step.credentials)}] " if step.credentials else ""
    offered = "; ".join(describe_step(c) for c in step.challenges)
    verdict = _verdict(step, logged)
    if not (sent or offered or verdict):
        return ""
    realm = "proxy" if step.realm is Realm.PROXY else "server"
    return f"{realm}: {sent}" + (f"-> [{offered}]" if offered else "") + verdict


def _verdict(step: AuthExchange, logged: LoggedLine | None = None) -> str:
    if step.outcome is None:
        words = _AUTHENTICATED.get(step.leg)
        return f"  = {words}" if words else ""
    label = {
        Outcome.NORMAL: "normal",
        Outcome.FAILURE: "FAILURE",
        Outcome.INCOMPLETE: "not judged",
    }[step.outcome]
    words = _LEG_WORDS.get(step.leg, step.leg.value)
    if step.outcome is Outcome.FAILURE and logon_succeeded_behind(step, logged):
        # The handshake alone reads a refused logon; the log line or the error
        # page says the logon succeeded and the request was refused behind it
        # (401.3-401.5).
        words = _LEG_WORDS[Leg.REFUSED_AFTER_LOGON]
    if logged is not None:
        # What IIS wrote wins over what the sequence predicts (as in the rules).
        iis = f", IIS log {logged.triple}"
    else:
        iis = f", IIS {step.iis}" if step.iis else ""
    body = f", page says {step.iis_from_body}" if step.iis_from_body else ""
    return f"  = {label}: {words}{iis}{body}"


def _short(uri: str, limit: int = 60) -> str:
    return uri if len(uri) <= limit else uri[: limit - 3] + "..."


def verdict_words(step: AuthExchange, logged: LoggedLine | None = None) -> str:
    """The verdict of a step as the ladder prints it ('normal: NTLM challenge
    leg, IIS 401 1 2148074254'), empty for a step that gets none; shared with
    the HTML ladders."""
    return _verdict(step, logged).removeprefix("  = ")
