"""HTTP Digest authentication (RFC 7616) challenge and response parameters.

This module owns turning Digest auth-params into typed values. It does not
verify responses. Invariant: the ``response`` value (a hash of the password)
is kept but is a secret, redacted when rendered.
"""

from __future__ import annotations

from dataclasses import dataclass

from authtrace.auth.kinds import Mechanism, Message


def _params(params: tuple[tuple[str, str], ...]) -> dict[str, str]:
    # Parameter names are case-insensitive (RFC 9110 section 11.2); the first
    # occurrence wins, duplicates are ignored.
    result: dict[str, str] = {}
    for name, value in params:
        result.setdefault(name.lower(), value)
    return result


def _flag(value: str | None) -> bool | None:
    if value is None:
        return None
    return value.strip().lower() == "true"


def _list(value: str | None, separators: str = ",") -> tuple[str, ...]:
    if not value:
        return ()
    text = value
    for separator in separators[1:]:
        text = text.replace(separator, separators[0])
    return tuple(part.strip() for part in text.split(separators[0]) if part.strip())


@dataclass(frozen=True, slots=True)
class DigestChallenge:
    """``WWW-Authenticate: Digest ...``, RFC 7616 section 3.3.

    qop: the offered quality-of-protection values ("auth", "auth-int");
    stale: True when the nonce expired and a retry with the new nonce is
    expected (normal, DESIGN.md); domain: the protection space URIs
    (space-separated on the wire); userhash: whether the server supports it.
    """

    realm: str | None = None
    nonce: str | None = None
    qop: tuple[str, ...] = ()
    algorithm: str | None = None
    stale: bool | None = None
    opaque: str | None = None
    domain: tuple[str, ...] = ()
    charset: str | None = None
    userhash: bool | None = None
    problem: str | None = None

    @property
    def mechanism(self) -> Mechanism:
        return Mechanism.DIGEST

    @property
    def message(self) -> Message:
        return Message.DIGEST_CHALLENGE


@dataclass(frozen=True, slots=True)
class DigestResponse:
    """``Authorization: Digest ...``, RFC 7616 section 3.4.

    response: the request digest, a secret (crackable offline); username is
    a hash when userhash is true (RFC 7616 section 3.4.4).
    """

    username: str | None = None
    realm: str | None = None
    nonce: str | None = None
    uri: str | None = None
    response: str | None = None
    cnonce: str | None = None
    nc: str | None = None
    qop: str | None = None
    algorithm: str | None = None
    opaque: str | None = None
    userhash: bool | None = None
    problem: str | None = None

    @property
    def mechanism(self) -> Mechanism:
        return Mechanism.DIGEST

    @property
    def message(self) -> Message:
        return Message.DIGEST_RESPONSE


def digest_challenge(params: tuple[tuple[str, str], ...]) -> DigestChallenge:
    """Typed Digest challenge from auth-params. Never raises."""
    p = _params(params)
    missing = [name for name in ("realm", "nonce") if name not in p]
    return DigestChallenge(
        realm=p.get("realm"),
        nonce=p.get("nonce"),
        qop=_list(p.get("qop")),
        algorithm=p.get("algorithm"),
        stale=_flag(p.get("stale")),
        opaque=p.get("opaque"),
        domain=_list(p.get("domain"), " \t"),
        charset=p.get("charset"),
        userhash=_flag(p.get("userhash")),
        # RFC 7616 section 3.3: realm and nonce are required.
        problem=f"missing {', '.join(missing)}" if missing else None,
    )


def digest_response(params: tuple[tuple[str, str], ...]) -> DigestResponse:
    """Typed Digest response from auth-params. Never raises."""
    p = _params(params)
    # RFC 7616 section 3.4: username (or username*), realm, nonce, uri and
    # response are required.
    username = p.get("username", p.get("username*"))
    missing = [name for name in ("realm", "nonce", "uri", "response") if name not in p]
    if username is None:
        missing.insert(0, "username")
    return DigestResponse(
        username=username,
        realm=p.get("realm"),
        nonce=p.get("nonce"),
        uri=p.get("uri"),
        response=p.get("response"),
        cnonce=p.get("cnonce"),
        nc=p.get("nc"),
        qop=p.get("qop"),
        algorithm=p.get("algorithm"),
        opaque=p.get("opaque"),
        userhash=_flag(p.get("userhash")),
        problem=f"missing {', '.join(missing)}" if missing else None,
    )
