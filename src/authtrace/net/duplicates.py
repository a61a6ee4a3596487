"""Frames captured twice: a SPAN session mirroring two ports that both carry the
traffic, or two copies of one capture merged by time.

This module owns recognising such copies among the frames it is offered (the
pipeline offers those that open, close or reset a TCP connection and everything
that is not TCP: the fast lane may take the other TCP segments, and reassembly
takes their copies as retransmissions anyway). A copy is a frame whose bytes are
exactly those of a frame captured at most `WINDOW` seconds before it (the rule
of Wireshark's `editcap -w`, which the tests compare with). Real
retransmissions are not copies: they come at least one retransmission timeout
(200 ms and more) later and, over IPv4, carry a new IP identification. Leaving
a copy out never loses data: its bytes are those of the frame it copies.

Invariant: memory is bounded: at most `MAX_REMEMBERED` recent frames are
remembered (by a hash of their bytes), and only those of the last `WINDOW`
seconds. Cost: O(1) per frame (one hash of its bytes, one dict operation).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from authtrace.anomalies import Anomaly, AnomalyKind
from authtrace.words import agreeing, counted

# SPAN copies arrive microseconds apart; merged copies carry the same time stamp.
WINDOW = 0.05
# Time stamps are floats: 50 ms between two microsecond stamps may come out a hair above.
_SLACK = 1e-6
MAX_REMEMBERED = 65_536


@dataclass(frozen=True, slots=True)
class DuplicateSummary:
    """copies: frames left out as copies; first_copy / first_original: the
    first copy's frame number and the frame it copied."""

    copies: int
    first_copy: int | None
    first_original: int | None

    def anomaly(self) -> Anomaly | None:
        if not self.copies:
            return None
        return Anomaly(
            AnomalyKind.DUPLICATE_FRAMES,
            f"{counted(self.copies, 'frame')} opening, closing or resetting a connection or "
            f"carrying UDP {agreeing(self.copies, 'is an exact copy', 'are exact copies')} of a "
            f"frame captured just before {agreeing(self.copies, 'it')} (the first, frame "
            f"{self.first_copy}, copies frame {self.first_original}): the capture holds the "
            "traffic twice (a SPAN session of two ports that both carry it, or two merged copies "
            "of one capture); copies are counted once (those carrying TCP data are taken as "
            "retransmissions)",
            frame=self.first_copy,
        )


class DuplicateFrames:
    """Recognises copies among the frames offered to `is_copy`, in capture order."""

    __slots__ = ("_recent", "_order", "_copies", "_first_copy", "_first_original")

    def __init__(self) -> None:
        # hash -> (bytes, frame number, timestamp)
        self._recent: dict[int, tuple[bytes, int, float]] = {}
        # (timestamp, hash, frame number), oldest first
        self._order: deque[tuple[float, int, int]] = deque()
        self._copies = 0
        self._first_copy: int | None = None
        self._first_original: int | None = None

    def is_copy(self, data: bytes, timestamp: float, number: int) -> bool:
        order = self._order
        recent = self._recent
        while order and (timestamp - order[0][0] > WINDOW + _SLACK or len(order) >= MAX_REMEMBERED):
            _when, old, old_number = order.popleft()
            seen = recent.get(old)
            if seen is not None and seen[1] == old_number:
                del recent[old]
        key = hash(data)
        seen = recent.get(key)
        if seen is not None and 0.0 <= timestamp - seen[2] <= WINDOW + _SLACK and seen[0] == data:
            self._copies += 1
            if self._first_copy is None:
                self._first_copy, self._first_original = number, seen[1]
            return True
        recent[key] = (data, number, timestamp)
        order.append((timestamp, key, number))
        return False

    def summary(self) -> DuplicateSummary:
        return DuplicateSummary(self._copies, self._first_copy, self._first_original)
