"""A bounds-checked reader over bytes, shared by every binary decoder.

Invariant: every read either returns exactly the bytes asked for or raises
`BufferReadError`; nothing reads past the end and nothing allocates more than
the buffer already holds.
"""

from __future__ import annotations

import struct

_U16_LE = struct.Struct("<H")
_U32_LE = struct.Struct("<I")
_U64_LE = struct.Struct("<Q")
_U16_BE = struct.Struct(">H")
_U32_BE = struct.Struct(">I")


class BufferReadError(ValueError):
    """A read ran past the end of the data (truncated or malformed input)."""


class Buffer:
    """Sequential little/big-endian reads over an immutable byte string."""

    __slots__ = ("data", "position")

    def __init__(self, data: bytes, position: int = 0) -> None:
        self.data = data
        self.position = position

    @property
    def remaining(self) -> int:
        return len(self.data) - self.position

    def eof(self) -> bool:
        return self.position >= len(self.data)

    def seek(self, position: int) -> None:
        if not 0 <= position <= len(self.data):
            raise BufferReadError(f"seek to {position} outside 0..{len(self.data)}")
        self.position = position

    def pull_bytes(self, length: int) -> bytes:
        if length < 0 or self.position + length > len(self.data):
            raise BufferReadError(
                f"need {length} bytes at offset {self.position}, {self.remaining} left"
            )
        start = self.position
        self.position += length
        return self.data[start : self.position]

    def _pull(self, fmt: struct.Struct) -> int:
        if self.position + fmt.size > len(self.data):
            raise BufferReadError(
                f"need {fmt.size} bytes at offset {self.position}, {self.remaining} left"
            )
        (value,) = fmt.unpack_from(self.data, self.position)
        self.position += fmt.size
        return int(value)

    def pull_u8(self) -> int:
        if self.position >= len(self.data):
            raise BufferReadError(f"need 1 byte at offset {self.position}, none left")
        value = self.data[self.position]
        self.position += 1
        return value

    def pull_u16_le(self) -> int:
        return self._pull(_U16_LE)

    def pull_u32_le(self) -> int:
        return self._pull(_U32_LE)

    def pull_u64_le(self) -> int:
        return self._pull(_U64_LE)

    def pull_u16_be(self) -> int:
        return self._pull(_U16_BE)

    def pull_u32_be(self) -> int:
        return self._pull(_U32_BE)

    def slice_at(self, offset: int, length: int) -> bytes:
        """Bytes at an absolute offset (for offset/length 'security buffers')."""
        if offset < 0 or length < 0 or offset + length > len(self.data):
            raise BufferReadError(
                f"field at offset {offset} length {length} outside {len(self.data)} bytes"
            )
        return self.data[offset : offset + length]
