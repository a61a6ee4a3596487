"""Names, addresses, ports and accounts of the lab: the one place that says where things live.

Invariant: every address here is a loopback address (127.0.0.0/8), checked at import time, so
no lab traffic can leave the machine.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

REALM = "LAB.TEST"
NTLM_DOMAIN = "LAB"


@dataclass(frozen=True, slots=True)
class Host:
    """One lab host name bound to one loopback address."""

    name: str
    address: str


WEB = Host("web.lab.test", "127.0.0.10")
"""Apache: /krb/ (Negotiate, Kerberos only), /ntlm/ (Negotiate with NTLM), /basic/, /digest/."""
KDC = Host("kdc.lab.test", "127.0.0.11")
"""MIT krb5kdc on 88/udp and 88/tcp."""
PROXY = Host("proxy.lab.test", "127.0.0.12")
"""squid forward proxy with Basic proxy authentication."""
REVERSE_PROXY = Host("rp.lab.test", "127.0.0.13")
"""nginx reverse proxy in front of Apache, pooling upstream connections."""
UPSTREAM_SOURCE = Host("rp-upstream.lab.test", "127.0.0.14")
"""Source address of nginx's connections to Apache, so the two legs are told apart."""
ALIAS = Host("alias.lab.test", "127.0.0.15")
"""Same Apache, but no HTTP/alias.lab.test principal exists in the KDC."""
BADKEY = Host("badkey.lab.test", "127.0.0.16")
"""Same Apache; its keytab holds a stale key (old kvno) for HTTP/badkey.lab.test."""
BALANCER = Host("lb.lab.test", "127.0.0.17")
"""HAProxy in front of Apache: port 80 keeps upstream connections alive (``http-reuse
always``), port 8080 closes each one after its response (``option http-server-close``)."""
BALANCER_SOURCE = Host("lb-upstream.lab.test", "127.0.0.18")
"""Source address of HAProxy's connections to Apache (``source``), so its two legs are told
apart."""
CLIENT2 = Host("client2.lab.test", "127.0.0.19")
"""Source address of a second client (another user) behind the same reverse proxies."""
CLIENT = Host("client.lab.test", "127.0.0.20")
"""Source address of the HTTP clients."""
APACHE_PROXY = Host("rp2.lab.test", "127.0.0.21")
"""Apache mod_proxy (a virtual host of the lab's Apache) in front of the same Apache. mod_proxy
cannot choose its source address: its upstream leg comes from 127.0.0.1."""

ALL_HOSTS: tuple[Host, ...] = (
    WEB,
    KDC,
    PROXY,
    REVERSE_PROXY,
    UPSTREAM_SOURCE,
    ALIAS,
    BADKEY,
    BALANCER,
    BALANCER_SOURCE,
    CLIENT2,
    CLIENT,
    APACHE_PROXY,
)

HTTP_PORT = 80
KDC_PORT = 88
PROXY_PORT = 3128
BALANCER_CLOSE_PORT = 8080

USER = "alice"
PASSWORD = "Lab-Passw0rd"
WRONG_PASSWORD = "not-the-password"
SECOND_USER = "carol"
SECOND_PASSWORD = "Carol-Passw0rd"
PROXY_USER = "bob"
PROXY_PASSWORD = "Proxy-Passw0rd"
DIGEST_REALM = "lab digest"

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
for _host in ALL_HOSTS:
    if ipaddress.ip_address(_host.address) not in LOOPBACK:
        raise RuntimeError(f"lab host {_host.name} is not on loopback: {_host.address}")


def capture_filter() -> str:
    """A tcpdump filter that keeps lab traffic only (every lab packet has a lab address)."""
    return " or ".join(f"host {h.address}" for h in ALL_HOSTS)
