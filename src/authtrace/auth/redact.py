"""Redaction of secrets when decoded objects are rendered.

This module owns the one list of field names that hold secrets and the one way
they are shown. Invariant: a secret value is rendered only when the caller asks
for secrets; otherwise its presence and length stay visible and nothing else
(DESIGN.md "Secrets": reports get pasted into tickets and forums).
"""

from __future__ import annotations

# Field names (of decoded dataclasses and of the dicts rendered from them)
# whose values are secrets: crackable hashes (NTLM LM/NT responses, Digest
# response), reusable credentials (Basic password, Bearer token, cookies) and
# key material (session keys, MICs, Kerberos cipher text, tickets).
SECRET_FIELDS: frozenset[str] = frozenset(
    {
        "password",
        "response",  # Digest response (a hash of the password)
        "lm_response",
        "nt_response",
        "ntproofstr",
        "lmv2_response",
        "encrypted_random_session_key",
        "encrypted_session_key",
        "session_key",
        "subkey",
        "key",
        "mic",
        "mech_list_mic",
        "cipher",
        "cipher_text",
        "ciphertext",
        "enc_part",
        "authenticator",
        "ticket",
        "token",
        "signature",
        "cookie",
        "cookies",
        "set_cookie",
        "checksum",
        "raw_token",
        # Whole tokens as received: they contain the secrets above.
        "raw",
        "mech_token",
        "response_token",
        "inner_token",
    }
)


def is_secret_field(name: str) -> bool:
    """True when a field of this name holds a secret (case-insensitive)."""
    return name.lower() in SECRET_FIELDS


def redact_bytes(value: bytes, show_secrets: bool) -> str:
    """Hex of the secret when asked for, else ``<redacted, N bytes>``."""
    if show_secrets:
        return value.hex()
    return f"<redacted, {len(value)} bytes>"


def redact_text(value: str, show_secrets: bool) -> str:
    """The secret text when asked for, else ``<redacted, N chars>``."""
    if show_secrets:
        return value
    return f"<redacted, {len(value)} chars>"


def redact_value(name: str, value: object, show_secrets: bool) -> object:
    """Redact ``value`` when ``name`` is a secret field; other values pass unchanged."""
    if show_secrets or not is_secret_field(name) or value is None:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return redact_bytes(bytes(value), False)
    if isinstance(value, str):
        return redact_text(value, False)
    return "<redacted>"
