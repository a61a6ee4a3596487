"""Per-host authentication profiles: what one capture shows about how clients
authenticated to each server, reduced to values that can be compared with
another capture's.

This module owns turning a finished `Report` into `HostProfile` values. It
aligns by the server as the client named it (`host_of`: the Host header) and
by URL path, never by address or port: the two captures of a comparison may
come from different machines (client side and server side), behind different
NAT or proxies. Invariant: a profile holds only what the capture shows; an
aspect the capture cannot see (no Kerberos traffic at all, no NTLM
AUTHENTICATE) is `None` or empty, never a guessed default.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from authtrace.auth.kinds import Mechanism, Message
from authtrace.auth.ntlm import NtlmAuthenticate, NtlmResponseKind
from authtrace.auth.steps import AuthStep
from authtrace.diagnose.context import spn_of
from authtrace.handshake.links import StepRef, host_of
from authtrace.handshake.model import AuthExchange, Realm
from authtrace.handshake.timeline import ConnectionTimeline
from authtrace.kerberos.kdc import KdcExchange, KdcResult
from authtrace.report.model import Report

# The Authorization header sizes that matter: http.sys refuses a request whose
# headers pass MaxRequestBytes (16 KiB by default) with 400 "Request Header too
# long"; a Kerberos token of a user in many groups grows towards it (MS KB
# 2020943). Sizes are compared by band, not byte for byte: an NTLM token and a
# Kerberos token always differ in length without it mattering.
HEADER_SIZE_BANDS = (8 * 1024, 16 * 1024)
# Evidence kept per aspect and side: enough to find the place in Wireshark.
MAX_FRAMES = 12
# Distinct values kept per aspect (hostile captures may carry many Via headers).
MAX_VALUES = 16

_SCHEME_NAMES = {
    "negotiate": "Negotiate",
    "ntlm": "NTLM",
    "kerberos": "Kerberos",
    "basic": "Basic",
    "digest": "Digest",
    "bearer": "Bearer",
}
_MECHANISM_NAMES = {
    Mechanism.NTLM: "NTLM",
    Mechanism.KERBEROS: "Kerberos",
    Mechanism.NEGOEX: "NEGOEX",
    Mechanism.BASIC: "Basic",
    Mechanism.DIGEST: "Digest",
    Mechanism.BEARER: "Bearer",
}
# SPNEGO continuation tokens name no mechanism of their own: the leg before
# them already said which one was chosen.
_UNTOLD = frozenset({Mechanism.SPNEGO, Mechanism.UNKNOWN, Mechanism.NONE})


class KdcAnswer:
    """Labels of what the KDC said about `HTTP/<host>` (values of `HostProfile.kdc`)."""

    TICKET = "ticket"
    UNANSWERED = "unanswered"
    NO_REQUEST = "no request"  # Kerberos traffic in the capture, none for this SPN
    UNREACHABLE = "KDC unreachable"  # SYNs to port 88 unanswered, no request sent


@dataclass(frozen=True, slots=True)
class HostProfile:
    """How authentication to one server host unfolded in one capture.

    host: the server as the client named it (Host header, lower case, default
        port dropped). connections: TCP connections that carried its requests.
    schemes_offered: challenge schemes as the server or proxy wrote them
        ("proxy Basic" for a 407's), in first-seen order.
    mechanisms: what the client's credentials really carried, decoded
        ("Kerberos in Negotiate", "NTLM in Negotiate", "NTLM", "Basic"...).
    authenticated_with: the mechanisms of the legs the server accepted.
    spn: the principal a Kerberos client asks for, `HTTP/<host>`.
    kdc: the KDC's answers for that SPN in order ("ticket",
        "KDC_ERR_S_PRINCIPAL_UNKNOWN (7)", "unanswered", "no request",
        "KDC unreachable"); None when the capture holds no Kerberos traffic at
        all (a capture taken on the server cannot see the client's KDC).
    ticket_spns: services named by the tickets inside the AP-REQs sent here.
    handshakes: authentication handshakes seen (credentials after a challenge,
        or pre-emptive ones); splits: NTLM handshakes whose AUTHENTICATE went
        on another connection than its CHALLENGE; split_by_proxy: any split
        whose legs came from different client addresses or carried Via.
    closing_refusals: 401/407 responses that closed the connection (Connection:
        close, HTTP/1.0 without keep-alive): connection-based NTLM and Negotiate
        cannot finish a handshake across them.
    via / forwarded_for / proxy_challenges: proxies in the path.
    http_versions: versions of the requests and responses.
    largest_credentials: the longest Authorization / Proxy-Authorization
        header line, in bytes (name, ": " and value); 0 when none was sent.
    channel_bindings: for NTLMv2 AUTHENTICATEs, "present", "absent" or
        "all-zero" (MS-NLMP 2.2.2.1 MsvAvChannelBindings).
    ntlm_responses: the NT response kinds of NTLM AUTHENTICATEs ("NTLMv2",
        "NTLMv1", "anonymous").
    final_status: per URL path, the status of the last response.
    rules: rule ids of the findings about this host.
    evidence: frames per aspect id, as (aspect, frames) pairs.
    """

    host: str
    connections: int
    schemes_offered: tuple[str, ...]
    mechanisms: tuple[str, ...]
    authenticated_with: tuple[str, ...]
    spn: str
    kdc: tuple[str, ...] | None
    ticket_spns: tuple[str, ...]
    handshakes: int
    splits: int
    split_by_proxy: bool
    closing_refusals: int
    via: tuple[str, ...]
    forwarded_for: bool
    proxy_challenges: int
    http_versions: tuple[str, ...]
    largest_credentials: int
    channel_bindings: tuple[str, ...]
    ntlm_responses: tuple[str, ...]
    final_status: tuple[tuple[str, int], ...]
    rules: frozenset[str]
    evidence: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def frames(self, aspect: str) -> tuple[int, ...]:
        for name, frames in self.evidence:
            if name == aspect:
                return frames
        return ()

    @property
    def last_status(self) -> int | None:
        return self.final_status[-1][1] if self.final_status else None

    @property
    def involves_auth(self) -> bool:
        """Whether anything about authentication happened with this host."""
        return bool(self.schemes_offered or self.mechanisms or self.rules)


@dataclass(slots=True)
class _Builder:
    """Collects one host's observations while the report is walked once."""

    host: str
    connections: set[int] = field(default_factory=set)
    offered: list[str] = field(default_factory=list)
    mechanisms: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    ticket_spns: list[str] = field(default_factory=list)
    handshakes: int = 0
    splits: int = 0
    split_by_proxy: bool = False
    closing: int = 0
    via: list[str] = field(default_factory=list)
    forwarded_for: bool = False
    proxy_challenges: int = 0
    versions: list[str] = field(default_factory=list)
    largest: int = 0
    bindings: list[str] = field(default_factory=list)
    responses: list[str] = field(default_factory=list)
    final: dict[str, tuple[float, int, int]] = field(default_factory=dict)  # time, status, frame
    evidence: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    def note(self, aspect: str, *frames: int) -> None:
        kept = self.evidence[aspect]
        for frame in frames:
            if frame and frame not in kept and len(kept) < MAX_FRAMES:
                kept.append(frame)


def profile_hosts(report: Report) -> dict[str, HostProfile]:
    """One profile per server host in the report, keyed by host."""
    builders: dict[str, _Builder] = {}
    for timeline in report.view.timelines:
        for position, step in enumerate(timeline.steps):
            host = host_of(step, timeline.connection)
            builder = builders.get(host)
            if builder is None:
                builder = builders[host] = _Builder(host)
            _observe(builder, timeline, position, step)
    for split in report.view.splits:
        _observe_split(builders, report, split.challenge, split.authenticate, split.same_client)
    kerberos_seen = bool(report.kdc or report.kdc_connects)
    rules: dict[str, set[str]] = defaultdict(set)
    for finding in report.findings:
        if finding.host:
            rules[finding.host.lower()].add(finding.rule)
    profiles = {}
    for host, builder in sorted(builders.items()):
        profiles[host] = _finish(builder, report, kerberos_seen, frozenset(rules.get(host, ())))
    return profiles


def _observe(
    builder: _Builder, timeline: ConnectionTimeline, position: int, step: AuthExchange
) -> None:
    builder.connections.add(timeline.connection.id)
    request, response = step.exchange.request, step.exchange.response
    request_frame = request.shown_frame if request is not None else 0
    response_frame = response.shown_frame if response is not None else 0
    proxy = step.realm is Realm.PROXY
    for challenge in step.challenges:
        name = _scheme_name(challenge.scheme, proxy)
        if name and name not in builder.offered and len(builder.offered) < MAX_VALUES:
            builder.offered.append(name)
            builder.note("schemes-offered", response_frame)
    if proxy and step.is_auth_failure_status:
        builder.proxy_challenges += 1
        builder.note("proxy", response_frame)
    credentials = step.credentials
    if credentials is not None:
        _observe_credentials(builder, step, credentials, proxy, request_frame, response_frame)
    status = response.status if response is not None else None
    if step.realm is not Realm.ORIGIN and status != 407:
        return  # headers, versions and statuses once per exchange (a 407 has no origin view)
    if request is not None:
        for via in request.header_all("Via"):
            value = via.strip()
            if value not in builder.via and len(builder.via) < MAX_VALUES:
                builder.via.append(value)
            builder.note("proxy", request_frame)
        if request.header("X-Forwarded-For") is not None:
            builder.forwarded_for = True
            builder.note("proxy", request_frame)
        _add_version(builder, request.version, request_frame)
    if response is not None:
        _add_version(builder, response.version, response_frame)
        if step.is_auth_failure_status and _closes(step):
            builder.closing += 1
            builder.note("keep-alive", response_frame)
    if request is not None and response is not None:
        path = url_path(request.uri)
        builder.final[path] = (response.timestamp, response.status, response_frame)


def _observe_credentials(
    builder: _Builder,
    step: AuthExchange,
    credentials: AuthStep,
    proxy: bool,
    request_frame: int,
    response_frame: int,
) -> None:
    label = mechanism_label(credentials, proxy)
    if label is not None:
        if label not in builder.mechanisms and len(builder.mechanisms) < MAX_VALUES:
            builder.mechanisms.append(label)
        builder.note("mechanism", request_frame)
        if step.status is not None and not step.is_auth_failure_status and step.status < 400:
            if label not in builder.accepted and len(builder.accepted) < MAX_VALUES:
                builder.accepted.append(label)
    # A handshake starts with the first credentials a client sends (NEGOTIATE,
    # AP-REQ, Basic...); an AUTHENTICATE or a SPNEGO continuation goes on one.
    if credentials.message not in (Message.NTLM_AUTHENTICATE, Message.NEG_TOKEN_RESP):
        builder.handshakes += 1
    spn = spn_of(step)
    if spn and spn not in builder.ticket_spns and len(builder.ticket_spns) < MAX_VALUES:
        builder.ticket_spns.append(spn)
        builder.note("spn", request_frame)
    request = step.exchange.request
    if request is not None:
        for name in ("Authorization", "Proxy-Authorization"):
            for value in request.header_all(name):
                size = len(name) + 2 + len(value)
                if size > builder.largest:
                    builder.largest = size
                    builder.evidence["header-size"] = [request_frame]
    message = _ntlm_message(credentials)
    kind = message.response_kind if message is not None else None
    if isinstance(kind, NtlmResponseKind):
        if kind.value not in builder.responses:
            builder.responses.append(kind.value)
        builder.note("ntlmv1", request_frame)
        ntlmv2 = message.ntlmv2 if message is not None else None
        if ntlmv2 is not None:
            binding = (
                "absent"
                if not ntlmv2.channel_bindings_present
                else "all-zero"
                if ntlmv2.channel_bindings_all_zero
                else "present"
            )
            if binding not in builder.bindings:
                builder.bindings.append(binding)
            builder.note("channel-binding", request_frame, response_frame)


def _observe_split(
    builders: dict[str, _Builder],
    report: Report,
    challenge: StepRef,
    authenticate: StepRef,
    same_client: bool,
) -> None:
    timeline = report.view.by_id.get(authenticate.connection)
    if timeline is None or authenticate.position >= len(timeline.steps):
        return
    step = timeline.steps[authenticate.position]
    builder = builders.get(host_of(step, timeline.connection))
    if builder is None:
        return
    builder.splits += 1
    request = step.exchange.request
    via = request is not None and request.header("Via") is not None
    if not same_client or via:
        builder.split_by_proxy = True
    frames = [request.shown_frame] if request is not None else []
    other = report.view.by_id.get(challenge.connection)
    if other is not None and challenge.position < len(other.steps):
        response = other.steps[challenge.position].exchange.response
        if response is not None:
            frames.insert(0, response.shown_frame)
    builder.note("connections-per-handshake", *frames)


def _finish(
    builder: _Builder, report: Report, kerberos_seen: bool, rules: frozenset[str]
) -> HostProfile:
    spn = f"HTTP/{bare_host(builder.host)}"
    kdc, kdc_frames = _kdc_answers(report, spn, kerberos_seen)
    builder.note("kdc-answer", *kdc_frames)
    last = sorted(builder.final.items(), key=_by_time)
    final = tuple((path, status) for path, (_at, status, _frame) in last)
    builder.note("final-status", *(frame for _path, (_at, _status, frame) in last))
    return HostProfile(
        host=builder.host,
        connections=len(builder.connections),
        schemes_offered=tuple(builder.offered),
        mechanisms=tuple(builder.mechanisms),
        authenticated_with=tuple(builder.accepted),
        spn=spn,
        kdc=kdc,
        ticket_spns=tuple(builder.ticket_spns),
        handshakes=builder.handshakes,
        splits=builder.splits,
        split_by_proxy=builder.split_by_proxy,
        closing_refusals=builder.closing,
        via=tuple(builder.via),
        forwarded_for=builder.forwarded_for,
        proxy_challenges=builder.proxy_challenges,
        http_versions=tuple(sorted(builder.versions)),
        largest_credentials=builder.largest,
        channel_bindings=tuple(sorted(builder.bindings)),
        ntlm_responses=tuple(sorted(builder.responses)),
        final_status=final,
        rules=rules,
        evidence=tuple(
            (aspect, tuple(sorted(frames))) for aspect, frames in builder.evidence.items() if frames
        ),
    )


def _by_time(item: tuple[str, tuple[float, int, int]]) -> tuple[float, str]:
    return item[1][0], item[0]


def _kdc_answers(
    report: Report, spn: str, kerberos_seen: bool
) -> tuple[tuple[str, ...] | None, list[int]]:
    """The KDC's answers to ticket requests for `spn`, in order, deduplicated."""
    if not kerberos_seen:
        return None, []
    answers: list[str] = []
    frames: list[int] = []
    for exchange in report.kdc:
        if not exchange.serves(spn):
            continue
        answer = kdc_answer_label(exchange)
        if answer not in answers:
            answers.append(answer)
        frames.extend(f for f in (exchange.request_frame, exchange.reply_frame) if f)
    if answers:
        return tuple(answers), frames
    unreachable = [c for c in report.kdc_connects if not c.answered]
    if unreachable:
        return (KdcAnswer.UNREACHABLE,), [c.first_frame for c in unreachable]
    return (KdcAnswer.NO_REQUEST,), []


def kdc_answer_label(exchange: KdcExchange) -> str:
    if exchange.result is KdcResult.TICKET:
        return KdcAnswer.TICKET
    if exchange.result is KdcResult.UNANSWERED:
        return KdcAnswer.UNANSWERED
    name = exchange.error_name or "KRB-ERROR"
    return f"{name} ({exchange.error_code})" if exchange.error_code is not None else name


def mechanism_label(credentials: AuthStep, proxy: bool = False) -> str | None:
    """What a credentials header really carried: "Kerberos in Negotiate",
    "NTLM in Negotiate", "NTLM", "Basic"... None for a SPNEGO continuation that
    names no mechanism (the leg before it did)."""
    scheme = _SCHEME_NAMES.get(credentials.scheme.lower(), credentials.scheme or "no scheme")
    if credentials.message is Message.MALFORMED:
        label = f"malformed {scheme}"
    elif credentials.mechanism in _UNTOLD:
        if scheme.lower() == "negotiate":
            return None
        label = scheme
    else:
        mechanism = _MECHANISM_NAMES.get(credentials.mechanism, credentials.mechanism.value)
        label = mechanism if mechanism.lower() == scheme.lower() else f"{mechanism} in {scheme}"
    return f"{label} to the proxy" if proxy else label


def _scheme_name(scheme: str, proxy: bool) -> str:
    if not scheme:
        return ""
    name = _SCHEME_NAMES.get(scheme.lower(), scheme)
    return f"proxy {name}" if proxy else name


def _ntlm_message(credentials: AuthStep) -> NtlmAuthenticate | None:
    inner = credentials.innermost
    return inner if isinstance(inner, NtlmAuthenticate) else None


def _add_version(builder: _Builder, version: str, frame: int) -> None:
    if version and version not in builder.versions and len(builder.versions) < MAX_VALUES:
        builder.versions.append(version)
        builder.note("http-version", frame)


def _closes(step: AuthExchange) -> bool:
    """RFC 9112 section 9.3: "Connection: close", or HTTP/1.0 without
    keep-alive, ends the connection after this response."""
    response = step.exchange.response
    if response is None:
        return False
    connection = (response.header("Connection") or "").lower()
    if "close" in connection:
        return True
    return response.version == "HTTP/1.0" and "keep-alive" not in connection


def url_path(uri: str) -> str:
    """The path of a request target, without query: origin-form "/a?b" and the
    absolute-form a forward proxy receives align (RFC 9112 section 3.2)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri.split("?", 1)[0] or "/"
    path = parts.path if (parts.scheme or uri.startswith("/")) else uri.split("?", 1)[0]
    return path or "/"


def bare_host(host: str) -> str:
    """The host name without a port: the SPN names the host only."""
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host
