"""The auth-dense benchmark profiles (benchmarks/auth_dense.py) hold what they
claim, as tshark reads them, and the runner's verdicts follow the targets."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.auth import Row, render_table, render_verdict  # noqa: E402
from benchmarks.auth_dense import Shape, write_pcap  # noqa: E402
from benchmarks.measure import Timing, failed_timing  # noqa: E402

CONNECTIONS = 40


def _tshark(path: Path, *fields: str, display: str) -> list[list[str]]:
    done = subprocess.run(
        [
            "tshark",
            "-r",
            str(path),
            "-Y",
            display,
            "-T",
            "fields",
            *(x for f in fields for x in ("-e", f)),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return [line.split("\t") for line in done.stdout.splitlines()]


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    one = write_pcap(tmp_path / "a.pcap", "mix", CONNECTIONS, seed=3)
    write_pcap(tmp_path / "b.pcap", "mix", CONNECTIONS, seed=3)
    write_pcap(tmp_path / "c.pcap", "mix", CONNECTIONS, seed=4)
    assert (tmp_path / "a.pcap").read_bytes() == (tmp_path / "b.pcap").read_bytes()
    assert (tmp_path / "a.pcap").read_bytes() != (tmp_path / "c.pcap").read_bytes()
    assert one.connections == CONNECTIONS


@pytest.mark.oracle
@pytest.mark.skipif(not shutil.which("tshark"), reason="tshark not installed")
def test_proxy_profile_is_one_address_with_full_ntlm_handshakes(tmp_path: Path) -> None:
    path = tmp_path / "proxy.pcap"
    write_pcap(path, "proxy", CONNECTIONS)
    rows = _tshark(path, "ip.src", "tcp.stream", "ntlmssp.messagetype", display="ntlmssp")
    assert Counter(row[2] for row in rows) == {
        "0x00000001": CONNECTIONS,
        "0x00000002": CONNECTIONS,
        "0x00000003": CONNECTIONS,
    }
    assert len({row[1] for row in rows}) == CONNECTIONS
    clients = _tshark(path, "ip.src", display="http.request")
    assert {row[0] for row in clients} == {"10.9.0.1"}


@pytest.mark.oracle
@pytest.mark.skipif(not shutil.which("tshark"), reason="tshark not installed")
def test_kerberos_profile_asks_the_kdc_for_each_client(tmp_path: Path) -> None:
    path = tmp_path / "kerberos.pcap"
    write_pcap(path, "kerberos", CONNECTIONS, shape=Shape(seed=1))
    kdc = _tshark(
        path,
        "ip.src",
        "kerberos.msg_type",
        "kerberos.SNameString",
        display="kerberos.msg_type == 12 || kerberos.msg_type == 13",
    )
    # A TGS-REQ carries the AP-REQ of its TGT: tshark lists both message types.
    requests = [row for row in kdc if row[1].split(",")[0] == "12"]
    replies = [row for row in kdc if row[1].split(",")[0] == "13"]
    assert len(requests) == CONNECTIONS and len(replies) == CONNECTIONS
    assert len({row[0] for row in requests}) == CONNECTIONS  # many clients
    assert all("HTTP" in row[2] and "web01.contoso.test" in row[2] for row in requests)
    http = _tshark(path, "tcp.stream", display="http.authorization")
    assert len(http) == CONNECTIONS


def _row(profile: str, connections: int, analyze: float, tshark: float, peak: float) -> Row:
    return Row(
        profile,
        connections,
        0,
        0.0,
        {
            "analyze": Timing(analyze, peak, 0),
            "connections": Timing(analyze / 2, peak / 2, 0),
            "tshark": Timing(tshark, 100.0, 0),
        },
    )


def test_verdicts_follow_the_targets() -> None:
    lines = render_verdict(
        [_row("proxy", 4000, 1.0, 4.0, 100.0), _row("proxy", 8000, 3.0, 8.0, 150.0)]
    )
    assert "proxy 4000: analyze/tshark 0.25 <= 0.5: holds" in lines
    assert "proxy 8000: analyze/tshark 0.38 <= 0.5: holds" in lines
    assert "proxy analyze 4000 -> 8000: time x3.00 <= 2.3: does NOT hold" in lines
    assert "proxy analyze peak 4000 -> 8000: +50.0% <= 10%: does NOT hold" in lines
    assert "proxy 8000: analyze peak 150.0 MB <= 200 MB: holds" in lines


def test_a_failed_command_shows_as_failed_and_gets_no_verdict() -> None:
    broken = failed_timing("/usr/bin/python3: No module named authtrace")
    row = Row(
        "mix",
        4000,
        10,
        0.0,
        {"analyze": broken, "connections": broken, "tshark": Timing(2.0, 100.0, 0)},
    )
    table = render_table([row, _row("mix", 8000, 1.0, 4.0, 100.0)])
    assert table.count("FAILED: /usr/bin/python3: No module named authtrace") == 2
    assert "nan" not in table
    lines = render_verdict([row, _row("mix", 8000, 1.0, 4.0, 100.0)])
    assert "mix 4000: analyze failed, no verdict" in lines
    assert not [line for line in lines if "4000 ->" in line]
    assert "mix 8000: analyze/tshark 0.25 <= 0.5: holds" in lines
