"""HTTP/2 against the oracle: on every capture of captures/h2 (real traffic from
lab/h2.py: Apache mod_http2, nginx, curl; h2 over TLS with its key log, h2c with
prior knowledge and by Upgrade), each header block authtrace decodes is the one
`tshark -o tls.keylog_file:K -Y http2` shows, in the same frame, on the same
stream, with the same fields in the same order:
`-e frame.number -e http2.streamid -e http2.type -e http2.header.name -e
http2.header.value`. And each connection's HTTP/2 is found by content."""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
from test_tls_oracle import keylog_for, load

from authtrace.http.messages import HttpRequest, HttpResponse
from authtrace.pipeline import analyze, read_connections

REPO = Path(__file__).resolve().parent.parent
H2 = REPO / "captures" / "h2"
TSHARK = shutil.which("tshark")
LAB = sorted(p for p in H2.glob("*.pcap") if not p.name.startswith("built-"))
# The field separator inside one tshark column (values hold commas: dates).
_AGGREGATOR = "\x1f"
HEADERS = "1"

Block = tuple[int, tuple[tuple[str, str], ...]]


def tshark_blocks(capture: Path, keys: Path | None) -> dict[int, list[Block]]:
    """frame -> the (stream, fields) of every HEADERS frame tshark decodes in it."""
    args = [TSHARK or "tshark", "-r", str(capture)]
    if keys is not None:
        args += ["-o", f"tls.keylog_file:{keys}"]
    args += ["-Y", "http2.type == 1", "-T", "fields", "-E", f"aggregator={_AGGREGATOR}"]
    args += ["-E", "occurrence=a"]
    for name in (
        "frame.number",
        "http2.streamid",
        "http2.type",
        "http2.header.name",
        "http2.header.value",
    ):
        args += ["-e", name]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=120).stdout
    blocks: dict[int, list[Block]] = defaultdict(list)
    for line in out.splitlines():
        frame, streams, types, names, values = line.split("\t")
        headers_on = [
            int(s)
            for s, t in zip(streams.split(_AGGREGATOR), types.split(_AGGREGATOR), strict=True)
            if t == HEADERS
        ]
        fields = list(zip(names.split(_AGGREGATOR), values.split(_AGGREGATOR), strict=True))
        # Each block starts with its pseudo-header fields (RFC 9113 section 8.3):
        # split the frame's fields where a new block's first ":" field follows a
        # regular one, or a second :method / :status begins.
        split: list[list[tuple[str, str]]] = []
        for name, value in fields:
            starts = not split or (
                name.startswith(":")
                and (not split[-1][-1][0].startswith(":") or name in {n for n, _ in split[-1]})
            )
            if starts:
                split.append([])
            split[-1].append((name, value))
        assert len(split) == len(headers_on), (frame, headers_on, fields)
        for stream, block in zip(headers_on, split, strict=True):
            blocks[int(frame)].append((stream, tuple(block)))
    return blocks


def our_blocks(capture: Path, keys: Path | None) -> dict[int, list[Block]]:
    connections, _ = read_connections([capture], keylog=load(keys))
    blocks: dict[int, list[Block]] = defaultdict(list)
    for connection in connections:
        for exchange in connection.exchanges:
            stream = exchange.stream
            if stream is None:
                continue  # HTTP/1.1: before an h2c upgrade, or a retry on a new connection
            messages: list[HttpRequest | HttpResponse | None] = [
                exchange.request,
                *exchange.interim,
                exchange.response,
            ]
            for message in messages:
                if message is None or message.version != "HTTP/2":
                    continue  # the HTTP/1.1 request and 101 of an h2c upgrade
                fields = tuple((h.name, h.value) for h in message.headers)
                blocks[message.shown_frame].append((stream.id, fields))
    return blocks


@pytest.mark.oracle
@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
@pytest.mark.parametrize("capture", LAB, ids=lambda p: p.name)
def test_header_blocks_are_where_and_what_tshark_shows(capture: Path) -> None:
    keys = keylog_for(capture)
    expected = tshark_blocks(capture, keys)
    assert expected, "the lab keeps only captures whose HTTP/2 tshark decodes"
    found = our_blocks(capture, keys)
    assert {f: sorted(b) for f, b in found.items()} == {f: sorted(b) for f, b in expected.items()}


def test_the_lab_captures_cover_alpn_prior_knowledge_and_upgrade() -> None:
    names = {p.stem for p in LAB}
    assert {
        "h2-apache-basic",
        "h2-nginx-basic",
        "h2c-prior-knowledge-basic",
        "h2c-upgrade-basic",
        "h2-apache-ntlm",
        "h2-apache-ntlm-streams",
    } <= names
    upgrade, _ = read_connections([H2 / "h2c-upgrade-basic.pcap"])
    (connection,) = upgrade
    versions = [
        (e.request.version if e.request else None, e.stream.id if e.stream else None)
        for e in connection.exchanges
    ]
    # The 401 before the upgrade is HTTP/1.1; the upgraded request is stream 1,
    # answered in HTTP/2; the next request is stream 3.
    assert versions == [("HTTP/1.1", None), ("HTTP/1.1", 1), ("HTTP/2", 3)]
    upgraded = connection.exchanges[1]
    assert [r.status for r in upgraded.interim] == [101]
    assert upgraded.response is not None and upgraded.response.status == 200


def test_basic_over_h2_is_judged_like_http1() -> None:
    capture = H2 / "h2-apache-basic.pcap"
    report = analyze([capture], keylog=load(keylog_for(capture)))
    assert not [f for f in report.findings if f.severity.is_problem]
    steps = [s for t in report.view.timelines for s in t.steps]
    assert [s.exchange.response.status for s in steps if s.exchange.response] == [401, 200, 200]
