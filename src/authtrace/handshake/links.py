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
import operator
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from authtrace.auth.kinds import Message
from authtrace.auth.ntlm import NtlmAuthenticate, NtlmChallenge
from authtrace.auth.steps import is_not_kept
from authtrace.handshake.attribution import FRONT_WINDOW, Identities, identify
from authtrace.handshake.index import TimeIndex
from authtrace.handshake.model import (
    NORMAL_LEGS,
    AuthExchange,
    IisTriple,
    Leg,
    Outcome,
    Realm,
    Sent,
)
from authtrace.handshake.timeline import ConnectionTimeline
from authtrace.http.messages import HttpConnection, Pairing
from authtrace.iis.predict import SPLIT_TRIPLE
from authtrace.kerberos.kdc import KdcExchange
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


@dataclass(frozen=True, slots=True)
class HandshakeView:
    """Everything the rules read: judged timelines and the links between them."""

    timelines: tuple[ConnectionTimeline, ...]
    splits: tuple[SplitHandshake, ...]
    relayed: frozenset[StepRef]  # client-side copies of a request a proxy forwarded
    capture_start: float
    capture_end: float
    by_id: dict[int, ConnectionTimeline]
    kdc_links: dict[StepRef, tuple[KdcExchange, ...]] = field(default_factory=dict)
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

    def around(self, context: frozenset[int]) -> HandshakeView:
        """The view a block's per-block rules read (diagnose.Diagnosis.block):
        the timelines of `context` (a block and the connections it was linked
        with) and the splits among them; every look-up (by id, links, clients,
        fronts) is the whole view's. O(n) in the context."""
        return dataclasses.replace(
            self,
            timelines=tuple(self.by_id[i] for i in sorted(context) if i in self.by_id),
            splits=tuple(
                s
                for s in self.splits
                if s.challenge.connection in context and s.authenticate.connection in context
            ),
        )


def host_of(step: AuthExchange, connection: HttpConnection) -> str:
    """The server as the client named it: the Host header, else the address."""
    request = step.exchange.request
    host = request.host if request is not None else None
    if host:
        host = host.strip().lower()
        if host.endswith(":80") or host.endswith(":443"):
            host = host.rsplit(":", 1)[0]
        return host
    return str(connection.server)


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
    context: frozenset[int] = frozenset()

    @property
    def own(self) -> frozenset[int]:
        """The connections whose results this block holds."""
        return frozenset(timeline.connection.id for timeline in self.timelines)


def _link_block(
    timelines: list[ConnectionTimeline], capture_end: float, keep: frozenset[int] | None = None
) -> LinkedBlock:
    """Link `timelines` together; keep the results of the connections in `keep`
    (all for None), the others being only there to link to. O(n log n) in steps."""
    relayed = _find_relays(timelines)
    identities = identify(timelines)
    clients, fronts = _attributed(timelines, identities, relayed)
    splits = _find_splits(timelines, relayed)
    split_targets = {split.authenticate for split in splits}
    came_back = _CredentialsIndex(timelines, identities)
    resolved = [_resolve(timeline, came_back, split_targets, capture_end) for timeline in timelines]
    resolved = [_mark_split_iis(timeline, split_targets) for timeline in resolved]
    resolved = _relayed_iis(resolved, fronts, relayed)
    context = frozenset(t.connection.id for t in timelines)
    if keep is None:
        return LinkedBlock(
            tuple(resolved), tuple(splits), frozenset(relayed), clients, fronts, context
        )
    return LinkedBlock(
        tuple(t for t in resolved if t.connection.id in keep),
        tuple(s for s in splits if s.authenticate.connection in keep),
        frozenset(r for r in relayed if r.connection in keep),
        {ref: client for ref, client in clients.items() if ref.connection in keep},
        {ref: front for ref, front in fronts.items() if ref.connection in keep},
        context,
    )


def join_links(
    blocks: Iterable[LinkedBlock],
    capture_start: float,
    capture_end: float,
    kdc: tuple[KdcExchange, ...] = (),
) -> HandshakeView:
    """One view of linked blocks of disjoint connections, in connection order
    (the order `link` gives), with the KDC exchanges behind each Negotiate step.
    O(n log n) in steps."""
    blocks = list(blocks)
    timelines: list[ConnectionTimeline] = []
    splits: list[SplitHandshake] = []
    relayed: set[StepRef] = set()
    for block in blocks:
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
    timelines.sort(key=lambda timeline: timeline.connection.id)
    splits.sort(key=lambda split: (split.authenticate.connection, split.authenticate.position))
    return HandshakeView(
        tuple(timelines),
        tuple(splits),
        frozenset(relayed),
        capture_start,
        capture_end,
        {timeline.connection.id: timeline for timeline in timelines},
        _link_kdc(timelines, kdc),
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


def _link_kdc(
    timelines: list[ConnectionTimeline], kdc: tuple[KdcExchange, ...]
) -> dict[StepRef, tuple[KdcExchange, ...]]:
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
    links: dict[StepRef, tuple[KdcExchange, ...]] = {}
    if not entries:
        return links
    by_service = TimeIndex((spn, when, item) for spn, _ip, when, item in entries)
    by_client = TimeIndex(((spn, ip), when, item) for spn, ip, when, item in entries)
    for timeline in timelines:
        client_ip = timeline.connection.client.ip
        for position, step in enumerate(timeline.steps):
            credentials = step.credentials
            if credentials is None or credentials.scheme.lower() not in _NEGOTIATE_SCHEMES:
                continue
            name = host_of(step, timeline.connection)
            if name.count(":") == 1:
                name = name.rsplit(":", 1)[0]
            service = f"http/{name}"
            when = request_time(step)
            start, end = when - KDC_WINDOW, when + KDC_CLOCK_SLACK
            found = by_client.between((service, client_ip), start, end)
            if not found:
                found = by_service.between(service, start, end)[-MAX_OTHER_ADDRESS_KDC:]
            if found:
                # In the order the KDC exchanges were given (the order they completed).
                links[StepRef(timeline.connection.id, position)] = tuple(
                    exchange for _n, exchange in sorted(found, key=lambda item: item[0])
                )
    return links


@dataclass(frozen=True, slots=True)
class _Challenge:
    """An NTLM CHALLENGE a split AUTHENTICATE may answer (index entry)."""

    at: float = field(compare=False)
    ref: StepRef
    timeline: ConnectionTimeline = field(compare=False)


def _find_splits(
    timelines: list[ConnectionTimeline], relayed: set[StepRef]
) -> list[SplitHandshake]:
    """NTLM AUTHENTICATE messages answering a CHALLENGE that went out on another
    connection (or an earlier exchange than the one just before them).

    Proof first: an NTLMv2 AUTHENTICATE carries the server's MsvAvTimestamp
    copied from the CHALLENGE it answers (MS-NLMP 3.1.5.1.2), which names that
    CHALLENGE exactly. Without it (NTLMv1, or timestamps that repeat), fall back
    to timing: the latest unanswered CHALLENGE to the same server within
    `SPLIT_WINDOW`, preferring the same client address. Client-side copies of
    proxied exchanges are left out: the judgement belongs to the upstream copy.

    Cost: O(n log n) to index the CHALLENGEs by timestamp (a dict), by (realm,
    server) and by (realm, server, client address) in time order; then for each
    AUTHENTICATE O(1) for the proof or O(log n + r) for the timing search, r being
    its own connection's unanswered CHALLENGEs in the window (a claimed CHALLENGE
    is taken out of the index, not walked over again).
    """
    unanswered: list[tuple[tuple[str, object], str, _Challenge]] = []
    by_stamp: dict[object, list[StepRef]] = defaultdict(list)
    for timeline in timelines:
        for position, step in enumerate(timeline.steps):
            if step.leg is not Leg.NTLM_CHALLENGE or step.exchange.response is None:
                continue
            ref = StepRef(timeline.connection.id, position)
            if ref in relayed:
                continue
            stamp = _challenge_timestamp(step)
            if stamp is not None:
                by_stamp[stamp].append(ref)
            if not _answered_on_own_connection(timeline, position):
                key = (step.realm.value, timeline.connection.server)
                challenge = _Challenge(step.exchange.response.timestamp, ref, timeline)
                unanswered.append((key, timeline.connection.client.ip, challenge))
    by_server = TimeIndex((key, c.at, c) for key, _ip, c in unanswered)
    by_client = TimeIndex(((key, ip), c.at, c) for key, ip, c in unanswered)
    index = {timeline.connection.id: timeline for timeline in timelines}
    splits: list[SplitHandshake] = []
    claimed: set[StepRef] = set()
    for timeline in timelines:
        connection = timeline.connection
        for position, step in enumerate(timeline.steps):
            here = StepRef(connection.id, position)
            if step.sent is not Sent.NTLM_AUTHENTICATE or here in relayed:
                continue
            own = _own_challenge(timeline, position)
            stamp = _authenticate_timestamp(step)
            proven = by_stamp.get(stamp, []) if stamp is not None else []
            if len(proven) == 1:
                ref = proven[0]
                if ref == own:
                    continue  # answers the CHALLENGE just before it: a proper handshake
                other = index[ref.connection]
                _claim(ref, other, by_server, by_client, claimed)
                splits.append(_split(ref, here, other, connection, "MsvAvTimestamp"))
                continue
            if step.leg not in (Leg.NTLM_OUT_OF_SEQUENCE, Leg.NTLM_OUT_OF_SEQUENCE_ACCEPTED):
                continue
            when = request_time(step)
            key = (step.realm.value, connection.server)

            def elsewhere(challenge: _Challenge, own_id: int = connection.id) -> bool:
                return challenge.ref.connection != own_id

            start = when - SPLIT_WINDOW
            found = by_client.latest((key, connection.client.ip), start, when, elsewhere)
            if found is None:
                found = by_server.latest(key, start, when, elsewhere)
            if found is None:
                continue
            _claim(found.ref, found.timeline, by_server, by_client, claimed)
            splits.append(_split(found.ref, here, found.timeline, connection, "timing"))
    return splits


def _claim(
    ref: StepRef,
    timeline: ConnectionTimeline,
    by_server: TimeIndex[_Challenge],
    by_client: TimeIndex[_Challenge],
    claimed: set[StepRef],
) -> None:
    """One CHALLENGE answers one AUTHENTICATE: take it out of the timing search."""
    if ref in claimed:
        return
    claimed.add(ref)
    step = timeline.steps[ref.position]
    response = step.exchange.response
    if response is None or _answered_on_own_connection(timeline, ref.position):
        return  # never indexed
    challenge = _Challenge(response.timestamp, ref, timeline)
    key = (step.realm.value, timeline.connection.server)
    by_server.take(key, challenge.at, challenge)
    by_client.take((key, timeline.connection.client.ip), challenge.at, challenge)


def _split(
    challenge: StepRef,
    authenticate: StepRef,
    challenge_timeline: ConnectionTimeline,
    connection: HttpConnection,
    proof: str,
) -> SplitHandshake:
    return SplitHandshake(
        challenge=challenge,
        authenticate=authenticate,
        same_client=challenge_timeline.connection.client.ip == connection.client.ip,
        challenge_connection_closed=_closed_after(challenge_timeline, challenge.position),
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
    realm = timeline.steps[position].realm
    for step in timeline.steps[position + 1 :]:
        if step.realm is realm:
            return step.sent is Sent.NTLM_AUTHENTICATE
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
    later = [s for s in timeline.steps[position + 1 :] if s.realm is step.realm]
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
    came_back: _CredentialsIndex,
    split_targets: set[StepRef],
    capture_end: float,
) -> ConnectionTimeline:
    steps = list(timeline.steps)
    connection = timeline.connection
    for position, step in enumerate(steps):
        if not step.is_auth_failure_status:
            continue
        outcome = _outcome(step, position, timeline, came_back, split_targets, capture_end)
        steps[position] = replaced(step, outcome=outcome)
    return ConnectionTimeline(connection, tuple(steps))


def _outcome(
    step: AuthExchange,
    position: int,
    timeline: ConnectionTimeline,
    came_back: _CredentialsIndex,
    split_targets: set[StepRef],
    capture_end: float,
) -> Outcome:
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
        came = came_back.after(step, timeline)
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

    Cost: O(n log n) to build over n steps, O(log n) per question.
    """

    __slots__ = ("_times", "_latest_on", "_identities")

    def __init__(self, timelines: list[ConnectionTimeline], identities: Identities) -> None:
        entries: list[tuple[tuple[str, object, Realm, bool], float, None]] = []
        latest_on: dict[tuple[int, Realm, bool], float] = {}
        self._identities = identities
        for timeline in timelines:
            connection = timeline.connection
            for step in timeline.steps:
                if step.sent is Sent.NOTHING:
                    continue
                seen = step.sent is not Sent.NOT_SEEN
                when = request_time(step)
                client = identities.of(connection, step.exchange)
                entries.append(((client, connection.server, step.realm, seen), when, None))
                mark = (connection.id, step.realm, seen)
                latest_on[mark] = max(when, latest_on.get(mark, when))
        self._times: TimeIndex[None] = TimeIndex(entries)
        self._latest_on = latest_on

    def after(self, step: AuthExchange, timeline: ConnectionTimeline) -> _CameBack:
        if self._after(step, timeline, seen=True):
            return _CameBack.WITH_CREDENTIALS
        if self._after(step, timeline, seen=False):
            return _CameBack.NOT_SEEN
        return _CameBack.NO

    def _after(self, step: AuthExchange, timeline: ConnectionTimeline, seen: bool) -> bool:
        response = step.exchange.response
        after = response.timestamp if response is not None else request_time(step)
        connection = timeline.connection
        latest_here = self._latest_on.get((connection.id, step.realm, seen))
        if latest_here is not None and latest_here >= after:
            return True
        client = self._identities.of(connection, step.exchange)
        first = self._times.first_at_or_after((client, connection.server, step.realm, seen), after)
        return first is not None and first - after <= FOLLOW_UP_WINDOW


# The largest time bound of a step that links two connections (follow-up,
# split, relay, front: the constants above and attribution.FRONT_WINDOW): two
# connections further apart in capture time never link. KDC exchanges are not
# connections: they are linked to the Negotiate steps once reading ends
# (`join_links`, within KDC_WINDOW before each step).
LINK_HORIZON = max(FOLLOW_UP_WINDOW, SPLIT_WINDOW, RELAY_WINDOW, FRONT_WINDOW)


class LinkWindow:
    """Links a capture's timelines as they are read, holding only those of a
    sliding window of capture time (issue 10: memory bounded by what is open).

    Timelines are added in connection order, which is the order their first
    frames were read. A timeline is final once a connection has started more
    than `horizon` after its last frame: every connection still to come starts
    later still, so none can link to it. Final timelines are linked in blocks
    (`BLOCK_HORIZONS` horizons of capture each), together with every timeline
    kept within `horizon` of them before and after; a final timeline is kept
    only while a timeline not yet final may link to it.

    Invariant: with `horizon` >= LINK_HORIZON and frames in time order, each
    block is linked with every connection that can link to it, so the blocks
    joined (`join_links`) give what `link` gives over the whole capture. Two
    decisions are greedy (one CHALLENGE answers one AUTHENTICATE; one front
    request is relayed once), and a block weighs only the competitors within
    `horizon` of it: a chain of competitors longer than that could end
    otherwise. A connection that starts before a block it could link to was
    already final (time stamps going back) is counted in `late`: the links it
    may have had to that block are not looked for.

    Cost: each block link is O(n log n) in its n steps, and a timeline takes
    part in 1 + 2 / BLOCK_HORIZONS of them on average (its own block, and as
    context of the next or the one before), so O(n log n) in all; the blocks
    are long so that linking a long capture costs about what one link of the
    whole does (1.5 times, against 3 times for blocks of one horizon).
    """

    __slots__ = (
        "_horizon",
        "_block",
        "_pending",
        "_kept",
        "_newest",
        "_flush_at",
        "_cut",
        "late",
        "blocks",
    )

    # How many horizons of capture time one block covers.
    BLOCK_HORIZONS = 4

    def __init__(self, horizon: float = LINK_HORIZON) -> None:
        self._horizon = horizon
        self._block = horizon * self.BLOCK_HORIZONS
        self._pending: list[ConnectionTimeline] = []
        self._kept: list[ConnectionTimeline] = []
        self._newest = float("-inf")  # the latest connection start seen
        self._flush_at: float | None = None
        self._cut = float("-inf")  # every timeline that ended before this is final
        self.late = 0
        self.blocks = 0  # how many blocks were linked

    def __len__(self) -> int:
        """How many timelines the window holds."""
        return len(self._pending) + len(self._kept)

    def add(self, timeline: ConnectionTimeline) -> LinkedBlock | None:
        """Take the next timeline; return the block that became final, if any."""
        start = timeline.connection.first_timestamp
        if start < self._cut + self._horizon:
            self.late += 1
        if start > self._newest:
            self._newest = start
        self._pending.append(timeline)
        if self._flush_at is None:
            self._flush_at = timeline.connection.last_timestamp + self._horizon + self._block
        if self._newest <= self._flush_at:
            return None
        return self._flush(self._newest - self._horizon)

    def finish(self, capture_end: float) -> LinkedBlock | None:
        """Everything left is final: link it (capture_end: for the 401s that
        the end of the capture may have cut off)."""
        if not self._pending:
            return None
        window = _in_order(self._kept + self._pending)
        # Without context kept from earlier blocks, every result is this block's.
        keep = frozenset(t.connection.id for t in self._pending) if self._kept else None
        self._pending, self._kept = [], []
        self.blocks += 1
        return _link_block(window, capture_end, keep)

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
        # Not yet final: no 401 among them is judged here, so no capture end is needed.
        block = _link_block(_in_order(self._kept + self._pending), float("inf"), keep)
        self.blocks += 1
        self._pending = [t for t in self._pending if t.connection.id not in keep]
        oldest = min((t.connection.first_timestamp for t in self._pending), default=self._newest)
        oldest = min(oldest, self._newest)
        self._kept = [
            t for t in self._kept + final if t.connection.last_timestamp >= oldest - horizon
        ]
        return block


def _in_order(timelines: list[ConnectionTimeline]) -> list[ConnectionTimeline]:
    """Connection order, in which `link` weighs greedy decisions."""
    return sorted(timelines, key=lambda timeline: timeline.connection.id)


def realm_label(realm: Realm) -> str:
    return "proxy" if realm is Realm.PROXY else "server"
