"""Helpers shared by the subcommands: reading captures with progress and
turning unusable input into one line and exit status 2."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import click

from authtrace.pipeline import Phase, ProgressReport
from authtrace.readers.base import ReadOptions
from authtrace.visible import visible

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar

    from authtrace.tls.keylog import KeyLog

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_UNUSABLE = 2


def fail(message: str) -> None:
    """One line on stderr, exit status 2 (unusable input)."""
    click.echo(f"authtrace: {visible(message)}", err=True)
    sys.exit(EXIT_UNUSABLE)


class ProgressDisplay:
    """Progress of a run on stderr: while reading, a bar of the bytes read with the
    rate and the time left (bytes and rate alone when the size is unknown, as on
    standard input); then each later phase by name, with a count where it has one.
    `close()` clears the line (and shows the cursor again) before the report.

    click's progress bar draws the bars: click is what the CLI is built on (no new
    dependency), and its bar fits the terminal width and estimates the time left.
    On a non-terminal (--progress into a log) each phase's name is written once,
    on its own line, instead of redrawn bars.
    """

    # Redraw at most this often: a redraw costs a terminal write.
    MIN_INTERVAL = 0.1
    _SHOW_CURSOR = "\033[?25h"

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._tty = is_terminal(self._stream)
        self._bar: ProgressBar[int] | None = None
        self._phase: Phase | None = None
        self._started = 0.0
        self._drawn = 0.0
        self._dirty = False  # something is drawn on the current line

    def __call__(self, report: ProgressReport) -> None:
        now = time.monotonic()
        if report.phase is not self._phase:
            self._start(report, now)
        elif now - self._drawn < self.MIN_INTERVAL:
            return
        self._drawn = now
        bar = self._bar
        if bar is not None:
            if report.done > bar.pos:
                bar.update(report.done - bar.pos)
            else:
                bar.render_progress()
        elif self._tty:
            self._line(self._status(report, now))

    def _start(self, report: ProgressReport, now: float) -> None:
        self.close()
        self._phase = report.phase
        self._started = now
        if not self._tty:
            self._stream.write(report.phase.value + "\n")
            self._stream.flush()
            return
        if not report.total:
            self._line(self._status(report, now))
            return
        reading = report.phase is Phase.READING
        self._bar = click.progressbar(
            length=report.total,
            label=report.phase.value,
            file=self._stream,
            show_eta=True,
            show_pos=not reading,
            show_percent=reading,
            item_show_func=self._rate if reading else None,
        )
        self._dirty = True
        self._bar.render_progress()

    def _status(self, report: ProgressReport, now: float) -> str:
        if report.phase is Phase.READING and report.done:
            elapsed = max(now - self._started, 1e-6)
            return f"{report.phase.value}  {_megabytes(report.done, elapsed)}"
        return f"{report.phase.value}..."

    def _rate(self, _item: object) -> str | None:
        bar = self._bar
        if bar is None or not bar.pos:
            return None
        return _megabytes(bar.pos, max(time.monotonic() - self._started, 1e-6))

    def _line(self, text: str) -> None:
        width = shutil.get_terminal_size().columns - 1
        self._stream.write("\r" + text[:width].ljust(width))
        self._stream.flush()
        self._dirty = True

    def close(self) -> None:
        """Clear the line: the report starts on a clean terminal."""
        self._bar = None
        self._phase = None
        if self._dirty:
            width = shutil.get_terminal_size().columns - 1
            self._stream.write("\r" + " " * width + "\r" + self._SHOW_CURSOR)
            self._stream.flush()
            self._dirty = False


def _megabytes(count: int, seconds: float) -> str:
    return f"{count / 1e6:,.0f} MB, {count / 1e6 / seconds:,.1f} MB/s"


def is_terminal(stream: TextIO) -> bool:
    """Whether `stream` is a terminal (False for anything that cannot tell)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress_printer(enabled: bool) -> ProgressDisplay | None:
    """A progress display on stderr when enabled (see `wants_progress`)."""
    return ProgressDisplay() if enabled else None


def wants_progress(flag: bool | None) -> bool:
    if flag is not None:
        return flag
    return sys.stderr.isatty()


def capture_argument() -> Callable:
    return click.argument("captures", nargs=-1, required=True, metavar="CAPTURE...")


def all_appearances_option() -> Callable:
    return click.option(
        "--all-appearances",
        is_flag=True,
        help="pktmon traces: keep every appearance of a packet (pktmon logs one per "
        "component it passes: NIC, vSwitch, filter drivers). By default the first is kept "
        "and the others are folded and counted; frame numbers are the same either way.",
    )


def read_options(all_appearances: bool) -> ReadOptions:
    """What the capture options ask of the readers."""
    return ReadOptions(all_appearances=all_appearances)


def show_secrets_option() -> Callable:
    return click.option(
        "--show-secrets",
        is_flag=True,
        help="Show passwords, hashes and tokens (redacted by default).",
    )


def progress_option(writing: bool = False) -> Callable:
    """writing: the command shows the writing of its --json document as a phase."""
    then = (
        "then each later phase and the writing of a --json document that goes to a file or pipe"
        if writing
        else "then each later phase"
    )
    return click.option(
        "--progress/--no-progress",
        default=None,
        help="Show progress on stderr: a bar of the bytes read with rate and time left, "
        f"{then} (default: only when stderr is a terminal).",
    )


# A key log is text; a browser's grows for days. Beyond this it is not one.
MAX_KEYLOG_BYTES = 256 * 1024 * 1024


def tls_keylog_option() -> Callable:
    return click.option(
        "--tls-keylog",
        "tls_keylogs",
        multiple=True,
        metavar="FILE",
        help="TLS key log (NSS format: SSLKEYLOGFILE of browsers, curl, Python, OpenSSL) to "
        "decrypt HTTPS; repeatable. Keys embedded in a pcapng (editcap --inject-secrets) are "
        "used without it.",
    )


def read_keylogs(paths: tuple[str, ...]) -> KeyLog | None:
    """The key logs named on the command line, in one KeyLog (None for none).
    A file that cannot be read is unusable input: one line, exit status 2."""
    if not paths:
        return None
    from authtrace.tls.keylog import KeyLog

    keylog = KeyLog()
    for path in paths:
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_KEYLOG_BYTES + 1)
        except OSError as error:
            fail(f"{path}: cannot read the TLS key log: {error.strerror or error}")
        if len(data) > MAX_KEYLOG_BYTES:
            fail(f"{path}: larger than {MAX_KEYLOG_BYTES // 2**20} MiB: not a TLS key log")
        keylog.add_text(data, os.path.basename(path))
    return keylog


def write_html(path: Path, page: str) -> bool:
    """Write an HTML report to `path`, or to stdout for `-`; True when it went
    to stdout (the text report is then left out). An unwritable path is a
    one-line error (exit 2)."""
    if str(path) == "-":
        click.echo(page, nl=False)
        return True
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as error:
        fail(f"--html {visible(str(path))}: {error.strerror or error}")
    return False
