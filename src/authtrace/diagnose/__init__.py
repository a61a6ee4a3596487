"""diagnose: rules that read judged handshakes and KDC exchanges and return
findings. `diagnose()` runs every rule family; a rule that fails on some
unexpected shape becomes an `analysis-error` anomaly, never a crash."""

from __future__ import annotations

import dataclasses

from authtrace.anomalies import Anomaly
from authtrace.diagnose.context import RuleContext
from authtrace.diagnose.finding import Finding, Severity
from authtrace.diagnose.rules import capture, credentials, kerberos, negotiation, ntlm, topology

ALL_RULES = (
    *topology.RULES,
    *negotiation.RULES,
    *kerberos.RULES,
    *ntlm.RULES,
    *credentials.RULES,
    *capture.RULES,
)

RULE_IDS = (
    "ntlm-handshake-split",
    "shared-authenticated-connection",
    "auth-lost-on-new-connection",
    "handshake-closed-midway",
    "reauth-on-authenticated-connection",
    "client-ignores-negotiate",
    "no-common-scheme",
    "kerberos-fallback-to-ntlm",
    "kerberos-ticket-rejected",
    "kerberos-clock-skew",
    "kdc-error",
    "ntlm-logon-failed",
    "ntlm-negotiate-rejected",
    "ntlmv1-response",
    "ntlm-anonymous",
    "channel-binding-missing",
    "repeated-logon-failures",
    "basic-over-cleartext",
    "basic-logon-failed",
    "digest-failed",
    "bearer-token-rejected",
    "auth-header-too-large",
    "capture-incomplete",
)


def diagnose(context: RuleContext) -> tuple[list[Finding], list[Anomaly]]:
    """Run every rule; findings sorted by severity, then by first frame."""
    findings: list[Finding] = []
    anomalies: list[Anomaly] = []
    for rule in ALL_RULES:
        try:
            findings.extend(rule(context))
        except Exception as error:  # noqa: BLE001 - one broken rule must not hide the others
            anomalies.append(Anomaly("analysis-error", f"rule {rule.__name__} failed: {error!r}"))
    findings = merge_repeats(findings)
    findings.sort(key=lambda f: (f.severity.rank, f.frames[0] if f.frames else 0, f.rule))
    return findings, anomalies


# How many frames one merged finding cites at most (the first ones of each repeat).
MAX_MERGED_FRAMES = 24


def merge_repeats(findings: list[Finding]) -> list[Finding]:
    """One finding per rule, host and evidence fields: the same problem met again
    (a client retrying, a proxy splitting every handshake) is one story with a
    count, not a page of copies. The first occurrence's explanation is kept."""
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
        frames = sorted({f for finding in repeats for f in finding.frames})
        connections = sorted({c for finding in repeats for c in finding.connections})
        merged.append(
            dataclasses.replace(
                first,
                title=f"{first.title} ({len(repeats)} times)",
                explanation=f"{first.explanation} The same happened {len(repeats) - 1} more "
                f"time(s) (connections {', '.join(map(str, connections))}).",
                frames=tuple(frames[:MAX_MERGED_FRAMES]),
                connections=tuple(connections),
            )
        )
    return merged


__all__ = ["Finding", "RULE_IDS", "RuleContext", "Severity", "diagnose"]
