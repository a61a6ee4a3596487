"""A connection's protocol stack: which layers read its bytes, decided by
content in this one place.

Owns: the `Stack` of a TCP connection, from its first bytes (`decide`), the
application that reads what TLS decrypts (`decide_inner`, ALPN first, then
content), and the interface every application layer offers the pipeline
(`Application`): the HTTP/1 tracker (http/exchanges.py) today, HTTP/2 next.
The pipeline asks here and builds the layers; no other module tells
protocols apart.

Invariant: a decision is taken once per connection (per TLS connection for
the inner one) and never guessed from the port alone, except Kerberos's
registered port 88 (RFC 4120 section 7.2.3), whose traffic is never HTTP.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Protocol

from authtrace.http2.frames import looks_like_frames
from authtrace.kerberos.kdc import KERBEROS_PORT, looks_like_kerberos
from authtrace.tls.connection import looks_like_tls

if TYPE_CHECKING:
    from authtrace.anomalies import Anomaly
    from authtrace.http.messages import Exchange
    from authtrace.tcp.events import Direction, LaneSink, StreamEvent

# RFC 9113 section 3.4: the client connection preface of HTTP/2 ("prior
# knowledge": h2c without Upgrade, and the first bytes of h2 inside TLS).
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# The ALPN protocol ids of RFC 7301 section 6 that name HTTP/2 and HTTP/1.
ALPN_H2 = "h2"
# Bytes of the preface that tell it from an HTTP/1 request line: no HTTP/1
# method is followed by " * HTTP/2.0".
_PREFACE_DECIDES = len(b"PRI * HTTP/2")


class Stack(enum.Enum):
    """What reads a connection's bytes."""

    KERBEROS = "kerberos"  # KDC traffic over TCP (kerberos/kdc.py)
    TLS = "tls"  # TLS records (tls/), then `decide_inner` for what they carry
    HTTP1 = "http/1"  # an HTTP/1 candidate: the HTTP layer says whether it is HTTP at all
    HTTP2 = "h2"  # HTTP/2: h2c with prior knowledge, or ALPN h2 / the preface inside TLS


def _is_h2_preface(data: bytes) -> bool:
    """The first bytes are the HTTP/2 preface (or as much of it as arrived,
    enough to tell it from an HTTP/1 request line)."""
    if len(data) >= len(H2_PREFACE):
        return data.startswith(H2_PREFACE)
    return len(data) >= _PREFACE_DECIDES and H2_PREFACE.startswith(data)


def decide(client_port: int, server_port: int, data: bytes, start_seen: bool = True) -> Stack:
    """The stack of a TCP connection from the first bytes either direction
    sent (`data`): Kerberos (port 88 or a KDC message), TLS (a record header),
    HTTP/2 (its preface; or, when the capture began inside the connection —
    `start_seen` False —, HTTP/2 frames: http2/frames.py `looks_like_frames`),
    else an HTTP/1 candidate."""
    if KERBEROS_PORT in (client_port, server_port) or looks_like_kerberos(data):
        return Stack.KERBEROS
    if looks_like_tls(data):
        return Stack.TLS
    if _is_h2_preface(data) or (not start_seen and looks_like_frames(data)):
        return Stack.HTTP2
    return Stack.HTTP1


def decide_inner(alpn: str, data: bytes) -> Stack:
    """What a TLS connection carries, at its first decrypted bytes: the
    protocol the server chose by ALPN (RFC 7301 section 3.2) when it named
    HTTP/2, else the content (the HTTP/2 preface), else an HTTP/1 candidate."""
    if alpn == ALPN_H2 or _is_h2_preface(data):
        return Stack.HTTP2
    return Stack.HTTP1


class Application(Protocol):
    """What the pipeline needs from the layer that turns a connection's
    (cleartext or decrypted) stream events into exchanges."""

    connection: int
    swapped: bool  # the side TCP called the client sent the responses
    anomalies: list[Anomaly]

    @property
    def is_http(self) -> bool | None:
        """True once the stream proved to be HTTP, False once it proved not
        to be, None while undecided."""
        ...

    def feed(self, event: StreamEvent) -> list[Exchange]:
        """One stream event in order; the exchanges it completed out."""
        ...

    def lane_sink(self, direction: Direction) -> LaneSink | None:
        """What the fast lane may skip of `direction` now (lane.py); None: nothing."""
        ...

    def lane_pays(self) -> bool:
        """Whether the fast lane is worth opening on the connection now (lane.py)."""
        ...

    def collect_parser_anomalies(self) -> None:
        """Move the anomalies of the layer's parsers into `anomalies` (at close)."""
        ...


__all__ = ["ALPN_H2", "H2_PREFACE", "Application", "Stack", "decide", "decide_inner"]
