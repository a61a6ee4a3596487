"""Write the hand-built HTTP/TCP captures under captures/http/.

One file per behaviour of the tcp and http layers (see each builder's
docstring). Documentation addresses only (RFC 5737, RFC 3849). Run from
anywhere: ``python3 scripts/captures/build_http.py``.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from pcapkit import CaptureBuilder, http_request, http_response  # noqa: E402

OUT = Path(__file__).resolve().parents[2] / "captures" / "http"
HOST = "www.example.com"
CLIENT = "192.0.2.10"
SERVER = "198.51.100.20"

ERROR_PAGE = b"<html><body><h1>401 - Unauthorized: Access is denied.</h1></body></html>"


def keepalive(cap: CaptureBuilder) -> None:
    """Three exchanges on one keep-alive connection (the NTLM shape), and one over IPv6."""
    conn = cap.tcp()
    conn.send(http_request("GET", "/app/", HOST))
    conn.reply(
        http_response(
            401,
            "Unauthorized",
            [("WWW-Authenticate", "Negotiate"), ("WWW-Authenticate", "NTLM")],
            ERROR_PAGE,
        )
    )
    conn.send(http_request("GET", "/app/", HOST, [("Authorization", "NTLM TlRMTVNTUAABAAAA")]))
    conn.reply(http_response(401, "Unauthorized", [("WWW-Authenticate", "NTLM TlRMTVNTUAACAAAA")]))
    conn.send(http_request("GET", "/app/", HOST, [("Authorization", "NTLM TlRMTVNTUAADAAAA")]))
    conn.reply(http_response(200, "OK", [("Content-Type", "text/html")], b"<html>hi</html>" * 200))
    conn.close()
    six = cap.tcp(client=("2001:db8::10", None), server=("2001:db8::20", 80))
    six.send(http_request("GET", "/v6", HOST))
    six.reply(http_response(200, "OK", body=b"v6"))
    six.close(by="server")


def pipelining(cap: CaptureBuilder) -> None:
    """Three requests in one segment; the responses cut at odd places."""
    conn = cap.tcp()
    requests = b"".join(http_request("GET", f"/p{i}", HOST) for i in range(3))
    conn.send(requests)
    responses = b"".join(
        http_response(200, "OK", body=f"body {i}".encode() * (i + 1)) for i in range(3)
    )
    conn.reply(responses, size=37)
    conn.close()


def chunked(cap: CaptureBuilder) -> None:
    """A chunked request and a chunked response with a trailer, cut mid-chunk."""
    conn = cap.tcp()
    body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
    request = http_request("POST", "/upload", HOST, [("Transfer-Encoding", "chunked")]) + body
    conn.send(request, size=40)
    response = (
        b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n"
        b'WWW-Authenticate: Basic realm="example"\r\n\r\n'
        b"1a\r\nabcdefghijklmnopqrstuvwxyz\r\n10\r\n0123456789abcdef\r\n"
        b"0\r\nX-Trailer: done\r\n\r\n"
    )
    conn.reply(response, size=30)
    conn.send(http_request("GET", "/after-chunked", HOST))
    conn.reply(http_response(200, "OK", body=b"ok"))
    conn.close()


def continue_100(cap: CaptureBuilder) -> None:
    """Expect: 100-continue; interim 100, then the body, then the final 401."""
    conn = cap.tcp()
    body = b"x" * 3000
    head = (
        f"POST /form HTTP/1.1\r\nHost: {HOST}\r\nExpect: 100-continue\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    conn.send(head)
    conn.reply(b"HTTP/1.1 100 Continue\r\n\r\n")
    conn.send(body)
    conn.reply(http_response(401, "Unauthorized", [("WWW-Authenticate", "NTLM")], ERROR_PAGE))
    conn.close()


def head_and_no_body(cap: CaptureBuilder) -> None:
    """HEAD (Content-Length without a body), 204 and 304, then a normal 200."""
    conn = cap.tcp()
    conn.send(http_request("HEAD", "/big", HOST))
    conn.reply(http_response(200, "OK", [("Content-Length", "123456")], content_length=False))
    conn.send(http_request("DELETE", "/item", HOST))
    conn.reply(http_response(204, "No Content", content_length=False))
    conn.send(http_request("GET", "/cached", HOST, [("If-None-Match", '"abc"')]))
    conn.reply(
        http_response(304, "Not Modified", [("Content-Length", "999")], content_length=False)
    )
    conn.send(http_request("GET", "/last", HOST))
    conn.reply(http_response(200, "OK", body=b"last"))
    conn.close()


def http10_until_close(cap: CaptureBuilder) -> None:
    """HTTP/1.0: a response without Content-Length ends when the server closes."""
    conn = cap.tcp()
    conn.send(http_request("GET", "/old", HOST, version="HTTP/1.0"))
    conn.reply(
        http_response(
            200, "OK", [("Content-Type", "text/plain")], b"until close " * 300, "HTTP/1.0", False
        )
    )
    conn.close(by="server")


def folding(cap: CaptureBuilder) -> None:
    """Obsolete line folding (RFC 9112 section 5.2) and bare LF line endings."""
    conn = cap.tcp()
    conn.send(
        f"GET /fold HTTP/1.1\r\nHost: {HOST}\r\n".encode()
        + b"X-Long: first\r\n  second\r\n\tthird\r\n\r\n"
    )
    conn.reply(
        b'HTTP/1.1 401 Unauthorized\nWWW-Authenticate: Basic\n realm="x"\nContent-Length: 0\n\n'
    )
    conn.close()


def reordered(cap: CaptureBuilder) -> None:
    """Out-of-order, retransmitted and overlapping segments in both directions."""
    conn = cap.tcp()
    request = http_request("POST", "/reorder", HOST, body=b"R" * 900)
    parts = conn.segments(True, request, size=200)
    for index in (1, 0, 3, 2, 2, 4, 5):  # swaps and a duplicate
        if index < len(parts):
            cap.add(parts[index])
    conn.ack(False)
    response = http_response(
        401, "Unauthorized", [("WWW-Authenticate", "Negotiate")], ERROR_PAGE * 20
    )
    start = conn.server_seq
    parts = conn.segments(False, response, size=300)
    cap.add(parts[0])
    cap.add(parts[2])
    # An overlapping retransmission: bytes 250..850 of the response in one segment.
    from scapy.layers.inet import TCP

    overlap = parts[1].copy()
    overlap[TCP].seq = start + 250
    overlap[TCP].remove_payload()
    overlap = overlap / response[250:850]
    cap.add(overlap)
    for part in parts[3:]:
        cap.add(part)
    cap.add(parts[1])  # late retransmission of bytes already delivered
    conn.ack(True)
    conn.close()


def gap_resync(cap: CaptureBuilder) -> None:
    """A segment the capture lost (the peer ACKs it), then parsing resumes."""
    conn = cap.tcp()
    conn.send(http_request("GET", "/first", HOST))
    first = http_response(200, "OK", body=b"A" * 4000)
    parts = conn.segments(False, first, size=1000)
    for index, part in enumerate(parts):
        if index != 2:
            cap.add(part)
    conn.ack(True)
    conn.send(http_request("GET", "/second", HOST))
    conn.reply(http_response(401, "Unauthorized", [("WWW-Authenticate", "NTLM")], ERROR_PAGE))
    # A lost request head: the next request must be found again.
    lost = conn.segments(True, http_request("GET", "/lost", HOST))
    del lost
    conn.send(http_request("GET", "/third", HOST))
    conn.reply(http_response(200, "OK", body=b"lost-answer"))
    conn.reply(http_response(200, "OK", body=b"third"))
    conn.close()


def port_reuse(cap: CaptureBuilder) -> None:
    """One 4-tuple used by two connections (FIN, then a new SYN with a new ISN)."""
    first = cap.tcp(client=(CLIENT, 50000), client_isn=1000, server_isn=5000)
    first.send(http_request("GET", "/one", HOST))
    first.reply(http_response(401, "Unauthorized", [("WWW-Authenticate", "NTLM")]))
    first.close()
    cap.wait(1.0)
    second = cap.tcp(client=(CLIENT, 50000), client_isn=900000, server_isn=700000)
    second.send(http_request("GET", "/two", HOST))
    second.reply(http_response(200, "OK", body=b"two"))
    second.reset(by="client")
    cap.wait(1.0)
    third = cap.tcp(client=(CLIENT, 50000), client_isn=3000000, server_isn=4000000)
    third.send(http_request("GET", "/three", HOST))
    third.reply(http_response(200, "OK", body=b"three"))
    third.close()


def midstream(cap: CaptureBuilder) -> None:
    """Captures that start inside connections: in a response body, just after a
    request, and with the client on the lower port (roles come from content)."""
    conn = cap.tcp(client=(CLIENT, 51000), handshake=False, client_isn=77000, server_isn=88000)
    first = http_response(200, "OK", body=b"M" * 2500)
    parts = conn.segments(False, first, size=1000)
    for part in parts[1:]:
        cap.add(part)
    conn.ack(True)
    conn.send(http_request("GET", "/next", HOST))
    conn.reply(http_response(401, "Unauthorized", [("WWW-Authenticate", "Negotiate")]))
    conn.close()
    # The capture starts just after a request: its response has no request.
    late = cap.tcp(client=(CLIENT, 51001), handshake=False, client_isn=1234, server_isn=4321)
    late.segments(True, http_request("GET", "/not-captured", HOST))
    late.reply(http_response(401, "Unauthorized", [("WWW-Authenticate", "NTLM")], ERROR_PAGE))
    late.send(http_request("GET", "/captured", HOST))
    late.reply(http_response(200, "OK", body=b"fine"))
    late.close()
    # No handshake and the client on the lower port: roles come from content.
    swapped = cap.tcp(client=(CLIENT, 40000), server=(SERVER, 50080), handshake=False)
    swapped.send(http_request("GET", "/swapped", HOST))
    swapped.reply(http_response(200, "OK", body=b"swapped"))
    swapped.close()


def other_ports(cap: CaptureBuilder) -> None:
    """HTTP recognised by content on 8080 and 1024."""
    for port in (8080, 1024):
        conn = cap.tcp(server=(SERVER, port))
        conn.send(http_request("GET", f"/port{port}", HOST))
        conn.reply(
            http_response(407, "Proxy Authentication Required", [("Proxy-Authenticate", "NTLM")])
        )
        conn.close()


def huge_header(cap: CaptureBuilder) -> None:
    """A 2 MiB header block (token too large), then a normal exchange on a new connection."""
    conn = cap.tcp()
    pad = b"".join(b"X-Pad-%06d: %s\r\n" % (i, b"p" * 60) for i in range(30000))
    conn.send(f"GET /huge HTTP/1.1\r\nHost: {HOST}\r\n".encode() + pad + b"\r\n", size=1460)
    conn.reply(
        http_response(
            400, "Bad Request", [("Content-Type", "text/html")], b"Request Header too long"
        )
    )
    conn.close(by="server")
    second = cap.tcp()
    second.send(http_request("GET", "/small", HOST))
    second.reply(http_response(200, "OK", body=b"small"))
    second.close()


def garbage(cap: CaptureBuilder) -> None:
    """Garbage between HTTP messages, and connections that are not HTTP at all."""
    conn = cap.tcp()
    conn.send(http_request("GET", "/before", HOST))
    conn.reply(http_response(200, "OK", body=b"before"))
    conn.send(b"\x00\x01\xffgarbage\r\nnot a request line\r\n\r\n")
    conn.reply(b"\x17\x03\x03 junk that is not a status line\r\n")
    conn.send(http_request("GET", "/after", HOST))
    conn.reply(http_response(200, "OK", body=b"after"))
    conn.close()
    tls = cap.tcp(server=(SERVER, 443))
    tls.send(bytes.fromhex("16030100a5010000a10303") + bytes(range(64)))
    tls.reply(bytes.fromhex("160303003d020000390303") + bytes(range(50)))
    tls.close()
    binary = cap.tcp(server=(SERVER, 80))
    binary.send(bytes(range(256)) * 4)
    binary.reply(b"\x00" * 100)
    binary.close()


BUILDERS = {
    "keepalive.pcap": keepalive,
    "pipelining.pcap": pipelining,
    "chunked.pcap": chunked,
    "continue.pcap": continue_100,
    "head-204-304.pcap": head_and_no_body,
    "http10-until-close.pcap": http10_until_close,
    "folding.pcap": folding,
    "reordered.pcap": reordered,
    "gap-resync.pcap": gap_resync,
    "port-reuse.pcap": port_reuse,
    "midstream.pcap": midstream,
    "ports-8080-1024.pcap": other_ports,
    "huge-header.pcap.gz": huge_header,
    "garbage.pcap": garbage,
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, build in BUILDERS.items():
        cap = CaptureBuilder()
        build(cap)
        path = OUT / name
        if name.endswith(".gz"):
            plain = path.with_suffix("")
            cap.write(str(plain))
            path.write_bytes(gzip.compress(plain.read_bytes(), mtime=0))
            plain.unlink()
        else:
            cap.write(str(path))
        print(f"{path.name}: {len(cap.packets)} packets")


if __name__ == "__main__":
    main()
