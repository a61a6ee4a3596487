"""--tls-keylog on the commands, and what they say about TLS without keys."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from authtrace.cli import main

TLS = Path(__file__).resolve().parent.parent / "captures" / "tls"
CAPTURE = TLS / "tls13-aes256gcm-ntlm.pcap"
KEYS = CAPTURE.with_suffix(".keys")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_without_keys_analyze_never_says_no_http_and_says_how_to_get_keys() -> None:
    code, out, _ = run("analyze", str(CAPTURE))
    assert code == 0
    assert "No HTTP traffic found" not in out
    assert "TLS connections not read (1)" in out
    assert "tls-lab.authtrace.test (127.0.0.41:443), TLS 1.3" in out
    assert "SSLKEYLOGFILE" in out and "--tls-keylog" in out


def test_with_keys_analyze_follows_ntlm_inside_tls() -> None:
    # --ladders all: the handshake is healthy, so no finding names its connection.
    code, out, _ = run("analyze", "--ladders", "all", str(CAPTURE), "--tls-keylog", str(KEYS))
    assert "TLS key log: 4 secrets from 1 source" in out
    assert "NTLM AUTHENTICATE LAB\\alice (NTLMv2)" in out
    assert "TLS connections not read" not in out
    assert code in (0, 1)


def test_connections_json_carries_the_tls_facts() -> None:
    code, out, _ = run("connections", "--json", str(CAPTURE), "--tls-keylog", str(KEYS))
    assert code == 0
    data = json.loads(out)
    (connection,) = data["connections"]
    assert connection["tls"]["version"] == "TLS 1.3"
    assert connection["tls"]["cipher_suite"] == "TLS_AES_256_GCM_SHA384"
    assert connection["tls"]["keys"] == "decrypted"
    assert data["tls_not_read"] == []
    assert data["tls_keylog"]["secrets"] == 4
    # No secret of the key log is ever printed.
    for line in KEYS.read_text().splitlines():
        if line and not line.startswith("#"):
            assert line.split()[2] not in out


def test_connections_without_keys_lists_the_tls_connection() -> None:
    code, out, _ = run("connections", str(CAPTURE))
    assert code == 0
    assert "No HTTP connection could be read." in out
    assert "TLS connections not read (1)" in out


def test_unreadable_key_log_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.keys"
    code, out, err = run("analyze", str(CAPTURE), "--tls-keylog", str(missing))
    assert code == 2
    assert err.count("\n") == 1 and "cannot read the TLS key log" in err
    assert "Traceback" not in err + out


def test_garbage_key_log_lines_are_counted_in_the_report(tmp_path: Path) -> None:
    keys = tmp_path / "mixed.keys"
    keys.write_bytes(KEYS.read_bytes() + b"this is not a key log line\n")
    code, out, _ = run("analyze", str(CAPTURE), "--tls-keylog", str(keys))
    assert "1 line not understood, first at mixed.keys line" in out


def test_json_report_lists_tls_not_read() -> None:
    code, out, _ = run("analyze", "--json", str(CAPTURE))
    data = json.loads(out)
    (listed,) = data["tls_not_read"]
    assert listed["tls"]["server_name"] == "tls-lab.authtrace.test"
    assert listed["tls"]["keys"] == "no_key_log"
    assert data["tls_keylog"] is None
