"""A proxy's 407 (Proxy-Authenticate / Proxy-Authorization) is the proxy's
refusal (issue 11 item 4, a): every rule family that judges a refusal, run on
the 407 variant of its scenario (test_rules_units.py has the 401 ones), names
the proxy by address and name, says "the proxy" and never "the server", gives a
proxy-side fix, records the proxy in its fields and predicts no IIS log line
(the web server was not asked)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from _timelines import ALICE, Capture, Conn, b64, kerberos_ap_req, ntlm_legs

PROXY = "192.0.2.3"
NAMED = "the proxy proxy.lab.test (192.0.2.3:"
SQUID = [("Via", "1.1 proxy.lab.test (squid/5.7)"), ("Server", "squid/5.7")]
WRONG = ("CONTOSO\\alice", "not-her-password")


def _offer(*schemes: str) -> list[tuple[str, str]]:
    return [("Proxy-Authenticate", scheme) for scheme in schemes] + SQUID


def _proxy(capture: Capture, port: int = 3128) -> Conn:
    conn = capture.conn(server=PROXY, port=port)
    conn.exchange([], 407, _offer("Negotiate", "NTLM"))
    return conn


def _ntlm_refused(capture: Capture, port: int = 3128, user: tuple[str, str] = WRONG) -> None:
    """A whole NTLM handshake with the proxy, its AUTHENTICATE refused (407)."""
    conn = _proxy(capture, port)
    legs = ntlm_legs(user)
    conn.exchange(
        [("Proxy-Authorization", f"NTLM {b64(legs.negotiate)}")],
        407,
        [("Proxy-Authenticate", f"NTLM {b64(legs.challenge)}"), *SQUID],
    )
    conn.exchange([("Proxy-Authorization", f"NTLM {b64(legs.authenticate)}")], 407, _offer("NTLM"))


def _ntlm_negotiate_rejected(capture: Capture) -> None:
    conn = _proxy(capture)
    conn.exchange(
        [("Proxy-Authorization", f"NTLM {b64(ntlm_legs().negotiate)}")],
        407,
        _offer("Negotiate", "NTLM"),
    )


def _kerberos_ticket_rejected(capture: Capture) -> None:
    conn = _proxy(capture)
    ticket = kerberos_ap_req().removeprefix("Negotiate ")
    conn.exchange([("Proxy-Authorization", f"Negotiate {ticket}")], 407, _offer("Negotiate"))


def _no_common_scheme(capture: Capture) -> None:
    conn = capture.conn(server=PROXY, port=3128)
    conn.exchange([], 407, _offer("Negotiate"))
    conn.exchange([("Proxy-Authorization", f"Basic {b64(b'alice:pw')}")], 407, _offer("Negotiate"))


def _client_ignores_negotiate(capture: Capture) -> None:
    conn = _proxy(capture)
    conn.exchange([], 407, _offer("Negotiate", "NTLM"))


def _basic_logon_failed(capture: Capture) -> None:
    conn = capture.conn(server=PROXY, port=3128)
    conn.exchange([], 407, _offer('Basic realm="proxy"'))
    conn.exchange(
        [("Proxy-Authorization", f"Basic {b64(b'alice:wrong')}")], 407, _offer('Basic realm="p"')
    )


CASES: dict[str, Callable[[Capture], None]] = {
    "ntlm-logon-failed": _ntlm_refused,
    "ntlm-negotiate-rejected": _ntlm_negotiate_rejected,
    # over TLS (port 443) and no channel binding: refused for that, not the password
    "channel-binding-missing": lambda capture: _ntlm_refused(capture, 443, ALICE),
    "kerberos-ticket-rejected": _kerberos_ticket_rejected,
    "no-common-scheme": _no_common_scheme,
    "client-ignores-negotiate": _client_ignores_negotiate,
    "basic-logon-failed": _basic_logon_failed,
}


@pytest.mark.parametrize("rule_id", CASES)
def test_a_finding_on_a_407_names_the_proxy_and_gives_proxy_fixes(rule_id: str) -> None:
    capture = Capture()
    CASES[rule_id](capture)
    found = [f for f in capture.findings() if f.rule == rule_id]
    assert len(found) == 1, [f.rule for f in capture.findings()]
    finding = found[0]
    words = f"{finding.title}. {finding.explanation}"
    assert NAMED in words.replace("The proxy", "the proxy")
    assert "the server" not in words.lower()
    assert "proxy" in finding.fix.lower()
    assert not any(hint in finding.fix for hint in ("IIS logs", "app-pool", "useAppPool"))
    assert (finding.field("proxy") or "").startswith("proxy.lab.test (192.0.2.3:")
    assert finding.iis is None
