"""OAuth 2.0 Bearer tokens (RFC 6750) and the JWTs they often are (RFC 7519).

This module owns Bearer challenges and tokens. A JWT's header and claims are
decoded for the administrator (who, for which audience, until when); the
signature is never verified. Invariant: the token and signature are secrets
(fields ``token`` and ``signature``), nothing here raises, and decoding is
bounded (`MAX_JWT_TEXT`).
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Any

from authtrace.auth.b64 import decode_base64
from authtrace.auth.kinds import Mechanism, Message

MAX_JWT_TEXT = 32 * 1024

# RFC 7519 section 4.1.4-4.1.6: NumericDate claims.
_DATE_CLAIMS = ("exp", "nbf", "iat")


@dataclass(frozen=True, slots=True)
class BearerChallenge:
    """``WWW-Authenticate: Bearer ...``, RFC 6750 section 3.

    error: ``invalid_request`` / ``invalid_token`` / ``insufficient_scope``
    (section 3.1) when the server says why the token was refused.
    """

    realm: str | None = None
    scope: str | None = None
    error: str | None = None
    error_description: str | None = None
    error_uri: str | None = None

    @property
    def mechanism(self) -> Mechanism:
        return Mechanism.BEARER

    @property
    def message(self) -> Message:
        return Message.BEARER_CHALLENGE


@dataclass(frozen=True, slots=True)
class Jwt:
    """A JWS compact serialization, RFC 7515 section 7.1, decoded without verification.

    header / claims: the decoded JSON objects; expires / not_before /
    issued_at: the exp / nbf / iat claims as ISO 8601 UTC text (None when
    absent or not a number); signature: the raw signature bytes (a secret).
    """

    header: dict[str, Any] = field(default_factory=dict)
    claims: dict[str, Any] = field(default_factory=dict)
    expires: str | None = None
    not_before: str | None = None
    issued_at: str | None = None
    signature: bytes = b""


@dataclass(frozen=True, slots=True)
class BearerToken:
    """``Authorization: Bearer <token>``, RFC 6750 section 2.1.

    token: the token as sent (a secret); jwt: its decoding when it is a JWT;
    problem: why it is not a readable JWT when it looks like one.
    """

    token: str
    jwt: Jwt | None = None
    problem: str | None = None

    @property
    def token_length(self) -> int:
        return len(self.token)

    @property
    def mechanism(self) -> Mechanism:
        return Mechanism.BEARER

    @property
    def message(self) -> Message:
        return Message.BEARER_TOKEN


def bearer_challenge(params: tuple[tuple[str, str], ...]) -> BearerChallenge:
    """Typed Bearer challenge from auth-params. Never raises."""
    values: dict[str, str] = {}
    for name, value in params:
        values.setdefault(name.lower(), value)
    return BearerChallenge(
        realm=values.get("realm"),
        scope=values.get("scope"),
        error=values.get("error"),
        error_description=values.get("error_description"),
        error_uri=values.get("error_uri"),
    )


def looks_like_jwt(text: str) -> bool:
    """Three dot-separated parts whose first is a base64url JSON object ("eyJ")."""
    return text.count(".") == 2 and text.startswith("eyJ")


def _numeric_date(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        moment = datetime.datetime.fromtimestamp(value, tz=datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return moment.isoformat().replace("+00:00", "Z")


def _json_object(part: str, what: str) -> dict[str, Any] | str:
    decoded = decode_base64(part)
    if isinstance(decoded, str):
        return f"JWT {what}: {decoded}"
    try:
        value = json.loads(decoded.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        return f"JWT {what} is not JSON: {type(error).__name__}"
    if not isinstance(value, dict):
        return f"JWT {what} is not a JSON object"
    return value


def decode_jwt(text: str) -> Jwt | str:
    """Decode a JWT without verifying it; a one-line reason (str) when unreadable."""
    if len(text) > MAX_JWT_TEXT:
        return f"JWT longer than {MAX_JWT_TEXT} characters"
    parts = text.split(".")
    if len(parts) != 3:
        return "a JWT has three dot-separated parts"
    header = _json_object(parts[0], "header")
    if isinstance(header, str):
        return header
    claims = _json_object(parts[1], "claims")
    if isinstance(claims, str):
        return claims
    signature = decode_base64(parts[2]) if parts[2] else b""
    if isinstance(signature, str):
        return f"JWT signature: {signature}"
    return Jwt(
        header=header,
        claims=claims,
        expires=_numeric_date(claims.get("exp")),
        not_before=_numeric_date(claims.get("nbf")),
        issued_at=_numeric_date(claims.get("iat")),
        signature=signature,
    )


def decode_bearer(token: str) -> BearerToken:
    """Decode the token of ``Authorization: Bearer``. Never raises."""
    if not looks_like_jwt(token):
        return BearerToken(token=token)
    jwt = decode_jwt(token)
    if isinstance(jwt, str):
        return BearerToken(token=token, problem=jwt)
    return BearerToken(token=token, jwt=jwt)
