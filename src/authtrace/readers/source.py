"""Byte sources for the capture readers: paths, standard input, open files, gzip.

Owns: opening what the user named, sniffing the first bytes, and turning any
read failure (I/O error, damaged gzip stream) into one remembered `Anomaly`
instead of an exception.

Invariant: `Input.read` never raises; after a failure it returns b"" and the
failure is kept in `Input.error` for the reader to report.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import sys
import tempfile
import zlib
from typing import BinaryIO

from authtrace.anomalies import Anomaly

# Read size. Large enough that the per-record cost is parsing alone, small
# enough that each read's fresh buffer (and the join with the previous
# chunk's tail) stays out of the allocator's mmap range: 1 MiB reads spent
# 0.2 s of a 600 MB benchmark run on page faults, 64 KiB reads do not.
CHUNK = 1 << 16

GZIP_MAGIC = b"\x1f\x8b"


class Input:
    """A readable byte stream that reports, rather than raises, read failures."""

    __slots__ = ("stream", "error", "closing")

    def __init__(self, stream: BinaryIO, closing: list[BinaryIO] | None = None) -> None:
        self.stream = stream
        self.error: Anomaly | None = None
        # Streams this reader opened or wrapped (never the caller's own file).
        self.closing: list[BinaryIO] = closing if closing is not None else []

    def read(self, size: int) -> bytes:
        if self.error is not None:
            return b""
        try:
            return self.stream.read(size) or b""
        except EOFError as exc:
            # gzip: the compressed stream stops before its end marker, i.e. the
            # file was copied while it was still being written.
            self.error = Anomaly("capture-truncated", f"compressed data ends early: {exc}")
        except (OSError, zlib.error, ValueError) as exc:
            self.error = Anomaly("capture-corrupt", f"cannot read further: {exc}")
        return b""

    def close(self) -> None:
        for stream in reversed(self.closing):
            try:
                stream.close()
            except Exception:  # noqa: BLE001 - closing must not raise out of a reader
                pass
        self.closing = []


class _Prefixed(io.RawIOBase):
    """Bytes already read from a stream, followed by the rest of the stream."""

    def __init__(self, prefix: bytes, stream: BinaryIO) -> None:
        self._prefix = prefix
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer)
        if self._prefix:
            count = min(len(view), len(self._prefix))
            view[:count] = self._prefix[:count]
            self._prefix = self._prefix[count:]
            return count
        data = self._stream.read(len(view))
        if not data:
            return 0
        view[: len(data)] = data
        return len(data)


def open_source(source: str | os.PathLike[str] | BinaryIO) -> tuple[BinaryIO, bool, bool]:
    """(stream, owned, seekable) for a path, "-" (standard input) or an open file.

    Raises OSError when a path cannot be opened.
    """
    if isinstance(source, str) and source == "-":
        # Standard input is treated as a pipe even when it is a redirected file.
        return sys.stdin.buffer, False, False
    if isinstance(source, (str, os.PathLike)):
        stream = open(source, "rb")  # noqa: SIM115 - closed by the Capture
        return stream, True, True
    try:
        seekable = bool(source.seekable())
    except Exception:  # noqa: BLE001 - a file-like object without seekable()
        seekable = False
    return source, False, seekable


def read_up_to(stream: BinaryIO, size: int) -> bytes:
    """Read until `size` bytes or end of stream (pipes may return short reads)."""
    parts: list[bytes] = []
    got = 0
    while got < size:
        data = stream.read(size - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


class _Gunzip:
    """A streaming decompressor over `head` + the rest of a stream (RFC 1952).

    read() uses GzipFile.read1: a plain read() collects many pieces and, when
    the compressed data ends early, drops the pieces it already had along
    with the EOFError; read1 hands each piece over as soon as it exists.
    """

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._file = gzip.GzipFile(fileobj=io.BufferedReader(_Prefixed(head, stream)), mode="rb")

    def read(self, size: int = -1) -> bytes:
        return self._file.read1(size)

    def close(self) -> None:
        self._file.close()


def gunzip(head: bytes, stream: BinaryIO) -> BinaryIO:
    """A streaming decompressor over `head` + the rest of `stream` (RFC 1952)."""
    return _Gunzip(head, stream)  # type: ignore[return-value]


def spool(head: bytes, stream: BinaryIO) -> BinaryIO:
    """Copy `head` + the rest of `stream` into a temporary file and rewind it.

    Network Monitor files keep their frame table at the end, so a reader needs
    random access; a pipe or a gzip stream is copied to disk (not to memory).
    """
    spooled = tempfile.TemporaryFile()
    spooled.write(head)
    shutil.copyfileobj(stream, spooled, CHUNK)
    spooled.seek(0)
    return spooled  # type: ignore[return-value]
