"""The benchmark's capture generator and runner: a small capture is valid, deterministic and
counted right (tshark is the oracle), and the runner measures the child, not itself."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.make_capture import write_pcap  # noqa: E402
from benchmarks.measure import Timing, count_packets, time_command  # noqa: E402
from benchmarks.run import Row, render_verdict  # noqa: E402

SCALE = 0.01  # about 6k packets: every connection kind appears, the test stays well under 1 s


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("bench") / "small.pcap"
    return path, write_pcap(path, seed=7, scale=SCALE)


def test_same_seed_same_bytes_other_seed_other_bytes(small, tmp_path: Path) -> None:
    path, _ = small
    again = write_pcap(tmp_path / "again.pcap", seed=7, scale=SCALE)
    write_pcap(tmp_path / "other.pcap", seed=8, scale=SCALE)
    assert (tmp_path / "again.pcap").read_bytes() == path.read_bytes()
    assert (tmp_path / "other.pcap").read_bytes() != path.read_bytes()
    assert again.packets == count_packets(path)


def test_scale_doubles_the_connections_and_keeps_the_first_ones(tmp_path: Path) -> None:
    one = write_pcap(tmp_path / "one.pcap", seed=3, scale=SCALE)
    two = write_pcap(tmp_path / "two.pcap", seed=3, scale=2 * SCALE)
    assert 1.6 * one.packets < two.packets < 2.4 * one.packets
    assert two.http_requests > 1.5 * one.http_requests


def test_checksums_are_valid(small) -> None:
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.utils import PcapReader

    path, _ = small
    with PcapReader(str(path)) as reader:
        for n, packet in enumerate(reader):
            if n == 300:
                break
            ip = packet[IP]
            layer = ip[TCP] if TCP in ip else ip[UDP]
            sent_ip, sent_l4 = ip.chksum, layer.chksum
            del ip.chksum
            del layer.chksum
            rebuilt = IP(bytes(ip))
            assert rebuilt.chksum == sent_ip
            assert (rebuilt[TCP] if TCP in rebuilt else rebuilt[UDP]).chksum == sent_l4


def _tshark(path: Path, *args: str) -> list[str]:
    done = subprocess.run(
        ["tshark", "-r", str(path), *args], capture_output=True, text=True, check=True
    )
    return [line for line in done.stdout.splitlines() if line]


@pytest.mark.oracle
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_sees_what_the_generator_says_it_wrote(small) -> None:
    path, stats = small
    fields = _tshark(
        path, "-T", "fields", "-e", "http.request", "-e", "http.response", "-e", "_ws.malformed"
    )
    assert len(fields) == stats.packets
    assert sum(1 for f in fields if f.split("\t")[0] == "1") == stats.http_requests
    assert sum(1 for f in fields if f.split("\t")[1] == "1") == stats.http_responses
    assert not [f for f in fields if f.split("\t")[2]]
    ntlm = _tshark(path, "-Y", "ntlmssp.messagetype", "-T", "fields", "-e", "ntlmssp.messagetype")
    assert len(ntlm) == stats.ntlm_messages
    assert {"0x00000001", "0x00000002", "0x00000003"} == set(ntlm)
    noise = _tshark(
        path, "-Y", "tls or smb2 or dns or kerberos", "-T", "fields", "-e", "frame.protocols"
    )
    joined = "\n".join(noise)
    for protocol in (":tls", ":smb2", ":dns"):
        assert protocol in joined


def test_time_command_measures_the_child_peak() -> None:
    # Make this process's own peak well above 64 MB: the idle child's figure then shows that
    # the parent's peak does not leak into the child's (it would with a plain vfork + wait4).
    ballast = bytearray(128 * 2**20)
    ballast[::4096] = bytes(len(ballast[::4096]))
    grow = "b = bytearray(96 * 2**20); b[::4096] = bytes(len(b[::4096]))"
    big = time_command([sys.executable, "-c", grow], repeat=1)
    idle = time_command([sys.executable, "-c", "pass"], repeat=1)
    assert big.exit_status == 0 and big.peak_mb >= 96
    assert idle.peak_mb < 64
    del ballast
    failed = time_command([sys.executable, "-c", "raise SystemExit('no capture')"], repeat=1)
    assert failed.exit_status == 1 and failed.error == "no capture"


def test_verdict_names_each_target_that_fails() -> None:
    def row(label: str, seconds: float, peak: float) -> Row:
        tshark = 10.0 if label == "1x" else 20.0
        timings = {"authtrace": Timing(seconds, peak, 0), "tshark": Timing(tshark, 900.0, 0)}
        return Row(label, Path("x"), 1, 1.0, timings)

    good = render_verdict([row("1x", 2.0, 100.0), row("2x", 5.0, 105.0)])
    assert len(good) == 5 and all(line.endswith("holds") for line in good)
    bad = render_verdict([row("1x", 3.0, 100.0), row("2x", 5.0, 350.0)])
    failing = [line for line in bad if line.endswith("does NOT hold")]
    assert len(failing) == 3  # 1x ratio 0.3, 2x peak 350 MB, growth +250%


def test_a_child_that_does_not_start_is_a_failure_even_where_status_1_is_normal() -> None:
    # analyze exits 1 when it finds problems; an interpreter without the module exits 1 too.
    missing = time_command([sys.executable, "-m", "no_such_module_here"], 2, ok_statuses=(0, 1))
    assert missing.failed and "No module named" in missing.error
    findings = time_command(
        [sys.executable, "-c", "import sys; sys.stderr.write('authtrace: note\\n'); sys.exit(1)"],
        1,
        ok_statuses=(0, 1),
    )
    assert not findings.failed and findings.exit_status == 1
    quiet = time_command([sys.executable, "-c", "raise SystemExit(1)"], 1, ok_statuses=(0, 1))
    assert not quiet.failed
    two = time_command([sys.executable, "-c", "raise SystemExit(2)"], 1, ok_statuses=(0, 1))
    assert two.failed and two.error == "exit status 2"


def test_failure_reasons() -> None:
    from benchmarks.measure import failure

    assert failure(0, "", (0,)) == ""
    assert failure(1, "authtrace: 3 frames left out\n", (0, 1)) == ""
    assert failure(1, "Traceback (most recent call last):\nKeyError: 'x'\n", (0, 1)) == (
        "KeyError: 'x'"
    )
    assert failure(1, "", (0,)) == "exit status 1"
