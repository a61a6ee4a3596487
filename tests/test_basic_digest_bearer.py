"""Basic (RFC 7617), Digest (RFC 7616) and Bearer (RFC 6750) decoding: RFC
examples from tests/data, real captures checked against tshark, fuzzing."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
from _shared import shared_capture as _capture
from hypothesis import given, settings
from hypothesis import strategies as st

from authtrace.auth.basic import BasicCredentials, decode_basic
from authtrace.auth.bearer import BearerChallenge, BearerToken, decode_bearer, decode_jwt
from authtrace.auth.digest import DigestChallenge, DigestResponse
from authtrace.auth.kinds import Mechanism, Message
from authtrace.auth.malformed import Malformed
from authtrace.auth.render import describe_step, step_to_dict
from authtrace.auth.steps import step_from_credentials_header, steps_from_challenge_header

DATA = Path(__file__).parent / "data"
CAPTURES = Path(__file__).resolve().parent.parent / ".." / "shared" / "captures"


def text(name: str) -> str:
    return (DATA / name).read_text()


def test_rfc7617_example() -> None:
    step = step_from_credentials_header("Authorization", text("rfc7617_2_authorization.txt"))
    assert step.mechanism is Mechanism.BASIC and step.message is Message.BASIC_CREDENTIALS
    assert isinstance(step.token, BasicCredentials)
    assert (step.token.user, step.token.password) == ("Aladdin", "open sesame")
    assert describe_step(step) == "Basic Aladdin (password 11 chars)"
    rendered = json.dumps(step_to_dict(step))
    assert "open sesame" not in rendered and "<redacted, 11 chars>" in rendered
    assert step_to_dict(step, show_secrets=True)["password"] == "open sesame"


def test_basic_edge_cases() -> None:
    assert isinstance(decode_basic("!!notbase64"), Malformed)
    no_colon = decode_basic(base64.b64encode(b"justuser").decode())
    assert isinstance(no_colon, BasicCredentials)
    assert not no_colon.has_colon and no_colon.problem == "no colon"
    # Not separable into user and password: all of it is the secret.
    assert no_colon.user == "" and no_colon.password == "justuser"
    latin = decode_basic(base64.b64encode(b"j\xfcrgen:pw").decode())
    assert isinstance(latin, BasicCredentials)
    assert latin.user == "jürgen" and latin.charset == "latin-1"


def test_rfc7616_3_9_1_challenge() -> None:
    (step,) = steps_from_challenge_header(
        "WWW-Authenticate", text("rfc7616_3.9.1_www-authenticate.txt")
    )
    assert step.message is Message.DIGEST_CHALLENGE
    challenge = step.token
    assert isinstance(challenge, DigestChallenge)
    assert challenge.realm == "http-auth@example.org"
    assert challenge.qop == ("auth", "auth-int")
    assert challenge.algorithm == "SHA-256"
    assert challenge.nonce == "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
    assert challenge.opaque == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
    assert challenge.stale is None and challenge.problem is None


def test_rfc7616_3_9_1_response_redacted() -> None:
    step = step_from_credentials_header("Authorization", text("rfc7616_3.9.1_authorization.txt"))
    response = step.token
    assert isinstance(response, DigestResponse)
    assert (response.username, response.uri, response.nc, response.qop) == (
        "Mufasa",
        "/dir/index.html",
        "00000001",
        "auth",
    )
    assert response.cnonce == "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
    digest = "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    assert response.response == digest
    assert digest not in json.dumps(step_to_dict(step))
    assert step_to_dict(step, show_secrets=True)["response"] == digest


def test_digest_stale_and_missing() -> None:
    (step,) = steps_from_challenge_header("WWW-Authenticate", 'Digest realm="r", stale=TRUE')
    assert isinstance(step.token, DigestChallenge)
    assert step.token.stale is True and step.token.problem == "missing nonce"


def test_rfc6750_challenge_and_token() -> None:
    (step,) = steps_from_challenge_header(
        "WWW-Authenticate", text("rfc6750_3_www-authenticate.txt")
    )
    assert step.token == BearerChallenge(
        realm="example", error="invalid_token", error_description="The access token expired"
    )
    credentials = step_from_credentials_header(
        "Authorization", text("rfc6750_2.1_authorization.txt")
    )
    assert credentials.message is Message.BEARER_TOKEN
    assert isinstance(credentials.token, BearerToken)
    assert credentials.token.token == "mF_9.B5f-4.1JqM" and credentials.token.jwt is None
    assert "mF_9" not in json.dumps(step_to_dict(credentials))


def _jwt(header: dict[str, object], claims: dict[str, object], signature: bytes) -> str:
    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return ".".join(
        [part(json.dumps(header).encode()), part(json.dumps(claims).encode()), part(signature)]
    )


def test_jwt_claims_dates_and_secret_signature() -> None:
    token = _jwt({"alg": "RS256"}, {"sub": "alice", "exp": 0, "iat": 86400, "nbf": "x"}, b"s" * 32)
    decoded = decode_bearer(token)
    assert decoded.jwt is not None
    assert decoded.jwt.claims["sub"] == "alice"
    assert decoded.jwt.expires == "1970-01-01T00:00:00Z"
    assert decoded.jwt.issued_at == "1970-01-02T00:00:00Z"
    assert decoded.jwt.not_before is None  # not a NumericDate
    assert decoded.jwt.signature == b"s" * 32
    step = step_from_credentials_header("Authorization", "Bearer " + token)
    rendered = step_to_dict(step)
    assert rendered["jwt"]["signature"] == "<redacted, 32 bytes>"
    assert rendered["token"].startswith("<redacted")
    assert isinstance(decode_jwt("eyJ.eyJ.x"), str)
    assert decode_bearer("eyJhbGciOiJub25lIn0.bm90IGpzb24.").problem


def _tshark(capture: Path, fields: list[str]) -> list[list[str]]:
    out = subprocess.run(
        ["tshark", "-r", str(capture), "-Y", "http.authorization", "-T", "fields"]
        + [arg for field in fields for arg in ("-e", field)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return [line.split("\t") for line in out.splitlines()]


@pytest.mark.oracle
@pytest.mark.shared
@pytest.mark.parametrize(
    "name",
    [
        "odedshimon__BruteShark/Pcap_Examples__HTTP - Basic Authentication.pcap",
        "zeek__zeek/testing__btest__Traces__http__basic-auth-with-colon.pcap",
        "zeek__zeek/testing__btest__Traces__http__basic-auth-with-extra-space.pcap",
        "ntop__nDPI/tests__cfgs__default__pcap__http_auth.pcap",
    ],
)
def test_basic_in_captures_matches_tshark(name: str) -> None:
    rows = _tshark(_capture(name), ["http.authorization", "http.authbasic"])
    assert rows
    for value, userpass in rows:
        step = step_from_credentials_header("Authorization", value)
        assert isinstance(step.token, BasicCredentials), value
        assert f"{step.token.user}:{step.token.password}" == userpass


@pytest.mark.oracle
@pytest.mark.shared
def test_digest_capture() -> None:
    capture = _capture("odedshimon__BruteShark/Pcap_Examples__HTTP - Digest Authentication.pcap")
    (row,) = _tshark(capture, ["http.authorization"])
    step = step_from_credentials_header("Authorization", row[0])
    assert isinstance(step.token, DigestResponse)
    assert (step.token.username, step.token.realm, step.token.qop) == ("Susan", "INS.COM", "auth")
    assert step.token.algorithm == "MD5-sess" and step.token.problem is None


@pytest.mark.oracle
@pytest.mark.shared
def test_bare_jwt_without_scheme_capture() -> None:
    capture = _capture("OISF__suricata-verify/tests__bug-7390__input.pcap")
    (row,) = _tshark(capture, ["http.authorization"])
    step = step_from_credentials_header("Authorization", row[0])
    assert step.mechanism is Mechanism.BEARER and step.scheme == ""
    assert isinstance(step.token, BearerToken) and step.token.jwt is not None
    assert step.token.jwt.claims["name"] == "presto"
    assert step.token.jwt.expires is not None and step.problem


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120))
def test_fuzz_decoders_never_raise(value: str) -> None:
    decode_basic(value)
    decode_bearer(value)
    decode_bearer("eyJ" + value + "." + value + "." + value)
    step_from_credentials_header("Authorization", "Digest " + value)
    steps_from_challenge_header("WWW-Authenticate", "Bearer " + value)
