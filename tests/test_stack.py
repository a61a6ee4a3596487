"""The protocol stack of a connection is decided by content in one place
(stack.py), and the fast lane asks each layer what it may skip instead of
reaching into it (lane.py, tcp/events.py LaneSink)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from authtrace.http.exchanges import HttpConnectionTracker
from authtrace.http.parser import HttpParser, MessageComplete, Role
from authtrace.stack import H2_PREFACE, Stack, decide, decide_inner
from authtrace.tcp.events import SKIP_ALL, ConnectionOpened, Direction, Endpoint, StreamData

SRC = Path(__file__).resolve().parent.parent / "src" / "authtrace"

TLS_HELLO = bytes([22, 3, 1, 0, 200, 1]) + b"\x00" * 10
# A KRB_TGS_REQ record over TCP (RFC 4120 section 7.2.2): 4-byte length, [APPLICATION 12].
KDC_TCP = b"\x00\x00\x00\x0e" + bytes(
    [0x6C, 0x0C, 0x30, 0x0A, 0xA1, 0x03, 0x02, 0x01, 0x05, 0xA2, 0x03, 0x02, 0x01, 0x0C]
)


@pytest.mark.parametrize(
    ("ports", "data", "stack"),
    [
        ((50000, 80), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Stack.HTTP1),
        ((50000, 443), TLS_HELLO, Stack.TLS),
        ((50000, 8080), TLS_HELLO, Stack.TLS),  # by content, not by port
        ((50000, 443), b"GET / HTTP/1.1\r\n", Stack.HTTP1),  # cleartext on 443 is not TLS
        ((50000, 80), H2_PREFACE + b"\x00\x00\x00\x04\x00", Stack.HTTP2),  # h2c prior knowledge
        ((50000, 80), H2_PREFACE[:14], Stack.HTTP2),  # as much of the preface as arrived
        ((50000, 80), b"PRI / HTTP/1.1\r\n", Stack.HTTP1),  # a PRI method is still HTTP/1
        ((50000, 88), b"anything", Stack.KERBEROS),
        ((50000, 9000), KDC_TCP, Stack.KERBEROS),
        ((50000, 9000), b"\x00\x01binary", Stack.HTTP1),  # the HTTP layer says "not HTTP"
    ],
)
def test_stack_is_decided_by_content(ports: tuple[int, int], data: bytes, stack: Stack) -> None:
    assert decide(*ports, data) is stack


def test_inside_tls_alpn_then_content_decide() -> None:
    assert decide_inner("h2", b"anything") is Stack.HTTP2
    assert decide_inner("", H2_PREFACE) is Stack.HTTP2  # h2 without ALPN (prior knowledge)
    assert decide_inner("http/1.1", b"GET / HTTP/1.1\r\n") is Stack.HTTP1
    assert decide_inner("", b"GET / HTTP/1.1\r\n") is Stack.HTTP1


def _names_protocols(tree: ast.AST) -> set[str]:
    """Calls of the content sniffers outside stack.py."""
    sniffers = {"looks_like_tls", "_is_h2_preface"}
    return {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in sniffers
    }


def test_only_stack_decides_a_connections_protocols() -> None:
    for path in SRC.rglob("*.py"):
        if path.name == "stack.py" or path.parent.name == "tls":
            continue
        assert not _names_protocols(ast.parse(path.read_text())), path


def test_the_lane_imports_no_private_names() -> None:
    """lane.py asks the layers through their public methods (a fast path lives
    behind the interface of the layer it speeds up)."""
    tree = ast.parse((SRC / "lane.py").read_text())
    private = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("authtrace")
        for alias in node.names
        if alias.name.startswith("_")
    ]
    assert private == []
    attributes = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not (isinstance(node.value, ast.Name) and node.value.id == "self")
        and not node.attr.startswith("__")
    }
    assert attributes <= {"_off"}, attributes  # its own switch, read by its own walkers


def _tracker(data: bytes) -> HttpConnectionTracker:
    tracker = HttpConnectionTracker(1)
    tracker.feed(
        ConnectionOpened(1, Endpoint("10.0.0.1", 5000), Endpoint("10.0.0.2", 80), 1, 0.0, True)
    )
    tracker.feed(StreamData(1, Direction.TO_SERVER, data, 2, 2, 0.0))
    return tracker


def test_http_tracker_says_what_the_lane_may_skip() -> None:
    undecided = HttpConnectionTracker(1)
    assert undecided.lane_sink(Direction.TO_SERVER) is None
    http = _tracker(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert http.is_http
    sink = http.lane_sink(Direction.TO_SERVER)
    assert isinstance(sink, HttpParser) and sink.role is Role.REQUEST
    not_http = _tracker(b"\x00\x01\x02 binary protocol " * 5000)
    assert not_http.is_http is False
    assert not_http.lane_sink(Direction.TO_CLIENT) is SKIP_ALL


def test_parser_counts_only_what_feed_would_only_count() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
    counted, fed = HttpParser(Role.RESPONSE), HttpParser(Role.RESPONSE)
    for parser in (counted, fed):
        parser.push_method("GET")
        parser.feed(head, 1, 1, 0.0)
    assert counted.count_only(b"x" * 60, 0, 60, 2, 1.0)
    assert fed.feed(b"x" * 60, 2, 2, 1.0) == []
    # The last 40 bytes end the body: that is an event, not counting.
    assert not counted.count_only(b"x" * 40, 0, 40, 3, 2.0)
    assert counted.count_only(b"x" * 39, 0, 39, 3, 2.0)
    events = counted.feed(b"x", 4, 4, 3.0)
    expected = fed.feed(b"x" * 40, 3, 4, 3.0)
    sizes = [e.message.body_size for e in events if isinstance(e, MessageComplete)]
    assert sizes == [e.message.body_size for e in expected if isinstance(e, MessageComplete)]
    assert sizes == [100]
