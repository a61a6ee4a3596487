"""Malformed credentials are still secrets, in every output format.

Each form below once leaked, or could: a Basic credential without a colon
shown as the user name, a token misread as an auth-parameter name and quoted
in a problem message, and the other damaged forms (junk after base64, a token
split by a space, NTLM that is not base64, an unterminated Digest response).
They go through analyze (text, JSON, HTML), connections (text, JSON) and decode
(tree, JSON); none may show a byte of the secret unless --show-secrets."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from _pcap import tcp_capture
from click.testing import CliRunner

from authtrace.cli import main

DATA = Path(__file__).parent / "data"
_NTLM = bytes.fromhex((DATA / "ms-nlmp_4.2.4.3_authenticate.hex").read_text().strip())
_NTLM_B64 = base64.b64encode(_NTLM).decode()
_NO_COLON = base64.b64encode(b"Pw_NoColon_222").decode()
_DIGEST_RESPONSE = "d41d8cd98f00b204e9800998ecf8427e"

# (Authorization value, the secrets it carries as they could be printed)
FORMS: list[tuple[str, tuple[str, ...]]] = [
    (f"Basic {_NO_COLON}", ("Pw_NoColon", _NO_COLON)),
    ("Bearer Tok_Junk_999abcdefghijkl==x", ("Tok_Junk_999",)),
    ("Negotiate Tok_Junk_999abcdefghijkl==x", ("Tok_Junk_999",)),
    (f"NTLM {_NTLM_B64} junk_after_Zq9", (_NTLM_B64[40:60], "junk_after_Zq9")),
    (f"NTLM {_NTLM_B64[:60]} {_NTLM_B64[60:]}", (_NTLM_B64[20:40], _NTLM_B64[70:90])),
    ("NTLM Secret_NotB64_77!!", ("Secret_NotB64",)),
    # The space lost: the token reads as part of the scheme word.
    (f"NTLM!{_NTLM_B64}", (_NTLM_B64[40:60],)),
    (
        'Digest username="bob", realm="r", nonce="n", uri="/", response="' + _DIGEST_RESPONSE,
        (_DIGEST_RESPONSE[:12],),
    ),
]
# The NTLM secrets in hex, as JSON would show them: NTProofStr (the first 16
# bytes of the NT response, at 0x84) and the encrypted session key (16 bytes at
# 0xd8, MS-NLMP 4.2.4.3). The client challenge and time stamp are not secrets.
_NTLM_HEX = tuple(_NTLM[i : i + 8].hex() for i in (0x84, 0x8C, 0xD8, 0xE0))

CHALLENGE = (
    b"HTTP/1.1 401 Unauthorized\r\nServer: Microsoft-IIS/10.0\r\n"
    b'WWW-Authenticate: Negotiate\r\nWWW-Authenticate: Basic realm="r"\r\n'
    b"Content-Length: 0\r\n\r\n"
)


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    messages: list[tuple[bool, bytes]] = []
    for value, _secrets in FORMS:
        request = f"GET /app HTTP/1.1\r\nHost: web01\r\nAuthorization: {value}\r\n\r\n"
        messages += [(True, request.encode("latin-1")), (False, CHALLENGE)]
    return tcp_capture(tmp_path_factory.mktemp("secrets") / "malformed.pcap", messages)


def _output(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code in (0, 1, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.output


def _assert_no_secret(output: str, where: str) -> None:
    for _value, secrets in FORMS:
        for secret in secrets:
            assert secret not in output, f"{where}: {secret!r} shown"
    for chunk in _NTLM_HEX:
        assert chunk not in output, f"{where}: NTLM secret bytes {chunk} shown"


@pytest.mark.parametrize(
    "args",
    [
        ("analyze",),
        ("analyze", "--json"),
        # The page draws every message with its decoded headers (--ladders all).
        ("analyze", "--ladders", "all", "--html", "-"),
        ("connections",),
        ("connections", "--json"),
    ],
    ids=lambda a: " ".join(a),
)
def test_capture_outputs_show_no_secret(capture: Path, args: tuple[str, ...]) -> None:
    output = _output(*args, str(capture))
    if "--json" in args:
        json.loads(output)
    assert output.count("/app") >= len(FORMS)  # the run did read the exchanges
    _assert_no_secret(output, " ".join(args))


@pytest.mark.parametrize("json_flag", [(), ("--json",)], ids=["tree", "json"])
@pytest.mark.parametrize("form", range(len(FORMS)))
def test_decode_shows_no_secret(form: int, json_flag: tuple[str, ...]) -> None:
    value = FORMS[form][0]
    result = CliRunner().invoke(main, ["decode", *json_flag, f"Authorization: {value}"])
    assert result.exit_code in (0, 2)
    _assert_no_secret(result.stdout + result.stderr, f"decode {value[:20]}")


def test_basic_without_colon_is_not_a_user_name(capture: Path) -> None:
    output = _output("analyze", "--json", str(capture))
    titles = [f["title"] for f in json.loads(output)["findings"]]
    assert not any("Pw_NoColon" in title for title in titles)
    shown = _output("analyze", "--json", "--show-secrets", str(capture))
    assert "Pw_NoColon_222" in shown  # asked for: the whole credential, as the password
    page = _output("analyze", "--ladders", "all", "--show-secrets", "--html", "-", str(capture))
    assert "Pw_NoColon_222" in page  # the page shows what the JSON shows
