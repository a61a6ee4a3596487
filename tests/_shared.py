"""Helpers shared by the tests: the public captures folder and a DER builder.

The public captures live in ../shared/captures beside the repository; tests
that need one skip (saying why) when the folder or tshark is absent.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "captures"


def shared_capture(name: str, tshark: bool = True) -> Path:
    """The path of a public capture; skips when it (or tshark, if needed) is absent."""
    path = SHARED / name
    if not path.exists():
        pytest.skip("shared captures absent")
    if tshark and shutil.which("tshark") is None:
        pytest.skip("tshark absent")
    return path


def tlv(tag: int, value: bytes) -> bytes:
    """One DER tag-length-value (definite length, X.690 section 8.1.3)."""
    n = len(value)
    if n < 0x80:
        return bytes([tag, n]) + value
    octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + value
