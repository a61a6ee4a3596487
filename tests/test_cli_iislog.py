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


def test_nothing_readable_exits_2(tmp_path: Path) -> None:
    code, out = _run(DATA / "apache_combined.log")
    assert code == 2 and "other-log-format" in out
    code, _ = _run(tmp_path / "missing.log")
    assert code == 2
    binary = tmp_path / "random.bin"
    binary.write_bytes(bytes(range(256)) * 40)
    code, _ = _run(binary)
    assert code == 2
