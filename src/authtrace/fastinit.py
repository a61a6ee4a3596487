"""Building frozen slots dataclasses without their generated __init__, and
listing a dataclass's field names without rebuilding them on every call.

Owns: nothing but speed. The boundary objects of the hot path (one Frame and
one TcpSegment per frame, one StreamData per delivered segment, a Header per
header line, a message and an Exchange per HTTP message, an AuthStep per
authentication header) are frozen slots dataclasses. Their generated
__init__ assigns each field through object.__setattr__ (about 0.1 us a
field); assigning through the class's slot descriptors builds the very same
object (same type, equality, hash, repr) in a fraction of the time.
`constructor(cls)` writes that function once per class, with the class's
own field names, order and defaults, so callers keep calling it as they
would call the class, positionally or by keyword.

Invariant: `constructor(C)(*args, **kwargs) == C(*args, **kwargs)` for every
argument list C accepts; a class this cannot honour (a __post_init__, a
default_factory, a field left out of __init__ or keyword-only, no slots) is
refused when the constructor is made, never silently built differently. The
tests compare.
"""

from __future__ import annotations

import dataclasses
import enum
import io
import keyword
import pickle
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def constructor(cls: type[T]) -> Callable[..., T]:
    """A function that builds `cls` objects exactly as `cls(...)` does, faster."""
    if not dataclasses.is_dataclass(cls) or "__slots__" not in vars(cls):
        raise TypeError(f"{cls.__name__} is not a slots dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__")
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]
    parameters: list[str] = []
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    for item in fields:
        if not item.init or item.kw_only or item.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{item.name}: only plain fields are supported")
        if keyword.iskeyword(item.name) or not item.name.isidentifier():
            raise TypeError(f"{cls.__name__}.{item.name}: not a plain name")
        # The slot descriptor's __set__, bound once: the whole saving.
        # A lazy field (authtrace/sharing.py) wraps its slot: set the slot.
        descriptor = getattr(cls, item.name)
        namespace[f"_set_{item.name}"] = getattr(descriptor, "slot", descriptor).__set__
        if item.default is dataclasses.MISSING:
            parameters.append(item.name)
        else:
            namespace[f"_default_{item.name}"] = item.default
            parameters.append(f"{item.name}=_default_{item.name}")
    body = "".join(f"    _set_{name}(made, {name})\n" for name in names)
    source = f"def make({', '.join(parameters)}):\n    made = _new(_cls)\n{body}    return made\n"
    exec(source, namespace)  # noqa: S102 - text built above from the class's own field names
    make: Callable[..., T] = namespace["make"]
    make.__name__ = make.__qualname__ = f"make_{cls.__name__}"
    make.__doc__ = f"The same as {cls.__name__}(...), faster (authtrace.fastinit)."
    return make


class FastEnum(enum.Enum):
    """An Enum whose members hash by identity, in C. `enum.Enum.__hash__` is a
    Python-level function (it hashes the member's name), so every look-up of a
    member in a dict or a tuple key paid a Python call; the handshake's
    per-realm state and transition table look members up some 60 times per
    connection (2.7% of reading and judging the auth-dense proxy capture).
    Members are singletons compared by identity, so identity is a hash
    consistent with ==; like the name's hash (str hashing is randomised), it is
    not the same from one run to the next, and nothing may depend on it."""

    __hash__ = object.__hash__


# Field names per dataclass type. The JSON renderers walk every field of every
# decoded object; dataclasses.fields() builds a new tuple of Field objects on
# each call. Bounded, although the types are the program's own and few.
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_MAX_TYPES = 1024


def field_names(obj: Any) -> tuple[str, ...]:
    """The field names of a dataclass instance (or class), in declaration order."""
    kind = obj if isinstance(obj, type) else type(obj)
    names = _FIELD_NAMES.get(kind)
    if names is None:
        names = tuple(item.name for item in dataclasses.fields(kind))
        if len(_FIELD_NAMES) < _MAX_TYPES:
            _FIELD_NAMES[kind] = names
    return names


# -- pickling -----------------------------------------------------------------
#
# A frozen slots dataclass pickles through the __getstate__ / __setstate__ that
# dataclasses gives it (Python 3.11), and both call dataclasses.fields() on
# every object: unpickling a judged connection cost more than judging it in
# the reader (0.80 s for 4k connections). `dumps` writes each such object as
# a call of `_rebuild` with its class and the values its slots hold, which
# loading turns into one call of the class's `constructor`: the same object
# (the very values its slots held, a lazy field's `Part` included), built
# through the slot descriptors as __setstate__ would have built it. Any other
# object (a class with a __getstate__, __setstate__ or __reduce__ of its own, a
# __post_init__, a field left out of __init__) pickles as pickle would pickle it.
_DEFAULT_GETSTATE = getattr(dataclasses, "_dataclass_getstate", None)
_DEFAULT_SETSTATE = getattr(dataclasses, "_dataclass_setstate", None)
# Per type: the slot descriptors to read (in field order), or None when the
# type pickles the ordinary way. Bounded like _FIELD_NAMES.
_PLANS: dict[type, tuple[Any, ...] | None] = {}
_MAKERS: dict[type, Callable[..., Any]] = {}


def _plan(kind: type) -> tuple[Any, ...] | None:
    """The slot descriptors `dumps` reads for objects of `kind`, or None."""
    if _DEFAULT_SETSTATE is None or not dataclasses.is_dataclass(kind):
        return None
    if "__slots__" not in vars(kind) or kind.__setstate__ is not _DEFAULT_SETSTATE:  # type: ignore[attr-defined]
        return None
    getstate = kind.__getstate__
    # lazy_fields (authtrace/sharing.py) installs a __getstate__ that returns
    # what each slot holds: what the slot descriptors read.
    if getstate is not _DEFAULT_GETSTATE and not (
        "_lazy_plan" in vars(kind) and vars(kind).get("__getstate__") is getstate
    ):
        return None
    if kind.__reduce__ is not object.__reduce__ or kind.__reduce_ex__ is not object.__reduce_ex__:
        return None
    try:
        maker = constructor(kind)
    except TypeError:
        return None
    slots = []
    for item in dataclasses.fields(kind):
        descriptor = getattr(kind, item.name)
        slots.append(getattr(descriptor, "slot", descriptor))
    _MAKERS[kind] = maker
    return tuple(slots)


def _rebuild(kind: type[T], *values: Any) -> T:
    """What `dumps` wrote for one object, built again (see above)."""
    maker = _MAKERS.get(kind)
    if maker is None:
        if _plan(kind) is None:
            raise TypeError(f"{kind.__name__} is not rebuilt by authtrace.fastinit")
        maker = _MAKERS[kind]
    made: T = maker(*values)
    return made


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        try:
            slots = _PLANS[kind]
        except KeyError:
            slots = _plan(kind) if not isinstance(obj, type) else None
            if len(_PLANS) < _MAX_TYPES:
                _PLANS[kind] = slots
        if slots is None:
            return NotImplemented
        return _rebuild, (kind, *[slot.__get__(obj, kind) for slot in slots])


def dumps(obj: Any) -> bytes:
    """`pickle.dumps(obj, HIGHEST_PROTOCOL)`, with the frozen slots dataclasses
    in it written so that `pickle.loads` builds them several times faster
    (see above). `pickle.loads` reads it back; the result is equal to `obj`,
    down to what each slot holds (tests/test_fastinit.py)."""
    out = io.BytesIO()
    try:
        _Pickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    except RecursionError:
        # An object that holds itself: its arguments would hold it before it
        # exists. Pickle's own way builds it first, then sets its state.
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return out.getvalue()
