"""The JSON form of reports. Schema `authtrace.analyze/1` (docs/json.md,
docs/schemas/analyze.schema.json); fields are only ever added within a schema
version. Secrets are redacted unless show_secrets is set."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from authtrace.anomalies import Anomaly
from authtrace.diagnose.finding import Citation, Finding, Severity
from authtrace.handshake.links import HandshakeView, StepRef
from authtrace.handshake.model import AuthExchange
from authtrace.handshake.timeline import ConnectionTimeline
from authtrace.kerberos.kdc import KdcExchange
from authtrace.report.connections import (
    auth_entry,
    connection_to_dict,
    request_to_dict,
    response_to_dict,
    stream_to_dict,
)
from authtrace.report.json_text import indented
from authtrace.report.model import Report
from authtrace.report.summary import summarize
from authtrace.report.tls import encrypted_to_dict, keylog_to_dict
from authtrace.schemas import Schema, document_head


def anomaly_to_dict(anomaly: Anomaly) -> dict[str, Any]:
    return {
        "kind": anomaly.kind,
        "message": anomaly.message,
        "frame": anomaly.frame,
        "connection": anomaly.connection,
    }


def finding_to_dict(finding: Finding) -> dict[str, Any]:
    return {
        "rule": finding.rule,
        "severity": finding.severity.value,
        "title": finding.title,
        "host": finding.host,
        "connections": list(finding.connections),
        "frames": list(finding.frames),
        "explanation": finding.explanation,
        "fix": finding.fix,
        "fields": dict(finding.fields),
        "iis": str(finding.iis) if finding.iis else None,
        "iis_certain": finding.iis.certain if finding.iis else None,
        "citations": [citation_to_dict(c) for c in finding.citations],
        "occurrences": finding.occurrences,
        "values": {
            held.name: [
                {"value": v.value, "count": v.count, "connections": list(v.connections)}
                for v in held.values
            ]
            for held in finding.values
        },
    }


def citation_to_dict(citation: Citation) -> dict[str, Any]:
    return {
        "frame": citation.frame,
        "name": citation.name,
        "connection": citation.connection,
        "role": citation.role.value,
        "message": citation.message,
        "proves": citation.proves,
    }


def kdc_link_to_dict(exchange: KdcExchange) -> dict[str, Any]:
    """A KDC exchange as cited from an HTTP step (the full record is under `kdc`)."""
    return {
        "service": exchange.service,
        "request_frame": exchange.request_frame,
        "reply_frame": exchange.reply_frame,
        "result": exchange.result.value,
        "error": exchange.error_name,
    }


def exchanges_to_dicts(
    timeline: ConnectionTimeline, show_secrets: bool, view: HandshakeView | None = None
) -> list[dict[str, Any]]:
    """One entry per HTTP exchange; its auth steps and the judgement per realm,
    with the KDC exchanges behind a Negotiate step when `view` links them."""
    by_index: dict[int, list[tuple[int, AuthExchange]]] = {}
    for position, step in enumerate(timeline.steps):
        by_index.setdefault(step.exchange.index, []).append((position, step))
    out = []
    for exchange in timeline.connection.exchanges:
        request, response = exchange.request, exchange.response
        steps = by_index.get(exchange.index, [])
        auth: list[dict[str, Any]] = []
        judgements = []
        for position, step in steps:
            kdc = view.kdc_for(StepRef(timeline.connection.id, position)) if view else ()
            if step.credentials is not None:
                auth.append(auth_entry(step.credentials, step.realm.value, show_secrets))
            auth.extend(auth_entry(c, step.realm.value, show_secrets) for c in step.challenges)
            judgements.append(
                {
                    "realm": step.realm.value,
                    "leg": step.leg.value,
                    "state": step.state_after.value,
                    "outcome": step.outcome.value if step.outcome else None,
                    "iis": str(step.iis) if step.iis else None,
                    "iis_certain": step.iis.certain if step.iis else None,
                    "iis_from_body": step.iis_from_body,
                    "kdc": [kdc_link_to_dict(k) for k in kdc],
                }
            )
        out.append(
            {
                "connection": exchange.connection,
                "index": exchange.index,
                "pairing": exchange.pairing.value,
                "stream": stream_to_dict(exchange.stream),
                "request": request_to_dict(request),
                "response": response_to_dict(response),
                "auth": auth,
                "verdicts": judgements,
            }
        )
    return out


def report_to_dict(report: Report, show_secrets: bool = False) -> dict[str, Any]:
    """The whole document as one dict (tests, library callers); `write_report_json`
    writes the same document without holding it."""
    return {
        key: list(value) if isinstance(value, _Listed) else value
        for key, value in _report_fields(report, show_secrets)
    }


class _Listed:
    """A top-level list of the document made one item at a time (connections,
    exchanges, KDC exchanges: one entry per thing in the capture)."""

    __slots__ = ("_items",)

    def __init__(self, items: Callable[[], Iterator[Any]]) -> None:
        self._items = items

    def __iter__(self) -> Iterator[Any]:
        return self._items()


def _report_fields(
    report: Report, show_secrets: bool, tell: Callable[[], None] | None = None
) -> list[tuple[str, Any]]:
    """The document's fields in order, the long lists made as they are read;
    `tell` is called after each connection's exchanges and each KDC exchange."""
    view = report.view

    def exchanges() -> Iterator[dict[str, Any]]:
        for timeline in view.timelines:
            yield from exchanges_to_dicts(timeline, show_secrets, view)
            if tell is not None:
                tell()

    def kdc() -> Iterator[dict[str, Any]]:
        for exchange in report.kdc:
            yield exchange.to_dict(show_secrets)
            if tell is not None:
                tell()

    return [
        *document_head(Schema.ANALYZE).items(),
        (
            "captures",
            [
                {
                    "name": c.name,
                    "format": c.format,
                    "frames": c.frames,
                    "first_time": c.first_time,
                    "last_time": c.last_time,
                    "first_frame": c.first_frame,
                    "stream": c.stream,
                }
                for c in report.captures
            ],
        ),
        (
            "summary",
            {
                "hosts": [
                    {
                        "host": h.host,
                        "connections": h.connections,
                        "exchanges": h.exchanges,
                        "authenticated_with": dict(h.authenticated_with),
                        "logon_seen": h.logon_seen,
                        "responses_401": {
                            "normal": h.normal_401,
                            "failure": h.failed_401,
                            "incomplete": h.incomplete_401,
                        },
                        "rules": list(h.rules),
                    }
                    for h in summarize(report)
                ],
                "findings": {
                    severity.value: sum(1 for f in report.findings if f.severity is severity)
                    for severity in Severity
                },
                "other_tcp_connections": report.other_connections,
            },
        ),
        ("findings", [finding_to_dict(f) for f in report.findings]),
        (
            "connections",
            _Listed(lambda: (connection_to_dict(t.connection) for t in view.timelines)),
        ),
        ("exchanges", _Listed(exchanges)),
        ("kdc", _Listed(kdc)),
        ("anomalies", [anomaly_to_dict(a) for a in report.anomalies]),
        ("tls_not_read", [encrypted_to_dict(c) for c in report.encrypted]),
        ("tls_not_read_total", report.encrypted_total),
        ("tls_keylog", keylog_to_dict(report.keylog)),
    ]


# How often (in connections and KDC exchanges) write_report_json tells its progress.
PROGRESS_EVERY = 200


def write_report_json(
    report: Report,
    write: Callable[[str], object],
    show_secrets: bool = False,
    extra: Iterable[tuple[str, Any]] = (),
    progress: Callable[[int, int], object] | None = None,
) -> None:
    """Write `report_to_dict(report)` (and the `extra` fields after it) as
    `json.dumps(..., indent=2)` writes it, followed by a newline, one piece at a
    time: the lists with an entry per connection, exchange and KDC exchange are
    made and written one entry after the other, never held whole (issue 10:
    a capture of 16,000 connections made a document of over a gigabyte in memory).

    progress: told (done, total) as the entries that cost the most are
    written, every PROGRESS_EVERY of them and at the end: the exchanges of
    each connection, then each KDC exchange (total: connections + KDC
    exchanges)."""
    tell = None
    if progress is not None:
        total = len(report.view.timelines) + len(report.kdc)
        done = 0

        def tell() -> None:
            nonlocal done
            done += 1
            if done % PROGRESS_EVERY == 0 or done == total:
                progress(done, total)

    fields = [*_report_fields(report, show_secrets, tell), *extra]
    write("{")
    for number, (key, value) in enumerate(fields):
        write(("," if number else "") + "\n  " + json.dumps(key) + ": ")
        if not isinstance(value, _Listed):
            write(indented(value, 1))
            continue
        empty = True
        for item in value:
            write(("[" if empty else ",") + "\n    " + indented(item, 2))
            empty = False
        write("[]" if empty else "\n  ]")
    write("\n}\n" if fields else "}\n")
