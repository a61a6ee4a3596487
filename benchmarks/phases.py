"""Where `analyze` spends its time: wall time of each phase on one capture.

This module owns the per-phase view of the benchmark. It runs `authtrace.pipeline.analyze` in
this process and notes when the progress callback announces each phase (reading, judging,
linking, finding problems), then times the text and the JSON rendering of the report. It goes
through the public entry points only, so what it shows is what a run of `analyze` does (less
the interpreter start and the imports, printed first).

Usage (from the repository root):

    python3 -m benchmarks.phases benchmarks/out/auth-kerberos-4000-seed1.pcap
    python3 -m benchmarks.phases --cpu FILE           # CPU time instead of wall time
    python3 -m benchmarks.phases --profile 30 FILE    # and cProfile the whole run, top 30

Timings from one process on a shared machine are noisy; the benchmark tables (benchmarks.auth)
are the figures to quote. This view says which phase to look at.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path


def phases(path: Path, clock: Callable[[], float] = time.perf_counter) -> list[tuple[str, float]]:
    """(phase, seconds) in the order they ran, for one `analyze` of `path` and its rendering,
    by `clock` (wall time; `time.process_time` for this process's CPU time, which other
    processes on a busy machine disturb less)."""
    started = clock()
    from authtrace.pipeline import ProgressReport, analyze
    from authtrace.report.as_json import write_report_json
    from authtrace.report.as_text import render_report

    out: list[tuple[str, float]] = [("imports", clock() - started)]
    current = ["reading", clock()]

    def seen(report: ProgressReport) -> None:
        name = report.phase.value
        if name != current[0]:
            now = clock()
            out.append((str(current[0]), now - float(current[1])))
            current[0], current[1] = name, now

    report = analyze([path], progress=seen)
    now = clock()
    out.append((str(current[0]), now - float(current[1])))
    render_report(report)
    out.append(("text report", clock() - now))
    now = clock()
    # As `analyze --json` writes it (indented, one entry at a time), into nothing.
    write_report_json(report, lambda _text: None)
    out.append(("JSON report", clock() - now))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture", type=Path)
    parser.add_argument("--profile", type=int, metavar="TOP", help="also cProfile, top TOP")
    parser.add_argument("--cpu", action="store_true", help="CPU time of this process, not wall")
    args = parser.parse_args(argv)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(phases, args.capture)
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(args.profile)
        return 0
    rows = phases(args.capture, time.process_time if args.cpu else time.perf_counter)
    total = sum(seconds for _, seconds in rows)
    for name, seconds in rows:
        print(f"{name:<22} {seconds:>7.2f} s {seconds / total:>6.1%}")
    print(f"{'total':<22} {total:>7.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
