"""diagnose/groups.py: the steps a grouping rule carries from block to block,
in columns; what its report reads locates only the steps it asks for."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping

from _timelines import OFFER_WINDOWS, Capture, ntlm_handshake, ntlm_legs

from authtrace.diagnose import RULES_BY_ID
from authtrace.diagnose.context import Located, RuleContext
from authtrace.diagnose.groups import Collected
from authtrace.diagnose.rule import merge_groups
from authtrace.handshake.timeline import ConnectionTimeline


class Counting(Mapping[int, ConnectionTimeline]):
    """Timelines by id that count how often one is looked up (a look-up of a
    spilled timeline reads it back from disk)."""

    def __init__(self, timelines: Mapping[int, ConnectionTimeline]) -> None:
        self.timelines = timelines
        self.lookups = 0

    def __getitem__(self, connection: int) -> ConnectionTimeline:
        self.lookups += 1
        return self.timelines[connection]

    def __iter__(self) -> Iterator[int]:
        return iter(self.timelines)

    def __len__(self) -> int:
        return len(self.timelines)


def _logons(connections: int) -> Capture:
    """One client: `connections` connections each authenticated with NTLM
    (200), then one more whose anonymous request got a 401 it never answered."""
    capture = Capture()
    for seed in range(connections):
        ntlm_handshake(capture.conn(), ntlm_legs(seed=seed + 1), 200, anonymous_first=False)
    capture.conn().exchange([], 401, OFFER_WINDOWS)
    return capture


def _counted(context: RuleContext) -> tuple[RuleContext, Counting]:
    counting = Counting(context.view.by_id)
    view = dataclasses.replace(context.view, by_id=counting)
    return dataclasses.replace(context, view=view), counting


def test_keys_read_in_order_of_their_first_step_whatever_the_blocks_order() -> None:
    context = _logons(6).context()
    steps = [located for located in context.steps() if located.step.credentials is not None]
    by_id = context.view.by_id
    one_run = Collected(by_id)
    late, early = Collected(by_id), Collected(by_id)
    one_run.mark("seen")
    late.mark("seen")
    for number, located in enumerate(steps):
        key = "odd" if number % 2 else "even"
        one_run.add(key, located, by_id)
        (late if number >= 3 else early).add(key, located, by_id)
    merged = merge_groups([late, early])
    for collected in (one_run, merged):
        # "odd" first came before "even" in the later block, "seen" has no step.
        assert list(collected) == ["even", "odd", "seen"]
        assert [located.ref for located in collected["even"]] == [s.ref for s in steps[0::2]]
        assert [located.ref for located in collected["odd"]] == [s.ref for s in steps[1::2]]
        assert len(collected["seen"]) == 0 and "seen" in collected
    assert merged.steps == len(steps)


def test_times_and_places_are_told_without_locating_a_step() -> None:
    context, counting = _counted(_logons(4).context())
    steps = list(context.steps())
    groups = Collected(counting)
    for located in steps:
        groups.add("all", located, counting)
    counting.lookups = 0  # adding looked each up once, to see it is the one by id
    read = groups["all"]
    assert [read.time(i) for i in range(len(read))] == [s.time for s in steps]
    assert [read.place(i) for i in range(len(read))] == [
        (s.timeline.connection.id, s.position) for s in steps
    ]
    assert read.connection(-1) == steps[-1].timeline.connection.id
    assert counting.lookups == 0
    assert read[2] == steps[2] and counting.lookups == 1
    assert read[1:3] == steps[1:3] and counting.lookups == 3


def test_a_step_of_other_timelines_is_kept_as_it_came() -> None:
    """A context made of other timelines (not those the ids hold) keeps its
    steps whole: they cannot be located again by id."""
    context = _logons(2).context()
    located = next(iter(context.steps()))
    other = dataclasses.replace(located.timeline)  # equal, not the same object
    stray = Located(other, located.position, located.step)
    groups = Collected(context.view.by_id)
    groups.add("k", stray, context.view.by_id)
    assert groups["k"][0] is stray
    moved = Collected({})
    moved.absorb(groups)
    assert moved["k"][0] is stray


def _report_lookups(rule: str, capture: Capture) -> tuple[list[tuple[int, ...]], int]:
    """The connections of each finding of `rule`'s report over its groups of
    `capture`, and how many timelines the report looked up."""
    context, counting = _counted(capture.context())
    declared = RULES_BY_ID[rule]
    groups = declared.collect(context)
    counting.lookups = 0
    found = [finding.connections for finding in declared.report(context, groups)]
    return found, counting.lookups


def test_auth_lost_on_new_connection_locates_only_the_steps_it_cites() -> None:
    """Logons from one client, then an anonymous 401 on a new connection:
    the report orders the steps by their times alone and locates those its
    finding cites (the last logon, the lost request), not every logon: its
    look-ups are the same after 5 logons as after 30."""
    found, few = _report_lookups("auth-lost-on-new-connection", _logons(5))
    assert found == [(4, 5)]
    found, many = _report_lookups("auth-lost-on-new-connection", _logons(30))
    assert found == [(29, 30)]
    assert many == few <= 4  # each cited step, and its connection's pairing checked


def _refused_between(logons: int) -> Capture:
    """A client authenticated `logons` times, then its NEGOTIATE was refused
    without a CHALLENGE, then it authenticated once more."""
    capture = Capture()
    for seed in range(logons):
        ntlm_handshake(capture.conn(), ntlm_legs(seed=seed + 1), 200, anonymous_first=False)
    refused = capture.conn()
    refused.exchange([("Authorization", "NTLM TlRMTVNTUAABAAAAB4IIAAAAAAAAAAAAAAAAAAAAAAA=")], 401)
    ntlm_handshake(capture.conn(), ntlm_legs(seed=99), 200, anonymous_first=False)
    return capture


def test_ntlm_negotiate_rejected_locates_only_the_logon_it_names() -> None:
    """Only the refusal and the first logon after it are located: the
    report's look-ups are the same after 3 earlier logons as after 20."""
    found, few = _report_lookups("ntlm-negotiate-rejected", _refused_between(3))
    assert found == [(3, 4)]
    found, many = _report_lookups("ntlm-negotiate-rejected", _refused_between(20))
    assert found == [(20, 21)]
    assert many == few <= 6
