"""Golden HTML reports: the whole `analyze --ladders all --html -` page of a
few scenario captures (a TLS one decrypted with its key log among them), with
the volatile parts normalised (program version, where the repository is),
compared with the reviewed copies in tests/golden/*.html. The browser checks
of the same pages are in test_html_browser.py.

After an intended change, regenerate with AUTHTRACE_UPDATE_GOLDEN=1, open the
changed pages in a browser and review the diff of tests/golden/ before
committing it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from _html import GOLDEN_CASES, ROOT, golden_path, render_golden

# An absolute path naming a capture or key log: a golden page must name them
# relative to the repository, wherever the repository is checked out.
_ABSOLUTE_FILE = re.compile(
    r"(?<![\w.:/])/(?:[\w.-]+/)+[\w.-]+\.(?:pcapng|pcap|etl|cap|keys|log)\b"
)


@pytest.mark.parametrize(("capture", "keys"), GOLDEN_CASES, ids=lambda c: getattr(c, "stem", ""))
def test_page_matches_golden(capture: Path, keys: Path | None) -> None:
    got = render_golden(capture, keys)
    path = golden_path(capture)
    if os.environ.get("AUTHTRACE_UPDATE_GOLDEN"):
        path.write_text(got, encoding="utf-8")
    expected = path.read_text(encoding="utf-8")
    assert got == expected, f"{path.name}: page changed; see the module docstring"


def test_golden_pages_name_no_path_of_this_machine() -> None:
    for capture, _keys in GOLDEN_CASES:
        text = golden_path(capture).read_text(encoding="utf-8")
        assert str(ROOT) not in text
        assert _ABSOLUTE_FILE.search(text) is None, _ABSOLUTE_FILE.search(text)
        assert "captures/" in text  # the capture is named, relative to the repository
