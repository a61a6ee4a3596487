"""The classic libpcap file format (tcpdump.org "PCAP Capture File Format",
draft-ietf-opsawg-pcap): both byte orders, microsecond and nanosecond magic,
and the "modified" (Kuznetzov) variant with a longer record header.

Owns: turning the record stream after the 24-byte file header into `Frame`s.

Invariant: memory is one read chunk plus one record; a record claiming more
than MAX_RECORD bytes is corruption and stops reading (`capture-corrupt`); a
file that ends inside a record stops there (`capture-truncated`). Nothing is
raised once the header was accepted.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from authtrace.anomalies import Anomaly, AnomalyKind
from authtrace.readers.base import Frame, RecordLayout, Tally, WalkerFor, make_frame
from authtrace.readers.source import CHUNK, Input
from authtrace.strict import internal_error

MAX_RECORD = 256 * 1024  # Wireshark's largest standard snapshot length (262144)

HEADER = 24
# magic as it appears in the first four bytes -> (byte order, fraction scale, record header size)
MAGICS: dict[bytes, tuple[str, float, int]] = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6, 16),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6, 16),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9, 16),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9, 16),
    # Modified pcap (Alexey Kuznetzov's patches): 8 more bytes per record
    # (ifindex, protocol, packet type, padding) after the standard fields.
    b"\x34\xcd\xb2\xa1": ("<", 1e-6, 24),
    b"\xa1\xb2\xcd\x34": (">", 1e-6, 24),
}

_FILE_HEADER = {"<": struct.Struct("<IHHiIII"), ">": struct.Struct(">IHHiIII")}
_RECORD = {"<": struct.Struct("<IIII"), ">": struct.Struct(">IIII")}

# The pcap "network" field keeps FCS information in its upper bits
# (LINKTYPE_ and the FCS-length flag, tcpdump.org link-layer types page).
_LINKTYPE_MASK = 0x03FF_FFFF


def parse_header(head: bytes) -> tuple[str, float, int, int]:
    """(byte order, fraction scale, record header size, link type) from the file header.

    Raises ValueError when the header is incomplete.
    """
    order, scale, record_size = MAGICS[head[:4]]
    if len(head) < HEADER:
        raise ValueError(f"file ends inside the pcap header ({len(head)} of {HEADER} bytes)")
    fields = _FILE_HEADER[order].unpack_from(head, 0)
    return order, scale, record_size, fields[6] & _LINKTYPE_MASK


def frames(
    source: Input,
    buffer: bytes,
    anomalies: list[Anomaly],
    label: str,
    walker_for: WalkerFor | None = None,
    tally: Tally | None = None,
    first_number: int = 1,
) -> Iterator[Frame]:
    """Frames from the records that start at buffer[HEADER:], reading on from `source`.

    Frames are numbered from `first_number` (1 for a file read alone; several
    files read as one stream continue the numbering, as `mergecap -a` would).

    `walker_for` (see readers/base.py) may give, for the file's link type, a
    walker that takes records before a Frame is built for them;
    `tally` receives the count and first/last timestamps of every record read,
    claimed or not, when reading stops.
    """
    start = first_number - 1
    number = start
    first = last = None
    try:
        order, scale, record_size, link_type = parse_header(buffer)
        layout = RecordLayout(_RECORD[order], record_size, scale, MAX_RECORD)
        walk = walker_for(link_type, layout) if walker_for is not None else None
        unpack = _RECORD[order].unpack_from
        read = source.read
        buf = buffer
        pos = HEADER
        size = len(buf)
        if size - pos >= record_size:
            seconds, fraction, _, _ = unpack(buf, pos)
            first = seconds + fraction * scale  # kept only if the record is read
        while True:
            if walk is not None:
                taken_to, number, taken_last = walk(buf, pos, size, number)
                if taken_to != pos:
                    pos = taken_to
                    last = taken_last
            if size - pos < record_size:
                more = read(CHUNK)
                if not more:
                    break
                buf = buf[pos:] + more
                pos = 0
                size = len(buf)
                continue
            seconds, fraction, captured, original = unpack(buf, pos)
            if captured > MAX_RECORD:
                anomalies.append(
                    Anomaly(
                        AnomalyKind.CAPTURE_CORRUPT,
                        f"{label}: record {number + 1} claims {captured} bytes "
                        f"(more than {MAX_RECORD}); reading stopped",
                        number + 1,
                    )
                )
                return
            end = pos + record_size + captured
            if end > size:
                more = read(max(CHUNK, end - pos))
                if not more:
                    break
                buf = buf[pos:] + more
                pos = 0
                size = len(buf)
                continue
            number += 1
            last = seconds + fraction * scale
            yield make_frame(number, last, link_type, buf[pos + record_size : end], original)
            pos = end
        report_end(source, size - pos, number, anomalies, label)
    except Exception as exc:  # noqa: BLE001 - a reader never raises after the header
        internal_error(exc)
        anomalies.append(
            Anomaly(AnomalyKind.CAPTURE_CORRUPT, f"{label}: reading stopped: {exc!r}", number + 1)
        )
    finally:
        if tally is not None:
            tally.settle(number - start, first, last)


def report_end(
    source: Input, leftover: int, number: int, anomalies: list[Anomaly], label: str
) -> None:
    if source.error is not None:
        error = source.error
        anomalies.append(Anomaly(error.kind, f"{label}: {error.message}", number + 1))
    elif leftover:
        anomalies.append(
            Anomaly(
                AnomalyKind.CAPTURE_TRUNCATED,
                f"{label}: file ends inside record {number + 1} "
                f"({leftover} bytes of it present); earlier frames were read",
                number + 1,
            )
        )
