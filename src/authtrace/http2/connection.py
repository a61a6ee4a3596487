"""One HTTP/2 connection, sans-IO: its two directions' stream events in (cleartext
h2c, or what the TLS layer decrypted of an h2 connection), `Exchange` values
out, one per stream, on the same model as HTTP/1 so every rule and report reads
them unchanged.

Owns: the connection preface (RFC 9113 section 3.4), which side is the client,
header blocks (HEADERS or PUSH_PROMISE and their CONTINUATION frames, section
4.3) and their HPACK decoding per direction, the stream table (section 5.1:
request, interim and final responses, DATA counted, END_STREAM, RST_STREAM),
SETTINGS_HEADER_TABLE_SIZE, GOAWAY, and the connection's HTTP/2 anomalies.

Invariants:
- a header block whose HPACK state is lost is "not decodable": its stream is
  still listed with its frames (`StreamInfo`), with no request or response
  invented for it, and every later block of that direction is not decodable
  either (headers.py);
- memory: at most MAX_OPEN_STREAMS streams are held (older unfinished ones are
  handed on as they are), one header block per direction (frames.py bounds it),
  at most MAX_ANOMALIES anomalies;
- exchanges come out in the order their streams opened (a stream finished early
  waits for the ones opened before it), indexed 0, 1, ... on the connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from authtrace.anomalies import Anomaly, AnomalyKind
from authtrace.http.messages import (
    Exchange,
    Header,
    HttpRequest,
    HttpResponse,
    make_exchange,
)
from authtrace.http2.frames import (
    MAX_KEPT_PAYLOAD,
    PREFACE,
    Frame,
    FrameEvent,
    FrameReader,
    FrameType,
    FramingFound,
    FramingLost,
)
from authtrace.http2.headers import DecodedBlock, HeaderDecoder, Lost, NotDecodable
from authtrace.http2.model import ErrorCode, Side, StreamInfo, StreamReset, error_name
from authtrace.strict import internal_error
from authtrace.tcp.events import (
    ConnectionClosed,
    ConnectionOpened,
    Direction,
    LaneSink,
    StreamData,
    StreamEnd,
    StreamEvent,
    StreamGap,
)

MAX_OPEN_STREAMS = 1000
MAX_ANOMALIES = 100
# RFC 9113 section 6.5.2.
SETTINGS_HEADER_TABLE_SIZE = 0x1
# The version an HTTP/2 message carries in the HTTP model (RFC 9113 section 8.1).
VERSION = "HTTP/2"


@dataclass
class _Block:
    """A header block being gathered (HEADERS or PUSH_PROMISE, then CONTINUATION)."""

    kind: FrameType
    stream: int
    first_frame: int
    end_stream: bool
    promised: int = 0
    parts: bytearray = field(default_factory=bytearray)
    spoiled: Lost | None = None


@dataclass
class _Head:
    """A decoded (or not decodable) header block of one message."""

    fields: tuple[tuple[bytes, bytes], ...] | None  # None: not decodable
    first_frame: int
    frame: int
    timestamp: float
    size: int


@dataclass
class _Stream:
    id: int
    request: _Head | None = None
    response: _Head | None = None
    interim: list[_Head] = field(default_factory=list)
    request_body: int = 0
    response_body: int = 0
    request_ended: bool = False
    response_ended: bool = False
    reset: StreamReset | None = None
    pushed_by: int = 0
    # An h2c upgrade's stream 1: the HTTP/1.1 request and its 101 (section 3.2
    # of RFC 7540), which stand for the request's header block.
    upgraded_request: HttpRequest | None = None
    upgrade_response: HttpResponse | None = None

    @property
    def done(self) -> bool:
        return self.reset is not None or (self.request_ended and self.response_ended)


@dataclass
class _Half:
    """One direction: its frames, its HPACK context, its block in progress."""

    reader: FrameReader = field(default_factory=FrameReader)
    decoder: HeaderDecoder = field(default_factory=HeaderDecoder)
    preface_left: bytes = b""
    block: _Block | None = None
    ended: bool = False


class Http2Connection:
    """Reads one connection's HTTP/2.

    client_direction: the direction the client sends in (the TLS client for h2
    over TLS; the sender of the preface for h2c); start_unseen: the capture
    began inside the connection (no preface, HPACK state unknown)."""

    def __init__(
        self,
        connection: int,
        client_direction: Direction = Direction.TO_SERVER,
        start_unseen: bool = False,
    ) -> None:
        self.connection = connection
        self.swapped = client_direction is Direction.TO_CLIENT
        self.anomalies: list[Anomaly] = []
        self.frames_read = 0
        self.goaway: tuple[int, int, int] | None = None  # error code, last stream, frame
        self._client_direction = client_direction
        self._halves = {Side.CLIENT: _Half(), Side.SERVER: _Half()}
        self._streams: dict[int, _Stream] = {}
        self._order: list[_Stream] = []
        self._index = 0
        self._closed = False
        self._dropped_anomalies = 0
        self._start_unseen = start_unseen
        if start_unseen:
            # Frames are searched for from the first octet; the HPACK state is
            # unknown, unless the client's first octets turn out to be the preface.
            for half in self._halves.values():
                half.reader = FrameReader(searching=True)
                half.decoder.lose(Lost.START_UNSEEN)
        else:
            self._halves[Side.CLIENT].preface_left = PREFACE

    @property
    def is_http(self) -> bool:
        """True once a frame was read (the pipeline lists the connection as HTTP)."""
        return self.frames_read > 0

    def collect_parser_anomalies(self) -> None:
        """Nothing to move (the HTTP/1 tracker's interface): anomalies are kept here."""

    def lane_sink(self, direction: Direction) -> LaneSink | None:
        """What the fast lane may skip (tcp/events.py LaneSink): the frame reader
        of that direction answers for itself (the middle of a DATA payload is
        only counted); nothing once the connection is closed."""
        if self._closed:
            return None
        side = Side.CLIENT if direction is self._client_direction else Side.SERVER
        return self._halves[side].reader

    def lane_pays(self) -> bool:
        """Whether the fast lane is worth opening (lane.py LaneOwner): while the
        connection is open (the middle of a DATA payload is only counted)."""
        return not self._closed

    def upgraded(
        self, request: HttpRequest | None, switching: HttpResponse | None, index: int
    ) -> None:
        """The connection was upgraded from HTTP/1.1 (`Upgrade: h2c`, RFC 7540
        section 3.2): stream 1 is that request, half closed by the client, and
        its response comes on stream 1; the 101 is kept as its interim response.
        Exchanges are numbered on from `index`."""
        self._index = index
        stream = self._open(1, request.head_frame if request is not None else 0)
        assert stream is not None
        stream.upgraded_request = request
        stream.upgrade_response = switching
        stream.request_ended = True

    def close(self, frame: int, timestamp: float) -> list[Exchange]:
        """The connection ended: every stream is handed on as it stands."""
        out: list[Exchange] = []
        if not self._closed:
            try:
                self._close(frame, timestamp, out)
            except Exception as error:  # a bug here must not stop the capture
                internal_error(error)
                self._note(AnomalyKind.HTTP2_INTERNAL_ERROR, f"close failed: {error!r}", frame)
        return out

    # -- entry point -------------------------------------------------------------------

    def feed(self, event: StreamEvent) -> list[Exchange]:
        out: list[Exchange] = []
        try:
            self._feed(event, out)
        except Exception as error:  # a bug here must not stop the capture
            internal_error(error)
            self._note(
                AnomalyKind.HTTP2_INTERNAL_ERROR,
                f"event skipped: {error!r}",
                getattr(event, "frame", None),
            )
        return out

    def _feed(self, event: StreamEvent, out: list[Exchange]) -> None:
        if self._closed or isinstance(event, ConnectionOpened):
            return
        if isinstance(event, ConnectionClosed):
            self._close(event.frame, event.timestamp, out)
            return
        side = Side.CLIENT if event.direction is self._client_direction else Side.SERVER
        half = self._halves[side]
        if isinstance(event, StreamData):
            data = event.data
            if self._start_unseen:
                self._first_data(side, data, event.frame)
            if half.preface_left:
                data = self._take_preface(half, data, event.frame)
                if not data:
                    return
            events = half.reader.feed(data, event.first_frame, event.frame, event.timestamp)
        elif isinstance(event, StreamGap):
            if half.preface_left:
                half.preface_left = b""
            events = half.reader.gap(event.length, event.frame, event.timestamp)
            if half.block is not None:
                half.block.spoiled = Lost.GAP
        else:
            assert isinstance(event, StreamEnd)
            events = half.reader.close(event.frame, event.timestamp)
            half.ended = True
        self._on_events(side, events, out)
        out += self._flush(everything=False)

    def _first_data(self, side: Side, data: bytes, frame: int) -> None:
        """A connection whose start the capture missed: if the client's first
        octets are the preface after all (the capture began between the SYN and
        it), it is read from its start; else its header blocks are not decodable."""
        self._start_unseen = False
        if side is Side.CLIENT and PREFACE.startswith(data[: len(PREFACE)]):
            for half in self._halves.values():
                half.reader = FrameReader()
                half.decoder = HeaderDecoder()
            self._halves[Side.CLIENT].preface_left = PREFACE
            return
        self._note(
            AnomalyKind.HTTP2_HEADERS_NOT_DECODABLE,
            "the capture began inside this HTTP/2 connection: its header blocks cannot be "
            "decoded (HPACK state unknown); its streams are listed without headers",
            frame,
        )

    def _take_preface(self, half: _Half, data: bytes, frame: int) -> bytes:
        """Section 3.4: the client's first octets are the preface, then frames."""
        expected = half.preface_left
        size = min(len(expected), len(data))
        if data[:size] != expected[:size]:
            half.preface_left = b""
            self._note(
                AnomalyKind.HTTP2_PREFACE_MISSING,
                "the client's first octets are not the HTTP/2 connection preface",
                frame,
            )
            for each in self._halves.values():
                each.decoder.lose(Lost.START_UNSEEN)
            return data
        half.preface_left = expected[size:]
        return data[size:]

    # -- frames -------------------------------------------------------------------------

    def _on_events(self, side: Side, events: list[FrameEvent], out: list[Exchange]) -> None:
        half = self._halves[side]
        for item in events:
            if isinstance(item, FramingLost):
                half.block = None
                half.decoder.lose(Lost.GAP)
                self._note(
                    AnomalyKind.HTTP2_FRAMING_LOST,
                    f"{side.value} frames: {item.reason}; HPACK state of this direction "
                    "lost from here (later header blocks are not decodable)",
                    item.frame,
                )
            elif isinstance(item, FramingFound):
                self._note(
                    AnomalyKind.HTTP2_RESYNC,
                    f"{side.value} frames found again after {item.skipped} octets",
                    item.frame,
                )
            else:
                self.frames_read += 1
                self._on_frame(side, half, item)

    def _on_frame(self, side: Side, half: _Half, frame: Frame) -> None:
        if frame.problem:
            self._note(
                AnomalyKind.HTTP2_FRAME_MALFORMED,
                f"{frame.type_name} frame on stream {frame.stream_id}: {frame.problem}",
                frame.frame,
            )
        if frame.too_large:
            self._note(
                AnomalyKind.HTTP2_FRAME_TOO_LARGE,
                f"{frame.type_name} frame of {frame.length} octets on stream "
                f"{frame.stream_id}: larger than {MAX_KEPT_PAYLOAD} octets, not kept",
                frame.frame,
            )
        block = half.block
        if block is not None and (
            frame.type != FrameType.CONTINUATION or frame.stream_id != block.stream
        ):
            # Section 6.10: nothing may come between a block's frames.
            half.block = None
            half.decoder.lose(Lost.UNDECODABLE)
            self._note(
                AnomalyKind.HTTP2_FRAME_MALFORMED,
                f"header block of stream {block.stream} interrupted by a "
                f"{frame.type_name} frame (RFC 9113 section 6.10)",
                frame.frame,
            )
            block = None
        kind = frame.type
        if kind == FrameType.HEADERS or kind == FrameType.PUSH_PROMISE:
            if frame.stream_id == 0:
                return  # noted above: a block on stream 0 belongs to nothing
            half.block = _Block(
                FrameType(kind),
                frame.stream_id,
                frame.first_frame,
                frame.end_stream,
                promised=frame.promised_stream,
            )
            self._add_fragment(side, half, frame)
        elif kind == FrameType.CONTINUATION:
            if block is None:
                half.decoder.lose(Lost.UNDECODABLE)
                self._note(
                    AnomalyKind.HTTP2_FRAME_MALFORMED,
                    f"CONTINUATION on stream {frame.stream_id} without a header block "
                    "(RFC 9113 section 6.10)",
                    frame.frame,
                )
                return
            self._add_fragment(side, half, frame)
        elif kind == FrameType.DATA:
            if frame.stream_id == 0:
                return
            stream = self._stream(frame.stream_id, side, frame.frame)
            if stream is None:
                return
            if side is Side.CLIENT:
                stream.request_body += frame.data_size
                stream.request_ended = stream.request_ended or frame.end_stream
            else:
                stream.response_body += frame.data_size
                stream.response_ended = stream.response_ended or frame.end_stream
        elif kind == FrameType.RST_STREAM:
            if frame.problem or frame.cut or frame.stream_id == 0:
                return
            stream = self._stream(frame.stream_id, side, frame.frame)
            if stream is not None and stream.reset is None:
                stream.reset = StreamReset(frame.error_code, side, frame.frame, frame.timestamp)
        elif kind == FrameType.SETTINGS:
            for identifier, value in frame.settings:
                if identifier == SETTINGS_HEADER_TABLE_SIZE:
                    # The peer encodes what it sends to `side` within this size.
                    other = Side.SERVER if side is Side.CLIENT else Side.CLIENT
                    self._halves[other].decoder.allow_table_size(value)
        elif kind == FrameType.GOAWAY:
            if frame.problem or frame.cut:
                return
            self.goaway = (frame.error_code, frame.last_stream, frame.frame)
            if frame.error_code != ErrorCode.NO_ERROR:
                self._note(
                    AnomalyKind.HTTP2_GOAWAY,
                    f"the {side.value} ended the connection with GOAWAY "
                    f"{error_name(frame.error_code)} (last stream {frame.last_stream})",
                    frame.frame,
                )

    def _add_fragment(self, side: Side, half: _Half, frame: Frame) -> None:
        block = half.block
        assert block is not None
        if frame.cut:
            block.spoiled = Lost.GAP
        elif frame.too_large or len(block.parts) + len(frame.fragment) > MAX_KEPT_PAYLOAD:
            if block.spoiled is None:
                self._note(
                    AnomalyKind.HTTP2_FRAME_TOO_LARGE,
                    f"header block of stream {block.stream} larger than {MAX_KEPT_PAYLOAD} "
                    "octets: not kept",
                    frame.frame,
                )
            block.spoiled = Lost.TOO_LARGE
            block.parts.clear()
        elif frame.problem:
            block.spoiled = Lost.UNDECODABLE
        elif block.spoiled is None:
            block.parts += frame.fragment
        if frame.end_headers or frame.cut:
            half.block = None
            self._on_block(side, half, block, frame)

    def _on_block(self, side: Side, half: _Half, block: _Block, frame: Frame) -> None:
        if block.spoiled is not None:
            half.decoder.lose(block.spoiled)
            decoded: DecodedBlock | NotDecodable = NotDecodable(block.spoiled, new=True)
        else:
            decoded = half.decoder.decode(bytes(block.parts))
        if isinstance(decoded, NotDecodable) and decoded.new:
            self._note(
                AnomalyKind.HTTP2_HEADERS_NOT_DECODABLE,
                f"{side.value} header block of stream {block.stream}: {decoded.reason.value}; "
                "this and later header blocks of that direction are not decodable",
                frame.frame,
            )
        head = _Head(
            decoded.fields if isinstance(decoded, DecodedBlock) else None,
            block.first_frame,
            frame.frame,
            frame.timestamp,
            len(block.parts),
        )
        if block.kind == FrameType.PUSH_PROMISE:
            # Section 8.4: the promised request, answered on the promised stream.
            if block.promised == 0 or block.promised in self._streams:
                return
            pushed = self._open(block.promised, frame.frame)
            if pushed is not None:
                pushed.request = head
                pushed.request_ended = True
                pushed.pushed_by = block.stream
            return
        stream = self._stream(block.stream, side, frame.frame)
        if stream is None:
            return
        if side is Side.CLIENT:
            if stream.request is None:
                stream.request = head
            # else trailers (section 8.1): decoded above for the HPACK state.
            stream.request_ended = stream.request_ended or block.end_stream
            return
        status = _status(head)
        if stream.response is None and status is not None and 100 <= status < 200:
            if len(stream.interim) < 100:
                stream.interim.append(head)
        elif stream.response is None:
            stream.response = head
        stream.response_ended = stream.response_ended or block.end_stream

    # -- streams ------------------------------------------------------------------------

    def _stream(self, stream_id: int, side: Side, frame: int) -> _Stream | None:
        stream = self._streams.get(stream_id)
        if stream is not None:
            return stream
        # A stream the client opens, or one whose opening the capture missed.
        return self._open(stream_id, frame)

    def _open(self, stream_id: int, frame: int) -> _Stream | None:
        if stream_id <= 0:
            return None
        stream = _Stream(stream_id)
        self._streams[stream_id] = stream
        self._order.append(stream)
        if len(self._order) > MAX_OPEN_STREAMS:
            self._note(
                AnomalyKind.HTTP2_TOO_MANY_STREAMS,
                f"more than {MAX_OPEN_STREAMS} streams open at once: the oldest is handed on "
                "unfinished",
                frame,
            )
        return stream

    def _flush(self, everything: bool) -> list[Exchange]:
        out: list[Exchange] = []
        order = self._order
        while order and (everything or order[0].done or len(order) > MAX_OPEN_STREAMS):
            stream = order.pop(0)
            self._streams.pop(stream.id, None)
            out.append(self._exchange(stream))
        return out

    def _close(self, frame: int, timestamp: float, out: list[Exchange]) -> None:
        for side, half in self._halves.items():
            if not half.ended:
                self._on_events(side, half.reader.close(frame, timestamp), out)
            if half.block is not None:
                block, half.block = half.block, None
                block.spoiled = block.spoiled or Lost.GAP
        out += self._flush(everything=True)
        self._closed = True

    def _exchange(self, stream: _Stream) -> Exchange:
        request = _request(stream) if stream.request and stream.request.fields is not None else None
        if stream.upgraded_request is not None:
            request = stream.upgraded_request
        response = (
            _response(stream, stream.response)
            if stream.response and stream.response.fields is not None
            else None
        )
        interim = tuple(
            _response(stream, head, interim=True) for head in stream.interim if head.fields
        )
        if stream.upgrade_response is not None:
            interim = (stream.upgrade_response, *interim)
        info = StreamInfo(
            id=stream.id,
            request_frame=stream.request.frame
            if stream.request
            else (stream.upgraded_request.shown_frame if stream.upgraded_request else 0),
            response_frame=stream.response.frame if stream.response else 0,
            reset=stream.reset,
            request_not_decodable=stream.request is not None and stream.request.fields is None,
            response_not_decodable=stream.response is not None and stream.response.fields is None,
            pushed_by=stream.pushed_by,
        )
        made = make_exchange(
            connection=self.connection,
            index=self._index,
            request=request,
            response=response,
            interim=interim,
            stream=info,
        )
        self._index += 1
        return made

    def _note(self, kind: AnomalyKind, message: str, frame: int | None) -> None:
        if len(self.anomalies) < MAX_ANOMALIES:
            self.anomalies.append(Anomaly(kind, message, frame, self.connection))
        elif self._dropped_anomalies == 0:
            self._dropped_anomalies = 1
            self.anomalies.append(
                Anomaly(
                    AnomalyKind.HTTP_ANOMALIES_SUPPRESSED,
                    f"more HTTP/2 anomalies on this connection not listed (past {MAX_ANOMALIES})",
                    frame,
                    self.connection,
                )
            )


def _text(value: bytes) -> str:
    """Field octets as the HTTP/1 model keeps them (latin-1: every octet kept)."""
    return value.decode("latin-1")


def _headers(head: _Head) -> tuple[Header, ...]:
    """Every field as sent, pseudo-header fields (`:method`, `:path`, ...) included,
    as tshark lists them."""
    assert head.fields is not None
    return tuple(Header(_text(name), _text(value)) for name, value in head.fields)


def _pseudo(head: _Head, name: bytes) -> str:
    assert head.fields is not None
    for field_name, value in head.fields:
        if field_name == name:
            return _text(value)
    return ""


def _status(head: _Head) -> int | None:
    if head.fields is None:
        return None
    value = _pseudo(head, b":status")
    return int(value) if len(value) == 3 and value.isdigit() else None


def _request(stream: _Stream) -> HttpRequest:
    head = stream.request
    assert head is not None
    method = _pseudo(head, b":method")
    # RFC 9113 section 8.5: CONNECT names its target in :authority, not :path.
    uri = _pseudo(head, b":path") or (_pseudo(head, b":authority") if method == "CONNECT" else "")
    return HttpRequest(
        method=method,
        uri=uri,
        version=VERSION,
        headers=_headers(head),
        frame=head.first_frame,
        head_frame=head.frame,
        timestamp=head.timestamp,
        header_bytes=head.size,
        body_size=stream.request_body,
        complete=stream.request_ended,
        # Wireshark shows an HTTP/2 message's headers in the frame of its
        # HEADERS; the DATA frames are shown in their own.
        end_frame=head.frame,
    )


def _response(stream: _Stream, head: _Head, interim: bool = False) -> HttpResponse:
    return HttpResponse(
        version=VERSION,
        status=_status(head) or 0,
        reason="",  # section 8.3.2: HTTP/2 has no reason phrase
        headers=_headers(head),
        frame=head.first_frame,
        head_frame=head.frame,
        timestamp=head.timestamp,
        header_bytes=head.size,
        body_size=0 if interim else stream.response_body,
        complete=interim or stream.response_ended,
        end_frame=head.frame,
    )
