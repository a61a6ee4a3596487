"""Byte sources for the capture readers: paths, standard input, open files, gzip.

Owns: opening what the user named, sniffing the first bytes, and turning any
read failure (I/O error, damaged gzip stream) into one remembered `Anomaly`
instead of an exception.

Invariant: `Input.read` never raises; after a failure it returns b"" and the
failure is kept in `Input.error` for the reader to report.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
import zlib
from typing import BinaryIO

from authtrace.anomalies import Anomaly, AnomalyKind

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
            self.error = Anomaly(
                AnomalyKind.CAPTURE_TRUNCATED, f"compressed data ends early: {exc}"
            )
        except (OSError, zlib.error, ValueError) as exc:
            self.error = Anomaly(AnomalyKind.CAPTURE_CORRUPT, f"cannot read further: {exc}")
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
    """A streaming decompressor over `head` + the rest of a stream (RFC 1952),
    that keeps what it decompressed before damage.

    zlib drops the whole output of a call that meets a damaged deflate block,
    and GzipFile feeds it 8 KiB at a time, so damage early in a small file
    used to lose every frame. Here each piece of input is fed to a copy of the
    decompressor; when a piece fails, it is fed again in smaller and smaller
    pieces from the copy, so the output stops just before the damaged byte.
    The failure is raised (to `Input.read`, which keeps it as an anomaly) only
    once that output has been handed over.

    Memory: one read of input and at most `_MAX_OUT` bytes of output per call.
    Members (RFC 1952 section 2.2: a file may hold several) follow each other.
    """

    _MAX_OUT = 1 << 20

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._stream = stream
        self._input = head  # compressed bytes not yet given to the decompressor
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._consumed = 0  # compressed bytes the decompressor took (for messages)
        self._out = 0  # decompressed bytes handed over
        self._error: Exception | None = None
        self._done = False
        self._left = b""  # output not yet handed over (a read asked for less)

    def read(self, size: int = -1) -> bytes:
        while not self._left and not self._done:
            self._left = self._step()
        if self._left:
            data = self._left if size < 0 else self._left[:size]
            self._left = self._left[len(data) :]
            self._out += len(data)
            return data
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return b""

    def _step(self) -> bytes:
        """Decompress the next piece; b"" when nothing came out of it."""
        inflater = self._inflater
        if inflater.eof:
            # RFC 1952 section 2.2: another member may follow.
            rest = inflater.unused_data + self._input
            self._input = b""
            if not rest:
                rest = self._stream.read(CHUNK) or b""
            if not rest:
                self._done = True
                return b""
            if not rest.startswith(GZIP_MAGIC):
                self._fail(zlib.error("bytes after the end of the compressed data were ignored"))
                return b""
            self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            self._input = rest
            return b""
        piece = inflater.unconsumed_tail or self._input
        if piece is self._input:
            self._input = b""
        if not piece:
            piece = self._stream.read(CHUNK) or b""
            if not piece:
                self._done = True
                self._error = EOFError(f"{self._out} bytes were decompressed before it")
                return b""
        saved = inflater.copy()
        try:
            data = inflater.decompress(piece, self._MAX_OUT)
        except zlib.error as error:
            self._inflater = saved
            return self._salvage(piece, error)
        self._consumed += len(piece) - len(inflater.unconsumed_tail)
        return data

    def _salvage(self, piece: bytes, error: zlib.error) -> bytes:
        """Feed a piece that failed again in parts (256 bytes, then single bytes
        of the part that failed), keeping the output of every part before the
        damaged one. Each part is at most 256 bytes of input, so its output is
        bounded by deflate's ratio."""
        out: list[bytes] = []
        size = 256
        start = 0
        rest = b""
        while start < len(piece):
            part = piece[start : start + size]
            saved = self._inflater.copy()
            try:
                out.append(self._inflater.decompress(part))
            except zlib.error as finer:
                self._inflater = saved
                if size == 1:
                    error = finer
                    break
                rest = piece[start + len(part) :]
                piece, start, size = part, 0, 1
                continue
            start += len(part)
            self._consumed += len(part)
            if self._inflater.eof:
                # The member ended here, intact; what follows is read as usual.
                self._input = piece[start:] + rest
                return b"".join(out)
        else:
            # Every part went through when fed alone: carry on after them.
            self._input = rest + self._input
            return b"".join(out)
        if "check" in str(error):
            # zlib's "incorrect data check" / "incorrect length check": the
            # member's CRC-32 or size (RFC 1952 section 2.3.1) does not match.
            text = "the gzip checksum does not match: frames read may be damaged"
        else:
            text = f"damaged compressed data near byte {self._consumed} of the file ({error})"
        self._fail(zlib.error(text))
        return b"".join(out)

    def _fail(self, error: Exception) -> None:
        self._error = error
        self._done = True

    def close(self) -> None:
        self._input = b""


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
