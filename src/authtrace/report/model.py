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
    from authtrace.iis.category import LoggedLine
    from authtrace.kerberos.kdc import KdcConnectAttempt, KdcExchange
    from authtrace.report.summary import HostTally
    from authtrace.tls.keylog import KeyLogCounts
    from authtrace.tls.model import EncryptedConnection, EncryptedGroup


@dataclass(frozen=True, slots=True)
class CaptureInfo:
    """One input file: its name as given, format, frame count and time span.

    first_frame: the number its first frame has in this report (files of one
    stream are numbered on, as `mergecap -a` would); stream: which stream it
    belongs to (files whose times overlap are analysed as separate streams).
    """

    name: str
    format: str
    frames: int
    first_time: float | None
    last_time: float | None
    first_frame: int = 1
    stream: int = 0


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
    tally: the summary's counts, fed by analyze as it judged every timeline
        (report/summary.py); None: the summary walks the timelines. A report
        made from this one with another view drops it (report/filters.py).
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
    tally: HostTally | None = None

    @property
    def has_problems(self) -> bool:
        return any(f.severity.is_problem for f in self.findings)

    def logged(self) -> dict[tuple[int, int], LoggedLine]:
        """The IIS log line of each exchange the log recorded, by (connection
        id, exchange index); empty without --iis-log. What the rules weigh,
        for the summary and the ladders to say the same."""
        if self.iis_log is None:
            return {}
        from authtrace.iis.capture_log import logged_lines

        return logged_lines(self.iis_log)

    @property
    def streams(self) -> int:
        """How many separate streams the captures were analysed as."""
        return 1 + max((c.stream for c in self.captures), default=0)

    def frame_name(self, number: int) -> str:
        """How a frame is named in a report: "#12", or "capture.pcap#12" (the
        file's own number, as Wireshark shows it) when the captures given
        overlapped in time and were analysed as separate streams."""
        return frame_name(self.captures, number)


def frame_name(captures: tuple[CaptureInfo, ...], number: int) -> str:
    """See `Report.frame_name`."""
    if not captures or captures[-1].stream == 0:
        return f"#{number}"
    return file_frame_name([(info.name, info.first_frame) for info in captures], number)


def file_frame_name(files: list[tuple[str, int]], number: int) -> str:
    """ "capture.pcap#12": frame `number` of the report named by the file that
    holds it, files given as (name, the number their frame 1 has) in order."""
    holder = None
    for name, first_frame in files:
        if first_frame <= number:
            holder = (name, first_frame)
    if holder is None:
        return f"#{number}"
    return f"{_base_name(holder[0])}#{number - holder[1] + 1}"


def _base_name(name: str) -> str:
    return name.replace("\\", "/").rsplit("/", 1)[-1]
