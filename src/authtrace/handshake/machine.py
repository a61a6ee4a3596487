"""The per-connection authentication state machine, as one table.

Everything that decides how a connection's authentication state moves lives in
this module: `TRANSITIONS` maps (state, what the client sent, what the server
answered) to (the judgement of that exchange, the next state). A pair missing
from the table is not guessed: it is judged `Leg.UNFOLLOWED` and the state is
kept, so the rules never build on a transition nobody wrote down.

The table follows RFC 4559 (Negotiate over HTTP: one leg per request, the
context bound to the connection), MS-NLMP 3.1 (NEGOTIATE -> CHALLENGE ->
AUTHENTICATE on one connection), RFC 7616 (Digest stale nonce) and RFC 6750
(Bearer errors).
"""

from __future__ import annotations

from typing import Final

from authtrace.handshake.model import Answer, IisTriple, Leg, Sent, State

_ALL_STATES: Final = tuple(State)
_KEEP: Final = None  # "next state = current state"

_REFUSED = (Answer.OFFER, Answer.DENIED, Answer.REJECT)
_ACCEPTED = (Answer.SUCCESS, Answer.FORBIDDEN)  # 403 after credentials: who, not whether

Key = tuple[State, Sent, Answer]
Target = tuple[Leg, State | None]


def _rows() -> dict[Key, Target]:
    table: dict[Key, Target] = {}

    def every(states: tuple[State, ...], sent: Sent, answers: tuple[Answer, ...], target: Target):
        for state in states:
            for answer in answers:
                table[(state, sent, answer)] = target

    not_authenticated = (State.FRESH, State.OFFERED, State.FAILED)
    midway = (State.NTLM_CHALLENGED, State.CONTINUING)

    # --- no credentials -----------------------------------------------------
    every(_ALL_STATES, Sent.NOTHING, (Answer.SUCCESS, Answer.FORBIDDEN), (Leg.ANONYMOUS, _KEEP))
    every((State.AUTHENTICATED,), Sent.NOTHING, _ACCEPTED, (Leg.REUSED, _KEEP))
    every(not_authenticated, Sent.NOTHING, _REFUSED, (Leg.ANONYMOUS_CHALLENGED, State.OFFERED))
    every((State.AUTHENTICATED,), Sent.NOTHING, _REFUSED, (Leg.REAUTH_CHALLENGED, State.OFFERED))
    # The client dropped a handshake in the middle (MS-NLMP 3.1.5: the AUTHENTICATE
    # must follow the CHALLENGE on the same connection).
    every(midway, Sent.NOTHING, _REFUSED, (Leg.ABANDONED, State.OFFERED))
    every(midway, Sent.NOTHING, _ACCEPTED, (Leg.ABANDONED, State.FRESH))

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
        _REFUSED,
        (Leg.NTLM_REJECTED, State.FAILED),
    )
    others = tuple(s for s in _ALL_STATES if s is not State.NTLM_CHALLENGED)
    # An AUTHENTICATE on a connection that never carried its CHALLENGE: the
    # server has no context for it (SEC_E_INVALID_TOKEN on IIS).
    every(others, Sent.NTLM_AUTHENTICATE, _REFUSED, (Leg.NTLM_OUT_OF_SEQUENCE, State.FAILED))
    every(
        others,
        Sent.NTLM_AUTHENTICATE,
        _ACCEPTED,
        (Leg.NTLM_OUT_OF_SEQUENCE_ACCEPTED, State.AUTHENTICATED),
    )

    # --- Kerberos and SPNEGO (RFC 4559 section 5) -----------------------------
    every(_ALL_STATES, Sent.KERBEROS, _ACCEPTED, (Leg.KERBEROS_ACCEPTED, State.AUTHENTICATED))
    every(_ALL_STATES, Sent.KERBEROS, _REFUSED, (Leg.KERBEROS_REJECTED, State.FAILED))
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

    # --- Basic, Digest, Bearer: per request, never bind the connection -------
    every(_ALL_STATES, Sent.BASIC, _ACCEPTED, (Leg.BASIC_ACCEPTED, _KEEP))
    every(_ALL_STATES, Sent.BASIC, _REFUSED, (Leg.BASIC_REJECTED, State.FAILED))
    every(_ALL_STATES, Sent.DIGEST, _ACCEPTED, (Leg.DIGEST_ACCEPTED, _KEEP))
    every(_ALL_STATES, Sent.DIGEST, (Answer.STALE,), (Leg.DIGEST_STALE, State.OFFERED))
    every(_ALL_STATES, Sent.DIGEST, _REFUSED, (Leg.DIGEST_REJECTED, State.FAILED))
    every(_ALL_STATES, Sent.BEARER, _ACCEPTED, (Leg.BEARER_ACCEPTED, _KEEP))
    every(_ALL_STATES, Sent.BEARER, _REFUSED, (Leg.BEARER_REJECTED, State.FAILED))
    every(_ALL_STATES, Sent.OTHER, _ACCEPTED, (Leg.ANONYMOUS, _KEEP))
    every(_ALL_STATES, Sent.OTHER, _REFUSED, (Leg.DENIED, State.FAILED))
    every(_ALL_STATES, Sent.MALFORMED, _ACCEPTED, (Leg.ANONYMOUS, _KEEP))
    every(_ALL_STATES, Sent.MALFORMED, _REFUSED, (Leg.DENIED, State.FAILED))

    # --- answers that end any leg the same way ---------------------------------
    for sent in Sent:
        every(_ALL_STATES, sent, (Answer.NONE,), (Leg.UNANSWERED, _KEEP))
        if sent is not Sent.NOTHING:
            every(_ALL_STATES, sent, (Answer.TOO_LARGE,), (Leg.HEADER_TOO_LARGE, State.FAILED))
    every(_ALL_STATES, Sent.NOTHING, (Answer.TOO_LARGE,), (Leg.ANONYMOUS, _KEEP))
    return table


TRANSITIONS: Final[dict[Key, Target]] = _rows()


def transition(state: State, sent: Sent, answer: Answer) -> tuple[Leg, State]:
    """Judge one exchange and give the connection's next state."""
    target = TRANSITIONS.get((state, sent, answer))
    if target is None:
        return Leg.UNFOLLOWED, state
    leg, next_state = target
    return leg, state if next_state is None else next_state


# What IIS most likely logs for each kind of 401 (sc-status sc-substatus
# sc-win32-status). The anonymous leg and the NTLM challenge leg are the two
# normal entries of every Windows-authentication handshake.
_ACCESS_DENIED = 5
_LOGON_FAILURE = 1326
_SEC_E_INVALID_TOKEN = 0x80090308
_SEC_E_LOGON_DENIED = 0x8009030C
_SEC_E_NO_CREDENTIALS = 0x8009030E
_SEC_E_TIME_SKEW = 0x80090324

IIS_TRIPLES: Final[dict[Leg, IisTriple]] = {
    Leg.ANONYMOUS_CHALLENGED: IisTriple(401, 2, _ACCESS_DENIED),
    Leg.REAUTH_CHALLENGED: IisTriple(401, 2, _ACCESS_DENIED),
    Leg.ABANDONED: IisTriple(401, 2, _ACCESS_DENIED),
    Leg.SCHEME_NOT_OFFERED: IisTriple(401, 2, _ACCESS_DENIED),
    Leg.NTLM_CHALLENGE: IisTriple(401, 1, _SEC_E_NO_CREDENTIALS),
    Leg.SPNEGO_CONTINUE: IisTriple(401, 1, _SEC_E_NO_CREDENTIALS),
    Leg.NTLM_OUT_OF_SEQUENCE: IisTriple(401, 1, _SEC_E_INVALID_TOKEN),
    Leg.NTLM_NEGOTIATE_REJECTED: IisTriple(401, 1, _SEC_E_INVALID_TOKEN, certain=False),
    # A wrong password is logged as ERROR_LOGON_FAILURE (the domain controller's
    # answer); some builds log SEC_E_LOGON_DENIED (2148074252) instead.
    Leg.NTLM_REJECTED: IisTriple(401, 1, _LOGON_FAILURE, certain=False),
    Leg.KERBEROS_REJECTED: IisTriple(401, 1, _SEC_E_LOGON_DENIED, certain=False),
    Leg.BASIC_REJECTED: IisTriple(401, 1, _LOGON_FAILURE),
    Leg.DIGEST_REJECTED: IisTriple(401, 1, _LOGON_FAILURE, certain=False),
    Leg.BEARER_REJECTED: IisTriple(401, 0, 0, certain=False),
}

CLOCK_SKEW_TRIPLE: Final = IisTriple(401, 1, _SEC_E_TIME_SKEW)
# An AUTHENTICATE the server cannot place in a context of its own: answered on
# a connection (or server) that never issued its CHALLENGE.
SPLIT_TRIPLE: Final = IisTriple(401, 1, _SEC_E_INVALID_TOKEN, certain=False)
# Extended Protection refusing an AUTHENTICATE not bound to the TLS channel.
BAD_BINDINGS_TRIPLE: Final = IisTriple(401, 1, 0x80090346)
# An anonymous AUTHENTICATE gives an anonymous logon, which is then refused as
# if no credentials had been sent.
ANONYMOUS_TRIPLE: Final = IisTriple(401, 2, _ACCESS_DENIED, certain=False)


def iis_triple(leg: Leg, status: int | None) -> IisTriple | None:
    """The predicted IIS log triple for a 401 judged as `leg` (None: not a 401,
    or nothing predictable)."""
    if status != 401:
        return None
    return IIS_TRIPLES.get(leg)
