"""What every capture reader yields: frames, and the errors that stop reading.

Invariant: frame numbers are 1-based and count every record read from the
file(s), as Wireshark numbers them, so any evidence can be found there.
"""

from __future__ import annotations

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
