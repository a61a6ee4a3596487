"""Hand-made timelines for rule unit tests: connections written as exchanges
(request headers, status, response headers), turned into the HTTP layer's
objects and judged by the real handshake layer (build_timeline, link), without
any capture or byte parsing of TCP.

Frames are numbered as a capture would: each request and each response takes
the next frame, so evidence can be checked exactly. Tokens are real: NTLM from
pyspnego's initiator and acceptor, Kerberos from scapy's encoders, both through
scripts/captures/scenario_tokens.py (the scenario captures' own factories).
"""

from __future__ import annotations

import base64
import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

from authtrace.diagnose import diagnose
from authtrace.diagnose.context import RuleContext
from authtrace.diagnose.finding import Finding
from authtrace.handshake.links import link
from authtrace.handshake.timeline import build_timeline
from authtrace.http.messages import (
    Exchange,
    GapMark,
    Header,
    HttpConnection,
    HttpRequest,
    HttpResponse,
    Pairing,
)
from authtrace.kerberos.kdc import KdcConnectAttempt, KdcExchange
from authtrace.tcp.events import CloseReason, Direction, Endpoint
from authtrace.tls.model import TlsFacts

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts" / "captures"))

from scenario_tokens import (  # noqa: E402
    WINDOWS_MECHS,
    KerberosFactory,
    NtlmFactory,
    NtlmLegs,
    gss_krb5,
    neg_token_init,
)

HOST = "web01.contoso.com"
CLIENT = "192.0.2.10"
SERVER = "192.0.2.80"
ALICE = ("CONTOSO\\alice", "Spring2024!")
BOB = ("CONTOSO\\bob", "Autumn2023#")
OFFER_WINDOWS = [("WWW-Authenticate", "Negotiate"), ("WWW-Authenticate", "NTLM")]

Headers = list[tuple[str, str]]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def ntlm_legs(
    user: tuple[str, str] = ALICE, seed: int = 1, lm_compat: int = 3, bindings: bytes | None = None
) -> NtlmLegs:
    """A real NTLM handshake (NEGOTIATE, CHALLENGE, AUTHENTICATE) for `user`;
    `bindings`: the channel bindings' application data the client binds to."""
    return NtlmFactory(seed, 1_700_000_000.0).handshake(
        user[0], user[1], HOST, "WS01", lm_compat, bindings
    )


def kerberos_ap_req(seed: int = 1, host: str = HOST) -> str:
    """`Negotiate <SPNEGO NegTokenInit with a Kerberos AP-REQ for HTTP/host>`."""
    ap_req = gss_krb5(KerberosFactory(seed).ap_req(f"HTTP/{host}"), b"\x01\x00")
    return f"Negotiate {b64(neg_token_init(bytes(ap_req), WINDOWS_MECHS))}"


@dataclass
class Conn:
    """One TCP connection being written; `exchange` appends one request/response."""

    capture: Capture
    id: int
    client: Endpoint
    server: Endpoint
    exchanges: list[Exchange] = field(default_factory=list)
    first_frame: int = 0
    close_reason: CloseReason = CloseReason.FIN
    closed_by: Direction | None = Direction.TO_SERVER
    close_frame: int = 0
    syn_seen: bool = True
    tls: TlsFacts | None = None  # the TLS the connection's HTTP was decrypted from
    gaps: list[GapMark] = field(default_factory=list)

    def unsure(self) -> None:
        """A gap just before the last exchange's response: its pairing is
        uncertain (http/exchanges.py: the response may answer another request)."""
        last = self.exchanges[-1]
        assert last.response is not None
        self.exchanges[-1] = dataclasses.replace(last, pairing=Pairing.UNCERTAIN)
        self.gaps.append(GapMark(Direction.TO_CLIENT, 600, last.response.frame))

    def exchange(
        self,
        request: Headers | None,
        status: int | None,
        response: Headers = (),  # type: ignore[assignment]
        *,
        method: str = "GET",
        uri: str = "/",
        host: str | None = HOST,
        body: bytes | None = None,
        version: str = "HTTP/1.1",
        header_bytes: int | None = None,
    ) -> tuple[int | None, int | None]:
        """Request (None: not captured) and response (None status: unanswered);
        returns their frame numbers."""
        req = (
            self.request(request, method=method, uri=uri, host=host, header_bytes=header_bytes)
            if request is not None
            else None
        )
        resp = self.response(status, response, body=body, version=version) if status else None
        return self.add(req, resp)

    def request(
        self,
        headers: Headers,
        *,
        method: str = "GET",
        uri: str = "/",
        host: str | None = HOST,
        header_bytes: int | None = None,
    ) -> HttpRequest:
        """A request in the next frame (added to the connection by `add`)."""
        cap = self.capture
        frame = cap.next_frame()
        headers = ([("Host", host)] if host else []) + list(headers)
        size = header_bytes or sum(len(n) + len(v) + 4 for n, v in headers) + 20
        return HttpRequest(
            method=method,
            uri=uri,
            version="HTTP/1.1",
            headers=tuple(Header(n, v) for n, v in headers),
            frame=frame,
            head_frame=frame,
            timestamp=cap.tick(),
            header_bytes=size,
            end_frame=frame,
        )

    def response(
        self,
        status: int,
        headers: Headers = (),  # type: ignore[assignment]
        *,
        body: bytes | None = None,
        version: str = "HTTP/1.1",
    ) -> HttpResponse:
        """A response in the next frame (added to the connection by `add`)."""
        cap = self.capture
        frame = cap.next_frame()
        return HttpResponse(
            version=version,
            status=status,
            reason="",
            headers=tuple(Header(n, v) for n, v in headers),
            frame=frame,
            head_frame=frame,
            timestamp=cap.tick(),
            header_bytes=sum(len(n) + len(v) + 4 for n, v in headers) + 17,
            body_size=len(body or b""),
            body=body,
            end_frame=frame,
        )

    def add(
        self, request: HttpRequest | None, response: HttpResponse | None
    ) -> tuple[int | None, int | None]:
        request_frame = request.frame if request is not None else None
        response_frame = response.frame if response is not None else None
        if not self.first_frame:
            self.first_frame = request_frame or response_frame or 0
        self.exchanges.append(Exchange(self.id, len(self.exchanges), request, response))
        return request_frame, response_frame

    def close(
        self, reason: CloseReason = CloseReason.FIN, by: Direction | None = Direction.TO_SERVER
    ) -> int:
        """End the connection: a FIN or RST from `by` (TO_SERVER: the client)."""
        self.close_reason, self.closed_by = reason, by
        self.close_frame = self.capture.next_frame()
        self.capture.tick()
        return self.close_frame

    def build(self) -> HttpConnection:
        last = self.close_frame or self.capture.frame
        return HttpConnection(
            id=self.id,
            client=self.client,
            server=self.server,
            first_frame=self.first_frame,
            last_frame=last,
            first_timestamp=self.capture.start,
            last_timestamp=self.capture.clock,
            syn_seen=self.syn_seen,
            fin_seen=self.close_reason is CloseReason.FIN,
            rst_seen=self.close_reason is CloseReason.RST,
            close_reason=self.close_reason,
            closed_by=self.closed_by,
            close_frame=self.close_frame,
            packets=len(self.exchanges) * 2,
            gaps=tuple(self.gaps),
            exchanges=tuple(self.exchanges),
            is_http=True,
            tls=self.tls,
        )


@dataclass
class Capture:
    """The connections of one made-up capture; `context()` judges them."""

    start: float = 1_700_000_000.0
    clock: float = 1_700_000_000.0
    frame: int = 0
    step: float = 0.01
    connections: list[Conn] = field(default_factory=list)
    kdc: list[KdcExchange] = field(default_factory=list)
    kdc_connects: list[KdcConnectAttempt] = field(default_factory=list)

    def next_frame(self) -> int:
        self.frame += 1
        return self.frame

    def tick(self, seconds: float | None = None) -> float:
        self.clock += self.step if seconds is None else seconds
        return self.clock

    def conn(
        self, client: str = CLIENT, server: str = SERVER, port: int = 80, client_port: int = 0
    ) -> Conn:
        number = len(self.connections)
        conn = Conn(
            self,
            number,
            Endpoint(client, client_port or 50000 + number),
            Endpoint(server, port),
        )
        self.connections.append(conn)
        return conn

    def context(self) -> RuleContext:
        timelines = [build_timeline(c.build()) for c in self.connections]
        view = link(timelines, self.start, self.clock, tuple(self.kdc))
        return RuleContext(view, tuple(self.kdc), tuple(self.kdc_connects))

    def findings(self) -> list[Finding]:
        """Every rule's findings, as `analyze` would report them; a rule that
        breaks (or breaks its declaration) fails the test."""
        findings, anomalies = diagnose(self.context())
        assert not anomalies, anomalies
        return findings

    def rules(self) -> set[str]:
        return {finding.rule for finding in self.findings()}


def ntlm_handshake(
    conn: Conn,
    legs: NtlmLegs,
    final_status: int,
    *,
    scheme: str = "NTLM",
    anonymous_first: bool = True,
    extra: Headers = (),  # type: ignore[assignment]
) -> dict[str, int | None]:
    """anonymous -> 401 offer, NEGOTIATE -> 401 CHALLENGE, AUTHENTICATE -> final;
    returns the frames by name."""
    frames: dict[str, int | None] = {}
    if anonymous_first:
        frames["anonymous"], frames["offer"] = conn.exchange(list(extra), 401, OFFER_WINDOWS)
    frames["negotiate"], frames["challenge"] = challenge_leg(conn, legs, scheme=scheme, extra=extra)
    frames["authenticate"], frames["final"] = conn.exchange(
        [("Authorization", f"{scheme} {b64(legs.authenticate)}"), *extra],
        final_status,
        OFFER_WINDOWS if final_status == 401 else [],
    )
    return frames


def relay(
    front: Conn,
    upstream: Conn,
    headers: Headers,
    status: int,
    response: Headers = (),  # type: ignore[assignment]
    *,
    upstream_headers: Headers = (),  # type: ignore[assignment]
    upstream_response: Headers | None = None,
    uri: str = "/",
    upstream_uri: str | None = None,
) -> dict[str, int | None]:
    """One request through a proxy, both legs: the client's request on `front`,
    the proxy's copy on `upstream` (with `upstream_headers` added), the server's
    answer, then the proxy's copy of it (`upstream_response` defaults to
    `response`; `upstream_uri` to `uri`: a proxy that rewrites paths). Returns
    the four frames."""
    front_request = front.request(headers, uri=uri)
    upstream_request = upstream.request(
        [*headers, *upstream_headers], uri=uri if upstream_uri is None else upstream_uri
    )
    server_answer = upstream.response(
        status, response if upstream_response is None else upstream_response
    )
    front_answer = front.response(status, response)
    frames: dict[str, int | None] = {}
    frames["front_request"], frames["front_response"] = front.add(front_request, front_answer)
    frames["upstream_request"], frames["upstream_response"] = upstream.add(
        upstream_request, server_answer
    )
    return frames


def challenge_leg(
    conn: Conn,
    legs: NtlmLegs,
    *,
    scheme: str = "NTLM",
    extra: Headers = (),  # type: ignore[assignment]
    response: Headers = (),  # type: ignore[assignment]
) -> tuple[int | None, int | None]:
    """NEGOTIATE -> 401 CHALLENGE (with `response` headers added); its frames."""
    return conn.exchange(
        [("Authorization", f"{scheme} {b64(legs.negotiate)}"), *extra],
        401,
        [("WWW-Authenticate", f"{scheme} {b64(legs.challenge)}"), *response],
    )
