"""Folding findings (diagnose.merge_repeats, issue 10): one story is one finding
with counts and the list of who it happened to, whatever the number of users;
what decides the fix stays apart; folding is associative (windows of
connections, workers); the text report names the first few values, --json all
of them; diff still sees a user who fails in one capture only."""

from __future__ import annotations

import dataclasses
import json
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import authtrace.diagnose as diagnose_module  # noqa: E402
from authtrace.compare.diff import FAILING, compare  # noqa: E402
from authtrace.compare.render import comparison_to_dict, render_comparison  # noqa: E402
from authtrace.diagnose import merge_repeats  # noqa: E402
from authtrace.diagnose.finding import Citation, Finding, Role, Severity, counted  # noqa: E402
from authtrace.handshake.model import IisTriple  # noqa: E402
from authtrace.pipeline import analyze  # noqa: E402
from authtrace.report.as_json import report_to_dict  # noqa: E402
from authtrace.report.as_text import render_finding, render_report  # noqa: E402
from authtrace.schemas import Schema  # noqa: E402
from benchmarks.auth_dense import SERVER, TcpFlow, ntlm_connection  # noqa: E402
from benchmarks.make_capture import interleave, write_frames  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from test_json_schemas import _check  # noqa: E402

LOGON = IisTriple(401, 1, 1326, certain=False)


def _finding(
    n: int,
    user: str,
    host: str = "web01",
    rule: str = "ntlm-logon-failed",
    extra: tuple[tuple[str, str], ...] = (),
    title: str | None = None,
) -> Finding:
    """Occurrence n: connection n, frames 10n and 10n+2."""
    citations = (
        Citation(10 * n, str(10 * n), n, Role.REQUEST, "NTLM_AUTHENTICATE", "credentials"),
        Citation(10 * n + 2, str(10 * n + 2), n, Role.RESPONSE, None, "401"),
    )
    return Finding(
        rule=rule,
        severity=Severity.ERROR,
        title=title if title is not None else f"NTLM logon failed for {user}",
        explanation=f"The client on connection {n} logged on as {user} and got 401.",
        fix="Check the account.",
        host=host,
        connections=(n,),
        frames=(10 * n, 10 * n + 2),
        fields=(("user", user), ("workstation", f"PC{n % 3}"), *extra),
        iis=LOGON,
        citations=citations,
    )


def test_many_users_fold_into_one_finding_listing_them() -> None:
    findings = [_finding(n, f"CONTOSO\\user{n % 7}") for n in range(1, 51)]
    folded = merge_repeats(findings)
    assert len(folded) == 1
    (one,) = folded
    assert one.occurrences == 50
    assert one.title == "NTLM logon failed for 7 users (50 times)"
    assert one.connections == tuple(range(1, 51))
    assert len(one.frames) == sum(len(f.frames) for f in findings)
    assert len(one.citations) == sum(len(f.citations) for f in findings)
    # The first occurrence tells the story; one sentence adds the totals.
    assert one.explanation.startswith(findings[0].explanation + " The same happened 49 more")
    assert "50 in all, on 50 connections, 7 users, 3 workstations" in one.explanation
    users = {v.value: v for held in one.values if held.name == "user" for v in held.values}
    assert set(users) == {f"CONTOSO\\user{k}" for k in range(7)}
    assert users["CONTOSO\\user1"].count == 8  # 1, 8, ..., 50
    assert users["CONTOSO\\user1"].connections == tuple(range(1, 51, 7))
    assert sum(v.count for v in users.values()) == 50
    assert dict(one.fields) == {}  # no field is shared by every occurrence
    assert one.original == findings[0]


def _ann_on(connections: list[int]) -> list[Finding]:
    """One failure of CONTOSO\\ann, once per entry, on the connection it names
    (occurrences 1, 4, 7 ...: the same workstation, so nothing but the counts varies)."""
    return [
        dataclasses.replace(_finding(3 * k + 1, "CONTOSO\\ann"), connections=(connection,))
        for k, connection in enumerate(connections)
    ]


def test_the_totals_sentence_counts_in_words() -> None:
    (twice,) = merge_repeats(_ann_on([1, 1]))
    assert twice.explanation.endswith(
        " The same happened once more: 2 in all, on 1 connection (listed in the evidence)."
    )
    (five,) = merge_repeats(_ann_on([1, 1, 2, 2, 3]))
    assert five.explanation.endswith(
        " The same happened 4 more times: 5 in all, on 3 connections (listed in the evidence)."
    )
    assert "(s)" not in twice.explanation + five.explanation


def test_counted_writes_the_noun_in_the_plural_unless_one() -> None:
    assert counted(1, "connection") == "1 connection"
    assert counted(3, "connection") == "3 connections"
    assert counted(0, "connection") == "0 connections"


def test_hosts_severities_and_deciding_fields_stay_apart() -> None:
    findings = [
        _finding(1, "a", host="web01"),
        _finding(2, "b", host="web02"),
        _finding(3, "c", host="web01"),
        _finding(4, "d", host="web02"),
    ]
    folded = merge_repeats(findings)
    assert sorted((f.host, f.occurrences) for f in folded) == [("web01", 2), ("web02", 2)]
    # Two SPNs are two fixes (setspn on two accounts); two proxies are two places to look.
    rejected = [
        _finding(n, f"u{n}", rule="kerberos-ticket-rejected", extra=(("spn", spn),))
        for n, spn in enumerate(["HTTP/web01", "HTTP/web01", "HTTP/web01.alias"], 1)
    ]
    by_spn = {f.field("spn"): f.occurrences for f in merge_repeats(rejected)}
    assert by_spn == {"HTTP/web01": 2, "HTTP/web01.alias": 1}
    proxied = [
        _finding(n, f"u{n}", extra=(("proxy", proxy),))
        for n, proxy in enumerate(["squid1", "squid2", "squid1"], 1)
    ]
    assert sorted(f.occurrences for f in merge_repeats(proxied)) == [1, 2]
    # A title that says something else (beyond the listed values) is another story.
    other = _finding(5, "e", title="NTLM logon failed at the proxy for e")
    assert len(merge_repeats([findings[0], findings[2], other])) == 2


def test_counts_are_added_up_in_title_and_fields() -> None:
    findings = [
        _finding(
            n,
            f"CONTOSO\\u{n}",
            rule="repeated-logon-failures",
            extra=(("failures", str(n + 1)),),
            title=f"{n + 1} failed logons for CONTOSO\\u{n}: account lockout risk",
        )
        for n in range(1, 4)
    ]
    (one,) = merge_repeats(findings)
    assert one.title == "9 failed logons for 3 users: account lockout risk"
    assert one.field("failures") == "9"
    # Each user keeps their own number of failures (the lockout risk is per account).
    (users,) = [held for held in one.values if held.name == "user"]
    assert [(v.value, v.count) for v in users.values] == [
        ("CONTOSO\\u3", 4),
        ("CONTOSO\\u2", 3),
        ("CONTOSO\\u1", 2),
    ]
    assert merge_repeats([*merge_repeats(findings[:2]), findings[2]]) == [one]  # associative
    # A rule's own "(N times)" is added up too.
    basic = [
        _finding(n, f"u{n}", rule="basic-logon-failed", title=f"Basic logon refused for u{n}")
        for n in range(1, 3)
    ]
    basic.append(
        _finding(3, "u3", rule="basic-logon-failed", title="Basic logon refused for u3 (4 times)")
    )
    (refused,) = merge_repeats(basic)
    assert refused.title == "Basic logon refused for 3 users (6 times)"


def test_a_value_inside_another_word_is_not_cut_out_of_the_title() -> None:
    """User "a" must not turn "failed" into a hole: only whole values are cut."""
    findings = [_finding(1, "a"), _finding(2, "b")]
    (one,) = merge_repeats(findings)
    assert one.title == "NTLM logon failed for 2 users (2 times)"


def _pool() -> list[Finding]:
    rng = random.Random(7)
    out = []
    for n in range(1, 41):
        host = rng.choice(["web01", "web02"])
        out.append(_finding(n, f"u{rng.randrange(5)}", host=host))
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=39), max_size=6), st.randoms())
def test_folding_is_associative(cuts: list[int], rng: random.Random) -> None:
    """Folding windows of findings, then the folded windows, gives what folding
    everything at once gives (mem folds per window; workers fold per part)."""
    findings = _pool()
    rng.shuffle(findings)
    at_once = sorted(merge_repeats(findings), key=lambda f: (f.host, f.frames))
    bounds = sorted({0, *cuts, len(findings)})
    windows = [findings[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    folded = [f for window in windows for f in merge_repeats(window)]
    rng.shuffle(folded)
    again = sorted(merge_repeats(folded), key=lambda f: (f.host, f.frames))
    assert again == at_once
    assert merge_repeats(at_once) == at_once  # folding a folded list changes nothing


def test_text_names_the_first_values_and_json_all(tmp_path: Path) -> None:
    findings = [_finding(n, f"CONTOSO\\user{n:03}") for n in range(1, 31)]
    (one,) = merge_repeats(findings)
    text = " ".join(line.strip() for line in render_finding(one, 1))
    assert "users (30): CONTOSO\\user001, CONTOSO\\user002" in text
    assert "... and 25 more (--json lists all)" in text
    assert "CONTOSO\\user030" not in text


def _logon_failures(path: Path, users: list[str], offset: int = 0) -> None:
    """One connection per user, each a full NTLM handshake refused (wrong password)."""

    def sources() -> Iterator[tuple[int, Iterator[tuple[int, bytes]]]]:
        start = 1_717_408_800_000_000
        for index, user in enumerate(users):
            rng = random.Random(f"fold:{offset}:{index}")
            client = bytes([10, 30, index // 250, index % 250 + 1])
            flow = TcpFlow(rng, client, SERVER, 2000 + index, 80)
            yield start + index * 50_000, ntlm_connection(rng, flow, user, wrong_password=True)

    write_frames(path, interleave(sources()))


def test_a_capture_of_many_failing_users_gives_one_finding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = [f"user{n}" for n in range(40)]
    path = tmp_path / "many-users.pcap"
    _logon_failures(path, users)
    report = analyze([path])
    failed = [f for f in report.findings if f.rule == "ntlm-logon-failed"]
    assert len(failed) == 1
    (one,) = failed
    listed = {v.value for held in one.values if held.name == "user" for v in held.values}
    assert listed == {f"CONTOSO\\{u}" for u in users}
    assert one.title == "NTLM logon failed for 40 users (40 times)"
    # JSON keeps everything: the folded finding's frames and citations are those
    # of the findings it folds (the rules' output before folding).
    data = report_to_dict(report)
    (as_json,) = [f for f in data["findings"] if f["rule"] == "ntlm-logon-failed"]
    assert as_json["occurrences"] == 40
    assert len(as_json["values"]["user"]) == 40
    assert {v["connections"][0] for v in as_json["values"]["user"]} == set(one.connections)
    _check(Schema.ANALYZE, json.loads(json.dumps(data)))
    monkeypatch.setattr(diagnose_module, "merge_repeats", lambda found: list(found))
    unfolded = [f for f in analyze([path]).findings if f.rule == "ntlm-logon-failed"]
    assert len(unfolded) == 40
    assert len(as_json["frames"]) == sum(len(f.frames) for f in unfolded)
    assert as_json["frames"] == sorted(x for f in unfolded for x in f.frames)
    assert len(as_json["citations"]) == sum(len(f.citations) for f in unfolded)
    assert as_json["connections"] == sorted(c for f in unfolded for c in f.connections)


def test_diff_sees_a_user_failing_in_one_capture_only(tmp_path: Path) -> None:
    working, failing = tmp_path / "working.pcap", tmp_path / "failing.pcap"
    _logon_failures(working, ["ann", "bob"])
    _logon_failures(failing, ["ann", "bob", "carol"], offset=1)
    comparison = compare(analyze([working]), analyze([failing]))
    (host,) = comparison.hosts
    only = [f for f in host.findings if f.rule == "ntlm-logon-failed"]
    assert [(f.side, f.values) for f in only] == [(FAILING, (("user", ("CONTOSO\\carol",)),))]
    assert only[0].frames  # where the failing capture shows carol's logon
    text = render_comparison(comparison)
    assert "only the failing capture's names users CONTOSO\\carol" in text
    data = comparison_to_dict(comparison)
    (entry,) = [f for f in data["hosts"][0]["findings_only_in_one"] if f["values"]]
    assert entry["values"] == {"user": ["CONTOSO\\carol"]}
    _check(Schema.DIFF, json.loads(json.dumps(data)))


def test_text_report_of_many_failures_stays_short(tmp_path: Path) -> None:
    """Before folding, 120 failing users gave 120 findings and 120 ladders
    (over 1,500 lines); now one finding and a handful of ladders."""
    path = tmp_path / "many.pcap"
    _logon_failures(path, [f"user{n}" for n in range(120)])
    text = render_report(analyze([path]))
    assert len(text.splitlines()) < 120
    assert "connections that findings name not drawn" in text


def test_folded_values_are_escaped_in_text_and_html(tmp_path: Path) -> None:
    """User names come from the capture: the folded list escapes them as every
    other capture string is escaped (terminal and HTML)."""
    from authtrace.report.html.page import render_report_html

    path = tmp_path / "hostile-users.pcap"
    _logon_failures(path, ["<script>alert(1)</script>", "evil\x1b[2Jname", "plain"])
    report = analyze([path])
    (one,) = [f for f in report.findings if f.rule == "ntlm-logon-failed"]
    assert one.occurrences == 3
    text = render_report(report)
    assert "\x1b" not in text and "evil\\x1b[2Jname" in text
    page = render_report_html(report)
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "users (3):" in page


def test_every_field_the_rules_write_has_a_folding_decision() -> None:
    """A field left out of FIELD_FOLDING folds as KEY (never merges two stories);
    still, each field the scenario captures' findings carry was decided on."""
    from authtrace.diagnose import FIELD_FOLDING

    names = set()
    for capture in sorted((ROOT / "captures" / "scenarios").glob("*.pcap")):
        for finding in analyze([capture]).findings:
            names |= {name for name, _value in finding.fields}
            names |= {held.name for held in finding.values}
    assert names, "the scenario captures raise findings with fields"
    assert names <= set(FIELD_FOLDING), sorted(names - set(FIELD_FOLDING))


def test_a_client_filter_keeps_that_clients_occurrences_only(tmp_path: Path) -> None:
    """`--client X` on a folded finding: X's users and counts, not everyone's."""
    from authtrace.report.filters import filter_report

    path = tmp_path / "clients.pcap"
    _logon_failures(path, [f"user{n}" for n in range(12)])
    report = analyze([path])
    (whole,) = [f for f in report.findings if f.rule == "ntlm-logon-failed"]
    assert whole.occurrences == 12
    client = report.view.by_id[whole.parts[5].connections[0]].connection.client.ip
    narrowed = filter_report(report, (), (client,))
    (one,) = [f for f in narrowed.findings if f.rule == "ntlm-logon-failed"]
    assert one == whole.parts[5]  # a single occurrence is the rule's own finding
    assert one.title == "NTLM logon failed for CONTOSO\\user5"
    two = filter_report(report, (), (client, "10.30.0.3"))
    (folded,) = [f for f in two.findings if f.rule == "ntlm-logon-failed"]
    assert folded.occurrences == 2 and folded.title == "NTLM logon failed for 2 users (2 times)"
    assert folded == merge_repeats([whole.parts[2], whole.parts[5]])[0]
