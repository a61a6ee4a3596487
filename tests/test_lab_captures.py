"""The lab's captures (captures/lab/) hold what captures/lab/README.md says they hold.

Wireshark's dissectors are the oracle: each test reads a capture with tshark and checks the
HTTP statuses, the schemes of challenges and credentials, the NTLM message types, and the
Kerberos messages and error codes the table promises. Skips only when tshark is absent.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

CAPTURES = Path(__file__).resolve().parent.parent / "captures" / "lab"
TSHARK = shutil.which("tshark")
pytestmark = [
    pytest.mark.oracle,
    pytest.mark.skipif(TSHARK is None, reason="tshark is not installed"),
]

WEB, KDC, PROXY, REVERSE_PROXY, UPSTREAM, CLIENT = (
    "127.0.0.10",
    "127.0.0.11",
    "127.0.0.12",
    "127.0.0.13",
    "127.0.0.14",
    "127.0.0.20",
)
BALANCER, BALANCER_SOURCE, CLIENT2, APACHE_PROXY = (
    "127.0.0.17",
    "127.0.0.18",
    "127.0.0.19",
    "127.0.0.21",
)
MODPROXY_SOURCE = "127.0.0.1"  # mod_proxy cannot choose its source address
FIELDS = (
    "frame.number",
    "ip.src",
    "ip.dst",
    "tcp.stream",
    "udp.port",
    "tcp.port",
    "http.request.method",
    "http.response.code",
    "http.authorization",
    "http.www_authenticate",
    "http.proxy_authorization",
    "http.proxy_authenticate",
    "ntlmssp.messagetype",
    "kerberos.msg_type",
    "kerberos.error_code",
    "kerberos.SNameString",
    "http.x_forwarded_for",
    "http.connection",
    "http.user_agent",
)


@dataclass(frozen=True)
class Row:
    frame: int
    src: str
    dst: str
    stream: str
    kdc: bool
    method: str
    status: int | None
    values: dict[str, tuple[str, ...]]

    def ints(self, field: str) -> set[int]:
        return {int(v, 0) for v in self.values[field]}

    def schemes(self, field: str) -> set[str]:
        return {v.split(" ", 1)[0].lower() for v in self.values[field]}


def read(name: str) -> list[Row]:
    path = CAPTURES / f"{name}.pcap"
    assert path.is_file(), f"capture {path.name} is missing"
    argv = [str(TSHARK), "-n", "-r", str(path), "-Y", "http || kerberos", "-T", "fields"]
    for field in FIELDS:
        argv += ["-e", field]
    argv += ["-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=|"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout
    rows = []
    for line in out.splitlines():
        cols = (line.split("\t") + [""] * len(FIELDS))[: len(FIELDS)]
        values = {f: tuple(v for v in c.split("|") if v) for f, c in zip(FIELDS, cols, strict=True)}
        ports = set(values["udp.port"]) | set(values["tcp.port"])
        status = values["http.response.code"]
        rows.append(
            Row(
                frame=int(cols[0]),
                src=cols[1],
                dst=cols[2],
                stream=cols[3],
                kdc="88" in ports,
                method=cols[6],
                status=int(status[0]) if status else None,
                values=values,
            )
        )
    return rows


def http(rows: list[Row]) -> list[Row]:
    return [r for r in rows if not r.kdc and (r.method or r.status is not None)]


def statuses(rows: list[Row]) -> list[int]:
    return [r.status for r in http(rows) if r.status is not None]


def union(rows: list[Row], attr: str, field: str) -> set:
    return set().union(*(getattr(r, attr)(field) for r in rows)) if rows else set()


def kdc_errors(rows: list[Row]) -> set[int]:
    return union([r for r in rows if r.kdc], "ints", "kerberos.error_code")


def tgs_names(rows: list[Row]) -> set[str]:
    """Service names in TGS-REQs (msg-type 12): the last two name strings, e.g. HTTP/web."""
    names = set()
    for r in rows:
        if r.kdc and 12 in r.ints("kerberos.msg_type"):
            parts = [n for n in r.values["kerberos.SNameString"] if n != "krbtgt"]
            names.add("/".join(parts[-2:]))
    return names


# name -> statuses in order, challenge schemes, credential schemes, NTLM message types,
# KDC error codes, TGS service names, Kerberos errors carried inside HTTP
TABLE = {
    "kerberos-success": ([401, 200], {"negotiate"}, {"negotiate"}, set(), {25},
                         {"HTTP/web.lab.test"}, set()),
    "kerberos-preemptive": ([200], {"negotiate"}, {"negotiate"}, set(), {25},
                            {"HTTP/web.lab.test"}, set()),
    "ntlm-success": ([401, 401, 200, 200], {"negotiate", "ntlm"}, {"ntlm"}, {1, 2, 3}, set(),
                     set(), set()),
    "ntlm-wrong-password": ([401, 401, 401], {"negotiate", "ntlm"}, {"ntlm"}, {1, 2, 3}, set(),
                            set(), set()),
    "ntlm-curl-type1-rejected": ([401, 401], {"negotiate", "ntlm"}, {"ntlm"}, {1}, set(), set(),
                                 set()),
    "negotiate-fallback-spn-unknown": ([401, 401, 200], {"negotiate", "ntlm"}, {"negotiate"},
                                       {1, 2, 3}, {7, 25}, {"HTTP/alias.lab.test"}, set()),
    "kerberos-ticket-rejected": ([401], {"negotiate"}, {"negotiate"}, set(), {25},
                                 {"HTTP/badkey.lab.test"}, {44}),
    "client-ignores-negotiate": ([401, 401], {"negotiate"}, set(), set(), set(), set(), set()),
    "basic-to-negotiate-only": ([401], {"negotiate"}, {"basic"}, set(), set(), set(), set()),
    "basic-success": ([401, 200], {"basic"}, {"basic"}, set(), set(), set(), set()),
    "basic-wrong-password": ([401, 401], {"basic"}, {"basic"}, set(), set(), set(), set()),
    "digest-success": ([401, 200], {"digest"}, {"digest"}, set(), set(), set(), set()),
    "digest-wrong-password": ([401, 401], {"digest"}, {"digest"}, set(), set(), set(), set()),
    # both legs of each proxy, in frame order: upstream answer, then its relay to the client
    "haproxy-two-users": ([401] * 4 + [200] * 2 + [401] * 4 + [200] * 6, {"negotiate", "ntlm"},
                          {"ntlm"}, {1, 2, 3}, set(), set(), set()),
    "haproxy-second-anonymous": ([401] * 4 + [200] * 2 + [401] * 2 + [200] * 2 + [401] * 2,
                                 {"negotiate", "ntlm"}, {"ntlm"}, {1, 2, 3}, set(), set(), set()),
    "haproxy-server-close": ([401] * 6, {"negotiate", "ntlm"}, {"ntlm"}, {1, 2, 3}, set(), set(),
                             set()),
    "modproxy-user-substitution": ([401] * 4 + [200] * 8, {"negotiate", "ntlm"}, {"ntlm"},
                                   {1, 2, 3}, set(), set(), set()),
    "modproxy-rewrite-user-substitution": ([401] * 4 + [200] * 8, {"negotiate", "ntlm"},
                                           {"ntlm"}, {1, 2, 3}, set(), set(), set()),
    "chromium-ntlm-type1-rejected": ([401, 401, 401], {"negotiate", "ntlm"}, {"ntlm"}, {1},
                                     set(), set(), set()),
    "chromium-ntlm-refused-kerberos-works": ([401, 401, 200], {"negotiate", "ntlm"},
                                             {"ntlm", "negotiate"}, {1}, {25},
                                             {"HTTP/web.lab.test"}, set()),
    "kerberos-clock-skew": ([401], {"negotiate"}, {"negotiate"}, set(), {25},
                            {"HTTP/web.lab.test"}, {37}),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(TABLE))
def test_capture_matches_table(name: str) -> None:
    want_status, challenges, credentials, ntlm, kdc, tgs, http_krb_errors = TABLE[name]
    rows = read(name)
    web = http(rows)
    assert statuses(rows) == want_status
    assert union(web, "schemes", "http.www_authenticate") == challenges
    assert union(web, "schemes", "http.authorization") == credentials
    assert union(web, "ints", "ntlmssp.messagetype") == ntlm
    assert kdc_errors(rows) == kdc
    assert tgs_names(rows) == tgs
    assert union([r for r in web if r.status], "ints", "kerberos.error_code") == http_krb_errors
    # every packet stays on the lab's loopback addresses
    assert all(r.src.startswith("127.") and r.dst.startswith("127.") for r in rows)


def test_kerberos_success_carries_ap_req_and_ap_rep() -> None:
    web = http(read("kerberos-success"))
    requests = [r for r in web if r.method]
    assert not requests[0].values["http.authorization"]  # anonymous first
    assert 14 in requests[-1].ints("kerberos.msg_type")  # AP-REQ inside SPNEGO
    assert 15 in web[-1].ints("kerberos.msg_type")  # AP-REP on the 200


def test_preemptive_credentials_are_on_the_first_request() -> None:
    first = next(r for r in http(read("kerberos-preemptive")) if r.method)
    assert first.schemes("http.authorization") == {"negotiate"}
    assert 14 in first.ints("kerberos.msg_type")


def test_ntlm_handshake_is_on_one_connection_and_then_reused() -> None:
    web = http(read("ntlm-success"))
    assert len({r.stream for r in web}) == 1
    requests = [r for r in web if r.method]
    # anonymous, Type 1, Type 3, then a request on the authenticated connection without creds
    assert [r.ints("ntlmssp.messagetype") for r in requests] == [set(), {1}, {3}, set()]


def test_ticket_rejected_server_answers_krb_error_in_negotiate() -> None:
    rows = read("kerberos-ticket-rejected")
    final = http(rows)[-1]
    assert final.status == 401
    assert 30 in final.ints("kerberos.msg_type")  # KRB-ERROR, BADKEYVER (44)


def test_proxy_407_challenge_success_and_wrong_password() -> None:
    rows = read("proxy-407")
    client_leg = [r for r in http(rows) if PROXY in (r.dst, r.src) and CLIENT in (r.src, r.dst)]
    assert statuses(client_leg) == [407, 407, 200, 407, 407]
    assert union(client_leg, "schemes", "http.proxy_authenticate") == {"basic"}
    assert union(client_leg, "schemes", "http.proxy_authorization") == {"basic"}
    upstream = [r for r in http(rows) if r.dst == WEB or r.src == WEB]
    assert statuses(upstream) == [200]
    assert not union(upstream, "schemes", "http.proxy_authorization")  # squid strips it


def test_pooling_proxy_forwards_type3_on_another_upstream_connection() -> None:
    rows = http(read("ntlm-pooling-proxy"))
    client_leg = [r for r in rows if REVERSE_PROXY in (r.src, r.dst)]
    upstream = [r for r in rows if UPSTREAM in (r.src, r.dst)]
    assert client_leg and upstream
    assert all(r.dst == WEB for r in upstream if r.method)

    def last_challenge(leg: list[Row], before: Row) -> tuple[str, ...]:
        seen: tuple[str, ...] = ()
        for r in leg:
            if r.stream == before.stream and r.frame < before.frame and r.status:
                if 2 in r.ints("ntlmssp.messagetype"):
                    seen = r.values["http.www_authenticate"]
        return seen

    split = 0
    for request in (r for r in client_leg if r.method and 3 in r.ints("ntlmssp.messagetype")):
        answered = last_challenge(client_leg, request)
        copy = next(
            u
            for u in upstream
            if u.method
            and u.frame > request.frame
            and u.values["http.authorization"] == request.values["http.authorization"]
        )
        if last_challenge(upstream, copy) != answered:
            split += 1
    assert split >= 1
    assert 401 in statuses(client_leg)


def relayed_for(row: Row) -> str:
    """The client a proxy relayed this request for (first X-Forwarded-For entry)."""
    forwarded = row.values["http.x_forwarded_for"]
    return forwarded[0].split(",")[0].strip() if forwarded else ""


def pairs(rows: list[Row]) -> list[tuple[Row, Row]]:
    """(request, response) per connection, in order (no pipelining in the lab)."""
    pending: dict[str, list[Row]] = {}
    out = []
    for r in http(rows):
        if r.method:
            pending.setdefault(r.stream, []).append(r)
        elif r.status is not None and pending.get(r.stream):
            out.append((pending[r.stream].pop(0), r))
    return out


@pytest.mark.parametrize("name", ["haproxy-two-users", "haproxy-second-anonymous"])
def test_haproxy_relays_a_second_clients_first_request_on_a_new_upstream_connection(
    name: str,
) -> None:
    exchanges = pairs(read(name))
    upstream = [(q, r) for q, r in exchanges if q.src == BALANCER_SOURCE]
    first_user_streams = {q.stream for q, _ in upstream if relayed_for(q) == CLIENT}
    second = [(q, r) for q, r in upstream if relayed_for(q) == CLIENT2]
    assert first_user_streams and second
    request, response = second[0]
    assert not request.values["http.authorization"]
    assert response.status == 401
    # HAProxy keeps the first user's connection to that user even with `http-reuse always`
    assert not first_user_streams & {q.stream for q, _ in second}
    # and the first user's connection stays authenticated: a later request needs no credentials
    last_q, last_r = [(q, r) for q, r in upstream if relayed_for(q) == CLIENT][-1]
    assert not last_q.values["http.authorization"] and last_r.status == 200
    front = [(q, r) for q, r in exchanges if q.dst == BALANCER]
    for client in (CLIENT, CLIENT2):
        assert len({q.stream for q, _ in front if q.src == client}) == 1


def test_haproxy_two_users_both_authenticate_each_on_its_own_connections() -> None:
    exchanges = pairs(read("haproxy-two-users"))
    for client in (CLIENT, CLIENT2):
        front = [(q, r) for q, r in exchanges if q.dst == BALANCER and q.src == client]
        upstream = [(q, r) for q, r in exchanges if relayed_for(q) == client]
        assert [r.status for _, r in front] == [401, 401, 200, 200]
        assert [r.status for _, r in upstream] == [401, 401, 200, 200]
        assert [q.ints("ntlmssp.messagetype") for q, _ in upstream] == [set(), {1}, {3}, set()]


def test_haproxy_second_anonymous_client_is_refused_not_substituted() -> None:
    exchanges = pairs(read("haproxy-second-anonymous"))
    second = [(q, r) for q, r in exchanges if q.src == CLIENT2 and q.dst == BALANCER]
    assert [r.status for _, r in second] == [401, 401]
    assert not any(q.values["http.authorization"] for q, _ in second)


def test_haproxy_server_close_splits_every_ntlm_leg_onto_a_new_connection() -> None:
    exchanges = pairs(read("haproxy-server-close"))
    front = [(q, r) for q, r in exchanges if q.src == CLIENT and q.dst == BALANCER]
    upstream = [(q, r) for q, r in exchanges if q.src == BALANCER_SOURCE]
    # the client answered every challenge on one connection that stayed open
    assert len({q.stream for q, _ in front}) == 1
    assert [q.ints("ntlmssp.messagetype") for q, _ in front] == [set(), {1}, {3}]
    assert [r.status for _, r in front] == [401, 401, 401]
    assert not any(r.values["http.connection"] for _, r in front)
    # upstream: one connection per request, HAProxy asks for the close, Apache closes
    assert len({q.stream for q, _ in upstream}) == 3
    assert [q.ints("ntlmssp.messagetype") for q, _ in upstream] == [set(), {1}, {3}]
    assert 2 in upstream[1][1].ints("ntlmssp.messagetype")  # the CHALLENGE went back
    for q, r in upstream:
        assert q.values["http.connection"] == ("close",)
        assert r.values["http.connection"] == ("close",)


def test_modproxy_hands_the_first_users_connection_to_the_second_client() -> None:
    exchanges = pairs(read("modproxy-user-substitution"))
    upstream = [(q, r) for q, r in exchanges if q.src == MODPROXY_SOURCE and q.dst == WEB]
    front = [(q, r) for q, r in exchanges if q.dst == APACHE_PROXY]
    authenticated = {
        q.stream
        for q, r in upstream
        if relayed_for(q) == CLIENT and 3 in q.ints("ntlmssp.messagetype") and r.status == 200
    }
    assert len(authenticated) == 1
    second_upstream = [(q, r) for q, r in upstream if relayed_for(q) == CLIENT2]
    assert second_upstream
    for q, r in second_upstream:
        assert q.stream in authenticated and not q.values["http.authorization"]
        assert r.status == 200
    second_front = [(q, r) for q, r in front if q.src == CLIENT2]
    assert [r.status for _, r in second_front] == [200, 200]  # never challenged


def test_chromium_sends_a_32_byte_negotiate_that_is_refused() -> None:
    exchanges = pairs(read("chromium-ntlm-type1-rejected"))
    assert all("HeadlessChrome" in q.values["http.user_agent"][0] for q, _ in exchanges)
    credentials = [q.values["http.authorization"] for q, _ in exchanges]
    assert credentials[0] == () and credentials[2] == ()  # anonymous, then anonymous again
    scheme, token = credentials[1][0].split(" ", 1)
    raw = base64.b64decode(token)
    assert scheme == "NTLM" and raw[:8] == b"NTLMSSP\0" and len(raw) == 32
    refused = exchanges[1][1]
    assert refused.status == 401 and not refused.ints("ntlmssp.messagetype")
    assert len({q.stream for q, _ in exchanges}) == 1


def test_chromium_with_a_ticket_tries_ntlm_first_then_kerberos() -> None:
    rows = read("chromium-ntlm-refused-kerberos-works")
    exchanges = pairs(rows)
    assert [q.schemes("http.authorization") for q, _ in exchanges] == [
        set(),
        {"ntlm"},
        {"negotiate"},
    ]
    assert [r.status for _, r in exchanges] == [401, 401, 200]
    assert not exchanges[1][1].ints("ntlmssp.messagetype")  # no CHALLENGE for the NEGOTIATE
    assert 14 in exchanges[2][0].ints("kerberos.msg_type")  # AP-REQ
    # the TGS-REQ for the web server comes after the refused NEGOTIATE, before the AP-REQ
    tgs = [r.frame for r in rows if r.kdc and 12 in r.ints("kerberos.msg_type")]
    assert len(tgs) == 1 and exchanges[1][1].frame < tgs[0] < exchanges[2][0].frame
    assert len({q.stream for q, _ in exchanges}) == 1


def test_clock_skew_is_refused_by_the_server_with_krb_ap_err_skew() -> None:
    rows = read("kerberos-clock-skew")
    ((request, response),) = pairs(rows)
    assert 14 in request.ints("kerberos.msg_type")  # the AP-REQ, with a cached ticket
    assert 30 in response.ints("kerberos.msg_type")
    assert response.ints("kerberos.error_code") == {37}
    # the KDC saw nothing wrong: the tickets were fetched with the right clock
    assert kdc_errors(rows) == {25}


def test_captures_stay_small() -> None:
    total = sum(p.stat().st_size for p in CAPTURES.glob("*.pcap"))
    assert 0 < total < 2_000_000
