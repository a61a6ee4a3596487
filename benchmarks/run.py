"""Time `authtrace connections` against tshark on the synthetic capture at 1x and 2x.

This module owns the benchmark run: it generates the captures (or reuses them), runs each
command as a child process best-of-N, and prints wall time and the child's own peak RSS
(`os.wait4` rusage, so the parent's memory never leaks into the figure). It measures and
prints verdict lines; it never fails the run (exit status 0), because a benchmark is not a test.

Usage (from the repository root):

    python3 -m benchmarks.run                 # 1x and 2x, best of 3
    python3 -m benchmarks.run --quick         # small files, one run: checks the script works
    python3 -m benchmarks.run --profile       # cProfile of `authtrace connections` on 1x, top 25
    python3 -m benchmarks.run --stages        # time read / decode / reassemble / http on 1x

Targets (issue 2): authtrace time <= 0.25 x tshark's; authtrace peak RSS < 300 MB and growing
by no more than ~10% from 1x to 2x.
"""

from __future__ import annotations

import argparse
import dataclasses
import pstats
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.make_capture import DEFAULT_OUT, capture_path, write_pcap
from benchmarks.measure import (
    Column,
    Timing,
    authtrace_argv,
    generate_or_reuse,
    probe,
    time_command,
)
from benchmarks.measure import render_table as table

RATIO_TARGET = 0.25
PEAK_TARGET_MB = 300.0
GROWTH_TARGET = 0.10


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    label: str
    path: Path
    packets: int
    size_mb: float
    timings: dict[str, Timing]


def connections_available() -> bool:
    problem = probe([*authtrace_argv(), "connections", "--help"])
    if problem:
        print(f"`authtrace connections` does not start: {problem}")
    return not problem


def commands(path: Path, with_authtrace: bool) -> dict[str, list[str]]:
    file = str(path)
    out: dict[str, list[str]] = {}
    if with_authtrace:
        out["authtrace"] = [*authtrace_argv(), "connections", file]
        out["authtrace --json"] = [*authtrace_argv(), "connections", "--json", file]
    if shutil.which("tshark"):
        out["tshark"] = ["tshark", "-r", file, "-Y", "http", "-T", "fields", "-e", "tcp.stream"]
    return out


def ensure_capture(out_dir: Path, scale: float, seed: int) -> tuple[Path, int]:
    path = capture_path(out_dir, scale, seed)
    return path, generate_or_reuse(path, lambda p: write_pcap(p, seed, scale))


COLUMNS = (Column("size", 5), Column("packets", 9), Column("MB", 6))


def render_table(rows: list[Row]) -> str:
    return table(
        COLUMNS,
        [((r.label, r.packets, f"{r.size_mb:.0f}"), r.timings) for r in rows],
        ratio_digits=3,
    )


def render_verdict(rows: list[Row]) -> list[str]:
    """One line per target and authtrace command: holds / does NOT hold, with the numbers."""
    out: list[str] = []
    names = [n for n in rows[0].timings if n != "tshark"] if rows else []
    for name in names:
        for row in rows:
            timing, tshark = row.timings[name], row.timings.get("tshark")
            if timing.failed:
                out.append(f"{name} at {row.label}: the command failed, no verdict")
                continue
            if tshark:
                ratio = timing.seconds / tshark.seconds
                out.append(
                    f"{name} at {row.label}: time ratio {ratio:.3f} <= {RATIO_TARGET}: "
                    f"{'holds' if ratio <= RATIO_TARGET else 'does NOT hold'}"
                )
            out.append(
                f"{name} at {row.label}: peak {timing.peak_mb:.1f} MB < {PEAK_TARGET_MB:.0f} MB: "
                f"{'holds' if timing.peak_mb < PEAK_TARGET_MB else 'does NOT hold'}"
            )
        if len(rows) >= 2:
            first, last = rows[0].timings[name], rows[-1].timings[name]
            if not (first.failed or last.failed):
                growth = last.peak_mb / first.peak_mb - 1
                out.append(
                    f"{name}: peak growth {rows[0].label} -> {rows[-1].label} {growth:+.1%} "
                    f"<= {GROWTH_TARGET:.0%}: "
                    f"{'holds' if growth <= GROWTH_TARGET else 'does NOT hold'}"
                )
    return out


def profile(path: Path, top: int, out_dir: Path) -> None:
    """cProfile `authtrace connections` on `path` in a child; print the top functions."""
    stats_file = out_dir / "connections.pstats"
    argv = [
        sys.executable,
        "-m",
        "cProfile",
        "-o",
        str(stats_file),
        "-m",
        "authtrace",
        "connections",
        str(path),
    ]
    print(f"profiling: {' '.join(argv[1:])}", flush=True)
    started = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, check=False)
    print(f"exit status {done.returncode}, {time.perf_counter() - started:.1f} s under cProfile")
    if not stats_file.exists():
        print("no profile written")
        return
    stats = pstats.Stats(str(stats_file), stream=sys.stdout)
    print(f"\ntop {top} by own time (tottime), builtins included:")
    stats.sort_stats("tottime").print_stats(top)
    # Cumulative time is only telling inside the package (runpy and click wrap everything).
    print(f"\ntop {top} authtrace functions by cumulative time:")
    stats.sort_stats("cumulative").print_stats(r"authtrace[/\\]", top)


def time_stages(path: Path, repeat: int) -> None:
    """Time benchmarks.stages up to each layer on `path`; the step between rows is a layer."""
    from benchmarks.stages import STAGES

    print(f"\nstages on {path.name}, best of {repeat} (each a child; peak = its ru_maxrss, MiB)")
    print(f"{'stage':<11} {'time s':>8} {'layer s':>8} {'peak MB':>8}")
    previous = 0.0
    for stage in STAGES:
        argv = [sys.executable, "-m", "benchmarks.stages", "--stage", stage, str(path)]
        timing = time_command(argv, repeat)
        if timing.failed:
            print(f"{stage:<11} not available: {timing.error}")
            break
        print(
            f"{stage:<11} {timing.seconds:>8.2f} {timing.seconds - previous:>8.2f} "
            f"{timing.peak_mb:>8.1f}",
            flush=True,
        )
        previous = timing.seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="authtrace connections vs tshark, 1x and 2x")
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs (default 3)")
    parser.add_argument("--quick", action="store_true", help="small files, one run")
    parser.add_argument("--profile", action="store_true", help="cProfile authtrace on 1x")
    parser.add_argument("--top", type=int, default=25, help="functions shown by --profile")
    parser.add_argument("--stages", action="store_true", help="time each layer on 1x (library)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    scales = [(0.02, "q1x"), (0.04, "q2x")] if args.quick else [(1.0, "1x"), (2.0, "2x")]
    repeat = 1 if args.quick else max(1, args.repeat)
    available = connections_available()
    if not available:
        print("timing tshark only")

    if args.stages:
        path, _ = ensure_capture(args.out_dir, scales[0][0], args.seed)
        time_stages(path, repeat)
        return 0

    if args.profile:
        path, _ = ensure_capture(args.out_dir, scales[0][0], args.seed)
        if available:
            profile(path, args.top, args.out_dir)
        else:
            print("nothing to profile")
        return 0

    rows: list[Row] = []
    for scale, label in scales:
        path, packets = ensure_capture(args.out_dir, scale, args.seed)
        timings: dict[str, Timing] = {}
        for name, command in commands(path, available).items():
            print(f"{label}: {name} x{repeat} ...", flush=True)
            timings[name] = time_command(command, repeat)
        rows.append(Row(label, path, packets, path.stat().st_size / 1e6, timings))

    print()
    print(f"best of {repeat}; peak = child's ru_maxrss (worst of the runs), MiB; file size in MB")
    print(render_table(rows))
    print()
    for line in render_verdict(rows):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
