"""The handshake state machine table: every (state, sent, answer) is written
exactly once or left out on purpose, and the legs of healthy handshakes lead
where they must."""

from __future__ import annotations

import itertools

import pytest

from authtrace.handshake.machine import (
    ROWS,
    TRANSITIONS,
    UNWRITTEN,
    DuplicateRow,
    Row,
    build_table,
    transition,
)
from authtrace.handshake.model import NORMAL_LEGS, Answer, Leg, Sent, State

ALL_PAIRS = list(itertools.product(State, Sent, Answer))


@pytest.mark.parametrize(("state", "sent", "answer"), ALL_PAIRS)
def test_every_pair_is_written_or_left_out_on_purpose(
    state: State, sent: Sent, answer: Answer
) -> None:
    key = (state, sent, answer)
    assert (key in TRANSITIONS) != (key in UNWRITTEN), key
    leg, next_state = transition(state, sent, answer)
    if key in UNWRITTEN:
        assert leg is Leg.UNFOLLOWED and next_state is state
    else:
        written_leg, written_state = TRANSITIONS[key]
        assert leg is written_leg
        assert next_state is (state if written_state is None else written_state)


def test_left_out_pairs_are_only_foreign_continuations() -> None:
    # Only an answer continuing a handshake the request did not carry may be
    # left out; every refusal, success and "no answer" is written.
    continues = {
        Sent.NTLM_NEGOTIATE: {Answer.NTLM_CHALLENGE},
        Sent.NTLM_AUTHENTICATE: {Answer.COMPLETED},
        Sent.KERBEROS: {Answer.CONTINUE, Answer.NTLM_CHALLENGE, Answer.COMPLETED},
        Sent.SPNEGO_CONTINUE: {Answer.CONTINUE, Answer.COMPLETED},
        Sent.DIGEST: {Answer.STALE},
    }
    for _state, sent, answer in UNWRITTEN:
        assert answer in (Answer.CONTINUE, Answer.NTLM_CHALLENGE, Answer.STALE, Answer.COMPLETED)
        assert answer not in continues.get(sent, set())


def test_a_second_row_for_a_pair_is_an_error() -> None:
    assert build_table(ROWS) == TRANSITIONS
    # Any row written again, even with the same target, is refused: the table
    # must not depend on the order of its rows.
    for row in (ROWS[0], ROWS[len(ROWS) // 2], ROWS[-1]):
        with pytest.raises(DuplicateRow, match="already"):
            build_table((*ROWS, row))
    narrowed = Row((State.AUTHENTICATED,), Sent.NOTHING, (Answer.SUCCESS,), (Leg.ANONYMOUS, None))
    with pytest.raises(DuplicateRow):
        build_table((*ROWS, narrowed))


def test_an_authenticated_connection_reuses_without_credentials() -> None:
    # The pair that used to be written twice (anonymous, then reused): the
    # connection-based answer is the one the table holds.
    assert transition(State.AUTHENTICATED, Sent.NOTHING, Answer.SUCCESS) == (
        Leg.REUSED,
        State.AUTHENTICATED,
    )
    assert transition(State.NTLM_CHALLENGED, Sent.NOTHING, Answer.SUCCESS) == (
        Leg.ABANDONED,
        State.FRESH,
    )


def test_scheme_not_offered_overrides_an_offer_only() -> None:
    assert transition(State.OFFERED, Sent.BASIC, Answer.OFFER, scheme_offered=False) == (
        Leg.SCHEME_NOT_OFFERED,
        State.FAILED,
    )
    # A success is a success whatever scheme it came in.
    assert transition(State.OFFERED, Sent.BASIC, Answer.SUCCESS, scheme_offered=False)[0] is (
        Leg.BASIC_ACCEPTED
    )


def test_persistent_auth_false_leaves_the_connection_fresh() -> None:
    assert transition(
        State.NTLM_CHALLENGED, Sent.NTLM_AUTHENTICATE, Answer.SUCCESS, keeps_authentication=False
    ) == (Leg.NTLM_ACCEPTED, State.FRESH)
    assert transition(State.OFFERED, Sent.BASIC, Answer.OFFER, keeps_authentication=False) == (
        Leg.BASIC_REJECTED,
        State.FAILED,
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


def test_digest_stale_is_a_normal_leg() -> None:
    leg, state = transition(State.OFFERED, Sent.DIGEST, Answer.STALE)
    assert leg in NORMAL_LEGS and state is State.OFFERED


def test_a_refusal_that_completes_authentication_is_after_logon() -> None:
    # RFC 4559 section 5: the server's final token (AP-REP, accept-completed)
    # inside a 401 says the credentials were accepted.
    for state, sent in [
        (State.OFFERED, Sent.KERBEROS),
        (State.NTLM_CHALLENGED, Sent.NTLM_AUTHENTICATE),
        (State.CONTINUING, Sent.SPNEGO_CONTINUE),
    ]:
        assert transition(state, sent, Answer.COMPLETED) == (
            Leg.REFUSED_AFTER_LOGON,
            State.AUTHENTICATED,
        )


def test_a_refusal_naming_no_scheme_after_credentials_is_after_logon() -> None:
    assert transition(State.NTLM_CHALLENGED, Sent.NTLM_AUTHENTICATE, Answer.DENIED)[0] is (
        Leg.REFUSED_AFTER_LOGON
    )
    assert transition(State.FRESH, Sent.BASIC, Answer.DENIED) == (
        Leg.REFUSED_AFTER_LOGON,
        State.FRESH,
    )
    # A refusal that offers schemes again is still a refused logon.
    assert transition(State.NTLM_CHALLENGED, Sent.NTLM_AUTHENTICATE, Answer.OFFER)[0] is (
        Leg.NTLM_REJECTED
    )
    assert transition(State.FRESH, Sent.BASIC, Answer.OFFER)[0] is Leg.BASIC_REJECTED


def test_an_anonymous_refusal_naming_no_scheme_is_not_a_challenge() -> None:
    leg, state = transition(State.FRESH, Sent.NOTHING, Answer.DENIED)
    assert leg is Leg.ANONYMOUS_REFUSED and state is State.FRESH
    assert leg not in NORMAL_LEGS
    assert transition(State.FRESH, Sent.NOTHING, Answer.OFFER)[0] is Leg.ANONYMOUS_CHALLENGED


def test_another_scheme_asked_after_a_finished_logon_is_after_logon() -> None:
    # An API wanting a Bearer token after Windows authentication: the scheme the
    # logon completed in had been offered before, the refusal asks for another.
    assert transition(
        State.NTLM_CHALLENGED,
        Sent.NTLM_AUTHENTICATE,
        Answer.OFFER,
        scheme_offered=False,
        offered_before=True,
    ) == (Leg.REFUSED_AFTER_LOGON, State.AUTHENTICATED)
    # Never offered: the client answered with a scheme the server does not take.
    assert transition(
        State.NTLM_CHALLENGED, Sent.NTLM_AUTHENTICATE, Answer.OFFER, scheme_offered=False
    ) == (Leg.SCHEME_NOT_OFFERED, State.FAILED)
    # An AUTHENTICATE without its CHALLENGE finishes nothing.
    assert transition(
        State.OFFERED,
        Sent.NTLM_AUTHENTICATE,
        Answer.OFFER,
        scheme_offered=False,
        offered_before=True,
    ) == (Leg.SCHEME_NOT_OFFERED, State.FAILED)
    # Basic is per request: a Bearer demand after it is still "scheme not offered".
    assert (
        transition(
            State.OFFERED, Sent.BASIC, Answer.OFFER, scheme_offered=False, offered_before=True
        )[0]
        is Leg.SCHEME_NOT_OFFERED
    )
