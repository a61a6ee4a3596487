"""One copy of what repeats: values across a capture's connections, and the
bytes of one token inside the records that hold it.

A run keeps every judged message until its report (issue 10), and much of what
each holds is the same across connections: start lines, header tuples, error
pages, NTLM names and AV pairs, version numbers. `SharedTable.share` returns
the equal value it already holds, so that memory holds one copy of each.

One token is also held in several places of one record: the header's base64
text, the step's raw bytes, the SPNEGO mechToken, the Kerberos message and its
cipher texts inside it. A field that `lazy_fields` declares may hold a `Part`
(a slice of a buffer kept elsewhere) or a `Base64Of` (the base64 text of bytes
kept elsewhere) instead of its own copy, and reads as the value either way.

Invariants: a table never holds more than its `limit` values (it starts over
when full), and `share` returns a value equal to the one given (values are
immutable: frozen dataclasses, str, bytes, tuples of them). A lazy field reads
as the very value it was built with: readers, renderers, `==`, `hash`, `repr`
and `copy` never see a `Part` or a `Base64Of`; `pickle` keeps them (with the
buffer they refer to once, by pickle's memo) so a record read back is as small.
"""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
C = TypeVar("C", bound=type)


@dataclass(frozen=True, slots=True)
class Part:
    """Bytes kept as their place in a buffer that something else keeps too:
    `source[start:end]`. A `Part` refers to `source` (it holds no copy)."""

    source: bytes
    start: int
    end: int

    def resolve(self) -> bytes:
        return self.source[self.start : self.end]


@dataclass(frozen=True, slots=True)
class Base64Of:
    """Text that is `prefix` then the base64 (RFC 4648 section 4, padded) of
    `data`, bytes that something else keeps too (a header value ``Negotiate
    <token>`` whose token the decoded step keeps)."""

    prefix: str
    data: bytes

    def resolve(self) -> str:
        return self.prefix + base64.b64encode(self.data).decode("ascii")


_LAZY = (Part, Base64Of)


class _LazyField:
    """A slot that may hold a `Part` or a `Base64Of` and reads as its value.

    slot: the slot's own descriptor (authtrace/fastinit.py builds objects
    through it, so construction costs what it did)."""

    __slots__ = ("slot", "__name__")

    def __init__(self, slot: Any, name: str) -> None:
        self.slot = slot
        self.__name__ = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = self.slot.__get__(obj, owner)
        if type(value) in _LAZY:
            return value.resolve()
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        self.slot.__set__(obj, value)

    def __delete__(self, obj: Any) -> None:
        self.slot.__delete__(obj)

    def held(self, obj: Any) -> Any:
        """What the slot holds: the value, a Part or a Base64Of."""
        return self.slot.__get__(obj, type(obj))


def lazy_fields(*names: str, inside: tuple[str, ...] = ()) -> Any:
    """Class decorator for a slots dataclass (put it above ``@dataclass``):
    the fields `names` may hold a `Part` or a `Base64Of` and read as its value.
    Pickling keeps what the slot holds. inside: the fields that hold decoded
    objects with lazy fields of their own, which `keep_one_copy` follows."""

    def install(cls: C) -> C:
        for name in names:
            setattr(cls, name, _LazyField(cls.__dict__[name], name))
        if names:
            every = tuple(item.name for item in dataclasses.fields(cls))
            lazy = frozenset(names)

            def __getstate__(self: Any) -> list[Any]:
                return [
                    getattr(cls, name).held(self) if name in lazy else getattr(self, name)
                    for name in every
                ]

            setattr(cls, "__getstate__", __getstate__)  # noqa: B010 - installed on a made class
        setattr(cls, "_lazy_plan", (tuple(cls.__dict__[name] for name in names), inside))  # noqa: B010
        return cls

    return install


# Values shorter than this stay bytes: a Part costs about as much as 64 bytes.
MIN_SHARED = 64

# At most this many objects are visited for one token (a SPNEGO wrapper, the
# Kerberos message, its ticket and encrypted parts are six).
MAX_SHARED_OBJECTS = 32


def keep_one_copy(obj: Any, source: bytes) -> None:
    """Let every lazy bytes field of `obj` and of the decoded objects its
    `inside` fields hold hold its bytes as a `Part` of `source` where they are
    a slice of it.

    `obj` was just decoded from `source` and is not yet anyone else's (a
    Kerberos ticket from the decoder's cache may be: its fields keep the same
    values, so every holder reads what it read before; a field already a Part
    is left as it is). Cost: one `bytes.find` per field of at least
    MIN_SHARED bytes, over a token of a few KiB, and a few attribute reads per
    object visited."""
    pending = [obj]
    visited = 0
    while pending and visited < MAX_SHARED_OBJECTS:
        current = pending.pop()
        visited += 1
        plan = getattr(type(current), "_lazy_plan", None)
        if plan is None:
            continue
        lazy, inside = plan
        for descriptor in lazy:
            value = descriptor.held(current)
            if type(value) is bytes and len(value) >= MIN_SHARED and value is not source:
                start = source.find(value)
                if start >= 0:
                    descriptor.slot.__set__(current, Part(source, start, start + len(value)))
        for name in inside:
            value = getattr(current, name)
            if value is not None:
                pending.append(value)


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


__all__ = ["DEFAULT_LIMIT", "Base64Of", "Part", "SharedTable", "keep_one_copy", "lazy_fields"]
