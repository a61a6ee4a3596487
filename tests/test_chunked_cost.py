"""Chunked framing at a cost proportional to the bytes: runs of small chunks are
counted in bulk, with exactly the result of reading them line by line, and a
connection that would cost more than MAX_CHUNK_LINES Python steps stops being
followed, with an anomaly that says so. (Speed itself is measured by the
benchmarks, never by a timed test.)"""

from __future__ import annotations

import random

import pytest

from authtrace.http import parser as parser_module
from authtrace.http.messages import HttpResponse
from authtrace.http.parser import HttpParser, MessageComplete, Role

HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def _responses(data: bytes, cuts: list[int]) -> tuple[list[HttpResponse], list[str]]:
    parser = HttpParser(Role.RESPONSE, 0)
    for _ in range(4):
        parser.push_method("GET")
    events = []
    start = 0
    for number, cut in enumerate([*cuts, len(data)], 1):
        events += parser.feed(data[start:cut], number, number, float(number))
        start = cut
    events += parser.close(len(cuts) + 2, 0.0)
    messages = [e.message for e in events if isinstance(e, MessageComplete)]
    assert all(isinstance(m, HttpResponse) for m in messages)
    return messages, [a.kind for a in parser.anomalies]  # type: ignore[return-value]


def _chunked(rng: random.Random, count: int) -> tuple[bytes, int]:
    body = bytearray()
    total = 0
    for _ in range(count):
        size = rng.choice((1, 1, 2, 15, 16, 255, 256, 1000, rng.randint(1, 300)))
        digits = f"{size:x}"
        digits = digits.upper() if rng.random() < 0.3 else digits
        extension = b";name=v" if rng.random() < 0.1 else b""
        # Chunk data that looks like framing must not confuse the count.
        data = bytes(rng.choice(b"x\r\n0123456789abcdef") for _ in range(size))
        body += digits.encode() + extension + b"\r\n" + data + b"\r\n"
        total += size
    return bytes(body) + b"0\r\n\r\n", total


@pytest.mark.parametrize("seed", range(20))
def test_bulk_counting_agrees_with_the_chunks(seed: int) -> None:
    rng = random.Random(seed)
    first, size_one = _chunked(rng, rng.randint(1, 120))
    second, size_two = _chunked(rng, rng.randint(1, 30))
    data = HEAD + first + HEAD + second
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 60))))
    messages, anomalies = _responses(data, cuts)
    assert anomalies == []
    assert [(m.body_size, m.complete) for m in messages] == [(size_one, True), (size_two, True)]
    # Three bytes at a time: no chunk is whole in a piece, each is read line by line.
    slow, _ = _responses(data, list(range(3, len(data), 3)))
    assert [(m.body_size, m.complete) for m in slow] == [(size_one, True), (size_two, True)]


def test_tiny_chunks_cost_one_step_per_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """100,000 chunks of one byte, a run per segment: far under a cap of 1,000
    steps, so the body is followed to its end."""
    monkeypatch.setattr(parser_module, "MAX_CHUNK_LINES", 1_000)
    data = HEAD + b"1\r\nx\r\n" * 100_000 + b"0\r\n\r\n"
    cuts = list(range(1460, len(data), 1460))
    messages, anomalies = _responses(data, cuts)
    assert anomalies == []
    assert [(m.body_size, m.complete) for m in messages] == [(100_000, True)]


def test_a_connection_that_costs_too_much_is_no_longer_followed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Chunks with an extension are read line by line: past the cap the parser
    stops following this direction, says so, and keeps what it had."""
    monkeypatch.setattr(parser_module, "MAX_CHUNK_LINES", 100)
    data = HEAD + b"1;e=1\r\nx\r\n" * 500 + b"0\r\n\r\n" + b"HTTP/1.1 200 OK\r\n\r\n"
    messages, anomalies = _responses(data, list(range(100, len(data), 100)))
    assert anomalies == ["http-body-not-followed"]
    assert len(messages) == 1 and not messages[0].complete
    assert 90 <= messages[0].body_size <= 101
