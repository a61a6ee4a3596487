"""``authtrace decode`` through click's CliRunner."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from click.testing import CliRunner

from authtrace.cli import main

DATA = Path(__file__).parent / "data"
NTLM_NEGOTIATE_B64 = "TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAFASgKAAAADw=="  # HTTP - NTLM.pcap


def run(*args: str, stdin: str | bytes | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["decode", *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_tree_for_a_scheme_and_token() -> None:
    code, out, _ = run("NTLM " + NTLM_NEGOTIATE_B64)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "NTLM NEGOTIATE"
    assert "  message: NTLM_NEGOTIATE" in lines
    assert "NTLMSSP_NEGOTIATE_UNICODE" in out and "5.1.2600" in out


def test_json_top_level_keys_and_redaction() -> None:
    data = bytes.fromhex((DATA / "ms-nlmp_4.2.4.3_authenticate.hex").read_text().strip())
    value = "Authorization: Negotiate " + base64.b64encode(data).decode()
    code, out, _ = run("--json", value)
    assert code == 0
    document = json.loads(out)
    assert document["schema"] == "authtrace.decode/1"
    (decoded,) = document["steps"]
    assert (decoded["scheme"], decoded["mechanism"], decoded["message"]) == (
        "Negotiate",
        "ntlm",
        "NTLM_AUTHENTICATE",
    )
    assert decoded["user"] == "User" and decoded["domain"] == "Domain"
    assert decoded["nt_response"] == "<redacted, 84 bytes>"
    code, out, _ = run("--json", "--show-secrets", value)
    assert json.loads(out)["steps"][0]["nt_response"] == data[0x84 : 0x84 + 84].hex()


def test_stdin_and_basic() -> None:
    code, out, _ = run("-", stdin="Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\n")
    assert code == 0
    assert out.splitlines()[0] == "Basic Aladdin (password 11 chars)"
    assert "open sesame" not in out


def test_bad_input_exits_2_with_one_line() -> None:
    for value in ("", "NTLM !!!!", "hello world", "Negotiate aGVsbG8="):
        code, out, err = run(value)
        assert code == 2, value
        assert out == ""
        assert len(err.strip().splitlines()) == 1 and err.startswith("authtrace decode: ")
        assert "Traceback" not in err


def _steps(*args: str, stdin: str | None = None) -> list[dict]:
    code, out, err = run("--json", *args, stdin=stdin)
    assert code == 0, err
    return json.loads(out)["steps"]


def _offers(steps: list[dict]) -> list[tuple[str, str]]:
    return [(s["scheme"], s["message"]) for s in steps]


def test_a_bare_challenge_is_an_offer() -> None:
    """Issue 11 item 14: `Negotiate` alone is what a server offers, not bad base64."""
    for word in ("Negotiate", "NTLM", "kerberos", " Basic\n"):
        (step,) = _steps(word)
        assert (step["message"], step["kind"], step["mechanism"]) == ("OFFER", "challenge", "none")
        assert step["scheme"] == word.strip()
    code, out, _ = run("Negotiate")
    assert code == 0 and out.splitlines()[0] == "Negotiate (offer)"


def test_challenges_joined_by_commas_as_tshark_prints_them() -> None:
    assert _offers(_steps("Negotiate, NTLM")) == [("Negotiate", "OFFER"), ("NTLM", "OFFER")]
    digest, basic = _steps('Digest realm="a, b", nonce="x", Basic realm="y"')
    assert (digest["message"], digest["realm"], digest["nonce"]) == (
        "DIGEST_CHALLENGE",
        "a, b",
        "x",
    )
    assert (basic["scheme"], basic["realm"]) == ("Basic", "y")
    code, out, _ = run("Negotiate, NTLM")
    assert code == 0 and out.split("\n\n")[1].startswith("NTLM (offer)")
    # A single challenge with commas between its parameters stays one.
    (bearer,) = _steps('Bearer realm="api", error="invalid_token", error_description="expired"')
    assert bearer["message"] == "BEARER_CHALLENGE"
    # Digest credentials have commas too and are still credentials.
    (response,) = _steps('Digest username="u", realm="r", nonce="n", uri="/", response="00"')
    assert (response["kind"], response["message"]) == ("credentials", "DIGEST_RESPONSE")


def test_the_authenticate_line_itself_gives_every_challenge() -> None:
    data = bytes.fromhex((DATA / "ms-nlmp_4.2.4.3_challenge.hex").read_text().strip())
    token = base64.b64encode(data).decode()
    steps = _steps(f'WWW-Authenticate: Negotiate, NTLM {token}, Basic realm="intranet"')
    assert _offers(steps) == [
        ("Negotiate", "OFFER"),
        ("NTLM", "NTLM_CHALLENGE"),
        ("Basic", "OFFER"),
    ]
    assert {s["header"] for s in steps} == {"WWW-Authenticate"}
    (proxy,) = _steps('Proxy-Authenticate: Basic realm="squid"')
    assert proxy["proxy"] is True and proxy["header"] == "Proxy-Authenticate"
    pasted = "WWW-Authenticate: Negotiate\r\nWWW-Authenticate: NTLM\r\n"
    assert _offers(_steps("-", stdin=pasted)) == [("Negotiate", "OFFER"), ("NTLM", "OFFER")]


def test_nothing_decodable_is_still_exit_2() -> None:
    code, out, err = run("not a token at all")
    assert (code, out) == (2, "") and err.startswith("authtrace decode: ")


def test_over_long_input_is_bad_input_exit_2() -> None:
    """One exit-code rule everywhere: 2 for unusable input (it was 1 here)."""
    from authtrace.cli.cmd_decode import MAX_INPUT

    for value, stdin in (("NTLM " + "A" * MAX_INPUT, None), ("-", "NTLM " + "A" * MAX_INPUT)):
        code, out, err = run(value, stdin=stdin)
        assert code == 2 and out == ""
        assert err.startswith("authtrace decode: input longer than")


def test_binary_on_stdin_is_refused_not_a_traceback() -> None:
    code, out, err = run("-", stdin=b"\xff\xfe\x00NTLM \x80\x81")
    assert code == 2 and out == "" and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
