"""Ladder diagrams of the HTML report, as data ready to draw in SVG.

This module owns which connections are drawn together (one story per set of
connections a finding, a split handshake or a proxy relay ties together, with
the KDC exchanges behind their Negotiate steps), which part each address
plays (client, proxy, server, KDC), where each arrow goes and the id each
arrow has in the page. Pure functions over the Report model; the template
only places what is computed here.
Invariants: one arrow per captured message, each with an id unique in the
page; every string is made visible (authtrace.visible) before it leaves this
module, and the autoescaping template escapes it; the work is bounded
(MAX_STORIES ladders, MAX_ARROWS arrows each, MAX_ROWS rows of details), and
whatever is left out is counted, never silently dropped.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from authtrace.auth.render import describe_step
from authtrace.handshake.links import HandshakeView, StepRef
from authtrace.handshake.model import AuthExchange, Outcome, Realm
from authtrace.http.messages import Exchange, HttpConnection, HttpRequest, HttpResponse, Pairing
from authtrace.http2.model import Side
from authtrace.iis.category import LoggedLine
from authtrace.kerberos.kdc import KdcExchange
from authtrace.report.as_text import verdict_words
from authtrace.report.connections import LOST_TEXT, auth_entry, pairing_note, stream_note
from authtrace.report.summary import authenticates
from authtrace.report.tls import binding_text, channel_bindings, facts_text
from authtrace.tcp.events import CloseReason, Direction
from authtrace.visible import visible
from authtrace.words import counted

MAX_STORIES = 40  # ladders drawn per report; the others are counted
MAX_CONNECTIONS_PER_GROUP = 3  # connections drawn of one occurrence that names many
MAX_CONNECTIONS_PER_STORY = 12  # a relay or split chain through a busy proxy is cut here
MAX_ARROWS = 240  # arrows per ladder
MAX_ROWS = 400  # rows of one message's details; the decoded dicts are already depth-bounded
PAGE_WIDTH = 1160  # pixels a ladder may take before it scrolls (the page is 1200 wide)
LANE_GAP = 430  # pixels between two lanes, at most
MIN_LANE_GAP = 300  # and at least: more lanes than fit make the ladder scroll sideways
FIRST_LANE = 190  # x of the first lane; the gutter on its left names each arrow's connection
ROW = 34  # pixels per arrow
TOP = 56  # room for the lane heads
CHAR_WIDTH = 6.7  # pixels per character of the 11px monospace labels
_BODY_CHARS = 300  # characters of an error page shown in a response's details

# Headers shown with their value in a message's details: who sent it and
# through what (never a credential, a cookie or an application header, which
# may carry a key: those are listed by name only).
_CONTEXT_HEADERS = frozenset(
    {
        "host",
        "user-agent",
        "via",
        "x-forwarded-for",
        "forwarded",
        "connection",
        "proxy-connection",
        "server",
        "persistent-auth",
        "x-powered-by",
        "content-type",
        "content-length",
        "transfer-encoding",
    }
)
_AUTH_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "www-authenticate", "proxy-authenticate"}
)

FrameNames = Callable[[int], str]


def _hash(number: int) -> str:
    return f"#{number}"


class Role(enum.Enum):
    """The part an address plays in one story."""

    CLIENT = "client"
    PROXY = "proxy"
    SERVER = "server"
    KDC = "KDC"


class Tone(enum.Enum):
    """How an arrow's verdict is coloured; its words always say the same."""

    PLAIN = "plain"
    NORMAL = "normal"
    FAILURE = "failure"
    INCOMPLETE = "incomplete"
    ACCEPTED = "accepted"


@dataclass(frozen=True, slots=True)
class Lane:
    """address: an IP address, or address:port where one machine is both ends
    of a connection (a loopback call); roles: what it is in this story."""

    address: str
    roles: tuple[Role, ...]
    x: int

    @property
    def heading(self) -> str:
        return " / ".join(role.value for role in self.roles)


@dataclass(frozen=True, slots=True)
class Detail:
    """One block of a message's details: its summary line and (key, value)
    rows, nested rows indented by depth."""

    summary: str
    rows: tuple[tuple[int, str, str], ...]


@dataclass(frozen=True, slots=True)
class Arrow:
    """One message. anchor: its id in the page (unique: "f12", "f12-2" for a
    second message completed by frame 12); frame is Wireshark's number, name
    how the report writes it ("#12", "a.pcap#12"); y its row; label is cut to
    fit and title holds it whole; verdict is words (colour follows tone),
    verdict_label the same cut to fit;
    gutter names its connection ("conn 3") or "KDC"."""

    anchor: str
    frame: int
    name: str
    x1: int
    x2: int
    y: int
    label: str
    title: str
    verdict: str
    verdict_label: str
    tone: Tone
    gutter: str
    connection: int | None
    details: tuple[Detail, ...]
    event: bool = False  # the FIN or RST closing a connection, drawn on its sender's lane

    @property
    def anchor_x(self) -> int:
        return (self.x1 + self.x2) // 2


@dataclass(frozen=True, slots=True)
class Ladder:
    """One story: connections drawn together, lanes left to right, arrows downward."""

    number: int
    connections: tuple[int, ...]
    lanes: tuple[Lane, ...]
    arrows: tuple[Arrow, ...]
    arrows_left_out: int
    notes: tuple[str, ...]
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Ladders:
    """drawn: the ladders; left_out_connections: authenticating connections
    not drawn; anchors: frame -> id of the first arrow showing it (evidence
    links go there); ladder_of: connection -> number of the ladder drawing it."""

    drawn: tuple[Ladder, ...]
    left_out_connections: int
    anchors: dict[int, str]
    ladder_of: dict[int, int]


def build_ladders(
    view: HandshakeView,
    named: list[tuple[int, ...]],
    show_secrets: bool,
    draw_all: bool = False,
    name: FrameNames = _hash,
    kdc: tuple[KdcExchange, ...] = (),
    cited: frozenset[int] = frozenset(),
    logged: Mapping[tuple[int, int], LoggedLine] | None = None,
    with_auth: int | None = None,
) -> Ladders:
    """Ladders for the connection groups in `named` (one group per occurrence a
    finding draws, in the findings' order: a folded finding draws its first
    occurrences and its last, `Finding.examples`), joined where a split
    handshake or a proxy relay ties two connections together; with draw_all,
    every connection that carried authentication. name: how a frame is
    written (Report.frame_name); the exchanges of `kdc` whose frames are
    `cited` by a finding but drawn in no ladder get a ladder of their own (a
    KDC error with no HTTP behind it). logged: the IIS log line of each
    exchange the log recorded (its triple and category in the verdicts).
    with_auth: how many of the view's connections carried authentication,
    when the caller counted them (report/summary.py HostTally); else a walk
    of every timeline counts the ones left out. Cost: linear in the timelines,
    the links, the KDC exchanges and the arrows drawn."""
    parent: dict[int, int] = {}
    order: list[int] = []

    def find(item: int) -> int:
        root = item
        while parent[root] != root:
            root = parent[root]
        while parent[item] != root:  # path compression keeps later finds short
            parent[item], item = root, parent[item]
        return root

    def add(connection: int) -> None:
        if connection not in parent:
            parent[connection] = connection
            order.append(connection)

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    for group in named:
        kept = [c for c in group[:MAX_CONNECTIONS_PER_GROUP] if c in view.by_id]
        for connection in kept:
            add(connection)
        for a, b in zip(kept, kept[1:], strict=False):
            union(a, b)
    if draw_all:
        for timeline in view.timelines:
            if authenticates(timeline):
                add(timeline.connection.id)
    # The other connections of a story: the legs of a split handshake and the
    # two sides of a proxy relay, where one of them is drawn.
    ties = [(s.challenge.connection, s.authenticate.connection) for s in view.splits]
    ties.extend((up.connection, front.connection) for up, front in view.fronts.items())
    for a, b in ties:
        if (a in parent) != (b in parent) and a in view.by_id and b in view.by_id:
            add(b if a in parent else a)
        if a in parent and b in parent:
            union(a, b)
    stories: dict[int, list[int]] = {}
    for connection in order:
        stories.setdefault(find(connection), []).append(connection)
    drawn: list[Ladder] = []
    anchors: dict[int, str] = {}
    used: dict[int, int] = {}
    for members in stories.values():
        if len(drawn) >= MAX_STORIES:
            break
        chosen = sorted(members)[:MAX_CONNECTIONS_PER_STORY]
        ladder = _ladder(len(drawn) + 1, chosen, view, show_secrets, name, used, logged=logged)
        drawn.append(ladder)
        for arrow in ladder.arrows:
            anchors.setdefault(arrow.frame, arrow.anchor)
    alone = tuple(
        k for k in kdc if {k.request_frame, k.reply_frame} & cited and not
        {k.request_frame, k.reply_frame} & anchors.keys()
    )[: MAX_ARROWS // 2]  # fmt: skip
    if alone:
        ladder = _ladder(len(drawn) + 1, [], view, show_secrets, name, used, alone)
        drawn.append(ladder)
        for arrow in ladder.arrows:
            anchors.setdefault(arrow.frame, arrow.anchor)
    ladder_of = {c: ladder.number for ladder in drawn for c in ladder.connections}
    if with_auth is None:
        left_out = sum(
            1 for t in view.timelines if authenticates(t) and t.connection.id not in ladder_of
        )
    else:
        # Only the drawn connections are read again (a spilled one costs a read).
        left_out = with_auth - sum(1 for c in ladder_of if authenticates(view.by_id[c]))
    return Ladders(tuple(drawn), left_out, anchors, ladder_of)


@dataclass(frozen=True, slots=True)
class _Message:
    time: float
    frame: int
    source: str
    target: str
    label: str
    verdict: str
    tone: Tone
    gutter: str
    connection: int | None
    details: tuple[Detail, ...]
    event: bool = False  # not a message: the FIN or RST that closed the connection


def _ladder(
    number: int,
    members: list[int],
    view: HandshakeView,
    show_secrets: bool,
    name: FrameNames,
    used: dict[int, int],
    kdc_alone: tuple[KdcExchange, ...] = (),
    logged: Mapping[tuple[int, int], LoggedLine] | None = None,
) -> Ladder:
    """One story's ladder: the members' messages, the KDC exchanges behind
    their steps, and kdc_alone (KDC exchanges a finding cites that no drawn
    HTTP step leads to)."""
    messages: list[_Message] = []
    clients: set[str] = set()
    servers: set[str] = set()
    kdcs: set[str] = set()
    notes: list[str] = []
    seen_kdc: set[tuple[int | None, int | None]] = set()
    for connection_id in members:
        timeline = view.by_id[connection_id]
        connection = timeline.connection
        client, server = _ends(connection)
        clients.add(client)
        servers.add(server)
        notes.extend(_connection_notes(connection, name))
        steps: dict[int, list[tuple[int, AuthExchange]]] = {}
        for position, step in enumerate(timeline.steps):
            steps.setdefault(step.exchange.index, []).append((position, step))
        for exchange in connection.exchanges:
            mine = [s for _, s in steps.get(exchange.index, [])]
            messages.extend(
                _exchange_messages(
                    exchange,
                    mine,
                    client,
                    server,
                    show_secrets,
                    name,
                    logged.get((exchange.connection, exchange.index)) if logged else None,
                )
            )
            for position, _ in steps.get(exchange.index, []):
                for kdc in view.kdc_for(StepRef(connection.id, position)):
                    key = (kdc.request_frame, kdc.reply_frame)
                    if key in seen_kdc:
                        continue
                    seen_kdc.add(key)
                    kdcs.add(kdc.kdc.ip)
                    clients.add(kdc.client.ip)
                    messages.extend(_kdc_messages(kdc, show_secrets, name))
        closing = _close_event(connection, client, server, name)
        if closing is not None:
            messages.append(closing)
    for kdc in kdc_alone:
        kdcs.add(kdc.kdc.ip)
        clients.add(kdc.client.ip)
        messages.extend(_kdc_messages(kdc, show_secrets, name))
    lanes = _lanes(clients, servers, kdcs)
    x_of = {lane.address: lane.x for lane in lanes}
    messages.sort(key=lambda m: (m.time, m.frame))
    left_out = max(0, len(messages) - MAX_ARROWS)
    arrows = []
    for row, message in enumerate(messages[:MAX_ARROWS]):
        source, target = visible(message.source), visible(message.target)
        span = abs(x_of[target] - x_of[source]) or MIN_LANE_GAP
        seen = used.get(message.frame, 0) + 1
        used[message.frame] = seen
        arrows.append(
            Arrow(
                anchor=f"f{message.frame}" if seen == 1 else f"f{message.frame}-{seen}",
                frame=message.frame,
                name=visible(name(message.frame)),
                x1=x_of[source],
                x2=x_of[target],
                y=TOP + row * ROW + ROW // 2,
                label=_cut(message.label, span),
                title=message.label,
                verdict=message.verdict,
                verdict_label=_cut(message.verdict, span),
                tone=message.tone,
                gutter=message.gutter,
                connection=message.connection,
                details=message.details,
                event=message.event,
            )
        )
    last = lanes[-1]
    width = max(last.x + max(80, int(len(last.address) * CHAR_WIDTH / 2) + 12), 640)
    height = TOP + len(arrows) * ROW + 24
    return Ladder(
        number, tuple(members), lanes, tuple(arrows), left_out, tuple(notes), width, height
    )


def _close_event(
    connection: HttpConnection, client: str, server: str, name: FrameNames
) -> _Message | None:
    """The FIN or RST that ended a connection, on the lane of the side that
    sent it (findings cite it: a handshake closed midway)."""
    if connection.close_reason not in (CloseReason.FIN, CloseReason.RST):
        return None
    if not connection.close_frame:
        return None
    kind = connection.close_reason.value.upper()
    if connection.closed_by is Direction.TO_SERVER:
        lane, who = client, "from the client"
    elif connection.closed_by is Direction.TO_CLIENT:
        lane, who = server, "from the server"
    else:
        lane, who = server, "(sender not seen)"
    return _Message(
        connection.last_timestamp,
        connection.close_frame,
        lane,
        lane,
        visible(f"{name(connection.close_frame)} {kind} {who}"),
        "",
        Tone.PLAIN,
        f"conn {connection.id}",
        connection.id,
        (),
        event=True,
    )


def _ends(connection: HttpConnection) -> tuple[str, str]:
    """The lanes of a connection's client and server: their addresses, or
    address:port when both ends are one machine (a loopback call)."""
    client, server = connection.client, connection.server
    if client.ip == server.ip:
        return str(client), str(server)
    return client.ip, server.ip


def _connection_notes(connection: HttpConnection, name: FrameNames) -> list[str]:
    """The connection as the text ladder heads it, with its TLS facts and
    what its NTLM channel bindings prove (report/tls.py words)."""
    first, last = name(connection.first_frame), name(connection.last_frame)
    notes = [
        visible(
            f"connection {connection.id}: {connection.client} -> {connection.server}, "
            f"frames {first.removeprefix('#')}-{last.rpartition('#')[2]}, "
            f"{'SYN seen' if connection.syn_seen else 'started before the capture'}, "
            f"{connection.close_reason.value.replace('_', ' ')}"
        )
    ]
    if connection.tls is not None:
        notes.append(
            visible(f"connection {connection.id}: decrypted TLS: " + facts_text(connection.tls))
        )
        bindings = binding_text(channel_bindings(connection))
        if bindings:
            notes.append(visible(f"connection {connection.id}: {bindings}"))
    return notes


def _exchange_messages(
    exchange: Exchange,
    steps: list[AuthExchange],
    client: str,
    server: str,
    show_secrets: bool,
    name: FrameNames,
    logged: LoggedLine | None = None,
) -> list[_Message]:
    """The request and the response of one exchange, as arrows to draw."""
    out: list[_Message] = []
    request, response = exchange.request, exchange.response
    gutter = f"conn {exchange.connection}"
    if request is not None:
        said = "; ".join(describe_step(s.credentials) for s in steps if s.credentials)
        proxy = any(s.realm is Realm.PROXY for s in steps)
        lost = response is None and exchange.pairing is Pairing.RESPONSE_LOST
        details = [
            _detail(auth_entry(s.credentials, s.realm.value, show_secrets))
            for s in steps
            if s.credentials is not None
        ]
        details.append(_headers(request))
        out.append(
            _Message(
                request.timestamp,
                request.shown_frame,
                client,
                server,
                visible(
                    f"{name(request.shown_frame)} {request.method} {request.uri}"
                    + (f" [{said}]" if said else "")
                    + (" (proxy)" if proxy else "")
                    # No arrow for an answer not captured: the request says so.
                    + (f" {LOST_TEXT}" if lost else "")
                    + stream_note(exchange.stream)
                ),
                "",
                Tone.PLAIN,
                gutter,
                exchange.connection,
                tuple(details),
            )
        )
    for interim in exchange.interim:
        out.append(
            _Message(
                interim.timestamp,
                interim.shown_frame,
                server,
                client,
                visible(f"{name(interim.shown_frame)} {interim.status} {interim.reason}"),
                "",
                Tone.PLAIN,
                gutter,
                exchange.connection,
                (_headers(interim),),
            )
        )
    if response is not None:
        offered = "; ".join(describe_step(c) for s in steps for c in s.challenges)
        verdicts = [v for s in steps if (v := verdict_words(s, logged))]
        details = [
            _detail(auth_entry(c, s.realm.value, show_secrets)) for s in steps for c in s.challenges
        ]
        details.append(_headers(response))
        out.append(
            _Message(
                response.timestamp,
                response.shown_frame,
                server,
                client,
                visible(
                    f"{name(response.shown_frame)} {response.status} {response.reason}"
                    + (f" [{offered}]" if offered else "")
                    + pairing_note(exchange)
                    + stream_note(exchange.stream)
                ),
                visible("; ".join(verdicts)),
                _tone(steps),
                gutter,
                exchange.connection,
                tuple(details),
            )
        )
    reset = exchange.stream.reset if exchange.stream is not None else None
    if reset is not None and response is None:
        # A stream ended by RST_STREAM (IIS's HTTP_1_1_REQUIRED to NTLM over
        # HTTP/2): an arrow from whichever side reset it, never "no response".
        by_client = reset.by is Side.CLIENT
        out.append(
            _Message(
                reset.timestamp or (request.timestamp if request is not None else 0.0),
                reset.frame,
                client if by_client else server,
                server if by_client else client,
                visible(
                    f"{name(reset.frame)} RST_STREAM {reset.name}" + stream_note(exchange.stream)
                ),
                f"stream reset by the {reset.by.value}",
                Tone.PLAIN if reset.benign else Tone.FAILURE,
                gutter,
                exchange.connection,
                (),
            )
        )
    return out


def _kdc_messages(kdc: KdcExchange, show_secrets: bool, name: FrameNames) -> list[_Message]:
    """A KDC request and its reply as arrows; both carry the exchange's record."""
    out: list[_Message] = []
    kind = kdc.request_type.value if kdc.request_type else "request"
    details = (
        _detail({"summary": f"KDC exchange, {kdc.transport.value}", **kdc.to_dict(show_secrets)}),
    )
    if kdc.request_frame is not None:
        out.append(
            _Message(
                kdc.request_time or 0.0,
                kdc.request_frame,
                kdc.client.ip,
                kdc.kdc.ip,
                visible(f"{name(kdc.request_frame)} {kind} for {kdc.service}"),
                "",
                Tone.PLAIN,
                "KDC",
                None,
                details,
            )
        )
    if kdc.reply_frame is not None:
        answer = kdc.error_name or kdc.result.value
        out.append(
            _Message(
                kdc.reply_time or 0.0,
                kdc.reply_frame,
                kdc.kdc.ip,
                kdc.client.ip,
                visible(f"{name(kdc.reply_frame)} {answer}"),
                visible(f"KRB-ERROR {kdc.error_code}") if kdc.error_name else "",
                Tone.FAILURE if kdc.error_name else Tone.PLAIN,
                "KDC",
                None,
                details,
            )
        )
    return out


def _lanes(clients: set[str], servers: set[str], kdcs: set[str]) -> tuple[Lane, ...]:
    """Clients left, proxies (an address that is a server on one connection and
    a client on another), servers, then KDCs on the right. A server that is
    also the KDC (IIS on a domain controller) is one lane with both roles."""
    proxies = clients & servers
    ordered: list[tuple[str, tuple[Role, ...]]] = [
        *[(a, (Role.CLIENT,)) for a in sorted(clients - servers - kdcs)],
        *[(a, (Role.PROXY,)) for a in sorted(proxies - kdcs)],
        *[(a, (Role.SERVER,)) for a in sorted(servers - clients - kdcs)],
        *[(a, (Role.SERVER, Role.KDC)) for a in sorted(servers & kdcs)],
        *[(a, (Role.KDC,)) for a in sorted(kdcs - servers)],
    ]
    room = (PAGE_WIDTH - FIRST_LANE - 150) // max(1, len(ordered) - 1)
    gap = max(MIN_LANE_GAP, min(LANE_GAP, room))
    return tuple(
        Lane(visible(address), roles, FIRST_LANE + index * gap)
        for index, (address, roles) in enumerate(ordered)
    )


def _tone(steps: list[AuthExchange]) -> Tone:
    outcomes = {s.outcome for s in steps}
    if Outcome.FAILURE in outcomes:
        return Tone.FAILURE
    if Outcome.INCOMPLETE in outcomes:
        return Tone.INCOMPLETE
    if Outcome.NORMAL in outcomes:
        return Tone.NORMAL
    if any(verdict_words(s) for s in steps):
        return Tone.ACCEPTED
    return Tone.PLAIN


def _cut(text: str, span: int) -> str:
    """The label cut to the arrow's length (its title keeps it whole)."""
    fits = max(12, int((span - 16) / CHAR_WIDTH))
    return text if len(text) <= fits else text[: fits - 1] + "\u2026"


def _headers(message: HttpRequest | HttpResponse) -> Detail:
    """Who sent a message and through what: the context headers with their
    values, every other header by name only (its value may be a secret), and
    the start of an error page."""
    rows: list[tuple[int, str, str]] = []
    others: list[str] = []
    for header in message.headers:
        lowered = header.name.lower()
        if lowered in _CONTEXT_HEADERS:
            rows.append((0, visible(header.name), visible(header.value)))
        elif lowered not in _AUTH_HEADERS:
            others.append(visible(header.name))
        if len(rows) >= MAX_ROWS:
            break
    if others:
        rows.append((0, "other headers (values not shown)", ", ".join(others[:60])))
    if message.cut_headers:
        rows.append(
            (
                0,
                "headers seen but not kept",
                ", ".join(visible(c.name) for c in message.cut_headers[:60]),
            )
        )
    if isinstance(message, HttpResponse) and message.body and message.status >= 400:
        text = " ".join(message.body[: _BODY_CHARS * 4].decode("latin-1").split())
        cut = "\u2026" if len(text) > _BODY_CHARS else ""
        rows.append(
            (0, f"body ({message.body_size} bytes), as text", visible(text[:_BODY_CHARS]) + cut)
        )
    if isinstance(message, HttpRequest):
        head = f"{message.method} {message.uri} {message.version}"
    else:
        head = f"{message.version} {message.status} {message.reason}"
    return Detail(visible(head), tuple(rows))


def _detail(entry: dict[str, object]) -> Detail:
    """The JSON form of a decoded header or KDC exchange (already redacted by
    its to-dict function) as rows."""
    rows: list[tuple[int, str, str]] = []

    def walk(value: object, key: str, depth: int) -> None:
        if len(rows) >= MAX_ROWS:
            return
        if isinstance(value, dict):
            if key:
                rows.append((depth, visible(key), ""))
            for field_name, item in value.items():
                walk(item, str(field_name), depth + (1 if key else 0))
        elif isinstance(value, list):
            if not value:
                rows.append((depth, visible(key), "(none)"))
                return
            rows.append((depth, visible(key), counted(len(value), "item")))
            for index, item in enumerate(value):
                walk(item, f"[{index}]", depth + 1)
        elif value is not None:
            rows.append((depth, visible(key), visible(str(value))))

    summary = str(entry.get("summary", ""))
    walk({k: v for k, v in entry.items() if k != "summary"}, "", 0)
    if len(rows) >= MAX_ROWS:
        rows.append((0, "\u2026", "more fields not shown (see --json)"))
    return Detail(visible(summary), tuple(rows))
