"""Event Trace Log (ETL) files: what `netsh trace` and `pktmon` write.

Owns: the ETL container. A file is a run of buffers of one size; each starts
with a 72-byte WMI_BUFFER_HEADER (BufferSize at 0x00, SequenceNumber at 0x18,
the processor in the buffer context at 0x28, FilledBytes at 0x30, BufferFlag
at 0x34, BufferType at 0x36), then event records, each 8-byte aligned, until
FilledBytes or a 0xFFFFFFFF marker. A record starts with a 32-bit marker whose
high byte holds the header flags (0xC0 for the trace header types, 0x90 for
TraceMessage records) and whose third byte is the header type: system headers
(SYSTEM_TRACE_HEADER, its compact and perfinfo forms, size at offset 4),
EVENT_TRACE_HEADER and its instance form (classic providers), EVENT_HEADER
(manifest providers, the two that carry packets). The first record of the
first buffer is the trace's TRACE_LOGFILE_HEADER, which says how time stamps
are kept (ReservedFlags: 1 QueryPerformanceCounter at PerfFreq, 2 system time,
3 CPU cycles at CpuSpeedInMHz), when the trace started (StartTime) and the
pointer size. Facts from Microsoft's evntrace.h / evntcons.h documentation,
Geoff Chappell's notes on the ETW buffer and trace headers, and dissect.etl,
which the tests use as an independent reader of the same files.

Invariant: frames are one per packet, numbered from `first_number` in the
order Windows' ProcessTrace delivers the events, as Microsoft's etl2pcapng
numbers them: each processor's buffers in the order the logger wrote them
(SequenceNumber), the processors merged by time stamp (fragments of one packet
joined; pktmon appearances numbered each, also when folded). A stream that
cannot be searched is read in file order, and says so when that is not time
order. A buffer that cannot be right is reported (`etl-buffer-damaged`) and
reading goes on at the next buffer; nothing is raised once the first buffer
was accepted. Memory: one buffer per processor (at most MAX_HELD bytes in all,
each at most MAX_BUFFER) plus what readers/etw.py keeps.
"""

from __future__ import annotations

import enum
import heapq
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from authtrace.anomalies import Anomaly, AnomalyKind
from authtrace.readers import etw, xpress
from authtrace.readers.base import Frame, Tally, make_frame
from authtrace.readers.source import CHUNK, Input
from authtrace.strict import internal_error
from authtrace.words import agreeing, counted

BUFFER_HEADER = 0x48
MAX_BUFFER = 64 * 1024 * 1024  # ETW buffers are at most 16 MiB (pktmon's); more is damage
MIN_BUFFER = 0x400
_FILETIME_UNIX_EPOCH = 116444736000000000  # 1601-01-01 to 1970-01-01 in 100 ns units

_BUFFER = struct.Struct("<IIIIQqQHHIIHH")  # up to BufferType at 0x36
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

# WMI_BUFFER_HEADER BufferFlag bits.
_FLAG_EVENTS_LOST = 0x0002
_FLAG_BUFFER_LOST = 0x0004
_FLAG_PROC_INDEX = 0x0020
_FLAG_COMPRESSED = 0x0040
# Buffers held at once when the processors' streams are merged (one each).
MAX_HELD = 256 * 1024 * 1024

# Header types (the third byte of a record's marker) and their fixed sizes.
_SYSTEM = {0x01: 0x20, 0x02: 0x20, 0x03: 0x18, 0x04: 0x18, 0x10: 0x10, 0x11: 0x10}
_CLASSIC = {0x0A: 0x30, 0x14: 0x30, 0x0B: 0x48, 0x15: 0x48}
_EVENT_HEADER = (0x12, 0x13)
_OTHER = {0x0C: 8, 0x0D: 8, 0x0E: 8}  # timed, error, WNODE: counted, not read
_MARKER_TRACE = 0xC0
_MARKER_MESSAGE = 0x90
_EVENT_HEADER_SIZE = 0x50
_FLAG_EXTENDED_INFO = 0x0001
_MAX_EXTENDED_ITEMS = 32


class EtlHeaderError(ValueError):
    """The first buffer does not hold a trace header: nothing in the file is usable."""


class ClockType(enum.IntEnum):
    """TRACE_LOGFILE_HEADER.ReservedFlags: how the events' time stamps count."""

    QUERY_PERFORMANCE_COUNTER = 1
    SYSTEM_TIME = 2
    CPU_CYCLES = 3


@dataclass(frozen=True, slots=True)
class TraceClock:
    """Turns an event's raw time stamp into seconds since the epoch.

    kind: the clock the trace used (None: a value this reader does not know,
        read as system time when it looks like one, else as the counter).
    start: StartTime, a FILETIME (100 ns units since 1601).
    reference: the raw time stamp of the trace header record, taken at StartTime.
    ticks_per_second: PerfFreq (counter), CpuSpeedInMHz * 1e6 (cycles).
    """

    kind: ClockType | None
    start: int
    reference: int
    ticks_per_second: float

    def seconds(self, raw: int) -> float:
        if self.kind is ClockType.SYSTEM_TIME or (self.kind is None and raw > _FILETIME_UNIX_EPOCH):
            filetime = float(raw)
        elif self.ticks_per_second > 0:
            filetime = self.start + (raw - self.reference) * 1e7 / self.ticks_per_second
        else:
            filetime = float(self.start)
        return (filetime - _FILETIME_UNIX_EPOCH) / 1e7


@dataclass(frozen=True, slots=True)
class LogfileHeader:
    """What the trace header (TRACE_LOGFILE_HEADER) says that this reader uses.

    buffer_size: bytes per buffer in the file.
    pointer_size: 4 or 8 (the trace header's layout depends on it).
    clock: how to read time stamps.
    buffers_written, events_lost, buffers_lost: the logger's own counts.
    """

    buffer_size: int
    pointer_size: int
    clock: TraceClock
    buffers_written: int
    events_lost: int
    buffers_lost: int


def looks_like_etl(head: bytes) -> bool:
    """An ETL file: its first buffer starts with a buffer header whose first
    record is a system trace header of the trace-header event (hook id 0)."""
    if len(head) < BUFFER_HEADER + 0x20:
        return False
    (size,) = _U32.unpack_from(head, 0)
    return (
        MIN_BUFFER <= size <= MAX_BUFFER
        and head[BUFFER_HEADER + 2] in (0x01, 0x02)
        and head[BUFFER_HEADER + 3] == _MARKER_TRACE
        and head[BUFFER_HEADER + 6 : BUFFER_HEADER + 8] == b"\x00\x00"
    )


def parse_logfile_header(buffer: bytes) -> LogfileHeader:
    """The trace header from the first buffer. Raises EtlHeaderError."""
    if not looks_like_etl(buffer):
        raise EtlHeaderError("the first buffer holds no trace header")
    (buffer_size,) = _U32.unpack_from(buffer, 0)
    record = BUFFER_HEADER
    wide = buffer[record + 2] == 0x02  # SYSTEM64: 64-bit pointers in the header
    (version,) = _U16.unpack_from(buffer, record)
    (size,) = _U16.unpack_from(buffer, record + 4)
    (reference,) = _U64.unpack_from(buffer, record + 0x10)
    # Extra header words some system events carry (as dissect.etl reads them).
    extra = (8 if version & 0x8000 else 0) + 8 * ((version & 0x0700) >> 8)
    start = record + 0x20 + extra
    need = 0x118 if wide else 0x110
    if size < 0x20 + extra + need or record + size > len(buffer):
        raise EtlHeaderError(f"the trace header record is {size} bytes, too short")
    h = buffer[start : start + need]
    (buffers_written,) = _U32.unpack_from(h, 0x24)
    pointer_size, events_lost, cpu_mhz = struct.unpack_from("<III", h, 0x2C)
    # After LoggerName and LogFileName (pointers), TIME_ZONE_INFORMATION (0xAC
    # bytes) padded to 8: BootTime, PerfFreq, StartTime, ReservedFlags, BuffersLost.
    base = 0xF8 if wide else 0xF0
    _boot, frequency, start_time = struct.unpack_from("<qqq", h, base)
    reserved_flags, buffers_lost = struct.unpack_from("<II", h, base + 0x18)
    if pointer_size not in (4, 8):
        raise EtlHeaderError(f"the trace header gives a pointer size of {pointer_size}")
    try:
        kind: ClockType | None = ClockType(reserved_flags)
    except ValueError:
        kind = None
    if kind is ClockType.CPU_CYCLES:
        ticks = cpu_mhz * 1e6
    else:
        ticks = float(frequency) if frequency > 0 else 0.0
    return LogfileHeader(
        buffer_size,
        pointer_size,
        TraceClock(kind, start_time, reference, ticks),
        buffers_written,
        events_lost,
        buffers_lost,
    )


class _Damage(Exception):
    """A buffer stops making sense at this point."""


def _read_exact(source: Input, size: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < size:
        more = source.read(min(CHUNK * 16, size - got))
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _skip(source: Input, size: int) -> int:
    """Read and drop `size` bytes (a buffer's unused tail); how many there were."""
    skipped = 0
    while skipped < size:
        more = source.read(min(CHUNK * 16, size - skipped))
        if not more:
            break
        skipped += len(more)
    return skipped


def records(
    data: bytes, clock: TraceClock, assembler: etw.PacketAssembler
) -> Iterator[etw.EtwEvent]:
    """The events of the packet providers among a buffer's records (the rest are
    counted by `assembler`). Raises _Damage where a record cannot be right,
    after the records before it."""
    position = 0
    end = len(data)
    count_other = assembler.count_other
    while position + 4 <= end:
        (marker,) = _U32.unpack_from(data, position)
        if marker == 0xFFFFFFFF:
            return  # the rest of the buffer is padding
        flags = marker >> 24
        header_type = (marker >> 16) & 0xFF
        if flags == _MARKER_MESSAGE:
            size, minimum = marker & 0xFFFF, 8
        elif flags != _MARKER_TRACE:
            raise _Damage(f"a record marker 0x{marker:08x} at offset {position}")
        elif header_type in _SYSTEM:
            if position + 6 > end:
                raise _Damage(f"a record cut at offset {position}")
            (size,) = _U16.unpack_from(data, position + 4)
            minimum = _SYSTEM[header_type]
        elif header_type in _EVENT_HEADER:
            size, minimum = marker & 0xFFFF, _EVENT_HEADER_SIZE
        elif header_type in _CLASSIC:
            size, minimum = marker & 0xFFFF, _CLASSIC[header_type]
        elif header_type in _OTHER:
            size, minimum = marker & 0xFFFF, _OTHER[header_type]
        else:
            raise _Damage(f"an unknown record header type 0x{header_type:02x} at offset {position}")
        if size < minimum or position + size > end:
            raise _Damage(f"a record of {size} bytes at offset {position}")
        if header_type in _EVENT_HEADER and flags == _MARKER_TRACE:
            provider = data[position + 0x18 : position + 0x28]
            if provider in etw.PACKET_PROVIDERS:
                yield _event(data, position, size, clock)
            else:
                (event_id,) = _U16.unpack_from(data, position + 0x28)
                count_other(provider, event_id)
        elif header_type in _CLASSIC and flags == _MARKER_TRACE:
            count_other(data[position + 0x18 : position + 0x28])
        else:
            count_other(None)
        position += (size + 7) & ~7


def _event(data: bytes, position: int, size: int, clock: TraceClock) -> etw.EtwEvent:
    """An EVENT_HEADER record as an EtwEvent (its extended data items skipped)."""
    (header_flags,) = _U16.unpack_from(data, position + 4)
    (raw_time,) = _U64.unpack_from(data, position + 0x10)
    event_id, version = struct.unpack_from("<HB", data, position + 0x28)
    (keywords,) = _U64.unpack_from(data, position + 0x30)
    start = position + _EVENT_HEADER_SIZE
    stop = position + size
    if header_flags & _FLAG_EXTENDED_INFO:
        # Extended data items (SID, stack, ...) before the user data, each with
        # its 8-aligned size first and a linkage bit when another follows (the
        # layout dissect.etl reads; no packet trace seen so far has them).
        for _ in range(_MAX_EXTENDED_ITEMS):
            if start + 8 > stop:
                raise _Damage(f"extended data cut in the event at offset {position}")
            item_size, _kind, linkage, _data_size = struct.unpack_from("<HHHH", data, start)
            if item_size < 8 or item_size % 8 or start + item_size > stop:
                raise _Damage(f"an extended data item of {item_size} bytes at offset {start}")
            start += item_size
            if not linkage & 1:
                break
    return etw.EtwEvent(
        bytes(data[position + 0x18 : position + 0x28]),
        event_id,
        version,
        keywords,
        clock.seconds(raw_time),
        bytes(data[start:stop]),
        raw_time,
    )


@dataclass
class _Reading:
    """What the event sources and the frame loop share while a trace is read."""

    number: int  # the last frame number given
    lost_buffers: int = 0  # buffers marked EVENTS_LOST / BUFFER_LOST


def _buffer_events(
    buffer: bytes,
    index: int,
    offset: int,
    size: int,
    clock: TraceClock,
    assembler: etw.PacketAssembler,
    reading: _Reading,
    anomalies: list[Anomaly],
    label: str,
) -> Iterator[etw.EtwEvent]:
    """The packet-provider events of one buffer (its header and filled part);
    damage is reported once the events before it were taken (so the anomaly
    names the frame the damage comes before) and what came before it is kept."""
    fields = _BUFFER.unpack_from(buffer)
    claimed, filled, buffer_flags = fields[0], fields[10], fields[11]
    damage = None
    if claimed != size:
        damage = f"it claims {claimed} bytes where the trace's buffers have {size}"
    elif not BUFFER_HEADER <= filled <= size:
        damage = f"it claims {filled} filled bytes of {size}"
    else:
        if buffer_flags & (_FLAG_EVENTS_LOST | _FLAG_BUFFER_LOST):
            reading.lost_buffers += 1
        body = buffer[BUFFER_HEADER:filled]
        if buffer_flags & _FLAG_COMPRESSED:
            try:
                body = xpress.decompress(body, size)
            except xpress.XpressError as exc:
                damage = f"its compressed data do not decompress ({exc})"
                body = b""
        try:
            yield from records(body, clock, assembler)
        except _Damage as exc:
            damage = str(exc)
    if damage is not None:
        anomalies.append(
            Anomaly(
                AnomalyKind.ETL_BUFFER_DAMAGED,
                f"{label}: buffer {index} (offset {offset}) is damaged: {damage}; what "
                "it held after that is not read, reading went on at the next buffer",
                reading.number + 1,
            )
        )


def _filled(buffer: bytes, size: int) -> int:
    """How much of a buffer to read: its filled bytes when they can be right."""
    (claimed,) = _U32.unpack_from(buffer, 0)
    (filled,) = _U32.unpack_from(buffer, 0x30)
    return filled if claimed == size and BUFFER_HEADER <= filled <= size else BUFFER_HEADER


def _cut(anomalies: list[Anomaly], label: str, index: int, offset: int, number: int) -> None:
    anomalies.append(
        Anomaly(
            AnomalyKind.CAPTURE_TRUNCATED,
            f"{label}: the file ends inside buffer {index} (offset {offset}); "
            "earlier packets were read",
            number + 1,
        )
    )


def _in_file_order(
    source: Input,
    head: bytes,
    header: LogfileHeader,
    assembler: etw.PacketAssembler,
    reading: _Reading,
    anomalies: list[Anomaly],
    label: str,
) -> Iterator[etw.EtwEvent]:
    """Every buffer in file order, streaming (a pipe, gzip): one buffer held."""
    size = header.buffer_size
    pending = head
    index = 0
    while True:
        if len(pending) < BUFFER_HEADER:
            pending += _read_exact(source, BUFFER_HEADER - len(pending))
        if not pending:
            return
        offset = index * size
        index += 1
        if len(pending) < BUFFER_HEADER:
            _cut(anomalies, label, index, offset, reading.number)
            return
        want = _filled(pending, size)
        if len(pending) < want:
            pending += _read_exact(source, want - len(pending))
        cut = len(pending) < want
        buffer = pending[:want]
        if len(pending) >= size:
            pending = pending[size:]
        else:
            tail = size - len(pending)
            pending = b""
            if not cut and _skip(source, tail) < tail:
                cut = True
        if not cut:
            yield from _buffer_events(
                buffer, index, offset, size, header.clock, assembler, reading, anomalies, label
            )
        else:
            yield from _cut_buffer(
                buffer, index, offset, header, assembler, reading, anomalies, label
            )
            return


def _cut_buffer(
    buffer: bytes,
    index: int,
    offset: int,
    header: LogfileHeader,
    assembler: etw.PacketAssembler,
    reading: _Reading,
    anomalies: list[Anomaly],
    label: str,
) -> Iterator[etw.EtwEvent]:
    """A buffer the end of the file cuts: the records wholly inside the part
    that is there are still read (the one cut is reported as damage)."""
    size = header.buffer_size
    if len(buffer) >= BUFFER_HEADER:
        (filled,) = _U32.unpack_from(buffer, 0x30)
        if BUFFER_HEADER <= filled <= size:
            present = bytearray(buffer)
            struct.pack_into("<I", present, 0x30, len(present))
            yield from _buffer_events(
                bytes(present), index, offset, size, header.clock, assembler, reading,
                anomalies, label,
            )  # fmt: skip
    _cut(anomalies, label, index, offset, reading.number)


def _read_at(source: Input, offset: int, size: int) -> bytes:
    try:
        source.stream.seek(offset)
    except (OSError, ValueError):
        return b""
    return _read_exact(source, size)


def _streams(source: Input, size: int) -> list[list[int]] | None:
    """The buffers of each processor, in the order the logger wrote them (their
    sequence numbers, then file order), from a first pass over the buffer
    headers (72 bytes each); None when the file cannot be searched."""
    try:
        end = source.stream.seek(0, 2)
    except (OSError, ValueError):
        return None
    by_processor: dict[int, list[tuple[int, int]]] = {}
    for offset in range(0, end, size):
        buffer = _read_at(source, offset, BUFFER_HEADER)
        if len(buffer) < BUFFER_HEADER:
            by_processor.setdefault(-1, []).append((1 << 63, offset))
            break
        # SequenceNumber: the order the logger wrote its buffers in, which a
        # circular trace that wrapped around no longer has in the file.
        (sequence,) = struct.unpack_from("<q", buffer, 0x18)
        (flags,) = _U16.unpack_from(buffer, 0x34)
        # ETW_BUFFER_CONTEXT: ProcessorIndex (16 bits) when the buffer says so,
        # else ProcessorNumber (8 bits) and an alignment byte.
        if flags & _FLAG_PROC_INDEX:
            (processor,) = _U16.unpack_from(buffer, 0x28)
        else:
            processor = buffer[0x28]
        by_processor.setdefault(processor, []).append((sequence, offset))
    return [[offset for _, offset in sorted(stream)] for stream in by_processor.values()]


def _one_processor(
    source: Input,
    offsets: list[int],
    header: LogfileHeader,
    assembler: etw.PacketAssembler,
    reading: _Reading,
    anomalies: list[Anomaly],
    label: str,
    order: int,
) -> Iterator[tuple[int, int, int, etw.EtwEvent]]:
    """One processor's buffers, read where they are: (raw time, stream, place, event)."""
    size = header.buffer_size
    place = 0
    for offset in offsets:
        index = offset // size + 1
        buffer = _read_at(source, offset, BUFFER_HEADER)
        cut = len(buffer) < BUFFER_HEADER
        if not cut:
            want = _filled(buffer, size)
            buffer += _read_at(source, offset + BUFFER_HEADER, want - BUFFER_HEADER)
            cut = len(buffer) < want
        if cut:
            events = _cut_buffer(
                buffer, index, offset, header, assembler, reading, anomalies, label
            )
        else:
            events = _buffer_events(
                buffer, index, offset, size, header.clock, assembler, reading, anomalies, label
            )
        for event in events:
            place += 1
            yield (event.raw_time, order, place, event)
        if cut:
            return


def frames(
    source: Input,
    head: bytes,
    anomalies: list[Anomaly],
    label: str,
    tally: Tally | None = None,
    first_number: int = 1,
    all_appearances: bool = False,
    seekable: bool = False,
) -> Iterator[Frame]:
    """The packets of the trace whose first bytes are `head`, reading on from `source`.

    Events come in time order as Windows' ProcessTrace (and so etl2pcapng)
    delivers them: each processor's buffers hold its events in time order, and
    the processors' streams are merged by time stamp. That needs the file to be
    searched (one buffer per processor held); a stream (pipe, gzip) is read in
    file order, and packets out of time order are reported (`etl-out-of-order`).
    """
    start = first_number - 1
    reading = _Reading(start)
    first: float | None = None
    last: float | None = None
    assembler = etw.PacketAssembler(label, all_appearances)
    try:
        header = parse_logfile_header(head)
        streams = _streams(source, header.buffer_size) if seekable else None
        searched = streams is not None
        if streams is not None and len(streams) * header.buffer_size > MAX_HELD:
            streams = None  # too many processors to hold a buffer of each: file order
        events: Iterator[etw.EtwEvent]
        if streams is not None:
            merged = heapq.merge(
                *(
                    _one_processor(
                        source, offsets, header, assembler, reading, anomalies, label, order
                    )
                    for order, offsets in enumerate(streams)
                )
            )
            events = (item[3] for item in merged)
        else:
            if searched:
                source.stream.seek(len(head))  # where reading the head left it
            events = _in_file_order(source, head, header, assembler, reading, anomalies, label)
        out_of_order = 0
        first_out_of_order: int | None = None
        latest = float("-inf")
        for event in events:
            taken = assembler.take(event, reading.number + 1)
            if taken.outcome is etw.Outcome.NOTHING:
                continue
            reading.number += 1
            number = reading.number
            stamp = event.timestamp
            if first is None:
                first = stamp
            last = stamp
            if stamp < latest:
                out_of_order += 1
                if first_out_of_order is None:
                    first_out_of_order = number
            else:
                latest = stamp
            packet = taken.packet
            if packet is not None:
                yield make_frame(
                    number, stamp, packet.link_type, packet.data, packet.original_length
                )
        if source.error is not None:
            error = source.error
            anomalies.append(Anomaly(error.kind, f"{label}: {error.message}", reading.number + 1))
        if header.events_lost or header.buffers_lost or reading.lost_buffers:
            anomalies.append(
                Anomaly(
                    AnomalyKind.ETL_EVENTS_LOST,
                    f"{label}: the trace lost events ({counted(header.events_lost, 'event')} "
                    f"and {counted(header.buffers_lost, 'buffer')} by its header, "
                    f"{counted(reading.lost_buffers, 'buffer')} marked): packets may be missing "
                    "where the connections show "
                    "gaps; they were not seen, which does not mean they were not sent",
                )
            )
        if out_of_order:
            anomalies.append(
                Anomaly(
                    AnomalyKind.ETL_OUT_OF_ORDER,
                    f"{label}: {counted(out_of_order, 'packet')} "
                    f"{agreeing(out_of_order, 'is')} earlier than a packet before "
                    f"{agreeing(out_of_order, 'it')} "
                    "(read from a stream, in file order, or within one processor's buffers): "
                    "etl2pcapng orders them by time, so from this frame on its numbers may "
                    "differ",
                    first_out_of_order,
                )
            )
    except Exception as exc:  # noqa: BLE001 - a reader never raises after the header
        internal_error(exc)
        anomalies.append(
            Anomaly(
                AnomalyKind.CAPTURE_CORRUPT,
                f"{label}: reading stopped: {exc!r}",
                reading.number + 1,
            )
        )
    finally:
        anomalies.extend(assembler.finish())
        if tally is not None:
            tally.settle(reading.number - start, first, last)
