"""The HTTP authentication header grammar (RFC 9110 section 11, was RFC 7235).

This module owns turning ``WWW-Authenticate`` / ``Proxy-Authenticate`` values
into challenges and ``Authorization`` / ``Proxy-Authorization`` values into
credentials. It knows nothing of what a token means.

Invariant: parsing never raises and always terminates. Every loop advances
through the text, and the number of challenges and parameters is capped; what
cannot be read comes back as a value whose ``malformed`` says why — by place
(parameter number, character offset) and kind, never by quoting the text: an
Authorization value is a credential, and a token misread as a parameter name
must not reach a report through its problem message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# Caps against hostile headers: a real server offers a handful of schemes with
# a handful of parameters each.
MAX_CHALLENGES = 32
MAX_PARAMS = 32

# RFC 9110 section 5.6.2: token = 1*tchar.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 section 11.2: token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_WS = re.compile(r"[ \t\r\n]*")
_WS_COMMA = re.compile(r"[ \t\r\n,]*")
# An auth-param starts with "token BWS =" (RFC 9110 section 11.2); used to
# tell a parameter of the current challenge from the scheme of the next one.
_PARAM_START = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+[ \t]*=")


@dataclass(frozen=True, slots=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` / ``Proxy-Authenticate`` value.

    scheme: the auth-scheme as written (compare case-insensitively);
    token68: the token when the challenge carries one (``Negotiate YII...``);
    params: auth-params in order, names as written, values unquoted;
    malformed: None, or one line saying what could not be read.
    """

    scheme: str
    token68: str | None = None
    params: tuple[tuple[str, str], ...] = ()
    malformed: str | None = None

    def param(self, name: str) -> str | None:
        """The first parameter of that name (case-insensitive, RFC 9110 11.2)."""
        return _param(self.params, name)


@dataclass(frozen=True, slots=True)
class Credentials:
    """The value of an ``Authorization`` / ``Proxy-Authorization`` header.

    Same fields as `Challenge`; a credentials value holds exactly one scheme.
    """

    scheme: str
    token68: str | None = None
    params: tuple[tuple[str, str], ...] = ()
    malformed: str | None = None

    def param(self, name: str) -> str | None:
        """The first parameter of that name (case-insensitive)."""
        return _param(self.params, name)


def _param(params: tuple[tuple[str, str], ...], name: str) -> str | None:
    lowered = name.lower()
    for key, value in params:
        if key.lower() == lowered:
            return value
    return None


class _Scanner:
    """Position over one header value; every method advances or returns None."""

    __slots__ = ("text", "pos")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip(self, pattern: re.Pattern[str]) -> None:
        match = pattern.match(self.text, self.pos)
        if match:
            self.pos = match.end()

    def take(self, pattern: re.Pattern[str]) -> str | None:
        match = pattern.match(self.text, self.pos)
        if not match or match.end() == self.pos:
            return None
        self.pos = match.end()
        return match.group(0)

    def looking_at(self, pattern: re.Pattern[str]) -> bool:
        return pattern.match(self.text, self.pos) is not None

    def skip_to_comma(self) -> None:
        """Skip a broken element up to the next top-level comma (quotes respected)."""
        in_quotes = False
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if in_quotes and char == "\\":
                self.pos += 2
                continue
            if char == '"':
                in_quotes = not in_quotes
            elif char == "," and not in_quotes:
                return
            self.pos += 1
        self.pos = len(self.text)

    def quoted_string(self) -> tuple[str, str | None]:
        """Read a quoted-string (RFC 9110 section 5.6.4) at a '"'.

        Returns the unescaped content and None, or what was read and a reason
        when the closing quote is missing.
        """
        self.pos += 1  # opening quote
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                # quoted-pair: the backslash only protects the next character.
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if char == '"':
                self.pos += 1
                return "".join(out), None
            out.append(char)
            self.pos += 1
        return "".join(out), "unterminated quoted-string"


def _token68_here(scanner: _Scanner) -> str | None:
    """A token68 followed only by whitespace then end or comma, else None."""
    match = _TOKEN68.match(scanner.text, scanner.pos)
    if not match:
        return None
    after = _WS.match(scanner.text, match.end())
    end = after.end() if after else match.end()
    if end < len(scanner.text) and scanner.text[end] != ",":
        return None
    scanner.pos = end
    return match.group(0)


def _read_params(scanner: _Scanner) -> tuple[tuple[tuple[str, str], ...], str | None]:
    """Read ``#auth-param`` until the next challenge starts or the text ends."""
    params: list[tuple[str, str]] = []
    problem: str | None = None
    while not scanner.at_end():
        if len(params) >= MAX_PARAMS:
            problem = problem or f"more than {MAX_PARAMS} parameters"
            scanner.skip_to_comma()
            scanner.skip(_WS_COMMA)
            if not scanner.looking_at(_PARAM_START):
                break
            continue
        start = scanner.pos
        number = len(params) + 1
        name = scanner.take(_TOKEN)
        if name is None:
            problem = problem or f"unexpected character at offset {start} in parameters"
            scanner.skip_to_comma()
        else:
            scanner.skip(_WS)
            if scanner.peek() != "=":
                problem = problem or f"parameter {number} (offset {start}) has no value"
                scanner.skip_to_comma()
            else:
                scanner.pos += 1
                scanner.skip(_WS)
                if scanner.peek() == '"':
                    value, reason = scanner.quoted_string()
                    problem = problem or reason
                    params.append((name, value))
                else:
                    value = scanner.take(_TOKEN) or ""
                    if not value:
                        empty = f"parameter {number} (offset {start}) has an empty value"
                        problem = problem or empty
                    params.append((name, value))
                scanner.skip(_WS)
                if not scanner.at_end() and scanner.peek() != ",":
                    problem = problem or (f"junk after parameter {number} (offset {scanner.pos})")
                    scanner.skip_to_comma()
        # Empty list elements (",,") are allowed (RFC 9110 section 5.6.1).
        scanner.skip(_WS_COMMA)
        if not scanner.looking_at(_PARAM_START):
            break
    return tuple(params), problem


def _read_challenge(scanner: _Scanner) -> Challenge:
    scheme = scanner.take(_TOKEN)
    if scheme is None:
        start = scanner.pos
        scanner.skip_to_comma()
        if scanner.pos == start:  # a stray comma handled by the caller; never stall
            scanner.pos += 1
        return Challenge(scheme="", malformed=f"no auth-scheme at offset {start}")
    # RFC 9110 section 11.2: the scheme and its data are separated by 1*SP.
    had_space = scanner.looking_at(re.compile(r"[ \t]"))
    scanner.skip(_WS)
    if scanner.at_end() or scanner.peek() == ",":
        return Challenge(scheme=scheme)
    if not had_space:
        scanner.skip_to_comma()
        return Challenge(scheme=scheme, malformed="no space after auth-scheme")
    token68 = _token68_here(scanner)
    if token68 is not None:
        return Challenge(scheme=scheme, token68=token68)
    params, problem = _read_params(scanner)
    return Challenge(scheme=scheme, params=params, malformed=problem)


def parse_challenges(values: str | Iterable[str]) -> list[Challenge]:
    """Every challenge in one or several ``WWW-Authenticate`` header values.

    Several header lines are the same as one line joined by commas
    (RFC 9110 section 5.3). At most `MAX_CHALLENGES` are returned; when the
    cap is hit the last element says so in ``malformed``.
    """
    texts = [values] if isinstance(values, str) else list(values)
    challenges: list[Challenge] = []
    for text in texts:
        if not isinstance(text, str):
            continue
        scanner = _Scanner(text)
        scanner.skip(_WS_COMMA)
        while not scanner.at_end():
            if len(challenges) >= MAX_CHALLENGES:
                challenges.append(
                    Challenge(scheme="", malformed=f"more than {MAX_CHALLENGES} challenges")
                )
                return challenges
            challenges.append(_read_challenge(scanner))
            scanner.skip(_WS_COMMA)
    return challenges


def parse_credentials(value: str) -> Credentials:
    """The credentials in one ``Authorization`` value (RFC 9110 section 11.4).

    Lenient where real clients are sloppy: several spaces after the scheme,
    trailing whitespace. A token that is not a clean token68 is kept whole with
    a reason, so a decoder can still try it.
    """
    if not isinstance(value, str):
        return Credentials(scheme="", malformed="not text")
    text = value.strip(" \t\r\n")
    scanner = _Scanner(text)
    scheme = scanner.take(_TOKEN)
    if scheme is None:
        return Credentials(scheme="", malformed="no auth-scheme")
    rest_start = scanner.pos
    scanner.skip(_WS)
    if scanner.at_end():
        return Credentials(scheme=scheme)
    if scanner.pos == rest_start:
        return Credentials(scheme=scheme, malformed="no space after auth-scheme")
    data_start = scanner.pos
    token68 = _token68_here(scanner)
    if token68 is not None and scanner.at_end():
        return Credentials(scheme=scheme, token68=token68)
    scanner.pos = data_start
    if scanner.looking_at(_PARAM_START):
        params, problem = _read_params(scanner)
        if not scanner.at_end():
            problem = problem or "text after the parameters"
        return Credentials(scheme=scheme, params=params, malformed=problem)
    rest = text[data_start:]
    return Credentials(scheme=scheme, token68=rest, malformed="credentials are not a token68")
