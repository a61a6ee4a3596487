"""The wiring (pipeline.py) loses and invents nothing: on every capture, the
HTTP exchanges it hands on per connection are exactly those the TCP and HTTP
layers produce on their own, which test_http checks against tshark; and the
memory-bounding order of hand-on is by connection id."""

from __future__ import annotations

from pathlib import Path

import pytest

from authtrace.pipeline import Pipeline, analyze, read_connections

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "captures"
_SUFFIXES = {".pcap", ".pcapng", ".cap", ".gz"}


def _captures() -> list[Path]:
    found = sorted(p for p in (REPO / "captures").rglob("*") if p.suffix in _SUFFIXES)
    if SHARED.is_dir():
        found += sorted(p for p in SHARED.rglob("*") if p.suffix in _SUFFIXES)
    # A pcapng with embedded TLS secrets goes through the TLS layer, which the
    # cleartext layers compared here do not have (test_tls_oracle.py covers it).
    # HTTP/2 with prior knowledge is routed by the pipeline (its preface), not by
    # the HTTP/1 layer this compares with; an h2c Upgrade is the HTTP/1 layer's.
    return [
        p
        for p in found
        if p.is_file()
        and not (p.parent.name == "h2" and "upgrade" not in p.name)
        and p.name != "examples__PktMon.cap"
        and not (p.parent.name == "tls" and p.suffix == ".pcapng")
    ]


def _key(exchange) -> tuple[object, ...]:  # type: ignore[no-untyped-def]
    request, response = exchange.request, exchange.response
    return (
        exchange.connection,
        exchange.index,
        request.end_frame if request else None,
        response.end_frame if response else None,
        response.status if response else None,
    )


@pytest.mark.parametrize("capture", _captures(), ids=lambda p: p.name[:60])
def test_pipeline_hands_on_what_the_layers_produce(capture: Path) -> None:
    from test_http import run_capture

    layered, _demux, _tcp = run_capture(capture)
    connections, result = read_connections([capture])
    wired = [e for c in connections for e in c.exchanges]
    assert sorted(map(_key, wired)) == sorted(map(_key, layered))
    assert [c.id for c in connections] == sorted(c.id for c in connections)
    assert result.captures and result.captures[0].frames > 0


def test_connections_are_handed_on_as_they_close() -> None:
    """A closed connection is yielded before the capture ends (bounded memory)."""
    capture = REPO / "captures" / "scenarios" / "handshake-closed-midway.pcap"
    pipeline = Pipeline()
    seen_before_end = []
    for _connection in pipeline.connections([capture]):
        seen_before_end.append(pipeline.result.kdc is None)
    assert seen_before_end and seen_before_end[0] is True


def test_unrelated_captures_read_together_are_flagged() -> None:
    scenarios = REPO / "captures" / "scenarios"
    connections, result = read_connections(
        [scenarios / "healthy-ntlm.pcap", scenarios / "ntlm-logon-failed.pcap"]
    )
    assert [a.kind for a in result.anomalies].count("capture-overlap") == 1
    # Issue 11 item 10: separate streams, each with its own connections.
    assert [(c.name.rsplit("/", 1)[-1], c.stream, c.first_frame) for c in result.captures] == [
        ("healthy-ntlm.pcap", 0, 1),
        ("ntlm-logon-failed.pcap", 1, 27),
    ]
    assert [(c.id, c.first_frame) for c in connections] == [(0, 1), (1, 27)]


OVERLAPPING = [
    "healthy-ntlm.pcap",
    "ntlm-logon-failed.pcap",
    "pooling-proxy.pcap",
    "basic-over-cleartext.pcap",
    "kerberos-fallback-spn-unknown.pcap",
]


def test_every_finding_of_overlapping_captures_survives() -> None:
    """Given together, overlapping captures report what each reports alone, at
    the same frames (numbered on in the report, named by file in the text)."""
    scenarios = REPO / "captures" / "scenarios"
    paths = [scenarios / name for name in OVERLAPPING]
    together = analyze(paths)
    assert together.streams == len(paths)
    expected = []
    for path in paths:
        alone = analyze([path])
        (info,) = [c for c in together.captures if c.name.endswith(path.name)]
        offset = info.first_frame - 1
        expected += [(f.rule, tuple(n + offset for n in f.frames)) for f in alone.findings]
        for finding in alone.findings:
            for frame in finding.frames:
                assert together.frame_name(frame + offset) == f"{path.name}#{frame}"
    assert sorted((f.rule, f.frames) for f in together.findings) == sorted(expected)
    logon = [f for f in together.findings if f.rule == "ntlm-logon-failed"]
    assert logon and "ntlm-logon-failed.pcap#12" in logon[0].explanation


def test_ring_buffer_files_in_any_order_read_as_one_capture(tmp_path: Path) -> None:
    """editcap -c splits a capture as a ring buffer does; named in reverse order,
    the files still give what the whole capture gives, frame numbers included."""
    import shutil
    import subprocess

    if shutil.which("editcap") is None:
        pytest.skip("editcap (tshark's package) is not installed")
    whole = REPO / "captures" / "scenarios" / "pooling-proxy.pcap"
    subprocess.run(["editcap", "-c", "12", str(whole), str(tmp_path / "ring.pcap")], check=True)
    parts = sorted(tmp_path.glob("ring*.pcap"))
    assert len(parts) >= 3
    expected, _ = read_connections([whole])
    got, result = read_connections(list(reversed(parts)))
    assert [_key(e) for c in got for e in c.exchanges] == [
        _key(e) for c in expected for e in c.exchanges
    ]
    assert not [a for a in result.anomalies if a.kind == "capture-overlap"]
    assert {c.stream for c in result.captures} == {0}
