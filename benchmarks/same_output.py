"""Whether two source trees of authtrace write the same reports, byte for byte.

This module owns the before/after check of changes that must not change output (issue 10: the
records are made smaller, the reports stay identical). For every capture given (default: the
scenario captures, captures/scenarios/*.pcap*), it runs `authtrace analyze` from each tree
(`PYTHONPATH=TREE/src`) in several forms: `--json`, `--json --show-secrets`, the text report with
every ladder, and `--html -` with `--show-secrets`; and reports every capture and form whose
bytes differ. It is a tool, not a test: the suite checks goldens; this compares any two trees
(for instance main's checkout and a worktree) on any captures.

Usage (from the repository root):

    python3 -m benchmarks.same_output --before ../main                 # the scenario captures
    python3 -m benchmarks.same_output --before ../main FILE...

Exit status 0 when every output is identical, 1 when any differs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The forms compared: options after `analyze`, besides the capture.
FORMS: tuple[tuple[str, ...], ...] = (
    ("--json",),
    ("--json", "--show-secrets"),
    ("--ladders", "all"),
    ("--html", "-", "--show-secrets"),
)


def run(tree: Path, capture: Path, form: Sequence[str]) -> tuple[int, bytes]:
    """(exit status, sha256 of stdout and stderr) of one analyze run from `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "COLUMNS": "100"}
    done = subprocess.run(
        [sys.executable, "-m", "authtrace", "analyze", *form, str(capture)],
        env=env,
        capture_output=True,
        check=False,
        cwd=tree,
    )
    digest = hashlib.sha256(done.stdout + b"\0" + done.stderr).digest()
    return done.returncode, digest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="the other tree's root")
    parser.add_argument("--after", type=Path, default=ROOT, help="default: this tree")
    parser.add_argument("captures", nargs="*", type=Path)
    args = parser.parse_args(argv)
    captures = args.captures or sorted(
        p for p in (ROOT / "captures" / "scenarios").iterdir() if ".pcap" in p.name
    )
    differ = 0
    for capture in captures:
        for form in FORMS:
            before = run(args.before.resolve(), capture.resolve(), form)
            after = run(args.after.resolve(), capture.resolve(), form)
            if before != after:
                differ += 1
                print(f"DIFFERS: {capture.name} {' '.join(form)}")
    print(f"{len(captures)} captures x {len(FORMS)} forms: {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
