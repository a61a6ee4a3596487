"""Linking over a sliding window of capture time (handshake/links.py
LinkWindow, issue 10): the blocks it hands on, joined, are exactly what `link`
finds over the whole capture, and the findings are the same; a split handshake
whose two connections are judged in different blocks is still found; a
connection that begins back in time is counted, not silently mislinked."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from authtrace.diagnose import RuleContext, diagnose  # noqa: E402
from authtrace.handshake.links import (  # noqa: E402
    FOLLOW_UP_WINDOW,
    LINK_HORIZON,
    SPLIT_WINDOW,
    WINDOW_HORIZON,
    HandshakeView,
    LinkedBlock,
    LinkWindow,
    join_links,
    link,
)
from authtrace.handshake.timeline import ConnectionTimeline, build_timeline  # noqa: E402
from authtrace.kerberos.kdc import KdcExchange  # noqa: E402
from authtrace.pipeline import analyze, read_connections  # noqa: E402
from authtrace.words import counted  # noqa: E402
from benchmarks.auth_dense import Shape, write_pcap  # noqa: E402
from tests._blocks import SHORT_HORIZON, Judged, judged_capture, windowed  # noqa: E402


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Judged:
    return judged_capture(tmp_path_factory.mktemp("window") / "mix.pcap", Shape(seed=5, clients=1))


def _windowed(
    timelines: list[ConnectionTimeline], horizon: float, end: float, short_blocks: bool = False
) -> tuple[list[LinkedBlock], LinkWindow]:
    return windowed(timelines, horizon, end, short_blocks)


def _findings(view: HandshakeView, kdc: tuple[KdcExchange, ...]) -> list[tuple[object, ...]]:
    found, problems = diagnose(RuleContext(view, kdc))
    assert not problems
    return [(f.rule, f.severity, f.title, f.host, f.fields, f.connections, f.frames) for f in found]


def _same_view(got: HandshakeView, expected: HandshakeView) -> None:
    for name in ("timelines", "splits", "relayed", "by_id", "kdc_links", "clients", "fronts"):
        assert getattr(got, name) == getattr(expected, name), name
    assert list(got.fronts) == list(expected.fronts)  # walked by the ladders: same order


def test_horizon_covers_every_link_kind() -> None:
    from authtrace.handshake.attribution import FRONT_WINDOW
    from authtrace.handshake.links import RELAY_WINDOW

    assert LINK_HORIZON == max(FOLLOW_UP_WINDOW, SPLIT_WINDOW, RELAY_WINDOW, FRONT_WINDOW)


def test_blocks_joined_are_the_whole_capture_linked(capture) -> None:  # type: ignore[no-untyped-def]
    timelines, kdc, start, end = capture
    expected = link(timelines, start, end, kdc)
    blocks, window = _windowed(timelines, SHORT_HORIZON, end)
    # The window really slid: many blocks of BLOCK_HORIZONS horizons each.
    assert window.blocks == len(blocks) > 5
    assert window.late == 0
    got = join_links(blocks, start, end, kdc)
    _same_view(got, expected)
    assert _findings(got, kdc) == _findings(expected, kdc)
    assert {f[0] for f in _findings(got, kdc)} >= {"ntlm-handshake-split", "ntlm-logon-failed"}


def test_each_connection_is_judged_in_one_block(capture) -> None:  # type: ignore[no-untyped-def]
    timelines, _kdc, _start, end = capture
    blocks, _window = _windowed(timelines, SHORT_HORIZON, end)
    ids = [t.connection.id for block in blocks for t in block.timelines]
    assert sorted(ids) == [t.connection.id for t in timelines]
    splits = [split for block in blocks for split in block.splits]
    assert len(splits) == len({split.authenticate for split in splits})


def test_split_judged_across_a_block_boundary_is_found(capture) -> None:  # type: ignore[no-untyped-def]
    timelines, kdc, start, end = capture
    blocks, _window = _windowed(timelines, SHORT_HORIZON, end, short_blocks=True)
    block_of = {t.connection.id: n for n, block in enumerate(blocks) for t in block.timelines}
    splits = [split for block in blocks for split in block.splits]
    across = [
        s for s in splits if block_of[s.challenge.connection] != block_of[s.authenticate.connection]
    ]
    assert across, "some split handshake has its CHALLENGE judged in an earlier block"
    whole = {(s.challenge, s.authenticate) for s in link(timelines, start, end, kdc).splits}
    assert {(s.challenge, s.authenticate) for s in across} <= whole
    got = join_links(blocks, start, end, kdc)
    _same_view(got, link(timelines, start, end, kdc))


def test_a_horizon_too_short_for_the_links_loses_them(capture) -> None:  # type: ignore[no-untyped-def]
    """The tests above can fail: with no timeline kept after its block, the
    split handshakes across blocks are found only through the CHALLENGEs the
    window carries (`_Challenges`); a window that forgets them loses splits."""
    from authtrace.handshake import links

    class Forgetful(LinkWindow):
        __slots__ = ()

        def _forget(self, known_until: float) -> None:
            self._challenges = links._Challenges()

    timelines, kdc, start, end = capture
    expected = link(timelines, start, end, kdc).splits
    blocks, _window = _windowed(timelines, 0.0, end)
    assert join_links(blocks, start, end, kdc).splits == expected
    window = Forgetful(0.0)
    forgetful = [block for t in timelines if (block := window.add(t)) is not None]
    last = window.finish(end)
    assert last is not None
    assert join_links([*forgetful, last], start, end, kdc).splits != expected


def test_a_connection_back_in_time_is_counted(capture) -> None:  # type: ignore[no-untyped-def]
    timelines, _kdc, _start, end = capture
    window = LinkWindow(SHORT_HORIZON)
    for timeline in timelines:
        window.add(timeline)
    assert window.blocks and not window.late
    first = timelines[0]
    back = dataclasses.replace(first, connection=dataclasses.replace(first.connection, id=10**6))
    window.add(back)
    assert window.late == 1
    window.finish(end)


def _records(path: Path) -> list[bytes]:
    data = path.read_bytes()
    out, offset = [], 24
    while offset < len(data):
        length = int.from_bytes(data[offset + 8 : offset + 12], "little")
        out.append(data[offset : offset + 16 + length])
        offset += 16 + length
    return out


def test_analyze_reports_connections_that_begin_back_in_time(tmp_path: Path) -> None:
    """Parts written in the order 10:00, 12:00, 11:00: when the 11:00 part is
    read, the 10:00 part was already judged (more than the link horizon before
    12:00), so its links to it were not looked for. The report says so; the
    findings of each part are still there."""
    hour = 3600 * 1_000_000
    start = 1_717_408_800_000_000
    paths = []
    for n, offset in enumerate((0, 2 * hour, hour)):
        path = tmp_path / f"part{n}.pcap"
        write_pcap(path, "mix", 60, shape=Shape(seed=20 + n, start_us=start + offset))
        paths.append(path)
    whole = tmp_path / "whole.pcap"
    whole.write_bytes(paths[0].read_bytes()[:24] + b"".join(r for p in paths for r in _records(p)))
    report = analyze([whole])
    late = [a for a in report.anomalies if a.kind == "links-out-of-time-order"]
    third = analyze([paths[2]])
    assert len(late) == 1
    began = f"{counted(len(third.view.timelines), 'connection')} began before"
    assert late[0].message.startswith(began)
    # The bound named is the one `late` counts against (the window), not the longest link.
    assert late[0].message.endswith(f"the capture has gone {WINDOW_HORIZON:.0f} s past its end)")
    in_order = analyze([paths[0], paths[1]])  # two files read in time order: nothing late
    assert not [a for a in in_order.anomalies if a.kind == "links-out-of-time-order"]
    assert {f.rule for f in third.findings} <= {f.rule for f in report.findings}


def test_a_stream_without_http_after_one_with_it_loses_nothing(tmp_path: Path) -> None:
    """Captures of the same time are separate streams; when the last one holds no
    HTTP, the one before still has every connection judged and linked."""
    from tests._pcap import tcp_capture

    scenario = ROOT / "captures" / "scenarios" / "ntlm-logon-failed.pcap"
    ssh = tcp_capture(tmp_path / "ssh.pcap", [(True, b"SSH-2.0-OpenSSH_9.6\r\n")])
    # Its frames 2 ms later: it starts after the scenario, while the scenario runs.
    data = ssh.read_bytes()
    later = bytearray(data[:24])
    for record in _records(ssh):
        micros = int.from_bytes(record[4:8], "little") + 2000
        later += record[:4] + micros.to_bytes(4, "little") + record[8:]
    other = tmp_path / "ssh-later.pcap"
    other.write_bytes(bytes(later))
    alone = analyze([scenario])
    together = analyze([scenario, other])
    assert together.streams == 2
    assert together.captures[0].name.endswith(scenario.name)  # the stream with HTTP first
    assert len(together.view.timelines) == len(alone.view.timelines) > 0
    assert [(f.rule, f.frames) for f in together.findings] == [
        (f.rule, f.frames) for f in alone.findings
    ]


def test_a_401_waits_for_its_follow_up_beyond_the_horizon(tmp_path: Path) -> None:
    """An anonymous 401 answered on another connection 300 s later is a
    normal first leg even though the window keeps timelines 2 s: it waits,
    held, for the answer and is handed on, final, in a later block. Without
    the wait it would be judged a failure, which `link` does not say."""
    from authtrace.handshake.model import Outcome
    from tests._blocks import CAME_BACK, CAME_BACK_LATE, NEVER_BACK, follow_up_capture

    path = follow_up_capture(tmp_path / "follow-up.pcap")
    connections, result = read_connections([path])
    assert result.kdc is not None
    times = [t for info in result.captures for t in (info.first_time, info.last_time) if t]
    start, end = min(times), max(times)
    timelines = [build_timeline(connection) for connection in connections]
    expected = link(timelines, start, end, result.kdc.exchanges)
    blocks, window = _windowed(timelines, SHORT_HORIZON, end, short_blocks=True)
    got = join_links(blocks, start, end, result.kdc.exchanges)
    _same_view(got, expected)
    assert _findings(got, ()) == _findings(expected, ())

    def first_401(client: bytes) -> tuple[int, Outcome | None]:
        address = ".".join(str(octet) for octet in client)
        for timeline in got.timelines:
            if timeline.connection.client.ip == address:
                step = timeline.steps[0]
                assert step.status == 401 and step.credentials is None
                return timeline.connection.id, step.outcome
        raise AssertionError(address)

    block_of = {t.connection.id: n for n, block in enumerate(blocks) for t in block.timelines}
    came_back, outcome = first_401(CAME_BACK)
    assert outcome is Outcome.NORMAL
    late, late_outcome = first_401(CAME_BACK_LATE)
    assert late_outcome is Outcome.FAILURE
    never, never_outcome = first_401(NEVER_BACK)
    assert never_outcome is Outcome.FAILURE
    # Hundreds of blocks: the 401s were held across them, not the capture.
    assert len(blocks) > 100 and window.held_peak < 40
    # Handed on once the answer was known: at its logon 300 s later; when the
    # capture passed the 401's time + 600 s (before the last block); at the end.
    logon = next(
        t.connection.id
        for t in got.timelines
        if t.connection.client.ip == "10.30.0.1" and t.connection.id != came_back
    )
    assert block_of[came_back] == block_of[logon] > block_of[came_back + 1]
    assert block_of[late] < len(blocks) - 1
    assert block_of[never] == len(blocks) - 1
    # Each block holds final timelines only; its context names the 401's neighbours.
    assert all(s.outcome is not None for t in got.timelines for s in t.steps if s.status == 401)
    assert came_back + 1 in blocks[block_of[came_back]].context
