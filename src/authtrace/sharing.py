"""One copy of the small values that repeat across a capture's connections.

A run keeps every judged message until its report (issue 10), and much of what
each holds is the same across connections: start lines, header tuples, error
pages, NTLM names and AV pairs, version numbers. `SharedTable.share` returns
the equal value it already holds, so that memory holds one copy of each.

Invariant: a table never holds more than its `limit` values (it starts over
when full), and `share` returns a value equal to the one given (values are
immutable: frozen dataclasses, str, bytes, tuples of them).
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")

DEFAULT_LIMIT = 4096


class SharedTable(Generic[T]):
    """A bounded table of values, each its own key."""

    __slots__ = ("_values", "_limit")

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self._values: dict[T, T] = {}
        self._limit = limit

    def share(self, value: T) -> T:
        """`value`, or the equal one the table already holds."""
        values = self._values
        seen = values.get(value)
        if seen is not None:
            return seen
        if len(values) >= self._limit:
            values.clear()
        values[value] = value
        return value

    def __len__(self) -> int:
        return len(self._values)


__all__ = ["DEFAULT_LIMIT", "SharedTable"]
