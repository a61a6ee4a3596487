"""`authtrace iislog` through click's CliRunner, on the fixtures in tests/data/iis."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from click.testing import CliRunner

from authtrace.cli import main

DATA = Path(__file__).parent / "data" / "iis"


def _run(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["iislog", *map(str, args)])
    # Exit codes come from SystemExit; anything else is a traceback we must not have.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def test_failures_first_then_normal_legs() -> None:
    code, out = _run(DATA / "iis10_handshakes.log")
    assert code == 1
    failures_at = out.index("failures")
    assert out.index("401 1 2148074248") > failures_at
    assert "8 normal handshake legs (401 2 5 / 401 1 2148074254)" in out
    assert out.index("401 1 2148074248") < out.index("normal handshake legs")
    assert "10.0.0.50 /api/report" in out and "never sent credentials" in out
    assert "CONTOSO\\alice (2)" in out


def test_healthy_log_exits_0(tmp_path: Path) -> None:
    lines = (DATA / "iis10_handshakes.log").read_text().splitlines()
    healthy = [line for line in lines if line.startswith("#") or " 10.0.0.21 " in line]
    path = tmp_path / "healthy.log"
    path.write_text("\n".join(healthy) + "\n")
    code, out = _run(path)
    assert code == 0
    assert "no authentication failures" in out and "2 normal handshake legs" in out


def test_gzip_recognised_by_magic_not_name(tmp_path: Path) -> None:
    plain = DATA / "iis10_handshakes.log"
    packed = tmp_path / "u_ex240304.log"  # no .gz suffix on purpose
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    code_plain, out_plain = _run("--json", plain)
    code_packed, out_packed = _run("--json", packed)
    assert code_plain == code_packed == 1
    a, b = json.loads(out_plain), json.loads(out_packed)
    for data in (a, b):
        data.pop("files")
        for group in data["groups"]:
            group.pop("first_seen")
        for pair in data["per_client_url"]:
            pair.pop("first_seen")
    assert a == b


def test_cut_gzip_reports_and_keeps_what_it_read(tmp_path: Path) -> None:
    data = gzip.compress((DATA / "iis10_handshakes.log").read_bytes() * 50)
    path = tmp_path / "cut.log.gz"
    path.write_bytes(data[: len(data) // 2])
    code, out = _run("--json", path)
    report = json.loads(out)
    assert code == 1 and report["entries"] > 0
    assert any("cut or corrupt" in e for e in report["errors"])


def test_several_files_and_skipped_lines() -> None:
    code, out = _run("--json", DATA / "iis10_two_fields_blocks_garbage.log", DATA / "iis6.log")
    assert code == 1
    report = json.loads(out)
    files = {f["source"]: f for f in report["files"]}
    garbage = {s["kind"]: s for s in files["iis10_two_fields_blocks_garbage.log"]["skipped"]}
    assert garbage["other-log-format"]["first_lines"] == [7]
    assert garbage["bad-value"]["count"] == 2
    assert files["iis6.log"]["fields_blocks"] == 1
    triples = {g["triple"]: g for g in report["groups"]}
    assert triples["401 1 1909"]["verdict"] == "failure"
    assert triples["401 1 1909"]["win32_info"]["name"] == "ERROR_ACCOUNT_LOCKED_OUT"
    assert triples["403 4 5"]["substatus_info"]["label"] == "SSL required"
    assert report["failure_users"][0]["count"] == 1


def _run_split(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["iislog", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stdout, result.stderr


def test_nothing_readable_exits_2_with_one_line_and_no_report(tmp_path: Path) -> None:
    """Issue 11 item 13: not a report saying "no authentication failures"."""
    binary = tmp_path / "random.bin"
    binary.write_bytes(bytes(range(256)) * 40)
    for args in ((DATA / "apache_combined.log",), ("--json", DATA / "apache_combined.log")):
        code, out, err = _run_split(*args)
        assert (code, out) == (2, "")
        assert err.startswith("authtrace: no W3C log entries in ") and "other-log-format" in err
        assert err.count("\n") == 1
    code, out, err = _run_split(binary)
    assert (code, out) == (2, "") and "no-fields-directive" in err and err.count("\n") == 1


def test_missing_or_unopenable_file_is_one_line_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "u_ex231114.log"
    for args in ((missing,), ("--json", missing), (DATA / "iis6.log", missing), (tmp_path,)):
        code, out, err = _run_split(*args)
        assert (code, out) == (2, ""), args
        assert err.count("\n") == 1 and "no authentication failures" not in err
    assert _run_split(missing)[2] == f"authtrace: {missing}: No such file or directory\n"
    assert _run_split(tmp_path)[2] == f"authtrace: {tmp_path}: Is a directory\n"


def test_analyze_iis_log_missing_is_one_line_and_the_report_stands(tmp_path: Path) -> None:
    capture = DATA.parent.parent.parent / "captures" / "scenarios" / "pooling-proxy.pcap"
    missing = tmp_path / "u_ex.log"
    result = CliRunner().invoke(main, ["analyze", str(capture), "--iis-log", str(missing)])
    assert result.exit_code == 1 and "ntlm-handshake-split" in result.stdout
    assert result.stderr == (
        f"authtrace: --iis-log {missing}: No such file or directory (left out)\n"
    )


def test_win32_status_named_as_administrators_search_for_it() -> None:
    """Decimal, hex and symbol beside the words, for failures and normal legs."""
    code, out = _run(DATA / "iis10_handshakes.log")
    assert code == 1
    lines = out.splitlines()
    at = lines.index(
        "  401 1 2148074248  x2  invalid token: the server could not use the client's token"
    )
    assert lines[at + 1] == "      sc-win32-status 2148074248 = 0x80090308 SEC_E_INVALID_TOKEN"
    assert "      sc-win32-status 1326 = 0x0000052E ERROR_LOGON_FAILURE" in lines
    assert (
        "  401 1 2148074254  x4  sc-win32-status 2148074254 = 0x8009030E SEC_E_NO_CREDENTIALS"
        in lines
    )
    assert any(x.endswith("sc-win32-status 5 = 0x00000005 ERROR_ACCESS_DENIED") for x in lines)
