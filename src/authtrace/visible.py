"""Making capture text safe to print on a terminal.

This module owns the one rule every text renderer (report, connections, diff,
iis, decode, the CLI's error lines) applies to what it prints. Invariant: the
result of `visible` contains no character a terminal acts on (C0 and C1
controls, DEL), no line or paragraph separator, no invisible formatting
character (bidirectional overrides, zero-width characters, BOM) and no lone
surrogate; each such character is shown as an escape (``\\x1b``, ``\\r``,
``\\u202e``), as ``less`` and tshark show them. Everything else is kept as it
is, so a user name or URI stays readable and `visible` is idempotent
(backslashes are not doubled: ``DOMAIN\\user`` must read as written, at the
cost of an escape and the same characters written out looking alike).

JSON needs none of this: json.dumps escapes control characters itself.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

# Printable ASCII: the common case, answered by one regex scan.
_PLAIN = re.compile(r"[\x20-\x7e]*")
# Unicode categories a terminal or a reader may be fooled by: controls,
# format characters (bidi overrides, zero-width), line/paragraph separators,
# surrogates (which cannot even be encoded for output).
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    if unicodedata.category(char) not in _HIDDEN_CATEGORIES:
        return char
    point = ord(char)
    if point < 0x100:
        return f"\\x{point:02x}"
    if point < 0x10000:
        return f"\\u{point:04x}"
    return f"\\U{point:08x}"


def visible(text: str) -> str:
    """`text` with every control or invisible character written as an escape."""
    if _PLAIN.fullmatch(text):
        return text
    return "".join(_escape(char) for char in text)


def visible_lines(lines: Iterable[str]) -> str:
    """Lines a renderer built, each made visible, joined by newlines.

    The renderer's own line breaks are the separators between the items; a
    newline inside an item came from the capture and is shown as ``\\n``, so a
    capture string can never forge a line of the report.
    """
    return "\n".join(visible(line) for line in lines)
