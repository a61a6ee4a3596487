"""The judged timelines kept in a store that spills to disk past a budget
(handshake/store.py, issue 10): the store itself (look-ups, order, the
spilled count, the views), and `authtrace analyze` with every timeline
spilled (budget 0) writing byte for byte the text and JSON reports it writes
with every timeline in memory, over the scenario and lab captures, several
streams, an IIS log, and a generated capture of a couple of thousand
connections."""

from __future__ import annotations

import pickle
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from authtrace.cli import main  # noqa: E402
from authtrace.handshake import store as store_module  # noqa: E402
from authtrace.handshake.store import (  # noqa: E402
    NearFirst,
    StoredMapping,
    StoredSequence,
    TimelineStore,
    stored_timelines,
)
from authtrace.handshake.timeline import ConnectionTimeline, build_timeline  # noqa: E402
from authtrace.pipeline import analyze, read_connections  # noqa: E402
from authtrace.report.as_json import write_report_json  # noqa: E402
from authtrace.report.as_text import Ladders, render_report  # noqa: E402
from benchmarks.auth_dense import Shape, write_pcap  # noqa: E402

CAPTURES = ROOT / "captures"
SCENARIOS = sorted((CAPTURES / "scenarios").glob("*.pcap"))
LAB = sorted((CAPTURES / "lab").glob("*.pcap"))
# Far above any capture of the suite: nothing spills.
IN_MEMORY = 10**9


class _Recorded(TimelineStore):
    """A TimelineStore that remembers every store made (what analyze used)."""

    __slots__ = ()
    made: list[TimelineStore] = []

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        _Recorded.made.append(self)


@pytest.fixture
def budget(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[TimelineStore]]:
    """Set the store's budget with `set_budget`; the stores analyze made are listed."""
    _Recorded.made = []
    monkeypatch.setattr(store_module, "TimelineStore", _Recorded)
    yield _Recorded.made


def _analyze_cli(args: list[str], budget: int, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(store_module, "SPILL_BUDGET", budget)
    result = CliRunner().invoke(main, ["analyze", *args])
    assert result.exit_code in (0, 1), result.output
    return result.output


def _both_ways(args: list[str], monkeypatch: pytest.MonkeyPatch, made: list[TimelineStore]) -> None:
    kept = _analyze_cli(args, IN_MEMORY, monkeypatch)
    assert made and not any(s.has_spilled for s in made)
    made.clear()
    spilled = _analyze_cli(args, 0, monkeypatch)
    assert made, "analyze made no TimelineStore"
    if any(len(s) for s in made):
        assert sum(s.spilled for s in made) == sum(len(s) for s in made) > 0
    assert spilled == kept


@pytest.mark.parametrize("path", SCENARIOS + LAB, ids=lambda p: f"{p.parent.name}/{p.name}")
@pytest.mark.parametrize("form", ["text", "json", "ladders"])
def test_spilled_run_writes_the_same_report(
    path: Path, form: str, monkeypatch: pytest.MonkeyPatch, budget: list[TimelineStore]
) -> None:
    extra = {"text": [], "json": ["--json"], "ladders": ["--ladders", "all"]}[form]
    _both_ways([*extra, str(path)], monkeypatch, budget)


@pytest.mark.parametrize("form", [[], ["--json"]])
def test_spilled_run_with_several_streams(
    form: list[str], monkeypatch: pytest.MonkeyPatch, budget: list[TimelineStore]
) -> None:
    # Their times overlap: two streams, each with its own range of ids.
    healthy = CAPTURES / "scenarios" / "healthy-ntlm.pcap"
    failed = CAPTURES / "scenarios" / "ntlm-logon-failed.pcap"
    _both_ways([*form, str(healthy), str(failed)], monkeypatch, budget)


@pytest.mark.parametrize("form", [[], ["--json"]])
def test_spilled_run_with_an_iis_log(
    form: list[str], monkeypatch: pytest.MonkeyPatch, budget: list[TimelineStore]
) -> None:
    capture = CAPTURES / "scenarios" / "resource-acl-denied-logged.pcap"
    log = CAPTURES / "scenarios" / "resource-acl-denied-logged.log"
    _both_ways([*form, str(capture), "--iis-log", str(log)], monkeypatch, budget)


def test_spilled_run_with_filters(
    monkeypatch: pytest.MonkeyPatch, budget: list[TimelineStore]
) -> None:
    # --client keeps a tuple of the timelines it matches (report/filters.py).
    capture = CAPTURES / "scenarios" / "reverse-proxy-second-client.pcap"
    connections = read_connections([capture])[0]
    _both_ways(["--client", connections[0].client.ip, str(capture)], monkeypatch, budget)


# -- a generated capture of a couple of thousand connections -------------------

CONNECTIONS = 2000


@pytest.fixture(scope="module")
def big_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The mix profile: NTLM, Kerberos with its KDC, Basic, splits, proxies.
    path = tmp_path_factory.mktemp("store") / "mix.pcap"
    write_pcap(path, "mix", CONNECTIONS, shape=Shape(seed=3, clients=40, users=9))
    return path


def _rendered(path: Path) -> tuple[str, str, str]:
    report = analyze([path])
    pieces: list[str] = []
    write_report_json(report, pieces.append)
    return render_report(report), render_report(report, Ladders.ALL), "".join(pieces)


def test_spilled_big_capture_writes_the_same_reports(
    big_capture: Path, monkeypatch: pytest.MonkeyPatch, budget: list[TimelineStore]
) -> None:
    monkeypatch.setattr(store_module, "SPILL_BUDGET", IN_MEMORY)
    kept = _rendered(big_capture)
    assert not any(s.has_spilled for s in budget)
    budget.clear()
    # A budget below the capture, and none: part, then every timeline on disk.
    for spill_budget in (700, 0):
        monkeypatch.setattr(store_module, "SPILL_BUDGET", spill_budget)
        assert _rendered(big_capture) == kept
        (made,) = budget
        assert len(made) >= CONNECTIONS * 9 // 10
        assert made.spilled == len(made) - spill_budget
        assert made.chunk_reads > 0
        # Each timeline is read back a few times (the block rules, the KDC
        # links, the groups, each report's walks: 16 times at budget 0 over
        # the three reports), never a chunk per step of a rule's groups (with
        # chunks of 256: about 900 times).
        read = made.chunk_reads * store_module.CHUNK_SIZE
        assert read <= 24 * len(made)
        budget.clear()


def test_default_budget_holds_small_captures_and_bounds_big_ones() -> None:
    # Every scenario and lab capture (a few hundred connections at most) stays
    # in memory; a big capture keeps about 8 MB of timelines, not 130.
    assert 512 <= store_module.SPILL_BUDGET <= 2048 or _forced()
    assert TimelineStore().budget == store_module.SPILL_BUDGET


def _forced() -> bool:
    import os

    return "AUTHTRACE_TEST_SPILL_BUDGET" in os.environ


# -- the store itself ---------------------------------------------------------


@pytest.fixture(scope="module")
def timelines() -> list[ConnectionTimeline]:
    connections, _result = read_connections(SCENARIOS[:12])
    return [build_timeline(c) for c in connections]


def _shuffled(timelines: list[ConnectionTimeline]) -> list[ConnectionTimeline]:
    # Out of id order, as blocks may hand them on.
    return timelines[1::2] + timelines[::2]


def test_a_store_added_to_after_finishing_keeps_every_timeline(
    timelines: list[ConnectionTimeline],
) -> None:
    # finish() moves the spilled ids to columns; more timelines after it (and
    # a second finish) must still find every one, and no other.
    half = len(timelines) // 2
    store = TimelineStore(budget=2, chunk_size=3, loaded_chunks=1)
    store.extend(_shuffled(timelines[:half]))
    store.finish()
    store.extend(_shuffled(timelines[half:]))
    assert len(store) == len(timelines)
    store.finish()
    assert list(store.ids()) == sorted(t.connection.id for t in timelines)
    for timeline in timelines:
        assert timeline.connection.id in store
        assert store[timeline.connection.id] == timeline
    with pytest.raises(ValueError):
        store.add(timelines[0])
    missing = max(t.connection.id for t in timelines) + 1
    assert missing not in store and "0" not in store
    with pytest.raises(KeyError):
        store[missing]


def test_store_keeps_every_timeline_and_iterates_in_id_order(
    timelines: list[ConnectionTimeline],
) -> None:
    assert len(timelines) > 12
    store = TimelineStore(budget=3, chunk_size=4, loaded_chunks=1)
    store.extend(_shuffled(timelines))
    store.finish()
    assert store.spilled == len(timelines) - 3 and store.has_spilled
    assert len(store) == len(timelines)
    ordered = sorted(timelines, key=lambda t: t.connection.id)
    assert list(store) == ordered
    assert list(store.ids()) == [t.connection.id for t in ordered]
    for timeline in reversed(timelines):  # against the chunks' order: reads them again
        assert store[timeline.connection.id] == timeline
        assert timeline.connection.id in store
    assert -1 not in store and "x" not in store
    with pytest.raises(KeyError):
        store[-1]
    with pytest.raises(ValueError):
        store.add(timelines[0])


def test_store_below_its_budget_spills_nothing(timelines: list[ConnectionTimeline]) -> None:
    store = TimelineStore(budget=len(timelines))
    store.extend(timelines)
    store.finish()
    assert store.spilled == 0 and not store.has_spilled and store.chunk_reads == 0
    in_order, by_id = stored_timelines(store)
    assert isinstance(in_order, tuple) and isinstance(by_id, dict)
    assert list(in_order) == sorted(timelines, key=lambda t: t.connection.id)


def test_store_spills_past_its_budget_while_timelines_come(
    timelines: list[ConnectionTimeline],
) -> None:
    store = TimelineStore(budget=2, chunk_size=3)
    store.extend(timelines[:4])
    assert store.spilled == 0  # under budget + one chunk
    store.add(timelines[4])
    assert store.spilled == 3  # the three held longest
    assert [store[t.connection.id] for t in timelines[:5]] == timelines[:5]


def test_views_read_through_the_store(timelines: list[ConnectionTimeline]) -> None:
    store = TimelineStore(budget=0, chunk_size=5, loaded_chunks=2)
    store.extend(_shuffled(timelines))
    store.finish()
    ordered = sorted(timelines, key=lambda t: t.connection.id)
    ids = [t.connection.id for t in ordered]
    in_order, by_id = stored_timelines(store)
    assert isinstance(in_order, StoredSequence) and isinstance(by_id, StoredMapping)
    assert len(in_order) == len(ordered) and bool(in_order)
    assert list(in_order) == ordered and in_order == tuple(ordered)
    assert in_order[0] == ordered[0] and in_order[-1] == ordered[-1]
    assert in_order[2:7] == tuple(ordered[2:7]) and in_order[::-3] == tuple(ordered[::-3])
    with pytest.raises(IndexError):
        in_order[len(ordered)]
    assert list(by_id) == ids and len(by_id) == len(ids)
    assert by_id[ids[3]] == ordered[3] and by_id.get(-5) is None and ids[3] in by_id
    # A range of ids (one stream of several).
    low, high = ids[3], ids[9]
    part, part_by_id = stored_timelines(store, low, high)
    assert list(part) == ordered[3:9] and list(part_by_id) == ids[3:9]
    assert ids[9] not in part_by_id and part_by_id.get(ids[2]) is None
    with pytest.raises(KeyError):
        part_by_id[ids[9]]
    # Pickled, a view is what it shows: the spool stays private.
    assert pickle.loads(pickle.dumps(in_order)) == tuple(ordered)
    assert pickle.loads(pickle.dumps(part_by_id)) == dict(zip(ids[3:9], ordered[3:9], strict=True))


def test_near_first_answers_from_the_context(timelines: list[ConnectionTimeline]) -> None:
    store = TimelineStore(budget=0, chunk_size=2, loaded_chunks=1)
    store.extend(timelines)
    store.finish()
    _in_order, by_id = stored_timelines(store)
    first = timelines[0]
    near = NearFirst({first.connection.id: first}, by_id)
    reads = store.chunk_reads
    assert near[first.connection.id] is first and store.chunk_reads == reads
    assert near[timelines[-1].connection.id] == timelines[-1]
    assert list(near) == list(by_id) and len(near) == len(by_id)


def test_analyze_reads_a_spilled_timeline_back_about_once(
    big_capture: Path, monkeypatch: pytest.MonkeyPatch, budget: list[TimelineStore]
) -> None:
    # At budget 0 analyze reads each chunk back for the per-block rules (a
    # block's connections and those linked with it), read once a block, and
    # for the few steps the capture-wide findings cite. Not for the KDC links
    # (links.KdcQuestions asks what they need while a block holds its
    # timelines: one more read of every chunk), nor once a rule when the
    # capture is one block (each rule's walk read the store: 2,481 reads of
    # its 262 chunks, now 313).
    monkeypatch.setattr(store_module, "SPILL_BUDGET", 0)
    report = analyze([big_capture])
    assert report.kdc, "the capture must hold KDC exchanges"
    (made,) = budget
    chunks = -(-len(made) // store_module.CHUNK_SIZE)
    assert made.chunk_reads <= 2 * chunks, (made.chunk_reads, chunks)
