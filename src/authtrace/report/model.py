"""The analysis report as typed objects: what `authtrace analyze` returns to a
library caller and what the renderers turn into text or JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Annotations only: the pipeline builds CaptureInfo while reading, and
    # commands that never judge handshakes should not import those layers.
    from authtrace.anomalies import Anomaly
    from authtrace.diagnose.finding import Finding
    from authtrace.handshake.links import HandshakeView
    from authtrace.iis.capture_log import LogJoin
    from authtrace.kerberos.kdc import KdcConnectAttempt, KdcExchange
    from authtrace.tls.keylog import KeyLogCounts
    from authtrace.tls.model import EncryptedConnection, EncryptedGroup


@dataclass(frozen=True, slots=True)
class CaptureInfo:
    """One input file: its name as given, format, frame count and time span."""

    name: str
    format: str
    frames: int
    first_time: float | None
    last_time: float | None


@dataclass(frozen=True, slots=True)
class Report:
    """Everything authtrace concluded about a set of captures.

    view: the judged handshakes of every HTTP connection and their links.
    other_connections: TCP connections that carried no HTTP (counted only).
    encrypted: the TLS connections among those, whose HTTP could not be read
        (no key, wrong key, HTTP/2), with their handshake facts: the first
        NotReadTally.MAX_LISTED of encrypted_total; encrypted_groups: all of
        them, counted by server, version, ALPN and reason.
    keylog: what the key logs given (and embedded) held; None when there were none.
    iis_log: the server's IIS log joined to the exchanges, when one was given.
    """

    captures: tuple[CaptureInfo, ...]
    view: HandshakeView
    kdc: tuple[KdcExchange, ...]
    kdc_connects: tuple[KdcConnectAttempt, ...]
    findings: tuple[Finding, ...]
    anomalies: tuple[Anomaly, ...]
    other_connections: int
    encrypted: tuple[EncryptedConnection, ...] = ()
    encrypted_total: int = 0
    encrypted_groups: tuple[EncryptedGroup, ...] = ()
    keylog: KeyLogCounts | None = None
    iis_log: LogJoin | None = None

    @property
    def has_problems(self) -> bool:
        return any(f.severity.is_problem for f in self.findings)
