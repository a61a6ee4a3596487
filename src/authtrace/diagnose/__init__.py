"""diagnose: rules that read judged handshakes and KDC exchanges and return
findings. Each rule is declared once in its family module (diagnose/rule.py);
this module gathers the declarations, derives the catalogue of ids and
meanings from them, and `diagnose()` runs every rule; a rule that fails on some
unexpected shape becomes an `analysis-error` anomaly, never a crash."""

from __future__ import annotations

import dataclasses

from authtrace.anomalies import Anomaly, AnomalyKind
from authtrace.diagnose.context import RuleContext
from authtrace.diagnose.finding import Finding, Severity
from authtrace.diagnose.rule import Rule, RuleDeclarationError
from authtrace.diagnose.rules import (
    capture,
    credentials,
    http2,
    iis,
    kerberos,
    negotiation,
    ntlm,
    topology,
)
from authtrace.strict import internal_error

# Every rule, in the order the negotiation unfolds (topology, schemes, Kerberos,
# NTLM, per-request schemes, the capture itself): the order of `authtrace rules`.
ALL_RULES: tuple[Rule, ...] = (
    *topology.RULES,
    *negotiation.RULES,
    *kerberos.RULES,
    *ntlm.RULES,
    *http2.RULES,
    *credentials.RULES,
    *iis.RULES,
    *capture.RULES,
)
RULES_BY_ID: dict[str, Rule] = {declared.id: declared for declared in ALL_RULES}
if len(RULES_BY_ID) != len(ALL_RULES):
    raise RuleDeclarationError("two rules declare the same id")
# The ids are part of the interface (users script against them).
RULE_IDS = tuple(RULES_BY_ID)
RULE_DESCRIPTIONS: dict[str, str] = {declared.id: declared.meaning for declared in ALL_RULES}


def diagnose(context: RuleContext) -> tuple[list[Finding], list[Anomaly]]:
    """Run every rule; findings sorted by severity, then by first frame."""
    findings: list[Finding] = []
    anomalies: list[Anomaly] = []
    for declared in ALL_RULES:
        try:
            findings.extend(declared(context))
        except Exception as error:  # noqa: BLE001 - one broken rule must not hide the others
            internal_error(error)
            anomalies.append(
                Anomaly(AnomalyKind.ANALYSIS_ERROR, f"rule {declared.id} failed: {error!r}")
            )
    findings = merge_repeats(findings)
    findings.sort(key=lambda f: (f.severity.rank, f.frames[0] if f.frames else 0, f.rule))
    return findings, anomalies


def merge_repeats(findings: list[Finding]) -> list[Finding]:
    """One finding per rule, host and evidence fields: the same problem met again
    (a client retrying, a proxy splitting every handshake) is one story with a
    count, not a page of copies. The first occurrence's explanation is kept; the
    merged finding keeps every frame and connection (the text report shows a
    count with the first and last ones, --json lists them all)."""
    groups: dict[tuple[object, ...], list[Finding]] = {}
    for finding in findings:
        key = (finding.rule, finding.host, finding.fields, finding.severity)
        groups.setdefault(key, []).append(finding)
    merged: list[Finding] = []
    for repeats in groups.values():
        first = repeats[0]
        if len(repeats) == 1:
            merged.append(first)
            continue
        citations = {(c.frame, c.role): c for finding in repeats for c in finding.citations}
        frames = sorted({f for finding in repeats for f in finding.frames})
        connections = sorted({c for finding in repeats for c in finding.connections})
        merged.append(
            dataclasses.replace(
                first,
                title=f"{first.title} ({len(repeats)} times)",
                explanation=f"{first.explanation} The same happened {len(repeats) - 1} more "
                f"time(s), on {len(connections)} connection(s) in all (listed in the evidence).",
                frames=tuple(frames),
                connections=tuple(connections),
                citations=tuple(citations.values()),
            )
        )
    return merged


__all__ = [
    "ALL_RULES",
    "Finding",
    "RULES_BY_ID",
    "RULE_DESCRIPTIONS",
    "RULE_IDS",
    "Rule",
    "RuleContext",
    "Severity",
    "diagnose",
]
