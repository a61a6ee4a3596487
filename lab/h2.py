"""The HTTP/2 lab: ``sudo python3 -m lab.h2 [--only NAME ...] [--out DIR]`` records real
HTTP/2 traffic on the loopback addresses 127.0.0.50-127.0.0.59 and writes, per scenario,
``captures/h2/<name>.pcap`` and (for h2 over TLS) the key log it is decrypted with,
``captures/h2/<name>.keys``.

Servers: Apache with mod_http2 (h2 with mod_ssl, h2c in cleartext), Basic through
mod_auth_basic and NTLM through mod_auth_gssapi with gss-ntlmssp (NTLM users in
NTLM_USER_FILE; `GssapiConnectionBound On`, which mod_http2 defeats: each stream runs on its
own secondary connection), and nginx with `http2 on` and auth_basic.
Clients: curl with SSLKEYLOGFILE (`--http2` over TLS, `--http2-prior-knowledge` and the
`Upgrade: h2c` of `--http2` in cleartext), and a small Python client (the `h2` library and
pyspnego, installed from PyPI when missing) that does NTLM over one HTTP/2 connection.
Capture: dumpcap on `lo`, filtered to the scenario's address. A capture is kept only when
tshark (given the key log) shows HTTP/2 HEADERS in it.

The RST_STREAM HTTP_1_1_REQUIRED answers of IIS / HTTP.sys and Kestrel cannot be recorded
from Debian software: those captures are hand-built by scripts/captures/build_scenarios.py.

Needs root (capturing on lo). Installs what is missing from Debian: apache2,
libapache2-mod-auth-gssapi, gss-ntlmssp, nginx, curl, openssl, tshark. Not run in CI: the
captures are committed. Every process it starts is stopped through its own pid; every wait
has a timeout.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from lab.tls import (
    Process,
    keep_recorded,
    lab_parser,
    make_certificate,
    ready_to_record,
    run,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT = REPO_ROOT / "captures" / "h2"
NAME = "h2-lab.authtrace.test"
APACHE_MODULES = Path("/usr/lib/apache2/modules")
APT = {
    "apache2": "apache2",
    "nginx": "nginx",
    "curl": "curl",
    "openssl": "openssl",
    "dumpcap": "tshark",
    "tshark": "tshark",
    "htpasswd": "apache2-utils",
}
USER, PASSWORD = "alice", "Passw0rd!"
NTLM_DOMAIN = "LAB"


@dataclass(frozen=True)
class Scenario:
    """server: 'apache' or 'nginx'; tls: h2 over TLS (else cleartext h2c); curl: the
    HTTP version options; auth: curl's credentials options; paths: fetched on one
    connection, after one request without credentials for the first path
    (`anonymous_first`: curl's `--next` keeps the connection, so the 401 and the
    retry share it)."""

    name: str
    host: str
    what: str
    server: str
    tls: bool
    curl: tuple[str, ...]
    auth: tuple[str, ...] = ("--basic", "-u", f"{USER}:{PASSWORD}")
    paths: tuple[str, ...] = ("/basic/index.html", "/basic/big")
    anonymous_first: bool = True
    python_h2: bool = False


SCENARIOS = (
    Scenario(
        "h2-apache-basic",
        "127.0.0.50",
        "Apache mod_http2 + mod_ssl (ALPN h2), curl --http2: 401 then Basic, two streams",
        "apache",
        True,
        ("--http2",),
    ),
    Scenario(
        "h2-nginx-basic",
        "127.0.0.51",
        "nginx http2 (ALPN h2), curl --http2: 401 then Basic",
        "nginx",
        True,
        ("--http2",),
    ),
    Scenario(
        "h2c-prior-knowledge-basic",
        "127.0.0.52",
        "Apache mod_http2 cleartext (h2c), curl --http2-prior-knowledge: Basic sent at once "
        "on two streams (curl 7.88 cannot reuse a prior-knowledge connection after --next)",
        "apache",
        False,
        ("--http2-prior-knowledge",),
        anonymous_first=False,
    ),
    Scenario(
        "h2-apache-ntlm",
        "127.0.0.53",
        "Apache mod_http2 + mod_auth_gssapi (gss-ntlmssp), curl --http2 --ntlm: the NTLM "
        "handshake spans streams, which mod_http2 runs on separate internal connections",
        "apache",
        True,
        ("--http2",),
        auth=("--ntlm", "-u", f"{NTLM_DOMAIN}\\{USER}:{PASSWORD}"),
        paths=("/ntlm/index.html",),
        anonymous_first=False,
    ),
    Scenario(
        "h2-apache-ntlm-streams",
        "127.0.0.55",
        "Apache mod_http2 + mod_auth_gssapi (gss-ntlmssp, GssapiConnectionBound On), a Python "
        "h2 client doing NTLM with pyspnego, one stream per leg on one connection: the "
        "AUTHENTICATE on stream 5 is refused (mod_http2 runs each stream on its own "
        "secondary connection)",
        "apache",
        True,
        ("--http2",),
        auth=("--ntlm", "-u", f"{NTLM_DOMAIN}\\{USER}:{PASSWORD}"),
        paths=("/ntlm/index.html",),
        python_h2=True,
    ),
    Scenario(
        "h2c-upgrade-basic",
        "127.0.0.54",
        "Apache mod_http2 cleartext, curl --http2 on http:// (Upgrade: h2c, 101, then frames)",
        "apache",
        False,
        ("--http2",),
    ),
)
BY_NAME = {s.name: s for s in SCENARIOS}


def log(message: str) -> None:
    print(f"[lab.h2] {message}", flush=True)


def ensure_installed() -> None:
    """Debian packages the lab needs, installed when missing."""
    missing = sorted({pkg for cmd, pkg in APT.items() if shutil.which(cmd) is None})
    if not (APACHE_MODULES / "mod_auth_gssapi.so").exists():
        missing.append("libapache2-mod-auth-gssapi")
    if not Path("/etc/gss/mech.d/mech.ntlmssp.conf").exists():
        missing.append("gss-ntlmssp")
    if missing:
        log(f"installing {' '.join(missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update"], check=True, timeout=600, env=env)
        subprocess.run(["apt-get", "install", "-y", *missing], check=True, timeout=900, env=env)
    missing_pip = [
        package
        for module, package in (("h2", "h2"), ("spnego", "pyspnego"))
        if importlib.util.find_spec(module) is None
    ]
    if missing_pip:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", *missing_pip], check=True, timeout=600
        )


def _apache_conf(root: Path, scenario: Scenario, cert: Path, key: Path) -> str:
    modules = [
        ("mpm_event_module", "mod_mpm_event.so"),
        ("authn_core_module", "mod_authn_core.so"),
        ("authn_file_module", "mod_authn_file.so"),
        ("authz_core_module", "mod_authz_core.so"),
        ("authz_user_module", "mod_authz_user.so"),
        ("auth_basic_module", "mod_auth_basic.so"),
        ("auth_gssapi_module", "mod_auth_gssapi.so"),
        ("http2_module", "mod_http2.so"),
    ]
    if scenario.tls:
        modules.append(("ssl_module", "mod_ssl.so"))
    load = "\n".join(f"LoadModule {m} {APACHE_MODULES / f}" for m, f in modules)
    port = 443 if scenario.tls else 80
    tls = (
        f"""SSLEngine on
SSLCertificateFile {cert}
SSLCertificateKeyFile {key}
Protocols h2 http/1.1"""
        if scenario.tls
        else "Protocols h2c http/1.1"
    )
    www = root / "www"
    return f"""ServerRoot "{root}"
ServerName {NAME}
DefaultRuntimeDir {root}
PidFile {root / "httpd.pid"}
ErrorLog {root / "error.log"}
LogLevel info http2:debug auth_gssapi:debug
User www-data
Group www-data
{load}
Listen {scenario.host}:{port}
KeepAlive On
DocumentRoot "{www}"
<Directory "{www}">
    Require all granted
</Directory>
<VirtualHost {scenario.host}:{port}>
{tls}
H2Upgrade on
</VirtualHost>
<Location /basic/>
    AuthType Basic
    AuthName "h2 lab"
    AuthBasicProvider file
    AuthUserFile {root / "htpasswd"}
    Require valid-user
</Location>
<Location /ntlm/>
    AuthType GSSAPI
    AuthName "h2 lab"
    GssapiBasicAuth Off
    GssapiSSLonly Off
    GssapiAllowedMech ntlmssp
    GssapiConnectionBound On
    Require valid-user
</Location>
"""


def _nginx_conf(root: Path, scenario: Scenario, cert: Path, key: Path) -> str:
    return f"""worker_processes 1;
pid {root / "nginx.pid"};
error_log {root / "error.log"} info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    server {{
        listen {scenario.host}:443 ssl http2;
        server_name {NAME};
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {root / "www"};
        location /basic/ {{
            auth_basic "h2 lab";
            auth_basic_user_file {root / "htpasswd"};
        }}
    }}
}}
"""


def start_server(scenario: Scenario, work: Path, cert: Path, key: Path) -> Process:
    root = work / scenario.name
    root.mkdir()
    for folder in ("basic", "ntlm"):
        (root / "www" / folder).mkdir(parents=True)
        (root / "www" / folder / "index.html").write_text(f"{folder}: ok\n")
        (root / "www" / folder / "big").write_text("x" * 40000)
    run(["htpasswd", "-b", "-c", str(root / "htpasswd"), USER, PASSWORD])
    users = root / "ntlm-users"
    users.write_text(f"{NTLM_DOMAIN}:{USER}:{PASSWORD}\n")
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    root.chmod(0o777)
    work.chmod(0o755)
    env = dict(os.environ, NTLM_USER_FILE=str(users))
    if scenario.server == "nginx":
        conf = root / "nginx.conf"
        conf.write_text(_nginx_conf(root, scenario, cert, key))
        args = ["nginx", "-c", str(conf), "-g", "daemon off;"]
    else:
        conf = root / "httpd.conf"
        conf.write_text(_apache_conf(root, scenario, cert, key))
        args = ["apache2", "-f", str(conf), "-DFOREGROUND"]
    server = Process(args, env=env, log_file=root / "server.out")
    port = 443 if scenario.tls else 80
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        probe = subprocess.run(
            [
                "curl",
                "-sk",
                "-o",
                "/dev/null",
                f"{'https' if scenario.tls else 'http'}://{scenario.host}:{port}/",
            ],
            timeout=5,
        )
        if probe.returncode == 0:
            return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{scenario.server} did not start: {(root / 'server.out').read_text()}")


# An HTTP/2 client doing NTLM (pyspnego) over one connection, one stream per leg, as a
# browser would if it sent NTLM over HTTP/2: curl does not (gss-ntlmssp refuses its
# NEGOTIATE, and it falls back to HTTP/1.1). Python's ssl writes SSLKEYLOGFILE.
_H2_NTLM = """
import base64, os, socket, ssl, sys
import h2.config, h2.connection, h2.events, spnego
host, address, path, user, password = sys.argv[1:6]
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
context.set_alpn_protocols(["h2"])
context.keylog_filename = os.environ["SSLKEYLOGFILE"]
sock = context.wrap_socket(socket.create_connection((address, 443), timeout=10),
                           server_hostname=host)
assert sock.selected_alpn_protocol() == "h2"
conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
conn.initiate_connection()
sock.sendall(conn.data_to_send())
ntlm = spnego.client(user, password, hostname=host, service="HTTP", protocol="ntlm")

def ask(authorization):
    stream = conn.get_next_available_stream_id()
    headers = [(":method", "GET"), (":scheme", "https"), (":authority", host), (":path", path),
               ("user-agent", "lab-h2-ntlm")]
    if authorization:
        headers.append(("authorization", authorization))
    conn.send_headers(stream, headers, end_stream=True)
    sock.sendall(conn.data_to_send())
    answer = {}
    while True:
        data = sock.recv(65535)
        if not data:
            return answer
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
                answer = {k.decode(): v.decode() for k, v in event.headers}
            if isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                sock.sendall(conn.data_to_send())
                return answer
        sock.sendall(conn.data_to_send())

ask(None)
answer = ask("NTLM " + base64.b64encode(ntlm.step()).decode())
challenge = answer.get("www-authenticate", "")
if challenge.startswith("NTLM "):
    ask("NTLM " + base64.b64encode(ntlm.step(base64.b64decode(challenge[5:]))).decode())
conn.close_connection()
sock.sendall(conn.data_to_send())
sock.close()
"""


def h2_ntlm(scenario: Scenario, keylog: Path) -> None:
    user, _, password = scenario.auth[-1].partition(":")
    env = dict(os.environ, SSLKEYLOGFILE=str(keylog))
    subprocess.run(
        [sys.executable, "-c", _H2_NTLM, NAME, scenario.host, scenario.paths[0], user, password],
        env=env,
        timeout=60,
        check=True,
        capture_output=True,
    )


def record(scenario: Scenario, work: Path, cert: Path, key: Path) -> tuple[Path, Path]:
    pcap = work / f"{scenario.name}.pcap"
    keylog = work / f"{scenario.name}.keys"
    keylog.write_text("")
    server = start_server(scenario, work, cert, key)
    try:
        capture = Process(
            ["dumpcap", "-q", "-P", "-i", "lo", "-f", f"host {scenario.host}", "-w", str(pcap)],
            log_file=work / "dumpcap.log",
        )
        time.sleep(1.5)  # dumpcap prints nothing with -q: give it time to open lo
        try:
            scheme = "https" if scenario.tls else "http"
            port = 443 if scenario.tls else 80
            urls = [f"{scheme}://{NAME}{path}" for path in scenario.paths]
            base = ["-sS", "-k", "--resolve", f"{NAME}:{port}:{scenario.host}"]
            args = ["curl", *base, *scenario.curl]
            if scenario.anonymous_first:
                args += ["-o", "/dev/null", urls[0], "--next", *base, *scenario.curl]
            args += list(scenario.auth)
            for url in urls:
                args += ["-o", "/dev/null", url]
            env = dict(os.environ, SSLKEYLOGFILE=str(keylog))
            if scenario.python_h2:
                h2_ntlm(scenario, keylog)
            else:
                subprocess.run(args, env=env, timeout=60, capture_output=True)
            time.sleep(1.0)
        finally:
            capture.stop(signal.SIGINT)
    finally:
        server.stop()
    return pcap, keylog


def main(argv: list[str] | None = None) -> int:
    parser = lab_parser("python3 -m lab.h2", __doc__, BY_NAME, OUT)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (servers' logs)")
    args = parser.parse_args(argv)
    if not ready_to_record(args, ensure_installed, log):
        return 2
    chosen = [BY_NAME[name] for name in args.only] or list(SCENARIOS)
    failures = 0
    with tempfile.TemporaryDirectory(prefix="authtrace-h2-lab-") as tmp:
        work = Path(tmp)
        if args.keep is not None:
            work = args.keep
            work.mkdir(parents=True, exist_ok=True)
        cert, key, _ = make_certificate(work)
        for scenario in chosen:
            kept = keep_recorded(
                scenario.name,
                partial(record, scenario, work, cert, key),
                "http2.type == 1",
                args.out,
                keylog_too=scenario.tls,
                what=scenario.what,
                say=log,
            )
            failures += not kept
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
