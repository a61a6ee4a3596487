"""Python HTTP clients of the lab, run in a subprocess: ``python3 -m lab.clients KIND ...``.

Running them out of process gives each its own environment (the lab's KRB5_CONFIG and
credential cache) and lets the caller bound it with a timeout. Every client connects from the
lab's client address (a second client from the second client address) and prints one JSON list:
the HTTP statuses it saw, in order.
"""

from __future__ import annotations

import base64
import http.client
import json
import sys
import threading
from typing import Any
from urllib.parse import urlsplit

from lab.topology import CLIENT, CLIENT2, NTLM_DOMAIN, PASSWORD, SECOND_PASSWORD, SECOND_USER, USER

TIMEOUT = 10.0


def _session(source: str = CLIENT.address) -> Any:
    import requests
    from requests.adapters import HTTPAdapter

    class FromClientAddress(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["source_address"] = (source, 0)
            super().init_poolmanager(*args, **kwargs)

    session = requests.Session()
    session.trust_env = False  # no proxy from the environment: the lab picks its own routes
    session.mount("http://", FromClientAddress())
    return session


def _statuses(response: Any) -> list[int]:
    return [r.status_code for r in response.history] + [response.status_code]


def ntlm(url: str, user: str, password: str, rounds: int = 1) -> list[int]:
    """requests-ntlm (pyspnego's NTLM): anonymous request, Type 1, Type 2, Type 3."""
    from requests_ntlm import HttpNtlmAuth

    session = _session()
    seen: list[int] = []
    for _ in range(rounds):
        response = session.get(
            url, auth=HttpNtlmAuth(f"{NTLM_DOMAIN}\\{user}", password), timeout=TIMEOUT
        )
        seen += _statuses(response)
    return seen


def ntlm_concurrent(url: str, user: str, password: str, clients: int, rounds: int) -> list[int]:
    """Several requests-ntlm clients at once, each on its own connections, started together."""
    barrier = threading.Barrier(clients, timeout=TIMEOUT)
    results: list[list[int]] = [[] for _ in range(clients)]

    def one(index: int) -> None:
        try:
            barrier.wait()
            results[index] = ntlm(url, user, password, rounds)
        except Exception as exc:  # a failed client is part of what is observed
            results[index] = [-1]
            print(f"client {index}: {exc}", file=sys.stderr)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=TIMEOUT * (rounds + 2))
    return [status for result in results for status in result]


def two_users(url: str, second_anonymous: bool) -> list[int]:
    """Two clients behind one reverse proxy, from two addresses, each on its own connection.

    The first user authenticates with NTLM and keeps its connection open; then the second
    client sends its first request: with ``second_anonymous`` it sends no credentials at all
    (does the proxy hand it the first user's authenticated upstream connection?), otherwise it
    authenticates as the second user (its anonymous first request is a normal first leg). Then
    each sends one more request on its connection.
    """
    from requests_ntlm import HttpNtlmAuth

    first = _session(CLIENT.address)
    second = _session(CLIENT2.address)
    first_auth = HttpNtlmAuth(f"{NTLM_DOMAIN}\\{USER}", PASSWORD)
    second_auth = (
        None if second_anonymous else HttpNtlmAuth(f"{NTLM_DOMAIN}\\{SECOND_USER}", SECOND_PASSWORD)
    )
    seen = _statuses(first.get(url, auth=first_auth, timeout=TIMEOUT))
    seen += _statuses(second.get(url, auth=second_auth, timeout=TIMEOUT))
    seen += _statuses(first.get(url, auth=first_auth, timeout=TIMEOUT))
    seen += _statuses(second.get(url, auth=second_auth, timeout=TIMEOUT))
    first.close()
    second.close()
    return seen


def spnego(url: str, opportunistic: bool) -> list[int]:
    """requests-gssapi: anonymous first and Negotiate after the 401, or (opportunistic)
    Negotiate on the very first request."""
    from requests_gssapi import HTTPSPNEGOAuth

    session = _session()
    auth = HTTPSPNEGOAuth(opportunistic_auth=opportunistic)
    response = session.get(url, auth=auth, timeout=TIMEOUT)
    return _statuses(response)


def negotiate(url: str, ccache: str, user: str, password: str) -> list[int]:
    """pyspnego Negotiate: Kerberos from the ccache first, NTLM with a password as fallback.

    pyspnego drops a mechanism whose first step fails (here: no ticket for the SPN), so the
    SPNEGO init offers NTLM alone, which is what Windows clients do.
    """
    import spnego

    parts = urlsplit(url)
    host = parts.hostname or ""
    credentials = [
        spnego.KerberosCCache(ccache=ccache),
        spnego.Password(f"{NTLM_DOMAIN}\\{user}", password),
    ]
    context = spnego.client(credentials, hostname=host, service="HTTP", protocol="negotiate")
    connection = http.client.HTTPConnection(
        host, parts.port or 80, timeout=TIMEOUT, source_address=(CLIENT.address, 0)
    )
    seen: list[int] = []
    headers: dict[str, str] = {}
    token: bytes | None = None
    for _ in range(4):  # anonymous, init, at most two more legs
        connection.request("GET", parts.path, headers=headers)
        response = connection.getresponse()
        response.read()
        seen.append(response.status)
        if response.status != 401:
            break
        challenge = [v for k, v in response.getheaders() if k.lower() == "www-authenticate"]
        server_token = None
        for value in challenge:
            scheme, _, data = value.partition(" ")
            if scheme.lower() == "negotiate" and data.strip():
                server_token = base64.b64decode(data.strip())
        if headers and server_token is None:
            break  # the server refused the credentials
        token = context.step(server_token)
        if not token:
            break
        headers = {"Authorization": "Negotiate " + base64.b64encode(token).decode("ascii")}
    connection.close()
    return seen


def main(argv: list[str]) -> int:
    kind, *args = argv
    if kind == "ntlm":
        seen = ntlm(args[0], args[1], args[2], int(args[3]) if len(args) > 3 else 1)
    elif kind == "ntlm-concurrent":
        seen = ntlm_concurrent(args[0], args[1], args[2], int(args[3]), int(args[4]))
    elif kind == "two-users":
        seen = two_users(args[0], second_anonymous=False)
    elif kind == "second-anonymous":
        seen = two_users(args[0], second_anonymous=True)
    elif kind == "spnego":
        seen = spnego(args[0], opportunistic=False)
    elif kind == "spnego-preemptive":
        seen = spnego(args[0], opportunistic=True)
    elif kind == "negotiate":
        seen = negotiate(args[0], args[1], args[2], args[3])
    else:
        print(f"unknown client {kind}", file=sys.stderr)
        return 2
    print(json.dumps(seen))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
