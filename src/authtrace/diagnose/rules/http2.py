"""Windows authentication and HTTP/2: connection-based authentication (NTLM, and
Negotiate carrying NTLM) assumes the TCP connection is the security context, and
an HTTP/2 connection carries many streams that a server may not tie to it.

- IIS / HTTP.sys and Kestrel refuse such a request with RST_STREAM
  HTTP_1_1_REQUIRED (0xd, RFC 9113 section 7; RFC 7540 section 13.2 defines the
  code for this case) and a conforming client retries it over HTTP/1.1 on a new
  connection: normal, reported as a note; a client that never retries is stuck.
- Apache mod_http2 runs each stream on its own internal (secondary) connection,
  so a module that keeps the NTLM context per connection (mod_auth_gssapi with
  GssapiConnectionBound, mod_auth_ntlm_winbind) loses it between the CHALLENGE
  stream and the AUTHENTICATE stream: the AUTHENTICATE is refused.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from authtrace.auth.kinds import Mechanism
from authtrace.diagnose.context import (
    Located,
    RuleContext,
    make_finding,
    user_of,
)
from authtrace.diagnose.finding import Finding, Role, Severity
from authtrace.diagnose.rule import rule
from authtrace.handshake.links import request_time
from authtrace.handshake.model import Leg, Outcome, Sent
from authtrace.handshake.timeline import ConnectionTimeline
from authtrace.http2.model import ErrorCode, Side

# How long after the reset a new HTTP/1.1 connection still counts as the retry.
RETRY_WINDOW = 30.0


def on_http2(located: Located) -> bool:
    """The step's exchange travelled on an HTTP/2 stream."""
    return located.step.exchange.stream is not None


def _resets(ctx: RuleContext) -> Iterator[Located]:
    for located in ctx.steps():
        stream = located.step.exchange.stream
        if stream is None or stream.reset is None:
            continue
        reset = stream.reset
        if (
            reset.code == ErrorCode.HTTP_1_1_REQUIRED
            and reset.by is Side.SERVER
            and located.step.exchange.response is None
            and located.step.exchange.request is not None
        ):
            yield located


def _http1_by_client(ctx: RuleContext) -> dict[tuple[str, str], list[Located]]:
    """The first HTTP/1 step of each connection, by (client address, server
    address), in time order. Cost: one pass over the steps."""
    found: dict[tuple[str, str], list[Located]] = defaultdict(list)
    seen: set[int] = set()
    for located in ctx.steps():
        connection = located.timeline.connection
        if connection.id in seen or on_http2(located) or located.step.exchange.request is None:
            continue
        seen.add(connection.id)
        found[(connection.client.ip, connection.server.ip)].append(located)
    for steps in found.values():
        steps.sort(key=lambda item: item.time)
    return found


def _retry_of(located: Located, candidates: dict[tuple[str, str], list[Located]]) -> Located | None:
    """The HTTP/1.1 request that retried a reset one: same client, same server
    address, a later connection, the same method and path, within RETRY_WINDOW.
    Cost: O(k) over that client's HTTP/1 connections to that server."""
    connection = located.timeline.connection
    request = located.step.exchange.request
    assert request is not None
    reset = located.step.exchange.stream.reset  # type: ignore[union-attr]
    assert reset is not None
    after = request_time(located.step)
    for candidate in candidates.get((connection.client.ip, connection.server.ip), ()):
        retried = candidate.step.exchange.request
        if retried is None or candidate.timeline.connection.id == connection.id:
            continue
        if not after <= candidate.time <= after + RETRY_WINDOW:
            continue
        if retried.method == request.method and retried.uri == request.uri:
            return candidate
    return None


@rule(
    "http2-http11-required",
    Severity.ERROR,
    "the server answered a request on HTTP/2 with RST_STREAM HTTP_1_1_REQUIRED (Windows "
    "authentication needs HTTP/1.1): a note when the client retried over HTTP/1.1, an error "
    "when it did not",
)
def http2_http11_required(ctx: RuleContext) -> Iterator[Finding]:
    """Needs a request on an HTTP/2 stream that the server reset with
    HTTP_1_1_REQUIRED (0xd) before any response. The client's retry is an
    HTTP/1.1 request with the same method and path from the same client address
    to the same server address on a later connection within RETRY_WINDOW
    seconds: then it is a note (info), else an error. A capture that ends
    within the window after the reset is not evidence of "no retry": the
    finding then says the retry was not seen (warning)."""
    candidates = _http1_by_client(ctx)
    for located in _resets(ctx):
        exchange = located.step.exchange
        request = exchange.request
        stream = exchange.stream
        assert request is not None and stream is not None and stream.reset is not None
        reset = stream.reset
        retry = _retry_of(located, candidates)
        words = ctx.words()
        reset_cited = words.cite(
            reset.frame,
            Role.RESPONSE,
            exchange.connection,
            None,
            f"RST_STREAM {reset.name} on stream {stream.id}",
        )
        base = (
            f"The server reset stream {stream.id} on connection "
            f"{located.timeline.connection.id} (request {request.method} at frame "
            f"{words.request(located)}) with RST_STREAM HTTP_1_1_REQUIRED at frame "
            f"{reset_cited}: the request needs authentication that HTTP/2 cannot carry "
            "(IIS / HTTP.sys and Kestrel do this for Windows authentication, NTLM and "
            "Negotiate, which bind to the TCP connection)."
        )
        if retry is not None:
            retried = retry.step.exchange.request
            assert retried is not None
            yield make_finding(
                http2_http11_required,
                "HTTP/2 request refused with HTTP_1_1_REQUIRED, retried over HTTP/1.1",
                base + f" The client retried it over HTTP/1.1 on connection "
                f"{retry.timeline.connection.id} (frame {words.request(retry)}), as RFC 9113 "
                "expects: this is normal.",
                "Nothing to fix. To avoid the extra round trip, serve the authenticated site "
                "over HTTP/1.1 (IIS: disable HTTP/2 on that binding, or use Kerberos-only "
                "authentication where the client supports it).",
                [located, retry],
                words=words,
                severity=Severity.INFO,
                fields=[("stream", str(stream.id)), ("retried", "yes")],
            )
            continue
        capture_end = ctx.view.capture_end
        unseen = capture_end and capture_end - request_time(located.step) < RETRY_WINDOW
        yield make_finding(
            http2_http11_required,
            "HTTP/2 request refused with HTTP_1_1_REQUIRED, "
            + ("retry not seen" if unseen else "and the client did not retry over HTTP/1.1"),
            base
            + (
                f" The capture ends less than {RETRY_WINDOW:.0f} seconds later: a retry "
                'over HTTP/1.1 may have come after it (not seen, not "not sent").'
                if unseen
                else f" The client did not retry it over HTTP/1.1 within {RETRY_WINDOW:.0f} "
                "seconds: it shows an error (curl: 'HTTP/2 stream was not closed cleanly: "
                "HTTP_1_1_REQUIRED'; old clients and some proxies) and the user gets no page."
            ),
            "Use a client that retries over HTTP/1.1 (current browsers, curl 7.63 or later), "
            "make it speak HTTP/1.1 to this site (curl --http1.1, .NET "
            "HttpVersion.Version11), or disable HTTP/2 for the site on the server (IIS: the "
            "binding's 'Disable HTTP/2' option, or the EnableHttp2Tls registry value of "
            "HTTP.sys).",
            [located],
            words=words,
            severity=Severity.WARNING if unseen else Severity.ERROR,
            fields=[("stream", str(stream.id)), ("retried", "not seen" if unseen else "no")],
        )


def _ntlm_steps(timeline: ConnectionTimeline) -> bool:
    return any(
        step.credentials is not None and step.credentials.mechanism is Mechanism.NTLM
        for step in timeline.steps
    )


@rule(
    "ntlm-over-http2",
    Severity.ERROR,
    "NTLM across HTTP/2 streams refused: the server does not keep the NTLM context for the "
    "TCP connection (Apache mod_http2 runs each stream on its own internal connection)",
)
def ntlm_over_http2(ctx: RuleContext) -> Iterator[Finding]:
    """Needs an NTLM AUTHENTICATE (in NTLM or Negotiate) on one stream of an
    HTTP/2 connection, answering the CHALLENGE sent just before on another
    stream of it, refused with a 401 that ended up a failure. Every NTLM leg over HTTP/2
    travels on a stream of its own, so a server that binds the context to its
    connection object loses it whenever that object is per stream."""
    for located in ctx.steps():
        step = located.step
        stream = step.exchange.stream
        if (
            stream is None
            or step.sent is not Sent.NTLM_AUTHENTICATE
            or step.leg is not Leg.NTLM_REJECTED
            or step.outcome is not Outcome.FAILURE
            or ctx.relayed(located)
        ):
            continue
        challenge = challenge_on_another_stream(located)
        if challenge is None:
            continue
        challenge_stream = challenge.step.exchange.stream
        assert challenge_stream is not None
        user = user_of(step) or "an unknown user"
        server = step.exchange.response.header("Server") if step.exchange.response else None
        words = ctx.words()
        yield make_finding(
            ntlm_over_http2,
            f"NTLM over HTTP/2 refused for {user}: the context did not survive between streams",
            f"On HTTP/2 connection {located.timeline.connection.id} the server sent its NTLM "
            f"CHALLENGE on stream {challenge_stream.id} (frame "
            f"{words.response(challenge)}) and refused the AUTHENTICATE the client sent "
            f"on stream {stream.id} (frame {words.request(located)}, answered "
            f"{step.status} at frame {words.response(located)}). NTLM authenticates the TCP "
            "connection, and HTTP/2 sends each request on a stream of its own: a server that "
            "keeps the NTLM context per connection object loses it when each stream gets its "
            "own (Apache mod_http2 runs every stream on a secondary connection), so the "
            "AUTHENTICATE answers a CHALLENGE the server no longer knows. This is not a wrong "
            "password." + (f" Server: {server[:64]}." if server else ""),
            "Serve the authenticated location over HTTP/1.1 (Apache: `Protocols http/1.1` in "
            "that virtual host, or H2Upgrade off and no h2 in ALPN), use Kerberos (Negotiate "
            "with a ticket authenticates each request by itself) or Basic over TLS, or make "
            "the server answer such requests with RST_STREAM HTTP_1_1_REQUIRED as IIS does.",
            [challenge, located],
            fields=[
                ("user", user),
                ("challenge_stream", str(challenge_stream.id)),
                ("authenticate_stream", str(stream.id)),
            ],
            iis=step.iis,
        )


def challenge_on_another_stream(located: Located) -> Located | None:
    """The step just before on the same connection when it is the NTLM CHALLENGE
    on another HTTP/2 stream."""
    if located.position == 0:
        return None
    timeline = located.timeline
    previous = timeline.steps[located.position - 1]
    stream = previous.exchange.stream
    if stream is None or previous.leg is not Leg.NTLM_CHALLENGE:
        return None
    if stream.id == located.step.exchange.stream.id:  # type: ignore[union-attr]
        return None
    return Located(timeline, located.position - 1, previous)


RULES = (http2_http11_required, ntlm_over_http2)
