"""Match IIS log entries to requests seen in a capture, tolerating a clock offset.

This module owns pairing `LogEntry` values with observed requests given as plain
`(timestamp, client_ip, method, uri, status)` tuples, so it does not depend on
the analysis layer (`authtrace analyze --iis-log` builds the tuples from its
exchanges). It estimates one clock offset between the log (UTC, 1-second
resolution, written when the response ended) and the capture, and reports it.

Invariants: an entry is matched to at most one request and the other way round;
method, URI path and status must agree exactly (the path case-insensitively, as
IIS treats it); work is bounded (`MAX_PAIRS` candidate pairs for the offset).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from authtrace.iis.w3c import LogEntry
from authtrace.words import counted

MAX_PAIRS = 200_000
DEFAULT_MAX_OFFSET = 24 * 3600.0
DEFAULT_TOLERANCE = 2.0


@dataclass(frozen=True, slots=True)
class ObservedRequest:
    """One request seen on the wire and the status it got.

    index: position in the caller's input, to find its exchange again.
    """

    index: int
    timestamp: float
    client_ip: str
    method: str
    uri: str
    status: int


@dataclass(frozen=True, slots=True)
class MatchedEntry:
    """A request and the log line that recorded it.

    residual: seconds between the log time and the request time once the
    estimated offset and the logged time-taken are removed.
    same_client: False when the log shows another client address (NAT, proxy).
    """

    observed: ObservedRequest
    entry: LogEntry
    residual: float
    same_client: bool


@dataclass(frozen=True, slots=True)
class MatchResult:
    """offset: seconds to add to capture times to get log times (0.0 when unknown).

    offset_support: how many candidate pairs agreed on that offset.
    """

    offset: float
    offset_support: int
    matches: tuple[MatchedEntry, ...]
    unmatched_requests: tuple[ObservedRequest, ...]
    unmatched_entries: int
    note: str


def _path(uri: str) -> str:
    """The path of a request target as IIS logs it in cs-uri-stem.

    Absolute-form targets (requests through a proxy) lose scheme and host;
    percent-escapes are decoded because IIS logs the decoded stem.
    """
    try:
        parts = urlsplit(uri)
        path = parts.path if (parts.scheme or uri.startswith("/")) else uri.split("?", 1)[0]
    except ValueError:
        path = uri.split("?", 1)[0]
    return unquote(path or "/").lower()


def _key(method: str, path: str, status: int) -> tuple[str, str, int]:
    return (method.upper(), path, status)


def _log_time(entry: LogEntry) -> float | None:
    if entry.timestamp is None:
        return None
    # IIS writes the line when the response ends: step back by time-taken (ms).
    return entry.timestamp.timestamp() - (entry.time_taken or 0) / 1000.0


def match_entries(
    entries: Iterable[LogEntry],
    requests: Iterable[tuple[float, str, str, str, int]],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    max_offset: float = DEFAULT_MAX_OFFSET,
) -> MatchResult:
    """Pair log entries with observed requests; never raises on odd values."""
    observed: list[ObservedRequest] = []
    for i, row in enumerate(requests):
        try:
            ts, ip, method, uri, status = row
            observed.append(
                ObservedRequest(i, float(ts), str(ip or ""), str(method), str(uri), int(status))
            )
        except (TypeError, ValueError):
            continue  # a malformed tuple cannot be matched; it is simply not a request
    by_key: dict[tuple[str, str, int], list[tuple[float, int, LogEntry]]] = defaultdict(list)
    usable = 0
    for n, entry in enumerate(entries):
        when = _log_time(entry)
        if when is None or entry.method is None or entry.uri_stem is None:
            continue
        usable += 1
        by_key[_key(entry.method, unquote(entry.uri_stem).lower(), entry.status)].append(
            (when, n, entry)
        )
    for items in by_key.values():
        items.sort(key=lambda item: (item[0], item[1]))

    offset, support = _estimate_offset(observed, by_key, max_offset)
    taken: set[int] = set()
    matches: list[MatchedEntry] = []
    unmatched: list[ObservedRequest] = []
    for request in sorted(observed, key=lambda r: (r.timestamp, r.index)):
        candidates = by_key.get(_key(request.method, _path(request.uri), request.status), [])
        target = request.timestamp + offset
        start = bisect_left(candidates, target - tolerance, key=lambda item: item[0])
        best: tuple[tuple[bool, float], int, LogEntry, float] | None = None
        for when, n, entry in candidates[start:]:
            if when > target + tolerance:
                break
            if n in taken:
                continue
            residual = when - target
            same = entry.client_ip == request.client_ip
            rank = (not same, abs(residual))
            if best is None or rank < best[0]:
                best = (rank, n, entry, residual)
        if best is None:
            unmatched.append(request)
            continue
        (other_client, _distance), n, entry, residual = best
        taken.add(n)
        matches.append(MatchedEntry(request, entry, residual, not other_client))

    note = _note(offset, support, tolerance, len(matches), len(observed))
    return MatchResult(offset, support, tuple(matches), tuple(unmatched), usable - len(taken), note)


def _estimate_offset(
    observed: Sequence[ObservedRequest],
    by_key: dict[tuple[str, str, int], list[tuple[float, int, LogEntry]]],
    max_offset: float,
) -> tuple[float, int]:
    """The most common whole-second difference between log and capture times.

    Every request votes for each same-key log line within max_offset; the true
    offset collects one vote per matched pair while wrong pairings scatter.
    """
    votes: Counter[int] = Counter()
    pairs = 0
    for request in observed:
        candidates = by_key.get(_key(request.method, _path(request.uri), request.status), [])
        start = bisect_left(candidates, request.timestamp - max_offset, key=lambda item: item[0])
        for when, _n, entry in candidates[start:]:
            delta = when - request.timestamp
            if delta > max_offset:
                break
            # Same-client pairs weigh more: they are far likelier to be true pairs.
            votes[round(delta)] += 2 if entry.client_ip == request.client_ip else 1
            pairs += 1
            if pairs >= MAX_PAIRS:
                break
        if pairs >= MAX_PAIRS:
            break
    if not votes:
        return 0.0, 0
    # Log times are truncated to the second: smooth over neighbouring bins.
    best = max(votes, key=lambda s: (votes[s - 1] + votes[s] + votes[s + 1], votes[s], -abs(s)))
    window = (best - 1, best, best + 1)
    weight = sum(votes[s] for s in window)
    mean = sum(s * votes[s] for s in window) / weight
    return float(round(mean, 1)), weight


def _note(offset: float, support: int, tolerance: float, matched: int, total: int) -> str:
    if not total:
        return "no requests to match"
    if not support:
        return "no log line has the method, URI and status of a captured request"
    text = f"{matched} of {counted(total, 'request')} matched a log line"
    if abs(offset) > tolerance:
        ahead = "ahead of" if offset > 0 else "behind"
        text += f"; the log clock is {abs(offset):.1f} s {ahead} the capture's"
    return text
