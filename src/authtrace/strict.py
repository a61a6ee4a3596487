"""Strict mode: an internal error raises instead of becoming an anomaly.

This module owns the one switch the catch-alls consult. A user's run must
survive a bug (a catch-all in the reassembler, the HTTP tracker and parser,
the Kerberos tracker, the rules, the readers turns the exception into an
anomaly and the capture goes on), but a test must never count a bug as a
damaged capture: under strict mode each catch-all calls `internal_error`,
which raises the exception again. The test suite turns it on
(tests/conftest.py); `AUTHTRACE_STRICT=1` turns it on for any run (the fuzz
campaign uses it). Invariant: off unless asked for, so no user ever sees a
traceback from it.
"""

from __future__ import annotations

import os

_strict = os.environ.get("AUTHTRACE_STRICT", "") not in ("", "0")


def set_strict(on: bool) -> None:
    """Turn strict mode on or off for this process."""
    global _strict
    _strict = on


def is_strict() -> bool:
    return _strict


def internal_error(error: BaseException) -> None:
    """Called inside a catch-all's except block: re-raises `error` under strict
    mode, returns (so the caller records its anomaly) otherwise."""
    if _strict:
        raise error
