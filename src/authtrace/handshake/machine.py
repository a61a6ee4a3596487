"""The per-connection authentication state machine, as one table.

Everything that decides how a connection's authentication state moves lives in
this module: `TRANSITIONS` maps (state, what the client sent, what the server
answered) to (the judgement of that exchange, the next state). A pair missing
from the table is not guessed: it is judged `Leg.UNFOLLOWED` and the state is
kept, so the rules never build on a transition nobody wrote down. Every pair is
written once: a second row for a pair is an error when the table is built
(`DuplicateRow`), so the order of the rows carries no meaning. The pairs left
out on purpose are `UNWRITTEN`; the two facts outside the key that may refine
a row are spelled out in `transition()`. What IIS logs for each judgement is
not decided here (`iis.predict` owns that).

The table follows RFC 4559 (Negotiate over HTTP: one leg per request, the
context bound to the connection), MS-NLMP 3.1 (NEGOTIATE -> CHALLENGE ->
AUTHENTICATE on one connection), RFC 7616 (Digest stale nonce) and RFC 6750
(Bearer errors).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from authtrace.handshake.model import Answer, Leg, Sent, State

_ALL_STATES: Final = tuple(State)
_KEEP: Final = None  # "next state = current state"

_REFUSED = (Answer.OFFER, Answer.DENIED, Answer.REJECT)
_OFFERS = (Answer.OFFER, Answer.REJECT)  # refusals that name a scheme to answer with
# A refusal after the credentials were accepted: the 401 completes the
# authentication, or names no scheme (an authentication layer refusing a logon
# offers its schemes again), so it came from behind authentication.
_AFTER_LOGON = (Answer.DENIED, Answer.COMPLETED)
_ACCEPTED = (Answer.SUCCESS, Answer.FORBIDDEN)  # 403 after credentials: who, not whether

Key = tuple[State, Sent, Answer]
Target = tuple[Leg, State | None]

# Pairs the table leaves out on purpose: an answer that continues a handshake
# the request did not carry (an NTLM CHALLENGE to Basic credentials or to no
# credentials at all, a stale Digest nonce to a Kerberos ticket). No server
# does that, so nobody knows what it means: such a pair is judged
# `Leg.UNFOLLOWED` and the state is kept.
_CONTINUATIONS: Final = frozenset(
    {Answer.CONTINUE, Answer.NTLM_CHALLENGE, Answer.STALE, Answer.COMPLETED}
)
_CONTINUES: Final[dict[Sent, frozenset[Answer]]] = {
    Sent.NTLM_NEGOTIATE: frozenset({Answer.NTLM_CHALLENGE}),
    # SPNEGO-wrapped NTLM: the server's last NegTokenResp completes it.
    Sent.NTLM_AUTHENTICATE: frozenset({Answer.COMPLETED}),
    Sent.KERBEROS: frozenset({Answer.CONTINUE, Answer.NTLM_CHALLENGE, Answer.COMPLETED}),
    Sent.SPNEGO_CONTINUE: frozenset({Answer.CONTINUE, Answer.COMPLETED}),
    Sent.DIGEST: frozenset({Answer.STALE}),
    # Credentials the capture cut may have been anything: every continuation
    # is written for them.
    Sent.NOT_SEEN: _CONTINUATIONS,
}
UNWRITTEN: Final = frozenset(
    (state, sent, answer)
    for state in _ALL_STATES
    for sent in Sent
    for answer in _CONTINUATIONS - _CONTINUES.get(sent, frozenset())
)


class DuplicateRow(Exception):
    """Two rows of the table claim the same (state, sent, answer): the table
    would depend on the order its rows are written in."""


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table: every (state, sent, answer) it names -> target."""

    states: tuple[State, ...]
    sent: Sent
    answers: tuple[Answer, ...]
    target: Target


def build_table(rows: Iterable[Row]) -> dict[Key, Target]:
    """The table the rows declare; a pair claimed by two rows is `DuplicateRow`."""
    table: dict[Key, Target] = {}
    for row in rows:
        for state in row.states:
            for answer in row.answers:
                key = (state, row.sent, answer)
                if key in table:
                    raise DuplicateRow(f"{key} is already {table[key]}, not {row.target}")
                table[key] = row.target
    return table


def _rows() -> list[Row]:
    rows: list[Row] = []

    def every(states: tuple[State, ...], sent: Sent, answers: tuple[Answer, ...], target: Target):
        rows.append(Row(states, sent, answers, target))

    not_authenticated = (State.FRESH, State.OFFERED, State.FAILED)
    midway = (State.NTLM_CHALLENGED, State.CONTINUING)
    unknown = (State.UNKNOWN,)

    # --- no credentials -----------------------------------------------------
    # Each state group once: fresh/offered/failed, authenticated, midway.
    every(not_authenticated, Sent.NOTHING, _ACCEPTED, (Leg.ANONYMOUS, _KEEP))
    every(not_authenticated, Sent.NOTHING, _OFFERS, (Leg.ANONYMOUS_CHALLENGED, State.OFFERED))
    # RFC 9110 section 11.6.1: a 401 names the schemes that may answer it; one
    # that names none leaves the client nothing to send.
    every(not_authenticated, Sent.NOTHING, (Answer.DENIED,), (Leg.ANONYMOUS_REFUSED, _KEEP))
    every((State.AUTHENTICATED,), Sent.NOTHING, _ACCEPTED, (Leg.REUSED, _KEEP))
    every((State.AUTHENTICATED,), Sent.NOTHING, _REFUSED, (Leg.REAUTH_CHALLENGED, State.OFFERED))
    # The client dropped a handshake in the middle (MS-NLMP 3.1.5: the AUTHENTICATE
    # must follow the CHALLENGE on the same connection).
    every(midway, Sent.NOTHING, _REFUSED, (Leg.ABANDONED, State.OFFERED))
    every(midway, Sent.NOTHING, _ACCEPTED, (Leg.ABANDONED, State.FRESH))
    # After a leg the capture cut, a request without credentials may be an
    # anonymous one, a reuse of an authenticated connection or an abandoned
    # handshake: not judged. An offer still says where the state is now.
    every(unknown, Sent.NOTHING, (*_ACCEPTED, Answer.DENIED), (Leg.AFTER_NOT_SEEN, _KEEP))
    every(unknown, Sent.NOTHING, _OFFERS, (Leg.AFTER_NOT_SEEN, State.OFFERED))
    # --- NTLM ---------------------------------------------------------------
    every(
        _ALL_STATES,
        Sent.NTLM_NEGOTIATE,
        (Answer.NTLM_CHALLENGE,),
        (Leg.NTLM_CHALLENGE, State.NTLM_CHALLENGED),
    )
    every(_ALL_STATES, Sent.NTLM_NEGOTIATE, _REFUSED, (Leg.NTLM_NEGOTIATE_REJECTED, State.FAILED))
    every(_ALL_STATES, Sent.NTLM_NEGOTIATE, _ACCEPTED, (Leg.ANONYMOUS, _KEEP))
    every(
        (State.NTLM_CHALLENGED,),
        Sent.NTLM_AUTHENTICATE,
        _ACCEPTED,
        (Leg.NTLM_ACCEPTED, State.AUTHENTICATED),
    )
    every(
        (State.NTLM_CHALLENGED,),
        Sent.NTLM_AUTHENTICATE,
        _OFFERS,
        (Leg.NTLM_REJECTED, State.FAILED),
    )
    every(
        (State.NTLM_CHALLENGED,),
        Sent.NTLM_AUTHENTICATE,
        _AFTER_LOGON,
        (Leg.REFUSED_AFTER_LOGON, State.AUTHENTICATED),
    )
    others = tuple(s for s in _ALL_STATES if s is not State.NTLM_CHALLENGED)
    seen = tuple(s for s in others if s is not State.UNKNOWN)
    # An AUTHENTICATE on a connection that never carried its CHALLENGE: the
    # server has no context for it (SEC_E_INVALID_TOKEN on IIS).
    every(seen, Sent.NTLM_AUTHENTICATE, _REFUSED, (Leg.NTLM_OUT_OF_SEQUENCE, State.FAILED))
    every(
        seen,
        Sent.NTLM_AUTHENTICATE,
        _ACCEPTED,
        (Leg.NTLM_OUT_OF_SEQUENCE_ACCEPTED, State.AUTHENTICATED),
    )
    # After a leg the capture cut, its CHALLENGE may be in the cut: neither a
    # failed logon nor an AUTHENTICATE out of sequence. A refusal naming
    # schemes leaves the connection unauthenticated either way; one naming
    # none may come from behind a logon that went through.
    every(unknown, Sent.NTLM_AUTHENTICATE, _OFFERS, (Leg.AFTER_NOT_SEEN, State.FAILED))
    every(unknown, Sent.NTLM_AUTHENTICATE, (Answer.DENIED,), (Leg.AFTER_NOT_SEEN, _KEEP))
    every(unknown, Sent.NTLM_AUTHENTICATE, _ACCEPTED, (Leg.AFTER_NOT_SEEN, State.AUTHENTICATED))
    # The server completed a context it had for this AUTHENTICATE (its CHALLENGE
    # went out elsewhere), then refused the request behind authentication.
    every(
        others,
        Sent.NTLM_AUTHENTICATE,
        (Answer.COMPLETED,),
        (Leg.REFUSED_AFTER_LOGON, State.AUTHENTICATED),
    )

    # --- Kerberos and SPNEGO (RFC 4559 section 5) -----------------------------
    every(_ALL_STATES, Sent.KERBEROS, _ACCEPTED, (Leg.KERBEROS_ACCEPTED, State.AUTHENTICATED))
    every(_ALL_STATES, Sent.KERBEROS, _OFFERS, (Leg.KERBEROS_REJECTED, State.FAILED))
    every(
        _ALL_STATES,
        Sent.KERBEROS,
        _AFTER_LOGON,
        (Leg.REFUSED_AFTER_LOGON, State.AUTHENTICATED),
    )
    every(_ALL_STATES, Sent.KERBEROS, (Answer.CONTINUE,), (Leg.SPNEGO_CONTINUE, State.CONTINUING))
    # SPNEGO may answer an optimistic Kerberos token by picking NTLM instead.
    every(
        _ALL_STATES,
        Sent.KERBEROS,
        (Answer.NTLM_CHALLENGE,),
        (Leg.SPNEGO_CONTINUE, State.NTLM_CHALLENGED),
    )
    every(_ALL_STATES, Sent.SPNEGO_CONTINUE, _ACCEPTED, (Leg.SPNEGO_ACCEPTED, State.AUTHENTICATED))
    every(
        _ALL_STATES,
        Sent.SPNEGO_CONTINUE,
        (Answer.CONTINUE,),
        (Leg.SPNEGO_CONTINUE, State.CONTINUING),
    )
    every(_ALL_STATES, Sent.SPNEGO_CONTINUE, _REFUSED, (Leg.DENIED, State.FAILED))
    every(
        _ALL_STATES,
        Sent.SPNEGO_CONTINUE,
        (Answer.COMPLETED,),
        (Leg.REFUSED_AFTER_LOGON, State.AUTHENTICATED),
    )

    # --- Basic, Digest, Bearer: per request, never bind the connection -------
    every(_ALL_STATES, Sent.BASIC, _ACCEPTED, (Leg.BASIC_ACCEPTED, _KEEP))
    every(_ALL_STATES, Sent.BASIC, _OFFERS, (Leg.BASIC_REJECTED, State.FAILED))
    every(_ALL_STATES, Sent.BASIC, (Answer.DENIED,), (Leg.REFUSED_AFTER_LOGON, _KEEP))
    every(_ALL_STATES, Sent.DIGEST, _ACCEPTED, (Leg.DIGEST_ACCEPTED, _KEEP))
    every(_ALL_STATES, Sent.DIGEST, (Answer.STALE,), (Leg.DIGEST_STALE, State.OFFERED))
    every(_ALL_STATES, Sent.DIGEST, _REFUSED, (Leg.DIGEST_REJECTED, State.FAILED))
    every(_ALL_STATES, Sent.BEARER, _ACCEPTED, (Leg.BEARER_ACCEPTED, _KEEP))
    every(_ALL_STATES, Sent.BEARER, _REFUSED, (Leg.BEARER_REJECTED, State.FAILED))
    every(_ALL_STATES, Sent.OTHER, _ACCEPTED, (Leg.ANONYMOUS, _KEEP))
    every(_ALL_STATES, Sent.OTHER, _REFUSED, (Leg.DENIED, State.FAILED))
    every(_ALL_STATES, Sent.MALFORMED, _ACCEPTED, (Leg.ANONYMOUS, _KEEP))
    every(_ALL_STATES, Sent.MALFORMED, _REFUSED, (Leg.DENIED, State.FAILED))

    # --- a head the capture cut: "not seen", never "not sent" -----------------
    # Credentials not seen (Sent.NOT_SEEN): the answer alone is judged where it
    # says what the client must have sent, whatever the rest: a CHALLENGE
    # answers only a NEGOTIATE (MS-NLMP 3.2.5.1.1) and accept-incomplete only
    # a SPNEGO token (RFC 4178 section 4.2.2), both normal legs. Anything
    # else is not judged, and the state is known only where every reading of
    # the request leads to the same one.
    every(
        _ALL_STATES,
        Sent.NOT_SEEN,
        (Answer.NTLM_CHALLENGE,),
        (Leg.NTLM_CHALLENGE, State.NTLM_CHALLENGED),
    )
    every(_ALL_STATES, Sent.NOT_SEEN, (Answer.CONTINUE,), (Leg.SPNEGO_CONTINUE, State.CONTINUING))
    every(_ALL_STATES, Sent.NOT_SEEN, (Answer.COMPLETED,), (Leg.NOT_SEEN, State.AUTHENTICATED))
    every((State.AUTHENTICATED,), Sent.NOT_SEEN, _ACCEPTED, (Leg.NOT_SEEN, _KEEP))
    every(
        tuple(s for s in _ALL_STATES if s is not State.AUTHENTICATED),
        Sent.NOT_SEEN,
        _ACCEPTED,
        (Leg.NOT_SEEN, State.UNKNOWN),
    )
    # A 401 that names schemes (or a stale nonce) leaves the connection
    # unauthenticated and asked for credentials, whatever was sent.
    every(_ALL_STATES, Sent.NOT_SEEN, (*_OFFERS, Answer.STALE), (Leg.NOT_SEEN, State.OFFERED))
    every(
        _ALL_STATES,
        Sent.NOT_SEEN,
        (Answer.DENIED, Answer.TOO_LARGE),
        (Leg.NOT_SEEN, State.UNKNOWN),
    )
    # A challenge not seen (Answer.NOT_SEEN), whatever the request carried.
    for sent in Sent:
        every(_ALL_STATES, sent, (Answer.NOT_SEEN,), (Leg.NOT_SEEN, State.UNKNOWN))

    # --- answers that end any leg the same way ---------------------------------
    for sent in Sent:
        every(_ALL_STATES, sent, (Answer.NONE,), (Leg.UNANSWERED, _KEEP))
        if sent not in (Sent.NOTHING, Sent.NOT_SEEN):
            every(_ALL_STATES, sent, (Answer.TOO_LARGE,), (Leg.HEADER_TOO_LARGE, State.FAILED))
    every(_ALL_STATES, Sent.NOTHING, (Answer.TOO_LARGE,), (Leg.ANONYMOUS, _KEEP))
    return rows


ROWS: Final[tuple[Row, ...]] = tuple(_rows())
TRANSITIONS: Final[dict[Key, Target]] = build_table(ROWS)


def transition(
    state: State,
    sent: Sent,
    answer: Answer,
    *,
    scheme_offered: bool = True,
    keeps_authentication: bool = True,
    offered_before: bool = False,
) -> tuple[Leg, State]:
    """Judge one exchange and give the connection's next state.

    The table decides, except in exactly two cases, each a fact outside the
    (state, sent, answer) key:

    1. `scheme_offered=False`: the client's credentials are in a scheme the
       server did not offer, and the server answered with an offer (RFC 9110
       section 11.6.1: the refusal names what it accepts). Whatever the row,
       that is `Leg.SCHEME_NOT_OFFERED` and the connection has failed —
       unless `offered_before`: the server had offered that scheme earlier on
       the connection and the credentials finish a logon in it (an NTLM
       AUTHENTICATE after its CHALLENGE, a Kerberos ticket, a later SPNEGO leg).
       Then the logon went through and something behind it asks for another
       scheme (an API wanting a Bearer token after Windows authentication):
       `Leg.REFUSED_AFTER_LOGON`, the connection authenticated. After a leg
       the capture cut (`State.UNKNOWN`) an AUTHENTICATE may or may not have
       had its CHALLENGE: `Leg.AFTER_NOT_SEEN`, the state still unknown.
    2. `keeps_authentication=False`: the response says `Persistent-Auth:
       false` (MS-N2HT section 3.2.5): the connection does not stay
       authenticated, so an `AUTHENTICATED` next state becomes `FRESH`.
    """
    target = TRANSITIONS.get((state, sent, answer))
    if target is None:
        leg, next_state = Leg.UNFOLLOWED, state
    else:
        leg, written = target
        next_state = state if written is None else written
    if not scheme_offered and sent not in _NO_SCHEME and answer is Answer.OFFER:
        if offered_before and _finishes_logon(state, sent):
            leg, next_state = Leg.REFUSED_AFTER_LOGON, State.AUTHENTICATED
        elif offered_before and state is State.UNKNOWN and sent is Sent.NTLM_AUTHENTICATE:
            # Its CHALLENGE may be in what the capture cut: the logon may
            # have gone through, or not.
            leg, next_state = Leg.AFTER_NOT_SEEN, State.UNKNOWN
        else:
            leg, next_state = Leg.SCHEME_NOT_OFFERED, State.FAILED
    if not keeps_authentication and next_state is State.AUTHENTICATED:
        next_state = State.FRESH
    return leg, next_state


_NO_SCHEME: Final = frozenset({Sent.NOTHING, Sent.NOT_SEEN})  # no scheme to compare


def _finishes_logon(state: State, sent: Sent) -> bool:
    """The credentials complete a logon in their scheme (MS-NLMP 3.1.5: the
    AUTHENTICATE after its CHALLENGE; RFC 4559: a Kerberos ticket or a later
    SPNEGO leg)."""
    if sent is Sent.NTLM_AUTHENTICATE:
        return state is State.NTLM_CHALLENGED
    return sent in (Sent.KERBEROS, Sent.SPNEGO_CONTINUE)
