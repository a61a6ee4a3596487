"""Joining an IIS log to a capture's analysis: for each 401 the server logged,
the triple it logged next to the one authtrace predicted from the wire.

Where they disagree the logged triple wins (it is what the server decided); the
prediction stays visible so the difference can be explained. Matching itself
(time with a clock offset, client, method, URI, status) is `iis.match`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from authtrace.handshake.links import HandshakeView
from authtrace.handshake.model import IisTriple, Realm
from authtrace.iis.category import LoggedLine
from authtrace.iis.codes import explain_triple
from authtrace.iis.match import match_entries
from authtrace.iis.w3c import LogEntry
from authtrace.visible import visible_lines
from authtrace.words import agreeing, counted


@dataclass(frozen=True, slots=True)
class LoggedTriple:
    """One exchange of the capture found in the IIS log.

    predicted: what authtrace expected from the wire (None when it made no
    prediction); logged: what the log says; meaning: the logged triple explained.
    """

    connection: int
    index: int
    response_frame: int
    predicted: IisTriple | None
    logged: IisTriple
    meaning: str
    source: str
    line: int
    same_client: bool

    @property
    def agrees(self) -> bool:
        return self.predicted is None or str(self.predicted) == str(self.logged)


@dataclass(frozen=True, slots=True)
class LogJoin:
    """What joining the log to the capture found.

    note: the clock offset between log and capture, in words.
    unmatched_401s: 401s of the capture that no log line recorded (another
    server behind a balancer, or a log of another day).
    """

    entries: int
    matched: tuple[LoggedTriple, ...]
    unmatched_401s: int
    offset: float
    note: str


def join_log(view: HandshakeView, entries: Iterable[LogEntry]) -> LogJoin:
    """Match log lines to the judged exchanges (origin realm only: a proxy's
    407s are not in the web server's log)."""
    entries = list(entries)
    rows: list[tuple[float, str, str, str, int]] = []
    places: list[tuple[int, int, int, IisTriple | None]] = []
    for timeline in view.timelines:
        for step in timeline.steps:
            request, response = step.exchange.request, step.exchange.response
            if step.realm is not Realm.ORIGIN or request is None or response is None:
                continue
            rows.append(
                (
                    request.timestamp,
                    timeline.connection.client.ip,
                    request.method,
                    request.uri,
                    response.status,
                )
            )
            places.append(
                (timeline.connection.id, step.exchange.index, response.shown_frame, step.iis)
            )
    # IIS writes a line when the response ends, at one-second resolution: within
    # one second only the order tells lines apart, so offer the exchanges in the
    # order their responses ended.
    order = sorted(range(len(rows)), key=lambda i: (places[i][2], i))
    rows = [rows[i] for i in order]
    places = [places[i] for i in order]
    result = match_entries(entries, rows)
    matched: list[LoggedTriple] = []
    for match in result.matches:
        connection, index, frame, predicted = places[match.observed.index]
        entry = match.entry
        logged = IisTriple(entry.status, entry.substatus or 0, entry.win32_status or 0)
        if entry.status != 401 and predicted is None:
            continue
        explained = explain_triple(logged.status, logged.substatus, logged.win32)
        matched.append(
            LoggedTriple(
                connection=connection,
                index=index,
                response_frame=frame,
                predicted=predicted,
                logged=logged,
                meaning=explained.summary,
                source=entry.source,
                line=entry.line,
                same_client=match.same_client,
            )
        )
    logged_frames = {m.response_frame for m in matched}
    unmatched = sum(
        1
        for timeline in view.timelines
        for step in timeline.steps
        if step.realm is Realm.ORIGIN
        and step.status == 401
        and step.exchange.response is not None
        and step.exchange.response.shown_frame not in logged_frames
    )
    return LogJoin(len(entries), tuple(matched), unmatched, result.offset, result.note)


def logged_lines(join: LogJoin) -> dict[tuple[int, int], LoggedLine]:
    """The logged line of each matched exchange, by (connection id, exchange
    index): what the rules weigh as the strongest evidence of a 401's category."""
    return {
        (item.connection, item.index): LoggedLine(item.logged, item.source, item.line)
        for item in join.matched
    }


def render_log_join(join: LogJoin) -> str:
    """Text section: each logged 401 with the predicted triple beside it."""
    lines = [f"IIS log ({counted(join.entries, 'line')} read): {join.note}"]
    for item in join.matched:
        predicted = str(item.predicted) if item.predicted else "no prediction"
        mark = "" if item.agrees else "  <- differs; the log wins"
        lines.append(
            f"  frame {item.response_frame} (connection {item.connection}): logged {item.logged}"
            f" ({item.meaning}); predicted {predicted}{mark}  [{item.source}:{item.line}]"
        )
    if join.unmatched_401s:
        lines.append(
            f"  {counted(join.unmatched_401s, '401')} of the capture "
            f"{agreeing(join.unmatched_401s, 'is')} not in the log (another server behind a "
            "balancer, another log file, or the capture was taken elsewhere)"
        )
    return visible_lines(lines) + "\n"


def log_join_to_dict(join: LogJoin) -> dict[str, object]:
    return {
        "entries": join.entries,
        "offset": join.offset,
        "note": join.note,
        "unmatched_401s": join.unmatched_401s,
        "matched": [
            {
                "connection": m.connection,
                "index": m.index,
                "response_frame": m.response_frame,
                "predicted": str(m.predicted) if m.predicted else None,
                "logged": str(m.logged),
                "agrees": m.agrees,
                "meaning": m.meaning,
                "source": m.source,
                "line": m.line,
                "same_client": m.same_client,
            }
            for m in join.matched
        ],
    }
