"""The HTML report (issue 13): findings with evidence links that resolve to
arrows, one arrow per message at Wireshark's frames, stories drawn across
connections, TLS facts, frames named by file, escaping of hostile capture
text, redaction, and the CLI. The browser tests are in test_html_browser.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _html import (
    HOSTILE_SECRETS,
    IMG,
    PLACES,
    SCENARIOS,
    SCRIPT,
    TLS,
    hostile_capture,
    parse,
    tshark_frames,
)
from click.testing import CliRunner

from authtrace.cli import main
from authtrace.pipeline import analyze
from authtrace.report.html import render_report_html
from authtrace.report.html.ladder import MAX_ARROWS

# Scenarios whose every message is drawn (draw_all) and checked against tshark.
DRAWN = [
    "pooling-proxy",
    "ntlm-logon-failed",
    "healthy-kerberos",
    "kerberos-fallback-spn-unknown",
    "reverse-proxy-user-substitution",
    "capture-starts-midway",
    "handshake-closed-midway",
    "healthy-proxy-407",
    "auth-header-too-large",
    "ntlm-handshake-split",
]
CHALLENGE = (
    b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="r"\r\nContent-Length: 0\r\n\r\n'
)


def _arrow_ids(text: str) -> dict[str, int]:
    return {a.anchor: a.frame for a in parse(text).arrows}


@pytest.mark.parametrize(
    "name",
    [
        "pooling-proxy",
        "ntlm-logon-failed",
        "client-ignores-negotiate",
        "ntlm-handshake-split",
        "handshake-closed-midway",  # cites the FINs
        "kdc-error-etype",  # cites a KDC exchange with no HTTP behind it
    ],
)
def test_findings_and_evidence_links_resolve_to_arrows(name: str) -> None:
    report = analyze([str(SCENARIOS / f"{name}.pcap")])
    text = render_report_html(report)
    page = parse(text)
    assert page.rules == [f.rule for f in report.findings] and report.findings
    for target in page.links:
        assert target in page.ids, target
    arrows = _arrow_ids(text) | page.events
    for number, finding in enumerate(report.findings, 1):
        cited = [t for f, t in page.evidence if f == f"r-finding-{number}"]
        # Every evidence link lands on an arrow showing the frame it names.
        assert cited and all(t in arrows for t in cited), finding.rule
        assert {arrows[t] for t in cited} <= set(finding.frames)
    assert page.scripts == 1


@pytest.mark.oracle
@pytest.mark.parametrize("name", DRAWN)
def test_one_arrow_per_message_at_wiresharks_frames(name: str) -> None:
    capture = SCENARIOS / f"{name}.pcap"
    page = parse(render_report_html(analyze([str(capture)]), draw_all=True))
    http = sorted(a.frame for a in page.arrows if a.connection is not None)
    assert http == tshark_frames(capture, "http.request || http.response")
    kdc = [a.frame for a in page.arrows if a.connection is None]
    assert set(kdc) <= set(tshark_frames(capture, "kerberos")), kdc
    assert len(set(kdc)) == len(kdc)
    closes = set(page.events.values())
    assert closes <= set(tshark_frames(capture, "tcp.flags.fin == 1 || tcp.flags.reset == 1"))


def test_a_split_handshake_is_one_ladder_across_its_connections() -> None:
    report = analyze([str(SCENARIOS / "ntlm-handshake-split.pcap")])
    text = render_report_html(report)
    (split,) = [f for f in report.findings if f.rule == "ntlm-handshake-split"]
    ladders = re.findall(r'class="ladder" id="r-ladder-\d+" data-connections="([\d ]+)"', text)
    assert any(set(split.connections) <= {int(c) for c in ls.split()} for ls in ladders)


def test_a_proxy_relay_is_drawn_with_client_proxy_and_server_lanes() -> None:
    text = render_report_html(analyze([str(SCENARIOS / "reverse-proxy-user-substitution.pcap")]))
    heads = re.findall(r'<text class="lane-head"[^>]*>([^<]+)</text>', text)
    assert heads == ["client", "client", "proxy", "server"]


def test_kerberos_lane_draws_the_kdc_exchange_with_its_fields() -> None:
    text = render_report_html(analyze([str(SCENARIOS / "kerberos-fallback-spn-unknown.pcap")]))
    assert ">KDC</text>" in text
    assert "KDC_ERR_S_PRINCIPAL_UNKNOWN" in text and "KRB-ERROR 7" in text
    assert "HTTP/web01.contoso.com" in text


def test_decrypted_tls_shows_sni_version_and_channel_binding_proof() -> None:
    capture = TLS / "tls13-ntlm-channel-binding.pcap"
    runner = CliRunner()
    args = ["analyze", str(capture), "--tls-keylog", str(capture.with_suffix(".keys"))]
    text = runner.invoke(main, [*args, "--ladders", "all"]).output
    page = runner.invoke(main, [*args, "--ladders", "all", "--html", "-"]).output
    tls_line = re.search(r"TLS: (.+)", text)
    binding = re.search(r"NTLM channel binding: (.+)", text)
    assert tls_line and binding, text
    # The page says what the text report says, in the same words.
    assert f"decrypted TLS: {tls_line.group(1)}" in page
    assert f"NTLM channel binding: {binding.group(1)}" in page
    assert "bound to this server certificate" in page


def test_frames_are_named_by_file_when_captures_overlap() -> None:
    healthy, failed = SCENARIOS / "healthy-ntlm.pcap", SCENARIOS / "ntlm-logon-failed.pcap"
    text = render_report_html(analyze([str(healthy), str(failed)]))
    assert ">ntlm-logon-failed.pcap#12</a>" in text  # evidence, linked
    assert "ntlm-logon-failed.pcap#12 GET /" in text  # the arrow's label


def test_arrow_ids_are_unique_and_evidence_links_the_first(tmp_path: Path) -> None:
    # Pipelined requests and responses: two messages end in one frame each way.
    from _pcap import tcp_capture

    two = b"GET /a HTTP/1.1\r\nHost: web01\r\n\r\nGET /b HTTP/1.1\r\nHost: web01\r\n\r\n"
    capture = tcp_capture(tmp_path / "pipelined.pcap", [(True, two), (False, CHALLENGE * 2)])
    page = parse(render_report_html(analyze([str(capture)]), draw_all=True))  # ids checked unique
    frames = [a.frame for a in page.arrows]
    assert len(frames) == 4 and len(set(frames)) == 2
    assert sorted(a.anchor for a in page.arrows)[:2] == [f"r-f{frames[0]}", f"r-f{frames[0]}-2"]


def test_a_ladder_is_bounded_and_says_what_it_left_out(tmp_path: Path) -> None:
    from _pcap import tcp_capture

    request = b"GET / HTTP/1.1\r\nHost: web01\r\n\r\n"
    messages = [(True, request), (False, CHALLENGE)] * (MAX_ARROWS // 2 + 10)
    capture = tcp_capture(tmp_path / "long.pcap", messages)
    text = render_report_html(analyze([str(capture)]), draw_all=True)
    assert len(parse(text).arrows) == MAX_ARROWS
    # 20 messages and the FIN that closed the connection.
    assert "21 later messages or closes of these connections not drawn" in text


def test_hostile_capture_text_is_shown_escaped_never_as_markup(tmp_path: Path) -> None:
    capture = hostile_capture(tmp_path)
    text = render_report_html(analyze([str(capture)]), draw_all=True)
    page = parse(text)
    assert page.scripts == 1  # the page's own, nothing from the capture
    for tag, name, value in page.attributes:
        assert not name.startswith("on"), (tag, name, value)
        if name in ("src", "href"):
            assert value.startswith("#"), (tag, name, value)
    assert "<img" not in text and "<script>document" not in text
    for where in PLACES:
        # Each place reaches the page (so the check means something), escaped.
        assert f"(&#39;data-pwned&#39;,&#39;{where}&#39;)" in text, where
    assert SCRIPT.format(where="uri") not in text and IMG.format(where="body") not in text
    for secret in HOSTILE_SECRETS:
        assert secret not in text, secret
    shown = render_report_html(analyze([str(capture)]), show_secrets=True, draw_all=True)
    assert "Zq7pHunter" in shown
    assert "Ck_Secret_4411" not in shown  # header values beyond the context ones: never


def test_cli_writes_the_file_and_keeps_the_text_report(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    capture = str(SCENARIOS / "pooling-proxy.pcap")
    result = CliRunner().invoke(main, ["analyze", capture, "--html", str(out)])
    assert result.exit_code == 1, result.output
    assert "Findings (" in result.output
    assert out.read_text().startswith("<!DOCTYPE html>")
    stdout = CliRunner().invoke(main, ["analyze", capture, "--html", "-"])
    assert stdout.output.startswith("<!DOCTYPE html>") and stdout.exit_code == 1
    diff = CliRunner().invoke(
        main, ["diff", str(SCENARIOS / "healthy-ntlm.pcap"), capture, "--html", "-"]
    )
    page = parse(diff.output)
    assert diff.exit_code == 1 and "comparison" in page.ids
    assert all(target in page.ids for target in page.links)
    assert {a.anchor.split("-")[0] for a in page.arrows} <= {"w", "f"}
    bad = CliRunner().invoke(
        main, ["analyze", capture, "--html", str(tmp_path / "no" / "such" / "dir.html")]
    )
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    assert bad.stderr.count("\n") == 1 and "--html" in bad.stderr


def test_many_findings_get_an_index_by_rule_linking_the_first() -> None:
    import dataclasses

    report = analyze([str(SCENARIOS / "pooling-proxy.pcap")])
    assert len(report.findings) == 1  # the two split handshakes fold into one finding
    many = dataclasses.replace(report, findings=report.findings * 10)
    text = render_report_html(many)
    page = parse(text)
    assert "r-finding-10" in page.ids and all(t in page.ids for t in page.links)
    rows = re.findall(
        r'<tr><td><code>([\w-]+)</code></td>.*?<td>(\d+)</td><td><a href="#([\w-]+)"', text
    )
    assert rows == [("ntlm-handshake-split", "10", "r-finding-1")]
    assert 'class="hosts index"' not in render_report_html(report)


def test_text_sections_keep_their_lines() -> None:
    # The diff and the IIS log comparison are the text renderers' lines: shown
    # as lines, not as one line with escaped line breaks.
    runner = CliRunner()
    diff = runner.invoke(
        main,
        ["diff", str(SCENARIOS / "healthy-ntlm.pcap"), str(SCENARIOS / "pooling-proxy.pcap"),
         "--html", "-"],
    ).output  # fmt: skip
    comparison = re.search(r'<h2 id="comparison">Comparison</h2>\s*<pre>(.*?)</pre>', diff, re.S)
    assert comparison and comparison.group(1).count("\n") > 5
    assert "\\n" not in comparison.group(1)
    capture = SCENARIOS / "resource-acl-denied-logged.pcap"
    args = ["analyze", str(capture), "--iis-log", str(capture.with_suffix(".log"))]
    text = runner.invoke(main, args).output
    page = runner.invoke(main, [*args, "--html", "-"]).output
    section = re.search(r'<h2 id="r-iis">IIS log</h2>\s*<pre>(.*?)</pre>', page, re.S)
    assert section and "\\n" not in section.group(1)
    first = section.group(1).split("\n")[0]
    assert first and first in text  # the same lines as the text report's


H2 = SCENARIOS.parent / "h2"


@pytest.mark.oracle
@pytest.mark.parametrize(
    "name", ["built-iis-http11-required-retried", "built-iis-http11-required-no-retry"]
)
def test_a_reset_http2_stream_is_drawn_as_its_rst_stream(name: str) -> None:
    # IIS refuses NTLM over HTTP/2 with RST_STREAM HTTP_1_1_REQUIRED: the ladder
    # draws that frame from the server's lane, never "no response".
    capture = H2 / f"{name}.pcap"
    text = render_report_html(analyze([str(capture)]), draw_all=True)
    page = parse(text)
    http = sorted(a.frame for a in page.arrows if a.connection is not None)
    wanted = "http.request || http.response || http2.type == 1 || http2.type == 3"
    assert http == tshark_frames(capture, wanted)
    (reset,) = tshark_frames(capture, "http2.type == 3")
    assert f"#{reset} RST_STREAM HTTP_1_1_REQUIRED  (HTTP/2 stream 1)" in text
    assert "stream reset by the server" in text
    # HTTP_1_1_REQUIRED is a refusal, coloured as one (NO_ERROR and CANCEL are not).
    assert re.search(rf'<g class="arrow tone-failure"[^>]*data-frame="{reset}"', text)


def test_a_folded_finding_draws_its_first_occurrences_and_its_last(tmp_path: Path) -> None:
    # Twelve users refused on twelve connections fold into one finding; its
    # ladders are those of the occurrences the text report draws too (the first
    # three and the last), not just the first connections.
    from test_fold import _logon_failures

    path = tmp_path / "many-users.pcap"
    _logon_failures(path, [f"user{n}" for n in range(12)])
    report = analyze([path])
    (failed,) = [f for f in report.findings if f.rule == "ntlm-logon-failed"]
    assert len(failed.connections) == 12
    text = render_report_html(report)
    ladders = re.findall(r'class="ladder" id="r-ladder-\d+" data-connections="([\d ]+)"', text)
    drawn = {int(c) for group in ladders for c in group.split()}
    wanted = {c for occurrence in failed.examples for c in occurrence.connections}
    assert drawn == wanted and failed.connections[-1] in drawn
