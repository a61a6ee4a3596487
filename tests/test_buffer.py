"""The shared binary reader (buffer.py): `Fields` reads a run of fields at
once and reports truncation exactly as pulling them one by one does."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authtrace.buffer import Buffer, BufferReadError, Fields


def _one_by_one(data: bytes, offset: int) -> tuple[object, ...]:
    # The reads Fields("<HHIB8sQ") stands for.
    buffer = Buffer(data, offset)
    return (
        buffer.pull_u16_le(),
        buffer.pull_u16_le(),
        buffer.pull_u32_le(),
        buffer.pull_u8(),
        buffer.pull_bytes(8),
        buffer.pull_u64_le(),
    )


def _outcome(read: object, data: bytes, offset: int) -> object:
    try:
        return read(data, offset)  # type: ignore[operator]
    except BufferReadError as error:
        return str(error)


@given(st.binary(max_size=40), st.integers(min_value=0, max_value=40))
def test_fields_read_and_fail_like_single_pulls(data: bytes, offset: int) -> None:
    fields = Fields("<HHIB8sQ")
    assert fields.size == 25
    assert _outcome(fields.unpack_from, data, offset) == _outcome(_one_by_one, data, offset)


def test_every_cut_names_the_field_that_runs_out() -> None:
    fields = Fields("<HHIB8sQ")
    data = bytes(range(30))
    messages = [_outcome(fields.unpack_from, data[:end], 3) for end in range(3, 29)]
    assert "need 1 byte at offset 11, none left" in messages
    assert "need 8 bytes at offset 12, 3 left" in messages
    named = {message.split(" at offset ")[1].split(",")[0] for message in messages[:-1]}
    assert named == {"3", "5", "7", "11", "12", "20"}  # where each field starts
    whole = (0x0403, 0x0605, 0x0A090807, 11, bytes(range(12, 20)), 0x1B1A191817161514)
    assert messages[-1] == whole


def test_big_endian_and_repeat_counts() -> None:
    assert Fields(">2HI").unpack_from(b"\x00\x01\x00\x02\x00\x00\x00\x03", 0) == (1, 2, 3)


def test_formats_with_padding_are_refused() -> None:
    with pytest.raises(ValueError, match="not a plain run"):
        Fields("@BI")
