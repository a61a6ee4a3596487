"""tshark's reading of a lab capture, reduced to what a scenario's check needs.

Invariant: nothing here parses packets itself; Wireshark's dissectors are the oracle, so a
capture is only kept when an independent decoder sees the statuses, schemes and Kerberos
errors that the scenario is meant to produce.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

FIELDS: tuple[str, ...] = (
    "frame.number",
    "ip.src",
    "ip.dst",
    "tcp.stream",
    "tcp.port",
    "udp.port",
    "http.request.method",
    "http.response.code",
    "http.authorization",
    "http.www_authenticate",
    "http.proxy_authorization",
    "http.proxy_authenticate",
    "ntlmssp.messagetype",
    "kerberos.msg_type",
    "kerberos.error_code",
    "kerberos.SNameString",
    "http.x_forwarded_for",
    "http.connection",
    "http.user_agent",
    "http.request.uri",
)
KDC_PORT = "88"


@dataclass(frozen=True, slots=True)
class Packet:
    """One HTTP or Kerberos frame as tshark decoded it."""

    frame: int
    src: str
    dst: str
    stream: int | None
    """tcp.stream, None for UDP."""
    to_or_from_kdc: bool
    method: str
    status: int | None
    authorization: tuple[str, ...]
    www_authenticate: tuple[str, ...]
    proxy_authorization: tuple[str, ...]
    proxy_authenticate: tuple[str, ...]
    ntlm_types: tuple[int, ...]
    """NTLMSSP message types carried in this frame (1, 2, 3)."""
    kerberos_types: tuple[int, ...]
    """Kerberos msg-type values (10 AS-REQ, 11 AS-REP, 12 TGS-REQ, 13 TGS-REP, 14 AP-REQ,
    15 AP-REP, 30 KRB-ERROR)."""
    kerberos_errors: tuple[int, ...]
    service_names: tuple[str, ...]
    forwarded_for: str
    """X-Forwarded-For as a proxy wrote it ("" when absent)."""
    connection: str
    """The Connection header ("" when absent)."""
    user_agent: str
    uri: str
    """The request target ("" for a response)."""


def _ints(text: str) -> tuple[int, ...]:
    out = []
    for item in text.split("|"):
        item = item.strip()
        if item:
            try:
                out.append(int(item, 0))
            except ValueError:
                continue
    return tuple(out)


def _strs(text: str) -> tuple[str, ...]:
    return tuple(item for item in text.split("|") if item)


def read_packets(pcap: Path, timeout: float = 60.0) -> list[Packet]:
    """Run tshark over ``pcap`` and return its HTTP and Kerberos frames in order."""
    argv = ["tshark", "-n", "-r", str(pcap), "-Y", "http || kerberos", "-T", "fields"]
    for name in FIELDS:
        argv += ["-e", name]
    argv += ["-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=|"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=True)
    packets = []
    for line in done.stdout.splitlines():
        cols = line.split("\t")
        cols += [""] * (len(FIELDS) - len(cols))
        row = dict(zip(FIELDS, cols, strict=True))
        ports = set(_strs(row["tcp.port"])) | set(_strs(row["udp.port"]))
        stream = _ints(row["tcp.stream"])
        status = _ints(row["http.response.code"])
        packets.append(
            Packet(
                frame=int(row["frame.number"]),
                src=row["ip.src"],
                dst=row["ip.dst"],
                stream=stream[0] if stream else None,
                to_or_from_kdc=KDC_PORT in ports,
                method=row["http.request.method"],
                status=status[0] if status else None,
                authorization=_strs(row["http.authorization"]),
                www_authenticate=_strs(row["http.www_authenticate"]),
                proxy_authorization=_strs(row["http.proxy_authorization"]),
                proxy_authenticate=_strs(row["http.proxy_authenticate"]),
                ntlm_types=_ints(row["ntlmssp.messagetype"]),
                kerberos_types=_ints(row["kerberos.msg_type"]),
                kerberos_errors=_ints(row["kerberos.error_code"]),
                service_names=_strs(row["kerberos.SNameString"]),
                forwarded_for=row["http.x_forwarded_for"],
                connection=row["http.connection"],
                user_agent=row["http.user_agent"],
                uri=row["http.request.uri"],
            )
        )
    return packets


def schemes(values: tuple[str, ...]) -> set[str]:
    """Auth scheme names (first word of each header value), lower-cased."""
    return {v.split(" ", 1)[0].strip().lower() for v in values if v.strip()}


def statuses(packets: list[Packet]) -> list[int]:
    return [p.status for p in packets if p.status is not None]


def kdc_errors(packets: list[Packet]) -> set[int]:
    return {e for p in packets if p.to_or_from_kdc for e in p.kerberos_errors}


def tgs_services(packets: list[Packet]) -> set[str]:
    """'HTTP/web.lab.test' style names asked for in TGS-REQs (msg-type 12)."""
    found = set()
    for p in packets:
        if p.to_or_from_kdc and 12 in p.kerberos_types:
            names = [n for n in p.service_names if n not in ("krbtgt",)]
            if len(names) >= 2:
                found.add("/".join(names[-2:]))
    return found
