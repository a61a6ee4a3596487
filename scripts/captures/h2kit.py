"""HTTP/2 bytes for hand-built captures and tests: frames (RFC 9113 section 4.1)
and header blocks encoded with the `hpack` library's encoder (RFC 7541), one
encoder per direction as a real endpoint keeps it.

Owns nothing of authtrace: it writes what a client or server would send.
"""

from __future__ import annotations

import struct

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE = 0, 1, 2, 3, 4, 5
PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
HTTP_1_1_REQUIRED = 0xD


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    """One frame: 24-bit length, type, flags, reserved bit and stream id, payload."""
    return (
        len(payload).to_bytes(3, "big") + bytes([kind, flags]) + struct.pack(">I", stream) + payload
    )


def settings(*pairs: tuple[int, int], ack: bool = False) -> bytes:
    return frame(SETTINGS, ACK if ack else 0, 0, b"".join(struct.pack(">HI", *p) for p in pairs))


def rst_stream(stream: int, code: int) -> bytes:
    return frame(RST_STREAM, 0, stream, struct.pack(">I", code))


def goaway(last_stream: int, code: int = 0, debug: bytes = b"") -> bytes:
    return frame(GOAWAY, 0, 0, struct.pack(">II", last_stream, code) + debug)


def data(stream: int, body: bytes, end_stream: bool = True, pad: int = 0) -> bytes:
    flags = END_STREAM if end_stream else 0
    if pad:
        return frame(DATA, flags | PADDED, stream, bytes([pad]) + body + b"\0" * pad)
    return frame(DATA, flags, stream, body)


class Endpoint:
    """One side's HPACK encoder and the frames it sends."""

    def __init__(self) -> None:
        self.encoder = hpack.Encoder()

    def block(self, fields: list[tuple[str, str]]) -> bytes:
        return self.encoder.encode(fields)

    def headers(
        self,
        stream: int,
        fields: list[tuple[str, str]],
        end_stream: bool = False,
        pad: int = 0,
        priority: bool = False,
        split: int = 0,
    ) -> bytes:
        """A HEADERS frame (and CONTINUATION frames of `split` octets each, if given)."""
        block = self.block(fields)
        flags = END_STREAM if end_stream else 0
        first, rest = (block[:split], block[split:]) if split else (block, b"")
        prefix = b""
        if pad:
            flags |= PADDED
            prefix += bytes([pad])
        if priority:
            flags |= PRIORITY_FLAG
            prefix += struct.pack(">IB", 0, 15)
        if not rest:
            flags |= END_HEADERS
        out = frame(HEADERS, flags, stream, prefix + first + b"\0" * pad)
        while rest:
            part, rest = rest[:split], rest[split:]
            out += frame(CONTINUATION, 0 if rest else END_HEADERS, stream, part)
        return out

    def push_promise(self, stream: int, promised: int, fields: list[tuple[str, str]]) -> bytes:
        return frame(
            PUSH_PROMISE, END_HEADERS, stream, struct.pack(">I", promised) + self.block(fields)
        )


def request_fields(
    method: str,
    path: str,
    authority: str,
    extra: list[tuple[str, str]] | None = None,
    scheme: str = "https",
) -> list[tuple[str, str]]:
    return [
        (":method", method),
        (":scheme", scheme),
        (":authority", authority),
        (":path", path),
        *(extra or []),
    ]


def response_fields(
    status: int, extra: list[tuple[str, str]] | None = None
) -> list[tuple[str, str]]:
    return [(":status", str(status)), *(extra or [])]
