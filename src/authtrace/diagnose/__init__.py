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

# Every rule id with what it means, in the order of the negotiation; the ids are
# part of the interface (users script against them).
RULE_DESCRIPTIONS: dict[str, str] = {
    "ntlm-handshake-split": "NTLM messages of one handshake spread over several connections "
    "(pooling proxy, load balancer without affinity)",
    "shared-authenticated-connection": "one authenticated connection carries requests of "
    "several clients or users",
    "auth-lost-on-new-connection": "the client authenticated one connection, then sent "
    "requests without credentials on a new one and got 401",
    "handshake-closed-midway": "the connection closed between challenge and response",
    "reauth-on-authenticated-connection": "401 on a connection that had authenticated",
    "client-ignores-negotiate": "the server offered Negotiate/NTLM and the client never "
    "answered with credentials (the classic 401.2)",
    "no-common-scheme": "the client answered with a scheme the server did not offer",
    "kerberos-fallback-to-ntlm": "Negotiate carried NTLM where Kerberos was expected, with "
    "the cause (unknown SPN, host by IP, KDC unreachable, no KDC traffic)",
    "kerberos-ticket-rejected": "the server answered a Kerberos ticket with 401 (SPN on the "
    "wrong account, stale key)",
    "kerberos-clock-skew": "KRB_AP_ERR_SKEW: clocks differ too much",
    "kdc-error": "the KDC refused a ticket request (errors that are normal are left out)",
    "ntlm-logon-failed": "full NTLM handshake on one connection, final 401 (wrong password, "
    "account problem, loopback check)",
    "ntlm-negotiate-rejected": "the server refused the NTLM NEGOTIATE before any challenge",
    "ntlmv1-response": "NTLMv1 (24-byte) response, weak and refused where NTLMv2 is required",
    "ntlm-anonymous": "anonymous NTLM AUTHENTICATE",
    "channel-binding-missing": "NTLM over TLS without channel binding refused (Extended "
    "Protection)",
    "repeated-logon-failures": "several failed logons for one user: lockout risk",
    "basic-over-cleartext": "Basic credentials over unencrypted HTTP",
    "basic-logon-failed": "Basic credentials refused",
    "digest-failed": "Digest response refused (not a stale nonce)",
    "bearer-token-rejected": "Bearer token refused",
    "auth-header-too-large": "request headers too large (usually a big Kerberos token): 400",
    "capture-incomplete": "gaps, one-sided traffic or a handshake cut by the capture",
}
RULE_IDS = tuple(RULE_DESCRIPTIONS)


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
