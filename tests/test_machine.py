"""The handshake state machine table: every (state, sent, answer) has an
explicit judgement, and the legs of healthy handshakes lead where they must."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from authtrace.handshake.machine import IIS_TRIPLES, TRANSITIONS, iis_triple, transition
from authtrace.handshake.model import NORMAL_LEGS, Answer, Leg, Sent, State


@given(st.sampled_from(State), st.sampled_from(Sent), st.sampled_from(Answer))
def test_every_pair_is_judged(state: State, sent: Sent, answer: Answer) -> None:
    leg, next_state = transition(state, sent, answer)
    assert isinstance(leg, Leg) and isinstance(next_state, State)
    if (state, sent, answer) not in TRANSITIONS:
        assert leg is Leg.UNFOLLOWED and next_state is state


def test_table_covers_all_but_impossible_pairs() -> None:
    missing = [
        key
        for key in ((state, sent, answer) for state in State for sent in Sent for answer in Answer)
        if key not in TRANSITIONS
    ]
    # Only pairs where the server answers a request that carried nothing with a
    # handshake continuation (which no server does) may be left out.
    for _state, sent, answer in missing:
        assert sent is Sent.NOTHING or answer in (
            Answer.CONTINUE,
            Answer.NTLM_CHALLENGE,
            Answer.STALE,
        )


def test_healthy_ntlm_walk() -> None:
    state = State.FRESH
    legs = []
    for sent, answer in [
        (Sent.NOTHING, Answer.OFFER),
        (Sent.NTLM_NEGOTIATE, Answer.NTLM_CHALLENGE),
        (Sent.NTLM_AUTHENTICATE, Answer.SUCCESS),
        (Sent.NOTHING, Answer.SUCCESS),
    ]:
        leg, state = transition(state, sent, answer)
        legs.append(leg)
    assert legs == [Leg.ANONYMOUS_CHALLENGED, Leg.NTLM_CHALLENGE, Leg.NTLM_ACCEPTED, Leg.REUSED]
    assert state is State.AUTHENTICATED


def test_authenticate_without_challenge_is_out_of_sequence() -> None:
    leg, state = transition(State.OFFERED, Sent.NTLM_AUTHENTICATE, Answer.OFFER)
    assert leg is Leg.NTLM_OUT_OF_SEQUENCE and state is State.FAILED
    assert str(iis_triple(leg, 401)) == "401 1 2148074248"


def test_normal_legs_log_as_the_classic_triples() -> None:
    assert str(IIS_TRIPLES[Leg.ANONYMOUS_CHALLENGED]) == "401 2 5"
    assert str(IIS_TRIPLES[Leg.NTLM_CHALLENGE]) == "401 1 2148074254"
    assert iis_triple(Leg.NTLM_CHALLENGE, 200) is None
    assert Leg.NTLM_REJECTED not in NORMAL_LEGS


def test_digest_stale_is_a_normal_leg() -> None:
    leg, state = transition(State.OFFERED, Sent.DIGEST, Answer.STALE)
    assert leg in NORMAL_LEGS and state is State.OFFERED
