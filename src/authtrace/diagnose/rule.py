"""What a rule is: one declaration — stable id, severity, one-line meaning and the
check that finds it — written once, in its family module, with `@rule(...)`.
`authtrace rules`, the README's list, the JSON descriptions and the catalogue of
ids are all derived from these declarations (diagnose/__init__.py gathers them).

Invariant: a rule only yields findings that carry its own id and are at most as
severe as it declares; a check that breaks this raises `RuleDeclarationError`
(`diagnose()` turns it into an `analysis-error` anomaly in a user's run, and the
tests fail on any such anomaly). The check's docstring says what evidence it
needs; `authtrace rules ID` prints it.
"""

from __future__ import annotations

import enum
import functools
import inspect
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from authtrace.diagnose.finding import Finding, Severity

if TYPE_CHECKING:
    from authtrace.diagnose.context import Located, RuleContext, Steps

Check = Callable[["RuleContext"], Iterable[Finding]]
# A rule that groups steps across the capture, in two halves (`Rule.grouping`):
# which steps it groups, under which key, and the findings of the groups.
# A step under a key; None under a key marks the key as seen, keeping no step
# (what a rule only asks "was it seen anywhere": a client that sent credentials).
Select = Callable[["RuleContext"], Iterable[tuple[Hashable, "Located | None"]]]
# What a report reads: each key's steps in capture order. Collected block by
# block they are `context.Steps`, which keep a compact reference per step and
# locate it again on each access (a Located holds its whole timeline).
Groups = dict[Hashable, Sequence["Located"]]
Collected = dict[Hashable, "Steps"]
Report = Callable[["RuleContext", Groups], Iterable[Finding]]


class Across(enum.Enum):
    """How a rule works on a capture diagnosed in blocks of connections
    (`diagnose.Diagnosis`; pipeline.analyze hands it the blocks of
    handshake/links.py LinkWindow)."""

    BLOCK = "block"
    """Each finding is about one step, one connection, or steps linked within
    the link horizon (a split, a relay, a retry): the rule runs on each block
    together with the connections the block was linked with, and a finding is
    kept by the block that holds its first connection. Exact: every connection
    a finding can depend on is within the horizon of it."""
    CAPTURE = "capture"
    """The rule counts or groups across the whole capture (failures per user,
    one finding per host or client, a set of what was seen anywhere, the KDC
    exchanges): it runs once, on every connection."""


class RuleDeclarationError(Exception):
    """A check yielded a finding its declaration does not cover (another id, or
    a severity above the declared one): a bug in authtrace, never in a capture."""


@dataclass(frozen=True, slots=True)
class Rule:
    """id: stable, part of the interface (scripts select findings by it);
    severity: the most severe a finding of this rule can be (a rule may report
    less, e.g. a split handshake that still succeeded is a warning);
    meaning: one line for `authtrace rules` and the README;
    check: reads a RuleContext, yields Findings (its docstring: the evidence);
    needs_pairing: the check judges responses, so it must never build on an
    exchange whose pairing is uncertain (False: it reads requests only, or
    reports what the capture lacks);
    across: how it works on a capture diagnosed in blocks (`Across`);
    grouping: for a CAPTURE rule that groups steps, its two halves (which
    steps under which key; the findings of the groups): its running aggregate
    over blocks is the selected steps by key (`collect`, `merge_groups`), so
    it needs only the steps it selects, not every connection (None: the rule
    reads the whole capture at once)."""

    id: str
    severity: Severity
    meaning: str
    check: Check
    needs_pairing: bool = True
    across: Across = Across.BLOCK
    grouping: tuple[Select, Report] | None = None

    @property
    def family(self) -> str:
        """The family module that declares the rule (topology, ntlm, ...)."""
        return self.check.__module__.rsplit(".", 1)[-1]

    @property
    def evidence(self) -> str:
        """What the check needs to see before it reports (its docstring)."""
        return inspect.getdoc(self.check) or ""

    def __call__(self, context: RuleContext) -> Iterator[Finding]:
        """The check's findings. Uncertain pairing is a fact every rule
        respects here, not in each check: a check that judges responses sees
        no step whose pairing is uncertain (RuleContext.steps), and a finding
        it built on one anyway (walking the timelines itself) is left out."""
        judged = context.judging(self.needs_pairing)
        return self._checked(context, self.check(judged))

    def collect(self, context: RuleContext, own: frozenset[int] | None = None) -> Collected:
        """A grouping rule's selected steps of `context` (those of the
        connections in `own` only, unless None), by key, in capture order."""
        assert self.grouping is not None
        select, _report = self.grouping
        return _grouped(select, context.judging(self.needs_pairing), own)

    def report(self, context: RuleContext, groups: Collected) -> Iterator[Finding]:
        """A grouping rule's findings from the groups of the whole capture."""
        assert self.grouping is not None
        _select, report = self.grouping
        as_read: Groups = dict(groups)
        return self._checked(context, report(context.judging(self.needs_pairing), as_read))

    def _checked(self, context: RuleContext, findings: Iterable[Finding]) -> Iterator[Finding]:
        for finding in findings:
            if self.needs_pairing and context.builds_on_uncertain_pairing(finding):
                continue
            if finding.rule != self.id:
                raise RuleDeclarationError(
                    f"rule {self.id} yielded a finding with id {finding.rule!r}"
                )
            if finding.severity.rank < self.severity.rank:
                raise RuleDeclarationError(
                    f"rule {self.id} is declared {self.severity.value} at most, "
                    f"yielded {finding.severity.value}"
                )
            yield finding


def rule(
    rule_id: str,
    severity: Severity,
    meaning: str,
    *,
    needs_pairing: bool = True,
    across: Across = Across.BLOCK,
) -> Callable[[Check], Rule]:
    """Declare the decorated check as rule `rule_id`; the name it is bound to is
    the Rule, which the check passes to `make_finding` for its findings."""

    def declare(check: Check) -> Rule:
        return Rule(rule_id, severity, meaning, check, needs_pairing, across)

    return declare


def grouping_rule(
    rule_id: str,
    severity: Severity,
    meaning: str,
    *,
    select: Select,
    needs_pairing: bool = True,
) -> Callable[[Report], Rule]:
    """Declare a rule that groups steps across the capture (Across.CAPTURE):
    `select` yields (key, step) for the steps it groups, in capture order, or
    (key, None) to mark a key as seen without keeping a step; the decorated
    function turns the groups ({key: steps in capture order}, keys in the order
    their first step came, marked keys without steps after them) into
    findings, and its docstring is the rule's evidence. Diagnosed in blocks,
    only the selected steps and marked keys are carried from block to block."""

    def declare(report: Report) -> Rule:
        @functools.wraps(report)
        def check(context: RuleContext) -> Iterable[Finding]:
            groups: Groups = dict(_grouped(select, context))
            return report(context, groups)

        return Rule(
            rule_id, severity, meaning, check, needs_pairing, Across.CAPTURE, (select, report)
        )

    return declare


def _grouped(select: Select, context: RuleContext, own: frozenset[int] | None = None) -> Collected:
    """The steps `select` yields over `context`, by key in the order they came
    (those of the connections in `own` only, unless None; a key marked seen
    without a step is kept, with no step), each kept as a reference into the
    view's timelines by id (`context.Steps`). O(s) in the steps selected."""
    from authtrace.diagnose.context import Steps, lasting_timelines

    by_id = context.view.by_id
    timelines = lasting_timelines(by_id)
    groups: Collected = {}
    for key, located in select(context):
        if located is None:
            if key not in groups:
                groups[key] = Steps(timelines)
        elif own is None or located.timeline.connection.id in own:
            steps = groups.get(key)
            if steps is None:
                steps = groups[key] = Steps(timelines)
            steps.add(located, by_id)
    return groups


def merge_groups(parts: Iterable[Collected]) -> Collected:
    """The groups of several blocks as one run over all of them would have
    made them: each key's steps in capture order (connection, position), keys
    in the order of their first step. O(s log s) in the s steps selected."""
    merged: Collected = {}
    for part in parts:
        for key, steps in part.items():
            held = merged.get(key)
            if held is None:
                merged[key] = steps.copy()
            else:
                held.extend(steps)
    for steps in merged.values():
        steps.sort()
    last = (float("inf"), 0)  # a key only marked as seen
    first = {key: s.first_place() if s else last for key, s in merged.items()}
    return {key: merged[key] for key in sorted(merged, key=first.__getitem__)}
