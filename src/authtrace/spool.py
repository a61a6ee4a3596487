"""A spool for large values that a run keeps only to print them at the end.

This module owns keeping such values out of memory: `Spool.put` pickles a value
to an anonymous temporary file (deleted when the last handle goes) and returns
a `Spooled` handle of a few dozen bytes; `Held.get` reads it back. A handle
pickles as an `Inline` holding the value itself, so a record that carries
handles stays self-contained when it is pickled (to another process, a file):
only the process that wrote the spool reads the spool (or, for a shared one,
the parent that made it).

A spool made `shared` before a reader process is forked (parallel.py) is
written by that reader and read by the parent: its file is opened at once, so
both hold it, and its handles pickle as a reference (a number the spool is
registered under in both processes) rather than as the value, so what the
reader sends stays small and the parent does not hold every value in memory.
One process writes a shared spool; the other only reads it, with os.pread
(the file's offset is shared between them). Once the reader is done,
`end_sharing` makes the handles pickle as their values again: what the run
keeps is self-contained, as with any spool.

Invariant: memory holds a fixed few bytes per value put, whatever its size;
`get` returns a value equal to the one put. The file is bounded by
`MAX_SPOOL_BYTES`; past that (or when no temporary file can be made, or the
disk is full), values are held in memory as `Inline`, so nothing put is ever
lost.

The spool reads back only what it wrote itself (its own temporary file), so
unpickling it trusts no outside input.
"""

from __future__ import annotations

import itertools
import os
import pickle
import tempfile
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, Generic, TypeVar

T = TypeVar("T")

# Disk the spool may use before it falls back to memory (4 GiB: far above what
# the KDC messages and whole HTTP messages of a day's capture take).
MAX_SPOOL_BYTES = 4 << 30


class Spool:
    """One append-only temporary file of pickled values."""

    def __init__(
        self,
        limit: int = MAX_SPOOL_BYTES,
        dumps: Callable[[Any], bytes] | None = None,
        shared: bool = False,
    ) -> None:
        """dumps: how a value is pickled (pickle.dumps with the highest protocol
        when None); `pickle.loads` must read back what it writes
        (authtrace.fastinit.dumps does, and builds frozen dataclasses faster).
        shared: written by a process forked after this (see the module's
        docstring); its handles pickle as references."""
        self._limit = limit
        self._dumps = dumps
        self._file: IO[bytes] | None = None
        self._size = 0
        self._failed = False
        self._lock = threading.Lock()
        self.token: int | None = None
        """The number a shared spool is registered under while it is shared
        (its handles pickle as references); None otherwise."""
        self._pread = False  # written by another process: read without its offset
        if shared and self._open() is not None:
            self.token = next(_TOKENS)
            self._pread = True
            _SHARED[self.token] = self

    def end_sharing(self) -> None:
        """The writing process is done: from now on handles pickle as their
        values, and no reference to this spool is unpickled any more."""
        if self.token is not None:
            _SHARED.pop(self.token, None)
            self.token = None

    @property
    def size(self) -> int:
        """Bytes written to the file so far."""
        return self._size

    def put(self, value: T) -> Held[T]:
        """Keep `value` on disk; return the handle that reads it back."""
        if self._dumps is not None:
            data = self._dumps(value)
        else:
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            file = self._open()
            if file is None or self._size + len(data) > self._limit:
                return Inline(value)
            offset = self._size
            try:
                file.seek(offset)
                file.write(data)
                file.flush()  # a full disk is met here, not at a later read
            except OSError:
                # The value stays in memory; what was written before stays readable.
                self._limit = offset
                return Inline(value)
            self._size += len(data)
        return Spooled(self, offset, len(data))

    def read(self, offset: int, length: int) -> Any:
        with self._lock:
            file = self._file
            if file is None:  # pragma: no cover - handles exist only after a write
                raise ValueError("spool read before any write")
            if self._pread:
                # Shared with the process that wrote it: not its offset.
                data = os.pread(file.fileno(), length, offset)
            else:
                # seek and read under the lock (os.pread is not on Windows).
                file.seek(offset)
                data = file.read(length)
        return pickle.loads(data)

    def _open(self) -> IO[bytes] | None:
        if self._file is None and not self._failed:
            try:
                self._file = tempfile.TemporaryFile(prefix="authtrace-spool-")
            except OSError:
                # No writable temporary directory: keep values in memory.
                self._failed = True
        return self._file


class Held(Generic[T]):
    """A value kept by the spool (`Spooled`) or in memory (`Inline`)."""

    __slots__ = ()

    def get(self) -> T:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Held):
            return NotImplemented
        return bool(self.get() == other.get())

    def __hash__(self) -> int:
        return hash(self.get())


@dataclass(frozen=True, slots=True, eq=False)
class Spooled(Held[T]):
    """A value pickled in `spool` at `offset`, `length` bytes long."""

    spool: Spool
    offset: int
    length: int

    def get(self) -> T:
        value: T = self.spool.read(self.offset, self.length)
        return value

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        if self.spool.token is not None:
            return (_shared_handle, (self.spool.token, self.offset, self.length))
        # Pickled, a handle becomes its value: the spool file stays private.
        return (Inline, (self.get(),))

    def __repr__(self) -> str:
        return f"Spooled(offset={self.offset}, length={self.length})"


@dataclass(frozen=True, slots=True, eq=False)
class Inline(Held[T]):
    """A value held in memory (pickled records, or a spool that is full)."""

    value: T

    def get(self) -> T:
        return self.value


# The shared spools of this process by token (in a forked reader: those its
# parent made before the fork, under the same tokens); weak, so a spool goes
# when the last handle to it does.
_SHARED: weakref.WeakValueDictionary[int, Spool] = weakref.WeakValueDictionary()
_TOKENS = itertools.count(1)


def _shared_handle(token: int, offset: int, length: int) -> Spooled[Any]:
    """A handle of the shared spool `token`, as unpickled in a process that
    holds it (parallel.py's parent or reader)."""
    spool = _SHARED.get(token)
    if spool is None:
        raise pickle.UnpicklingError(f"a handle of shared spool {token}, not held here")
    return Spooled(spool, offset, length)


__all__ = ["MAX_SPOOL_BYTES", "Held", "Inline", "Spool", "Spooled"]
