"""Time `authtrace analyze` and `connections` against tshark on the auth-dense profiles.

This module owns the auth-dense benchmark run (issue 10): for each profile of
`benchmarks.auth_dense` (proxy, kerberos, mix) at 4k, 8k and 16k connections it generates the
capture (or reuses it), runs `authtrace analyze`, `authtrace connections` and

    tshark -r F -Y "http.authorization || http.www_authenticate" -T fields \\
        -e tcp.stream -e ntlmssp.messagetype

as child processes in the same run (best of N wall time, each child's own peak RSS through the
measuring helper of `benchmarks.measure`), then prints a table and one verdict line per target. It
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
import shutil
import sys
from pathlib import Path

from benchmarks.auth_dense import PROFILES, SIZES, capture_path, write_pcap
from benchmarks.make_capture import DEFAULT_OUT
from benchmarks.measure import (
    Column,
    Timing,
    authtrace_argv,
    failed_timing,
    generate_or_reuse,
    load,
    probe,
    time_command,
)
from benchmarks.measure import render_table as table

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


def commands(path: Path, jobs: str = "auto", serial_too: bool = False) -> dict[str, list[str]]:
    """jobs: analyze's --jobs; serial_too: also `analyze --jobs 1`, run right after it (the
    same moment's load for both)."""
    file = str(path)
    out = {"analyze": [*authtrace_argv(), "analyze", "--jobs", jobs, file]}
    if serial_too:
        out["analyze -j1"] = [*authtrace_argv(), "analyze", "--jobs", "1", file]
    out["connections"] = [*authtrace_argv(), "connections", file]
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


# analyze ends with status 1 when it finds problems: that is a run that did its work.
OK_STATUSES = {"analyze": (0, 1), "analyze -j1": (0, 1), "connections": (0,), "tshark": (0,)}


def ensure(out_dir: Path, profile: str, connections: int, seed: int) -> tuple[Path, int]:
    path = capture_path(out_dir, profile, connections, seed)
    return path, generate_or_reuse(path, lambda p: write_pcap(p, profile, connections, seed))


COLUMNS = (Column("profile", 9, "<"), Column("conns", 6), Column("packets", 8))


def render_table(rows: list[Row]) -> str:
    return table(COLUMNS, [((r.profile, r.connections, r.packets), r.timings) for r in rows])


def _holds(ok: bool) -> str:
    return "holds" if ok else "does NOT hold"


def render_verdict(rows: list[Row]) -> list[str]:
    """One line per target: holds / does NOT hold, with the numbers; a failed command gets
    "no verdict" instead of a figure."""
    out: list[str] = []
    for profile in dict.fromkeys(row.profile for row in rows):
        mine = sorted((r for r in rows if r.profile == profile), key=lambda r: r.connections)
        for row in mine:
            analyze, tshark = row.timings["analyze"], row.timings.get("tshark")
            if analyze.failed:
                out.append(f"{profile} {row.connections}: analyze failed, no verdict")
                continue
            if tshark and not tshark.failed:
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
                before, after = small.timings[name], large.timings[name]
                if before.failed or after.failed:
                    continue
                growth = after.seconds / before.seconds
                out.append(
                    f"{profile} {name} {small.connections} -> {large.connections}: time x"
                    f"{growth:.2f} <= {DOUBLING_TARGET}: {_holds(growth <= DOUBLING_TARGET)}"
                )
        measured = [r for r in mine if not r.timings["analyze"].failed]
        if len(measured) >= 2:
            first, last = measured[0].timings["analyze"], measured[-1].timings["analyze"]
            growth = last.peak_mb / first.peak_mb - 1
            out.append(
                f"{profile} analyze peak {measured[0].connections} -> "
                f"{measured[-1].connections}: "
                f"{growth:+.1%} <= {GROWTH_TARGET:.0%}: {_holds(growth <= GROWTH_TARGET)}"
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="best of N runs (default 2)")
    parser.add_argument("--quick", action="store_true", help="300 and 600 connections, one run")
    parser.add_argument("--profiles", nargs="+", choices=PROFILES, default=list(PROFILES))
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--jobs", default="auto", help="analyze --jobs (default auto)")
    parser.add_argument(
        "--serial-too", action="store_true", help="also time analyze --jobs 1 right after"
    )
    args = parser.parse_args(argv)
    sizes = [300, 600] if args.quick else args.sizes
    repeat = 1 if args.quick else max(1, args.repeat)

    print(f"before: {load()}", flush=True)
    # A child that cannot start (no authtrace for this interpreter) exits 1 like an analyze
    # that found problems: ask once, and show FAILED with its reason instead of its time.
    broken = probe([*authtrace_argv(), "--version"])
    if broken:
        print(f"authtrace does not start: {broken}", flush=True)
    rows: list[Row] = []
    for profile in args.profiles:
        for connections in sizes:
            path, packets = ensure(args.out_dir, profile, connections, args.seed)
            timings: dict[str, Timing] = {}
            for name, command in commands(path, args.jobs, args.serial_too).items():
                if broken and name != "tshark":
                    timings[name] = failed_timing(broken)
                    continue
                print(f"{profile} {connections}: {name} x{repeat} ...", flush=True)
                timings[name] = time_command(command, repeat, OK_STATUSES[name])
            rows.append(Row(profile, connections, packets, path.stat().st_size / 1e6, timings))
    print(f"after: {load()}")
    print()
    print(
        f"best of {repeat}; peak = the child's and its reader processes' peak RSS summed "
        "(worst of the runs), MiB"
    )
    print(render_table(rows))
    print()
    for line in render_verdict(rows):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
