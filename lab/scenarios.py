"""The lab's scenarios: how each capture is produced and what tshark must find in it.

Each scenario names the servers it needs, drives real clients, and has a check that reads
tshark's decoding of the capture and returns the list of what is missing (empty = keep it).
The check states the wire facts the scenario exists to show, not the exact frame layout,
because real software varies in details (extra keep-alive requests, UDP vs TCP to the KDC).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.servers import Lab
from lab.system import LabError, run
from lab.topology import (
    ALIAS,
    APACHE_PROXY,
    BADKEY,
    BALANCER,
    BALANCER_CLOSE_PORT,
    BALANCER_SOURCE,
    CLIENT,
    CLIENT2,
    NTLM_DOMAIN,
    PASSWORD,
    PROXY,
    PROXY_PASSWORD,
    PROXY_PORT,
    PROXY_USER,
    REVERSE_PROXY,
    UPSTREAM_SOURCE,
    USER,
    WEB,
    WRONG_PASSWORD,
)
from lab.verify import Packet, kdc_errors, schemes, statuses, tgs_services

REPO_ROOT = Path(__file__).resolve().parent.parent
KDC, APACHE, NGINX, SQUID = "kdc", "apache", "nginx", "squid"
HAPROXY, MODPROXY = "haproxy", "modproxy"
MODPROXY_UPSTREAM_SOURCE = "127.0.0.1"
"""mod_proxy cannot bind a source address: the kernel picks 127.0.0.1 for 127.0.0.10."""


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    servers: frozenset[str]
    produce: Callable[[Lab], str]
    """Runs the clients; returns a one-line note of what they saw (HTTP statuses)."""
    check: Callable[[list[Packet]], list[str]]
    attempts: int = 2


# --- clients ----------------------------------------------------------------------------------


def curl(lab: Lab, *args: str, wrapper: tuple[str, ...] = ()) -> str:
    """curl from the client address (run under ``wrapper``, e.g. faketime); returns the
    status of each transfer."""
    done = run(
        [
            *wrapper,
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "--interface",
            CLIENT.address,
            "--max-time",
            "10",
            "-w",
            "%{http_code} ",
            *args,
        ],
        env=lab.client_env(),
        timeout=30,
        check=False,
    )
    return "curl " + done.stdout.strip()


def chromium(lab: Lab, target: str, *flags: str, ticket: bool = False) -> str:
    """Headless Chromium loads ``target`` once with a fresh profile; returns the page size.

    As root Chromium needs ``--no-sandbox``. Background services (updates, sync, metrics)
    are switched off so that the browser talks to the lab only; it connects from 127.0.0.1
    (Chromium cannot choose its source address). Without ``ticket`` it gets a credential cache
    of its own that holds no ticket (the lab's may hold one from an earlier scenario); with
    ``ticket`` it uses the lab's, which the caller has filled.
    """
    env = lab.client_env()
    if not ticket:
        env["KRB5CCNAME"] = f"FILE:{lab.root / 'chromium-no-ticket.ccache'}"
    profile = lab.root / "chromium-profile"
    shutil.rmtree(profile, ignore_errors=True)
    done = run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--metrics-recording-only",
            "--no-proxy-server",
            f"--user-data-dir={profile}",
            *flags,
            "--dump-dom",
            target,
        ],
        env=env,
        timeout=60,
        check=False,
    )
    shutil.rmtree(profile, ignore_errors=True)
    return f"chromium exit {done.returncode}, page {len(done.stdout)} bytes"


def kinit(lab: Lab) -> None:
    """A fresh TGT, so that the AS exchange (and PREAUTH_REQUIRED) is in the capture."""
    if lab.ccache.exists():
        lab.ccache.unlink()
    run(["kinit", USER], env=lab.client_env(), input_text=PASSWORD + "\n", timeout=20)


def python_client(lab: Lab, *args: str, timeout: float = 60.0) -> str:
    env = lab.client_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    done = run([sys.executable, "-m", "lab.clients", *args], env=env, timeout=timeout, check=False)
    if done.returncode != 0 and not done.stdout.strip():
        raise LabError(f"client {args[0]} failed: {done.stderr.strip().splitlines()[-1:]}")
    try:
        seen = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise LabError(f"client {args[0]} printed no statuses") from exc
    return f"{args[0]} " + " ".join(str(s) for s in seen)


def url(host: str, path: str) -> str:
    return f"http://{host}{path}"


# --- checks -----------------------------------------------------------------------------------


def _http(packets: list[Packet]) -> list[Packet]:
    return [p for p in packets if not p.to_or_from_kdc and (p.method or p.status is not None)]


def _auth_schemes(packets: list[Packet]) -> set[str]:
    return schemes(tuple(a for p in packets for a in p.authorization))


def _challenge_schemes(packets: list[Packet]) -> set[str]:
    return schemes(tuple(a for p in packets for a in p.www_authenticate))


def _ntlm_types(packets: list[Packet]) -> set[int]:
    return {t for p in _http(packets) for t in p.ntlm_types}


def _expect(problems: list[str], condition: bool, what: str) -> None:
    if not condition:
        problems.append(what)


def check_kerberos_success(packets: list[Packet]) -> list[str]:
    p: list[str] = []
    codes = statuses(packets)
    _expect(p, f"HTTP/{WEB.name}" in tgs_services(packets), "no TGS-REQ for HTTP/web.lab.test")
    _expect(p, any(12 in x.kerberos_types for x in packets), "no TGS-REQ")
    _expect(p, 7 not in kdc_errors(packets), "KDC said S_PRINCIPAL_UNKNOWN")
    _expect(p, "negotiate" in _auth_schemes(packets), "no Authorization: Negotiate")
    _expect(p, not _ntlm_types(packets), "NTLM seen")
    _expect(p, any(14 in x.kerberos_types for x in _http(packets)), "no AP-REQ in HTTP")
    _expect(p, codes[:1] == [401] and codes[-1:] == [200], f"statuses not 401..200: {codes}")
    return p


def check_kerberos_preemptive(packets: list[Packet]) -> list[str]:
    p: list[str] = []
    http = _http(packets)
    requests = [x for x in http if x.method]
    _expect(p, bool(requests) and bool(requests[0].authorization), "first request has no creds")
    _expect(p, 401 not in statuses(packets), "a 401 was sent")
    _expect(p, 200 in statuses(packets), "no 200")
    _expect(p, f"HTTP/{WEB.name}" in tgs_services(packets), "no TGS-REQ for HTTP/web.lab.test")
    return p


def _ntlm_on_one_stream(packets: list[Packet]) -> bool:
    streams: dict[int | None, set[int]] = {}
    for x in _http(packets):
        streams.setdefault(x.stream, set()).update(x.ntlm_types)
    return any({1, 2, 3} <= types for types in streams.values())


def check_ntlm_success(packets: list[Packet]) -> list[str]:
    p: list[str] = []
    codes = statuses(packets)
    _expect(p, _ntlm_on_one_stream(packets), "Type 1/2/3 not on one connection")
    _expect(p, bool(codes) and codes[-1] == 200, f"last status not 200: {codes}")
    _expect(p, {"ntlm", "negotiate"} & _challenge_schemes(packets) != set(), "no challenge")
    return p


def check_ntlm_wrong_password(packets: list[Packet]) -> list[str]:
    p: list[str] = []
    codes = statuses(packets)
    _expect(p, _ntlm_on_one_stream(packets), "Type 1/2/3 not on one connection")
    _expect(p, 200 not in codes and bool(codes) and codes[-1] == 401, f"statuses: {codes}")
    return p


def check_ntlm_curl_type1(packets: list[Packet]) -> list[str]:
    p: list[str] = []
    codes = statuses(packets)
    types = _ntlm_types(packets)
    _expect(p, 1 in types and 2 not in types and 3 not in types, f"NTLM types {types}")
    _expect(p, "ntlm" in _auth_schemes(packets), "no Authorization: NTLM")
    _expect(p, 200 not in codes and bool(codes) and codes[-1] == 401, f"statuses: {codes}")
    return p


def check_fallback(packets: list[Packet]) -> list[str]:
    p: list[str] = []
    codes = statuses(packets)
    _expect(p, 7 in kdc_errors(packets), "no S_PRINCIPAL_UNKNOWN (7) from the KDC")
    _expect(p, f"HTTP/{ALIAS.name}" in tgs_services(packets), "no TGS-REQ for HTTP/alias")
    _expect(p, "negotiate" in _auth_schemes(packets), "no Authorization: Negotiate")
    _expect(p, {1, 3} <= _ntlm_types(packets), "no NTLM inside Negotiate")
    _expect(p, bool(codes) and codes[-1] == 200, f"last status not 200: {codes}")
    return p


def _check_ap_error(host: str, errors: set[int]) -> Callable[[list[Packet]], list[str]]:
    """The KDC issues the ticket for ``HTTP/<host>`` (no error but PREAUTH_REQUIRED), the
    client sends it in an AP-REQ, and the server refuses it with one of ``errors`` inside the
    401's Negotiate token; nothing succeeds."""

    def check(packets: list[Packet]) -> list[str]:
        p: list[str] = []
        codes = statuses(packets)
        http = _http(packets)
        _expect(p, f"HTTP/{host}" in tgs_services(packets), f"no TGS-REQ for HTTP/{host}")
        _expect(p, not kdc_errors(packets) - {25}, f"KDC errors {kdc_errors(packets)}")
        _expect(p, any(14 in x.kerberos_types for x in http if x.method), "no AP-REQ in HTTP")
        ap_errors = {e for x in http if x.status for e in x.kerberos_errors}
        _expect(p, bool(ap_errors & errors), f"no AP error {errors} from the server: {ap_errors}")
        _expect(p, 200 not in codes and codes[-1:] == [401], f"statuses: {codes}")
        return p

    return check


# MIT answers an undecryptable ticket with BADKEYVER (44) or BAD_INTEGRITY (31), never MODIFIED.
check_ticket_rejected = _check_ap_error(BADKEY.name, {31, 41, 44})
check_clock_skew = _check_ap_error(WEB.name, {37})  # KRB_AP_ERR_SKEW


def check_chromium_ntlm_then_kerberos(packets: list[Packet]) -> list[str]:
    p: list[str] = []
    http = _http(packets)
    requests = [x for x in http if x.method]
    codes = statuses(packets)
    _expect(p, all("HeadlessChrome" in x.user_agent for x in requests), "not Chromium")
    _expect(p, _ntlm_types(packets) == {1}, f"NTLM types {_ntlm_types(packets)}")
    _expect(p, _auth_schemes(packets) == {"ntlm", "negotiate"}, "not NTLM then Negotiate")
    _expect(p, f"HTTP/{WEB.name}" in tgs_services(packets), "no TGS-REQ for HTTP/web.lab.test")
    _expect(p, any(14 in x.kerberos_types for x in requests), "no AP-REQ in HTTP")
    _expect(p, codes[:2] == [401, 401] and 200 in codes, f"statuses: {codes}")
    return p


def _requests_and_responses(packets: list[Packet]) -> list[tuple[Packet, Packet]]:
    """Pair each request with the next response on its TCP connection (HTTP/1.1 in order)."""
    pending: dict[int | None, list[Packet]] = {}
    pairs = []
    for x in _http(packets):
        if x.method:
            pending.setdefault(x.stream, []).append(x)
        elif x.status is not None and pending.get(x.stream):
            pairs.append((pending[x.stream].pop(0), x))
    return pairs


def _challenge_before(pairs: list[tuple[Packet, Packet]], request: Packet) -> str | None:
    """The last NTLM Type 2 challenge sent on ``request``'s connection before it."""
    last = None
    for q, r in pairs:
        if q.stream != request.stream or q.frame >= request.frame:
            continue
        if 2 in r.ntlm_types:
            last = "|".join(r.www_authenticate)
    return last


def split_handshakes(packets: list[Packet]) -> list[tuple[Packet, Packet]]:
    """(client Type 3, its upstream copy) where the upstream connection carrying the Type 3 is
    not the one whose Type 2 the client answered.

    Tokens pass through nginx verbatim, so the Type 2 (unique server challenge) and the Type 3
    (unique client challenge) tie each client leg to its upstream legs.
    """
    pairs = _requests_and_responses(packets)
    upstream = [(q, r) for q, r in pairs if q.src == UPSTREAM_SOURCE.address]
    client_leg = [(q, r) for q, r in pairs if q.dst == REVERSE_PROXY.address]
    found = []
    for q, _ in client_leg:
        if 3 not in q.ntlm_types:
            continue
        answered = _challenge_before(client_leg, q)
        for uq, _ in upstream:
            if uq.authorization == q.authorization and uq.frame > q.frame:
                if _challenge_before(upstream, uq) != answered:
                    found.append((q, uq))
                break
    return found


def check_pooling_proxy(packets: list[Packet]) -> list[str]:
    p: list[str] = []
    pairs = _requests_and_responses(packets)
    upstream = [q for q, _ in pairs if q.src == UPSTREAM_SOURCE.address]
    client_leg = [(q, r) for q, r in pairs if q.dst == REVERSE_PROXY.address]
    _expect(p, bool(upstream) and bool(client_leg), "one leg of the proxy is missing")
    split = split_handshakes(packets)
    split_frames = {q.frame for q, _ in split}
    rejected = [r for q, r in client_leg if q.frame in split_frames and r.status == 401]
    _expect(p, bool(split), "no Type 3 forwarded on another upstream connection than its Type 2")
    _expect(p, bool(rejected), "no split Type 3 answered 401")
    return p


def _leg(
    pairs: list[tuple[Packet, Packet]], src: str | None = None, dst: str | None = None
) -> list[tuple[Packet, Packet]]:
    return [
        (q, r) for q, r in pairs if (src is None or q.src == src) and (dst is None or q.dst == dst)
    ]


def _upstream_streams(upstream: list[tuple[Packet, Packet]], client: str) -> list[int | None]:
    """The upstream connections that carried requests relayed for ``client`` (X-Forwarded-For),
    in the order of their first such request."""
    streams: list[int | None] = []
    for q, _ in upstream:
        if q.forwarded_for.split(",")[0].strip() == client and q.stream not in streams:
            streams.append(q.stream)
    return streams


def _second_client_on_new_connection(
    p: list[str], packets: list[Packet]
) -> list[tuple[Packet, Packet]]:
    """The second client's first request through HAProxy is anonymous, is relayed on an
    upstream connection that carried nothing of the first client, and is answered 401 there.
    Returns the front leg's (request, response) pairs."""
    pairs = _requests_and_responses(packets)
    front = _leg(pairs, dst=BALANCER.address)
    upstream = _leg(pairs, src=BALANCER_SOURCE.address)
    second = [(q, r) for q, r in front if q.src == CLIENT2.address]
    _expect(p, bool(second), "no request from the second client")
    if not second:
        return front
    first_q, first_r = second[0]
    _expect(p, not first_q.authorization, "the second client's first request has credentials")
    _expect(p, first_r.status == 401, f"second client's first answer {first_r.status}")
    first_streams = set(_upstream_streams(upstream, CLIENT.address))
    second_streams = _upstream_streams(upstream, CLIENT2.address)
    _expect(p, bool(first_streams), "no upstream request relayed for the first client")
    _expect(p, bool(second_streams), "no upstream request relayed for the second client")
    _expect(
        p,
        not first_streams & set(second_streams),
        "the second client's requests shared an upstream connection with the first's",
    )
    relayed = [(q, r) for q, r in upstream if q.stream in second_streams]
    _expect(p, bool(relayed) and relayed[0][1].status == 401, "relayed first request not 401")
    return front


def check_haproxy_two_users(packets: list[Packet]) -> list[str]:
    p: list[str] = []
    front = _second_client_on_new_connection(p, packets)
    for client in (CLIENT, CLIENT2):
        mine = [(q, r) for q, r in front if q.src == client.address]
        types = {t for q, _ in mine for t in q.ntlm_types}
        codes = [r.status for _, r in mine]
        _expect(p, {1, 3} <= types, f"{client.name} did not send Type 1 and Type 3")
        _expect(p, codes[-1:] == [200], f"{client.name} statuses {codes}")
        _expect(p, len({q.stream for q, _ in mine}) == 1, f"{client.name} used several connections")
    return p


def check_haproxy_second_anonymous(packets: list[Packet]) -> list[str]:
    p: list[str] = []
    front = _second_client_on_new_connection(p, packets)
    first = [r.status for q, r in front if q.src == CLIENT.address]
    second = [(q, r) for q, r in front if q.src == CLIENT2.address]
    _expect(p, first[-2:] == [200, 200], f"first client statuses {first}")
    _expect(p, all(not q.authorization for q, _ in second), "the second client sent credentials")
    _expect(p, {r.status for _, r in second} == {401}, "the second client got something else")
    return p


def substituted(pairs: list[tuple[Packet, Packet]]) -> list[tuple[Packet, Packet]]:
    """Upstream (request, response) pairs relayed for the second client without credentials
    and answered 200 on an upstream connection where the first client's Type 3 got 200."""
    upstream = [(q, r) for q, r in pairs if q.dst == WEB.address]
    authenticated: set[int | None] = set()
    found = []
    for q, r in upstream:
        relayed_for = q.forwarded_for.split(",")[0].strip()
        if relayed_for == CLIENT.address and 3 in q.ntlm_types and r.status == 200:
            authenticated.add(q.stream)
        elif (
            relayed_for == CLIENT2.address
            and not q.authorization
            and r.status == 200
            and q.stream in authenticated
        ):
            found.append((q, r))
    return found


def check_modproxy_substitution(packets: list[Packet]) -> list[str]:
    p: list[str] = []
    pairs = _requests_and_responses(packets)
    front = _leg(pairs, dst=APACHE_PROXY.address)
    upstream = _leg(pairs, src=MODPROXY_UPSTREAM_SOURCE, dst=WEB.address)
    _expect(p, bool(front) and bool(upstream), "one leg of the proxy is missing")
    second = [(q, r) for q, r in front if q.src == CLIENT2.address]
    _expect(p, bool(second), "no request from the second client")
    _expect(p, all(not q.authorization for q, _ in second), "the second client sent credentials")
    _expect(p, bool(second) and second[0][1].status == 200, "second client's first answer not 200")
    _expect(p, bool(substituted(upstream)), "no anonymous 200 on the first user's connection")
    return p


def check_modproxy_rewrite_substitution(packets: list[Packet]) -> list[str]:
    """As check_modproxy_substitution, through the /app/ mount: the front
    requests ask for /app/..., their upstream copies for the path without it."""
    p = check_modproxy_substitution(packets)
    pairs = _requests_and_responses(packets)
    front = _leg(pairs, dst=APACHE_PROXY.address)
    upstream = _leg(pairs, src=MODPROXY_UPSTREAM_SOURCE, dst=WEB.address)
    _expect(p, all(q.uri.startswith("/app/") for q, _ in front), "a front path without /app/")
    _expect(p, not any(q.uri.startswith("/app/") for q, _ in upstream), "an upstream /app/ path")
    return p


def check_haproxy_server_close(packets: list[Packet]) -> list[str]:
    p: list[str] = []
    pairs = _requests_and_responses(packets)
    front = _leg(pairs, src=CLIENT.address, dst=BALANCER.address)
    upstream = _leg(pairs, src=BALANCER_SOURCE.address)
    codes = [r.status for _, r in front]
    _expect(p, len({q.stream for q, _ in front}) == 1, "the client used several connections")
    _expect(p, {1, 3} <= {t for q, _ in front for t in q.ntlm_types}, "no Type 1 and Type 3")
    _expect(p, bool(codes) and set(codes) == {401}, f"client statuses {codes}")
    per_stream: dict[int | None, int] = {}
    for q, _ in upstream:
        per_stream[q.stream] = per_stream.get(q.stream, 0) + 1
    _expect(p, len(per_stream) >= 3, f"upstream connections {len(per_stream)}")
    _expect(p, set(per_stream.values()) == {1}, "an upstream connection carried two requests")
    type1 = {q.stream for q, _ in upstream if 1 in q.ntlm_types}
    type3 = {q.stream for q, _ in upstream if 3 in q.ntlm_types}
    _expect(p, bool(type1) and bool(type3) and not type1 & type3, "Type 1/3 on one connection")
    _expect(p, all("close" in q.connection.lower() for q, _ in upstream), "no Connection: close")
    return p


def check_chromium_type1(packets: list[Packet]) -> list[str]:
    p: list[str] = []
    codes = statuses(packets)
    http = _http(packets)
    requests = [x for x in http if x.method]
    types = _ntlm_types(packets)
    _expect(p, all("HeadlessChrome" in x.user_agent for x in requests), "not Chromium")
    _expect(p, bool(requests) and not requests[0].authorization, "first request has credentials")
    _expect(p, 1 in types and 2 not in types and 3 not in types, f"NTLM types {types}")
    _expect(p, "ntlm" in _auth_schemes(packets), "no Authorization: NTLM")
    _expect(p, bool(codes) and set(codes) == {401}, f"statuses: {codes}")
    return p


def check_client_ignores_negotiate(packets: list[Packet]) -> list[str]:
    p: list[str] = []
    codes = statuses(packets)
    _expect(p, len(codes) >= 2 and set(codes) == {401}, f"statuses: {codes}")
    _expect(p, _challenge_schemes(packets) == {"negotiate"}, "challenge is not Negotiate only")
    _expect(p, not _auth_schemes(packets), "the client sent credentials")
    return p


def check_basic_to_negotiate(packets: list[Packet]) -> list[str]:
    p: list[str] = []
    codes = statuses(packets)
    _expect(p, _auth_schemes(packets) == {"basic"}, "no Authorization: Basic")
    _expect(p, _challenge_schemes(packets) == {"negotiate"}, "challenge is not Negotiate only")
    _expect(p, bool(codes) and set(codes) == {401}, f"statuses: {codes}")
    return p


def _check_simple(scheme: str, success: bool) -> Callable[[list[Packet]], list[str]]:
    def check(packets: list[Packet]) -> list[str]:
        p: list[str] = []
        codes = statuses(packets)
        _expect(p, bool(codes) and codes[0] == 401, f"first status not 401: {codes}")
        _expect(p, scheme in _challenge_schemes(packets), f"no {scheme} challenge")
        _expect(p, scheme in _auth_schemes(packets), f"no Authorization: {scheme}")
        want = 200 if success else 401
        _expect(p, codes[-1:] == [want], f"last status not {want}: {codes}")
        if not success:
            _expect(p, 200 not in codes, f"a 200 was sent: {codes}")
        return p

    return check


def check_proxy_407(packets: list[Packet]) -> list[str]:
    p: list[str] = []
    to_proxy = [x for x in _http(packets) if PROXY.address in (x.src, x.dst)]
    codes = statuses(to_proxy)
    _expect(p, codes.count(407) >= 3, f"fewer than three 407s: {codes}")
    _expect(p, 200 in codes, f"no 200 through the proxy: {codes}")
    challenged = schemes(tuple(a for x in to_proxy for a in x.proxy_authenticate))
    sent = schemes(tuple(a for x in to_proxy for a in x.proxy_authorization))
    _expect(p, challenged == {"basic"}, f"Proxy-Authenticate schemes {challenged}")
    _expect(p, sent == {"basic"}, f"Proxy-Authorization schemes {sent}")
    return p


# --- producers --------------------------------------------------------------------------------


def _kerberos_curl(host: str) -> Callable[[Lab], str]:
    def produce(lab: Lab) -> str:
        kinit(lab)
        return curl(lab, "--negotiate", "-u", ":", url(host, "/krb/ok.txt"))

    return produce


def _kerberos_spnego(lab: Lab) -> str:
    kinit(lab)
    return python_client(lab, "spnego", url(WEB.name, "/krb/ok.txt"))


CLOCK_AHEAD = "+1h"
"""How far the client's clock runs ahead (MIT's default tolerance is 5 minutes)."""


def _clock_skew(lab: Lab) -> str:
    """A client whose clock runs an hour ahead of the server's, with a ticket from before.

    The TGT and the service ticket are fetched at the right time (a skewed TGS-REQ would be
    refused by the KDC itself, which is another capture); then curl runs under faketime, so
    the authenticator of its AP-REQ is dated an hour ahead and Apache refuses it.
    """
    kinit(lab)
    run(["kvno", f"HTTP/{WEB.name}"], env=lab.client_env(), timeout=20)
    return curl(
        lab,
        "--negotiate",
        "-u",
        ":",
        url(WEB.name, "/krb/ok.txt"),
        wrapper=("faketime", "-f", CLOCK_AHEAD),
    )


def _chromium_with_ticket(lab: Lab) -> str:
    """Chromium with URL credentials and a Kerberos ticket: which does it try, in what order?"""
    kinit(lab)
    return chromium(lab, CHROMIUM_URL, f"--auth-server-allowlist={WEB.name}", ticket=True)


def _preemptive(lab: Lab) -> str:
    kinit(lab)
    return python_client(lab, "spnego-preemptive", url(WEB.name, "/krb/ok.txt"))


def _fallback(lab: Lab) -> str:
    kinit(lab)
    return python_client(
        lab, "negotiate", url(ALIAS.name, "/ntlm/ok.txt"), str(lab.ccache), USER, PASSWORD
    )


def _proxy(lab: Lab) -> str:
    proxy = f"http://{PROXY.name}:{PROXY_PORT}"
    target = url(WEB.name, "/open/ok.txt")
    notes = [
        curl(lab, "-x", proxy, target),
        curl(lab, "-x", proxy, "--proxy-anyauth", "-U", f"{PROXY_USER}:{PROXY_PASSWORD}", target),
        curl(lab, "-x", proxy, "--proxy-anyauth", "-U", f"{PROXY_USER}:{WRONG_PASSWORD}", target),
    ]
    return "; ".join(notes)


NTLM_URL = url(WEB.name, "/ntlm/ok.txt")
BALANCER_URL = url(BALANCER.name, "/ntlm/ok.txt")
BALANCER_CLOSE_URL = url(f"{BALANCER.name}:{BALANCER_CLOSE_PORT}", "/ntlm/ok.txt")
APACHE_PROXY_URL = url(APACHE_PROXY.name, "/ntlm/ok.txt")
# The same resource through the proxy's rewriting mount (ProxyPass /app/ -> /).
APACHE_PROXY_REWRITE_URL = url(APACHE_PROXY.name, "/app/ntlm/ok.txt")
# Chromium on Linux has no logged-on user's credentials: the URL's are the only ones it has
# without a prompt. It strips them from the request; they never reach the wire.
CHROMIUM_URL = url(f"{NTLM_DOMAIN}%5C{USER}:{PASSWORD}@{WEB.name}", "/ntlm/ok.txt")

SCENARIOS: tuple[Scenario, ...] = (
    # curl --negotiate sends its token on the first request (no anonymous 401), so the
    # textbook success is made with requests-gssapi, which waits for the challenge.
    Scenario(
        "kerberos-success", frozenset({KDC, APACHE}), _kerberos_spnego, check_kerberos_success
    ),
    Scenario(
        "kerberos-preemptive", frozenset({KDC, APACHE}), _preemptive, check_kerberos_preemptive
    ),
    Scenario(
        "ntlm-success",
        frozenset({APACHE}),
        lambda lab: python_client(lab, "ntlm", NTLM_URL, USER, PASSWORD, "2"),
        check_ntlm_success,
    ),
    Scenario(
        "ntlm-wrong-password",
        frozenset({APACHE}),
        lambda lab: python_client(lab, "ntlm", NTLM_URL, USER, WRONG_PASSWORD),
        check_ntlm_wrong_password,
    ),
    Scenario(
        "ntlm-curl-type1-rejected",
        frozenset({APACHE}),
        lambda lab: curl(lab, "--ntlm", "-u", f"LAB\\{USER}:{PASSWORD}", NTLM_URL),
        check_ntlm_curl_type1,
    ),
    Scenario("negotiate-fallback-spn-unknown", frozenset({KDC, APACHE}), _fallback, check_fallback),
    Scenario(
        "kerberos-ticket-rejected",
        frozenset({KDC, APACHE}),
        _kerberos_curl(BADKEY.name),
        check_ticket_rejected,
    ),
    Scenario(
        "ntlm-pooling-proxy",
        frozenset({APACHE, NGINX}),
        lambda lab: python_client(
            lab,
            "ntlm-concurrent",
            url(REVERSE_PROXY.name, "/ntlm/ok.txt"),
            USER,
            PASSWORD,
            "6",
            "2",
        ),
        check_pooling_proxy,
        attempts=8,
    ),
    Scenario(
        "client-ignores-negotiate",
        frozenset({APACHE}),
        # Two transfers on one connection; curl's -o applies to one URL, so repeat it.
        lambda lab: curl(
            lab, url(WEB.name, "/krb/ok.txt"), "-o", "/dev/null", url(WEB.name, "/krb/ok.txt")
        ),
        check_client_ignores_negotiate,
    ),
    Scenario(
        "basic-to-negotiate-only",
        frozenset({APACHE}),
        lambda lab: curl(lab, "--basic", "-u", f"{USER}:{PASSWORD}", url(WEB.name, "/krb/ok.txt")),
        check_basic_to_negotiate,
    ),
    Scenario(
        "basic-success",
        frozenset({APACHE}),
        lambda lab: curl(
            lab, "--anyauth", "-u", f"{USER}:{PASSWORD}", url(WEB.name, "/basic/ok.txt")
        ),
        _check_simple("basic", success=True),
    ),
    Scenario(
        "basic-wrong-password",
        frozenset({APACHE}),
        lambda lab: curl(
            lab, "--anyauth", "-u", f"{USER}:{WRONG_PASSWORD}", url(WEB.name, "/basic/ok.txt")
        ),
        _check_simple("basic", success=False),
    ),
    Scenario(
        "digest-success",
        frozenset({APACHE}),
        lambda lab: curl(
            lab, "--digest", "-u", f"{USER}:{PASSWORD}", url(WEB.name, "/digest/ok.txt")
        ),
        _check_simple("digest", success=True),
    ),
    Scenario(
        "digest-wrong-password",
        frozenset({APACHE}),
        lambda lab: curl(
            lab, "--digest", "-u", f"{USER}:{WRONG_PASSWORD}", url(WEB.name, "/digest/ok.txt")
        ),
        _check_simple("digest", success=False),
    ),
    Scenario("proxy-407", frozenset({APACHE, SQUID}), _proxy, check_proxy_407),
    Scenario(
        "haproxy-two-users",
        frozenset({APACHE, HAPROXY}),
        lambda lab: python_client(lab, "two-users", BALANCER_URL),
        check_haproxy_two_users,
    ),
    Scenario(
        "haproxy-second-anonymous",
        frozenset({APACHE, HAPROXY}),
        lambda lab: python_client(lab, "second-anonymous", BALANCER_URL),
        check_haproxy_second_anonymous,
    ),
    Scenario(
        "haproxy-server-close",
        frozenset({APACHE, HAPROXY}),
        lambda lab: python_client(lab, "ntlm", BALANCER_CLOSE_URL, USER, PASSWORD),
        check_haproxy_server_close,
    ),
    Scenario(
        "modproxy-user-substitution",
        frozenset({APACHE, MODPROXY}),
        lambda lab: python_client(lab, "second-anonymous", APACHE_PROXY_URL),
        check_modproxy_substitution,
        attempts=4,
    ),
    Scenario(
        "modproxy-rewrite-user-substitution",
        frozenset({APACHE, MODPROXY}),
        lambda lab: python_client(lab, "second-anonymous", APACHE_PROXY_REWRITE_URL),
        check_modproxy_rewrite_substitution,
        attempts=4,
    ),
    Scenario(
        "chromium-ntlm-type1-rejected",
        frozenset({APACHE}),
        lambda lab: chromium(lab, CHROMIUM_URL, f"--auth-server-allowlist={WEB.name}"),
        check_chromium_type1,
    ),
    Scenario(
        "chromium-ntlm-refused-kerberos-works",
        frozenset({KDC, APACHE}),
        _chromium_with_ticket,
        check_chromium_ntlm_then_kerberos,
    ),
    Scenario("kerberos-clock-skew", frozenset({KDC, APACHE}), _clock_skew, check_clock_skew),
)

BY_NAME = {s.name: s for s in SCENARIOS}
