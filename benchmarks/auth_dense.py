"""Write the auth-dense benchmark captures: every connection authenticates (issue 10).

This module owns the three generated profiles that `benchmarks.auth` times `analyze` on:

- `proxy`: a web server behind a reverse proxy. Every connection comes from the proxy's one
  address; each is a full NTLM handshake (anonymous 401, NEGOTIATE, 401 CHALLENGE,
  AUTHENTICATE, 200) with short bodies, then one or two requests on the authenticated
  connection.
- `kerberos`: many clients, each asking the KDC (UDP port 88) for a ticket for HTTP/<host>,
  then a Negotiate handshake (anonymous 401, SPNEGO NegTokenInit with an AP-REQ, 200 with an
  AP-REP).
- `mix`: a few hundred clients doing mostly NTLM handshakes, with NTLM handshakes split across
  two connections (the CHALLENGE's connection closed by the server), wrong passwords, clients
  that never answer the Negotiate offer, Kerberos with its TGS exchange, and Basic over
  cleartext sprinkled in, so that every rule family has work.

Invariants (as in make_capture.py, whose frame and token builders this reuses):
- Deterministic: profile, connection count and seed give the same bytes; connection `i` draws
  from its own RNG seeded with (profile, seed, i).
- Memory is bounded by the connections open at one moment (a heap merges the generators).
- Every NTLM AUTHENTICATE copies the MsvAvTimestamp of the CHALLENGE it answers
  (MS-NLMP 3.1.5.1.2), as Windows does; every token is fresh random bytes.

Addresses are from 10.0.0.0/8; nothing is sent anywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import struct
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from benchmarks.make_capture import (
    _ETH_C2S,
    _ETH_S2C,
    _NTLM_VERSION,
    DEFAULT_OUT,
    KRB5,
    MS_KRB5,
    NTLMSSP,
    TcpFlow,
    _b64,
    _ctx,
    _der,
    _fields,
    _general_string,
    _int,
    _ipv4,
    _ones_complement,
    authenticate_message,
    interleave,
    kerberos_ap_rep,
    ntlm_negotiate,
    spnego_init,
    spnego_resp,
    write_frames,
)

PROFILES = ("proxy", "kerberos", "mix")
SIZES = (4000, 8000, 16000)
KDC = bytes([10, 0, 0, 10])
SERVER = bytes([10, 2, 0, 20])
PROXY = bytes([10, 9, 0, 1])
HOST = "web01.contoso.test"
REALM = "CONTOSO.TEST"
# A new connection starts every 20-60 ms: a few dozen are open at once, and 16k
# connections span about 11 minutes (longer than the 600 s follow-up window).
START_GAP_US = (20_000, 60_000)

Packet = tuple[int, bytes]


@dataclasses.dataclass(frozen=True, slots=True)
class Stats:
    """What was written."""

    packets: int
    connections: int
    bytes_written: int


# ---------------------------------------------------------------------------------------------
# Tokens (MS-NLMP 2.2.1.2, 2.2.1.3, 2.2.2.1; RFC 4120 5.3, 5.4.1, 5.4.2)


def _target_info(timestamp: int, client_side: bool) -> bytes:
    out = b""
    for av_id, text in (
        (2, "CONTOSO"),
        (1, "WEB01"),
        (4, "contoso.test"),
        (3, "web01.contoso.test"),
    ):
        value = text.encode("utf-16-le")
        out += struct.pack("<HH", av_id, len(value)) + value
    out += struct.pack("<HHQ", 7, 8, timestamp)  # MsvAvTimestamp
    if client_side:
        out += struct.pack("<HHI", 6, 4, 2)  # MsvAvFlags: MIC present
    return out + struct.pack("<HH", 0, 0)


def ntlm_challenge(rng: random.Random, timestamp: int) -> bytes:
    """CHALLENGE_MESSAGE (MS-NLMP 2.2.1.2) with a fresh server challenge and `timestamp`."""
    target = "CONTOSO".encode("utf-16-le")
    info = _target_info(timestamp, client_side=False)
    return (
        b"NTLMSSP\x00"
        + struct.pack("<I", 2)
        + _fields(len(target), 56)
        + struct.pack("<I", 0xE28A8215)
        + rng.randbytes(8)
        + b"\x00" * 8
        + _fields(len(info), 56 + len(target))
        + _NTLM_VERSION
        + target
        + info
    )


def ntlm_authenticate(rng: random.Random, user: str, timestamp: int) -> bytes:
    """AUTHENTICATE_MESSAGE (2.2.1.3) with an NTLMv2 response (2.2.2.8) answering the
    CHALLENGE that carried `timestamp`, and a MIC."""
    payload = [
        b"\x00" * 24,
        rng.randbytes(16)
        + struct.pack("<BBHIQ", 1, 1, 0, 0, timestamp)
        + rng.randbytes(8)
        + b"\x00" * 4
        + _target_info(timestamp, client_side=True)
        + b"\x00" * 4,
        "CONTOSO".encode("utf-16-le"),
        user.encode("utf-16-le"),
        f"PC{rng.randint(100, 999)}".encode("utf-16-le"),
        rng.randbytes(16),
    ]
    return authenticate_message(payload, rng.randbytes(16))


def _principal(name_type: int, *parts: str) -> bytes:
    # RFC 4120 5.2.2 PrincipalName.
    names = b"".join(_general_string(p) for p in parts)
    return _der(0x30, _ctx(0, _int(name_type)) + _ctx(1, _der(0x30, names)))


def _encrypted(rng: random.Random, size: int, kvno: int | None = None) -> bytes:
    body = _ctx(0, _int(18)) + (_ctx(1, _int(kvno)) if kvno is not None else b"")
    return _der(0x30, body + _ctx(2, _der(0x04, rng.randbytes(size))))


def _ticket(rng: random.Random, sname: bytes, size: int) -> bytes:
    # RFC 4120 5.3 Ticket ::= [APPLICATION 1].
    body = _ctx(0, _int(5)) + _ctx(1, _general_string(REALM)) + _ctx(2, sname)
    return _der(0x61, _der(0x30, body + _ctx(3, _encrypted(rng, size, 3))))


def _time(seconds: int) -> bytes:
    return _der(0x18, time.strftime("%Y%m%d%H%M%SZ", time.gmtime(seconds)).encode("ascii"))


def tgs_req(rng: random.Random, host: str, when: int) -> bytes:
    """TGS-REQ ([APPLICATION 12], RFC 4120 5.4.1) for HTTP/host with a PA-TGS-REQ."""
    tgt = _ticket(rng, _principal(2, "krbtgt", REALM), 1000)
    ap_req = _ap_req(b"\x00\x00\x00\x00\x00", tgt, _encrypted(rng, 260))
    padata = _der(0x30, _der(0x30, _ctx(1, _int(1)) + _ctx(2, _der(0x04, ap_req))))
    body = _der(
        0x30,
        _ctx(0, _der(0x03, b"\x00\x40\x81\x00\x10"))
        + _ctx(2, _general_string(REALM))
        + _ctx(3, _principal(2, "HTTP", host))
        + _ctx(5, _time(when + 36000))
        + _ctx(7, _int(rng.getrandbits(31)))
        + _ctx(8, _der(0x30, b"".join(_int(e) for e in (18, 17, 23)))),
    )
    return _der(
        0x6C, _der(0x30, _ctx(1, _int(5)) + _ctx(2, _int(12)) + _ctx(3, padata) + _ctx(4, body))
    )


def tgs_rep(rng: random.Random, user: str, host: str) -> bytes:
    """TGS-REP ([APPLICATION 13], RFC 4120 5.4.2) carrying a ticket for HTTP/host."""
    return _der(
        0x6D,
        _der(
            0x30,
            _ctx(0, _int(5))
            + _ctx(1, _int(13))
            + _ctx(3, _general_string(REALM))
            + _ctx(4, _principal(1, user))
            + _ctx(5, _ticket(rng, _principal(2, "HTTP", host), 1100))
            + _ctx(6, _encrypted(rng, 300)),
        ),
    )


def _ap_req(options: bytes, ticket: bytes, authenticator: bytes) -> bytes:
    """AP-REQ ([APPLICATION 14], RFC 4120 5.5.1): ap-options, ticket, encrypted authenticator."""
    body = _ctx(0, _int(5)) + _ctx(1, _int(14)) + _ctx(2, _der(0x03, options))
    return _der(0x6E, _der(0x30, body + _ctx(3, ticket) + _ctx(4, authenticator)))


def kerberos_ap_req(rng: random.Random, host: str) -> bytes:
    """RFC 4121 4.1 krb5 GSS token around an AP-REQ (RFC 4120 5.5.1), mutual-required."""
    ticket = _ticket(rng, _principal(2, "HTTP", host), 1100)
    ap_req = _ap_req(b"\x00\x20\x00\x00\x00", ticket, _encrypted(rng, 250))
    return _der(0x60, b"\x06\x09\x2a\x86\x48\x86\xf7\x12\x01\x02\x02" + b"\x01\x00" + ap_req)


# ---------------------------------------------------------------------------------------------
# HTTP on a flow


def _request(path: str, auth: str | None, close: bool = False) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {HOST}",
        "User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) benchmark",
        "Accept: text/html,*/*",
        "Connection: " + ("close" if close else "keep-alive"),
    ]
    if auth:
        lines.append(f"Authorization: {auth}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


_DENIED = b"<html><head><title>401 - Unauthorized</title></head><body>401</body></html>\r\n"


def _response(status: int, headers: list[str], body: bytes) -> bytes:
    reason = {200: "OK", 401: "Unauthorized"}[status]
    lines = [
        f"HTTP/1.1 {status} {reason}",
        "Server: Microsoft-IIS/10.0",
        "Date: Mon, 03 Jun 2024 10:00:00 GMT",
        *headers,
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


class Http:
    """Exchanges on one TCP flow, yielding (delay µs, frame)."""

    def __init__(self, rng: random.Random, flow: TcpFlow) -> None:
        self.rng, self.flow = rng, flow

    def exchange(
        self, auth: str | None, status: int, headers: list[str], close: bool = False
    ) -> Iterator[Packet]:
        rng = self.rng
        body = _DENIED if status == 401 else rng.randbytes(rng.randint(300, 1200))
        yield from self.flow.send(True, _request("/app/default.aspx", auth), rng.randint(50, 400))
        head = headers + (["Connection: close"] if close else [])
        yield from self.flow.send(False, _response(status, head, body), rng.randint(300, 3000))


_OFFER = ["WWW-Authenticate: Negotiate", "WWW-Authenticate: NTLM"]


def _stamp(rng: random.Random) -> int:
    return 133_600_000_000_000_000 + rng.getrandbits(40)


def ntlm_connection(
    rng: random.Random, flow: TcpFlow, user: str, wrong_password: bool = False
) -> Iterator[Packet]:
    """Anonymous 401, NEGOTIATE, CHALLENGE, AUTHENTICATE, then 200 (or 401 on a wrong
    password), then requests on the authenticated connection."""
    http = Http(rng, flow)
    yield from flow.handshake()
    yield from http.exchange(None, 401, _OFFER)
    stamp = _stamp(rng)
    challenge = "WWW-Authenticate: NTLM " + _b64(ntlm_challenge(rng, stamp))
    yield from http.exchange("NTLM " + _b64(ntlm_negotiate()), 401, [challenge])
    authenticate = "NTLM " + _b64(ntlm_authenticate(rng, user, stamp))
    if wrong_password:
        yield from http.exchange(authenticate, 401, _OFFER)
    else:
        yield from http.exchange(authenticate, 200, ["Persistent-Auth: true"])
        for _ in range(rng.randint(1, 2)):
            yield (rng.randint(2000, 20000), b"")
            yield from http.exchange(None, 200, [])
    yield from flow.close()


def split_connection(
    rng: random.Random, first: TcpFlow, second: TcpFlow, user: str, server_closes: bool
) -> Iterator[Packet]:
    """NEGOTIATE/CHALLENGE on `first`; the AUTHENTICATE arrives on `second` and is refused.
    server_closes: the CHALLENGE said `Connection: close` (a middlebox rewriting it); else the
    client's pooled connections mixed the legs up (a proxy without NTLM support)."""
    http = Http(rng, first)
    yield from first.handshake()
    yield from http.exchange(None, 401, _OFFER)
    stamp = _stamp(rng)
    challenge = "WWW-Authenticate: NTLM " + _b64(ntlm_challenge(rng, stamp))
    negotiate = "NTLM " + _b64(ntlm_negotiate())
    yield from http.exchange(negotiate, 401, [challenge], close=server_closes)
    if server_closes:
        yield from first.close()
    yield from second.handshake()
    authenticate = "NTLM " + _b64(ntlm_authenticate(rng, user, stamp))
    yield from Http(rng, second).exchange(authenticate, 401, _OFFER)
    yield from second.close()
    if not server_closes:
        yield from first.close()


def kerberos_connection(
    rng: random.Random, flow: TcpFlow, client: bytes, user: str, when_s: int
) -> Iterator[Packet]:
    """TGS exchange for HTTP/host on UDP 88, then Negotiate with the AP-REQ, 200 + AP-REP."""
    port = 50000 + rng.randrange(15000)
    yield from _udp(True, client, port, tgs_req(rng, HOST, when_s), 0)
    yield from _udp(False, client, port, tgs_rep(rng, user, HOST), rng.randint(300, 2000))
    http = Http(rng, flow)
    yield from flow.handshake()
    yield from http.exchange(None, 401, ["WWW-Authenticate: Negotiate"])
    init = spnego_init([MS_KRB5, KRB5, NTLMSSP], kerberos_ap_req(rng, HOST))
    final = spnego_resp(0, MS_KRB5, kerberos_ap_rep(rng))
    yield from http.exchange(
        "Negotiate " + _b64(init), 200, ["WWW-Authenticate: Negotiate " + _b64(final)]
    )
    yield (rng.randint(2000, 20000), b"")
    yield from http.exchange(None, 200, [])
    yield from flow.close()


def ignores_negotiate(rng: random.Random, flow: TcpFlow) -> Iterator[Packet]:
    """The client never answers the offer (a browser not configured for the site)."""
    http = Http(rng, flow)
    yield from flow.handshake()
    yield from http.exchange(None, 401, _OFFER)
    yield from flow.close()


def basic_connection(rng: random.Random, flow: TcpFlow, user: str) -> Iterator[Packet]:
    import base64

    http = Http(rng, flow)
    yield from flow.handshake()
    yield from http.exchange(None, 401, ['WWW-Authenticate: Basic realm="web01"'])
    secret = base64.b64encode(f"{user}:P@ss{rng.randint(0, 9999)}".encode()).decode()
    yield from http.exchange("Basic " + secret, 200, [])
    yield from flow.close()


def _udp(to_kdc: bool, client: bytes, port: int, payload: bytes, delay: int) -> Iterator[Packet]:
    src, dst = (client, KDC) if to_kdc else (KDC, client)
    sp, dp = (port, 88) if to_kdc else (88, port)
    udp = struct.pack("!HHHH", sp, dp, 8 + len(payload), 0) + payload
    pseudo = src + dst + struct.pack("!BBH", 0, 17, len(udp))
    udp = udp[:6] + struct.pack("!H", _ones_complement(pseudo + udp)) + udp[8:]
    ident = int.from_bytes(payload[-2:], "big")
    yield (delay, (_ETH_C2S if to_kdc else _ETH_S2C) + _ipv4(src, dst, 17, len(udp), ident) + udp)


# ---------------------------------------------------------------------------------------------
# Profiles


@dataclasses.dataclass(frozen=True, slots=True)
class Shape:
    """What varies between captures of one profile."""

    seed: int = 1
    clients: int | None = None  # client addresses (None: the profile's own)
    users: int | None = None  # user names (None: the profile's own number)
    start_us: int = 1_717_408_800_000_000  # first connection: 2024-06-03 10:00:00 UTC

    def client(self, index: int, default: int) -> bytes:
        """Client address number index % clients, from 10.20.0.1 on (host octets 1-254)."""
        n = index % (self.clients or default)
        return bytes([10, 20 + n // (254 * 256), n // 254 % 256, n % 254 + 1])

    def user(self, index: int, spread: int) -> str:
        return f"user{self.seed}x{index % (self.users or spread)}"


def proxy_profile(rng: random.Random, index: int, when_s: int, shape: Shape) -> Iterator[Packet]:
    client = PROXY if shape.clients is None else shape.client(index, 1)
    flow = TcpFlow(rng, client, SERVER, 1024 + (index * 7) % 64000, 80)
    return ntlm_connection(rng, flow, shape.user(index, 997))


def kerberos_profile(rng: random.Random, index: int, when_s: int, shape: Shape) -> Iterator[Packet]:
    client = shape.client(index, 1 << 20)
    flow = TcpFlow(rng, client, SERVER, 49152 + index % 16000, 80)
    return kerberos_connection(rng, flow, client, shape.user(index, 997), when_s)


def mix_profile(rng: random.Random, index: int, when_s: int, shape: Shape) -> Iterator[Packet]:
    client = shape.client(index, 300)
    port = 1024 + (index * 13) % 60000
    flow = TcpFlow(rng, client, SERVER, port, 80)
    user = shape.user(index, 211)
    roll = rng.random()
    if roll < 0.05:
        second = TcpFlow(rng, client, SERVER, 1024 + (port + 30011) % 64000, 80)
        return split_connection(rng, flow, second, user, server_closes=roll < 0.025)
    if roll < 0.08:
        return ntlm_connection(rng, flow, user, wrong_password=True)
    if roll < 0.10:
        return ignores_negotiate(rng, flow)
    if roll < 0.15:
        return kerberos_connection(rng, flow, client, user, when_s)
    if roll < 0.16:
        return basic_connection(rng, flow, user)
    return ntlm_connection(rng, flow, user)


_PROFILE: dict[str, Callable[[random.Random, int, int, Shape], Iterator[Packet]]] = {
    "proxy": proxy_profile,
    "kerberos": kerberos_profile,
    "mix": mix_profile,
}


def packets(profile: str, connections: int, shape: Shape) -> Iterator[Packet]:
    """All packets in timestamp order, merged from the interleaved connections."""
    make = _PROFILE[profile]
    seed = shape.seed
    starts = random.Random(f"{profile}:{seed}:starts")

    def sources() -> Iterator[tuple[int, Iterator[Packet]]]:
        next_start = shape.start_us
        for started in range(connections):
            rng = random.Random(f"{profile}:{seed}:{started}")
            yield next_start, make(rng, started, next_start // 1_000_000, shape)
            next_start += starts.randint(*START_GAP_US)

    return interleave(sources())


def write_pcap(
    path: Path, profile: str, connections: int, seed: int = 1, shape: Shape | None = None
) -> Stats:
    """Write the capture (classic pcap, Ethernet) and return what it holds."""
    n, written = write_frames(path, packets(profile, connections, shape or Shape(seed)))
    return Stats(n, connections, written)


def capture_path(out_dir: Path, profile: str, connections: int, seed: int = 1) -> Path:
    return out_dir / f"auth-{profile}-{connections}-seed{seed}.pcap"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", choices=PROFILES)
    parser.add_argument("connections", type=int)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="file (default benchmarks/out/)")
    args = parser.parse_args(argv)
    path = args.out or capture_path(DEFAULT_OUT, args.profile, args.connections, args.seed)
    started = time.perf_counter()
    stats = write_pcap(path, args.profile, args.connections, args.seed)
    print(
        f"{path}: {stats.packets} packets, {stats.connections} connections, "
        f"{stats.bytes_written / 1e6:.1f} MB in {time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
