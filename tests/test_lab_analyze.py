"""authtrace analyze on captures made by real software (the lab: MIT KDC,
Apache with mod_auth_gssapi and gss-ntlmssp, nginx, squid, HAProxy, Apache mod_proxy, curl,
requests, Chromium, faketime; captures/lab/README.md). The diagnosis per capture is what that
table says."""

from __future__ import annotations

import shutil
import subprocess
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
    # Two users behind HAProxy, each authenticates on its own upstream connection.
    "haproxy-two-users": (
        set(),
        {"auth-lost-on-new-connection", "shared-authenticated-connection", "ntlm-handshake-split"},
    ),
    # The second client never sends credentials: that client ignores Negotiate. Issue 11 item 5:
    # its anonymous 401 on a new upstream connection is not the first user's lost connection.
    "haproxy-second-anonymous": (
        {"client-ignores-negotiate"},
        {"shared-authenticated-connection", "auth-lost-on-new-connection"},
    ),
    "haproxy-server-close": (
        {"handshake-closed-midway"},
        {"client-ignores-negotiate", "ntlm-logon-failed", "no-common-scheme"},
    ),
    "modproxy-user-substitution": (
        {"shared-authenticated-connection"},
        {"auth-lost-on-new-connection", "client-ignores-negotiate", "ntlm-handshake-split"},
    ),
    "modproxy-rewrite-user-substitution": (
        {"shared-authenticated-connection"},
        {"auth-lost-on-new-connection", "client-ignores-negotiate", "ntlm-handshake-split"},
    ),
    # Issue 11 item 7: Chromium retries once without credentials after the refused NEGOTIATE;
    # it did try, so only ntlm-negotiate-rejected.
    "chromium-ntlm-type1-rejected": (
        {"ntlm-negotiate-rejected"},
        {"ntlm-logon-failed", "no-common-scheme", "client-ignores-negotiate"},
    ),
    # The refused NEGOTIATE is real (NTLM fails for this client) but the page loaded with
    # Kerberos: whatever its severity, nothing else may be blamed.
    "chromium-ntlm-refused-kerberos-works": (
        {"ntlm-negotiate-rejected"},
        {"client-ignores-negotiate", "ntlm-logon-failed", "kerberos-fallback-to-ntlm", "kdc-error"},
    ),
    "kerberos-clock-skew": ({"kerberos-clock-skew"}, {"kerberos-ticket-rejected", "kdc-error"}),
}
HEALTHY = {
    "kerberos-success",
    "kerberos-preemptive",
    "ntlm-success",
    "digest-success",
    "haproxy-two-users",
}


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


def test_modproxy_substitution_names_the_first_user_and_the_second_client(
    reports: dict[str, Report],
) -> None:
    report = reports["modproxy-user-substitution"]
    (finding,) = [f for f in report.findings if f.rule == "shared-authenticated-connection"]
    upstream = {
        t.connection.id for t in report.view.timelines if t.connection.server.ip == "127.0.0.10"
    }
    # the one upstream connection alice authenticated; the finding may also cite the second
    # client's own connection to the proxy (which shows whose request was relayed)
    assert len(upstream) == 1 and upstream <= set(finding.connections)
    assert finding.field("user") == "LAB\\alice"
    assert "127.0.0.19" in (finding.field("clients") or "")
    assert finding.host == "web.lab.test"


def test_modproxy_rewriting_paths_still_relays_each_request_for_its_client(
    reports: dict[str, Report],
) -> None:
    """issue 11 (d): Apache `ProxyPass /app/ http://web.lab.test/` relays
    /app/ntlm/ok.txt as /ntlm/ok.txt (tshark: front frames 4, 15, 19, 26, 32, 36;
    upstream 9, 16, 20, 28, 33, 37); every upstream request is attributed to the
    front request it relays, by method, timing, hop and the path suffix, so the
    finding cites the second client's own request to the proxy (frame 26)."""
    report = reports["modproxy-rewrite-user-substitution"]
    upstream = [t for t in report.view.timelines if t.connection.server.ip == "127.0.0.10"]
    assert len(upstream) == 1
    relayed = {
        (t.connection.id, position)
        for t in upstream
        for position, step in enumerate(t.steps)
        if step.exchange.request is not None
    }
    fronts = {(ref.connection, ref.position) for ref in report.view.fronts}
    assert relayed <= fronts
    (finding,) = [f for f in report.findings if f.rule == "shared-authenticated-connection"]
    assert finding.field("clients") == "127.0.0.19"
    assert finding.field("authenticated_client") == "127.0.0.20"
    assert 26 in finding.frames


def test_chromium_authenticates_with_kerberos_after_the_refused_ntlm(
    reports: dict[str, Report],
) -> None:
    from authtrace.report.summary import summarize

    report = reports["chromium-ntlm-refused-kerberos-works"]
    (host,) = summarize(report)
    assert dict(host.authenticated_with) == {"kerberos": 1}
    # NTLM fails for this client, but the page loaded: a warning, not an error
    (finding,) = [f for f in report.findings if f.rule == "ntlm-negotiate-rejected"]
    assert finding.severity.value == "warning"
    assert not [f for f in report.findings if f.severity.value == "error"]


def test_second_anonymous_client_is_the_one_that_ignores_negotiate(
    reports: dict[str, Report],
) -> None:
    (finding,) = reports["haproxy-second-anonymous"].findings
    assert finding.rule == "client-ignores-negotiate"
    assert finding.field("client") == "127.0.0.19"  # relayed for it (X-Forwarded-For)


def test_server_close_is_blamed_on_the_proxy_with_both_legs(reports: dict[str, Report]) -> None:
    report = reports["haproxy-server-close"]
    (finding,) = report.findings
    assert finding.rule == "handshake-closed-midway"
    assert finding.field("closed_by") == "proxy"
    clients = {t.connection.id: t.connection.client.ip for t in report.view.timelines}
    legs = {clients[c] for c in finding.connections}
    assert legs == {"127.0.0.20", "127.0.0.18"}  # the client's connection and upstream ones
    assert 23 in finding.frames  # the CHALLENGE the server sent on a connection then closed


def test_clock_skew_names_the_kerberos_error(reports: dict[str, Report]) -> None:
    (finding,) = [f for f in reports["kerberos-clock-skew"].findings]
    assert finding.field("krb_error") == "KRB_AP_ERR_SKEW (37)"
    assert finding.host == "web.lab.test"


# What Wireshark shows a message in: an HTTP request or response head, a Kerberos message, or
# the FIN / RST that closes a connection (a finding may cite the close it explains).
SHOWN = "http.request || http.response || kerberos || tcp.flags.fin == 1 || tcp.flags.reset == 1"


@pytest.mark.oracle
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_evidence_frame_is_one_wireshark_shows_a_message_in(
    name: str, reports: dict[str, Report]
) -> None:
    argv = ["tshark", "-n", "-r", str(LAB / f"{name}.pcap"), "-Y", SHOWN]
    argv += ["-T", "fields", "-e", "frame.number"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout
    shown = {int(n) for n in out.split()}
    for finding in reports[name].findings:
        assert set(finding.frames) <= shown, (finding.rule, sorted(set(finding.frames) - shown))


def test_second_client_behind_haproxy_is_told_apart(reports: dict[str, Report]) -> None:
    """Issue 11 item 5: the upstream requests are attributed to their front-end
    clients, so the second client is the one that ignores Negotiate, once."""
    (finding,) = [
        f
        for f in reports["haproxy-second-anonymous"].findings
        if f.rule == "client-ignores-negotiate"
    ]
    assert finding.field("client") == "127.0.0.19"


def test_server_close_is_blamed_on_the_proxy(reports: dict[str, Report]) -> None:
    """Issue 11 item 6: HAProxy's http-server-close splits the handshake; the
    report says the proxy closes the upstream connection, not that the client
    ignores Negotiate."""
    (finding,) = [
        f for f in reports["haproxy-server-close"].findings if f.rule == "handshake-closed-midway"
    ]
    assert finding.field("closed_by") == "proxy"
    assert "http-server-close" in finding.explanation
    assert "answered every challenge" in finding.explanation
    front = {
        t.connection.id
        for t in reports["haproxy-server-close"].view.timelines
        if t.connection.server.ip == "127.0.0.17"
    }
    assert set(finding.connections) & front  # the client's own connection is in the evidence


def test_proxy_407_names_the_proxy(reports: dict[str, Report]) -> None:
    """Issue 11 item 4: squid's 407 is the proxy's refusal, with proxy-side fixes."""
    (finding,) = [f for f in reports["proxy-407"].findings if f.rule == "basic-logon-failed"]
    assert finding.field("proxy") == "proxy.lab.test (127.0.0.12:3128, squid/5.7)"
    assert "The proxy proxy.lab.test" in finding.explanation
    assert "IIS" not in finding.fix and "squid" in finding.fix


def test_proxy_407_ladder_prints_each_exchange_once(reports: dict[str, Report]) -> None:
    """Issue 11 item 4: the exchange authenticated by the proxy (#18 -> 200 #27)
    was printed twice, once per realm."""
    from authtrace.report.as_text import render_report

    text = render_report(reports["proxy-407"])
    assert len([line for line in text.splitlines() if line.strip().startswith("#18 ")]) == 1
