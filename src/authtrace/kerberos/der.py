"""A minimal, bounded DER reader for the ASN.1 that Kerberos, GSS-API and SPNEGO use.

This module owns tag/length/value splitting and the few primitive decodings the
token decoders need (INTEGER, strings, OBJECT IDENTIFIER, BIT STRING). It knows
nothing about Kerberos or SPNEGO structure.

Invariant: every read stays inside the bytes given; a length that runs past
the end, an indefinite length, or a tag/length/element count beyond the
bounds below raises `DerError` and nothing else. Nothing here recurses.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from typing import Any

# Bounds for hostile input. Real Kerberos/SPNEGO tokens are a few KiB; a
# SEQUENCE OF with thousands of elements is never legitimate.
MAX_ELEMENTS = 1024
MAX_INTEGER_OCTETS = 16
MAX_TAG_NUMBER_OCTETS = 4
MAX_LENGTH_OCTETS = 4
MAX_OID_ARCS = 64


class DerError(ValueError):
    """The bytes are not the DER the caller expected (one-line reason)."""


class DerTruncated(DerError):
    """The data ends inside an element (capture cut short, or a lying length)."""


class TagClass(enum.IntEnum):
    """X.690 section 8.1.2.2: the two high bits of the identifier octet."""

    UNIVERSAL = 0
    APPLICATION = 1
    CONTEXT = 2
    PRIVATE = 3


# Universal tag numbers used by the decoders (X.680 section 8.4).
BOOLEAN = 1
INTEGER = 2
BIT_STRING = 3
OCTET_STRING = 4
NULL = 5
OID = 6
ENUMERATED = 10
UTF8_STRING = 12
SEQUENCE = 16
IA5_STRING = 22
GENERALIZED_TIME = 24
GENERAL_STRING = 27


@dataclass(frozen=True, slots=True)
class Tlv:
    """One DER element.

    tag_class/constructed/number: the identifier octets, decoded.
    value: the content octets. offset: where the identifier started in the
    data it was read from; end: the offset just past the content.
    """

    tag_class: TagClass
    constructed: bool
    number: int
    value: bytes
    offset: int
    end: int

    def is_universal(self, number: int) -> bool:
        return self.tag_class is TagClass.UNIVERSAL and self.number == number


@dataclass(frozen=True, slots=True)
class Header:
    """The identifier and length octets of an element whose content may not
    all be present yet (for recognising a message from its first bytes)."""

    tag_class: TagClass
    constructed: bool
    number: int
    content_start: int
    length: int


def read_header(data: bytes, offset: int = 0) -> Header:
    """Identifier and length octets at `offset` (X.690 sections 8.1.2-8.1.3)."""
    size = len(data)
    if offset >= size:
        raise DerTruncated(f"no element at offset {offset} (data ends at {size})")
    first = data[offset]
    pos = offset + 1
    number = first & 0x1F
    if number == 0x1F:
        # High tag number form: base-128 digits, high bit = "more follows".
        number = 0
        for count in range(MAX_TAG_NUMBER_OCTETS + 1):
            if count == MAX_TAG_NUMBER_OCTETS:
                raise DerError(f"tag number too long at offset {offset}")
            if pos >= size:
                raise DerTruncated(f"tag truncated at offset {offset}")
            octet = data[pos]
            pos += 1
            number = (number << 7) | (octet & 0x7F)
            if not octet & 0x80:
                break
    if pos >= size:
        raise DerTruncated(f"length missing at offset {pos}")
    length = data[pos]
    pos += 1
    if length & 0x80:
        count = length & 0x7F
        if count == 0:
            # X.690 section 10.1: DER forbids the indefinite form.
            raise DerError(f"indefinite length at offset {offset} (not DER)")
        if count > MAX_LENGTH_OCTETS:
            raise DerError(f"length of {count} octets at offset {offset}")
        if pos + count > size:
            raise DerTruncated(f"length truncated at offset {offset}")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    return Header(TagClass(first >> 6), bool(first & 0x20), number, pos, length)


# A Kerberos AP-REQ holds about fifty elements and read_tlv runs for each of
# them, so its common case is kept cheap: the Tlv is built through its slot
# descriptors (a frozen dataclass's __init__ assigns each field through
# object.__setattr__, twice the cost) and the tag class is a tuple lookup
# instead of an enum call. The object is the very same frozen Tlv, equal to
# one built by Tlv(...); tests/test_der.py compares them.
_new = object.__new__
_slots: Any = Tlv  # the slot descriptors are class attributes mypy does not model
_set_tag_class = _slots.tag_class.__set__
_set_constructed = _slots.constructed.__set__
_set_number = _slots.number.__set__
_set_value = _slots.value.__set__
_set_offset = _slots.offset.__set__
_set_end = _slots.end.__set__

# TagClass by the two high bits of the identifier octet (first >> 6).
_TAG_CLASSES = (TagClass.UNIVERSAL, TagClass.APPLICATION, TagClass.CONTEXT, TagClass.PRIVATE)


def read_tlv(data: bytes, offset: int = 0) -> Tlv:
    """Read the complete element that starts at `offset`."""
    # Fast path for what Kerberos and SPNEGO tokens are made of: a low tag
    # number (one identifier octet) and a length in the short form or the
    # long form of one or two octets, all inside `data`. Anything else (high
    # tag numbers, longer lengths, every error) takes _read_tlv, which gives
    # the same Tlv or raises with the one wording of its reasons.
    bounds = _content(data, offset, len(data))
    if bounds is not None:
        pos, end = bounds
        first = data[offset]
        tlv: Tlv = _new(Tlv)
        _set_tag_class(tlv, _TAG_CLASSES[first >> 6])
        _set_constructed(tlv, bool(first & 0x20))
        _set_number(tlv, first & 0x1F)
        _set_value(tlv, data[pos:end])
        _set_offset(tlv, offset)
        _set_end(tlv, end)
        return tlv
    return _read_tlv(data, offset)


def _read_tlv(data: bytes, offset: int) -> Tlv:
    """read_tlv for any element, through read_header (X.690 sections 8.1.2-8.1.3)."""
    header = read_header(data, offset)
    pos = header.content_start
    end = pos + header.length
    if end > len(data):
        raise DerTruncated(
            f"element at offset {offset} claims {header.length} bytes, {len(data) - pos} available"
        )
    return Tlv(
        tag_class=header.tag_class,
        constructed=header.constructed,
        number=header.number,
        value=data[pos:end],
        offset=offset,
        end=end,
    )


def read_single(data: bytes) -> Tlv:
    """Read one element that must span all of `data`."""
    tlv = read_tlv(data)
    if tlv.end != len(data):
        raise DerError(f"{len(data) - tlv.end} trailing bytes after the element")
    return tlv


def children(value: bytes) -> list[Tlv]:
    """The elements inside a constructed value, in order (bounded count)."""
    items: list[Tlv] = []
    pos = 0
    while pos < len(value):
        if len(items) >= MAX_ELEMENTS:
            raise DerError(f"more than {MAX_ELEMENTS} elements in one constructed value")
        tlv = read_tlv(value, pos)
        items.append(tlv)
        pos = tlv.end
    return items


def expect(tlv: Tlv, tag_class: TagClass, number: int, what: str) -> Tlv:
    if tlv.tag_class is not tag_class or tlv.number != number:
        raise DerError(
            f"{what}: expected {tag_class.name} {number}, found {tlv.tag_class.name} {tlv.number}"
        )
    return tlv


def sequence_of(tlv: Tlv, what: str) -> list[Tlv]:
    """Children of a universal SEQUENCE (or SEQUENCE OF)."""
    expect(tlv, TagClass.UNIVERSAL, SEQUENCE, what)
    if not tlv.constructed:
        raise DerError(f"{what}: SEQUENCE not constructed")
    return children(tlv.value)


def explicit_fields(tlv: Tlv, what: str) -> dict[int, Tlv]:
    """A SEQUENCE whose components carry EXPLICIT context tags [n], as every
    Kerberos and SPNEGO structure does: maps n to the tagged inner element."""
    expect(tlv, TagClass.UNIVERSAL, SEQUENCE, what)
    if not tlv.constructed:
        raise DerError(f"{what}: SEQUENCE not constructed")
    fields = _explicit_fields_fast(tlv.value)
    if fields is not None:
        return fields
    fields = {}
    for child in children(tlv.value):
        if child.tag_class is not TagClass.CONTEXT or not child.constructed:
            raise DerError(f"{what}: component is not an explicit context tag")
        if child.number in fields:
            raise DerError(f"{what}: field [{child.number}] appears twice")
        fields[child.number] = read_single(child.value)
    return fields


def _content(data: bytes, pos: int, limit: int) -> tuple[int, int] | None:
    """(content start, content end) of the element at `pos` when it has the
    shape read_tlv's fast path reads (one identifier octet, a length of at
    most two octets) and ends by `limit`; None for anything else."""
    if pos + 2 > limit or data[pos] & 0x1F == 0x1F:
        return None
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        if length == 0x81 and pos < limit:
            length = data[pos]
            pos += 1
        elif length == 0x82 and pos + 1 < limit:
            length = (data[pos] << 8) | data[pos + 1]
            pos += 2
        else:
            return None
    end = pos + length
    return None if end > limit else (pos, end)


def _explicit_fields_fast(value: bytes) -> dict[int, Tlv] | None:
    """explicit_fields over well-formed content without the wrapper elements.

    Every field of every Kerberos structure is a [n] wrapper around one inner
    element; building a Tlv for the wrapper and copying its content only to
    read the inner element cost half of explicit_fields. This walks the
    wrappers in place and builds only the inner Tlv, exactly as read_single
    would from the wrapper's content (offset 0, end = content length). It
    reads the shapes `_content` reads (one identifier octet, a length of at
    most two octets), written out here for the wrapper and the inner element
    (two calls a field were a third of its cost, and this runs for every
    field of every KDC message and Negotiate token). It returns None at the
    first thing it does not expect (another tag, a long form it does not
    read, a duplicate, a length that does not add up), and the general loop
    then gives the result or the error. At most 31 distinct low tag numbers
    fit, so MAX_ELEMENTS cannot be reached here.
    """
    fields: dict[int, Tlv] = {}
    size = len(value)
    pos = 0
    while pos < size:
        first = value[pos]
        number = first & 0x1F
        # 0xA0: context class, constructed; 0x1F would be a high tag number.
        if first & 0xE0 != 0xA0 or number == 0x1F or number in fields or pos + 2 > size:
            return None
        length = value[pos + 1]
        start = pos + 2
        if length & 0x80:
            if length == 0x81 and start < size:
                length = value[start]
                start += 1
            elif length == 0x82 and start + 1 < size:
                length = (value[start] << 8) | value[start + 1]
                start += 2
            else:
                return None
        end = start + length
        if end > size or start + 2 > end:
            return None
        inner_first = value[start]
        if inner_first & 0x1F == 0x1F:
            return None
        inner_length = value[start + 1]
        inner = start + 2
        if inner_length & 0x80:
            if inner_length == 0x81 and inner < end:
                inner_length = value[inner]
                inner += 1
            elif inner_length == 0x82 and inner + 1 < end:
                inner_length = (value[inner] << 8) | value[inner + 1]
                inner += 2
            else:
                return None
        if inner + inner_length != end:
            return None
        tlv: Tlv = _new(Tlv)
        _set_tag_class(tlv, _TAG_CLASSES[inner_first >> 6])
        _set_constructed(tlv, bool(inner_first & 0x20))
        _set_number(tlv, inner_first & 0x1F)
        _set_value(tlv, value[inner:end])
        _set_offset(tlv, 0)
        _set_end(tlv, end - start)
        fields[number] = tlv
        pos = end
    return fields


def decode_integer(tlv: Tlv, what: str = "INTEGER") -> int:
    if tlv.tag_class is not TagClass.UNIVERSAL or tlv.number not in (INTEGER, ENUMERATED):
        raise DerError(f"{what}: not an INTEGER")
    if not tlv.value:
        raise DerError(f"{what}: empty INTEGER")
    if len(tlv.value) > MAX_INTEGER_OCTETS:
        raise DerError(f"{what}: INTEGER of {len(tlv.value)} octets")
    return int.from_bytes(tlv.value, "big", signed=True)


def decode_string(tlv: Tlv, what: str = "string") -> str:
    """KerberosString is GeneralString restricted to IA5 (RFC 4120 section
    5.2.1) but implementations put UTF-8 there; decode leniently, never raise."""
    if tlv.constructed or tlv.tag_class is not TagClass.UNIVERSAL:
        raise DerError(f"{what}: not a primitive string")
    return tlv.value.decode("utf-8", errors="replace")


def decode_octets(tlv: Tlv, what: str = "OCTET STRING") -> bytes:
    if not tlv.is_universal(OCTET_STRING) or tlv.constructed:
        raise DerError(f"{what}: not a primitive OCTET STRING")
    return tlv.value


def decode_oid(tlv: Tlv, what: str = "OBJECT IDENTIFIER") -> str:
    if not tlv.is_universal(OID) or tlv.constructed:
        raise DerError(f"{what}: not an OBJECT IDENTIFIER")
    return oid_from_bytes(tlv.value)


def oid_from_bytes(value: bytes) -> str:
    """Dotted form of OID content octets (X.690 section 8.19)."""
    return _dotted_oid(bytes(value))


# Every SPNEGO token lists the same few mechanism OIDs, so their dotted forms
# are remembered; the bound keeps a capture of hostile OIDs from growing it.
# Failures raise and are not remembered (lru_cache keeps only results).
@functools.lru_cache(maxsize=256)
def _dotted_oid(value: bytes) -> str:
    if not value or value[-1] & 0x80:
        raise DerError("OBJECT IDENTIFIER empty or truncated")
    arcs: list[int] = []
    current = 0
    for octet in value:
        current = (current << 7) | (octet & 0x7F)
        if not octet & 0x80:
            arcs.append(current)
            current = 0
            if len(arcs) > MAX_OID_ARCS:
                raise DerError("OBJECT IDENTIFIER has too many arcs")
        elif current.bit_length() > 64:
            raise DerError("OBJECT IDENTIFIER arc too large")
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(arc) for arc in head + arcs[1:])


def decode_bit_string(tlv: Tlv, what: str = "BIT STRING") -> tuple[int, int]:
    """(value, bit count) of a BIT STRING; bit 0 is the most significant bit
    of the first octet (X.690 section 8.6), as RFC 4120 numbers flags."""
    if not tlv.is_universal(BIT_STRING) or tlv.constructed:
        raise DerError(f"{what}: not a primitive BIT STRING")
    if not tlv.value:
        raise DerError(f"{what}: empty BIT STRING")
    unused = tlv.value[0]
    body = tlv.value[1:]
    if unused > 7 or (unused and not body) or len(body) > MAX_INTEGER_OCTETS:
        raise DerError(f"{what}: invalid BIT STRING")
    return int.from_bytes(body, "big"), len(body) * 8 - unused


def decode_time(tlv: Tlv, what: str = "KerberosTime") -> str:
    """KerberosTime is GeneralizedTime "YYYYMMDDHHMMSSZ" (RFC 4120 section
    5.2.3); kept as the wire string, which sorts and reads as is."""
    if not tlv.is_universal(GENERALIZED_TIME) or tlv.constructed:
        raise DerError(f"{what}: not a GeneralizedTime")
    return tlv.value.decode("ascii", errors="replace")
