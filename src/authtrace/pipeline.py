"""The one module that wires the layers: capture files -> frames -> packets ->
TCP streams -> [TLS, decrypted with key logs] -> HTTP exchanges and KDC
exchanges -> judged handshakes -> findings -> a Report.

Each connection's protocol stack (Kerberos, TLS then HTTP/1, HTTP/1 or not
HTTP) is decided here, in `Pipeline._route`, from its first bytes.

Invariant: memory is bounded by what is open at one moment (live connections,
pending headers), not by the size of the capture: connections are handed on as
they close. Nothing read so far is lost when an input is damaged: readers turn
damage into anomalies and the pipeline goes on with what it has.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

from authtrace.anomalies import Anomaly, AnomalyKind
from authtrace.http.exchanges import HttpConnectionTracker
from authtrace.http.messages import Exchange, GapMark, HttpConnection
from authtrace.kerberos.kdc import KERBEROS_PORT, KdcSummary, KdcTracker, looks_like_kerberos
from authtrace.lane import FastLane
from authtrace.net.decoder import PacketDecoder
from authtrace.net.duplicates import DuplicateFrames
from authtrace.net.packets import FIN, RST, SYN, TcpSegment, UdpDatagram
from authtrace.readers.base import CaptureError
from authtrace.readers.capture import open_capture
from authtrace.report.model import CaptureInfo, Report
from authtrace.tcp.events import (
    ConnectionClosed,
    ConnectionOpened,
    StreamData,
    StreamEvent,
    StreamGap,
)
from authtrace.tcp.reassembly import TcpReassembler
from authtrace.tls.connection import TlsConnection, looks_like_tls
from authtrace.tls.keylog import DSB_TLS_KEY_LOG, KeyLog, KeyLogCounts
from authtrace.tls.model import EncryptedConnection, NotReadTally, TlsFacts

if TYPE_CHECKING:
    from authtrace.iis.category import LoggedLine
    from authtrace.iis.w3c import LogEntry

Source = str | os.PathLike[str] | BinaryIO


class Phase(enum.Enum):
    """The steps of a run, as a progress display names them."""

    READING = "reading"
    JUDGING = "judging connections"
    LINKING = "linking connections"
    DIAGNOSING = "finding problems"


@dataclass(frozen=True, slots=True)
class ProgressReport:
    """How far a run got: `done` of `total` bytes while reading (total None when
    an input's size is unknown: standard input), connections while judging; the
    later phases report only that they started (done 0, total None)."""

    phase: Phase
    done: int
    total: int | None


Progress = Callable[[ProgressReport], None]

_OPEN_CLOSE = SYN | FIN | RST
# How often (in frames) the progress callback is told how far reading got.
PROGRESS_EVERY = 2_000
# How often (in connections) judging reports progress.
JUDGING_EVERY = 500
# The HTTP anomalies of all connections listed in a run (each parser caps its
# own); past this they are counted in one `http-anomalies-suppressed`.
MAX_HTTP_ANOMALIES = 10_000


@dataclass
class _Live:
    """What the pipeline keeps for one open TCP connection."""

    opened: ConnectionOpened
    # Cleartext HTTP candidate (fed straight from reassembly).
    http: HttpConnectionTracker | None = None
    kerberos: bool = False
    # TLS: the record layer, and the HTTP tracker of what it decrypts.
    tls: TlsConnection | None = None
    inner: HttpConnectionTracker | None = None
    exchanges: list[Exchange] = field(default_factory=list)
    gaps: list[GapMark] = field(default_factory=list)


@dataclass
class StreamResult:
    """Filled while `Pipeline.connections()` runs; complete once it is exhausted."""

    captures: list[CaptureInfo] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    kdc: KdcSummary | None = None
    other_connections: int = 0
    # TLS connections whose HTTP could not be read (also in other_connections):
    # `not_read` counts them all, `encrypted` is its first NotReadTally.MAX_LISTED.
    not_read: NotReadTally = field(default_factory=NotReadTally)
    keylog: KeyLogCounts | None = None
    http_anomalies: int = 0  # how many HTTP-layer anomalies were met, listed or not

    def add_http_anomalies(self, anomalies: Iterable[Anomaly]) -> None:
        """Every anomaly the HTTP layer recorded on a connection, up to a cap."""
        for anomaly in anomalies:
            self.http_anomalies += 1
            if self.http_anomalies <= MAX_HTTP_ANOMALIES:
                self.anomalies.append(anomaly)

    def finish_http_anomalies(self) -> None:
        extra = self.http_anomalies - MAX_HTTP_ANOMALIES
        if extra > 0:
            self.anomalies.append(
                Anomaly(
                    AnomalyKind.HTTP_ANOMALIES_SUPPRESSED,
                    f"{extra} more HTTP anomalies not listed",
                )
            )

    @property
    def encrypted(self) -> list[EncryptedConnection]:
        return self.not_read.listed


class Pipeline:
    """Reads captures (one stream; frame numbers continue across files, as in a
    concatenating merge) and yields each TCP connection that carried HTTP when it
    closes, in order of connection id."""

    def __init__(
        self,
        progress: Progress | None = None,
        fast_lane: bool = True,
        keylog: KeyLog | None = None,
    ) -> None:
        """fast_lane: let lane.py take the frames whose only effect is counting
        (the results are the same either way; the tests compare them).
        keylog: TLS secrets (--tls-keylog); pcapng Decryption Secrets Blocks
        are added to it (or to a new one) as they are read."""
        self.result = StreamResult()
        self._keylog = keylog
        self._progress = progress
        self._decoder = PacketDecoder()
        self._duplicates = DuplicateFrames()
        self._tcp = TcpReassembler()
        self._lane = FastLane(self._tcp) if fast_lane else None
        self._kdc = KdcTracker()
        self._live: dict[int, _Live] = {}
        self._done: dict[int, HttpConnection | None] = {}
        self._next_out = 0
        self._frames = 0
        self._bytes_total: int | None = None
        self._bytes_before = 0  # bytes of the inputs read before the current one

    def connections(self, sources: Iterable[Source]) -> Iterator[HttpConnection]:
        """Yield finished HTTP connections. An unusable input becomes an anomaly;
        CaptureError is raised only when no input at all could be read."""
        problems: list[str] = []
        ordered = in_time_order(list(sources))
        self._bytes_total = _total_size(ordered)
        self._bytes_before = 0
        for source in ordered:
            read_before = len(self.result.captures)
            try:
                yield from self._read(source)
            except CaptureError as error:
                problems.append(str(error))
                self.result.anomalies.append(Anomaly("capture-unreadable", str(error)))
            self._check_overlap(read_before)
            self._bytes_before += _total_size([source]) or 0
        if not self.result.captures:
            raise CaptureError("; ".join(problems) or "no capture given")
        for event in self._tcp.finish():
            self._on_event(event)
        yield from self._drain()
        self.result.finish_http_anomalies()
        self._decoder.finish()
        if self._keylog is not None:
            self.result.keylog = self._keylog.counts
        duplicates = self._duplicates.summary().anomaly()
        if duplicates is not None:
            self.result.anomalies.append(duplicates)
        self.result.kdc = self._kdc.finish()
        self.result.anomalies.extend(self._decoder.anomalies)
        self.result.anomalies.extend(self._tcp.anomalies)
        self.result.anomalies.extend(self.result.kdc.anomalies)
        if self._lane is not None:
            self.result.anomalies.extend(self._lane.anomalies)

    def _check_overlap(self, read_before: int) -> None:
        """Several files are one stream only if each starts after the previous one
        ended (a ring buffer); otherwise connections of both may be mixed up."""
        captures = self.result.captures
        if read_before == 0 or len(captures) == read_before:
            return
        previous, current = captures[read_before - 1], captures[-1]
        if (
            previous.last_time is not None
            and current.first_time is not None
            and current.first_time < previous.last_time
        ):
            self.result.anomalies.append(
                Anomaly(
                    "capture-overlap",
                    f"{current.name} starts before {previous.name} ends: the files are read as "
                    "one stream, so give unrelated captures one at a time (or use diff)",
                )
            )

    def _read(self, source: Source) -> Iterator[HttpConnection]:
        lane = self._lane
        # CaptureError propagates: nothing read yet.
        capture = open_capture(
            source, lane.walker_for if lane is not None else None, self._frames + 1
        )
        name = source if isinstance(source, str) else getattr(source, "name", "<stream>")
        first: float | None = None
        last: float | None = None
        count = 0
        decode = self._decoder.decode
        is_copy = self._duplicates.is_copy
        tcp = self._tcp
        feed = tcp.feed
        on_event = self._on_event
        kdc = self._kdc
        live_connections = self._live
        done = self._done
        progress = self._progress
        next_progress = PROGRESS_EVERY
        secrets = capture.secrets
        if progress is not None:
            progress(ProgressReport(Phase.READING, self._bytes_before, self._bytes_total))
        try:
            for frame in capture:
                if secrets:
                    self._take_secrets(secrets, str(name))
                count += 1
                last = frame.timestamp
                if first is None:
                    first = last
                packet = decode(frame)
                if packet is None:
                    continue
                # Captured twice (net/duplicates.py): the first copy counts. TCP
                # segments without SYN/FIN/RST are not checked: the lane may take
                # them, and reassembly takes their copies as retransmissions.
                if (type(packet) is not TcpSegment or packet.flags & _OPEN_CLOSE) and is_copy(
                    frame.data, last, frame.number
                ):
                    continue
                if type(packet) is TcpSegment:
                    if packet.flags & (SYN | RST) and KERBEROS_PORT in (
                        packet.src_port,
                        packet.dst_port,
                    ):
                        kdc.note_tcp_syn(packet)
                    for event in feed(packet):
                        # Hot path: data for a connection already known to be HTTP.
                        if type(event) is StreamData:
                            live = live_connections.get(event.connection)
                            if live is not None and live.http is not None:
                                exchanges = live.http.feed(event)
                                if exchanges:
                                    live.exchanges.extend(exchanges)
                                continue
                        on_event(event)
                    if lane is not None:
                        # Once the connection's nature is known, its counting-only
                        # frames may skip all of this (lane.py).
                        live = live_connections.get(tcp.last_connection)  # type: ignore[arg-type]
                        if live is not None:
                            tls = live.tls
                            # TLS: the lane may take data only once the record
                            # layer needs no more of it (TlsConnection.opaque).
                            lane.offer(
                                packet,
                                live.opened.connection,
                                live.http,
                                opaque=tls is not None and tls.opaque,
                            )
                    if done:
                        yield from self._drain()
                elif isinstance(packet, UdpDatagram) and (
                    packet.src_port == KERBEROS_PORT
                    or packet.dst_port == KERBEROS_PORT
                    or looks_like_kerberos(packet.payload)
                ):
                    kdc.receive_udp(packet)
                # Frame numbers count the frames the lane took too.
                if progress is not None and frame.number >= next_progress:
                    position = capture.bytes_read()
                    progress(
                        ProgressReport(
                            Phase.READING, self._bytes_before + (position or 0), self._bytes_total
                        )
                    )
                    next_progress = frame.number + PROGRESS_EVERY
        finally:
            tally = capture.tally
            if tally is not None:
                # The reader also counted the frames the lane took.
                count, first, last = tally.records, tally.first_timestamp, tally.last_timestamp
            self._frames += count
            self.result.anomalies.extend(capture.anomalies)
            self.result.captures.append(CaptureInfo(str(name), capture.format, count, first, last))

    def _take_secrets(self, secrets: list[tuple[int, bytes, int]], name: str) -> None:
        """pcapng Decryption Secrets Blocks: TLS key logs join the key log, the
        other kinds (WireGuard, ZigBee...) are not used."""
        for kind, data, after in secrets:
            if kind != DSB_TLS_KEY_LOG:
                continue
            if self._keylog is None:
                self._keylog = KeyLog()
            self._keylog.add_text(data, f"{name}, secrets block after frame {after}")
        secrets.clear()

    def _on_event(self, event: StreamEvent) -> None:
        if isinstance(event, ConnectionOpened):
            self._live[event.connection] = _Live(event)
            return
        live = self._live.get(event.connection)
        if live is None:
            return
        if isinstance(event, ConnectionClosed):
            del self._live[event.connection]
            if self._lane is not None:
                self._lane.remove(event.connection)
            self._done[event.connection] = self._close(live, event)
            return
        if isinstance(event, StreamData):
            if live.http is None and not live.kerberos and live.tls is None:
                self._route(live, event)
        elif isinstance(event, StreamGap):
            live.gaps.append(GapMark(event.direction, event.length, event.frame))
        # StreamData, StreamGap, StreamEnd: the connection's application decides.
        if live.tls is not None:
            self._through_tls(live, live.tls.feed(event))
        elif live.kerberos:
            self._kdc.receive_tcp(event)
        elif live.http is not None:
            live.exchanges.extend(live.http.feed(event))

    def _route(self, live: _Live, event: StreamData) -> None:
        """The connection's protocol stack, from its first bytes (either
        direction): Kerberos (port 88 or a KDC message), TLS (a record header;
        what it decrypts goes to HTTP), else an HTTP candidate (the HTTP layer
        says whether it is HTTP at all)."""
        opened = live.opened
        if KERBEROS_PORT in (opened.client.port, opened.server.port) or looks_like_kerberos(
            event.data
        ):
            live.kerberos = True
            self._kdc.receive_tcp(opened)
        elif looks_like_tls(event.data):
            live.tls = TlsConnection(opened.connection, self._keylog)
        else:
            live.http = HttpConnectionTracker(opened.connection, opened.syn_seen)

    def _through_tls(self, live: _Live, events: list[StreamEvent]) -> None:
        """Decrypted stream events of a TLS connection into its HTTP tracker,
        made at the first decrypted byte (a connection whose records never
        open has none)."""
        for event in events:
            if live.inner is None:
                if not isinstance(event, StreamData):
                    continue  # nothing decrypted yet: no HTTP to tell about
                live.inner = HttpConnectionTracker(live.opened.connection, live.opened.syn_seen)
            live.exchanges.extend(live.inner.feed(event))

    def _close(self, live: _Live, event: ConnectionClosed) -> HttpConnection | None:
        if live.kerberos:
            self._kdc.receive_tcp(event)
            return None
        if live.tls is not None:
            return self._close_tls(live, live.tls, event)
        if live.http is None:
            self.result.other_connections += 1
            return None
        live.exchanges.extend(live.http.feed(event))
        live.http.collect_parser_anomalies()
        # Every anomaly the HTTP layer recorded reaches the report, HTTP or not.
        self.result.add_http_anomalies(live.http.anomalies)
        if not live.http.is_http:
            self.result.other_connections += 1
            return None
        return self._http_connection(live, live.http, event)

    def _close_tls(
        self, live: _Live, tls: TlsConnection, event: ConnectionClosed
    ) -> HttpConnection | None:
        inner = live.inner
        facts = tls.facts()
        if inner is not None:
            live.exchanges.extend(inner.feed(event))
            inner.collect_parser_anomalies()
            if inner.is_http:
                return self._http_connection(live, inner, event, facts, tls.anomalies)
        opened = live.opened
        self.result.other_connections += 1
        self.result.not_read.add(
            EncryptedConnection(
                id=opened.connection,
                client=opened.client,
                server=opened.server,
                first_frame=event.first_frame,
                last_frame=event.last_frame,
                facts=facts,
                anomalies=tuple(tls.anomalies),
            )
        )
        return None

    def _http_connection(
        self,
        live: _Live,
        tracker: HttpConnectionTracker,
        event: ConnectionClosed,
        tls: TlsFacts | None = None,
        tls_anomalies: list[Anomaly] | None = None,
    ) -> HttpConnection:
        opened = live.opened
        client, server = opened.client, opened.server
        if tracker.swapped:  # the side that sent requests is the client
            client, server = server, client
        return HttpConnection(
            id=opened.connection,
            client=client,
            server=server,
            first_frame=event.first_frame,
            last_frame=event.last_frame,
            first_timestamp=opened.timestamp,
            last_timestamp=event.timestamp,
            syn_seen=event.syn_seen,
            fin_seen=event.fin_seen,
            rst_seen=event.rst_seen,
            close_reason=event.reason,
            closed_by=event.closed_by,
            close_frame=event.frame,
            packets=event.packets,
            gaps=tuple(live.gaps),
            exchanges=tuple(live.exchanges),
            is_http=True,
            anomalies=tuple(tls_anomalies or ()) + tuple(tracker.anomalies),
            tls=tls,
        )

    def _drain(self) -> Iterator[HttpConnection]:
        """Hand on finished connections in id order (a connection id is final
        once it and every lower id have closed)."""
        done = self._done
        while self._next_out in done:
            connection = done.pop(self._next_out)
            self._next_out += 1
            if connection is not None:
                yield connection


def _total_size(sources: list[Source]) -> int | None:
    """The bytes of all inputs when every one is a file on disk, else None."""
    total = 0
    for source in sources:
        if not isinstance(source, str | os.PathLike) or source == "-":
            return None
        try:
            total += os.path.getsize(source)
        except OSError:
            return None
    return total


def in_time_order(sources: list[Source]) -> list[Source]:
    """Files of a ring buffer in the order they were written (by first frame),
    whatever order they were named in; standard input and open files stay as given."""
    if len(sources) < 2 or not all(isinstance(s, str | os.PathLike) and s != "-" for s in sources):
        return sources
    starts: dict[int, float] = {}
    for index, source in enumerate(sources):
        try:
            with open_capture(source) as capture:
                first = next(iter(capture), None)
        except (CaptureError, OSError):
            first = None
        starts[index] = first.timestamp if first is not None else float("inf")
    order = sorted(range(len(sources)), key=lambda i: (starts[i], i))
    return [sources[i] for i in order]


def read_connections(
    sources: Iterable[Source], progress: Progress | None = None, keylog: KeyLog | None = None
) -> tuple[list[HttpConnection], StreamResult]:
    """All HTTP connections of the captures, with what was learnt on the way."""
    pipeline = Pipeline(progress, keylog=keylog)
    connections = list(pipeline.connections(sources))
    return connections, pipeline.result


def analyze(
    sources: Iterable[Source],
    progress: Progress | None = None,
    keylog: KeyLog | None = None,
    iis_log: Sequence[LogEntry] = (),
) -> Report:
    """Read the captures and judge every authentication handshake in them
    (TLS decrypted with `keylog` and any secrets the captures embed).

    iis_log: the server's W3C log lines, if given; each 401 they record is
    matched to its exchange, and the logged substatus is the strongest evidence
    the rules weigh (it wins over what the wire suggests)."""
    # The judging layers are imported here, not at the top: `connections` and
    # the readers' users need only the reading half of this module.
    from authtrace.diagnose import RuleContext, diagnose
    from authtrace.handshake.links import link
    from authtrace.handshake.timeline import build_timeline

    def tell(phase: Phase, done: int = 0, total: int | None = None) -> None:
        if progress is not None:
            progress(ProgressReport(phase, done, total))

    connections, result = read_connections(sources, progress, keylog)
    timelines = []
    for number, connection in enumerate(connections):
        if number % JUDGING_EVERY == 0:
            tell(Phase.JUDGING, number, len(connections))
        timelines.append(build_timeline(connection))
    times = [t for info in result.captures for t in (info.first_time, info.last_time) if t]
    kdc = result.kdc
    exchanges = kdc.exchanges if kdc is not None else ()
    tell(Phase.LINKING)
    view = link(timelines, min(times, default=0.0), max(times, default=0.0), exchanges)
    connects = kdc.unanswered_connects if kdc is not None else ()
    join = None
    logged: dict[tuple[int, int], LoggedLine] = {}
    if iis_log:
        from authtrace.iis.capture_log import join_log, logged_lines

        join = join_log(view, iis_log)
        logged = logged_lines(join)
    tell(Phase.DIAGNOSING)
    findings, problems = diagnose(RuleContext(view, exchanges, connects, iis_log=logged))
    return Report(
        captures=tuple(result.captures),
        view=view,
        kdc=exchanges,
        kdc_connects=connects,
        findings=tuple(findings),
        anomalies=tuple(result.anomalies) + tuple(problems),
        other_connections=result.other_connections,
        encrypted=tuple(result.encrypted),
        encrypted_total=result.not_read.total,
        encrypted_groups=result.not_read.groups(),
        keylog=result.keylog,
        iis_log=join,
    )


__all__ = [
    "CaptureError",
    "Phase",
    "Pipeline",
    "ProgressReport",
    "Report",
    "StreamResult",
    "analyze",
    "read_connections",
]
