"""What every capture reader yields: frames, and the errors that stop reading.

Invariant: frame numbers are 1-based and count every record read from the
file(s), as Wireshark numbers them, so any evidence can be found there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from struct import Struct


class CaptureError(Exception):
    """Nothing usable could be read: not a capture, an empty file, an unknown format.

    Raised only before the first frame; damage after it becomes an Anomaly.
    """


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured record.

    number: 1-based frame number (Wireshark's frame.number).
    timestamp: seconds since the epoch, UTC.
    link_type: LINKTYPE_* value (tcpdump.org link-layer header types).
    data: the captured bytes (may be shorter than original_length: snaplen).
    original_length: the length of the packet on the wire.
    """

    number: int
    timestamp: float
    link_type: int
    data: bytes
    original_length: int


@dataclass(frozen=True, slots=True)
class RecordLayout:
    """How a classic pcap file lays out its records, for a `Walker`.

    header: unpacks (seconds, fraction, captured length, original length) at an offset.
    size: bytes of the record header (16, or 24 for the modified format).
    scale: seconds per unit of `fraction` (1e-6 or 1e-9).
    max_record: a captured length above this is corruption (the reader reports it).
    """

    header: Struct
    size: int
    scale: float
    max_record: int


# A consumer that may take records straight from the pcap reader's buffer,
# before a Frame is built for them (the pipeline's fast lane, authtrace/lane.py).
# walker(buffer, pos, end, number) takes the complete records that start at
# buffer[pos:end] one after the other while it wants them, and returns (where
# the first record it did not take starts, the frame number of the last record
# it took, that record's timestamp); it stops at a record it does not want,
# an incomplete one or one claiming more than max_record bytes, which the
# reader then handles as usual. Records taken are numbered and counted like
# any other. It must never raise.
Walker = Callable[[bytes, int, int, int], tuple[int, int, float]]
# Given a file's link type and record layout, the walker to use, or None.
WalkerFor = Callable[[int, RecordLayout], Walker | None]


@dataclass(slots=True)
class Tally:
    """What a reader that honours claims reports when reading stops: how many
    records it read (claimed or not) and the first and last timestamps."""

    records: int = 0
    first_timestamp: float | None = None
    last_timestamp: float | None = None
