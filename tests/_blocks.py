"""A generated capture cut into many linked blocks (handshake/links.py
LinkWindow, issue 10): what the sliding-window tests link and diagnose, and
compare with one link of the whole."""

from __future__ import annotations

from pathlib import Path

from authtrace.diagnose.finding import Finding
from authtrace.handshake.links import LinkedBlock, LinkWindow
from authtrace.handshake.timeline import ConnectionTimeline, build_timeline
from authtrace.kerberos.kdc import KdcExchange
from authtrace.pipeline import read_connections
from benchmarks.auth_dense import Shape, write_pcap

CONNECTIONS = 2000
# Far shorter than the capture (about 80 s) and than the links' own bounds, but
# longer than any link in the generated capture (its split handshakes and
# follow-ups are a few hundred milliseconds apart).
SHORT_HORIZON = 2.0

Judged = tuple[list[ConnectionTimeline], tuple[KdcExchange, ...], float, float]


def judged_capture(path: Path, shape: Shape) -> Judged:
    """Write the mix profile's capture and judge every connection on its own:
    (timelines, KDC exchanges, first time stamp, last time stamp)."""
    write_pcap(path, "mix", CONNECTIONS, shape=shape)
    connections, result = read_connections([path])
    assert result.kdc is not None
    times = [t for info in result.captures for t in (info.first_time, info.last_time) if t]
    timelines = [build_timeline(connection) for connection in connections]
    return timelines, result.kdc.exchanges, min(times), max(times)


class ShortBlocks(LinkWindow):
    """Blocks of one horizon: many more block boundaries to cross."""

    __slots__ = ()
    BLOCK_HORIZONS = 1


def windowed(
    timelines: list[ConnectionTimeline], horizon: float, end: float, short_blocks: bool = False
) -> tuple[list[LinkedBlock], LinkWindow]:
    """The blocks a window of `horizon` hands on over these timelines, and the window."""
    window = (ShortBlocks if short_blocks else LinkWindow)(horizon)
    blocks = [block for t in timelines if (block := window.add(t)) is not None]
    last = window.finish(end)
    if last is not None:
        blocks.append(last)
    return blocks, window


# Clients of `follow_up_capture` (the filler's connections come from FILLER).
CAME_BACK, CAME_BACK_LATE, NEVER_BACK, FILLER = (bytes([10, 30, 0, n]) for n in (1, 2, 3, 4))


def follow_up_capture(path: Path) -> Path:
    """Anonymous 401s whose answer comes long after the short links' horizon:
    CAME_BACK's (at 0 s) is answered by an NTLM logon on a new connection at
    300 s (within FOLLOW_UP_WINDOW: a normal first leg), CAME_BACK_LATE's (at
    5 s) only at 650 s (too late: a failure), NEVER_BACK's (at 200 s) never;
    FILLER opens a full NTLM connection every second from 0 s to 700 s, so a
    short horizon cuts the capture into hundreds of blocks between them."""
    import random

    from benchmarks.auth_dense import SERVER, ignores_negotiate, ntlm_connection
    from benchmarks.make_capture import TcpFlow, interleave, write_frames

    start = Shape().start_us
    plan: list[tuple[float, bytes, bool]] = [
        (0.0, CAME_BACK, False),
        (5.0, CAME_BACK_LATE, False),
        (200.0, NEVER_BACK, False),
        (300.0, CAME_BACK, True),
        (655.0, CAME_BACK_LATE, True),
    ]
    plan += [(0.5 + second, FILLER, True) for second in range(700)]
    plan.sort(key=lambda item: item[0])

    def sources():  # type: ignore[no-untyped-def]
        for n, (at, client, logs_on) in enumerate(plan):
            rng = random.Random(f"follow-up:{n}")
            flow = TcpFlow(rng, client, SERVER, 20000 + n, 80)
            steps = ntlm_connection(rng, flow, "user1") if logs_on else ignores_negotiate(rng, flow)
            yield start + int(at * 1_000_000), steps

    write_frames(path, interleave(sources()))
    return path


def told(findings: list[Finding]) -> list[tuple[object, ...]]:
    """What a report tells of each finding (its words, fields, frames and
    citations), to compare findings diagnosed block by block with one
    diagnosis of the whole."""
    return [
        (
            f.rule,
            f.severity,
            f.title,
            f.explanation,
            f.host,
            f.fields,
            f.values,
            f.connections,
            f.frames,
            f.occurrences,
            f.iis,
            tuple((c.frame, c.role, c.connection) for c in f.citations),
        )
        for f in findings
    ]
