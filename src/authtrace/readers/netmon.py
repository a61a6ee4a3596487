"""Microsoft Network Monitor capture files, versions 1.x and 2.x (facts from
the Wireshark file-format notes for NetMon and the Network Monitor 3.x help).

Owns: the file header, the frame table (file offsets of every frame, which
NetMon writes at the end of the file), the per-frame header and, from 2.1 on,
the per-frame trailer whose media type says what each frame holds.

A frame of the "event" media type (0xFFE0, what Network Monitor and Message
Analyzer write when they convert an ETL file) holds one ETW event: its
EVENT_HEADER (80 bytes, time stamp already a FILETIME), the buffer context (4),
ExtendedDataCount and UserDataLength (2 each), one byte, the extended data items
(Reserved1, ExtType, Linkage, DataSize, then DataSize bytes each) and the user
data. Events of the packet providers become the frames they carry
(readers/etw.py decides); the other events are counted and skipped.

Invariant: frames are numbered in frame-table order, 1.. (or from a given
first number) like Wireshark and Network Monitor: every record counts, also an
event that carries no packet. A frame's media type becomes a LINKTYPE value
when one exists (Ethernet, or "pcap link type + 0xE000"), else the private
LINKTYPE_NETMON_MEDIA + media type, which the net layer skips and counts.
Memory: the frame table (4 bytes a frame, capped) plus one read chunk.
"""

from __future__ import annotations

import calendar
import struct
from collections.abc import Iterator
from typing import BinaryIO

from authtrace.anomalies import Anomaly, AnomalyKind
from authtrace.readers import etw
from authtrace.readers.base import Frame, Tally, make_frame
from authtrace.readers.linktypes import LINKTYPE_ETHERNET, LINKTYPE_NETMON_MEDIA
from authtrace.readers.pcap import MAX_RECORD
from authtrace.readers.source import CHUNK
from authtrace.strict import internal_error

MAGIC_1X = b"RTSS"
MAGIC_2X = b"GMBU"

# magic, minor, major, media type, SYSTEMTIME (8 x u16), frame table offset, length
_HEADER = struct.Struct("<4sBBH8HII")
_FRAME_1X = struct.Struct("<IHH")  # ms since start, original length, captured length
_FRAME_2X = struct.Struct("<QII")  # us since start, original length, captured length
_MEDIA = struct.Struct("<H")
_FILETIME = struct.Struct("<Q")

MAX_FRAMES = 16 * 1024 * 1024  # a frame table larger than 64 MiB is not believed

_NETMON_ETHERNET = 1
_NETMON_EVENT = 0xFFE0  # an ETW event (NetMon "NetEvent")
_EVENT_FIXED = 89  # EVENT_HEADER, buffer context, two counts, one byte
_EXTENDED_ITEM = struct.Struct("<HHHH")
_NETMON_PCAP_BASE = 0xE000  # media type = LINKTYPE value + 0xE000 (NetMon 3.x)
_FILETIME_UNIX_EPOCH = 116444736000000000  # 1601-01-01 to 1970-01-01 in 100 ns units


class NetmonHeaderError(ValueError):
    """The header or frame table cannot be read: nothing in the file is usable."""


def to_link_type(media: int) -> int:
    if media == _NETMON_ETHERNET:
        return LINKTYPE_ETHERNET
    if media & 0xF000 == _NETMON_PCAP_BASE:
        return media & 0x0FFF
    return LINKTYPE_NETMON_MEDIA + media


def _trailer_size(major: int, minor: int) -> int:
    """Per-frame trailer after the data: 2.1 media type; 2.2 + process index;
    2.3+ + UTC FILETIME and time-zone index."""
    if major < 2 or minor == 0:
        return 0
    if minor == 1:
        return 2
    if minor == 2:
        return 6
    return 15


class NetmonFile:
    """An open NetMon file: header fields and its frame table, read eagerly."""

    def __init__(self, stream: BinaryIO) -> None:
        stream.seek(0)
        head = stream.read(_HEADER.size)
        if len(head) < _HEADER.size:
            raise NetmonHeaderError("file ends inside the Network Monitor header")
        fields = _HEADER.unpack_from(head)
        magic, self.minor, self.major, self.media = fields[0], fields[1], fields[2], fields[3]
        year, month, _weekday, day, hour, minute, second, millis = fields[4:12]
        table_offset, table_length = fields[12], fields[13]
        if (magic == MAGIC_1X) != (self.major == 1) or self.major not in (1, 2):
            version = f"{self.major}.{self.minor}"
            raise NetmonHeaderError(f"unsupported Network Monitor version {version}")
        try:
            # The header's start time is a SYSTEMTIME; frames add a delta to it.
            self.start = calendar.timegm((year, month, day, hour, minute, second)) + millis / 1000
        except (ValueError, OverflowError):
            self.start = 0.0
        if table_length // 4 > MAX_FRAMES:
            raise NetmonHeaderError(f"frame table of {table_length} bytes is not believable")
        stream.seek(table_offset)
        table = stream.read(table_length)
        if len(table) < table_length:
            raise NetmonHeaderError(
                "the frame table lies beyond the end of the file (cut short while capturing?)"
            )
        count = table_length // 4
        self.offsets = struct.unpack_from(f"<{count}I", table)
        self.trailer = _trailer_size(self.major, self.minor)


def event_of(data: bytes, fallback: float) -> etw.EtwEvent:
    """The ETW event a NetMon event frame holds. Raises etw.EtwDecodeError.

    fallback: the frame's own time stamp, for an event whose header has none."""
    if len(data) < _EVENT_FIXED:
        raise etw.EtwDecodeError(f"an event record of {len(data)} bytes")
    (filetime,) = _FILETIME.unpack_from(data, 0x10)
    event_id, version = struct.unpack_from("<HB", data, 0x28)
    (keywords,) = struct.unpack_from("<Q", data, 0x30)
    extended, user_length = struct.unpack_from("<HH", data, 84)
    offset = _EVENT_FIXED
    for _ in range(extended):
        if offset + _EXTENDED_ITEM.size > len(data):
            raise etw.EtwDecodeError("extended data items run past the end of the event")
        size = _EXTENDED_ITEM.unpack_from(data, offset)[3]
        offset += _EXTENDED_ITEM.size + size
    if offset + user_length > len(data):
        raise etw.EtwDecodeError(f"user data of {user_length} bytes run past the end of the event")
    timestamp = (
        (filetime - _FILETIME_UNIX_EPOCH) / 1e7 if filetime > _FILETIME_UNIX_EPOCH else fallback
    )
    return etw.EtwEvent(
        bytes(data[0x18:0x28]), event_id, version, keywords, timestamp,
        bytes(data[offset : offset + user_length]),
    )  # fmt: skip


def frames(
    stream: BinaryIO,
    netmon: NetmonFile,
    anomalies: list[Anomaly],
    label: str,
    first_number: int = 1,
    tally: Tally | None = None,
    all_appearances: bool = False,
) -> Iterator[Frame]:
    """The frames of the table, in table order, numbered from `first_number`;
    a frame of ETW events yields the packet its event carries, if any."""
    number = first_number - 1
    first: float | None = None
    last: float | None = None
    assembler = etw.PacketAssembler(label, all_appearances)
    event_link = LINKTYPE_NETMON_MEDIA + _NETMON_EVENT
    try:
        header = _FRAME_2X if netmon.major == 2 else _FRAME_1X
        header_size = header.size
        scale = 1e-6 if netmon.major == 2 else 1e-3
        trailer = netmon.trailer
        default_link = to_link_type(netmon.media)
        start = netmon.start
        base = 0  # file offset of buf[0]
        buf = b""
        for offset in netmon.offsets:
            # Frames are usually stored in table order, so a chunk read once
            # serves many frames; otherwise seek.
            rel = offset - base
            if rel < 0 or rel + header_size > len(buf):
                stream.seek(offset)
                buf = stream.read(CHUNK)
                base, rel = offset, 0
            if rel + header_size > len(buf):
                anomalies.append(
                    Anomaly(
                        AnomalyKind.CAPTURE_TRUNCATED,
                        f"{label}: frame {number + 1} lies beyond the end of the file",
                        number + 1,
                    )
                )
                return
            delta, original, captured = header.unpack_from(buf, rel)
            if captured > MAX_RECORD:
                anomalies.append(
                    Anomaly(
                        AnomalyKind.CAPTURE_CORRUPT,
                        f"{label}: frame {number + 1} claims {captured} bytes; reading stopped",
                        number + 1,
                    )
                )
                return
            need = header_size + captured + trailer
            if rel + need > len(buf):
                stream.seek(offset)
                buf = stream.read(max(CHUNK, need))
                base, rel = offset, 0
                if need > len(buf):
                    anomalies.append(
                        Anomaly(
                            AnomalyKind.CAPTURE_TRUNCATED,
                            f"{label}: file ends inside frame {number + 1}",
                            number + 1,
                        )
                    )
                    return
            data_start = rel + header_size
            data_end = data_start + captured
            link_type = default_link
            timestamp = start + delta * scale
            if trailer:
                (media,) = _MEDIA.unpack_from(buf, data_end)
                link_type = to_link_type(media)
                if trailer >= 15:
                    # 2.3 trailer: an absolute UTC time stamp (FILETIME) when set.
                    (filetime,) = _FILETIME.unpack_from(buf, data_end + 6)
                    if filetime > _FILETIME_UNIX_EPOCH:
                        timestamp = (filetime - _FILETIME_UNIX_EPOCH) / 1e7
            number += 1
            if first is None:
                first = timestamp
            last = timestamp
            if link_type == event_link:
                try:
                    event = event_of(buf[data_start:data_end], timestamp)
                except etw.EtwDecodeError as exc:
                    if len(anomalies) < 1000:
                        anomalies.append(
                            Anomaly(
                                AnomalyKind.ETW_EVENT_MALFORMED,
                                f"{label}: frame {number} holds a damaged ETW event: {exc}",
                                number,
                            )
                        )
                    continue
                taken = assembler.take(event, number)
                packet = taken.packet
                if packet is not None:
                    yield make_frame(
                        number, event.timestamp, packet.link_type, packet.data,
                        packet.original_length,
                    )  # fmt: skip
                continue
            yield make_frame(number, timestamp, link_type, buf[data_start:data_end], original)
    except Exception as exc:  # noqa: BLE001 - a reader never raises after the header
        internal_error(exc)
        anomalies.append(
            Anomaly(AnomalyKind.CAPTURE_CORRUPT, f"{label}: reading stopped: {exc!r}", number + 1)
        )
    finally:
        anomalies.extend(assembler.finish())
        if tally is not None:
            tally.settle(number - first_number + 1, first, last)
