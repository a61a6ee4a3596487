"""Per-connection authentication timelines: every exchange of a connection,
seen through the origin (401) and proxy (407) realms, judged by the state
machine in `machine.py`.

This module owns classifying decoded steps into what the client sent and what
the server answered; it never parses bytes itself (auth.steps does) and never
decides transitions (machine.py does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from authtrace.auth.bearer import BearerChallenge
from authtrace.auth.digest import DigestChallenge
from authtrace.auth.kinds import Mechanism, Message
from authtrace.auth.ntlm import NtlmAuthenticate
from authtrace.auth.spnego import NegState, SpnegoResp
from authtrace.auth.steps import (
    AuthStep,
    StepKind,
    is_not_kept,
    step_from_credentials_header,
    step_not_kept,
    steps_from_challenge_header,
)
from authtrace.handshake.machine import transition
from authtrace.handshake.model import Answer, AuthExchange, Leg, Realm, Sent, State
from authtrace.http.messages import Exchange, Header, HttpConnection, HttpRequest, HttpResponse
from authtrace.iis.predict import NO_FACTS, WireFacts, predict
from authtrace.kerberos.messages import KrbError
from authtrace.tls.bindings import Binding, ntlm_binding

_CREDENTIALS_HEADER = {Realm.ORIGIN: "Authorization", Realm.PROXY: "Proxy-Authorization"}
_CHALLENGE_HEADER = {Realm.ORIGIN: "WWW-Authenticate", Realm.PROXY: "Proxy-Authenticate"}
_REFUSAL_STATUS = {Realm.ORIGIN: 401, Realm.PROXY: 407}

# IIS detailed and IIS 6 error pages name the substatus: "HTTP Error 401.2 - Unauthorized".
_IIS_SUBSTATUS = re.compile(rb"(?:HTTP Error|Error Code:?)\s*(40[0-9])\.(\d{1,2})\b", re.IGNORECASE)
# What servers say in a 400 to oversized headers (often a large Negotiate token):
# http.sys/IIS "Header Field Too Long", "Request Header Too Long"; nginx "Request
# Header Or Cookie Too Large"; Apache "Size of a request header field exceeds
# server limit"; Tomcat/Jetty "Request header is too large".
_TOO_LARGE_TEXT = re.compile(
    rb"header[s]? (?:too long|is too long|field too long)|size of the request headers is too long"
    rb"|Request Header Too Long|Request Header Or Cookie Too Large"
    rb"|header field exceeds server limit|request header (?:is )?too large",
    re.IGNORECASE,
)
# Header limits differ (http.sys MaxFieldLength 16 KB, Apache LimitRequestFieldSize
# 8190, nginx 8 KB buffers) and are often set lower, so a size alone decides only
# above the largest default; below it, the request's own shape decides: the 400
# answers a request whose largest field is a credentials header of at least
# LARGE_CREDENTIALS_BYTES (no server limits a field to less), and no error page
# says otherwise.
LARGE_HEADER_BYTES = 16 * 1024
LARGE_CREDENTIALS_BYTES = 1024
_CREDENTIALS_HEADERS = frozenset({"authorization", "proxy-authorization"})

_SENT_BY_MESSAGE = {
    Message.NTLM_NEGOTIATE: Sent.NTLM_NEGOTIATE,
    Message.NTLM_AUTHENTICATE: Sent.NTLM_AUTHENTICATE,
    Message.AP_REQ: Sent.KERBEROS,
    Message.NEG_TOKEN_RESP: Sent.SPNEGO_CONTINUE,
    Message.NEG_TOKEN_INIT: Sent.SPNEGO_CONTINUE,
    Message.NEG_TOKEN_INIT2: Sent.SPNEGO_CONTINUE,
    Message.BASIC_CREDENTIALS: Sent.BASIC,
    Message.DIGEST_RESPONSE: Sent.DIGEST,
    Message.BEARER_TOKEN: Sent.BEARER,
    Message.MALFORMED: Sent.MALFORMED,
}


@dataclass(frozen=True, slots=True)
class ConnectionTimeline:
    """A connection and its judged exchanges, in order (origin and proxy realm
    steps interleaved as they happened)."""

    connection: HttpConnection
    steps: tuple[AuthExchange, ...]

    def realm(self, realm: Realm) -> tuple[AuthExchange, ...]:
        return tuple(step for step in self.steps if step.realm is realm)


def build_timeline(connection: HttpConnection) -> ConnectionTimeline:
    """Judge every exchange of one connection, for each realm it involves.
    Cost: one pass over each message's headers, whatever the realms."""
    states = {Realm.ORIGIN: State.FRESH, Realm.PROXY: State.FRESH}
    offered: dict[Realm, frozenset[str]] = {}
    steps: list[AuthExchange] = []
    for exchange in connection.exchanges:
        stream = exchange.stream
        if stream is not None and (
            stream.not_decodable or (exchange.request is None and exchange.response is None)
        ):
            # HTTP/2 headers whose HPACK state was lost, or a stream whose
            # header blocks the capture missed: not seen, so not judged (the
            # exchange stays listed on the connection with its frames).
            continue
        heads = _AuthHeads.of(exchange)
        for realm in _realms_of(exchange, heads):
            step = _judge(exchange, realm, states[realm], offered.get(realm), connection, heads)
            states[realm] = step.state_after
            if step.answer is Answer.NOT_SEEN:
                # Its challenges were cut: what it offered is not known.
                offered.pop(realm, None)
            elif step.challenges:
                offered[realm] = frozenset(c.scheme.lower() for c in step.challenges)
            steps.append(step)
    return ConnectionTimeline(connection, tuple(steps))


# The headers judging reads, by lower-cased name: credentials (first of each
# realm), challenges (all of each realm) and Persistent-Auth (MS-N2HT).
_CREDENTIALS_REALM = {"authorization": Realm.ORIGIN, "proxy-authorization": Realm.PROXY}
_CHALLENGE_REALM = {"www-authenticate": Realm.ORIGIN, "proxy-authenticate": Realm.PROXY}
_PERSISTENT_AUTH = "persistent-auth"
# Lengths of those names: any other header is passed over without lower-casing
# its name (str.lower keeps the length of latin-1 text, how names are decoded).
_REQUEST_NAME_SIZES = frozenset(len(name) for name in _CREDENTIALS_REALM)
_RESPONSE_NAME_SIZES = frozenset([*(len(name) for name in _CHALLENGE_REALM), len(_PERSISTENT_AUTH)])


class _AuthHeads:
    """The auth headers of one exchange, found in one pass over each head:
    what `header()` / `header_all()` would return for those names."""

    __slots__ = ("credentials", "challenges", "persistent")

    def __init__(
        self,
        credentials: dict[Realm, Header],
        challenges: dict[Realm, list[Header]],
        persistent: str | None,
    ) -> None:
        self.credentials = credentials
        self.challenges = challenges
        self.persistent = persistent

    @staticmethod
    def of(exchange: Exchange) -> _AuthHeads:
        return _AuthHeads.read(exchange.request, exchange.response)

    @staticmethod
    def read(request: HttpRequest | None, response: HttpResponse | None) -> _AuthHeads:
        credentials: dict[Realm, Header] = {}
        challenges: dict[Realm, list[Header]] = {}
        persistent: str | None = None
        if request is not None:
            sizes = _REQUEST_NAME_SIZES
            for header in request.headers:
                if len(header.name) in sizes:
                    realm = _CREDENTIALS_REALM.get(header.name.lower())
                    if realm is not None and realm not in credentials:
                        credentials[realm] = header
        if response is not None:
            sizes = _RESPONSE_NAME_SIZES
            for header in response.headers:
                if len(header.name) in sizes:
                    lowered = header.name.lower()
                    realm = _CHALLENGE_REALM.get(lowered)
                    if realm is not None:
                        challenges.setdefault(realm, []).append(header)
                    elif lowered == _PERSISTENT_AUTH and persistent is None:
                        persistent = header.value
        return _AuthHeads(credentials, challenges, persistent)


def _realms_of(exchange: Exchange, heads: _AuthHeads) -> list[Realm]:
    response = exchange.response
    proxy = Realm.PROXY in heads.credentials or (
        response is not None and (response.status == 407 or Realm.PROXY in heads.challenges)
    )
    realms = [Realm.PROXY] if proxy else []
    # A 407 never reached the origin: its origin-side judgement would be invented.
    if response is None or response.status != 407:
        realms.append(Realm.ORIGIN)
    return realms


def _judge(
    exchange: Exchange,
    realm: Realm,
    state: State,
    offered: frozenset[str] | None,
    connection: HttpConnection,
    heads: _AuthHeads,
) -> AuthExchange:
    credentials = _credentials(exchange.request, realm, heads)
    challenges = _challenges(exchange.response, realm, heads)
    sent = classify_sent(credentials, exchange.request)
    answer = classify_answer(exchange, realm, challenges)
    reason = ""
    offered_before = (
        credentials is not None and offered is not None and _scheme_offered(credentials, offered)
    )
    if challenges and answer is not Answer.NOT_SEEN:
        # The refusal itself names what the server accepts (RFC 9110 11.6.1).
        offered = frozenset(c.scheme.lower() for c in challenges)
    scheme_offered = credentials is None or offered is None or _scheme_offered(credentials, offered)
    response = exchange.response
    page = iis_substatus_from_body(response)
    persistent = heads.persistent or ""
    leg, next_state = transition(
        state,
        sent,
        answer,
        scheme_offered=scheme_offered,
        keeps_authentication=persistent.strip().lower() != "false",
        offered_before=offered_before,
    )
    if not scheme_offered and answer is Answer.OFFER and leg is Leg.SCHEME_NOT_OFFERED:
        assert credentials is not None
        reason = f"{credentials.scheme} was not among the offered schemes"
    return AuthExchange(
        exchange=exchange,
        realm=realm,
        credentials=credentials,
        challenges=challenges,
        sent=sent,
        answer=answer,
        leg=leg,
        state_before=state,
        state_after=next_state,
        iis=predict(leg, response, _wire_facts(credentials, challenges, connection, exchange, page))
        if realm is Realm.ORIGIN
        else None,
        iis_from_body=page,
        reason=reason,
    )


def _wire_facts(
    credentials: AuthStep | None,
    challenges: tuple[AuthStep, ...],
    connection: HttpConnection,
    exchange: Exchange,
    page: str | None,
) -> WireFacts:
    """The facts of this exchange that change what IIS logs for it."""
    if credentials is None and not challenges and page is None:
        return NO_FACTS  # every fact below is about credentials, challenges or a page
    inner = credentials.innermost if credentials is not None else None
    binding = channel_binding(connection, exchange.request, inner)
    return WireFacts(
        clock_skew=any(_krb_error_code(step) == KRB_AP_ERR_SKEW for step in challenges),
        anonymous_authenticate=isinstance(inner, NtlmAuthenticate) and inner.anonymous,
        unbound_over_tls=binding in (Binding.NOT_SENT, Binding.OTHER_CERTIFICATE),
        completed=any(completes(step) for step in challenges),
        other_scheme=_asks_another_scheme(credentials, challenges),
        page_substatus=int(page.split(".")[1]) if page and page.startswith("401.") else None,
    )


def _asks_another_scheme(credentials: AuthStep | None, challenges: tuple[AuthStep, ...]) -> bool:
    """The refusal offers schemes, none of them the credentials' own (and no
    final token of theirs): it asks for other credentials."""
    if credentials is None or not challenges or any(completes(step) for step in challenges):
        return False
    return all(step.scheme.lower() != credentials.scheme.lower() for step in challenges)


def _krb_error_code(step: AuthStep) -> int | None:
    if step.message is not Message.KRB_ERROR:
        return None
    inner = step.innermost
    return inner.error_code if isinstance(inner, KrbError) else None


KRB_AP_ERR_SKEW = 37
# Ports whose cleartext HTTP in a capture without TLS can only be a TLS session
# decrypted before authtrace read it (a capture exported as plaintext).
TLS_PORTS = frozenset({443, 8443})


def channel_binding(
    connection: HttpConnection, request: HttpRequest | None, message: object
) -> Binding | None:
    """What an NTLMv2 AUTHENTICATE's channel binding says about the TLS in its
    path; None for any other message or when nothing can be said.

    With the connection's TLS facts (decrypted here) the verdict is proved
    from its server certificate (tls/bindings.py); the port is never looked
    at. Without them only hints say TLS was in the path: cleartext HTTP on a
    TLS port (a capture exported decrypted), or a TLS-terminating proxy's
    X-Forwarded-Proto: https / Front-End-Https: on; then only the absence of
    a binding is known (NOT_SENT), never which certificate one was for."""
    if not isinstance(message, NtlmAuthenticate) or message.ntlmv2 is None:
        return None
    if connection.tls is not None:
        return ntlm_binding(connection.tls, message.ntlmv2.av_pairs.channel_bindings)
    if not lacks_channel_binding(message):
        return None
    if connection.server.port in TLS_PORTS or _forwarded_https(request):
        return Binding.NOT_SENT
    return None


def _forwarded_https(request: HttpRequest | None) -> bool:
    """A TLS-terminating proxy says the client spoke HTTPS to it."""
    if request is None:
        return False
    forwarded_proto = (request.header("X-Forwarded-Proto") or "").lower()
    front_end_https = (request.header("Front-End-Https") or "").lower()
    return forwarded_proto == "https" or front_end_https == "on"


def lacks_channel_binding(message: object) -> bool:
    """An NTLMv2 AUTHENTICATE without MsvAvChannelBindings, or with an all-zero
    one (MS-NLMP 2.2.2.1): nothing ties it to the TLS channel it came over."""
    if not isinstance(message, NtlmAuthenticate) or message.ntlmv2 is None:
        return False
    ntlmv2 = message.ntlmv2
    return not ntlmv2.channel_bindings_present or ntlmv2.channel_bindings_all_zero


def _credentials(
    request: HttpRequest | None, realm: Realm, heads: _AuthHeads | None = None
) -> AuthStep | None:
    if request is None:
        return None
    if heads is None:
        heads = _AuthHeads.read(request, None)
    header = heads.credentials.get(realm)
    if header is not None:
        step = step_from_credentials_header(header.name, header.value)
        if step.raw:
            header.keep_token_once(step.raw)  # the token held once (issue 10)
        return step
    cut = request.cut_header(_CREDENTIALS_HEADER[realm]) if request.cut_headers else None
    if cut is not None:
        # Seen in a cut head, not kept: sent all the same.
        return step_not_kept(cut.name, StepKind.CREDENTIALS, cut.first_word, cut.size, cut.whole)
    return None


def _challenges(
    response: HttpResponse | None, realm: Realm, heads: _AuthHeads | None = None
) -> tuple[AuthStep, ...]:
    if response is None:
        return ()
    if heads is None:
        heads = _AuthHeads.read(None, response)
    steps: list[AuthStep] = []
    for header in heads.challenges.get(realm, ()):
        found = steps_from_challenge_header(header.name, header.value)
        if len(found) == 1 and found[0].raw:
            header.keep_token_once(found[0].raw)  # the token held once (issue 10)
        steps.extend(found)
    if response.cut_headers:
        name = _CHALLENGE_HEADER[realm].lower()
        for cut in response.cut_headers:
            if cut.name.lower() == name:
                steps.append(
                    step_not_kept(cut.name, StepKind.CHALLENGE, cut.first_word, cut.size, cut.whole)
                )
    return tuple(steps)


def classify_sent(credentials: AuthStep | None, request: HttpRequest | None) -> Sent:
    """What the client sent, by the decoded content (never the scheme word).
    No credentials header in a request the capture lacks, or in a head whose
    end it cut, is `NOT_SEEN`: they may have been sent (never NOTHING from
    missing data)."""
    if credentials is None:
        if request is None or request.rest_not_seen:
            return Sent.NOT_SEEN
        return Sent.NOTHING
    sent = _SENT_BY_MESSAGE.get(credentials.message)
    if sent is not None:
        return sent
    if credentials.mechanism is Mechanism.KERBEROS:
        return Sent.KERBEROS
    return Sent.OTHER


def classify_answer(exchange: Exchange, realm: Realm, challenges: tuple[AuthStep, ...]) -> Answer:
    """What the server's response said about authentication in this realm."""
    response = exchange.response
    if response is None:
        return Answer.NONE
    status = response.status
    if status == 400 and _too_large(exchange):
        return Answer.TOO_LARGE
    if status == 403:
        return Answer.FORBIDDEN
    if status != _REFUSAL_STATUS[realm]:
        return Answer.SUCCESS
    messages = {step.message for step in challenges}
    if Message.NTLM_CHALLENGE in messages:
        return Answer.NTLM_CHALLENGE
    if any(spnego_rejects(step) for step in challenges) or Message.KRB_ERROR in messages:
        return Answer.REJECT
    if any(spnego_continues(step) for step in challenges):
        return Answer.CONTINUE
    if any(completes(step) for step in challenges):
        return Answer.COMPLETED
    # RFC 7616 section 3.3: stale=true means only the nonce expired.
    if any(isinstance(step.token, DigestChallenge) and step.token.stale for step in challenges):
        return Answer.STALE
    # RFC 6750 section 3: a Bearer challenge with an error refuses the token sent.
    if any(isinstance(step.token, BearerChallenge) and step.token.error for step in challenges):
        return Answer.REJECT
    # Nothing above was seen, but the capture cut the head before its end, or
    # cut a challenge inside its value: it may have carried any of them.
    if response.rest_not_seen or any(is_not_kept(step) for step in challenges):
        return Answer.NOT_SEEN
    return Answer.OFFER if challenges else Answer.DENIED


def _too_large(exchange: Exchange) -> bool:
    """A 400 that refused the request's headers for their size (see
    LARGE_CREDENTIALS_BYTES): the page says so, the headers exceed every default
    limit, or the largest field is a big credentials header and no page says
    otherwise."""
    response = exchange.response
    assert response is not None
    text = (response.reason or "").encode("latin-1", "replace") + b" " + (response.body or b"")
    if _TOO_LARGE_TEXT.search(text):
        return True
    request = exchange.request
    if request is None:
        return False
    if request.header_bytes > LARGE_HEADER_BYTES:
        return True
    if response.body or not request.headers:
        return False  # a page that does not speak of size: another 400
    largest = largest_credentials_field(request)
    return largest is not None and len(largest.value) >= LARGE_CREDENTIALS_BYTES


def largest_credentials_field(request: HttpRequest | None) -> Header | None:
    """The request's largest header field when it is Authorization or
    Proxy-Authorization, else None."""
    if request is None or not request.headers:
        return None
    largest = max(request.headers, key=lambda header: len(header.name) + len(header.value))
    return largest if largest.name.lower() in _CREDENTIALS_HEADERS else None


def too_large_text(response: HttpResponse | None) -> str | None:
    """The words of a 400 page (or reason) that say the headers were too large."""
    if response is None:
        return None
    text = (response.reason or "").encode("latin-1", "replace") + b" " + (response.body or b"")
    found = _TOO_LARGE_TEXT.search(text)
    return found.group(0).decode("latin-1") if found else None


def iis_substatus_from_body(response: HttpResponse | None) -> str | None:
    """ "401.2" when an IIS error page names its substatus, else None."""
    if response is None or not response.body:
        return None
    match = _IIS_SUBSTATUS.search(response.body)
    if match is None:
        return None
    return f"{match.group(1).decode()}.{match.group(2).decode()}"


def _scheme_offered(credentials: AuthStep, offered: frozenset[str]) -> bool:
    scheme = credentials.scheme.lower()
    if scheme in offered:
        return True
    # A Negotiate offer accepts NTLM or Kerberos tokens inside Negotiate only.
    return False


def _neg_state(step: AuthStep) -> NegState | None:
    token = step.token
    return token.neg_state if isinstance(token, SpnegoResp) else None


def spnego_rejects(step: AuthStep) -> bool:
    """RFC 4178 section 4.2.2: negState reject ends the negotiation."""
    return _neg_state(step) is NegState.REJECT


def completes(step: AuthStep) -> bool:
    """The server's final token: a Kerberos AP-REP (RFC 4120 3.2.4), or SPNEGO
    accept-completed (RFC 4178 section 4.2.2)."""
    return step.message is Message.AP_REP or _neg_state(step) is NegState.ACCEPT_COMPLETED


def spnego_continues(step: AuthStep) -> bool:
    """accept-incomplete: the server needs another leg (an NTLM CHALLENGE inside
    SPNEGO is classified as that, not as a generic continue)."""
    return (
        _neg_state(step) is NegState.ACCEPT_INCOMPLETE
        and step.message is not Message.NTLM_CHALLENGE
    )
