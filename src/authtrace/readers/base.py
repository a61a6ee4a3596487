"""What every capture reader yields: frames, and the errors that stop reading.

Invariant: frame numbers are 1-based and count every record read from the
file(s), as Wireshark numbers them, so any evidence can be found there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


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


# A consumer that may take a record before a Frame is built for it (the
# pipeline's fast lane, authtrace/lane.py): called with the reader's buffer, the
# start and end of the record's captured bytes in it, the record's frame number
# and timestamp; returns True when it took the record (no Frame is yielded for
# it, but it is numbered and counted like any other).
Claim = Callable[[bytes, int, int, int, float], bool]
# Given a file's (or interface's) link type, the claim to use for its records, or None.
ClaimFor = Callable[[int], Claim | None]


@dataclass(slots=True)
class Tally:
    """What a reader that honours claims reports when reading stops: how many
    records it read (claimed or not) and the first and last timestamps."""

    records: int = 0
    first_timestamp: float | None = None
    last_timestamp: float | None = None
