"""Links across connections, and the final verdict on every 401/407.

A single 401 is never judged alone (DESIGN: "judge the sequence"): whether an
anonymous 401 was a normal first leg depends on whether the client went on to
authenticate, possibly on another connection; an NTLM AUTHENTICATE that reached
a connection without its CHALLENGE is explained by the connection that carried
that CHALLENGE. This module owns those cross-connection decisions.

Cost: every cross-connection question goes through a `TimeIndex` (keyed by
client, server, service principal or token, sorted by time), so `link` costs
O(n log n) in the n judged steps of all connections, never O(n²): each step's
docstring gives its own cost. The decisions are a pure function of the
timelines and KDC exchanges given, so per-connection results made elsewhere
(another process) can be linked in one call.

Every cross-connection step has a time bound (its `..._WINDOW` constant below,
`attribution.FRONT_WINDOW`), so two connections further apart than the largest,
`LINK_HORIZON`, never link. `LinkWindow` uses that to link a capture as it is
read: it holds only the timelines of a sliding window of capture time and hands
each one on, judged, once no connection still to come can link to it.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import math
import operator
from array import array
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass, field

from authtrace.auth.kinds import Message
from authtrace.auth.ntlm import NtlmAuthenticate, NtlmChallenge
from authtrace.auth.steps import is_not_kept
from authtrace.handshake.attribution import FRONT_WINDOW, Identities, identify
from authtrace.handshake.index import TimeIndex, place
from authtrace.handshake.model import (
    NORMAL_LEGS,
    AuthExchange,
    IisTriple,
    Leg,
    Outcome,
    Realm,
    Sent,
)
from authtrace.handshake.store import NearFirst
from authtrace.handshake.timeline import ConnectionTimeline
from authtrace.http.messages import HttpConnection, Pairing
from authtrace.iis.predict import SPLIT_TRIPLE
from authtrace.kerberos.kdc import KdcExchange
from authtrace.sharing import SharedTable
from authtrace.tcp.events import CloseReason, Direction

# How long after an anonymous 401 a client may take to come back with credentials,
# and how far apart the legs of one split NTLM handshake may be.
FOLLOW_UP_WINDOW = 600.0  # a person may take minutes to type a password
SPLIT_WINDOW = 120.0
# 401s to requests without credentials: normal first legs when the client comes
# back with credentials (even to a 401 that named no scheme: an API client may
# know what to send), failures otherwise.
_ANONYMOUS_REFUSALS = frozenset({Leg.ANONYMOUS_CHALLENGED, Leg.ANONYMOUS_REFUSED})
_NOT_SEEN_LEGS = frozenset({Leg.NOT_SEEN, Leg.AFTER_NOT_SEEN})
# A 401 this close to the end of the capture may simply have had its answer cut off.
END_OF_CAPTURE_MARGIN = 1.0


@dataclass(frozen=True, slots=True)
class StepRef:
    """Where one judged exchange sits: its timeline and its position there."""

    connection: int
    position: int


@dataclass(frozen=True, slots=True)
class SplitHandshake:
    """An NTLM AUTHENTICATE sent on a connection that never carried the CHALLENGE
    it answers; the CHALLENGE was on `challenge` (another connection)."""

    challenge: StepRef
    authenticate: StepRef
    same_client: bool  # False: the legs came from different client addresses (a proxy)
    challenge_connection_closed: bool  # the server or a middlebox closed it after the challenge
    proof: str = "timing"  # "MsvAvTimestamp": the AUTHENTICATE names its CHALLENGE


class KdcLinks(Mapping[StepRef, tuple[KdcExchange, ...]]):
    """Each Negotiate step's KDC exchanges (`_link_kdc`), kept in columns
    until the end of the run: the steps as packed ints (connection << 32 |
    position) in step order, and for each its exchanges' places in the
    stream's exchanges. A dict of StepRef to a tuple of exchanges weighed
    about 130 bytes a step (2.1 MB at 16,000 Kerberos connections, two steps
    each); the columns 24. A look-up is a bisection and gives a new tuple."""

    __slots__ = ("_kdc", "_steps", "_starts", "_found")

    def __init__(self, kdc: Sequence[KdcExchange], found: Iterable[tuple[StepRef, Iterable[int]]]):
        """kdc: the exchanges the links point into; found: (step, the places
        of its exchanges in `kdc`), in any order, each step once."""
        self._kdc = kdc
        self._steps = array("q")
        self._starts = array("q", [0])
        self._found = array("q")
        for packed, places in sorted((_packed(ref), places) for ref, places in found):
            self._steps.append(packed)
            self._found.extend(places)
            self._starts.append(len(self._found))

    @classmethod
    def joined(cls, parts: Sequence[Mapping[StepRef, tuple[KdcExchange, ...]]]) -> KdcLinks:
        """The links of several streams' views as one (their steps differ)."""
        kdc: list[KdcExchange] = []
        found: list[tuple[StepRef, list[int]]] = []
        for part in parts:
            for ref, exchanges in part.items():
                found.append((ref, list(range(len(kdc), len(kdc) + len(exchanges)))))
                kdc.extend(exchanges)
        return cls(tuple(kdc), found)

    def _place(self, ref: object) -> int:
        return place(self._steps, _packed(ref)) if isinstance(ref, StepRef) else -1

    def __getitem__(self, ref: StepRef) -> tuple[KdcExchange, ...]:
        index = self._place(ref)
        if index < 0:
            raise KeyError(ref)
        kdc = self._kdc
        return tuple(kdc[n] for n in self._found[self._starts[index] : self._starts[index + 1]])

    def __contains__(self, ref: object) -> bool:
        return self._place(ref) >= 0

    def __iter__(self) -> Iterator[StepRef]:
        for packed in self._steps:
            yield _unpacked(packed)

    def __len__(self) -> int:
        return len(self._steps)


def _packed(ref: StepRef) -> int:
    return ref.connection << 32 | ref.position


def _unpacked(packed: int) -> StepRef:
    return StepRef(packed >> 32, packed & 0xFFFFFFFF)


@dataclass(frozen=True, slots=True)
class HandshakeView:
    """Everything the rules read: judged timelines and the links between them.

    timelines (in connection-id order) and by_id: a tuple and a dict, or, when
    the run spilled its timelines to disk (handshake/store.py), read-only views
    that read through the store (`for`, `len`, indexing, `in`, `.get` cost a
    chunk's reading when it is not loaded)."""

    timelines: Sequence[ConnectionTimeline]
    splits: tuple[SplitHandshake, ...]
    relayed: frozenset[StepRef]  # client-side copies of a request a proxy forwarded
    capture_start: float
    capture_end: float
    by_id: Mapping[int, ConnectionTimeline]
    kdc_links: Mapping[StepRef, tuple[KdcExchange, ...]] = field(default_factory=dict)
    clients: dict[StepRef, str] = field(default_factory=dict)
    """The client a step was made for, where it is not its connection's client
    address (a proxy's upstream request: attribution.py)."""
    fronts: dict[StepRef, StepRef] = field(default_factory=dict)
    """upstream step -> the front-end step it relays, when both legs are captured."""

    def step(self, ref: StepRef) -> AuthExchange:
        return self.by_id[ref.connection].steps[ref.position]

    def client_of(self, ref: StepRef) -> str:
        """The client this step was made for (behind a proxy: the front-end client)."""
        found = self.clients.get(ref)
        return found if found is not None else self.by_id[ref.connection].connection.client.ip

    def kdc_for(self, ref: StepRef) -> tuple[KdcExchange, ...]:
        """The KDC exchanges for HTTP/<host> that served this step's client."""
        return self.kdc_links.get(ref, ())

    def around(self, context: Set[int]) -> HandshakeView:
        """The view a block's per-block rules read (diagnose.Diagnosis.block):
        the timelines of `context` (a block and the connections it was linked
        with) and the splits among them; every look-up (by id, links, clients,
        fronts) is the whole view's. O(n) in the context (read from the store
        when the timelines were spilled: the context's chunks)."""
        timelines = tuple(self.by_id[i] for i in sorted(context) if i in self.by_id)
        by_id = self.by_id
        if not isinstance(by_id, dict):
            # Spilled: each rule looks the context's connections up again
            # (client_of, locate); the timelines just read answer them, not
            # the store's few loaded chunks (a context may span more).
            by_id = NearFirst({t.connection.id: t for t in timelines}, by_id)
        return dataclasses.replace(
            self,
            timelines=timelines,
            by_id=by_id,
            splits=tuple(
                s
                for s in self.splits
                if s.challenge.connection in context and s.authenticate.connection in context
            ),
        )


def host_of(step: AuthExchange, connection: HttpConnection) -> str:
    """The server as the client named it: the Host header, else the address.
    One string for every step to a host (capture-wide groups key by it: a
    copy of its own for each step added up to 0.8 MB at 16,000 connections)."""
    request = step.exchange.request
    host = request.host if request is not None else None
    if host:
        host = host.strip().lower()
        if host.endswith(":80") or host.endswith(":443"):
            host = host.rsplit(":", 1)[0]
        return _HOSTS.share(host)
    return _HOSTS.share(str(connection.server))


_HOSTS: SharedTable[str] = SharedTable()


def request_time(step: AuthExchange) -> float:
    exchange = step.exchange
    if exchange.request is not None:
        return exchange.request.timestamp
    if exchange.response is not None:
        return exchange.response.timestamp
    # Only an interim answer (100 Continue) was captured: a gap ate the rest.
    return exchange.interim[0].timestamp if exchange.interim else 0.0


def link(
    timelines: list[ConnectionTimeline],
    capture_start: float,
    capture_end: float,
    kdc: tuple[KdcExchange, ...] = (),
) -> HandshakeView:
    """Find proxy relays (by token, then by attributing upstream requests to
    their front-end clients), split handshakes and the KDC exchanges behind each
    Negotiate step, then give every 401/407 its outcome. O(n log n) in steps."""
    return join_links([_link_block(timelines, capture_end)], capture_start, capture_end, kdc)


class IdSet(Set[int]):
    """Connection ids, kept as a sorted array of 8 bytes each: what a linked
    block keeps of its connections once its timelines went to the store
    (`LinkedBlock.without_timelines`), until the end of the run. A frozenset
    of the same ids weighed about 60 bytes an id (the ints kept alive with
    it). Membership O(log n)."""

    __slots__ = ("_ids",)

    def __init__(self, ids: Iterable[int] = ()) -> None:
        self._ids = array("q", sorted(set(ids)))

    def __contains__(self, item: object) -> bool:
        return isinstance(item, int) and place(self._ids, item) >= 0

    def __iter__(self) -> Iterator[int]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return f"IdSet({list(self._ids)!r})"


@dataclass(frozen=True, slots=True)
class LinkedBlock:
    """The linked results of some connections (a block of `LinkWindow`, or a
    whole capture): their judged timelines and the links that belong to them
    (a split to the block holding its AUTHENTICATE, a relayed copy, an
    attributed client and an upstream step's front to the block holding the
    step). Linked blocks of disjoint connections join into one view (`join_links`).

    context: the connections the block was linked with (its own and those of
    the window around it): what its per-block rules read (`HandshakeView.around`)."""

    timelines: tuple[ConnectionTimeline, ...]
    splits: tuple[SplitHandshake, ...]
    relayed: frozenset[StepRef]
    clients: dict[StepRef, str]
    fronts: dict[StepRef, StepRef]
    context: Set[int] = frozenset()
    own_ids: Set[int] | None = None
    """The connections whose results the block holds, once its timelines went
    to a store (`without_timelines`); None while it holds them."""

    @property
    def own(self) -> Set[int]:
        """The connections whose results this block holds."""
        if self.own_ids is not None:
            return self.own_ids
        return frozenset(timeline.connection.id for timeline in self.timelines)

    def without_timelines(self) -> LinkedBlock:
        """This block's links and connection ids, its timelines left out (kept
        by a handshake/store.py TimelineStore: `join_links`'s `stored`)."""
        return dataclasses.replace(
            self, timelines=(), own_ids=IdSet(self.own), context=IdSet(self.context)
        )


def _link_block(
    timelines: list[ConnectionTimeline], capture_end: float, keep: frozenset[int] | None = None
) -> LinkedBlock:
    """Link `timelines` together; keep the results of the connections in `keep`
    (all for None), the others being only there to link to. O(n log n) in steps."""
    follow_ups = _CredentialsIndex()
    block, waiting = _link_part(timelines, capture_end, keep, follow_ups, add_all=True)
    assert not waiting  # every credential is indexed (known_until is +inf)
    return block


def _link_part(
    timelines: list[ConnectionTimeline],
    capture_end: float,
    keep: frozenset[int] | None,
    follow_ups: _CredentialsIndex,
    add_all: bool = False,
    challenges: _Challenges | None = None,
    committed: frozenset[int] = frozenset(),
    horizon: float | None = None,
) -> tuple[LinkedBlock, list[_Waiting]]:
    """Link `timelines` (a window: the connections of `keep` and those around
    them); the results of `keep` (all for None) are the block's, except those
    of a connection whose anonymous 401 waits for the follow-up answer (it is
    returned apart, with its links, and with the window's connections within
    `horizon` of it as its context: `_Around`; WINDOW_HORIZON for None). Its own credentials join
    `follow_ups` (every timeline's, with add_all), its own CHALLENGEs and
    claims join `challenges` (the CHALLENGEs linked in earlier blocks;
    `committed`: the connections of `timelines` linked there). O(n log n) in
    steps."""
    relayed = _find_relays(timelines)
    identities = identify(timelines)
    clients, fronts = _attributed(timelines, identities, relayed)
    splits, fresh = _find_splits(timelines, relayed, challenges, committed)
    split_targets = {split.authenticate for split in splits}
    if challenges is not None:
        mine = keep if keep is not None else frozenset(t.connection.id for t in timelines)
        own_splits = [s for s in splits if s.authenticate.connection in mine]
        challenges.entries.extend(c for c in fresh if c.ref.connection in mine)
        challenges.claimed.update(s.challenge for s in own_splits)
        challenges.targets.update(s.authenticate for s in own_splits)
        split_targets |= challenges.targets
    # Unanswered CHALLENGEs of the block's connections that an AUTHENTICATE
    # still to come may claim (`_Waiting.challenges`).
    unclaimed_of: dict[int, tuple[_Challenge, ...]] = {}
    if challenges is not None:
        known = follow_ups.known_until
        for c in fresh:
            if (
                c.unanswered
                and c.ref not in challenges.claimed
                and known - SPLIT_WINDOW <= c.at
                and (keep is None or c.ref.connection in keep)
            ):
                unclaimed_of[c.ref.connection] = (*unclaimed_of.get(c.ref.connection, ()), c)
    own = timelines if keep is None else [t for t in timelines if t.connection.id in keep]
    follow_ups.add(timelines if add_all else own, identities)
    # Every timeline is marked: a front step copies the IIS line of the upstream
    # step it relays, which may be one of the window's other connections.
    marked = [_mark_split_iis(timeline, split_targets) for timeline in timelines]
    marked = _relayed_iis(marked, fronts, relayed)
    # With the CHALLENGE of a split that the window no longer holds.
    context = frozenset(t.connection.id for t in timelines) | {
        s.challenge.connection for s in splits
    }
    resolved: list[ConnectionTimeline] = []
    waiting: list[_Waiting] = []
    for timeline in marked:
        connection = timeline.connection
        if keep is not None and connection.id not in keep:
            continue

        def client_of(position: int, on: ConnectionTimeline = timeline) -> str:
            return identities.of(on.connection, on.steps[position].exchange)

        judged, left = _resolve(timeline, follow_ups, client_of, split_targets, capture_end)
        unclaimed = unclaimed_of.get(connection.id, ())
        if left or unclaimed:
            held = _Waiting.of(judged, left, client_of)
            held.challenges = unclaimed
            waiting.append(held)
        else:
            resolved.append(judged)
    if waiting:
        keep = frozenset(t.connection.id for t in resolved)
        spans = _Spans(timelines)
        if horizon is None:
            horizon = WINDOW_HORIZON
        for w in waiting:
            i = w.timeline.connection.id
            held_splits = tuple(s for s in splits if s.authenticate.connection == i)
            w.links = LinkedBlock(
                (),
                held_splits,
                frozenset(r for r in relayed if r.connection == i),
                {ref: client for ref, client in clients.items() if ref.connection == i},
                {ref: front for ref, front in fronts.items() if ref.connection == i},
                # Its own connection and the CHALLENGEs it answers; the rest of
                # what it was linked with is `around`.
                frozenset({i, *(s.challenge.connection for s in held_splits)}),
            )
            connection = w.timeline.connection
            w.around = _Around(
                spans, connection.first_timestamp - horizon, connection.last_timestamp + horizon
            )
    if keep is None:
        block = LinkedBlock(
            tuple(resolved), tuple(splits), frozenset(relayed), clients, fronts, context
        )
        return block, waiting
    block = LinkedBlock(
        tuple(resolved),
        tuple(s for s in splits if s.authenticate.connection in keep),
        frozenset(r for r in relayed if r.connection in keep),
        {ref: client for ref, client in clients.items() if ref.connection in keep},
        {ref: front for ref, front in fronts.items() if ref.connection in keep},
        context,
    )
    return block, waiting


def join_links(
    blocks: Iterable[LinkedBlock],
    capture_start: float,
    capture_end: float,
    kdc: tuple[KdcExchange, ...] = (),
    stored: tuple[Sequence[ConnectionTimeline], Mapping[int, ConnectionTimeline]] | None = None,
    questions: KdcQuestions | None = None,
) -> HandshakeView:
    """One view of linked blocks of disjoint connections, in connection order
    (the order `link` gives), with the KDC exchanges behind each Negotiate step.
    O(n log n) in steps.

    stored: the blocks' timelines in connection order and by id, when the
    blocks gave them to a store (`LinkedBlock.without_timelines`,
    handshake/store.py stored_timelines). questions: the blocks' Negotiate
    steps as the KDC links ask about them, gathered while the blocks held
    their timelines; for None they are read from the timelines (every stored
    one read back once)."""
    blocks = list(blocks)
    timelines: list[ConnectionTimeline] = []
    splits: list[SplitHandshake] = []
    relayed: set[StepRef] = set()
    for block in blocks:
        if stored is None:
            timelines.extend(block.timelines)
        splits.extend(block.splits)
        relayed.update(block.relayed)
    if len(blocks) == 1:
        # One block (a capture shorter than the window): its maps as they are,
        # not copied (behind a proxy every step has an entry in `clients`).
        clients, fronts = blocks[0].clients, blocks[0].fronts
    else:
        # `clients` is only looked up; `fronts` is walked (ladders), in step order.
        clients = {ref: client for block in blocks for ref, client in block.clients.items()}
        fronts = dict(
            sorted((item for block in blocks for item in block.fronts.items()), key=_ref_order)
        )
    splits.sort(key=lambda split: (split.authenticate.connection, split.authenticate.position))
    if stored is None:
        timelines.sort(key=lambda timeline: timeline.connection.id)
        in_order: Sequence[ConnectionTimeline] = tuple(timelines)
        by_id: Mapping[int, ConnectionTimeline] = {t.connection.id: t for t in in_order}
    else:
        in_order, by_id = stored
    return HandshakeView(
        in_order,
        tuple(splits),
        frozenset(relayed),
        capture_start,
        capture_end,
        by_id,
        _link_kdc(questions if questions is not None else KdcQuestions(in_order), kdc),
        clients,
        fronts,
    )


def _ref_order(item: tuple[StepRef, object]) -> tuple[int, int]:
    return (item[0].connection, item[0].position)


def _relayed_iis(
    timelines: list[ConnectionTimeline], fronts: dict[StepRef, StepRef], relayed: set[StepRef]
) -> list[ConnectionTimeline]:
    """A front-end copy of a relayed answer predicts the IIS log line of the
    upstream answer it relays: IIS logged one line, for the request it saw (the
    front connection's own sequence may differ, e.g. a split handshake). O(n)."""
    by_id = {timeline.connection.id: timeline for timeline in timelines}
    copied: dict[int, dict[int, IisTriple | None]] = defaultdict(dict)
    for upstream, front in fronts.items():
        if front in relayed:
            iis = by_id[upstream.connection].steps[upstream.position].iis
            before = by_id[front.connection].steps[front.position].iis
            if before is not None and before != iis:
                copied[front.connection][front.position] = iis
    if not copied:
        return timelines
    out = []
    for timeline in timelines:
        changes = copied.get(timeline.connection.id)
        if changes:
            steps = list(timeline.steps)
            for position, iis in changes.items():
                steps[position] = replaced(steps[position], iis=iis)
            timeline = ConnectionTimeline(timeline.connection, tuple(steps))
        out.append(timeline)
    return out


def _attributed(
    timelines: list[ConnectionTimeline], identities: Identities, relayed: set[StepRef]
) -> tuple[dict[StepRef, str], dict[StepRef, StepRef]]:
    """Each step's client where a proxy stands between (sparse), and each
    upstream step's front-end step. A front-end origin step whose answer is the
    relayed upstream answer (same status) joins `relayed`: the rules judge the
    upstream copy, as for relayed tokens. O(n) over steps."""
    clients: dict[StepRef, str] = {}
    fronts: dict[StepRef, StepRef] = {}
    # Only an attributed front needs it (none behind a proxy whose front leg
    # the capture lacks): not built otherwise.
    origin_position = (
        {
            (t.connection.id, step.exchange.index): position
            for t in timelines
            for position, step in enumerate(t.steps)
            if step.realm is Realm.ORIGIN
        }
        if identities.any_front
        else {}
    )
    by_id = {t.connection.id: t for t in timelines}
    any_front = identities.any_front
    for timeline in timelines:
        connection = timeline.connection
        for position, step in enumerate(timeline.steps):
            client = identities.of(connection, step.exchange)
            if client != connection.client.ip:
                clients[StepRef(connection.id, position)] = client
            if not any_front or step.realm is not Realm.ORIGIN:
                continue
            front = identities.front_of(connection.id, step.exchange.index)
            if front is None:
                continue
            front_position = origin_position.get((front.connection, front.index))
            if front_position is None:
                continue
            ref = StepRef(connection.id, position)
            front_ref = StepRef(front.connection, front_position)
            fronts[ref] = front_ref
            front_step = by_id[front.connection].steps[front_position]
            if front_step.status == step.status:
                relayed.add(front_ref)
    return clients, fronts


# How long before a Negotiate request its ticket may have been asked for (tickets
# are cached for hours, but a capture shows the request only if it was fresh).
KDC_WINDOW = 600.0
# A ticket request may appear stamped a little after the HTTP request (two capture points).
KDC_CLOCK_SLACK = 5.0
# When no KDC exchange comes from the client's own address, at most this many from
# other addresses (the latest before the request) are linked: behind a NAT or a
# proxy every client's exchanges would otherwise be linked to every request.
MAX_OTHER_ADDRESS_KDC = 64
_NEGOTIATE_SCHEMES = frozenset({"negotiate", "kerberos"})


def _link_kdc(questions: KdcQuestions, kdc: tuple[KdcExchange, ...]) -> KdcLinks:
    """For each request with Negotiate/Kerberos credentials, the KDC exchanges for
    the service principal HTTP/<host> in the window before it: from the same
    client address when there are any, else from any address (a multi-homed or
    loopback client asks the KDC from another address than it uses for HTTP),
    then only the `MAX_OTHER_ADDRESS_KDC` latest of them.

    Cost: O(m log m) to index the m KDC exchanges by (SPN) and (SPN, client),
    then O(log m + k) for each Negotiate step with k exchanges in its window.
    """
    # (service, client address, when, (order given, exchange)) of each timed
    # exchange (a reply whose request was not captured counts at its own time).
    entries: list[tuple[str, str, float, tuple[int, KdcExchange]]] = [
        (exchange.spn, exchange.client.ip, when, (sequence, exchange))
        for sequence, exchange in enumerate(kdc)
        if exchange.spn and (when := exchange.time) is not None
    ]
    links: list[tuple[StepRef, list[int]]] = []
    if not entries:
        return KdcLinks(kdc, links)
    by_service = TimeIndex((spn, when, item) for spn, _ip, when, item in entries)
    by_client = TimeIndex(((spn, ip), when, item) for spn, ip, when, item in entries)
    for ref, service, client_ip, when in questions:
        start, end = when - KDC_WINDOW, when + KDC_CLOCK_SLACK
        found = by_client.between((service, client_ip), start, end)
        if not found:
            found = by_service.between(service, start, end)[-MAX_OTHER_ADDRESS_KDC:]
        if found:
            # In the order the KDC exchanges were given (the order they completed).
            links.append((ref, sorted(n for n, _exchange in found)))
    return KdcLinks(kdc, links)


class KdcQuestions:
    """What the KDC links ask of each request with Negotiate/Kerberos
    credentials: its step, the service principal HTTP/<host>, its client
    address and its time, in columns (about 32 bytes a step; the strings
    once each). Gathered block by block while the blocks hold their
    timelines (pipeline.py), so that linking the KDC exchanges at the end
    reads no spilled timeline back: on the Kerberos profile it read every
    one (0.1 ms each)."""

    __slots__ = ("_steps", "_times", "_services", "_clients", "_numbers", "_names")

    def __init__(self, timelines: Iterable[ConnectionTimeline] = ()) -> None:
        self._steps = array("q")
        self._times = array("d")
        self._services = array("q")
        self._clients = array("q")
        self._numbers: dict[str, int] = {}
        self._names: list[str] = []
        self.add(timelines)

    def add(self, timelines: Iterable[ConnectionTimeline]) -> None:
        for timeline in timelines:
            client = None
            for position, step in enumerate(timeline.steps):
                credentials = step.credentials
                if credentials is None or credentials.scheme.lower() not in _NEGOTIATE_SCHEMES:
                    continue
                name = host_of(step, timeline.connection)
                if name.count(":") == 1:
                    name = name.rsplit(":", 1)[0]
                if client is None:
                    client = self._number(timeline.connection.client.ip)
                self._steps.append(_packed(StepRef(timeline.connection.id, position)))
                self._times.append(request_time(step))
                self._services.append(self._number(f"http/{name}"))
                self._clients.append(client)

    def _number(self, name: str) -> int:
        number = self._numbers.get(name)
        if number is None:
            number = self._numbers[name] = len(self._names)
            self._names.append(name)
        return number

    def __len__(self) -> int:
        return len(self._steps)

    def __iter__(self) -> Iterator[tuple[StepRef, str, str, float]]:
        """(step, service, client address, time) of each step, in the order added."""
        names = self._names
        for packed, when, service, client in zip(
            self._steps, self._times, self._services, self._clients, strict=True
        ):
            yield _unpacked(packed), names[service], names[client], when


@dataclass(frozen=True, slots=True)
class _Challenge:
    """An NTLM CHALLENGE a split AUTHENTICATE may answer (index entry): what
    the split search reads of it, so that it outlives its timeline
    (`_Challenges`). Equal when they name the same step."""

    at: float = field(compare=False)
    ref: StepRef
    key: tuple[str, object] = field(compare=False)  # (realm, server)
    client: str = field(compare=False)  # its connection's client address
    unanswered: bool = field(compare=False)  # no AUTHENTICATE after it on its connection
    closed_after: bool = field(compare=False)  # `_closed_after`
    stamp: datetime.datetime | None = field(compare=False)  # its MsvAvTimestamp


def _challenges_of(timeline: ConnectionTimeline, relayed: set[StepRef]) -> Iterator[_Challenge]:
    """The CHALLENGEs of a connection a split may answer (client-side copies of
    relayed ones are left out). O(k) in its steps."""
    connection = timeline.connection
    for position, step in enumerate(timeline.steps):
        response = step.exchange.response
        if step.leg is not Leg.NTLM_CHALLENGE or response is None:
            continue
        ref = StepRef(connection.id, position)
        if ref in relayed:
            continue
        yield _Challenge(
            response.timestamp,
            ref,
            (step.realm.value, connection.server),
            connection.client.ip,
            not _answered_on_own_connection(timeline, position),
            _closed_after(timeline, position),
            _challenge_timestamp(step),
        )


class _Challenges:
    """The CHALLENGEs of connections already linked in earlier blocks of a
    `LinkWindow`, carried so that the split search of a later block reaches
    SPLIT_WINDOW back while the window keeps timelines only WINDOW_HORIZON:
    each as a `_Challenge` (no timeline), which of them an AUTHENTICATE of
    those blocks claimed, and the split AUTHENTICATEs of the connections the
    window still keeps (their IIS line is marked in every window: `_relayed_iis`).

    Bound: `prune` keeps the CHALLENGEs of the last SPLIT_WINDOW before what
    is still to be linked. Cost: O(n) per prune over what it holds.
    """

    __slots__ = ("entries", "claimed", "targets")

    def __init__(self) -> None:
        self.entries: list[_Challenge] = []
        self.claimed: set[StepRef] = set()
        self.targets: set[StepRef] = set()

    def __len__(self) -> int:
        return len(self.entries)

    def prune(self, before: float, kept: frozenset[int]) -> None:
        """Forget the CHALLENGEs before `before`, the split targets off `kept`."""
        self.entries = [c for c in self.entries if c.at >= before]
        refs = {c.ref for c in self.entries}
        self.claimed &= refs
        self.targets = {ref for ref in self.targets if ref.connection in kept}


def _find_splits(
    timelines: list[ConnectionTimeline],
    relayed: set[StepRef],
    carried: _Challenges | None = None,
    committed: frozenset[int] = frozenset(),
) -> tuple[list[SplitHandshake], list[_Challenge]]:
    """NTLM AUTHENTICATE messages answering a CHALLENGE that went out on another
    connection (or an earlier exchange than the one just before them).

    Proof first: an NTLMv2 AUTHENTICATE carries the server's MsvAvTimestamp
    copied from the CHALLENGE it answers (MS-NLMP 3.1.5.1.2), which names that
    CHALLENGE exactly. Without it (NTLMv1, or timestamps that repeat), fall back
    to timing: the latest unanswered CHALLENGE to the same server within
    `SPLIT_WINDOW`, preferring the same client address. Client-side copies of
    proxied exchanges are left out: the judgement belongs to the upstream copy.

    carried: the CHALLENGEs of connections linked before (a LinkWindow's
    earlier blocks) and which of them are claimed; `committed`: the
    connections of `timelines` among those, whose AUTHENTICATEs were searched
    then (they are not again; their CHALLENGEs are the carried ones). Returns
    the splits found and the CHALLENGEs of the other connections.

    Cost: O(n log n) to index the CHALLENGEs by timestamp (a dict), by (realm,
    server) and by (realm, server, client address) in time order; then for each
    AUTHENTICATE O(1) for the proof or O(log n + r) for the timing search, r being
    its own connection's unanswered CHALLENGEs in the window (a claimed CHALLENGE
    is taken out of the index, not walked over again).
    """
    fresh = [
        challenge
        for timeline in timelines
        if timeline.connection.id not in committed
        for challenge in _challenges_of(timeline, relayed)
    ]
    every = fresh if carried is None else carried.entries + fresh
    claimed: set[StepRef] = set() if carried is None else set(carried.claimed)
    by_stamp: dict[object, list[_Challenge]] = defaultdict(list)
    for challenge in every:
        if challenge.stamp is not None:
            by_stamp[challenge.stamp].append(challenge)
    open_ = [c for c in every if c.unanswered and c.ref not in claimed]
    if carried is not None:
        # Ties in time are weighed in connection order, as `link` weighs them.
        open_.sort(key=lambda c: (c.ref.connection, c.ref.position))
    by_server = TimeIndex((c.key, c.at, c) for c in open_)
    by_client = TimeIndex(((c.key, c.client), c.at, c) for c in open_)
    splits: list[SplitHandshake] = []
    for timeline in timelines:
        connection = timeline.connection
        if connection.id in committed:
            continue
        for position, step in enumerate(timeline.steps):
            here = StepRef(connection.id, position)
            if step.sent is not Sent.NTLM_AUTHENTICATE or here in relayed:
                continue
            own = _own_challenge(timeline, position)
            stamp = _authenticate_timestamp(step)
            proven = by_stamp.get(stamp, []) if stamp is not None else []
            if len(proven) == 1:
                found = proven[0]
                if found.ref == own:
                    continue  # answers the CHALLENGE just before it: a proper handshake
                _claim(found, by_server, by_client, claimed)
                splits.append(_split(found, here, connection, "MsvAvTimestamp"))
                continue
            if step.leg not in (Leg.NTLM_OUT_OF_SEQUENCE, Leg.NTLM_OUT_OF_SEQUENCE_ACCEPTED):
                continue
            when = request_time(step)
            key = (step.realm.value, connection.server)

            def elsewhere(challenge: _Challenge, own_id: int = connection.id) -> bool:
                return challenge.ref.connection != own_id

            start = when - SPLIT_WINDOW
            found_ = by_client.latest((key, connection.client.ip), start, when, elsewhere)
            if found_ is None:
                found_ = by_server.latest(key, start, when, elsewhere)
            if found_ is None:
                continue
            _claim(found_, by_server, by_client, claimed)
            splits.append(_split(found_, here, connection, "timing"))
    return splits, fresh


def _claim(
    challenge: _Challenge,
    by_server: TimeIndex[_Challenge],
    by_client: TimeIndex[_Challenge],
    claimed: set[StepRef],
) -> None:
    """One CHALLENGE answers one AUTHENTICATE: take it out of the timing search."""
    if challenge.ref in claimed:
        return
    claimed.add(challenge.ref)
    if not challenge.unanswered:
        return  # never indexed
    by_server.take(challenge.key, challenge.at, challenge)
    by_client.take((challenge.key, challenge.client), challenge.at, challenge)


def _split(
    challenge: _Challenge, authenticate: StepRef, connection: HttpConnection, proof: str
) -> SplitHandshake:
    return SplitHandshake(
        challenge=challenge.ref,
        authenticate=authenticate,
        same_client=challenge.client == connection.client.ip,
        challenge_connection_closed=challenge.closed_after,
        proof=proof,
    )


def _own_challenge(timeline: ConnectionTimeline, position: int) -> StepRef | None:
    """The CHALLENGE leg right before this step on its connection (same realm)."""
    realm = timeline.steps[position].realm
    for earlier in range(position - 1, -1, -1):
        step = timeline.steps[earlier]
        if step.realm is realm:
            if step.leg is Leg.NTLM_CHALLENGE:
                return StepRef(timeline.connection.id, earlier)
            return None
    return None


def _challenge_timestamp(step: AuthExchange) -> datetime.datetime | None:
    """MsvAvTimestamp of the step's NTLM CHALLENGE (MS-NLMP 2.2.2.1)."""
    for challenge in step.challenges:
        inner = challenge.innermost
        if isinstance(inner, NtlmChallenge) and inner.target_info is not None:
            if inner.target_info.timestamp is not None:
                return inner.target_info.timestamp
    return None


def _authenticate_timestamp(step: AuthExchange) -> datetime.datetime | None:
    """The MsvAvTimestamp an NTLMv2 AUTHENTICATE copies from its CHALLENGE."""
    inner = step.credentials.innermost if step.credentials is not None else None
    if isinstance(inner, NtlmAuthenticate) and inner.ntlmv2 is not None:
        return inner.ntlmv2.av_pairs.timestamp
    return None


def _answered_on_own_connection(timeline: ConnectionTimeline, position: int) -> bool:
    """Whether the CHALLENGE at `position` got its AUTHENTICATE on its own connection."""
    steps = timeline.steps
    realm = steps[position].realm
    for later in range(position + 1, len(steps)):
        if steps[later].realm is realm:
            return steps[later].sent is Sent.NTLM_AUTHENTICATE
    return False


def _closed_after(timeline: ConnectionTimeline, position: int) -> bool:
    """The response said the connection would close (Connection: close, HTTP/1.0
    without keep-alive), or nothing followed and the server side closed it."""
    step = timeline.steps[position]
    response = step.exchange.response
    if response is not None:
        connection_header = (response.header("Connection") or "").lower()
        if "close" in connection_header:
            return True
        if response.version == "HTTP/1.0" and "keep-alive" not in connection_header:
            return True
    steps = timeline.steps
    later = any(steps[n].realm is step.realm for n in range(position + 1, len(steps)))
    return not later and closed_by_server(timeline.connection)


def closed_by_server(connection: HttpConnection) -> bool:
    """The server side (or a middlebox) ended the connection: a reset, or a FIN
    that the server sent first. A client that closes its own connection chose to."""
    if connection.close_reason is CloseReason.RST:
        return True
    return (
        connection.close_reason is CloseReason.FIN and connection.closed_by is Direction.TO_CLIENT
    )


# Tokens that carry fresh randomness (a server challenge, a proof, a ticket and
# authenticator), so two equal copies can only be one message relayed. A
# NEGOTIATE is not: two clients with the same settings send identical ones.
_UNIQUE_MESSAGES = frozenset(
    {Message.NTLM_CHALLENGE, Message.NTLM_AUTHENTICATE, Message.AP_REQ, Message.AP_REP}
)
# How far apart the two copies of one relayed message may be.
RELAY_WINDOW = 30.0


def _find_relays(timelines: list[ConnectionTimeline]) -> set[StepRef]:
    """Exchanges a proxy forwarded: the same token on two connections.

    A proxy passes NTLM and Negotiate tokens through verbatim, so a token seen
    on two connections ties the client-side exchange to the upstream one. The
    client side is the copy that came first for credentials (client -> proxy ->
    server) and the copy that came last for challenges (server -> proxy ->
    client); it is marked relayed and the rules judge the upstream copy.

    Cost: O(n) over the steps (a dict keyed by token bytes), then O(k log k)
    for each token seen k > 1 times.
    """
    requests: dict[bytes, list[tuple[float, StepRef]]] = defaultdict(list)
    responses: dict[bytes, list[tuple[float, StepRef]]] = defaultdict(list)
    unique = _UNIQUE_MESSAGES
    for timeline in timelines:
        connection = timeline.connection.id
        for position, step in enumerate(timeline.steps):
            credentials = step.credentials
            if credentials is not None and credentials.message in unique:
                requests[credentials.raw].append(
                    (request_time(step), StepRef(connection, position))
                )
            response = step.exchange.response
            if response is None:
                continue
            for challenge in step.challenges:
                if challenge.message in unique:
                    responses[challenge.raw].append(
                        (response.timestamp, StepRef(connection, position))
                    )
    relayed: set[StepRef] = set()
    for copies, client_side_first in [(requests, True), (responses, False)]:
        for found in copies.values():
            if len(found) < 2 or len({ref.connection for _at, ref in found}) < 2:
                continue
            found.sort(key=lambda item: item[0])
            if found[-1][0] - found[0][0] > RELAY_WINDOW:
                continue
            upstream = found[-1][1] if client_side_first else found[0][1]
            relayed.update(ref for _at, ref in found if ref.connection != upstream.connection)
    return relayed


# dataclasses.replace builds its keyword arguments field by field, about three
# times the cost of the constructor; every 401's verdict is set on a copy of
# its step, so a step is copied from its fields in order instead. A field that
# cannot be passed positionally would make that wrong: then replace it is.
_STEP_FIELDS = dataclasses.fields(AuthExchange)
_STEP_POSITION = {f.name: n for n, f in enumerate(_STEP_FIELDS)}
_step_values = operator.attrgetter(*_STEP_POSITION)
_POSITIONAL = all(f.init and not f.kw_only for f in _STEP_FIELDS)


def replaced(step: AuthExchange, **changes: object) -> AuthExchange:
    """`dataclasses.replace(step, **changes)`, cheaper."""
    if not _POSITIONAL:
        return dataclasses.replace(step, **changes)  # type: ignore[arg-type]
    values = list(_step_values(step))
    for name, value in changes.items():
        values[_STEP_POSITION[name]] = value
    return AuthExchange(*values)


def _mark_split_iis(timeline: ConnectionTimeline, targets: set[StepRef]) -> ConnectionTimeline:
    """A refused AUTHENTICATE of a split handshake is logged as an invalid token."""
    if not targets:
        return timeline
    steps = list(timeline.steps)
    changed = False
    for position, step in enumerate(steps):
        ref = StepRef(timeline.connection.id, position)
        if ref in targets and step.iis is not None and step.status == 401:
            steps[position] = replaced(step, iis=SPLIT_TRIPLE)
            changed = True
    return ConnectionTimeline(timeline.connection, tuple(steps)) if changed else timeline


def _resolve(
    timeline: ConnectionTimeline,
    follow_ups: _CredentialsIndex,
    client_of: Callable[[int], str],
    split_targets: set[StepRef],
    capture_end: float,
    positions: Iterable[int] | None = None,
) -> tuple[ConnectionTimeline, tuple[int, ...]]:
    """Set the outcome of every 401/407 of `timeline` (of those at `positions`
    only, when given); return the timeline and the positions whose verdict
    waits for the follow-up answer (`_CredentialsIndex.after`: None), left as
    they were. client_of: the client a step at a position was made for."""
    steps = list(timeline.steps)
    connection = timeline.connection
    latest: dict[tuple[Realm, bool], float] | None = None

    def came_back(step: AuthExchange, position: int) -> _CameBack | None:
        nonlocal latest
        if latest is None:
            latest = _latest_credentials(timeline)
        return follow_ups.after(step, client_of(position), connection.server, latest)

    waiting: list[int] = []
    for position in range(len(steps)) if positions is None else positions:
        step = steps[position]
        if not step.is_auth_failure_status:
            continue
        outcome = _outcome(step, position, timeline, came_back, split_targets, capture_end)
        if outcome is None:
            waiting.append(position)
        else:
            steps[position] = replaced(step, outcome=outcome)
    return ConnectionTimeline(connection, tuple(steps)), tuple(waiting)


def _latest_credentials(timeline: ConnectionTimeline) -> dict[tuple[Realm, bool], float]:
    """(realm, seen) -> the latest request on this connection that carried
    credentials (seen) or may have (a head the capture cut). O(k) in its steps."""
    latest: dict[tuple[Realm, bool], float] = {}
    for step in timeline.steps:
        if step.sent is Sent.NOTHING:
            continue
        mark = (step.realm, step.sent is not Sent.NOT_SEEN)
        when = request_time(step)
        latest[mark] = max(when, latest.get(mark, when))
    return latest


def _outcome(
    step: AuthExchange,
    position: int,
    timeline: ConnectionTimeline,
    came_back: Callable[[AuthExchange, int], _CameBack | None],
    split_targets: set[StepRef],
    capture_end: float,
) -> Outcome | None:
    """The verdict on one 401/407, or None when it waits for the follow-up
    answer (came_back: None, not known yet)."""
    connection = timeline.connection
    response = step.exchange.response
    assert response is not None
    if step.exchange.pairing is Pairing.UNCERTAIN:
        # A gap may have hidden messages: this 401 may answer another request
        # (http/exchanges.py), so nothing is concluded from it.
        return Outcome.INCOMPLETE
    if step.leg in _NOT_SEEN_LEGS:
        # The capture cut this leg, or one it depends on: not seen, not judged.
        return Outcome.INCOMPLETE
    if step.leg in _ANONYMOUS_REFUSALS:
        came = came_back(step, position)
        if came is None:
            return None
        if came is _CameBack.WITH_CREDENTIALS:
            return Outcome.NORMAL
        if came is _CameBack.NOT_SEEN:
            # A later request whose head the capture cut may have carried them.
            return Outcome.INCOMPLETE
        if (
            connection.close_reason is CloseReason.END_OF_CAPTURE
            and capture_end - response.timestamp <= END_OF_CAPTURE_MARGIN
            and not _later_requests(step, timeline, position)
        ):
            return Outcome.INCOMPLETE
        return Outcome.FAILURE
    if step.leg in NORMAL_LEGS:
        return Outcome.NORMAL
    if step.leg is Leg.NTLM_OUT_OF_SEQUENCE:
        ref = StepRef(connection.id, position)
        if ref not in split_targets and _start_missing(timeline, position):
            return Outcome.INCOMPLETE
    if (
        step.leg is Leg.NTLM_REJECTED
        and StepRef(connection.id, position) not in split_targets
        and _challenge_unsure(timeline, position)
    ):
        # (A split names the CHALLENGE it answers: that refusal is judged.)
        return Outcome.INCOMPLETE
    if step.leg is Leg.UNFOLLOWED:
        return Outcome.INCOMPLETE
    if step.leg is not Leg.HEADER_TOO_LARGE and is_not_kept(step.credentials):
        # Credentials in a cut head were sent but not read: nothing to judge
        # (a 400 for the size is judged: that is what it refused).
        return Outcome.INCOMPLETE
    return Outcome.FAILURE


def _challenge_unsure(timeline: ConnectionTimeline, position: int) -> bool:
    """A refused AUTHENTICATE may not answer the CHALLENGE just before it on its
    connection, so its refusal says nothing about the password. Proof first:
    an NTLMv2 AUTHENTICATE copies the MsvAvTimestamp of the CHALLENGE it
    answers (MS-NLMP 3.1.5.1.2); equal stamps prove that CHALLENGE, different
    ones prove another (on a connection whose CHALLENGE the capture lost, or
    in a gap: a split `_find_splits` could not see). Without both stamps, the
    capture must have lost nothing of the connection between the CHALLENGE
    and the AUTHENTICATE (a gap there may hide another handshake's legs).
    Cost: O(k) in the steps and gaps of this connection."""
    step = timeline.steps[position]
    own = _own_challenge(timeline, position)
    if own is None:
        return False
    challenge = timeline.steps[own.position]
    sent, given = _authenticate_timestamp(step), _challenge_timestamp(challenge)
    if sent is not None and given is not None:
        return sent != given
    response, request = challenge.exchange.response, step.exchange.request
    if response is None or request is None:
        return True
    return any(
        response.frame <= gap.frame <= request.shown_frame for gap in timeline.connection.gaps
    )


def _start_missing(timeline: ConnectionTimeline, position: int) -> bool:
    """The connection began before the capture and this is its first auth step."""
    if timeline.connection.syn_seen:
        return False
    earlier = timeline.steps[:position]
    return all(s.sent is Sent.NOTHING and s.leg not in _ANONYMOUS_REFUSALS for s in earlier)


def _later_requests(step: AuthExchange, timeline: ConnectionTimeline, position: int) -> bool:
    return any(s.realm is step.realm for s in timeline.steps[position + 1 :])


class _CameBack(enum.Enum):
    """Whether a client came back to a server after an anonymous 401."""

    WITH_CREDENTIALS = "with_credentials"
    NOT_SEEN = "not_seen"  # only with requests whose credentials the capture cut
    NO = "no"


class _CredentialsIndex:
    """When each client sent credentials to each server: answers "did the same
    client send credentials to the same server (this realm) later?" for an
    anonymous 401 — on its own connection at any later time, on another one
    within `FOLLOW_UP_WINDOW`. Behind a proxy the client is the one the request
    was relayed for (attribution.py), not the proxy's address. A request whose
    credentials the capture cut (Sent.NOT_SEEN) may have carried some: it is
    indexed apart, so that the answer is "not seen", never "no".

    It is compact (a time per request with credentials, under (client, server,
    realm, seen)) and carried across the blocks of a `LinkWindow`: each block
    adds the requests of its own connections. `known_until`: every request
    before it is indexed; a question whose answer could still come from a
    later request (no credentials seen yet, and known_until not past the 401's
    time + FOLLOW_UP_WINDOW) is answered None: not known yet.

    Bound: `prune` drops what no pending question can ask; LinkWindow keeps
    nothing older than its oldest waiting 401, which is never more than
    FOLLOW_UP_WINDOW before `known_until`.

    Cost: O(1) amortised per request added (a list per key, sorted when it is
    next read: timsort over a list nearly in time order), O(log n) per question.
    """

    __slots__ = ("_times", "_unsorted", "known_until")

    def __init__(self) -> None:
        self._times: dict[tuple[str, object, Realm, bool], list[float]] = {}
        self._unsorted: set[tuple[str, object, Realm, bool]] = set()
        self.known_until = math.inf

    def __len__(self) -> int:
        """How many request times it holds."""
        return sum(len(times) for times in self._times.values())

    def add(self, timelines: Iterable[ConnectionTimeline], identities: Identities) -> None:
        """Index the requests of `timelines` that carried (or may have carried)
        credentials, each under the client `identities` gives it."""
        times, unsorted = self._times, self._unsorted
        for timeline in timelines:
            connection = timeline.connection
            for step in timeline.steps:
                if step.sent is Sent.NOTHING:
                    continue
                seen = step.sent is not Sent.NOT_SEEN
                when = request_time(step)
                client = identities.of(connection, step.exchange)
                key = (client, connection.server, step.realm, seen)
                found = times.get(key)
                if found is None:
                    times[key] = [when]
                else:
                    if when < found[-1]:
                        unsorted.add(key)
                    found.append(when)

    def _run(self, key: tuple[str, object, Realm, bool]) -> list[float] | None:
        found = self._times.get(key)
        if found is not None and key in self._unsorted:
            found.sort()
            self._unsorted.discard(key)
        return found

    def prune(self, before: float) -> None:
        """Forget the requests made before `before`. O(keys)."""
        for key in list(self._times):
            found = self._run(key)
            assert found is not None
            cut = bisect_left(found, before)
            if cut == len(found):
                del self._times[key]
            elif cut:
                del found[:cut]

    def after(
        self,
        step: AuthExchange,
        client: str,
        server: object,
        latest_here: dict[tuple[Realm, bool], float],
    ) -> _CameBack | None:
        """Whether `client` came back to `server` after the anonymous 401 `step`
        (latest_here: `_latest_credentials` of its connection); None while a
        request still to be indexed may answer it."""
        after = _refused_at(step)
        if self._after(step.realm, client, server, after, latest_here, seen=True):
            return _CameBack.WITH_CREDENTIALS
        if not self.known_until - after > FOLLOW_UP_WINDOW:
            return None
        if self._after(step.realm, client, server, after, latest_here, seen=False):
            return _CameBack.NOT_SEEN
        return _CameBack.NO

    def _after(
        self,
        realm: Realm,
        client: str,
        server: object,
        after: float,
        latest_here: dict[tuple[Realm, bool], float],
        seen: bool,
    ) -> bool:
        latest = latest_here.get((realm, seen))
        if latest is not None and latest >= after:
            return True
        found = self._run((client, server, realm, seen))
        if not found:
            return False
        index = bisect_left(found, after)
        return index < len(found) and found[index] - after <= FOLLOW_UP_WINDOW


def _refused_at(step: AuthExchange) -> float:
    """When an anonymous 401 was answered: credentials after it came back."""
    response = step.exchange.response
    return response.timestamp if response is not None else request_time(step)


class _Spans:
    """When each connection of one linked window began and ended, in columns
    sorted by start (24 bytes a connection): what the window's waiting
    timelines keep of it, shared by all of them, until they are released."""

    __slots__ = ("ids", "firsts", "lasts")

    def __init__(self, timelines: Iterable[ConnectionTimeline]) -> None:
        spans = sorted(
            (t.connection.first_timestamp, t.connection.last_timestamp, t.connection.id)
            for t in timelines
        )
        self.firsts = array("d", (first for first, _last, _id in spans))
        self.lasts = array("d", (last for _first, last, _id in spans))
        self.ids = array("q", (connection for _first, _last, connection in spans))


class _Around:
    """The context a waiting timeline takes into the block that releases it:
    the connections of the window it was linked in whose time overlaps
    [start, end] (its own time widened by the horizon: every connection that
    could link to it). A waiting timeline took its whole window's context
    before, and a block that released some read the window before it again:
    on the mix profile a block's rules read about 7,900 timelines instead of
    about 3,900."""

    __slots__ = ("spans", "start", "end")

    def __init__(self, spans: _Spans, start: float, end: float) -> None:
        self.spans = spans
        self.start = start
        self.end = end

    @staticmethod
    def ids(arounds: Sequence[_Around]) -> set[int]:
        """The connections of every window named whose time overlaps one of
        its waiting timelines' spans: for each window, its spans merged, then
        one pass over the connections that began before the last span ends.
        O(n log m) for a window of n connections and m spans."""
        found: set[int] = set()
        by_window: dict[int, tuple[_Spans, list[tuple[float, float]]]] = {}
        for around in arounds:
            entry = by_window.setdefault(id(around.spans), (around.spans, []))
            entry[1].append((around.start, around.end))
        for spans, wanted in by_window.values():
            merged: list[list[float]] = []
            for start, end in sorted(wanted):
                if merged and start <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], end)
                else:
                    merged.append([start, end])
            starts = [span[0] for span in merged]
            stop = bisect_right(spans.firsts, merged[-1][1])
            for index in range(stop):
                # The last merged span that starts at or before this one's end.
                at = bisect_right(starts, spans.lasts[index]) - 1
                if at >= 0 and spans.firsts[index] <= merged[at][1]:
                    found.add(spans.ids[index])
        return found


class _Waiting:
    """A connection held by `LinkWindow` until what its block cannot know yet
    is known: its anonymous 401s at `positions` wait for the follow-up answer
    (`_CredentialsIndex.after` said None); its unanswered CHALLENGEs in
    `challenges` may still be claimed by a split AUTHENTICATE linked later
    (the rules of the block holding the CHALLENGE's connection read the split:
    handshake-closed-midway), until one is or SPLIT_WINDOW has passed. Every
    other verdict of `timeline` is set; `links` holds the links that belong to
    it (no timelines) and the context it was linked with."""

    __slots__ = ("timeline", "positions", "clients", "since", "links", "challenges", "around")

    def __init__(
        self,
        timeline: ConnectionTimeline,
        positions: tuple[int, ...],
        clients: dict[int, str],
        since: float,
    ) -> None:
        self.timeline = timeline
        self.positions = positions
        self.clients = clients  # position -> the client its 401 was made for
        self.since = since  # the earliest time its questions ask from
        self.links = LinkedBlock((), (), frozenset(), {}, {})
        self.challenges: tuple[_Challenge, ...] = ()
        self.around: _Around | None = None

    def open_challenges(self, carried: _Challenges, known_until: float) -> bool:
        """Some CHALLENGE of it may still be claimed by an AUTHENTICATE to come
        (made after `known_until`, it searches back SPLIT_WINDOW)."""
        return any(
            c.ref not in carried.claimed and known_until - SPLIT_WINDOW <= c.at
            for c in self.challenges
        )

    @classmethod
    def of(
        cls,
        timeline: ConnectionTimeline,
        positions: tuple[int, ...],
        client_of: Callable[[int], str],
    ) -> _Waiting:
        since = min((_refused_at(timeline.steps[p]) for p in positions), default=math.inf)
        return cls(timeline, positions, {p: client_of(p) for p in positions}, since)

    def client_of(self, position: int) -> str:
        return self.clients[position]


# The largest time bound of a step that links two connections (follow-up,
# split, relay, front: the constants above and attribution.FRONT_WINDOW): two
# connections further apart in capture time never link. KDC exchanges are not
# connections: they are linked to the Negotiate steps once reading ends
# (`join_links`, within KDC_WINDOW before each step).
LINK_HORIZON = max(FOLLOW_UP_WINDOW, SPLIT_WINDOW, RELAY_WINDOW, FRONT_WINDOW)
# The largest bound of the links that read whole timelines (relay, front):
# what `LinkWindow` keeps timelines for. The follow-up question (600 s) and the
# split search (120 s) go through compact indexes carried across blocks instead
# (`_CredentialsIndex`, `_Challenges`).
WINDOW_HORIZON = max(RELAY_WINDOW, FRONT_WINDOW)


class LinkWindow:
    """Links a capture's timelines as they are read, holding only those of a
    sliding window of capture time (issue 10: memory bounded by what is open).

    Timelines are added in connection order, which is the order their first
    frames were read. A timeline is final once a connection has started more
    than `horizon` after its last frame: every connection still to come starts
    later still, so none can link to it through a split, a relay or a front.
    Final timelines are linked in blocks (`BLOCK_HORIZONS` horizons of capture
    each), together with every timeline kept within `horizon` of them before
    and after; a final timeline is kept only while a timeline not yet final
    may link to it.

    The follow-up question of an anonymous 401 (did the client come back with
    credentials within FOLLOW_UP_WINDOW) reaches further than `horizon`: it is
    answered by a `_CredentialsIndex` carried across blocks, which each block
    feeds with its own connections' requests. A 401 whose client did not come
    back on its own connection and whose credentials were not seen yet waits:
    its timeline is held (with its links) until credentials come, the capture
    passes its time + FOLLOW_UP_WINDOW (every connection that could answer has
    been linked), or `finish`, and is handed on, final, in the block linked
    then. So a block holds the final timelines of the connections it was
    linked with, except those still waiting, and may hold connections that
    waited since earlier blocks; its context then includes the connections
    they were linked with.

    Invariant: every timeline handed on is final (every verdict set) and is
    in exactly one block; with `horizon` >= WINDOW_HORIZON and frames in time
    order, each block is linked with every connection that can link to it, so
    the blocks joined (`join_links`) give what `link` gives over the whole
    capture. Two decisions are greedy (one CHALLENGE answers one
    AUTHENTICATE; one front request is relayed once), and a block weighs only
    the competitors within `horizon` of it: a chain of competitors longer
    than that could end otherwise. `_find_splits` takes an AUTHENTICATE's
    MsvAvTimestamp as proof when exactly one CHALLENGE within the window holds
    it. A connection that starts before a block it could link to was already
    final (time stamps going back) is counted in `late`: the links it may
    have had to that block are not looked for.

    Memory: the timelines of about BLOCK_HORIZONS + 2 horizons of capture,
    the ones waiting (anonymous 401s nobody answered yet, at most
    FOLLOW_UP_WINDOW of them) and the follow-up index (a float per request
    with credentials, back to the oldest waiting 401). `held_peak` is the
    most timelines it held at once.

    Cost: each block link is O(n log n) in its n steps, and a timeline takes
    part in 1 + 2 / BLOCK_HORIZONS of them on average (its own block, and as
    context of the next or the one before), so O(n log n) in all; the blocks
    are long so that linking a long capture costs about what one link of the
    whole does (1.5 times, against 3 times for blocks of one horizon). A
    waiting timeline is asked again once per block: O(w) per block.
    """

    __slots__ = (
        "_horizon",
        "_block",
        "_pending",
        "_kept",
        "_newest",
        "_flush_at",
        "_cut",
        "_follow_ups",
        "_challenges",
        "_waiting",
        "late",
        "blocks",
        "held_peak",
    )

    # How many horizons of capture time one block covers.
    BLOCK_HORIZONS = 4

    def __init__(self, horizon: float = WINDOW_HORIZON) -> None:
        self._horizon = horizon
        self._block = horizon * self.BLOCK_HORIZONS
        self._pending: list[ConnectionTimeline] = []
        self._kept: list[ConnectionTimeline] = []
        self._newest = float("-inf")  # the latest connection start seen
        self._flush_at: float | None = None
        self._cut = float("-inf")  # every timeline that ended before this is final
        self._follow_ups = _CredentialsIndex()
        self._challenges = _Challenges()
        self._waiting: list[_Waiting] = []
        self.late = 0
        self.blocks = 0  # how many blocks were linked
        self.held_peak = 0  # the most timelines held at once

    def __len__(self) -> int:
        """How many timelines the window holds (waiting ones included)."""
        return len(self._pending) + len(self._kept) + len(self._waiting)

    @property
    def waiting(self) -> int:
        """How many timelines wait for a follow-up answer."""
        return len(self._waiting)

    def add(self, timeline: ConnectionTimeline) -> LinkedBlock | None:
        """Take the next timeline; return the block that became final, if any."""
        start = timeline.connection.first_timestamp
        if start < self._cut + self._horizon:
            self.late += 1
        if start > self._newest:
            self._newest = start
        self._pending.append(timeline)
        held = len(self)
        if held > self.held_peak:
            self.held_peak = held
        if self._flush_at is None:
            self._flush_at = timeline.connection.last_timestamp + self._horizon + self._block
        if self._newest <= self._flush_at:
            return None
        return self._flush(self._newest - self._horizon)

    def finish(self, capture_end: float) -> LinkedBlock | None:
        """Everything left is final: link it (capture_end: for the 401s that
        the end of the capture may have cut off)."""
        if not self._pending and not self._waiting:
            return None
        # Only waiting timelines left: nothing to link, they are handed on.
        window = _in_order(self._kept + self._pending) if self._pending else []
        # Without context kept from earlier blocks, every result is this block's.
        keep = frozenset(t.connection.id for t in self._pending) if self._kept else None
        committed = frozenset(t.connection.id for t in self._kept)
        self._pending, self._kept = [], []
        block = self._link(window, capture_end, keep, math.inf, committed)
        self._challenges = _Challenges()
        return block

    def _flush(self, cut: float) -> LinkedBlock | None:
        horizon = self._horizon
        final = [
            t
            for t in self._pending
            if t.connection.last_timestamp < cut
            and t.connection.close_reason is not CloseReason.END_OF_CAPTURE
        ]
        self._flush_at = self._newest + self._block
        if not final:
            return None
        self._cut = cut
        keep = frozenset(t.connection.id for t in final)
        window = _in_order(self._kept + self._pending)
        self._pending = [t for t in self._pending if t.connection.id not in keep]
        oldest = min((t.connection.first_timestamp for t in self._pending), default=self._newest)
        oldest = min(oldest, self._newest)
        # Not yet final: no 401 among them is judged here, so no capture end is
        # needed. Every request before `oldest` is in the follow-up index once
        # this block's are: connections still to come start later.
        committed = frozenset(t.connection.id for t in self._kept)
        block = self._link(window, float("inf"), keep, oldest, committed)
        self._kept = [
            t for t in self._kept + final if t.connection.last_timestamp >= oldest - horizon
        ]
        self._forget(oldest)
        return block

    def _link(
        self,
        window: list[ConnectionTimeline],
        capture_end: float,
        keep: frozenset[int] | None,
        known_until: float,
        committed: frozenset[int],
    ) -> LinkedBlock:
        """Link a block over `window` (`committed`: its connections linked in
        earlier blocks), then hand on with it the waiting timelines whose
        answer is now known."""
        follow_ups = self._follow_ups
        follow_ups.known_until = known_until
        if window:
            block, waiting = _link_part(
                window,
                capture_end,
                keep,
                follow_ups,
                False,
                self._challenges,
                committed,
                self._horizon,
            )
        else:
            block, waiting = LinkedBlock((), (), frozenset(), {}, {}), []
        released: list[_Waiting] = []
        still: list[_Waiting] = []
        for held in self._waiting:
            timeline, left = _resolve(
                held.timeline, follow_ups, held.client_of, set(), capture_end, held.positions
            )
            held.timeline = timeline
            held.positions = left
            if left or held.open_challenges(self._challenges, known_until):
                still.append(held)
            else:
                released.append(held)
        self._waiting = still + waiting
        # No question still to come asks about requests before `known_until`
        # (their 401s are later), nor a waiting one before its own 401.
        follow_ups.prune(
            min([known_until, *(held.since for held in self._waiting if held.positions)])
        )
        self.blocks += 1
        return block if not released else _with_released(block, released)

    def _forget(self, known_until: float) -> None:
        """Drop what no AUTHENTICATE still to be linked can reach: they are
        all made after `known_until`, and the window keeps `_kept`."""
        self._challenges.prune(
            known_until - SPLIT_WINDOW, frozenset(t.connection.id for t in self._kept)
        )


def _with_released(block: LinkedBlock, released: list[_Waiting]) -> LinkedBlock:
    """`block` and the timelines (with their links) that waited until it. O(n log n)."""
    timelines = list(block.timelines) + [held.timeline for held in released]
    splits = list(block.splits)
    relayed = set(block.relayed)
    clients = dict(block.clients)
    fronts = dict(block.fronts)
    context = set(block.context)
    for held in released:
        links = held.links
        splits.extend(links.splits)
        relayed.update(links.relayed)
        clients.update(links.clients)
        fronts.update(links.fronts)
        context.update(links.context)
    context.update(_Around.ids([held.around for held in released if held.around is not None]))
    return LinkedBlock(
        tuple(_in_order(timelines)),
        tuple(sorted(splits, key=lambda s: (s.authenticate.connection, s.authenticate.position))),
        frozenset(relayed),
        clients,
        dict(sorted(fronts.items(), key=_ref_order)),
        frozenset(context),
    )


def _in_order(timelines: list[ConnectionTimeline]) -> list[ConnectionTimeline]:
    """Connection order, in which `link` weighs greedy decisions."""
    return sorted(timelines, key=lambda timeline: timeline.connection.id)


def realm_label(realm: Realm) -> str:
    return "proxy" if realm is Realm.PROXY else "server"
