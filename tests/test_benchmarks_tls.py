"""The TLS benchmark's capture (benchmarks/https_capture.py) is real enough to measure with:
tshark decrypts it with its key log and sees the HTTP requests authtrace sees, at the same
frames; the fast lane takes the segments inside TLS records and changes nothing; body-only
TLS 1.2 records are counted, not decrypted."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from authtrace import lane as lane_module  # noqa: E402
from authtrace.http.messages import HttpConnection  # noqa: E402
from authtrace.pipeline import Pipeline  # noqa: E402
from authtrace.tls.keylog import KeyLog  # noqa: E402
from benchmarks.https_capture import write_capture  # noqa: E402
from benchmarks.run import Timing  # noqa: E402
from benchmarks.tls import Row, render  # noqa: E402


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Six connections (four TLS 1.2, two TLS 1.3), in order: tshark does not
    follow TLS over out-of-order segments, which the benchmark's copy has."""
    out = tmp_path_factory.mktemp("https")
    path, keys = out / "https.pcap", out / "https.keys"
    write_capture(path, keys, 6, seed=3, perturb=False)
    return path, keys


def _read(path: Path, keys: Path, fast_lane: bool) -> tuple[list[HttpConnection], int]:
    log = KeyLog()
    log.add_text(keys.read_bytes(), "keys")
    lanes: list[lane_module.FastLane] = []
    pipeline = Pipeline(fast_lane=fast_lane, keylog=log)
    connections = list(pipeline.connections([path]))
    if pipeline._lane is not None:  # noqa: SLF001 - how many frames it took
        lanes.append(pipeline._lane)  # noqa: SLF001
    return connections, sum(lane.taken for lane in lanes)


def test_tshark_decrypts_the_requests_authtrace_reads(small: tuple[Path, Path]) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    path, keys = small
    out = subprocess.run(
        ["tshark", "-r", str(path), "-o", f"tls.keylog_file:{keys}", "-Y", "http.request",
         "-T", "fields", "-e", "frame.number"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    expected = [int(n) for n in out.split()]
    connections, _ = _read(path, keys, True)
    ours = sorted(e.request.shown_frame for c in connections for e in c.exchanges if e.request)
    assert len(connections) == 6 and ours == expected
    assert {c.tls.version for c in connections if c.tls} == {"TLS 1.2", "TLS 1.3"}


def _summed(connection: HttpConnection) -> HttpConnection:
    tls = connection.tls
    assert tls is not None
    return dataclasses.replace(
        connection,
        tls=dataclasses.replace(
            tls, records_opened=tls.records_opened + tls.records_counted, records_counted=0
        ),
    )


def test_lane_takes_segments_inside_records_and_changes_nothing(
    small: tuple[Path, Path],
) -> None:
    path, keys = small
    fast, taken = _read(path, keys, True)
    slow, _ = _read(path, keys, False)
    assert [_summed(c) for c in fast] == [_summed(c) for c in slow]
    frames = sum(c.packets for c in fast)
    # Nine frames in ten are inside a 16 KB record, or ACKs.
    assert taken > 0.8 * frames
    counted = [c.tls.records_counted for c in fast if c.tls and c.tls.version == "TLS 1.2"]
    assert all(n > 0 for n in counted)
    assert all(c.tls.records_counted == 0 for c in fast if c.tls and c.tls.version == "TLS 1.3")


def test_verdict_says_which_target_fails() -> None:
    fast = Row(400, 10, 1.0, Timing(1.0, 40.0, 1), Timing(4.0, 400.0, 0))
    slow = Row(800, 20, 2.0, Timing(4.0, 50.0, 1), Timing(4.0, 400.0, 0))
    lines = render([fast, slow])
    assert "400: analyze/tshark 0.25 <= 0.5: holds" in lines
    assert "800: analyze/tshark 1.00 <= 0.5: does NOT hold" in lines
    assert any(
        line.startswith("analyze peak 400 -> 800: +25.0%") and "NOT" in line for line in lines
    )
