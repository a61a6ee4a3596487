"""The lab's captures (captures/lab/) hold what captures/lab/README.md says they hold.

Wireshark's dissectors are the oracle: each test reads a capture with tshark and checks the
HTTP statuses, the schemes of challenges and credentials, the NTLM message types, and the
Kerberos messages and error codes the table promises. Skips only when tshark is absent.
"""

from __future__ import annotations

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


def test_captures_stay_small() -> None:
    total = sum(p.stat().st_size for p in CAPTURES.glob("*.pcap"))
    assert 0 < total < 2_000_000
