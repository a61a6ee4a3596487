"""Terminal control characters from a capture are shown, never obeyed: the
helper itself, and every text renderer through the command line (analyze,
connections, diff, decode, explain, iislog)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _pcap import tcp_capture
from click.testing import CliRunner

from authtrace.cli import main
from authtrace.visible import visible, visible_lines

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
# What a terminal acts on, or hides: C0/C1 controls, DEL, bidi overrides,
# zero-width characters, line separators.
_OBEYED = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain /path?q=1", "plain /path?q=1"),
        ("\x1b]0;title\x07evil\r\x08", "\\x1b]0;title\\x07evil\\r\\x08"),
        ("a\tb\nc", "a\\tb\\nc"),
        ("\x7f\x9b", "\\x7f\\x9b"),
        ("user\u202egpj.exe", "user\\u202egpj.exe"),
        ("zero\u200bwidth\u2028line", "zero\\u200bwidth\\u2028line"),
        ("lone \udc80 surrogate", "lone \\udc80 surrogate"),
        ("CONTOSO\\alice é → ü", "CONTOSO\\alice é → ü"),
    ],
)
def test_visible_escapes_what_a_terminal_obeys(raw: str, shown: str) -> None:
    assert visible(raw) == shown
    assert visible(shown) == shown  # idempotent: renderers may apply it twice


def test_a_newline_inside_an_item_cannot_forge_a_line() -> None:
    text = visible_lines(["1. finding for bob\n2. [ERROR] forged", "next"])
    assert text.split("\n") == ["1. finding for bob\\n2. [ERROR] forged", "next"]


def _hostile_capture(tmp_path: Path) -> Path:
    request = (
        b"GET /\x1b]0;title\x07evil\x08\x08 HTTP/1.1\r\nHost: web\x1b[2J\r\n"
        b'Authorization: Digest username="\x1b[31mbob\r", realm="r\x07", nonce="n", '
        b'uri="/", response="0123456789abcdef0123456789abcdef"\r\n\r\n'
    )
    response = (
        b"HTTP/1.1 401 Unauthorized\x1b[1A\r\n"
        b'WWW-Authenticate: Digest realm="r\x1b[2J", nonce="x"\r\n'
        b"Content-Length: 0\r\n\r\n"
    )
    return tcp_capture(tmp_path / "hostile.pcap", [(True, request), (False, response)])


def _run(*args: str, input: str | None = None) -> str:
    result = CliRunner().invoke(main, list(args), input=input)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.output


def _assert_shown_not_obeyed(output: str) -> None:
    assert output.strip()
    assert not _OBEYED.search(output), repr(_OBEYED.search(output))


def test_analyze_text_shows_control_characters(tmp_path: Path) -> None:
    output = _run("analyze", str(_hostile_capture(tmp_path)))
    _assert_shown_not_obeyed(output)
    # The finding title and the ladder show the escapes where the bytes were.
    assert "Digest authentication failed for \\x1b[31mbob\\r" in output
    assert "GET /\\x1b]0;title\\x07evil\\x08\\x08" in output
    assert 'realm="r\\x1b[2J"' in output


def test_connections_text_shows_control_characters(tmp_path: Path) -> None:
    output = _run("connections", str(_hostile_capture(tmp_path)))
    _assert_shown_not_obeyed(output)
    assert "\\x1b[31mbob\\r" in output


def test_diff_text_shows_control_characters(tmp_path: Path) -> None:
    healthy = str(CAPTURES / "scenarios" / "healthy-ntlm.pcap")
    output = _run("diff", healthy, str(_hostile_capture(tmp_path)))
    _assert_shown_not_obeyed(output)
    assert "final status /\\x1b]0;title\\x07evil\\x08\\x08: 401" in output
    assert "for \\x1b[31mbob\\r" in output
    assert "Host web\\x1b[2j (failing-only)" in output  # host names compare lowercased


def test_decode_tree_shows_control_characters() -> None:
    output = _run("decode", 'Digest username="\x1b]0;x\x07", realm="\u202eexe", nonce="n"')
    _assert_shown_not_obeyed(output)
    assert "\\x1b]0;x\\x07" in output and "\\u202eexe" in output


def test_explain_echoes_an_unknown_code_visibly() -> None:
    output = _run("explain", "401.\x1b[2J")
    _assert_shown_not_obeyed(output)
    assert "401.\\x1b[2J: unknown code" in output


def test_iislog_text_shows_control_characters(tmp_path: Path) -> None:
    log = tmp_path / "u_ex.log"
    log.write_bytes(
        b"#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip "
        b"cs(User-Agent) sc-status sc-substatus sc-win32-status time-taken\n"
        b"2026-11-14 10:00:00 10.0.0.1 GET /a\x1b]0;x\x07 - 80 CONTOSO\\\x1b[31mbob 10.0.0.2 "
        b"curl 401 1 1326 5\n"
    )
    output = _run("iislog", str(log))
    _assert_shown_not_obeyed(output)
    assert "/a\\x1b]0;x\\x07" in output
