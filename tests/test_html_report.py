"""The HTML report (issue 13): findings, ladders with one arrow per message,
evidence links that resolve, escaping of hostile capture text, redaction, and
a real browser (Debian's chromium, headless) loading the page without errors."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from _pcap import tcp_capture
from click.testing import CliRunner

from authtrace.cli import main
from authtrace.pipeline import analyze
from authtrace.report.html import render_report_html

SCENARIOS = Path(__file__).resolve().parent.parent / "captures" / "scenarios"


class _Page(HTMLParser):
    """Ids, local links, arrows per ladder, finding rules and script blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.arrows: list[int] = []
        self.rules: list[str] = []
        self.scripts = 0
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.add(tag)
        if found.get("id"):
            self.ids.add(found["id"] or "")
        if tag == "a" and (found.get("href") or "").startswith("#"):
            self.links.append((found["href"] or "")[1:])
        if tag == "g" and "arrow" in (found.get("class") or "").split():
            self.arrows.append(int(found["data-frame"] or 0))
        if found.get("data-rule"):
            self.rules.append(found["data-rule"] or "")
        if tag == "script":
            self.scripts += 1
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name, value)
            if name in ("src", "href") and value:
                assert value.startswith("#") or value.startswith("data:"), (tag, name, value)


def _page(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def _tshark_http_frames(capture: Path) -> list[int]:
    out = subprocess.run(
        ["tshark", "-r", str(capture), "-Y", "http.request || http.response", "-T", "fields",
         "-e", "frame.number"],
        capture_output=True, text=True, check=True,
    ).stdout
    return sorted(int(line) for line in out.split())


@pytest.mark.parametrize("name", ["pooling-proxy", "ntlm-logon-failed", "client-ignores-negotiate"])
def test_findings_and_evidence_links_resolve(name: str) -> None:
    report = analyze([str(SCENARIOS / f"{name}.pcap")])
    page = _page(render_report_html(report))
    assert page.rules == [f.rule for f in report.findings]
    assert report.findings and page.links
    for target in page.links:
        assert target in page.ids, target
    linked = {int(t.rsplit("-f", 1)[1]) for t in page.links if re.fullmatch(r"r-f\d+", t)}
    for finding in report.findings:
        assert set(finding.frames) & linked, finding.rule
    assert page.scripts == 1


@pytest.mark.oracle
@pytest.mark.parametrize("name", ["pooling-proxy", "ntlm-logon-failed"])
def test_one_arrow_per_message_at_wiresharks_frames(name: str) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    capture = SCENARIOS / f"{name}.pcap"
    page = _page(render_report_html(analyze([str(capture)]), draw_all=True))
    assert sorted(page.arrows) == _tshark_http_frames(capture)


def test_kerberos_lane_draws_the_kdc_exchange() -> None:
    report = analyze([str(SCENARIOS / "kerberos-fallback-spn-unknown.pcap")])
    text = render_report_html(report)
    assert ">KDC</text>" in text
    assert "S_PRINCIPAL_UNKNOWN" in text or "KDC_ERR_S_PRINCIPAL_UNKNOWN" in text


MARKUP = "<script>document.body.setAttribute('data-pwned','1')</script>"
IMG = "<img src=x onerror=\"document.body.setAttribute('data-pwned','2')\">"


def _hostile(tmp_path: Path) -> Path:
    request = (
        f"GET /a{MARKUP.replace(' ', '%20')} HTTP/1.1\r\nHost: web{IMG.replace(' ', '')}\r\n"
        f"User-Agent: {MARKUP}\r\nX-{IMG.replace(' ', '')}: 1\r\n\r\n"
    ).encode()
    body = f"<html>{MARKUP}{IMG}</html>".encode()
    response = (
        f"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"{MARKUP}{IMG}\"\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    credentials = b"\r\nAuthorization: Basic YWxpY2U6WnE3cEh1bnRlcg==\r\n\r\n"
    retry = request.replace(b"\r\n\r\n", credentials)
    return tcp_capture(tmp_path / "hostile.pcap", [(True, request), (False, response),
                                                    (True, retry), (False, response)])


def test_hostile_capture_text_is_escaped_and_secrets_redacted(tmp_path: Path) -> None:
    capture = _hostile(tmp_path)
    text = render_report_html(analyze([str(capture)]), draw_all=True)
    page = _page(text)  # asserts no on* attribute and no external src/href
    assert page.scripts == 1
    assert "<img" not in text and "data-pwned','1')</script>" not in text
    assert "&lt;script&gt;" in text or "&lt;img" in text
    assert "Zq7pHunter" not in text and "YWxpY2U6WnE3cEh1bnRlcg==" not in text
    shown = render_report_html(analyze([str(capture)]), show_secrets=True, draw_all=True)
    assert "Zq7pHunter" in shown


def test_cli_writes_the_file_and_keeps_the_text_report(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        main, ["analyze", str(SCENARIOS / "pooling-proxy.pcap"), "--html", str(out)]
    )
    assert result.exit_code == 1, result.output
    assert "Findings (" in result.output
    assert out.read_text().startswith("<!DOCTYPE html>")
    stdout = CliRunner().invoke(
        main, ["analyze", str(SCENARIOS / "pooling-proxy.pcap"), "--html", "-"]
    )
    assert stdout.output.startswith("<!DOCTYPE html>") and stdout.exit_code == 1
    diff = CliRunner().invoke(
        main,
        ["diff", str(SCENARIOS / "healthy-ntlm.pcap"), str(SCENARIOS / "pooling-proxy.pcap"),
         "--html", "-"],
    )
    assert diff.exit_code == 1 and 'id="comparison"' in diff.output
    for target in _page(diff.output).links:
        assert target in _page(diff.output).ids
    bad = CliRunner().invoke(
        main, ["analyze", str(SCENARIOS / "pooling-proxy.pcap"), "--html",
               str(tmp_path / "no" / "such" / "dir.html")]
    )
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return name
    pytest.skip("Debian's chromium is not installed (scripts/test installs it as root)")


def _browser(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
         "--v=0", *args],
        capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize("hostile", [False, True])
def test_chromium_renders_without_console_errors_and_runs_nothing(
    tmp_path: Path, hostile: bool
) -> None:
    capture = _hostile(tmp_path) if hostile else SCENARIOS / "pooling-proxy.pcap"
    page = tmp_path / "page.html"
    page.write_text(render_report_html(analyze([str(capture)]), draw_all=True))
    dom = _browser("--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<svg" in dom.stdout and 'class="arrow' in dom.stdout
    assert not re.search(r"<body[^>]*data-pwned", dom.stdout)
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
    assert "Content Security Policy" not in dom.stderr
    shot = tmp_path / "page.png"
    done = _browser(f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri())
    assert done.returncode == 0 and shot.stat().st_size > 10_000
