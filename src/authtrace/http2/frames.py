"""The HTTP/2 frame layer of one direction (RFC 9113 sections 4 and 6), sans-IO:
bytes in (with the capture frames that carried them), `Frame` values out.

Owns: the 9-octet frame header (section 4.1), the payload layouts of every
frame type (section 6: PADDED and PRIORITY flags, SETTINGS, GOAWAY, RST_STREAM,
WINDOW_UPDATE, PING), the bound on what one frame may make us hold, and finding
frame boundaries again after a gap.

Invariants:
- bytes are never invented: a gap inside a frame's payload leaves the frame
  marked `cut`; a gap that may hide a frame header loses the framing, and
  frames are searched for again (two well-formed headers in a row) before any
  is read;
- memory: DATA payloads are counted, never kept; any other payload is kept up
  to MAX_KEPT_PAYLOAD (a larger one is skipped and marked `too_large`); while
  searching after a gap at most SEARCH_WINDOW bytes are held;
- never raises on input: a payload that breaks its type's layout becomes a
  frame with `problem` set.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

# RFC 9113 section 3.4: the client connection preface.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADER = 9
# Section 4.2: a frame's length field is 24 bits (SETTINGS_MAX_FRAME_SIZE at most 2^24-1).
MAX_LENGTH = 2**24 - 1
# Header blocks and control frames larger than this are not kept (HPACK state is
# lost with them); real ones are a few KiB (large Kerberos tokens reach 64 KiB).
MAX_KEPT_PAYLOAD = 256 * 1024
# What a search for frame boundaries after a gap may hold.
SEARCH_WINDOW = 64 * 1024
# Where the first frame boundary of a stream begun before the capture is looked
# for (looks_like_frames): within the first frame's worth of octets.
SEARCH_PREFIX = 16 * 1024
# A frame header is taken as plausible while searching only up to this length.
SEARCH_MAX_LENGTH = 1 << 20

END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

_U32 = struct.Struct(">I")
_SETTING = struct.Struct(">HI")


class FrameType(enum.IntEnum):
    """RFC 9113 section 6 (section 5.5: unknown types are ignored)."""

    DATA = 0x0
    HEADERS = 0x1
    PRIORITY = 0x2
    RST_STREAM = 0x3
    SETTINGS = 0x4
    PUSH_PROMISE = 0x5
    PING = 0x6
    GOAWAY = 0x7
    WINDOW_UPDATE = 0x8
    CONTINUATION = 0x9


# The flags each type defines (section 6); others are ignored on receipt.
_DEFINED_FLAGS = {
    FrameType.DATA: END_STREAM | PADDED,
    FrameType.HEADERS: END_STREAM | END_HEADERS | PADDED | PRIORITY_FLAG,
    FrameType.PRIORITY: 0,
    FrameType.RST_STREAM: 0,
    FrameType.SETTINGS: ACK,
    FrameType.PUSH_PROMISE: END_HEADERS | PADDED,
    FrameType.PING: ACK,
    FrameType.GOAWAY: 0,
    FrameType.WINDOW_UPDATE: 0,
    FrameType.CONTINUATION: END_HEADERS,
}
# Types that belong to a stream (stream id > 0) and to the connection (id 0).
_ON_STREAM = frozenset(
    {
        FrameType.DATA,
        FrameType.HEADERS,
        FrameType.PRIORITY,
        FrameType.RST_STREAM,
        FrameType.PUSH_PROMISE,
        FrameType.CONTINUATION,
    }
)
_ON_CONNECTION = frozenset({FrameType.SETTINGS, FrameType.PING, FrameType.GOAWAY})
# Fixed payload lengths (sections 6.3, 6.4, 6.7, 6.9).
_FIXED_LENGTH = {
    FrameType.PRIORITY: 5,
    FrameType.RST_STREAM: 4,
    FrameType.PING: 8,
    FrameType.WINDOW_UPDATE: 4,
}


def type_name(frame_type: int) -> str:
    try:
        return FrameType(frame_type).name
    except ValueError:
        return f"UNKNOWN (0x{frame_type:02x})"


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame as read.

    type: the type octet (a FrameType when known); flags, stream_id, length: as
    in the header (section 4.1); first_frame / frame: the capture frames of its
    first and last octet (Wireshark shows the frame in `frame`); timestamp: of
    `frame`. fragment: the header block fragment of HEADERS, PUSH_PROMISE and
    CONTINUATION (padding and priority fields removed); data_size: the DATA
    octets without padding; promised_stream: of a PUSH_PROMISE; error_code: of
    RST_STREAM and GOAWAY; last_stream: of GOAWAY; settings: (identifier, value)
    pairs of SETTINGS; problem: why the payload breaks its type's layout ("" when
    it does not); cut: part of the payload was lost in a gap; too_large: the
    payload was larger than MAX_KEPT_PAYLOAD and was skipped."""

    type: int
    flags: int
    stream_id: int
    length: int
    first_frame: int
    frame: int
    timestamp: float
    fragment: bytes = b""
    data_size: int = 0
    promised_stream: int = 0
    error_code: int = 0
    last_stream: int = 0
    settings: tuple[tuple[int, int], ...] = ()
    problem: str = ""
    cut: bool = False
    too_large: bool = False

    @property
    def type_name(self) -> str:
        return type_name(self.type)

    @property
    def end_stream(self) -> bool:
        return self.type in (FrameType.DATA, FrameType.HEADERS) and bool(self.flags & END_STREAM)

    @property
    def end_headers(self) -> bool:
        return self.type in (
            FrameType.HEADERS,
            FrameType.PUSH_PROMISE,
            FrameType.CONTINUATION,
        ) and bool(self.flags & END_HEADERS)


@dataclass(frozen=True, slots=True)
class FramingLost:
    """A gap (or damage) made frame boundaries unknown from `frame` on; frames
    are searched for again. The caller's HPACK state is lost with it."""

    frame: int
    reason: str


@dataclass(frozen=True, slots=True)
class FramingFound:
    """After FramingLost: frames are read again from `frame`, `skipped` octets later."""

    frame: int
    skipped: int


FrameEvent = Frame | FramingLost | FramingFound


def plausible_header(header: bytes | bytearray | memoryview) -> bool:
    """A 9-octet frame header that a conforming sender could have sent: a known
    type with only its own flags, the reserved bit clear, the right kind of
    stream id and, where the type fixes it, the right length (RFC 9113 section
    6). For finding frames after a gap; unknown types are never taken."""
    length = int.from_bytes(header[0:3], "big")
    kind = header[3]
    flags = header[4]
    raw_stream = _U32.unpack_from(header, 5)[0]
    if raw_stream & 0x80000000 or length > SEARCH_MAX_LENGTH or kind > FrameType.CONTINUATION:
        return False
    frame_type = FrameType(kind)
    if flags & ~_DEFINED_FLAGS[frame_type]:
        return False
    if frame_type in _ON_STREAM and raw_stream == 0:
        return False
    if frame_type in _ON_CONNECTION and raw_stream != 0:
        return False
    fixed = _FIXED_LENGTH.get(frame_type)
    if fixed is not None and length != fixed:
        return False
    if frame_type is FrameType.SETTINGS and (length % 6 or (flags & ACK and length)):
        return False
    return not (frame_type is FrameType.GOAWAY and length < 8)


def looks_like_frames(data: bytes) -> bool:
    """The first octets of a direction whose start the capture missed hold
    HTTP/2 frames: from some offset in the first SEARCH_PREFIX octets (the
    rest of a frame begun before the capture), plausible frame headers follow
    one another, each where the one before says, to the very end of `data`,
    at least two of them (a sender's segment ends where a frame ends; random
    or other binary data, SMB or DCE-RPC, does not chain so). Cost: at most
    SEARCH_PREFIX starts, each a walk that stops at the first implausible
    header; once per connection."""
    end = len(data)
    if end > SEARCH_WINDOW:
        return False  # a first segment this large is not what we look for
    for start in range(min(SEARCH_PREFIX, max(end - 2 * HEADER + 1, 0))):
        position, frames = start, 0
        while position + HEADER <= end and plausible_header(data[position : position + HEADER]):
            position += HEADER + int.from_bytes(data[position : position + 3], "big")
            frames += 1
        if position == end and frames >= 2:
            return True
    return False


class FrameReader:
    """Reads the frames of one direction.

    `feed(data, first_frame, frame, timestamp)` and `gap(length, frame)` return
    the events they complete; `close()` returns the frame the stream ended
    inside, if any (marked cut). searching: begin by looking for a frame
    boundary (the capture began inside the connection)."""

    def __init__(self, searching: bool = False) -> None:
        self._buffer = bytearray()
        self._buffer_first = 0  # capture frame of the buffer's first octet
        # The frame being read: its header fields, once the header is complete.
        self._header: tuple[int, int, int, int] | None = None  # length, type, flags, stream
        self._header_first = 0
        self._remaining = 0  # payload octets still to come
        self._keep = True  # payload kept (not DATA, not too large)
        self._payload = bytearray()
        self._data_pad: int | None = None  # DATA: the pad length octet, once read
        self._data_seen = 0  # DATA: payload octets seen (for the pad length)
        self._cut = False
        self._searching = searching
        self._skipped = 0
        self.frames_read = 0

    @property
    def searching(self) -> bool:
        return self._searching

    def count_only(self, buf: bytes, start: int, size: int, frame: int, timestamp: float) -> bool:
        """The fast lane's question (tcp/events.py LaneSink): `size` octets that
        `feed` would only count — inside a DATA payload that they do not finish,
        past its pad length octet — are counted as `feed` counts them."""
        header = self._header
        if (
            header is None
            or self._searching
            or header[1] != FrameType.DATA
            or size >= self._remaining
            or (self._data_seen == 0 and header[2] & PADDED)
        ):
            return False
        self._remaining -= size
        self._data_seen += size
        return True

    def feed(self, data: bytes, first_frame: int, frame: int, timestamp: float) -> list[FrameEvent]:
        out: list[FrameEvent] = []
        view = memoryview(data)
        position = 0
        while position < len(view):
            if self._searching:
                self._buffer += view[position:]
                if not self._buffer_first:
                    self._buffer_first = first_frame
                position = len(view)
                self._search(frame, out)
                if self._searching:
                    break
                # Found: what is buffered is read as frames from here on.
                buffered = bytes(self._buffer)
                self._buffer.clear()
                out += self.feed(buffered, self._buffer_first or first_frame, frame, timestamp)
                self._buffer_first = 0
                break
            if self._header is None:
                need = HEADER - len(self._buffer)
                if not self._buffer:
                    self._header_first = first_frame
                chunk = view[position : position + need]
                self._buffer += chunk
                position += len(chunk)
                if len(self._buffer) < HEADER:
                    break
                self._start_frame()
                if self._remaining == 0:
                    out.append(self._finish(frame, timestamp))
                continue
            chunk = view[position : position + self._remaining]
            position += len(chunk)
            self._take_payload(chunk)
            if self._remaining == 0:
                out.append(self._finish(frame, timestamp))
        return out

    def gap(self, length: int, frame: int, timestamp: float) -> list[FrameEvent]:
        """`length` octets were lost. Inside the payload being read, the frame is
        cut and framing holds; anything else loses the framing (section 4.1: a
        frame's length is in its header, so a lost header hides the next one)."""
        out: list[FrameEvent] = []
        if self._searching:
            self._buffer.clear()
            self._buffer_first = 0
            return out
        if self._header is not None and length <= self._remaining:
            self._cut = True
            self._skip_payload(length)
            if self._remaining == 0:
                out.append(self._finish(frame, timestamp))
            return out
        if self._header is not None:
            self._cut = True
            out.append(self._finish(frame, timestamp))
        self._lose(frame, "a gap in the stream hid frame boundaries", out)
        return out

    def lose_framing(self, frame: int, reason: str) -> list[FrameEvent]:
        """The caller found the stream is not frames here (damage): search again."""
        out: list[FrameEvent] = []
        if not self._searching:
            self._lose(frame, reason, out)
        return out

    def close(self, frame: int, timestamp: float) -> list[FrameEvent]:
        """The direction ended: a frame left half read is handed on, cut."""
        if self._searching or self._header is None:
            return []
        self._cut = True
        return [self._finish(frame, timestamp)]

    # -- reading ---------------------------------------------------------------------

    def _start_frame(self) -> None:
        header = bytes(self._buffer)
        length = int.from_bytes(header[0:3], "big")
        # Section 4.1: the reserved bit is ignored on receipt.
        stream = _U32.unpack_from(header, 5)[0] & 0x7FFFFFFF
        self._header = (length, header[3], header[4], stream)
        self._buffer.clear()
        self._remaining = length
        self._keep = header[3] != FrameType.DATA and length <= MAX_KEPT_PAYLOAD
        self._payload = bytearray()
        self._data_pad = None
        self._data_seen = 0
        self._cut = False

    def _take_payload(self, chunk: memoryview) -> None:
        self._remaining -= len(chunk)
        assert self._header is not None
        if self._keep:
            self._payload += chunk
        elif self._header[1] == FrameType.DATA and chunk:
            if self._data_seen == 0 and self._header[2] & PADDED:
                self._data_pad = chunk[0]
            self._data_seen += len(chunk)

    def _skip_payload(self, length: int) -> None:
        assert self._header is not None
        self._remaining -= length
        if self._header[1] == FrameType.DATA:
            self._data_seen += length
        else:
            self._keep = False

    def _finish(self, frame: int, timestamp: float) -> Frame:
        assert self._header is not None
        length, kind, flags, stream = self._header
        kept = self._keep and not self._cut
        too_large = kind != FrameType.DATA and length > MAX_KEPT_PAYLOAD
        made = _parse(
            kind,
            flags,
            stream,
            length,
            self._header_first,
            frame,
            timestamp,
            bytes(self._payload) if kept else None,
            self._data_pad,
            self._cut,
            too_large,
        )
        self._header = None
        self._payload = bytearray()
        self.frames_read += 1
        return made

    # -- finding frames after a gap -----------------------------------------------------

    def _lose(self, frame: int, reason: str, out: list[FrameEvent]) -> None:
        self._header = None
        self._buffer.clear()
        self._buffer_first = 0
        self._payload = bytearray()
        self._searching = True
        self._skipped = 0
        out.append(FramingLost(frame, reason))

    def _search(self, frame: int, out: list[FrameEvent]) -> None:
        """Two plausible headers in a row (the second where the first frame's
        length says) mark a frame boundary; a header that ends the buffered
        octets exactly is taken too (segments often end at a frame's end)."""
        buffer = self._buffer
        start = 0
        while start + HEADER <= len(buffer):
            if plausible_header(buffer[start : start + HEADER]):
                length = int.from_bytes(buffer[start : start + 3], "big")
                following = start + HEADER + length
                if following + HEADER <= len(buffer):
                    if plausible_header(buffer[following : following + HEADER]):
                        break
                elif following == len(buffer) and start == 0:
                    break
                else:
                    # Not decidable until more arrives: keep from here.
                    if following + HEADER > SEARCH_WINDOW:
                        start += 1
                        continue
                    self._skipped += start
                    del buffer[:start]
                    return
            start += 1
        else:
            keep = max(len(buffer) - (HEADER - 1), 0)
            self._skipped += keep
            del buffer[:keep]
            if len(buffer) > SEARCH_WINDOW:
                self._skipped += len(buffer) - SEARCH_WINDOW
                del buffer[: len(buffer) - SEARCH_WINDOW]
            return
        self._skipped += start
        del buffer[:start]
        self._searching = False
        out.append(FramingFound(frame, self._skipped))


def _parse(
    kind: int,
    flags: int,
    stream: int,
    length: int,
    first_frame: int,
    frame: int,
    timestamp: float,
    payload: bytes | None,
    data_pad: int | None,
    cut: bool,
    too_large: bool,
) -> Frame:
    """The frame's fields from its payload (None: not kept), per section 6."""
    base = dict(
        type=kind,
        flags=flags,
        stream_id=stream,
        length=length,
        first_frame=first_frame,
        frame=frame,
        timestamp=timestamp,
        cut=cut,
        too_large=too_large,
    )
    try:
        frame_type = FrameType(kind)
    except ValueError:
        return Frame(**base)  # type: ignore[arg-type]  # section 5.5: ignored
    problem = ""
    if frame_type in _ON_STREAM and stream == 0:
        problem = f"{frame_type.name} on stream 0"
    elif frame_type in _ON_CONNECTION and stream != 0:
        problem = f"{frame_type.name} on stream {stream}"
    fixed = _FIXED_LENGTH.get(frame_type)
    if not problem and fixed is not None and length != fixed:
        problem = f"{frame_type.name} of {length} octets (section 6 fixes {fixed})"
    if frame_type is FrameType.DATA:
        size = length
        if flags & PADDED:
            if length == 0 or (data_pad is not None and data_pad >= length):
                problem = problem or "padding longer than the DATA payload"
                size = 0
            else:
                size = length - 1 - (data_pad or 0)
        return Frame(**base, data_size=size, problem=problem)  # type: ignore[arg-type]
    if payload is None or problem:
        return Frame(**base, problem=problem)  # type: ignore[arg-type]
    try:
        fields = _payload_fields(frame_type, flags, payload)
    except _LayoutError as error:
        return Frame(**base, problem=str(error))  # type: ignore[arg-type]
    return Frame(**base, **fields)  # type: ignore[arg-type]


class _LayoutError(Exception):
    """A payload that breaks its frame type's layout (section 6)."""


def _unpad(flags: int, payload: bytes, fixed: int) -> bytes:
    """Sections 6.2 and 6.6: with PADDED, the first octet is the pad length; the
    padding follows the fragment. `fixed`: octets of fields before the fragment."""
    start = 0
    end = len(payload)
    if flags & PADDED:
        if not payload:
            raise _LayoutError("PADDED frame without a pad length")
        pad = payload[0]
        start = 1
        end -= pad
    start += fixed
    if end < start:
        raise _LayoutError("padding longer than the payload")
    return payload[start:end]


def _payload_fields(frame_type: FrameType, flags: int, payload: bytes) -> dict[str, object]:
    if frame_type is FrameType.HEADERS:
        # Section 6.2: [Pad Length] [E + Stream Dependency, Weight] fragment [Padding].
        fixed = 5 if flags & PRIORITY_FLAG else 0
        return {"fragment": _unpad(flags, payload, fixed)}
    if frame_type is FrameType.CONTINUATION:
        return {"fragment": payload}
    if frame_type is FrameType.PUSH_PROMISE:
        # Section 6.6: [Pad Length] R + Promised Stream ID, fragment, [Padding].
        body = _unpad(flags, payload, 0)
        if len(body) < 4:
            raise _LayoutError("PUSH_PROMISE without a promised stream id")
        promised = _U32.unpack_from(body, 0)[0] & 0x7FFFFFFF
        return {"fragment": body[4:], "promised_stream": promised}
    if frame_type is FrameType.RST_STREAM:
        return {"error_code": _U32.unpack_from(payload, 0)[0]}
    if frame_type is FrameType.GOAWAY:
        # Section 6.8: R + Last-Stream-ID, Error Code, Additional Debug Data.
        if len(payload) < 8:
            raise _LayoutError(f"GOAWAY of {len(payload)} octets (at least 8)")
        last = _U32.unpack_from(payload, 0)[0] & 0x7FFFFFFF
        return {"last_stream": last, "error_code": _U32.unpack_from(payload, 4)[0]}
    if frame_type is FrameType.SETTINGS:
        # Section 6.5: a multiple of 6 octets; an ACK carries none.
        if len(payload) % 6:
            raise _LayoutError(f"SETTINGS of {len(payload)} octets (a multiple of 6)")
        if flags & ACK and payload:
            raise _LayoutError("SETTINGS ACK with a payload")
        settings = tuple(_SETTING.unpack_from(payload, i) for i in range(0, len(payload), 6))
        return {"settings": settings}
    return {}  # PRIORITY, PING, WINDOW_UPDATE: nothing the analysis needs
