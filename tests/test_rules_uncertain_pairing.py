"""Uncertain pairing is a fact every rule respects (issue 11 item 1, c): after a
gap a response may answer another request (http/exchanges.py marks the
exchange Pairing.UNCERTAIN), so no rule that judges answers builds on it. One
case per rule family, each a sequence that fires the rule when the pairing is
sure (test_rules_units.py) and must not when the decisive answer came after a
gap; the rule framework does it (Rule.__call__, RuleContext.steps), not each
rule. Rules that read requests only still report, and capture-incomplete says
what was not judged."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from _timelines import (
    HOST,
    OFFER_WINDOWS,
    Capture,
    b64,
    challenge_leg,
    kerberos_ap_req,
    ntlm_handshake,
    ntlm_legs,
)

from authtrace.tcp.events import Direction


def _negotiate_refused(capture: Capture, unsure: bool) -> None:  # ntlm
    conn = capture.conn()
    conn.exchange([], 401, OFFER_WINDOWS)
    conn.exchange([("Authorization", f"NTLM {b64(ntlm_legs().negotiate)}")], 401, OFFER_WINDOWS)
    if unsure:
        conn.unsure()


def _ticket_refused(capture: Capture, unsure: bool) -> None:  # kerberos
    conn = capture.conn()
    conn.exchange([], 401, OFFER_WINDOWS)
    conn.exchange([("Authorization", kerberos_ap_req())], 401, OFFER_WINDOWS)
    if unsure:
        conn.unsure()


def _scheme_not_offered(capture: Capture, unsure: bool) -> None:  # negotiation
    conn = capture.conn()
    conn.exchange([], 401, [("WWW-Authenticate", "Negotiate")])
    conn.exchange(
        [("Authorization", f"Basic {b64(b'alice:pw')}")], 401, [("WWW-Authenticate", "Negotiate")]
    )
    if unsure:
        conn.unsure()


def _basic_refused(capture: Capture, unsure: bool) -> None:  # credentials
    conn = capture.conn(port=443)
    conn.exchange([], 401, [("WWW-Authenticate", 'Basic realm="x"')])
    conn.exchange(
        [("Authorization", "Basic " + b64(b"CONTOSO\\alice:pw"))],
        401,
        [("WWW-Authenticate", 'Basic realm="x"')],
    )
    if unsure:
        conn.unsure()


def _closed_after_challenge(capture: Capture, unsure: bool) -> None:  # topology
    conn = capture.conn()
    conn.exchange([], 401, OFFER_WINDOWS)
    challenge_leg(conn, ntlm_legs(), response=[("Connection", "close")])
    if unsure:
        conn.unsure()
    conn.close(by=Direction.TO_CLIENT)


def _shared_connection(capture: Capture, unsure: bool) -> None:  # topology, timeline walk
    upstream = capture.conn(client="192.0.2.5")
    ntlm_handshake(upstream, ntlm_legs(), 200, extra=[("X-Forwarded-For", "198.51.100.1")])
    upstream.exchange([("X-Forwarded-For", "198.51.100.2")], 200)
    if unsure:
        upstream.unsure()


def _anonymous_refused_by_iis(capture: Capture, unsure: bool) -> None:  # iis
    conn = capture.conn()
    conn.exchange([], 401, [("Server", "Microsoft-IIS/10.0")], uri="/a")
    if unsure:
        conn.unsure()


CASES: dict[str, tuple[str, Callable[[Capture, bool], None]]] = {
    "ntlm": ("ntlm-negotiate-rejected", _negotiate_refused),
    "kerberos": ("kerberos-ticket-rejected", _ticket_refused),
    "negotiation": ("no-common-scheme", _scheme_not_offered),
    "credentials": ("basic-logon-failed", _basic_refused),
    "topology": ("handshake-closed-midway", _closed_after_challenge),
    "topology-walk": ("shared-authenticated-connection", _shared_connection),
    "iis": ("anonymous-logon-failed", _anonymous_refused_by_iis),
}


@pytest.mark.parametrize("family", CASES)
def test_no_rule_builds_on_an_uncertain_pairing(family: str) -> None:
    rule_id, build = CASES[family]
    sure = Capture()
    build(sure, False)
    assert rule_id in sure.rules()  # the sequence does fire the rule
    gap = Capture()
    build(gap, True)
    rules = gap.rules()
    assert rule_id not in rules
    # what was not judged is said, where the connection carried auth headers
    assert "capture-incomplete" in rules or family == "iis"


def test_capture_incomplete_says_the_pairing_was_not_judged() -> None:
    capture = Capture()
    _negotiate_refused(capture, True)
    (finding,) = [f for f in capture.findings() if f.rule == "capture-incomplete"]
    assert "pairing uncertain" in finding.explanation and "600 bytes" in finding.explanation
    assert finding.host == HOST


def test_a_rule_that_reads_requests_only_still_reports_after_a_gap() -> None:
    """The password went over the wire whatever the answer was."""
    capture = Capture()
    conn = capture.conn()
    conn.exchange([("Authorization", f"Basic {b64(b'alice:pw')}")], 401, [])
    conn.unsure()
    assert "basic-over-cleartext" in capture.rules()
