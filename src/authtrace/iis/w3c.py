"""IIS W3C extended log parsing (sans-IO) and the 401/403 summary built from it.

This module owns reading W3C extended log lines into `LogEntry` values and
judging them as a sequence. Lines come in as text (the CLI opens files, gzip
included); nothing here touches a file.

Format (W3C Working Draft WD-logfile-960323, as IIS writes it): directives start
with `#` (`#Software`, `#Version`, `#Date`, `#Fields`); a `#Fields:` directive
names the space-separated columns of the lines after it and may appear again
mid-file (IIS restarts, field set changed), so every data line is read with the
last `#Fields:` seen. `-` is an empty value; IIS writes spaces inside values
(user agent) as `+`. Dates and times are UTC.

Invariants: a line never raises; a line that cannot be read is counted under a
`ProblemKind` with its first few line numbers, never guessed into an entry;
memory is bounded (line length, field count and kept line numbers are capped).
"""

from __future__ import annotations

import enum
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time

from authtrace.iis.codes import TripleExplanation, Verdict, explain_triple

MAX_LINE_CHARS = 64 * 1024
MAX_FIELDS = 128
MAX_REPORTED_LINES = 5


class ProblemKind(enum.Enum):
    """Why a line was not turned into an entry (stable ids, used in JSON)."""

    NO_FIELDS = "no-fields-directive"
    FIELD_COUNT = "field-count-mismatch"
    MISSING_STATUS = "missing-sc-status"
    BAD_VALUE = "bad-value"
    OTHER_FORMAT = "other-log-format"
    LINE_TOO_LONG = "line-too-long"
    BAD_DIRECTIVE = "bad-directive"


_PROBLEM_TEXT = {
    ProblemKind.NO_FIELDS: "data line before any #Fields: directive",
    ProblemKind.FIELD_COUNT: "number of values differs from the #Fields: directive",
    ProblemKind.MISSING_STATUS: "the #Fields: directive has no sc-status column",
    ProblemKind.BAD_VALUE: "a status, port, date or time value is not readable",
    ProblemKind.OTHER_FORMAT: "line from another log format (Apache/NCSA or IIS native)",
    ProblemKind.LINE_TOO_LONG: f"line longer than {MAX_LINE_CHARS} characters",
    ProblemKind.BAD_DIRECTIVE: "unreadable # directive",
}


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One W3C log line. Absent columns and `-` values are None.

    line: 1-based line number in its source; source: the file name given to
    the parser; timestamp: UTC (None when the line has no date or time);
    user_agent: with IIS's `+` turned back into spaces.
    """

    line: int
    status: int
    source: str = ""
    timestamp: datetime | None = None
    server_ip: str | None = None
    method: str | None = None
    uri_stem: str | None = None
    uri_query: str | None = None
    server_port: int | None = None
    username: str | None = None
    client_ip: str | None = None
    user_agent: str | None = None
    host: str | None = None
    substatus: int | None = None
    win32_status: int | None = None
    time_taken: int | None = None
    forwarded_for: str | None = None


@dataclass(frozen=True, slots=True)
class ProblemCount:
    kind: ProblemKind
    count: int
    first_lines: tuple[int, ...]

    @property
    def reason(self) -> str:
        return _PROBLEM_TEXT[self.kind]


@dataclass(frozen=True, slots=True)
class ParseReport:
    """What one source yielded besides its entries."""

    source: str
    lines: int
    entries: int
    software: tuple[str, ...]
    fields_blocks: int
    problems: tuple[ProblemCount, ...]

    @property
    def skipped(self) -> int:
        return sum(p.count for p in self.problems)


# Column name -> LogEntry attribute. Names are matched case-insensitively;
# `cs-uri` is what HTTP.sys error logs use instead of stem + query.
_COLUMNS = {
    "s-ip": "server_ip",
    "cs-method": "method",
    "cs-uri-stem": "uri_stem",
    "cs-uri-query": "uri_query",
    "s-port": "server_port",
    "cs-username": "username",
    "c-ip": "client_ip",
    "cs(user-agent)": "user_agent",
    "cs-host": "host",
    "sc-status": "status",
    "sc-substatus": "substatus",
    "sc-win32-status": "win32_status",
    "time-taken": "time_taken",
    "x-forwarded-for": "forwarded_for",
    "cs(x-forwarded-for)": "forwarded_for",
}
_INT_COLUMNS = frozenset({"server_port", "status", "substatus", "win32_status", "time_taken"})

# Apache/NCSA common and combined: `host ident user [date] "request" status size`.
_NCSA = re.compile(r'^\S+ \S+ \S+ \[[^\]]{10,40}\] "')
# IIS native (non-W3C) format: comma-separated, date as MM/DD/YY.
_IIS_NATIVE = re.compile(r"^[^,]+, [^,]+, \d{1,2}/\d{1,2}/\d{2,4}, \d{1,2}:\d{2}:\d{2}, ")


class _Problems:
    def __init__(self) -> None:
        self.counts: Counter[ProblemKind] = Counter()
        self.lines: dict[ProblemKind, list[int]] = defaultdict(list)

    def add(self, kind: ProblemKind, line: int) -> None:
        self.counts[kind] += 1
        if len(self.lines[kind]) < MAX_REPORTED_LINES:
            self.lines[kind].append(line)

    def freeze(self) -> tuple[ProblemCount, ...]:
        return tuple(
            ProblemCount(kind, self.counts[kind], tuple(self.lines[kind]))
            for kind in ProblemKind
            if self.counts[kind]
        )


class W3CLogParser:
    """Feed lines one at a time; `feed()` returns an entry or None.

    The parser keeps only the current `#Fields:` layout, the current `#Date:`
    and bounded counters, so memory does not grow with the log.
    """

    def __init__(self, source: str = "") -> None:
        self.source = source
        self._line = 0
        self._entries = 0
        self._columns: tuple[str | None, ...] | None = None
        self._date_index: int | None = None
        self._time_index: int | None = None
        self._has_status = False
        self._directive_date: date | None = None
        self._software: list[str] = []
        self._fields_blocks = 0
        self._problems = _Problems()

    def feed(self, line: str) -> LogEntry | None:
        self._line += 1
        try:
            return self._feed(line)
        except Exception:  # noqa: BLE001 - a hostile line must never escape as a traceback
            self._problems.add(ProblemKind.BAD_VALUE, self._line)
            return None

    def finish(self) -> ParseReport:
        return ParseReport(
            self.source,
            self._line,
            self._entries,
            tuple(self._software),
            self._fields_blocks,
            self._problems.freeze(),
        )

    def _feed(self, line: str) -> LogEntry | None:
        if len(line) > MAX_LINE_CHARS:
            self._problems.add(ProblemKind.LINE_TOO_LONG, self._line)
            return None
        text = line.rstrip("\r\n").strip("\ufeff")
        if not text.strip():
            return None
        if text.startswith("#"):
            self._directive(text)
            return None
        if self._columns is None:
            if _NCSA.match(text) or _IIS_NATIVE.match(text):
                self._problems.add(ProblemKind.OTHER_FORMAT, self._line)
            else:
                self._problems.add(ProblemKind.NO_FIELDS, self._line)
            return None
        values = text.split()
        if len(values) != len(self._columns):
            kind = ProblemKind.FIELD_COUNT
            if _NCSA.match(text) or _IIS_NATIVE.match(text):
                kind = ProblemKind.OTHER_FORMAT
            self._problems.add(kind, self._line)
            return None
        if not self._has_status:
            self._problems.add(ProblemKind.MISSING_STATUS, self._line)
            return None
        entry = self._entry(values)
        if entry is None:
            self._problems.add(ProblemKind.BAD_VALUE, self._line)
            return None
        self._entries += 1
        return entry

    def _directive(self, text: str) -> None:
        name, _, value = text[1:].partition(":")
        key = name.strip().lower()
        value = value.strip()
        if key == "fields":
            names = value.split()
            if not names or len(names) > MAX_FIELDS:
                self._problems.add(ProblemKind.BAD_DIRECTIVE, self._line)
                self._columns = None
                return
            lowered = [n.lower() for n in names]
            self._columns = tuple(_COLUMNS.get(n) for n in lowered)
            self._date_index = lowered.index("date") if "date" in lowered else None
            self._time_index = lowered.index("time") if "time" in lowered else None
            self._has_status = "sc-status" in lowered
            self._fields_blocks += 1
        elif key == "date":
            # `#Date: 2024-01-15 08:00:00`: the date for lines without a date column.
            try:
                self._directive_date = date.fromisoformat(value.split()[0])
            except (ValueError, IndexError):
                self._problems.add(ProblemKind.BAD_DIRECTIVE, self._line)
        elif key == "software":
            if value and value not in self._software and len(self._software) < 8:
                self._software.append(value[:200])
        # #Version, #Remark, #Start-Date, #End-Date and plain comments change
        # nothing about how data lines are read.

    def _entry(self, values: list[str]) -> LogEntry | None:
        assert self._columns is not None
        kwargs: dict[str, object] = {}
        for attr, raw in zip(self._columns, values, strict=True):
            if attr is None or raw == "-":
                continue
            if attr in _INT_COLUMNS:
                if not raw.isdigit() or len(raw) > 12:
                    if attr == "status":
                        return None
                    continue
                kwargs[attr] = int(raw)
            elif attr == "user_agent":
                kwargs[attr] = raw.replace("+", " ")
            else:
                kwargs[attr] = raw
        if "status" not in kwargs:
            return None
        readable, timestamp = self._timestamp(values)
        if not readable:
            return None
        uri_stem = kwargs.get("uri_stem")
        if isinstance(uri_stem, str) and "?" in uri_stem and "uri_query" not in kwargs:
            # HTTP.sys `cs-uri` keeps the query on the stem.
            stem, _, query = uri_stem.partition("?")
            kwargs["uri_stem"], kwargs["uri_query"] = stem, query
        return LogEntry(
            line=self._line,
            source=self.source,
            timestamp=timestamp,
            **kwargs,  # type: ignore[arg-type]
        )

    def _timestamp(self, values: list[str]) -> tuple[bool, datetime | None]:
        """(readable, UTC time of the line); the time is None when absent."""
        day = self._directive_date
        if self._date_index is not None:
            raw = values[self._date_index]
            try:
                day = date.fromisoformat(raw)
            except ValueError:
                return False, None
        if self._time_index is None or day is None:
            return True, None
        try:
            clock = time.fromisoformat(values[self._time_index])
        except ValueError:
            return False, None
        return True, datetime.combine(day, clock, tzinfo=UTC)


def parse_lines(lines: Iterable[str], source: str = "") -> tuple[list[LogEntry], ParseReport]:
    """Parse a whole source held as lines (tests, small logs)."""
    parser = W3CLogParser(source)
    entries = [entry for line in lines if (entry := parser.feed(line)) is not None]
    return entries, parser.finish()


# --- summary -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Count:
    """A label and how many times it was seen."""

    key: str
    count: int


@dataclass(frozen=True, slots=True)
class TripleGroup:
    """All 401/403 lines with one (status, substatus, win32) triple."""

    explanation: TripleExplanation
    count: int
    urls: tuple[Count, ...]
    clients: tuple[Count, ...]
    users: tuple[Count, ...]
    first: str

    @property
    def verdict(self) -> Verdict:
        return self.explanation.verdict


@dataclass(frozen=True, slots=True)
class ClientUrl:
    """One client on one URL: its 401/403 triples, successes and verdict.

    never_authenticated: handshake legs only, no success and no explicit
    failure afterwards: the client never completed authentication here.
    """

    client: str
    url: str
    triples: tuple[Count, ...]
    normal_legs: int
    failures: int
    successes: int
    users: tuple[str, ...]
    never_authenticated: bool
    first: str


@dataclass(frozen=True, slots=True)
class LogSummary:
    """What a set of log entries says about authentication.

    failures counts failure lines plus the legs of clients that never
    authenticated; normal_legs counts only legs that were answered by
    credentials or ended in a failure explained elsewhere.
    """

    entries: int
    normal_legs: int
    failures: int
    successes: int
    groups: tuple[TripleGroup, ...]
    per_client_url: tuple[ClientUrl, ...]
    success_users: tuple[Count, ...]
    failure_users: tuple[Count, ...]
    first_time: datetime | None = None
    last_time: datetime | None = None
    extra: tuple[str, ...] = field(default=())

    @property
    def has_failures(self) -> bool:
        return self.failures > 0


def _where(entry: LogEntry) -> str:
    return f"{entry.source}:{entry.line}" if entry.source else f"line {entry.line}"


def _triple_of(entry: LogEntry) -> tuple[int, int, int]:
    return (entry.status, entry.substatus or 0, entry.win32_status or 0)


def _top(counter: Counter[str], limit: int = 10) -> tuple[Count, ...]:
    return tuple(Count(k, n) for k, n in counter.most_common(limit))


class _PairState:
    """Running counts for one (client, URL); bounded by the number of pairs."""

    __slots__ = ("triples", "legs", "fails", "oks", "users", "first")

    def __init__(self, first: str) -> None:
        self.triples: Counter[tuple[int, int, int]] = Counter()
        self.legs = self.fails = self.oks = 0
        self.users: list[str] = []
        self.first = first


class _TripleState:
    __slots__ = ("count", "urls", "clients", "users", "first")

    def __init__(self, first: str) -> None:
        self.count = 0
        self.urls: Counter[str] = Counter()
        self.clients: Counter[str] = Counter()
        self.users: Counter[str] = Counter()
        self.first = first


def _triple_text(triple: tuple[int, int, int]) -> str:
    return " ".join(map(str, triple))


def summarize(entries: Iterable[LogEntry]) -> LogSummary:
    """Group 401s and 403s by triple, and judge each client on each URL.

    Logs have no connection column, so a handshake is followed per
    (client address, URL stem): legs next to a success or an explicit failure
    are normal legs; a pair with legs and nothing else means the client never
    authenticated there (DESIGN.md: judge the sequence, never one 401).
    Entries are consumed as a stream; only counters are kept.
    """
    explanations: dict[tuple[int, int, int], TripleExplanation] = {}
    by_triple: dict[tuple[int, int, int], _TripleState] = {}
    pairs: dict[tuple[str, str], _PairState] = {}
    success_users: Counter[str] = Counter()
    failure_users: Counter[str] = Counter()
    total = successes = 0
    first_time: datetime | None = None
    last_time: datetime | None = None

    for entry in entries:
        total += 1
        if entry.timestamp is not None:
            first_time = min(first_time or entry.timestamp, entry.timestamp)
            last_time = max(last_time or entry.timestamp, entry.timestamp)
        key = (entry.client_ip or "-", entry.uri_stem or "-")
        if 200 <= entry.status < 400:
            successes += 1
            if entry.username:
                success_users[entry.username] += 1
            pair = pairs.get(key)
            if pair is not None:
                pair.oks += 1
                if entry.username and entry.username not in pair.users and len(pair.users) < 10:
                    pair.users.append(entry.username)
            continue
        if entry.status not in (401, 403):
            continue
        triple = _triple_of(entry)
        if triple not in explanations:
            explanations[triple] = explain_triple(*triple)
        verdict = explanations[triple].verdict
        state = by_triple.setdefault(triple, _TripleState(_where(entry)))
        state.count += 1
        state.urls[entry.uri_stem or "-"] += 1
        state.clients[entry.client_ip or "-"] += 1
        if entry.username:
            state.users[entry.username] += 1
        pair = pairs.setdefault(key, _PairState(_where(entry)))
        pair.triples[triple] += 1
        if verdict is Verdict.NORMAL_LEG:
            pair.legs += 1
        else:
            pair.fails += 1
            if entry.username:
                failure_users[entry.username] += 1

    per_client_url: list[ClientUrl] = []
    stranded = 0
    for (client, url), pair in pairs.items():
        never = pair.legs > 0 and pair.oks == 0 and pair.fails == 0
        if never:
            stranded += pair.legs
        per_client_url.append(
            ClientUrl(
                client,
                url,
                tuple(Count(_triple_text(t), n) for t, n in pair.triples.most_common(10)),
                pair.legs,
                pair.fails,
                pair.oks,
                tuple(pair.users),
                never,
                pair.first,
            )
        )

    groups = [
        TripleGroup(
            explanations[triple],
            state.count,
            _top(state.urls),
            _top(state.clients),
            _top(state.users),
            state.first,
        )
        for triple, state in by_triple.items()
    ]
    # Failures first, then by count; a stable order for equal counts.
    groups.sort(key=lambda g: (g.verdict is not Verdict.FAILURE, -g.count, g.explanation.triple))
    per_client_url.sort(
        key=lambda c: (
            not (c.failures or c.never_authenticated),
            -(c.failures + c.normal_legs),
            c.client,
            c.url,
        )
    )
    leg_total = sum(g.count for g in groups if g.verdict is Verdict.NORMAL_LEG)
    fail_total = sum(g.count for g in groups if g.verdict is Verdict.FAILURE)
    return LogSummary(
        entries=total,
        normal_legs=leg_total - stranded,
        failures=fail_total + stranded,
        successes=successes,
        groups=tuple(groups),
        per_client_url=tuple(per_client_url),
        success_users=_top(success_users, 20),
        failure_users=_top(failure_users, 20),
        first_time=first_time,
        last_time=last_time,
    )
