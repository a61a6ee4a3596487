"""Connection topology: connection-based authentication (NTLM, Negotiate)
broken by something that moves requests between connections (a pooling proxy,
a load balancer without affinity) or closes them mid-handshake.

MS-NLMP 3.1: the CHALLENGE and the AUTHENTICATE belong to one security
context, which IIS keeps per TCP connection; RFC 4559 section 4 says the same
of Negotiate.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import cast

from authtrace.diagnose.context import (
    Located,
    RuleContext,
    Words,
    make_finding,
    user_of,
)
from authtrace.diagnose.finding import Finding, Severity
from authtrace.diagnose.rule import Groups, grouping_rule, rule
from authtrace.handshake.links import closed_by_server
from authtrace.handshake.model import Leg, Outcome, Realm, Sent, State
from authtrace.http.messages import HttpConnection
from authtrace.tcp.events import CloseReason, Direction
from authtrace.words import times

_SPLIT_FIX = (
    "Keep every leg of a Windows-authentication handshake on one TCP connection: give the "
    "load balancer client affinity (or pass the client connection through 1:1), or stop the "
    "reverse proxy from pooling upstream connections (for nginx: the commercial `ntlm` "
    "directive, or a TCP stream proxy instead of an HTTP proxy). Better: make Kerberos work "
    "(register the SPN) so that no NTLM handshake is needed."
)


@rule(
    "ntlm-handshake-split",
    Severity.ERROR,
    "NTLM messages of one handshake spread over several connections (pooling proxy, load "
    "balancer without affinity)",
)
def ntlm_handshake_split(ctx: RuleContext) -> Iterator[Finding]:
    """Needs a split the links found: an NTLM AUTHENTICATE on
    a connection that did not carry the CHALLENGE it answers, proven by the copied
    MsvAvTimestamp or by timing, whose CHALLENGE connection stayed open (a closed
    one is handshake-closed-midway). Also a NEGOTIATE arriving on a connection whose
    previous handshake still waited for its AUTHENTICATE (interleaved handshakes).
    An error when the server refused the AUTHENTICATE, a warning when it accepted."""
    yield from _split_handshakes(ctx)
    yield from _interleaved_handshakes(ctx)


def _split_handshakes(ctx: RuleContext) -> Iterator[Finding]:
    for split in ctx.view.splits:
        challenge = ctx.locate(split.challenge)
        authenticate = ctx.locate(split.authenticate)
        if split.challenge_connection_closed:
            continue  # handshake-closed-midway explains it better
        previous = _previous_step(challenge)
        legs = [x for x in (previous, challenge, authenticate) if x is not None]
        who = (
            "the same client"
            if split.same_client
            else f"another client ({authenticate.client_ip}, not {challenge.client_ip})"
        )
        failed = authenticate.step.outcome is Outcome.FAILURE
        words = ctx.words()
        explanation = (
            f"The NTLM CHALLENGE went out on connection {challenge.timeline.connection.id} "
            f"(frame {words.response(challenge.step)}), but its AUTHENTICATE came from {who} on "
            f"connection {authenticate.timeline.connection.id} (frame "
            f"{words.request(authenticate.step)})"
            + (
                " — the AUTHENTICATE names that CHALLENGE by the server timestamp it copies "
                "(MsvAvTimestamp)"
                if split.proof == "MsvAvTimestamp"
                else ""
            )
            + ". NTLM is "
            "connection-based: the server keeps the handshake's state per TCP connection, so an "
            "AUTHENTICATE on another connection cannot be verified"
            + (" and the server answered 401 again." if failed else ".")
            + " Something between client and server (a reverse proxy pooling its upstream "
            "connections, a load balancer without affinity, a forward proxy) moved the request."
        )
        yield make_finding(
            ntlm_handshake_split,
            "NTLM handshake split across connections",
            explanation,
            _SPLIT_FIX,
            legs,
            severity=None if failed else Severity.WARNING,
            fields=_user_fields(authenticate),
            iis=authenticate.step.iis,
            words=words,
        )


def _interleaved_handshakes(ctx: RuleContext) -> Iterator[Finding]:
    """A new NEGOTIATE on a connection whose previous handshake was waiting for its
    AUTHENTICATE: two clients' handshakes share one upstream connection."""
    for timeline in ctx.view.timelines:
        hits = [
            Located(timeline, position, step)
            for position, step in enumerate(timeline.steps)
            if step.sent is Sent.NTLM_NEGOTIATE
            and step.state_before is State.NTLM_CHALLENGED
            and not ctx.relayed(Located(timeline, position, step))
        ]
        if not hits:
            continue
        first = hits[0]
        clients = sorted({ctx.client_of(h) for h in hits} | {first.client_ip})
        words = ctx.words()
        yield make_finding(
            ntlm_handshake_split,
            "NTLM handshakes of different requests interleaved on one connection",
            f"On connection {timeline.connection.id} a new NTLM NEGOTIATE (frame "
            f"{words.request(first.step)}) arrived while the previous handshake on that "
            f"connection was still waiting for its AUTHENTICATE ({times(len(hits))}); "
            "the "
            "server dropped the "
            "half-done handshake"
            + (" and refused the new one." if first.step.is_auth_failure_status else ".")
            + " Something in front of the server multiplexes several clients' handshakes over "
            "one connection (a pooling reverse proxy or load balancer).",
            _SPLIT_FIX,
            hits[:3],
            fields=[("clients", ", ".join(clients))],
            iis=first.step.iis,
            words=words,
        )


@rule(
    "handshake-closed-midway",
    Severity.ERROR,
    "the connection closed between challenge and response",
)
def handshake_closed_midway(ctx: RuleContext) -> Iterator[Finding]:
    """Needs a server challenge (NTLM CHALLENGE or SPNEGO accept-incomplete) after
    which the connection ended before the next leg: `Connection: close` or an
    HTTP/1.0 answer in that 401, or a FIN/RST from the server side with nothing
    after it; or a split handshake whose CHALLENGE connection closed that way. A
    client that closes its own connection, or a capture that ends, is not it. When
    the upstream connection is a proxy's copy of a front-end connection that stayed
    open, the proxy is named as the one closing it (HAProxy http-server-close)."""
    for split in ctx.view.splits:
        if not split.challenge_connection_closed:
            continue
        challenge = ctx.locate(split.challenge)
        authenticate = ctx.locate(split.authenticate)
        yield _closed_finding(ctx, challenge, [challenge, authenticate])
    reported = {split.challenge for split in ctx.view.splits}
    for located in ctx.steps():
        step = located.step
        if step.leg not in (Leg.NTLM_CHALLENGE, Leg.SPNEGO_CONTINUE) or located.ref in reported:
            continue
        if _next_in_realm(located) is None and _closes(located):
            yield _closed_finding(ctx, located, [located])


def _closed_finding(ctx: RuleContext, challenge: Located, legs: list[Located]) -> Finding:
    connection = challenge.timeline.connection
    response = challenge.step.exchange.response
    words = ctx.words()
    how = _close_reason(challenge, words)
    front = ctx.view.fronts.get(challenge.ref)
    if front is not None:
        return _closed_by_proxy(ctx, challenge, ctx.locate(front), legs, how, words)
    return make_finding(
        handshake_closed_midway,
        "Connection closed in the middle of the handshake",
        f"The server's challenge on connection {connection.id} (frame "
        f"{words.response(challenge.step)}) was followed by {how}, so the client could not "
        "send the next leg on the same connection. "
        "Connection-based authentication must finish on the connection that started it; a new "
        "connection starts a new handshake, which ends the same way.",
        "Keep connections alive during authentication: do not send `Connection: close` on 401 "
        "responses (check proxies and load balancers that rewrite it, HTTP/1.0 hops, idle "
        "timeouts shorter than the handshake), and let the client reuse the connection.",
        legs,
        iis=challenge.step.iis if response is not None else None,
        words=_closing(words, connection),
    )


# Who sent the first FIN, as the report says it.
_CLOSED_BY: dict[Direction | None, str] = {
    Direction.TO_SERVER: "the client",
    Direction.TO_CLIENT: "the server",
}


def _closed_by_proxy(
    ctx: RuleContext,
    challenge: Located,
    front: Located,
    legs: list[Located],
    how: str,
    words: Words,
) -> Finding:
    """The front-end connection stayed open while the proxy's upstream one closed
    after the challenge: the proxy, not the client, split the handshake."""
    connection = challenge.timeline.connection
    request = challenge.step.exchange.request
    asked = request is not None and "close" in (request.header("Connection") or "").lower()
    fronts = [ctx.locate(ref) for leg in legs if (ref := ctx.view.fronts.get(leg.ref))]
    later = [leg for leg in legs if leg.timeline.connection.id != connection.id]
    return make_finding(
        handshake_closed_midway,
        "The proxy closes the upstream connection in the middle of the handshake",
        f"The client {ctx.client_of(challenge)} kept one connection to the proxy "
        f"(connection {front.timeline.connection.id}) and answered every challenge on it "
        f"(request at frame {words.request(front.step)}), but the proxy relayed that request on "
        f"upstream connection {connection.id}"
        + (
            f" asking the server to close it (`Connection: close` in the proxy's request at "
            f"frame {words.request(challenge.step)})"
            if asked
            else ""
        )
        + f": the server's challenge there (frame {words.response(challenge.step)}) was "
        f"followed by {how}"
        + (
            f", and the next leg went out on a new upstream connection "
            f"{later[0].timeline.connection.id} (request at frame {words.request(later[0].step)})"
            if later
            else ""
        )
        + ". The proxy closes its server connection after every response (HAProxy `option "
        "http-server-close`, some load balancers), so every connection-based handshake is "
        "split and the server never sees a CHALLENGE and its AUTHENTICATE on one connection. "
        "The client is not at fault: it answered every challenge.",
        "On the proxy, keep the server connection open and tied to the client connection "
        "during authentication: HAProxy: remove `option http-server-close` (the default "
        "`option http-keep-alive` keeps a server connection private to its client once it "
        "sees NTLM or Negotiate); other proxies and load balancers: enable upstream keep-alive "
        "with client affinity, or pass TCP through. Or make Kerberos work, which needs no "
        "connection-based handshake.",
        [*legs, *fronts],
        fields=[("closed_by", "proxy")],
        iis=challenge.step.iis if challenge.step.exchange.response is not None else None,
        words=_closing(words, connection),
    )


def _closing(words: Words, connection: HttpConnection) -> Words:
    """Cite the FIN or RST that ended the connection, named or not."""
    words.close(connection)
    return words


def _close_reason(located: Located, words: Words) -> str:
    response = located.step.exchange.response
    connection = located.timeline.connection
    if response is not None and "close" in (response.header("Connection") or "").lower():
        return "`Connection: close` in that 401"
    if response is not None and response.version == "HTTP/1.0":
        return "an HTTP/1.0 response that ends the connection"
    if connection.close_reason is CloseReason.RST:
        return f"a reset (RST) at frame {words.close(connection)}"
    by = _CLOSED_BY.get(connection.closed_by, "")
    source = f" from {by}" if by else ""
    return f"the connection closing (FIN{source}) at frame {words.close(connection)}"


def _closes(located: Located) -> bool:
    response = located.step.exchange.response
    connection = located.timeline.connection
    if response is not None:
        header = (response.header("Connection") or "").lower()
        if "close" in header or (response.version == "HTTP/1.0" and "keep-alive" not in header):
            return True
    return closed_by_server(connection)


@rule(
    "shared-authenticated-connection",
    Severity.ERROR,
    "one authenticated connection carries requests of several clients or users",
)
def shared_authenticated_connection(ctx: RuleContext) -> Iterator[Finding]:
    """Needs an origin connection that completed connection-based authentication
    and then carried, without new credentials and answered without a challenge,
    requests of another client: the front-end client a proxy relayed it for (both
    legs captured), else its X-Forwarded-For / Forwarded, else its address."""
    for timeline in ctx.view.timelines:
        authenticated_by: Located | None = None
        origins: dict[str, Located] = {}
        for position, step in enumerate(timeline.steps):
            if step.realm is not Realm.ORIGIN:
                continue
            located = Located(timeline, position, step)
            if step.leg in (Leg.NTLM_ACCEPTED, Leg.KERBEROS_ACCEPTED, Leg.SPNEGO_ACCEPTED):
                if step.state_after is State.AUTHENTICATED:
                    authenticated_by = located
                    origins = {ctx.client_of(located): located}
                continue
            if authenticated_by is None or step.leg is not Leg.REUSED:
                if step.state_after is not State.AUTHENTICATED:
                    authenticated_by = None
                continue
            origins.setdefault(ctx.client_of(located), located)
        if authenticated_by is not None and len(origins) > 1:
            others = [loc for key, loc in origins.items() if loc is not authenticated_by]
            user = user_of(authenticated_by.step) or "the first user"
            first_client = ctx.client_of(authenticated_by)
            other_clients = ", ".join(sorted(k for k in origins if k != first_client))
            fronts = [ctx.locate(ref) for o in others if (ref := ctx.view.fronts.get(o.ref))]
            words = ctx.words()
            accepted = _accepted(authenticated_by, words)
            yield make_finding(
                shared_authenticated_connection,
                "One authenticated connection carries several clients' requests",
                f"Connection {timeline.connection.id} was authenticated as {user} for "
                f"{first_client} ({accepted}) and then carried requests of "
                f"other clients ({other_clients}; the first at frame "
                f"{words.request(others[0].step)}) that the server answered without asking them "
                "to authenticate: they ran as the first user."
                + (
                    f" The proxy relayed them from the clients' own connections to it (request "
                    f"at frame {words.request(fronts[0].step)} on connection "
                    f"{fronts[0].timeline.connection.id})."
                    if fronts
                    else ""
                )
                + " A proxy that pools or multiplexes upstream connections hands one user's "
                "authenticated connection to others.",
                "Disable upstream connection reuse for Windows-authenticated sites on the proxy, "
                "or make the server authenticate every request (Kerberos with "
                "authPersistNonNTLM=false / Persistent-Auth: false, or authPersistSingleRequest).",
                [authenticated_by, *others, *fronts],
                # clients: the others, whose requests ran as `user`;
                # authenticated_client: the one whose credentials those were.
                fields=[
                    ("user", user),
                    ("authenticated_client", first_client),
                    ("clients", other_clients),
                ],
                words=words,
            )


_ACCEPTED_LEGS = (Leg.NTLM_ACCEPTED, Leg.KERBEROS_ACCEPTED, Leg.SPNEGO_ACCEPTED)


def _authenticated_then_anonymous(ctx: RuleContext) -> Iterator[tuple[Hashable, Located]]:
    """The steps auth-lost-on-new-connection follows, by what they were and
    the client and server: under ("accepted", client, server) each completed
    authentication, under ("lost", client, server) each anonymous 401 that
    stayed a failure. The groups are the state carried from block to block
    (what one client did to one server); the report replays them in time
    order from their times alone and reads only the steps it cites."""
    for located in ctx.steps(Realm.ORIGIN):
        step = located.step
        if step.state_after is State.AUTHENTICATED and step.leg in _ACCEPTED_LEGS:
            yield ("accepted", ctx.client_of(located), located.server), located
        elif step.leg is Leg.ANONYMOUS_CHALLENGED and step.outcome is Outcome.FAILURE:
            yield ("lost", ctx.client_of(located), located.server), located


@grouping_rule(
    "auth-lost-on-new-connection",
    Severity.ERROR,
    "the client authenticated one connection, then sent requests without credentials on a "
    "new one and got 401",
    select=_authenticated_then_anonymous,
)
def auth_lost_on_new_connection(ctx: RuleContext, groups: Groups) -> Iterator[Finding]:
    """Needs a client that completed authentication to a server on one connection
    and later sent a request without credentials on another connection to that
    server, answered by a 401 that ended up a failure (the client never came back
    with credentials). Behind a proxy the client is the one each request was
    relayed for, so a second client's first anonymous request is not it."""
    # Each client and server in the order its first step came; O(s log s) in
    # its s steps, and only the steps of a finding are located (each holds its
    # timeline, read back from disk when spilled).
    for pair in dict.fromkeys(cast(tuple[str, str, str], key)[1:] for key in groups):
        lost = groups.get(("lost", *pair))
        if not lost:
            continue
        accepted = groups.get(("accepted", *pair))
        # In time order (ties: capture order): (time, place, accepted?, index).
        events = [(lost.time(i), lost.place(i), False, i) for i in range(len(lost))]
        if accepted:
            events += [(accepted.time(i), accepted.place(i), True, i) for i in range(len(accepted))]
        events.sort(key=lambda event: event[:2])
        earlier: int | None = None
        for _time, _place, was_accepted, index in events:
            if was_accepted:
                earlier = index
                continue
            if accepted is None or earlier is None:
                continue
            if accepted.connection(earlier) == lost.connection(index):
                continue
            first, located = accepted[earlier], lost[index]
            words = ctx.words()
            yield make_finding(
                auth_lost_on_new_connection,
                "Request without credentials on a new connection after authenticating another",
                f"The client authenticated connection {first.timeline.connection.id} "
                f"({_accepted(first, words)}), then sent a request without credentials on "
                f"connection {located.timeline.connection.id} (request at frame "
                f"{words.request(located.step)}), got 401 and did not "
                "authenticate again. It (or a proxy in between) assumed the request would travel "
                "on the authenticated connection.",
                "Make the client or proxy keep requests on the authenticated connection, or let "
                "it authenticate each new connection (proxies: disable connection pooling for "
                "this site; clients: enable re-authentication / pre-authentication).",
                [first, located],
                iis=located.step.iis,
                words=words,
            )
            earlier = None


@rule(
    "reauth-on-authenticated-connection",
    Severity.WARNING,
    "401 on a connection that had authenticated",
)
def reauth_on_authenticated_connection(ctx: RuleContext) -> Iterator[Finding]:
    """Needs a 401 answering a request without credentials on a connection whose
    state was authenticated."""
    for located in ctx.steps():
        step = located.step
        if step.leg is not Leg.REAUTH_CHALLENGED:
            continue
        via = step.exchange.request.header("Via") if step.exchange.request else None
        words = ctx.words()
        yield make_finding(
            reauth_on_authenticated_connection,
            "401 on a connection that had already authenticated",
            f"Connection {located.timeline.connection.id} had completed authentication, yet the "
            f"request at frame {words.request(located.step)} was answered 401"
            + (f" (it came through a proxy: Via {via})." if via else ".")
            + " Either the server authenticates every request (Persistent-Auth not honoured, "
            "authPersistSingleRequest) or something in the middle changed the connection under "
            "the client.",
            "Check whether the server is meant to authenticate each request; if not, look for a "
            "proxy or load balancer that moves requests between upstream connections.",
            [located],
            iis=step.iis,
            words=words,
        )


def _accepted(located: Located, words: Words) -> str:
    """Where a connection's authentication completed, as cited in explanations."""
    return (
        f"credentials at frame {words.request(located.step)}, accepted at frame "
        f"{words.response(located.step)}"
    )


def _previous_step(located: Located) -> Located | None:
    for position in range(located.position - 1, -1, -1):
        step = located.timeline.steps[position]
        if step.realm is located.step.realm:
            return Located(located.timeline, position, step)
    return None


def _next_in_realm(located: Located) -> Located | None:
    for position in range(located.position + 1, len(located.timeline.steps)):
        step = located.timeline.steps[position]
        if step.realm is located.step.realm:
            return Located(located.timeline, position, step)
    return None


def _user_fields(located: Located) -> list[tuple[str, str]]:
    user = user_of(located.step)
    return [("user", user)] if user else []


RULES = (
    ntlm_handshake_split,
    shared_authenticated_connection,
    auth_lost_on_new_connection,
    handshake_closed_midway,
    reauth_on_authenticated_connection,
)
