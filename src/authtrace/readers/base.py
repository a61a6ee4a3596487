"""What every capture reader yields: frames, and the errors that stop reading.

Invariant: frame numbers are 1-based and count every record read from the
file(s), as Wireshark numbers them, so any evidence can be found there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from struct import Struct

from authtrace.fastinit import constructor


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


# One Frame per record: the readers build them with this (authtrace/fastinit.py).
make_frame = constructor(Frame)


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """How the readers turn a file's records into frames, as the user asked.

    all_appearances: keep every appearance pktmon logged of one packet (once per
        component it passed through: NIC, vSwitch, filter drivers) instead of
        the first one only (`--all-appearances`).
    """

    all_appearances: bool = False


# What a reader does when nobody asked otherwise.
DEFAULT_READ = ReadOptions()


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


@dataclass(frozen=True, slots=True)
class BlockLayout:
    """How one pcapng section lays out its packet blocks, for a `Walker`.

    A second shape beside `RecordLayout` because pcapng is not a run of
    same-shaped records: blocks of several types follow each other, each packet
    block names its interface, and each interface has its own link type and
    clock. The reader describes the section's interfaces as they stand (a new
    section or Interface Description Block gives a new layout and walker), so
    the walker needs no state of the reader's.

    order: the section's byte order, "<" or ">".
    interfaces: per interface id, (divisor, offset) when the walker may take
        that interface's Enhanced Packet Blocks: the time stamp in seconds is
        ((high << 32) | low) / divisor + offset (if_tsresol, if_tsoffset),
        computed exactly so; None for an interface of another link type.
    simple: the snaplen of interface 0 (0: none) when the walker may take
        Simple Packet Blocks (interface 0 has the link type), else None.
    max_record: a captured length above this is corruption (the reader reports it).
    max_block: a block length above this is corruption (the reader reports it).
    """

    order: str
    interfaces: tuple[tuple[float, int] | None, ...]
    simple: int | None
    max_record: int
    max_block: int


# A consumer that may take records straight from a reader's buffer (pcap, pcapng),
# before a Frame is built for them (the pipeline's fast lane, authtrace/lane.py).
# walker(buffer, pos, end, number) takes the complete records that start at
# buffer[pos:end] one after the other while it wants them, and returns (where
# the first record it did not take starts, the frame number of the last record
# it took, that record's timestamp); it stops at a record it does not want,
# an incomplete one or one claiming more than max_record bytes, which the
# reader then handles as usual. Records taken are numbered and counted like
# any other. It must never raise. The pcapng reader uses the same contract
# with blocks for records: a walker for a `BlockLayout` takes Enhanced (and
# Simple) Packet Blocks of the interfaces the layout names, and stops at any
# other block, which the reader handles (and numbers) as usual.
Walker = Callable[[bytes, int, int, int], tuple[int, int, float]]
# Given a link type and a layout (a pcap file's, or a pcapng section's
# interfaces of that link type), the walker to use, or None.
WalkerFor = Callable[[int, RecordLayout | BlockLayout], Walker | None]


@dataclass(slots=True)
class Tally:
    """What a reader that honours claims reports when reading stops: how many
    records it read (claimed or not) and the first and last timestamps."""

    records: int = 0
    first_timestamp: float | None = None
    last_timestamp: float | None = None

    def settle(self, records: int, first: float | None, last: float | None) -> None:
        """Record what a reader read when it stopped (no timestamps without records)."""
        self.records = records
        self.first_timestamp, self.last_timestamp = (first, last) if records else (None, None)
