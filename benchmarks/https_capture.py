"""Write the TLS benchmark capture and its key log: HTTPS keep-alive connections whose HTTP/1.1
inside carries NTLM and Negotiate handshakes and bodies (issue 12).

This module owns that generated capture. Each connection is a TLS session (RFC 5246 for TLS 1.2,
RFC 8446 for TLS 1.3) of its own: hellos, the server certificate, then the HTTP/1.1 bytes of an
NTLM handshake (anonymous 401, NEGOTIATE, 401 CHALLENGE, AUTHENTICATE, 200) or of a Negotiate
one (anonymous 401, SPNEGO with a Kerberos AP-REQ, 200 with an AP-REP), then keep-alive
requests answered with bodies of 20-200 KB, in records of at most 2^14 bytes, segmented at the
MSS by benchmarks/make_capture.py's TcpFlow (with its few retransmissions and reorderings).
Two connections in three are TLS 1.2 ECDHE-RSA-AES128-GCM-SHA256, one in three TLS 1.3
TLS_AES_128_GCM_SHA256.

Keys: random per connection and written to an NSS key log (`CLIENT_RANDOM` with the master
secret for TLS 1.2; the four traffic secrets for TLS 1.3), so that both authtrace
(`--tls-keylog`) and tshark (`-o tls.keylog_file:K`) decrypt everything. The key exchange
values, signatures and Finished MACs are random bytes of the right size: neither tool checks
them against keys it does not have.

Invariants: deterministic (connection count and seed give the same bytes, apart from the one
self-signed certificate, made fresh each run); memory bounded by the connections open at once
(generators merged by a heap, as in auth_dense.py).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.auth_dense import (
    HOST,
    SERVER,
    START_GAP_US,
    Packet,
    kerberos_ap_req,
    ntlm_authenticate,
    ntlm_challenge,
)
from benchmarks.make_capture import (
    DEFAULT_OUT,
    TcpFlow,
    _b64,
    interleave,
    kerberos_ap_rep,
    ntlm_negotiate,
    spnego_init,
    spnego_resp,
    write_frames,
)

SIZES = (2000, 4000)
MAX_PLAINTEXT = 2**14  # RFC 8446 section 5.1, RFC 5246 section 6.2.1
TLS12_SUITE = 0xC02F  # TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 (RFC 5289)
TLS13_SUITE = 0x1301  # TLS_AES_128_GCM_SHA256
_OFFER = ["WWW-Authenticate: Negotiate", "WWW-Authenticate: NTLM"]


def _certificate() -> bytes:
    """One self-signed server certificate (DER), for every connection."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


# -- TLS byte builders -------------------------------------------------------------------------


def _u16(n: int) -> bytes:
    return n.to_bytes(2, "big")


def _u24(n: int) -> bytes:
    return n.to_bytes(3, "big")


def _vec8(data: bytes) -> bytes:
    return bytes([len(data)]) + data


def _vec16(data: bytes) -> bytes:
    return _u16(len(data)) + data


def _handshake(kind: int, body: bytes) -> bytes:
    """RFC 8446 section 4 / RFC 5246 section 7.4: type, 24-bit length, body."""
    return bytes([kind]) + _u24(len(body)) + body


def _record(content_type: int, body: bytes, version: int = 0x0303) -> bytes:
    return bytes([content_type]) + _u16(version) + _u16(len(body)) + body


def _extension(kind: int, data: bytes) -> bytes:
    return _u16(kind) + _vec16(data)


def client_hello(rng: random.Random, random_bytes: bytes, tls13: bool) -> bytes:
    extensions = [
        _extension(0, _vec16(b"\x00" + _vec16(HOST.encode()))),  # server_name (RFC 6066)
        _extension(10, _vec16(_u16(0x001D) + _u16(0x0017))),  # supported_groups
        _extension(13, _vec16(_u16(0x0804) + _u16(0x0403))),  # signature_algorithms
        _extension(16, _vec16(_vec8(b"http/1.1"))),  # ALPN (RFC 7301)
    ]
    if tls13:
        extensions.append(_extension(43, _vec8(_u16(0x0304))))  # supported_versions
        extensions.append(_extension(51, _vec16(_u16(0x001D) + _vec16(rng.randbytes(32)))))
    else:
        extensions.append(_extension(11, _vec8(b"\x00")))  # ec_point_formats
    suites = _u16(TLS13_SUITE) if tls13 else _u16(TLS12_SUITE)
    session = rng.randbytes(32) if tls13 else b""
    body = (
        _u16(0x0303)
        + random_bytes
        + _vec8(session)
        + _vec16(suites)
        + _vec8(b"\x00")
        + _vec16(b"".join(extensions))
    )
    return _handshake(1, body)


def server_hello(rng: random.Random, random_bytes: bytes, tls13: bool) -> bytes:
    if tls13:
        extensions = _extension(43, _u16(0x0304)) + _extension(
            51, _u16(0x001D) + _vec16(rng.randbytes(32))
        )
        suite, session = TLS13_SUITE, rng.randbytes(32)
    else:
        extensions = _extension(16, _vec16(_vec8(b"http/1.1"))) + _extension(11, _vec8(b"\x00"))
        suite, session = TLS12_SUITE, rng.randbytes(32)
    body = _u16(0x0303) + random_bytes + _vec8(session) + _u16(suite) + b"\x00"
    return _handshake(2, body + _vec16(extensions))


def certificate_message(certificate: bytes, tls13: bool) -> bytes:
    if tls13:  # RFC 8446 section 4.4.2: a context, then entries with extensions
        entry = _u24(len(certificate)) + certificate + _vec16(b"")
        return _handshake(11, b"\x00" + _u24(len(entry)) + entry)
    entry = _u24(len(certificate)) + certificate
    return _handshake(11, _u24(len(entry)) + entry)


def _prf_sha256(secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """RFC 5246 section 5: P_SHA256(secret, label + seed)."""
    seed = label + seed
    out, a = b"", seed
    while len(out) < length:
        a = hmac.new(secret, a, hashlib.sha256).digest()
        out += hmac.new(secret, a + seed, hashlib.sha256).digest()
    return out[:length]


def _hkdf_expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    """RFC 8446 section 7.1, with an empty context, SHA-256 (one block is enough here)."""
    info = _u16(length) + _vec8(b"tls13 " + label) + _vec8(b"")
    return hmac.new(secret, info + b"\x01", hashlib.sha256).digest()[:length]


class _Sealer:
    """Protects the records one side sends: TLS 1.2 AES-GCM with an explicit nonce
    (RFC 5288 section 3), or TLS 1.3 AES-GCM with the inner content type (RFC 8446 5.2)."""

    def __init__(self, key: bytes, iv: bytes, tls13: bool) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(key)
        self._iv = iv
        self._tls13 = tls13
        self._sequence = 0

    def seal(self, content_type: int, plaintext: bytes) -> bytes:
        sequence = self._sequence
        self._sequence += 1
        if self._tls13:
            inner = plaintext + bytes([content_type])
            nonce = (int.from_bytes(self._iv, "big") ^ sequence).to_bytes(12, "big")
            header = bytes([23]) + _u16(0x0303) + _u16(len(inner) + 16)
            return header + self._aead.encrypt(nonce, inner, header)
        explicit = sequence.to_bytes(8, "big")
        aad = explicit + bytes([content_type]) + _u16(0x0303) + _u16(len(plaintext))
        body = explicit + self._aead.encrypt(self._iv + explicit, plaintext, aad)
        return _record(content_type, body)

    def data(self, plaintext: bytes) -> bytes:
        """Application data in records of at most 2^14 bytes."""
        return b"".join(
            self.seal(23, plaintext[i : i + MAX_PLAINTEXT])
            for i in range(0, len(plaintext), MAX_PLAINTEXT)
        )


class TlsSession:
    """The two sealers of one connection and the key log lines that open them."""

    def __init__(self, rng: random.Random, tls13: bool, certificate: bytes) -> None:
        self.tls13 = tls13
        self.client_random = rng.randbytes(32)
        self.server_random = rng.randbytes(32)
        self.certificate = certificate
        self.keylog: list[str] = []
        cr = self.client_random.hex()
        if tls13:
            secrets = {name: rng.randbytes(32) for name in ("ch", "sh", "ca", "sa")}
            labels = {
                "ch": "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
                "sh": "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                "ca": "CLIENT_TRAFFIC_SECRET_0",
                "sa": "SERVER_TRAFFIC_SECRET_0",
            }
            for name, label in labels.items():
                self.keylog.append(f"{label} {cr} {secrets[name].hex()}")

            def sealer(secret: bytes) -> _Sealer:
                key = _hkdf_expand_label(secret, b"key", 16)
                return _Sealer(key, _hkdf_expand_label(secret, b"iv", 12), True)

            self.client_handshake = sealer(secrets["ch"])
            self.server_handshake = sealer(secrets["sh"])
            self.client = sealer(secrets["ca"])
            self.server = sealer(secrets["sa"])
        else:
            master = rng.randbytes(48)
            self.keylog.append(f"CLIENT_RANDOM {cr} {master.hex()}")
            # RFC 5246 section 6.3: client key, server key, client IV, server IV (AEAD: no MAC).
            block = _prf_sha256(
                master, b"key expansion", self.server_random + self.client_random, 40
            )
            self.client = _Sealer(block[0:16], block[32:36], False)
            self.server = _Sealer(block[16:32], block[36:40], False)

    def client_flight(self, rng: random.Random) -> bytes:
        return _record(22, client_hello(rng, self.client_random, self.tls13), 0x0301)

    def server_flight(self, rng: random.Random) -> bytes:
        hello = _record(22, server_hello(rng, self.server_random, self.tls13))
        cert = certificate_message(self.certificate, self.tls13)
        if self.tls13:
            encrypted = (
                _handshake(8, _vec16(_extension(16, _vec16(_vec8(b"http/1.1")))))
                + cert
                + _handshake(15, _u16(0x0804) + _vec16(rng.randbytes(256)))
                + _handshake(20, rng.randbytes(32))
            )
            return hello + _record(20, b"\x01") + self.server_handshake.seal(22, encrypted)
        key_exchange = b"\x03" + _u16(0x0017) + _vec8(b"\x04" + rng.randbytes(64))
        key_exchange += _u16(0x0401) + _vec16(rng.randbytes(256))
        return hello + _record(22, cert + _handshake(12, key_exchange) + _handshake(14, b""))

    def client_finish(self, rng: random.Random) -> bytes:
        if self.tls13:
            return _record(20, b"\x01") + self.client_handshake.seal(
                22, _handshake(20, rng.randbytes(32))
            )
        key_exchange = _handshake(16, _vec8(b"\x04" + rng.randbytes(64)))
        return (
            _record(22, key_exchange)
            + _record(20, b"\x01")
            + self.client.seal(22, _handshake(20, rng.randbytes(12)))
        )

    def server_finish(self, rng: random.Random) -> bytes:
        if self.tls13:
            return b""  # the server's Finished was in its first flight
        return _record(20, b"\x01") + self.server.seal(22, _handshake(20, rng.randbytes(12)))


# -- HTTP inside -------------------------------------------------------------------------------


def _request(path: str, auth: str | None) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {HOST}",
        "User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) benchmark",
        "Accept: */*",
    ]
    if auth:
        lines.append(f"Authorization: {auth}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def _response(status: int, headers: list[str], body: bytes) -> bytes:
    reason = {200: "OK", 401: "Unauthorized"}[status]
    lines = [
        f"HTTP/1.1 {status} {reason}",
        "Server: Microsoft-IIS/10.0",
        *headers,
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


_DENIED = b"<html><head><title>401 - Unauthorized</title></head><body>401</body></html>\r\n"


def _conversation(rng: random.Random, index: int) -> list[tuple[bytes, bytes]]:
    """(request, response) pairs of one connection, in HTTP/1.1 bytes."""
    pairs = [(_request("/", None), _response(401, _OFFER, _DENIED))]
    if index % 4 == 3:  # Negotiate with Kerberos
        token = _b64(spnego_init(["1.2.840.48018.1.2.2"], kerberos_ap_req(rng, HOST)))
        final = "WWW-Authenticate: Negotiate " + _b64(spnego_resp(0, None, kerberos_ap_rep(rng)))
        body = rng.randbytes(rng.randint(2_000, 20_000))
        pairs.append((_request("/", f"Negotiate {token}"), _response(200, [final], body)))
    else:
        stamp = 133_600_000_000_000_000 + rng.getrandbits(40)
        challenge = "WWW-Authenticate: NTLM " + _b64(ntlm_challenge(rng, stamp))
        pairs.append(
            (_request("/", "NTLM " + _b64(ntlm_negotiate())), _response(401, [challenge], _DENIED))
        )
        authenticate = "NTLM " + _b64(ntlm_authenticate(rng, f"user{index % 97}", stamp))
        body = rng.randbytes(rng.randint(2_000, 20_000))
        pairs.append((_request("/", authenticate), _response(200, ["Persistent-Auth: true"], body)))
    for n in range(rng.randint(2, 4)):
        body = rng.randbytes(rng.randint(20_000, 200_000))
        pairs.append((_request(f"/files/{n}.bin", None), _response(200, [], body)))
    return pairs


def https_connection(
    rng: random.Random,
    flow: TcpFlow,
    index: int,
    certificate: bytes,
    keylog: list[str],
    perturb: bool = True,
) -> Iterator[Packet]:
    session = TlsSession(rng, index % 3 == 2, certificate)
    keylog.extend(session.keylog)
    yield from flow.handshake()
    yield from flow.send(True, session.client_flight(rng), rng.randint(50, 400), perturb)
    yield from flow.send(False, session.server_flight(rng), rng.randint(300, 3000), perturb)
    yield from flow.send(True, session.client_finish(rng), rng.randint(50, 400), perturb)
    finish = session.server_finish(rng)
    if finish:
        yield from flow.send(False, finish, rng.randint(300, 3000), perturb)
    for request, response in _conversation(rng, index):
        yield from flow.send(True, session.client.data(request), rng.randint(50, 400), perturb)
        yield from flow.send(False, session.server.data(response), rng.randint(300, 3000), perturb)
    yield from flow.close()


def capture_paths(out_dir: Path, connections: int, seed: int = 1) -> tuple[Path, Path]:
    stem = out_dir / f"https-{connections}-seed{seed}"
    return stem.with_suffix(".pcap"), stem.with_suffix(".keys")


def packets(
    connections: int, seed: int, keylog: list[str], perturb: bool = True
) -> Iterator[Packet]:
    """All frames in time order (µs), merged from the interleaved connections; each
    connection's key log lines are added to `keylog` when it starts."""
    certificate = _certificate()
    starts = random.Random(f"https:{seed}:starts")

    def sources() -> Iterator[tuple[int, Iterator[Packet]]]:
        next_start = 1_700_000_000_000_000
        for started in range(connections):
            rng = random.Random(f"https:{seed}:{started}")
            client = bytes([10, 1, (started >> 8) & 0xFF, (started & 0xFF) or 1])
            flow = TcpFlow(rng, client, SERVER, 20000 + started % 40000, 443)
            yield next_start, https_connection(rng, flow, started, certificate, keylog, perturb)
            next_start += starts.randint(*START_GAP_US)

    return interleave(sources())


def write_capture(
    path: Path, keys: Path, connections: int, seed: int = 1, perturb: bool = True
) -> tuple[int, int]:
    """Write the capture (classic pcap, Ethernet) and its key log; returns (packets,
    bytes written). perturb: a few segments retransmitted or out of order."""
    keylog: list[str] = []
    count, written = write_frames(path, packets(connections, seed, keylog, perturb))
    keys.write_text("\n".join(keylog) + "\n")
    return count, written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("connections", type=int)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    path, keys = capture_paths(args.out, args.connections, args.seed)
    started = time.perf_counter()
    packets, written = write_capture(path, keys, args.connections, args.seed)
    print(
        f"{path} (+ {keys.name}): {packets} packets, {written / 1e6:.1f} MB in "
        f"{time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
