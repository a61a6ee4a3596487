"""How many timelines the link window holds: its peak against the capture's connections.

This module owns the window view of the benchmarks (issue 10: "bound what links need to
remember"). It reads each capture through the public reading seam (`pipeline.judged_connections`)
and feeds every judged timeline to one `handshake/links.py LinkWindow` per stream, as `analyze`
does, dropping each block it hands on (what happens to blocks after linking is not measured here).
For each capture it prints the connections, the blocks linked, the most timelines the window held
at once (`LinkWindow.held_peak`, waiting ones included), how many waited for a follow-up answer
at the end of reading, and how many connections began back in time (`late`). `--horizon` sets
the window's horizon (default `WINDOW_HORIZON`; `LINK_HORIZON`, 600 s, is what the window held
before the follow-up index).

Invariant: it is a tool, not a test; it asserts nothing about the figures and changes nothing it
measures. Cost: one read of each capture, O(n log n) in its connections.

Usage (from the repository root; the captures come from `python3 -m benchmarks.auth_dense` or
`python3 -m benchmarks.auth`):

    python3 -m benchmarks.window benchmarks/out/auth-mix-4000-seed1.pcap
    python3 -m benchmarks.window --sizes 4000 8000 16000 --profiles proxy kerberos mix
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class WindowFigures:
    """What the link window held over one capture."""

    connections: int
    blocks: int
    held_peak: int
    waiting_at_end: int
    late: int


def measure(path: Path, horizon: float | None = None) -> WindowFigures:
    """Link one capture's judged connections over a LinkWindow per stream."""
    from authtrace.handshake.links import WINDOW_HORIZON, LinkWindow
    from authtrace.pipeline import Pipeline, judged_connections

    pipeline = Pipeline()
    windows: list[LinkWindow] = []
    connections = 0
    for stream, timeline in judged_connections(pipeline, [path]):
        while len(windows) <= stream:
            windows.append(LinkWindow(WINDOW_HORIZON if horizon is None else horizon))
        windows[stream].add(timeline)
        connections += 1
    waiting = sum(window.waiting for window in windows)
    for window in windows:
        window.finish(float("inf"))
    return WindowFigures(
        connections,
        sum(window.blocks for window in windows),
        max((window.held_peak for window in windows), default=0),
        waiting,
        sum(window.late for window in windows),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("captures", nargs="*", type=Path)
    parser.add_argument("--sizes", type=int, nargs="*", default=[], help="generated captures")
    parser.add_argument("--profiles", nargs="*", default=["proxy", "kerberos", "mix"])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--horizon", type=float, help="seconds (default: WINDOW_HORIZON)")
    args = parser.parse_args(argv)
    paths = list(args.captures)
    if args.sizes:
        from benchmarks.auth import ensure

        args.out.mkdir(parents=True, exist_ok=True)
        for size in args.sizes:
            for profile in args.profiles:
                paths.append(ensure(args.out, profile, size, args.seed)[0])
    if not paths:
        parser.error("no capture: give files or --sizes")
    print(f"{'capture':<36} {'conns':>7} {'blocks':>6} {'held peak':>9} {'waiting':>7} {'late':>5}")
    for path in paths:
        figures = measure(path, args.horizon)
        print(
            f"{path.name:<36} {figures.connections:>7} {figures.blocks:>6} "
            f"{figures.held_peak:>9} {figures.waiting_at_end:>7} {figures.late:>5}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
