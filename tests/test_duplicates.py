"""Frames captured twice (net/duplicates.py): copies are recognised as
Wireshark's `editcap -w 0.05` recognises them, reported as one anomaly, and
left out, so a capture holding its traffic twice gives the findings it gives
once."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from authtrace.net.duplicates import DuplicateFrames
from authtrace.pipeline import Pipeline, analyze

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "captures" / "scenarios"
SHARED = ROOT.parent / "shared" / "captures"


def _doubled(source: Path, target: Path, delay_us: int) -> Path:
    """Every record written twice, the copy `delay_us` later (a SPAN of two ports)."""
    data = source.read_bytes()
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    out, offset = [data[:24]], 24
    while offset < len(data):
        seconds, fraction, captured, original = struct.unpack_from(order + "IIII", data, offset)
        body = data[offset + 16 : offset + 16 + captured]
        for extra in (0, delay_us):
            total = fraction + extra
            out.append(
                struct.pack(
                    order + "IIII",
                    seconds + total // 1_000_000,
                    total % 1_000_000,
                    captured,
                    original,
                )
                + body
            )
        offset += 16 + captured
    target.write_bytes(b"".join(out))
    return target


def test_window_and_bytes() -> None:
    seen = DuplicateFrames()
    assert not seen.is_copy(b"abc", 10.0, 1)
    assert seen.is_copy(b"abc", 10.01, 2)  # a copy
    assert not seen.is_copy(b"abd", 10.02, 3)  # other bytes
    assert not seen.is_copy(b"abc", 10.2, 4)  # too late: a retransmission
    assert not seen.is_copy(b"abd", 9.0, 5)  # time went back: not a copy
    summary = seen.summary()
    assert (summary.copies, summary.first_copy, summary.first_original) == (1, 2, 1)


@pytest.mark.parametrize(
    "name",
    [
        "ntlm-logon-failed.pcap",
        "repeated-logon-failures.pcap",
        "pooling-proxy.pcap",
        "kerberos-fallback-spn-unknown.pcap",
    ],
)
def test_doubled_capture_gives_the_same_findings(name: str, tmp_path: Path) -> None:
    original = analyze([SCENARIOS / name])
    doubled = analyze([_doubled(SCENARIOS / name, tmp_path / name, 20)])
    assert [(f.rule, f.title, f.connections) for f in doubled.findings] == [
        (f.rule, f.title, f.connections) for f in original.findings
    ]
    # Frame n of the original is frame 2n - 1 of the doubled capture.
    assert [f.frames for f in doubled.findings] == [
        tuple(2 * n - 1 for n in f.frames) for f in original.findings
    ]
    kinds = [a.kind for a in doubled.anomalies]
    assert kinds.count("duplicate-frames") == 1
    assert "duplicate-frames" not in [a.kind for a in original.anomalies]


def test_no_copies_in_the_hand_built_captures() -> None:
    for capture in sorted(SCENARIOS.glob("*.pcap")):
        report = analyze([capture])
        assert "duplicate-frames" not in [a.kind for a in report.anomalies], capture.name


def _copies(path: Path, fast_lane: bool) -> int:
    pipeline = Pipeline(fast_lane=fast_lane)
    for _connection in pipeline.connections([path]):
        pass
    for anomaly in pipeline.result.anomalies:
        if anomaly.kind == "duplicate-frames":
            return int(anomaly.message.split()[0])
    return 0


def _checked_frames(path: Path) -> set[int]:
    """Frames the pipeline checks, by tshark: UDP, and TCP with SYN, FIN or RST."""
    done = subprocess.run(
        [
            "tshark",
            "-r",
            str(path),
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "tcp.flags",
            "-e",
            "udp.srcport",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    checked = set()
    for line in done.stdout.splitlines():
        number, flags, udp = (line.split("\t") + ["", ""])[:3]
        if udp or (flags and int(flags, 16) & 0x07):
            checked.add(int(number))
    return checked


@pytest.mark.oracle
@pytest.mark.shared
@pytest.mark.skipif(not shutil.which("editcap"), reason="editcap not installed")
@pytest.mark.skipif(not SHARED.is_dir(), reason="shared captures absent")
@pytest.mark.parametrize(
    "name",
    [
        "odedshimon__BruteShark/Pcap_Examples__Kerberos - v5 UDP.pcap",
        "arkime__arkime/tests__pcap__arkime_synthetic.pcap",
        "ntop__nDPI/tests__cfgs__default__pcap__kerberos-login.pcap",
        "the-tcpdump-group__tcpdump/tests__afs.pcap",
    ],
)
def test_copies_are_those_editcap_finds(name: str, tmp_path: Path) -> None:
    """editcap -w 0.05 -V names every frame it skips as a copy; of those, the
    pipeline checks UDP and SYN/FIN/RST segments, with or without the lane."""
    path = SHARED / name
    if not path.exists():
        pytest.skip("capture absent")
    done = subprocess.run(
        ["editcap", "-V", "-w", "0.05", str(path), str(tmp_path / "out.pcap")],
        capture_output=True,
        text=True,
        check=False,
    )
    skipped = {int(n) for n in re.findall(r"^Skipped: (\d+)", done.stdout + done.stderr, re.M)}
    assert skipped, done.stdout + done.stderr
    expected = len(skipped & _checked_frames(path))
    assert _copies(path, fast_lane=False) == _copies(path, fast_lane=True) == expected > 0
