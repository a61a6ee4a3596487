"""Opening a capture: format detection by magic, gzip, and the `Capture` handle.

Owns: `open_capture`, the one entry point of the readers layer. It sniffs the
first bytes (never the file name), unwraps gzip by streaming, and hands the
rest to the pcap, pcapng or Network Monitor record reader.

Invariant: `open_capture` raises `CaptureError` (one line) only when nothing
can be read; afterwards iteration never raises, and damage is recorded in
`Capture.anomalies` as it is met. Frames are read lazily, one record at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from struct import error as struct_error
from typing import BinaryIO

from authtrace.anomalies import Anomaly
from authtrace.readers import etl, netmon, pcap, pcapng
from authtrace.readers.base import (
    DEFAULT_READ,
    CaptureError,
    Frame,
    ReadOptions,
    Tally,
    WalkerFor,
)
from authtrace.readers.source import (
    CHUNK,
    GZIP_MAGIC,
    Input,
    gunzip,
    open_source,
    read_up_to,
    spool,
)


class Capture:
    """A capture being read. Iterate it once for its frames (lazily).

    format: "pcap", "pcap-ns", "pcap-modified", "pcapng", "netmon1", "netmon2", "etl",
        with "+gzip" when the file was gzip-compressed.
    anomalies: damage met while reading (capture-truncated, capture-corrupt), and
        what a Windows trace says about itself (etw-*, etl-*, pktmon-*).
    tally: the count (the frame numbers given) and first/last timestamps of every
        record read, once iteration ended, for the readers that number records
        they do not yield as frames (pcap and pcapng whose records a walker
        claimed, ETL and NetMon whose events carry no packet); None for a reader
        whose every record is a yielded Frame.
    secrets: pcapng Decryption Secrets Blocks met so far, as (secrets type, data,
        number of the last frame before the block); the consumer takes them out.
    """

    def __init__(self, format: str, frames: Iterator[Frame], source: Input) -> None:
        self.format = format
        self.anomalies: list[Anomaly] = []
        self.tally: Tally | None = None
        self.secrets: list[tuple[int, bytes, int]] = []
        self._frames = frames
        self._source = source

    def __iter__(self) -> Iterator[Frame]:
        try:
            yield from self._frames
        finally:
            self.close()

    def close(self) -> None:
        self._source.close()

    def bytes_read(self) -> int | None:
        """How far into the file reading got (compressed bytes for gzip, read-ahead
        included), for a progress display; None for standard input or a caller's stream."""
        for stream in self._source.closing[:1]:  # the file this reader opened
            try:
                return stream.tell()
            except (OSError, ValueError):
                return None
        return None

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _describe(source: str | os.PathLike[str] | BinaryIO) -> str:
    if isinstance(source, str) and source == "-":
        return "standard input"
    if isinstance(source, (str, os.PathLike)):
        return os.path.basename(os.fspath(source))
    return str(getattr(source, "name", "stream"))


def open_capture(
    source: str | os.PathLike[str] | BinaryIO,
    walker_for: WalkerFor | None = None,
    first_number: int = 1,
    options: ReadOptions = DEFAULT_READ,
) -> Capture:
    """Open a pcap, pcapng, Network Monitor or ETL capture (optionally gzip-compressed).

    `source` is a path, "-" for standard input (read as a stream), or an open
    binary file. Raises CaptureError when nothing can be read from it.
    `walker_for` (readers/base.py) lets a consumer take records before a Frame
    is built; the pcap and pcapng readers offer it (then `Capture.tally` counts them).
    `first_number`: the number of the first frame (several files read as one
    stream continue the numbering).
    `options`: how records become frames (readers/base.py ReadOptions).
    """
    label = _describe(source)
    try:
        stream, owned, seekable = open_source(source)
    except OSError as exc:
        raise CaptureError(f"{label}: cannot open: {exc.strerror or exc}") from None
    closing: list[BinaryIO] = [stream] if owned else []
    try:
        return _open(stream, seekable, closing, label, walker_for, first_number, options)
    except _DamagedGzip as exc:
        Input(stream, closing).close()
        raise CaptureError(
            f"{label}: damaged gzip data before the first frame: {exc.error.message}"
        ) from None
    except CaptureError:
        Input(stream, closing).close()
        raise
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        Input(stream, closing).close()
        raise CaptureError(f"{label}: cannot read: {exc}") from None


class _DamagedGzip(Exception):
    """Compressed data damaged before anything readable came out of it."""

    def __init__(self, error: Anomaly) -> None:
        self.error = error


def _open(
    stream: BinaryIO,
    seekable: bool,
    closing: list[BinaryIO],
    label: str,
    walker_for: WalkerFor | None = None,
    first_number: int = 1,
    options: ReadOptions = DEFAULT_READ,
) -> Capture:
    head = read_up_to(stream, CHUNK)
    suffix = ""
    if head[:2] == GZIP_MAGIC:
        stream = gunzip(head, stream)
        closing.append(stream)
        seekable = False
        suffix = "+gzip"
        source = Input(stream, closing)
        head = b""
        while len(head) < 4096:
            more = source.read(CHUNK)
            if not more:
                break
            head += more
        if source.error is not None and not head:
            raise _DamagedGzip(source.error)
        try:
            return _open_format(
                source, head, seekable, label, walker_for, first_number, suffix, options
            )
        except CaptureError:
            # What was decompressed is too short to read: the damage is the reason.
            if source.error is not None:
                raise _DamagedGzip(source.error) from None
            raise
    source = Input(stream, closing)
    return _open_format(source, head, seekable, label, walker_for, first_number, suffix, options)


def _open_format(
    source: Input,
    head: bytes,
    seekable: bool,
    label: str,
    walker_for: WalkerFor | None,
    first_number: int,
    suffix: str,
    options: ReadOptions = DEFAULT_READ,
) -> Capture:
    """The record reader for the format the first bytes name."""
    if not head:
        raise CaptureError(f"{label}: empty file")
    magic = head[:4]
    if magic in pcap.MAGICS:
        try:
            order, scale, record_size, _link = pcap.parse_header(head)
        except ValueError as exc:
            raise CaptureError(f"{label}: {exc}") from None
        name = "pcap-modified" if record_size != 16 else "pcap-ns" if scale < 1e-6 else "pcap"
        capture = Capture(name + suffix, iter(()), source)
        capture.tally = Tally()
        capture._frames = pcap.frames(
            source, head, capture.anomalies, label, walker_for, capture.tally, first_number
        )
        return capture
    if magic == pcapng.SHB_TYPE:
        if len(head) < 12 or head[8:12] not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
            raise CaptureError(f"{label}: pcapng section header is incomplete or damaged")
        capture = Capture("pcapng" + suffix, iter(()), source)
        capture.tally = Tally()
        capture._frames = pcapng.frames(
            source,
            head,
            capture.anomalies,
            label,
            walker_for,
            capture.tally,
            first_number,
            capture.secrets,
        )
        return capture
    if magic in (netmon.MAGIC_1X, netmon.MAGIC_2X):
        damage = None
        if not seekable:
            # The frame table is at the end: copy the stream to a temporary
            # file (disk, not memory) to reach it. Input.read stops at damage
            # and keeps it, so what came before is copied.
            stream = spool(head, source)  # type: ignore[arg-type]
            damage = source.error
            source.closing.append(stream)
            source = Input(stream, source.closing)
        try:
            table = netmon.NetmonFile(source.stream)
        except (netmon.NetmonHeaderError, OSError, struct_error) as exc:
            if damage is not None:
                raise _DamagedGzip(damage) from None
            raise CaptureError(f"{label}: {exc}") from None
        name = "netmon1" if table.major == 1 else "netmon2"
        capture = Capture(name + suffix, iter(()), source)
        if damage is not None:
            capture.anomalies.append(damage)
        capture.tally = Tally()
        capture._frames = netmon.frames(
            source.stream,
            table,
            capture.anomalies,
            label,
            first_number,
            capture.tally,
            options.all_appearances,
        )
        return capture
    if etl.looks_like_etl(head):
        try:
            etl.parse_logfile_header(head)
        except etl.EtlHeaderError as exc:
            raise CaptureError(f"{label}: ETL trace header damaged: {exc}") from None
        capture = Capture("etl" + suffix, iter(()), source)
        capture.tally = Tally()
        capture._frames = etl.frames(
            source,
            head,
            capture.anomalies,
            label,
            capture.tally,
            first_number,
            options.all_appearances,
            seekable,
        )
        return capture
    first = head[:4].hex()
    raise CaptureError(f"{label}: not a capture file (unknown format, first bytes {first})")
