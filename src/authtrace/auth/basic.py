"""HTTP Basic authentication (RFC 7617).

This module owns decoding ``Basic`` credentials and challenges. Invariant: the
password is kept (rules need its presence and length) but it is a secret:
renderers redact the ``password`` field unless secrets are asked for. A
credential without a colon cannot be split into user and password, so all of
it is the secret (it is often a password pasted alone, or a token).
"""

from __future__ import annotations

from dataclasses import dataclass

from authtrace.auth.b64 import decode_base64
from authtrace.auth.kinds import Mechanism, Message
from authtrace.auth.malformed import Malformed


@dataclass(frozen=True, slots=True)
class BasicCredentials:
    """``Authorization: Basic base64(user-id ":" password)``, RFC 7617 section 2.

    user: the user-id (text before the first colon, RFC 7617 section 2: the
    user-id cannot contain a colon, the password can); password: the rest;
    has_colon: False when the decoded text had no colon: then user is empty
    and password holds the whole text (a secret as a whole), and problem
    says so; charset: how the bytes were decoded.
    """

    user: str
    password: str
    has_colon: bool = True
    charset: str = "utf-8"
    problem: str | None = None

    @property
    def password_length(self) -> int:
        return len(self.password)

    @property
    def mechanism(self) -> Mechanism:
        return Mechanism.BASIC

    @property
    def message(self) -> Message:
        return Message.BASIC_CREDENTIALS


@dataclass(frozen=True, slots=True)
class BasicChallenge:
    """``WWW-Authenticate: Basic realm="..." [charset="UTF-8"]`` (RFC 7617 section 2)."""

    realm: str | None
    charset: str | None = None

    @property
    def mechanism(self) -> Mechanism:
        return Mechanism.BASIC

    @property
    def message(self) -> Message:
        return Message.OFFER


def decode_basic(token68: str) -> BasicCredentials | Malformed:
    """Decode the token of ``Authorization: Basic``. Never raises."""
    decoded = decode_base64(token68)
    if isinstance(decoded, str):
        return Malformed(f"Basic credentials: {decoded}", token68.encode("latin-1", "replace"))
    # RFC 7617 section 2.1: UTF-8 when the server asked for it, and most
    # clients send UTF-8 anyway; latin-1 is the historical default and never fails.
    try:
        text = decoded.decode("utf-8")
        charset = "utf-8"
    except UnicodeDecodeError:
        text = decoded.decode("latin-1")
        charset = "latin-1"
    user, colon, password = text.partition(":")
    if not colon:
        # Nothing tells which part is the user: the whole text is the secret.
        return BasicCredentials(
            user="", password=text, has_colon=False, charset=charset, problem="no colon"
        )
    return BasicCredentials(user=user, password=password, charset=charset)


def basic_challenge(params: tuple[tuple[str, str], ...]) -> BasicChallenge:
    realm = charset = None
    for name, value in params:
        lowered = name.lower()
        if lowered == "realm" and realm is None:
            realm = value
        elif lowered == "charset" and charset is None:
            charset = value
    return BasicChallenge(realm, charset)
