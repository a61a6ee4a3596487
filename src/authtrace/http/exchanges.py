"""Pairing requests and responses into exchanges, one tracker per TCP connection.

`HttpConnectionTracker` consumes one connection's stream events and yields
`Exchange` values in order. It owns three decisions:
- is this connection HTTP at all (by content, never by port), and which side
  is the client (a "client" that sends responses means the roles are swapped);
- which request a response answers: FIFO, as pipelining requires (RFC 9112
  section 9.3.2), with interim 1xx responses attached to the waiting request;
- when an exchange is finished (both messages complete, or the connection ended).

`HttpDemux` routes a whole capture's stream events to per-connection trackers
and frees each tracker when its connection closes.

Invariant: a connection that is not HTTP costs one classification and then
its bytes are dropped without being copied.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from authtrace.anomalies import Anomaly
from authtrace.http.messages import Exchange, HttpRequest, HttpResponse, make_exchange
from authtrace.http.parser import HttpParser, ParserEvent, RequestHead, Role
from authtrace.strict import internal_error
from authtrace.tcp.events import (
    ConnectionClosed,
    ConnectionOpened,
    Direction,
    StreamData,
    StreamEnd,
    StreamEvent,
    StreamGap,
)

# How much of a connection's start is looked at before deciding it is not HTTP.
DETECT_LIMIT = 64 * 1024

_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]"
_REQUEST_LINE = re.compile(rb"[\r\n]*" + _TOKEN + rb"{1,32} \S+ HTTP/1\.[0-9]\r?\n")
_REQUEST_PREFIX = re.compile(rb"[\r\n]*" + _TOKEN + rb"{1,32}(?: [^\r\n]*)?\Z")
_RESPONSE_PREFIX = b"HTTP/1."
_REQUEST_ANYWHERE = re.compile(rb"^" + _TOKEN + rb"{1,32} \S+ HTTP/1\.[0-9]\r?$", re.MULTILINE)
_RESPONSE_ANYWHERE = re.compile(rb"HTTP/1\.[0-9] [0-9]{3}[ \r\n]")


class Detection(enum.Enum):
    UNKNOWN = "unknown"
    HTTP = "http"
    NOT_HTTP = "not_http"


class _Start(enum.Enum):
    REQUEST = "request"
    RESPONSE = "response"
    NEED_MORE = "need_more"
    NO = "no"


def _classify_start(data: bytes) -> _Start:
    """What the first bytes of a direction look like (RFC 9112 sections 3 and 4)."""
    stripped = data.lstrip(b"\r\n")
    if not stripped:
        return _Start.NEED_MORE
    if stripped.startswith(_RESPONSE_PREFIX):
        return _Start.RESPONSE
    if _RESPONSE_PREFIX.startswith(stripped):
        return _Start.NEED_MORE
    if _REQUEST_LINE.match(data):
        return _Start.REQUEST
    newline = stripped.find(b"\n")
    if newline < 0 and len(stripped) < 16 * 1024 and _REQUEST_PREFIX.match(stripped):
        return _Start.NEED_MORE
    return _Start.NO


@dataclass
class _Slot:
    """One request (seen or not) waiting for its answer."""

    request: HttpRequest | None = None
    request_done: bool = False
    response: HttpResponse | None = None
    interim: list[HttpResponse] | None = None
    method: str = ""


class HttpConnectionTracker:
    """Feeds one connection's events through two parsers and pairs the messages."""

    def __init__(self, connection: int, syn_seen: bool = True) -> None:
        self.connection = connection
        self.detection = Detection.UNKNOWN
        self.swapped = False
        self.anomalies: list[Anomaly] = []
        self._syn_seen = syn_seen
        self._early: list[StreamEvent] = []
        self._early_bytes = {Direction.TO_SERVER: 0, Direction.TO_CLIENT: 0}
        self._starts = {Direction.TO_SERVER: b"", Direction.TO_CLIENT: b""}
        self._gapped = False
        self._requests: HttpParser | None = None
        self._responses: HttpParser | None = None
        self._slots: list[_Slot] = []
        self._index = 0
        self._closed = False
        self._frame = 0  # the frame of the event being classified (for anomalies)

    @property
    def is_http(self) -> bool | None:
        """True/False once decided, None while still undecided."""
        if self.detection is Detection.UNKNOWN:
            return None
        return self.detection is Detection.HTTP

    def parser_for(self, direction: Direction) -> HttpParser | None:
        """The parser that reads `direction` once the connection is known to be
        HTTP (None before, or when it is not). For the pipeline's fast lane
        (authtrace/lane.py): data on a connection known to be HTTP goes to
        exactly this parser's `feed` and nowhere else (see `feed`)."""
        if self.detection is not Detection.HTTP or self._closed:
            return None
        is_request = (direction is Direction.TO_SERVER) != self.swapped
        return self._requests if is_request else self._responses

    # -- entry points -----------------------------------------------------------------

    def feed(self, event: StreamEvent) -> list[Exchange]:
        try:
            # Fast path for the common event, data on a connection known to be
            # HTTP: straight to the parser of that direction (what _dispatch does).
            if type(event) is StreamData and self.detection is Detection.HTTP and not self._closed:
                is_request = (event.direction is Direction.TO_SERVER) != self.swapped
                parser = self._requests if is_request else self._responses
                assert parser is not None
                events = parser.feed(event.data, event.first_frame, event.frame, event.timestamp)
                if not events:
                    return []
                out: list[Exchange] = []
                self._apply(events, Role.REQUEST if is_request else Role.RESPONSE, out)
                return out
            return self._feed(event)
        except Exception as error:  # a bug here must not stop the capture
            internal_error(error)
            self.anomalies.append(
                Anomaly(
                    "http-internal-error",
                    f"event skipped: {error!r}",
                    getattr(event, "frame", None),
                    self.connection,
                )
            )
            return []

    def close(self, frame: int, timestamp: float) -> list[Exchange]:
        """The connection ended: flush partial messages and unanswered requests."""
        if self._closed:
            return []
        out: list[Exchange] = []
        try:
            if self.detection is Detection.UNKNOWN:
                self._frame = frame
                self._decide(final=True)
                if self.detection is Detection.HTTP:
                    out += self._replay()
            if self.detection is Detection.HTTP:
                assert self._requests is not None and self._responses is not None
                self._apply(self._requests.close(frame, timestamp), Role.REQUEST, out)
                self._apply(self._responses.close(frame, timestamp), Role.RESPONSE, out)
                out += self._flush(everything=True)
                self.collect_parser_anomalies()
        except Exception as error:
            internal_error(error)
            self.anomalies.append(
                Anomaly("http-internal-error", f"close failed: {error!r}", frame, self.connection)
            )
        self._closed = True
        self._early = []
        return out

    # -- detection ------------------------------------------------------------------------

    def _feed(self, event: StreamEvent) -> list[Exchange]:
        detection = self.detection
        if detection is Detection.NOT_HTTP or self._closed:
            if isinstance(event, ConnectionClosed):
                self._closed = True
            return []
        if isinstance(event, ConnectionClosed):
            return self.close(event.frame, event.timestamp)
        if detection is Detection.HTTP:
            out: list[Exchange] = []
            self._dispatch(event, out)
            return out
        # Still deciding: keep the early events (bounded) and look at the starts.
        if isinstance(event, StreamData):
            direction = event.direction
            if self._early_bytes[direction] < DETECT_LIMIT:
                if len(self._starts[direction]) < 16 * 1024:
                    self._starts[direction] += event.data[: 16 * 1024]
            self._early_bytes[direction] += len(event.data)
            self._early.append(event)
        elif isinstance(event, StreamGap):
            self._gapped = True
            self._early.append(event)
        elif isinstance(event, StreamEnd):
            self._early.append(event)
        elif isinstance(event, ConnectionOpened):
            self._syn_seen = event.syn_seen
            return []
        self._frame = getattr(event, "frame", 0)
        self._decide(final=False)
        if self.detection is Detection.HTTP:
            return self._replay()
        if self.detection is Detection.NOT_HTTP:
            self._early = []
        return []

    def _decide(self, final: bool) -> None:
        to_server = _classify_start(self._starts[Direction.TO_SERVER])
        to_client = _classify_start(self._starts[Direction.TO_CLIENT])
        # A connection whose beginning was captured (and not lost) must begin
        # with a message; otherwise a message start is searched for.
        clean_start = self._syn_seen and not self._gapped
        for start, direction in (
            (to_server, Direction.TO_SERVER),
            (to_client, Direction.TO_CLIENT),
        ):
            if start is _Start.REQUEST or start is _Start.RESPONSE:
                normal = (start is _Start.REQUEST) == (direction is Direction.TO_SERVER)
                self._become_http(swapped=not normal)
                return
        if clean_start:
            if to_server is _Start.NO or to_client is _Start.NO or final:
                self.detection = Detection.NOT_HTTP
            return
        # Mid-connection start: look for a message start inside what was seen.
        for direction in (Direction.TO_SERVER, Direction.TO_CLIENT):
            data = self._starts[direction]
            request = _REQUEST_ANYWHERE.search(data)
            response = _RESPONSE_ANYWHERE.search(data)
            if request is None and response is None:
                continue
            is_request = response is None or (
                request is not None and request.start() < response.start()
            )
            normal = is_request == (direction is Direction.TO_SERVER)
            self._become_http(swapped=not normal)
            return
        limit_reached = all(n >= DETECT_LIMIT for n in self._early_bytes.values()) or any(
            len(s) >= 16 * 1024 for s in self._starts.values()
        )
        if final or limit_reached:
            self.detection = Detection.NOT_HTTP

    def _become_http(self, swapped: bool) -> None:
        self.detection = Detection.HTTP
        self.swapped = swapped
        if swapped:
            self.anomalies.append(
                Anomaly(
                    "http-roles-swapped",
                    "the side taken for the client sends responses: roles swapped",
                    self._frame or None,
                    self.connection,
                )
            )
        resync = not (self._syn_seen and not self._gapped)
        self._requests = HttpParser(Role.REQUEST, self.connection, resync_only=False)
        self._responses = HttpParser(Role.RESPONSE, self.connection, resync_only=False)
        if resync:
            # The capture began inside the connection: the first bytes may be
            # the middle of a message, so each side starts by searching.
            for parser, direction in (
                (self._requests, self._request_direction()),
                (self._responses, self._response_direction()),
            ):
                if _classify_start(self._starts[direction]) is _Start.NO:
                    parser.search_for_start()
        self._starts = {Direction.TO_SERVER: b"", Direction.TO_CLIENT: b""}

    def _request_direction(self) -> Direction:
        return Direction.TO_CLIENT if self.swapped else Direction.TO_SERVER

    def _response_direction(self) -> Direction:
        return Direction.TO_SERVER if self.swapped else Direction.TO_CLIENT

    def _replay(self) -> list[Exchange]:
        out: list[Exchange] = []
        early, self._early = self._early, []
        for event in early:
            self._dispatch(event, out)
        return out

    # -- the HTTP path ----------------------------------------------------------------------

    def _dispatch(self, event: StreamEvent, out: list[Exchange]) -> None:
        requests, responses = self._requests, self._responses
        assert requests is not None and responses is not None
        if isinstance(event, StreamData):
            is_request = (event.direction is Direction.TO_SERVER) != self.swapped
            parser = requests if is_request else responses
            events = parser.feed(event.data, event.first_frame, event.frame, event.timestamp)
            if events:
                self._apply(events, Role.REQUEST if is_request else Role.RESPONSE, out)
        elif isinstance(event, StreamGap):
            is_request = (event.direction is Direction.TO_SERVER) != self.swapped
            parser = requests if is_request else responses
            events = parser.gap(event.length, event.frame, event.timestamp)
            self._apply(events, Role.REQUEST if is_request else Role.RESPONSE, out)
        elif isinstance(event, StreamEnd):
            is_request = (event.direction is Direction.TO_SERVER) != self.swapped
            parser = requests if is_request else responses
            events = parser.close(event.frame, event.timestamp)
            self._apply(events, Role.REQUEST if is_request else Role.RESPONSE, out)

    def _apply(self, events: list[ParserEvent], role: Role, out: list[Exchange]) -> None:
        slots = self._slots
        for item in events:
            if isinstance(item, RequestHead):
                assert self._responses is not None
                self._responses.push_method(item.method)
                if len(slots) < 100000:
                    slots.append(_Slot(method=item.method))
                continue
            message = item.message
            if isinstance(message, HttpRequest):
                slot = next((s for s in slots if not s.request_done and s.method), None)
                if slot is None:
                    slot = _Slot(method=message.method)
                    slots.append(slot)
                slot.request = message
                slot.request_done = True
            else:
                self._place_response(message)
        out += self._flush(everything=False)

    def _place_response(self, response: HttpResponse) -> None:
        slot = next((s for s in self._slots if s.response is None), None)
        if slot is None:
            # No request waiting: the capture missed it (started mid-connection).
            slot = _Slot(request_done=True)
            self._slots.append(slot)
        if 100 <= response.status < 200 and response.status != 101:
            if slot.interim is None:
                slot.interim = []
            if len(slot.interim) < 100:
                slot.interim.append(response)
            return
        slot.response = response
        if slot.request is None and not slot.method:
            slot.request_done = True
        method = slot.method or (slot.request.method if slot.request else "")
        if response.status == 101 or (method == "CONNECT" and 200 <= response.status < 300):
            # RFC 9110 section 9.3.6 / 15.2.2: the connection becomes a tunnel.
            assert self._requests is not None
            self._requests.enter_tunnel()

    def _flush(self, everything: bool) -> list[Exchange]:
        out: list[Exchange] = []
        slots = self._slots
        while slots:
            slot = slots[0]
            if not everything and not (slot.response is not None and slot.request_done):
                break
            slots.pop(0)
            out.append(
                make_exchange(
                    connection=self.connection,
                    index=self._index,
                    request=slot.request,
                    response=slot.response,
                    interim=tuple(slot.interim or ()),
                )
            )
            self._index += 1
        return out

    def collect_parser_anomalies(self) -> None:
        """Move the parsers' anomalies into `anomalies`."""
        for parser in (self._requests, self._responses):
            if parser is not None:
                self.anomalies += parser.anomalies
                parser.anomalies = []


class HttpDemux:
    """Routes a capture's stream events to one tracker per connection."""

    def __init__(self) -> None:
        self._trackers: dict[int, HttpConnectionTracker] = {}
        self.anomalies: list[Anomaly] = []
        self.http_connections: set[int] = set()

    def feed(self, event: StreamEvent) -> list[Exchange]:
        connection = event.connection
        if isinstance(event, ConnectionOpened):
            self._trackers[connection] = HttpConnectionTracker(connection, event.syn_seen)
            return []
        tracker = self._trackers.get(connection)
        if tracker is None:
            return []
        out = tracker.feed(event)
        if isinstance(event, ConnectionClosed):
            self._retire(tracker)
        return out

    def finish(self, frame: int = 0, timestamp: float = 0.0) -> list[Exchange]:
        out: list[Exchange] = []
        for tracker in list(self._trackers.values()):
            out += tracker.close(frame, timestamp)
            self._retire(tracker)
        return out

    def _retire(self, tracker: HttpConnectionTracker) -> None:
        self._trackers.pop(tracker.connection, None)
        if tracker.is_http:
            self.http_connections.add(tracker.connection)
        tracker.collect_parser_anomalies()
        self.anomalies += tracker.anomalies
