"""The handshake layer's vocabulary: what a client sent, what the server
answered, the per-connection state, and the judgement of each exchange.

Everything here is data; the transitions live in `machine.py` alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from authtrace.auth.steps import AuthStep
from authtrace.fastinit import FastEnum
from authtrace.http.messages import Exchange


class Realm(FastEnum):
    """Who asks for authentication: the origin server (401) or a proxy (407)."""

    ORIGIN = "origin"
    PROXY = "proxy"


class Sent(FastEnum):
    """What the client's credentials header carried, classified by content."""

    NOTHING = "nothing"
    NTLM_NEGOTIATE = "ntlm_negotiate"
    NTLM_AUTHENTICATE = "ntlm_authenticate"
    KERBEROS = "kerberos"  # AP-REQ, bare or inside SPNEGO
    SPNEGO_CONTINUE = "spnego_continue"  # a later SPNEGO leg (NegTokenResp from the client)
    BASIC = "basic"
    DIGEST = "digest"
    BEARER = "bearer"
    OTHER = "other"  # a scheme authtrace does not follow
    MALFORMED = "malformed"
    # The request's head was cut (a gap, a snap length, an ETW packet
    # truncation, the end of the capture) before any credentials header: they
    # may have been sent. Not seen is never NOTHING.
    NOT_SEEN = "not_seen"


class Answer(FastEnum):
    """What the server's response said about authentication."""

    SUCCESS = "success"  # 1xx-3xx, and 4xx/5xx other than those below
    OFFER = "offer"  # 401/407 naming schemes, no token
    NTLM_CHALLENGE = "ntlm_challenge"  # 401/407 carrying an NTLM CHALLENGE
    CONTINUE = "continue"  # 401/407 carrying a SPNEGO accept-incomplete token
    REJECT = "reject"  # 401/407 carrying a SPNEGO reject or a KRB-ERROR, or Bearer error
    # 401/407 carrying a token that completes the client's authentication (a
    # Kerberos AP-REP, SPNEGO accept-completed): the credentials were accepted
    # and the request was refused anyway (RFC 4559 section 5, RFC 4178 4.2.2).
    COMPLETED = "completed"
    STALE = "stale"  # Digest stale=true
    DENIED = "denied"  # 401/407 without any challenge header (RFC 9110 11.6.1 wants one)
    FORBIDDEN = "forbidden"  # 403
    TOO_LARGE = "too_large"  # 400 because the request headers were too long
    NONE = "none"  # no response in the capture
    # A 401/407 whose head was cut before the end of its challenges (or whose
    # only challenge the capture cut inside its value): it may have offered a
    # scheme or carried a token. Not seen is never DENIED nor OFFER.
    NOT_SEEN = "not_seen"


class State(FastEnum):
    """Authentication state of one connection for one realm."""

    FRESH = "fresh"  # nothing seen yet
    OFFERED = "offered"  # server asked for authentication
    NTLM_CHALLENGED = "ntlm_challenged"  # NTLM CHALLENGE sent, AUTHENTICATE expected
    CONTINUING = "continuing"  # SPNEGO needs another leg
    AUTHENTICATED = "authenticated"  # connection-based auth completed
    FAILED = "failed"  # last credentials were rejected
    # The capture cut a leg that decides the state (its credentials or its
    # challenge not seen): where the handshake stands is not known, and the
    # legs after it are judged only where they do not depend on it.
    UNKNOWN = "unknown"


class Leg(FastEnum):
    """The judgement of one exchange. `NORMAL_LEGS` are 401/407s that a healthy
    handshake produces; the others that answer 401/407 are failures."""

    ANONYMOUS = "anonymous"  # no credentials, not asked for any
    ANONYMOUS_CHALLENGED = "anonymous_challenged"  # no credentials -> 401 offering schemes
    # no credentials -> 401 offering no scheme: nothing the client could answer
    # (on IIS, the anonymous account could not log on: 401.1)
    ANONYMOUS_REFUSED = "anonymous_refused"
    REUSED = "reused"  # no credentials on an authenticated connection -> success
    REAUTH_CHALLENGED = "reauth_challenged"  # 401 on an authenticated connection
    ABANDONED = "abandoned"  # NTLM CHALLENGE answered by a request without AUTHENTICATE
    NTLM_CHALLENGE = "ntlm_challenge"  # NEGOTIATE -> 401 CHALLENGE
    NTLM_NEGOTIATE_REJECTED = "ntlm_negotiate_rejected"  # NEGOTIATE -> 401 without CHALLENGE
    NTLM_ACCEPTED = "ntlm_accepted"
    NTLM_REJECTED = "ntlm_rejected"  # AUTHENTICATE after CHALLENGE on this connection -> 401
    NTLM_OUT_OF_SEQUENCE = "ntlm_out_of_sequence"  # AUTHENTICATE, no CHALLENGE here -> 401
    NTLM_OUT_OF_SEQUENCE_ACCEPTED = "ntlm_out_of_sequence_accepted"
    SPNEGO_CONTINUE = "spnego_continue"  # 401 carrying accept-incomplete
    SPNEGO_ACCEPTED = "spnego_accepted"  # a later SPNEGO leg -> success
    KERBEROS_ACCEPTED = "kerberos_accepted"
    KERBEROS_REJECTED = "kerberos_rejected"
    BASIC_ACCEPTED = "basic_accepted"
    BASIC_REJECTED = "basic_rejected"
    DIGEST_ACCEPTED = "digest_accepted"
    DIGEST_STALE = "digest_stale"
    DIGEST_REJECTED = "digest_rejected"
    BEARER_ACCEPTED = "bearer_accepted"
    BEARER_REJECTED = "bearer_rejected"
    SCHEME_NOT_OFFERED = "scheme_not_offered"  # credentials in a scheme the server did not offer
    HEADER_TOO_LARGE = "header_too_large"
    # credentials accepted (the 401 completes the authentication, or names no
    # scheme after them), then the request refused behind authentication: on
    # IIS the resource ACL, a filter or an application (401.3, 401.4, 401.5)
    REFUSED_AFTER_LOGON = "refused_after_logon"
    DENIED = "denied"  # credentials answered by 401/403 without a challenge
    UNANSWERED = "unanswered"
    UNFOLLOWED = "unfollowed"  # a pair the state machine has no rule for
    # The capture cut this exchange's credentials or challenge (Sent.NOT_SEEN,
    # Answer.NOT_SEEN): not judged, never a failure.
    NOT_SEEN = "not_seen"
    # What this exchange means depends on an earlier leg the capture cut
    # (State.UNKNOWN): an AUTHENTICATE whose CHALLENGE may be in the cut, a
    # request without credentials on a connection that may have authenticated.
    AFTER_NOT_SEEN = "after_not_seen"


NORMAL_LEGS = frozenset(
    {Leg.ANONYMOUS_CHALLENGED, Leg.NTLM_CHALLENGE, Leg.SPNEGO_CONTINUE, Leg.DIGEST_STALE}
)


class Outcome(FastEnum):
    """Final verdict on a 401/407 after the whole capture is seen."""

    NORMAL = "normal"  # a leg of a handshake that went on
    FAILURE = "failure"
    INCOMPLETE = "incomplete"  # the capture cannot tell (cut, gap, start missing)


@dataclass(frozen=True, slots=True)
class IisTriple:
    """What IIS most likely wrote in its W3C log for this response."""

    status: int
    substatus: int
    win32: int
    certain: bool = True

    def __str__(self) -> str:
        return f"{self.status} {self.substatus} {self.win32}"


@dataclass(frozen=True, slots=True)
class AuthExchange:
    """One HTTP exchange seen through one realm's authentication.

    credentials: the decoded Authorization / Proxy-Authorization step, if any.
    challenges: the decoded WWW-Authenticate / Proxy-Authenticate steps.
    state_before/state_after: the connection's state for this realm.
    outcome: for a 401/407 only, the final verdict (set by links.py).
    """

    exchange: Exchange
    realm: Realm
    credentials: AuthStep | None
    challenges: tuple[AuthStep, ...]
    sent: Sent
    answer: Answer
    leg: Leg
    state_before: State
    state_after: State
    iis: IisTriple | None = None
    iis_from_body: str | None = None  # e.g. "401.2", read from an IIS error page
    outcome: Outcome | None = None
    reason: str = ""

    @property
    def status(self) -> int | None:
        response = self.exchange.response
        return response.status if response is not None else None

    @property
    def is_auth_failure_status(self) -> bool:
        return self.status in (401, 407)
