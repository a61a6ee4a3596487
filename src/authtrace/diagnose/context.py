"""What every rule reads: the judged handshakes, the KDC exchanges, and small
helpers that turn judged steps into evidence. Rules never parse bytes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from authtrace.auth.basic import BasicCredentials
from authtrace.auth.digest import DigestResponse
from authtrace.auth.kinds import Mechanism
from authtrace.auth.ntlm import NtlmAuthenticate
from authtrace.diagnose.finding import Finding, Severity
from authtrace.diagnose.rule import Rule
from authtrace.handshake.index import TimeIndex
from authtrace.handshake.links import HandshakeView, StepRef, host_of, request_time
from authtrace.handshake.model import AuthExchange, IisTriple, Realm, Sent
from authtrace.handshake.timeline import ConnectionTimeline
from authtrace.iis.category import Category, CategoryEvidence, LoggedLine, Source, decide
from authtrace.kerberos.kdc import KdcConnectAttempt, KdcExchange
from authtrace.kerberos.messages import KerberosApReq


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


@dataclass(frozen=True, slots=True)
class RuleContext:
    """What the rules read. The judged steps are listed once (every rule walks
    them) and the KDC exchanges are indexed by client and time, so that a rule's
    question "what did this client ask the KDC before" costs O(log m + k), not a
    scan of all m exchanges."""

    view: HandshakeView
    kdc: tuple[KdcExchange, ...]
    kdc_connects: tuple[KdcConnectAttempt, ...] = ()  # TCP connects to port 88
    # The IIS log line of each exchange the log recorded, by (connection id,
    # exchange index); empty without --iis-log.
    iis_log: Mapping[tuple[int, int], LoggedLine] = field(default_factory=dict)
    _located: tuple[Located, ...] = field(init=False, repr=False, compare=False)
    _kdc_times: TimeIndex[tuple[int, KdcExchange]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        located = tuple(
            Located(timeline, position, step)
            for timeline in self.view.timelines
            for position, step in enumerate(timeline.steps)
        )
        object.__setattr__(self, "_located", located)
        timed = [(n, k) for n, k in enumerate(self.kdc) if k.request_time is not None]
        entries = [(key, k.request_time, (n, k)) for n, k in timed for key in (None, k.client.ip)]
        object.__setattr__(self, "_kdc_times", TimeIndex(entries))  # type: ignore[arg-type]

    def steps(self, realm: Realm | None = None) -> Iterator[Located]:
        if realm is None:
            return iter(self._located)
        return (located for located in self._located if located.step.realm is realm)

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
        self, client_ip: str | None, before: float, window: float = 600.0
    ) -> list[KdcExchange]:
        """KDC exchanges the client (any client for None) made in the `window`
        seconds before `before` (or up to 5 s after: two capture points), in the
        order they were given."""
        found = self._kdc_times.between(client_ip, before - window, before + 5.0)
        return [exchange for _n, exchange in sorted(found, key=lambda item: item[0])]


def frames_of(steps: Iterable[AuthExchange]) -> list[int]:
    """The Wireshark frames that show these exchanges (request and response heads)."""
    frames: list[int] = []
    for step in steps:
        if step.exchange.request is not None:
            frames.append(step.exchange.request.shown_frame)
        if step.exchange.response is not None:
            frames.append(step.exchange.response.shown_frame)
    return frames


def make_finding(
    rule: Rule,
    title: str,
    explanation: str,
    fix: str,
    located: Iterable[Located],
    *,
    severity: Severity | None = None,
    extra_frames: Iterable[int] = (),
    fields: Iterable[tuple[str, str]] = (),
    iis: IisTriple | None = None,
    host: str | None = None,
) -> Finding:
    """A finding of `rule` whose host, connections and frames come from the steps
    that prove it; its severity is the rule's unless a lower one is given."""
    located = list(located)
    frames = sorted(set(frames_of(item.step for item in located)) | set(extra_frames))
    connections = sorted({item.timeline.connection.id for item in located})
    return Finding(
        rule=rule.id,
        severity=severity if severity is not None else rule.severity,
        title=title,
        explanation=explanation,
        fix=fix,
        host=host if host is not None else (located[0].host if located else None),
        connections=tuple(connections),
        frames=tuple(frames),
        fields=tuple(fields),
        iis=iis,
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
    where = ", ".join(x for x in (str(located.timeline.connection.server), product) if x)
    named = f"the proxy {name} ({where})" if name else f"the proxy at {where}"
    return f"T{named[1:]}" if capital else named


def request_frame(step: AuthExchange) -> int | str:
    """Frame showing the request head, or '?' when the request is not in the capture."""
    request = step.exchange.request
    return request.shown_frame if request is not None else "?"


def response_frame(step: AuthExchange) -> int | str:
    response = step.exchange.response
    return response.shown_frame if response is not None else "?"
