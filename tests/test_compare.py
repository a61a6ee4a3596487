"""compare: the diff pairs of captures/scenarios/diff must lead with the
difference the scenario README describes; a capture against itself, or
against a copy taken from another client address and port, must not differ."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest

from authtrace.compare.diff import Presence, compare
from authtrace.compare.profile import profile_hosts, url_path
from authtrace.compare.render import DIFF_SCHEMA, comparison_to_dict, render_comparison
from authtrace.pipeline import analyze
from authtrace.report.model import Report

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "captures" / "scenarios"
DIFF = SCENARIOS / "diff"
LAB = ROOT / "captures" / "lab"
HOST = "web01.contoso.com"


@cache
def report(path: Path) -> Report:
    if not path.exists():
        pytest.skip(f"{path.name} is not in this checkout")
    return analyze([str(path)])


def pair(name: str):  # type: ignore[no-untyped-def]
    return compare(report(DIFF / f"{name}-working.pcap"), report(DIFF / f"{name}-failing.pcap"))


def test_kerberos_vs_fallback_leads_with_the_kdc_answer() -> None:
    comparison = pair("kerberos-vs-fallback")
    assert comparison.differs
    (host,) = comparison.hosts
    assert host.host == HOST and host.presence is Presence.BOTH
    first = host.first
    assert first is not None and first.aspect == "kdc-answer"
    assert first.working == "ticket"
    assert "S_PRINCIPAL_UNKNOWN" in first.failing
    # frames 1 and 2 hold the TGS-REQ and its answer in both captures
    assert first.working_frames == (1, 2) and first.failing_frames == (1, 2)
    assert "HTTP/web01.contoso.com" in host.headline
    assert "fell back to NTLM" in host.headline
    aspects = [d.aspect for d in host.differences]
    assert aspects.index("kdc-answer") < aspects.index("mechanism")
    assert {(f.side, f.rule) for f in host.findings} == {("failing", "kerberos-fallback-to-ntlm")}
    assert comparison.headline.startswith(f"{HOST}: working: the KDC issued a ticket")


def test_direct_vs_pooling_proxy_leads_with_the_split_handshake() -> None:
    comparison = pair("direct-vs-pooling-proxy")
    (host,) = comparison.hosts
    assert host.first is not None and host.first.aspect == "connections-per-handshake"
    assert "proxy split the handshake over two connections" in host.headline
    assert "stayed on one connection" in host.headline
    by_aspect = {d.aspect: d for d in host.differences}
    # the CHALLENGE of one upstream connection and the AUTHENTICATE on the other
    assert {13, 23} <= set(host.first.failing_frames)
    assert "proxy01.contoso.com" in by_aspect["proxy"].failing
    assert not by_aspect["proxy"].affects_auth  # Via alone is context
    assert by_aspect["final-status"].working == "/: 200"
    assert by_aspect["final-status"].failing == "/: 401"
    assert ("failing", "ntlm-handshake-split") in {(f.side, f.rule) for f in host.findings}
    assert "mechanism" not in by_aspect  # NTLM on both sides


def test_browser_configured_vs_not_leads_with_missing_credentials() -> None:
    comparison = pair("browser-configured-vs-not")
    (host,) = comparison.hosts
    assert host.first is not None and host.first.aspect == "mechanism"
    assert host.first.working == "Kerberos in Negotiate"
    assert "sent no credentials" in host.first.failing_says
    assert "final status was 401" in host.headline
    # no Kerberos traffic at all in the failing capture: a note, not a difference
    assert "kdc-answer" not in {d.aspect for d in host.differences}
    assert any("no Kerberos traffic" in note for note in host.notes)
    assert ("failing", "client-ignores-negotiate") in {(f.side, f.rule) for f in host.findings}


def test_swapped_pair_names_the_same_aspect_from_the_other_side() -> None:
    working = report(DIFF / "kerberos-vs-fallback-working.pcap")
    failing = report(DIFF / "kerberos-vs-fallback-failing.pcap")
    swapped = compare(failing, working).hosts[0].first
    assert swapped is not None and swapped.aspect == "kdc-answer"
    assert "S_PRINCIPAL_UNKNOWN" in swapped.working and swapped.failing == "ticket"


@pytest.mark.parametrize(
    "name",
    ["healthy-ntlm", "healthy-kerberos", "pooling-proxy", "healthy-proxy-407", "ntlmv1-response"],
)
def test_a_capture_does_not_differ_from_itself(name: str) -> None:
    comparison = compare(report(SCENARIOS / f"{name}.pcap"), report(SCENARIOS / f"{name}.pcap"))
    assert not comparison.differs
    assert all(not h.differences and not h.findings for h in comparison.hosts)
    assert comparison.headline == "authentication does not differ between the captures"


@pytest.mark.parametrize(
    ("working", "failing", "aspect"),
    [
        ("healthy-ntlm", "handshake-closed-midway", "keep-alive"),
        ("healthy-ntlm", "ntlmv1-response", "ntlmv1"),
        ("healthy-kerberos", "auth-header-too-large", "header-size"),
        ("healthy-kerberos", "kerberos-fallback-kdc-unreachable", "kdc-answer"),
        ("healthy-kerberos", "kerberos-ticket-rejected", "final-status"),
    ],
)
def test_first_difference_of_other_scenarios(working: str, failing: str, aspect: str) -> None:
    comparison = compare(
        report(SCENARIOS / f"{working}.pcap"), report(SCENARIOS / f"{failing}.pcap")
    )
    host = comparison.hosts[0]
    assert host.first is not None and host.first.aspect == aspect
    assert comparison.differs


def _moved(source: Path, target: Path, client: str, address: str, port_shift: int) -> None:
    """Rewrite every packet of `client` to come from another address and ports,
    as if the capture had been taken on another machine."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.utils import rdpcap, wrpcap

    packets = rdpcap(str(source))
    for packet in packets:
        ip = packet[IP]
        for side, port_field in (("src", "sport"), ("dst", "dport")):
            if getattr(ip, side) != client:
                continue
            setattr(ip, side, address)
            for layer in (TCP, UDP):
                if packet.haslayer(layer):
                    segment = packet[layer]
                    setattr(segment, port_field, getattr(segment, port_field) + port_shift)
                    del segment.chksum
        del ip.chksum
        del ip.len
    wrpcap(str(target), packets)


def test_different_client_address_and_ports_still_align(tmp_path: Path) -> None:
    source = DIFF / "kerberos-vs-fallback-working.pcap"
    original = report(source)
    client = original.view.timelines[0].connection.client
    moved = tmp_path / "moved.pcap"
    _moved(source, moved, client.ip, "10.20.30.40", 1000)
    other = analyze([str(moved)])
    assert other.view.timelines[0].connection.client.ip == "10.20.30.40"
    assert other.view.timelines[0].connection.client.port == client.port + 1000
    comparison = compare(original, other)
    assert comparison.common_hosts == (HOST,)
    assert not comparison.differs
    # and the failing capture, from yet another client, still aligns with it
    failing = compare(other, report(DIFF / "kerberos-vs-fallback-failing.pcap"))
    assert failing.hosts[0].first is not None
    assert failing.hosts[0].first.aspect == "kdc-answer"


def test_lab_pair_without_a_common_host_says_so() -> None:
    comparison = compare(
        report(LAB / "kerberos-success.pcap"), report(LAB / "negotiate-fallback-spn-unknown.pcap")
    )
    assert comparison.common_hosts == ()
    assert comparison.differs
    assert comparison.headline.startswith("no server host in common")
    assert "web.lab.test" in comparison.headline and "alias.lab.test" in comparison.headline
    presence = {h.host: h.presence for h in comparison.hosts}
    assert presence == {
        "web.lab.test": Presence.WORKING_ONLY,
        "alias.lab.test": Presence.FAILING_ONLY,
    }


def test_host_filter_keeps_only_the_named_host() -> None:
    working = report(DIFF / "kerberos-vs-fallback-working.pcap")
    failing = report(DIFF / "kerberos-vs-fallback-failing.pcap")
    assert [h.host for h in compare(working, failing, [HOST.upper()]).hosts] == [HOST]
    empty = compare(working, failing, ["elsewhere.example"])
    assert empty.hosts == () and not empty.differs


def test_profile_reads_the_wire() -> None:
    profile = profile_hosts(report(DIFF / "direct-vs-pooling-proxy-failing.pcap"))[HOST]
    assert profile.schemes_offered == ("Negotiate", "NTLM")
    assert profile.mechanisms == ("NTLM",) and profile.authenticated_with == ()
    assert profile.splits == 2 and profile.split_by_proxy
    assert profile.forwarded_for and profile.via == ("1.1 proxy01.contoso.com",)
    assert profile.kdc is None  # no Kerberos traffic in this capture
    kerberos = profile_hosts(report(DIFF / "kerberos-vs-fallback-working.pcap"))[HOST]
    assert kerberos.ticket_spns == ("HTTP/web01.contoso.com",)
    assert kerberos.kdc == ("ticket",)


@pytest.mark.parametrize(
    ("uri", "path"),
    [("/", "/"), ("/a/b?c=d", "/a/b"), ("http://web01.contoso.com/x?y", "/x"), ("*", "*")],
)
def test_url_path_aligns_origin_and_absolute_form(uri: str, path: str) -> None:
    assert url_path(uri) == path


def test_renderings_lead_with_the_first_difference_and_hide_tokens() -> None:
    comparison = pair("direct-vs-pooling-proxy")
    text = render_comparison(comparison)
    assert text.splitlines()[2].startswith(f"{HOST}: working: the handshake stayed")
    assert "first difference (connections-per-handshake)" in text
    # NTLM tokens (base64 "TlRMTVNT") and hashes never appear in a diff
    assert "TlRMTVNT" not in text
    data = comparison_to_dict(comparison)
    assert data["schema"] == DIFF_SCHEMA and data["differs"] is True
    assert data["hosts"][0]["first_difference"]["aspect"] == "connections-per-handshake"
    assert "TlRMTVNT" not in json.dumps(data)
