"""The HTML report in a real browser: Debian's chromium, headless (installed
by scripts/test when missing; these tests skip, saying so, without it).

Each golden page (tests/golden/*.html) is loaded: no console message (no
error, no Content-Security-Policy refusal), the findings' rule ids are in the
DOM, every evidence link resolves to an arrow of a ladder, one arrow per
message at Wireshark's frames, and a screenshot shows a rendered page. The
hostile capture's page runs nothing from the capture, while the page's one
script does run (it opens the message an address points to)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _html import (
    GOLDEN_CASES,
    browser,
    console,
    golden_path,
    hostile_capture,
    parse,
    png_variety,
    tshark_frames,
)

from authtrace.pipeline import analyze
from authtrace.report.html import render_report_html


def _load(page: Path, fragment: str = "") -> tuple[str, list[str]]:
    """The DOM after the page's script ran, and what it wrote to the console."""
    done = browser("--dump-dom", page.as_uri() + fragment)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, console(done.stderr)


def test_the_console_check_sees_errors_and_refusals(tmp_path: Path) -> None:
    # The harness itself: a page with an error and a blocked load must be caught.
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><head><meta http-equiv='Content-Security-Policy' "
        "content=\"default-src 'none'\"></head><body><img src='http://192.0.2.1/x.png'>"
        "</body></html>"
    )
    _dom, messages = _load(bad)
    assert messages and "Content Security Policy" in " ".join(messages)


@pytest.mark.oracle
@pytest.mark.parametrize(("capture", "keys"), GOLDEN_CASES, ids=lambda c: getattr(c, "stem", ""))
def test_golden_page_in_chromium(tmp_path: Path, capture: Path, keys: Path | None) -> None:
    source = golden_path(capture).read_text(encoding="utf-8")
    page = tmp_path / "page.html"
    page.write_text(source, encoding="utf-8")
    dom_text, messages = _load(page)
    assert not messages, messages
    dom = parse(dom_text)
    assert dom.rules == parse(source).rules  # every finding, in order
    arrows = {a.anchor: a for a in dom.arrows}
    assert arrows, "no ladder drawn"
    for finding, target in dom.evidence:
        assert target in arrows or target in dom.events, (finding, target)
    for target in dom.links:
        assert target in dom.ids, target
    http = sorted(a.frame for a in dom.arrows if a.connection is not None)
    assert http == tshark_frames(capture, "http.request || http.response", keys)
    shot = tmp_path / "page.png"
    done = browser(f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri())
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    assert png_variety(shot) > 64, "the screenshot is blank"


def test_hostile_page_runs_nothing_from_the_capture(tmp_path: Path) -> None:
    text = render_report_html(analyze([str(hostile_capture(tmp_path))]), draw_all=True)
    page = tmp_path / "hostile.html"
    page.write_text(text, encoding="utf-8")
    first = parse(text).arrows[0].anchor.replace("-f", "-mf", 1)
    dom_text, messages = _load(page, f"#{first}")
    assert not messages, messages  # nothing was even refused: nothing tried to run
    dom = parse(dom_text)
    # The page's own script did run (so scripts could), and the capture's did not.
    assert first in dom.opened
    assert not [a for a in dom.attributes if a[1] == "data-pwned"], "capture markup ran"
    assert not [a for a in dom.attributes if a[0] == "img"], "capture markup became an element"
    assert dom.scripts == 1
