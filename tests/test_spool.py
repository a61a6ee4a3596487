"""The spool (spool.py): values put come back equal, handles pickle as their
values (records stay self-contained) unless the spool is shared with a
forked writer, and a full or unavailable spool keeps values in memory rather
than losing them."""

from __future__ import annotations

import os
import pickle

import pytest

from authtrace.spool import Inline, Spool, Spooled


def test_values_come_back_equal_in_any_order() -> None:
    spool = Spool()
    values = [(n, b"x" * n, {"n": str(n)}) for n in range(0, 3000, 301)]
    handles = [spool.put(value) for value in values]
    assert all(isinstance(handle, Spooled) for handle in handles)
    assert [handle.get() for handle in reversed(handles)] == list(reversed(values))
    assert spool.size == sum(handle.length for handle in handles)  # type: ignore[attr-defined]


def test_a_handle_pickles_as_its_value() -> None:
    handle = Spool().put(("ticket", b"\x01" * 500))
    copy = pickle.loads(pickle.dumps(handle))
    assert isinstance(copy, Inline) and copy.get() == ("ticket", b"\x01" * 500)
    assert copy == handle and hash(copy) == hash(handle)


def test_a_full_spool_holds_values_in_memory() -> None:
    spool = Spool(limit=100)
    small = spool.put(b"a" * 10)
    large = spool.put(b"b" * 1000)
    assert isinstance(small, Spooled) and isinstance(large, Inline)
    assert large.get() == b"b" * 1000 and small.get() == b"a" * 10


def test_no_temporary_directory_holds_values_in_memory(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import tempfile

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OSError("read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    handle = Spool().put([1, 2, 3])
    assert isinstance(handle, Inline) and handle.get() == [1, 2, 3]


def test_a_shared_table_gives_one_copy_and_stays_bounded() -> None:
    from authtrace.sharing import SharedTable

    table: SharedTable[str] = SharedTable(limit=3)
    first = "".join(["HTTP/", "1.1"])
    again = "".join(["HTTP/", "1.1"])
    assert first is not again and table.share(first) is first and table.share(again) is first
    for n in range(10):
        assert table.share(f"value {n}") == f"value {n}"
        assert len(table) <= 3


def test_a_full_disk_keeps_the_value_and_what_was_written() -> None:
    spool = Spool()
    before = spool.put(b"first")
    assert isinstance(before, Spooled)
    file = spool._file  # noqa: SLF001 - the test stands in for the disk
    assert file is not None

    class FullDisk:
        def __getattr__(self, name: str) -> object:
            return getattr(file, name)

        def write(self, _data: bytes) -> int:
            raise OSError(28, "No space left on device")

    spool._file = FullDisk()  # type: ignore[assignment]  # noqa: SLF001
    after = spool.put(b"second")
    spool._file = file  # noqa: SLF001
    assert isinstance(after, Inline) and after.get() == b"second"
    assert before.get() == b"first"
    assert isinstance(spool.put(b"third"), Inline)  # the spool stops growing


def test_a_shared_spool_is_written_by_a_forked_process_and_read_by_its_parent() -> None:
    """What the child puts, it sends as a reference; the parent, which made
    the spool before the fork, reads the value through it."""
    spool = Spool(shared=True)
    assert spool.token is not None
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's side
        try:
            handles = [spool.put(("ticket", bytes([n]) * 700)) for n in range(5)]
            os.write(write, pickle.dumps(handles))
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(child, 0)
    assert len(data) < 5 * 700  # references, not the values
    handles = pickle.loads(data)
    assert all(isinstance(h, Spooled) and h.spool is spool for h in handles)
    assert [h.get() for h in handles] == [("ticket", bytes([n]) * 700) for n in range(5)]


def test_a_spool_no_longer_shared_pickles_handles_as_their_values() -> None:
    spool = Spool(shared=True)
    handle = spool.put(b"x" * 100)
    spool.end_sharing()
    copy = pickle.loads(pickle.dumps(handle))
    assert isinstance(copy, Inline) and copy.get() == b"x" * 100


def test_a_reference_to_a_spool_this_process_does_not_hold_is_refused() -> None:
    spool = Spool(shared=True)
    data = pickle.dumps(spool.put(b"x" * 100))
    del spool
    with pytest.raises(pickle.UnpicklingError):
        pickle.loads(data)
