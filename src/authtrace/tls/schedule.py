"""Key schedules: from the secrets a key log gives to the keys of each direction.

Owns: the TLS 1.0-1.2 PRF and key block (RFC 2246 section 5, RFC 5246
sections 5 and 6.3) and TLS 1.3's HKDF-Expand-Label, traffic keys and key
update (RFC 8446 sections 7.1, 7.2 and 7.3). The master secret itself comes
from the key log (CLIENT_RANDOM), so how it was made (extended master secret,
RFC 7627, or not; ECDHE, DHE or RSA key exchange) does not matter here.

Invariant: pure functions of their inputs; primitives (HMAC, HKDF-Expand)
come from `cryptography`.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from authtrace.tls.suites import Suite

_HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384}
_DIGEST_SIZE = {"sha1": 20, "sha256": 32, "sha384": 48, "md5": 16}


@dataclass(frozen=True, slots=True)
class DirectionKeys:
    """What protects one direction: the cipher key, the IV (TLS 1.3 and
    ChaCha20: the full nonce base; GCM/CCM in TLS 1.2: the implicit salt;
    CBC in TLS 1.0: the first IV) and the HMAC key of a CBC suite."""

    key: bytes
    iv: bytes
    mac_key: bytes = b""


def _p_hash(name: str, secret: bytes, seed: bytes, length: int) -> bytes:
    """RFC 5246 section 5: P_hash(secret, seed) = HMAC(secret, A(1) + seed) + ...
    with A(0) = seed and A(i) = HMAC(secret, A(i-1))."""
    out = bytearray()
    a = seed
    while len(out) < length:
        a = hmac.new(secret, a, name).digest()
        out += hmac.new(secret, a + seed, name).digest()
    return bytes(out[:length])


def prf(version: int, suite: Suite, secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """PRF(secret, label, seed). TLS 1.2: P_<suite hash>; TLS 1.0 and 1.1 (RFC
    2246 section 5): P_MD5 over the secret's first half XOR P_SHA1 over its
    second half (the halves share the middle byte when its length is odd)."""
    if version >= 0x0303:
        return _p_hash(suite.prf_hash, secret, label + seed, length)
    half = (len(secret) + 1) // 2
    md5 = _p_hash("md5", secret[:half], label + seed, length)
    sha = _p_hash("sha1", secret[-half:], label + seed, length)
    return bytes(x ^ y for x, y in zip(md5, sha, strict=True))


def tls12_keys(
    version: int, suite: Suite, master: bytes, client_random: bytes, server_random: bytes
) -> tuple[DirectionKeys, DirectionKeys]:
    """(client write keys, server write keys) from the key block, RFC 5246
    section 6.3: MAC keys, then cipher keys, then IVs, client first each time."""
    mac = suite.mac_length
    key = suite.key_length
    iv = suite.fixed_iv_length
    block = prf(
        version,
        suite,
        master,
        b"key expansion",
        server_random + client_random,
        2 * (mac + key + iv),
    )
    parts = []
    pos = 0
    for size in (mac, mac, key, key, iv, iv):
        parts.append(block[pos : pos + size])
        pos += size
    client_mac, server_mac, client_key, server_key, client_iv, server_iv = parts
    return (
        DirectionKeys(client_key, client_iv, client_mac),
        DirectionKeys(server_key, server_iv, server_mac),
    )


def hkdf_expand_label(
    hash_name: str, secret: bytes, label: bytes, context: bytes, length: int
) -> bytes:
    """RFC 8446 section 7.1: HKDF-Expand(secret, HkdfLabel, length) with
    HkdfLabel = uint16 length, opaque label<7..255> = "tls13 " + label,
    opaque context<0..255>."""
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + bytes([len(context)]) + context
    return HKDFExpand(_HASHES[hash_name](), length, info).derive(secret)


def tls13_keys(suite: Suite, traffic_secret: bytes) -> DirectionKeys:
    """RFC 8446 section 7.3: [sender]_write_key and _iv from a traffic secret."""
    return DirectionKeys(
        hkdf_expand_label(suite.prf_hash, traffic_secret, b"key", b"", suite.key_length),
        hkdf_expand_label(suite.prf_hash, traffic_secret, b"iv", b"", 12),
    )


def next_traffic_secret(suite: Suite, traffic_secret: bytes) -> bytes:
    """RFC 8446 section 7.2: application_traffic_secret_N+1 after a KeyUpdate."""
    size = _DIGEST_SIZE[suite.prf_hash]
    return hkdf_expand_label(suite.prf_hash, traffic_secret, b"traffic upd", b"", size)


def digest_size(name: str) -> int:
    return _DIGEST_SIZE[name]


__all__ = [
    "DirectionKeys",
    "digest_size",
    "hkdf_expand_label",
    "next_traffic_secret",
    "prf",
    "tls12_keys",
    "tls13_keys",
]
