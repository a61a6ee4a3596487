"""Lenient base64 for header tokens.

This module owns the one way auth tokens are turned from header text into
bytes. Invariant: it never raises and never decodes more than `MAX_TOKEN_TEXT`
characters; it tolerates what real clients send (missing padding, stray
whitespace) but never guesses bytes that are not there.
"""

from __future__ import annotations

import base64
import binascii
import re

# A Kerberos ticket with a large PAC can reach 64 KiB (MaxTokenSize), which is
# about 88 KiB of base64; anything much larger is not a token.
MAX_TOKEN_TEXT = 128 * 1024

_WHITESPACE = re.compile(r"\s+")
_STANDARD = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_URLSAFE = re.compile(r"[A-Za-z0-9\-_]*={0,2}")
_IMPOSSIBLE_LENGTH = "base64 length is impossible (one character too many or too few)"


def decode_base64(text: str) -> bytes | str:
    """The decoded bytes, or a one-line reason (a str) when the text is not base64.

    Accepts the standard alphabet (RFC 4648 section 4) and, failing that, the
    URL-safe one (section 5, used by JWTs); padding may be missing.
    """
    if len(text) > MAX_TOKEN_TEXT:
        return f"token longer than {MAX_TOKEN_TEXT} characters"
    if text and _STANDARD.fullmatch(text):
        # The common case, checked first because it is one scan: standard
        # alphabet, no whitespace to remove (the regex check is the one strict
        # base64 decoding would make again).
        stripped = text.rstrip("=")
        if len(stripped) % 4 == 1:
            return _IMPOSSIBLE_LENGTH
        padded = stripped + "=" * (-len(stripped) % 4)
        try:
            return binascii.a2b_base64(padded.encode("ascii"), strict_mode=True)
        except (binascii.Error, ValueError):
            # Not expected after the checks above; the URL-safe alphabet could
            # not do better, it would see the same characters.
            return "not base64"
    compact = _WHITESPACE.sub("", text)
    if not compact:
        return "empty token"
    stripped = compact.rstrip("=")
    if len(stripped) % 4 == 1:
        return _IMPOSSIBLE_LENGTH
    padded = stripped + "=" * (-len(stripped) % 4)
    for pattern, altchars in ((_STANDARD, None), (_URLSAFE, b"-_")):
        if pattern.fullmatch(compact):
            try:
                return base64.b64decode(padded, altchars=altchars, validate=True)
            except (binascii.Error, ValueError):
                continue
    return "not base64"
