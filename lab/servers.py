"""Configurations and start-up of the lab's servers: MIT KDC, Apache, nginx, squid, HAProxy and
a second Apache running mod_proxy.

Everything is written into one temporary directory and started by hand from there, never as a
system service. Invariant: every listening socket is bound to a lab address from
``lab.topology``; no server is told of any other address (squid's DNS is 127.0.0.1, Kerberos
does no DNS lookups, names come from the lab's /etc/hosts block).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from lab.system import Service, log, run, start_service, wait_for_port
from lab.topology import (
    ALIAS,
    APACHE_PROXY,
    BADKEY,
    BALANCER,
    BALANCER_CLOSE_PORT,
    BALANCER_SOURCE,
    DIGEST_REALM,
    HTTP_PORT,
    KDC,
    KDC_PORT,
    NTLM_DOMAIN,
    PASSWORD,
    PROXY,
    PROXY_PASSWORD,
    PROXY_PORT,
    PROXY_USER,
    REALM,
    REVERSE_PROXY,
    SECOND_PASSWORD,
    SECOND_USER,
    UPSTREAM_SOURCE,
    USER,
    WEB,
)

MASTER_PASSWORD = "lab-master-key"
APACHE_MODULES = Path("/usr/lib/apache2/modules")


@dataclass
class Lab:
    """The lab's working directory, its client environment and the servers running now."""

    root: Path
    services: list[Service] = field(default_factory=list)

    @property
    def krb5_conf(self) -> Path:
        return self.root / "krb5.conf"

    @property
    def ccache(self) -> Path:
        return self.root / "client.ccache"

    def client_env(self) -> dict[str, str]:
        """Environment for clients: the lab's krb5.conf and credential cache, nothing else."""
        env = dict(os.environ)
        env["KRB5_CONFIG"] = str(self.krb5_conf)
        env["KRB5CCNAME"] = f"FILE:{self.ccache}"
        env.pop("NTLM_USER_FILE", None)
        # Proxies are chosen per scenario (curl -x), never inherited from the environment.
        for name in (
            "http_proxy",
            "HTTP_PROXY",
            "https_proxy",
            "HTTPS_PROXY",
            "all_proxy",
            "ALL_PROXY",
            "no_proxy",
            "NO_PROXY",
        ):
            env.pop(name, None)
        return env

    def kdc_env(self) -> dict[str, str]:
        env = self.client_env()
        env["KRB5_KDC_PROFILE"] = str(self.root / "kdc" / "kdc.conf")
        return env

    def stop_all(self) -> None:
        for service in reversed(self.services):
            try:
                service.stop()
                log(f"stopped {service.name} (pid {service.pid})")
            except Exception as exc:  # keep stopping the others
                log(f"could not stop {service.name} (pid {service.pid}): {exc}")
        self.services.clear()


def _write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def prepare(root: Path) -> Lab:
    """Create the directory layout; Apache's and squid's workers must be able to read it."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    root.chmod(0o755)
    lab = Lab(root)
    _write(
        lab.krb5_conf,
        f"""[libdefaults]
    default_realm = {REALM}
    dns_lookup_kdc = false
    dns_lookup_realm = false
    dns_canonicalize_hostname = false
    rdns = false
    ignore_acceptor_hostname = false

[realms]
    {REALM} = {{
        kdc = {KDC.name}:{KDC_PORT}
        admin_server = {KDC.name}
    }}

[domain_realm]
    .lab.test = {REALM}
    lab.test = {REALM}
""",
    )
    return lab


# --- Kerberos ---------------------------------------------------------------------------------


def start_kdc(lab: Lab) -> None:
    """Create realm LAB.TEST with a user, HTTP/web, and HTTP/badkey whose keytab key is stale."""
    kdc_dir = lab.root / "kdc"
    kdc_dir.mkdir()
    _write(
        kdc_dir / "kdc.conf",
        f"""[kdcdefaults]
    kdc_listen = {KDC.address}:{KDC_PORT}
    kdc_tcp_listen = {KDC.address}:{KDC_PORT}

[realms]
    {REALM} = {{
        database_name = {kdc_dir}/principal
        key_stash_file = {kdc_dir}/stash
        acl_file = {kdc_dir}/kadm5.acl
        kdc_listen = {KDC.address}:{KDC_PORT}
        kdc_tcp_listen = {KDC.address}:{KDC_PORT}
        max_life = 10h
        supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
    }}

[logging]
    kdc = FILE:{kdc_dir}/kdc.log
""",
    )
    _write(kdc_dir / "kadm5.acl", "")
    env = lab.kdc_env()
    run(["kdb5_util", "create", "-s", "-r", REALM, "-P", MASTER_PASSWORD], env=env)
    keytab = lab.root / "http.keytab"

    def kadmin(query: str) -> None:
        run(["kadmin.local", "-r", REALM, "-q", query], env=env)

    # requires_preauth: the first AS-REQ gets PREAUTH_REQUIRED (25), as with Active Directory.
    kadmin(f"addprinc -pw {PASSWORD} +requires_preauth {USER}")
    kadmin(f"addprinc -randkey HTTP/{WEB.name}")
    kadmin(f"ktadd -k {keytab} HTTP/{WEB.name}")
    # The "SPN on the wrong account / stale password" case: the server's keytab keeps kvno 2,
    # the KDC then changes the key (kvno 3) and issues tickets the server cannot decrypt.
    kadmin(f"addprinc -randkey HTTP/{BADKEY.name}")
    kadmin(f"ktadd -k {keytab} HTTP/{BADKEY.name}")
    kadmin(f"cpw -randkey HTTP/{BADKEY.name}")
    # No principal for HTTP/alias.lab.test: the TGS-REQ for it gets S_PRINCIPAL_UNKNOWN (7).
    keytab.chmod(0o644)
    service = start_service(
        "krb5kdc", ["krb5kdc", "-n", "-r", REALM], lab.root / "krb5kdc.out", env=env
    )
    lab.services.append(service)
    wait_for_port(service, KDC.address, KDC_PORT)


# --- Apache -----------------------------------------------------------------------------------

_GSSAPI_COMMON = """        AuthType GSSAPI
        AuthName "lab"
        GssapiBasicAuth Off
        GssapiSSLonly Off
        Require valid-user"""


def _apache_conf(root: Path) -> str:
    www = root / "www"
    modules = [
        ("mpm_event_module", "mod_mpm_event.so"),
        ("authn_core_module", "mod_authn_core.so"),
        ("authn_file_module", "mod_authn_file.so"),
        ("authz_core_module", "mod_authz_core.so"),
        ("authz_user_module", "mod_authz_user.so"),
        ("auth_basic_module", "mod_auth_basic.so"),
        ("auth_digest_module", "mod_auth_digest.so"),
        ("auth_gssapi_module", "mod_auth_gssapi.so"),
    ]
    load = "\n".join(f"LoadModule {m} {APACHE_MODULES / f}" for m, f in modules)
    listens = "\n".join(f"Listen {h.address}:{HTTP_PORT}" for h in (WEB, ALIAS, BADKEY))
    return f"""ServerRoot "{root / "apache"}"
ServerName {WEB.name}
DefaultRuntimeDir {root / "apache"}
PidFile {root / "apache" / "httpd.pid"}
ErrorLog {root / "apache" / "error.log"}
LogLevel info auth_gssapi:debug
LogFormat "%h %l %u %t \\"%r\\" %>s %b %{{remote}}p" lab
CustomLog {root / "apache" / "access.log"} lab
User www-data
Group www-data
{load}
{listens}
KeepAlive On
KeepAliveTimeout 5
MaxKeepAliveRequests 100
DocumentRoot "{www}"
<Directory "{www}">
    Require all granted
</Directory>
# Negotiate-only, Kerberos only (no NTLM inside SPNEGO).
<Location /krb/>
{_GSSAPI_COMMON}
        GssapiAllowedMech krb5
</Location>
# Negotiate offering Kerberos and NTLM; NTLM state is kept per TCP connection, as IIS does.
<Location /ntlm/>
{_GSSAPI_COMMON}
        GssapiAllowedMech krb5
        GssapiAllowedMech ntlmssp
        GssapiConnectionBound On
</Location>
<Location /basic/>
        AuthType Basic
        AuthName "lab basic"
        AuthBasicProvider file
        AuthUserFile {root / "apache" / "htpasswd"}
        Require valid-user
</Location>
<Location /digest/>
        AuthType Digest
        AuthName "{DIGEST_REALM}"
        AuthDigestProvider file
        AuthUserFile {root / "apache" / "htdigest"}
        Require valid-user
</Location>
"""


def start_apache(lab: Lab) -> None:
    """Apache with mod_auth_gssapi; keytab via KRB5_KTNAME and NTLM users via NTLM_USER_FILE.

    Both variables must be in the process environment: gss-ntlmssp reads NTLM_USER_FILE with
    getenv (SetEnv does not reach it), and GssapiCredStore together with NTLM crashed the child.
    """
    root = lab.root
    for folder in ("krb", "ntlm", "basic", "digest", "open"):
        _write(root / "www" / folder / "ok.txt", f"{folder}: ok\n")
    (root / "apache").mkdir(exist_ok=True)
    run(["htpasswd", "-b", "-c", str(root / "apache" / "htpasswd"), USER, PASSWORD])
    # htdigest has no batch flag: it reads the password twice from the terminal or stdin.
    run(
        ["htdigest", "-c", str(root / "apache" / "htdigest"), DIGEST_REALM, USER],
        input_text=f"{PASSWORD}\n{PASSWORD}\n",
    )
    _write(
        root / "ntlm-users",
        f"{NTLM_DOMAIN}:{USER}:{PASSWORD}\n{NTLM_DOMAIN}:{SECOND_USER}:{SECOND_PASSWORD}\n",
    )
    conf = _write(root / "apache" / "httpd.conf", _apache_conf(root))
    for path in (root / "apache").iterdir():
        path.chmod(0o644)
    (root / "apache").chmod(0o777)  # workers (www-data) write nothing here but logs via root
    env = lab.client_env()
    env.pop("KRB5CCNAME", None)
    env["KRB5_KTNAME"] = f"FILE:{root / 'http.keytab'}"
    env["NTLM_USER_FILE"] = str(root / "ntlm-users")
    # MIT's replay cache would need a writable directory for www-data; it is not the subject.
    env["KRB5RCACHETYPE"] = "none"
    service = start_service(
        "apache2", ["apache2", "-f", str(conf), "-DFOREGROUND"], root / "apache2.out", env=env
    )
    lab.services.append(service)
    for host in (WEB, ALIAS, BADKEY):
        wait_for_port(service, host.address, HTTP_PORT)


# --- nginx ------------------------------------------------------------------------------------


def start_nginx(lab: Lab) -> None:
    """nginx as a reverse proxy that pools keep-alive upstream connections (no NTLM support).

    One worker and a small pool make the race visible: a client's NTLM Type 3 is sent on
    whichever pooled upstream connection is free, not the one that carried its Type 1.
    """
    base = lab.root / "nginx"
    base.mkdir()
    conf = _write(
        base / "nginx.conf",
        f"""worker_processes 1;
pid {base}/nginx.pid;
error_log {base}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {base}/access.log;
    client_body_temp_path {base}/body;
    proxy_temp_path {base}/proxy;
    fastcgi_temp_path {base}/fastcgi;
    uwsgi_temp_path {base}/uwsgi;
    scgi_temp_path {base}/scgi;
    upstream apache {{
        server {WEB.address}:{HTTP_PORT};
        keepalive 2;
    }}
    server {{
        listen {REVERSE_PROXY.address}:{HTTP_PORT};
        server_name {REVERSE_PROXY.name};
        location / {{
            proxy_pass http://apache;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host {WEB.name};
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_bind {UPSTREAM_SOURCE.address};
        }}
    }}
}}
""",
    )
    service = start_service(
        "nginx",
        [
            "nginx",
            "-p",
            str(base),
            "-e",
            str(base / "error.log"),
            "-c",
            str(conf),
            "-g",
            "daemon off;",
        ],
        lab.root / "nginx.out",
    )
    lab.services.append(service)
    wait_for_port(service, REVERSE_PROXY.address, HTTP_PORT)


# --- squid ------------------------------------------------------------------------------------


def start_squid(lab: Lab) -> None:
    """squid forward proxy that requires Basic proxy authentication (basic_ncsa_auth)."""
    base = lab.root / "squid"
    base.mkdir()
    base.chmod(0o777)  # squid's workers run as the 'proxy' user and write their logs here
    passwd = base / "passwd"
    run(["htpasswd", "-b", "-c", str(passwd), PROXY_USER, PROXY_PASSWORD])
    passwd.chmod(0o644)
    conf = _write(
        base / "squid.conf",
        f"""http_port {PROXY.address}:{PROXY_PORT}
pid_filename {base}/squid.pid
cache_log {base}/cache.log
access_log stdio:{base}/access.log
cache_store_log none
coredump_dir {base}
cache deny all
dns_nameservers 127.0.0.1
hosts_file /etc/hosts
shutdown_lifetime 1 seconds
visible_hostname {PROXY.name}
auth_param basic program /usr/lib/squid/basic_ncsa_auth {passwd}
auth_param basic children 2 startup=1 idle=1
auth_param basic realm lab proxy
acl lab_users proxy_auth REQUIRED
http_access allow lab_users
http_access deny all
""",
    )
    service = start_service("squid", ["squid", "-N", "-f", str(conf)], lab.root / "squid.out")
    lab.services.append(service)
    wait_for_port(service, PROXY.address, PROXY_PORT, timeout=30.0)


# --- HAProxy ----------------------------------------------------------------------------------


def start_haproxy(lab: Lab) -> None:
    """HAProxy 2.6 in front of Apache with two behaviours, one per port.

    Port 80 keeps upstream connections and shares idle ones between clients as far as HAProxy
    allows (``http-reuse always``); port 8080 closes the upstream connection after every
    response (``option http-server-close``) while the client's connection stays open. Both add
    X-Forwarded-For and connect to Apache from their own source address.
    """
    base = lab.root / "haproxy"
    base.mkdir()
    backend_common = f"""    option forwardfor
    http-request set-header Host {WEB.name}
    source {BALANCER_SOURCE.address}
    server web {WEB.address}:{HTTP_PORT}"""
    conf = _write(
        base / "haproxy.cfg",
        f"""global
    pidfile {base}/haproxy.pid
    log stdout format raw local0 info
    maxconn 64

defaults
    mode http
    log global
    option httplog
    timeout connect 5s
    timeout client 10s
    timeout server 10s
    timeout http-keep-alive 5s

frontend reuse
    bind {BALANCER.address}:{HTTP_PORT}
    default_backend web_reuse

frontend server_close
    bind {BALANCER.address}:{BALANCER_CLOSE_PORT}
    default_backend web_close

backend web_reuse
    http-reuse always
{backend_common}

backend web_close
    option http-server-close
{backend_common}
""",
    )
    run(["haproxy", "-c", "-f", str(conf)])
    service = start_service(
        "haproxy", ["haproxy", "-db", "-f", str(conf)], lab.root / "haproxy.out"
    )
    lab.services.append(service)
    wait_for_port(service, BALANCER.address, HTTP_PORT)
    wait_for_port(service, BALANCER.address, BALANCER_CLOSE_PORT)


# --- Apache mod_proxy -------------------------------------------------------------------------


def start_apache_proxy(lab: Lab) -> None:
    """A second Apache, mod_proxy only, as a reverse proxy in front of the lab's Apache.

    One child process, so that every request shares one pool of upstream connections (with
    several children each has its own pool and the reuse would depend on which child answers).
    mod_proxy knows nothing of NTLM: it returns the upstream connection to its pool after each
    response, whoever the next request comes from.
    """
    base = lab.root / "apache-proxy"
    base.mkdir()
    modules = [
        ("mpm_event_module", "mod_mpm_event.so"),
        ("authz_core_module", "mod_authz_core.so"),
        ("proxy_module", "mod_proxy.so"),
        ("proxy_http_module", "mod_proxy_http.so"),
    ]
    load = "\n".join(f"LoadModule {m} {APACHE_MODULES / f}" for m, f in modules)
    conf = _write(
        base / "httpd.conf",
        f"""ServerRoot "{base}"
ServerName {APACHE_PROXY.name}
DefaultRuntimeDir {base}
PidFile {base / "httpd.pid"}
ErrorLog {base / "error.log"}
LogLevel info proxy:debug
User www-data
Group www-data
{load}
Listen {APACHE_PROXY.address}:{HTTP_PORT}
StartServers 1
ServerLimit 1
ThreadsPerChild 16
MinSpareThreads 1
MaxSpareThreads 16
MaxRequestWorkers 16
KeepAlive On
KeepAliveTimeout 5
ProxyRequests Off
# A path-rewriting mount as well (issue 11 d): /app/x is relayed as /x.
ProxyPass /app/ http://{WEB.name}:{HTTP_PORT}/
ProxyPassReverse /app/ http://{WEB.name}:{HTTP_PORT}/
ProxyPass / http://{WEB.name}:{HTTP_PORT}/
ProxyPassReverse / http://{WEB.name}:{HTTP_PORT}/
""",
    )
    base.chmod(0o777)
    service = start_service(
        "apache2-proxy",
        ["apache2", "-f", str(conf), "-DFOREGROUND"],
        lab.root / "apache2-proxy.out",
        env=lab.client_env(),
    )
    lab.services.append(service)
    wait_for_port(service, APACHE_PROXY.address, HTTP_PORT)
