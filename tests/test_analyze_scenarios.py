"""authtrace analyze on every hand-built scenario capture: the rules that must
fire fire with the right host, the rules that must not fire do not, and every
401 gets the IIS triple the scenario's author predicted (captures/scenarios/
README.md says why each is expected)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from authtrace.pipeline import analyze
from authtrace.report.as_json import report_to_dict

SCENARIOS = Path(__file__).resolve().parent.parent / "captures" / "scenarios"
EXPECTED = json.loads((SCENARIOS / "expected.json").read_text())


@pytest.fixture(scope="module")
def reports() -> dict[str, dict]:
    return {name: report_to_dict(analyze([SCENARIOS / name])) for name in EXPECTED}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_rules_fire_exactly(name: str, reports: dict[str, dict]) -> None:
    expected = EXPECTED[name]
    fired = {finding["rule"] for finding in reports[name]["findings"]}
    assert fired == set(expected["rules"]), expected["title"]
    assert not fired & set(expected["not_rules"])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_findings_name_the_host_and_frames(name: str, reports: dict[str, dict]) -> None:
    expected = EXPECTED[name]
    frames_in_capture = {int(frame) for frame in expected["frames"]}
    for finding in reports[name]["findings"]:
        assert finding["frames"], finding["rule"]
        if finding["rule"] not in ("kdc-error",) and expected.get("host"):
            assert finding["host"] == expected["host"]
        # Evidence cites frames the scenario's author verified with tshark.
        assert set(finding["frames"]) & frames_in_capture, finding


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_predicted_iis_triples(name: str, reports: dict[str, dict]) -> None:
    predicted = {}
    for exchange in reports[name]["exchanges"]:
        for verdict in exchange["verdicts"]:
            if verdict["iis"] and exchange["response"]:
                predicted[str(exchange["response"]["frame"])] = verdict["iis"]
    assert predicted == EXPECTED[name]["iis"]


def test_healthy_captures_have_only_normal_401s(reports: dict[str, dict]) -> None:
    healthy = [name for name, e in EXPECTED.items() if not e["rules"]]
    assert len(healthy) >= 6
    for name in healthy:
        for host in reports[name]["summary"]["hosts"]:
            assert host["responses_401"]["failure"] == 0, name


def test_summary_counts_normal_and_failed_401s(reports: dict[str, dict]) -> None:
    host = reports["healthy-ntlm.pcap"]["summary"]["hosts"][0]
    assert host["responses_401"] == {"normal": 2, "failure": 0, "incomplete": 0}
    assert host["authenticated_with"] == {"ntlm": 1}
    failed = reports["ntlm-logon-failed.pcap"]["summary"]["hosts"][0]["responses_401"]
    assert failed["normal"] == 2 and failed["failure"] == 1


def test_split_is_proven_by_the_copied_timestamp(reports: dict[str, dict]) -> None:
    finding = next(
        f for f in reports["pooling-proxy.pcap"]["findings"] if f["rule"] == "ntlm-handshake-split"
    )
    assert "MsvAvTimestamp" in finding["explanation"]
    assert len(finding["connections"]) == 2


def test_fallback_names_its_cause(reports: dict[str, dict]) -> None:
    causes = {
        "kerberos-fallback-spn-unknown.pcap": "KDC_ERR_S_PRINCIPAL_UNKNOWN",
        "kerberos-fallback-ip-host.pcap": "IP address",
        "kerberos-fallback-kdc-unreachable.pcap": "never answered",
    }
    for name, words in causes.items():
        (finding,) = [
            f for f in reports[name]["findings"] if f["rule"] == "kerberos-fallback-to-ntlm"
        ]
        assert words in finding["explanation"], name


def test_logon_failure_on_one_machine_names_the_loopback_check(tmp_path: Path) -> None:
    from scapy.layers.inet import IP
    from scapy.utils import rdpcap, wrpcap

    packets = rdpcap(str(SCENARIOS / "ntlm-logon-failed.pcap"))
    for packet in packets:
        packet[IP].src = packet[IP].dst = "192.0.2.10"
        del packet[IP].chksum
    same_host = tmp_path / "same-host.pcap"
    wrpcap(str(same_host), packets)
    (finding,) = [f for f in analyze([same_host]).findings if f.rule == "ntlm-logon-failed"]
    assert "loopback check" in finding.explanation
    assert "BackConnectionHostNames" in finding.fix
    (elsewhere,) = [
        f
        for f in analyze([SCENARIOS / "ntlm-logon-failed.pcap"]).findings
        if f.rule == "ntlm-logon-failed"
    ]
    assert "loopback" not in elsewhere.explanation


def test_split_without_timestamps_is_found_by_timing(reports: dict[str, dict]) -> None:
    splits = [
        f
        for f in reports["ntlm-handshake-split-v1.pcap"]["findings"]
        if f["rule"] == "ntlm-handshake-split"
    ]
    (finding,) = splits  # the client tried twice: one finding with a count
    assert finding["title"].endswith("(2 times)")
    assert "MsvAvTimestamp" not in finding["explanation"]  # NTLMv1 copies no timestamp
    assert len(finding["connections"]) == 3


def test_every_reported_rule_is_documented(reports: dict[str, dict]) -> None:
    from click.testing import CliRunner

    from authtrace.cli import main
    from authtrace.diagnose import RULE_IDS

    fired = {f["rule"] for report in reports.values() for f in report["findings"]}
    assert fired <= set(RULE_IDS)
    assert len(fired) >= 20  # the scenarios exercise nearly every rule
    listed = CliRunner().invoke(main, ["rules"]).output
    assert all(rule in listed for rule in RULE_IDS)


def test_no_rule_breaks_its_declaration(reports: dict[str, dict]) -> None:
    """A rule that raises, or yields a finding its declaration does not cover,
    shows as an analysis-error anomaly: in tests that is a bug, not a capture."""
    from authtrace.diagnose import RULES_BY_ID

    for name, report in reports.items():
        assert not [a for a in report["anomalies"] if a["kind"] == "analysis-error"], name
        for finding in report["findings"]:
            declared = RULES_BY_ID[finding["rule"]]
            rank = {"error": 0, "warning": 1, "info": 2}
            assert rank[finding["severity"]] >= rank[declared.severity.value], finding


def test_proxy_findings_name_the_proxy(reports: dict[str, dict]) -> None:
    """Issue 11 items 4 and 6: the proxy's 407 and the proxy closing upstream
    connections are told as the proxy's doing."""
    (refused,) = [
        f
        for f in reports["proxy-407-basic-refused.pcap"]["findings"]
        if f["rule"] == "basic-logon-failed"
    ]
    assert "The proxy proxy01.contoso.com (203.0.113.5:3128, squid/5.7)" in refused["explanation"]
    assert "IIS" not in refused["fix"]
    (closed,) = reports["proxy-server-close.pcap"]["findings"]
    assert closed["title"].startswith("The proxy closes the upstream connection")
    assert "answered every challenge" in closed["explanation"]


def test_logon_failure_on_plain_http_names_no_channel_binding(reports: dict[str, dict]) -> None:
    """Issue 11 item 9: ntlm-logon-failed.pcap is HTTP on port 80."""
    (finding,) = reports["ntlm-logon-failed.pcap"]["findings"]
    assert "channel" not in (finding["explanation"] + finding["fix"]).lower()
