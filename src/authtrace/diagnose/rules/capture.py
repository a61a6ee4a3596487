"""The capture itself: handshakes the capture cut, gaps, one-sided traffic.
These are not failures of the system; they say what the capture cannot show,
and they stop other rules from blaming what the capture simply missed."""

from __future__ import annotations

from collections.abc import Iterator

from authtrace.diagnose.context import Located, RuleContext, make_finding
from authtrace.diagnose.finding import Finding, Severity
from authtrace.handshake.model import Leg, Outcome

# Legs that continue a handshake begun earlier on the same connection.
_MIDWAY_LEGS = frozenset(
    {Leg.NTLM_OUT_OF_SEQUENCE, Leg.NTLM_OUT_OF_SEQUENCE_ACCEPTED, Leg.SPNEGO_ACCEPTED}
)


def capture_incomplete(ctx: RuleContext) -> Iterator[Finding]:
    for timeline in ctx.view.timelines:
        connection = timeline.connection
        auth_steps = [
            (position, step)
            for position, step in enumerate(timeline.steps)
            if step.credentials is not None or step.challenges
        ]
        if not auth_steps:
            continue

        located = [Located(timeline, p, s) for p, s in auth_steps]
        problems: list[str] = []
        incomplete = [loc for loc in located if loc.step.outcome is Outcome.INCOMPLETE]
        if incomplete:
            problems.append(
                f"{len(incomplete)} authentication leg(s) cannot be judged (the capture holds "
                "only part of the handshake)"
            )
        split = {sp.authenticate for sp in ctx.view.splits}
        first = located[0]
        if not connection.syn_seen and (
            first.step.exchange.request is None
            or (
                first.step.leg in _MIDWAY_LEGS
                and first.ref not in split
                and first.step.outcome is not Outcome.FAILURE
            )
        ):
            problems.append("the connection began before the capture, in the middle of a handshake")
        if connection.gaps:
            lost = sum(gap.length for gap in connection.gaps)
            problems.append(f"{lost} bytes were not captured ({len(connection.gaps)} gap(s))")
        unanswered = [loc for loc in located if loc.step.exchange.response is None]
        if unanswered and connection.close_reason == "end_of_capture":
            problems.append("the capture ends before the server's answer")
        if not problems:
            continue
        yield make_finding(
            "capture-incomplete",
            Severity.INFO,
            "Part of a handshake is missing from the capture",
            f"Connection {connection.id}: " + "; ".join(problems) + ". authtrace does not judge "
            "what it cannot see; capture from before the first request to after the last answer, "
            "with a full snap length, on the client side if possible.",
            "Capture again: start before reproducing, stop after the failure, no snaplen limit.",
            (incomplete or located)[:3],
            extra_frames=[gap.frame for gap in connection.gaps[:5]],
        )


RULES = (capture_incomplete,)
