"""What IIS most likely wrote in its W3C log for one judged exchange.

This module owns the predicted triple (`sc-status sc-substatus
sc-win32-status`) of every 401 the handshake layer judges: one entry per
judgement (`Leg`), and the few wire facts that change it (a Kerberos clock
skew error, an anonymous or unbound NTLM AUTHENTICATE). The substatus is not
on the wire, so a prediction is only that: `certain=False` marks the ones
that vary between IIS builds or configurations.

Invariant: a response whose `Server` header names something other than IIS
(or http.sys) gets no prediction; its server writes no substatus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from authtrace.handshake.model import IisTriple, Leg
from authtrace.http.messages import HttpResponse

# Win32 and SSPI codes as IIS logs them (decimal in the log; see iis.codes).
_ACCESS_DENIED = 5
_LOGON_FAILURE = 1326
_SEC_E_INVALID_TOKEN = 0x80090308
_SEC_E_LOGON_DENIED = 0x8009030C
_SEC_E_NO_CREDENTIALS = 0x8009030E
_SEC_E_TIME_SKEW = 0x80090324
_SEC_E_BAD_BINDINGS = 0x80090346

# One prediction per judgement of a 401. The anonymous leg and the NTLM
# challenge leg are the two normal entries of every Windows-authentication
# handshake (401 2 5, then 401 1 2148074254).
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
    # The anonymous account could not log on (its password, rights or lockout).
    Leg.ANONYMOUS_REFUSED: IisTriple(401, 1, _LOGON_FAILURE, certain=False),
    # Refused behind authentication with no scheme offered: an ISAPI or CGI
    # application (a managed handler that sets no substatus logs 401 0 0).
    Leg.REFUSED_AFTER_LOGON: IisTriple(401, 5, 0, certain=False),
}
# A 401 the application set itself (no IIS substatus).
APPLICATION_OWN_TRIPLE: Final = IisTriple(401, 0, 0, certain=False)
# Refused after a completed logon, the final token still sent: the file ACL.
ACL_TRIPLE: Final = IisTriple(401, 3, _ACCESS_DENIED, certain=False)

CLOCK_SKEW_TRIPLE: Final = IisTriple(401, 1, _SEC_E_TIME_SKEW)
# An AUTHENTICATE the server cannot place in a context of its own: answered on
# a connection (or server) that never issued its CHALLENGE.
SPLIT_TRIPLE: Final = IisTriple(401, 1, _SEC_E_INVALID_TOKEN, certain=False)
# Extended Protection refusing an AUTHENTICATE not bound to the TLS channel.
BAD_BINDINGS_TRIPLE: Final = IisTriple(401, 1, _SEC_E_BAD_BINDINGS)
# An anonymous AUTHENTICATE gives an anonymous logon, which is then refused as
# if no credentials had been sent.
ANONYMOUS_TRIPLE: Final = IisTriple(401, 2, _ACCESS_DENIED, certain=False)


@dataclass(frozen=True, slots=True)
class WireFacts:
    """What the handshake layer read from the exchange beyond its judgement.

    clock_skew: the challenge carries KRB-ERROR KRB_AP_ERR_SKEW (RFC 4120 7.5.9);
    anonymous_authenticate: the NTLM AUTHENTICATE is anonymous (MS-NLMP 3.2.5.1.2);
    unbound_over_tls: an NTLMv2 AUTHENTICATE over TLS without a channel binding;
    completed: the 401 carries the server's final token (AP-REP, accept-completed);
    page_substatus: the 401.x an IIS error page names in the response body;
    other_scheme: the 401 asks for a scheme other than the credentials' one.
    """

    clock_skew: bool = False
    anonymous_authenticate: bool = False
    unbound_over_tls: bool = False
    completed: bool = False
    page_substatus: int | None = None
    other_scheme: bool = False


NO_FACTS: Final = WireFacts()


def looks_like_iis(response: HttpResponse) -> bool:
    """IIS (or http.sys) unless the Server header names something else."""
    server = response.header("Server")
    if server is None:
        return True
    server = server.lower()
    return "microsoft-iis" in server or "microsoft-httpapi" in server


def iis_triple(leg: Leg, status: int | None) -> IisTriple | None:
    """The triple IIS logs for a 401 judged as `leg` (None: not a 401, or
    nothing predictable)."""
    if status != 401:
        return None
    return IIS_TRIPLES.get(leg)


def predict(
    leg: Leg, response: HttpResponse | None, facts: WireFacts = NO_FACTS
) -> IisTriple | None:
    """The triple this response most likely produced in the IIS log; None when
    there is no response, or its server says it is not IIS."""
    if response is None or not looks_like_iis(response):
        return None
    if facts.clock_skew:
        return CLOCK_SKEW_TRIPLE
    if leg is Leg.NTLM_REJECTED and facts.anonymous_authenticate:
        return ANONYMOUS_TRIPLE
    if leg is Leg.NTLM_REJECTED and facts.unbound_over_tls:
        return BAD_BINDINGS_TRIPLE
    if leg is Leg.REFUSED_AFTER_LOGON and facts.completed and response.status == 401:
        return ACL_TRIPLE
    if leg is Leg.REFUSED_AFTER_LOGON and facts.other_scheme and response.status == 401:
        # The application asks for another scheme (a Bearer token): it set the
        # 401 itself, and IIS logs no substatus for it.
        return APPLICATION_OWN_TRIPLE
    triple = iis_triple(leg, response.status)
    page = facts.page_substatus
    if response.status == 401 and page is not None and (triple is None or triple.substatus != page):
        # The page says what IIS decided; only its sc-win32-status is a guess.
        return IisTriple(401, page, _PAGE_WIN32.get(page, 0), certain=False)
    return triple


# sc-win32-status most often logged with a substatus read from an error page
# (the ISAPI filter or application of 401.4 / 401.5 sets its own, if any).
_PAGE_WIN32: Final = {1: _LOGON_FAILURE, 2: _ACCESS_DENIED, 3: _ACCESS_DENIED}
