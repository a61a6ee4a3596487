"""The one module that wires the layers: capture files -> frames -> packets ->
TCP streams -> [TLS, decrypted with key logs] -> HTTP exchanges and KDC
exchanges -> judged handshakes -> findings -> a Report.

Each connection's protocol stack (Kerberos, TLS then HTTP/1 or HTTP/2,
HTTP/1, HTTP/2, or not HTTP) is decided by stack.py from its content; this
module builds the layers that stack names (`Pipeline._route`,
`Pipeline._application`).

Invariant: memory is bounded by what is open at one moment (live connections,
pending headers), not by the size of the capture: connections are handed on as
they close. Nothing read so far is lost when an input is damaged: readers turn
damage into anomalies and the pipeline goes on with what it has.
"""

from __future__ import annotations

import enum
import os
import zlib
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, BinaryIO

from authtrace.anomalies import Anomaly, AnomalyKind
from authtrace.http.exchanges import HttpConnectionTracker
from authtrace.http.messages import Exchange, GapMark, HttpConnection
from authtrace.http2.connection import Http2Connection
from authtrace.kerberos.kdc import KERBEROS_PORT, KdcSummary, KdcTracker, looks_like_kerberos
from authtrace.lane import FastLane
from authtrace.net.decoder import PacketDecoder
from authtrace.net.duplicates import DuplicateFrames
from authtrace.net.packets import FIN, RST, SYN, TcpSegment, UdpDatagram
from authtrace.readers.base import DEFAULT_READ, CaptureError, ReadOptions
from authtrace.readers.capture import open_capture
from authtrace.report.model import CaptureInfo, Report, file_frame_name, frame_name
from authtrace.spool import Spool
from authtrace.stack import Application, Stack, decide, decide_inner
from authtrace.tcp.events import (
    ConnectionClosed,
    ConnectionElsewhere,
    ConnectionOpened,
    Direction,
    StreamData,
    StreamEvent,
    StreamGap,
    TcpEvent,
)
from authtrace.tcp.reassembly import TcpReassembler
from authtrace.tls.connection import TlsConnection
from authtrace.tls.keylog import DSB_TLS_KEY_LOG, KeyLog, KeyLogCounts
from authtrace.tls.model import EncryptedConnection, NotReadTally, TlsFacts
from authtrace.words import agreeing, counted

if TYPE_CHECKING:
    from authtrace.handshake.links import HandshakeView, LinkedBlock
    from authtrace.handshake.store import TimelineStore
    from authtrace.handshake.timeline import ConnectionTimeline
    from authtrace.iis.category import LoggedLine
    from authtrace.iis.w3c import LogEntry
    from authtrace.kerberos.kdc import KdcConnectAttempt as _KdcConnect
    from authtrace.kerberos.kdc import KdcExchange as _KdcExchange
    from authtrace.kerberos.kdc import KdcUnreadable as _KdcUnreadable

Source = str | os.PathLike[str] | BinaryIO


class Phase(enum.Enum):
    """The steps of a run, as a progress display names them."""

    READING = "reading"  # and judging each connection as it closes
    LINKING = "linking connections"
    DIAGNOSING = "finding problems"
    # Not analyze's: the CLI's, while it writes a long report (analyze --json
    # into a file), counting the connections and KDC exchanges written.
    WRITING = "writing the report"


@dataclass(frozen=True, slots=True)
class ProgressReport:
    """How far a run got: `done` of `total` bytes while reading (total None when
    an input's size is unknown: standard input); finding problems, `done` of
    `total` connections whose per-block rules ran; the other phases report only
    that they started (done 0, total None)."""

    phase: Phase
    done: int
    total: int | None


Progress = Callable[[ProgressReport], None]

_OPEN_CLOSE = SYN | FIN | RST
# How often (in frames) the progress callback is told how far reading got.
PROGRESS_EVERY = 2_000
# The HTTP anomalies of all connections listed in a run (each parser caps its
# own); past this they are counted in one `http-anomalies-suppressed`.
MAX_HTTP_ANOMALIES = 10_000


@dataclass
class _Live:
    """What the pipeline keeps for one open TCP connection."""

    opened: ConnectionOpened
    # Decided at the first data (stack.decide); None before.
    stack: Stack | None = None
    # The application reading the cleartext stream (HTTP/1, HTTP/2), fed
    # straight from reassembly.
    http: Application | None = None
    # TLS: the record layer, and the application reading what it decrypts
    # (made at the first decrypted byte: stack.decide_inner).
    tls: TlsConnection | None = None
    inner: Application | None = None
    exchanges: list[Exchange] = field(default_factory=list)
    gaps: list[GapMark] = field(default_factory=list)


# Where an anomaly was met in a run, so that the anomalies of readers that each
# read part of a capture (parallel.py) merge into the order one reader gives:
# (frame number being read, phase, then what orders within the phase). Phases:
AT_FRAME = 0  # while reading that frame: the HTTP anomalies of the connection it closed
AFTER_FILE = 1  # the reader's anomalies of the file that ended at that frame
AT_FINISH = 2  # a stream's end closes what is open: (.., connection id)
STREAM_LISTS = 3  # a stream's end: (.., (list, position in it)), the lists below
AFTER_STREAM = 4  # the note that the next file starts another stream
# The lists a stream's end adds, in that order.
DUPLICATES, DECODER, TCP, KDC, LANE = range(5)
OrderKey = tuple[int, int, object]


# What reader 0 spends on one Kerberos datagram (decoding a KDC message), in
# TCP flows' work: measured on the auth-dense Kerberos profile (callgrind:
# 0.51 M instructions a datagram, 2.8 M an HTTP flow with its AP-REQ).
KERBEROS_DATAGRAM_WORK = 0.18
# How far (in flows' work) a reader may get ahead of the least loaded before
# it gives up a new flow the hash gave it.
BALANCE_SLACK = 4.0


@dataclass(frozen=True, slots=True)
class Ownership:
    """Which part of a capture a reader reads, when `jobs` readers share it
    (authtrace/parallel.py): reader `index` reassembles, parses and judges the
    TCP flows whose address/port pair hashes to it (the same for both
    directions), but a reader given more work than the others gives its new
    flows to the least loaded (`owns`: reader 0 decodes every Kerberos
    datagram, a fifth of the work on the Kerberos benchmark profile, and was
    the one the others waited for); reader 0 also owns everything that is not one TCP flow's:
    UDP (Kerberos), TCP to or from port 88 (so that one KDC tracker sees all of
    port 88), the frames the decoder cannot read and what the readers report
    about the files. Every reader reads every frame (the headers only of most
    frames of the flows it does not own: lane.py), and gives every
    connection the id one reader gives (tcp/reassembly.py, `owns`)."""

    index: int
    jobs: int
    # Work given to each reader so far, in TCP flows (`owns`); not compared.
    loads: list[float] = field(default_factory=list, compare=False, repr=False)

    @property
    def reads_capture(self) -> bool:
        return self.index == 0

    def note_kerberos(self) -> None:
        """A Kerberos datagram was read (by reader 0, which decodes them all)."""
        loads = self.loads or self._start()
        loads[0] += KERBEROS_DATAGRAM_WORK

    def _start(self) -> list[float]:
        self.loads.extend([0.0] * self.jobs)
        return self.loads

    def owner_of(self, key: tuple[str, int, str, int]) -> int:
        a, a_port, b, b_port = key
        if KERBEROS_PORT in (a_port, b_port):
            return 0
        low, high = sorted(((a, a_port), (b, b_port)))
        # crc32, not hash(): the same in every process whatever PYTHONHASHSEED says.
        return zlib.crc32(f"{low[0]} {low[1]} {high[0]} {high[1]}".encode()) % self.jobs

    def owns(self, key: tuple[str, int, str, int]) -> bool:
        """Whether this reader reads the new connection `key`: its `owner_of`,
        unless that reader was given more than BALANCE_SLACK flows' work than
        the least loaded one, which then takes it (Kerberos datagrams weigh on
        reader 0). Every reader asks for the same connections in the same
        order (tcp/reassembly.py) and notes the same datagrams, so all agree."""
        loads = self.loads or self._start()
        owner = self.owner_of(key)
        if KERBEROS_PORT not in (key[1], key[3]):
            least = min(range(self.jobs), key=loads.__getitem__)
            if loads[owner] - loads[least] > BALANCE_SLACK:
                owner = least
        loads[owner] += 1.0
        return owner == self.index


@dataclass
class StreamResult:
    """Filled while `Pipeline.connections()` runs; complete once it is exhausted.

    orders: for a reader reading part of a capture (`Ownership`), where each
    anomaly was met (an `OrderKey` per item of `anomalies`); None otherwise."""

    captures: list[CaptureInfo] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    other_connections: int = 0
    # TLS connections whose HTTP could not be read (also in other_connections):
    # `not_read` counts them all, `encrypted` is its first NotReadTally.MAX_LISTED.
    not_read: NotReadTally = field(default_factory=NotReadTally)
    keylog: KeyLogCounts | None = None
    # The first connection id of each stream (see Pipeline.connections).
    stream_first_ids: list[int] = field(default_factory=list)
    http_anomalies: int = 0  # how many HTTP-layer anomalies were met, listed or not
    orders: list[OrderKey] | None = None
    # Each stream's KDC summary, set once reading ends (`kdc` combines them).
    kdc_streams: list[KdcSummary] = field(default_factory=list)

    @property
    def kdc(self) -> KdcSummary | None:
        """The KDC exchanges of every stream; None until reading ends."""
        return _combine_kdc(self.kdc_streams) if self.kdc_streams else None

    def add_anomalies(self, anomalies: Iterable[Anomaly], order: OrderKey) -> None:
        for anomaly in anomalies:
            self.anomalies.append(anomaly)
            if self.orders is not None:
                self.orders.append(order)

    def add_http_anomalies(self, anomalies: Iterable[Anomaly], order: OrderKey) -> None:
        """Every anomaly the HTTP layer recorded on a connection, up to a cap."""
        for anomaly in anomalies:
            self.http_anomalies += 1
            if self.http_anomalies <= MAX_HTTP_ANOMALIES:
                self.anomalies.append(anomaly)
                if self.orders is not None:
                    self.orders.append(order)

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
    """Reads captures and yields each TCP connection that carried HTTP when it
    closes, in order of connection id. Files read one after the other form one
    stream (frame numbers continue across files, as in a concatenating merge);
    files whose times overlap are separate streams (see `connections`)."""

    def __init__(
        self,
        progress: Progress | None = None,
        fast_lane: bool = True,
        keylog: KeyLog | None = None,
        read_options: ReadOptions = DEFAULT_READ,
        ownership: Ownership | None = None,
        jobs: int = 1,
        kdc_spool: Spool | None = None,
    ) -> None:
        """fast_lane: let lane.py take the frames whose only effect is counting,
        and the TLS layer count the records that only carry body bytes instead
        of decrypting them (the results are the same either way but for the
        TLS facts' records_opened / records_counted split; the tests compare them).
        keylog: TLS secrets (--tls-keylog); pcapng Decryption Secrets Blocks
        are added to it (or to a new one) as they are read.
        read_options: how the readers make frames (readers/base.py).
        ownership: read only this part of the captures (a worker process of
            parallel.py); None: all of them.
        jobs: how many processes `judged_connections` may read with
            (parallel.py decides whether it pays).
        kdc_spool: where the KDC messages go (a new spool per stream when
            None; a reader process is given the shared one its parent reads)."""
        self.result = StreamResult(orders=[] if ownership is not None else None)
        self.ownership = ownership
        self.jobs = jobs
        # Reader 0, or the only reader: it reports what is not one flow's.
        self._reads_capture = ownership is None or ownership.reads_capture
        self._finishing = False
        self._read_options = read_options
        self._keylog = keylog
        self._progress = progress
        self._fast_lane = fast_lane
        self._frames = 0
        self._stream = -1
        self._stream_end: float | None = None
        # The file being read (its name and the number its frame 1 has).
        self._reading: tuple[str, int] | None = None
        self._kdc_parts: list[KdcSummary] = []
        self._kdc_spool = kdc_spool
        self._bytes_total: int | None = None
        self._bytes_before = 0  # bytes of the inputs read before the current one
        self._open_stream(0)

    def sibling(
        self, ownership: Ownership, progress: Progress | None, kdc_spool: Spool | None = None
    ) -> Pipeline:
        """A pipeline with this one's settings that reads one part of the
        captures (a worker process of parallel.py), its KDC messages kept in
        `kdc_spool`."""
        return Pipeline(
            progress,
            self._fast_lane,
            self._keylog,
            self._read_options,
            ownership=ownership,
            kdc_spool=kdc_spool,
        )

    @property
    def progress(self) -> Progress | None:
        return self._progress

    @property
    def settled_below(self) -> int:
        """Every connection with a lower id has been handed on by `connections`
        (or is not this pipeline's to hand on); later ones will have this id or more."""
        return self._next_out

    def _open_stream(self, first_id: int) -> None:
        """Fresh state for a stream: its own decoder, reassembly, KDC tracking
        and connection ids (numbered on from `first_id`, so they stay unique)."""
        self._stream += 1
        self._stream_end = None
        self.result.stream_first_ids.append(first_id)
        self._decoder = PacketDecoder()
        self._duplicates = DuplicateFrames()
        owns = self.ownership.owns if self.ownership is not None else None
        self._tcp = TcpReassembler(first_id=first_id, owns=owns)
        # Where each TCP anomaly was met: (count before it, order) at each change.
        self._tcp_marks: list[tuple[int, tuple[int, int, int]]] = []
        self._lane = FastLane(self._tcp) if self._fast_lane else None
        self._kdc = KdcTracker(self._kdc_spool)
        self._live: dict[int, _Live] = {}
        self._done: dict[int, HttpConnection | None] = {}
        self._next_out = first_id

    def _close_stream(self) -> Iterator[HttpConnection]:
        """End the current stream: close what is open and keep what it learnt."""
        tcp = self._tcp
        before = len(tcp.anomalies)
        self._finishing = True
        for event in tcp.finish():
            self._on_event(event)
        self._finishing = False
        yield from self._drain()
        self._decoder.finish()
        kdc = self._kdc.finish()
        self._kdc_parts.append(kdc)
        result = self.result
        at = self._frames
        if self._reads_capture:
            duplicates = self._duplicates.summary().anomaly()
            if duplicates is not None:
                result.add_anomalies([duplicates], (at, STREAM_LISTS, (DUPLICATES, 0)))
            for n, anomaly in enumerate(self._decoder.anomalies):
                result.add_anomalies([anomaly], (at, STREAM_LISTS, (DECODER, n)))
        if result.orders is None:
            result.anomalies.extend(tcp.anomalies)
        else:
            marks = self._tcp_marks
            starts = [start for start, _order in marks]
            for n, anomaly in enumerate(tcp.anomalies):
                if n >= before or not marks:  # met while finishing: by connection id
                    where = (at, 1, anomaly.connection or 0)
                else:
                    where = marks[bisect_right(starts, n) - 1][1]
                result.add_anomalies([anomaly], (at, STREAM_LISTS, (TCP, where)))
        for n, anomaly in enumerate(kdc.anomalies):
            result.add_anomalies([anomaly], (at, STREAM_LISTS, (KDC, n)))
        if self._lane is not None:
            for n, anomaly in enumerate(self._lane.anomalies):
                result.add_anomalies([anomaly], (at, STREAM_LISTS, (LANE, n)))

    def connections(self, sources: Iterable[Source]) -> Iterator[HttpConnection]:
        """Yield finished HTTP connections. An unusable input becomes an anomaly;
        CaptureError is raised only when no input at all could be read.

        Files are read in the order they were written. A file that starts
        after the files before it ended continues their stream (a ring buffer);
        one that starts before they ended is another capture of the same time
        (another machine, another interface) and is analysed as a separate
        stream, so that connections of both are never mixed up."""
        problems: list[str] = []
        ordered = in_time_order_with_starts(list(sources))
        self._bytes_total = _total_size([source for source, _ in ordered])
        self._bytes_before = 0
        for source, start in ordered:
            if self._stream_end is not None and start is not None and start < self._stream_end:
                yield from self._close_stream()
                self._open_stream(self._tcp.next_id)
                if self._reads_capture:
                    self._note_overlap(source)
            read_before = len(self.result.captures)
            try:
                yield from self._read(source)
            except CaptureError as error:
                problems.append(str(error))
                if self._reads_capture:
                    self.result.add_anomalies(
                        [Anomaly(AnomalyKind.CAPTURE_UNREADABLE, str(error))],
                        (self._frames, AFTER_FILE, 1),
                    )
            if len(self.result.captures) > read_before:
                last = self.result.captures[-1].last_time
                if last is not None and (self._stream_end is None or last > self._stream_end):
                    self._stream_end = last
            self._bytes_before += _total_size([source]) or 0
        if not self.result.captures:
            raise CaptureError("; ".join(problems) or "no capture given")
        yield from self._close_stream()
        if self.ownership is None:  # else: once the parts are merged (parallel.py)
            self.result.finish_http_anomalies()
        if self._keylog is not None:
            self.result.keylog = self._keylog.counts
        self.result.kdc_streams = list(self._kdc_parts)

    def frame_name(self, number: int) -> str:
        """How a frame of a connection just yielded is named, as `analyze`
        names it (`Report.frame_name`): "#12", or "capture.pcap#12" (the file's
        own number) for the streams after the first. `connections` prints as
        it reads, before a later file can be known to overlap, so the first
        stream's frames are always "#12": the report's numbers, which are the
        first file's own while that stream is one file."""
        if self._stream <= 0:
            return f"#{number}"
        files = [(info.name, info.first_frame) for info in self.result.captures]
        if self._reading is not None and all(start != self._reading[1] for _n, start in files):
            files.append(self._reading)
        return file_frame_name(files, number)

    def _note_overlap(self, source: Source) -> None:
        name = source if isinstance(source, str) else getattr(source, "name", "<stream>")
        previous = self.result.captures[-1].name if self.result.captures else "the files before"
        self.result.add_anomalies(
            [
                Anomaly(
                    AnomalyKind.CAPTURE_OVERLAP,
                    f"{name} starts before {previous} ends: it is analysed as a separate stream "
                    "(its own connections; its frames are named by file)",
                )
            ],
            (self._frames, AFTER_STREAM, 0),
        )

    def _read(self, source: Source) -> Iterator[HttpConnection]:
        lane = self._lane
        # CaptureError propagates: nothing read yet.
        capture = open_capture(
            source,
            lane.walker_for if lane is not None else None,
            self._frames + 1,
            self._read_options,
        )
        name = source if isinstance(source, str) else getattr(source, "name", "<stream>")
        self._reading = (str(name), self._frames + 1)
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
        reads_capture = self._reads_capture
        ownership = self.ownership
        elsewhere = ownership is not None
        # A reader of part of the capture notes where each TCP anomaly was met.
        tcp_anomalies = tcp.anomalies if self.result.orders is not None else None
        tcp_marks = self._tcp_marks
        marked = len(tcp.anomalies)
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
                    if (
                        reads_capture
                        and packet.flags & (SYN | RST)
                        and KERBEROS_PORT in (packet.src_port, packet.dst_port)
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
                    if tcp_anomalies is not None and len(tcp_anomalies) != marked:
                        tcp_marks.append((marked, (frame.number, 0, 0)))
                        marked = len(tcp_anomalies)
                    if lane is not None:
                        # Once the connection's nature is known, its counting-only
                        # frames may skip all of this (lane.py).
                        live = live_connections.get(tcp.last_connection)  # type: ignore[arg-type]
                        if live is not None:
                            # The layer reading the connection's bytes says what
                            # the lane may skip (TLS records, or the application).
                            lane.offer(packet, live.opened.connection, live.tls or live.http)
                        if elsewhere and (live is None or packet.flags & _OPEN_CLOSE):
                            # A flow another reader reads: its frames need not
                            # even be decoded here (lane.py, offer_elsewhere).
                            lane.offer_elsewhere(packet)
                    if done:
                        yield from self._drain()
                elif (
                    (reads_capture or ownership is not None)
                    and isinstance(packet, UdpDatagram)
                    and (
                        packet.src_port == KERBEROS_PORT
                        or packet.dst_port == KERBEROS_PORT
                        or looks_like_kerberos(packet.payload)
                    )
                ):
                    if reads_capture:
                        kdc.receive_udp(packet)
                    if ownership is not None:
                        # Every reader notes it: reader 0's share of new flows shrinks.
                        ownership.note_kerberos()
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
            if self._reads_capture:
                self.result.add_anomalies(capture.anomalies, (self._frames, AFTER_FILE, 0))
            self.result.captures.append(
                CaptureInfo(
                    str(name),
                    capture.format,
                    count,
                    first,
                    last,
                    first_frame=self._frames - count + 1,
                    stream=self._stream,
                )
            )

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

    def _on_event(self, event: TcpEvent) -> None:
        if isinstance(event, ConnectionOpened):
            self._live[event.connection] = _Live(event)
            return
        if isinstance(event, ConnectionElsewhere):
            self._done[event.connection] = None  # another reader hands it on
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
            if live.stack is None:
                self._route(live, event)
        elif isinstance(event, StreamGap):
            live.gaps.append(GapMark(event.direction, event.length, event.frame))
        # StreamData, StreamGap, StreamEnd: the connection's stack decides.
        stack = live.stack
        if stack is Stack.TLS:
            self._through_tls(live, live.tls.feed(event))  # type: ignore[union-attr]
        elif stack is Stack.KERBEROS:
            self._kdc.receive_tcp(event)
        elif live.http is not None:
            live.exchanges.extend(live.http.feed(event))

    def _route(self, live: _Live, event: StreamData) -> None:
        """Build the layers of the connection's stack, which stack.py decides
        from its first bytes (either direction)."""
        opened = live.opened
        live.stack = stack = decide(
            opened.client.port, opened.server.port, event.data, start_seen=opened.syn_seen
        )
        if stack is Stack.KERBEROS:
            self._kdc.receive_tcp(opened)
        elif stack is Stack.TLS:
            live.tls = TlsConnection(opened.connection, self._keylog, self._fast_lane)
        else:
            live.http = self._application(stack, opened, event.direction)

    @staticmethod
    def _application(stack: Stack, opened: ConnectionOpened, client: Direction) -> Application:
        """The layer that reads an application stack's stream events: HTTP/2
        (http2/connection.py; `client`: the direction the client sends in, the
        preface's or the TLS ClientHello's) or the HTTP/1 tracker (which also
        hands an `Upgrade: h2c` connection on to HTTP/2)."""
        if stack is Stack.HTTP2:
            if not opened.syn_seen:
                # Begun before the capture: TCP's guess of the client stands
                # (the preface, if it comes first after all, agrees).
                return Http2Connection(opened.connection, start_unseen=True)
            return Http2Connection(opened.connection, client)
        return HttpConnectionTracker(opened.connection, opened.syn_seen)

    def _through_tls(self, live: _Live, events: list[StreamEvent]) -> None:
        """Decrypted stream events of a TLS connection into its application,
        made at the first decrypted byte (a connection whose records never
        open has none), as stack.decide_inner says from ALPN and content."""
        for event in events:
            if live.inner is None:
                if not isinstance(event, StreamData):
                    continue  # nothing decrypted yet: no HTTP to tell about
                tls = live.tls
                assert tls is not None
                stack = decide_inner(tls.alpn, event.data)
                live.inner = self._application(stack, live.opened, tls.client_direction)
                # The records that only carry what it would count need not be opened.
                tls.read_by(live.inner.lane_sink)
            live.exchanges.extend(live.inner.feed(event))

    def _close(self, live: _Live, event: ConnectionClosed) -> HttpConnection | None:
        if live.stack is Stack.KERBEROS:
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
        self.result.add_http_anomalies(live.http.anomalies, self._close_order(event))
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
            ),
            self._close_order(event) if self.result.orders is not None else None,
        )
        return None

    def _close_order(self, event: ConnectionClosed) -> OrderKey:
        """Where a connection's close falls in the run (`OrderKey`): at the
        frame that closed it, or at the stream's end in order of id."""
        if self._finishing:
            return (self._frames, AT_FINISH, event.connection)
        return (event.frame, AT_FRAME, 0)

    def _http_connection(
        self,
        live: _Live,
        tracker: Application,
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


def _combine_kdc(parts: list[KdcSummary]) -> KdcSummary:
    if len(parts) == 1:
        return parts[0]
    return KdcSummary(
        exchanges=tuple(e for part in parts for e in part.exchanges),
        unanswered=tuple(e for part in parts for e in part.unanswered),
        unanswered_connects=tuple(c for part in parts for c in part.unanswered_connects),
        anomalies=tuple(a for part in parts for a in part.anomalies),
        unreadable=tuple(u for part in parts for u in part.unreadable),
    )


def in_time_order(sources: list[Source]) -> list[Source]:
    """Files of a ring buffer in the order they were written (by first frame),
    whatever order they were named in; standard input and open files stay as given."""
    return [source for source, _ in in_time_order_with_starts(sources)]


def in_time_order_with_starts(sources: list[Source]) -> list[tuple[Source, float | None]]:
    """`in_time_order`, with each file's first time stamp (None when unknown:
    standard input, open files, unreadable files)."""
    if len(sources) < 2 or not all(isinstance(s, str | os.PathLike) and s != "-" for s in sources):
        return [(source, None) for source in sources]
    starts: dict[int, float] = {}
    for index, source in enumerate(sources):
        try:
            with open_capture(source) as capture:
                first = next(iter(capture), None)
        except (CaptureError, OSError):
            first = None
        starts[index] = first.timestamp if first is not None else float("inf")
    order = sorted(range(len(sources)), key=lambda i: (starts[i], i))
    return [(sources[i], starts[i] if starts[i] != float("inf") else None) for i in order]


def read_connections(
    sources: Iterable[Source],
    progress: Progress | None = None,
    keylog: KeyLog | None = None,
    read_options: ReadOptions = DEFAULT_READ,
) -> tuple[list[HttpConnection], StreamResult]:
    """All HTTP connections of the captures, with what was learnt on the way."""
    pipeline = Pipeline(progress, keylog=keylog, read_options=read_options)
    connections = list(pipeline.connections(sources))
    return connections, pipeline.result


def analyze(
    sources: Iterable[Source],
    progress: Progress | None = None,
    keylog: KeyLog | None = None,
    iis_log: Sequence[LogEntry] = (),
    read_options: ReadOptions = DEFAULT_READ,
    jobs: int = 1,
) -> Report:
    """Read the captures and judge every authentication handshake in them
    (TLS decrypted with `keylog` and any secrets the captures embed).

    iis_log: the server's W3C log lines, if given; each 401 they record is
    matched to its exchange, and the logged substatus is the strongest evidence
    the rules weigh (it wins over what the wire suggests).

    Captures analysed as separate streams (their times overlap) are linked and
    judged each on its own, then put side by side: a client in one capture is
    never taken for the same client in another, and every finding of each
    survives. Their frames are named by file in the findings' citations and
    words (`Report.frame_name`).

    jobs: read in up to that many worker processes (parallel.py: only regular
    files, where fork is available; the report is the same)."""
    # The judging layers are imported here, not at the top: `connections` and
    # the readers' users need only the reading half of this module.
    from authtrace.diagnose import Diagnosis, RuleContext
    from authtrace.handshake.links import WINDOW_HORIZON, KdcQuestions, join_links
    from authtrace.handshake.store import TimelineStore, stored_timelines
    from authtrace.report.summary import HostTally

    def tell(phase: Phase, done: int = 0, total: int | None = None) -> None:
        if progress is not None:
            progress(ProgressReport(phase, done, total))

    pipeline = Pipeline(progress, keylog=keylog, read_options=read_options, jobs=jobs)
    result = pipeline.result
    # Each connection is judged as it closes and linked over a sliding window
    # of capture time (one window per stream): no list of every connection.
    # The linked timelines go to one store (ids are unique across streams),
    # which spills them to disk past its budget (handshake/store.py).
    store = TimelineStore()
    windows: list[_StreamWindow] = []
    for stream, timeline in judged_connections(pipeline, sources):
        while len(windows) <= stream:
            if windows:
                windows[-1].finish(_stream_span(result.captures, len(windows) - 1)[1])
            windows.append(_StreamWindow(store))
        windows[stream].add(timeline)
    # Reading is over: what it kept for itself (the decoder's address names, the
    # reassembler, the readers) is not held through the rules and the report.
    del pipeline
    tell(Phase.LINKING)
    if windows:
        windows[-1].finish(_stream_span(result.captures, len(windows) - 1)[1])
    while len(windows) < len(result.stream_first_ids or [0]):
        windows.append(_StreamWindow(store))  # a stream without HTTP: nothing to link
    store.finish()
    # Stream s holds the ids from its first id to the next stream's.
    first_ids = result.stream_first_ids or [0]
    kdc = result.kdc
    exchanges = kdc.exchanges if kdc is not None else ()
    connects = kdc.unanswered_connects if kdc is not None else ()
    unreadable = kdc.unreadable if kdc is not None else ()
    captures = tuple(result.captures)
    several = len(windows) > 1
    streams: list[
        tuple[
            HandshakeView,
            tuple[_KdcExchange, ...],
            tuple[_KdcConnect, ...],
            tuple[_KdcUnreadable, ...],
        ]
    ] = []
    late = 0
    for stream, window in enumerate(windows):
        infos = [i for i in captures if i.stream == stream]
        start, end = _stream_span(captures, stream)
        # KDC exchanges belong to the stream whose frames hold them.
        first_frame = infos[0].first_frame if infos else 0
        last_frame = infos[-1].first_frame + infos[-1].frames if infos else 0

        def own(frame: int | None, low: int = first_frame, high: int = last_frame) -> bool:
            return not several or low <= (frame or 0) < high

        own_kdc = tuple(e for e in exchanges if own(e.request_frame or e.reply_frame))
        own_connects = tuple(c for c in connects if own(c.first_frame))
        own_unreadable = tuple(u for u in unreadable if own(u.frame))
        ids_from = first_ids[stream] if several and stream < len(first_ids) else None
        ids_below = first_ids[stream + 1] if several and stream + 1 < len(first_ids) else None
        stored = stored_timelines(store, ids_from, ids_below)
        view = join_links(window.blocks, start, end, own_kdc, stored, window.questions)
        window.questions = KdcQuestions()  # answered: not held through the rules
        late += window.late
        streams.append((view, own_kdc, own_connects, own_unreadable))
    if late:
        result.anomalies.append(
            Anomaly(
                AnomalyKind.LINKS_OUT_OF_TIME_ORDER,
                f"{counted(late, 'connection')} began before connections read earlier (time "
                f"stamps go back in the capture): {agreeing(late, 'its')} links to the "
                f"connections already judged when {agreeing(late, 'it', 'they')} came were not "
                "looked for (a connection is judged once the capture has gone "
                f"{WINDOW_HORIZON:.0f} s past its end)",
            )
        )
    views = [view for view, *_ in streams]
    whole = views[0] if len(views) == 1 else _side_by_side(views, stored_timelines(store))
    join = None
    logged: dict[tuple[int, int], LoggedLine] = {}
    if iis_log:
        from authtrace.iis.capture_log import join_log, logged_lines

        join = join_log(whole, iis_log)
        logged = logged_lines(join)
    # Counted in connections: those of the blocks whose per-block rules ran
    # (the capture-wide rules run last, the count full).
    connections = sum(len(block.own) for window in windows for block in window.blocks)
    judged = 0
    tell(Phase.DIAGNOSING, 0, connections)
    # With several streams a bare number would not say which file holds the
    # frame: the rules write it as the file's own ("ntlm-logon-failed.pcap#12").
    names = str if len(views) == 1 else partial(_file_frame_name, captures)
    diagnosis = Diagnosis()
    # The summary's counts, fed with each block's own timelines while its rules
    # hold them: the reports need not read every timeline back for them.
    tally = HostTally()
    for (view, own_kdc, own_connects, own_unreadable), window in zip(streams, windows, strict=True):
        # The per-block rules block by block (each with what it was linked
        # with), the rules that count across the capture over all of it.
        stream_context = RuleContext(
            view,
            kdc=own_kdc,
            kdc_connects=own_connects,
            iis_log=logged,
            frame_name=names,
            kdc_unreadable=own_unreadable,
        )
        # One block's context is the stream's: its rules read the stream's
        # view as it is, unless its timelines were spilled, when each rule's
        # walk would read them all back again (the store keeps a few chunks
        # loaded): then, like any block, from its context read once.
        one_block = len(window.blocks) == 1 and not store.has_spilled
        for block in window.blocks:
            if one_block:
                diagnosis.block(stream_context)
                for timeline in view.timelines:
                    tally.add(timeline, logged)
            else:
                around = stream_context.around(block.context)
                diagnosis.block(around, block.own)
                for timeline in around.view.timelines:
                    if timeline.connection.id in block.own:
                        tally.add(timeline, logged)
                # Not held while the next block's context is read.
                del around
            judged += len(block.own)
            tell(Phase.DIAGNOSING, judged, connections)
        diagnosis.capture(stream_context)
    findings, problems = diagnosis.finish()
    return Report(
        captures=captures,
        view=whole,
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
        tally=tally,
    )


def judged_connections(
    pipeline: Pipeline, sources: Iterable[Source]
) -> Iterator[tuple[int, ConnectionTimeline]]:
    """Every HTTP connection of the captures, judged on its own
    (`build_timeline`) as it closes, with the stream it belongs to, in
    connection order. This is the seam between reading and what `analyze`
    does with the judged connections (linking, rules, report): the reading
    half may be done elsewhere (other processes) as long as it yields the same
    pairs in the same order and leaves the same `pipeline.result`."""
    from authtrace.handshake.timeline import build_timeline

    inputs = list(sources)
    if pipeline.jobs > 1:
        from authtrace.parallel import judged_in_workers, splittable

        if splittable(inputs):
            yield from judged_in_workers(pipeline, inputs)
            return
    result = pipeline.result
    for connection in pipeline.connections(inputs):
        yield len(result.stream_first_ids) - 1, build_timeline(connection)


class _StreamWindow:
    """One stream's connections being linked (handshake/links.py LinkWindow)
    and the blocks of them already linked: each block's timelines go to
    `store` as it comes, the block keeps its links and connection ids
    (`LinkedBlock.without_timelines`)."""

    def __init__(self, store: TimelineStore) -> None:
        from authtrace.handshake.links import KdcQuestions, LinkWindow

        self.window = LinkWindow()
        self.store = store
        self.blocks: list[LinkedBlock] = []
        # The KDC links' questions, asked while each block holds its timelines.
        self.questions = KdcQuestions()

    @property
    def late(self) -> int:
        return self.window.late

    def add(self, timeline: ConnectionTimeline) -> None:
        self._keep(self.window.add(timeline))

    def finish(self, capture_end: float) -> None:
        self._keep(self.window.finish(capture_end))

    def _keep(self, block: LinkedBlock | None) -> None:
        if block is not None:
            self.questions.add(block.timelines)
            self.store.extend(block.timelines)
            self.blocks.append(block.without_timelines())


def _stream_span(captures: Sequence[CaptureInfo], stream: int) -> tuple[float, float]:
    """The first and last time stamps of a stream's captures (0.0 when none)."""
    times = [
        t
        for info in captures
        if info.stream == stream
        for t in (info.first_time, info.last_time)
        if t
    ]
    return min(times, default=0.0), max(times, default=0.0)


def _side_by_side(
    views: list[HandshakeView],
    stored: tuple[Sequence[ConnectionTimeline], Mapping[int, ConnectionTimeline]] | None = None,
) -> HandshakeView:
    """One view holding the views of separate streams (connection ids differ,
    and each stream's are above the previous one's). stored: the timelines of
    every stream, in id order and by id (handshake/store.py stored_timelines),
    when they are kept in a store; else they are gathered from the views."""
    from authtrace.handshake.links import HandshakeView, KdcLinks

    kdc_links = KdcLinks.joined([view.kdc_links for view in views])
    if stored is None:
        timelines: Sequence[ConnectionTimeline] = tuple(t for view in views for t in view.timelines)
        by_id: Mapping[int, ConnectionTimeline] = {t.connection.id: t for t in timelines}
    else:
        timelines, by_id = stored
    return HandshakeView(
        timelines=timelines,
        splits=tuple(s for view in views for s in view.splits),
        relayed=frozenset(r for view in views for r in view.relayed),
        capture_start=min(view.capture_start for view in views),
        capture_end=max(view.capture_end for view in views),
        by_id=by_id,
        kdc_links=kdc_links,
    )


def _file_frame_name(captures: tuple[CaptureInfo, ...], number: int) -> str:
    return frame_name(captures, number).removeprefix("#")


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
