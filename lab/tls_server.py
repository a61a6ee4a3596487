"""The HTTPS server of the TLS lab (`python3 -m lab.tls`): Python's ssl module in front of
a tiny HTTP/1.1 keep-alive handler that asks for Basic or NTLM authentication.

Run by lab/tls.py as its own process: ``python3 -m lab.tls_server --host H --port P
--cert C --key K [--ciphers LIST] [--no-etm] [--keylog FILE] [--max-version 1.2]
[--channel-binding]``.
Accepts the user `lab\\alice` / `Passw0rd!` (NTLM authenticates the connection);
`/big` answers a 40 KB body (several
TLS records); any other path a short one. NTLM is pyspnego's server (NTLM_USER_FILE);
with --channel-binding it requires the AUTHENTICATE to be bound to this server's own
certificate (RFC 5929 tls-server-end-point), as IIS with Extended Protection does.
"""

from __future__ import annotations

import argparse
import base64
import http.server
import os
import ssl
import sys
import tempfile

USER, PASSWORD, DOMAIN = "alice", "Passw0rd!", "LAB"
# OpenSSL 3.0 SSL_OP_NO_ENCRYPT_THEN_MAC (ssl.h): CBC records MAC-then-encrypt.
_NO_ETM = 1 << 19


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    ntlm_contexts: dict[object, object] = {}
    # NTLM authenticates the connection (as IIS does): later requests on it need
    # no Authorization header.
    authenticated: set[object] = set()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        sys.stderr.write("[tls_server] " + (format % args) + "\n")

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        auth = self.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "basic":
            user, _, password = base64.b64decode(token).decode("utf-8", "replace").partition(":")
            if user == USER and password == PASSWORD:
                self._ok()
                return
            self._challenge(b"wrong password\n")
            return
        if scheme.upper() == "NTLM":
            self._ntlm(token)
            return
        if self.connection in self.authenticated:
            self._ok()
            return
        self._challenge(b"authentication required\n")

    def _ok(self) -> None:
        body = b"x" * 40_000 + b"\n" if self.path == "/big" else b"hello, authenticated\n"
        self._send(200, body)

    def _challenge(self, body: bytes) -> None:
        offers = (
            ["NTLM", 'Basic realm="tls-lab"'] if self.server.ntlm else ['Basic realm="tls-lab"']
        )
        self.send_response(401)
        for offer in offers:
            self.send_header("WWW-Authenticate", offer)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _ntlm(self, token: str) -> None:
        import spnego

        key = self.connection
        context = self.ntlm_contexts.get(key)
        if context is None:
            context = spnego.server(protocol="ntlm", channel_bindings=self.server.bindings)
            self.ntlm_contexts[key] = context
        try:
            answer = context.step(base64.b64decode(token))
        except Exception:  # noqa: BLE001 - a rejected logon is a 401
            self.ntlm_contexts.pop(key, None)
            self._challenge(b"logon failed\n")
            return
        if context.complete:
            self.ntlm_contexts.pop(key, None)
            self.authenticated.add(key)
            self._ok()
            return
        body = b"continue\n"
        self._send(401, body, {"WWW-Authenticate": "NTLM " + base64.b64encode(answer).decode()})


def _own_bindings(cert_path: str) -> object:
    """The channel bindings of this server's certificate (RFC 5929 section 4.1:
    SHA-256 for a SHA-256-signed certificate), as an NTLM acceptor expects them."""
    import hashlib

    from spnego.channel_bindings import GssChannelBindings

    der = ssl.PEM_cert_to_DER_cert(open(cert_path).read())
    digest = hashlib.sha256(der).digest()
    return GssChannelBindings(application_data=b"tls-server-end-point:" + digest)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python3 -m lab.tls_server")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=443)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--ciphers", default="")
    parser.add_argument("--no-etm", action="store_true")
    parser.add_argument("--keylog", default="")
    parser.add_argument("--ntlm", action="store_true")
    parser.add_argument("--max-version", default="")
    parser.add_argument("--dh", default="", help="DH parameters, for DHE suites")
    parser.add_argument("--channel-binding", action="store_true")
    args = parser.parse_args()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    if args.ciphers:
        context.set_ciphers(args.ciphers)
    if args.dh:
        context.load_dh_params(args.dh)
    if args.no_etm:
        context.options |= _NO_ETM
    if args.max_version == "1.2":
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    if args.keylog:
        context.keylog_filename = args.keylog
    if args.ntlm:
        users = tempfile.NamedTemporaryFile("w", delete=False, suffix=".ntlm")
        users.write(f"{DOMAIN}:{USER}:{PASSWORD}\n")
        users.close()
        os.environ["NTLM_USER_FILE"] = users.name
    server = http.server.ThreadingHTTPServer((args.host, args.port), Handler)
    server.ntlm = args.ntlm  # type: ignore[attr-defined]
    server.bindings = _own_bindings(args.cert) if args.channel_binding else None  # type: ignore[attr-defined]
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print("listening", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
