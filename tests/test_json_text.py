"""report/json_text.py writes what json.dumps(value, indent=2) writes."""

from __future__ import annotations

import enum
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authtrace.report.json_text import MAX_NESTING, indented

_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and the infinities included: json writes NaN, Infinity
    | st.text()  # any code point: escaped to ASCII as json does
)
_KEYS = st.text() | st.integers() | st.booleans() | st.none() | st.floats()
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(_KEYS, inner, max_size=4)
    ),
    max_leaves=40,
)


def _nested(text: str, depth: int) -> str:
    return text.replace("\n", "\n" + "  " * depth)


@settings(max_examples=400, deadline=None)
@given(_VALUES, st.integers(min_value=0, max_value=3))
def test_the_text_is_json_dumps_indent_2(value: object, depth: int) -> None:
    assert indented(value, depth) == _nested(json.dumps(value, indent=2), depth)


class Level(enum.IntEnum):
    LOW = 1


class Word(enum.StrEnum):
    HELLO = 'hél"lo'


def test_subclasses_of_str_and_int_are_written_as_json_writes_them() -> None:
    value = {"level": Level.LOW, "word": Word.HELLO, "empty": {}, "none": [], "t": ()}
    assert indented(value) == json.dumps(value, indent=2)


def test_what_json_refuses_is_refused() -> None:
    with pytest.raises(TypeError):
        indented({"bytes": b"x"})
    with pytest.raises(TypeError):
        indented({("a", "b"): 1})


def test_nesting_is_bounded() -> None:
    value: list[object] = []
    for _ in range(MAX_NESTING + 5):
        value = [value]
    with pytest.raises(ValueError, match="nested deeper"):
        indented(value)
