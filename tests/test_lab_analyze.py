"""authtrace analyze on captures made by real software (the lab: MIT KDC,
Apache with mod_auth_gssapi and gss-ntlmssp, nginx, squid, curl, requests;
captures/lab/README.md). The diagnosis per capture is what that table says."""

from __future__ import annotations

from pathlib import Path

import pytest

from authtrace.pipeline import analyze
from authtrace.report.model import Report

LAB = Path(__file__).resolve().parent.parent / "captures" / "lab"

# capture -> (rules that must fire, rules that must not fire)
EXPECTED: dict[str, tuple[set[str], set[str]]] = {
    "kerberos-success": (set(), {"kdc-error", "kerberos-fallback-to-ntlm"}),
    "kerberos-preemptive": (set(), {"kdc-error", "client-ignores-negotiate"}),
    "ntlm-success": (set(), {"ntlm-logon-failed", "ntlm-handshake-split"}),
    "ntlm-wrong-password": ({"ntlm-logon-failed"}, {"ntlm-handshake-split"}),
    "ntlm-curl-type1-rejected": ({"ntlm-negotiate-rejected"}, {"ntlm-logon-failed"}),
    "negotiate-fallback-spn-unknown": ({"kerberos-fallback-to-ntlm"}, {"kdc-error"}),
    "kerberos-ticket-rejected": ({"kerberos-ticket-rejected"}, {"kerberos-clock-skew"}),
    "ntlm-pooling-proxy": ({"ntlm-handshake-split"}, {"ntlm-logon-failed"}),
    "client-ignores-negotiate": ({"client-ignores-negotiate"}, {"no-common-scheme"}),
    "basic-to-negotiate-only": (
        {"no-common-scheme", "basic-over-cleartext"},
        {"basic-logon-failed"},
    ),
    "basic-success": ({"basic-over-cleartext"}, {"basic-logon-failed"}),
    "basic-wrong-password": ({"basic-logon-failed", "basic-over-cleartext"}, set()),
    "digest-success": (set(), {"digest-failed"}),
    "digest-wrong-password": ({"digest-failed"}, set()),
    "proxy-407": ({"basic-logon-failed", "basic-over-cleartext"}, {"no-common-scheme"}),
}
HEALTHY = {"kerberos-success", "kerberos-preemptive", "ntlm-success", "digest-success"}


@pytest.fixture(scope="module")
def reports() -> dict[str, Report]:
    return {name: analyze([LAB / f"{name}.pcap"]) for name in EXPECTED}


def test_every_lab_capture_is_covered() -> None:
    assert {p.stem for p in LAB.glob("*.pcap")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_diagnosis(name: str, reports: dict[str, Report]) -> None:
    must, must_not = EXPECTED[name]
    fired = {f.rule for f in reports[name].findings if f.severity.value != "info"}
    assert must <= fired, fired
    assert not fired & must_not, fired
    if name in HEALTHY:
        assert not reports[name].has_problems


def test_kerberos_success_uses_kerberos(reports: dict[str, Report]) -> None:
    from authtrace.report.summary import summarize

    (host,) = summarize(reports["kerberos-success"])
    assert dict(host.authenticated_with) == {"kerberos": 1}
    assert host.failed_401 == 0 and host.normal_401 == 1


def test_mit_ticket_rejection_code_is_named(reports: dict[str, Report]) -> None:
    (finding,) = [f for f in reports["kerberos-ticket-rejected"].findings]
    assert finding.field("spn") == "HTTP/badkey.lab.test"
    assert "KRB_AP_ERR_BADKEYVER (44)" in (finding.field("krb_error") or "")
    assert finding.host == "badkey.lab.test"


def test_fallback_finds_the_unknown_spn(reports: dict[str, Report]) -> None:
    (finding,) = [
        f
        for f in reports["negotiate-fallback-spn-unknown"].findings
        if f.rule == "kerberos-fallback-to-ntlm"
    ]
    assert finding.field("kdc_error") == "KDC_ERR_S_PRINCIPAL_UNKNOWN (7)"
    assert finding.field("spn") == "HTTP/alias.lab.test"


def test_pooling_split_is_on_the_upstream_leg(reports: dict[str, Report]) -> None:
    report = reports["ntlm-pooling-proxy"]
    splits = [f for f in report.findings if f.rule == "ntlm-handshake-split"]
    assert splits
    upstream = {
        t.connection.id for t in report.view.timelines if t.connection.client.ip == "127.0.0.14"
    }
    for finding in splits:
        assert set(finding.connections) <= upstream
        assert finding.host == "web.lab.test"
