"""Per-connection results are self-contained records (issue 10, "mergeable by
design"): a judged connection timeline and a KDC exchange pickle and come back
equal, through the run's spool as through a plain pickle, and linking and
judging records read back gives exactly the findings of the records kept in
memory, so that workers could produce them and one step could link them."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from authtrace.diagnose import RuleContext, diagnose  # noqa: E402
from authtrace.handshake.links import link  # noqa: E402
from authtrace.handshake.timeline import ConnectionTimeline, build_timeline  # noqa: E402
from authtrace.kerberos.kdc import KdcExchange  # noqa: E402
from authtrace.pipeline import read_connections  # noqa: E402
from authtrace.spool import Spool  # noqa: E402
from benchmarks.auth_dense import Shape, write_pcap  # noqa: E402


def _judge(
    timelines: list[ConnectionTimeline], kdc: tuple[KdcExchange, ...], start: float, end: float
) -> list[tuple[str, str, tuple[int, ...], tuple[int, ...]]]:
    view = link(timelines, start, end, kdc)
    findings, problems = diagnose(RuleContext(view, kdc))
    assert not problems
    return [(f.rule, f.title, f.connections, f.frames) for f in findings]


@pytest.mark.parametrize(("profile", "count"), [("mix", 240), ("kerberos", 60)])
def test_records_read_back_link_to_the_same_findings(
    tmp_path: Path, profile: str, count: int
) -> None:
    path = tmp_path / f"{profile}.pcap"
    write_pcap(path, profile, count, shape=Shape(seed=3))
    connections, result = read_connections([path])
    assert result.kdc is not None
    kdc = result.kdc.exchanges
    assert kdc, "both profiles ask the KDC"
    times = [t for info in result.captures for t in (info.first_time, info.last_time) if t]
    start, end = min(times), max(times)
    timelines = [build_timeline(connection) for connection in connections]
    expected = _judge(timelines, kdc, start, end)
    # mix sprinkles failures and splits; kerberos is healthy (no finding)
    assert bool(expected) == (profile == "mix")

    spool = Spool()
    held = [spool.put(timeline) for timeline in timelines]
    read_back = [handle.get() for handle in held]
    assert read_back == timelines
    assert all(a is not b for a, b in zip(read_back, timelines, strict=True))
    shipped = pickle.loads(pickle.dumps(kdc))
    assert shipped == kdc
    assert [k.to_dict() for k in shipped] == [k.to_dict() for k in kdc]
    assert _judge(read_back, shipped, start, end) == expected
