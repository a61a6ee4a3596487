"""Where a run keeps its judged timelines once they are linked, until the
report is written (issue 10).

This module owns keeping the judged `ConnectionTimeline`s of a capture by
connection id: in memory up to a budget (`SPILL_BUDGET` timelines), the rest
pickled to disk in chunks of `CHUNK_SIZE` (authtrace/spool.py, written with
authtrace/fastinit.dumps), of which the `LOADED_CHUNKS` last read stay loaded.
A view of the judged connections (handshake/links.py HandshakeView) reads them
through `stored_timelines`: a plain tuple and dict while nothing was spilled,
else the read-only `StoredSequence` / `StoredMapping` over the store.

Invariant: `store[i]` is equal to the timeline added under id `i` (a spilled
one is a copy read back, not the same object); iteration is in connection-id
order whatever order the timelines were added in. Memory holds at most
SPILL_BUDGET + CHUNK_SIZE added timelines plus LOADED_CHUNKS chunks read
back, and per spilled id its chunk number and its place in the sorted ids
(a dict entry while timelines come; 24 bytes in columns once `finish`ed).

Costs (measured on the auth-dense profiles): pickling about 170 us a
timeline, reading back about 100-130 us a timeline. A look-up of a timeline
in a loaded chunk is O(1); iteration in id order reads each chunk once when
the timelines were added in about id order (each chunk is sorted by id
before it is written, and connections are judged in id order), so a pass over
n spilled timelines costs about n x 120 us. Chunks are small (8) because not
every reader goes in id order: a grouping rule's report reads its groups one
key at a time (diagnose/context.py Steps), each key's steps spread over the
whole capture, and every step not loaded costs its whole chunk: with chunks
of 256 the mix profile at budget 0 took 250 s instead of 7 s.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any, overload

from authtrace import fastinit
from authtrace.handshake.index import place
from authtrace.handshake.timeline import ConnectionTimeline
from authtrace.spool import Held, Spool

# Timelines a run keeps in memory before it spills the others to disk: about
# 8 MB of judged timelines (some 8 KB each on the auth-dense profiles), so
# that the peak is what is open (the linking window, one block's context for
# its rules) plus what each connection leaves behind, not the capture.
# Every scenario and lab capture fits; past it a timeline costs about 0.2 ms
# more (pickled once, read back by the per-block rules, by the KDC links when
# there are KDC exchanges, by the ladders that draw it and twice by --json).
# Measured (analyze --jobs 1, /usr/bin/time, 16k connections; README
# "Performance"): at 16,384 (nothing spilled below that) the proxy and
# Kerberos profiles peaked at 161 and 180 MB in 12.6 and 14.9 s; at 1024, 87
# and 105 MB in 15.1 and 17.7 s; at 4k connections 68-70 MB either way.
SPILL_BUDGET = 1024
# Timelines pickled together. Measured at budget 0 (analyze and the text
# report, CPU seconds): mix 4000 connections: 4: 8.1, 8: 7.0, 32: 7.9, 256:
# 250 (sparse reads, see above); proxy 4000: 8: 5.9, 256: 6.2.
CHUNK_SIZE = 8
# Chunks read back that stay loaded (least recently used goes first): 1024
# timelines, about 8 MB; a block and its neighbours, read in id order, fall
# in consecutive chunks.
LOADED_CHUNKS = 128


class TimelineStore:
    """Judged timelines by connection id, in memory up to a budget, the rest
    spilled to disk in chunks (see the module's docstring)."""

    __slots__ = (
        "_budget",
        "_chunk_size",
        "_loaded_chunks",
        "_held",
        "_chunk_of",
        "_spilled_ids",
        "_spilled_chunks",
        "_chunks",
        "_loaded",
        "_ids",
        "_spool",
        "spilled",
        "chunk_reads",
    )

    def __init__(
        self,
        budget: int | None = None,
        chunk_size: int | None = None,
        loaded_chunks: int | None = None,
    ) -> None:
        """budget, chunk_size, loaded_chunks: SPILL_BUDGET, CHUNK_SIZE and
        LOADED_CHUNKS, as the module holds them when the store is made, for None."""
        self._budget = SPILL_BUDGET if budget is None else budget
        self._chunk_size = max(1, CHUNK_SIZE if chunk_size is None else chunk_size)
        self._loaded_chunks = max(1, LOADED_CHUNKS if loaded_chunks is None else loaded_chunks)
        self._held: dict[int, ConnectionTimeline] = {}  # not spilled, in the order added
        self._chunk_of: dict[int, int] = {}  # spilled id -> its chunk, while adding
        # Once finished, the same in two columns sorted by id (16 bytes an id,
        # where the dict and the ints it kept alive took about 70).
        self._spilled_ids = array("q")
        self._spilled_chunks = array("q")
        self._chunks: list[Held[list[ConnectionTimeline]]] = []
        self._loaded: OrderedDict[int, dict[int, ConnectionTimeline]] = OrderedDict()
        self._ids: Sequence[int] | None = None  # every id, sorted; made on first use
        self._spool: Spool | None = None
        self.spilled = 0
        """How many timelines were written to disk (a test's evidence)."""
        self.chunk_reads = 0
        """How many chunks were read back."""

    def __len__(self) -> int:
        return len(self._held) + len(self._chunk_of) + len(self._spilled_ids)

    def __contains__(self, connection: object) -> bool:
        return connection in self._held or self._chunk_number(connection) is not None

    def __getitem__(self, connection: int) -> ConnectionTimeline:
        """The timeline of `connection` (KeyError when none). O(1) (O(log n)
        for a spilled one once the store is finished), plus reading its chunk
        back when it is not loaded (O(CHUNK_SIZE))."""
        found = self._held.get(connection)
        if found is not None:
            return found
        number = self._chunk_number(connection)
        if number is None:
            raise KeyError(connection)
        return self._chunk(number)[connection]

    def _chunk_number(self, connection: object) -> int | None:
        number = self._chunk_of.get(connection)  # type: ignore[call-overload]
        if number is not None or not isinstance(connection, int):
            return number
        index = place(self._spilled_ids, connection)
        return self._spilled_chunks[index] if index >= 0 else None

    def __iter__(self) -> Iterator[ConnectionTimeline]:
        """Every timeline in connection-id order."""
        for connection in self.ids():
            yield self[connection]

    @property
    def budget(self) -> int:
        """Timelines this store keeps in memory."""
        return self._budget

    @property
    def has_spilled(self) -> bool:
        return bool(self._chunk_of) or bool(self._spilled_ids)

    def ids(self) -> Sequence[int]:
        """Every connection id held, sorted (shared: do not change it).
        O(n log n) once after the last `add`, then O(1)."""
        if self._ids is None:
            self._ids = array("q", sorted([*self._held, *self._chunk_of, *self._spilled_ids]))
        return self._ids

    def add(self, timeline: ConnectionTimeline) -> None:
        """Keep `timeline` (ValueError if its connection id is already held);
        past the budget the CHUNK_SIZE longest held go to disk. Amortised O(1)
        plus the pickling of what spills."""
        connection = timeline.connection.id
        if connection in self:
            raise ValueError(f"connection {connection} is already in the store")
        self._held[connection] = timeline
        self._ids = None
        if len(self._held) >= self._budget + self._chunk_size:
            self._spill(self._chunk_size)

    def extend(self, timelines: Iterable[ConnectionTimeline]) -> None:
        for timeline in timelines:
            self.add(timeline)

    def finish(self) -> None:
        """No more timelines come: spill what the budget does not hold, and
        keep the spilled ids in columns."""
        while len(self._held) > self._budget:
            self._spill(min(self._chunk_size, len(self._held) - self._budget))
        if self._chunk_of:
            spilled = sorted(
                [
                    *self._chunk_of.items(),
                    *zip(self._spilled_ids, self._spilled_chunks, strict=True),
                ]
            )
            self._spilled_ids = array("q", (connection for connection, _n in spilled))
            self._spilled_chunks = array("q", (number for _c, number in spilled))
            self._chunk_of = {}

    def _spill(self, count: int) -> None:
        """Write the `count` timelines held longest as one chunk, sorted by id."""
        oldest = list(islice(self._held, count))
        chunk = sorted((self._held.pop(i) for i in oldest), key=_connection_id)
        if self._spool is None:
            self._spool = Spool(dumps=fastinit.dumps)
        number = len(self._chunks)
        # A full disk keeps the chunk in memory (spool.Inline): nothing is lost.
        self._chunks.append(self._spool.put(chunk))
        for timeline in chunk:
            self._chunk_of[timeline.connection.id] = number
        self.spilled += len(chunk)

    def _chunk(self, number: int) -> dict[int, ConnectionTimeline]:
        loaded = self._loaded.get(number)
        if loaded is not None:
            self._loaded.move_to_end(number)
            return loaded
        self.chunk_reads += 1
        loaded = {t.connection.id: t for t in self._chunks[number].get()}
        self._loaded[number] = loaded
        while len(self._loaded) > self._loaded_chunks:
            self._loaded.popitem(last=False)
        return loaded


def _connection_id(timeline: ConnectionTimeline) -> int:
    return timeline.connection.id


class StoredSequence(Sequence[ConnectionTimeline]):
    """The timelines of a store whose ids are in [low, high), in id order:
    read-only, read through the store on each access."""

    __slots__ = ("_store", "_low", "_high")

    def __init__(self, store: TimelineStore, low: int | None = None, high: int | None = None):
        self._store = store
        self._low = low
        self._high = high

    def _span(self) -> tuple[Sequence[int], int, int]:
        ids = self._store.ids()
        start = 0 if self._low is None else bisect_left(ids, self._low)
        end = len(ids) if self._high is None else bisect_left(ids, self._high)
        return ids, start, end

    def __len__(self) -> int:
        _ids, start, end = self._span()
        return end - start

    @overload
    def __getitem__(self, index: int) -> ConnectionTimeline: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[ConnectionTimeline, ...]: ...

    def __getitem__(
        self, index: int | slice
    ) -> ConnectionTimeline | tuple[ConnectionTimeline, ...]:
        ids, start, end = self._span()
        mine = range(start, end)
        if isinstance(index, slice):
            return tuple(self._store[ids[i]] for i in mine[index])
        return self._store[ids[mine[index]]]

    def __iter__(self) -> Iterator[ConnectionTimeline]:
        ids, start, end = self._span()
        store = self._store
        for position in range(start, end):
            yield store[ids[position]]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Pickled (to another process, a file), the view is the timelines it shows.
        return (tuple, (tuple(self),))

    def __repr__(self) -> str:
        return f"StoredSequence({len(self)} timelines)"


class StoredMapping(Mapping[int, ConnectionTimeline]):
    """Connection id -> timeline over the ids in [low, high) of a store:
    read-only, read through the store on each look-up."""

    __slots__ = ("_store", "_low", "_high", "_listed")

    def __init__(self, store: TimelineStore, low: int | None = None, high: int | None = None):
        self._store = store
        self._low = low
        self._high = high
        self._listed = StoredSequence(store, low, high)

    def _mine(self, connection: object) -> bool:
        if not isinstance(connection, int):
            return False
        if self._low is not None and connection < self._low:
            return False
        return self._high is None or connection < self._high

    def __getitem__(self, connection: int) -> ConnectionTimeline:
        if not self._mine(connection):
            raise KeyError(connection)
        return self._store[connection]

    def __contains__(self, connection: object) -> bool:
        return self._mine(connection) and connection in self._store

    def __len__(self) -> int:
        return len(self._listed)

    def __iter__(self) -> Iterator[int]:
        ids, start, end = self._listed._span()
        return iter(ids[start:end])

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (dict, (dict(self.items()),))

    def __repr__(self) -> str:
        return f"StoredMapping({len(self)} timelines)"


class NearFirst(Mapping[int, ConnectionTimeline]):
    """A mapping of timelines (`whole`) whose look-ups try `near` first: the
    timelines of one block's context already read from the store
    (HandshakeView.around). Its keys, length and iteration are `whole`'s;
    `near` must hold only items of `whole`."""

    __slots__ = ("_near", "_whole")

    def __init__(
        self, near: dict[int, ConnectionTimeline], whole: Mapping[int, ConnectionTimeline]
    ) -> None:
        self._near = near
        self._whole = whole

    @property
    def whole(self) -> Mapping[int, ConnectionTimeline]:
        """The mapping behind: what outlives the context."""
        return self._whole

    def __getitem__(self, connection: int) -> ConnectionTimeline:
        found = self._near.get(connection)
        return found if found is not None else self._whole[connection]

    def __contains__(self, connection: object) -> bool:
        return connection in self._near or connection in self._whole

    def __len__(self) -> int:
        return len(self._whole)

    def __iter__(self) -> Iterator[int]:
        return iter(self._whole)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (dict, (dict(self.items()),))


def stored_timelines(
    store: TimelineStore, low: int | None = None, high: int | None = None
) -> tuple[Sequence[ConnectionTimeline], Mapping[int, ConnectionTimeline]]:
    """The timelines of `store` whose ids are in [low, high) (None: unbounded),
    in id order, and the same by id: a tuple and a dict while the store holds
    them all in memory, else views that read through it. O(n) in memory,
    O(log n) spilled."""
    if not store.has_spilled:
        timelines = tuple(StoredSequence(store, low, high))
        return timelines, {t.connection.id: t for t in timelines}
    return StoredSequence(store, low, high), StoredMapping(store, low, high)


__all__ = [
    "CHUNK_SIZE",
    "LOADED_CHUNKS",
    "NearFirst",
    "SPILL_BUDGET",
    "StoredMapping",
    "StoredSequence",
    "TimelineStore",
    "stored_timelines",
]
