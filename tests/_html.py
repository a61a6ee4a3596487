"""What the HTML report tests share: a parser that lists what a page holds
(ids, local links, arrows, rule ids, scripts, open <details>), the tshark
frames of the messages a ladder must draw, headless Chromium, and a capture
whose every field a browser could act on carries markup."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
from _pcap import tcp_capture

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "captures" / "scenarios"
TLS = ROOT / "captures" / "tls"


@dataclass(frozen=True, slots=True)
class Arrow:
    anchor: str
    frame: int
    connection: int | None  # None: a KDC message


class Page(HTMLParser):
    """Everything the tests ask of a page, read by the standard library's parser."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: dict[str, str] = {}  # id -> tag
        self.links: list[str] = []  # local link targets, without '#'
        self.evidence: list[tuple[str, str]] = []  # (finding id, target)
        self.arrows: list[Arrow] = []
        self.events: dict[str, int] = {}  # id -> frame of a FIN or RST drawn on a lane
        self.rules: list[str] = []
        self.scripts = 0
        self.opened: set[str] = set()  # ids of <details open>
        self.attributes: list[tuple[str, str, str]] = []  # (tag, name, value)
        self._finding = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        self.attributes.extend((tag, name, value or "") for name, value in attrs)
        if "id" in found:
            assert found["id"] not in self.ids, f"id {found['id']} twice"
            self.ids[found["id"]] = tag
        if found.get("data-rule"):
            self.rules.append(found["data-rule"])
            self._finding = found["id"]
        if tag == "a" and found.get("href", "").startswith("#"):
            self.links.append(found["href"][1:])
            if "evidence" in found.get("class", "").split():
                self.evidence.append((self._finding, found["href"][1:]))
        if tag == "g" and "arrow" in found.get("class", "").split():
            connection = found.get("data-connection")
            self.arrows.append(
                Arrow(
                    found["id"], int(found["data-frame"]), int(connection) if connection else None
                )
            )
        if tag == "g" and "event" in found.get("class", "").split():
            self.events[found["id"]] = int(found["data-frame"])
        if tag == "details" and "open" in found:
            self.opened.add(found.get("id", ""))
        if tag == "script":
            self.scripts += 1


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    return page


def tshark_frames(capture: Path, display_filter: str, keys: Path | None = None) -> list[int]:
    """The frames Wireshark shows matching the filter (tshark is the oracle)."""
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (scripts/test installs it)")
    options = ["-o", f"tls.keylog_file:{keys}"] if keys is not None else []
    out = subprocess.run(
        ["tshark", "-n", "-r", str(capture), *options, "-Y", display_filter,
         "-T", "fields", "-e", "frame.number"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return sorted(int(line) for line in out.split())


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("Debian's chromium is not installed (scripts/test installs it when run as root)")


def browser(*args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium with its console written to stderr ("CONSOLE" lines)."""
    return subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--enable-logging=stderr", "--v=0", *args],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def console(stderr: str) -> list[str]:
    """What the page wrote to the console: errors, CSP refusals, uncaught exceptions."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "CONSOLE(" in line]


# Markup that would run (or load something) if a page let it through.
SCRIPT = "<script>document.body.setAttribute('data-pwned','{where}')</script>"
IMG = "<img src=x onerror=\"document.body.setAttribute('data-pwned','{where}')\">"
# Where each kind of capture text goes; the tests look for each one escaped.
PLACES = ("uri", "agent", "realm", "header", "body")


def hostile_capture(tmp_path: Path) -> Path:
    """A Basic handshake whose URI, User-Agent, realm, a header name and the
    401 page carry markup; the retry carries a password and a cookie."""
    uri = "/a" + SCRIPT.format(where="uri").replace(" ", "%20")
    agent = SCRIPT.format(where="agent") + IMG.format(where="agent")
    header = "X-" + IMG.format(where="header").replace(" ", "").replace('"', "")
    request = (
        f"GET {uri} HTTP/1.1\r\nHost: web01\r\nUser-Agent: {agent}\r\n{header}: 1\r\n\r\n"
    ).encode()
    body = ("<html>" + SCRIPT.format(where="body") + IMG.format(where="body") + "</html>").encode()
    realm = SCRIPT.format(where="realm").replace('"', "'")
    response = (
        f'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="{realm}"\r\n'
        f"Content-Type: text/html\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    secrets = b"Authorization: Basic YWxpY2U6WnE3cEh1bnRlcg==\r\nCookie: session=Ck_Secret_4411\r\n"
    retry = request.replace(b"\r\n\r\n", b"\r\n" + secrets + b"\r\n")
    return tcp_capture(
        tmp_path / "hostile.pcap",
        [(True, request), (False, response), (True, retry), (False, response)],
    )


HOSTILE_SECRETS = ("Zq7pHunter", "YWxpY2U6WnE3cEh1bnRlcg==", "Ck_Secret_4411")


def png_variety(path: Path) -> int:
    """How many distinct byte values the decoded pixel rows of a PNG hold
    (PNG spec, IDAT chunks are one zlib stream): 2 or 3 for a blank page,
    well over a hundred for a rendered report."""
    import struct
    import zlib

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, packed = 8, bytearray()
    while offset + 8 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        if kind == b"IDAT":
            packed += data[offset + 8 : offset + 8 + length]
        offset += 12 + length
    return len(set(zlib.decompress(bytes(packed))))


# Golden pages: (capture, key log or None), all drawn with --ladders all so
# that each page has ladders to check in the browser.
GOLDEN_CASES: list[tuple[Path, Path | None]] = [
    (SCENARIOS / "pooling-proxy.pcap", None),
    (SCENARIOS / "ntlm-logon-failed.pcap", None),
    (SCENARIOS / "kerberos-fallback-spn-unknown.pcap", None),
    (SCENARIOS / "reverse-proxy-user-substitution.pcap", None),
    (SCENARIOS / "healthy-kerberos.pcap", None),
    (TLS / "tls13-ntlm-channel-binding.pcap", TLS / "tls13-ntlm-channel-binding.keys"),
]
GOLDEN = Path(__file__).resolve().parent / "golden"


def golden_path(capture: Path) -> Path:
    return GOLDEN / f"{capture.stem}.html"


def render_golden(capture: Path, keys: Path | None) -> str:
    """`authtrace analyze CAPTURE --ladders all --html -` with its volatile
    parts normalised: the program version and where the repository is."""
    from click.testing import CliRunner

    from authtrace import __version__
    from authtrace.cli import main

    args = ["analyze", str(capture), "--ladders", "all", "--html", "-"]
    if keys is not None:
        args += ["--tls-keylog", str(keys)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code in (0, 1), result.output
    text = result.stdout.replace(f"authtrace {__version__}", "authtrace VERSION")
    return text.replace(str(ROOT) + "/", "")
