"""The DER reader (kerberos/der.py): its fast path for common elements gives
exactly what the general reader gives, errors included."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authtrace.kerberos import der
from authtrace.kerberos.der import DerError, TagClass, Tlv


def _outcome(read: object, data: bytes, offset: int) -> object:
    """What a reader returns, or the type and message of what it raises."""
    try:
        return read(data, offset)  # type: ignore[operator]
    except DerError as error:
        return (type(error), str(error))


# Identifier and length octets of every shape: short form, long form of one
# to five octets, indefinite, high tag numbers; then content cut anywhere.
_SHAPES = [
    b"\x30\x03abc",
    b"\xa0\x00",
    b"\x04\x81\x80" + bytes(128),
    b"\x04\x81\x05abc",
    b"\x6e\x82\x01\x00" + bytes(256),
    b"\x6e\x82\x01\x00" + bytes(10),
    b"\x04\x83\x00\x00\x02ab",
    b"\x04\x84\x00\x00\x00\x01a",
    b"\x04\x85\x00\x00\x00\x00\x01a",
    b"\x30\x80\x00\x00",
    b"\x1f\x81\x01\x01a",
    b"\xbf\x8f\xff\xff\xff\x01\x00",
    b"\xff\x01a",
]


@pytest.mark.parametrize("element", _SHAPES)
def test_fast_path_agrees_with_general_reader_on_every_cut(element: bytes) -> None:
    for end in range(len(element) + 1):
        data = b"\x05" + element[:end]
        assert _outcome(der.read_tlv, data, 1) == _outcome(der._read_tlv, data, 1)


@given(st.binary(max_size=40), st.integers(min_value=0, max_value=42))
def test_fast_path_agrees_with_general_reader(data: bytes, offset: int) -> None:
    assert _outcome(der.read_tlv, data, offset) == _outcome(der._read_tlv, data, offset)


def test_fast_tlv_is_the_frozen_dataclass() -> None:
    fast = der.read_tlv(b"\x00\xa3\x82\x00\x02\x05\x00", 1)
    built = Tlv(TagClass.CONTEXT, True, 3, b"\x05\x00", 1, 7)
    assert fast == built and hash(fast) == hash(built) and repr(fast) == repr(built)
    assert type(fast) is Tlv and fast.tag_class is TagClass.CONTEXT
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.number = 4  # type: ignore[misc]


@pytest.mark.parametrize("first", [0x02, 0x61, 0xA0, 0xE5])
def test_tag_class_from_the_two_high_bits(first: int) -> None:
    tlv = der.read_tlv(bytes([first, 0]))
    assert tlv.tag_class is TagClass(first >> 6)
    assert tlv.constructed is bool(first & 0x20) and tlv.number == first & 0x1F


def test_oid_dotted_form_and_errors_every_time() -> None:
    spnego = bytes.fromhex("2b0601050502")
    assert der.oid_from_bytes(spnego) == "1.3.6.1.5.5.2"
    assert der.oid_from_bytes(bytearray(spnego)) == "1.3.6.1.5.5.2"
    for _ in range(2):
        with pytest.raises(DerError, match="empty or truncated"):
            der.oid_from_bytes(b"\x2b\x86")


def _explicit_fields_one_by_one(tlv: Tlv, what: str) -> dict[int, Tlv]:
    # explicit_fields as its docstring reads: every child an explicit [n]
    # holding exactly one element.
    fields: dict[int, Tlv] = {}
    for child in der.sequence_of(tlv, what):
        if child.tag_class is not TagClass.CONTEXT or not child.constructed:
            raise DerError(f"{what}: component is not an explicit context tag")
        if child.number in fields:
            raise DerError(f"{what}: field [{child.number}] appears twice")
        fields[child.number] = der.read_single(child.value)
    return fields


_FIELD_PIECES = st.sampled_from(
    [
        b"\xa0\x03\x02\x01\x05",
        b"\xa1\x03\x02\x01\x0e",
        b"\xa2\x81\x03\x04\x01x",
        b"\xa3\x82\x00\x04\x04\x82\x00\x00",
        b"\xa4\x04\x30\x02\x05\x00",
        b"\xa0\x02\x05\x00",
        b"\xa5\x03\x9f\x01\x00",
        b"\xa6\x04\x04\x01x",
        b"\x82\x01\x00",
        b"\xa7\x00",
        b"\xbf\x21\x02\x05\x00",
        b"\xa8\x83\x00\x00\x02\x05\x00",
    ]
)


@given(st.lists(_FIELD_PIECES, max_size=6), st.binary(max_size=3))
def test_explicit_fields_agree_with_reading_every_wrapper(pieces: list[bytes], tail: bytes) -> None:
    content = b"".join(pieces) + tail
    tlv = Tlv(TagClass.UNIVERSAL, True, der.SEQUENCE, content, 0, len(content) + 2)
    assert _outcome(der.explicit_fields, tlv, "X") == _outcome(
        _explicit_fields_one_by_one, tlv, "X"
    )


def _general_fields(value: bytes) -> object:
    """explicit_fields' general loop (children, then read_single of each), or its error."""
    try:
        fields = {}
        for child in der.children(value):
            if child.tag_class is not TagClass.CONTEXT or not child.constructed:
                raise DerError("not an explicit context tag")
            if child.number in fields:
                raise DerError("twice")
            fields[child.number] = der.read_single(child.value)
        return fields
    except DerError as error:
        return (type(error), str(error))


def _wrapped(number: int, inner: bytes, long_form: int) -> bytes:
    """[number] around `inner`, its length in the short form or long forms of 1-2 octets."""
    size = len(inner)
    if long_form == 1 or size > 255:
        head = b"\x82" + size.to_bytes(2, "big")
    elif long_form == 2 or size > 127:
        head = b"\x81" + bytes([size])
    else:
        head = bytes([size])
    return bytes([0xA0 | number]) + head + inner


# Inner elements the fast path reads (one identifier octet, lengths of at most
# two octets), and ones it leaves to the general loop: a high tag number, a
# length that runs past its wrapper, an empty wrapper.
_READABLE = [b"\x02\x01\x05", b"\x1b\x03abc", b"\x30\x00", b"\x04\x81\x03xyz"]
_READABLE += [b"\x04\x82\x00\x01z", b"\x04\x81\x80" + bytes(128)]
_INNER = st.sampled_from(_READABLE + [b"\x1f\x81\x01\x01a", b"\x02\x02\x01", b""])


@given(
    st.lists(st.tuples(st.integers(0, 31), _INNER, st.integers(0, 2)), max_size=6),
    st.integers(min_value=0, max_value=60),
    st.binary(max_size=3),
)
def test_explicit_fields_fast_path_agrees_with_the_general_loop(
    parts: list[tuple[int, bytes, int]], cut: int, tail: bytes
) -> None:
    """The fast path gives what the general loop gives, or None (then the general
    loop answers): well-formed, cut, with trailing bytes, high tags, duplicates;
    and it does answer for well-formed fields."""
    value = b"".join(_wrapped(n, inner, form) for n, inner, form in parts)
    for data in (value, value[: max(0, len(value) - cut)], value + tail):
        fast = der._explicit_fields_fast(data)
        if fast is not None:
            assert fast == _general_fields(data)
    numbers = [n for n, _, _ in parts]
    readable = all(inner in _READABLE for _, inner, _ in parts)
    if readable and 31 not in numbers and len(set(numbers)) == len(numbers):
        assert der._explicit_fields_fast(value) == _general_fields(value)
