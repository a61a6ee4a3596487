"""Where `analyze` spends its time: wall time of each phase on one capture.

This module owns the per-phase view of the benchmark. It runs `authtrace.pipeline.analyze` in
this process and notes when the progress callback announces each phase (reading, judging,
linking, finding problems), then times the text and the JSON rendering of the report. It goes
through the public entry points only, so what it shows is what a run of `analyze` does (less
the interpreter start and the imports, printed first).

Usage (from the repository root):

    python3 -m benchmarks.phases benchmarks/out/auth-kerberos-4000-seed1.pcap
    python3 -m benchmarks.phases --profile 30 FILE    # and cProfile the whole run, top 30

Timings from one process on a shared machine are noisy; the benchmark tables (benchmarks.auth)
are the figures to quote. This view says which phase to look at.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from pathlib import Path


def phases(path: Path) -> list[tuple[str, float]]:
    """(phase, seconds) in the order they ran, for one `analyze` of `path` and its rendering."""
    started = time.perf_counter()
    from authtrace.pipeline import ProgressReport, analyze
    from authtrace.report.as_json import report_to_dict
    from authtrace.report.as_text import render_report

    out: list[tuple[str, float]] = [("imports", time.perf_counter() - started)]
    current = ["reading", time.perf_counter()]

    def seen(report: ProgressReport) -> None:
        name = report.phase.value
        if name != current[0]:
            now = time.perf_counter()
            out.append((str(current[0]), now - float(current[1])))
            current[0], current[1] = name, now

    report = analyze([path], progress=seen)
    now = time.perf_counter()
    out.append((str(current[0]), now - float(current[1])))
    render_report(report)
    out.append(("text report", time.perf_counter() - now))
    now = time.perf_counter()
    json.dumps(report_to_dict(report))
    out.append(("JSON report", time.perf_counter() - now))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture", type=Path)
    parser.add_argument("--profile", type=int, metavar="TOP", help="also cProfile, top TOP")
    args = parser.parse_args(argv)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(phases, args.capture)
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(args.profile)
        return 0
    rows = phases(args.capture)
    total = sum(seconds for _, seconds in rows)
    for name, seconds in rows:
        print(f"{name:<22} {seconds:>7.2f} s {seconds / total:>6.1%}")
    print(f"{'total':<22} {total:>7.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
