"""A bounds-checked reader over bytes, shared by every binary decoder.

Invariant: every read either returns exactly the bytes asked for or raises
`BufferReadError`; nothing reads past the end and nothing allocates more than
the buffer already holds.
"""

from __future__ import annotations

import re
import struct
from typing import Any

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


# One field of a struct format: an optional count and a type code.
_FORMAT_ITEM = re.compile(r"(\d*)([xcbB?hHiIlLqQnNefdsp])")


class Fields:
    """A fixed run of fields read with one struct unpack instead of one pull
    each (a pull costs about half a microsecond; NTLM's fixed parts are a
    dozen fields).

    fmt: a struct format with an explicit byte order and no padding, e.g.
    ``"<HHI8s"``. When the data is too short, `unpack_from` raises the very
    `BufferReadError` that pulling the fields one by one would have raised
    (same field, same offset, same wording), so a decoder reports truncation
    identically whichever way it reads.
    """

    __slots__ = ("_struct", "_pulls", "size")

    def __init__(self, fmt: str) -> None:
        self._struct = struct.Struct(fmt)
        self.size = self._struct.size
        order = fmt[0]
        # (size, is a single octet) per field: "8s" is one 8-byte field,
        # "2H" two u16 fields; single octets are pulled with pull_u8.
        pulls: list[tuple[int, bool]] = []
        for count, code in _FORMAT_ITEM.findall(fmt[1:]):
            if code == "s":
                pulls.append((int(count), False))
            else:
                width = struct.calcsize(order + code)
                pulls.extend([(width, code in "bB")] * int(count or 1))
        if sum(size for size, _ in pulls) != self.size:
            raise ValueError(f"struct format {fmt!r} is not a plain run of fields")
        self._pulls = tuple(pulls)

    def unpack_from(self, data: bytes, offset: int) -> tuple[Any, ...]:
        if 0 <= offset and offset + self.size <= len(data):
            return self._struct.unpack_from(data, offset)
        # Too short: replay the reads field by field so the error is the one
        # a Buffer gives for the first field that does not fit.
        buffer = Buffer(data, offset)
        for size, single in self._pulls:
            if single:
                buffer.pull_u8()
            else:
                buffer.pull_bytes(size)
        raise BufferReadError(f"need {self.size} bytes at offset {offset}, {len(data)} in all")
