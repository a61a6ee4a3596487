"""`authtrace explain` through click's CliRunner."""

from __future__ import annotations

import json

from click.testing import CliRunner

from authtrace.cli import main


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["explain", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, result.output


def test_triple_text() -> None:
    code, out = _run("401 1 2148074248")
    assert code == 0
    assert "FAILURE" in out and "SEC_E_INVALID_TOKEN" in out and "0x80090308" in out
    assert "split across connections" in out


def test_normal_legs_are_not_failures() -> None:
    for triple in ("401 2 5", "401 1 2148074254"):
        code, out = _run(triple)
        assert code == 0 and "NORMAL HANDSHAKE LEG" in out and "FAILURE" not in out


def test_several_codes_and_kinds() -> None:
    code, out = _run("401.2", "0x8009030E", "ERROR_LOGON_FAILURE", "KRB_AP_ERR_SKEW", "0x00000210")
    assert code == 0
    for expected in (
        "401.2 Logon failed due to server configuration",
        "2148074254 = 0x8009030E SEC_E_NO_CREDENTIALS",
        "1326 = 0x0000052E ERROR_LOGON_FAILURE",
        "Kerberos error 37 KRB_AP_ERR_SKEW",
        "NTLMSSP_NEGOTIATE_SIGN",
        "NTLMSSP_NEGOTIATE_NTLM",
    ):
        assert expected in out


def test_json() -> None:
    code, out = _run("--json", "2148074254")
    assert code == 0
    document = json.loads(out)
    assert document["schema"] == "authtrace.explain/1"
    (data,) = document["explanations"]
    assert data["win32"]["name"] == "SEC_E_NO_CREDENTIALS"
    assert data["win32"]["hex"] == "0x8009030E"
    code, out = _run("--json", "5", "nonsense")
    assert code == 2
    both, unknown = json.loads(out)["explanations"]
    assert both["win32"]["name"] == "ERROR_ACCESS_DENIED" and both["kerberos"]["code"] == 5
    assert unknown == {"query": "nonsense", "unknown": True}


def test_unknown_code_is_one_line_and_exit_2() -> None:
    code, out = _run("WHATEVER_THIS_IS")
    assert code == 2
    assert out.strip().count("\n") == 0 and "unknown code" in out


def test_an_unquoted_triple_is_one_code() -> None:
    """`authtrace explain 401 1 2148074248` as typed from an IIS log line: one
    triple, not 401, Kerberos error 1 and an SSPI status apart."""
    quoted = _run("401 1 2148074248")
    assert _run("401", "1", "2148074248") == quoted
    assert "KDC_ERR_NAME_EXP" not in quoted[1]  # what "1" alone means
    code, out = _run("--json", "401", "1", "2148074248", "0x8009030E", "401", "2", "5")
    assert code == 0
    queries = [e.get("query") for e in json.loads(out)["explanations"]]
    assert queries == ["401 1 2148074248", "0x8009030E", "401 2 5"]


def test_words_that_make_no_triple_stay_apart() -> None:
    from authtrace.iis.codes import group_codes

    assert group_codes(["401", "1"]) == ["401", "1"]  # two numbers: no triple
    assert group_codes(["700", "1", "5"]) == ["700", "1", "5"]  # 700 is no HTTP status
    assert group_codes(["0x191", "1", "5"]) == ["0x191", "1", "5"]  # a log writes decimal
    assert group_codes(["2148074254", "401", "2", "5", "401.1"]) == [
        "2148074254",
        "401 2 5",
        "401.1",
    ]
    assert group_codes(["401.2", "5", "37"]) == ["401.2", "5", "37"]  # listed codes
