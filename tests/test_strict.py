"""Internal errors fail tests: under strict mode (on for the whole suite, see
conftest.py) a catch-all raises; off, it keeps the user's run alive with an
anomaly. The fast lane never reports its own bug as capture damage: it
switches itself off and the normal path carries on with the same result."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _pcap import tcp_capture

from authtrace import strict
from authtrace.http.parser import HttpParser
from authtrace.lane import FastLane
from authtrace.pipeline import Pipeline, analyze

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
_INTERNAL = ("internal-error", "parser-error", "analysis-error")


@pytest.fixture
def lenient() -> Iterator[None]:
    strict.set_strict(False)
    try:
        yield
    finally:
        strict.set_strict(True)


def _bug(*_args: object, **_kwargs: object) -> None:
    raise RuntimeError("injected bug")


def _body_capture(tmp_path: Path) -> Path:
    body = b"x" * 200_000
    request = b"GET /big HTTP/1.1\r\nHost: web01\r\n\r\n"
    response = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    return tcp_capture(tmp_path / "body.pcap", [(True, request), (False, response)] * 2)


def test_suite_runs_strict() -> None:
    assert strict.is_strict()


def test_parser_bug_raises_under_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(HttpParser, "_run", _bug)
    with pytest.raises(RuntimeError, match="injected bug"):
        analyze([CAPTURES / "scenarios" / "healthy-ntlm.pcap"])


def test_parser_bug_is_an_anomaly_for_a_user(
    monkeypatch: pytest.MonkeyPatch, lenient: None
) -> None:
    monkeypatch.setattr(HttpParser, "_run", _bug)
    report = analyze([CAPTURES / "scenarios" / "healthy-ntlm.pcap"])
    assert "http-parser-error" in {a.kind for a in report.anomalies}


def _broken_claimer(self: FastLane):  # type: ignore[no-untyped-def]
    def claim(*_args: object) -> bool:
        raise RuntimeError("lane bug")

    return claim


def _exchanges(path: Path, fast_lane: bool) -> tuple[list[tuple[object, ...]], list[str]]:
    pipeline = Pipeline(fast_lane=fast_lane)
    seen = [
        (
            e.index,
            e.response.body_size if e.response else None,
            e.response.shown_frame if e.response else None,
        )
        for connection in pipeline.connections([path])
        for e in connection.exchanges
    ]
    return seen, [a.kind for a in pipeline.result.anomalies]


def test_lane_bug_switches_the_lane_off_not_capture_corrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lenient: None
) -> None:
    capture = _body_capture(tmp_path)
    expected, _ = _exchanges(capture, fast_lane=False)
    monkeypatch.setattr(FastLane, "_claimer", _broken_claimer)
    got, kinds = _exchanges(capture, fast_lane=True)
    assert got == expected and len(got) == 2
    assert "capture-corrupt" not in kinds
    assert kinds.count("lane-internal-error") == 1


def test_lane_bug_raises_under_strict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    capture = _body_capture(tmp_path)
    monkeypatch.setattr(FastLane, "_claimer", _broken_claimer)
    with pytest.raises(RuntimeError, match="lane bug"):
        _exchanges(capture, fast_lane=True)


@pytest.mark.parametrize(
    "capture",
    sorted(p for p in CAPTURES.rglob("*") if p.suffix in {".pcap", ".pcapng", ".gz", ".cap"}),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_no_capture_of_the_repository_meets_an_internal_error(capture: Path) -> None:
    """Strict mode would raise already; this says it in so many words."""
    report = analyze([capture])
    assert not [a for a in report.anomalies if a.kind.endswith(_INTERNAL)]


def test_a_broken_rule_raises_under_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    import authtrace.diagnose as diagnose_module
    from authtrace.diagnose import Rule, Severity

    broken = Rule("injected-bug", Severity.INFO, "a rule that raises", _bug)  # type: ignore[arg-type]
    monkeypatch.setattr(diagnose_module, "ALL_RULES", (broken,))
    with pytest.raises(RuntimeError, match="injected bug"):
        analyze([CAPTURES / "scenarios" / "healthy-ntlm.pcap"])
