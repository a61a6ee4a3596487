"""A sans-IO HTTP/1.x parser for one direction of one connection.

Bytes go in (`feed`, `gap`, `close`), events come out: `RequestHead` when a
request's header block is complete (so the other direction can learn the
method before the response arrives) and `MessageComplete` when a message
ended. Everything that decides how a message is framed lives in this module.

Invariants:
- garbage never raises: what cannot be parsed becomes an `Anomaly` and the
  parser resynchronises at the next plausible message start;
- memory is bounded: a header block is kept up to `MAX_HEAD` bytes (64 KiB),
  bodies are counted, not stored, except a 4xx/5xx response body kept up to
  `MAX_ERROR_BODY` bytes; every partial line is bounded;
- a cut header block still says what it had: the lines past the limit keep
  their names and sizes (`CutHeader`), so "not kept" never reads as "not sent";
- bytes are never invented: a gap inside a message marks it incomplete.
"""

from __future__ import annotations

import enum
import functools
import re
from collections import deque
from dataclasses import dataclass

from authtrace.anomalies import Anomaly, AnomalyKind
from authtrace.http.messages import (
    CutHeader,
    Header,
    HttpRequest,
    HttpResponse,
    make_header,
    make_request,
    make_response,
)
from authtrace.sharing import SharedTable
from authtrace.strict import internal_error

MAX_HEAD = 64 * 1024
MAX_ERROR_BODY = 16 * 1024
MAX_LINE = 8 * 1024
# A header block larger than this is given up on (its end is no longer searched).
MAX_OVERSIZED_HEAD = 16 * 1024 * 1024
# Of a cut header block, this many lines past the cut are listed by name and
# size (a real head has a few dozen); the name is read from this many bytes.
MAX_CUT_LINES = 64
MAX_CUT_NAME = 256
# Lines past the cut looked at, header lines or not.
MAX_CUT_SCAN = 256


# Header lines repeat across the messages of a capture (Host, User-Agent,
# Server, Date within a second...): a line seen before gives the same frozen
# Header object back, so memory holds one copy of each and the line is not
# split again. Bounded: at most _SHARED_LINES lines of at most
# _SHARED_LINE_CHARS characters (longer ones, like tokens, are unique anyway);
# the table starts over when full.
_SHARED_LINES = 4096
_SHARED_LINE_CHARS = 256
_SEEN_HEADERS: dict[str, Header] = {}
# The same for what a run keeps of every message until its report (issue 10):
# start lines ("GET / HTTP/1.1", "HTTP/1.1 401 Unauthorized"), whole header
# tuples (the anonymous request of every connection) and short bodies (the
# same error page): one copy of each, under the same bounds.
_SEEN_STARTS: dict[bool, dict[str, tuple[str, str, str]]] = {True: {}, False: {}}
_SEEN_HEADER_TUPLES: SharedTable[tuple[Header, ...]] = SharedTable(_SHARED_LINES)
_SHARED_BODY_BYTES = 4096
_SEEN_BODIES: SharedTable[bytes] = SharedTable(256)  # at most 1 MiB of bodies


class Role(enum.Enum):
    REQUEST = "request"
    RESPONSE = "response"


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A request's header block is complete (its body may still follow).

    method: the request method as written; frame: the frame that completed it;
    expects_continue: it carries ``Expect: 100-continue`` (RFC 9110 section
    10.1.1), so an interim response may answer it before the final one;
    skipped_after_gap: as in `MessageComplete`.
    """

    method: str
    frame: int
    expects_continue: bool = False
    skipped_after_gap: int | None = None


@dataclass(frozen=True, slots=True)
class MessageComplete:
    """A message ended (or was cut short: then ``message.complete`` is False).

    skipped_after_gap: when the message is the first to start after a gap
    (or after a stream start that was not captured), how many bytes after it
    were skipped before its start line (0: it began right where the gap
    ended); None when no gap came before it.
    """

    message: HttpRequest | HttpResponse
    skipped_after_gap: int | None = None


ParserEvent = RequestHead | MessageComplete


class _State(enum.Enum):
    START = "start"  # before a start line (empty lines are skipped)
    HEAD = "head"  # inside a header block
    OVERSIZED_HEAD = "oversized_head"  # header block past MAX_HEAD: only its end is searched
    BODY_LENGTH = "body_length"
    CHUNK_SIZE = "chunk_size"
    CHUNK_DATA = "chunk_data"
    CHUNK_DATA_END = "chunk_data_end"
    TRAILERS = "trailers"
    UNTIL_CLOSE = "until_close"
    TUNNEL = "tunnel"  # after CONNECT 2xx / 101: opaque bytes
    RESYNC = "resync"  # searching for the next message start
    CLOSED = "closed"


# RFC 9110 section 5.6.2: token characters (methods and field names are tokens).
_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]"
_REQUEST_PREFIX = re.compile(_TOKEN + rb"{1,32}(?: |\Z)")
# Where parsing may start again after a gap or garbage.
_REQUEST_START = re.compile(rb"^" + _TOKEN + rb"{1,32} \S+ HTTP/1\.[0-9]\r?$", re.MULTILINE)
_RESPONSE_START = re.compile(rb"HTTP/1\.[0-9] [0-9]{3}[ \r\n]")
_REQUEST_LINE_TEXT = re.compile(
    r"([!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}) (\S{1,65536}) (HTTP/1\.[0-9])\Z"
)
_STATUS_LINE_TEXT = re.compile(r"(HTTP/1\.[0-9]) ([0-9]{3})(?: (.*))?\Z", re.DOTALL)
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_NAME = re.compile(_TOKEN + rb"+")
_DIGITS = re.compile(r"[0-9]{1,15}")


# RFC 9112 section 7.1: a chunk-size line of one or two hex digits, no extension.
_SMALL_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,2})\r\n")


@functools.lru_cache(maxsize=1024)
def _chunk_run(size_text: bytes) -> re.Pattern[bytes]:
    """A run of whole chunks that all have this size line (chunk-size CRLF
    chunk-data CRLF), matched possessively: the size decides each chunk's
    length, so there is nothing to backtrack into. A stream of tiny chunks,
    which one Python step per chunk made 100 times slower per byte than a
    counted body, is counted by the regex engine instead."""
    size = int(size_text, 16)
    return re.compile(b"(?:" + re.escape(size_text) + b"\r\n[\\s\\S]{%d}\r\n)++" % size)


# What one direction of a connection may cost before its bodies are no longer
# followed: Python steps over chunk lines (one per chunk read line by line, one
# per run of equal small chunks counted in bulk).
MAX_CHUNK_LINES = 1_000_000
_HEX_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")
_FIRST_WORD = re.compile(rb"[ \t]*(" + _TOKEN + rb"{1,32})(?:[ \t]|\Z)")
_HTTP_PREFIX = b"HTTP/1."


def _find_head_end(data: bytes | bytearray, pos: int) -> int:
    """Index just after the empty line ending a header block, or -1.

    RFC 9112 section 2.2: a bare LF is accepted as a line end, so the block
    ends at the first "\n\n" or "\n\r\n".
    """
    crlf = data.find(b"\n\r\n", pos)
    bare = data.find(b"\n\n", pos)
    if bare < 0:
        return crlf + 3 if crlf >= 0 else -1
    if 0 <= crlf < bare:
        return crlf + 3
    return bare + 2


class _CutLines:
    """Names and sizes of the header lines of a block past MAX_HEAD, fed the
    bytes after the last whole line kept, in pieces as they arrive.

    Cost: one find per line for the first MAX_CUT_SCAN lines (headers or
    not), then only a count of bytes: a hostile head of tiny lines costs no
    Python step per line.
    """

    __slots__ = ("lines", "prefix", "size", "last", "seen", "full")

    def __init__(self) -> None:
        self.lines: list[CutHeader] = []
        self.prefix = b""  # the first bytes of the current line
        self.size = 0  # bytes of the current line so far
        self.last = 0  # its last byte (a CR before the LF is not part of it)
        self.seen = 0  # lines ended so far
        self.full = False

    def feed(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while pos < end and not self.full:
            newline = data.find(b"\n", pos)
            stop = end if newline < 0 else newline
            room = MAX_CUT_NAME - len(self.prefix)
            if room > 0:
                self.prefix += data[pos : min(stop, pos + room)]
            self.size += stop - pos
            if stop > pos:
                self.last = data[stop - 1]
            if newline < 0:
                return
            self._end_line()
            pos = newline + 1

    def _end_line(self, whole: bool = True) -> None:
        line, size = self.prefix.rstrip(b"\r"), self.size
        if size and self.last == 0x0D:
            size -= 1
        self.prefix, self.size, self.last = b"", 0, 0
        self.seen += 1
        self.full = self.seen >= MAX_CUT_SCAN
        if not line:
            return
        if line[:1] in (b" ", b"\t"):
            # RFC 9112 section 5.2: a folded line continues the previous field.
            if self.lines:
                last = self.lines[-1]
                self.lines[-1] = CutHeader(last.name, last.size + size, whole, last.first_word)
            return
        name, colon, value = line.partition(b":")
        name = name.rstrip(b" \t")
        if colon and name and _NAME.fullmatch(name):
            word = _FIRST_WORD.match(value)
            first = word.group(1).decode("latin-1") if word else ""
            self.lines.append(CutHeader(name.decode("latin-1"), size, whole, first))
            self.full = self.full or len(self.lines) >= MAX_CUT_LINES

    def finish(self) -> tuple[CutHeader, ...]:
        """What was seen; a line still open (its end never seen) counts too."""
        if self.prefix and not self.full:
            self._end_line(whole=False)
        self.prefix, self.size = b"", 0
        return tuple(self.lines)


# What a tunnel's first bytes may make the parser hold (see `tunnel_data`).
MAX_TUNNEL_KEPT = 16 * 1024


class HttpParser:
    """Parses one direction: requests (Role.REQUEST) or responses (Role.RESPONSE).

    For responses the parser needs the method of each request (HEAD and
    CONNECT change framing): call `push_method` in request order.
    """

    def __init__(self, role: Role, connection: int | None = None, resync_only: bool = False):
        self.role = role
        self.connection = connection
        self.anomalies: list[Anomaly] = []
        self._state = _State.RESYNC if resync_only else _State.START
        self._buf = bytearray()
        self._scanned = 0
        self._methods: deque[str] = deque()
        self._events: list[ParserEvent] = []
        self._frame = 0
        self._first_frame = 0
        self._ts = 0.0
        self._resync_skipped = 0
        self._chunk_lines = 0  # chunk lines read one at a time (MAX_CHUNK_LINES)
        # Set by a gap, until the next message starts: the bytes skipped since.
        self._skipped_after_gap: int | None = None
        self._message_after_gap: int | None = None
        # Bytes to parse again from the current state once the current data is
        # done (set when a resync found a start, or a start turned out bad).
        self._pending: bytes | None = None
        # The first bytes after the connection became a tunnel (a 101's new
        # protocol, RFC 9110 section 7.8), up to MAX_TUNNEL_KEPT, with the frames
        # of the chunk that brought them: what an h2c upgrade hands to HTTP/2.
        self.tunnel_data = bytearray()
        self.tunnel_frames = (0, 0, 0.0)
        self._keep_tunnel = False  # set by a 101 (or enter_tunnel), not by a cost cap
        self._tail = b""
        self._reset_message()

    # -- entry points -------------------------------------------------------------

    def push_method(self, method: str) -> None:
        """The method of the next request on the connection (response side)."""
        if len(self._methods) < 10000:
            self._methods.append(method)

    def search_for_start(self) -> None:
        """The stream may begin inside a message (capture started late): skip to
        the first plausible message start instead of reporting garbage."""
        if self._state is _State.START and not self._in_message:
            self._state = _State.RESYNC
            self.start_unseen()

    def start_unseen(self) -> None:
        """The stream's start was not captured: count it as a gap of unknown
        length before the first byte (see `MessageComplete.skipped_after_gap`)."""
        if not self._in_message:
            self._skipped_after_gap = 0

    def enter_tunnel(self, keep: bool = False) -> None:
        """The connection became a tunnel (CONNECT 2xx, 101): stop parsing
        (`keep`: hold the first bytes after it in `tunnel_data`)."""
        self._finish_current(complete=self._state in (_State.UNTIL_CLOSE,))
        self._state = _State.TUNNEL
        self._keep_tunnel = keep
        self._buf.clear()

    def feed(
        self, data: bytes, first_frame: int, frame: int, timestamp: float
    ) -> list[ParserEvent]:
        self._frame, self._first_frame, self._ts = frame, first_frame, timestamp
        if self._count(len(data)):
            return []
        try:
            self._run(data)
        except Exception as error:  # garbage must never escape the parser
            internal_error(error)
            self._anomaly(AnomalyKind.HTTP_PARSER_ERROR, f"parser reset after {error!r}")
            self._buf.clear()
            self._reset_message()
            self._state = _State.RESYNC
        return self._take()

    def count_only(self, buf: bytes, start: int, size: int, frame: int, timestamp: float) -> bool:
        """The fast lane's question (tcp/events.py LaneSink): `size` bytes that
        `feed` would only count are counted, as `feed` would."""
        if self._count(size):
            self._frame = self._first_frame = frame
            self._ts = timestamp
            return True
        return False

    @property
    def counting(self) -> bool:
        """In the middle of a body of known length that is not kept: what
        `count_only` would take of the next bytes until the body ends."""
        return self._state is _State.BODY_LENGTH and self._body is None

    def _count(self, size: int) -> bool:
        """Fast path, taken by most segments of a capture: the middle of a body of
        known length that these bytes do not finish and that is not kept.
        Counting them is all there is to do (the same as _run's BODY_LENGTH arm)."""
        if self._state is _State.BODY_LENGTH and size < self._remaining and self._body is None:
            self._body_size += size
            self._remaining -= size
            return True
        return False

    def gap_room(self, length: int) -> tuple[int, bool]:
        """Before `gap(length)`: how many of the lost bytes lie after the end of
        the message in progress (so may hold whole other messages), and whether
        they begin at a message boundary (False: where the current message ends
        is not known, e.g. inside a header block or a chunk-size line)."""
        state = self._state
        if state is _State.START:
            return length, True
        if state is _State.BODY_LENGTH or state is _State.CHUNK_DATA:
            if length <= self._remaining:
                return 0, True
            return length - self._remaining, state is _State.BODY_LENGTH
        if state in (_State.UNTIL_CLOSE, _State.TUNNEL, _State.CLOSED):
            return 0, True  # nothing can follow: the close delimits this body
        return length, False

    def gap(self, length: int, frame: int, timestamp: float) -> list[ParserEvent]:
        """`length` bytes of this direction were lost."""
        self._frame, self._ts = frame, timestamp
        state = self._state
        self._skipped_after_gap = 0
        if state is _State.BODY_LENGTH and length <= self._remaining:
            # The message's framing survives a hole inside a counted body.
            self._remaining -= length
            self._lossy = True
            if self._remaining == 0:
                self._finish_current(complete=False)
                self._state = _State.START
        elif state is _State.CHUNK_DATA and length < self._remaining:
            self._remaining -= length
            self._lossy = True
        elif state is _State.UNTIL_CLOSE:
            self._lossy = True
        elif state in (_State.TUNNEL, _State.CLOSED):
            pass
        else:
            if state is _State.HEAD:
                self._salvage_head()
            elif state is not _State.START and state is not _State.RESYNC:
                # The hole ate the end of this message and maybe more (inside
                # an oversized head: the rest of its headers too).
                self._finish_current(complete=False, rest_not_seen=state is _State.OVERSIZED_HEAD)
            self._buf.clear()
            self._state = _State.RESYNC
            self._resync_skipped = 0
        return self._take()

    def close(self, frame: int, timestamp: float) -> list[ParserEvent]:
        """No more bytes will come in this direction (FIN or end of capture)."""
        self._frame, self._ts = frame, timestamp
        if self._state is _State.UNTIL_CLOSE:
            # RFC 9112 section 6.3 (item 8): the close delimits the body.
            self._finish_current(complete=not self._lossy)
        elif self._state is _State.HEAD:
            self._salvage_head()
        elif self._state not in (_State.START, _State.RESYNC, _State.TUNNEL, _State.CLOSED):
            self._finish_current(complete=False, rest_not_seen=self._state is _State.OVERSIZED_HEAD)
        self._state = _State.CLOSED
        self._buf.clear()
        return self._take()

    # -- the state machine ----------------------------------------------------------

    def _take(self) -> list[ParserEvent]:
        events, self._events = self._events, []
        return events

    def _anomaly(self, kind: AnomalyKind, message: str) -> None:
        if len(self.anomalies) < 1000:
            self.anomalies.append(Anomaly(kind, message, self._frame, self.connection))

    def _reset_message(self) -> None:
        self._start_frame = 0
        self._start_ts = 0.0
        self._head_frame = 0
        self._head_bytes = 0
        self._start_line: tuple[str, str, str] | None = None
        self._headers: tuple[Header, ...] = ()
        self._lengths: list[str] = []
        self._codings: list[str] = []
        self._body_size = 0
        self._remaining = 0
        self._body: bytearray | None = None
        self._lossy = False
        self._in_message = False
        self._cut: _CutLines | None = None
        self._message_after_gap = None

    def _run(self, data: bytes) -> None:
        while True:
            self._run_once(data)
            pending = self._pending
            if pending is None:
                return
            self._pending = None
            data = pending

    def _run_once(self, data: bytes) -> None:
        pos = 0
        end = len(data)
        while pos < end:
            state = self._state
            if state is _State.START:
                pos = self._read_start(data, pos)
            elif state is _State.HEAD:
                pos = self._read_head(data, pos)
            elif state is _State.BODY_LENGTH:
                take = min(self._remaining, end - pos)
                self._count_body(data, pos, take)
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._finish_current(complete=not self._lossy)
                    self._state = _State.START
            elif state is _State.UNTIL_CLOSE:
                self._count_body(data, pos, end - pos)
                pos = end
            elif state is _State.CHUNK_SIZE or state is _State.TRAILERS:
                if state is _State.CHUNK_SIZE and not self._buf:
                    pos = self._count_small_chunks(data, pos)
                    if pos == end:
                        break
                pos = self._read_chunk_line(data, pos)
            elif state is _State.CHUNK_DATA:
                take = min(self._remaining, end - pos)
                self._count_body(data, pos, take)
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = _State.CHUNK_DATA_END
            elif state is _State.CHUNK_DATA_END:
                pos = self._read_chunk_data_end(data, pos)
            elif state is _State.OVERSIZED_HEAD:
                pos = self._read_oversized_head(data, pos)
            elif state is _State.RESYNC:
                pos = self._resync(data, pos)
            else:  # TUNNEL, CLOSED: opaque or late bytes are dropped
                if (
                    state is _State.TUNNEL
                    and self._keep_tunnel
                    and len(self.tunnel_data) < MAX_TUNNEL_KEPT
                ):
                    if not self.tunnel_data:
                        self.tunnel_frames = (self._first_frame, self._frame, self._ts)
                    self.tunnel_data += data[pos : pos + MAX_TUNNEL_KEPT - len(self.tunnel_data)]
                pos = end

    def _read_start(self, data: bytes, pos: int) -> int:
        # RFC 9112 section 2.2: empty lines before a start line are ignored.
        end = len(data)
        while pos < end and data[pos] in (0x0D, 0x0A):
            pos += 1
        if pos == end:
            return pos
        self._reset_message()
        self._in_message = True
        self._start_frame = self._first_frame
        self._start_ts = self._ts
        self._message_after_gap, self._skipped_after_gap = self._skipped_after_gap, None
        self._state = _State.HEAD
        self._buf.clear()
        self._scanned = 0
        return pos

    def _read_head(self, data: bytes, pos: int) -> int:
        buf = self._buf
        if not buf:
            # Fast path: the whole header block is in this chunk; no copy.
            head_end = _find_head_end(data, pos)
            if head_end >= 0:
                return self._complete_head(data, pos, head_end)
        before = len(buf)
        buf.extend(data[pos:] if pos else data)
        # Reject garbage early instead of waiting for a whole header block.
        if before < 40 and not self._plausible_start(bytes(buf[:40])):
            self._garbage_start()
            return len(data)
        # Two finds, as on the fast path: the regex (\r?\n\r?\n) tried every
        # position of a head that spans segments (a Negotiate token's), several
        # times slower; both give the end of the first empty line.
        head_end = _find_head_end(buf, max(0, self._scanned - 3))
        if head_end < 0:
            if len(buf) > MAX_HEAD:
                self._anomaly(
                    AnomalyKind.HTTP_HEADER_TOO_LARGE,
                    f"{self.role.value} header block larger than {MAX_HEAD} bytes",
                )
                block = bytes(buf[:MAX_HEAD])
                kept = block[: block.rfind(b"\n") + 1]
                if not self._parse_head(kept):
                    self._bad_start(bytes(buf))
                    return len(data)
                self._cut = _CutLines()
                self._cut.feed(bytes(buf[len(kept) :]))
                self._head_bytes = len(buf)
                self._tail = bytes(buf[-3:])
                buf.clear()
                self._state = _State.OVERSIZED_HEAD
            else:
                self._scanned = len(buf)
            return len(data)
        # `whole` is the earlier bytes of the block followed by data[pos:], so
        # index i in it is index pos + i - before in data.
        whole = bytes(buf)
        buf.clear()
        self._scanned = 0
        return pos + self._complete_head(whole, 0, head_end) - before

    def _complete_head(self, data: bytes, start: int, head_end: int) -> int:
        """A header block is data[start:head_end]; returns the position after it
        in `data` (or len(data) when it was not a message start)."""
        size = head_end - start
        self._head_bytes = size
        if size > MAX_HEAD:
            self._anomaly(
                AnomalyKind.HTTP_HEADER_TOO_LARGE,
                f"{self.role.value} header block of {size} bytes (over {MAX_HEAD})",
            )
            block = data[start : start + MAX_HEAD]
            block = block[: block.rfind(b"\n") + 1]
        else:
            block = data[start:head_end]
        if self._parse_head(block):
            if size > MAX_HEAD:
                self._cut = _CutLines()
                self._cut.feed(data[start + len(block) : head_end])
            self._after_head()
            return head_end
        self._bad_start(data[start:])
        return len(data)

    def _read_oversized_head(self, data: bytes, pos: int) -> int:
        window = self._tail + data[pos:]
        match = _HEAD_END.search(window)
        cut = self._cut
        if match is None:
            self._head_bytes += len(data) - pos
            self._tail = window[-3:]
            if cut is not None:
                cut.feed(data[pos:] if pos else data)
            if self._head_bytes > MAX_OVERSIZED_HEAD:
                self._anomaly(
                    AnomalyKind.HTTP_RESYNC,
                    f"{self.role.value} header block never ended after {self._head_bytes} "
                    "bytes; its first lines are kept, the next message is searched for",
                )
                # The request or status line and the lines kept are still worth
                # showing: the message is cut, not absent.
                self._finish_current(complete=False, rest_not_seen=True)
                self._state = _State.RESYNC
                self._resync_skipped = 0
            return len(data)
        used = match.end() - len(self._tail)
        self._head_bytes += used
        if cut is not None:
            cut.feed(data[pos : pos + used])
        self._after_head()
        return pos + used

    def _salvage_head(self) -> None:
        """A header block cut by a gap (snaplen, loss) or the end: keep the whole
        lines that were seen as an incomplete message, so a truncated capture
        still shows its request and status lines. The head is cut wherever the
        bytes stopped, on a line end too: the message says so (`head_cut`,
        `rest_not_seen`), so that a header after the cut is "not seen", never
        "not sent"."""
        seen = bytes(self._buf)
        self._buf.clear()
        block = seen[: seen.rfind(b"\n") + 1]
        if block and self._parse_head(block):
            self._head_bytes = len(seen)
            self._cut = _CutLines()
            # The line being read when the bytes stopped, if any: its name survives.
            self._cut.feed(seen[len(block) :])
            self._finish_current(complete=False, rest_not_seen=True)
        else:
            self._reset_message()

    def _plausible_start(self, prefix: bytes) -> bool:
        if self.role is Role.RESPONSE:
            size = min(len(prefix), len(_HTTP_PREFIX))
            return prefix[:size] == _HTTP_PREFIX[:size]
        return _REQUEST_PREFIX.match(prefix) is not None

    def _garbage_start(self) -> None:
        self._anomaly(
            AnomalyKind.HTTP_GARBAGE, f"bytes that do not start an HTTP {self.role.value}"
        )
        self._bad_start(bytes(self._buf))

    def _share_start(self, line: str, parts: tuple[str, str, str]) -> tuple[str, str, str]:
        """The parts of a well-formed start line, shared with earlier equal lines."""
        if len(line) > _SHARED_LINE_CHARS:
            return parts
        table = _SEEN_STARTS[self.role is Role.REQUEST]
        if len(table) >= _SHARED_LINES:
            table.clear()
        table[line] = parts
        return parts

    @staticmethod
    def _share_body(body: bytearray | None) -> bytes | None:
        """A kept body (error pages, capped), shared with earlier equal ones."""
        if body is None:
            return None
        data = bytes(body)
        if len(data) > _SHARED_BODY_BYTES:
            return data
        return _SEEN_BODIES.share(data)

    def _bad_start(self, data: bytes) -> None:
        """What looked like a message start was not: search again from its second byte."""
        after_gap = self._message_after_gap  # a false start after a gap is skipped bytes
        self._reset_message()
        self._skipped_after_gap = after_gap
        self._buf.clear()
        self._state = _State.RESYNC
        self._resync_skipped = 1
        self._pending = data[1:]

    def _parse_head(self, block: bytes) -> bool:
        # Field values are opaque octets (RFC 9110 section 5.5); latin-1 keeps
        # every byte as one character, so the wire truth survives decoding.
        lines = block.decode("latin-1").split("\n")
        start = lines[0].rstrip("\r")
        known = _SEEN_STARTS[self.role is Role.REQUEST].get(start)
        if known is not None:
            self._start_line = known
        elif self.role is Role.REQUEST:
            match = _REQUEST_LINE_TEXT.match(start)
            if match is None:
                self._anomaly(AnomalyKind.HTTP_BAD_START_LINE, "request line not understood")
                return False
            method, target, version = match.groups()
            self._start_line = self._share_start(start, (method, target, version))
        else:
            match = _STATUS_LINE_TEXT.match(start)
            if match is None:
                self._anomaly(AnomalyKind.HTTP_BAD_START_LINE, "status line not understood")
                return False
            version, status, reason = match.groups()
            self._start_line = self._share_start(start, (version, status, reason or ""))
        headers: list[Header] = []
        all_short = True
        lengths: list[str] = []
        codings: list[str] = []
        for raw in lines[1:]:
            line = raw.rstrip("\r")
            if not line:
                continue
            if line[0] in " \t":
                # RFC 9112 section 5.2: obsolete line folding is replaced by a space.
                if headers:
                    last = headers[-1]
                    continuation = line.strip(" \t")
                    folded = f"{last.value} {continuation}".strip()
                    headers[-1] = make_header(last.name, folded)
                    lowered = last.name.lower()
                    if lowered == "content-length":
                        lengths[-1] = folded
                    elif lowered == "transfer-encoding":
                        codings[-1] = folded
                    continue
                self._anomaly(AnomalyKind.HTTP_BAD_HEADER, "folded line before any header")
                continue
            header = _SEEN_HEADERS.get(line)
            if header is not None:
                # The same line as before (Host, User-Agent, Server...): one shared object.
                headers.append(header)
                name, value = header.name, header.value
            else:
                name, colon, value = line.partition(":")
                if not colon or not name:
                    self._anomaly(
                        AnomalyKind.HTTP_BAD_HEADER, "header line without a name and colon"
                    )
                    continue
                name = name.rstrip(" \t")
                value = value.strip(" \t")
                header = make_header(name, value)
                headers.append(header)
                if len(line) > _SHARED_LINE_CHARS:
                    all_short = False
                else:
                    if len(_SEEN_HEADERS) >= _SHARED_LINES:
                        _SEEN_HEADERS.clear()
                    _SEEN_HEADERS[line] = header
            if len(name) in (14, 17):
                lowered = name.lower()
                if lowered == "content-length":
                    lengths.append(value)
                elif lowered == "transfer-encoding":
                    codings.append(value)
        # Only tuples of shared lines are shared: a tuple holding a token is unique.
        kept = tuple(headers)
        self._headers = _SEEN_HEADER_TUPLES.share(kept) if kept and all_short else kept
        self._lengths = lengths
        self._codings = codings
        self._head_frame = self._frame
        return True

    def _after_head(self) -> None:
        """Decide the body framing once a header block is complete (RFC 9112 section 6.3)."""
        self._head_frame = self._frame
        assert self._start_line is not None
        if self.role is Role.REQUEST:
            method = self._start_line[0]
            expects = any(
                h.name.lower() == "expect" and h.value.lower() == "100-continue"
                for h in self._headers
            )
            self._events.append(RequestHead(method, self._frame, expects, self._message_after_gap))
            self._frame_request_body()
            return
        status = int(self._start_line[1])
        method = self._methods[0] if self._methods else "GET"
        if status >= 400:
            self._body = bytearray()
        if 100 <= status < 200:
            # Interim responses have no body; the request is still waiting.
            if status == 101:
                self._finish_current(complete=True)
                self._state = _State.TUNNEL
                self._keep_tunnel = True
                return
            self._finish_current(complete=True)
            self._state = _State.START
            return
        if self._methods:
            self._methods.popleft()
        if method == "HEAD" or status in (204, 304):
            self._finish_current(complete=True)
            self._state = _State.START
            return
        if method == "CONNECT" and 200 <= status < 300:
            self._finish_current(complete=True)
            self._state = _State.TUNNEL
            return
        if self._codings:
            # RFC 9112 section 6.3 (item 4): chunked last means chunked framing.
            if self._last_coding() == "chunked":
                self._state = _State.CHUNK_SIZE
            else:
                self._state = _State.UNTIL_CLOSE
            return
        length = self._content_length()
        if length is None:
            self._state = _State.UNTIL_CLOSE
        elif length == 0:
            self._finish_current(complete=True)
            self._state = _State.START
        else:
            self._remaining = length
            self._state = _State.BODY_LENGTH

    def _frame_request_body(self) -> None:
        if self._codings:
            if self._last_coding() == "chunked":
                self._state = _State.CHUNK_SIZE
                return
            # RFC 9112 section 6.3 (item 4): a request body it cannot frame.
            self._anomaly(AnomalyKind.HTTP_BAD_FRAMING, "request Transfer-Encoding is not chunked")
            self._finish_current(complete=False)
            self._state = _State.RESYNC
            return
        length = self._content_length()
        if not length:
            self._finish_current(complete=True)
            self._state = _State.START
        else:
            self._remaining = length
            self._state = _State.BODY_LENGTH

    def _last_coding(self) -> str:
        codings = [c.strip().lower() for v in self._codings for c in v.split(",") if c.strip()]
        return codings[-1] if codings else ""

    def _content_length(self) -> int | None:
        values = self._lengths
        if not values:
            return None
        # ASCII digits only: str.isdigit() takes "²" (a latin-1 byte) too.
        if len(values) == 1 and _DIGITS.fullmatch(values[0]):
            return int(values[0])
        # RFC 9110 section 8.6: a list of identical values is one value.
        parts = {p.strip() for v in values for p in v.split(",")}
        if len(parts) != 1:
            self._anomaly(AnomalyKind.HTTP_BAD_FRAMING, "conflicting Content-Length values")
            return None
        text = parts.pop()
        if not _DIGITS.fullmatch(text):
            self._anomaly(
                AnomalyKind.HTTP_BAD_FRAMING, f"Content-Length {text[:20]!r} is not a number"
            )
            return None
        return int(text)

    def _count_body(self, data: bytes, pos: int, size: int) -> None:
        self._body_size += size
        body = self._body
        if body is not None and len(body) < MAX_ERROR_BODY:
            body.extend(data[pos : pos + min(size, MAX_ERROR_BODY - len(body))])

    def _take_line(self, data: bytes, pos: int) -> tuple[bytes | None, int]:
        """A whole line (without its end) from the partial-line buffer and data."""
        newline = data.find(b"\n", pos)
        if newline < 0:
            self._buf.extend(data[pos:])
            if len(self._buf) > MAX_LINE:
                self._buf.clear()
                raise _LineTooLong
            return None, len(data)
        if self._buf:
            self._buf.extend(data[pos:newline])
            line = bytes(self._buf)
            self._buf.clear()
        else:
            line = data[pos:newline]
        return line.rstrip(b"\r"), newline + 1

    def _count_small_chunks(self, data: bytes, pos: int) -> int:
        """Count the whole small chunks at data[pos:] in bulk, a run of equal
        sizes per regex match (`_chunk_run`); returns where they end (pos when
        none starts there). Not taken while a kept error body still has room
        (its bytes are copied). Each run is one step of MAX_CHUNK_LINES."""
        body = self._body
        if body is not None and len(body) < MAX_ERROR_BODY:
            return pos
        end = len(data)
        while pos < end:
            line = _SMALL_CHUNK_SIZE.match(data, pos)
            if line is None:
                break
            text = line.group(1)
            size = int(text, 16)
            if size == 0:
                break  # the last chunk: its trailers are read line by line
            run = _chunk_run(text).match(data, pos)
            if run is None:
                break  # the chunk is not whole in this segment
            stop = run.end()
            self._body_size += (stop - pos) // (len(text) + 4 + size) * size
            pos = stop
            self._chunk_lines += 1
            if self._chunk_lines > MAX_CHUNK_LINES:
                self._stop_following(f"{MAX_CHUNK_LINES} chunk runs")
                return end
        return pos

    def _read_chunk_line(self, data: bytes, pos: int) -> int:
        try:
            line, pos = self._take_line(data, pos)
        except _LineTooLong:
            self._bad_chunking("chunk line too long")
            return pos
        if line is None:
            return pos
        self._chunk_lines += 1
        if self._chunk_lines > MAX_CHUNK_LINES:
            self._stop_following(f"{MAX_CHUNK_LINES} chunk lines")
            return len(data)
        if self._state is _State.TRAILERS:
            if not line:
                # RFC 9112 section 7.1.2: trailer section ends with an empty line.
                self._finish_current(complete=not self._lossy)
                self._state = _State.START
            return pos
        # RFC 9112 section 7.1: chunk-size [ chunk-ext ] CRLF
        size_text = line.split(b";", 1)[0].strip(b" \t")
        # Hex digits only: int() would also take a sign, "_" and "0x".
        if not _HEX_SIZE.fullmatch(size_text):
            self._bad_chunking("chunk size is not hexadecimal")
            return pos
        size = int(size_text, 16)
        if size == 0:
            self._state = _State.TRAILERS
        else:
            self._remaining = size
            self._state = _State.CHUNK_DATA
        return pos

    def _read_chunk_data_end(self, data: bytes, pos: int) -> int:
        try:
            line, pos = self._take_line(data, pos)
        except _LineTooLong:
            self._bad_chunking("chunk data longer than its size")
            return pos
        if line is None:
            return pos
        if line:
            self._bad_chunking("chunk data longer than its size")
            return pos
        self._state = _State.CHUNK_SIZE
        return pos

    def _stop_following(self, spent: str) -> None:
        """This direction cost more than a connection may: its current message
        ends here, incomplete, and its later bytes are dropped unparsed."""
        self._anomaly(
            AnomalyKind.HTTP_BODY_NOT_FOLLOWED,
            f"{self.role.value} bodies no longer followed after {spent} on this connection; "
            "the rest of this direction is not parsed",
        )
        self._finish_current(complete=False)
        self._buf.clear()
        self._state = _State.TUNNEL

    def _bad_chunking(self, reason: str) -> None:
        self._anomaly(AnomalyKind.HTTP_BAD_CHUNK, reason)
        self._finish_current(complete=False)
        self._buf.clear()
        self._state = _State.RESYNC
        self._resync_skipped = 0

    def _finish_current(self, complete: bool, rest_not_seen: bool = False) -> None:
        """rest_not_seen: the head's end was never seen (see HttpRequest)."""
        if not self._in_message or self._start_line is None:
            self._reset_message()
            return
        first, second, third = self._start_line
        body = self._body
        cut = self._cut
        cut_headers = cut.finish() if cut is not None else ()
        if self.role is Role.REQUEST:
            message: HttpRequest | HttpResponse = make_request(
                method=first,
                uri=second,
                version=third,
                headers=self._headers,
                frame=self._start_frame,
                head_frame=self._head_frame or self._frame,
                timestamp=self._start_ts,
                header_bytes=self._head_bytes,
                body_size=self._body_size,
                complete=complete,
                end_frame=self._frame,
                head_cut=cut is not None,
                cut_headers=cut_headers,
                rest_not_seen=rest_not_seen,
            )
        else:
            message = make_response(
                version=first,
                status=int(second),
                reason=third,
                headers=self._headers,
                frame=self._start_frame,
                head_frame=self._head_frame or self._frame,
                timestamp=self._start_ts,
                header_bytes=self._head_bytes,
                body_size=self._body_size,
                body=self._share_body(body),
                complete=complete,
                end_frame=self._frame,
                head_cut=cut is not None,
                cut_headers=cut_headers,
                rest_not_seen=rest_not_seen,
            )
        self._events.append(MessageComplete(message, self._message_after_gap))
        self._reset_message()

    def _resync(self, data: bytes, pos: int) -> int:
        """Search for the next plausible message start; keep a bounded tail."""
        buf = self._buf
        if buf:
            buf.extend(data[pos:])
            window = bytes(buf)
            buf.clear()
        else:
            window = data[pos:] if pos else data
        pattern = _REQUEST_START if self.role is Role.REQUEST else _RESPONSE_START
        match = pattern.search(window)
        if match is None:
            if self.role is Role.REQUEST:
                # Keep the last partial line: a request line may still complete.
                cut = window.rfind(b"\n") + 1
                if len(window) - cut > MAX_LINE:
                    cut = len(window) - MAX_LINE
            else:
                cut = max(0, len(window) - len(_HTTP_PREFIX) - 5)
            self._resync_skipped += cut
            buf.extend(window[cut:])
            return len(data)
        skipped = self._resync_skipped + match.start()
        self._resync_skipped = 0
        if self._skipped_after_gap is not None:
            self._skipped_after_gap += skipped
        # Reported even when nothing was skipped: a gap may have eaten whole messages.
        if skipped:
            said = f"skipped {skipped} bytes to the next {self.role.value}"
        else:
            said = (
                f"the next {self.role.value} starts where the missing bytes end "
                "(whole messages may have been in them)"
            )
        self._anomaly(AnomalyKind.HTTP_RESYNC, said)
        self._state = _State.START
        # The caller's position moves past all of `data`; the rest is parsed next.
        self._pending = window[match.start() :]
        return len(data)


class _LineTooLong(Exception):
    pass
