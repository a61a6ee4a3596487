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

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")


def place(column: Sequence[int], value: int) -> int:
    """Where `value` is in a sorted column of ints (an array of ids), or -1.
    O(log n). The compact id sets and maps of links.py and store.py look up
    through it."""
    index = bisect_left(column, value)
    return index if index < len(column) and column[index] == value else -1


class TimeIndex(Generic[Item]):
    """Items grouped by key and sorted by time within each key.

    Layout: every entry in one flat run of columns (times, items, skip
    links), the entries of a key side by side in time order (ties in
    insertion order), and each key once, mapped to its span of the columns.
    A key costs its dict entry and one int, an entry 24 bytes: an index keyed
    by client address with one entry for most keys (the KDC exchanges of the
    Kerberos benchmark profile, one client a connection) is a quarter of
    what a list per key and column weighed (issue 10).
    """

    __slots__ = ("_spans", "_times", "_items", "_skip")

    def __init__(self, entries: Iterable[tuple[Hashable, float, Item]]) -> None:
        """entries: (key, time, item). Cost O(n log n)."""
        numbers: dict[Hashable, int] = {}
        keyed = array("q")
        times: list[float] = []
        items: list[Item] = []
        for key, when, item in entries:
            number = numbers.get(key)
            if number is None:
                number = numbers[key] = len(numbers)
            keyed.append(number)
            times.append(when)
            items.append(item)
        # Stable: entries of one key at one time keep their insertion order.
        order = sorted(range(len(items)), key=lambda n: (keyed[n], times[n]))
        self._times = array("d", (times[n] for n in order))
        self._items = [items[n] for n in order]
        # skip[i] == i while entry i is available; a taken entry points left.
        self._skip = array("q", range(len(order)))
        starts = [0] * (len(numbers) + 1)
        for number in keyed:
            starts[number + 1] += 1
        for number in range(len(numbers)):
            starts[number + 1] += starts[number]
        # key -> its span, packed in one int: start << 32 | end.
        self._spans = {key: starts[n] << 32 | starts[n + 1] for key, n in numbers.items()}

    def __bool__(self) -> bool:
        return bool(self._spans)

    def _span(self, key: Hashable) -> tuple[int, int] | None:
        span = self._spans.get(key)
        return None if span is None else (span >> 32, span & 0xFFFFFFFF)

    def _find(self, index: int) -> int:
        """The nearest available entry at or left of `index` (-1 when none;
        it may lie in the span of the key before: callers bound it)."""
        skip = self._skip
        root = index
        while root >= 0 and skip[root] != root:
            root = skip[root]
        while index >= 0 and skip[index] != index:  # path compression
            skip[index], index = root, skip[index]
        return root

    def between(self, key: Hashable, start: float, end: float) -> list[Item]:
        """Items under `key` with start <= time <= end, in time order (taken ones
        included: `between` answers what was seen). O(log n + k)."""
        span = self._span(key)
        if span is None:
            return []
        low, high = span
        times = self._times
        first = bisect_left(times, start, low, high)
        return self._items[first : bisect_right(times, end, low, high)]

    def first_at_or_after(self, key: Hashable, start: float) -> float | None:
        """The earliest time under `key` that is >= start. O(log n)."""
        span = self._span(key)
        if span is None:
            return None
        index = bisect_left(self._times, start, *span)
        return self._times[index] if index < span[1] else None

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
        span = self._span(key)
        if span is None:
            return None
        low = bisect_left(self._times, start, *span)
        index = self._find(bisect_right(self._times, end, *span) - 1)
        walked = 0
        while index >= low and (limit is None or walked < limit):
            item = self._items[index]
            if accept(item):
                return item
            walked += 1
            index = self._find(index - 1)
        return None

    def take(self, key: Hashable, when: float, item: Item) -> None:
        """Remove `item` (filed under `key` at `when`) from later `latest` answers."""
        span = self._span(key)
        if span is None:
            return
        index = bisect_left(self._times, when, *span)
        end = bisect_right(self._times, when, *span)
        while index < end:
            if self._items[index] is item or self._items[index] == item:
                self._skip[index] = index - 1
                return
            index += 1

    def keys(self) -> Iterator[Hashable]:
        return iter(self._spans)
