"""Builds captures/scenarios/*.pcap: one small capture per analysis scenario
(rule ids of issue 4) and the working/failing pairs for `authtrace diff`, plus
captures/scenarios/expected.json and README.md describing them by frame.

Run from the repository root:  python3 scripts/captures/build_scenarios.py

Invariant: the output is a pure function of this code and the pinned versions
of scapy and pyspnego; every random byte comes from a seeded generator, so a
rebuild is byte-identical (tests/test_scenario_captures.py checks that).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from scenario_script import (  # noqa: E402
    CLIENT,
    KDC,
    PROXY,
    WEB,
    WEB_HOST,
    Scene,
    b64,
    iis_detailed_401,
)
from scenario_tokens import (  # noqa: E402
    OID_MS_KRB5,
    OID_NTLMSSP,
    WINDOWS_MECHS,
    anonymous_authenticate,
    gss_krb5,
    neg_token_init,
    neg_token_resp,
    principal,
    spn,
)

ALICE = ("CONTOSO\\alice", "Spring2024!")
BOB = ("CONTOSO\\bob", "Autumn2023#")
NTLM_TYPE = {1: "0x00000001", 2: "0x00000002", 3: "0x00000003"}

# Predicted IIS log triples (shared/DESIGN.md "What a 401 means").
ANON = "401 2 5"
CHALLENGE_LEG = "401 1 2148074254"  # SEC_E_NO_CREDENTIALS: the normal NTLM challenge leg
INVALID_TOKEN = "401 1 2148074248"
LOGON_FAILURE = "401 1 1326"
LOGON_DENIED = "401 1 2148074252"
TIME_SKEW = "401 1 2148074276"
BAD_BINDINGS = "401 1 2148074310"


# ---------------------------------------------------------------------------
# Reusable legs


def ntlm_handshake(
    s: Scene,
    conv,
    user: tuple[str, str],
    workstation: str = "WS01",
    scheme: str = "NTLM",
    spnego_wrap: bool = False,
    header: str = "Authorization",
    challenge_header: str = "WWW-Authenticate",
    extra: list[tuple[str, str]] | None = None,
    uri: str = "/",
    lm_compat: int = 3,
    status: int = 401,
):
    """Type 1 request, 401 with Type 2, Type 3 request (MS-NLMP 3.1.5, RFC 4559 4.2).
    Returns (legs, type3 frame, server context); the caller writes the answer to Type 3."""
    f = s.ntlm
    client, t1 = f.client(user[0], user[1], s.host, workstation, lm_compat)
    server, t2 = f.server(t1)
    t3 = f.answer(client, t2, workstation)
    wire1, wire2, wire3 = t1, t2, t3
    if spnego_wrap:
        # MS-SPNG: a Windows client that cannot get a ticket offers only NTLMSSP.
        wire1 = neg_token_init(t1, [OID_NTLMSSP])
        wire2 = neg_token_resp(1, OID_NTLMSSP, t2)
        wire3 = neg_token_resp(None, None, t3)
    fr = s.request(
        conv,
        f"{scheme} NEGOTIATE (Type 1)",
        uri,
        [(header, f"{scheme} {b64(wire1)}")] + (extra or []),
    )
    s.check(fr, "ntlmssp.messagetype", NTLM_TYPE[1])
    reason = "Proxy Authentication Required" if status == 407 else "Unauthorized"
    fr = s.response(
        conv,
        status,
        reason,
        f"{scheme} CHALLENGE (Type 2)",
        [(challenge_header, f"{scheme} {b64(wire2)}")],
        b"" if status == 407 else b"",
        iis=CHALLENGE_LEG if status == 401 else None,
    )
    s.check(fr, "ntlmssp.messagetype", NTLM_TYPE[2])
    fr = s.request(
        conv,
        f"{scheme} AUTHENTICATE (Type 3) as {user[0]}",
        uri,
        [(header, f"{scheme} {b64(wire3)}")] + (extra or []),
    )
    s.check(fr, "ntlmssp.messagetype", NTLM_TYPE[3])
    return (t1, t2, t3), fr, server


def verify(s: Scene, server, t3: bytes, expect: bool) -> str:
    accepted, reason = s.ntlm.verify(server, t3)
    if accepted != expect:
        raise SystemExit(f"{s.name}: pyspnego acceptor said {reason!r}, expected accepted={expect}")
    return reason


def kerberos_http(
    s: Scene, conv, persistent: str | None = "true", uri: str = "/", anonymous: bool = True
) -> None:
    if anonymous:
        s.iis_401(conv, "anonymous request, offers Negotiate and NTLM", ANON)
    ap_req = gss_krb5(s.krb.ap_req(f"HTTP/{s.host}"), b"\x01\x00")
    fr = s.request(
        conv,
        "Negotiate NegTokenInit [MS KRB5, KRB5, NEGOEX, NTLMSSP] with AP-REQ",
        uri,
        [("Authorization", f"Negotiate {b64(neg_token_init(bytes(ap_req), WINDOWS_MECHS))}")],
    )
    s.check(fr, "kerberos.msg_type", "14")
    ap_rep = neg_token_resp(0, OID_MS_KRB5, bytes(gss_krb5(s.krb.ap_rep(), b"\x02\x00")))
    headers = [("WWW-Authenticate", f"Negotiate {b64(ap_rep)}")]
    if persistent is not None:
        headers.append(("Persistent-Auth", persistent))
    fr = s.ok(
        conv,
        "with final Negotiate NegTokenResp accept-completed carrying AP-REP"
        + (f", Persistent-Auth: {persistent}" if persistent else ""),
        headers,
    )
    s.check(fr, "kerberos.msg_type", "15")
    s.check(fr, "spnego.negResult", "0")


def negotiate_ntlm(
    s: Scene, conv, user=ALICE, workstation: str = "WS01", raw: bool = False
) -> None:
    """The Kerberos-to-NTLM fallback: `Negotiate` whose token is NTLM."""
    s.iis_401(conv, "anonymous request, offers Negotiate and NTLM", ANON)
    legs, _, server = ntlm_handshake(
        s, conv, user, workstation, scheme="Negotiate", spnego_wrap=not raw
    )
    verify(s, server, legs[2], True)
    final = [("WWW-Authenticate", f"Negotiate {b64(neg_token_resp(0))}")] if not raw else []
    s.ok(conv, "authenticated with NTLM inside Negotiate", final + [("Persistent-Auth", "true")])


# ---------------------------------------------------------------------------
# Baselines


def healthy_ntlm(
    client: str = CLIENT, first_port: int = 49152, name: str = "healthy-ntlm"
) -> Scene:
    s = Scene(
        name,
        "NTLM handshake on one connection, then two requests on the authenticated connection",
        WEB_HOST,
        [],
        ["ntlm-handshake-split", "client-ignores-negotiate", "capture-incomplete"],
        seed=1,
        first_port=first_port,
    )
    c = s.conn(client)
    s.request(c, "anonymous GET /")
    s.iis_401(c, "offers Negotiate and NTLM", ANON)
    legs, _, server = ntlm_handshake(s, c, ALICE)
    verify(s, server, legs[2], True)
    s.ok(c, "authenticated as CONTOSO\\alice")
    s.request(c, "GET /styles.css without Authorization", "/styles.css")
    s.ok(c, "connection stays authenticated")
    s.request(c, "GET /logo.png without Authorization", "/logo.png")
    s.ok(c, "connection stays authenticated")
    c.close()
    return s


def healthy_kerberos(
    client: str = CLIENT, first_port: int = 49152, name: str = "healthy-kerberos"
) -> Scene:
    s = Scene(
        name,
        "TGS-REQ/REP for HTTP/web01.contoso.com, Negotiate with an AP-REQ, 200 with AP-REP",
        WEB_HOST,
        [],
        ["kerberos-fallback-to-ntlm", "kdc-error", "kerberos-ticket-rejected"],
        seed=2,
        first_port=first_port,
    )
    s.tgs_ok(client)
    c = s.conn(client)
    s.request(c, "anonymous GET /")
    kerberos_http(s, c)
    s.request(c, "GET /news without Authorization (Persistent-Auth: true)", "/news")
    s.ok(c, "connection stays authenticated")
    c.close()
    return s


def healthy_persistent_auth_false() -> Scene:
    s = Scene(
        "healthy-persistent-auth-false",
        "Kerberos with Persistent-Auth: false: every request carries an AP-REQ",
        WEB_HOST,
        [],
        ["reauth-on-authenticated-connection", "kerberos-ticket-rejected"],
        seed=3,
    )
    s.tgs_ok(CLIENT)
    c = s.conn()
    s.request(c, "anonymous GET /")
    kerberos_http(s, c, persistent="false")
    for uri in ("/news", "/people"):
        kerberos_http(s, c, persistent="false", uri=uri, anonymous=False)
    c.close()
    return s


def _digest(
    user: str, password: str, realm: str, method: str, uri: str, nonce: str, nc: str, cnonce: str
) -> str:
    # RFC 7616 3.4.1 with algorithm MD5 and qop=auth.
    def h(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    return h(f"{h(f'{user}:{realm}:{password}')}:{nonce}:{nc}:{cnonce}:auth:{h(f'{method}:{uri}')}")


DIGEST_REALM = "files@contoso.com"
APACHE = "Apache/2.4.57 (Unix)"


def _digest_auth(
    s: Scene, c, nonce: str, password: str, nc: str, cnonce: str, uri: str = "/docs/"
) -> int:
    response = _digest("alice", password, DIGEST_REALM, "GET", uri, nonce, nc, cnonce)
    value = (
        f'Digest username="alice", realm="{DIGEST_REALM}", nonce="{nonce}", uri="{uri}", '
        f'algorithm=MD5, response="{response}", qop=auth, nc={nc}, cnonce="{cnonce}"'
    )
    return s.request(
        c, f"Digest response for nonce {nonce[:8]}...", uri, [("Authorization", value)]
    )


def _digest_challenge(nonce: str, stale: bool = False) -> list[tuple[str, str]]:
    value = f'Digest realm="{DIGEST_REALM}", qop="auth", algorithm=MD5, nonce="{nonce}"'
    return [("WWW-Authenticate", value + (", stale=true" if stale else ""))]


def healthy_digest_stale() -> Scene:
    s = Scene(
        "healthy-digest-stale",
        "Digest: stale nonce answered 401 stale=true, retry with the new nonce, 200",
        "files.contoso.com",
        [],
        ["digest-failed"],
        seed=4,
    )
    c = s.conn(server=("198.51.100.30", 80))
    n1, n2 = (
        "A1pbT3kFBgA=f0c5a8d2b1e4c7a9d3f6e1b2c5a8d7e4f1a2b3c4",
        "G8ZpVXkFBgA=9e2f4a6c8b1d3e5f7a9c2e4b6d8f1a3c5e7b9d2f",
    )
    s.request(c, "anonymous GET /docs/", "/docs/")
    s.response(
        c,
        401,
        "Unauthorized",
        "Digest challenge",
        _digest_challenge(n1),
        b"<h1>Unauthorized</h1>\n",
        server=APACHE,
    )
    s.cap.wait(
        400
    )  # the nonce outlives Apache's AuthDigestNonceLifetime while the user reads the page
    _digest_auth(s, c, n1, "Spring2024!", "00000001", "0a4f113b")
    s.response(
        c,
        401,
        "Unauthorized",
        "stale=true: right password, expired nonce",
        _digest_challenge(n2, stale=True),
        b"<h1>Unauthorized</h1>\n",
        server=APACHE,
    )
    _digest_auth(s, c, n2, "Spring2024!", "00000001", "6a8e2f01")
    s.response(c, 200, "OK", "authenticated", [], b"<html>docs</html>\n", server=APACHE)
    c.close()
    return s


def healthy_kdc_benign() -> Scene:
    s = Scene(
        "healthy-kdc-benign",
        "AS-REQ answered PREAUTH_REQUIRED, then AS-REP; UDP TGS answered "
        "RESPONSE_TOO_BIG, retried over TCP; then healthy Kerberos HTTP",
        WEB_HOST,
        [],
        ["kdc-error", "kerberos-fallback-to-ntlm"],
        seed=5,
    )
    k, port = s.krb, s.cap.next_port()
    krbtgt = principal(2, "krbtgt", "CONTOSO.COM")
    s.kdc_udp(
        CLIENT,
        port,
        k.as_req("alice", s.cap._clock, preauth=False),
        "AS-REQ without pre-authentication",
        True,
    )
    s.kdc_udp(
        CLIENT,
        port,
        k.error(25, s.cap._clock, krbtgt, "alice"),
        "KRB-ERROR 25 KDC_ERR_PREAUTH_REQUIRED (normal)",
        False,
    )
    port = s.cap.next_port()
    s.kdc_udp(
        CLIENT,
        port,
        k.as_req("alice", s.cap._clock, preauth=True),
        "AS-REQ with PA-ENC-TIMESTAMP",
        True,
    )
    s.kdc_udp(CLIENT, port, k.as_rep("alice"), "AS-REP: TGT for alice", False)
    port = s.cap.next_port()
    s.kdc_udp(
        CLIENT,
        port,
        k.tgs_req(f"HTTP/{WEB_HOST}", s.cap._clock),
        f"TGS-REQ for HTTP/{WEB_HOST} over UDP",
        True,
    )
    s.kdc_udp(
        CLIENT,
        port,
        k.error(52, s.cap._clock, spn(f"HTTP/{WEB_HOST}")),
        "KRB-ERROR 52 KRB_ERR_RESPONSE_TOO_BIG (normal: retry over TCP)",
        False,
    )
    s.kdc_tcp(
        CLIENT,
        k.tgs_req(f"HTTP/{WEB_HOST}", s.cap._clock),
        k.tgs_rep("alice", f"HTTP/{WEB_HOST}"),
        "TGS-REQ over TCP/88 (record-marked)",
        "TGS-REP over TCP/88",
    )
    c = s.conn()
    s.request(c, "anonymous GET /")
    kerberos_http(s, c)
    c.close()
    return s


def healthy_proxy_407() -> Scene:
    s = Scene(
        "healthy-proxy-407",
        "Forward proxy asks for NTLM with 407, handshake completes, 200",
        "www.example.com",
        [],
        ["ntlm-handshake-split", "client-ignores-negotiate"],
        seed=6,
    )
    proxy = (PROXY, 8080)
    c = s.conn(server=proxy)
    uri = "http://www.example.com/"
    via = [("Proxy-Connection", "keep-alive")]
    s.request(c, "anonymous GET through the proxy", uri, via)
    s.response(
        c,
        407,
        "Proxy Authentication Required",
        "proxy offers Negotiate and NTLM",
        [
            ("Proxy-Authenticate", "Negotiate"),
            ("Proxy-Authenticate", "NTLM"),
            ("Via", "1.1 proxy01"),
        ],
        b"<html>Proxy authentication required</html>\n",
        server="proxy01",
    )
    legs, _, server = ntlm_handshake(
        s,
        c,
        ALICE,
        header="Proxy-Authorization",
        challenge_header="Proxy-Authenticate",
        extra=via,
        uri=uri,
        status=407,
    )
    verify(s, server, legs[2], True)
    s.response(
        c,
        200,
        "OK",
        "origin page relayed by the proxy",
        [("Via", "1.1 proxy01")],
        b"<html>example</html>\n",
        server="ECS (dcb/7F84)",
    )
    c.close()
    return s


# ---------------------------------------------------------------------------
# Connection topology


def ntlm_handshake_split() -> Scene:
    return _ntlm_split(
        "ntlm-handshake-split",
        "Type 1/Type 2 on one connection, Type 3 on a new one: 401 and restart, twice",
        lm_compat=3,
        seed=7,
    )


def ntlm_handshake_split_v1() -> Scene:
    # NTLMv1 carries no copy of the server's MsvAvTimestamp: the split can only be
    # found by timing, which this capture makes the analysis do.
    return _ntlm_split(
        "ntlm-handshake-split-v1",
        "As ntlm-handshake-split with an NTLMv1 client (no timestamp ties Type 3 to Type 2)",
        lm_compat=1,
        seed=31,
        extra_rules=["ntlmv1-response"],
    )


def _ntlm_split(
    name: str, title: str, lm_compat: int, seed: int, extra_rules: list[str] | None = None
) -> Scene:
    s = Scene(
        name,
        title,
        WEB_HOST,
        ["ntlm-handshake-split", *(extra_rules or [])],
        ["ntlm-logon-failed"],
        seed=seed,
    )
    c1 = s.conn()
    s.request(c1, "anonymous GET /")
    s.iis_401(c1, "offers Negotiate and NTLM", ANON)
    for attempt in (1, 2):
        client, t1 = s.ntlm.client(*ALICE, WEB_HOST, "WS01", lm_compat)
        _, t2 = s.ntlm.server(t1)
        t3 = s.ntlm.answer(client, t2, "WS01")
        fr = s.request(
            c1, f"NTLM Type 1 (attempt {attempt})", "/", [("Authorization", f"NTLM {b64(t1)}")]
        )
        s.check(fr, "ntlmssp.messagetype", NTLM_TYPE[1])
        fr = s.iis_401(c1, "NTLM Type 2", CHALLENGE_LEG, [("WWW-Authenticate", f"NTLM {b64(t2)}")])
        s.check(fr, "ntlmssp.messagetype", NTLM_TYPE[2])
        c1.close()  # a load balancer without affinity closes the client-side keep-alive
        c2 = s.conn()
        fr = s.request(
            c2,
            f"NTLM Type 3 on a NEW connection (port {c2.client[1]})",
            "/",
            [("Authorization", f"NTLM {b64(t3)}")],
        )
        s.check(fr, "ntlmssp.messagetype", NTLM_TYPE[3])
        s.iis_401(c2, "Type 3 out of context: restart", INVALID_TOKEN)
        c1 = c2
    c1.close()
    s.unverifiable.append("Type 3 on a connection without context is not run through an acceptor")
    return s


def _forwarded(client: str) -> list[tuple[str, str]]:
    return [("Via", "1.1 proxy01.contoso.com"), ("X-Forwarded-For", client)]


def pooling_proxy(name: str = "pooling-proxy") -> Scene:
    s = Scene(
        name,
        "Reverse proxy 203.0.113.5 pools upstream connections: client A's Type 3 goes on the "
        "connection that carried client B's Type 1",
        WEB_HOST,
        ["ntlm-handshake-split"],
        ["shared-authenticated-connection"],
        seed=8,
    )
    a, b = "192.0.2.10", "192.0.2.11"
    u1, u2 = s.conn(PROXY), s.conn(PROXY)
    s.request(u1, "A anonymous (X-Forwarded-For 192.0.2.10)", "/", _forwarded(a))
    s.iis_401(u1, "offers Negotiate and NTLM", ANON)
    ca, t1a = s.ntlm.client(*ALICE, WEB_HOST, "WS-A")
    sa, t2a = s.ntlm.server(t1a)
    fr = s.request(
        u1,
        "A NTLM Type 1 on upstream 1",
        "/",
        [("Authorization", f"NTLM {b64(t1a)}")] + _forwarded(a),
    )
    s.check(fr, "ntlmssp.messagetype", NTLM_TYPE[1])
    fr = s.iis_401(u1, "Type 2 for A", CHALLENGE_LEG, [("WWW-Authenticate", f"NTLM {b64(t2a)}")])
    s.check(fr, "ntlmssp.messagetype", NTLM_TYPE[2])
    s.request(u2, "B anonymous (X-Forwarded-For 192.0.2.11)", "/", _forwarded(b))
    s.iis_401(u2, "offers Negotiate and NTLM", ANON)
    cb, t1b = s.ntlm.client(*BOB, WEB_HOST, "WS-B")
    sb, t2b = s.ntlm.server(t1b)
    fr = s.request(
        u2,
        "B NTLM Type 1 on upstream 2",
        "/",
        [("Authorization", f"NTLM {b64(t1b)}")] + _forwarded(b),
    )
    s.check(fr, "ntlmssp.messagetype", NTLM_TYPE[1])
    fr = s.iis_401(u2, "Type 2 for B", CHALLENGE_LEG, [("WWW-Authenticate", f"NTLM {b64(t2b)}")])
    s.check(fr, "ntlmssp.messagetype", NTLM_TYPE[2])
    t3a = s.ntlm.answer(ca, t2a, "WS-A")
    t3b = s.ntlm.answer(cb, t2b, "WS-B")
    # The proxy sends each Type 3 on whichever pooled connection is free: the wrong one.
    fr = s.request(
        u2,
        "A's Type 3 on upstream 2 (which carried B's Type 1)",
        "/",
        [("Authorization", f"NTLM {b64(t3a)}")] + _forwarded(a),
    )
    s.check(fr, "ntlmssp.messagetype", NTLM_TYPE[3])
    verify(s, sb, t3a, False)
    s.iis_401(u2, "A's Type 3 does not answer B's challenge", INVALID_TOKEN)
    fr = s.request(
        u1,
        "B's Type 3 on upstream 1 (which carried A's Type 1)",
        "/",
        [("Authorization", f"NTLM {b64(t3b)}")] + _forwarded(b),
    )
    s.check(fr, "ntlmssp.messagetype", NTLM_TYPE[3])
    verify(s, sa, t3b, False)
    s.iis_401(u1, "B's Type 3 does not answer A's challenge", INVALID_TOKEN)
    u1.close()
    u2.close()
    return s


# Both legs of a reverse proxy at PROXY: browsers talk to it on port 80, it talks
# to the server from the same address and adds no X-Forwarded-For, so only the
# front legs say whose request each upstream one is (issue 11 item 5).
FRONT = (PROXY, 80)


def _relay(
    s: Scene,
    front,
    upstream,
    note: str,
    iis: str | None,
    headers: list[tuple[str, str]] | None = None,
    challenge: list[tuple[str, str]] | None = None,
    upstream_headers: list[tuple[str, str]] | None = None,
    upstream_extra: list[tuple[str, str]] | None = None,
) -> dict[str, int]:
    """One request through the proxy: the browser's, the proxy's copy, the
    server's answer (401 with `challenge`, or 200 when iis is None), its copy."""
    frames = {"front": s.request(front, f"browser: {note}", "/", headers)}
    frames["upstream"] = s.request(
        upstream, f"proxy relays: {note}", "/", (headers or []) + (upstream_headers or [])
    )
    for conv, side in ((upstream, "server"), (front, "relayed")):
        extra = upstream_extra if side == "server" else None
        if iis is None:
            frames[side] = s.ok(conv, "200 (relayed by the proxy)" if side == "relayed" else "200")
        else:
            frames[side] = s.iis_401(conv, f"{side}: 401", iis, challenge=challenge, extra=extra)
    return frames


def _proxied_ntlm(s: Scene, front, upstream, user, workstation: str) -> None:
    _relay(s, front, upstream, "anonymous GET /", ANON)
    client, t1 = s.ntlm.client(*user, WEB_HOST, workstation)
    server, t2 = s.ntlm.server(t1)
    _relay(
        s,
        front,
        upstream,
        "NTLM Type 1",
        CHALLENGE_LEG,
        [("Authorization", f"NTLM {b64(t1)}")],
        [("WWW-Authenticate", f"NTLM {b64(t2)}")],
    )
    t3 = s.ntlm.answer(client, t2, workstation)
    verify(s, server, t3, True)
    _relay(
        s,
        front,
        upstream,
        f"NTLM Type 3 as {user[0]}",
        None,
        [("Authorization", f"NTLM {b64(t3)}")],
    )


def reverse_proxy_user_substitution() -> Scene:
    s = Scene(
        "reverse-proxy-user-substitution",
        "Both legs of a reverse proxy that adds no X-Forwarded-For: alice authenticates "
        "upstream connection 2; bob's anonymous request is relayed on that connection and "
        "answered 200 as alice",
        WEB_HOST,
        ["shared-authenticated-connection"],
        ["auth-lost-on-new-connection", "client-ignores-negotiate", "ntlm-handshake-split"],
        seed=36,
    )
    alice, bob = s.conn("192.0.2.10", FRONT), s.conn("192.0.2.11", FRONT)
    upstream = s.conn(PROXY)
    _proxied_ntlm(s, alice, upstream, ALICE, "WS-A")
    _relay(s, bob, upstream, "bob's anonymous GET / on alice's upstream connection", None)
    for conv in (alice, bob, upstream):
        conv.close()
    return s


def reverse_proxy_second_client() -> Scene:
    s = Scene(
        "reverse-proxy-second-client",
        "Both legs of a reverse proxy that adds no X-Forwarded-For: alice authenticates on "
        "upstream connection 2; bob's anonymous request goes out on a new upstream connection, "
        "gets 401 and bob never sends credentials",
        WEB_HOST,
        ["client-ignores-negotiate"],
        ["auth-lost-on-new-connection", "shared-authenticated-connection"],
        seed=37,
    )
    alice, bob = s.conn("192.0.2.10", FRONT), s.conn("192.0.2.11", FRONT)
    first = s.conn(PROXY)
    _proxied_ntlm(s, alice, first, ALICE, "WS-A")
    second = s.conn(PROXY)
    for attempt in (1, 2):
        _relay(s, bob, second, f"bob's anonymous GET / (attempt {attempt})", ANON)
    for conv in (alice, bob, first, second):
        conv.close()
    return s


def proxy_server_close() -> Scene:
    s = Scene(
        "proxy-server-close",
        "A reverse proxy closes the upstream connection after every response (HAProxy option "
        "http-server-close): the browser answers every challenge on one connection, each leg "
        "reaches the server on a new one",
        WEB_HOST,
        ["handshake-closed-midway"],
        ["client-ignores-negotiate", "ntlm-logon-failed", "ntlm-handshake-split"],
        seed=38,
    )
    close = [("Connection", "close")]
    front = s.conn("192.0.2.10", FRONT)
    upstream = s.conn(PROXY)
    _relay(
        s, front, upstream, "anonymous GET /", ANON, upstream_headers=close, upstream_extra=close
    )
    upstream.close(by="server")
    client, t1 = s.ntlm.client(*ALICE, WEB_HOST, "WS01")
    server, t2 = s.ntlm.server(t1)
    upstream = s.conn(PROXY)
    _relay(
        s,
        front,
        upstream,
        "NTLM Type 1",
        CHALLENGE_LEG,
        [("Authorization", f"NTLM {b64(t1)}")],
        [("WWW-Authenticate", f"NTLM {b64(t2)}")],
        upstream_headers=close,
        upstream_extra=close,
    )
    upstream.close(by="server")
    t3 = s.ntlm.answer(client, t2, "WS01")
    upstream = s.conn(PROXY)
    _relay(
        s,
        front,
        upstream,
        "NTLM Type 3 on a new upstream connection",
        INVALID_TOKEN,
        [("Authorization", f"NTLM {b64(t3)}")],
        upstream_headers=close,
        upstream_extra=close,
    )
    upstream.close(by="server")
    front.close()
    return s


def proxy_407_basic_refused() -> Scene:
    s = Scene(
        "proxy-407-basic-refused",
        "A forward proxy refuses Basic credentials with 407: the proxy's refusal, not the "
        "web server's",
        "www.example.com",
        ["basic-logon-failed", "basic-over-cleartext"],
        ["no-common-scheme", "client-ignores-negotiate"],
        seed=39,
    )
    c = s.conn(server=(PROXY, 3128))
    uri = "http://www.example.com/"
    refused = [
        ("Proxy-Authenticate", 'Basic realm="corp proxy"'),
        ("Via", "1.1 proxy01.contoso.com (squid/5.7)"),
    ]
    s.request(c, "anonymous GET through the proxy", uri)
    s.response(
        c,
        407,
        "Proxy Authentication Required",
        "proxy offers Basic",
        refused,
        b"<html>Proxy authentication required</html>\n",
        server="squid/5.7",
    )
    s.request(
        c,
        "Proxy-Authorization: Basic for bob (wrong password)",
        uri,
        [("Proxy-Authorization", f"Basic {b64(b'bob:wrong-password')}")],
    )
    s.response(
        c,
        407,
        "Proxy Authentication Required",
        "proxy refuses bob",
        refused,
        b"<html>Proxy authentication required</html>\n",
        server="squid/5.7",
    )
    c.close()
    return s


def shared_authenticated_connection() -> Scene:
    s = Scene(
        "shared-authenticated-connection",
        "One upstream connection authenticated by alice then carries "
        "requests of other clients, answered 200 without credentials",
        WEB_HOST,
        ["shared-authenticated-connection"],
        ["ntlm-handshake-split"],
        seed=9,
    )
    u = s.conn(PROXY)
    s.request(u, "anonymous (X-Forwarded-For 192.0.2.10)", "/", _forwarded("192.0.2.10"))
    s.iis_401(u, "offers Negotiate and NTLM", ANON)
    legs, _, server = ntlm_handshake(s, u, ALICE, extra=_forwarded("192.0.2.10"))
    verify(s, server, legs[2], True)
    s.ok(u, "authenticated as CONTOSO\\alice")
    s.request(u, "request of 192.0.2.11 with no credentials", "/payroll/", _forwarded("192.0.2.11"))
    s.ok(u, "answered as alice (user substitution)")
    s.request(u, "request of 192.0.2.12 with no credentials", "/hr/", _forwarded("192.0.2.12"))
    s.ok(u, "answered as alice (user substitution)")
    u.close()
    return s


def auth_lost_on_new_connection() -> Scene:
    s = Scene(
        "auth-lost-on-new-connection",
        "Connection 1 authenticated, then an anonymous request on a new "
        "connection gets 401 and the client gives up",
        WEB_HOST,
        ["auth-lost-on-new-connection"],
        ["client-ignores-negotiate"],
        seed=10,
    )
    c1 = s.conn()
    s.request(c1, "anonymous GET /")
    s.iis_401(c1, "offers Negotiate and NTLM", ANON)
    legs, _, server = ntlm_handshake(s, c1, ALICE)
    verify(s, server, legs[2], True)
    s.ok(c1, "authenticated as CONTOSO\\alice")
    s.cap.wait(120)
    c1.close(by="server")  # IIS connectionTimeout
    c2 = s.conn()
    s.request(c2, "GET /report without Authorization on a new connection", "/report")
    s.iis_401(c2, "offers Negotiate and NTLM; the client gives up", ANON)
    c2.close()
    return s


def handshake_closed_midway() -> Scene:
    s = Scene(
        "handshake-closed-midway",
        "401 with the Type 2 carries Connection: close; the client starts over "
        "on a new connection, three times",
        WEB_HOST,
        ["handshake-closed-midway"],
        ["ntlm-handshake-split"],
        seed=11,
    )
    c = s.conn()
    s.request(c, "anonymous GET /")
    s.iis_401(c, "offers Negotiate and NTLM", ANON)
    for attempt in (1, 2, 3):
        client, t1 = s.ntlm.client(*ALICE, WEB_HOST, "WS01")
        _, t2 = s.ntlm.server(t1)
        fr = s.request(
            c, f"NTLM Type 1 (attempt {attempt})", "/", [("Authorization", f"NTLM {b64(t1)}")]
        )
        s.check(fr, "ntlmssp.messagetype", NTLM_TYPE[1])
        fr = s.iis_401(
            c,
            "Type 2 with Connection: close",
            CHALLENGE_LEG,
            [("WWW-Authenticate", f"NTLM {b64(t2)}"), ("Connection", "close")],
        )
        s.check(fr, "ntlmssp.messagetype", NTLM_TYPE[2])
        c.close(by="server")
        if attempt < 3:
            c = s.conn()
    return s


def reauth_on_authenticated_connection() -> Scene:
    s = Scene(
        "reauth-on-authenticated-connection",
        "200 after NTLM, then a later request on the same connection gets 401",
        WEB_HOST,
        ["reauth-on-authenticated-connection"],
        ["auth-lost-on-new-connection"],
        seed=12,
    )
    c = s.conn()
    s.request(c, "anonymous GET /")
    s.iis_401(c, "offers Negotiate and NTLM", ANON)
    legs, _, server = ntlm_handshake(s, c, ALICE)
    verify(s, server, legs[2], True)
    s.ok(c, "authenticated as CONTOSO\\alice")
    s.request(c, "GET /a without Authorization", "/a")
    s.ok(c, "connection authenticated")
    s.request(c, "GET /b without Authorization", "/b")
    s.iis_401(c, "401 on the authenticated connection", ANON)
    c.close()
    return s


def client_ignores_negotiate(
    name: str = "client-ignores-negotiate",
    client: str = CLIENT,
    first_port: int = 49152,
    body: bytes | None = None,
) -> Scene:
    s = Scene(
        name,
        "401 offering Negotiate/NTLM; the client repeats without credentials and stops",
        WEB_HOST,
        ["client-ignores-negotiate"],
        ["no-common-scheme"],
        seed=13,
        first_port=first_port,
    )
    c = s.conn(client)
    for _ in range(2):
        s.request(c, "GET / without Authorization")
        if body is None:
            s.iis_401(c, "offers Negotiate and NTLM", ANON)
        else:
            s.iis_401(
                c, "offers Negotiate and NTLM, IIS detailed error page 401.2", ANON, body=body
            )
    c.close()
    return s


def no_common_scheme() -> Scene:
    s = Scene(
        "no-common-scheme",
        "Server offers only Negotiate; the client sends Basic over port 80",
        WEB_HOST,
        ["no-common-scheme", "basic-over-cleartext"],
        ["basic-logon-failed"],
        seed=14,
    )
    c = s.conn()
    s.request(c, "anonymous GET /")
    s.iis_401(c, "offers only Negotiate", ANON, [("WWW-Authenticate", "Negotiate")])
    basic = b64(b"CONTOSO\\alice:Spring2024!")
    s.request(c, "Authorization: Basic (not offered)", "/", [("Authorization", f"Basic {basic}")])
    s.iis_401(c, "Basic ignored, offers only Negotiate", ANON, [("WWW-Authenticate", "Negotiate")])
    c.close()
    return s


# ---------------------------------------------------------------------------
# Kerberos falls back to NTLM / fails


def kerberos_fallback_spn_unknown(
    client: str = CLIENT, first_port: int = 49152, name: str = "kerberos-fallback-spn-unknown"
) -> Scene:
    s = Scene(
        name,
        "TGS-REQ for HTTP/web01.contoso.com answered KRB-ERROR 7; Negotiate then carries NTLM",
        WEB_HOST,
        ["kerberos-fallback-to-ntlm"],
        ["kdc-error", "ntlm-logon-failed"],
        seed=15,
        first_port=first_port,
    )
    port = s.cap.next_port()
    s.kdc_udp(
        client,
        port,
        s.krb.tgs_req(f"HTTP/{WEB_HOST}", s.cap._clock),
        f"TGS-REQ for HTTP/{WEB_HOST}",
        True,
    )
    s.kdc_udp(
        client,
        port,
        s.krb.error(7, s.cap._clock, spn(f"HTTP/{WEB_HOST}")),
        "KRB-ERROR 7 KDC_ERR_S_PRINCIPAL_UNKNOWN",
        False,
    )
    c = s.conn(client)
    s.request(c, "anonymous GET /")
    negotiate_ntlm(s, c)
    c.close()
    return s


def kerberos_fallback_ip_host() -> Scene:
    s = Scene(
        "kerberos-fallback-ip-host",
        "Site reached as http://198.51.100.20/: no KDC traffic, Negotiate carries raw NTLM",
        WEB[0],
        ["kerberos-fallback-to-ntlm"],
        ["kdc-error"],
        seed=16,
    )
    c = s.conn()
    s.request(c, "anonymous GET / with Host: 198.51.100.20")
    negotiate_ntlm(s, c, raw=True)
    c.close()
    return s


def kerberos_fallback_kdc_unreachable() -> Scene:
    s = Scene(
        "kerberos-fallback-kdc-unreachable",
        "SYNs to the KDC on 88/tcp and UDP TGS-REQs unanswered, then NTLM inside Negotiate",
        WEB_HOST,
        ["kerberos-fallback-to-ntlm"],
        ["kdc-error"],
        seed=17,
    )
    last = s.syn_unanswered(CLIENT, (KDC, 88), 3)
    s.note(last, "third unanswered SYN to 203.0.113.53:88 (frames 1-3)")
    port = s.cap.next_port()
    for attempt in (1, 2, 3):
        s.cap.wait(1.0)
        s.kdc_udp(
            CLIENT,
            port,
            s.krb.tgs_req(f"HTTP/{WEB_HOST}", s.cap._clock),
            f"UDP TGS-REQ for HTTP/{WEB_HOST}, no answer (try {attempt})",
            True,
        )
    c = s.conn()
    s.request(c, "anonymous GET /")
    negotiate_ntlm(s, c)
    c.close()
    return s


def kerberos_ticket_rejected() -> Scene:
    s = Scene(
        "kerberos-ticket-rejected",
        "TGS succeeds, the AP-REQ is answered 401 with a bare Negotiate and no "
        "AP-REP (server cannot decrypt the ticket)",
        WEB_HOST,
        ["kerberos-ticket-rejected"],
        ["kerberos-fallback-to-ntlm", "kerberos-clock-skew"],
        seed=18,
    )
    s.tgs_ok(CLIENT)
    c = s.conn()
    s.request(c, "anonymous GET /")
    s.iis_401(c, "offers Negotiate and NTLM", ANON)
    ap_req = gss_krb5(s.krb.ap_req(f"HTTP/{WEB_HOST}"), b"\x01\x00")
    fr = s.request(
        c,
        "Negotiate with AP-REQ",
        "/",
        [("Authorization", f"Negotiate {b64(neg_token_init(bytes(ap_req), WINDOWS_MECHS))}")],
    )
    s.check(fr, "kerberos.msg_type", "14")
    s.iis_401(
        c, "bare Negotiate again, no AP-REP (KRB_AP_ERR_MODIFIED on the server)", LOGON_DENIED
    )
    c.close()
    return s


def kerberos_clock_skew() -> Scene:
    s = Scene(
        "kerberos-clock-skew",
        "AP-REQ answered 401 with a NegTokenResp reject carrying KRB-ERROR 37",
        WEB_HOST,
        ["kerberos-clock-skew"],
        ["kerberos-ticket-rejected"],
        seed=19,
    )
    s.tgs_ok(CLIENT)
    c = s.conn()
    s.request(c, "anonymous GET /")
    s.iis_401(c, "offers Negotiate and NTLM", ANON)
    ap_req = gss_krb5(s.krb.ap_req(f"HTTP/{WEB_HOST}"), b"\x01\x00")
    fr = s.request(
        c,
        "Negotiate with AP-REQ",
        "/",
        [("Authorization", f"Negotiate {b64(neg_token_init(bytes(ap_req), WINDOWS_MECHS))}")],
    )
    s.check(fr, "kerberos.msg_type", "14")
    # The server's clock is 12 minutes ahead of the client's (more than the 5 minute default skew).
    err = s.krb.error(37, s.cap._clock + 720, spn(f"HTTP/{WEB_HOST}"))
    reject = neg_token_resp(2, OID_MS_KRB5, bytes(gss_krb5(err, b"\x03\x00")))
    fr = s.iis_401(
        c,
        "Negotiate NegTokenResp reject with KRB-ERROR 37 KRB_AP_ERR_SKEW",
        TIME_SKEW,
        [("WWW-Authenticate", f"Negotiate {b64(reject)}")],
    )
    s.check(fr, "kerberos.error_code", "37")
    s.check(fr, "spnego.negResult", "2")
    c.close()
    return s


def kdc_error_etype() -> Scene:
    s = Scene(
        "kdc-error-etype",
        "TGS-REQ for HTTP/web01.contoso.com answered KRB-ERROR 14 KDC_ERR_ETYPE_NOSUPP",
        WEB_HOST,
        ["kdc-error"],
        ["kerberos-fallback-to-ntlm"],
        seed=20,
    )
    port = s.cap.next_port()
    s.kdc_udp(
        CLIENT,
        port,
        s.krb.tgs_req(f"HTTP/{WEB_HOST}", s.cap._clock),
        f"TGS-REQ for HTTP/{WEB_HOST}",
        True,
    )
    s.kdc_udp(
        CLIENT,
        port,
        s.krb.error(14, s.cap._clock, spn(f"HTTP/{WEB_HOST}")),
        "KRB-ERROR 14 KDC_ERR_ETYPE_NOSUPP",
        False,
    )
    return s


# ---------------------------------------------------------------------------
# NTLM fails


def ntlm_logon_failed() -> Scene:
    s = Scene(
        "ntlm-logon-failed",
        "Three NTLM legs with a wrong password; the final answer is 401",
        WEB_HOST,
        ["ntlm-logon-failed"],
        ["ntlm-handshake-split", "repeated-logon-failures"],
        seed=21,
    )
    c = s.conn()
    s.request(c, "anonymous GET /")
    s.iis_401(c, "offers Negotiate and NTLM", ANON)
    legs, _, server = ntlm_handshake(s, c, ("CONTOSO\\alice", "spring2024"))
    verify(s, server, legs[2], False)
    s.iis_401(c, "Type 3 fails verification (wrong password)", LOGON_FAILURE)
    c.close()
    return s


def repeated_logon_failures() -> Scene:
    s = Scene(
        "repeated-logon-failures",
        "CONTOSO\\bob fails NTLM five times over three connections",
        WEB_HOST,
        ["repeated-logon-failures", "ntlm-logon-failed"],
        ["ntlm-handshake-split"],
        seed=22,
    )
    for attempts in (2, 2, 1):
        c = s.conn()
        s.request(c, "anonymous GET /")
        s.iis_401(c, "offers Negotiate and NTLM", ANON)
        for _ in range(attempts):
            legs, _, server = ntlm_handshake(
                s, c, ("CONTOSO\\bob", "Autumn2023"), workstation="WS07"
            )
            verify(s, server, legs[2], False)
            s.iis_401(c, "wrong password for CONTOSO\\bob", LOGON_FAILURE)
        c.close()
        s.cap.wait(5)
    return s


def ntlmv1_response() -> Scene:
    s = Scene(
        "ntlmv1-response",
        "Type 3 carries a 24-byte NTLMv1 NT response (LmCompatibilityLevel 1); 200",
        WEB_HOST,
        ["ntlmv1-response"],
        ["ntlm-logon-failed"],
        seed=23,
    )
    c = s.conn()
    s.request(c, "anonymous GET /")
    s.iis_401(c, "offers Negotiate and NTLM", ANON)
    legs, fr, server = ntlm_handshake(s, c, ALICE, workstation="LEGACY01", lm_compat=1)
    verify(s, server, legs[2], True)
    s.ok(c, "accepted (NTLMv1 allowed by this server)")
    c.close()
    return s


def ntlm_anonymous() -> Scene:
    s = Scene(
        "ntlm-anonymous",
        "NTLM Type 3 with empty user and the anonymous flag; 401",
        WEB_HOST,
        ["ntlm-anonymous"],
        ["ntlm-logon-failed"],
        seed=24,
    )
    c = s.conn()
    s.request(c, "anonymous GET /")
    s.iis_401(c, "offers Negotiate and NTLM", ANON)
    _, t1 = s.ntlm.client(*ALICE, WEB_HOST, "KIOSK01")
    _, t2 = s.ntlm.server(t1)
    t3 = anonymous_authenticate(t2)
    fr = s.request(c, "NTLM Type 1", "/", [("Authorization", f"NTLM {b64(t1)}")])
    s.check(fr, "ntlmssp.messagetype", NTLM_TYPE[1])
    fr = s.iis_401(c, "NTLM Type 2", CHALLENGE_LEG, [("WWW-Authenticate", f"NTLM {b64(t2)}")])
    s.check(fr, "ntlmssp.messagetype", NTLM_TYPE[2])
    fr = s.request(
        c,
        "anonymous NTLM Type 3 (no user, NTLMSSP_ANONYMOUS)",
        "/",
        [("Authorization", f"NTLM {b64(t3)}")],
    )
    s.check(fr, "ntlmssp.messagetype", NTLM_TYPE[3])
    s.iis_401(c, "anonymous logon refused", ANON)
    c.close()
    s.unverifiable.append(
        "pyspnego's acceptor does not implement anonymous NTLM; the 401 and its triple are assumed"
    )
    return s


def channel_binding_missing() -> Scene:
    from spnego.channel_bindings import GssChannelBindings

    s = Scene(
        "channel-binding-missing",
        "Decrypted view of an HTTPS session: Type 3 without MsvAvChannelBindings, "
        "IIS with Extended Protection answers 401.1",
        WEB_HOST,
        ["channel-binding-missing"],
        ["ntlm-handshake-split"],
        seed=25,
    )
    # HTTP on 443 in the clear: what a TLS session looks like once decrypted
    # (Wireshark with a key log, or a capture exported as plaintext).
    c = s.conn(server=(WEB[0], 443))
    s.request(c, "anonymous GET /")
    s.iis_401(c, "offers Negotiate and NTLM", ANON)
    legs, _, server = ntlm_handshake(s, c, ALICE)
    # RFC 5929 tls-server-end-point binding the server expects; the client supplied none.
    server.channel_bindings = GssChannelBindings(
        application_data=b"tls-server-end-point:" + hashlib.sha256(b"web01 certificate").digest()
    )
    reason = verify(s, server, legs[2], False)
    if "bindings" not in reason.lower():
        raise SystemExit(f"{s.name}: expected a channel binding failure, got {reason!r}")
    s.iis_401(
        c,
        "HTTP Error 401.1 detailed page (Extended Protection)",
        BAD_BINDINGS,
        body=iis_detailed_401(
            1,
            "You do not have permission to view this directory or page "
            "using the credentials that you supplied.",
        ),
    )
    c.close()
    return s


# ---------------------------------------------------------------------------
# Basic, Digest, Bearer, size


def basic_over_cleartext() -> Scene:
    s = Scene(
        "basic-over-cleartext",
        "Basic credentials accepted over plain HTTP on port 80",
        WEB_HOST,
        ["basic-over-cleartext"],
        ["basic-logon-failed"],
        seed=26,
    )
    c = s.conn()
    s.request(c, "anonymous GET /")
    s.iis_401(c, "offers Basic", ANON, [("WWW-Authenticate", f'Basic realm="{WEB_HOST}"')])
    s.request(
        c,
        "Authorization: Basic (alice, password in clear)",
        "/",
        [("Authorization", "Basic " + b64(b"CONTOSO\\alice:Spring2024!"))],
    )
    s.ok(c, "authenticated")
    c.close()
    return s


def basic_logon_failed() -> Scene:
    s = Scene(
        "basic-logon-failed",
        "Basic with a wrong password answered 401 twice",
        WEB_HOST,
        ["basic-logon-failed", "basic-over-cleartext"],
        [],
        seed=27,
    )
    c = s.conn()
    for attempt in (1, 2):
        s.request(
            c,
            f"Authorization: Basic, wrong password (try {attempt})",
            "/",
            [("Authorization", "Basic " + b64(b"CONTOSO\\alice:spring2024"))],
        )
        s.iis_401(
            c, "logon failed", LOGON_FAILURE, [("WWW-Authenticate", f'Basic realm="{WEB_HOST}"')]
        )
    c.close()
    return s


def digest_failed() -> Scene:
    s = Scene(
        "digest-failed",
        "Digest response with a wrong password: 401 without stale",
        "files.contoso.com",
        ["digest-failed"],
        [],
        seed=28,
    )
    c = s.conn(server=("198.51.100.30", 80))
    nonce = "Q3RkbXkFBgA=0d8c1f3e5a7b9c2d4e6f8a1b3c5d7e9f2a4b6c8d"
    s.request(c, "anonymous GET /docs/", "/docs/")
    s.response(
        c,
        401,
        "Unauthorized",
        "Digest challenge",
        _digest_challenge(nonce),
        b"<h1>Unauthorized</h1>\n",
        server=APACHE,
    )
    _digest_auth(s, c, nonce, "spring2024", "00000001", "5fe3a2b1")
    s.response(
        c,
        401,
        "Unauthorized",
        "wrong response, not stale",
        _digest_challenge(nonce),
        b"<h1>Unauthorized</h1>\n",
        server=APACHE,
    )
    c.close()
    return s


def bearer_token_rejected() -> Scene:
    s = Scene(
        "bearer-token-rejected",
        "ASP.NET Core API on IIS rejects an expired Bearer token",
        "api.contoso.com",
        ["bearer-token-rejected"],
        [],
        seed=29,
    )
    c = s.conn(server=("198.51.100.40", 80))
    header = b64(b'{"alg":"RS256","typ":"JWT","kid":"k1"}').rstrip("=")
    claims = b64(
        b'{"aud":"api://orders","iss":"https://login.contoso.com/","exp":1699990000,"sub":"alice"}'
    ).rstrip("=")
    jwt = f"{header}.{claims}.{b64(bytes(range(64))).rstrip('=')}"
    s.request(
        c,
        "Authorization: Bearer <expired JWT>",
        "/api/orders",
        [("Authorization", f"Bearer {jwt}"), ("Accept", "application/json")],
        base=[("User-Agent", "orders-sync/2.1")],
    )
    s.response(
        c,
        401,
        "Unauthorized",
        "invalid_token (application answered: IIS logs 401 0 0)",
        [
            (
                "WWW-Authenticate",
                'Bearer error="invalid_token", error_description="The token expired at '
                "'11/14/2023 19:26:40'\"",
            )
        ],
        iis="401 0 0",
    )
    c.close()
    return s


def auth_header_too_large() -> Scene:
    s = Scene(
        "auth-header-too-large",
        "A 20 KB Negotiate header (user in many groups) answered 400 by http.sys",
        WEB_HOST,
        ["auth-header-too-large"],
        ["kerberos-ticket-rejected"],
        seed=30,
    )
    s.tgs_ok(CLIENT)
    c = s.conn()
    s.request(c, "anonymous GET /")
    s.iis_401(c, "offers Negotiate and NTLM", ANON)
    big = s.krb.ap_req(f"HTTP/{WEB_HOST}")
    big.ticket = s.krb.ticket(
        spn(f"HTTP/{WEB_HOST}"), size=14600
    )  # a PAC with hundreds of group SIDs
    token = neg_token_init(bytes(gss_krb5(big, b"\x01\x00")), WINDOWS_MECHS)
    fr = s.request(
        c,
        f"Negotiate header of {len(b64(token))} characters",
        "/",
        [("Authorization", f"Negotiate {b64(token)}")],
    )
    s.check(fr, "kerberos.msg_type", "14")
    body = (
        b'<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01//EN""http://www.w3.org/TR/html4/strict.dtd">\r\n'
        b"<HTML><HEAD><TITLE>Bad Request</TITLE></HEAD><BODY>"
        b"<h2>Bad Request - Request Header too long</h2>"
        b"<hr><p>HTTP Error 400. The size of the request headers is too long.</p></BODY></HTML>\r\n"
    )
    s.response(
        c,
        400,
        "Bad Request",
        "Request Header too long (http.sys; not in the IIS W3C log)",
        [("Connection", "close")],
        body,
        server="Microsoft-HTTPAPI/2.0",
    )
    c.close(by="server")
    return s


def auth_header_too_large_apache() -> Scene:
    s = Scene(
        "auth-header-too-large-apache",
        "A 9 KB Negotiate header answered 400 by Apache (LimitRequestFieldSize 8190): "
        "too large well under http.sys's 16 KB, judged by the page and the largest field",
        WEB_HOST,
        ["auth-header-too-large"],
        ["kerberos-ticket-rejected", "client-ignores-negotiate"],
        seed=34,
    )
    s.tgs_ok(CLIENT)
    c = s.conn()
    big = s.krb.ap_req(f"HTTP/{WEB_HOST}")
    big.ticket = s.krb.ticket(spn(f"HTTP/{WEB_HOST}"), size=6400)  # a PAC with many group SIDs
    token = neg_token_init(bytes(gss_krb5(big, b"\x01\x00")), WINDOWS_MECHS)
    fr = s.request(
        c,
        f"Negotiate header of {len(b64(token))} characters (its largest field)",
        "/",
        [("Authorization", f"Negotiate {b64(token)}")],
    )
    s.check(fr, "kerberos.msg_type", "14")
    # The wording of Apache httpd 2.4's 400 for LimitRequestFieldSize.
    body = (
        b'<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head>\n'
        b"<title>400 Bad Request</title>\n</head><body>\n<h1>Bad Request</h1>\n"
        b"<p>Your browser sent a request that this server could not understand.<br />\n"
        b"Size of a request header field exceeds server limit.<br />\n</p>\n</body></html>\n"
    )
    s.response(
        c,
        400,
        "Bad Request",
        "Size of a request header field exceeds server limit (Apache)",
        [("Connection", "close")],
        body,
        server=APACHE,
    )
    c.close(by="server")
    return s


def ntlm_negotiate_rejected_retry() -> Scene:
    s = Scene(
        "ntlm-negotiate-rejected-retry",
        "The server answers the NTLM NEGOTIATE 401 without a CHALLENGE (gss-ntlmssp refusing "
        "Chromium's NEGOTIATE); the browser retries anonymously on a new connection and "
        "gives up: the client did try, so not client-ignores-negotiate",
        WEB_HOST,
        ["ntlm-negotiate-rejected"],
        ["client-ignores-negotiate", "ntlm-logon-failed"],
        seed=35,
    )
    offer = [("WWW-Authenticate", "Negotiate"), ("WWW-Authenticate", "NTLM")]
    c = s.conn()
    s.request(c, "anonymous GET /")
    s.response(c, 401, "Unauthorized", "offers Negotiate and NTLM", offer, server=APACHE)
    _, t1 = s.ntlm.client(*ALICE, WEB_HOST, "WS01")
    fr = s.request(c, "NTLM NEGOTIATE (Type 1)", "/", [("Authorization", f"NTLM {b64(t1)}")])
    s.check(fr, "ntlmssp.messagetype", NTLM_TYPE[1])
    s.response(c, 401, "Unauthorized", "offers again: no CHALLENGE", offer, server=APACHE)
    c.close()
    c = s.conn()
    s.request(c, "anonymous GET / again, on a new connection")
    s.response(
        c, 401, "Unauthorized", "offers Negotiate and NTLM; the browser stops", offer, server=APACHE
    )
    c.close()
    return s


def capture_starts_midway() -> Scene:
    s = Scene(
        "capture-starts-midway",
        "The capture starts inside a handshake: the first HTTP message is a Type 3",
        WEB_HOST,
        ["capture-incomplete"],
        ["ntlm-handshake-split", "ntlm-logon-failed"],
        seed=31,
    )
    client, t1 = s.ntlm.client(*ALICE, WEB_HOST, "WS01")
    server, t2 = s.ntlm.server(t1)
    t3 = s.ntlm.answer(client, t2, "WS01")
    c = s.conn(handshake=False)
    fr = s.request(
        c,
        "NTLM Type 3 (Type 1/2 before the capture started)",
        "/",
        [("Authorization", f"NTLM {b64(t3)}")],
    )
    s.check(fr, "ntlmssp.messagetype", NTLM_TYPE[3])
    verify(s, server, t3, True)
    s.ok(c, "authenticated")
    s.request(c, "GET /news without Authorization", "/news")
    s.ok(c, "connection authenticated")
    c.close()
    return s


def iis_401_2_body() -> Scene:
    return client_ignores_negotiate(
        name="iis-401-2-body",
        body=iis_detailed_401(
            2, "You are not authorized to view this page due to invalid authentication headers."
        ),
    )


# ---------------------------------------------------------------------------
# The IIS 401 categories beyond a failed user logon (issue 16)

ACL_DENIED = "401 3 5"
ANONYMOUS_LOGON_FAILURE = "401 1 1326"
APPLICATION_401 = "401 5 0"
FILTER_401 = "401 4 0"
_SEQUENCE_RULES = [
    "ntlm-logon-failed",
    "kerberos-ticket-rejected",
    "basic-logon-failed",
    "repeated-logon-failures",
    "client-ignores-negotiate",
]


def anonymous_logon_failed() -> Scene:
    s = Scene(
        "anonymous-logon-failed",
        "Anonymous-only site whose anonymous account cannot log on: every anonymous "
        "request gets 401.1, no scheme offered, detailed error page",
        WEB_HOST,
        ["anonymous-logon-failed"],
        ["client-ignores-negotiate", "no-common-scheme", "ntlm-logon-failed"],
        seed=40,
        evidence={"anonymous-logon-failed": "error-page"},
    )
    c = s.conn()
    page = iis_detailed_401(
        1,
        "You do not have permission to view this directory or page because the anonymous "
        "user could not be logged on.",
        module="AnonymousAuthenticationModule",
        code="8007052e",
    )
    for uri in ("/", "/favicon.ico", "/"):
        s.request(c, f"anonymous GET {uri}", uri)
        s.iis_401(
            c,
            "no WWW-Authenticate, detailed page HTTP Error 401.1",
            ANONYMOUS_LOGON_FAILURE,
            challenge=[],
            body=page,
        )
    c.close()
    return s


def _ntlm_logon(s: Scene, c, uri: str = "/") -> int:
    """Anonymous 401, then an NTLM handshake whose AUTHENTICATE the acceptor
    accepts (right password); the caller writes the answer to it."""
    s.request(c, f"anonymous GET {uri}", uri)
    s.iis_401(c, "offers Negotiate and NTLM", ANON)
    legs, frame, server = ntlm_handshake(s, c, ALICE, uri=uri)
    verify(s, server, legs[2], True)
    return frame


def resource_acl_denied() -> Scene:
    s = Scene(
        "resource-acl-denied",
        "NTLM logon succeeds (right password), then 401 with the detailed page "
        "HTTP Error 401.3 (ACL)",
        WEB_HOST,
        ["resource-acl-denied"],
        _SEQUENCE_RULES,
        seed=41,
        evidence={"resource-acl-denied": "error-page"},
    )
    c = s.conn()
    _ntlm_logon(s, c, "/payroll/2024.xlsx")
    s.iis_401(
        c,
        "offers Negotiate and NTLM again, detailed page HTTP Error 401.3 (ACL)",
        ACL_DENIED,
        body=iis_detailed_401(
            3,
            "You do not have permission to view this directory or page because of the access "
            "control list (ACL) configuration or encryption settings for this resource on the "
            "Web server.",
            module="IIS Web Core",
            notification="MapRequestHandler",
            code="80070005",
        ),
    )
    c.close()
    return s


def resource_acl_denied_kerberos() -> Scene:
    s = Scene(
        "resource-acl-denied-kerberos",
        "Kerberos: the AP-REQ is answered 401 carrying the AP-REP (accept-completed), "
        "generic error page",
        WEB_HOST,
        ["resource-acl-denied"],
        _SEQUENCE_RULES + ["kerberos-fallback-to-ntlm"],
        seed=42,
        evidence={"resource-acl-denied": "wire"},
    )
    s.tgs_ok(CLIENT)
    c = s.conn()
    s.request(c, "anonymous GET /payroll/", "/payroll/")
    s.iis_401(c, "offers Negotiate and NTLM", ANON)
    ap_req = gss_krb5(s.krb.ap_req(f"HTTP/{WEB_HOST}"), b"\x01\x00")
    fr = s.request(
        c,
        "Negotiate NegTokenInit with AP-REQ",
        "/payroll/",
        [("Authorization", f"Negotiate {b64(neg_token_init(bytes(ap_req), WINDOWS_MECHS))}")],
    )
    s.check(fr, "kerberos.msg_type", "14")
    ap_rep = neg_token_resp(0, OID_MS_KRB5, bytes(gss_krb5(s.krb.ap_rep(), b"\x02\x00")))
    fr = s.iis_401(
        c,
        "Negotiate NegTokenResp accept-completed carrying the AP-REP, generic 401 page",
        ACL_DENIED,
        challenge=[("WWW-Authenticate", f"Negotiate {b64(ap_rep)}")],
    )
    s.check(fr, "kerberos.msg_type", "15")
    s.check(fr, "spnego.negResult", "0")
    c.close()
    return s


def resource_acl_denied_logged() -> Scene:
    s = Scene(
        "resource-acl-denied-logged",
        "NTLM logon succeeds, 401 offering the schemes again with the generic page; only "
        "the IIS log (401 3 5) tells it is the ACL",
        WEB_HOST,
        ["ntlm-logon-failed"],
        ["resource-acl-denied"],
        seed=43,
        iis_log=True,
        log_rules=["resource-acl-denied"],
        log_not_rules=["ntlm-logon-failed", "repeated-logon-failures"],
        evidence={"ntlm-logon-failed": "sequence"},
        log_evidence={"resource-acl-denied": "iis-log"},
    )
    c = s.conn()
    _ntlm_logon(s, c, "/payroll/2024.xlsx")
    s.log_as("CONTOSO\\alice")
    s.iis_401(
        c,
        "offers Negotiate and NTLM again, generic page",
        LOGON_FAILURE,
        logged=ACL_DENIED,
    )
    c.close()
    return s


def filter_denied() -> Scene:
    s = Scene(
        "filter-denied",
        "Basic credentials, then 401 without WWW-Authenticate or page; the IIS log line "
        "says 401.4 (an ISAPI filter)",
        WEB_HOST,
        ["application-denied", "basic-over-cleartext"],
        ["filter-denied", "basic-logon-failed"],
        seed=44,
        iis_log=True,
        log_rules=["filter-denied", "basic-over-cleartext"],
        log_not_rules=["application-denied", "basic-logon-failed"],
        evidence={"application-denied": "wire"},
        log_evidence={"filter-denied": "iis-log"},
    )
    c = s.conn()
    s.request(c, "anonymous GET /portal/", "/portal/")
    s.iis_401(c, "offers Basic", "401 2 5", [("WWW-Authenticate", f'Basic realm="{WEB_HOST}"')])
    s.log_as("CONTOSO\\alice")
    s.request(
        c,
        "Authorization: Basic (alice, right password)",
        "/portal/",
        [("Authorization", "Basic " + b64(b"CONTOSO\\alice:Spring2024!"))],
    )
    s.iis_401(
        c,
        "no WWW-Authenticate, empty body",
        APPLICATION_401,
        challenge=[],
        body=b"",
        logged=FILTER_401,
    )
    c.close()
    return s


def application_denied() -> Scene:
    s = Scene(
        "application-denied",
        "NTLM logon succeeds, then a static .html file is answered 401 without "
        "WWW-Authenticate by a wildcard-mapped ISAPI extension (page HTTP Error 401.5)",
        WEB_HOST,
        ["application-denied"],
        _SEQUENCE_RULES,
        seed=45,
        evidence={"application-denied": "error-page"},
    )
    c = s.conn()
    _ntlm_logon(s, c, "/reports/q3.html")
    s.iis_401(
        c,
        "no WWW-Authenticate, detailed page HTTP Error 401.5 (IsapiModule)",
        APPLICATION_401,
        challenge=[],
        body=iis_detailed_401(
            5,
            "You do not have permission to view this directory or page because the ISAPI or "
            "CGI application denied access.",
            module="IsapiModule",
            notification="ExecuteRequestHandler",
            code="80070005",
        ),
    )
    c.close()
    return s


def bearer_after_windows_auth() -> Scene:
    s = Scene(
        "bearer-after-windows-auth",
        "NTLM logon succeeds, then the API behind IIS answers 401 asking for a Bearer "
        "token (no Negotiate/NTLM offered again)",
        WEB_HOST,
        ["denied-after-authentication"],
        _SEQUENCE_RULES + ["no-common-scheme", "application-denied", "resource-acl-denied"],
        seed=46,
    )
    c = s.conn()
    _ntlm_logon(s, c, "/api/orders")
    s.iis_401(
        c,
        "WWW-Authenticate: Bearer only (the API's JWT handler), no Negotiate/NTLM",
        "401 0 0",
        challenge=[("WWW-Authenticate", 'Bearer realm="api"')],
        body=b"",
    )
    c.close()
    return s


SCENARIOS: list[Callable[[], Scene]] = [
    healthy_ntlm,
    healthy_kerberos,
    healthy_persistent_auth_false,
    healthy_digest_stale,
    healthy_kdc_benign,
    healthy_proxy_407,
    ntlm_handshake_split,
    ntlm_handshake_split_v1,
    pooling_proxy,
    shared_authenticated_connection,
    auth_lost_on_new_connection,
    handshake_closed_midway,
    reauth_on_authenticated_connection,
    client_ignores_negotiate,
    no_common_scheme,
    kerberos_fallback_spn_unknown,
    kerberos_fallback_ip_host,
    kerberos_fallback_kdc_unreachable,
    kerberos_ticket_rejected,
    kerberos_clock_skew,
    kdc_error_etype,
    ntlm_logon_failed,
    repeated_logon_failures,
    ntlmv1_response,
    ntlm_anonymous,
    channel_binding_missing,
    basic_over_cleartext,
    basic_logon_failed,
    digest_failed,
    bearer_token_rejected,
    auth_header_too_large,
    auth_header_too_large_apache,
    ntlm_negotiate_rejected_retry,
    reverse_proxy_user_substitution,
    reverse_proxy_second_client,
    proxy_server_close,
    proxy_407_basic_refused,
    capture_starts_midway,
    iis_401_2_body,
    anonymous_logon_failed,
    resource_acl_denied,
    resource_acl_denied_kerberos,
    resource_acl_denied_logged,
    filter_denied,
    application_denied,
    bearer_after_windows_auth,
]

# Working/failing pairs for `authtrace diff`: other client addresses and ports, same host and URLs.
PAIRS: dict[str, tuple[Callable[[], Scene], Callable[[], Scene]]] = {
    "kerberos-vs-fallback": (
        lambda: healthy_kerberos("192.0.2.21", 50100, "kerberos-vs-fallback-working"),
        lambda: kerberos_fallback_spn_unknown("192.0.2.51", 61200, "kerberos-vs-fallback-failing"),
    ),
    "direct-vs-pooling-proxy": (
        lambda: healthy_ntlm("192.0.2.22", 50200, "direct-vs-pooling-proxy-working"),
        lambda: pooling_proxy("direct-vs-pooling-proxy-failing"),
    ),
    "browser-configured-vs-not": (
        lambda: healthy_kerberos("192.0.2.23", 50300, "browser-configured-vs-not-working"),
        lambda: client_ignores_negotiate("browser-configured-vs-not-failing", "192.0.2.53", 61300),
    ),
}


def build(out: Path) -> dict[str, dict[str, object]]:
    expected: dict[str, dict[str, object]] = {}
    for make in SCENARIOS:
        scene = make()
        expected[f"{scene.name}.pcap"] = scene.write(out / f"{scene.name}.pcap")
    for pair, makers in PAIRS.items():
        for side, make in zip(("working", "failing"), makers, strict=True):
            scene = make()
            expected[f"diff/{pair}-{side}.pcap"] = scene.write(out / "diff" / f"{pair}-{side}.pcap")
    (out / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    (out / "README.md").write_text(render_readme(expected))
    return expected


def render_readme(expected: dict[str, dict[str, object]]) -> str:
    lines = [
        "# Scenario captures",
        "",
        "Hand-built by `scripts/captures/build_scenarios.py` (do not edit; rebuild with",
        "`python3 scripts/captures/build_scenarios.py`). One capture per",
        "analysis scenario, with real",
        "token bytes: NTLM messages from pyspnego's initiator and acceptor (a",
        "wrong password really fails",
        "the acceptor), Kerberos/SPNEGO structures from scapy's ASN.1 layers",
        "with random cipher text.",
        "Every random byte is seeded: a rebuild is byte-identical.",
        "",
        "Addresses: clients 192.0.2.0/24, web01.contoso.com = 198.51.100.20, files.contoso.com",
        "(Apache, Digest) = 198.51.100.30, api.contoso.com = 198.51.100.40, reverse/forward proxy",
        "203.0.113.5, KDC 203.0.113.53. Accounts known to the acceptor: CONTOSO\\alice",
        "`Spring2024!`, CONTOSO\\bob `Autumn2023#` (test-only passwords).",
        "",
        "`expected.json` holds, per file: `rules` that must fire, `not_rules`",
        "that must not, `host`,",
        "`iis` (response frame -> predicted `sc-status sc-substatus",
        "sc-win32-status`), and `frames`",
        "(frame -> tshark field values that tests/test_scenario_captures.py checks).",
        "",
        "| file | what it shows (frame: event) | expected rules | predicted IIS triple per 401 |",
        "|---|---|---|---|",
    ]
    for name, entry in expected.items():
        notes = "<br>".join(str(n).replace("|", "\\|") for n in entry["notes"])  # type: ignore[attr-defined]
        rules = ", ".join(f"`{r}`" for r in entry["rules"]) or "none"  # type: ignore[attr-defined]
        if entry["not_rules"]:
            rules += "<br>not: " + ", ".join(f"`{r}`" for r in entry["not_rules"])  # type: ignore[attr-defined]
        log = entry.get("iis_log")
        if log:
            rules += f"<br>with `--iis-log {log['file']}`: " + ", ".join(  # type: ignore[index]
                f"`{r}`"
                for r in log["rules"]  # type: ignore[index]
            )
            rules += "<br>not: " + ", ".join(f"`{r}`" for r in log["not_rules"])  # type: ignore[index]
        if entry.get("evidence") or log:
            decided = {**entry.get("evidence", {}), **(log["evidence"] if log else {})}  # type: ignore[index,dict-item]
            rules += "<br>decided by: " + ", ".join(f"`{r}` {src}" for r, src in decided.items())
        iis = "<br>".join(f"{f}: `{t}`" for f, t in entry["iis"].items()) or "-"  # type: ignore[attr-defined]
        lines.append(f"| `{name}` | **{entry['title']}**<br>{notes} | {rules} | {iis} |")
    lines += [
        "",
        "## Notes and limits",
        "",
        "- IIS triples are predictions from shared/DESIGN.md; the 401 for the",
        "anonymous NTLM Type 3",
        "  (`ntlm-anonymous`) is an estimate. 407s come from a proxy and 401s",
        "from Apache have no IIS",
        "  triple; the http.sys 400 is logged in HTTPERR, not in the W3C log.",
        "- `channel-binding-missing` is cleartext HTTP standing for the decrypted view of an HTTPS",
        "  session (what the tshark source yields with a TLS key log):",
        "Extended Protection only applies",
        "  to TLS. The acceptor was given tls-server-end-point bindings and",
        "really rejects the Type 3.",
        "  No invented `X-Debug` header: the 401.1 detailed error body is the evidence.",
        "- NTLM CHALLENGE messages come from pyspnego's acceptor: NetBIOS domain `WORKSTATION` and",
        "  computer `WEB01` in the target info (pyspnego fixes the domain name).",
        "- Type 3 messages sent on a connection without context",
        "(`ntlm-handshake-split`) are not run",
        "  through an acceptor; the pooled ones (`pooling-proxy`) are, and fail verification.",
        "- KDC cipher text (tickets, authenticators, enc-parts) is random: no key can decrypt it.",
        "- The IIS 401 categories (`anonymous-logon-failed`, `resource-acl-denied*`,",
        "  `filter-denied`, `application-denied`): `evidence` in expected.json names what must",
        "  decide each finding (`error-page`, `wire`, `sequence`); a capture with an `iis_log`",
        "  comes with `<name>.log`, a W3C log of every response, and lists what analyze must",
        "  report given that log (`--iis-log`). The sc-win32-status of a 401.4/401.5 line is",
        "  whatever the filter or application set; these logs use 0.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    root = Path(__file__).resolve().parents[2]
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "captures" / "scenarios"
    expected = build(out)
    print(f"wrote {len(expected)} captures to {out}")


if __name__ == "__main__":
    main()
