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
import inspect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from authtrace.diagnose.finding import Finding, Severity

if TYPE_CHECKING:
    from authtrace.diagnose.context import RuleContext

Check = Callable[["RuleContext"], Iterable[Finding]]


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
    across: how it works on a capture diagnosed in blocks (`Across`)."""

    id: str
    severity: Severity
    meaning: str
    check: Check
    needs_pairing: bool = True
    across: Across = Across.BLOCK

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
        for finding in self.check(judged):
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
