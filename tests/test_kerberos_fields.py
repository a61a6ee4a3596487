"""Labelled numbers and flag names (kerberos/fields.py): the fast forms give
exactly what the plain definitions give."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from authtrace.kerberos.fields import Labelled, flag_names, label
from authtrace.kerberos.messages import AP_OPTIONS, KDC_OPTIONS, MESSAGE_TYPES


def _flag_names_bit_by_bit(table: dict[int, str], value: int, bits: int) -> tuple[str, ...]:
    # The definition: bit 0 is the most significant of `bits` (RFC 4120 section 5.2.8).
    return tuple(
        table.get(bit, f"bit-{bit}") for bit in range(bits) if value >> (bits - 1 - bit) & 1
    )


@given(
    st.sampled_from([KDC_OPTIONS, AP_OPTIONS, {}]),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.sampled_from([1, 8, 32]),
)
def test_flag_names_visit_the_set_bits_in_order(
    table: dict[int, str], value: int, bits: int
) -> None:
    assert flag_names(table, value, bits) == _flag_names_bit_by_bit(table, value, bits)


def test_flag_names_of_known_options() -> None:
    assert flag_names(KDC_OPTIONS, 0x40810000) == ("forwardable", "renewable", "canonicalize")
    assert flag_names(KDC_OPTIONS, 0x00000001) == ("validate",)  # bit 31
    assert flag_names({}, 0x00000001) == ("bit-31",)


@given(st.integers(min_value=-200, max_value=200))
def test_label_is_the_labelled_number(value: int) -> None:
    made = label(MESSAGE_TYPES, value)
    assert type(made) is Labelled
    assert made == Labelled(value, MESSAGE_TYPES.get(value, f"UNKNOWN ({value})"))


def test_labels_are_made_once_per_table_and_number() -> None:
    """Issue 10: the same (table, number) gives one Labelled; another table's
    same number keeps its own name, and an unknown number is still named so."""
    first = label(MESSAGE_TYPES, 12)
    assert first is label(MESSAGE_TYPES, 12) and first == Labelled(12, "TGS-REQ")
    other = {12: "twelve"}
    assert label(other, 12) == Labelled(12, "twelve")
    assert label(MESSAGE_TYPES, 999) == Labelled(999, "UNKNOWN (999)")
