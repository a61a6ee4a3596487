"""The value every decoder returns instead of raising on hostile input."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Malformed:
    """A token or value that could not be decoded.

    reason: one line saying what was wrong; raw: the bytes as received;
    truncated: True when the data simply ended early (capture cut, snaplen),
    False when it was present but invalid.
    """

    reason: str
    raw: bytes = b""
    truncated: bool = False
