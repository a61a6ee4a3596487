"""The TLS lab: ``sudo python3 -m lab.tls [--only NAME ...] [--out DIR]`` records real HTTPS
traffic on the loopback addresses 127.0.0.40-127.0.0.49 and writes, per scenario,
``captures/tls/<name>.pcap`` (``.pcapng`` for the one with embedded secrets) and the key
log it was decrypted with, ``captures/tls/<name>.keys``.

Servers: Python's ssl module (lab/tls_server.py) with Basic or NTLM (pyspnego) inside;
for what Debian's OpenSSL no longer offers (3DES-CBC suites; TLS 1.0 and 1.1 need
`@SECLEVEL=0` there, and GnuTLS does both), GnuTLS's `gnutls-serv --http` and
`gnutls-cli` with SSLKEYLOGFILE (gnutls-serv cannot bind one address, so those scenarios
run, capture included, in a network namespace of their own with only a loopback interface);
one scenario puts nginx in front, terminating TLS with its own certificate and opening
its own TLS connection to the server (both legs captured, both key logs kept).
Clients: curl with SSLKEYLOGFILE, Python requests + requests_ntlm (channel bindings), and
`openssl s_client -keylogfile` where a KeyUpdate is
wanted. Capture: dumpcap on `lo`, filtered to the scenario's address. The secrets of the
pcapng scenario are injected with `editcap --inject-secrets`. A capture is kept only when
tshark, given the key log, shows the HTTP requests the scenario made.

Needs root (capturing on lo). Installs what is missing: Debian's curl, openssl, tshark
(dumpcap, editcap) and pyspnego, requests and requests-ntlm from PyPI. Not run in CI: the
captures are committed.
Every process it starts is stopped through its own pid; every wait has a timeout.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT = REPO_ROOT / "captures" / "tls"
PORT = 443
APT = {
    "curl": "curl",
    "openssl": "openssl",
    "dumpcap": "tshark",
    "editcap": "tshark",
    "tshark": "tshark",
    "nginx": "nginx",
    "gnutls-cli": "gnutls-bin",
    "gnutls-serv": "gnutls-bin",
}
# What gnutls-serv accepts: its defaults plus the old versions and 3DES the scenarios ask for
# (the client's priority string picks one).
_GNUTLS_SERVER = "NORMAL:+VERS-TLS1.0:+VERS-TLS1.1:+3DES-CBC:+RSA:+SHA1"
_GNUTLS_BASE = ":+COMP-NULL:+SIGN-ALL:+GROUP-ALL:+CTYPE-X509"
# gnutls-serv listens on every address: its scenarios run in this namespace (only `lo`).
NETNS = "authtrace-tls-lab"
USER = "LAB\\alice:Passw0rd!"
BASIC_USER = "alice:Passw0rd!"

# OpenSSL configuration for the server of the TLS 1.3 CCM scenario: Python's ssl module
# cannot choose TLS 1.3 suites, OpenSSL's configuration can.
_CCM_CONF = """openssl_conf = lab_conf
[lab_conf]
ssl_conf = lab_ssl
[lab_ssl]
system_default = lab_defaults
[lab_defaults]
Ciphersuites = TLS_AES_128_CCM_SHA256:TLS_AES_128_CCM_8_SHA256:TLS_AES_128_GCM_SHA256
"""


@dataclass(frozen=True)
class Scenario:
    """host: its own loopback address; server: extra lab.tls_server arguments; client:
    'curl' arguments after the URL list, or None for the s_client KeyUpdate dialogue;
    paths: what curl fetches (one connection unless `reconnect`)."""

    name: str
    host: str
    what: str
    server: tuple[str, ...] = ()
    curl: tuple[str, ...] = ()
    paths: tuple[str, ...] = ("/", "/big")
    reconnect: bool = False
    key_update: bool = False
    server_keylog: bool = False
    ccm13: bool = False
    pcapng_secrets: bool = False
    auth: str = "basic"
    python_ntlm: bool = False
    # A TLS-terminating nginx on `host` in front of the server, which listens on this
    # address instead ("" for none).
    behind_proxy: str = ""
    # A GnuTLS client priority string: gnutls-serv and gnutls-cli instead ("" for none).
    gnutls: str = ""


SCENARIOS = (
    Scenario(
        "tls13-aes128gcm-basic",
        "127.0.0.40",
        "TLS 1.3 AES-128-GCM, Basic after a 401",
        curl=("--tlsv1.3", "--tls13-ciphers", "TLS_AES_128_GCM_SHA256"),
    ),
    Scenario(
        "tls13-aes256gcm-ntlm",
        "127.0.0.41",
        "TLS 1.3 AES-256-GCM, NTLM handshake",
        server=("--ntlm",),
        curl=("--tlsv1.3", "--tls13-ciphers", "TLS_AES_256_GCM_SHA384"),
        auth="ntlm",
    ),
    Scenario(
        "tls13-chacha20-basic",
        "127.0.0.42",
        "TLS 1.3 ChaCha20-Poly1305, Basic",
        curl=("--tlsv1.3", "--tls13-ciphers", "TLS_CHACHA20_POLY1305_SHA256"),
    ),
    Scenario(
        "tls13-aes128ccm-basic",
        "127.0.0.43",
        "TLS 1.3 AES-128-CCM, Basic",
        curl=("--tlsv1.3", "--tls13-ciphers", "TLS_AES_128_CCM_SHA256"),
        ccm13=True,
    ),
    Scenario(
        "tls13-keyupdate-basic",
        "127.0.0.44",
        "TLS 1.3 with KeyUpdate both ways between requests (openssl s_client)",
        key_update=True,
    ),
    Scenario(
        "tls12-ecdhe-aes128gcm-ntlm",
        "127.0.0.45",
        "TLS 1.2 ECDHE AES-128-GCM, NTLM",
        server=("--ntlm", "--max-version", "1.2"),
        curl=("--tls-max", "1.2", "--ciphers", "ECDHE-RSA-AES128-GCM-SHA256"),
        auth="ntlm",
    ),
    Scenario(
        "tls12-ecdhe-chacha20-basic",
        "127.0.0.46",
        "TLS 1.2 ECDHE ChaCha20-Poly1305",
        server=("--max-version", "1.2"),
        curl=("--tls-max", "1.2", "--ciphers", "ECDHE-RSA-CHACHA20-POLY1305"),
    ),
    Scenario(
        "tls12-cbc-suites-basic",
        "127.0.0.47",
        "TLS 1.2 CBC: ECDHE AES-256-CBC-SHA384 (encrypt-then-MAC), then RSA AES-128-CBC-SHA "
        "and DHE AES-256-CBC-SHA256 (MAC-then-encrypt), then RSA AES-128-CCM; one "
        "connection each, the server's key log",
        server=("--max-version", "1.2"),
        server_keylog=True,
    ),
    Scenario(
        "tls12-resumption-basic",
        "127.0.0.48",
        "TLS 1.2 ECDHE AES-256-GCM: a full handshake, then a resumed one (new connection)",
        server=("--max-version", "1.2"),
        curl=("--tls-max", "1.2", "--ciphers", "ECDHE-RSA-AES256-GCM-SHA384"),
        reconnect=True,
    ),
    Scenario(
        "tls13-secrets-in-pcapng",
        "127.0.0.49",
        "TLS 1.3 AES-128-GCM, Basic; pcapng with the key log in a Decryption Secrets Block",
        curl=("--tlsv1.3",),
        pcapng_secrets=True,
    ),
    Scenario(
        "tls13-resumption-basic",
        "127.0.0.48",
        "TLS 1.3 AES-128-GCM: a full handshake, then a PSK resumption (new connection)",
        curl=("--tlsv1.3", "--tls13-ciphers", "TLS_AES_128_GCM_SHA256"),
        reconnect=True,
    ),
    Scenario(
        "tls13-ntlm-channel-binding",
        "127.0.0.41",
        "TLS 1.3, NTLM with channel bindings (Python requests + requests_ntlm, which binds "
        "to the server certificate, RFC 5929 tls-server-end-point); no SNI (an address)",
        server=("--ntlm",),
        python_ntlm=True,
        auth="ntlm",
    ),
    Scenario(
        "tls13-ntlm-proxy-other-certificate",
        "127.0.0.46",
        "TLS 1.3 both legs: requests_ntlm binds NTLM to the certificate of an nginx that "
        "terminates TLS (127.0.0.46) and opens its own TLS connection to the server "
        "(127.0.0.47), which requires a binding to its own certificate (Extended "
        "Protection) and refuses the AUTHENTICATE",
        server=("--ntlm", "--channel-binding"),
        python_ntlm=True,
        auth="ntlm",
        behind_proxy="127.0.0.47",
    ),
    Scenario(
        "tls10-rsa-3des-basic",
        "127.0.0.42",
        "TLS 1.0 RSA key exchange, 3DES-EDE-CBC with SHA-1 (chained IVs), Basic "
        "(gnutls-cli to gnutls-serv --http)",
        gnutls="NONE:+VERS-TLS1.0:+3DES-CBC:+RSA:+SHA1",
    ),
    Scenario(
        "tls11-ecdhe-aes128cbc-basic",
        "127.0.0.43",
        "TLS 1.1 ECDHE-RSA AES-128-CBC with SHA-1 (explicit IVs), Basic (GnuTLS)",
        gnutls="NONE:+VERS-TLS1.1:+AES-128-CBC:+ECDHE-RSA:+SHA1",
    ),
    Scenario(
        "tls12-ecdhe-3des-basic",
        "127.0.0.44",
        "TLS 1.2 ECDHE-RSA 3DES-EDE-CBC with SHA-1, Basic (GnuTLS)",
        gnutls="NONE:+VERS-TLS1.2:+3DES-CBC:+ECDHE-RSA:+SHA1",
    ),
)
BY_NAME = {s.name: s for s in SCENARIOS}
# The connections of tls12-cbc-suites-basic: (OpenSSL cipher list, encrypt-then-MAC).
CBC_ROUNDS = (
    ("ECDHE-RSA-AES256-SHA384", True),
    ("AES128-SHA", False),
    ("DHE-RSA-AES256-SHA256", False),
    ("AES128-CCM", False),
)


def log(message: str) -> None:
    print(f"[lab.tls] {message}", flush=True)


def ensure_installed() -> None:
    """Debian packages and PyPI modules the lab needs, installed when missing."""
    missing = sorted({pkg for cmd, pkg in APT.items() if shutil.which(cmd) is None})
    if missing:
        log(f"installing {' '.join(missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update"], check=True, timeout=600, env=env)
        subprocess.run(["apt-get", "install", "-y", *missing], check=True, timeout=900, env=env)
    missing_pip = [
        package
        for module, package in (
            ("spnego", "pyspnego"),
            ("requests", "requests"),
            ("requests_ntlm", "requests-ntlm"),
        )
        if importlib.util.find_spec(module) is None
    ]
    if missing_pip:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", *missing_pip], check=True, timeout=600
        )


def run(args: list[str], timeout: float = 60.0, **kwargs: object) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr[-400:]}")
    return result.stdout


class Process:
    """A process this lab started; stopped through its own pid and process group."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str] | None = None,
        ready: str | None = None,
        log_file: Path | None = None,
    ) -> None:
        self.log_file = log_file
        out = open(log_file, "w") if log_file else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        if ready and log_file:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if ready in log_file.read_text(errors="replace"):
                    return
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
            self.stop()
            raise RuntimeError(f"{args[0]} did not start: {log_file.read_text()[-400:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


_NGINX_CONF = """daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {work}/nginx-body;
    proxy_temp_path {work}/nginx-proxy;
    upstream backend {{
        server {backend}:{port};
        keepalive 4;
    }}
    server {{
        listen {host}:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.3;
        location / {{
            proxy_pass https://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_bind {host};
            proxy_ssl_protocols TLSv1.3;
            proxy_ssl_session_reuse off;
        }}
    }}
}}
"""


def nginx_proxy(scenario: Scenario, work: Path) -> Process:
    """nginx terminating TLS on scenario.host with a certificate of its own and
    proxying to the server on scenario.behind_proxy over TLS (keep-alive upstream
    connections, so that an NTLM handshake stays on one of them)."""
    cert, key = work / "proxy.crt", work / "proxy.key"
    _self_signed(cert, key, "tls-proxy.authtrace.test")
    conf = work / "nginx.conf"
    conf.write_text(
        _NGINX_CONF.format(
            work=work,
            backend=scenario.behind_proxy,
            host=scenario.host,
            port=PORT,
            cert=cert,
            key=key,
        )
    )
    process = Process(["nginx", "-c", str(conf)], log_file=work / "nginx.log")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (work / "nginx.pid").exists():
        time.sleep(0.05)
    time.sleep(0.3)
    return process


def _self_signed(cert: Path, key: Path, name: str) -> None:
    run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            f"/CN={name}",
            "-addext",
            f"subjectAltName=DNS:{name}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ]
    )


def make_certificate(work: Path) -> tuple[Path, Path, Path]:
    cert, key, dh = work / "server.crt", work / "server.key", work / "dh.pem"
    _self_signed(cert, key, "tls-lab.authtrace.test")
    run(
        [
            "openssl",
            "genpkey",
            "-genparam",
            "-algorithm",
            "DH",
            "-pkeyopt",
            "group:ffdhe2048",
            "-out",
            str(dh),
        ]
    )
    return cert, key, dh


def curl(scenario: Scenario, keylog: Path, extra: tuple[str, ...]) -> None:
    base = [
        "curl",
        "-sS",
        "-k",
        "-o",
        "/dev/null",
        "--http1.1",
        "--resolve",
        f"tls-lab.authtrace.test:{PORT}:{scenario.host}",
    ]
    auth = ["--ntlm", "-u", USER] if scenario.auth == "ntlm" else ["--anyauth", "-u", BASIC_USER]
    urls = [f"https://tls-lab.authtrace.test{path}" for path in scenario.paths]
    env = dict(os.environ, SSLKEYLOGFILE=str(keylog))
    if scenario.reconnect:
        # One curl: its TLS session cache makes the second connection a resumption.
        args = [
            *base,
            *auth,
            *extra,
            "-H",
            "Connection: close",
            urls[0],
            "--next",
            *base,
            *auth,
            *extra,
            "-H",
            "Connection: close",
            urls[1],
        ]
    else:
        args = [*base, *auth, *extra, *urls]
    run(args, env=env)


_PYTHON_NTLM = """
import sys, requests, urllib3
from requests_ntlm import HttpNtlmAuth
urllib3.disable_warnings()
session = requests.Session()
session.auth = HttpNtlmAuth(sys.argv[2], sys.argv[3])
for path in ("/", "/big"):
    session.get(sys.argv[1] + path, verify=False, timeout=20)
"""


def python_ntlm(scenario: Scenario, keylog: Path) -> None:
    """requests + requests_ntlm: NTLM with MsvAvChannelBindings for the server's
    certificate; urllib3 writes SSLKEYLOGFILE like the ssl module does."""
    user, _, password = USER.partition(":")
    env = dict(os.environ, SSLKEYLOGFILE=str(keylog))
    run([sys.executable, "-c", _PYTHON_NTLM, f"https://{scenario.host}", user, password], env=env)


def gnutls_basic(scenario: Scenario, keylog: Path, inside: list[str]) -> None:
    """Two connections of gnutls-cli, each one request with Basic credentials (gnutls-serv
    --http answers each with a page and closes); GnuTLS writes SSLKEYLOGFILE."""
    import base64

    token = base64.b64encode(BASIC_USER.encode()).decode()
    env = dict(os.environ, SSLKEYLOGFILE=str(keylog))
    for path in ("/", "/big"):
        request = (
            f"GET {path} HTTP/1.1\r\nHost: tls-lab.authtrace.test\r\n"
            f"Authorization: Basic {token}\r\nConnection: close\r\n\r\n"
        )
        proc = subprocess.Popen(
            [
                *inside,
                "gnutls-cli",
                "--insecure",
                "-p",
                str(PORT),
                "--sni-hostname",
                "tls-lab.authtrace.test",
                "--priority",
                scenario.gnutls + _GNUTLS_BASE,
                scenario.host,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        assert proc.stdin is not None
        try:
            time.sleep(0.7)
            proc.stdin.write(request.encode())
            proc.stdin.flush()
            time.sleep(1.0)  # the page arrives, then the server closes
            proc.stdin.close()
            proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)


def s_client_key_update(scenario: Scenario, keylog: Path) -> None:
    """Two requests with a KeyUpdate of both sides (`K`) between them: s_client reads
    its commands at the start of a line of input, so each part is written on its own."""
    import base64

    token = base64.b64encode(BASIC_USER.encode()).decode()
    args = [
        "openssl",
        "s_client",
        "-quiet",
        "-tls1_3",
        "-crlf",
        "-keylogfile",
        str(keylog),
        "-servername",
        "tls-lab.authtrace.test",
        "-connect",
        f"{scenario.host}:{PORT}",
    ]
    args.remove("-quiet")  # -quiet turns the interactive commands off
    proc = subprocess.Popen(
        args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdin is not None
    try:
        for part in (
            "GET / HTTP/1.1\nHost: tls-lab.authtrace.test\n\n",
            "K\n",
            f"GET /big HTTP/1.1\nHost: tls-lab.authtrace.test\nAuthorization: Basic {token}\n\n",
            "k\n",
            f"GET / HTTP/1.1\nHost: tls-lab.authtrace.test\nAuthorization: Basic {token}\n"
            "Connection: close\n\n",
        ):
            time.sleep(0.7)
            proc.stdin.write(part.encode())
            proc.stdin.flush()
        time.sleep(1.0)
        proc.stdin.close()
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)


def server_args(
    scenario: Scenario, cert: Path, key: Path, extra: tuple[str, ...] = ()
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "lab.tls_server",
        "--host",
        scenario.behind_proxy or scenario.host,
        "--port",
        str(PORT),
        "--cert",
        str(cert),
        "--key",
        str(key),
        *scenario.server,
        *extra,
    ]


def record(scenario: Scenario, work: Path, cert: Path, key: Path, dh: Path) -> tuple[Path, Path]:
    pcap = work / f"{scenario.name}.pcap"
    keylog = work / f"{scenario.name}.keys"
    keylog.write_text("")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    if scenario.ccm13:
        conf = work / "ccm.cnf"
        conf.write_text(_CCM_CONF)
        env["OPENSSL_CONF"] = str(conf)
    hosts = f"host {scenario.host}"
    if scenario.behind_proxy:
        hosts += f" or host {scenario.behind_proxy}"
    inside: list[str] = []
    if scenario.gnutls:
        run(["ip", "netns", "add", NETNS])
        inside = ["ip", "netns", "exec", NETNS]
        run([*inside, "ip", "link", "set", "lo", "up"])
    try:
        return _record(scenario, work, cert, key, dh, pcap, keylog, env, hosts, inside)
    finally:
        if inside:
            run(["ip", "netns", "delete", NETNS])


def _record(
    scenario: Scenario,
    work: Path,
    cert: Path,
    key: Path,
    dh: Path,
    pcap: Path,
    keylog: Path,
    env: dict[str, str],
    hosts: str,
    inside: list[str],
) -> tuple[Path, Path]:
    capture = Process(
        [*inside, "dumpcap", "-q", "-P", "-i", "lo", "-f", hosts, "-w", str(pcap)],
        log_file=work / "dumpcap.log",
    )
    time.sleep(1.5)  # dumpcap prints nothing with -q: give it time to open lo
    try:
        if scenario.server_keylog:
            # Several cipher suites, one server each time: the server writes the key log.
            for ciphers, etm in CBC_ROUNDS:
                extra = ["--ciphers", ciphers, "--keylog", str(keylog), "--dh", str(dh)]
                if not etm:
                    extra.append("--no-etm")
                server = Process(
                    server_args(scenario, cert, key, tuple(extra)),
                    env=env,
                    ready="listening",
                    log_file=work / "server.log",
                )
                try:
                    curl(
                        Scenario(scenario.name, scenario.host, "", paths=("/",)),
                        work / "unused",
                        ("--tls-max", "1.2", "--ciphers", ciphers),
                    )
                finally:
                    server.stop()
        elif scenario.gnutls:
            server = Process(
                [
                    *inside,
                    "gnutls-serv",
                    "--http",
                    "-p",
                    str(PORT),
                    "--x509certfile",
                    str(cert),
                    "--x509keyfile",
                    str(key),
                    "--priority",
                    _GNUTLS_SERVER,
                ],
                ready="listening",
                log_file=work / "gnutls-serv.log",
            )
            try:
                gnutls_basic(scenario, keylog, inside)
            finally:
                server.stop()
        else:
            # Behind a proxy the server writes its own key log (nginx writes none):
            # both legs decrypt with the one file.
            extra = ("--keylog", str(keylog)) if scenario.behind_proxy else ()
            server = Process(
                server_args(scenario, cert, key, extra),
                env=env,
                ready="listening",
                log_file=work / "server.log",
            )
            proxy = nginx_proxy(scenario, work) if scenario.behind_proxy else None
            try:
                if scenario.key_update:
                    s_client_key_update(scenario, keylog)
                elif scenario.python_ntlm:
                    python_ntlm(scenario, keylog)
                else:
                    curl(scenario, keylog, scenario.curl)
            finally:
                if proxy is not None:
                    proxy.stop(signal.SIGQUIT)
                server.stop()
        time.sleep(1.0)
    finally:
        capture.stop(signal.SIGINT)
    if scenario.pcapng_secrets:
        target = work / f"{scenario.name}.pcapng"
        run(["editcap", "--inject-secrets", f"tls,{keylog}", str(pcap), str(target)])
        pcap = target
    return pcap, keylog


def tshark_count(pcap: Path, keylog: Path, display_filter: str) -> int:
    """How many frames of `pcap` tshark shows for `display_filter`, decrypting
    with `keylog` (lab.h2 uses it too)."""
    out = run(
        [
            "tshark",
            "-r",
            str(pcap),
            "-o",
            f"tls.keylog_file:{keylog}",
            "-Y",
            display_filter,
            "-T",
            "fields",
            "-e",
            "frame.number",
        ]
    )
    return len(out.split())


def keep_recorded(
    name: str,
    recording: Callable[[], tuple[Path, Path]],
    display_filter: str,
    out: Path,
    keylog_too: bool,
    what: str,
    say: Callable[[str], None] = log,
) -> bool:
    """Record one scenario and keep its capture in `out` (with its key log when
    `keylog_too`) only if tshark shows `display_filter` in it: a capture the
    oracle cannot read is not kept. Says why through `say`; False when not kept."""
    try:
        pcap, keylog = recording()
        seen = tshark_count(pcap, keylog, display_filter)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
        say(f"{name}: NOT KEPT: {error}")
        return False
    if seen == 0:
        say(f"{name}: NOT KEPT: tshark shows no frame for {display_filter!r}")
        return False
    shutil.copy(pcap, out / pcap.name)
    if keylog_too:
        shutil.copy(keylog, out / keylog.name)
    say(f"{name}: kept ({seen} frames match {display_filter!r} in tshark; {what})")
    return True


def lab_parser(
    prog: str, doc: str | None, names: Iterable[str], out: Path
) -> argparse.ArgumentParser:
    """The options every recording module takes (lab.h2 adds its own)."""
    parser = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", action="append", choices=sorted(names), default=[])
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--no-install", action="store_true")
    return parser


def ready_to_record(
    args: argparse.Namespace, install: Callable[[], None], say: Callable[[str], None] = log
) -> bool:
    """Root (dumpcap captures on lo), the Debian packages unless --no-install, and
    the output folder; False (said why) when recording cannot start."""
    if os.geteuid() != 0:
        say("needs root (it captures on lo)")
        return False
    if not args.no_install:
        install()
    args.out.mkdir(parents=True, exist_ok=True)
    return True


def main(argv: list[str] | None = None) -> int:
    args = lab_parser("python3 -m lab.tls", __doc__, BY_NAME, OUT).parse_args(argv)
    if not ready_to_record(args, ensure_installed):
        return 2
    chosen = [BY_NAME[name] for name in args.only] or list(SCENARIOS)
    failures = 0
    with tempfile.TemporaryDirectory(prefix="authtrace-tls-lab-") as tmp:
        work = Path(tmp)
        cert, key, dh = make_certificate(work)
        for scenario in chosen:
            kept = keep_recorded(
                scenario.name,
                partial(record, scenario, work, cert, key, dh),
                "http.request",
                args.out,
                keylog_too=not scenario.pcapng_secrets,
                what=scenario.what,
            )
            failures += not kept
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
