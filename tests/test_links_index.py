"""The cross-connection indexes (handshake/index.py) and the cost of links.py:
the index answers window questions as a scan would, and linking n copies of a
handshake does work proportional to n, not n² (counted, never timed)."""

from __future__ import annotations

import dataclasses
import random
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authtrace.handshake import index as index_module
from authtrace.handshake import links
from authtrace.handshake.index import TimeIndex
from authtrace.handshake.timeline import ConnectionTimeline, build_timeline
from authtrace.pipeline import read_connections

SCENARIOS = Path(__file__).resolve().parent.parent / "captures" / "scenarios"

entries_strategy = st.lists(
    st.tuples(st.sampled_from("abc"), st.integers(0, 50).map(float), st.integers(0, 1000)),
    max_size=60,
)


@given(entries_strategy, st.sampled_from("abcd"), st.integers(0, 50), st.integers(0, 30))
def test_between_equals_a_scan(entries, key, start, width) -> None:  # type: ignore[no-untyped-def]
    index = TimeIndex(entries)
    expected = sorted(
        ((when, n, item) for n, (k, when, item) in enumerate(entries) if k == key),
        key=lambda entry: (entry[0], entry[1]),
    )
    wanted = [item for when, _n, item in expected if start <= when <= start + width]
    assert index.between(key, start, start + width) == wanted


@given(entries_strategy, st.integers(0, 50), st.integers(0, 30), st.data())
def test_latest_skips_taken_and_rejected(entries, start, width, data) -> None:  # type: ignore[no-untyped-def]
    index = TimeIndex(("k", when, (n, item)) for n, (_k, when, item) in enumerate(entries))
    taken: set[int] = set()
    for _round in range(5):
        odd_only = data.draw(st.booleans())

        def accept(item: tuple[int, int], odd_only: bool = odd_only) -> bool:
            return not odd_only or item[1] % 2 == 1

        window = [
            (when, n)
            for n, (_k, when, item) in enumerate(entries)
            if start <= when <= start + width and n not in taken and accept((n, item))
        ]
        found = index.latest("k", start, start + width, accept)
        if not window:
            assert found is None
            continue
        when, n = max(window)
        assert found == (n, entries[n][2])
        index.take("k", when, found)
        taken.add(n)


@given(entries_strategy, st.integers(0, 50), st.integers(0, 30), st.data())
def test_latest_and_take_keep_each_key_apart(entries, start, width, data) -> None:  # type: ignore[no-untyped-def]
    # Every key's entries share one flat column with the other keys': taking
    # the first entry of a key (its skip link then points into the key before)
    # never makes `latest` answer with another key's entry or lose one of its own.
    index = TimeIndex((k, when, (n, item)) for n, (k, when, item) in enumerate(entries))
    taken: set[int] = set()
    for _round in range(12):
        key = data.draw(st.sampled_from("abcd"))
        window = [
            (when, n)
            for n, (k, when, _item) in enumerate(entries)
            if k == key and start <= when <= start + width and n not in taken
        ]
        found = index.latest(key, start, start + width)
        if not window:
            assert found is None
            continue
        when, n = max(window)
        assert found == (n, entries[n][2])
        index.take(key, when, found)
        taken.add(n)
    for key in "abc":
        seen = [n for n, _item in index.between(key, 0.0, 50.0)]
        assert seen == sorted(
            (n for n, e in enumerate(entries) if e[0] == key), key=lambda n: (entries[n][1], n)
        )


def test_first_at_or_after() -> None:
    index = TimeIndex([("a", 3.0, 1), ("a", 1.0, 2), ("b", 2.0, 3)])
    assert index.first_at_or_after("a", 2.0) == 3.0
    assert index.first_at_or_after("a", 0.5) == 1.0
    assert index.first_at_or_after("a", 3.5) is None
    assert index.first_at_or_after("z", 0.0) is None


def _copies(name: str, count: int) -> list[ConnectionTimeline]:
    """`count` copies of the scenario's connections, each copy with new ids and
    the same client address (as behind one reverse proxy)."""
    connections, _result = read_connections([SCENARIOS / name])
    timelines = [build_timeline(connection) for connection in connections]
    out: list[ConnectionTimeline] = []
    for copy in range(count):
        for timeline in timelines:
            connection = dataclasses.replace(
                timeline.connection, id=copy * len(timelines) + timeline.connection.id
            )
            out.append(ConnectionTimeline(connection, timeline.steps))
    random.Random(1).shuffle(out)
    return out


@pytest.mark.parametrize(
    "name",
    [
        "healthy-ntlm.pcap",
        "client-ignores-negotiate.pcap",
        "pooling-proxy.pcap",
        "ntlm-handshake-split-v1.pcap",
        "healthy-kerberos.pcap",
    ],
)
def test_linking_cost_grows_linearly(name: str) -> None:
    """Counts the lines of links.py and index.py executed: a scan of every
    timeline for each 401 (the old `_client_came_back`) or of every CHALLENGE
    for each AUTHENTICATE makes the work per step grow with the copies."""
    watched = {links.__file__, index_module.__file__}
    lines = {"n": 0}

    def local(frame, event, arg):  # type: ignore[no-untyped-def]
        if event == "line":
            lines["n"] += 1
        return local

    def tracer(frame, event, arg):  # type: ignore[no-untyped-def]
        return local if frame.f_code.co_filename in watched else None

    work = {}
    for count in (50, 200):
        timelines = _copies(name, count)
        lines["n"] = 0
        sys.settrace(tracer)
        try:
            links.link(timelines, 0.0, 1e12)
        finally:
            sys.settrace(None)
        work[count] = lines["n"] / sum(len(t.steps) for t in timelines)
    assert work[50] > 0
    # Work per step does not grow with the number of copies (log n aside).
    assert work[200] <= work[50] * 1.25, work


@pytest.mark.parametrize(
    "name",
    ["pooling-proxy.pcap", "kerberos-fallback-spn-unknown.pcap", "repeated-logon-failures.pcap"],
)
def test_per_connection_results_pickle_and_link_the_same(name: str) -> None:
    """Workers may judge connections apart (other processes) and one step link
    them: a timeline survives pickling whole, and linking the copies gives the
    same view and findings."""
    import pickle

    from authtrace.diagnose import RuleContext, diagnose

    connections, result = read_connections([SCENARIOS / name])
    kdc = result.kdc.exchanges if result.kdc is not None else ()
    timelines = [build_timeline(connection) for connection in connections]
    copies = [pickle.loads(pickle.dumps(timeline)) for timeline in timelines]
    assert copies == timelines
    kdc_copies = pickle.loads(pickle.dumps(kdc))
    view = links.link(timelines, 0.0, 1e12, kdc)
    view_of_copies = links.link(copies, 0.0, 1e12, kdc_copies)
    assert view_of_copies.timelines == view.timelines
    assert view_of_copies.splits == view.splits and view_of_copies.relayed == view.relayed
    findings, _ = diagnose(RuleContext(view, kdc))
    findings_of_copies, _ = diagnose(RuleContext(view_of_copies, kdc_copies))
    assert findings_of_copies == findings and findings


def _request(*headers: tuple[str, str]):  # type: ignore[no-untyped-def]
    from authtrace.http.messages import Header, HttpRequest

    return HttpRequest(
        "GET", "/", "HTTP/1.1", tuple(Header(n, v) for n, v in headers), 1, 1, 0.0, 0
    )


def test_forwarded_clients_reads_the_first_of_each_header_in_any_case() -> None:
    """X-Forwarded-For first (its first occurrence), an empty one falls back to
    Forwarded's for= (RFC 7239 section 5.2), names in any case."""
    from authtrace.handshake.attribution import forwarded_clients

    assert forwarded_clients(
        _request(("x-forwarded-FOR", "10.0.0.1, 10.0.0.2"), ("X-Forwarded-For", "10.9.9.9"))
    ) == ["10.0.0.1", "10.0.0.2"]
    assert forwarded_clients(
        _request(("FORWARDED", 'for="[2001:db8::1]:4711"'), ("X-Forwarded-For", ""))
    ) == ["2001:db8::1"]
    assert forwarded_clients(_request(("X-Forwarded-Fox", "10.0.0.1"), ("Forwardee", "x"))) == []


@pytest.mark.parametrize("name", ["ntlm-handshake-split", "ntlm-handshake-split-v1"])
def test_replaced_step_equals_dataclasses_replace(name: str) -> None:
    """links.replaced (the cheap copy of a step with a verdict) builds what
    dataclasses.replace builds, field for field."""
    from authtrace.handshake.model import Outcome
    from authtrace.iis.predict import SPLIT_TRIPLE

    path = Path(__file__).parent.parent / "captures" / "scenarios" / f"{name}.pcap"
    connections, _ = read_connections([path])
    steps = [step for c in connections if c.is_http for step in build_timeline(c).steps]
    assert steps
    for step in steps:
        for changes in ({"outcome": Outcome.FAILURE}, {"iis": SPLIT_TRIPLE}, {}):
            made = links.replaced(step, **changes)
            assert made == dataclasses.replace(step, **changes)  # type: ignore[arg-type]
            assert [getattr(made, f.name) for f in dataclasses.fields(made)] == [
                changes.get(f.name, getattr(step, f.name)) for f in dataclasses.fields(step)
            ]


@given(st.lists(st.integers(-5, 200), max_size=80), st.lists(st.integers(-10, 210), max_size=30))
def test_id_set_answers_as_a_frozenset(ids, probes) -> None:  # type: ignore[no-untyped-def]
    kept = links.IdSet(ids)
    assert len(kept) == len(set(ids))
    assert list(kept) == sorted(set(ids))
    assert kept == frozenset(ids)
    for probe in probes:
        assert (probe in kept) == (probe in set(ids))
    assert "1" not in kept


@given(
    st.dictionaries(
        st.tuples(st.integers(0, 3000), st.integers(0, 70000)),
        st.lists(st.integers(0, 9), min_size=1, max_size=4),
        max_size=40,
    ),
    st.integers(0, 3),
)
def test_kdc_links_answer_as_the_dict_of_steps(found, split) -> None:  # type: ignore[no-untyped-def]
    # Stand-ins for the exchanges: KdcLinks only hands back what it was given.
    kdc = tuple(f"exchange {n}" for n in range(10))
    refs = {links.StepRef(c, p): places for (c, p), places in found.items()}
    made = links.KdcLinks(kdc, list(refs.items()))  # type: ignore[arg-type]
    expected = {ref: tuple(kdc[n] for n in places) for ref, places in refs.items()}
    assert dict(made) == expected
    assert list(made) == sorted(expected, key=lambda r: (r.connection, r.position))
    assert links.StepRef(5000, 0) not in made and made.get(links.StepRef(5000, 0)) is None
    # Two streams' links joined are the links of both.
    ordered = sorted(refs.items(), key=lambda item: (item[0].connection, item[0].position))
    parts = [
        links.KdcLinks(kdc, ordered[: split * len(ordered) // 3]),  # type: ignore[arg-type]
        links.KdcLinks(kdc, ordered[split * len(ordered) // 3 :]),  # type: ignore[arg-type]
    ]
    assert dict(links.KdcLinks.joined(parts)) == expected


class _Stand:
    """The fields of a timeline that `_Spans` reads."""

    def __init__(self, number: int, first: float, last: float) -> None:
        self.connection = self
        self.id = number
        self.first_timestamp = first
        self.last_timestamp = last


@given(
    st.lists(st.tuples(st.integers(0, 100), st.integers(0, 30)), max_size=40),
    st.lists(st.tuples(st.integers(0, 1), st.integers(-10, 110), st.integers(0, 40)), max_size=6),
)
def test_a_released_timeline_brings_the_connections_overlapping_its_span(
    connections, wanted
) -> None:  # type: ignore[no-untyped-def]
    # Two windows, each with its connections' spans; every span asked for
    # brings exactly the connections of its window that overlap it.
    windows = [
        links._Spans([_Stand(n + 1000 * w, f, f + d) for n, (f, d) in enumerate(connections)])  # type: ignore[list-item]
        for w in (0, 1)
    ]
    arounds = [links._Around(windows[w], start, start + width) for w, start, width in wanted]
    expected = {
        n + 1000 * w
        for w, start, width in wanted
        for n, (f, d) in enumerate(connections)
        if f <= start + width and f + d >= start
    }
    assert links._Around.ids(arounds) == expected
