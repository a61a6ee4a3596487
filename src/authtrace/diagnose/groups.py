"""The steps a grouping rule selected, by key: the state such a rule carries
from block to block and what its report reads (diagnose/rule.py
grouping_rule, issue 10).

This module owns that state. `Collected` keeps it in columns: for each step
selected, its key's number, connection id, position and request time, in
arrays of 8 bytes each, and each key once (a dict of key to number). A key
marked seen without a step costs its dict entry only. Reading a key gives a
`Steps` view, which locates a step (its whole timeline, read back from the
store when spilled: handshake/store.py) only when the report asks for that
step; `Steps.time`, `Steps.place` and `Steps.connection` answer without
locating, so a report that orders or compares steps by time reads only the
steps its findings cite.

Why columns: the healthy case is the big one. Some rules select a step of
nearly every connection (auth-lost-on-new-connection keeps each completed
logon, client-ignores-negotiate marks each client that answered), and with
one client per connection (the Kerberos benchmark profile) each key held a
list and a reference object per step: the three such rules held 4.3 MB at
4,000 connections (17 MB at 16,000) until the end; in columns 2.1 MB.
What stays per key is its dict entry and the key itself (a tuple of shared
strings: diagnose/context.py Located.server).

Invariants: a key's steps read in capture order (connection, position), the
order selects yield them in; keys iterate in the order of their first step,
keys only marked seen after them in the order they were first marked;
`absorb` (the steps of another block) gives what one collection over both
blocks gives. A step whose timeline is not the one the timelines by id hold
under its connection (a context made of other timelines) is kept as it came.
"""

from __future__ import annotations

from array import array
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, overload

from authtrace.handshake.links import request_time
from authtrace.handshake.timeline import ConnectionTimeline

if TYPE_CHECKING:
    from authtrace.diagnose.context import Located


class Collected(Mapping[Hashable, "Steps"]):
    """A grouping rule's selected steps by key (see the module's docstring).
    Cost: O(1) amortized to add a step or mark a key, O(s log s) once for the
    first read after adding (the s steps put in key and capture order), O(1)
    to read a key's view."""

    __slots__ = (
        "_timelines",
        "_keys",
        "_key",
        "_connection",
        "_position",
        "_time",
        "_odd",
        "_index",
    )

    def __init__(self, timelines: Mapping[int, ConnectionTimeline]) -> None:
        """timelines: the timelines by id the steps are located in (those
        that outlive a block's context: diagnose/context.py lasting_timelines)."""
        self._timelines = timelines
        self._keys: dict[Hashable, int] = {}  # key -> its number, in the order first met
        self._key = array("q")  # per step: its key's number
        self._connection = array("q")
        self._position = array("q")
        self._time = array("d")
        self._odd: dict[int, Located] = {}  # step number -> a step kept as it came
        # Made on the first read after adding: the keys in reading order, and
        # for each key number its step numbers' slice of one sorted array.
        self._index: tuple[list[Hashable], array[int], dict[int, tuple[int, int]]] | None = None

    @property
    def timelines(self) -> Mapping[int, ConnectionTimeline]:
        """The timelines by id the steps are located in."""
        return self._timelines

    def mark(self, key: Hashable) -> None:
        """Mark `key` as seen, keeping no step."""
        self._number(key)

    def add(self, key: Hashable, located: Located, by_id: Mapping[int, ConnectionTimeline]) -> None:
        """Add `located` under `key`: a step of the view whose timelines by id
        are `by_id` (they or the timelines behind them)."""
        connection = located.timeline.connection.id
        number = self._number(key)
        if by_id.get(connection) is not located.timeline:
            self._odd[len(self._key)] = located
        self._key.append(number)
        self._connection.append(connection)
        self._position.append(located.position)
        self._time.append(request_time(located.step))
        self._index = None

    def absorb(self, other: Collected) -> None:
        """Add every key and step of `other` (another block's), as if they had
        been added here. O(s + k) in its steps and keys."""
        numbers = [self._number(key) for key in other._keys]
        offset = len(self._key)
        other_timelines = other._timelines is self._timelines
        for step, number in enumerate(other._key):
            if not other_timelines or step in other._odd:
                self._odd[offset + step] = other._located(step)
            self._key.append(numbers[number])
        self._connection.extend(other._connection)
        self._position.extend(other._position)
        self._time.extend(other._time)
        self._index = None

    def _number(self, key: Hashable) -> int:
        number = self._keys.get(key)
        if number is None:
            number = self._keys[key] = len(self._keys)
            self._index = None
        return number

    def _located(self, step: int) -> Located:
        odd = self._odd.get(step)
        if odd is not None:
            return odd
        from authtrace.diagnose.context import Located

        timeline = self._timelines[self._connection[step]]
        position = self._position[step]
        return Located(timeline, position, timeline.steps[position])

    def _indexed(self) -> tuple[list[Hashable], array[int], dict[int, tuple[int, int]]]:
        if self._index is None:
            key, connection, position = self._key, self._connection, self._position
            order = array(
                "q",
                sorted(range(len(key)), key=lambda s: (key[s], connection[s], position[s])),
            )
            spans: dict[int, tuple[int, int]] = {}
            start = 0
            for end in range(1, len(order) + 1):
                if end == len(order) or key[order[end]] != key[order[start]]:
                    spans[key[order[start]]] = (start, end)
                    start = end
            # Keys by their first step's place; marked-only keys last, as met.
            last = (float("inf"), 0)

            def first(item: tuple[Hashable, int]) -> tuple[float, int]:
                span = spans.get(item[1])
                if span is None:
                    return last
                step = order[span[0]]
                return (connection[step], position[step])

            keys = [k for k, _n in sorted(self._keys.items(), key=first)]
            self._index = (keys, order, spans)
        return self._index

    def __getitem__(self, key: Hashable) -> Steps:
        number = self._keys[key]
        _keys, order, spans = self._indexed()
        start, end = spans.get(number, (0, 0))
        return Steps(self, order, start, end)

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._indexed()[0])

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    @property
    def steps(self) -> int:
        """How many steps were selected (under every key)."""
        return len(self._key)

    def __repr__(self) -> str:
        return f"Collected({len(self._keys)} keys, {len(self._key)} steps)"


class Steps(Sequence["Located"]):
    """The steps of one key of a `Collected`, in capture order; item i is
    located on each access (a Located holds its whole timeline)."""

    __slots__ = ("_collected", "_order", "_start", "_end")

    def __init__(self, collected: Collected, order: array[int], start: int, end: int) -> None:
        self._collected = collected
        self._order = order
        self._start = start
        self._end = end

    def __len__(self) -> int:
        return self._end - self._start

    def _step(self, index: int) -> int:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self._order[self._start + index % len(self)]

    def time(self, index: int) -> float:
        """The request time of step `index`, without locating it."""
        return self._collected._time[self._step(index)]

    def connection(self, index: int) -> int:
        """The connection id of step `index`, without locating it."""
        return self._collected._connection[self._step(index)]

    def place(self, index: int) -> tuple[int, int]:
        """Where step `index` is in the capture, (connection id, position),
        without locating it."""
        step = self._step(index)
        return (self._collected._connection[step], self._collected._position[step])

    @overload
    def __getitem__(self, index: int) -> Located: ...
    @overload
    def __getitem__(self, index: slice) -> list[Located]: ...
    def __getitem__(self, index: int | slice) -> Located | list[Located]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self._collected._located(self._step(index))

    def __iter__(self) -> Iterator[Located]:
        located = self._collected._located
        for n in range(self._start, self._end):
            yield located(self._order[n])

    def __repr__(self) -> str:
        return f"Steps({len(self)} steps)"


__all__ = ["Collected", "Steps"]
