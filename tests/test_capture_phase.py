"""The CAPTURE phase of a capture diagnosed in blocks (diagnose.Diagnosis.capture,
issue 10) walks no timeline: once the blocks have run, every rule declared
Across.CAPTURE reports over what the blocks collected (rule.grouping_rule) and
over the KDC exchanges, reading at most a few named connections (by_id). Here
the capture phase gets a view whose `timelines` raise when walked, on captures
that fire each rule converted from a whole-capture walk, and must give the
findings of one run over the whole capture."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from authtrace.diagnose import (  # noqa: E402
    ALL_RULES,
    Across,
    Diagnosis,
    Finding,
    RuleContext,
    Severity,
    diagnose,
)
from authtrace.diagnose.rule import Rule  # noqa: E402
from authtrace.handshake.links import HandshakeView, join_links  # noqa: E402
from authtrace.handshake.model import AuthExchange  # noqa: E402
from authtrace.handshake.timeline import ConnectionTimeline  # noqa: E402
from authtrace.pipeline import analyze  # noqa: E402
from authtrace.report.model import Report  # noqa: E402
from authtrace.tls.keylog import KeyLog  # noqa: E402
from benchmarks.auth_dense import Shape  # noqa: E402
from tests._blocks import SHORT_HORIZON, judged_capture, told, windowed  # noqa: E402

SCENARIOS = ROOT / "captures" / "scenarios"
PROXIED = ROOT / "captures" / "tls" / "tls13-ntlm-proxy-other-certificate.pcap"

# The rules that walked every timeline of the capture before issue 10.
CONVERTED = {
    "auth-lost-on-new-connection",
    "channel-binding-other-certificate",
    "ntlm-negotiate-rejected",
    "anonymous-logon-failed",
    "refused-without-challenge",
    "denied-after-authentication",
    "capture-incomplete",
    "kdc-error",
    "kerberos-clock-skew",
}


class WalkedEveryTimeline(AssertionError):
    """The CAPTURE phase iterated the view's timelines."""


class _Unwalkable(tuple[ConnectionTimeline, ...]):
    """Timelines that may be counted but not walked."""

    def __iter__(self) -> Iterator[ConnectionTimeline]:
        raise WalkedEveryTimeline("the CAPTURE phase walked every timeline")

    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        raise WalkedEveryTimeline("the CAPTURE phase indexed the timelines")


def _unwalkable(view: HandshakeView) -> HandshakeView:
    """The view with its links and by_id kept, its timelines unwalkable."""
    return dataclasses.replace(view, timelines=_Unwalkable(view.timelines))


def _context(report: Report, view: HandshakeView) -> RuleContext:
    return RuleContext(view, report.kdc, report.kdc_connects)


def _guarded(report: Report, view: HandshakeView | None = None) -> list[Finding]:
    """The findings of the blocks (one block: the whole view), then the
    CAPTURE phase over an unwalkable view."""
    view = view if view is not None else report.view
    diagnosis = Diagnosis()
    diagnosis.block(_context(report, view))
    diagnosis.capture(_context(report, _unwalkable(view)))
    found, problems = diagnosis.finish()
    assert not problems, problems
    return found


def _changed(report: Report, change: Callable[[AuthExchange], AuthExchange]) -> HandshakeView:
    """The report's view with every judged step passed through `change`."""
    timelines = tuple(
        ConnectionTimeline(t.connection, tuple(change(s) for s in t.steps))
        for t in report.view.timelines
    )
    return dataclasses.replace(
        report.view, timelines=timelines, by_id={t.connection.id: t for t in timelines}
    )


def _not_iis(step: AuthExchange) -> AuthExchange:
    """The step with a response that says it is nginx, not IIS."""
    from authtrace.http.messages import Header

    response = step.exchange.response
    if response is None:
        return step
    headers = tuple(h for h in response.headers if h.name.lower() != "server")
    response = dataclasses.replace(response, headers=(*headers, Header("Server", "nginx/1.24")))
    return dataclasses.replace(step, exchange=dataclasses.replace(step.exchange, response=response))


def _cases() -> Iterator[tuple[str, Report, HandshakeView]]:
    for path in sorted(SCENARIOS.glob("*.pcap")):
        report = analyze([path])
        yield path.stem, report, report.view
    log = KeyLog()
    log.add_text(PROXIED.with_suffix(".keys").read_bytes(), "keys")
    report = analyze([PROXIED], keylog=log)
    yield PROXIED.stem, report, report.view
    report = analyze([SCENARIOS / "anonymous-logon-failed.pcap"])
    yield "anonymous-logon-failed, not IIS", report, _changed(report, _not_iis)


def test_the_capture_phase_walks_no_timeline() -> None:
    fired: set[str] = set()
    for name, report, view in _cases():
        whole, problems = diagnose(_context(report, view))
        assert not problems, name
        assert told(_guarded(report, view)) == told(whole), name
        fired |= {f.rule for f in whole}
    # Each rule that used to walk the capture had work in some case.
    assert CONVERTED <= fired, CONVERTED - fired
    assert not [r.id for r in ALL_RULES if r.across is Across.CAPTURE and r.grouping is None]


def test_a_capture_rule_that_walks_the_timelines_is_caught(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The test above can fail: a CAPTURE rule that walks every step (as the
    converted rules did) meets the unwalkable timelines."""
    import authtrace.diagnose as diagnose_module

    def count(ctx: RuleContext) -> Iterator[Finding]:
        steps = sum(1 for _ in ctx.steps())
        yield Finding("walker", Severity.INFO, f"{steps}", "e", "f", None, (), ())

    walker = Rule("walker", Severity.INFO, "walks", count, across=Across.CAPTURE)
    monkeypatch.setattr(diagnose_module, "ALL_RULES", (*ALL_RULES, walker))
    report = analyze([SCENARIOS / "auth-lost-on-new-connection.pcap"])
    with pytest.raises(WalkedEveryTimeline):
        _guarded(report)


def test_blocks_then_an_unwalkable_capture_phase_give_the_whole(tmp_path: Path) -> None:
    """A generated capture cut into many blocks (tests/_blocks.py): the blocks
    collect, the capture phase over an unwalkable view reports, and the
    findings are those of the whole."""
    timelines, kdc, start, end = judged_capture(
        tmp_path / "mix.pcap", Shape(seed=5, clients=1, users=7)
    )
    blocks = windowed(timelines, SHORT_HORIZON, end, short_blocks=True)[0]
    assert len(blocks) > 5
    view = join_links(blocks, start, end, kdc)
    whole, problems = diagnose(RuleContext(view, kdc))
    assert not problems
    diagnosis = Diagnosis()
    for block in blocks:
        diagnosis.block(RuleContext(view.around(block.context), kdc), block.own)
    diagnosis.capture(RuleContext(_unwalkable(view), kdc))
    found, problems = diagnosis.finish()
    assert not problems
    assert told(found) == told(whole)
    assert "repeated-logon-failures" in {f.rule for f in whole}
