"""The RFC 9110 section 11 header grammar (auth/headers.py)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from authtrace.auth.headers import (
    MAX_CHALLENGES,
    MAX_PARAMS,
    Challenge,
    Credentials,
    parse_challenges,
    parse_credentials,
)


def test_rfc9110_11_6_1_example() -> None:
    # RFC 9110 section 11.6.1: two challenges, one with an escaped quote.
    value = 'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"'
    assert parse_challenges(value) == [
        Challenge(
            "Newauth", None, (("realm", "apps"), ("type", "1"), ("title", 'Login to "apps"'))
        ),
        Challenge("Basic", None, (("realm", "simple"),)),
    ]


def test_bare_schemes_token68_and_params_mixed() -> None:
    value = 'Negotiate, NTLM, Basic realm="a, b", Negotiate YIIabc=='
    challenges = parse_challenges(value)
    assert [c.scheme for c in challenges] == ["Negotiate", "NTLM", "Basic", "Negotiate"]
    assert challenges[2].param("REALM") == "a, b"  # names are case-insensitive
    assert challenges[3].token68 == "YIIabc=="
    assert all(c.malformed is None for c in challenges)


def test_several_header_lines_and_empty_elements() -> None:
    challenges = parse_challenges([",Negotiate,, ", 'Digest realm="x",, nonce=abc'])
    assert [c.scheme for c in challenges] == ["Negotiate", "Digest"]
    assert challenges[1].params == (("realm", "x"), ("nonce", "abc"))
    assert parse_challenges(",,, ") == []


def test_malformed_parts_come_back_with_reasons() -> None:
    unterminated = parse_challenges('Basic realm="open')
    assert unterminated[0].params == (("realm", "open"),)
    assert unterminated[0].malformed == "unterminated quoted-string"
    junk = parse_challenges("=x, Basic")
    assert junk[0].malformed and junk[1] == Challenge("Basic")
    # "realm=" alone is a valid token68 (RFC 9110 11.2), so junk must follow a value.
    junk_after = parse_challenges("Digest nonce=abc realm, Basic")
    assert junk_after[0].params == (("nonce", "abc"),) and junk_after[0].malformed
    assert junk_after[1] == Challenge("Basic")


def test_caps() -> None:
    many = parse_challenges(", ".join(["NTLM"] * (MAX_CHALLENGES + 10)))
    assert len(many) == MAX_CHALLENGES + 1 and many[-1].malformed
    params = parse_challenges("X " + ", ".join(f"p{i}=1" for i in range(MAX_PARAMS + 5)))
    assert len(params[0].params) == MAX_PARAMS and params[0].malformed


def test_credentials() -> None:
    # Two spaces after the scheme (zeek basic-auth-with-extra-space.pcap).
    assert parse_credentials("Basic  dGVzdDoxMjM0") == Credentials("Basic", "dGVzdDoxMjM0")
    digest = parse_credentials('Digest username="Mufasa", nc=00000001')
    assert digest.param("username") == "Mufasa" and digest.param("nc") == "00000001"
    broken = parse_credentials("NTLM TlRM TU")
    assert broken.token68 == "TlRM TU" and broken.malformed
    assert parse_credentials("").malformed
    assert parse_credentials("Negotiate") == Credentials("Negotiate")


_token = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_",
    min_size=1,
    max_size=8,
)
_value = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=12)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_token, st.lists(st.tuples(_token, _value), max_size=4)), max_size=5))
def test_round_trip(challenges: list[tuple[str, list[tuple[str, str]]]]) -> None:
    text = ", ".join(
        scheme + ((" " + ", ".join(f"{k}={_quote(v)}" for k, v in params)) if params else "")
        for scheme, params in challenges
    )
    parsed = parse_challenges(text)
    assert [(c.scheme, list(c.params)) for c in parsed] == challenges
    assert all(c.malformed is None for c in parsed)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=' \t,="\\=abcXYZ019+/;-\r\n\x00é', max_size=200))
def test_fuzz_never_raises(text: str) -> None:
    challenges = parse_challenges(text)
    assert len(challenges) <= MAX_CHALLENGES + 1
    parse_credentials(text)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_any_text(text: str) -> None:
    parse_challenges([text, text])
    parse_credentials(text)
