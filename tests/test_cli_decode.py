"""``authtrace decode`` through click's CliRunner."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from click.testing import CliRunner

from authtrace.cli import main

DATA = Path(__file__).parent / "data"
NTLM_NEGOTIATE_B64 = "TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAFASgKAAAADw=="  # HTTP - NTLM.pcap


def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
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
