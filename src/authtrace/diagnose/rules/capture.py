"""The capture itself: handshakes the capture cut, gaps, one-sided traffic.
These are not failures of the system; they say what the capture cannot show,
and they stop other rules from blaming what the capture simply missed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterator, Sequence
from typing import cast

from authtrace.auth.steps import is_not_kept
from authtrace.diagnose.context import Located, RuleContext, is_sure, make_finding
from authtrace.diagnose.finding import Finding, Severity
from authtrace.diagnose.rule import Groups, grouping_rule
from authtrace.handshake.links import StepRef
from authtrace.handshake.model import Answer, Leg, Outcome, Sent
from authtrace.handshake.timeline import ConnectionTimeline
from authtrace.http.messages import GapMark
from authtrace.tcp.events import CloseReason
from authtrace.words import agreeing, counted

# Legs that continue a handshake begun earlier on the same connection.
_MIDWAY_LEGS = frozenset(
    {Leg.NTLM_OUT_OF_SEQUENCE, Leg.NTLM_OUT_OF_SEQUENCE_ACCEPTED, Leg.SPNEGO_ACCEPTED}
)


def _incomplete_connections(ctx: RuleContext) -> Iterator[tuple[Hashable, Located]]:
    """Each connection whose authentication the capture lacks something of,
    under (host, connection id, what it lacks), with the steps that show it.
    What it lacks is decided in the block (which holds the splits the
    connection was linked in), so the report reads nothing but the groups."""
    split = frozenset(sp.authenticate for sp in ctx.view.splits)  # once, not per connection
    for timeline in ctx.view.timelines:
        found = _missing(split, timeline)
        if found is not None:
            problems, located, _marks = found
            key = (located[0].host, timeline.connection.id, tuple(problems))
            for each in located:
                yield key, each


@grouping_rule(
    "capture-incomplete",
    Severity.INFO,
    "gaps, one-sided traffic or a handshake cut by the capture",
    select=_incomplete_connections,
    needs_pairing=False,  # says what the capture lacks, uncertain pairings included
)
def capture_incomplete(ctx: RuleContext, groups: Groups) -> Iterator[Finding]:
    """Needs a connection with authentication headers (or heads cut before
    them) whose legs cannot be judged (outcome incomplete), whose heads the
    capture cut (snap length, ETW packet truncation, a gap: their count), that
    began mid-handshake before the capture (no SYN), that lost bytes (TCP
    gaps), or whose last request the capture cut before the answer. One note
    per host, listing what each of its connections is missing."""
    by_host: dict[str, list[tuple[int, list[str], Sequence[Located], list[GapMark]]]] = defaultdict(
        list
    )
    for key, steps in groups.items():
        host, connection, problems = cast(tuple[str, int, tuple[str, ...]], key)
        marks = list(steps[0].timeline.connection.gaps[:5])
        by_host[host].append((connection, list(problems), steps, marks))
    for host, items in by_host.items():
        words = ctx.words()
        for _connection, _problems, located, marks in items[:5]:
            for mark in marks:
                words.gap(located[0].timeline.connection, mark)
        described = "; ".join(
            f"connection {connection}: " + ", ".join(problems)
            for connection, problems, _located, _frames in items[:5]
        )
        more = f"; and {counted(len(items) - 5, 'more connection')}" if len(items) > 5 else ""
        yield make_finding(
            capture_incomplete,
            "Part of a handshake is missing from the capture",
            f"{described}{more}. authtrace does not judge what it cannot see; capture from "
            "before the first request to after the last answer, with a full snap length, on "
            "the client side if possible.",
            "Capture again: start before reproducing, stop after the failure, no snaplen limit.",
            [loc for _c, _p, located, _f in items[:5] for loc in located[:2]],
            words=words,
            host=host,
        )


def _missing(
    split: frozenset[StepRef], timeline: ConnectionTimeline
) -> tuple[list[str], list[Located], list[GapMark]] | None:
    """What the capture lacks for this connection's authentication, if anything."""
    connection = timeline.connection
    located = [
        Located(timeline, position, step)
        for position, step in enumerate(timeline.steps)
        if step.credentials is not None
        or step.challenges
        or step.sent is Sent.NOT_SEEN
        or step.answer is Answer.NOT_SEEN
    ]
    if not located:
        return None
    problems: list[str] = []
    incomplete = [loc for loc in located if loc.step.outcome is Outcome.INCOMPLETE]
    if incomplete:
        problems.append(f"{counted(len(incomplete), 'authentication leg')} cannot be judged")
    cut = cut_heads(timeline)
    if cut:
        problems.append(
            f"the capture cut {counted(cut, 'message head')} before {agreeing(cut, 'its')} end "
            f"(snap length, packet truncation or a gap), so {agreeing(cut, 'its')} authentication "
            "headers were not seen"
        )
    not_kept = [loc for loc in located if is_not_kept(loc.step.credentials)]
    if not_kept:
        problems.append(
            f"the credentials of {counted(len(not_kept), 'request')} were sent in a header block "
            "too large to keep or cut by the capture, so they were not decoded"
        )
    first = located[0]
    if not connection.syn_seen and (
        first.step.exchange.request is None
        or (
            first.step.leg in _MIDWAY_LEGS
            and first.ref not in split
            and first.step.outcome is not Outcome.FAILURE
        )
    ):
        problems.append("it began before the capture, in the middle of a handshake")
    if connection.gaps:
        lost = sum(gap.length for gap in connection.gaps)
        problems.append(
            f"{counted(lost, 'byte')} {agreeing(lost, 'was')} not captured "
            f"({counted(len(connection.gaps), 'gap')})"
        )
    unsure = [loc for loc in located if not is_sure(loc.step)]
    if unsure:
        problems.append(
            f"after a gap, {counted(len(unsure), 'answer')} may belong to another request "
            f"(pairing uncertain), so no rule judged {agreeing(len(unsure), 'it')}"
        )
    unanswered = [loc for loc in located if loc.step.exchange.response is None]
    if unanswered and connection.close_reason is CloseReason.END_OF_CAPTURE:
        problems.append("the capture ends before the server's answer")
    if not problems:
        return None
    return problems, (incomplete or located)[:3], list(connection.gaps[:5])


def cut_heads(timeline: ConnectionTimeline) -> int:
    """The requests and responses of this connection whose head's end the
    capture did not show (`rest_not_seen`), each counted once."""
    return sum(
        1
        for exchange in timeline.connection.exchanges
        for message in (exchange.request, exchange.response)
        if message is not None and message.rest_not_seen
    )


RULES = (capture_incomplete,)
