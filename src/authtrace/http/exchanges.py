"""Pairing requests and responses into exchanges, one tracker per TCP connection.

`HttpConnectionTracker` consumes one connection's stream events and yields
`Exchange` values in order. It owns three decisions:
- is this connection HTTP at all (by content, never by port), and which side
  is the client (a "client" that sends responses means the roles are swapped);
- which request a response answers: FIFO, as pipelining requires (RFC 9112
  section 9.3.2), with interim 1xx responses attached to the waiting request;
  after a gap in the responses, what TCP knows re-aligns the pairing
  (`_realign`), and a pairing it cannot prove is marked `Pairing.UNCERTAIN`;
- when an exchange is finished (both messages complete, or the connection ended);
- when the connection leaves HTTP/1 for HTTP/2 (`Upgrade: h2c` answered 101, RFC
  9113 section 3.2 of RFC 7540): from then on its events go to an
  `Http2Connection`, whose stream 1 is the answer to the upgraded request.

`HttpDemux` routes a whole capture's stream events to per-connection trackers
and frees each tracker when its connection closes.

Invariant: a connection that is not HTTP costs one classification and then
its bytes are dropped without being copied.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from authtrace.anomalies import Anomaly, AnomalyKind
from authtrace.http.messages import Exchange, HttpRequest, HttpResponse, Pairing, make_exchange
from authtrace.http.parser import HttpParser, MessageComplete, ParserEvent, RequestHead, Role
from authtrace.http2.connection import Http2Connection
from authtrace.strict import internal_error
from authtrace.tcp.events import (
    SKIP_ALL,
    ConnectionClosed,
    ConnectionOpened,
    Direction,
    LaneSink,
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


# The shortest response a gap can hide: "HTTP/1.1 200\n\n" (RFC 9112 section 4,
# with the reason phrase empty and bare LF line ends, which the parser accepts).
MIN_RESPONSE = 14
# The shortest request: "GET / HTTP/1.0\n\n" (RFC 9112 section 3).
MIN_REQUEST = 16


@dataclass(slots=True)  # one per request of the capture: slots build and read faster
class _Slot:
    """One request (seen or not) waiting for its answer.

    head_frame: the frame that completed the request's head (0: not seen);
    lost: its response was in bytes the capture lost."""

    request: HttpRequest | None = None
    request_done: bool = False
    response: HttpResponse | None = None
    interim: list[HttpResponse] | None = None
    method: str = ""
    head_frame: int = 0
    expects_continue: bool = False
    lost: bool = False
    pairing: Pairing = Pairing.IN_ORDER


@dataclass
class _ResponseGap:
    """A gap in the responses, waiting for the next response to be placed.

    frame: where the gap became certain (the ACK that proved it, or the data
    after it): every lost byte was sent before it, so a response in the gap
    answers a request whose head was complete before that frame.
    room: lost bytes after the end of the response in progress (where whole
    responses may hide); at_boundary: they begin where a response ended.
    start: not a gap but a stream whose start was not captured (the capture
    began inside the connection): the bytes skipped before the first response
    are the tail of at most one response whose head was not captured."""

    frame: int
    room: int
    at_boundary: bool
    start: bool = False


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
        self._response_gap: _ResponseGap | None = None
        self._responses_start_unseen = False
        self._request_gap = False
        # Another alignment is still possible after an uncertain re-alignment.
        self._uncertain = False
        # After an h2c upgrade: the HTTP/2 reader every later event goes to.
        self.h2: Http2Connection | None = None
        self._upgrade: _Slot | None = None

    @property
    def is_http(self) -> bool | None:
        """True/False once decided, None while still undecided."""
        if self.detection is Detection.UNKNOWN:
            return None
        return self.detection is Detection.HTTP

    def lane_sink(self, direction: Direction) -> LaneSink | None:
        """What the fast lane may skip of `direction` (tcp/events.py LaneSink):
        once the connection is known to be HTTP, its data goes to exactly that
        direction's parser (see `feed`), which answers for itself; once it is
        known not to be HTTP, every byte is dropped unseen (`_feed`); while
        undecided, nothing."""
        if self._closed:
            return None
        if self.h2 is not None:  # after an h2c upgrade HTTP/2 answers for itself
            return self.h2.lane_sink(direction)
        if self.detection is Detection.NOT_HTTP:
            return SKIP_ALL
        if self.detection is not Detection.HTTP or self._responses_start_unseen:
            return None
        is_request = (direction is Direction.TO_SERVER) != self.swapped
        return self._requests if is_request else self._responses

    def lane_pays(self) -> bool:
        """Whether the fast lane is worth opening on this connection now (lane.py
        LaneOwner): where it would take only the bare ACKs, its look-up on every
        frame costs as much as it saves. So: a body of known length that is not
        kept is in progress in either direction (its later segments are only
        counted, and the ACKs come with them), the connection is known not to
        be HTTP (every byte is skipped), or HTTP/2 reads it after an upgrade."""
        if self._closed:
            return False
        if self.h2 is not None or self.detection is Detection.NOT_HTTP:
            return True
        if self.detection is not Detection.HTTP or self._responses_start_unseen:
            return False
        requests, responses = self._requests, self._responses
        return (requests is not None and requests.counting) or (
            responses is not None and responses.counting
        )

    # -- entry points -----------------------------------------------------------------

    def feed(self, event: StreamEvent) -> list[Exchange]:
        try:
            if self.h2 is not None:
                return self._after_upgrade(event)
            # Fast path for the common event, data on a connection known to be
            # HTTP: straight to the parser of that direction (what _dispatch does).
            if (
                type(event) is StreamData
                and self.detection is Detection.HTTP
                and not self._closed
                and not self._responses_start_unseen
            ):
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
                    AnomalyKind.HTTP_INTERNAL_ERROR,
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
        if self.h2 is not None:
            self._closed = True
            return self.h2.close(frame, timestamp)
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
                Anomaly(
                    AnomalyKind.HTTP_INTERNAL_ERROR,
                    f"close failed: {error!r}",
                    frame,
                    self.connection,
                )
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
                    AnomalyKind.HTTP_ROLES_SWAPPED,
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
            self._responses.start_unseen()
            self._responses_start_unseen = True
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
            if not is_request and self._responses_start_unseen:
                self._responses_start_unseen = False
                self._response_gap = _ResponseGap(event.first_frame, 0, False, start=True)
            events = parser.feed(event.data, event.first_frame, event.frame, event.timestamp)
            if events:
                self._apply(events, Role.REQUEST if is_request else Role.RESPONSE, out)
        elif isinstance(event, StreamGap):
            is_request = (event.direction is Direction.TO_SERVER) != self.swapped
            parser = requests if is_request else responses
            room, at_boundary = parser.gap_room(event.length)
            events = parser.gap(event.length, event.frame, event.timestamp)
            # What the gap ended (a message cut short) is placed first; the
            # hole's own effect concerns the messages after it.
            self._apply(events, Role.REQUEST if is_request else Role.RESPONSE, out)
            if is_request:
                # A hole that may hold whole requests (their answers follow).
                self._request_gap = room >= MIN_REQUEST and at_boundary
            else:
                self._note_response_gap(event.frame, room, at_boundary)
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
                if self._request_gap and item.skipped_after_gap == 0:
                    # The hole before this request ended where it begins, so it
                    # held one request or more (unseen): its answer comes first.
                    # How many is not known: the pairing is uncertain from here.
                    self._responses.push_method("")
                    slots.append(_Slot(request_done=True, method="?", pairing=Pairing.UNCERTAIN))
                    self._uncertain = True
                self._request_gap = False
                self._responses.push_method(item.method)
                if len(slots) < 100000:
                    slots.append(
                        _Slot(
                            method=item.method,
                            head_frame=item.frame,
                            expects_continue=item.expects_continue,
                        )
                    )
                continue
            message = item.message
            if isinstance(message, HttpRequest):
                slot = next((s for s in slots if not s.request_done and s.method), None)
                if slot is None:
                    slot = _Slot(method=message.method, head_frame=message.head_frame)
                    slots.append(slot)
                slot.request = message
                slot.request_done = True
            else:
                self._place_response(message, item)
        if self._upgrade is not None:
            self._start_h2(out)
            return
        out += self._flush(everything=False)

    # -- h2c upgrade ---------------------------------------------------------------------

    def _start_h2(self, out: list[Exchange]) -> None:
        """RFC 7540 section 3.2 (kept by RFC 9113 section 3.1's reference): after
        the 101, both sides speak HTTP/2; the upgraded request is stream 1, its
        response comes in HTTP/2 frames. The exchanges before it are handed on;
        the bytes that came with the 101 are the first HTTP/2 bytes."""
        slot, self._upgrade = self._upgrade, None
        assert slot is not None and self._requests is not None and self._responses is not None
        self._slots.remove(slot)
        out += self._flush(everything=True)
        h2 = Http2Connection(self.connection, self._request_direction())
        h2.upgraded(slot.request, slot.response, self._index)
        self.h2 = h2
        for parser, direction in (
            (self._responses, self._response_direction()),
            (self._requests, self._request_direction()),
        ):
            if parser.tunnel_data:
                first, frame, timestamp = parser.tunnel_frames
                data = bytes(parser.tunnel_data)
                parser.tunnel_data = bytearray()
                event = StreamData(self.connection, direction, data, first, frame, timestamp)
                out += h2.feed(event)

    def _after_upgrade(self, event: StreamEvent) -> list[Exchange]:
        assert self.h2 is not None
        if isinstance(event, ConnectionClosed):
            self._closed = True
        out = self.h2.feed(event)
        self.anomalies += self.h2.anomalies
        self.h2.anomalies = []
        return out

    # -- pairing after a gap in the responses ---------------------------------------------

    def _note_response_gap(self, frame: int, room: int, at_boundary: bool) -> None:
        if room <= 0:
            return  # the gap lies inside the body in progress: nothing can hide in it
        pending = self._response_gap
        if pending is not None:
            # Two gaps before the next response: one larger hole, proved later.
            room += pending.room
            at_boundary = pending.at_boundary and at_boundary
        self._response_gap = _ResponseGap(frame, room, at_boundary)

    def _realign(self, response: HttpResponse, item: MessageComplete) -> Pairing:
        """The first response after a gap that may hide responses: how many of
        the waiting requests were answered inside the gap, from what TCP knows.

        - at most the requests whose head was complete before the gap became
          certain (a response cannot answer a request the server had not got,
          and the client had acknowledged the lost bytes by then), at most one
          per MIN_RESPONSE lost bytes, and fewer than the requests sent before
          this response began (it answers one of those);
        - at least one when the lost bytes begin where a response ended and this
          response begins where they end (bytes between responses are responses)
          and the first request waiting did not ask for 100-continue (then the
          gap may hold only an interim answer).

        When the bounds agree the pairing is proved (REALIGNED). Otherwise the
        largest count is taken: this response answers the latest request that
        could have been answered, which is right for every client that waits
        for a response before its next request (browsers and HTTP libraries do
        not pipeline; Wireshark pairs the same way), and the pairing is marked
        UNCERTAIN. Cost: one pass over the waiting requests."""
        gap = self._response_gap
        assert gap is not None
        self._response_gap = None
        waiting = [s for s in self._slots if s.response is None and not s.lost]
        before_gap = 0
        for slot in waiting:
            if slot.head_frame and slot.head_frame >= gap.frame:
                break
            before_gap += 1
        sent_before = self._sent_before(waiting, response)
        if gap.start:
            room = 1 if item.skipped_after_gap else 0  # one tail at most, none if nothing skipped
        else:
            room = gap.room // MIN_RESPONSE
        most = min(before_gap, room, max(sent_before - 1, 0))
        least = int(
            not gap.start
            and gap.at_boundary
            and item.skipped_after_gap == 0
            and gap.room >= MIN_RESPONSE
            and bool(waiting)
            and not waiting[0].expects_continue
        )
        for slot in waiting[:most]:
            slot.lost = True
            slot.pairing = Pairing.RESPONSE_LOST
        if least == most:
            self._uncertain = False
            return Pairing.REALIGNED if most else Pairing.IN_ORDER
        self._uncertain = True
        return Pairing.UNCERTAIN

    def _narrow(self, response: HttpResponse) -> Pairing:
        """After an uncertain re-alignment, a later response: another alignment
        would pair it with a later request, which the client must then have
        sent before this response began (pipelining). If only one request was
        waiting when it began, no other alignment fits: sure again."""
        waiting = [s for s in self._slots if s.response is None and not s.lost]
        if self._sent_before(waiting, response) <= 1:
            self._uncertain = False
            return Pairing.IN_ORDER
        return Pairing.UNCERTAIN

    @staticmethod
    def _sent_before(waiting: list[_Slot], response: HttpResponse) -> int:
        """How many of the waiting requests were sent before `response` began
        (one whose head was not seen counts: it was sent before, or lost)."""
        count = 0
        for slot in waiting:
            if slot.head_frame and slot.head_frame > response.frame:
                break
            count += 1
        return count

    def _place_response(self, response: HttpResponse, item: MessageComplete) -> None:
        if self._response_gap is not None:
            pairing = self._realign(response, item)
        elif self._uncertain:
            pairing = self._narrow(response)
        else:
            pairing = Pairing.IN_ORDER
        slot = next((s for s in self._slots if s.response is None and not s.lost), None)
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
        slot.pairing = pairing
        if slot.request is None and not slot.method:
            slot.request_done = True
        method = slot.method or (slot.request.method if slot.request else "")
        if response.status == 101 or (method == "CONNECT" and 200 <= response.status < 300):
            # RFC 9110 section 9.3.6 / 15.2.2: the connection becomes a tunnel.
            assert self._requests is not None
            h2c = response.status == 101 and _upgrades_to_h2c(slot.request, response)
            self._requests.enter_tunnel(keep=h2c)
            if h2c:
                self._upgrade = slot

    def _flush(self, everything: bool) -> list[Exchange]:
        out: list[Exchange] = []
        slots = self._slots
        while slots:
            slot = slots[0]
            answered = slot.response is not None or slot.lost
            if not everything and not (answered and slot.request_done):
                break
            slots.pop(0)
            out.append(
                make_exchange(
                    connection=self.connection,
                    index=self._index,
                    request=slot.request,
                    response=slot.response,
                    interim=tuple(slot.interim or ()),
                    pairing=slot.pairing,
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


def _upgrades_to_h2c(request: HttpRequest | None, response: HttpResponse) -> bool:
    """A 101 whose Upgrade names h2c, answering a request that asked for it
    (RFC 7540 section 3.2: `Upgrade: h2c` with an HTTP2-Settings header)."""
    chosen = (response.header("Upgrade") or "").strip().lower()
    if chosen != "h2c":
        return False
    asked = (request.header("Upgrade") or "") if request is not None else ""
    return request is None or "h2c" in asked.lower()


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
