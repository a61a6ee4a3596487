"""`authtrace analyze` and `authtrace connections` through click's CliRunner:
exit statuses, filters, JSON shape, secrets, bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from _pcap import tcp_capture
from click.testing import CliRunner

from authtrace.cli import main

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
HEALTHY = str(CAPTURES / "scenarios" / "healthy-ntlm.pcap")
SPLIT = str(CAPTURES / "scenarios" / "pooling-proxy.pcap")
BASIC = str(CAPTURES / "scenarios" / "basic-over-cleartext.pcap")


def run(*args: str, input: bytes | None = None):
    return CliRunner().invoke(main, list(args), input=input)


def test_healthy_capture_exits_zero_and_says_so() -> None:
    result = run("analyze", HEALTHY)
    assert result.exit_code == 0, result.output
    assert "No authentication problem found." in result.output
    assert "2 normal handshake legs, 0 failures" in result.output


def test_findings_exit_one_and_lead_the_report() -> None:
    result = run("analyze", "--no-ladders", SPLIT)
    assert result.exit_code == 1
    assert result.output.index("Summary") < result.output.index("ntlm-handshake-split")
    assert "fix:" in result.output and "evidence: frames" in result.output


def test_json_schema_top_level() -> None:
    result = run("analyze", "--json", SPLIT)
    data = json.loads(result.output)
    assert data["schema"] == "authtrace.analyze/1"
    finding = data["findings"][0]
    assert {"rule", "severity", "title", "connections", "frames", "host"} <= set(finding)
    exchange = data["exchanges"][0]
    assert {"connection", "request", "response", "auth", "verdicts"} <= set(exchange)
    steps = [step for e in data["exchanges"] for step in e["auth"]]
    assert {"mechanism", "message"} <= set(steps[0])
    assert any(v["iis"] == "401 2 5" for e in data["exchanges"] for v in e["verdicts"])


def test_filters_keep_only_matching_connections() -> None:
    everything = json.loads(run("analyze", "--json", SPLIT).output)
    assert len(everything["connections"]) == 2
    host = json.loads(run("analyze", "--json", "--host", "web01.contoso.com", SPLIT).output)
    assert len(host["connections"]) == 2 and host["findings"]
    by_address = json.loads(run("analyze", "--json", "--host", "198.51.100.20:80", SPLIT).output)
    assert len(by_address["connections"]) == 2
    client = json.loads(run("analyze", "--json", "--client", "203.0.113.5", SPLIT).output)
    assert len(client["connections"]) == 2


def test_filter_that_matches_nothing_says_what_there_is() -> None:
    """Issue 11 item 11: not "No HTTP traffic found ... No authentication
    problem found" with exit 0, but one line naming what the capture has."""
    for args in (("--client", "192.0.2.99"), ("--json", "--client", "192.0.2.99")):
        result = run("analyze", *args, SPLIT)
        assert result.exit_code == 2 and result.stdout == ""
        assert result.stderr == (
            "authtrace: no connection matches --client 192.0.2.99; hosts in the capture: "
            "web01.contoso.com (198.51.100.20:80); clients: 203.0.113.5\n"
        )
    result = run("analyze", "--host", "web02.contoso.com", "--host", "web03", SPLIT, HEALTHY)
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "authtrace: no connection matches --host web02.contoso.com --host web03; "
        "hosts in the captures: web01.contoso.com (198.51.100.20:80)"
    )
    assert "clients" not in result.stderr  # only what was asked about
    # A host that exists with a client that does not is still nothing.
    both = run("analyze", "--host", "web01.contoso.com", "--client", "192.0.2.99", SPLIT)
    assert both.exit_code == 2 and "clients: 203.0.113.5" in both.stderr
    no_http = run(
        "analyze", "--host", "web01", str(CAPTURES / "scenarios" / "kdc-error-etype.pcap")
    )
    assert no_http.exit_code == 2
    assert no_http.stderr.endswith("the capture has no HTTP connection\n")


@pytest.mark.parametrize(
    "output", [("--json",), ("--ladders", "all", "--html", "-")], ids=["json", "html"]
)
def test_basic_password_is_redacted_unless_asked(output: tuple[str, ...]) -> None:
    plain = run("analyze", *output, BASIC).output
    shown = run("analyze", *output, "--show-secrets", BASIC).output
    password = _basic_password(BASIC)
    assert password and password not in plain
    assert password in shown


def _basic_password(path: str) -> str:
    import base64
    import re

    data = Path(path).read_bytes()
    token = re.search(rb"Authorization: Basic ([A-Za-z0-9+/=]+)", data)
    assert token is not None
    return base64.b64decode(token.group(1)).decode().split(":", 1)[1]


def test_unusable_input_is_one_line_and_exit_two(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("this is not a capture\n")
    for command in ("analyze", "connections"):
        result = run(command, str(bogus))
        assert result.exit_code == 2
        assert "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1


def test_missing_file_is_exit_two(tmp_path: Path) -> None:
    result = run("analyze", str(tmp_path / "missing.pcap"))
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_stdin_and_gzip(tmp_path: Path) -> None:
    data = Path(HEALTHY).read_bytes()
    piped = run("connections", "--json", "-", input=data)
    assert piped.exit_code == 0, piped.output
    packed = tmp_path / "trace.pcap.gz"
    packed.write_bytes(gzip.compress(data))
    zipped = run("connections", "--json", str(packed))
    assert json.loads(piped.output)["connections"] == json.loads(zipped.output)["connections"]


def test_damaged_gzip_is_analysed_up_to_the_damage(tmp_path: Path) -> None:
    # Issue 11 item 12 (README: "A damaged file is read up to the damage").
    plain = (CAPTURES / "scenarios" / "ntlm-logon-failed.pcap").read_bytes()
    packed = bytearray(gzip.compress(plain, mtime=0))
    # Found by tests/test_readers.py's search: zlib calls this byte invalid
    # ("invalid distance too far back"), after nine of the 18 frames.
    packed[1032] ^= 0x55
    damaged = tmp_path / "cut.pcap.gz"
    damaged.write_bytes(bytes(packed))
    result = run("analyze", "--no-ladders", str(damaged))
    assert result.exit_code != 2, result.output
    assert "capture-corrupt" in result.output and "damaged compressed data" in result.output
    # What came before the damage was judged: the NTLM handshake's first legs.
    data = json.loads(run("analyze", "--json", str(damaged)).output)
    assert [e["request"]["frame"] for e in data["exchanges"]] == [4, 8]


def test_overlapping_captures_keep_their_findings_and_name_frames_by_file() -> None:
    # Issue 11 item 10: this used to report only a capture-overlap, exit 0.
    failed = str(CAPTURES / "scenarios" / "ntlm-logon-failed.pcap")
    result = run("analyze", HEALTHY, failed)
    assert result.exit_code == 1, result.output
    assert "ntlm-logon-failed" in result.output and "capture-overlap" in result.output
    assert "frames ntlm-logon-failed.pcap#12, ntlm-logon-failed.pcap#14" in result.output
    assert "ntlm-logon-failed.pcap#12 GET /" in result.output  # the ladders too
    data = json.loads(run("analyze", "--json", HEALTHY, failed).output)
    assert [(c["stream"], c["first_frame"]) for c in data["captures"]] == [(0, 1), (1, 27)]


def test_connections_json_shape() -> None:
    data = json.loads(run("connections", "--json", HEALTHY).output)
    (connection,) = data["connections"]
    assert connection["client"] == "192.0.2.10:49152"
    assert connection["server"] == "198.51.100.20:80"
    first = connection["exchanges"][0]
    assert first["request"]["method"] == "GET" and first["request"]["frame"] == 4
    response = first["response"]
    assert (response["status"], response["reason"], response["frame"]) == (401, "Unauthorized", 6)
    messages = [a["message"] for e in connection["exchanges"] for a in e["auth"]]
    assert messages[:5] == [
        "OFFER",
        "OFFER",
        "NTLM_NEGOTIATE",
        "NTLM_CHALLENGE",
        "NTLM_AUTHENTICATE",
    ]


def test_connections_text_shows_decoded_steps() -> None:
    result = run("connections", HEALTHY)
    assert "NTLM AUTHENTICATE CONTOSO\\alice" in result.output
    assert "connection 0: 192.0.2.10:49152 -> 198.51.100.20:80" in result.output


def test_no_match_lists_capture_hosts_escaped(tmp_path: Path) -> None:
    """The hosts listed come from Host headers: a terminal escape in one is
    shown as an escape, never sent to the terminal."""
    capture = tcp_capture(
        tmp_path / "hostile-host.pcap",
        [
            (True, b"GET / HTTP/1.1\r\nHost: evil\x1b[2J.example\r\n\r\n"),
            (False, b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"),
        ],
    )
    result = run("analyze", "--host", "web01", str(capture))
    assert result.exit_code == 2
    assert "\x1b" not in result.stderr and "evil\\x1b[2j.example (192.0.2.80:80)" in result.stderr


def test_ladders_by_default_only_for_connections_a_finding_names() -> None:
    healthy = run("analyze", HEALTHY).output
    assert "Connection 0 " not in healthy
    assert "1 other connection with authentication not drawn: no finding names it" in healthy
    every = run("analyze", "--ladders", "all", HEALTHY).output
    assert "Connection 0 " in every and "not drawn" not in every
    split = run("analyze", SPLIT).output
    assert "Connection 0 " in split and "Connection 1 " in split
    for none in (run("analyze", "--ladders", "none", SPLIT), run("analyze", "--no-ladders", SPLIT)):
        assert "Connection 0 " not in none.output and none.exit_code == 1
    assert run("analyze", "--ladders", "some", SPLIT).exit_code == 2


def test_connections_names_frames_of_a_separate_stream_by_file_as_analyze_does() -> None:
    """issue 11 (b): the second capture overlaps the first, so its frames are
    named by file in `connections` as in `analyze` (the first stream, printed
    before the overlap is known, keeps the numbers that are its file's own)."""
    paths = [HEALTHY, str(CAPTURES / "scenarios" / "ntlm-logon-failed.pcap")]
    listed = run("connections", *paths)
    analyzed = run("analyze", *paths)
    assert "ntlm-logon-failed.pcap#12 GET /" in listed.output
    assert "frames ntlm-logon-failed.pcap#1-17" in listed.output
    assert "#27" not in listed.output  # no stream-wide number for the second file
    assert "ntlm-logon-failed.pcap#12 GET /" in analyzed.output
    assert "  #4 GET / -> 401 #6" in listed.output


@pytest.mark.parametrize(
    "capture", sorted((CAPTURES / "scenarios").glob("*.pcap")), ids=lambda path: path.stem
)
def test_reports_count_in_words_never_in_parentheses(capture: Path) -> None:
    """ "1 connection, 3 exchanges", never "connection(s)": in the text report
    (ladders as drawn by default, with their "not drawn" lines), the HTML and
    the connection listing."""
    text = run("analyze", str(capture))
    assert text.exit_code in (0, 1), text.output
    assert "Summary" in text.output and " other TCP connection" in text.output
    assert "(s)" not in text.output
    page = run("analyze", "--html", "-", str(capture))
    assert page.exit_code in (0, 1), page.output
    assert "other TCP connection" in page.output
    assert "(s)" not in page.output
    listing = run("connections", str(capture))
    assert listing.exit_code == 0, listing.output
    assert "(s)" not in listing.output
