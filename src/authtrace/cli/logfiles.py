"""Opening IIS log files for the commands that read them (plain or gzip'd,
found by magic), streaming their lines into the W3C parser with a line cap."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from authtrace.iis.w3c import MAX_LINE_CHARS, LogEntry, ParseReport, W3CLogParser

_GZIP_MAGIC = b"\x1f\x8b"


def _lines(stream: BinaryIO) -> Iterator[str]:
    while True:
        # One byte over the cap so an over-long line is seen as such by the parser.
        raw = stream.readline(MAX_LINE_CHARS + 1)
        if not raw:
            return
        if len(raw) > MAX_LINE_CHARS and not raw.endswith(b"\n"):
            # Skip the rest of the over-long line without holding it.
            while (rest := stream.readline(MAX_LINE_CHARS)) and not rest.endswith(b"\n"):
                pass
        yield raw.decode("utf-8", errors="replace")


def unopenable(paths: tuple[Path, ...]) -> list[str]:
    """One line per file that cannot be opened for reading (missing, a
    directory, no permission), naming it as the user did: checked before any
    is read, so a mistyped name is an error, not a report of an empty log."""
    problems = []
    for path in paths:
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            problems.append(f"{path}: {exc.strerror or exc}")
    return problems


def read_log_entries(
    path: Path, reports: list[ParseReport], errors: list[str]
) -> Iterator[LogEntry]:
    """Yield the entries of one file; its report (and any error) is appended at the end.

    Entries are streamed into the summary so memory does not grow with the log.
    """
    parser = W3CLogParser(path.name)
    try:
        with path.open("rb") as raw:
            magic = raw.read(2)
            raw.seek(0)
            stream: BinaryIO = gzip.GzipFile(fileobj=raw) if magic == _GZIP_MAGIC else raw  # type: ignore[assignment]
            for line in _lines(stream):
                entry = parser.feed(line)
                if entry is not None:
                    yield entry
    except OSError as exc:
        # gzip.BadGzipFile is an OSError too; a cut gzip raises EOFError (below).
        errors.append(f"{path.name}: {exc.strerror or exc} (after line {parser.finish().lines})")
    except (EOFError, zlib.error) as exc:
        read = parser.finish().lines
        errors.append(f"{path.name}: compressed data cut or corrupt after line {read} ({exc})")
    report = parser.finish()
    if report.lines:
        reports.append(report)
