"""Time `authtrace analyze` and `connections` against tshark on the auth-dense profiles.

This module owns the auth-dense benchmark run (issue 10): for each profile of
`benchmarks.auth_dense` (proxy, kerberos, mix) at 4k, 8k and 16k connections it generates the
capture (or reuses it), runs `authtrace analyze`, `authtrace connections` and

    tshark -r F -Y "http.authorization || http.www_authenticate" -T fields \\
        -e tcp.stream -e ntlmssp.messagetype

as child processes in the same run (best of N wall time, each child's own peak RSS through the
measuring helper of `benchmarks.run`), then prints a table and one verdict line per target. It
never fails (exit status 0): a benchmark is not a test.

Usage (from the repository root):

    python3 -m benchmarks.auth                      # 3 profiles x 4k/8k/16k, best of 2
    python3 -m benchmarks.auth --quick              # 300/600 connections, one run
    python3 -m benchmarks.auth --profiles proxy --sizes 4000 8000

Targets (issue 10): analyze <= 0.5 x tshark's time at every size and profile; twice the
connections cost at most 2.3x the time; analyze's peak RSS <= 200 MB and growing by at most 10%
from the smallest to the largest size.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import time
from pathlib import Path

from benchmarks.auth_dense import PROFILES, SIZES, capture_path, write_pcap
from benchmarks.make_capture import DEFAULT_OUT
from benchmarks.run import Timing, authtrace_argv, count_packets, time_command

RATIO_TARGET = 0.5
DOUBLING_TARGET = 2.3
PEAK_TARGET_MB = 200.0
GROWTH_TARGET = 0.10
TSHARK_FILTER = "http.authorization || http.www_authenticate"


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    profile: str
    connections: int
    packets: int
    size_mb: float
    timings: dict[str, Timing]


def commands(path: Path) -> dict[str, list[str]]:
    file = str(path)
    out = {
        "analyze": [*authtrace_argv(), "analyze", file],
        "connections": [*authtrace_argv(), "connections", file],
    }
    if shutil.which("tshark"):
        out["tshark"] = [
            "tshark",
            "-r",
            file,
            "-Y",
            TSHARK_FILTER,
            "-T",
            "fields",
            "-e",
            "tcp.stream",
            "-e",
            "ntlmssp.messagetype",
        ]
    return out


def ensure(out_dir: Path, profile: str, connections: int, seed: int) -> tuple[Path, int]:
    path = capture_path(out_dir, profile, connections, seed)
    if path.exists():
        return path, count_packets(path)
    started = time.perf_counter()
    stats = write_pcap(path, profile, connections, seed)
    print(
        f"generated {path.name}: {stats.packets} packets, {stats.bytes_written / 1e6:.0f} MB "
        f"in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    return path, stats.packets


def render_table(rows: list[Row]) -> str:
    header = (
        f"{'profile':<9} {'conns':>6} {'packets':>8} {'command':<12} {'time s':>7} "
        f"{'tshark s':>8} {'ratio':>6} {'peak MB':>8} {'tshark MB':>9}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        tshark = row.timings.get("tshark")
        for name, timing in row.timings.items():
            if name == "tshark":
                continue
            ratio = f"{timing.seconds / tshark.seconds:.2f}" if tshark else "-"
            failed = f"  FAILED: {timing.error}" if timing.exit_status not in (0, 1) else ""
            lines.append(
                f"{row.profile:<9} {row.connections:>6} {row.packets:>8} {name:<12} "
                f"{timing.seconds:>7.2f} {tshark.seconds if tshark else float('nan'):>8.2f} "
                f"{ratio:>6} {timing.peak_mb:>8.1f} "
                f"{tshark.peak_mb if tshark else float('nan'):>9.1f}{failed}"
            )
    return "\n".join(lines)


def _holds(ok: bool) -> str:
    return "holds" if ok else "does NOT hold"


def render_verdict(rows: list[Row]) -> list[str]:
    """One line per target: holds / does NOT hold, with the numbers."""
    out: list[str] = []
    for profile in dict.fromkeys(row.profile for row in rows):
        mine = sorted((r for r in rows if r.profile == profile), key=lambda r: r.connections)
        for row in mine:
            analyze, tshark = row.timings["analyze"], row.timings.get("tshark")
            if tshark:
                ratio = analyze.seconds / tshark.seconds
                out.append(
                    f"{profile} {row.connections}: analyze/tshark {ratio:.2f} <= {RATIO_TARGET}: "
                    f"{_holds(ratio <= RATIO_TARGET)}"
                )
            out.append(
                f"{profile} {row.connections}: analyze peak {analyze.peak_mb:.1f} MB <= "
                f"{PEAK_TARGET_MB:.0f} MB: {_holds(analyze.peak_mb <= PEAK_TARGET_MB)}"
            )
        for small, large in zip(mine, mine[1:], strict=False):
            if large.connections != 2 * small.connections:
                continue
            for name in ("analyze", "connections"):
                growth = large.timings[name].seconds / small.timings[name].seconds
                out.append(
                    f"{profile} {name} {small.connections} -> {large.connections}: time x"
                    f"{growth:.2f} <= {DOUBLING_TARGET}: {_holds(growth <= DOUBLING_TARGET)}"
                )
        if len(mine) >= 2:
            first, last = mine[0].timings["analyze"], mine[-1].timings["analyze"]
            growth = last.peak_mb / first.peak_mb - 1
            out.append(
                f"{profile} analyze peak {mine[0].connections} -> {mine[-1].connections}: "
                f"{growth:+.1%} <= {GROWTH_TARGET:.0%}: {_holds(growth <= GROWTH_TARGET)}"
            )
    return out


def load() -> str:
    """How busy the machine was (others share it): the 1-minute load average and cores."""
    try:
        one, five, _fifteen = os.getloadavg()
    except OSError:
        return "load average unknown"
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="best of N runs (default 2)")
    parser.add_argument("--quick", action="store_true", help="300 and 600 connections, one run")
    parser.add_argument("--profiles", nargs="+", choices=PROFILES, default=list(PROFILES))
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    sizes = [300, 600] if args.quick else args.sizes
    repeat = 1 if args.quick else max(1, args.repeat)

    print(f"before: {load()}", flush=True)
    rows: list[Row] = []
    for profile in args.profiles:
        for connections in sizes:
            path, packets = ensure(args.out_dir, profile, connections, args.seed)
            timings: dict[str, Timing] = {}
            for name, command in commands(path).items():
                print(f"{profile} {connections}: {name} x{repeat} ...", flush=True)
                timings[name] = time_command(command, repeat)
            rows.append(Row(profile, connections, packets, path.stat().st_size / 1e6, timings))
    print(f"after: {load()}")
    print()
    print(f"best of {repeat}; peak = child's ru_maxrss (worst of the runs), MiB")
    print(render_table(rows))
    print()
    for line in render_verdict(rows):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
