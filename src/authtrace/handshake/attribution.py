"""Behind a proxy, whose request is this? Attributes each upstream exchange to
the front-end exchange it relays when both legs are in the capture, and gives
every judged step the client it was made for (DESIGN: "one authenticated
upstream connection carrying requests of different users").

Owns: that attribution and the client identity of a step; links.py and the
rules ask here instead of reading X-Forwarded-For or addresses themselves.

Invariant: an exchange is attributed only on evidence that it is a proxy's copy:
the same method and the same resource, sent while the front request was waiting
for its answer (and answered before it), on a hop a proxy makes: the upstream
connection comes from the front connection's server address, or its
X-Forwarded-For / Forwarded names the front connection's client. The same
resource is the same path, else (a path-rewriting reverse proxy: Apache
`ProxyPass /app/ http://backend/`, an nginx location with a URI in proxy_pass)
one path ending with the other at a "/" with the same query, and the upstream
request's X-Forwarded-Host, if any, naming the front request's Host. Each front
exchange is relayed at most once, and an exact path is preferred. Without a
front leg the identity is the first X-Forwarded-For / Forwarded address, else
the connection's client address.

Cost: O(n log n) to index the n requests by (method, path, client address) and
(method, path, server address), and again without the path; O(log n + r) per
request, r being the unclaimed requests of the same client (or to the same
proxy address) for that path inside `FRONT_WINDOW`, or at most `MAX_REWRITE_WALK`
requests of that method when the path was rewritten.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from authtrace.handshake.index import TimeIndex
from authtrace.handshake.timeline import ConnectionTimeline
from authtrace.http.messages import Exchange, HttpConnection, HttpRequest

# How long a proxy may take to relay a request upstream.
FRONT_WINDOW = 30.0
# At most this many X-Forwarded-For entries are read (the header is client-controlled).
MAX_FORWARDED = 8
# At most this many front requests are looked at for a rewritten path.
MAX_REWRITE_WALK = 64
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
    (de facto), else Forwarded's for= (RFC 7239 section 5.2). One pass over
    the headers (names compared case-insensitively, RFC 9110 section 5.1)."""
    if request is None:
        return []
    forwarded_for: str | None = None
    forwarded: str | None = None
    for header in request.headers:
        name = header.name
        size = len(name)
        if size == _FOR_SIZE and forwarded_for is None and name.lower() == "x-forwarded-for":
            forwarded_for = header.value
        elif size == _FORWARDED_SIZE and forwarded is None and name.lower() == "forwarded":
            forwarded = header.value
    if forwarded_for:
        found = [part.strip() for part in forwarded_for.split(",", MAX_FORWARDED)]
        return [address for address in found[:MAX_FORWARDED] if address]
    if forwarded:
        return _FORWARDED_FOR.findall(forwarded[:1024])[:MAX_FORWARDED]
    return []


# str.lower keeps the length of latin-1 text (how header names are decoded),
# so a name of another length is passed over without lower-casing it.
_FOR_SIZE = len("x-forwarded-for")
_FORWARDED_SIZE = len("forwarded")


def _path(uri: str) -> str:
    """The path and query of a request target (absolute-form loses scheme and host)."""
    if "://" in uri:
        rest = uri.split("://", 1)[1]
        slash = rest.find("/")
        return rest[slash:] if slash >= 0 else "/"
    return uri


def _rewritten(front: HttpRequest, upstream: HttpRequest) -> bool:
    """The upstream request is the front one with its path rewritten by a
    prefix (added or taken away) and nothing else: one path ends with the other
    at a "/", the queries are equal, and X-Forwarded-Host (which Apache and
    nginx set to the front request's Host) does not name another host."""
    front_path, _, front_query = _path(front.uri).partition("?")
    path, _, query = _path(upstream.uri).partition("?")
    if front_query != query or front_path == path:
        return False
    longer, shorter = (front_path, path) if len(front_path) > len(path) else (path, front_path)
    if not shorter.startswith("/") or not longer.endswith(shorter):
        return False
    named = upstream.header("X-Forwarded-Host")
    host = front.header("Host")
    return named is None or host is None or named.split(",")[0].strip() == host


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


@dataclass(frozen=True, slots=True, eq=False)
class _Request:
    """A captured request as attribution reads it, worked out once."""

    connection: HttpConnection
    exchange: Exchange
    request: HttpRequest
    key: tuple[str, str]  # (method, path)
    forwarded: list[str]  # forwarded_clients(request)


def _requests(timelines: list[ConnectionTimeline]) -> list[_Request]:
    """Every captured request with its (method, path) key, in connection order."""
    out: list[_Request] = []
    for timeline in timelines:
        connection = timeline.connection
        for exchange in connection.exchanges:
            request = exchange.request
            if request is not None:
                key = (request.method, _path(request.uri))
                out.append(_Request(connection, exchange, request, key, forwarded_clients(request)))
    return out


def attribute_upstream(timelines: list[ConnectionTimeline]) -> dict[ExchangeRef, ExchangeRef]:
    """upstream exchange -> the front exchange it relays (both legs captured)."""
    return _fronts(_requests(timelines))


def identify(timelines: list[ConnectionTimeline]) -> Identities:
    """The client of every exchange of `timelines` (`Identities` over their
    attributed fronts), each request's headers read once for both."""
    requests = _requests(timelines)
    forwarded = {(found.connection.id, found.exchange.index): found.forwarded for found in requests}
    return Identities(timelines, _fronts(requests), forwarded)


def _fronts(requests: list[_Request]) -> dict[ExchangeRef, ExchangeRef]:
    # A front request is only ever looked up by a forwarded address naming its
    # client, or by an upstream client address naming its server: one filed
    # under another address can never be found, so it is not filed (behind one
    # reverse proxy, with only the upstream leg captured, that is every one).
    forwarded_addresses = {address for each in requests for address in each.forwarded}
    client_addresses = {each.connection.client.ip for each in requests}
    by_client: list[tuple[tuple[object, str], float, _Candidate]] = []
    by_server: list[tuple[tuple[object, str], float, _Candidate]] = []
    for each in requests:
        connection, key, when = each.connection, each.key, each.request.timestamp
        candidate = _Candidate(connection, each.exchange)
        client_ip, server_ip = connection.client.ip, connection.server.ip
        # Filed by (method, path) and, for rewritten paths, by method alone.
        if client_ip in forwarded_addresses:
            by_client.append(((key, client_ip), when, candidate))
            by_client.append(((key[0], client_ip), when, candidate))
        if server_ip in client_addresses:
            by_server.append(((key, server_ip), when, candidate))
            by_server.append(((key[0], server_ip), when, candidate))
    if not by_client and not by_server:
        return {}
    filed_clients = {address for (_filed, address), _when, _c in by_client}
    filed_servers = {address for (_filed, address), _when, _c in by_server}
    client_index = TimeIndex(by_client)
    server_index = TimeIndex(by_server)
    fronts: dict[ExchangeRef, ExchangeRef] = {}
    for upstream in requests:
        connection, exchange, request, key = (
            upstream.connection,
            upstream.exchange,
            upstream.request,
            upstream.key,
        )
        addresses = upstream.forwarded
        if connection.client.ip not in filed_servers and not any(
            address in filed_clients for address in addresses
        ):
            continue  # every look-up below would miss
        start, end = request.timestamp - FRONT_WINDOW, request.timestamp

        def accept(
            front: _Candidate, upstream: Exchange = exchange, on: HttpConnection = connection
        ) -> bool:
            return _relays(front, upstream, on)

        def accept_rewritten(
            front: _Candidate, upstream: Exchange = exchange, on: HttpConnection = connection
        ) -> bool:
            front_request = front.exchange.request
            assert front_request is not None and upstream.request is not None
            return _rewritten(front_request, upstream.request) and _relays(front, upstream, on)

        found = None
        for filed, check, limit in (
            (key, accept, None),
            (key[0], accept_rewritten, MAX_REWRITE_WALK),
        ):
            for address in addresses:
                found = client_index.latest((filed, address), start, end, check, limit)
                if found is not None:
                    break
            if found is None:
                found = server_index.latest((filed, connection.client.ip), start, end, check, limit)
            if found is not None:
                break
        if found is None:
            continue
        front_request = found.exchange.request
        assert front_request is not None
        front_key = (front_request.method, _path(front_request.uri))
        for filed in (front_key, front_key[0]):
            client_index.take((filed, found.connection.client.ip), front_request.timestamp, found)
            server_index.take((filed, found.connection.server.ip), front_request.timestamp, found)
        fronts[ExchangeRef(connection.id, exchange.index)] = ExchangeRef(
            found.connection.id, found.exchange.index
        )
    return fronts


class Identities:
    """The client each exchange was made for: the front connection's client when
    the front leg is in the capture, else what the proxy wrote, else the address."""

    __slots__ = ("_fronts", "_clients", "_known", "_forwarded")

    def __init__(
        self,
        timelines: list[ConnectionTimeline],
        fronts: dict[ExchangeRef, ExchangeRef],
        forwarded: dict[tuple[int, int], list[str]] | None = None,
    ) -> None:
        """forwarded: forwarded_clients of each exchange's request by
        (connection id, exchange index), where already read."""
        self._fronts = fronts
        self._forwarded = forwarded or {}
        self._clients = {t.connection.id: t.connection.client.ip for t in timelines}
        # Each exchange's answer, worked out once: links asks for every step
        # (an exchange judged in both realms is asked twice) more than once.
        self._known: dict[tuple[int, int], str] = {}

    def of(self, connection: HttpConnection, exchange: Exchange) -> str:
        mark = (connection.id, exchange.index)
        known = self._known.get(mark)
        if known is None:
            known = self._known[mark] = self._of(connection, exchange)
        return known

    def _of(self, connection: HttpConnection, exchange: Exchange) -> str:
        ref = ExchangeRef(connection.id, exchange.index)
        front = self._fronts.get(ref)
        if front is None:
            forwarded = self._forwarded.get((connection.id, exchange.index))
            if forwarded is None:
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

    @property
    def any_front(self) -> bool:
        """Some upstream exchange was attributed to a captured front one."""
        return bool(self._fronts)

    def front_of(self, connection: int, index: int) -> ExchangeRef | None:
        """The front exchange this upstream exchange relays, if captured."""
        return self._fronts.get(ExchangeRef(connection, index))
