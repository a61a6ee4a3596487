"""Time-window indexes for the cross-connection steps of `links.py`.

This module owns the one data structure every cross-connection question goes
through: entries grouped by a key (a client address, a server, a service
principal...) and sorted by time, so that "which entries under this key fall
between t0 and t1" costs O(log n + k) for k answers instead of a scan of every
connection. Building an index over n entries costs O(n log n).

Invariant: an index is immutable once built, except for `take`, which removes
an entry for good (a CHALLENGE that one AUTHENTICATE has claimed) in amortised
O(α(n)) through path-compressed skip links, so a search never walks over taken
entries twice.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Iterator
from operator import itemgetter
from typing import Generic, TypeVar

Item = TypeVar("Item")
_TIME = itemgetter(0)


class _Run(Generic[Item]):
    """The entries of one key, in time order (ties in insertion order)."""

    __slots__ = ("times", "items", "skip")

    def __init__(self, entries: list[tuple[float, Item]]) -> None:
        # entries come in insertion order and the sort is stable: ties stay in it.
        entries.sort(key=_TIME)
        self.times = [entry[0] for entry in entries]
        self.items = [entry[1] for entry in entries]
        # skip[i] == i while entry i is available; a taken entry points left.
        self.skip = list(range(len(entries)))

    def _find(self, index: int) -> int:
        """The nearest available entry at or left of `index` (-1 when none)."""
        skip = self.skip
        root = index
        while root >= 0 and skip[root] != root:
            root = skip[root]
        while index >= 0 and skip[index] != index:  # path compression
            skip[index], index = root, skip[index]
        return root


class TimeIndex(Generic[Item]):
    """Items grouped by key and sorted by time within each key."""

    __slots__ = ("_runs",)

    def __init__(self, entries: Iterable[tuple[Hashable, float, Item]]) -> None:
        """entries: (key, time, item). Cost O(n log n)."""
        grouped: dict[Hashable, list[tuple[float, Item]]] = defaultdict(list)
        for key, when, item in entries:
            grouped[key].append((when, item))
        self._runs = {key: _Run(found) for key, found in grouped.items()}

    def __bool__(self) -> bool:
        return bool(self._runs)

    def between(self, key: Hashable, start: float, end: float) -> list[Item]:
        """Items under `key` with start <= time <= end, in time order (taken ones
        included: `between` answers what was seen). O(log n + k)."""
        run = self._runs.get(key)
        if run is None:
            return []
        return run.items[bisect_left(run.times, start) : bisect_right(run.times, end)]

    def first_at_or_after(self, key: Hashable, start: float) -> float | None:
        """The earliest time under `key` that is >= start. O(log n)."""
        run = self._runs.get(key)
        if run is None:
            return None
        index = bisect_left(run.times, start)
        return run.times[index] if index < len(run.times) else None

    def latest(
        self,
        key: Hashable,
        start: float,
        end: float,
        accept: Callable[[Item], bool] = lambda item: True,
        limit: int | None = None,
    ) -> Item | None:
        """The latest available (not taken) item under `key` in [start, end] that
        `accept` admits, looking at `limit` items at most. O(log n + r) where r
        counts the rejected items walked over; callers keep r bounded (it is the
        caller's own connection, or `limit`)."""
        run = self._runs.get(key)
        if run is None:
            return None
        low = bisect_left(run.times, start)
        index = run._find(bisect_right(run.times, end) - 1)
        walked = 0
        while index >= low and (limit is None or walked < limit):
            item = run.items[index]
            if accept(item):
                return item
            walked += 1
            index = run._find(index - 1)
        return None

    def take(self, key: Hashable, when: float, item: Item) -> None:
        """Remove `item` (filed under `key` at `when`) from later `latest` answers."""
        run = self._runs.get(key)
        if run is None:
            return
        index = bisect_left(run.times, when)
        end = bisect_right(run.times, when)
        while index < end:
            if run.items[index] is item or run.items[index] == item:
                run.skip[index] = index - 1
                return
            index += 1

    def keys(self) -> Iterator[Hashable]:
        return iter(self._runs)
