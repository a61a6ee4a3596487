"""Links across connections, and the final verdict on every 401/407.

A single 401 is never judged alone (DESIGN: "judge the sequence"): whether an
anonymous 401 was a normal first leg depends on whether the client went on to
authenticate, possibly on another connection; an NTLM AUTHENTICATE that reached
a connection without its CHALLENGE is explained by the connection that carried
that CHALLENGE. This module owns those cross-connection decisions.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass, field

from authtrace.auth.kinds import Message
from authtrace.handshake.machine import SPLIT_TRIPLE
from authtrace.handshake.model import NORMAL_LEGS, AuthExchange, Leg, Outcome, Realm, Sent
from authtrace.handshake.timeline import ConnectionTimeline
from authtrace.http.messages import HttpConnection
from authtrace.kerberos.kdc import KdcExchange

# How long after an anonymous 401 a client may take to come back with credentials,
# and how far apart the legs of one split NTLM handshake may be.
FOLLOW_UP_WINDOW = 600.0  # a person may take minutes to type a password
SPLIT_WINDOW = 120.0
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

    def step(self, ref: StepRef) -> AuthExchange:
        return self.by_id[ref.connection].steps[ref.position]

    def kdc_for(self, ref: StepRef) -> tuple[KdcExchange, ...]:
        """The KDC exchanges for HTTP/<host> that served this step's client."""
        return self.kdc_links.get(ref, ())


def host_of(step: AuthExchange, connection: HttpConnection) -> str:
    """The server as the client named it: the Host header, else the address."""
    request = step.exchange.request
    host = request.header("Host") if request is not None else None
    if host:
        host = host.strip().lower()
        if host.endswith(":80") or host.endswith(":443"):
            host = host.rsplit(":", 1)[0]
        return host
    return str(connection.server)


def request_time(step: AuthExchange) -> float:
    if step.exchange.request is not None:
        return step.exchange.request.timestamp
    assert step.exchange.response is not None
    return step.exchange.response.timestamp


def link(
    timelines: list[ConnectionTimeline],
    capture_start: float,
    capture_end: float,
    kdc: tuple[KdcExchange, ...] = (),
) -> HandshakeView:
    """Find split handshakes, proxy relays and the KDC exchanges behind each
    Negotiate step, then give every 401/407 its outcome."""
    relayed = _find_relays(timelines)
    splits = _find_splits(timelines, relayed)
    split_targets = {split.authenticate for split in splits}
    resolved = [_resolve(timeline, timelines, split_targets, capture_end) for timeline in timelines]
    resolved = [_mark_split_iis(timeline, split_targets) for timeline in resolved]
    return HandshakeView(
        tuple(resolved),
        tuple(splits),
        frozenset(relayed),
        capture_start,
        capture_end,
        {timeline.connection.id: timeline for timeline in resolved},
        _link_kdc(resolved, kdc),
    )


# How long before a Negotiate request its ticket may have been asked for (tickets
# are cached for hours, but a capture shows the request only if it was fresh).
KDC_WINDOW = 600.0
_NEGOTIATE_SCHEMES = frozenset({"negotiate", "kerberos"})


def _link_kdc(
    timelines: list[ConnectionTimeline], kdc: tuple[KdcExchange, ...]
) -> dict[StepRef, tuple[KdcExchange, ...]]:
    """For each request with Negotiate/Kerberos credentials, the KDC exchanges for
    the service principal HTTP/<host> in the window before it: from the same
    client address when there are any, else from any address (a multi-homed or
    loopback client asks the KDC from another address than it uses for HTTP)."""
    by_service: dict[str, list[KdcExchange]] = defaultdict(list)
    for exchange in kdc:
        if exchange.spn and exchange.request_time is not None:
            by_service[exchange.spn].append(exchange)
    links: dict[StepRef, tuple[KdcExchange, ...]] = {}
    if not by_service:
        return links
    for timeline in timelines:
        for position, step in enumerate(timeline.steps):
            credentials = step.credentials
            if credentials is None or credentials.scheme.lower() not in _NEGOTIATE_SCHEMES:
                continue
            name = host_of(step, timeline.connection)
            if name.count(":") == 1:
                name = name.rsplit(":", 1)[0]
            when = request_time(step)
            candidates = [
                k
                for k in by_service.get(f"http/{name}", ())
                if k.request_time is not None and -5.0 <= when - k.request_time <= KDC_WINDOW
            ]
            own = [k for k in candidates if k.client.ip == timeline.connection.client.ip]
            if own or candidates:
                links[StepRef(timeline.connection.id, position)] = tuple(own or candidates)
    return links


def _find_splits(
    timelines: list[ConnectionTimeline], relayed: set[StepRef]
) -> list[SplitHandshake]:
    """NTLM AUTHENTICATE messages answering a CHALLENGE that went out on another
    connection (or an earlier exchange than the one just before them).

    Proof first: an NTLMv2 AUTHENTICATE carries the server's MsvAvTimestamp
    copied from the CHALLENGE it answers (MS-NLMP 3.1.5.1.2), which names that
    CHALLENGE exactly. Without it (NTLMv1, or timestamps that repeat), fall back
    to timing: the latest unanswered CHALLENGE to the same server, preferring the
    same client address. Client-side copies of proxied exchanges are left out:
    the judgement belongs to the upstream copy.
    """
    challenges: dict[str, list[tuple[float, StepRef, ConnectionTimeline]]] = defaultdict(list)
    by_stamp: dict[object, list[StepRef]] = defaultdict(list)
    for timeline in timelines:
        for position, step in enumerate(timeline.steps):
            if StepRef(timeline.connection.id, position) in relayed:
                continue
            if step.leg is Leg.NTLM_CHALLENGE and step.exchange.response is not None:
                key = f"{step.realm.value} {timeline.connection.server}"
                ref = StepRef(timeline.connection.id, position)
                challenges[key].append((step.exchange.response.timestamp, ref, timeline))
                stamp = _challenge_timestamp(step)
                if stamp is not None:
                    by_stamp[stamp].append(ref)
    index = {timeline.connection.id: timeline for timeline in timelines}
    splits: list[SplitHandshake] = []
    used: set[StepRef] = set()
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
                used.add(ref)
                splits.append(_split(ref, here, other, connection, "MsvAvTimestamp"))
                continue
            if step.leg not in (Leg.NTLM_OUT_OF_SEQUENCE, Leg.NTLM_OUT_OF_SEQUENCE_ACCEPTED):
                continue
            when = request_time(step)
            key = f"{step.realm.value} {connection.server}"
            candidates = [
                (at, ref, other)
                for at, ref, other in challenges.get(key, [])
                if ref.connection != connection.id
                and ref not in used
                and 0 <= when - at <= SPLIT_WINDOW
                and not _answered_on_own_connection(other, ref.position)
            ]
            if not candidates:
                continue
            candidates.sort(
                key=lambda item: (item[2].connection.client.ip == connection.client.ip, item[0])
            )
            _at, ref, other = candidates[-1]
            used.add(ref)
            splits.append(_split(ref, here, other, connection, "timing"))
    return splits


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


def _challenge_timestamp(step: AuthExchange) -> object | None:
    for challenge in step.challenges:
        target_info = getattr(challenge.innermost, "target_info", None)
        stamp = getattr(target_info, "timestamp", None)
        if stamp is not None:
            return stamp
    return None


def _authenticate_timestamp(step: AuthExchange) -> object | None:
    if step.credentials is None:
        return None
    ntlmv2 = getattr(step.credentials.innermost, "ntlmv2", None)
    av_pairs = getattr(ntlmv2, "av_pairs", None)
    return getattr(av_pairs, "timestamp", None)


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
    if connection.close_reason == "rst":
        return True
    return connection.close_reason == "fin" and connection.closed_by == "to_client"


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
    """
    requests: dict[bytes, list[tuple[float, StepRef]]] = defaultdict(list)
    responses: dict[bytes, list[tuple[float, StepRef]]] = defaultdict(list)
    for timeline in timelines:
        for position, step in enumerate(timeline.steps):
            ref = StepRef(timeline.connection.id, position)
            credentials = step.credentials
            if credentials is not None and credentials.message in _UNIQUE_MESSAGES:
                requests[credentials.raw].append((request_time(step), ref))
            response = step.exchange.response
            for challenge in step.challenges:
                if response is not None and challenge.message in _UNIQUE_MESSAGES:
                    responses[challenge.raw].append((response.timestamp, ref))
    relayed: set[StepRef] = set()
    for copies, client_side_first in [(requests, True), (responses, False)]:
        for found in copies.values():
            if len({ref.connection for _at, ref in found}) < 2:
                continue
            found.sort(key=lambda item: item[0])
            if found[-1][0] - found[0][0] > RELAY_WINDOW:
                continue
            upstream = found[-1][1] if client_side_first else found[0][1]
            relayed.update(ref for _at, ref in found if ref.connection != upstream.connection)
    return relayed


def _mark_split_iis(timeline: ConnectionTimeline, targets: set[StepRef]) -> ConnectionTimeline:
    """A refused AUTHENTICATE of a split handshake is logged as an invalid token."""
    steps = list(timeline.steps)
    changed = False
    for position, step in enumerate(steps):
        ref = StepRef(timeline.connection.id, position)
        if ref in targets and step.iis is not None and step.status == 401:
            steps[position] = dataclasses.replace(step, iis=SPLIT_TRIPLE)
            changed = True
    return ConnectionTimeline(timeline.connection, tuple(steps)) if changed else timeline


def _resolve(
    timeline: ConnectionTimeline,
    timelines: list[ConnectionTimeline],
    split_targets: set[StepRef],
    capture_end: float,
) -> ConnectionTimeline:
    steps = list(timeline.steps)
    connection = timeline.connection
    for position, step in enumerate(steps):
        if not step.is_auth_failure_status:
            continue
        outcome = _outcome(step, position, timeline, timelines, split_targets, capture_end)
        steps[position] = dataclasses.replace(step, outcome=outcome)
    return ConnectionTimeline(connection, tuple(steps))


def _outcome(
    step: AuthExchange,
    position: int,
    timeline: ConnectionTimeline,
    timelines: list[ConnectionTimeline],
    split_targets: set[StepRef],
    capture_end: float,
) -> Outcome:
    connection = timeline.connection
    response = step.exchange.response
    assert response is not None
    if step.leg is Leg.ANONYMOUS_CHALLENGED:
        if _client_came_back(step, connection, timelines):
            return Outcome.NORMAL
        if (
            connection.close_reason == "end_of_capture"
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
    if step.leg is Leg.UNFOLLOWED:
        return Outcome.INCOMPLETE
    return Outcome.FAILURE


def _start_missing(timeline: ConnectionTimeline, position: int) -> bool:
    """The connection began before the capture and this is its first auth step."""
    if timeline.connection.syn_seen:
        return False
    earlier = timeline.steps[:position]
    return all(s.sent is Sent.NOTHING and s.leg is not Leg.ANONYMOUS_CHALLENGED for s in earlier)


def _later_requests(step: AuthExchange, timeline: ConnectionTimeline, position: int) -> bool:
    return any(s.realm is step.realm for s in timeline.steps[position + 1 :])


def _client_came_back(
    step: AuthExchange, connection: HttpConnection, timelines: list[ConnectionTimeline]
) -> bool:
    """Did the same client send credentials to the same server (this realm) later?"""
    after = step.exchange.response.timestamp if step.exchange.response else request_time(step)
    for other in timelines:
        if (
            other.connection.client.ip != connection.client.ip
            or other.connection.server != connection.server
        ):
            continue
        same_connection = other.connection.id == connection.id
        for later in other.steps:
            if later.realm is not step.realm or later.sent is Sent.NOTHING:
                continue
            delay = request_time(later) - after
            if delay >= 0 and (same_connection or delay <= FOLLOW_UP_WINDOW):
                return True
    return False


def realm_label(realm: Realm) -> str:
    return "proxy" if realm is Realm.PROXY else "server"
