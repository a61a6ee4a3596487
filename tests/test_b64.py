"""auth/b64.py: lenient base64 of header tokens. Its fast path for the common
case (standard alphabet, no whitespace) must answer exactly as the general
rule does, for any text."""

from __future__ import annotations

import base64
import binascii
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from authtrace.auth.b64 import MAX_TOKEN_TEXT, decode_base64


def _general_rule(text: str) -> bytes | str:
    """The module's contract written out plainly (no fast path): remove
    whitespace, restore missing padding, try the standard alphabet, then the
    URL-safe one, both strictly."""
    if len(text) > MAX_TOKEN_TEXT:
        return f"token longer than {MAX_TOKEN_TEXT} characters"
    compact = re.sub(r"\s+", "", text)
    if not compact:
        return "empty token"
    stripped = compact.rstrip("=")
    if len(stripped) % 4 == 1:
        return "base64 length is impossible (one character too many or too few)"
    padded = stripped + "=" * (-len(stripped) % 4)
    for alphabet, altchars in ((r"[A-Za-z0-9+/]*={0,2}", None), (r"[A-Za-z0-9\-_]*={0,2}", b"-_")):
        if re.fullmatch(alphabet, compact):
            try:
                return base64.b64decode(padded, altchars=altchars, validate=True)
            except (binascii.Error, ValueError):
                continue
    return "not base64"


def test_common_tokens() -> None:
    assert decode_base64("TlRMTVNTUAABAAAA") == b"NTLMSSP\x00\x01\x00\x00\x00"
    assert decode_base64("TlRMTVNTUAABAAAA\r\n ") == b"NTLMSSP\x00\x01\x00\x00\x00"
    assert decode_base64("YWJj") == b"abc" and decode_base64("YWI") == b"ab"
    assert decode_base64("-_8") == b"\xfb\xff"  # URL-safe (JWT)
    assert decode_base64("") == "empty token" and decode_base64(" \t") == "empty token"
    assert decode_base64("YWJjZ") == (
        "base64 length is impossible (one character too many or too few)"
    )
    assert decode_base64("YW=J") == "not base64" and decode_base64("YW?J") == "not base64"
    assert decode_base64("A" * (MAX_TOKEN_TEXT + 1)).startswith("token longer")


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_= \t\r\n?"


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=_ALPHABET, max_size=40))
def test_fast_path_answers_as_the_general_rule(text: str) -> None:
    assert decode_base64(text) == _general_rule(text)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.integers(min_value=0, max_value=2), st.booleans())
def test_encoded_bytes_come_back(data: bytes, unpad: int, urlsafe: bool) -> None:
    encoder = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    text = encoder(data).decode()
    text = text[: len(text) - min(unpad, text.count("="))]
    assert decode_base64(text) == data if data else decode_base64(text) == _general_rule(text)
