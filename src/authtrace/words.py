"""Counts in words: "1 connection, 3 exchanges", never "connection(s)".

This module owns how every layer writes a count in the text a user reads
(reports, anomaly messages, rule explanations, the CLI's lines); it imports
nothing from authtrace, so readers, net, tls and diagnose alike can use it.
Invariant: a word is in the singular exactly when its count is 1 (0 takes the
plural: "0 errors"); a plural that is not the word with an "s" added is
written out in `_IRREGULAR`, never guessed.

Machine-read values (JSON numbers, rule ids, anomaly kinds) are no business
of this module: they stay numbers and ids.
"""

from __future__ import annotations

# Singular -> plural where adding "s" would be wrong: nouns, and the few verbs
# and pronouns a message makes agree with its count ("1 record was", "2 were";
# "it" as an object: "no finding names it", "names them").
_IRREGULAR = {
    "entry": "entries",
    "it": "them",
    "its": "their",
    "is": "are",
    "was": "were",
    "stays": "stay",
}


def plural(word: str) -> str:
    """The plural of `word`; in a phrase, of its last word ("normal handshake
    leg" -> "normal handshake legs", "entry" -> "entries")."""
    head, space, last = word.rpartition(" ")
    return head + space + _IRREGULAR.get(last, last + "s")


def agreeing(n: int, word: str, plural_word: str | None = None) -> str:
    """`word` as it agrees with a count of n: agreeing(1, "was") is "was",
    agreeing(2, "was") "were". plural_word: for words `plural` does not know
    ("is an exact copy", "are exact copies")."""
    if n == 1:
        return word
    return plural_word if plural_word is not None else plural(word)


def times(n: int) -> str:
    """How often: "once", else "2 times" (and "0 times")."""
    return "once" if n == 1 else f"{n} times"


def counted(n: int, noun: str, plural_noun: str | None = None) -> str:
    """`n` with `noun`, in the plural unless n is 1: counted(1, "connection") is
    "1 connection", counted(3, "connection") "3 connections", counted(0,
    "error") "0 errors". plural_noun: for a phrase whose plural is not that of
    its last word ("later message or close" -> "later messages or closes")."""
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {plural_noun if plural_noun is not None else plural(noun)}"
