"""Kerberos traffic to the KDC: a sans-IO tracker that pairs AS/TGS requests
with their replies over UDP and TCP, and keeps the evidence that a KDC could
not be reached.

This module owns port-88 (and content-recognised) Kerberos transport: TCP
record marking (RFC 4120 section 7.2.2), request/reply pairing (UDP by
address/port pair in FIFO order, TCP by connection in FIFO order), UDP
retransmission folding, unanswered requests and unanswered SYNs to port 88.

Invariants: no exception escapes a `receive_*` / `note_*` / `finish` call;
a TCP record is never longer than `MAX_RECORD` bytes in memory; bytes are
never invented across a stream gap (the partial record is dropped and the
stream resynchronised on the next record that looks like Kerberos); state is
kept only for open Kerberos connections and unanswered requests.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from authtrace.anomalies import Anomaly, AnomalyKind
from authtrace.auth.kinds import Message
from authtrace.auth.malformed import Malformed
from authtrace.kerberos import der
from authtrace.kerberos.der import DerError, TagClass
from authtrace.kerberos.fields import Labelled, dataclass_to_dict, render
from authtrace.kerberos.messages import KdcReply, KdcRequest, KrbError, decode_kerberos
from authtrace.net.packets import ACK, RST, SYN, TcpSegment, UdpDatagram
from authtrace.sharing import SharedTable
from authtrace.spool import Held, Spool
from authtrace.strict import internal_error
from authtrace.tcp.events import (
    ConnectionClosed,
    ConnectionOpened,
    Direction,
    Endpoint,
    StreamData,
    StreamEvent,
    StreamGap,
)

KERBEROS_PORT = 88
# RFC 4120 section 7.2.2 lets a KDC bound the record length; real replies
# are well under 64 KiB, so 1 MiB only stops hostile or misrouted streams.
MAX_RECORD = 1 << 20
RESERVED_BIT = 0x80000000
# Bytes needed to recognise a message from its first elements.
_RECOGNISE_BYTES = 24
# A non-88 TCP stream that is not recognised within this many bytes is not
# Kerberos.
_UNDECIDED_LIMIT = 64
MAX_PENDING = 10_000
MAX_SYN_ATTEMPTS = 10_000
MAX_ANOMALIES = 1_000
# Cut datagrams remembered for the rules (each is also an anomaly); past this
# the first ones are enough to say that Kerberos traffic was there.
MAX_UNREADABLE = 1_000

# APPLICATION tag numbers of messages a KDC exchange carries (RFC 4120 5.10).
_KDC_APPLICATION_TAGS = frozenset({10, 11, 12, 13, 14, 15, 30})


class Transport(enum.Enum):
    UDP = "udp"
    TCP = "tcp"


class KdcResult(enum.Enum):
    TICKET = "ticket"  # AS-REP / TGS-REP
    ERROR = "error"  # KRB-ERROR
    UNANSWERED = "unanswered"  # no reply before the connection or capture ended


# The facts every exchange keeps repeat (the same KDC, realm, service, offered
# enc-types, often the same client): one copy of each (sharing.py).
_ENDPOINTS: SharedTable[Endpoint] = SharedTable()
_TEXTS: SharedTable[str] = SharedTable()
_ETYPES: SharedTable[tuple[Labelled, ...]] = SharedTable(256)


def _text(text: str | None) -> str | None:
    return _TEXTS.share(text) if text is not None and len(text) <= 256 else text


# A KDC exchange's decoded request and reply, as `KdcExchange.messages` gives them.
KdcMessages = tuple[KdcRequest | None, KdcReply | KrbError | None]


@dataclass(frozen=True, slots=True, eq=False)
class Redecoded(Held[KdcMessages]):
    """An exchange's request and reply as the spool keeps them: their wire bytes
    (`raw`, None for a message not captured), decoded again when read.

    Decoding is deterministic, so `get` gives values equal to the ones the
    tracker decoded. Why not spool the decoded messages: a TGS-REQ with its
    TGT is some thirty frozen dataclasses, and pickling them cost about half
    as much again as decoding them (on a capture of Kerberos logons, one
    exchange per connection); bytes pickle as one copy, a third of the size.
    Pickled, the handle inside becomes its value (spool.py), so this stays
    self-contained too."""

    raw: Held[tuple[bytes | None, bytes | None]]

    def get(self) -> KdcMessages:
        last = _LAST_DECODED[0]
        if last is not None and last[0] is self:
            return last[1]
        request_raw, reply_raw = self.raw.get()
        request = decode_kerberos(request_raw) if request_raw is not None else None
        reply = decode_kerberos(reply_raw) if reply_raw is not None else None
        messages = (
            request if isinstance(request, KdcRequest) else None,
            reply if isinstance(reply, KdcReply | KrbError) else None,
        )
        _LAST_DECODED[0] = (self, messages)
        return messages


# The pair `Redecoded.get` decoded last, with its handle: a reader of an exchange
# asks for its request and then its reply (`KdcExchange.request`, `.reply`), and
# each would decode both. One pair, so memory holds no more than one exchange's.
_LAST_DECODED: list[tuple[Redecoded, KdcMessages] | None] = [None]


_NOT_RENDERED = frozenset({"messages"})


@dataclass(frozen=True, slots=True)
class KdcExchange:
    """One request to a KDC and its reply (either may be missing).

    request_type: AS_REQ or TGS_REQ (from the reply's type when the request
        was not captured; None for an orphan KRB-ERROR).
    client_principal: cname of the AS-REQ, else the cname the reply names
        (a TGS-REQ carries its client only inside the encrypted authenticator).
    realm: the request's realm (the service's realm), else the reply's.
    service: the requested sname ("krbtgt/REALM", "HTTP/web01.contoso.com").
    retransmissions: identical UDP requests (same nonce) folded into this one.
    connection: the TCP connection id for TCP exchanges.
    messages: the whole decoded request and reply (about 8 KB with tickets),
        which only --json prints: kept in the run's spool (authtrace.spool),
        read back by `request` and `reply`. The rules read the facts above.
    """

    transport: Transport
    client: Endpoint
    kdc: Endpoint
    request_type: Message | None
    client_principal: str | None
    realm: str | None
    service: str | None
    etypes: tuple[Labelled, ...]
    request_frame: int | None
    request_time: float | None
    reply_frame: int | None
    reply_time: float | None
    result: KdcResult
    ticket_etype: Labelled | None = None
    error_code: int | None = None
    error_name: str | None = None
    e_text: str | None = None
    connection: int | None = None
    retransmissions: int = 0
    messages: Held[KdcMessages] | None = None

    @property
    def request(self) -> KdcRequest | None:
        """The decoded request (read back from the spool), None if not captured."""
        return self.messages.get()[0] if self.messages is not None else None

    @property
    def reply(self) -> KdcReply | KrbError | None:
        """The decoded reply (read back from the spool), None if not captured."""
        return self.messages.get()[1] if self.messages is not None else None

    @property
    def time(self) -> float | None:
        """When the exchange was seen: its request's time, or its reply's when
        the request was not captured (cut by the snap length, lost in a gap): a
        reply alone still proves the client asked."""
        return self.request_time if self.request_time is not None else self.reply_time

    @property
    def spn(self) -> str | None:
        """The requested service principal without its realm, lower-cased: the
        form to compare ("http/web01.contoso.com")."""
        return self.service.split("@", 1)[0].lower() if self.service else None

    def serves(self, spn: str) -> bool:
        """Whether this exchange asked for that service principal (case-insensitive)."""
        return self.spn is not None and self.spn == spn.split("@", 1)[0].lower()

    def to_dict(self, show_secrets: bool = False) -> dict[str, Any]:
        out = dataclass_to_dict(self, show_secrets, skip=_NOT_RENDERED)
        request, reply = self.messages.get() if self.messages is not None else (None, None)
        out["request"] = render(request, show_secrets, 1)
        out["reply"] = render(reply, show_secrets, 1)
        out["client"] = str(self.client)
        out["kdc"] = str(self.kdc)
        return out


@dataclass(frozen=True, slots=True)
class KdcUnreadable:
    """A datagram to or from a KDC's port 88 that the capture cut (snap length,
    packet truncation), so its message could not be read: Kerberos traffic was
    there, what it said is not seen.

    client: the side that is not port 88; to_kdc: sent by the client (a
    request), else by the KDC (a reply); frame and time: where Wireshark shows it."""

    client: Endpoint
    kdc: Endpoint
    to_kdc: bool
    frame: int
    time: float


@dataclass(frozen=True, slots=True)
class KdcConnectAttempt:
    """TCP SYNs from one client port to a KDC's port 88.

    answered: a SYN-ACK came back; refused: a RST came back instead.
    """

    client: Endpoint
    kdc: Endpoint
    first_frame: int
    first_time: float
    last_frame: int
    syns: int
    answered: bool
    refused: bool


@dataclass(frozen=True, slots=True)
class KdcSummary:
    """What `finish()` returns.

    exchanges: every exchange, in order of its first frame.
    unanswered: the exchanges without a reply (also in `exchanges`).
    unanswered_connects: SYNs to port 88 never answered by a SYN-ACK
        (refused ones included, flagged) — KDC unreachable evidence.
    unreadable: datagrams to or from port 88 the capture cut, in frame order
        (Kerberos traffic whose message is not seen).
    """

    exchanges: tuple[KdcExchange, ...]
    unanswered: tuple[KdcExchange, ...]
    unanswered_connects: tuple[KdcConnectAttempt, ...]
    anomalies: tuple[Anomaly, ...]
    unreadable: tuple[KdcUnreadable, ...] = ()


def exchange_order(exchange: KdcExchange) -> tuple[int, int]:
    """The order of `KdcSummary.exchanges`: by first frame, then reply frame."""
    return (exchange.request_frame or exchange.reply_frame or 0, exchange.reply_frame or 0)


def looks_like_kerberos(data: bytes) -> bool:
    """True when `data` starts with a Kerberos KDC/AP message with pvno 5:
    either the message itself (UDP) or a TCP record (4-byte length first).

    Only the first elements are checked, so a partial record is recognised.
    """
    try:
        if _looks_like_message(data):
            return True
        if len(data) > 4:
            length = int.from_bytes(data[:4], "big")
            return 0 < length <= MAX_RECORD and _looks_like_message(data[4:])
    except Exception:  # noqa: BLE001 - a guess on hostile bytes never raises
        return False
    return False


def _looks_like_message(data: bytes) -> bool:
    try:
        outer = der.read_header(data)
        if outer.tag_class is not TagClass.APPLICATION or not outer.constructed:
            return False
        if outer.number not in _KDC_APPLICATION_TAGS:
            return False
        sequence = der.read_header(data, outer.content_start)
        if not (sequence.tag_class is TagClass.UNIVERSAL and sequence.number == der.SEQUENCE):
            return False
        # KDC-REQ numbers its fields from [1]; every other message from [0].
        first_field = 1 if outer.number in (10, 12) else 0
        pos = sequence.content_start
        values = []
        for expected in (first_field, first_field + 1):
            tag = der.read_header(data, pos)
            if tag.tag_class is not TagClass.CONTEXT or tag.number != expected:
                return False
            value = der.read_tlv(data, tag.content_start)
            values.append(der.decode_integer(value))
            pos = value.end
        return values == [5, outer.number]
    except DerError:
        return False


@dataclass(slots=True)
class _Pending:
    """A request waiting for its reply (mutable: retransmissions count up)."""

    transport: Transport
    client: Endpoint
    kdc: Endpoint
    request: KdcRequest
    frame: int
    timestamp: float
    connection: int | None = None
    retransmissions: int = 0


@dataclass(slots=True)
class _Direction:
    buffer: bytearray = field(default_factory=bytearray)
    resync: bool = False
    dead: bool = False
    first_frame: int = 0


@dataclass(slots=True)
class _Connection:
    client: Endpoint
    server: Endpoint
    kerberos: bool | None
    to_server: _Direction = field(default_factory=_Direction)
    to_client: _Direction = field(default_factory=_Direction)
    pending: deque[_Pending] = field(default_factory=deque)


@dataclass(slots=True)
class _Attempt:
    client: Endpoint
    kdc: Endpoint
    first_frame: int
    first_time: float
    last_frame: int
    syns: int = 1
    answered: bool = False
    refused: bool = False


class KdcTracker:
    """Feed UDP datagrams, TCP stream events and SYN segments; call `finish()`.

    `receive_udp` and `receive_tcp` return the exchanges they completed.
    spool: where the whole decoded messages of finished exchanges go (a new
    one by default); the exchanges themselves keep only their facts.
    """

    def __init__(self, spool: Spool | None = None) -> None:
        self._spool = spool if spool is not None else Spool()
        self._udp: dict[tuple[Endpoint, Endpoint], deque[_Pending]] = {}
        self._tcp: dict[int, _Connection] = {}
        self._attempts: dict[tuple[Endpoint, Endpoint], _Attempt] = {}
        self._exchanges: list[KdcExchange] = []
        self._anomalies: list[Anomaly] = []
        self._unreadable: list[KdcUnreadable] = []
        self._pending_count = 0
        self._finished: KdcSummary | None = None

    # --- UDP -------------------------------------------------------------

    def receive_udp(self, datagram: UdpDatagram) -> tuple[KdcExchange, ...]:
        try:
            return self._receive_udp(datagram)
        except Exception as exc:  # noqa: BLE001 - the pipeline must go on
            internal_error(exc)
            self._anomaly(
                AnomalyKind.KERBEROS_INTERNAL_ERROR, f"{type(exc).__name__}: {exc}", datagram.frame
            )
            return ()

    def _receive_udp(self, datagram: UdpDatagram) -> tuple[KdcExchange, ...]:
        on_port = KERBEROS_PORT in (datagram.src_port, datagram.dst_port)
        if not on_port and not looks_like_kerberos(datagram.payload):
            return ()
        src = Endpoint(datagram.src, datagram.src_port)
        dst = Endpoint(datagram.dst, datagram.dst_port)
        message = decode_kerberos(datagram.payload)
        if isinstance(message, Malformed):
            if datagram.missing:
                reason = f"Kerberos datagram cut by the capture ({datagram.missing} bytes missing)"
                if on_port and len(self._unreadable) < MAX_UNREADABLE:
                    to_kdc = dst.port == KERBEROS_PORT
                    client, kdc = (src, dst) if to_kdc else (dst, src)
                    self._unreadable.append(
                        KdcUnreadable(client, kdc, to_kdc, datagram.frame, datagram.timestamp)
                    )
            else:
                reason = message.reason
            self._anomaly(AnomalyKind.KERBEROS_MALFORMED, reason, datagram.frame)
            return ()
        if isinstance(message, KdcRequest):
            queue = self._udp.setdefault((src, dst), deque())
            for waiting in queue:
                # A UDP client resends the same request (same nonce) when
                # the KDC is slow; that is one exchange, not two.
                if waiting.request.nonce == message.nonce and waiting.request.raw == message.raw:
                    waiting.retransmissions += 1
                    return ()
            queue.append(
                _Pending(Transport.UDP, src, dst, message, datagram.frame, datagram.timestamp)
            )
            return self._count_pending()
        if isinstance(message, KdcReply | KrbError):
            replies_to = self._udp.get((dst, src))
            pending = replies_to.popleft() if replies_to else None
            if replies_to is not None and not replies_to:
                del self._udp[(dst, src)]
            if pending is not None:
                self._pending_count -= 1
            return (
                self._complete(
                    pending, message, datagram.frame, datagram.timestamp, Transport.UDP, dst, src
                ),
            )
        return ()

    # --- TCP -------------------------------------------------------------

    def receive_tcp(self, event: StreamEvent) -> tuple[KdcExchange, ...]:
        try:
            return self._receive_tcp(event)
        except Exception as exc:  # noqa: BLE001 - the pipeline must go on
            internal_error(exc)
            self._anomaly(
                AnomalyKind.KERBEROS_INTERNAL_ERROR,
                f"{type(exc).__name__}: {exc}",
                getattr(event, "frame", None),
                getattr(event, "connection", None),
            )
            return ()

    def _receive_tcp(self, event: StreamEvent) -> tuple[KdcExchange, ...]:
        if isinstance(event, ConnectionOpened):
            on_port = KERBEROS_PORT in (event.server.port, event.client.port)
            opened = _Connection(event.client, event.server, True if on_port else None)
            if not event.syn_seen:
                # Picked up mid-stream: the first bytes may be the middle of
                # a record, so wait for something that starts like one.
                opened.to_server.resync = opened.to_client.resync = True
            self._tcp[event.connection] = opened
            return ()
        conn = self._tcp.get(event.connection)
        if conn is None:
            return ()
        if isinstance(event, StreamData):
            return self._stream_data(event, conn)
        if isinstance(event, StreamGap):
            side = conn.to_server if event.direction is Direction.TO_SERVER else conn.to_client
            if conn.kerberos and not side.dead:
                if side.buffer:
                    self._anomaly(
                        AnomalyKind.KERBEROS_STREAM_GAP,
                        f"{event.length} bytes missing; partial Kerberos record dropped",
                        event.frame,
                        event.connection,
                    )
                side.buffer.clear()
                side.resync = True
            return ()
        if isinstance(event, ConnectionClosed):
            return self._close(event, conn)
        return ()

    def _stream_data(self, event: StreamData, conn: _Connection) -> tuple[KdcExchange, ...]:
        side = conn.to_server if event.direction is Direction.TO_SERVER else conn.to_client
        if conn.kerberos is False or side.dead:
            return ()
        if not side.buffer:
            side.first_frame = event.first_frame
        side.buffer += event.data
        if conn.kerberos is None:
            # Not port 88: recognise Kerberos by its first bytes (the
            # integrator may route any stream here).
            if looks_like_kerberos(bytes(side.buffer[: _RECOGNISE_BYTES + 4])):
                conn.kerberos = True
            elif len(side.buffer) >= _UNDECIDED_LIMIT or len(side.buffer) >= 4 + _RECOGNISE_BYTES:
                conn.kerberos = False
                conn.to_server.buffer.clear()
                conn.to_client.buffer.clear()
                return ()
            else:
                return ()
        done: list[KdcExchange] = []
        while True:
            if side.resync:
                if len(side.buffer) < 4 + _RECOGNISE_BYTES:
                    break
                if not looks_like_kerberos(bytes(side.buffer[: 4 + _RECOGNISE_BYTES])):
                    # Mid-record after a gap: these bytes cannot be placed.
                    side.buffer.clear()
                    break
                side.resync = False
            if len(side.buffer) < 4:
                break
            length = int.from_bytes(side.buffer[:4], "big")
            if length & RESERVED_BIT:
                # RFC 4120 section 7.2.2: the high bit is reserved for
                # extensions; nothing after it can be framed.
                self._dead(
                    side, AnomalyKind.KERBEROS_RECORD_RESERVED_BIT, event, "reserved high bit set"
                )
                break
            if length > MAX_RECORD:
                self._dead(
                    side, AnomalyKind.KERBEROS_RECORD_OVERSIZE, event, f"record of {length} bytes"
                )
                break
            if len(side.buffer) < 4 + length:
                break
            record = bytes(side.buffer[4 : 4 + length])
            del side.buffer[: 4 + length]
            done.extend(self._tcp_record(record, event, conn))
        return tuple(done)

    def _dead(self, side: _Direction, kind: AnomalyKind, event: StreamData, what: str) -> None:
        side.dead = True
        side.buffer.clear()
        self._anomaly(
            kind,
            f"Kerberos TCP {what} (limit {MAX_RECORD}); rest of this direction ignored",
            event.frame,
            event.connection,
        )

    def _tcp_record(
        self, record: bytes, event: StreamData, conn: _Connection
    ) -> tuple[KdcExchange, ...]:
        message = decode_kerberos(record)
        if isinstance(message, Malformed):
            self._anomaly(
                AnomalyKind.KERBEROS_MALFORMED, message.reason, event.frame, event.connection
            )
            return ()
        if event.direction is Direction.TO_SERVER and isinstance(message, KdcRequest):
            conn.pending.append(
                _Pending(
                    Transport.TCP,
                    conn.client,
                    conn.server,
                    message,
                    event.frame,
                    event.timestamp,
                    connection=event.connection,
                )
            )
            return self._count_pending()
        if event.direction is Direction.TO_CLIENT and isinstance(message, KdcReply | KrbError):
            pending = conn.pending.popleft() if conn.pending else None
            if pending is not None:
                self._pending_count -= 1
            exchange = self._complete(
                pending,
                message,
                event.frame,
                event.timestamp,
                Transport.TCP,
                conn.client,
                conn.server,
                event.connection,
            )
            return (exchange,)
        return ()

    def _close(self, event: ConnectionClosed, conn: _Connection) -> tuple[KdcExchange, ...]:
        del self._tcp[event.connection]
        if not conn.kerberos:
            return ()
        for direction, side in (
            (Direction.TO_SERVER, conn.to_server),
            (Direction.TO_CLIENT, conn.to_client),
        ):
            if side.buffer and not side.dead and not side.resync:
                self._anomaly(
                    AnomalyKind.KERBEROS_RECORD_INCOMPLETE,
                    f"connection ended inside a Kerberos record ({direction.value}, "
                    f"{len(side.buffer)} bytes buffered)",
                    event.frame,
                    event.connection,
                )
        for pending in conn.pending:
            self._pending_count -= 1
            self._exchanges.append(self._unanswered(pending))
        return ()

    # --- SYNs to port 88 ---------------------------------------------------

    def note_tcp_syn(self, segment: TcpSegment) -> None:
        """Record a SYN to port 88, or a SYN-ACK / RST from it."""
        try:
            src = Endpoint(segment.src, segment.src_port)
            dst = Endpoint(segment.dst, segment.dst_port)
            flags = segment.flags
            if flags & SYN and not flags & ACK and segment.dst_port == KERBEROS_PORT:
                attempt = self._attempts.get((src, dst))
                if attempt is None:
                    if len(self._attempts) >= MAX_SYN_ATTEMPTS:
                        return
                    self._attempts[(src, dst)] = _Attempt(
                        src, dst, segment.frame, segment.timestamp, segment.frame
                    )
                else:
                    attempt.syns += 1
                    attempt.last_frame = segment.frame
            elif segment.src_port == KERBEROS_PORT:
                attempt = self._attempts.get((dst, src))
                if attempt is None:
                    return
                if flags & SYN and flags & ACK:
                    attempt.answered = True
                elif flags & RST:
                    attempt.refused = True
        except Exception as exc:  # noqa: BLE001 - the pipeline must go on
            internal_error(exc)
            self._anomaly(AnomalyKind.KERBEROS_INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")

    # --- end -------------------------------------------------------------

    def finish(self) -> KdcSummary:
        """Close everything: pending requests become unanswered exchanges."""
        if self._finished is not None:
            return self._finished
        for conn in list(self._tcp.values()):
            for pending in conn.pending:
                self._exchanges.append(self._unanswered(pending))
            conn.pending.clear()
        self._tcp.clear()
        for queue in self._udp.values():
            for pending in queue:
                self._exchanges.append(self._unanswered(pending))
        self._udp.clear()
        self._pending_count = 0
        exchanges = sorted(self._exchanges, key=exchange_order)
        connects = tuple(
            KdcConnectAttempt(
                a.client,
                a.kdc,
                a.first_frame,
                a.first_time,
                a.last_frame,
                a.syns,
                a.answered,
                a.refused,
            )
            for a in self._attempts.values()
            if not a.answered
        )
        self._finished = KdcSummary(
            exchanges=tuple(exchanges),
            unanswered=tuple(e for e in exchanges if e.result is KdcResult.UNANSWERED),
            unanswered_connects=connects,
            anomalies=tuple(self._anomalies),
            unreadable=tuple(self._unreadable),
        )
        return self._finished

    # --- helpers -----------------------------------------------------------

    def _count_pending(self) -> tuple[KdcExchange, ...]:
        self._pending_count += 1
        if self._pending_count <= MAX_PENDING:
            return ()
        # Memory bound: give up on the oldest UDP request (reported unanswered).
        for key, queue in self._udp.items():
            if queue:
                oldest = queue.popleft()
                if not queue:
                    del self._udp[key]
                self._pending_count -= 1
                self._anomaly(
                    AnomalyKind.KERBEROS_TOO_MANY_PENDING,
                    f"more than {MAX_PENDING} Kerberos requests awaiting replies",
                    oldest.frame,
                )
                exchange = self._unanswered(oldest)
                self._exchanges.append(exchange)
                return (exchange,)
        return ()

    def _unanswered(self, pending: _Pending) -> KdcExchange:
        request = pending.request
        return KdcExchange(
            transport=pending.transport,
            client=_ENDPOINTS.share(pending.client),
            kdc=_ENDPOINTS.share(pending.kdc),
            request_type=request.message,
            client_principal=_text(str(request.cname) if request.cname is not None else None),
            realm=_text(request.realm),
            service=_text(request.spn),
            etypes=_ETYPES.share(request.etypes),
            request_frame=pending.frame,
            request_time=pending.timestamp,
            reply_frame=None,
            reply_time=None,
            result=KdcResult.UNANSWERED,
            connection=pending.connection,
            retransmissions=pending.retransmissions,
            messages=Redecoded(self._spool.put((request.raw, None))),
        )

    def _complete(
        self,
        pending: _Pending | None,
        reply: KdcReply | KrbError,
        frame: int,
        timestamp: float,
        transport: Transport,
        client: Endpoint,
        kdc: Endpoint,
        connection: int | None = None,
    ) -> KdcExchange:
        request = pending.request if pending is not None else None
        if request is None:
            self._anomaly(
                AnomalyKind.KERBEROS_REPLY_WITHOUT_REQUEST,
                f"{reply.message.value} from {kdc} with no request captured",
                frame,
                connection,
            )
        if isinstance(reply, KdcReply):
            reply_client: str | None = str(reply.cname)
            reply_realm: str | None = reply.crealm
            reply_service: str | None = str(reply.ticket.sname)
            inferred = Message.AS_REQ if reply.message is Message.AS_REP else Message.TGS_REQ
        else:
            reply_client = str(reply.cname) if reply.cname is not None else None
            reply_realm = reply.realm
            reply_service = str(reply.sname) if reply.sname is not None else None
            inferred = None
        if request is not None and request.cname is not None:
            client_principal: str | None = str(request.cname)
        else:
            client_principal = reply_client
        exchange = KdcExchange(
            transport=transport,
            client=_ENDPOINTS.share(client),
            kdc=_ENDPOINTS.share(kdc),
            request_type=request.message if request is not None else inferred,
            client_principal=_text(client_principal),
            realm=_text(request.realm if request is not None else reply_realm),
            service=_text((request.spn if request is not None else None) or reply_service),
            etypes=_ETYPES.share(request.etypes) if request is not None else (),
            request_frame=pending.frame if pending is not None else None,
            request_time=pending.timestamp if pending is not None else None,
            reply_frame=frame,
            reply_time=timestamp,
            result=KdcResult.TICKET if isinstance(reply, KdcReply) else KdcResult.ERROR,
            ticket_etype=reply.ticket.enc_part.etype if isinstance(reply, KdcReply) else None,
            error_code=reply.error_code if isinstance(reply, KrbError) else None,
            error_name=reply.error_name if isinstance(reply, KrbError) else None,
            e_text=reply.e_text if isinstance(reply, KrbError) else None,
            connection=connection,
            retransmissions=pending.retransmissions if pending is not None else 0,
            messages=Redecoded(
                self._spool.put((request.raw if request is not None else None, reply.raw))
            ),
        )
        self._exchanges.append(exchange)
        return exchange

    def _anomaly(
        self,
        kind: AnomalyKind,
        message: str,
        frame: int | None = None,
        connection: int | None = None,
    ) -> None:
        if len(self._anomalies) < MAX_ANOMALIES:
            self._anomalies.append(Anomaly(kind, message, frame, connection))
        elif len(self._anomalies) == MAX_ANOMALIES:
            self._anomalies.append(
                Anomaly(
                    AnomalyKind.KERBEROS_ANOMALIES_SUPPRESSED,
                    "further Kerberos anomalies not listed",
                )
            )
