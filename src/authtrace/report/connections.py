"""Rendering of `authtrace connections`: one block per connection, one line per
exchange, auth headers decoded and abbreviated. Pure functions.

Also owns the HTTP-level JSON of a connection, a request and a response
(`connection_to_dict`, `request_to_dict`, `response_to_dict`), which the
analyze JSON (as_json.py) reuses: kept here so that `connections` needs none
of the judging layers as_json imports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from authtrace.auth.render import describe_step, step_to_dict
from authtrace.auth.steps import (
    AuthStep,
    StepKind,
    step_from_credentials_header,
    step_not_kept,
    steps_from_challenge_header,
)
from authtrace.http.messages import Exchange, HttpConnection, HttpRequest, HttpResponse, Pairing
from authtrace.http2.model import StreamInfo
from authtrace.report.tls import binding_text, channel_bindings, facts_text, facts_to_dict
from authtrace.visible import visible_lines
from authtrace.words import counted

_CREDENTIALS = ("authorization", "proxy-authorization")
_CHALLENGES = ("www-authenticate", "proxy-authenticate")


def exchange_steps(exchange: Exchange) -> tuple[list[AuthStep], list[AuthStep]]:
    """Decoded credentials (request) and challenges (response) of an exchange."""
    credentials: list[AuthStep] = []
    challenges: list[AuthStep] = []
    if exchange.request is not None:
        for header in exchange.request.headers:
            if header.name.lower() in _CREDENTIALS:
                credentials.append(step_from_credentials_header(header.name, header.value))
        for cut in exchange.request.cut_headers:
            if cut.name.lower() in _CREDENTIALS:
                credentials.append(
                    step_not_kept(
                        cut.name, StepKind.CREDENTIALS, cut.first_word, cut.size, cut.whole
                    )
                )
    if exchange.response is not None:
        for header in exchange.response.headers:
            if header.name.lower() in _CHALLENGES:
                challenges.extend(steps_from_challenge_header(header.name, header.value))
        for cut in exchange.response.cut_headers:
            if cut.name.lower() in _CHALLENGES:
                challenges.append(
                    step_not_kept(cut.name, StepKind.CHALLENGE, cut.first_word, cut.size, cut.whole)
                )
    return credentials, challenges


def _hash(number: int) -> str:
    return f"#{number}"


def connection_text(connection: HttpConnection, name: Callable[[int], str] = _hash) -> str:
    """name: how a frame is written ("#12", or "capture.pcap#12" when the
    captures are separate streams: Pipeline.frame_name), as `analyze` writes it."""
    closing = connection.close_reason.value.replace("_", " ")
    first = name(connection.first_frame).removeprefix("#")
    last = name(connection.last_frame).rpartition("#")[2]
    lines = [
        f"connection {connection.id}: {connection.client} -> {connection.server}  "
        f"frames {first}-{last}, "
        f"{counted(len(connection.exchanges), 'exchange')}, {closing}"
        + (
            f", {counted(sum(g.length for g in connection.gaps), 'byte')} missing"
            if connection.gaps
            else ""
        )
    ]
    if connection.tls is not None:
        lines.append("  TLS: " + facts_text(connection.tls))
        bindings = binding_text(channel_bindings(connection))
        if bindings:
            lines.append("  " + bindings)
    for exchange in connection.exchanges:
        lines.append("  " + exchange_line(exchange, name))
    return visible_lines(lines)


def exchange_line(exchange: Exchange, name: Callable[[int], str] = _hash) -> str:
    request, response = exchange.request, exchange.response
    credentials, challenges = exchange_steps(exchange)
    stream = exchange.stream
    if request is not None:
        left = f"{name(request.shown_frame)} {request.method} {_short(request.uri)}"
    elif stream is not None and stream.request_not_decodable:
        left = f"{name(stream.request_frame)} (headers not decodable)"
    else:
        left = "#? (request not captured)"
    if credentials:
        left += "  [" + "; ".join(describe_step(s) for s in credentials) + "]"
    if response is not None:
        right = f"{response.status} {name(response.shown_frame)}"
        if challenges:
            right += "  [" + "; ".join(describe_step(s) for s in challenges) + "]"
    elif stream is not None and stream.response_not_decodable:
        right = f"{name(stream.response_frame)} (headers not decodable)"
    elif stream is not None and stream.reset is not None:
        reset = stream.reset
        right = f"RST_STREAM {reset.name} {name(reset.frame)} (by the {reset.by.value})"
    else:
        right = "(no response)" if exchange.pairing is not Pairing.RESPONSE_LOST else LOST_TEXT
    return f"{left} -> {right}{pairing_note(exchange)}{stream_note(stream)}"


def stream_note(stream: StreamInfo | None) -> str:
    """The HTTP/2 stream an exchange travelled on, after its line."""
    if stream is None:
        return ""
    note = f"  (HTTP/2 stream {stream.id}"
    if stream.pushed_by:
        note += f", pushed by stream {stream.pushed_by}"
    return note + ")"


def stream_to_dict(stream: StreamInfo | None) -> dict[str, Any] | None:
    """An exchange's HTTP/2 stream (docs/json.md `stream`), None for HTTP/1."""
    if stream is None:
        return None
    reset = stream.reset
    return {
        "id": stream.id,
        "request_frame": stream.request_frame,
        "response_frame": stream.response_frame,
        "reset": None
        if reset is None
        else {"code": reset.code, "name": reset.name, "by": reset.by.value, "frame": reset.frame},
        "request_not_decodable": stream.request_not_decodable,
        "response_not_decodable": stream.response_not_decodable,
        "pushed_by": stream.pushed_by,
    }


# What the text reports say of an exchange whose pairing a gap made unsure.
LOST_TEXT = "(response not captured: lost in a gap)"


def pairing_note(exchange: Exchange) -> str:
    """The words after an exchange's line for an exchange exchanges.py could not pair surely."""
    if exchange.pairing is Pairing.UNCERTAIN:
        return "  (pairing uncertain after a gap)"
    return ""


def connection_json(connection: HttpConnection, show_secrets: bool = False) -> dict[str, Any]:
    data = connection_to_dict(connection)
    data["exchanges"] = [exchange_json(e, show_secrets) for e in connection.exchanges]
    return data


def exchange_json(exchange: Exchange, show_secrets: bool = False) -> dict[str, Any]:
    credentials, challenges = exchange_steps(exchange)
    return {
        "index": exchange.index,
        "pairing": exchange.pairing.value,
        "stream": stream_to_dict(exchange.stream),
        "request": request_to_dict(exchange.request),
        "response": response_to_dict(exchange.response),
        "auth": [
            auth_entry(s, "proxy" if s.proxy else "origin", show_secrets)
            for s in credentials + challenges
        ],
    }


def auth_entry(step: AuthStep, realm: str, show_secrets: bool = False) -> dict[str, Any]:
    """One decoded auth header as both JSON schemas show it (`auth[]`): realm
    (`origin` / `proxy`), direction (`challenge` / `credentials`), the one-line
    summary, then the decoded step (whose own realm, a Basic/Digest/Kerberos
    one, is `token_realm` here)."""
    head = {"realm": realm, "direction": step.kind.value, "summary": describe_step(step)}
    return step_to_dict(step, show_secrets, head)


def _short(uri: str, limit: int = 70) -> str:
    return uri if len(uri) <= limit else uri[: limit - 3] + "..."


def connection_to_dict(connection: HttpConnection) -> dict[str, Any]:
    """A TCP connection's identity, extent and gaps (exchanges are added by the caller)."""
    return {
        "id": connection.id,
        "client": str(connection.client),
        "server": str(connection.server),
        "first_frame": connection.first_frame,
        "last_frame": connection.last_frame,
        "syn_seen": connection.syn_seen,
        "close": connection.close_reason.value,
        "close_frame": connection.close_frame,
        "gaps": [
            {"direction": g.direction.value, "bytes": g.length, "frame": g.frame}
            for g in connection.gaps
        ],
        "tls": (
            facts_to_dict(connection.tls, channel_bindings(connection))
            if connection.tls is not None
            else None
        ),
    }


def request_to_dict(request: HttpRequest | None) -> dict[str, Any] | None:
    """A request as both JSON schemas show it; frame: the frame completing its head
    (where Wireshark shows it), first_frame: the one carrying its first byte."""
    if request is None:
        return None
    return {
        "method": request.method,
        "uri": request.uri,
        "host": request.host,
        "frame": request.shown_frame,
        "first_frame": request.frame,
        "head_frame": request.head_frame,
        "time": request.timestamp,
        **_cut_to_dict(request),
    }


def response_to_dict(response: HttpResponse | None) -> dict[str, Any] | None:
    if response is None:
        return None
    return {
        "status": response.status,
        "reason": response.reason,
        "frame": response.shown_frame,
        "time": response.timestamp,
        **_cut_to_dict(response),
    }


def _cut_to_dict(message: HttpRequest | HttpResponse) -> dict[str, Any]:
    """`head_cut` always; for a cut head, the headers seen but not kept and
    whether its end was seen at all."""
    if not message.head_cut:
        return {"head_cut": False}
    return {
        "head_cut": True,
        "header_bytes": message.header_bytes,
        "rest_not_seen": message.rest_not_seen,
        "cut_headers": [
            {"name": cut.name, "bytes": cut.size, "whole": cut.whole} for cut in message.cut_headers
        ],
    }
