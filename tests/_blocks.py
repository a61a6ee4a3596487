"""A generated capture cut into many linked blocks (handshake/links.py
LinkWindow, issue 10): what the sliding-window tests link and diagnose, and
compare with one link of the whole."""

from __future__ import annotations

from pathlib import Path

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
