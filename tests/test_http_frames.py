"""Every message frame we report is one where Wireshark shows that message
(issue 11 item 2), on every capture in captures/ and ../shared/captures.

A message that ended normally (its body complete, or delimited by the close)
must be cited at a frame where tshark dissects it (http.request or
http.response in the same tcp.stream). A message whose end was forced (body cut
by a gap, a FIN, a RST or the end of the capture) is never dissected by tshark:
it must be cited at a frame of its tcp.stream whose summary line shows its
start line (its head), never the frame that cut it (often an ACK of the peer).
An HTTP/2 message is cited at the frame where tshark shows its HEADERS frame
(http2.type 1) on the same stream (tests/test_http2_oracle.py compares the
fields, with the key logs of captures/h2).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

import pytest

from authtrace.http.messages import HttpRequest, HttpResponse
from authtrace.pipeline import read_connections
from authtrace.readers.base import CaptureError

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "captures"
_SUFFIXES = {".pcap", ".pcapng", ".cap", ".gz"}

# Streams where we knowingly cite another frame: capture -> (tcp.stream ids, why).
_KNOWN_BETTER: dict[str, tuple[set[int], str]] = {
    "midstream.pcap": (
        {0},
        "tshark takes the mid-body bytes at the capture start as a PDU waiting for its "
        "beginning and swallows the 401 that follows; we resync at 'HTTP/1.'",
    ),
    "non-tcp-and-malformed.pcap": (
        {0},
        "tshark's sequence analysis counts the malformed frame 5 and so calls the "
        "response in frame 10 a retransmission, which it does not dissect",
    ),
    "ntlm-logon-failed.pktmon.cap": (
        {0},
        "tshark does not decode the packets inside PktMon events of a NetMon file; "
        "test_etl.py checks this file's frames against the pcap it was built from",
    ),
}


def _captures() -> list[Path]:
    found = sorted(p for p in (REPO / "captures").rglob("*") if p.suffix in _SUFFIXES)
    if SHARED.is_dir():
        found += sorted(p for p in SHARED.rglob("*") if p.suffix in _SUFFIXES)
    return [p for p in found if p.is_file()]


@functools.cache
def _tshark(path: Path) -> dict[int, tuple[int, bool, bool, str]]:
    """frame -> (tcp.stream, carries an HTTP request, a response, summary line).
    For HTTP/2, "request" and "response" both mean: an HTTP/2 HEADERS frame."""
    from _tcp_segments import TSHARK_OPTIONS

    command = ["tshark", "-r", str(path), *TSHARK_OPTIONS.get(path.name, ())]
    command += ["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=;", "-Y", "tcp"]
    for name in (
        "frame.number",
        "tcp.stream",
        "http.request",
        "http.response",
        "_ws.col.Info",
        "http2.type",
    ):
        command += ["-e", name]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    rows: dict[int, tuple[int, bool, bool, str]] = {}
    for line in result.stdout.splitlines():
        fields = (line.split("\t") + [""] * 6)[:6]
        if fields[0] and fields[1]:
            headers = "1" in fields[5].split(";")
            rows[int(fields[0])] = (
                int(fields[1].split(";")[0]),
                bool(fields[2]) or headers,
                bool(fields[3]) or headers,
                fields[4],
            )
    return rows


def _start_line(message: HttpRequest | HttpResponse) -> str:
    """The beginning of the start line as tshark's summary line shows it."""
    if isinstance(message, HttpRequest):
        return f"{message.method} {message.uri}"[:40]
    return f"{message.version} {message.status}"


def _problem(
    message: HttpRequest | HttpResponse, stream: int, rows: dict[int, tuple[int, bool, bool, str]]
) -> str | None:
    frame = message.shown_frame
    row = rows.get(frame)
    if row is None or row[0] != stream:
        return f"#{frame} is not a frame of tcp.stream {stream}"
    _, request, response, info = row
    if message.complete:
        dissected = request if isinstance(message, HttpRequest) else response
        return None if dissected else f"tshark does not show the message at #{frame}"
    if _start_line(message) not in info:
        return f"#{frame} shows {info!r}, not the head {_start_line(message)!r}"
    return None


@pytest.mark.oracle
def test_every_message_frame_is_where_wireshark_shows_the_message() -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    checked = {True: 0, False: 0}
    problems: list[str] = []
    for capture in _captures():
        try:
            connections, _ = read_connections([capture])
        except CaptureError:
            continue  # not a capture we read (the readers' tests cover those)
        if not connections:
            continue
        rows = _tshark(capture)
        excluded = _KNOWN_BETTER.get(capture.name, (set(), ""))[0]
        for connection in connections:
            if connection.id in excluded:
                continue
            for exchange in connection.exchanges:
                messages = [exchange.request, *exchange.interim, exchange.response]
                for message in messages:
                    if message is None:
                        continue
                    checked[message.complete] += 1
                    problem = _problem(message, connection.id, rows)
                    if problem:
                        problems.append(f"{capture.name} stream {connection.id}: {problem}")
    assert problems == []
    assert checked[True] > 100
    # Forced ends exist in our own captures (gap-resync, snaplen-96, http10...).
    assert checked[False] >= 3


def test_a_body_cut_by_the_end_of_the_capture_is_cited_at_its_head() -> None:
    # OTRF WinRM capture: the last 200 (frames 225-226) is cut by the end of the
    # capture; the last frame is the client's ACK #227, which we used to cite.
    name = (
        "OTRF__Security-Datasets/datasets__atomic__windows__lateral_movement__network__"
        "empire_psremoting_stager.zip__empire_psremoting_stager_WORKSTATION5_2020-09-20170827.cap"
    )
    path = SHARED / name
    if not path.exists():
        pytest.skip("shared captures absent")
    connections, _ = read_connections([path])
    (two,) = [c for c in connections if c.id == 2]
    last = two.exchanges[-1].response
    assert last is not None and not last.complete
    assert (last.shown_frame, last.end_frame) == (225, 227)
