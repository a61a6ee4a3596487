"""Behind a proxy, whose request is this? Attributes each upstream exchange to
the front-end exchange it relays when both legs are in the capture, and gives
every judged step the client it was made for (DESIGN: "one authenticated
upstream connection carrying requests of different users").

Owns: that attribution and the client identity of a step; links.py and the
rules ask here instead of reading X-Forwarded-For or addresses themselves.

Invariant: an exchange is attributed only on evidence that it is a proxy's copy:
the same method and path, sent while the front request was waiting for its answer
(and answered before it), on a hop a proxy makes: the upstream connection comes
from the front connection's server address, or its X-Forwarded-For / Forwarded
names the front connection's client. Each front exchange is relayed at most once.
Without a front leg the identity is the first X-Forwarded-For / Forwarded
address, else the connection's client address.

Cost: O(n log n) to index the n requests by (method, path, client address) and
(method, path, server address); O(log n + r) per request, r being the unclaimed
requests of the same client (or to the same proxy address) for that path inside
`FRONT_WINDOW`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from authtrace.handshake.index import TimeIndex
from authtrace.handshake.timeline import ConnectionTimeline
from authtrace.http.messages import Exchange, HttpConnection, HttpRequest

# How long a proxy may take to relay a request upstream.
FRONT_WINDOW = 30.0
# At most this many X-Forwarded-For entries are read (the header is client-controlled).
MAX_FORWARDED = 8
# RFC 7239 section 4: for=192.0.2.43, for="[2001:db8:cafe::17]:4711"
_FORWARDED_FOR = re.compile(r'for="?\[?([0-9A-Fa-f.:]+?)\]?(?::\d+)?"?(?:[;,\s]|$)', re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ExchangeRef:
    """One exchange: its connection and its index there."""

    connection: int
    index: int


@dataclass(frozen=True, slots=True, eq=False)
class _Candidate:
    """A request that may be the front copy of an upstream one (index entry)."""

    connection: HttpConnection
    exchange: Exchange


def forwarded_clients(request: HttpRequest | None) -> list[str]:
    """The client addresses a proxy wrote, client-most first: X-Forwarded-For
    (de facto), else Forwarded's for= (RFC 7239 section 5.2)."""
    if request is None:
        return []
    forwarded_for = request.header("X-Forwarded-For")
    if forwarded_for:
        found = [part.strip() for part in forwarded_for.split(",", MAX_FORWARDED)]
        return [address for address in found[:MAX_FORWARDED] if address]
    forwarded = request.header("Forwarded")
    if forwarded:
        return _FORWARDED_FOR.findall(forwarded[:1024])[:MAX_FORWARDED]
    return []


def _path(uri: str) -> str:
    """The path and query of a request target (absolute-form loses scheme and host)."""
    if "://" in uri:
        rest = uri.split("://", 1)[1]
        slash = rest.find("/")
        return rest[slash:] if slash >= 0 else "/"
    return uri


def _relays(front: _Candidate, upstream: Exchange, connection: HttpConnection) -> bool:
    """`upstream` (on `connection`) went out while `front` waited for its answer."""
    if front.connection.id == connection.id or front.connection.server == connection.server:
        return False
    front_response = front.exchange.response
    request = upstream.request
    assert request is not None
    if front_response is None:
        return True
    if request.timestamp > front_response.timestamp:
        return False
    answer = upstream.response
    return answer is None or answer.timestamp <= front_response.timestamp


def _requests(
    timelines: list[ConnectionTimeline],
) -> Iterator[tuple[HttpConnection, Exchange, HttpRequest, tuple[str, str]]]:
    """Every captured request with its (method, path) key, in connection order."""
    for timeline in timelines:
        connection = timeline.connection
        for exchange in connection.exchanges:
            request = exchange.request
            if request is not None:
                yield connection, exchange, request, (request.method, _path(request.uri))


def attribute_upstream(timelines: list[ConnectionTimeline]) -> dict[ExchangeRef, ExchangeRef]:
    """upstream exchange -> the front exchange it relays (both legs captured)."""
    by_client: list[tuple[object, float, _Candidate]] = []
    by_server: list[tuple[object, float, _Candidate]] = []
    for connection, exchange, request, key in _requests(timelines):
        candidate = _Candidate(connection, exchange)
        by_client.append(((key, connection.client.ip), request.timestamp, candidate))
        by_server.append(((key, connection.server.ip), request.timestamp, candidate))
    client_index = TimeIndex(by_client)
    server_index = TimeIndex(by_server)
    fronts: dict[ExchangeRef, ExchangeRef] = {}
    for connection, exchange, request, key in _requests(timelines):
        start, end = request.timestamp - FRONT_WINDOW, request.timestamp

        def accept(
            front: _Candidate, upstream: Exchange = exchange, on: HttpConnection = connection
        ) -> bool:
            return _relays(front, upstream, on)

        found = None
        for address in forwarded_clients(request):
            found = client_index.latest((key, address), start, end, accept)
            if found is not None:
                break
        if found is None:
            found = server_index.latest((key, connection.client.ip), start, end, accept)
        if found is None:
            continue
        front_request = found.exchange.request
        assert front_request is not None
        client_index.take((key, found.connection.client.ip), front_request.timestamp, found)
        server_index.take((key, found.connection.server.ip), front_request.timestamp, found)
        fronts[ExchangeRef(connection.id, exchange.index)] = ExchangeRef(
            found.connection.id, found.exchange.index
        )
    return fronts


class Identities:
    """The client each exchange was made for: the front connection's client when
    the front leg is in the capture, else what the proxy wrote, else the address."""

    __slots__ = ("_fronts", "_clients")

    def __init__(
        self, timelines: list[ConnectionTimeline], fronts: dict[ExchangeRef, ExchangeRef]
    ) -> None:
        self._fronts = fronts
        self._clients = {t.connection.id: t.connection.client.ip for t in timelines}

    def of(self, connection: HttpConnection, exchange: Exchange) -> str:
        ref = ExchangeRef(connection.id, exchange.index)
        front = self._fronts.get(ref)
        if front is None:
            forwarded = forwarded_clients(exchange.request)
            return forwarded[0] if forwarded else connection.client.ip
        # Through a chain of proxies to the first hop (bounded: a front is never
        # its own upstream, but a hostile capture could still make a long chain).
        for _hop in range(MAX_FORWARDED):
            further = self._fronts.get(front)
            if further is None:
                break
            front = further
        return self._clients[front.connection]

    def front_of(self, connection: int, index: int) -> ExchangeRef | None:
        """The front exchange this upstream exchange relays, if captured."""
        return self._fronts.get(ExchangeRef(connection, index))
