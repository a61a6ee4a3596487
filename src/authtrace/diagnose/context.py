"""What every rule reads: the judged handshakes, the KDC exchanges, and small
helpers that turn judged steps into evidence. Rules never parse bytes.

Invariant: a rule names a frame only through `Words` (a typed `Citation`,
written as the report names frames), so every frame in a finding's words is
one of its citations, and the report never rewrites the words afterwards.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Callable, Iterable, Iterator, Mapping, Set
from dataclasses import dataclass, field

from authtrace.auth.basic import BasicCredentials
from authtrace.auth.digest import DigestResponse
from authtrace.auth.kinds import Mechanism, Message
from authtrace.auth.ntlm import NtlmAuthenticate
from authtrace.diagnose.finding import Citation, Finding, Role, Severity
from authtrace.diagnose.rule import Rule
from authtrace.handshake.index import TimeIndex
from authtrace.handshake.links import (
    KDC_CLOCK_SLACK,
    KDC_WINDOW,
    HandshakeView,
    StepRef,
    host_of,
    request_time,
)
from authtrace.handshake.model import AuthExchange, IisTriple, Realm, Sent
from authtrace.handshake.store import NearFirst
from authtrace.handshake.timeline import ConnectionTimeline
from authtrace.http.messages import GapMark, HttpConnection, Pairing
from authtrace.iis.category import Category, CategoryEvidence, LoggedLine, Source, decide
from authtrace.kerberos.kdc import KdcConnectAttempt, KdcExchange, KdcUnreadable
from authtrace.kerberos.messages import KerberosApReq
from authtrace.sharing import SharedTable


@dataclass(frozen=True, slots=True)
class Located:
    """A judged step with its connection and position, as rules iterate them."""

    timeline: ConnectionTimeline
    position: int
    step: AuthExchange

    @property
    def ref(self) -> StepRef:
        return StepRef(self.timeline.connection.id, self.position)

    @property
    def host(self) -> str:
        return host_of(self.step, self.timeline.connection)

    @property
    def client_ip(self) -> str:
        return self.timeline.connection.client.ip

    @property
    def time(self) -> float:
        return request_time(self.step)

    @property
    def server(self) -> str:
        """The connection's server as written ("10.0.0.5:80"), the same string
        for every step to that server: grouping rules key by it, and a string
        of its own for each connection of a capture-wide group adds up."""
        return _SERVERS.share(str(self.timeline.connection.server))


_SERVERS: SharedTable[str] = SharedTable()


def lasting_timelines(
    by_id: Mapping[int, ConnectionTimeline],
) -> Mapping[int, ConnectionTimeline]:
    """The timelines by id behind a view's `by_id` that outlive a block's
    context (HandshakeView.around: the store's, not the block's)."""
    return by_id.whole if isinstance(by_id, NearFirst) else by_id


@dataclass(frozen=True, slots=True)
class RuleContext:
    """What the rules read. The judged steps are listed once (every rule walks
    them) and the KDC exchanges are indexed by client and time, so that a rule's
    question "what did this client ask the KDC before" costs O(log m + k), not a
    scan of all m exchanges."""

    view: HandshakeView
    kdc: tuple[KdcExchange, ...]
    kdc_connects: tuple[KdcConnectAttempt, ...] = ()  # TCP connects to port 88
    # Datagrams to or from port 88 the capture cut: Kerberos traffic whose
    # message is not seen (never "no Kerberos traffic").
    kdc_unreadable: tuple[KdcUnreadable, ...] = ()
    # The IIS log line of each exchange the log recorded, by (connection id,
    # exchange index); empty without --iis-log.
    iis_log: Mapping[tuple[int, int], LoggedLine] = field(default_factory=dict)
    # How the report writes a frame number: "12", or "capture.pcap#12" when
    # the captures were analysed as separate streams (Report.frame_name).
    frame_name: Callable[[int], str] = str
    # True while a rule that judges answers runs (Rule.needs_pairing): steps()
    # then leaves out exchanges whose pairing a gap made uncertain.
    needs_pairing: bool = True
    # Built on first use (`steps`, `builds_on_uncertain_pairing`), never on
    # construction: a context whose rules only report over groups collected
    # block by block (diagnose.Diagnosis.capture) never walks its timelines.
    # [every step, the sure ones], once listed; shared with `judging`'s copies.
    _listed_steps: list[tuple[Located, ...]] = field(init=False, repr=False, compare=False)
    _unsure: dict[int, frozenset[int]] = field(init=False, repr=False, compare=False)
    _kdc_times: TimeIndex[tuple[int, KdcExchange]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_unsure", {})
        object.__setattr__(self, "_listed_steps", [])
        # A reply whose request was not captured is indexed at its own time.
        # One (order, exchange) pair an exchange, filed under two keys.
        timed = [((n, k), when) for n, k in enumerate(self.kdc) if (when := k.time) is not None]
        entries = [(key, when, pair) for pair, when in timed for key in (None, pair[1].client.ip)]
        object.__setattr__(self, "_kdc_times", TimeIndex(entries))  # type: ignore[arg-type]

    def words(self) -> Words:
        """A fresh set of citations for one finding's words."""
        return Words(self.frame_name)

    def judging(self, needs_pairing: bool) -> RuleContext:
        """This context as a rule sees it: one that judges answers
        (needs_pairing) never gets a step whose pairing is uncertain."""
        if needs_pairing is self.needs_pairing:
            return self
        other = copy.copy(self)
        object.__setattr__(other, "needs_pairing", needs_pairing)
        return other

    def around(self, block: Set[int]) -> RuleContext:
        """This context as one block's per-block rules read it: the view of the
        block and what it was linked with (HandshakeView.around), its own list
        of steps, and the same KDC index (built once for the stream, not once a
        block: O(m log m) in the KDC exchanges per stream). O(n) in `block`."""
        other = copy.copy(self)
        object.__setattr__(other, "view", self.view.around(block))
        object.__setattr__(other, "_listed_steps", [])
        object.__setattr__(other, "_unsure", {})
        return other

    def _listed(self) -> tuple[tuple[Located, ...], tuple[Located, ...]]:
        """Every judged step, and those whose pairing is sure: one walk of the
        view's timelines, on first use. O(steps)."""
        if not self._listed_steps:
            located = tuple(
                Located(timeline, position, step)
                for timeline in self.view.timelines
                for position, step in enumerate(timeline.steps)
            )
            sure = tuple(item for item in located if is_sure(item.step))
            self._listed_steps.extend((located, sure if len(sure) != len(located) else located))
        every, sure = self._listed_steps
        return every, sure

    def steps(self, realm: Realm | None = None) -> Iterator[Located]:
        """Every judged step in capture order; without those whose pairing is
        uncertain (a gap may have hidden messages: the response may answer
        another request, http/exchanges.py) while a rule that judges answers runs."""
        every, sure = self._listed()
        located = sure if self.needs_pairing else every
        if realm is None:
            return iter(located)
        return (item for item in located if item.step.realm is realm)

    def builds_on_uncertain_pairing(self, finding: Finding) -> bool:
        """The finding cites a request or response of an exchange whose pairing
        is uncertain: a rule that walked the timelines itself met one. Reads
        only the cited connections (by_id), each once. O(citations)."""
        return any(
            citation.frame in self._unsure_frames(citation.connection)
            for citation in finding.citations
            if citation.role in (Role.REQUEST, Role.RESPONSE) and citation.connection is not None
        )

    def _unsure_frames(self, connection: int) -> frozenset[int]:
        """The head frames of this connection's exchanges whose pairing is
        uncertain (none for a connection the view does not hold)."""
        known = self._unsure.get(connection)
        if known is None:
            timeline = self.view.by_id.get(connection)
            known = frozenset(
                message.shown_frame
                for exchange in (timeline.connection.exchanges if timeline is not None else ())
                if exchange.pairing is Pairing.UNCERTAIN
                for message in (exchange.request, exchange.response)
                if message is not None
            )
            self._unsure[connection] = known
        return known

    def locate(self, ref: StepRef) -> Located:
        timeline = self.view.by_id[ref.connection]
        return Located(timeline, ref.position, timeline.steps[ref.position])

    def relayed(self, located: Located) -> bool:
        return located.ref in self.view.relayed

    def category(self, located: Located) -> CategoryEvidence | None:
        """The IIS 401 category of this step from the strongest evidence there
        is (log line, error page, wire, sequence: `iis.category`)."""
        exchange = located.step.exchange
        return decide(located.step, self.iis_log.get((exchange.connection, exchange.index)))

    def overruled(self, located: Located) -> bool:
        """Evidence stronger than the sequence (a log line, an error page, a wire
        fact) puts this 401 in a category other than a failed user logon or the
        server's configuration (401.3, 401.4, 401.5, or 401.1 to a request
        without credentials): a rule that guessed from the sequence must leave
        it to the category rules (diagnose.rules.iis)."""
        evidence = self.category(located)
        if evidence is None or evidence.source is Source.SEQUENCE:
            return False
        if evidence.category is Category.LOGON_FAILED:
            # 401.1 to a request without credentials: the anonymous account.
            return located.step.sent is Sent.NOTHING
        return evidence.category is not Category.SERVER_CONFIGURATION

    def client_of(self, located: Located) -> str:
        """The client the step was made for: behind a proxy, the front-end client
        (handshake/attribution.py), else the connection's client address."""
        return self.view.client_of(located.ref)

    def kdc_from(
        self, client_ip: str | None, before: float, window: float = KDC_WINDOW
    ) -> list[KdcExchange]:
        """KDC exchanges the client (any client for None) made in the `window`
        seconds before `before` (or up to KDC_CLOCK_SLACK after: two capture
        points), in the order they were given."""
        found = self._kdc_times.between(client_ip, before - window, before + KDC_CLOCK_SLACK)
        return [exchange for _n, exchange in sorted(found, key=lambda item: item[0])]


def is_sure(step: AuthExchange) -> bool:
    """The step's response surely answers its request (not Pairing.UNCERTAIN)."""
    return step.exchange.pairing is not Pairing.UNCERTAIN


def _challenge_message(step: AuthExchange) -> str | None:
    """The authentication message a response carries: a token's kind before a
    bare offer (a 401 offering "Negotiate, NTLM" carries no message)."""
    messages = [c.message for c in step.challenges]
    for message in messages:
        if message is not Message.OFFER:
            return message.value
    return None


class Words:
    """The frames one finding names, as typed citations. Each method returns
    the Citation (which formats as the frame's name in an f-string) and
    remembers it for the finding; a step whose message the capture lacks is
    written "?" and cites nothing (not seen is not cited)."""

    def __init__(self, frame_name: Callable[[int], str] = str) -> None:
        self._name = frame_name
        self._cited: dict[tuple[int, Role], Citation] = {}

    @property
    def citations(self) -> tuple[Citation, ...]:
        return tuple(self._cited.values())

    def cite(
        self, frame: int, role: Role, connection: int | None, message: str | None, proves: str
    ) -> Citation:
        key = (frame, role)
        known = self._cited.get(key)
        if known is not None:
            return known
        citation = Citation(frame, self._name(frame), connection, role, message, proves)
        self._cited[key] = citation
        return citation

    def request(self, located: Located | AuthExchange, proves: str = "") -> Citation | str:
        step = located.step if isinstance(located, Located) else located
        request = step.exchange.request
        if request is None:
            return "?"
        credentials = step.credentials
        message = credentials.message.value if credentials is not None else None
        said = f"{credentials.header} {credentials.scheme}" if credentials else "no credentials"
        return self.cite(
            request.shown_frame,
            Role.REQUEST,
            step.exchange.connection,
            message,
            proves or f"{request.method} with {said}",
        )

    def response(self, located: Located | AuthExchange, proves: str = "") -> Citation | str:
        step = located.step if isinstance(located, Located) else located
        response = step.exchange.response
        if response is None:
            return "?"
        offered = ", ".join(c.scheme for c in step.challenges)
        return self.cite(
            response.shown_frame,
            Role.RESPONSE,
            step.exchange.connection,
            _challenge_message(step),
            proves or f"{response.status}" + (f" offering {offered}" if offered else ""),
        )

    def kdc_request(self, exchange: KdcExchange) -> Citation | str:
        if not exchange.request_frame:
            return "?"
        kind = exchange.request_type.value if exchange.request_type is not None else None
        return self.cite(
            exchange.request_frame,
            Role.KDC_REQUEST,
            exchange.connection,
            kind,
            f"{kind or 'request'} for {exchange.service or 'a service'}",
        )

    def kdc_reply(self, exchange: KdcExchange) -> Citation | str:
        if not exchange.reply_frame:
            return "?"
        answer = exchange.error_name or exchange.result.value
        return self.cite(
            exchange.reply_frame,
            Role.KDC_REPLY,
            exchange.connection,
            "KRB_ERROR" if exchange.error_code is not None else None,
            f"KDC answer: {answer}",
        )

    def kdc(self, exchange: KdcExchange) -> None:
        """Cite both frames of a KDC exchange (those the capture has)."""
        self.kdc_request(exchange)
        self.kdc_reply(exchange)

    def unreadable(self, datagram: KdcUnreadable) -> Citation:
        """A datagram to or from the KDC that the capture cut."""
        role = Role.KDC_REQUEST if datagram.to_kdc else Role.KDC_REPLY
        side = "to" if datagram.to_kdc else "from"
        return self.cite(
            datagram.frame, role, None, None, f"Kerberos datagram {side} {datagram.kdc}, cut"
        )

    def connect(self, attempt: KdcConnectAttempt) -> Citation:
        return self.cite(
            attempt.first_frame, Role.KDC_CONNECT, None, None, f"SYN to the KDC {attempt.kdc}"
        )

    def close(self, connection: HttpConnection) -> Citation | str:
        if not connection.close_frame:
            return "?"
        return self.cite(
            connection.close_frame,
            Role.CLOSE,
            connection.id,
            None,
            f"connection {connection.id} ended ({connection.close_reason.value})",
        )

    def gap(self, connection: HttpConnection, mark: GapMark) -> Citation:
        return self.cite(
            mark.frame, Role.GAP, connection.id, None, f"{mark.length} bytes not captured there"
        )

    def steps(self, steps: Iterable[Located | AuthExchange]) -> None:
        """Cite the request and response of each step (those the capture has)."""
        for step in steps:
            self.request(step)
            self.response(step)


def frames_of(steps: Iterable[AuthExchange]) -> list[int]:
    """The Wireshark frames that show these exchanges (request and response heads)."""
    words = Words()
    words.steps(steps)
    return sorted({citation.frame for citation in words.citations})


def make_finding(
    rule: Rule,
    title: str,
    explanation: str,
    fix: str,
    located: Iterable[Located],
    *,
    words: Words | None = None,
    severity: Severity | None = None,
    fields: Iterable[tuple[str, str]] = (),
    iis: IisTriple | None = None,
    host: str | None = None,
) -> Finding:
    """A finding of `rule` whose host, connections and citations come from the
    steps that prove it (their request and response heads) and from what its
    words named (`words`); its severity is the rule's unless a lower one is given."""
    located = list(located)
    cited = words if words is not None else Words()
    cited.steps(located)
    citations = cited.citations
    connections = sorted({item.timeline.connection.id for item in located})
    return Finding(
        rule=rule.id,
        severity=severity if severity is not None else rule.severity,
        title=title,
        explanation=explanation,
        fix=fix,
        host=host if host is not None else (located[0].host if located else None),
        connections=tuple(connections),
        frames=tuple(sorted({citation.frame for citation in citations})),
        fields=tuple(fields),
        iis=iis,
        citations=citations,
    )


def is_ip_literal(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.strip("[]")
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def user_of(step: AuthExchange) -> str | None:
    """DOMAIN\\user for NTLM, user for Basic/Digest, client principal if known."""
    credentials = step.credentials
    if credentials is None:
        return None
    inner = credentials.innermost
    if isinstance(inner, NtlmAuthenticate):
        user, domain = inner.user, inner.domain
    elif isinstance(inner, BasicCredentials):
        user, domain = inner.user, ""
    elif isinstance(inner, DigestResponse):
        user, domain = inner.username or "", ""
    else:
        return None
    if not user:
        return None
    return f"{domain}\\{user}" if domain else user


def spn_of(step: AuthExchange) -> str | None:
    """The service principal of the Kerberos ticket the client presented."""
    credentials = step.credentials
    if credentials is None or credentials.mechanism is not Mechanism.KERBEROS:
        return None
    inner = credentials.innermost
    if not isinstance(inner, KerberosApReq):
        return None
    return "/".join(inner.ticket.sname.components)


# Bounds on what is quoted from a proxy's headers (capture text is untrusted).
_NAME_LIMIT = 64


def is_proxy(located: Located) -> bool:
    """The step is a proxy's authentication (407, Proxy-Authenticate/-Authorization)."""
    return located.step.realm is Realm.PROXY


def party(located: Located, capital: bool = False) -> str:
    """Who asked for authentication, as explanations name it: "the server", or
    "the proxy proxy.lab.test (127.0.0.12:3128, squid/5.7)" from the connection's
    server address, the received-by name of the response's last Via entry (RFC
    9110 section 7.6.3: the proxy that answered adds its own last) and Server."""
    if not is_proxy(located):
        return "The server" if capital else "the server"
    response = located.step.exchange.response
    name = ""
    product = ""
    if response is not None:
        via = (response.header("Via") or "")[:1024].rsplit(",", 1)[-1].split()
        name = via[1][:_NAME_LIMIT] if len(via) >= 2 else ""
        product = (response.header("Server") or "")[:_NAME_LIMIT]
    where = ", ".join(x for x in (located.server, product) if x)
    named = f"the proxy {name} ({where})" if name else f"the proxy at {where}"
    return f"T{named[1:]}" if capital else named


def proxy_fields(located: Located) -> list[tuple[str, str]]:
    """[("proxy", its name, address and product)] for a proxy's step, else []."""
    if not is_proxy(located):
        return []
    return [("proxy", party(located).removeprefix("the proxy ").removeprefix("at "))]
