"""Authentication steps: what the rest of authtrace reads from auth headers.

This module owns turning one header (name and value) into `AuthStep` values:
it parses the grammar (auth/headers.py), decodes the token by its content and
names the mechanism actually used. A ``Negotiate`` header often carries NTLM,
so classification is by decoding, never by the scheme word (DESIGN.md); only
Basic, Digest and Bearer, whose tokens carry no signature, are read by scheme.

Invariant: the entry points never raise. Whatever cannot be read becomes a
step whose ``message`` is MALFORMED and whose ``token`` is a `Malformed`.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from authtrace.auth.b64 import decode_base64
from authtrace.auth.basic import basic_challenge, decode_basic
from authtrace.auth.bearer import bearer_challenge, decode_bearer, looks_like_jwt
from authtrace.auth.digest import digest_challenge, digest_response
from authtrace.auth.headers import Challenge, Credentials, parse_challenges, parse_credentials
from authtrace.auth.kinds import Mechanism, Message
from authtrace.auth.malformed import Malformed
from authtrace.auth.ntlm import decode_ntlm, is_ntlm
from authtrace.fastinit import constructor

if TYPE_CHECKING:
    from typing import TypeAlias

    from authtrace.auth.basic import BasicChallenge, BasicCredentials
    from authtrace.auth.bearer import BearerChallenge, BearerToken
    from authtrace.auth.digest import DigestChallenge, DigestResponse
    from authtrace.auth.gssapi import GssResult

    # What a step's token can be: a binary token decoded by its content (NTLM,
    # SPNEGO, Kerberos, NEGOEX, another GSS mechanism, or Malformed), the
    # Basic / Digest / Bearer object of its scheme, or None for a bare offer.
    # Names only, for the type checker: the GSS layer is imported when a token
    # needs it, so that `connections` stays quick to start.
    Token: TypeAlias = (
        GssResult
        | BasicCredentials
        | BasicChallenge
        | DigestChallenge
        | DigestResponse
        | BearerChallenge
        | BearerToken
        | None
    )

# Registered auth-schemes are short words; a longer "scheme" (not a bare JWT)
# is a damaged value, a token run into its scheme when the space was lost, and
# is not shown, since it may be a credential.
MAX_SCHEME = 40

# SPNEGO may wrap SPNEGO only in hostile tokens; follow `.inner` this far.
MAX_WRAPPING = 4

# Leading bytes of GSS-API tokens: InitialContextToken (RFC 2743 section 3.1),
# NegTokenInit / NegTokenResp (RFC 4178 section 4.2), and the bare Kerberos
# AP-REQ / AP-REP / KRB-ERROR some clients send (RFC 4120 section 5).
_GSS_FIRST_BYTES = frozenset({0x60, 0xA0, 0xA1, 0x6E, 0x6F, 0x7E})

# Messages only a server sends: used to tell a bare token's direction.
_SERVER_MESSAGES = frozenset(
    {
        Message.NTLM_CHALLENGE,
        Message.AP_REP,
        Message.KRB_ERROR,
        Message.NEG_TOKEN_INIT2,
        Message.DIGEST_CHALLENGE,
        Message.BEARER_CHALLENGE,
        Message.OFFER,
    }
)


class StepKind(enum.Enum):
    """Which way a step goes: server challenge or client credentials."""

    CHALLENGE = "challenge"
    CREDENTIALS = "credentials"


@dataclass(frozen=True, slots=True)
class AuthStep:
    """One decoded challenge or credentials.

    header: the header name as written ("" when decoded from a bare value);
    kind: challenge or credentials; proxy: a Proxy-* header (the 407 flow);
    scheme: the auth-scheme as written; mechanism: what the token really is;
    message: the innermost meaningful message (AP_REQ, NTLM_NEGOTIATE...);
    token: the decoded object (NTLM message, GSS/SPNEGO/Kerberos object,
    Basic/Digest/Bearer object), a Malformed, or None for a bare offer;
    raw: the token bytes when there is a binary token; wrapper: the SPNEGO
    message the inner token came in, else None; problem: what the header
    grammar could not read (the step may still be useful), else None.
    """

    header: str
    kind: StepKind
    proxy: bool
    scheme: str
    mechanism: Mechanism
    message: Message
    token: Token = None
    raw: bytes = b""
    wrapper: Message | None = None
    problem: str | None = None

    @property
    def innermost(self) -> Token:
        """The innermost decoded message: the NTLM or Kerberos object inside a
        SPNEGO wrapper, else the token itself (None for a bare offer)."""
        current = self.token
        if self.wrapper is None:
            return current
        # A wrapper was found while decoding, so the SPNEGO module is loaded.
        from authtrace.auth.spnego import SpnegoInit, SpnegoResp

        for _ in range(MAX_WRAPPING):
            if not isinstance(current, SpnegoInit | SpnegoResp) or current.inner is None:
                return current
            current = current.inner
        return current


# Every decoded header value becomes a step (authtrace/fastinit.py).
_make_step = constructor(AuthStep)


def _is_proxy(name: str) -> bool:
    return name.strip().lower().startswith("proxy-")


def _classify(obj: Any) -> tuple[Mechanism, Message, Message | None, Any]:
    """Mechanism, innermost message and wrapper of a decoded binary token."""
    if isinstance(obj, Malformed):
        return Mechanism.UNKNOWN, Message.MALFORMED, None, obj
    wrapper: Message | None = None
    current = obj
    for _ in range(MAX_WRAPPING):
        inner = getattr(current, "inner", None)
        if inner is None:
            break
        if wrapper is None:
            wrapper = _message_of(current)
        if isinstance(inner, Malformed):
            return _mechanism_of(current), Message.MALFORMED, wrapper, obj
        current = inner
    return _mechanism_of(current), _message_of(current), wrapper, obj


def _message_of(obj: Any) -> Message:
    message = getattr(obj, "message", None)
    return message if isinstance(message, Message) else Message.UNKNOWN


def _mechanism_of(obj: Any) -> Mechanism:
    mechanism = getattr(obj, "mechanism", None)
    return mechanism if isinstance(mechanism, Mechanism) else Mechanism.UNKNOWN


def decode_binary(data: bytes) -> Any:
    """Decode a binary token by its content: NTLMSSP or GSS-API. Never raises."""
    if is_ntlm(data):
        return decode_ntlm(data)
    if data and data[0] in _GSS_FIRST_BYTES:
        try:
            # Imported here so this module loads even while the GSS layer is
            # missing or broken; its failures become Malformed values.
            from authtrace.auth.gssapi import decode_gss
        except Exception as error:  # noqa: BLE001 - keep the auth layer usable
            return Malformed(f"GSS-API decoder unavailable: {type(error).__name__}", data)
        try:
            return decode_gss(data)
        except Exception as error:  # noqa: BLE001 - hostile input must not escape
            return Malformed(f"GSS-API: {type(error).__name__}: {error}", data)
    if not data:
        return Malformed("empty token")
    return Malformed(f"unrecognised token (first byte 0x{data[0]:02x})", data[:64])


def _binary_step(
    header: str, kind: StepKind, scheme: str, token68: str, problem: str | None
) -> AuthStep:
    decoded = decode_base64(token68)
    if isinstance(decoded, str):
        reason = Malformed(f"{scheme} token: {decoded}")
        return _malformed_step(header, kind, scheme, reason, problem)
    return _from_object(header, kind, scheme, decode_binary(decoded), problem, raw=decoded)


def _from_object(
    header: str,
    kind: StepKind,
    scheme: str,
    obj: Any,
    problem: str | None,
    raw: bytes = b"",
) -> AuthStep:
    mechanism, message, wrapper, obj = _classify(obj)
    return _make_step(
        header,
        kind,
        _is_proxy(header),
        scheme,
        mechanism,
        message,
        obj,
        raw=raw,
        wrapper=wrapper,
        problem=problem,
    )


def _long_scheme(scheme: str) -> str:
    return f"auth-scheme of {len(scheme)} characters, longer than {MAX_SCHEME}: a damaged value"


def _challenge_step(header: str, challenge: Challenge) -> AuthStep:
    scheme = challenge.scheme
    lowered = scheme.lower()
    kind = StepKind.CHALLENGE
    problem = challenge.malformed
    if len(scheme) > MAX_SCHEME:
        scheme, problem = "", _long_scheme(scheme)
    if not scheme:
        reason = Malformed(problem or "no auth-scheme")
        return _malformed_step(header, kind, scheme, reason, problem)
    if challenge.token68 is not None:
        if lowered in ("basic", "digest", "bearer"):
            # These schemes challenge with parameters, never a token68.
            return _from_object(
                header, kind, scheme, Malformed(f"{scheme} challenge with a token"), problem
            )
        return _binary_step(header, kind, scheme, challenge.token68, problem)
    if lowered == "basic" and challenge.params:
        return _from_object(header, kind, scheme, basic_challenge(challenge.params), problem)
    if lowered == "digest":
        return _from_object(header, kind, scheme, digest_challenge(challenge.params), problem)
    if lowered == "bearer":
        return _from_object(header, kind, scheme, bearer_challenge(challenge.params), problem)
    # A scheme named with nothing to decode: the server offers it (RFC 4559
    # section 4: the first 401 says just "Negotiate").
    return AuthStep(
        header,
        kind,
        _is_proxy(header),
        scheme,
        Mechanism.NONE,
        Message.OFFER,
        None,
        problem=problem,
    )


# Header values repeat across a capture (scheme offers, identical NEGOTIATE
# messages of clients with the same settings). Steps are immutable, so short
# values are decoded once; long ones (CHALLENGE, AUTHENTICATE, tickets) are
# unique anyway and are not kept, which bounds the cache's memory.
CACHED_VALUE_CHARS = 512


def steps_from_challenge_header(name: str, value: str) -> list[AuthStep]:
    """One step per challenge in a WWW-Authenticate / Proxy-Authenticate value."""
    if len(value) <= CACHED_VALUE_CHARS:
        return list(_cached_challenge_steps(name, value))
    return list(_challenge_steps(name, value))


@functools.lru_cache(maxsize=1024)
def _cached_challenge_steps(name: str, value: str) -> tuple[AuthStep, ...]:
    return _challenge_steps(name, value)


def _challenge_steps(name: str, value: str) -> tuple[AuthStep, ...]:
    try:
        return tuple(_challenge_step(name, challenge) for challenge in parse_challenges(value))
    except Exception as error:  # noqa: BLE001 - the entry point never raises
        return (_failure(name, StepKind.CHALLENGE, f"{type(error).__name__}: {error}"),)


def _credentials_step(header: str, credentials: Credentials) -> AuthStep:
    scheme = credentials.scheme
    lowered = scheme.lower()
    kind = StepKind.CREDENTIALS
    problem = credentials.malformed
    if not scheme:
        return _from_object(header, kind, scheme, Malformed(problem or "no auth-scheme"), problem)
    if lowered == "basic":
        if credentials.token68 is None:
            return _from_object(header, kind, scheme, Malformed("Basic without a token"), problem)
        return _from_object(header, kind, scheme, decode_basic(credentials.token68), problem)
    if lowered == "digest":
        return _from_object(header, kind, scheme, digest_response(credentials.params), problem)
    if lowered == "bearer":
        if credentials.token68 is None:
            return _from_object(header, kind, scheme, Malformed("Bearer without a token"), problem)
        return _from_object(header, kind, scheme, decode_bearer(credentials.token68), problem)
    if credentials.token68 is None and not credentials.params and looks_like_jwt(scheme):
        # A bare JWT with no scheme word (seen from real clients): the whole
        # value parsed as a "scheme" token.
        return _from_object(
            header, kind, "", decode_bearer(scheme), "credentials without an auth-scheme"
        )
    if len(scheme) > MAX_SCHEME:
        problem = _long_scheme(scheme)
        return _from_object(header, kind, "", Malformed(problem), problem)
    if credentials.token68 is not None:
        return _binary_step(header, kind, scheme, credentials.token68, problem)
    if credentials.params:
        return _from_object(
            header, kind, scheme, Malformed(f"{scheme} credentials with parameters"), problem
        )
    return _from_object(header, kind, scheme, Malformed(f"{scheme} without a token"), problem)


def step_from_credentials_header(name: str, value: str) -> AuthStep:
    """The step of one Authorization / Proxy-Authorization value."""
    if len(value) <= CACHED_VALUE_CHARS:
        return _cached_credentials_step(name, value)
    return _credentials_step_of(name, value)


@functools.lru_cache(maxsize=1024)
def _cached_credentials_step(name: str, value: str) -> AuthStep:
    return _credentials_step_of(name, value)


def _credentials_step_of(name: str, value: str) -> AuthStep:
    try:
        return _credentials_step(name, parse_credentials(value))
    except Exception as error:  # noqa: BLE001 - the entry point never raises
        return _failure(name, StepKind.CREDENTIALS, f"{type(error).__name__}: {error}")


NOT_KEPT = "present, "


def is_not_kept(step: AuthStep | None) -> bool:
    """True for a step made by `step_not_kept` (the header's value never seen)."""
    token = step.token if step is not None else None
    return isinstance(token, Malformed) and token.truncated and token.reason.startswith(NOT_KEPT)


def step_not_kept(header: str, kind: StepKind, scheme: str, size: int, whole: bool) -> AuthStep:
    """An auth header seen in a cut header block but whose value was not kept.

    It was sent: the step says so, with its size, and is MALFORMED with a
    truncated token so that nothing downstream reads it as "no credentials"
    (a cut head means "not seen", never "not sent"). scheme: the value's first
    word when it was seen, else "".
    """
    if whole:
        reason = f"{NOT_KEPT}too large to decode ({size} bytes)"
    else:
        reason = f"{NOT_KEPT}cut short by the capture ({size} bytes seen)"
    return _malformed_step(header, kind, scheme, Malformed(reason, truncated=True))


def _failure(header: str, kind: StepKind, reason: str) -> AuthStep:
    return _malformed_step(header, kind, "", Malformed(reason))


def _malformed_step(
    header: str, kind: StepKind, scheme: str, malformed: Malformed, problem: str | None = None
) -> AuthStep:
    """A step that could not be decoded: mechanism unknown, message MALFORMED."""
    return AuthStep(
        header,
        kind,
        _is_proxy(header),
        scheme,
        Mechanism.UNKNOWN,
        Message.MALFORMED,
        malformed,
        problem=problem,
    )


_HEADER_LINE = re.compile(
    r"\s*(www-authenticate|proxy-authenticate|authorization|proxy-authorization)\s*:\s*(.*)",
    re.IGNORECASE | re.DOTALL,
)
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})+")
_HEX_SEPARATORS = re.compile(r"[\s:]+")
_SCHEME_AND_REST = re.compile(r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+)[ \t]+(\S.*)", re.DOTALL)


def _bare_step(data: bytes) -> AuthStep:
    mechanism, message, wrapper, obj = _classify(decode_binary(data))
    kind = StepKind.CHALLENGE if message in _SERVER_MESSAGES else StepKind.CREDENTIALS
    return AuthStep("", kind, False, "", mechanism, message, obj, raw=data, wrapper=wrapper)


def _looks_decodable(data: bytes) -> bool:
    return is_ntlm(data) or (bool(data) and data[0] in _GSS_FIRST_BYTES)


def decode_value(text: str) -> AuthStep:
    """Decode what a person pastes: a header line, ``Scheme token``, a bare
    base64 token or hex. Never raises; unreadable input gives a MALFORMED step.
    Where the value holds several challenges, the first that carries something
    (`decode_values` gives them all).
    """
    steps = decode_values(text)
    return next((step for step in steps if step.token is not None), steps[0])


def decode_values(text: str) -> tuple[AuthStep, ...]:
    """Every step in what a person pastes, in order (at least one; never raises).

    Besides what `decode_value` reads: the ``WWW-Authenticate:`` /
    ``Proxy-Authenticate:`` line itself with all its challenges, several such
    lines (as browser developer tools copy them), a bare scheme offered
    without a token (``Negotiate``), and challenges joined by commas as tshark
    prints several headers (``Negotiate, NTLM``, ``Digest realm="a, b",
    nonce="x", Basic realm="y"``: RFC 9110 section 11.6.1 lets a comma
    separate challenges as well as a challenge's parameters, and
    auth.headers tells them apart).
    """
    try:
        return _decode_values(text)
    except Exception as error:  # noqa: BLE001 - the entry point never raises
        return (_failure("", StepKind.CREDENTIALS, f"{type(error).__name__}: {error}"),)


# Scheme names administrators paste alone, as a server offers them without a
# token (IANA HTTP Authentication Scheme Registry, plus NTLM and Kerberos).
_SCHEME_WORDS = frozenset({"negotiate", "ntlm", "kerberos", "basic", "digest", "bearer"})


def _decode_values(text: str) -> tuple[AuthStep, ...]:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) > 1 and all(_HEADER_LINE.fullmatch(line) for line in lines):
        return tuple(step for line in lines for step in _decode_values(line))
    value = text.strip()
    line = _HEADER_LINE.fullmatch(value)
    if line:
        name, rest = line.group(1), line.group(2).strip()
        if name.lower().endswith("authenticate"):
            steps = steps_from_challenge_header(name, rest)
            if not steps:
                return (_failure(name, StepKind.CHALLENGE, "no challenge in the header"),)
            return tuple(steps)
        return (step_from_credentials_header(name, rest),)
    if value.lower() in _SCHEME_WORDS:
        return tuple(steps_from_challenge_header("", value))
    if "," in value and len(parse_challenges(value)) > 1:
        # Credentials are one scheme and its token or parameters: a second
        # scheme after a comma makes this a list of challenges.
        return tuple(steps_from_challenge_header("", value))
    return (_decode_value(text),)


def _decode_value(text: str) -> AuthStep:
    value = text.strip()
    if not value:
        return _failure("", StepKind.CREDENTIALS, "empty input")
    compact = _HEX_SEPARATORS.sub("", value)
    if _HEX.fullmatch(compact):
        data = bytes.fromhex(compact)
        if _looks_decodable(data):
            return _bare_step(data)
    if " " not in value and "\t" not in value:
        decoded = decode_base64(value)
        if isinstance(decoded, bytes) and _looks_decodable(decoded):
            return _bare_step(decoded)
        if looks_like_jwt(value):
            return step_from_credentials_header("", value)
        reason = decoded if isinstance(decoded, str) else "not an NTLM or GSS-API token"
        return _failure("", StepKind.CREDENTIALS, f"cannot decode the value: {reason}")

    match = _SCHEME_AND_REST.fullmatch(value)
    if match is None:
        return _failure("", StepKind.CREDENTIALS, "cannot decode the value")
    scheme, rest = match.group(1), match.group(2)
    lowered = scheme.lower()
    # Without a header name the direction comes from the content.
    if lowered == "digest":
        credentials = parse_credentials(value)
        if credentials.param("username") is None and credentials.param("username*") is None:
            return steps_from_challenge_header("", value)[0]
        return _credentials_step("", credentials)
    if lowered == "bearer" and "=" in rest and not looks_like_jwt(rest.strip()):
        challenges = steps_from_challenge_header("", value)
        if challenges and challenges[0].message is Message.BEARER_CHALLENGE:
            return challenges[0]
    if lowered == "basic" and rest.lower().startswith(("realm", "charset")):
        return steps_from_challenge_header("", value)[0]
    step = _credentials_step("", parse_credentials(value))
    if step.message in _SERVER_MESSAGES and step.kind is not StepKind.CHALLENGE:
        return AuthStep(
            step.header,
            StepKind.CHALLENGE,
            step.proxy,
            step.scheme,
            step.mechanism,
            step.message,
            step.token,
            step.raw,
            step.wrapper,
            step.problem,
        )
    return step
