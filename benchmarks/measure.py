"""Measuring child processes for the benchmarks, shared by `benchmarks.run` and `benchmarks.auth`.

This module owns how a command is timed (best-of-N wall time, the child's own peak RSS), when a
timing counts as a failure, how a benchmark capture is generated or reused, and the one table
layout the benchmarks print. It knows nothing about which captures or commands a benchmark runs.

Invariant: a run that did not do its work is never shown as a figure. A child counts as failed
when its exit status is not one the command may end with (`analyze` ends with 1 when it finds
problems, so the caller says which statuses are normal), or when it ended non-zero and wrote
anything to stderr that is not authtrace's own one-line message (a child that fails to start,
"No module named authtrace", also exits 1). Failed timings print as FAILED with the child's
last stderr line, and verdicts skip them.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

# What authtrace writes on stderr before it exits with a status of its own (cli/common.py).
AUTHTRACE_PREFIX = "authtrace: "
# The stderr of a failed child kept for its message (the last line is what is shown).
STDERR_KEPT = 64 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class Timing:
    """Best-of-N result of one command on one file."""

    seconds: float
    """Smallest wall time over the runs."""
    peak_mb: float
    """Largest peak RSS over the runs, in MiB: of the child and all its descendants summed
    (each one's VmHWM, sampled; at least the child's ru_maxrss)."""
    exit_status: int
    """Exit status of the last run."""
    error: str = ""
    """Why the figures are not of a run that did its work (the child's last stderr line, or
    what the probe found); empty when the runs succeeded."""

    @property
    def failed(self) -> bool:
        return bool(self.error)


def count_packets(path: Path) -> int:
    """Records in a classic pcap, read from the record headers only (the file can be 1 GB)."""
    count = 0
    with path.open("rb") as handle:
        magic = handle.read(24)[:4]
        order = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        while True:
            header = handle.read(16)
            if len(header) < 16:
                return count
            captured = struct.unpack(order + "I", header[8:12])[0]
            handle.seek(captured, os.SEEK_CUR)
            count += 1


# The measured command runs under this small intermediary, which forks and execs it and reports
# wait4's rusage of that child on fd 3, and the sum of the peak RSS (VmHWM) of the child and
# every process below it (analyze --jobs forks readers): ru_maxrss of a process that waited for
# its children is the largest of them, not their sum, so the helper samples /proc/PID/status of
# the whole tree every 20 ms and keeps each process's last high-water mark (a mark only grows,
# so what a sample can miss is the growth in a process's last 20 ms). Forked readers share
# pages with their parent until they write them, so the sum counts those pages more than once:
# an upper bound of what the run takes. Why not wait4 on a direct child: Linux records the
# memory high-water mark of the address space a process leaves at exec into its ru_maxrss, and a
# child spawned by vfork (as subprocess does) leaves the *parent's* address space, so the peak of
# this script (which may just have generated a 1 GB capture) would leak into every figure. The
# intermediary is a bare interpreter (~10 MB), well below any measured peak.
_MEASURE = """
import os, sys, time
report, argv = int(sys.argv[1]), sys.argv[2:]
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.close(report)
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
marks = {}
def tree(top):
    todo, seen = [top], []
    while todo:
        p = todo.pop()
        seen.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return seen
def sample():
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        marks[p] = int(line.split()[1])
        except OSError:
            pass
while True:
    done, status, usage = os.wait4(pid, os.WNOHANG)
    if done:
        break
    sample()
    time.sleep(0.02)
elapsed = time.perf_counter() - started
peak = max(usage.ru_maxrss, sum(marks.values()))
os.write(report, b"%r %d %d" % (elapsed, peak, os.waitstatus_to_exitcode(status)))
"""


def failure(status: int, stderr: str, ok_statuses: Sequence[int] = (0,)) -> str:
    """Why a run with this exit status and stderr did not do its work; "" when it did."""
    lines = stderr.strip().splitlines()
    last = lines[-1] if lines else f"exit status {status}"
    if status not in ok_statuses:
        return last
    if status and any(not line.startswith(AUTHTRACE_PREFIX) for line in lines):
        return last
    return ""


def _measure_once(argv: list[str], ok_statuses: Sequence[int]) -> tuple[float, int, int, str]:
    """(wall seconds, child's peak RSS in KiB, exit status, failure or "")."""
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)
    with tempfile.TemporaryFile() as stderr:
        try:
            helper = subprocess.Popen(
                [sys.executable, "-S", "-E", "-c", _MEASURE, str(write_end), *argv],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                pass_fds=(write_end,),
            )
        finally:
            os.close(write_end)
        with os.fdopen(read_end, "rb") as report:
            figures = report.read().split()
        helper.wait()
        if len(figures) != 3:
            return float("nan"), 0, helper.returncode or 1, "the measuring helper failed"
        elapsed, peak_kib, status = float(figures[0]), int(figures[1]), int(figures[2])
        stderr.seek(max(0, stderr.seek(0, os.SEEK_END) - STDERR_KEPT))
        text = stderr.read().decode("utf-8", "replace")
        return elapsed, peak_kib, status, failure(status, text, ok_statuses)


def time_command(argv: list[str], repeat: int, ok_statuses: Sequence[int] = (0,)) -> Timing:
    """Run `argv` `repeat` times with stdout to /dev/null; best wall time, worst peak RSS.

    The first failed run stops the series: its figures are not of the work being measured."""
    best = float("inf")
    peak_kib = 0
    status = 0
    for _ in range(repeat):
        elapsed, peak, status, error = _measure_once(argv, ok_statuses)
        if error:
            return Timing(elapsed, peak / 1024, status, error)
        best = min(best, elapsed)
        peak_kib = max(peak_kib, peak)
    return Timing(best, peak_kib / 1024, status)


def authtrace_argv() -> list[str]:
    # The same interpreter as this script, so a virtualenv's editable install is the one timed.
    return [sys.executable, "-m", "authtrace"]


def probe(argv: list[str]) -> str:
    """Whether `argv` starts at all: "" when it does, else its last stderr line. Run once
    before timing, so that an interpreter without authtrace is named, not timed."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode == 0:
        return ""
    lines = done.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit status {done.returncode}"


def failed_timing(error: str) -> Timing:
    """The timing shown for a command that was not run because its probe failed."""
    return Timing(float("nan"), 0.0, 1, error)


class Written(Protocol):
    @property
    def packets(self) -> int: ...

    @property
    def bytes_written(self) -> int: ...


def generate_or_reuse(path: Path, write: Callable[[Path], Written]) -> int:
    """Packets in the capture at `path`, writing it first with `write` when it is missing."""
    if path.exists():
        return count_packets(path)
    started = time.perf_counter()
    stats = write(path)
    print(
        f"generated {path.name}: {stats.packets} packets, {stats.bytes_written / 1e6:.0f} MB "
        f"in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    return stats.packets


@dataclasses.dataclass(frozen=True, slots=True)
class Column:
    """One leading column of the table: its header, width and alignment (">" or "<")."""

    header: str
    width: int
    align: str = ">"


def render_table(
    columns: Sequence[Column],
    rows: Sequence[tuple[Sequence[object], dict[str, Timing]]],
    ratio_digits: int = 2,
) -> str:
    """One line per row and measured command: the row's leading cells, then the command's time,
    tshark's time (the "tshark" entry of the row's timings), their ratio and both peaks."""
    name_width = max([len("command"), *(len(n) for _, t in rows for n in t if n != "tshark")])
    lead = " ".join(f"{c.header:{c.align}{c.width}}" for c in columns)
    header = (
        f"{lead} {'command':<{name_width}} {'time s':>7} {'tshark s':>8} {'ratio':>6} "
        f"{'peak MB':>8} {'tshark MB':>9}"
    )
    lines = [header, "-" * len(header)]
    for cells, timings in rows:
        lead = " ".join(
            f"{cell:{c.align}{c.width}}" for c, cell in zip(columns, cells, strict=True)
        )
        tshark = timings.get("tshark")
        tshark_s = f"{tshark.seconds:>8.2f}" if tshark and not tshark.failed else f"{'-':>8}"
        tshark_mb = f"{tshark.peak_mb:>9.1f}" if tshark and not tshark.failed else f"{'-':>9}"
        measured = [(n, t) for n, t in timings.items() if n != "tshark"]
        if not measured and tshark:
            measured = [("(tshark only)", None)]
        for name, timing in measured:
            if timing is None:
                lines.append(
                    f"{lead} {name:<{name_width}} {'-':>7} {tshark_s} {'-':>6} {'-':>8} {tshark_mb}"
                )
                continue
            if timing.failed:
                lines.append(f"{lead} {name:<{name_width}} FAILED: {timing.error}")
                continue
            usable = tshark is not None and not tshark.failed
            ratio = f"{timing.seconds / tshark.seconds:.{ratio_digits}f}" if usable else "-"
            lines.append(
                f"{lead} {name:<{name_width}} {timing.seconds:>7.2f} {tshark_s} {ratio:>6} "
                f"{timing.peak_mb:>8.1f} {tshark_mb}"
            )
        if tshark and tshark.failed:
            lines.append(f"{lead} {'tshark':<{name_width}} FAILED: {tshark.error}")
    return "\n".join(lines)


def load() -> str:
    """How busy the machine was (others share it): the load averages and cores."""
    try:
        one, five, _fifteen = os.getloadavg()
    except OSError:
        return "load average unknown"
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"
