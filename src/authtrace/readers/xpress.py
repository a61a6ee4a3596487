"""Plain LZ77 decompression of the Xpress format ([MS-XCA] section 2.4), which
ETW uses for the buffers of a trace taken in compressed mode (BufferFlag 0x40).

Owns: `decompress`. Invariant: the output never grows past the limit the
caller gives, every read is bounds-checked, and damaged input raises
`XpressError` only.
"""

from __future__ import annotations

import struct

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


class XpressError(ValueError):
    """Compressed data that cannot be right (cut short, or a match before the start)."""


def decompress(data: bytes, limit: int) -> bytes:
    """The bytes `data` holds, at most `limit` of them ([MS-XCA] 2.4.4)."""
    out = bytearray()
    size = len(data)
    position = 0
    flags = 0
    flag_count = 0
    half_byte = -1  # where the spare high nibble of a length byte waits, if any
    while True:
        if flag_count == 0:
            if position + 4 > size:
                # The last flags word may be left out when the data end here.
                if position >= size:
                    break
                raise XpressError("cut inside a flags word")
            (flags,) = _U32.unpack_from(data, position)
            position += 4
            flag_count = 32
        flag_count -= 1
        if not flags & (1 << flag_count):
            if position >= size:
                break
            out.append(data[position])
            position += 1
        else:
            if position >= size:
                break
            if position + 2 > size:
                raise XpressError("cut inside a match")
            (match,) = _U16.unpack_from(data, position)
            position += 2
            length = match & 7
            distance = (match >> 3) + 1
            if length == 7:
                if half_byte < 0:
                    if position >= size:
                        raise XpressError("cut inside a match length")
                    length = data[position] & 15
                    half_byte = position
                    position += 1
                else:
                    length = data[half_byte] >> 4
                    half_byte = -1
                if length == 15:
                    if position >= size:
                        raise XpressError("cut inside a match length")
                    length = data[position]
                    position += 1
                    if length == 255:
                        if position + 2 > size:
                            raise XpressError("cut inside a match length")
                        (length,) = _U16.unpack_from(data, position)
                        position += 2
                        if length == 0:
                            if position + 4 > size:
                                raise XpressError("cut inside a match length")
                            (length,) = _U32.unpack_from(data, position)
                            position += 4
                        if length < 15 + 7:
                            raise XpressError("a match length below its encoding's minimum")
                        length -= 15 + 7
                    length += 15
                length += 7
            length += 3
            if distance > len(out):
                raise XpressError("a match reaches before the start of the data")
            if len(out) + length > limit:
                raise XpressError(f"decompresses to more than {limit} bytes")
            start = len(out) - distance
            if distance >= length:
                out += out[start : start + length]
            else:
                for index in range(length):  # an overlapping match repeats itself
                    out.append(out[start + index])
        if len(out) > limit:
            raise XpressError(f"decompresses to more than {limit} bytes")
    return bytes(out)
