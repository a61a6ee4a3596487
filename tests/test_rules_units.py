"""Each rule on hand-made timelines (tests/_timelines.py): the smallest sequence
that must make it fire, with the evidence it must cite, and the nearest
sequence that must not. End-to-end checks through captures live in
test_analyze_scenarios.py and test_lab_analyze.py."""

from __future__ import annotations

from _timelines import (
    ALICE,
    BOB,
    HOST,
    OFFER_WINDOWS,
    Capture,
    Conn,
    b64,
    challenge_leg,
    kerberos_ap_req,
    ntlm_handshake,
    ntlm_legs,
    relay,
)
from scenario_tokens import anonymous_authenticate

from authtrace.diagnose import ALL_RULES
from authtrace.diagnose.finding import Finding, Severity
from authtrace.kerberos.kdc import KdcExchange, KdcResult, Transport
from authtrace.tcp.events import CloseReason, Direction, Endpoint
from authtrace.tls.bindings import server_end_point
from authtrace.tls.model import KeyStatus, TlsFacts

WRONG = ("CONTOSO\\alice", "not-her-password")
KDC = Endpoint("192.0.2.53", 88)


def only(capture: Capture, rule_id: str) -> Finding:
    found = [f for f in capture.findings() if f.rule == rule_id]
    assert len(found) == 1, [f.rule for f in capture.findings()]
    return found[0]


def kdc_exchange(
    capture: Capture, service: str, result: KdcResult, code: int | None = None
) -> KdcExchange:
    request_frame = capture.next_frame()
    request_time = capture.tick()
    reply_frame = capture.next_frame() if result is not KdcResult.UNANSWERED else None
    exchange = KdcExchange(
        transport=Transport.UDP,
        client=Endpoint("192.0.2.10", 50100),
        kdc=KDC,
        request_type=None,
        client_principal="alice",
        realm="CONTOSO.COM",
        service=service,
        etypes=(),
        request_frame=request_frame,
        request_time=request_time,
        reply_frame=reply_frame,
        reply_time=capture.tick() if reply_frame else None,
        result=result,
        error_code=code,
    )
    capture.kdc.append(exchange)
    return exchange


# The IIS category family (diagnose/rules/iis.py) has its own tests on
# hand-made variants of scenarios: tests/test_iis_categories.py; the HTTP/2
# family (diagnose/rules/http2.py) on HTTP/2 captures: tests/test_http2_rules.py.
FAMILIES_HERE = {"topology", "negotiation", "kerberos", "ntlm", "credentials", "capture"}


def test_every_declared_rule_has_a_unit_test_here() -> None:
    names = {name for name in globals() if name.startswith("test_")}
    assert {declared.family for declared in ALL_RULES} - FAMILIES_HERE <= {"iis", "http2"}
    for declared in ALL_RULES:
        if declared.family not in FAMILIES_HERE:
            continue
        stem = "test_" + declared.id.replace("-", "_")
        assert any(name.startswith(stem) for name in names), declared.id


# --- topology -----------------------------------------------------------------


def _split(final_status: int) -> tuple[Capture, dict[str, int | None], int | None]:
    capture = Capture()
    first, second = capture.conn(), capture.conn()
    legs = ntlm_legs()
    frames: dict[str, int | None] = {}
    frames["anonymous"], frames["offer"] = first.exchange([], 401, OFFER_WINDOWS)
    frames["negotiate"], frames["challenge"] = first.exchange(
        [("Authorization", f"NTLM {b64(legs.negotiate)}")],
        401,
        [("WWW-Authenticate", f"NTLM {b64(legs.challenge)}")],
    )
    authenticate, _final = second.exchange(
        [("Authorization", f"NTLM {b64(legs.authenticate)}")],
        final_status,
        OFFER_WINDOWS if final_status == 401 else [],
    )
    return capture, frames, authenticate


def test_ntlm_handshake_split_cites_the_challenge_and_the_authenticate() -> None:
    capture, frames, authenticate = _split(401)
    finding = only(capture, "ntlm-handshake-split")
    assert finding.severity is Severity.ERROR
    assert f"CHALLENGE went out on connection 0 (frame {frames['challenge']})" in (
        finding.explanation
    )
    assert f"connection 1 (frame {authenticate})" in finding.explanation
    assert "MsvAvTimestamp" in finding.explanation
    assert finding.connections == (0, 1)
    assert str(finding.iis) == "401 1 2148074248"


def test_ntlm_handshake_split_that_succeeded_is_a_warning() -> None:
    capture, _frames, _authenticate = _split(200)
    assert only(capture, "ntlm-handshake-split").severity is Severity.WARNING


def test_ntlm_handshake_split_not_when_the_handshake_stays_on_one_connection() -> None:
    capture = Capture()
    ntlm_handshake(capture.conn(), ntlm_legs(WRONG), 401)
    assert "ntlm-handshake-split" not in capture.rules()


def test_ntlm_handshake_split_interleaved_negotiates() -> None:
    capture = Capture()
    upstream = capture.conn(client="192.0.2.5")
    alice, bob = ntlm_legs(ALICE, seed=1), ntlm_legs(BOB, seed=2)
    upstream.exchange(
        [("Authorization", f"NTLM {b64(alice.negotiate)}"), ("X-Forwarded-For", "198.51.100.1")],
        401,
        [("WWW-Authenticate", f"NTLM {b64(alice.challenge)}")],
    )
    bob_negotiate, _ = upstream.exchange(
        [("Authorization", f"NTLM {b64(bob.negotiate)}"), ("X-Forwarded-For", "198.51.100.2")],
        401,
        OFFER_WINDOWS,
    )
    finding = only(capture, "ntlm-handshake-split")
    assert "interleaved" in finding.title
    assert f"NEGOTIATE (frame {bob_negotiate})" in finding.explanation
    assert "198.51.100.2" in (finding.field("clients") or "")


def test_shared_authenticated_connection() -> None:
    capture = Capture()
    upstream = capture.conn(client="192.0.2.5")
    frames = ntlm_handshake(upstream, ntlm_legs(), 200, extra=[("X-Forwarded-For", "198.51.100.1")])
    other, _ = upstream.exchange([("X-Forwarded-For", "198.51.100.2")], 200)
    finding = only(capture, "shared-authenticated-connection")
    assert finding.field("user") == "CONTOSO\\alice"
    # the other clients, whose requests ran as alice; who authenticated apart
    assert finding.field("clients") == "198.51.100.2"
    assert finding.field("authenticated_client") == "198.51.100.1"
    assert frames["authenticate"] in finding.frames and other in finding.frames
    assert f"accepted at frame {frames['final']}" in finding.explanation


def test_shared_authenticated_connection_not_for_one_client() -> None:
    capture = Capture()
    upstream = capture.conn(client="192.0.2.5")
    ntlm_handshake(upstream, ntlm_legs(), 200, extra=[("X-Forwarded-For", "198.51.100.1")])
    upstream.exchange([("X-Forwarded-For", "198.51.100.1")], 200)
    assert "shared-authenticated-connection" not in capture.rules()


# Behind a reverse proxy (issue 11 item 5): browsers talk to the proxy at
# PROXY_FRONT; the proxy talks to the server from the same address and adds no
# X-Forwarded-For: only the front legs say whose request each upstream one is.
PROXY_FRONT = PROXY_BACK = "192.0.2.17"


def _proxied_handshake(
    front: Conn, upstream: Conn, final: int = 200, uri: str = "/", upstream_uri: str = "/"
) -> None:
    legs = ntlm_legs()
    paths = {"uri": uri, "upstream_uri": upstream_uri}
    relay(front, upstream, [], 401, OFFER_WINDOWS, **paths)
    relay(
        front,
        upstream,
        [("Authorization", f"NTLM {b64(legs.negotiate)}")],
        401,
        [("WWW-Authenticate", f"NTLM {b64(legs.challenge)}")],
        **paths,
    )
    relay(front, upstream, [("Authorization", f"NTLM {b64(legs.authenticate)}")], final, **paths)


def test_auth_lost_on_new_connection_not_for_a_second_client_behind_a_proxy() -> None:
    """A second browser's anonymous 401 on a new upstream connection is its own
    first leg, not the first browser losing its authenticated connection."""
    capture = Capture()
    alice_front = capture.conn(client="198.51.100.1", server=PROXY_FRONT)
    carol_front = capture.conn(client="198.51.100.3", server=PROXY_FRONT)
    alice_upstream = capture.conn(client=PROXY_BACK)
    carol_upstream = capture.conn(client=PROXY_BACK)
    _proxied_handshake(alice_front, alice_upstream)
    for _ in range(2):
        relay(carol_front, carol_upstream, [], 401, OFFER_WINDOWS)
    rules = capture.rules()
    assert "auth-lost-on-new-connection" not in rules
    finding = only(capture, "client-ignores-negotiate")  # carol never sent credentials
    assert finding.field("client") == "198.51.100.3"
    assert finding.connections == (3,)  # judged on the upstream copy, once


def test_shared_authenticated_connection_found_through_the_front_legs() -> None:
    """User substitution (issue 11 item 5): carol's anonymous request answered
    200 on the upstream connection alice authenticated, no X-Forwarded-For."""
    capture = Capture()
    alice_front = capture.conn(client="198.51.100.1", server=PROXY_FRONT)
    carol_front = capture.conn(client="198.51.100.3", server=PROXY_FRONT)
    upstream = capture.conn(client=PROXY_BACK)
    _proxied_handshake(alice_front, upstream)
    frames = relay(carol_front, upstream, [], 200)
    finding = only(capture, "shared-authenticated-connection")
    assert finding.severity is Severity.ERROR
    assert finding.field("clients") == "198.51.100.3"
    assert finding.field("authenticated_client") == "198.51.100.1"
    assert frames["upstream_request"] in finding.frames


def test_shared_authenticated_connection_behind_a_proxy_that_rewrites_paths() -> None:
    """issue 11 (d): Apache `ProxyPass /app/ http://backend/` relays /app/x as /x;
    the front legs are still found by method, timing, hop and the URI suffix,
    so carol's request answered on alice's connection is user substitution."""
    capture = Capture()
    alice_front = capture.conn(client="198.51.100.1", server=PROXY_FRONT)
    carol_front = capture.conn(client="198.51.100.3", server=PROXY_FRONT)
    upstream = capture.conn(client=PROXY_BACK)
    _proxied_handshake(alice_front, upstream, uri="/app/", upstream_uri="/")
    frames = relay(
        carol_front, upstream, [], 200, uri="/app/report?id=7", upstream_uri="/report?id=7"
    )
    finding = only(capture, "shared-authenticated-connection")
    assert finding.field("clients") == "198.51.100.3"
    assert finding.field("authenticated_client") == "198.51.100.1"
    assert frames["front_request"] in finding.frames


def test_a_rewritten_path_is_not_taken_for_another_resource() -> None:
    """A suffix at a "/" with the same query, nothing looser: /app/report?id=8
    is not the front copy of /report?id=7, nor /apreport of /report."""
    capture = Capture()
    alice_front = capture.conn(client="198.51.100.1", server=PROXY_FRONT)
    carol_front = capture.conn(client="198.51.100.3", server=PROXY_FRONT)
    upstream = capture.conn(client=PROXY_BACK)
    _proxied_handshake(alice_front, upstream, uri="/app/", upstream_uri="/")
    relay(carol_front, upstream, [], 200, uri="/app/report?id=8", upstream_uri="/report?id=7")
    relay(carol_front, upstream, [], 200, uri="/apreport", upstream_uri="/report")
    context = capture.context()
    carol = {conn.id for conn in [carol_front]}
    assert not [ref for ref in context.view.fronts.values() if ref.connection in carol]


def test_auth_lost_on_new_connection_behind_a_proxy_that_names_its_clients() -> None:
    """The same with the proxy's own source address and X-Forwarded-For (HAProxy
    with `source`): what the proxy wrote tells the clients apart."""
    capture = Capture()
    alice, carol = capture.conn(client="192.0.2.18"), capture.conn(client="192.0.2.18")
    ntlm_handshake(alice, ntlm_legs(), 200, extra=[("X-Forwarded-For", "198.51.100.1")])
    carol.exchange([("X-Forwarded-For", "198.51.100.3")], 401, OFFER_WINDOWS)
    assert "auth-lost-on-new-connection" not in capture.rules()
    assert only(capture, "client-ignores-negotiate").field("client") == "198.51.100.3"


def test_auth_lost_on_new_connection() -> None:
    capture = Capture()
    ntlm_handshake(capture.conn(), ntlm_legs(), 200)
    lost, _ = capture.conn().exchange([], 401, OFFER_WINDOWS)
    finding = only(capture, "auth-lost-on-new-connection")
    assert f"request at frame {lost}" in finding.explanation
    assert finding.connections == (0, 1)
    assert "client-ignores-negotiate" not in capture.rules()


def test_handshake_closed_midway_by_connection_close() -> None:
    capture = Capture()
    conn = capture.conn()
    legs = ntlm_legs()
    conn.exchange([], 401, OFFER_WINDOWS)
    _, challenge = challenge_leg(conn, legs, response=[("Connection", "close")])
    conn.close(by=Direction.TO_CLIENT)
    finding = only(capture, "handshake-closed-midway")
    assert f"(frame {challenge})" in finding.explanation
    assert "`Connection: close`" in finding.explanation


def test_handshake_closed_midway_not_when_the_client_closes() -> None:
    capture = Capture()
    conn = capture.conn()
    legs = ntlm_legs()
    challenge_leg(conn, legs)
    conn.close(by=Direction.TO_SERVER)  # the client chose to stop
    assert "handshake-closed-midway" not in capture.rules()


def test_handshake_closed_midway_by_a_proxy_closing_every_upstream_connection() -> None:
    """Issue 11 item 6 (HAProxy `option http-server-close`): the client answers
    every challenge on one front connection; the proxy relays each leg on a new
    upstream connection and asks the server to close it."""
    capture = Capture()
    front = capture.conn(client="198.51.100.1", server=PROXY_FRONT)
    legs = ntlm_legs()
    close = [("Connection", "close")]
    first = capture.conn(client=PROXY_BACK)
    relay(front, first, [], 401, OFFER_WINDOWS, upstream_headers=close)
    first.close(by=Direction.TO_CLIENT)
    second = capture.conn(client=PROXY_BACK)
    frames = relay(
        front,
        second,
        [("Authorization", f"NTLM {b64(legs.negotiate)}")],
        401,
        [("WWW-Authenticate", f"NTLM {b64(legs.challenge)}")],
        upstream_headers=close,
        upstream_response=[("WWW-Authenticate", f"NTLM {b64(legs.challenge)}"), *close],
    )
    second.close(by=Direction.TO_CLIENT)
    third = capture.conn(client=PROXY_BACK)
    last = relay(
        front,
        third,
        [("Authorization", f"NTLM {b64(legs.authenticate)}")],
        401,
        OFFER_WINDOWS,
        upstream_headers=close,
    )
    third.close(by=Direction.TO_CLIENT)
    rules = capture.rules()
    assert "client-ignores-negotiate" not in rules and "ntlm-logon-failed" not in rules
    finding = only(capture, "handshake-closed-midway")
    assert finding.field("closed_by") == "proxy"
    assert "proxy" in finding.title
    assert f"proxy's request at frame {frames['upstream_request']}" in finding.explanation
    assert f"(request at frame {last['upstream_request']})" in finding.explanation
    assert "http-server-close" in finding.explanation and "http-server-close" in finding.fix
    assert "answered every challenge" in finding.explanation


def test_reauth_on_authenticated_connection() -> None:
    capture = Capture()
    conn = capture.conn()
    ntlm_handshake(conn, ntlm_legs(), 200)
    again, _ = conn.exchange([("Via", "1.1 proxy")], 401, OFFER_WINDOWS)
    finding = only(capture, "reauth-on-authenticated-connection")
    assert finding.severity is Severity.WARNING
    assert f"request at frame {again}" in finding.explanation
    assert "Via 1.1 proxy" in finding.explanation


# --- negotiation ----------------------------------------------------------------


def test_client_ignores_negotiate() -> None:
    capture = Capture()
    conn = capture.conn()
    _, offer = conn.exchange([], 401, OFFER_WINDOWS)
    conn.exchange([], 401, OFFER_WINDOWS)
    finding = only(capture, "client-ignores-negotiate")
    assert f"first at frame {offer}" in finding.explanation
    assert finding.field("offered") == "NTLM, Negotiate"


def test_client_ignores_negotiate_not_when_its_negotiate_was_refused() -> None:
    """Issue 11 item 7: a client whose NTLM NEGOTIATE was answered 401 without a
    CHALLENGE did answer the challenge; it tried again anonymously on a new
    connection (as Chromium does) and gave up. Only ntlm-negotiate-rejected."""
    capture = Capture()
    first = capture.conn()
    first.exchange([], 401, OFFER_WINDOWS)
    first.exchange([("Authorization", f"NTLM {b64(ntlm_legs().negotiate)}")], 401, OFFER_WINDOWS)
    capture.conn().exchange([], 401, OFFER_WINDOWS)
    assert capture.rules() == {"ntlm-negotiate-rejected"}


def test_no_common_scheme() -> None:
    capture = Capture()
    conn = capture.conn()
    conn.exchange([], 401, [("WWW-Authenticate", "Negotiate")])
    basic, _ = conn.exchange(
        [("Authorization", f"Basic {b64(b'alice:pw')}")], 401, [("WWW-Authenticate", "Negotiate")]
    )
    finding = only(capture, "no-common-scheme")
    assert finding.field("sent") == "Basic" and finding.field("offered") == "Negotiate"
    assert f"(frame {basic})" in finding.explanation


# --- kerberos -------------------------------------------------------------------


def _negotiate_ntlm(capture: Capture, host: str = HOST) -> int | None:
    conn = capture.conn()
    legs = ntlm_legs()
    conn.exchange([], 401, OFFER_WINDOWS, host=host)
    negotiate, _ = conn.exchange(
        [("Authorization", f"Negotiate {b64(legs.negotiate)}")],
        401,
        [("WWW-Authenticate", f"Negotiate {b64(legs.challenge)}")],
        host=host,
    )
    conn.exchange([("Authorization", f"Negotiate {b64(legs.authenticate)}")], 200, host=host)
    return negotiate


def test_kerberos_fallback_to_ntlm_names_the_unknown_spn() -> None:
    capture = Capture()
    refused = kdc_exchange(capture, f"HTTP/{HOST}", KdcResult.ERROR, code=7)
    negotiate = _negotiate_ntlm(capture)
    finding = only(capture, "kerberos-fallback-to-ntlm")
    assert finding.field("kdc_error") == "KDC_ERR_S_PRINCIPAL_UNKNOWN (7)"
    assert refused.reply_frame in finding.frames
    assert f"NTLM token (frame {negotiate})" in finding.explanation
    assert "kdc-error" not in capture.rules()  # the fallback explains the KDC's error


def test_kerberos_fallback_to_ntlm_by_ip_address() -> None:
    capture = Capture()
    _negotiate_ntlm(capture, host="192.0.2.80")
    assert "IP address" in only(capture, "kerberos-fallback-to-ntlm").explanation


def test_kerberos_fallback_to_ntlm_without_kdc_traffic_says_not_seen() -> None:
    capture = Capture()
    _negotiate_ntlm(capture)
    finding = only(capture, "kerberos-fallback-to-ntlm")
    assert "no Kerberos traffic from the client is in the capture" in finding.explanation


def test_kerberos_ticket_rejected() -> None:
    capture = Capture()
    issued = kdc_exchange(capture, f"HTTP/{HOST}", KdcResult.TICKET)
    conn = capture.conn()
    conn.exchange([], 401, OFFER_WINDOWS)
    ticket, _ = conn.exchange([("Authorization", kerberos_ap_req())], 401, OFFER_WINDOWS)
    finding = only(capture, "kerberos-ticket-rejected")
    assert finding.field("spn") == f"HTTP/{HOST}"
    assert f"(frame {ticket})" in finding.explanation
    assert f"issued by the KDC at frame {issued.reply_frame}" in finding.explanation


def test_kerberos_ticket_rejected_not_when_accepted() -> None:
    capture = Capture()
    conn = capture.conn()
    conn.exchange([], 401, OFFER_WINDOWS)
    conn.exchange([("Authorization", kerberos_ap_req())], 200)
    assert capture.rules() == set()


def test_kerberos_clock_skew_from_the_kdc() -> None:
    capture = Capture()
    skew = kdc_exchange(capture, "krbtgt/CONTOSO.COM", KdcResult.ERROR, code=37)
    finding = only(capture, "kerberos-clock-skew")
    assert finding.frames == (skew.request_frame, skew.reply_frame)
    assert "kdc-error" not in capture.rules()


def test_kdc_error() -> None:
    capture = Capture()
    kdc_exchange(capture, "HTTP/app.contoso.com", KdcResult.ERROR, code=14)
    finding = only(capture, "kdc-error")
    assert finding.severity is Severity.WARNING
    assert "KDC_ERR_ETYPE_NOSUPP" in (finding.field("kdc_error") or "")


def test_kdc_error_leaves_out_the_normal_ones() -> None:
    capture = Capture()
    kdc_exchange(capture, "krbtgt/CONTOSO.COM", KdcResult.ERROR, code=25)  # PREAUTH_REQUIRED
    kdc_exchange(capture, "krbtgt/CONTOSO.COM", KdcResult.ERROR, code=52)  # RESPONSE_TOO_BIG
    assert capture.rules() == set()


# --- ntlm -----------------------------------------------------------------------


def test_ntlm_logon_failed() -> None:
    capture = Capture()
    frames = ntlm_handshake(capture.conn(), ntlm_legs(WRONG), 401)
    finding = only(capture, "ntlm-logon-failed")
    assert finding.field("user") == "CONTOSO\\alice"
    assert f"AUTHENTICATE at frame {frames['authenticate']}" in finding.explanation
    assert finding.frames == (frames["authenticate"], frames["final"])


def test_ntlm_logon_failed_on_plain_http_does_not_suggest_channel_binding() -> None:
    """Issue 11 item 9: channel binding only exists over TLS; on port 80 without
    a TLS-terminating proxy it cannot be the cause."""
    capture = Capture()
    ntlm_handshake(capture.conn(port=80), ntlm_legs(WRONG), 401)
    finding = only(capture, "ntlm-logon-failed")
    assert "channel" not in (finding.explanation + finding.fix).lower()


def test_ntlm_negotiate_rejected() -> None:
    capture = Capture()
    conn = capture.conn()
    conn.exchange([], 401, OFFER_WINDOWS)
    negotiate, _ = conn.exchange(
        [("Authorization", f"NTLM {b64(ntlm_legs().negotiate)}")], 401, OFFER_WINDOWS
    )
    finding = only(capture, "ntlm-negotiate-rejected")
    assert f"NEGOTIATE at frame {negotiate}" in finding.explanation
    assert capture.rules() == {"ntlm-negotiate-rejected"}


def test_ntlm_negotiate_rejected_then_kerberos_is_a_warning() -> None:
    """Chromium with a ticket: NTLM refused, then Kerberos works on the same
    connection; NTLM is broken for this client, but nothing failed."""
    capture = Capture()
    conn = capture.conn()
    conn.exchange([], 401, OFFER_WINDOWS)
    conn.exchange([("Authorization", f"NTLM {b64(ntlm_legs().negotiate)}")], 401, OFFER_WINDOWS)
    ticket, _ = conn.exchange([("Authorization", kerberos_ap_req())], 200)
    finding = only(capture, "ntlm-negotiate-rejected")
    assert finding.severity is Severity.WARNING
    assert f"authenticated with kerberos (credentials at frame {ticket})" in finding.explanation


def test_ntlmv1_response() -> None:
    capture = Capture()
    frames = ntlm_handshake(capture.conn(), ntlm_legs(lm_compat=1), 200)
    finding = only(capture, "ntlmv1-response")
    assert finding.severity is Severity.WARNING
    assert f"AUTHENTICATE at frame {frames['authenticate']}" in finding.explanation


def test_ntlmv1_response_not_for_ntlmv2() -> None:
    capture = Capture()
    ntlm_handshake(capture.conn(), ntlm_legs(lm_compat=3), 200)
    assert capture.rules() == set()


def test_ntlm_anonymous() -> None:
    capture = Capture()
    conn = capture.conn()
    legs = ntlm_legs()
    challenge_leg(conn, legs)
    anonymous, _ = conn.exchange(
        [("Authorization", f"NTLM {b64(anonymous_authenticate(legs.challenge))}")],
        401,
        OFFER_WINDOWS,
    )
    finding = only(capture, "ntlm-anonymous")
    assert f"AUTHENTICATE at frame {anonymous}" in finding.explanation
    assert "ntlm-logon-failed" not in capture.rules()


def test_channel_binding_missing_over_tls() -> None:
    capture = Capture()
    frames = ntlm_handshake(capture.conn(port=443), ntlm_legs(), 401)
    finding = only(capture, "channel-binding-missing")
    assert f"AUTHENTICATE at frame {frames['authenticate']}" in finding.explanation
    assert "ntlm-logon-failed" not in capture.rules()


def test_channel_binding_missing_behind_a_tls_terminating_proxy() -> None:
    capture = Capture()
    ntlm_handshake(capture.conn(port=80), ntlm_legs(), 401, extra=[("X-Forwarded-Proto", "https")])
    assert "channel-binding-missing" in capture.rules()


def _certificate(name: str) -> bytes:
    """A self-signed server certificate (DER) for `name`."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


def _tls_facts(certificate: bytes) -> TlsFacts:
    return TlsFacts(
        "TLS 1.3", "TLS_AES_128_GCM_SHA256", HOST, ("http/1.1",), "http/1.1",
        (certificate,), "00" * 32, KeyStatus.DECRYPTED, 10, 0,
    )  # fmt: skip


def _bound_to(certificate: bytes) -> bytes:
    """The channel bindings' application data for a certificate (RFC 5929)."""
    end_point = server_end_point(certificate)
    assert end_point is not None
    return b"tls-server-end-point:" + end_point


SERVER_CERTIFICATE = _certificate(HOST)
PROXY_CERTIFICATE = _certificate("proxy.contoso.com")


def test_channel_binding_other_certificate_refused() -> None:
    """The client bound to the certificate of a TLS-terminating proxy; the
    server's own TLS (decrypted, with its certificate) is another one: proved,
    on any port."""
    capture = Capture()
    conn = capture.conn(port=8444)
    conn.tls = _tls_facts(SERVER_CERTIFICATE)
    frames = ntlm_handshake(conn, ntlm_legs(bindings=_bound_to(PROXY_CERTIFICATE)), 401)
    finding = only(capture, "channel-binding-other-certificate")
    assert finding.severity is Severity.ERROR
    assert f"AUTHENTICATE at frame {frames['authenticate']}" in finding.explanation
    assert finding.iis is not None and finding.iis.win32 == 2148074310  # BAD_BINDINGS
    assert {"ntlm-logon-failed", "channel-binding-missing"}.isdisjoint(capture.rules())


def test_channel_binding_other_certificate_accepted_is_a_warning() -> None:
    capture = Capture()
    conn = capture.conn(port=443)
    conn.tls = _tls_facts(SERVER_CERTIFICATE)
    ntlm_handshake(conn, ntlm_legs(bindings=_bound_to(PROXY_CERTIFICATE)), 200)
    finding = only(capture, "channel-binding-other-certificate")
    assert finding.severity is Severity.WARNING
    assert "does not check channel bindings" in finding.explanation


def test_channel_binding_to_this_certificate_is_no_binding_finding() -> None:
    """Bound to the server's own certificate and refused: not a binding problem
    (on port 443, the port does not make it one)."""
    capture = Capture()
    conn = capture.conn(port=443)
    conn.tls = _tls_facts(SERVER_CERTIFICATE)
    ntlm_handshake(conn, ntlm_legs(WRONG, bindings=_bound_to(SERVER_CERTIFICATE)), 401)
    rules = capture.rules()
    assert "ntlm-logon-failed" in rules
    assert not {"channel-binding-missing", "channel-binding-other-certificate"} & rules


def test_channel_binding_other_certificate_needs_the_certificate() -> None:
    """Cleartext on 443 (a capture exported decrypted): a binding is there, but
    without the server certificate nothing proves which channel it is for."""
    capture = Capture()
    ntlm_handshake(capture.conn(port=443), ntlm_legs(bindings=_bound_to(PROXY_CERTIFICATE)), 401)
    rules = capture.rules()
    assert not {"channel-binding-missing", "channel-binding-other-certificate"} & rules


def test_repeated_logon_failures() -> None:
    capture = Capture()
    for seed in (1, 2, 3):
        ntlm_handshake(capture.conn(), ntlm_legs(WRONG, seed=seed), 401)
    finding = only(capture, "repeated-logon-failures")
    assert finding.field("failures") == "3"
    assert finding.connections == (0, 1, 2)


def test_repeated_logon_failures_not_below_the_threshold() -> None:
    capture = Capture()
    for seed in (1, 2):
        ntlm_handshake(capture.conn(), ntlm_legs(WRONG, seed=seed), 401)
    assert "repeated-logon-failures" not in capture.rules()


# --- per-request schemes --------------------------------------------------------


def test_basic_over_cleartext() -> None:
    capture = Capture()
    sent, _ = capture.conn().exchange([("Authorization", f"Basic {b64(b'alice:pw')}")], 200)
    finding = only(capture, "basic-over-cleartext")
    assert finding.field("user") == "alice"
    assert f"first at frame {sent}" in finding.explanation
    assert "pw" not in finding.explanation.replace("password", "")


def test_basic_logon_failed_at_a_proxy_names_the_proxy() -> None:
    """Issue 11 item 4: a 407 is the proxy's refusal, not the server's."""
    capture = Capture()
    refused = [
        ("Proxy-Authenticate", 'Basic realm="lab proxy"'),
        ("Server", "squid/5.7"),
        ("Via", "1.1 proxy.example.net (squid/5.7)"),
    ]
    capture.conn(server=PROXY_FRONT, port=3128).exchange(
        [("Proxy-Authorization", f"Basic {b64(b'bob:pw')}")], 407, refused, uri="http://x/"
    )
    finding = only(capture, "basic-logon-failed")
    assert "at the proxy" in finding.title
    assert "The proxy proxy.example.net (192.0.2.17:3128, squid/5.7) refused" in (
        finding.explanation
    )
    assert finding.field("proxy") == "proxy.example.net (192.0.2.17:3128, squid/5.7)"
    assert "IIS" not in finding.fix and "proxy" in finding.fix


def test_basic_logon_failed() -> None:
    capture = Capture()
    sent, _ = capture.conn().exchange(
        [("Authorization", f"Basic {b64(b'alice:pw')}")],
        401,
        [("WWW-Authenticate", 'Basic realm="x"')],
    )
    finding = only(capture, "basic-logon-failed")
    assert finding.explanation.startswith(f"Frame {sent}:")


_DIGEST = (
    'Digest username="alice", realm="r", nonce="abc", uri="/", algorithm=MD5, '
    'response="0123456789abcdef0123456789abcdef", qop=auth, nc=00000001, cnonce="x"'
)


def test_digest_failed() -> None:
    capture = Capture()
    capture.conn().exchange(
        [("Authorization", _DIGEST)],
        401,
        [("WWW-Authenticate", 'Digest realm="r", qop="auth", nonce="def"')],
    )
    assert only(capture, "digest-failed").field("user") == "alice"


def test_digest_failed_not_for_a_stale_nonce() -> None:
    capture = Capture()
    capture.conn().exchange(
        [("Authorization", _DIGEST)],
        401,
        [("WWW-Authenticate", 'Digest realm="r", qop="auth", nonce="def", stale=true')],
    )
    assert "digest-failed" not in capture.rules()


def test_bearer_token_rejected_quotes_the_error() -> None:
    capture = Capture()
    capture.conn().exchange(
        [("Authorization", "Bearer eyJhbGciOiJub25lIn0.e30.")],
        401,
        [("WWW-Authenticate", 'Bearer error="invalid_token", error_description="expired"')],
    )
    finding = only(capture, "bearer-token-rejected")
    assert finding.field("error") == "invalid_token"
    assert "eyJ" not in finding.explanation  # the token is a secret


def test_auth_header_too_large_past_16_kb() -> None:
    capture = Capture()
    sent, _ = capture.conn().exchange(
        [("Authorization", kerberos_ap_req())], 400, header_bytes=20_000
    )
    finding = only(capture, "auth-header-too-large")
    assert f"request at frame {sent}" in finding.explanation


def test_auth_header_too_large_below_16_kb_when_the_page_says_so() -> None:
    """Issue 11 item 8: Apache's default limit is 8190 bytes per field."""
    capture = Capture()
    capture.conn().exchange(
        [("Authorization", kerberos_ap_req()), ("Accept", "*/*")],
        400,
        [("Server", "Apache/2.4.57 (Unix)")],
        body=b"<p>Size of a request header field exceeds server limit.</p>",
    )
    finding = only(capture, "auth-header-too-large")
    assert "LimitRequestFieldSize" in finding.fix


def test_auth_header_too_large_when_its_largest_field_is_the_token() -> None:
    """Issue 11 item 8: a 400 without a page to read, answering a request whose
    largest field is a multi-kilobyte Authorization header, whatever the limit."""
    capture = Capture()
    capture.conn().exchange([("Authorization", kerberos_ap_req()), ("Accept", "*/*")], 400)
    assert "auth-header-too-large" in capture.rules()


def test_auth_header_too_large_not_for_another_400() -> None:
    capture = Capture()
    capture.conn().exchange(
        [("Authorization", f"Basic {b64(b'alice:pw')}"), ("Cookie", "x" * 3000)],
        400,
        body=b"Bad Request - Invalid Hostname",
    )
    assert "auth-header-too-large" not in capture.rules()


# --- capture --------------------------------------------------------------------


def test_capture_incomplete_when_the_capture_ends_before_the_answer() -> None:
    capture = Capture()
    conn = capture.conn()
    conn.exchange([], 401, OFFER_WINDOWS)
    conn.exchange([("Authorization", f"NTLM {b64(ntlm_legs().negotiate)}")], None)
    conn.close_reason, conn.closed_by = CloseReason.END_OF_CAPTURE, None
    finding = only(capture, "capture-incomplete")
    assert finding.severity is Severity.INFO
    assert "the capture ends before the server's answer" in finding.explanation


def test_capture_incomplete_when_the_connection_began_before_the_capture() -> None:
    capture = Capture()
    conn = capture.conn()
    conn.syn_seen = False
    legs = ntlm_legs()
    conn.exchange([("Authorization", f"NTLM {b64(legs.authenticate)}")], 200)
    finding = only(capture, "capture-incomplete")
    assert "began before the capture" in finding.explanation
