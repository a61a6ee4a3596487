"""Ladder diagrams of the HTML report, as data ready to draw in SVG.

This module owns which connections are drawn together (one story per set of
connections a finding or a split handshake ties together, with the KDC
exchanges behind their Negotiate steps), which party each address plays
(client, proxy, server, KDC) and where each arrow goes. Pure functions over
the Report model; the template only places what is computed here.
Invariants: every string is made visible (authtrace.visible) before it leaves
this module, the autoescaping template escapes it; the work is bounded
(MAX_STORIES ladders, MAX_ARROWS arrows each), and whatever is left out is
counted, never silently dropped.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from authtrace.auth.render import describe_step
from authtrace.handshake.links import HandshakeView, StepRef
from authtrace.handshake.model import AuthExchange, Outcome, Realm
from authtrace.handshake.timeline import ConnectionTimeline
from authtrace.report.as_text import verdict_words
from authtrace.report.connections import auth_entry
from authtrace.visible import visible

MAX_STORIES = 40  # ladders drawn per report; the others are counted
MAX_CONNECTIONS_PER_FINDING = 3  # a finding met on thousands of connections shows its first ones
MAX_ARROWS = 240  # arrows per ladder
LANE_GAP = 420  # pixels between two lanes
ROW = 34  # pixels per arrow
TOP = 56  # room for the lane heads
_LABEL_CHARS = 62  # characters of an arrow label before it is cut (the full text is its title)


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
    address: str
    role: Role
    x: int


@dataclass(frozen=True, slots=True)
class Detail:
    """One decoded auth header of a message: its summary line and the decoded
    fields as (key, value) rows, nested rows indented by depth."""

    summary: str
    rows: tuple[tuple[int, str, str], ...]


@dataclass(frozen=True, slots=True)
class Arrow:
    """One message: frame is Wireshark's, y its row; label is cut to fit and
    title holds it whole; verdict is words (colour follows tone)."""

    frame: int
    x1: int
    x2: int
    y: int
    label: str
    title: str
    verdict: str
    tone: Tone
    connection: int | None
    details: tuple[Detail, ...]

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
    drawn: tuple[Ladder, ...]
    left_out_connections: int  # authenticating connections not drawn
    frames: frozenset[int]  # every frame that has an arrow (evidence links resolve to these)


def build_ladders(
    view: HandshakeView,
    named: list[tuple[int, ...]],
    show_secrets: bool,
    draw_all: bool = False,
) -> Ladders:
    """Ladders for the connection groups in `named` (one group per finding, in
    the findings' order), joined where a split handshake ties two groups
    together; with draw_all, every connection that carried authentication.
    Cost: linear in the connections named and the arrows drawn."""
    parent: dict[int, int] = {}

    def find(item: int) -> int:
        root = item
        while parent.get(root, root) != root:
            root = parent[root]
        parent[item] = root
        return root

    def union(a: int, b: int) -> None:
        parent.setdefault(a, a)
        parent.setdefault(b, b)
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    order: list[int] = []
    for group in named:
        kept = [c for c in group[:MAX_CONNECTIONS_PER_FINDING] if c in view.by_id]
        for connection in kept:
            if connection not in parent:
                parent[connection] = connection
                order.append(connection)
        for a, b in zip(kept, kept[1:], strict=False):
            union(a, b)
    if draw_all:
        for timeline in view.timelines:
            if _authenticates(timeline) and timeline.connection.id not in parent:
                parent[timeline.connection.id] = timeline.connection.id
                order.append(timeline.connection.id)
    for split in view.splits:
        a, b = split.challenge.connection, split.authenticate.connection
        if a in parent or b in parent:
            if a in view.by_id and b in view.by_id:
                if a not in parent:
                    order.append(a)
                if b not in parent:
                    order.append(b)
                union(a, b)
    stories: dict[int, list[int]] = {}
    for connection in order:
        stories.setdefault(find(connection), []).append(connection)
    drawn: list[Ladder] = []
    frames: set[int] = set()
    for members in stories.values():
        if len(drawn) >= MAX_STORIES:
            break
        ladder = _ladder(len(drawn) + 1, sorted(members), view, show_secrets)
        drawn.append(ladder)
        frames.update(arrow.frame for arrow in ladder.arrows)
    shown = {c for ladder in drawn for c in ladder.connections}
    left_out = sum(
        1 for t in view.timelines if _authenticates(t) and t.connection.id not in shown
    )
    return Ladders(tuple(drawn), left_out, frozenset(frames))


def _authenticates(timeline: ConnectionTimeline) -> bool:
    return any(s.credentials or s.challenges for s in timeline.steps)


@dataclass(frozen=True, slots=True)
class _Message:
    time: float
    frame: int
    source: str
    target: str
    label: str
    verdict: str
    tone: Tone
    connection: int | None
    details: tuple[Detail, ...]


def _ladder(number: int, members: list[int], view: HandshakeView, show_secrets: bool) -> Ladder:
    messages: list[_Message] = []
    clients: set[str] = set()
    servers: set[str] = set()
    kdcs: set[str] = set()
    notes: list[str] = []
    seen_kdc: set[tuple[int | None, int | None]] = set()
    for connection_id in members:
        timeline = view.by_id[connection_id]
        connection = timeline.connection
        client, server = connection.client.ip, connection.server.ip
        clients.add(client)
        servers.add(server)
        notes.append(
            visible(
                f"connection {connection.id}: {connection.client} -> {connection.server}, "
                f"frames {connection.first_frame}-{connection.last_frame}, "
                f"{connection.close_reason.value.replace('_', ' ')}"
            )
        )
        steps: dict[int, list[tuple[int, AuthExchange]]] = {}
        for position, step in enumerate(timeline.steps):
            steps.setdefault(step.exchange.index, []).append((position, step))
        for exchange in connection.exchanges:
            mine = steps.get(exchange.index, [])
            request, response = exchange.request, exchange.response
            credentials = [s.credentials for _, s in mine if s.credentials is not None]
            if request is not None:
                said = "; ".join(describe_step(c) for c in credentials)
                proxy = any(s.realm is Realm.PROXY for _, s in mine)
                messages.append(
                    _Message(
                        request.timestamp,
                        request.shown_frame,
                        client,
                        server,
                        visible(
                            f"#{request.shown_frame} {request.method} {request.uri}"
                            + (f" [{said}]" if said else "")
                            + (" (proxy)" if proxy else "")
                        ),
                        "",
                        Tone.PLAIN,
                        connection.id,
                        tuple(
                            _detail(auth_entry(s.credentials, s.realm.value, show_secrets))
                            for _, s in mine
                            if s.credentials is not None
                        ),
                    )
                )
            if response is not None:
                offered = "; ".join(describe_step(c) for _, s in mine for c in s.challenges)
                verdicts = [v for _, s in mine if (v := verdict_words(s))]
                messages.append(
                    _Message(
                        response.timestamp,
                        response.shown_frame,
                        server,
                        client,
                        visible(
                            f"#{response.shown_frame} {response.status} {response.reason}"
                            + (f" [{offered}]" if offered else "")
                        ),
                        visible("; ".join(verdicts)),
                        _tone([s for _, s in mine]),
                        connection.id,
                        tuple(
                            _detail(auth_entry(c, s.realm.value, show_secrets))
                            for _, s in mine
                            for c in s.challenges
                        ),
                    )
                )
            for position, _ in mine:
                for kdc in view.kdc_for(StepRef(connection.id, position)):
                    key = (kdc.request_frame, kdc.reply_frame)
                    if key in seen_kdc:
                        continue
                    seen_kdc.add(key)
                    asker, kdc_address = kdc.client.ip, kdc.kdc.ip
                    kdcs.add(kdc_address)
                    clients.add(asker)
                    kind = kdc.request_type.value if kdc.request_type else "request"
                    if kdc.request_frame is not None:
                        messages.append(
                            _Message(
                                kdc.request_time or 0.0,
                                kdc.request_frame,
                                asker,
                                kdc_address,
                                visible(f"#{kdc.request_frame} {kind} for {kdc.service}"),
                                "",
                                Tone.PLAIN,
                                None,
                                (),
                            )
                        )
                    if kdc.reply_frame is not None:
                        answer = kdc.error_name or kdc.result.value
                        messages.append(
                            _Message(
                                kdc.reply_time or 0.0,
                                kdc.reply_frame,
                                kdc_address,
                                asker,
                                visible(f"#{kdc.reply_frame} {answer}"),
                                "",
                                Tone.FAILURE if kdc.error_name else Tone.PLAIN,
                                None,
                                (),
                            )
                        )
    lanes = _lanes(clients, servers, kdcs)
    x_of = {lane.address: lane.x for lane in lanes}
    messages.sort(key=lambda m: (m.time, m.frame))
    left_out = max(0, len(messages) - MAX_ARROWS)
    arrows = []
    for row, message in enumerate(messages[:MAX_ARROWS]):
        arrows.append(
            Arrow(
                frame=message.frame,
                x1=x_of[message.source],
                x2=x_of[message.target],
                y=TOP + row * ROW + ROW // 2,
                label=_cut(message.label),
                title=message.label,
                verdict=message.verdict,
                tone=message.tone,
                connection=message.connection,
                details=message.details,
            )
        )
    width = max(lanes[-1].x + 120, 640)
    height = TOP + len(arrows) * ROW + 24
    return Ladder(
        number, tuple(members), lanes, tuple(arrows), left_out, tuple(notes), width, height
    )


def _lanes(clients: set[str], servers: set[str], kdcs: set[str]) -> tuple[Lane, ...]:
    """Clients left, proxies (an address that is a server on one connection and
    a client on another), servers, then KDCs on the right."""
    proxies = clients & servers
    ordered = (
        [(a, Role.CLIENT) for a in sorted(clients - proxies - kdcs)]
        + [(a, Role.PROXY) for a in sorted(proxies - kdcs)]
        + [(a, Role.SERVER) for a in sorted(servers - proxies - kdcs)]
        + [(a, Role.KDC) for a in sorted(kdcs)]
    )
    return tuple(
        Lane(visible(address), role, 110 + index * LANE_GAP)
        for index, (address, role) in enumerate(ordered)
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


def _cut(text: str) -> str:
    return text if len(text) <= _LABEL_CHARS else text[: _LABEL_CHARS - 1] + "\u2026"


_MAX_ROWS = 400  # rows of one header's details; the decoded dicts are already depth-bounded


def _detail(entry: dict[str, object]) -> Detail:
    """The JSON form of a decoded header (already redacted by auth_entry) as rows."""
    rows: list[tuple[int, str, str]] = []

    def walk(value: object, key: str, depth: int) -> None:
        if len(rows) >= _MAX_ROWS:
            return
        if isinstance(value, dict):
            if key:
                rows.append((depth, visible(key), ""))
            for name, item in value.items():
                walk(item, str(name), depth + (1 if key else 0))
        elif isinstance(value, list):
            if not value:
                rows.append((depth, visible(key), "(none)"))
                return
            rows.append((depth, visible(key), f"{len(value)} item(s)"))
            for index, item in enumerate(value):
                walk(item, f"[{index}]", depth + 1)
        elif value is not None:
            rows.append((depth, visible(key), visible(str(value))))

    summary = str(entry.get("summary", ""))
    walk({k: v for k, v in entry.items() if k != "summary"}, "", 0)
    if len(rows) >= _MAX_ROWS:
        rows.append((0, "…", "more fields not shown (see --json)"))
    return Detail(visible(summary), tuple(rows))
