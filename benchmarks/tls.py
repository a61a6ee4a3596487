"""Time `authtrace analyze --tls-keylog` against tshark on HTTPS captures (issue 12).

This module owns the TLS benchmark run: for each size (connections) it generates the capture
of `benchmarks.https_capture` and its key log (or reuses them), runs

    authtrace analyze F --tls-keylog K
    tshark -r F -o tls.keylog_file:K -Y "http.authorization || http.www_authenticate"

as child processes in the same run (best of N wall time, each child's own peak RSS through the
measuring helper of `benchmarks.run`), then prints a table and one verdict line per target. It
never fails (exit status 0): a benchmark is not a test.

Usage (from the repository root):

    python3 -m benchmarks.tls                    # 400 and 800 connections, best of 2
    python3 -m benchmarks.tls --quick            # 20 and 40 connections, one run
    python3 -m benchmarks.tls --sizes 200 400 --repeat 3

Targets (issue 12): analyze at most 0.5 of tshark's time; peak RSS as for cleartext (flat as
the capture grows: at most +10% from the smaller size to the larger).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
from pathlib import Path

from benchmarks.https_capture import capture_paths, write_capture
from benchmarks.make_capture import DEFAULT_OUT
from benchmarks.measure import Timing, authtrace_argv, count_packets, load, time_command

SIZES = (400, 800)
RATIO_TARGET = 0.5
GROWTH_TARGET = 0.10
TSHARK_FILTER = "http.authorization || http.www_authenticate"


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    connections: int
    packets: int
    size_mb: float
    analyze: Timing
    tshark: Timing | None


def ensure(out_dir: Path, connections: int, seed: int) -> tuple[Path, Path, int]:
    path, keys = capture_paths(out_dir, connections, seed)
    if path.exists() and keys.exists():
        return path, keys, count_packets(path)
    started = time.perf_counter()
    packets, written = write_capture(path, keys, connections, seed)
    print(
        f"generated {path.name}: {packets} packets, {written / 1e6:.0f} MB in "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )
    return path, keys, packets


def render(rows: list[Row]) -> list[str]:
    header = (
        f"{'conns':>6} {'packets':>8} {'MB':>6} {'analyze s':>9} {'tshark s':>8} {'ratio':>6} "
        f"{'analyze MB':>10} {'tshark MB':>9}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        tshark = row.tshark
        ratio = f"{row.analyze.seconds / tshark.seconds:.2f}" if tshark else "-"
        failed = f"  FAILED: {row.analyze.error}" if row.analyze.failed else ""
        lines.append(
            f"{row.connections:>6} {row.packets:>8} {row.size_mb:>6.0f} "
            f"{row.analyze.seconds:>9.2f} {tshark.seconds if tshark else float('nan'):>8.2f} "
            f"{ratio:>6} {row.analyze.peak_mb:>10.1f} "
            f"{tshark.peak_mb if tshark else float('nan'):>9.1f}{failed}"
        )
    lines.append("")
    for row in rows:
        if row.tshark:
            ratio = row.analyze.seconds / row.tshark.seconds
            verdict = "holds" if ratio <= RATIO_TARGET else "does NOT hold"
            lines.append(
                f"{row.connections}: analyze/tshark {ratio:.2f} <= {RATIO_TARGET}: {verdict}"
            )
    if len(rows) >= 2:
        growth = rows[-1].analyze.peak_mb / rows[0].analyze.peak_mb - 1
        verdict = "holds" if growth <= GROWTH_TARGET else "does NOT hold"
        lines.append(
            f"analyze peak {rows[0].connections} -> {rows[-1].connections}: {growth:+.1%} <= "
            f"{GROWTH_TARGET:.0%}: {verdict}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="best of N runs (default 2)")
    parser.add_argument("--quick", action="store_true", help="20 and 40 connections, one run")
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    sizes = [20, 40] if args.quick else sorted(args.sizes)
    repeat = 1 if args.quick else max(1, args.repeat)
    print(f"before: {load()}", flush=True)
    rows: list[Row] = []
    for connections in sizes:
        path, keys, packets = ensure(args.out_dir, connections, args.seed)
        analyze = [*authtrace_argv(), "analyze", str(path), "--tls-keylog", str(keys)]
        print(f"{connections}: analyze x{repeat} ...", flush=True)
        # analyze ends with 1 when it finds problems: a run that did its work.
        timing = time_command(analyze, repeat, ok_statuses=(0, 1))
        tshark = None
        if shutil.which("tshark"):
            print(f"{connections}: tshark x{repeat} ...", flush=True)
            command = ["tshark", "-r", str(path), "-o", f"tls.keylog_file:{keys}"]
            tshark = time_command([*command, "-Y", TSHARK_FILTER], repeat)
        rows.append(Row(connections, packets, path.stat().st_size / 1e6, timing, tshark))
    print(f"after: {load()}")
    print()
    print(f"best of {repeat}; peak = child's ru_maxrss (worst of the runs), MiB")
    for line in render(rows):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
