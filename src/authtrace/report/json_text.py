"""JSON text as `json.dumps(value, indent=2)` writes it, made faster.

This module owns writing the JSON documents' text. The standard library's C
encoder does not indent (in Python 3.11-3.13), so `json.dumps(..., indent=2)`
runs its pure-Python encoder, a chain of generators per value: on the
Kerberos benchmark capture that was over half of `analyze --json`'s report
(about 1.2 ms of 2.3 ms a connection under cProfile). `indented` walks the
value once and writes the same text, leaves encoded by the same functions
(strings by json's own C escaping, numbers by their repr).

Invariant: `indented(value, depth)` equals `json.dumps(value, indent=2)` with
every line break followed by `depth` more levels of indentation, for any
value `json.dumps` accepts with its defaults (ensure_ascii, allow_nan,
check_circular aside: the documents are trees our code builds). A value it
does not accept raises TypeError, as json.dumps does. Nesting is bounded by
`MAX_NESTING` (ValueError past it): the documents are built by our code, but
a runaway structure must not exhaust the stack.
"""

from __future__ import annotations

from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import Any

# Deeper than any document authtrace writes (auth/render.py cuts decoded
# tokens at MAX_DEPTH), far below the interpreter's recursion limit.
MAX_NESTING = 200

_INFINITY = float("inf")


def indented(value: Any, depth: int = 0) -> str:
    """`value` as `json.dumps(value, indent=2)` writes it, as it reads
    `depth` levels down a document (see the module's docstring). O(n) in the
    size of the text."""
    parts: list[str] = []
    _write(value, "\n" + "  " * depth, parts.append, 0)
    return "".join(parts)


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value == _INFINITY:
        return "Infinity"
    if value == -_INFINITY:
        return "-Infinity"
    return float.__repr__(value)


def _key(key: object) -> str:
    if isinstance(key, str):
        return encode_basestring_ascii(key)
    if key is None or isinstance(key, int | float):  # bool is an int
        # json.dumps quotes the text it writes for the value.
        return '"' + str(_leaf(key)) + '"'
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


def _leaf(value: Any) -> str | None:
    """The text of a value that is not a list, tuple or dict (None for one)."""
    kind = type(value)
    if kind is str:
        return encode_basestring_ascii(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if kind is int:
        return int.__repr__(value)
    if kind is float:
        return _float(value)
    if isinstance(value, list | tuple | dict):
        return None
    # Subclasses (a str or int enum): what json.dumps writes for them.
    if isinstance(value, str):
        return encode_basestring_ascii(value)
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return _float(value)
    raise TypeError(f"Object of type {kind.__name__} is not JSON serializable")


def _write(value: Any, newline: str, out: Callable[[str], object], nesting: int) -> None:
    # Strings are most leaves: written here without a call (the same as _leaf).
    text = encode_basestring_ascii(value) if type(value) is str else _leaf(value)
    if text is not None:
        out(text)
        return
    if nesting >= MAX_NESTING:
        raise ValueError(f"JSON nested deeper than {MAX_NESTING} levels")
    inner = newline + "  "
    if isinstance(value, dict):
        if not value:
            out("{}")
            return
        separator = "{" + inner
        for key, item in value.items():
            name = encode_basestring_ascii(key) if type(key) is str else _key(key)
            text = encode_basestring_ascii(item) if type(item) is str else _leaf(item)
            if text is None:
                out(separator + name + ": ")
                _write(item, inner, out, nesting + 1)
            else:
                out(separator + name + ": " + text)
            separator = "," + inner
        out(newline + "}")
        return
    if not value:
        out("[]")
        return
    separator = "[" + inner
    for item in value:
        text = encode_basestring_ascii(item) if type(item) is str else _leaf(item)
        if text is None:
            out(separator)
            _write(item, inner, out, nesting + 1)
        else:
            out(separator + text)
        separator = "," + inner
    out(newline + "]")


__all__ = ["MAX_NESTING", "indented"]
