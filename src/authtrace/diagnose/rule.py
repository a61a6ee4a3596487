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
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Set
from dataclasses import dataclass
from typing import TYPE_CHECKING

from authtrace.diagnose.finding import Finding, Severity

if TYPE_CHECKING:
    from authtrace.diagnose.context import Located, RuleContext
    from authtrace.diagnose.groups import Collected, Steps

Check = Callable[["RuleContext"], Iterable[Finding]]
# A rule that groups steps across the capture, in two halves (`Rule.grouping`):
# which steps it groups, under which key, and the findings of the groups.
# A step under a key; None under a key marks the key as seen, keeping no step
# (what a rule only asks "was it seen anywhere": a client that sent credentials).
Select = Callable[["RuleContext"], Iterable[tuple[Hashable, "Located | None"]]]
# What a report reads: each key's steps in capture order, as
# `diagnose.groups.Steps`, which locate a step only when it is read (a Located
# holds its whole timeline) and tell a step's time and connection without
# locating it. Collected block by block in a `diagnose.groups.Collected`.
Groups = Mapping[Hashable, "Steps"]
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

    def collect(self, context: RuleContext, own: Set[int] | None = None) -> Collected:
        """A grouping rule's selected steps of `context` (those of the
        connections in `own` only, unless None), by key, in capture order."""
        assert self.grouping is not None
        select, _report = self.grouping
        return _grouped(select, context.judging(self.needs_pairing), own)

    def report(self, context: RuleContext, groups: Collected) -> Iterator[Finding]:
        """A grouping rule's findings from the groups of the whole capture."""
        assert self.grouping is not None
        _select, report = self.grouping
        return self._checked(context, report(context.judging(self.needs_pairing), groups))

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
            return report(context, _grouped(select, context))

        return Rule(
            rule_id, severity, meaning, check, needs_pairing, Across.CAPTURE, (select, report)
        )

    return declare


def _grouped(select: Select, context: RuleContext, own: Set[int] | None = None) -> Collected:
    """The steps `select` yields over `context`, by key (those of the
    connections in `own` only, unless None; a key marked seen without a step
    is kept, with no step), each kept as a reference into the view's
    timelines by id (diagnose/groups.py). O(s) in the steps selected."""
    from authtrace.diagnose.context import lasting_timelines
    from authtrace.diagnose.groups import Collected

    by_id = context.view.by_id
    groups = Collected(lasting_timelines(by_id))
    for key, located in select(context):
        if located is None:
            groups.mark(key)
        elif own is None or located.timeline.connection.id in own:
            groups.add(key, located, by_id)
    return groups


def merge_groups(parts: Iterable[Collected]) -> Collected:
    """The groups of several blocks as one run over all of them would have
    made them: each key's steps in capture order (connection, position), keys
    in the order of their first step. O(s + k) in the s steps and k keys of
    the parts, and O(s log s) once when the result is first read."""
    from authtrace.diagnose.groups import Collected

    merged: Collected | None = None
    for part in parts:
        if merged is None:
            merged = Collected(part.timelines)
        merged.absorb(part)
    return merged if merged is not None else Collected({})
