"""Builds captures/h2/built-*.pcap: HTTP/2 scenarios that Debian software cannot
record (IIS / HTTP.sys and Kestrel answer Windows authentication over HTTP/2 with
RST_STREAM HTTP_1_1_REQUIRED), and the NTLM handshake across HTTP/2 streams that
Apache mod_http2 breaks, with real NTLM tokens from pyspnego (scenario_tokens).

The HTTP/2 is cleartext with prior knowledge (h2c, RFC 9113 section 3.3) on port
80: it stands for what a TLS key log shows of an h2 connection (IIS speaks h2
only over TLS), and tshark decodes it without keys. The HTTP/1.1 retries are on
port 80 too. Run from the repository root: python3 scripts/captures/build_h2.py
Invariant: a pure function of this code and the pinned libraries (seeded NTLM),
so a rebuild is byte-identical.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import h2kit  # noqa: E402
from pcapkit import CaptureBuilder, http_request, http_response  # noqa: E402
from scenario_tokens import NtlmFactory  # noqa: E402

START = 1_700_100_000.0
CLIENT = "192.0.2.60"
IIS = ("198.51.100.60", 80)
APACHE = ("198.51.100.61", 80)
HOST = "intranet.contoso.com"
ALICE = ("CONTOSO\\alice", "Spring2024!")
EDGE_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Edg/120.0.0.0"


def b64(token: bytes) -> str:
    return base64.b64encode(token).decode()


def _open_h2(capture: CaptureBuilder, server: tuple[str, int], port: int):
    conv = capture.tcp((CLIENT, port), server)
    client, answer = h2kit.Endpoint(), h2kit.Endpoint()
    conv.send(h2kit.PREFACE + h2kit.settings((1, 4096), (4, 65535)))
    conv.reply(h2kit.settings((3, 100)) + h2kit.settings(ack=True))
    conv.send(h2kit.settings(ack=True))
    return conv, client, answer


def _get(host: str, extra: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    return h2kit.request_fields(
        "GET", "/", host, [("user-agent", EDGE_UA), *(extra or [])], scheme="https"
    )


def _ntlm_legs(ntlm: NtlmFactory, workstation: str) -> tuple[bytes, bytes, bytes]:
    """NEGOTIATE, CHALLENGE and AUTHENTICATE of alice, which pyspnego's acceptor
    accepts (so a refusal in a capture is the server's context, not the password)."""
    initiator, negotiate = ntlm.client(ALICE[0], ALICE[1], HOST, workstation)
    acceptor, challenge = ntlm.server(negotiate)
    authenticate = ntlm.answer(initiator, challenge, workstation)
    accepted, reason = ntlm.verify(acceptor, authenticate)
    if not accepted:
        raise SystemExit(f"the NTLM acceptor refused the AUTHENTICATE: {reason}")
    return negotiate, challenge, authenticate


def iis_http11_required(retry: bool) -> CaptureBuilder:
    """A browser opens an h2 connection to IIS and asks for / ; IIS resets the
    stream with HTTP_1_1_REQUIRED (the site uses Windows authentication). With
    `retry`, the browser opens a new connection and does the NTLM handshake over
    HTTP/1.1, as Edge and Chrome do; without it, the client gives up."""
    capture = CaptureBuilder(start=START)
    conv, client, _ = _open_h2(capture, IIS, 50000)
    conv.send(client.headers(1, _get(HOST), end_stream=True))
    conv.reply(h2kit.rst_stream(1, h2kit.HTTP_1_1_REQUIRED))
    if not retry:
        # The client shows its error and keeps the connection idle; it closes it
        # a minute later without having tried HTTP/1.1.
        capture.wait(60.0)
        conv.send(h2kit.goaway(0))
        conv.close()
        return capture
    conv.send(h2kit.goaway(0))
    conv.close()
    # The retry: HTTP/1.1 on a new connection, anonymous, then NTLM.
    ntlm = NtlmFactory(61, START)
    retried = capture.tcp((CLIENT, 50001), IIS)
    iis = [("Server", "Microsoft-IIS/10.0"), ("Content-Length", "0")]
    browser = [("User-Agent", EDGE_UA), ("Connection", "keep-alive")]
    retried.send(http_request("GET", "/", HOST, browser))
    retried.reply(
        http_response(
            401,
            "Unauthorized",
            [("WWW-Authenticate", "Negotiate"), ("WWW-Authenticate", "NTLM"), *iis[:1]],
        )
    )
    negotiate, challenge, authenticate = _ntlm_legs(ntlm, "WS60")
    retried.send(
        http_request("GET", "/", HOST, [("Authorization", f"NTLM {b64(negotiate)}"), *browser])
    )
    retried.reply(
        http_response(
            401, "Unauthorized", [("WWW-Authenticate", f"NTLM {b64(challenge)}"), *iis[:1]]
        )
    )
    retried.send(
        http_request("GET", "/", HOST, [("Authorization", f"NTLM {b64(authenticate)}"), *browser])
    )
    retried.reply(http_response(200, "OK", [*iis[:1], ("Persistent-Auth", "true")], b"hello"))
    retried.close()
    return capture


def ntlm_across_streams() -> CaptureBuilder:
    """Apache mod_http2 with a connection-bound NTLM module: the CHALLENGE goes
    out on stream 3, the AUTHENTICATE comes on stream 5, which mod_http2 runs on
    another internal connection: the module has no context for it and refuses
    it with a fresh offer. The credentials are right (pyspnego accepts them)."""
    capture = CaptureBuilder(start=START + 100)
    ntlm = NtlmFactory(62, START + 100)
    conv, client, server = _open_h2(capture, APACHE, 50100)
    apache = [("server", "Apache/2.4.62 (Debian) mod_auth_gssapi/1.6.4")]
    conv.send(client.headers(1, _get(HOST), end_stream=True))
    conv.reply(
        server.headers(1, h2kit.response_fields(401, [("www-authenticate", "NTLM"), *apache]))
        + h2kit.data(1, b"<h1>Unauthorized</h1>")
    )
    negotiate, challenge, authenticate = _ntlm_legs(ntlm, "WS61")
    conv.send(
        client.headers(
            3, _get(HOST, [("authorization", f"NTLM {b64(negotiate)}")]), end_stream=True
        )
    )
    conv.reply(
        server.headers(
            3, h2kit.response_fields(401, [("www-authenticate", f"NTLM {b64(challenge)}"), *apache])
        )
        + h2kit.data(3, b"<h1>Unauthorized</h1>")
    )
    conv.send(
        client.headers(
            5, _get(HOST, [("authorization", f"NTLM {b64(authenticate)}")]), end_stream=True
        )
    )
    conv.reply(
        server.headers(5, h2kit.response_fields(401, [("www-authenticate", "NTLM"), *apache]))
        + h2kit.data(5, b"<h1>Unauthorized</h1>")
    )
    conv.send(h2kit.goaway(5))
    conv.close()
    return capture


def capture_starts_midway() -> CaptureBuilder:
    """The capture begins inside an h2c connection (no SYN, no preface): its
    first octets are the end of a DATA frame, and the header blocks after it
    lean on HPACK dynamic table entries made before the capture began. The
    streams must be listed as not decodable, with their frames, and judged
    by no rule."""
    capture = CaptureBuilder(start=START + 200)
    client, server = h2kit.Endpoint(), h2kit.Endpoint()
    ntlm = NtlmFactory(63, START + 200)
    negotiate, challenge, _ = _ntlm_legs(ntlm, "WS62")
    # Before the capture: stream 1 taught both encoders these fields.
    asked = _get(HOST, [("authorization", f"NTLM {b64(negotiate)}")])
    client.block(asked)
    server.block(h2kit.response_fields(401, [("www-authenticate", f"NTLM {b64(challenge)}")]))
    conv = capture.tcp((CLIENT, 50200), APACHE, handshake=False)
    body = h2kit.data(1, b"x" * 300, end_stream=False)
    # The capture starts here: the tail of stream 1's body, its closing empty
    # DATA frame, and a PING.
    conv.reply(body[200:] + h2kit.data(1, b"") + h2kit.frame(h2kit.PING, 0, 0, b"12345678"))
    conv.send(client.headers(3, asked, end_stream=True))
    conv.reply(
        server.headers(
            3, h2kit.response_fields(401, [("www-authenticate", f"NTLM {b64(challenge)}")])
        )
        + h2kit.data(3, b"<h1>Unauthorized</h1>")
    )
    conv.close()
    return capture


SCENARIOS = {
    "built-h2c-capture-starts-midway": capture_starts_midway,
    "built-iis-http11-required-retried": lambda: iis_http11_required(retry=True),
    "built-iis-http11-required-no-retry": lambda: iis_http11_required(retry=False),
    "built-ntlm-across-h2-streams": ntlm_across_streams,
}


def main() -> None:
    root = Path(__file__).resolve().parents[2]
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "captures" / "h2"
    out.mkdir(parents=True, exist_ok=True)
    for name, make in SCENARIOS.items():
        make().write(str(out / f"{name}.pcap"))
    print(f"wrote {len(SCENARIOS)} captures to {out}")


if __name__ == "__main__":
    main()
