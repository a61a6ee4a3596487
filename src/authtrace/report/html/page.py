"""Template data of the HTML report and its rendering.

Owns what the page shows and in which order: findings first (severity,
title, explanation, evidence linked to the ladder arrows, IIS triple, fix),
the summary per host with a timeline of 401s, the anomalies, then the
ladders. Reuses the text renderers' words (finding fields, verdicts, the IIS
log comparison, the diff) and the JSON renderers' redaction, so the page says
what the text report says. Invariant: Jinja2 autoescaping is on for every
template; the only script is _SCRIPT, allowed by its hash.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

import jinja2

from authtrace import __version__
from authtrace.compare.diff import Comparison
from authtrace.compare.render import render_comparison
from authtrace.diagnose.finding import Finding
from authtrace.handshake.model import Outcome
from authtrace.report.as_text import captures_text, values_parts
from authtrace.report.html.ladder import Ladders, build_ladders
from authtrace.report.model import Report
from authtrace.report.summary import HostSummary, findings_count, summarize, tally_of
from authtrace.report.tls import encrypted_lines, keylog_line
from authtrace.visible import visible, visible_lines
from authtrace.words import counted

# Opens the <details> an arrow or an evidence link points to (a closed
# <details> would hide its target). Nothing else runs on the page.
_SCRIPT = (
    "function authtraceOpen(){var t=document.getElementById(location.hash.slice(1));"
    "while(t){if(t.tagName==='DETAILS'){t.open=true;}t=t.parentElement;}}"
    "window.addEventListener('hashchange',authtraceOpen);authtraceOpen();"
)
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
# Nothing may be fetched, framed or submitted; styles are inline.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    f"script-src 'sha256-{_SCRIPT_HASH}'; form-action 'none'; base-uri 'none'"
)
MAX_ANOMALIES = 50
INDEX_AFTER = 8  # more findings than this get an index by rule above them
TIMELINE_BUCKETS = 120  # columns of a host's 401 timeline, whatever the number of 401s
MAX_TIMELINE_HOSTS = 50


@dataclass(frozen=True, slots=True)
class Evidence:
    """A frame a finding cites: how the report writes it ("12", "a.pcap#12")
    and the id of the arrow that shows it ("" when no ladder draws it)."""

    name: str
    anchor: str


@dataclass(frozen=True, slots=True)
class ConnectionLink:
    """A connection a finding names, and the ladder that draws it (0: none)."""

    id: int
    ladder: int


@dataclass(frozen=True, slots=True)
class FindingView:
    number: int
    rule: str
    severity: str
    title: str
    host: str
    explanation: str
    fix: str
    frames: tuple[Evidence, ...]
    frames_left_out: int
    connections: tuple[ConnectionLink, ...]
    connections_left_out: int
    fields: tuple[tuple[str, str], ...]
    iis: str
    iis_certain: bool
    # A folded finding's fields that differ between occurrences: the text
    # report's words ("users (87): CONTOSO\\ann (3), ... and 82 more").
    values: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class RuleCount:
    """One line of the findings index: a rule, its findings and the first one."""

    rule: str
    severity: str
    title: str
    count: int
    first: int


@dataclass(frozen=True, slots=True)
class Bar:
    x: int
    normal: int
    failure: int
    incomplete: int


@dataclass(frozen=True, slots=True)
class HostTimeline:
    host: str
    bars: tuple[Bar, ...]
    peak: int


@dataclass(frozen=True, slots=True)
class Body:
    """One report's part of a page (a diff page has two)."""

    anchor: str  # prefix of element ids, unique in the page
    heading: str
    captures: str
    keylog: str
    findings: tuple[FindingView, ...]
    index: tuple[RuleCount, ...]  # by rule, when there are many findings
    hosts: tuple[HostSummary, ...]
    findings_count: str  # "1 error, 0 warnings, 0 notes; 0 other TCP connections carried no HTTP"
    timelines: tuple[HostTimeline, ...]
    timeline_span: str
    encrypted: tuple[str, ...]
    iis_section: str
    anomalies: tuple[tuple[str, str, str], ...]  # kind, frame as the report names it, message
    anomalies_left_out: int
    ladders: Ladders


_MAX_EVIDENCE = 60  # evidence frames listed per finding (--json lists all)
_MAX_VALUES = 20  # values of a folded field listed per finding (--json lists all)


@functools.cache
def _environment() -> jinja2.Environment:
    """The templates, read and compiled once per process."""
    source = resources.files("authtrace.report.html") / "templates"
    templates = {
        name: (source / name).read_text(encoding="utf-8")
        for name in ("page.html.j2", "body.html.j2")
    }
    environment = jinja2.Environment(
        loader=jinja2.DictLoader(templates),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # {{ n|counted("failure") }}: counts in words, as the text report writes them.
    environment.filters["counted"] = counted
    return environment


def _body(
    report: Report,
    anchor: str,
    heading: str,
    show_secrets: bool,
    draw_all: bool,
    iis_section: str,
) -> Body:
    # One group per story: each drawn occurrence of a folded finding (its first
    # ones and its last, as the text report draws them) is a ladder of its own.
    named = [o.connections for f in report.findings for o in f.examples]
    cited = frozenset(frame for f in report.findings for frame in f.frames)
    ladders = build_ladders(
        report.view,
        named,
        show_secrets,
        draw_all,
        report.frame_name,
        report.kdc,
        cited,
        report.logged(),
        tally_of(report).with_auth,
    )
    hosts = tuple(summarize(report))
    captures = captures_text(report)
    anomalies = tuple(
        (
            visible(a.kind),
            visible(_bare(report.frame_name(a.frame))) if a.frame else "",
            visible(a.message),
        )
        for a in report.anomalies[:MAX_ANOMALIES]
    )
    timelines, span = _timelines(report)
    findings = tuple(
        _finding(f, n, ladders, report.frame_name) for n, f in enumerate(report.findings, 1)
    )
    return Body(
        anchor=anchor,
        heading=heading,
        captures=visible(captures),
        keylog=visible(keylog_line(report.keylog) or ""),
        findings=findings,
        index=_index(findings) if len(findings) > INDEX_AFTER else (),
        hosts=tuple(
            HostSummary(
                visible(h.host),
                h.connections,
                h.exchanges,
                tuple((visible(m), c) for m, c in h.authenticated_with),
                h.normal_401,
                h.failed_401,
                h.incomplete_401,
                h.rules,
            )
            for h in hosts
        ),
        findings_count=findings_count(report),
        timelines=timelines,
        timeline_span=span,
        encrypted=tuple(
            visible(line)
            for line in encrypted_lines(
                report.encrypted_groups, report.encrypted_total, report.keylog
            )
        ),
        iis_section=visible_lines(iis_section.rstrip().split("\n")) if iis_section else "",
        anomalies=anomalies,
        anomalies_left_out=max(0, len(report.anomalies) - MAX_ANOMALIES),
        ladders=ladders,
    )


def _index(findings: tuple[FindingView, ...]) -> tuple[RuleCount, ...]:
    """The findings counted by rule, in the order of each rule's first finding."""
    first: dict[str, FindingView] = {}
    counts: dict[str, int] = {}
    for finding in findings:
        first.setdefault(finding.rule, finding)
        counts[finding.rule] = counts.get(finding.rule, 0) + 1
    return tuple(
        RuleCount(rule, f.severity, f.title, counts[rule], f.number) for rule, f in first.items()
    )


def _bare(name: str) -> str:
    """ "12" for "#12" (the words around say it is a frame); "a.pcap#12" stays."""
    return name.removeprefix("#")


def _finding(
    finding: Finding, number: int, ladders: Ladders, name: Callable[[int], str]
) -> FindingView:
    frames = finding.frames[:_MAX_EVIDENCE]
    connections = finding.connections[:_MAX_EVIDENCE]
    return FindingView(
        number=number,
        rule=finding.rule,
        severity=finding.severity.value,
        title=visible(finding.title),
        host=visible(finding.host or ""),
        explanation=visible(finding.explanation),
        fix=visible(finding.fix),
        frames=tuple(
            Evidence(visible(_bare(name(frame))), ladders.anchors.get(frame, ""))
            for frame in frames
        ),
        frames_left_out=len(finding.frames) - len(frames),
        connections=tuple(ConnectionLink(c, ladders.ladder_of.get(c, 0)) for c in connections),
        connections_left_out=len(finding.connections) - len(connections),
        fields=tuple((visible(k), visible(v)) for k, v in finding.fields if v),
        iis=str(finding.iis) if finding.iis else "",
        iis_certain=bool(finding.iis and finding.iis.certain),
        values=tuple(
            (visible(label), visible(listed))
            for label, listed in (values_parts(held, _MAX_VALUES) for held in finding.values)
        ),
    )


def _timelines(report: Report) -> tuple[tuple[HostTimeline, ...], str]:
    """Per host, the judged 401/407s in TIMELINE_BUCKETS columns over the
    capture's span: counted, so the chart's size does not grow with the capture."""
    from authtrace.handshake.links import host_of

    start, end = report.view.capture_start, report.view.capture_end
    span = max(end - start, 1e-9)
    counts: dict[str, list[list[int]]] = {}
    for timeline in report.view.timelines:
        for step in timeline.steps:
            if step.outcome is None or step.exchange.response is None:
                continue
            host = host_of(step, timeline.connection)
            columns = counts.setdefault(host, [[0, 0, 0] for _ in range(TIMELINE_BUCKETS)])
            at = step.exchange.response.timestamp
            column = min(TIMELINE_BUCKETS - 1, max(0, int((at - start) / span * TIMELINE_BUCKETS)))
            index = {Outcome.NORMAL: 0, Outcome.FAILURE: 1, Outcome.INCOMPLETE: 2}[step.outcome]
            columns[column][index] += 1
    out = []
    for host in sorted(counts)[:MAX_TIMELINE_HOSTS]:
        columns = counts[host]
        bars = tuple(
            Bar(index * 5, n, f, i) for index, (n, f, i) in enumerate(columns) if n or f or i
        )
        peak = max(max(b.normal, b.failure + b.incomplete) for b in bars)
        out.append(HostTimeline(visible(host), bars, peak))
    seconds = end - start if end > start else 0.0
    return tuple(out), f"{seconds:.3f} s"


def _render(title: str, bodies: list[Body], comparison: str, show_secrets: bool) -> str:
    template = _environment().get_template("page.html.j2")
    return template.render(
        title=title,
        bodies=bodies,
        comparison=comparison,
        show_secrets=show_secrets,
        csp=CONTENT_SECURITY_POLICY,
        script=_SCRIPT,
        version=__version__,
        row_height=34,
        timeline_buckets=TIMELINE_BUCKETS,
    )


def render_report_html(
    report: Report, show_secrets: bool = False, draw_all: bool = False, iis_section: str = ""
) -> str:
    """The page of `analyze --html`: the report's findings, summary, anomalies
    and the ladders of the connections the findings name (all with draw_all).
    iis_section is the text of the IIS log comparison, shown as it is printed."""
    body = _body(report, "r", "Analysis", show_secrets, draw_all, iis_section)
    return _render("authtrace analysis of " + body.captures, [body], "", show_secrets)


def render_diff_html(
    comparison: Comparison, working: Report, failing: Report, show_secrets: bool = False
) -> str:
    """The page of `diff --html`: the comparison as `diff` prints it, then each
    capture's findings and ladders."""
    bodies = [
        _body(working, "w", "Working capture", show_secrets, False, ""),
        _body(failing, "f", "Failing capture", show_secrets, False, ""),
    ]
    title = f"authtrace diff: {bodies[0].captures} vs {bodies[1].captures}"
    # Lines of a text renderer: made visible one by one (a newline of the
    # capture is already an escape in them), joined by the page's own breaks.
    comparison_text = visible_lines(render_comparison(comparison).rstrip().split("\n"))
    return _render(title, bodies, comparison_text, show_secrets)
