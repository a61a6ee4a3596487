"""Record protection: opens one protected TLS record.

Owns: the per-direction record decryption state (keys and the implicit
sequence number) and the record formats: TLS 1.3 AEAD with the inner content
type (RFC 8446 section 5.2-5.3), TLS 1.2 AEAD with an explicit nonce for GCM
and CCM (RFC 5288 section 3, RFC 6655 section 3) or the XORed sequence for
ChaCha20-Poly1305 (RFC 7905 section 2), and CBC with HMAC, MAC-then-encrypt
(RFC 5246 section 6.2.3.2; TLS 1.0's chained IV, RFC 2246 section 6.2.3.2) or
encrypt-then-MAC (RFC 7366 section 3).

Invariant: `open` returns only plaintext whose tag or MAC verified; anything
else raises `ProtectionError`. The sequence number advances for every record
offered, opened or not (the sender counted it).
"""

from __future__ import annotations

import hmac
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher as _Cipher
from cryptography.hazmat.primitives.ciphers import algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

from authtrace.tls.schedule import DirectionKeys
from authtrace.tls.suites import Cipher, Suite

try:  # cryptography 43 moved 3DES to the "decrepit" algorithms
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover - older cryptography
    TripleDES = algorithms.TripleDES  # type: ignore[attr-defined,misc]

_SEQ = struct.Struct("!Q")
_AAD_TAIL = struct.Struct("!B2sH")


class ProtectionError(ValueError):
    """A record that did not open: wrong key, damaged or cut record."""


class RecordOpener:
    """Opens the records one direction sends under one set of keys.

    version: the negotiated version (0x0301-0x0304); encrypt_then_mac: RFC 7366
    was negotiated (CBC only)."""

    def __init__(
        self, suite: Suite, version: int, keys: DirectionKeys, encrypt_then_mac: bool = False
    ) -> None:
        self.suite = suite
        self.version = version
        self.keys = keys
        self.encrypt_then_mac = encrypt_then_mac
        self.sequence = 0
        self._chained_iv = keys.iv  # TLS 1.0 CBC only
        cipher = suite.cipher
        if cipher is Cipher.AES_GCM:
            self._aead: AESGCM | AESCCM | ChaCha20Poly1305 | None = AESGCM(keys.key)
        elif cipher is Cipher.AES_CCM:
            self._aead = AESCCM(keys.key, tag_length=suite.tag_length)
        elif cipher is Cipher.CHACHA20_POLY1305:
            self._aead = ChaCha20Poly1305(keys.key)
        else:
            self._aead = None

    def find_sequence(
        self, content_type: int, legacy_version: bytes, payload: bytes, candidates: list[int]
    ) -> int | None:
        """The first of `candidates` under which the record opens (after a gap,
        when the number of lost records is unknown), None when none does.
        Changes no state (not the sequence number, not TLS 1.0's chained IV)."""
        for sequence in candidates:
            try:
                self._open_at(sequence, content_type, legacy_version, payload)
            except ProtectionError:
                continue
            return sequence
        return None

    def open(self, content_type: int, legacy_version: bytes, payload: bytes) -> tuple[int, bytes]:
        """(content type, plaintext) of one record whose header said
        `content_type` and `legacy_version` (2 bytes) and whose body is `payload`."""
        sequence = self.sequence
        self.sequence += 1
        return self._open_at(sequence, content_type, legacy_version, payload)

    def _open_at(
        self, sequence: int, content_type: int, legacy_version: bytes, payload: bytes
    ) -> tuple[int, bytes]:
        if self.suite.tls13:
            return self._open13(sequence, content_type, legacy_version, payload)
        if self._aead is not None:
            return content_type, self._open12_aead(sequence, content_type, legacy_version, payload)
        return content_type, self._open_cbc(sequence, content_type, legacy_version, payload)

    def _nonce_xor(self, sequence: int) -> bytes:
        """RFC 8446 section 5.3 / RFC 7905 section 2: the 64-bit sequence number,
        left-padded to the IV length, XORed with the IV."""
        iv = self.keys.iv
        padded = sequence.to_bytes(len(iv), "big")
        return bytes(a ^ b for a, b in zip(iv, padded, strict=True))

    def _open13(
        self, sequence: int, content_type: int, legacy_version: bytes, payload: bytes
    ) -> tuple[int, bytes]:
        assert self._aead is not None
        header = bytes([content_type]) + legacy_version + len(payload).to_bytes(2, "big")
        try:
            inner = self._aead.decrypt(self._nonce_xor(sequence), payload, header)
        except (InvalidTag, ValueError, OverflowError):
            raise ProtectionError("record did not authenticate (wrong key or damaged)") from None
        # RFC 8446 section 5.4: the content type is the last non-zero byte.
        end = len(inner)
        while end > 0 and inner[end - 1] == 0:
            end -= 1
        if end == 0:
            raise ProtectionError("record without a content type")
        return inner[end - 1], inner[: end - 1]

    def _open12_aead(
        self, sequence: int, content_type: int, legacy_version: bytes, payload: bytes
    ) -> bytes:
        assert self._aead is not None
        tag = self.suite.tag_length
        if self.suite.cipher is Cipher.CHACHA20_POLY1305:
            nonce, body = self._nonce_xor(sequence), payload
        else:
            if len(payload) < 8:
                raise ProtectionError("record shorter than its explicit nonce")
            nonce, body = self.keys.iv + payload[:8], payload[8:]
        length = len(body) - tag
        if length < 0:
            raise ProtectionError("record shorter than its tag")
        aad = _SEQ.pack(sequence) + _AAD_TAIL.pack(content_type, legacy_version, length)
        try:
            return self._aead.decrypt(nonce, body, aad)
        except (InvalidTag, ValueError, OverflowError):
            raise ProtectionError("record did not authenticate (wrong key or damaged)") from None

    def _decrypt_cbc(self, iv: bytes, data: bytes) -> bytes:
        if self.suite.cipher is Cipher.TRIPLE_DES_CBC:
            algorithm: algorithms.AES | TripleDES = TripleDES(self.keys.key)
        else:
            algorithm = algorithms.AES(self.keys.key)
        decryptor = _Cipher(algorithm, modes.CBC(iv)).decryptor()
        return decryptor.update(data) + decryptor.finalize()

    def _mac(self, sequence: int, content_type: int, legacy_version: bytes, data: bytes) -> bytes:
        """RFC 5246 section 6.2.3.1: HMAC(seq_num + type + version + length + data)."""
        head = _SEQ.pack(sequence) + _AAD_TAIL.pack(content_type, legacy_version, len(data))
        return hmac.new(self.keys.mac_key, head + data, self.suite.mac_hash).digest()

    def _open_cbc(
        self, sequence: int, content_type: int, legacy_version: bytes, payload: bytes
    ) -> bytes:
        block = self.suite.block_size
        mac_length = self.suite.mac_length
        if self.encrypt_then_mac:
            # RFC 7366 section 3: the MAC covers IV and ciphertext, and comes last.
            if len(payload) < mac_length + block:
                raise ProtectionError("record shorter than its MAC")
            protected, mac = payload[:-mac_length], payload[-mac_length:]
            if not hmac.compare_digest(
                mac, self._mac(sequence, content_type, legacy_version, protected)
            ):
                raise ProtectionError("record MAC did not verify (wrong key or damaged)")
            plain = self._cbc_plain(protected, block)
            return plain
        plain = self._cbc_plain(payload, block)
        if len(plain) < mac_length:
            raise ProtectionError("record shorter than its MAC")
        content, mac = plain[: len(plain) - mac_length], plain[len(plain) - mac_length :]
        if not hmac.compare_digest(mac, self._mac(sequence, content_type, legacy_version, content)):
            raise ProtectionError("record MAC did not verify (wrong key or damaged)")
        return content

    def _cbc_plain(self, protected: bytes, block: int) -> bytes:
        """Decrypt and remove the padding (RFC 5246 section 6.2.3.2)."""
        if self.version >= 0x0302:  # TLS 1.1 and later: an explicit IV per record
            iv, data = protected[:block], protected[block:]
        else:
            iv, data = self._chained_iv, protected
            if len(data) >= block:
                self._chained_iv = data[-block:]
        if not data or len(data) % block:
            raise ProtectionError("record is not a whole number of cipher blocks")
        plain = self._decrypt_cbc(iv, data)
        pad = plain[-1]
        if pad + 1 > len(plain) or any(b != pad for b in plain[len(plain) - pad - 1 :]):
            raise ProtectionError("record padding is wrong (wrong key or damaged)")
        return plain[: len(plain) - pad - 1]
