"""Counts in words (authtrace.words): singular exactly when the count is 1,
irregular plurals written out, and one copy of the helper for every layer."""

from __future__ import annotations

import pytest

from authtrace.diagnose import finding
from authtrace.words import agreeing, counted, plural


@pytest.mark.parametrize(
    ("n", "noun", "written"),
    [
        (1, "connection", "1 connection"),
        (0, "connection", "0 connections"),
        (2, "connection", "2 connections"),
        (1, "normal handshake leg", "1 normal handshake leg"),
        (3, "normal handshake leg", "3 normal handshake legs"),
        (1, "entry", "1 entry"),
        (0, "entry", "0 entries"),
        (2, "IIS log entry", "2 IIS log entries"),
        (2, "401", "2 401s"),
    ],
)
def test_counted_is_singular_only_for_one(n: int, noun: str, written: str) -> None:
    assert counted(n, noun) == written


def test_a_phrase_can_name_its_own_plural() -> None:
    assert counted(1, "later message or close", "later messages or closes") == (
        "1 later message or close"
    )
    assert counted(4, "later message or close", "later messages or closes") == (
        "4 later messages or closes"
    )


def test_verbs_and_pronouns_agree_with_the_count() -> None:
    assert agreeing(1, "was") == "was"
    assert agreeing(2, "was") == "were"
    assert agreeing(0, "is") == "are"
    assert agreeing(1, "its") == "its"
    assert agreeing(5, "its") == "their"
    assert plural("entry") == "entries"


def test_diagnose_uses_the_same_helper() -> None:
    assert finding.counted is counted
