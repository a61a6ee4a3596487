"""`analyze` on a capture of a few thousand connections from one address (a
server behind a reverse proxy, issue 10): its findings are exactly those of its
parts analysed one by one, and the text report stays readable. No timing here:
speed is measured by benchmarks/auth.py."""

from __future__ import annotations

import re
import struct
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from authtrace.diagnose import Fold, folding_of  # noqa: E402
from authtrace.pipeline import analyze  # noqa: E402
from authtrace.report.as_text import Ladders, render_report  # noqa: E402
from authtrace.words import counted  # noqa: E402
from benchmarks.auth_dense import Shape, write_pcap  # noqa: E402

PARTS = 4
PER_PART = 600
# Parts start an hour apart: longer than every window links.py looks across.
PART_GAP_US = 3600 * 1_000_000


def _records(path: Path) -> list[bytes]:
    data = path.read_bytes()
    out, offset = [], 24
    while offset < len(data):
        length = struct.unpack_from("<I", data, offset + 8)[0]
        out.append(data[offset : offset + 16 + length])
        offset += 16 + length
    return out


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    folder = tmp_path_factory.mktemp("scale")
    parts = []
    for n in range(PARTS):
        path = folder / f"part{n}.pcap"
        shape = Shape(seed=10 + n, clients=1, start_us=1_717_408_800_000_000 + n * PART_GAP_US)
        write_pcap(path, "mix", PER_PART, shape=shape)
        parts.append(path)
    whole = folder / "whole.pcap"
    header = parts[0].read_bytes()[:24]
    whole.write_bytes(header + b"".join(r for p in parts for r in _records(p)))
    return whole, parts


def _normalised(findings, frame_offset: int, first_frames: dict[int, int]):  # type: ignore[no-untyped-def]
    """(rule, host, deciding fields, severity) -> occurrences, frames, connections
    (by first frame) as they are numbered in the whole capture, and how many
    occurrences carried each value of each other field (SUM fields: their total)."""
    out: dict[tuple[object, ...], list[object]] = {}
    for finding in findings:
        kept = tuple((n, v) for n, v in finding.fields if folding_of(n) is Fold.KEY)
        key = (finding.rule, finding.host, kept, finding.severity)
        values: Counter[tuple[str, str]] = Counter()
        for name, value in finding.fields:
            if folding_of(name) is Fold.SUM:
                values[(name, "total")] += int(value)
            elif folding_of(name) is Fold.LIST:
                values[(name, value)] += finding.occurrences
        for held in finding.values:
            for each in held.values:
                values[(held.name, each.value)] += each.count
        assert key not in out, "one finding per story"
        out[key] = [
            finding.occurrences,
            {frame + frame_offset for frame in finding.frames},
            {first_frames[c] + frame_offset for c in finding.connections},
            values,
        ]
    return out


def test_findings_of_the_whole_are_those_of_its_parts(captures) -> None:  # type: ignore[no-untyped-def]
    whole_path, parts = captures
    whole = analyze([whole_path])
    assert len(whole.view.timelines) > PARTS * PER_PART  # split handshakes add connections
    assert len({t.connection.client.ip for t in whole.view.timelines}) == 1
    expected: dict[tuple[object, ...], list[object]] = defaultdict(
        lambda: [0, set(), set(), Counter()]
    )
    offset = 0
    for part in parts:
        report = analyze([part])
        firsts = {t.connection.id: t.connection.first_frame for t in report.view.timelines}
        for key, (count, frames, connections, values) in _normalised(
            report.findings, offset, firsts
        ).items():
            expected[key][0] += count  # type: ignore[operator]
            expected[key][1] |= frames  # type: ignore[operator]
            expected[key][2] |= connections  # type: ignore[operator]
            expected[key][3] += values  # type: ignore[operator]
        offset += report.captures[0].frames
    firsts = {t.connection.id: t.connection.first_frame for t in whole.view.timelines}
    got = _normalised(whole.findings, 0, firsts)
    assert got == dict(expected)
    rules = {key[0] for key in got}
    assert {"ntlm-handshake-split", "ntlm-logon-failed", "handshake-closed-midway"} <= rules


def test_big_report_shows_counts_and_ladders_of_named_connections(captures) -> None:  # type: ignore[no-untyped-def]
    whole_path, _parts = captures
    report = analyze([whole_path])
    text = render_report(report)
    named = {c for f in report.findings for c in f.connections}
    drawn = set(map(int, re.findall(r"^Connection (\d+) ", text, re.MULTILINE)))
    # Each finding draws the connections of its first three occurrences and its
    # last: a bounded number, whatever the number of occurrences.
    for finding in report.findings:
        assert len(finding.examples) <= 4
        assert len(finding.occurrences_kept) == finding.occurrences
        assert finding.connections[0] in drawn and finding.connections[-1] in drawn
        for occurrence in finding.examples:
            assert set(occurrence.connections) <= drawn
    assert drawn < named
    assert len(drawn) <= sum(4 * 2 for f in report.findings)
    assert f"({counted(len(named - drawn), 'connection')} that findings name not drawn" in text
    assert "`--ladders all` draws every one" in text
    merged = [f for f in report.findings if len(f.connections) > 8]
    assert merged, "the mix profile repeats some finding on many connections"
    assert f"{len(merged[0].connections)} connections: " in text
    assert "(--json lists all)" in text
    everything = render_report(report, Ladders.ALL)
    assert len(re.findall(r"^Connection \d+ ", everything, re.MULTILINE)) == len(
        [t for t in report.view.timelines if any(s.credentials or s.challenges for s in t.steps)]
    )
    assert len(text.splitlines()) < len(everything.splitlines()) / 5
    # One finding per story, a few ladders each: a few hundred lines for 2,400
    # connections (before folding, one finding per user and pair: thousands).
    assert len(text.splitlines()) < 400


def test_finding_problems_counts_the_connections_block_by_block(captures) -> None:  # type: ignore[no-untyped-def]
    """The rules of a big capture take seconds: the progress of "finding
    problems" counts the connections whose blocks were judged, up to all."""
    from authtrace.pipeline import Phase, ProgressReport

    whole_path, _parts = captures
    seen: list[ProgressReport] = []
    report = analyze([whole_path], seen.append)
    told = [(r.done, r.total) for r in seen if r.phase is Phase.DIAGNOSING]
    total = len(report.view.timelines)
    assert told[0] == (0, total) and told[-1] == (total, total)
    assert len(told) >= PARTS + 1  # a count after each block: the parts are an hour apart
    assert [done for done, _ in told] == sorted(done for done, _ in told)


def test_the_summary_counts_of_many_blocks_are_those_of_one_walk(captures) -> None:  # type: ignore[no-untyped-def]
    """Fed block by block (Report.tally, each block's own timelines), the
    summary counts what one walk of every timeline counts."""
    from authtrace.report.summary import HostTally

    whole_path, _parts = captures
    report = analyze([whole_path])
    walked = HostTally.of(report)
    assert report.tally is not None
    assert report.tally.hosts(report.findings) == walked.hosts(report.findings)
    assert report.tally.with_auth == walked.with_auth > PARTS * PER_PART / 2


def test_the_html_ladders_count_what_they_leave_out_as_a_walk_does(captures) -> None:  # type: ignore[no-untyped-def]
    """The HTML ladders read back only the connections they draw: the ones with
    authentication left out are the tally's count less those drawn, the count
    a walk of every timeline gives."""
    from authtrace.report.html.ladder import build_ladders

    whole_path, _parts = captures
    report = analyze([whole_path])
    assert report.tally is not None
    named = [o.connections for f in report.findings for o in f.examples]
    counted_ = build_ladders(report.view, named, False, with_auth=report.tally.with_auth)
    walked = build_ladders(report.view, named, False)
    assert counted_.left_out_connections == walked.left_out_connections > PARTS * PER_PART / 2
