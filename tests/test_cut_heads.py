"""A head cut by the capture (snap length, netsh/pktmon packet truncation, a
gap, the end of the capture) is "not seen", never "not sent" (issue 14).

From the parser's flag (`rest_not_seen`) through the handshake table's
not-seen values (Sent.NOT_SEEN, Answer.NOT_SEEN, State.UNKNOWN) to the rules:
no finding that claims something was absent (no credentials, no challenge, no
scheme in common) cites a message whose head the capture cut, and the
capture-incomplete note says how many heads were cut. The scenario captures
are cut with editcap at several snap lengths, as an administrator's
`tcpdump -s 128` or `pktmon --pkt-size 128` would.
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from _timelines import OFFER_WINDOWS, Capture, b64, challenge_leg, ntlm_legs
from click.testing import CliRunner

from authtrace.cli import main
from authtrace.handshake.machine import transition
from authtrace.handshake.model import Answer, Leg, Outcome, Realm, Sent, State
from authtrace.handshake.timeline import classify_answer, classify_sent
from authtrace.http.messages import Exchange, GapMark, Header, HttpRequest, HttpResponse
from authtrace.http.parser import HttpParser, MessageComplete, Role
from authtrace.pipeline import analyze
from authtrace.tcp.events import Direction

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "captures" / "scenarios"
ETL_DIR = ROOT / "captures" / "etl"

# Findings whose claim is that something was absent from a message: no
# credentials, no challenge, no scheme the server offered.
ABSENCE_RULES = frozenset(
    {
        "refused-without-challenge",
        "anonymous-logon-failed",
        "client-ignores-negotiate",
        "no-common-scheme",
        "auth-lost-on-new-connection",
    }
)
SNAP_LENGTHS = (64, 96, 128, 200, 300)
CUT_SCENARIOS = (
    "ntlm-logon-failed.pcap",
    "client-ignores-negotiate.pcap",
    "no-common-scheme.pcap",
    "iis-401-2-body.pcap",
    "anonymous-logon-failed.pcap",
    "ntlm-negotiate-rejected-retry.pcap",
    "bearer-after-windows-auth.pcap",
    "healthy-ntlm.pcap",
    "healthy-kerberos.pcap",
    "kerberos-ticket-rejected.pcap",
    "kerberos-fallback-spn-unknown.pcap",
    "auth-lost-on-new-connection.pcap",
)


def _messages(events: list[object]) -> list[HttpRequest | HttpResponse]:
    return [e.message for e in events if isinstance(e, MessageComplete)]


# -- the parser's flag ---------------------------------------------------------


def test_a_head_cut_on_a_line_end_says_the_rest_was_not_seen() -> None:
    """The bug: a gap right after a whole header line left `head_cut` False, so
    the missing Authorization header looked absent."""
    parser = HttpParser(Role.REQUEST)
    events = parser.feed(b"GET /app/ HTTP/1.1\r\nHost: web01\r\n", 1, 1, 0.0)
    events += parser.gap(300, 2, 0.0)
    (request,) = _messages(events)
    assert request.headers == (Header("Host", "web01"),)
    assert request.head_cut and request.rest_not_seen and not request.complete
    assert request.cut_headers == ()


def test_a_head_cut_inside_a_line_keeps_its_name_and_says_the_rest_was_not_seen() -> None:
    parser = HttpParser(Role.RESPONSE)
    events = parser.feed(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Nego", 1, 1, 0.0)
    events += parser.gap(500, 2, 0.0)
    (response,) = _messages(events)
    assert response.status == 401 and response.rest_not_seen
    assert [c.name for c in response.cut_headers] == ["WWW-Authenticate"]
    assert not response.cut_headers[0].whole


def test_the_end_of_the_capture_inside_a_head_is_a_cut_too() -> None:
    parser = HttpParser(Role.REQUEST)
    events = parser.feed(b"GET / HTTP/1.1\r\nHost: web01\r\n", 1, 1, 0.0)
    events += parser.close(2, 0.0)
    (request,) = _messages(events)
    assert request.rest_not_seen and request.head_cut


def test_a_whole_head_is_not_cut_and_an_oversized_one_was_seen_to_its_end() -> None:
    parser = HttpParser(Role.REQUEST)
    events = parser.feed(b"GET / HTTP/1.1\r\nHost: web01\r\n\r\n", 1, 1, 0.0)
    (request,) = _messages(events)
    assert not request.head_cut and not request.rest_not_seen
    # Past the parser's limit the lines are seen (named in cut_headers) to the
    # head's end: kept or not, nothing was missed.
    big = b"GET / HTTP/1.1\r\nHost: web01\r\nX-Big: " + b"a" * 70_000 + b"\r\n"
    parser = HttpParser(Role.REQUEST)
    events = parser.feed(big + b"Authorization: NTLM TlRMTVNTUAABAAAA\r\n\r\n", 1, 1, 0.0)
    (request,) = _messages(events)
    assert request.head_cut and not request.rest_not_seen
    assert request.cut_header("Authorization") is not None
    # An oversized head that a gap ends: what came after the gap was not seen.
    parser = HttpParser(Role.REQUEST)
    events = parser.feed(big, 1, 1, 0.0) + parser.gap(100, 2, 0.0)
    (request,) = _messages(events)
    assert request.head_cut and request.rest_not_seen


# -- classification and the table ------------------------------------------------


def _request(headers: tuple[Header, ...], rest_not_seen: bool) -> HttpRequest:
    return HttpRequest("GET", "/", "HTTP/1.1", headers, 1, 1, 0.0, 40, rest_not_seen=rest_not_seen)


def _response(status: int, headers: tuple[Header, ...], rest_not_seen: bool) -> HttpResponse:
    return HttpResponse("HTTP/1.1", status, "", headers, 2, 2, 0.1, 40, rest_not_seen=rest_not_seen)


def test_missing_credentials_in_a_cut_head_are_not_seen_not_nothing() -> None:
    host = (Header("Host", "web01"),)
    assert classify_sent(None, _request(host, rest_not_seen=True)) is Sent.NOT_SEEN
    assert classify_sent(None, None) is Sent.NOT_SEEN  # the request was not captured
    assert classify_sent(None, _request(host, rest_not_seen=False)) is Sent.NOTHING


def test_a_401_whose_challenges_were_cut_is_not_seen_not_denied() -> None:
    def answer(headers: tuple[Header, ...], cut: bool) -> Answer:
        from authtrace.handshake.timeline import _challenges

        response = _response(401, headers, cut)
        exchange = Exchange(0, 0, _request((), False), response)
        return classify_answer(exchange, Realm.ORIGIN, _challenges(response, Realm.ORIGIN))

    assert answer((), cut=True) is Answer.NOT_SEEN
    assert answer((), cut=False) is Answer.DENIED
    offer = (Header("WWW-Authenticate", "Negotiate"),)
    # One challenge seen, the next may have been cut: what it offered is not known.
    assert answer(offer, cut=True) is Answer.NOT_SEEN
    assert answer(offer, cut=False) is Answer.OFFER
    challenge = (Header("WWW-Authenticate", f"NTLM {b64(ntlm_legs().challenge)}"),)
    assert answer(challenge, cut=True) is Answer.NTLM_CHALLENGE  # seen is seen


# Legs that conclude from what a request or response lacked, or from a
# handshake state built on every leg before.
_CONCLUSIONS = frozenset(
    {
        Leg.ANONYMOUS,
        Leg.ANONYMOUS_CHALLENGED,
        Leg.ANONYMOUS_REFUSED,
        Leg.REUSED,
        Leg.REAUTH_CHALLENGED,
        Leg.ABANDONED,
        Leg.NTLM_REJECTED,
        Leg.NTLM_OUT_OF_SEQUENCE,
        Leg.NTLM_OUT_OF_SEQUENCE_ACCEPTED,
        Leg.SCHEME_NOT_OFFERED,
        Leg.DENIED,
        Leg.REFUSED_AFTER_LOGON,
        Leg.HEADER_TOO_LARGE,
    }
)


@pytest.mark.parametrize(("state", "answer"), list(itertools.product(State, Answer)))
def test_credentials_not_seen_never_conclude(state: State, answer: Answer) -> None:
    leg, _next = transition(state, Sent.NOT_SEEN, answer)
    assert leg not in _CONCLUSIONS
    assert leg in (Leg.NOT_SEEN, Leg.NTLM_CHALLENGE, Leg.SPNEGO_CONTINUE, Leg.UNANSWERED)


@pytest.mark.parametrize(("state", "sent"), list(itertools.product(State, Sent)))
def test_a_challenge_not_seen_is_never_judged(state: State, sent: Sent) -> None:
    assert transition(state, sent, Answer.NOT_SEEN) == (Leg.NOT_SEEN, State.UNKNOWN)


@pytest.mark.parametrize("answer", list(Answer))
def test_after_a_cut_leg_state_dependent_legs_are_not_judged(answer: Answer) -> None:
    for sent in (Sent.NOTHING, Sent.NTLM_AUTHENTICATE):
        leg, _next = transition(State.UNKNOWN, sent, answer)
        # (a 400 for the headers' size, a final token in the 401: seen facts)
        seen = {Leg.ANONYMOUS, Leg.REFUSED_AFTER_LOGON, Leg.HEADER_TOO_LARGE}
        assert leg not in _CONCLUSIONS - seen, (sent, leg)
    # Legs that do not depend on the state are judged as anywhere.
    assert transition(State.UNKNOWN, Sent.NTLM_NEGOTIATE, Answer.NTLM_CHALLENGE) == (
        Leg.NTLM_CHALLENGE,
        State.NTLM_CHALLENGED,
    )
    assert transition(State.UNKNOWN, Sent.BASIC, Answer.OFFER)[0] is Leg.BASIC_REJECTED
    # A scheme the refusal does not name, after a cut leg: its CHALLENGE may be
    # in the cut, so the logon may have gone through.
    assert transition(
        State.UNKNOWN,
        Sent.NTLM_AUTHENTICATE,
        Answer.OFFER,
        scheme_offered=False,
        offered_before=True,
    ) == (Leg.AFTER_NOT_SEEN, State.UNKNOWN)


def test_a_challenge_to_a_request_not_seen_is_still_a_challenge_leg() -> None:
    # MS-NLMP 3.2.5.1.1: a CHALLENGE answers only a NEGOTIATE.
    assert transition(State.FRESH, Sent.NOT_SEEN, Answer.NTLM_CHALLENGE) == (
        Leg.NTLM_CHALLENGE,
        State.NTLM_CHALLENGED,
    )
    assert transition(State.FRESH, Sent.NOT_SEEN, Answer.OFFER) == (Leg.NOT_SEEN, State.OFFERED)


# -- rules over hand-made timelines -----------------------------------------------


def test_a_later_request_whose_head_was_cut_may_have_carried_credentials() -> None:
    capture = Capture()
    conn = capture.conn()
    conn.exchange([], 401, OFFER_WINDOWS)
    cut = conn.request([])
    conn.add(HttpRequest(**{**_fields(cut), "rest_not_seen": True}), None)
    context = capture.context()
    first = context.view.timelines[0].steps[0]
    assert first.leg is Leg.ANONYMOUS_CHALLENGED
    assert first.outcome is Outcome.INCOMPLETE  # not a failure: not seen
    assert "client-ignores-negotiate" not in capture.rules()
    # The same without the cut: the client did come back without credentials.
    capture = Capture()
    conn = capture.conn()
    conn.exchange([], 401, OFFER_WINDOWS)
    conn.exchange([], None)
    assert "client-ignores-negotiate" in capture.rules()


def _fields(message: HttpRequest) -> dict[str, object]:
    return {name: getattr(message, name) for name in HttpRequest.__dataclass_fields__}


def test_an_authenticate_that_names_another_challenge_is_not_a_failed_logon() -> None:
    """The ETL bug: after a lost buffer, bob's AUTHENTICATE answered a CHALLENGE
    the capture lost, yet followed alice's CHALLENGE on its connection."""
    from _timelines import BOB, HOST
    from scenario_tokens import NtlmFactory

    alice = ntlm_legs()
    bob = NtlmFactory(2, 1_700_000_100.0).handshake(BOB[0], BOB[1], HOST, "WS02")
    capture = _after_challenge(alice, bob.authenticate)
    step = capture.context().view.timelines[0].steps[-1]
    assert step.leg is Leg.NTLM_REJECTED and step.outcome is Outcome.INCOMPLETE
    assert "ntlm-logon-failed" not in capture.rules()
    # Its own CHALLENGE's answer: the logon failed.
    assert "ntlm-logon-failed" in _after_challenge(alice, alice.authenticate).rules()


def test_without_timestamps_a_gap_between_challenge_and_authenticate_leaves_it_unjudged() -> None:
    legs = ntlm_legs(lm_compat=1)  # NTLMv1: no MsvAvTimestamp to prove anything
    gapped = _after_challenge(legs, legs.authenticate, gap=True)
    assert "ntlm-logon-failed" not in gapped.rules()
    assert "ntlm-logon-failed" in _after_challenge(legs, legs.authenticate).rules()


def _after_challenge(legs: object, authenticate: bytes, gap: bool = False) -> Capture:
    """NEGOTIATE -> 401 CHALLENGE of `legs`, (a gap,) `authenticate` -> 401."""
    capture = Capture()
    conn = capture.conn()
    challenge_leg(conn, legs)  # type: ignore[arg-type]
    if gap:
        conn.gaps.append(GapMark(Direction.TO_SERVER, 700, capture.frame))
    conn.exchange([("Authorization", f"NTLM {b64(authenticate)}")], 401, OFFER_WINDOWS)
    return capture


# -- the scenario captures cut by editcap -----------------------------------------

needs_editcap = pytest.mark.skipif(shutil.which("editcap") is None, reason="editcap missing")


def _cut(tmp_path: Path, name: str, snap: int) -> Path:
    out = tmp_path / f"{snap}-{name}"
    subprocess.run(
        ["editcap", "-s", str(snap), str(SCENARIOS / name), str(out)],
        check=True,
        capture_output=True,
    )
    return out


def _absence_claims_on_cut_heads(report: object) -> list[tuple[str, int]]:
    """(rule, frame) of every absence finding citing a message whose head the
    capture cut."""
    cut: set[tuple[int, int]] = set()
    for timeline in report.view.timelines:  # type: ignore[attr-defined]
        for exchange in timeline.connection.exchanges:
            for message in (exchange.request, exchange.response):
                if message is not None and message.rest_not_seen:
                    cut.add((exchange.connection, message.shown_frame))
    return [
        (finding.rule, citation.frame)
        for finding in report.findings  # type: ignore[attr-defined]
        if finding.rule in ABSENCE_RULES
        for citation in finding.citations
        if (citation.connection, citation.frame) in cut
    ]


@needs_editcap
@pytest.mark.parametrize("snap", SNAP_LENGTHS)
@pytest.mark.parametrize("name", CUT_SCENARIOS)
def test_no_absence_is_concluded_from_a_cut_head(tmp_path: Path, name: str, snap: int) -> None:
    report = analyze([_cut(tmp_path, name, snap)])
    assert _absence_claims_on_cut_heads(report) == []
    whole = {f.rule for f in analyze([SCENARIOS / name]).findings}
    rules = {f.rule for f in report.findings}
    assert (rules & ABSENCE_RULES) <= whole, rules
    cut = sum(
        1
        for timeline in report.view.timelines
        for exchange in timeline.connection.exchanges
        for message in (exchange.request, exchange.response)
        if message is not None and message.rest_not_seen
    )
    # The notes (one per host, each connection's count) say how many were cut.
    notes = " ".join(f.explanation for f in report.findings if f.rule == "capture-incomplete")
    assert sum(int(n) for n in re.findall(r"the capture cut (\d+) message head", notes)) == cut


@needs_editcap
def test_ntlm_logon_failed_cut_at_128_bytes_refuses_nothing(tmp_path: Path) -> None:
    report = analyze([_cut(tmp_path, "ntlm-logon-failed.pcap", 128)])
    rules = {f.rule for f in report.findings}
    assert "refused-without-challenge" not in rules
    assert rules == {"capture-incomplete"}
    steps = [s for t in report.view.timelines for s in t.steps]
    assert [s.outcome for s in steps] == [Outcome.INCOMPLETE] * 3
    assert all(s.sent is Sent.NOT_SEEN and s.answer is Answer.NOT_SEEN for s in steps)
    # The summary does not say that nothing authenticated: nothing was seen.
    text = CliRunner().invoke(main, ["analyze", str(_cut(tmp_path, "ntlm-logon-failed.pcap", 128))])
    assert "authenticated with: nothing seen (legs the capture cut)" in text.output
    assert "refused-without-challenge" not in text.output
    if shutil.which("tshark") is not None:
        # The cut messages are cited where Wireshark shows them (as HTTP,
        # "[Packet size limited during capture]").
        shown = subprocess.run(
            ["tshark", "-r", str(_cut(tmp_path, "ntlm-logon-failed.pcap", 128)), "-Y", "http"]
            + ["-T", "fields", "-e", "frame.number"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        (note,) = report.findings
        assert note.frames and {str(frame) for frame in note.frames} <= set(shown)


@pytest.mark.parametrize(
    "name", ["ntlm-logon-failed-truncated.netsh.etl", "ntlm-logon-failed-truncated.pktmon.etl"]
)
def test_truncated_etw_packets_conclude_no_absence(name: str) -> None:
    report = analyze([ETL_DIR / name])
    assert _absence_claims_on_cut_heads(report) == []
    rules = {f.rule for f in report.findings}
    assert not rules & ABSENCE_RULES
    (note,) = [f for f in report.findings if f.rule == "capture-incomplete"]
    assert "the capture cut 6 message heads before their end" in note.explanation


def test_a_lost_buffer_does_not_make_a_failed_logon() -> None:
    """pooling-proxy-damaged.netsh.etl: the buffer lost holds the request of
    bob's CHALLENGE on connection 1; bob's AUTHENTICATE went out on
    connection 0 after alice's CHALLENGE there. Its MsvAvTimestamp names the
    CHALLENGE it answers: a split, never a wrong password."""
    report = analyze([ETL_DIR / "pooling-proxy-damaged.netsh.etl"])
    rules = [f.rule for f in report.findings]
    assert "ntlm-logon-failed" not in rules
    assert "repeated-logon-failures" not in rules
    splits = [f for f in report.findings if f.rule == "ntlm-handshake-split"]
    users = sorted(dict(f.fields).get("user", "") for f in splits)
    assert users == ["CONTOSO\\alice", "CONTOSO\\bob"]


@needs_editcap
def test_a_resync_right_after_the_missing_bytes_says_so_not_skipped_0(tmp_path: Path) -> None:
    # A head cut by the snap length is followed at once by the next message:
    # the anomaly says that messages may have been lost, not "skipped 0 bytes".
    report = analyze([_cut(tmp_path, "ntlm-logon-failed.pcap", 128)])
    resyncs = [a.message for a in report.anomalies if a.kind == "http-resync"]
    assert resyncs
    assert not [m for m in resyncs if m.startswith("skipped 0 bytes")]
    assert any("starts where the missing bytes end" in m for m in resyncs)


# -- Kerberos datagrams cut by the capture --------------------------------------


def _tshark_frames(capture: Path, display_filter: str) -> list[int]:
    out = subprocess.run(
        ["tshark", "-r", str(capture), "-Y", display_filter, "-T", "fields", "-e", "frame.number"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [int(line) for line in out.split()]


@needs_editcap
def test_a_kdc_reply_whose_request_was_cut_still_names_the_cause(tmp_path: Path) -> None:
    # At 700 bytes the TGS-REQ (1,723 bytes) is cut, its KRB-ERROR (140) is whole:
    # the reply alone proves what the KDC said, never "no Kerberos traffic".
    report = analyze([_cut(tmp_path, "kerberos-fallback-spn-unknown.pcap", 700)])
    (fallback,) = [f for f in report.findings if f.rule == "kerberos-fallback-to-ntlm"]
    assert "KDC_ERR_S_PRINCIPAL_UNKNOWN" in fallback.explanation
    assert "no Kerberos traffic" not in fallback.explanation
    assert fallback.field("kdc_error") == "KDC_ERR_S_PRINCIPAL_UNKNOWN (7)"


@needs_editcap
@pytest.mark.skipif(shutil.which("mergecap") is None, reason="mergecap missing")
def test_kdc_datagrams_cut_by_the_capture_are_not_seen_not_absent(tmp_path: Path) -> None:
    # Both KDC datagrams cut to 60 bytes, the HTTP frames whole.
    source = SCENARIOS / "kerberos-fallback-spn-unknown.pcap"
    kdc, http, out = tmp_path / "kdc.pcap", tmp_path / "http.pcap", tmp_path / "cut-kdc.pcap"
    for args in (
        ["editcap", "-r", "-s", "60", str(source), str(kdc), "1-2"],
        ["editcap", "-r", str(source), str(http), "3-9999"],
        ["mergecap", "-F", "pcap", "-w", str(out), str(kdc), str(http)],
    ):
        subprocess.run(args, check=True, capture_output=True)
    report = analyze([out])
    (fallback,) = [f for f in report.findings if f.rule == "kerberos-fallback-to-ntlm"]
    assert "no Kerberos traffic" not in fallback.explanation
    assert "is not seen" in fallback.explanation and "Capture again" in fallback.fix
    kdc_cited = sorted(c.frame for c in fallback.citations if c.role.value.startswith("kdc"))
    assert kdc_cited == [1, 2]
    if shutil.which("tshark"):
        # Wireshark shows a Kerberos message at each cited frame.
        assert set(kdc_cited) <= set(_tshark_frames(out, "kerberos"))
