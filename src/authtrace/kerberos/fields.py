"""Shared pieces of the decoded token objects: labelled wire numbers, and the
one place where decoded Kerberos/SPNEGO objects are rendered to JSON-ready
dicts with their secrets redacted.

Invariant: a field listed in `SECRET_FIELD_NAMES` is never rendered as its
bytes unless `show_secrets` is true; its presence and length always are.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any

from authtrace.auth import redact as _redact
from authtrace.fastinit import constructor, field_names

# Field names of the dataclasses in kerberos/messages.py and auth/spnego.py
# whose bytes are secrets, besides auth/redact.py's SECRET_FIELDS: cipher text,
# pre-authentication values (an encrypted timestamp is crackable), MICs, and
# the raw token (which contains all of these).
SECRET_FIELD_NAMES = frozenset(
    {"cipher", "value", "raw", "mech_list_mic", "mech_token", "response_token", "inner_token"}
)


@dataclass(frozen=True, slots=True)
class Labelled:
    """A number from the wire and its label (``UNKNOWN (n)`` when unknown)."""

    value: int
    name: str

    def __str__(self) -> str:
        return self.name


_make_labelled = constructor(Labelled)


# Every field of every decoded message is labelled, and the same few numbers
# recur (message types, enc-types, name types, padata types): one Labelled per
# (table, number), made once. Keyed by the table's id and checked against the
# table itself (an id is reused only after its object is gone). Bounded: a
# capture of hostile numbers starts it over past _MAX_LABELS.
_MAX_LABELS = 4096
_LABELS: dict[tuple[int, int], tuple[dict[int, str], Labelled]] = {}


def label(table: dict[int, str], value: int) -> Labelled:
    known = _LABELS.get((id(table), value))
    if known is not None and known[0] is table:
        return known[1]
    # The UNKNOWN text is built only when needed: almost all numbers are known.
    name = table.get(value)
    made = _make_labelled(value, f"UNKNOWN ({value})" if name is None else name)
    if len(_LABELS) >= _MAX_LABELS:
        _LABELS.clear()
    _LABELS[(id(table), value)] = (table, made)
    return made


def flag_names(table: dict[int, str], value: int, bits: int = 32) -> tuple[str, ...]:
    """Names of the bits set in an RFC 4120 flag BIT STRING, where bit 0 is
    the most significant bit of `value` (`bits` long)."""
    # Only the set bits are visited, from the most significant down (bit 0
    # first): a ticket's flags set a handful of 32, and every AP-REQ and
    # KDC-REQ names its options.
    names = []
    rest = value & ((1 << bits) - 1)
    while rest:
        position = rest.bit_length() - 1
        bit = bits - 1 - position
        name = table.get(bit)
        names.append(f"bit-{bit}" if name is None else name)
        rest ^= 1 << position
    return tuple(names)


def redact_bytes(value: bytes, show_secrets: bool) -> str:
    """Render secret bytes the way every authtrace layer does (auth/redact.py)."""
    return _redact.redact_bytes(value, show_secrets)


def is_secret(name: str) -> bool:
    return name in SECRET_FIELD_NAMES or _redact.is_secret_field(name)


MAX_RENDER_DEPTH = 16
# Values rendered as themselves, by exact type (an enum that is also an int
# or str is not one of them: it renders as its value).
_AS_IS = frozenset({str, int, float, bool, type(None)})


def render(obj: Any, show_secrets: bool, depth: int = 0) -> Any:
    """JSON-ready rendering of a decoded value (dataclass, enum, bytes...)."""
    if depth > MAX_RENDER_DEPTH:
        return "<nested too deep>"
    if type(obj) in _AS_IS:  # most leaves: one look-up
        return obj
    if isinstance(obj, Labelled):
        return {"value": obj.value, "name": obj.name}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, bytes):
        return obj.hex()
    if isinstance(obj, tuple | list):
        return [render(item, show_secrets, depth + 1) for item in obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        to_dict = getattr(obj, "to_dict", None)
        if to_dict is not None and depth > 0:
            return to_dict(show_secrets)
        return dataclass_to_dict(obj, show_secrets, depth)
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    return str(obj)


def dataclass_to_dict(
    obj: Any, show_secrets: bool, depth: int = 0, skip: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Render every field of a dataclass but those named in `skip`; secret
    byte fields are redacted."""
    out: dict[str, Any] = {"type": type(obj).__name__}
    mechanism = getattr(obj, "mechanism", None)
    message = getattr(obj, "message", None)
    if isinstance(mechanism, enum.Enum):
        out["mechanism"] = mechanism.value
    if isinstance(message, enum.Enum):
        out["message"] = message.value
    for name in field_names(obj):
        if name in skip:
            continue
        value = getattr(obj, name)
        if type(value) in _AS_IS and depth < MAX_RENDER_DEPTH:
            out[name] = value  # what render() gives it, without the call
        elif isinstance(value, bytes) and is_secret(name):
            out[name] = redact_bytes(value, show_secrets)
        else:
            out[name] = render(value, show_secrets, depth + 1)
    return out
