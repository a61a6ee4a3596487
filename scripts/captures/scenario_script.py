"""The scene-writing layer of the scenario captures: one `Scene` per capture.

Owns: the realistic header sets (IIS 10, http.sys, Apache, Windows browsers),
and the record of what each capture is claimed to hold — frame numbers of
requests and responses, the predicted IIS log triple of each 401, and tshark
field values per frame — from which README.md and expected.json are written.

Invariant: a frame number recorded here is the frame in which tshark shows
the message (the last TCP segment of it), so tests can ask tshark about it.
"""

from __future__ import annotations

import base64
import datetime
import itertools
import sys
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

sys.path.insert(0, str(Path(__file__).parent))

from pcapkit import (  # noqa: E402
    CLIENT_MAC,
    SERVER_MAC,
    CaptureBuilder,
    TcpConversation,
    http_request,
    http_response,
)
from scenario_tokens import KerberosFactory, NtlmFactory  # noqa: E402

START = 1_700_000_000.0
WEB = ("198.51.100.20", 80)
WEB_HOST = "web01.contoso.com"
KDC = "203.0.113.53"
PROXY = "203.0.113.5"
CLIENT = "192.0.2.10"

EDGE_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0"
)
BROWSER_HEADERS = [
    ("Connection", "keep-alive"),
    ("User-Agent", EDGE_UA),
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("Accept-Encoding", "gzip, deflate"),
    ("Accept-Language", "en-US,en;q=0.9"),
]

# The IIS 10 default page text for 401 (what a remote client sees with custom errors on).
IIS_401_BODY = (
    b'<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" '
    b'"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\r\n'
    b"<html><head><title>401 - Unauthorized: Access is denied due to invalid credentials."
    b"</title></head><body><h2>401 - Unauthorized: Access is denied due to invalid credentials."
    b"</h2><h3>You do not have permission to view this directory or page using the "
    b"credentials that you supplied.</h3></body></html>\r\n"
)


def iis_detailed_401(
    substatus: int,
    headline: str,
    module: str = "WindowsAuthenticationModule",
    notification: str = "AuthenticateRequest",
    code: str | None = None,
) -> bytes:
    """An IIS 7+ detailed error page (what a local or detailed-errors client sees)."""
    if code is None:
        code = "80070005" if substatus == 2 else "8009030c"
    return (
        "<!DOCTYPE html><html><head>"
        f"<title>IIS 10.0 Detailed Error - 401.{substatus} - Unauthorized</title>"
        '</head><body><div id="content"><div class="content-container">'
        f"<h3>HTTP Error 401.{substatus} - Unauthorized</h3><h4>{headline}</h4></div>"
        '<div class="content-container"><fieldset><h4>Detailed Error Information:</h4>'
        f"<table><tr><th>Module</th><td>{module}</td></tr>"
        f"<tr><th>Notification</th><td>{notification}</td></tr>"
        f"<tr><th>Error Code</th><td>0x{code}</td></tr></table></fieldset>"
        "</div></div></body></html>\r\n"
    ).encode()


def b64(token: bytes) -> str:
    return base64.b64encode(token).decode()


@dataclass
class Scene:
    """One capture being written, and the claims made about it."""

    name: str
    title: str
    host: str
    rules: list[str]
    not_rules: list[str] = field(default_factory=list)
    seed: int = 1
    first_port: int = 49152
    notes: list[str] = field(default_factory=list)
    iis: dict[int, str] = field(default_factory=dict)
    checks: dict[int, dict[str, str]] = field(default_factory=dict)
    unverifiable: list[str] = field(default_factory=list)
    # The IIS log this scene comes with (`<name>.log`), when `iis_log` is set:
    # one W3C line per response; and what analyze must report given that log.
    iis_log: bool = False
    log_rules: list[str] = field(default_factory=list)
    log_not_rules: list[str] = field(default_factory=list)
    # rule -> the evidence its finding must name (iis.category.Source values)
    evidence: dict[str, str] = field(default_factory=dict)
    log_evidence: dict[str, str] = field(default_factory=dict)
    log_lines: list[str] = field(default_factory=list)
    _last_request: tuple[str, str, str, str] = ("GET", "/", "", "-")

    def __post_init__(self) -> None:
        self.cap = CaptureBuilder(start=START, _ports=itertools.count(self.first_port))
        self.ntlm = NtlmFactory(self.seed, START)
        self.krb = KerberosFactory(self.seed)

    # -- bookkeeping -------------------------------------------------------------------
    @property
    def last_frame(self) -> int:
        return len(self.cap.packets)

    def date(self) -> str:
        return formatdate(self.cap._clock, usegmt=True)

    def note(self, frame: int, text: str) -> None:
        self.notes.append(f"{frame}: {text}")

    def check(self, frame: int, name: str, value: str) -> None:
        self.checks.setdefault(frame, {})[name] = value

    def conn(
        self, client: str = CLIENT, server: tuple[str, int] = WEB, handshake: bool = True
    ) -> TcpConversation:
        return self.cap.tcp(client=(client, None), server=server, handshake=handshake)

    # -- HTTP ----------------------------------------------------------------------------
    def request(
        self,
        conv: TcpConversation,
        note: str,
        uri: str = "/",
        headers: list[tuple[str, str]] | None = None,
        method: str = "GET",
        host: str | None = None,
        base: list[tuple[str, str]] | None = None,
    ) -> int:
        extra = (BROWSER_HEADERS if base is None else base) + (headers or [])
        conv.send(http_request(method, uri, host or self.host, extra))
        self._last_request = (method, uri, conv.client[0], self._user)
        frame = self.last_frame - 1  # the last data segment; the server's ACK follows
        self.check(frame, "http.request.method", method)
        self.note(frame, note)
        return frame

    def response(
        self,
        conv: TcpConversation,
        status: int,
        reason: str,
        note: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        iis: str | None = None,
        server: str = "Microsoft-IIS/10.0",
        logged: str | None = None,
    ) -> int:
        hdrs: list[tuple[str, str]] = []
        if status in (401, 400) or body:
            hdrs.append(
                ("Content-Type", "text/html" if server != "Kestrel" else "application/json")
            )
        hdrs.append(("Server", server))
        hdrs += headers or []
        if server.startswith("Microsoft-IIS"):
            hdrs.append(("X-Powered-By", "ASP.NET"))
        hdrs.append(("Date", self.date()))
        conv.reply(http_response(status, reason, hdrs, body))
        frame = self.last_frame - 1
        self.check(frame, "http.response.code", str(status))
        if iis is not None:
            self.iis[frame] = iis
        if self.iis_log:
            self._log(status, logged or iis or f"{status} 0 0")
        if logged is not None and logged != iis:
            said = f" (predicted `{iis}` from the wire; the IIS log says `{logged}`)"
        else:
            said = f" (IIS logs `{iis}`)" if iis else ""
        self.note(frame, f"{status} {note}{said}")
        return frame

    # -- the IIS log ------------------------------------------------------------------
    _user: str = "-"

    def log_as(self, user: str) -> None:
        """cs-username of the following requests (IIS logs it once authenticated)."""
        self._user = user

    def _log(self, status: int, triple: str) -> None:
        method, uri, client, _user = self._last_request
        stamp = datetime.datetime.fromtimestamp(self.cap._clock, datetime.UTC)
        user = self._user if status < 400 or triple.split()[1] not in ("1", "2") else "-"
        self.log_lines.append(
            f"{stamp:%Y-%m-%d %H:%M:%S} {WEB[0]} {method} {uri} - {WEB[1]} {user} {client} "
            f"{EDGE_UA.replace(' ', '+')} {triple} 15"
        )

    def iis_401(
        self,
        conv: TcpConversation,
        note: str,
        iis: str,
        challenge: list[tuple[str, str]] | None = None,
        body: bytes = IIS_401_BODY,
        extra: list[tuple[str, str]] | None = None,
        logged: str | None = None,
    ) -> int:
        offers = (
            challenge
            if challenge is not None
            else [
                ("WWW-Authenticate", "Negotiate"),
                ("WWW-Authenticate", "NTLM"),
            ]
        )
        return self.response(
            conv, 401, "Unauthorized", note, offers + (extra or []), body, iis=iis, logged=logged
        )

    def ok(
        self, conv: TcpConversation, note: str, headers: list[tuple[str, str]] | None = None
    ) -> int:
        body = b"<html><head><title>Contoso intranet</title></head><body>Welcome</body></html>\r\n"
        return self.response(conv, 200, "OK", note, headers, body)

    # -- Kerberos to the KDC -------------------------------------------------------------
    def _krb_checks(self, frame: int, msg: object, error: int | None) -> None:
        msg_type = {10: "10", 11: "11", 12: "12", 13: "13", 30: "30"}
        code = int(msg.msgType.val)
        self.check(frame, "kerberos.msg_type", msg_type[code])
        if error is not None:
            self.check(frame, "kerberos.error_code", str(error))

    def kdc_udp(self, client: str, port: int, msg: object, note: str, to_kdc: bool) -> int:
        src, dst = ((client, port), (KDC, 88)) if to_kdc else ((KDC, 88), (client, port))
        self.cap.udp(src, dst, bytes(msg))  # type: ignore[call-overload]
        frame = self.last_frame
        error = int(msg.errorCode.val) if hasattr(msg, "errorCode") else None  # type: ignore[attr-defined]
        self._krb_checks(frame, msg, error)
        self.note(frame, note)
        return frame

    def kdc_tcp(
        self, client: str, request: object, reply: object, note_req: str, note_rep: str
    ) -> None:
        # RFC 4120 7.2.2: over TCP each message is preceded by a 4-byte big-endian length.
        conv = self.cap.tcp(client=(client, None), server=(KDC, 88))
        for data, note, to_kdc in ((request, note_req, True), (reply, note_rep, False)):
            raw = bytes(data)  # type: ignore[call-overload]
            record = len(raw).to_bytes(4, "big") + raw
            if to_kdc:
                conv.send(record)
            else:
                conv.reply(record)
            frame = self.last_frame - 1
            error = int(data.errorCode.val) if hasattr(data, "errorCode") else None  # type: ignore[attr-defined]
            self._krb_checks(frame, data, error)
            self.note(frame, note)
        conv.close()

    def tgs_ok(self, client: str, user: str = "alice", spn_host: str = WEB_HOST) -> None:
        port = self.cap.next_port()
        self.kdc_udp(
            client,
            port,
            self.krb.tgs_req(f"HTTP/{spn_host}", self.cap._clock),
            f"TGS-REQ for HTTP/{spn_host}",
            True,
        )
        self.kdc_udp(
            client,
            port,
            self.krb.tgs_rep(user, f"HTTP/{spn_host}"),
            f"TGS-REP: service ticket for HTTP/{spn_host}",
            False,
        )

    def syn_unanswered(self, client: str, server: tuple[str, int], tries: int) -> int:
        """A SYN and its retransmissions with no SYN/ACK (RFC 6298 backoff: 1 s, 2 s, 4 s)."""
        port = self.cap.next_port()
        delay = 0.001
        for _ in range(tries):
            self.cap.add(
                Ether(src=CLIENT_MAC, dst=SERVER_MAC)
                / IP(src=client, dst=server[0])
                / TCP(sport=port, dport=server[1], flags="S", seq=7000),
                delay=delay,
            )
            delay = 1.0 if delay < 1 else delay * 2
        return self.last_frame

    # -- output --------------------------------------------------------------------------
    def write(self, path: Path) -> dict[str, object]:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.cap.write(str(path))
        log: dict[str, object] = {}
        if self.iis_log:
            header = [
                "#Software: Microsoft Internet Information Services 10.0",
                "#Version: 1.0",
                "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username "
                "c-ip cs(User-Agent) sc-status sc-substatus sc-win32-status time-taken",
            ]
            path.with_suffix(".log").write_text("\n".join(header + self.log_lines) + "\n")
            log = {
                "iis_log": {
                    "file": path.with_suffix(".log").name,
                    "rules": self.log_rules,
                    "not_rules": self.log_not_rules,
                    "evidence": self.log_evidence,
                }
            }
        extra: dict[str, object] = {"evidence": self.evidence} if self.evidence else {}
        return {
            **extra,
            **log,
            "title": self.title,
            "rules": self.rules,
            "not_rules": self.not_rules,
            "host": self.host,
            "iis": {str(k): v for k, v in sorted(self.iis.items())},
            "frames": {str(k): v for k, v in sorted(self.checks.items())},
            "notes": self.notes,
            "unverifiable": self.unverifiable,
        }
