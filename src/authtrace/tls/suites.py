"""The cipher suites authtrace can decrypt, and how each protects records.

Owns: the table from a suite's number to its record protection (cipher, key
and IV sizes, MAC and PRF hash). Values from the IANA TLS Cipher Suites
registry and the RFCs that define them: RFC 8446 appendix B.4 (TLS 1.3),
RFC 5246 appendix A.5 and C (CBC and RSA/DHE), RFC 4492/8422 (ECDHE),
RFC 5288/5289 (GCM), RFC 6655 and 7251 (CCM), RFC 7905 (ChaCha20-Poly1305).

Invariant: a suite absent from the table is "not decryptable (UNKNOWN 0x....)";
nothing is guessed from a suite's name.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Cipher(enum.Enum):
    AES_GCM = "AES-GCM"
    AES_CCM = "AES-CCM"
    CHACHA20_POLY1305 = "ChaCha20-Poly1305"
    AES_CBC = "AES-CBC"
    TRIPLE_DES_CBC = "3DES-EDE-CBC"


@dataclass(frozen=True, slots=True)
class Suite:
    """One cipher suite.

    code: its number on the wire; name: its IANA name; tls13: a TLS 1.3 suite
    (its keys come from traffic secrets); key_length and fixed_iv_length: what
    the key block (or HKDF) yields per direction; tag_length: AEAD tag bytes
    (0 for CBC); mac_hash: the HMAC hash of a CBC suite ("" for AEAD); prf_hash:
    the hash of the TLS 1.2 PRF or the TLS 1.3 HKDF.
    """

    code: int
    name: str
    tls13: bool
    cipher: Cipher
    key_length: int
    fixed_iv_length: int
    tag_length: int
    mac_hash: str
    prf_hash: str

    @property
    def aead(self) -> bool:
        return self.tag_length > 0

    @property
    def mac_length(self) -> int:
        return {"": 0, "sha1": 20, "sha256": 32, "sha384": 48}[self.mac_hash]

    @property
    def block_size(self) -> int:
        return 8 if self.cipher is Cipher.TRIPLE_DES_CBC else 16


def _aead13(code: int, name: str, cipher: Cipher, key: int, tag: int, prf: str) -> Suite:
    return Suite(code, name, True, cipher, key, 12, tag, "", prf)


def _gcm(code: int, name: str, key: int, prf: str) -> Suite:
    # RFC 5288 section 3: 4-byte salt from the key block, 8-byte explicit nonce.
    return Suite(code, name, False, Cipher.AES_GCM, key, 4, 16, "", prf)


def _ccm(code: int, name: str, key: int, tag: int) -> Suite:
    # RFC 6655 section 3: as GCM; PRF SHA-256.
    return Suite(code, name, False, Cipher.AES_CCM, key, 4, tag, "", "sha256")


def _chacha(code: int, name: str) -> Suite:
    # RFC 7905 section 2: 12-byte IV from the key block, no explicit nonce.
    return Suite(code, name, False, Cipher.CHACHA20_POLY1305, 32, 12, 16, "", "sha256")


def _cbc(code: int, name: str, key: int, mac: str, cipher: Cipher = Cipher.AES_CBC) -> Suite:
    # RFC 5246 section 6.3: SHA-384 suites use a SHA-384 PRF, the others SHA-256.
    block = 8 if cipher is Cipher.TRIPLE_DES_CBC else 16
    prf = "sha384" if mac == "sha384" else "sha256"
    return Suite(code, name, False, cipher, key, block, 0, mac, prf)


_SUITES = (
    _aead13(0x1301, "TLS_AES_128_GCM_SHA256", Cipher.AES_GCM, 16, 16, "sha256"),
    _aead13(0x1302, "TLS_AES_256_GCM_SHA384", Cipher.AES_GCM, 32, 16, "sha384"),
    _aead13(0x1303, "TLS_CHACHA20_POLY1305_SHA256", Cipher.CHACHA20_POLY1305, 32, 16, "sha256"),
    _aead13(0x1304, "TLS_AES_128_CCM_SHA256", Cipher.AES_CCM, 16, 16, "sha256"),
    _aead13(0x1305, "TLS_AES_128_CCM_8_SHA256", Cipher.AES_CCM, 16, 8, "sha256"),
    _gcm(0x009C, "TLS_RSA_WITH_AES_128_GCM_SHA256", 16, "sha256"),
    _gcm(0x009D, "TLS_RSA_WITH_AES_256_GCM_SHA384", 32, "sha384"),
    _gcm(0x009E, "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", 16, "sha256"),
    _gcm(0x009F, "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", 32, "sha384"),
    _gcm(0xC02B, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", 16, "sha256"),
    _gcm(0xC02C, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", 32, "sha384"),
    _gcm(0xC02F, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", 16, "sha256"),
    _gcm(0xC030, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", 32, "sha384"),
    _ccm(0xC09C, "TLS_RSA_WITH_AES_128_CCM", 16, 16),
    _ccm(0xC09D, "TLS_RSA_WITH_AES_256_CCM", 32, 16),
    _ccm(0xC09E, "TLS_DHE_RSA_WITH_AES_128_CCM", 16, 16),
    _ccm(0xC09F, "TLS_DHE_RSA_WITH_AES_256_CCM", 32, 16),
    _ccm(0xC0A0, "TLS_RSA_WITH_AES_128_CCM_8", 16, 8),
    _ccm(0xC0A1, "TLS_RSA_WITH_AES_256_CCM_8", 32, 8),
    _ccm(0xC0A2, "TLS_DHE_RSA_WITH_AES_128_CCM_8", 16, 8),
    _ccm(0xC0A3, "TLS_DHE_RSA_WITH_AES_256_CCM_8", 32, 8),
    _ccm(0xC0AC, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM", 16, 16),
    _ccm(0xC0AD, "TLS_ECDHE_ECDSA_WITH_AES_256_CCM", 32, 16),
    _ccm(0xC0AE, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8", 16, 8),
    _ccm(0xC0AF, "TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8", 32, 8),
    _chacha(0xCCA8, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
    _chacha(0xCCA9, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
    _chacha(0xCCAA, "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
    _cbc(0x002F, "TLS_RSA_WITH_AES_128_CBC_SHA", 16, "sha1"),
    _cbc(0x0035, "TLS_RSA_WITH_AES_256_CBC_SHA", 32, "sha1"),
    _cbc(0x003C, "TLS_RSA_WITH_AES_128_CBC_SHA256", 16, "sha256"),
    _cbc(0x003D, "TLS_RSA_WITH_AES_256_CBC_SHA256", 32, "sha256"),
    _cbc(0x0033, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA", 16, "sha1"),
    _cbc(0x0039, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA", 32, "sha1"),
    _cbc(0x0067, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256", 16, "sha256"),
    _cbc(0x006B, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256", 32, "sha256"),
    _cbc(0xC009, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", 16, "sha1"),
    _cbc(0xC00A, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", 32, "sha1"),
    _cbc(0xC013, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", 16, "sha1"),
    _cbc(0xC014, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", 32, "sha1"),
    _cbc(0xC023, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", 16, "sha256"),
    _cbc(0xC024, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", 32, "sha384"),
    _cbc(0xC027, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", 16, "sha256"),
    _cbc(0xC028, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384", 32, "sha384"),
    _cbc(0x000A, "TLS_RSA_WITH_3DES_EDE_CBC_SHA", 24, "sha1", Cipher.TRIPLE_DES_CBC),
    _cbc(0x0016, "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA", 24, "sha1", Cipher.TRIPLE_DES_CBC),
    _cbc(0xC012, "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", 24, "sha1", Cipher.TRIPLE_DES_CBC),
)

SUITES: dict[int, Suite] = {suite.code: suite for suite in _SUITES}


def suite_name(code: int) -> str:
    """The IANA name of a suite authtrace knows, else `UNKNOWN (0x....)`."""
    suite = SUITES.get(code)
    return suite.name if suite is not None else f"UNKNOWN (0x{code:04x})"
