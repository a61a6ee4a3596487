"""Which of the IIS 401 categories a refused request belongs to, and the
evidence that decided it.

The troubleshooting guide sorts every IIS 401 into fixed categories (401.1
logon failed, 401.2 server configuration, 401.3 resource ACL, 401.4 filter,
401.5 ISAPI/CGI application), each with its own causes and fixes
(`iis.codes`). The substatus is not on the wire, so this module weighs what
is known, strongest first, and says which evidence it used:

1. the IIS log line of that response (`--iis-log`, its `sc-substatus`);
2. the substatus an IIS error page names ("HTTP Error 401.3");
3. wire facts: a 401 carrying a Kerberos AP-REP / SPNEGO accept-completed
   proves authentication succeeded; a 401 naming no scheme after credentials
   comes from something behind authentication; a 401 naming no scheme to an
   anonymous request leaves the client nothing to answer;
4. only then the sequence on the connection (the handshake layer's judgement
   and its predicted triple).

Invariant: stronger evidence always wins, and a response from a server that
says it is not IIS gets no category at all (its server has no substatus).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from authtrace.handshake.model import Answer, AuthExchange, IisTriple, Leg
from authtrace.iis.predict import looks_like_iis


class Category(enum.Enum):
    """An IIS 401 substatus, as the guide names it."""

    LOGON_FAILED = 1
    SERVER_CONFIGURATION = 2
    RESOURCE_ACL = 3
    FILTER = 4
    APPLICATION = 5

    @property
    def code(self) -> str:
        return f"401.{self.value}"


class Source(enum.Enum):
    """Where a category came from, strongest first."""

    IIS_LOG = "iis-log"
    ERROR_PAGE = "error-page"
    WIRE = "wire"
    SEQUENCE = "sequence"

    @property
    def rank(self) -> int:
        return list(Source).index(self)


@dataclass(frozen=True, slots=True)
class LoggedLine:
    """The IIS log line of one response: its triple and where it was read."""

    triple: IisTriple
    source: str
    line: int


@dataclass(frozen=True, slots=True)
class CategoryEvidence:
    """The category of one 401 and the evidence that decided it.

    category: None when the deciding evidence names a substatus outside
    401.1-401.5 (401.0: the application set no substatus); substatus keeps the
    number as read; detail says, in words, what the evidence was; triple: the
    log line's triple when the log decided, else the predicted one.
    """

    category: Category | None
    substatus: int
    source: Source
    detail: str
    triple: IisTriple | None

    @property
    def code(self) -> str:
        return f"401.{self.substatus}"


def _category(substatus: int) -> Category | None:
    try:
        return Category(substatus)
    except ValueError:
        return None


def _page_substatus(step: AuthExchange) -> int | None:
    page = step.iis_from_body
    if page is None or not page.startswith("401."):
        return None
    try:
        return int(page.split(".", 1)[1])
    except ValueError:
        return None


def completes_authentication(step: AuthExchange) -> bool:
    """The 401 carries a token that completes the client's authentication (a
    Kerberos AP-REP, SPNEGO accept-completed: RFC 4178 4.2.2, RFC 4559 5)."""
    return step.answer is Answer.COMPLETED


# The categories of a request refused behind a logon that succeeded.
BEHIND_LOGON = frozenset({Category.RESOURCE_ACL, Category.FILTER, Category.APPLICATION})


def logon_succeeded_behind(step: AuthExchange, logged: LoggedLine | None = None) -> bool:
    """Whether this 401 answers credentials the server accepted: evidence
    stronger than the sequence (the log line, the error page, a wire fact)
    puts it in 401.3, 401.4 or 401.5, where the logon succeeded and the
    request was refused behind it. The sequence alone never says so (it only
    guesses from the handshake), so an NTLM AUTHENTICATE answered by a 401 is
    a failed logon unless such evidence says otherwise."""
    if step.credentials is None:
        return False
    evidence = decide(step, logged)
    return (
        evidence is not None
        and evidence.source is not Source.SEQUENCE
        and evidence.category in BEHIND_LOGON
    )


def decide(step: AuthExchange, logged: LoggedLine | None = None) -> CategoryEvidence | None:
    """The IIS category of this 401 from the strongest evidence there is; None
    for anything that is not a 401 of an IIS server (or a 401 nothing says
    anything about)."""
    response = step.exchange.response
    if response is None or response.status != 401 or not looks_like_iis(response):
        return None
    frame = response.shown_frame
    if logged is not None and logged.triple.status == 401:
        return CategoryEvidence(
            _category(logged.triple.substatus),
            logged.triple.substatus,
            Source.IIS_LOG,
            f"the IIS log line {logged.source}:{logged.line} says {logged.triple} for the 401 "
            f"at frame {frame}",
            logged.triple,
        )
    page = _page_substatus(step)
    if page is not None:
        return CategoryEvidence(
            _category(page),
            page,
            Source.ERROR_PAGE,
            f"the error page of the 401 at frame {frame} says HTTP Error 401.{page}",
            step.iis,
        )
    if step.leg is Leg.REFUSED_AFTER_LOGON and completes_authentication(step):
        return CategoryEvidence(
            Category.RESOURCE_ACL,
            3,
            Source.WIRE,
            f"the 401 at frame {frame} carries the server's final authentication token "
            "(accept-completed): authentication succeeded, and a refusal after a logon is "
            "most often the file ACL (a filter or an application answers the same way)",
            step.iis,
        )
    if step.leg is Leg.REFUSED_AFTER_LOGON and step.answer is Answer.OFFER:
        # The 401 asks for another scheme after the logon (a Bearer token):
        # the application's own demand, none of IIS's categories.
        return None
    if step.leg is Leg.REFUSED_AFTER_LOGON:
        return CategoryEvidence(
            Category.APPLICATION,
            5,
            Source.WIRE,
            f"the 401 at frame {frame} names no authentication scheme after credentials: IIS "
            "authentication always offers its schemes again when it refuses a logon, so this "
            "401 came from behind it (an application or a filter)",
            step.iis,
        )
    if step.leg is Leg.ANONYMOUS_REFUSED:
        return CategoryEvidence(
            Category.LOGON_FAILED,
            1,
            Source.WIRE,
            f"the 401 at frame {frame} answers a request without credentials and offers no "
            "scheme: there is nothing the client could answer it with",
            step.iis,
        )
    if step.iis is not None and step.iis.status == 401:
        return CategoryEvidence(
            _category(step.iis.substatus),
            step.iis.substatus,
            Source.SEQUENCE,
            f"the sequence on the connection: IIS most likely logged {step.iis} for the 401 at "
            f"frame {frame}",
            step.iis,
        )
    return None
