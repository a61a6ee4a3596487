"""Write the small Windows traces that test the ETL and ETW-in-NetMon readers.

Run from anywhere: python3 scripts/captures/build_etl.py
Output: captures/etl/ (committed; deterministic: the same bytes every run).

Each trace is made from an existing scenario capture (captures/scenarios/):
its packets become the events Windows logs for them, in ETL files as
`netsh trace` (Microsoft-Windows-NDIS-PacketCapture) and `pktmon`
(Microsoft-Windows-PktMon) write them, and in Network Monitor 2.3 files of
ETW events as Network Monitor / Message Analyzer convert them. The container
is written here from the format description (WMI_BUFFER_HEADER, the
TRACE_LOGFILE_HEADER record, EVENT_HEADER / EVENT_TRACE_HEADER / system
records, the providers' event templates), not with authtrace's reader, and
the tests read every ETL file with dissect.etl as well.

What the files cover: both providers; truncation (netsh packettruncatebytes,
pktmon --pkt-size); several interfaces (a packet logged at a miniport and at
a filter above it); pktmon appearances of one packet at several components;
a damaged buffer between good ones; events that are not packets (another
provider's manifest events, classic events, system events, the providers'
own configuration events); a 32-bit trace whose clock is the system time;
a trace of two processors whose buffers are out of time order in the file;
buffers compressed as in compressed mode.
"""

from __future__ import annotations

import struct
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from build_readers import write_netmon23  # noqa: E402
from scapy.utils import rdpcap  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "captures" / "scenarios"
OUT = ROOT / "captures" / "etl"

NDIS = uuid.UUID("2ED6006E-4729-4609-B423-3EE7BCD678EF").bytes_le
PKTMON = uuid.UUID("4D4F80D9-C8BD-4D73-BB5B-19C90402C5AC").bytes_le
# Providers a `netsh trace scenario=InternetServer` adds (ids only matter here).
OTHER_MANIFEST = uuid.UUID("7DD42A49-5329-4832-8DFD-43D979153A88").bytes_le  # Kernel-Network
CLASSIC = uuid.UUID("9B79EE91-B5FD-41C0-A243-4248E266E9D0").bytes_le
EVENT_TRACE_GUID = uuid.UUID("68FDD900-4A3E-11D1-84F4-0000F80464E3").bytes_le

FILETIME_EPOCH = 116444736000000000
QPC_FREQUENCY = 10_000_000
BUFFER_HEADER = 0x48

KW_ETHERNET = 0x1
KW_TRUNCATED = 0x2000000
KW_START = 0x40000000
KW_END = 0x80000000
KW_SEND = 0x1_0000_0000
KW_RECEIVE = 0x2_0000_0000
KW_NDIS_PACKET = 0x600_0000_0000  # the two keywords 1001 events carry in the manifest


def filetime(seconds: float) -> int:
    return round(seconds * 1e7) + FILETIME_EPOCH


@dataclass
class Trace:
    """An ETL file being written: records go into buffers of `buffer_size`."""

    start: float  # the trace's start time, seconds since the epoch
    buffer_size: int = 8192
    wide: bool = True  # 64-bit pointers (SYSTEM64 / EVENT_HEADER64 records)
    system_time: bool = False  # clock type 2 (time stamps are FILETIMEs), else QPC
    logger: str = "NetTrace"
    compressed: bool = False  # EVENT_TRACE_COMPRESSED_MODE: data buffers LZ77-compressed
    buffers: list[bytes] = field(default_factory=list)
    _current: bytearray = field(default_factory=bytearray)
    processor: int = 0  # whose buffer records go into (each processor has its own)
    processors: int = 1
    _open: dict[int, bytearray] = field(default_factory=dict)
    _sequence: int = 0

    def stamp(self, seconds: float) -> int:
        """A raw time stamp on the trace's clock (QPC counts from 1e9 at start)."""
        if self.system_time:
            return filetime(seconds)
        return 1_000_000_000 + round((seconds - self.start) * QPC_FREQUENCY)

    # -- records ---------------------------------------------------------------

    def event(
        self,
        provider: bytes,
        event_id: int,
        keywords: int,
        seconds: float,
        user_data: bytes,
        *,
        process: int = 4,
    ) -> None:
        """An EVENT_HEADER record (manifest provider)."""
        size = 0x50 + len(user_data)
        header_type = 0x13 if self.wide else 0x12
        flags = 0x0040 if self.wide else 0x0020  # EVENT_HEADER_FLAG_64/32_BIT_HEADER
        record = struct.pack(
            "<HBBHHIIQ16sHBBBBHQQ16s",
            size,
            header_type,
            0xC0,
            flags,
            0,
            8132,
            process,
            self.stamp(seconds),
            provider,
            event_id,
            0,  # version
            0x10,  # channel
            4,  # level: information
            0,  # opcode
            0,  # task
            keywords,
            0,  # processor time
            b"\x00" * 16,
        )
        self._add(record + user_data)

    def classic(self, guid: bytes, seconds: float, payload: bytes) -> None:
        """An EVENT_TRACE_HEADER record (a classic, MOF-described provider)."""
        size = 0x30 + len(payload)
        header_type = 0x14 if self.wide else 0x0A
        record = struct.pack(
            "<HBBIIIQ16sII", size, header_type, 0xC0, 0x00020000, 8132, 7780,
            self.stamp(seconds), guid, 0, 0,
        )  # fmt: skip
        self._add(record + payload)

    def system(self, group: int, opcode: int, seconds: float, payload: bytes) -> None:
        """A SYSTEM_TRACE_HEADER record (a kernel event: process, image, ...)."""
        header_type = 0x02 if self.wide else 0x01
        record = struct.pack(
            "<HBBHBBIIQII", 2, header_type, 0xC0, 0x20 + len(payload), opcode, group,
            8132, 4, self.stamp(seconds), 0, 0,
        )  # fmt: skip
        self._add(record + payload)

    def on(self, processor: int) -> None:
        """Log the next records on this processor: ETW keeps a buffer per
        processor and writes each to the file when it is full, so a trace of
        several processors has buffers out of time order."""
        if processor != self.processor:
            self._open[self.processor] = self._current
            self.processor = processor
            self._current = self._open.pop(processor, bytearray())
            self.processors = max(self.processors, processor + 1)

    def _add(self, record: bytes) -> None:
        aligned = record + b"\x00" * (-len(record) % 8)
        if BUFFER_HEADER + len(self._current) + len(aligned) > self.buffer_size:
            self.flush()
        self._current += aligned

    # -- buffers ---------------------------------------------------------------

    def flush(self, buffer_type: int = 0) -> None:
        """Close the current buffer (WMI_BUFFER_HEADER, records, 0xFF padding);
        a compressed trace's data buffers hold their records LZ77-compressed."""
        if not self._current and buffer_type == 0:
            return
        records = bytes(self._current)
        flag = 0x0001  # FLUSH_MARKER
        if self.processors > 1:
            flag |= 0x0020  # PROC_INDEX: the buffer context holds ProcessorIndex
        if self.compressed and buffer_type == 0:
            records = xpress_compress(records)
            flag |= 0x0040  # COMPRESSED
        filled = BUFFER_HEADER + len(records)
        self._sequence += 1
        header = struct.pack(
            "<IIIIQqQBBHIIHH16s",
            self.buffer_size,
            filled,  # SavedOffset
            filled,  # CurrentOffset
            0,  # ReferenceCount
            filetime(self.start),  # TimeStamp
            self._sequence,
            0,  # ClockType / Frequency
            self.processor,  # ProcessorIndex (low byte)
            0,  # ProcessorIndex (high byte) / alignment
            1,  # logger id
            0,  # state
            filled,  # Offset: the filled bytes
            flag,  # BufferFlag
            buffer_type,  # BufferType: 0 generic, 4 header
            b"\x00" * 16,
        )
        body = records + b"\xff" * (self.buffer_size - filled)
        self.buffers.append(header + body)
        self._current = bytearray()

    def logfile_header(self, end: float, events: int, buffers: int) -> bytes:
        """The first buffer: the TRACE_LOGFILE_HEADER record (hook id 0)."""
        pointer = 8 if self.wide else 4
        names = (self.logger + "\x00").encode("utf-16-le") + (
            f"C:\\Windows\\Temp\\{self.logger}.etl\x00"
        ).encode("utf-16-le")
        fixed = struct.pack(
            "<IIIIqIIIIIIII",
            self.buffer_size,
            0x0501000A,  # Version 10.0.1.5 (as Windows 10 writes it)
            18362,  # ProviderVersion: the OS build
            2,  # NumberOfProcessors
            filetime(end),  # EndTime
            156250,  # TimerResolution
            512,  # MaximumFileSize
            0x08000002 if pointer == 8 else 2,  # LogFileMode
            buffers,  # BuffersWritten
            1,  # StartBuffers
            pointer,  # PointerSize
            0,  # EventsLost
            2208,  # CpuSpeedInMHz
        )
        fixed += b"\x00" * (2 * pointer)  # LoggerName, LogFileName pointers
        fixed += b"\x00" * 0xAC  # TIME_ZONE_INFORMATION (UTC)
        fixed += b"\x00" * (-len(fixed) % 8)
        clock = 2 if self.system_time else 1
        fixed += struct.pack(
            "<qqqII", filetime(self.start - 86400), QPC_FREQUENCY, filetime(self.start), clock, 0
        )
        assert len(fixed) == (0x118 if self.wide else 0x110)
        payload = fixed + names
        header_type = 0x02 if self.wide else 0x01
        record = struct.pack(
            "<HBBHBBIIQII", 2, header_type, 0xC0, 0x20 + len(payload), 0, 0,
            8132, 7780, self.stamp(self.start), 0, 0,
        )  # fmt: skip
        return record + payload

    def write(self, path: Path, end: float, events: int) -> None:
        self.flush()
        for processor in sorted(self._open):
            self.on(processor)
            self.flush()
        self.on(0)
        data = self.buffers
        head = bytearray(self.logfile_header(end, events, len(data) + 1))
        head += b"\x00" * (-len(head) % 8)
        saved, self._current = self._current, head
        written, self._sequence = self._sequence, -1  # the header buffer is the first, 0
        self.flush(buffer_type=4)  # BufferType HEADER
        self._sequence = written
        first = self.buffers.pop()
        self._current = saved
        path.write_bytes(first + b"".join(data))


def xpress_compress(data: bytes) -> bytes:
    """Plain LZ77 Xpress ([MS-XCA] 2.3), greedy: 32 flag bits (1: a match)
    before each run of 32 literals and matches; a match is a 16-bit word of
    (distance - 1) << 3 | length - 3, longer lengths in a shared nibble, a byte,
    then 16 bits, as the decompressor of [MS-XCA] 2.4 reads them."""
    out = bytearray()
    flags = 0
    count = 0
    flag_at = 0
    out += b"\x00" * 4
    half_byte = -1
    last: dict[bytes, int] = {}
    position = 0

    def bit(value: int) -> None:
        nonlocal flags, count, flag_at
        flags = (flags << 1) | value
        count += 1
        if count == 32:
            struct.pack_into("<I", out, flag_at, flags)
            flags, count = 0, 0
            flag_at = len(out)
            out.extend(b"\x00" * 4)

    while position < len(data):
        key = data[position : position + 3]
        candidate = last.get(key) if len(key) == 3 else None
        if len(key) == 3:
            last[key] = position
        length = 0
        if candidate is not None and position - candidate <= 8192:
            while (
                position + length < len(data)
                and data[candidate + length] == data[position + length]
                and length < 4000
            ):
                length += 1
        if length < 3:
            out.append(data[position])
            position += 1
            bit(0)
            continue
        distance = position - candidate  # type: ignore[operator]
        extra = length - 3
        out += struct.pack("<H", ((distance - 1) << 3) | min(extra, 7))
        if extra >= 7:
            nibble = min(extra - 7, 15)
            if half_byte < 0:
                half_byte = len(out)
                out.append(nibble)
            else:
                out[half_byte] |= nibble << 4
                half_byte = -1
            if extra - 7 >= 15:
                if extra - 22 < 255:
                    out.append(extra - 22)
                else:
                    out.append(255)
                    out += struct.pack("<H", extra)
        position += length
        bit(1)
    # The flags word's unused bits are set (the decompressor stops at the end).
    flags = (flags << (32 - count)) | ((1 << (32 - count)) - 1)
    struct.pack_into("<I", out, flag_at, flags)
    return bytes(out)


# -- the providers' events ------------------------------------------------------


def ndis_fragment(frame: bytes, miniport: int, lower: int) -> bytes:
    """Microsoft-Windows-NDIS-PacketCapture event 1001 user data."""
    return struct.pack("<III", miniport, lower, len(frame)) + frame


def pktmon_packet(
    frame: bytes, group: int, appearance: int, component: int, send: bool, size: int = 0
) -> bytes:
    """Microsoft-Windows-PktMon event 160 user data (Ethernet payload)."""
    logged = frame if size == 0 else frame[:size]
    return (
        struct.pack(
            "<QHHHHHHHIIHH",
            group,
            1,
            appearance,
            4 if send else 3,
            1,
            component,
            1,
            0,
            0,
            0,
            len(frame),
            len(logged),
        )  # fmt: skip
        + logged
    )


@dataclass(frozen=True)
class Packet:
    time: float
    data: bytes
    send: bool  # sent by the Windows host (the server of the scenario)


def packets(name: str) -> list[Packet]:
    """The scenario's frames; the Windows host is the HTTP server (port 80)."""
    found = []
    for packet in rdpcap(str(SCENARIOS / name)):
        data = bytes(packet)
        # Ethernet / IPv4 / TCP: the server sends from port 80.
        send = data[12:14] == b"\x08\x00" and data[34:36] == b"\x00\x50"
        found.append(Packet(float(packet.time), data, send))
    return found


def noise(trace: Trace, seconds: float, index: int) -> None:
    """Events a netsh scenario logs besides packets (never packets)."""
    kind = index % 4
    if kind == 0:
        trace.event(OTHER_MANIFEST, 10, 0x10, seconds, struct.pack("<IIII", 1, 2, 3, 4))
    elif kind == 1:
        trace.classic(CLASSIC, seconds, b"wininet\x00" * 3)
    elif kind == 2:
        trace.system(0x03, 0x01, seconds, b"\x00" * 24)  # a process event
    else:
        trace.event(NDIS, 1011, 0x800000C000000000, seconds, struct.pack("<I", 1))  # rules count


def ndis_trace(
    name: str,
    out: str,
    *,
    truncate: int = 0,
    two_layers: bool = False,
    wide: bool = True,
    system_time: bool = False,
    buffer_size: int = 8192,
    compressed: bool = False,
    processors: int = 1,
) -> Trace:
    frames = packets(name)
    trace = Trace(frames[0].time - 1.0, buffer_size, wide, system_time, compressed=compressed)
    trace.event(NDIS, 1016, 0x800000C000000000, trace.start, bytes([1, 1, 2, 0]) + b"\x08\x00")
    events = 1
    for index, packet in enumerate(frames):
        trace.on(index % processors)
        keywords = KW_ETHERNET | KW_START | KW_END | KW_NDIS_PACKET
        keywords |= KW_SEND if packet.send else KW_RECEIVE
        data = packet.data
        if truncate and len(data) > truncate:
            data = data[:truncate]
            keywords |= KW_TRUNCATED
        trace.event(NDIS, 1001, keywords, packet.time, ndis_fragment(data, 13, 13))
        events += 1
        if two_layers:
            # The same packet at a filter driver above the miniport (LWF):
            # etl2pcapng gives it an interface of its own.
            trace.event(NDIS, 1001, keywords, packet.time, ndis_fragment(data, 13, 16))
            events += 1
        if index % 3 == 0:
            noise(trace, packet.time, index)
            events += 1
    trace.write(OUT / out, frames[-1].time + 1.0, events)
    return trace


def pktmon_trace(name: str, out: str, *, components: int = 3, size: int = 0) -> None:
    frames = packets(name)
    trace = Trace(frames[0].time - 1.0, 16384, logger="PktMon")
    # Component events (id 20): Component, Type, Name, ... (not packets).
    for component in range(1, components + 1):
        name_bytes = f"Component {component}\x00".encode("utf-16-le")
        trace.event(PKTMON, 20, 0x1, trace.start, struct.pack("<HH", component, 1) + name_bytes)
    for group, packet in enumerate(frames, start=0x21):
        path = range(1, components + 1) if packet.send else range(components, 0, -1)
        for appearance, component in enumerate(path, start=1):
            trace.event(
                PKTMON,
                160,
                0x10,
                packet.time + appearance * 1e-6,
                pktmon_packet(packet.data, group, appearance, component, packet.send, size),
            )
    trace.write(OUT / out, frames[-1].time + 1.0, 0)


def netmon_event(
    provider: bytes, event_id: int, keywords: int, seconds: float, user: bytes
) -> bytes:
    """One NetMon "event" frame (media type 0xFFE0): EVENT_HEADER with a FILETIME,
    ETW_BUFFER_CONTEXT, ExtendedDataCount, UserDataLength, one byte, user data."""
    header = struct.pack(
        "<HHHHIIQ16sHBBBBHQQ16s", 80, 0, 0x0240, 0, 0, 0, filetime(seconds), provider,
        event_id, 0, 0, 4, 0, 0, keywords, 0, b"\x00" * 16,
    )  # fmt: skip
    return header + struct.pack("<BBHHHB", 0, 0, 25, 0, len(user), 0) + user


def netmon_pktmon(name: str, out: str) -> None:
    """A pktmon trace converted to NetMon: per packet a parsed-summary event
    (120), an NBL information event (180) and the payload event (160), as in
    the public sample; plus the trace's system event first."""
    frames = packets(name)
    records = [
        (frames[0].time - 1.0, netmon_event(EVENT_TRACE_GUID, 0, 0, frames[0].time - 1.0,
                                            b"\x00" * 64), 0xFFE0)
    ]  # fmt: skip
    for group, packet in enumerate(frames, start=0x21):
        t = packet.time
        records.append((t, netmon_event(PKTMON, 120, 0x4, t, packet.data[:34]), 0xFFE0))
        records.append((t, netmon_event(PKTMON, 180, 0x8, t, b"\x00" * 40), 0xFFE0))
        user = pktmon_packet(packet.data, group, 1, 9, packet.send)
        records.append((t, netmon_event(PKTMON, 160, 0x10, t, user), 0xFFE0))
    write_netmon23(OUT / out, records)


def netmon_ndis(name: str, out: str) -> None:
    """A netsh trace converted to NetMon: NDIS fragment events among others."""
    frames = packets(name)
    records = []
    for index, packet in enumerate(frames):
        t = packet.time
        keywords = KW_ETHERNET | KW_START | KW_END | KW_NDIS_PACKET
        keywords |= KW_SEND if packet.send else KW_RECEIVE
        user = ndis_fragment(packet.data, 13, 13)
        records.append((t, netmon_event(NDIS, 1001, keywords, t, user), 0xFFE0))
        if index % 4 == 0:
            records.append((t, netmon_event(OTHER_MANIFEST, 10, 0x10, t, b"\x01" * 16), 0xFFE0))
    write_netmon23(OUT / out, records)


def damage_middle_buffer(path: Path, buffer_size: int) -> None:
    """Overwrite the second record of buffer 2 (of 1..n after the header
    buffer) with a marker no record has: the reader must report the buffer and
    read the next one."""
    data = bytearray(path.read_bytes())
    start = 2 * buffer_size + BUFFER_HEADER
    (first_size,) = struct.unpack_from("<H", data, start)
    second = start + ((first_size + 7) & ~7)
    data[second : second + 4] = b"\x00\x00\x77\x00"
    path.write_bytes(bytes(data))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    ndis_trace("healthy-ntlm.pcap", "healthy-ntlm.netsh.etl")
    ndis_trace("ntlm-logon-failed.pcap", "ntlm-logon-failed.netsh.etl")
    ndis_trace("ntlm-logon-failed.pcap", "ntlm-logon-failed-truncated.netsh.etl", truncate=128)
    ndis_trace("healthy-ntlm.pcap", "healthy-ntlm-two-layers.netsh.etl", two_layers=True)
    ndis_trace(
        "ntlm-logon-failed.pcap",
        "ntlm-logon-failed-32bit-systemtime.netsh.etl",
        wide=False,
        system_time=True,
    )
    ndis_trace("healthy-ntlm.pcap", "healthy-ntlm-compressed.netsh.etl", compressed=True)
    ndis_trace(
        "pooling-proxy.pcap", "pooling-proxy-two-processors.netsh.etl", buffer_size=2048,
        processors=2,
    )  # fmt: skip
    ndis_trace("pooling-proxy.pcap", "pooling-proxy-damaged.netsh.etl", buffer_size=4096)
    damage_middle_buffer(OUT / "pooling-proxy-damaged.netsh.etl", 4096)
    pktmon_trace("pooling-proxy.pcap", "pooling-proxy.pktmon.etl")
    pktmon_trace("ntlm-logon-failed.pcap", "ntlm-logon-failed-truncated.pktmon.etl", size=128)
    netmon_pktmon("ntlm-logon-failed.pcap", "ntlm-logon-failed.pktmon.cap")
    netmon_ndis("healthy-ntlm.pcap", "healthy-ntlm.netsh.cap")


if __name__ == "__main__":
    main()
