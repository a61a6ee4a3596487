"""`authtrace diff` through click's CliRunner: exit 1 and the lead sentence for
the diff pairs, exit 0 for a capture against itself, exit 2 and one line for
unusable input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from authtrace.cli import main

ROOT = Path(__file__).resolve().parent.parent
DIFF = ROOT / "captures" / "scenarios" / "diff"
SCENARIOS = ROOT / "captures" / "scenarios"
LAB = ROOT / "captures" / "lab"


def run(*args: str):  # type: ignore[no-untyped-def]
    for arg in args:
        # Only the repository's own captures may be absent (a partial checkout).
        if arg.startswith(str(ROOT)) and not Path(arg).exists():
            pytest.skip(f"{Path(arg).name} is not in this checkout")
    return CliRunner().invoke(main, ["diff", "--no-progress", *args])


def test_kerberos_vs_fallback_exits_1_with_the_lead_sentence() -> None:
    result = run(
        str(DIFF / "kerberos-vs-fallback-working.pcap"),
        str(DIFF / "kerberos-vs-fallback-failing.pcap"),
    )
    assert result.exit_code == 1, result.output
    lead = result.output.split("\n\n")[1]
    assert lead.startswith("web01.contoso.com: working: the KDC issued a ticket")
    assert "KDC_ERR_S_PRINCIPAL_UNKNOWN" in lead and "fell back to NTLM" in lead
    assert "first difference (kdc-answer)" in result.output


def test_json_carries_the_same_first_difference() -> None:
    result = run(
        "--json",
        str(DIFF / "browser-configured-vs-not-working.pcap"),
        str(DIFF / "browser-configured-vs-not-failing.pcap"),
    )
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["schema"] == "authtrace.diff/1"
    first = data["hosts"][0]["first_difference"]
    assert first["aspect"] == "mechanism"
    assert first["working"] == "Kerberos in Negotiate"
    assert first["failing"] == "none"


def test_same_capture_exits_0() -> None:
    capture = str(DIFF / "direct-vs-pooling-proxy-failing.pcap")
    result = run(capture, capture)
    assert result.exit_code == 0, result.output
    assert "authentication does not differ" in result.output


def test_lab_pair_without_common_host_exits_1() -> None:
    result = run(
        str(LAB / "kerberos-success.pcap"), str(LAB / "negotiate-fallback-spn-unknown.pcap")
    )
    assert result.exit_code == 1
    assert "no server host in common" in result.output
    assert "web.lab.test" in result.output and "alias.lab.test" in result.output


def test_host_option() -> None:
    working = str(DIFF / "direct-vs-pooling-proxy-working.pcap")
    failing = str(DIFF / "direct-vs-pooling-proxy-failing.pcap")
    assert run("--host", "web01.contoso.com", working, failing).exit_code == 1
    missing = run("--host", "nowhere.example", working, failing)
    assert missing.exit_code == 2
    assert "nowhere.example" in missing.output
    # ... and names the hosts each capture does have (issue 11 item 11).
    assert missing.stderr.count("web01.contoso.com") == 2 and "hosts in " in missing.stderr


@pytest.mark.parametrize("which", ["working", "failing"])
def test_unusable_input_exits_2_with_one_line(tmp_path: Path, which: str) -> None:
    good = str(SCENARIOS / "healthy-ntlm.pcap")
    bad = tmp_path / "notes.txt"
    bad.write_text("not a capture\n")
    args = (str(bad), good) if which == "working" else (good, str(bad))
    result = run(*args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "notes.txt" in result.output


def test_missing_file_and_capture_without_http_exit_2(tmp_path: Path) -> None:
    good = str(SCENARIOS / "healthy-ntlm.pcap")
    missing = run(str(tmp_path / "absent.pcap"), good)
    assert missing.exit_code == 2 and "absent.pcap" in missing.output
    # a capture with only KDC traffic has no HTTP to compare
    no_http = run(str(SCENARIOS / "kdc-error-etype.pcap"), good)
    assert no_http.exit_code == 2 and "no HTTP exchange" in no_http.output


def test_help_has_examples() -> None:
    result = CliRunner().invoke(main, ["diff", "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output and "authtrace diff --json" in result.output
