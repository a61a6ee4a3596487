"""One TLS connection, sans-IO: the two directions' stream events in, the
decrypted application data out as the same stream events, for the HTTP layer.

Owns: record framing per direction (RFC 8446 section 5.1, RFC 5246 section
6.2.1), which keys protect which records when (the ChangeCipherSpec of TLS
1.2, the handshake and application traffic secrets and KeyUpdate of TLS 1.3,
a HelloRetryRequest), the handshake facts (`TlsFacts`) and the connection's
TLS anomalies.

Invariants:
- bytes are never invented: what comes out as `StreamData` is plaintext that
  a record's tag or MAC verified; a record that did not open, a TCP gap, a
  record cut by the end of the capture come out as `StreamGap` (its plaintext
  length when the cipher tells it exactly, else UNKNOWN_LENGTH);
- a record that did not open is "not seen", never "not sent": it is counted
  and reported (`tls-record-undecryptable`), and the connection stays listed;
- memory per direction: one record (MAX_RECORD) plus one handshake message
  (handshake.MAX_MESSAGE);
- a record is counted without being decrypted only where nothing but its
  plaintext length matters and the format fixes it: TLS 1.2 AEAD application
  data (RFC 5246 section 6.2.3.3, RFC 7905) whose plaintext the application
  reading the direction says it would only count (its LaneSink); TLS 1.3
  records hide their type and padding (RFC 8446 section 5.2) and CBC records
  their padding, so those are always decrypted. A counted record's integrity
  is not checked (the tag is not verified): it changes no HTTP message, only a
  body's byte count, which its header fixes.
Fast lane: `lane_sink` gives, per direction, the bytes the normal path would
only append to an unfinished record (any suite), and everything once the
connection is `opaque`.
Frames: a record's plaintext carries the frame that completed the record
(where Wireshark shows what it decrypted) and the frame of its first byte.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING

from authtrace.anomalies import Anomaly, AnomalyKind
from authtrace.tcp.events import (
    SKIP_ALL,
    Direction,
    LaneSink,
    StreamData,
    StreamEnd,
    StreamEvent,
    StreamGap,
)
from authtrace.tls import handshake as hs
from authtrace.tls.keylog import KeyLog, Label
from authtrace.tls.model import KeyStatus, TlsFacts
from authtrace.tls.suites import SUITES, Suite, suite_name
from authtrace.words import agreeing, counted

if TYPE_CHECKING:
    from authtrace.tls.protection import RecordOpener

# RFC 5246 section 6.2.3: a TLSCiphertext fragment is at most 2^14 + 2048
# bytes (TLS 1.3 allows less, 2^14 + 256, section 5.2).
MAX_FRAGMENT = 2**14 + 2048
HEADER = 5
# The length of a hole whose plaintext size is unknown: larger than anything
# a reader could count, so the HTTP parser resynchronises instead of skipping.
UNKNOWN_LENGTH = 2**62

CHANGE_CIPHER_SPEC = 20
ALERT = 21
HANDSHAKE = 22
APPLICATION_DATA = 23
HEARTBEAT = 24

_VERSIONS = {
    0x0300: "SSL 3.0",
    0x0301: "TLS 1.0",
    0x0302: "TLS 1.1",
    0x0303: "TLS 1.2",
    0x0304: "TLS 1.3",
}


_CRYPTO: tuple[ModuleType, ModuleType] | None = None


def _crypto() -> tuple[ModuleType, ModuleType]:
    """protection and schedule, which import `cryptography` (0.2 s): loaded
    when there are keys, then kept (an import statement per record cost 57 us)."""
    global _CRYPTO
    if _CRYPTO is None:
        from authtrace.tls import protection, schedule

        _CRYPTO = (protection, schedule)
    return _CRYPTO


def version_name(version: int) -> str:
    return _VERSIONS.get(version, f"UNKNOWN (0x{version:04x})")


def looks_like_tls(data: bytes) -> bool:
    """The first bytes of a direction are a TLS record header: content type
    20-23, major version 3, a plausible length (RFC 8446 section 5.1). A
    cleartext HTTP message never starts with a byte below 0x20."""
    return (
        len(data) >= HEADER
        and CHANGE_CIPHER_SPEC <= data[0] <= APPLICATION_DATA
        and data[1] == 3
        and data[2] <= 4
        and 0 < int.from_bytes(data[3:5], "big") <= MAX_FRAGMENT
    )


class _Side:
    """One direction's record state."""

    __slots__ = (
        "buffer",
        "start_frame",
        "handshake",
        "opener",
        "pending",
        "protected",
        "secret",
        "lost",
        "lost_bytes",
        "record_version",
        "failed",
        "finished",
    )

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.start_frame = 0
        self.handshake = bytearray()
        self.opener: RecordOpener | None = None
        self.pending: RecordOpener | None = None  # TLS 1.2: takes over at ChangeCipherSpec
        self.protected = False  # TLS 1.2: a ChangeCipherSpec was sent this way
        self.secret = b""  # TLS 1.3: the current application traffic secret
        self.lost = False  # framing lost (gap, garbage): nothing more is read this way
        self.lost_bytes = 0  # > 0: after a gap of that many bytes, looking for records again
        self.record_version = b""  # the version bytes of this direction's last record
        self.failed = 0
        self.finished = False  # TLS 1.3: this side's Finished was seen


class TlsConnection:
    """Feed a connection's StreamData / StreamGap / StreamEnd events (in the
    order reassembly yields them) to `feed`; it returns the decrypted stream
    events for the HTTP layer. `facts()` and `anomalies` say what happened.
    `opaque` is True once nothing more can be decrypted on the connection
    (its remaining records need not be read)."""

    def __init__(self, connection: int, keylog: KeyLog | None, count_bodies: bool = True) -> None:
        """count_bodies: count the TLS 1.2 AEAD records that only carry body
        bytes instead of decrypting them (module docstring), once `read_by`
        named the application reading the plaintext."""
        self.connection = connection
        self.anomalies: list[Anomaly] = []
        self._keylog = keylog
        self._sides = {Direction.TO_SERVER: _Side(), Direction.TO_CLIENT: _Side()}
        self._client: Direction | None = None  # the direction that sent the ClientHello
        self._hello: hs.ClientHello | None = None
        self._server_hello: hs.ServerHello | None = None
        self._suite: Suite | None = None
        self._version = 0
        self._alpn = ""
        self._certificates: tuple[bytes, ...] = ()
        self._status = KeyStatus.NO_KEY_LOG if keylog is None else KeyStatus.PENDING
        self._opened = 0
        self._key_updates = 0
        self._resumed = False
        self.opaque = False
        self._count_bodies = count_bodies
        self._reader: Callable[[Direction], LaneSink | None] | None = None
        self._counted = 0
        self._lane_sinks = {
            direction: _UnfinishedRecord(self, side) for direction, side in self._sides.items()
        }

    @property
    def alpn(self) -> str:
        """The protocol the server chose by ALPN ("" until known, or none)."""
        return self._alpn

    def lane_sink(self, direction: Direction) -> LaneSink | None:
        """What the fast lane may skip (tcp/events.py LaneSink): everything
        once the connection is `opaque`, else the bytes of `direction` that
        only fill an unfinished record (`_UnfinishedRecord`)."""
        return SKIP_ALL if self.opaque else self._lane_sinks[direction]

    def lane_pays(self) -> bool:
        """Whether the fast lane is worth opening (lane.py LaneOwner): always,
        as records span segments (up to 16 KB over segments of an MSS), so the
        segments inside one are only counted or kept without being opened."""
        return True

    def read_by(self, lane_sink: Callable[[Direction], LaneSink | None]) -> None:
        """The application reading the plaintext, as the question it answers:
        what of a direction's next plaintext it would only count."""
        self._reader = lane_sink

    # -- entry point -----------------------------------------------------------------

    def feed(self, event: StreamEvent) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if isinstance(event, StreamData):
            self._data(event, out)
        elif isinstance(event, StreamGap):
            self._gap(event, out)
        elif isinstance(event, StreamEnd):
            self._end(event, out)
        return out

    @property
    def client_direction(self) -> Direction:
        """The direction that sent the ClientHello (TO_SERVER until one is seen)."""
        return self._client or Direction.TO_SERVER

    def facts(self) -> TlsFacts:
        hello, server = self._hello, self._server_hello
        status = self._status
        if status is KeyStatus.PENDING and self._opened:
            status = KeyStatus.DECRYPTED
        elif status is KeyStatus.PENDING and hello is None:
            status = KeyStatus.NO_HANDSHAKE
        failed = sum(side.failed for side in self._sides.values())
        return TlsFacts(
            version=version_name(self._version) if server is not None else "",
            cipher_suite=suite_name(server.cipher_suite) if server is not None else "",
            server_name=hello.server_name if hello is not None else "",
            alpn_offered=hello.alpn if hello is not None else (),
            alpn=self._alpn,
            certificates=self._certificates,
            client_random=hello.random.hex() if hello is not None else "",
            keys=status,
            records_opened=self._opened,
            records_failed=failed,
            records_counted=self._counted,
            key_updates=self._key_updates,
            resumed=self._resumed,
        )

    # -- directions ------------------------------------------------------------------

    def _data(self, event: StreamData, out: list[StreamEvent]) -> None:
        side = self._sides[event.direction]
        if side.lost:
            return
        if not side.buffer:
            side.start_frame = event.first_frame
        side.buffer += event.data
        buffer = side.buffer
        if side.lost_bytes and not self._resynchronise(event, side):
            return
        while len(buffer) >= HEADER:
            content_type = buffer[0]
            length = int.from_bytes(buffer[3:5], "big")
            if not (CHANGE_CIPHER_SPEC <= content_type <= HEARTBEAT and buffer[1] == 3):
                self._lose(event.direction, side, "bytes that are not a TLS record", event, out)
                return
            if length > MAX_FRAGMENT:
                self._lose(event.direction, side, f"a record of {length} bytes", event, out)
                return
            if len(buffer) < HEADER + length:
                break
            version = bytes(buffer[1:3])
            side.record_version = version
            payload = bytes(buffer[HEADER : HEADER + length])
            del buffer[: HEADER + length]
            self._record(event, side, content_type, version, payload, out)
            side.start_frame = event.frame
            if side.lost:
                return

    def _gap(self, event: StreamGap, out: list[StreamEvent]) -> None:
        side = self._sides[event.direction]
        if side.lost:
            return
        side.buffer.clear()
        opener = side.opener
        # Records are looked for again only where the next one's keys are known
        # and its sequence number can be searched: application data under AEAD
        # or CBC with explicit IVs (TLS 1.0's chained IV died in the gap).
        resumable = (
            opener is not None
            and (opener.suite.aead or opener.version >= 0x0302)
            and (side.protected or side.finished)
        )
        if resumable:
            side.lost_bytes += event.length
            later = "records are looked for again after it"
        else:
            side.lost = True
            later = "its later records cannot be framed"
        self._anomaly(
            AnomalyKind.TLS_GAP,
            f"{event.length} bytes of the {self._role(event.direction)}'s TLS stream were not "
            f"captured: {later} (what it held is not seen, not necessarily not sent)",
            event.frame,
        )
        out.append(self._hole(event.direction, UNKNOWN_LENGTH, event.frame, event.timestamp))

    def _resynchronise(self, event: StreamData, side: _Side) -> bool:
        """After a gap: find the first whole record in the buffer that opens
        with this direction's keys at some later sequence number, and drop the
        bytes before it. True when found (framing goes on from there)."""
        buffer = side.buffer
        opener = side.opener
        assert opener is not None
        version = side.record_version or b"\x03\x03"
        start = 0
        while True:
            position = buffer.find(bytes([APPLICATION_DATA]) + version, start)
            if position < 0 or len(buffer) - position < HEADER:
                break
            length = int.from_bytes(buffer[position + 3 : position + 5], "big")
            if 0 < length <= MAX_FRAGMENT and len(buffer) - position >= HEADER + length:
                payload = bytes(buffer[position + HEADER : position + HEADER + length])
                found = opener.find_sequence(
                    APPLICATION_DATA,
                    version,
                    payload,
                    _candidates(opener, side.lost_bytes, payload),
                )
                if found is not None:
                    del buffer[:position]
                    lost_records = found - opener.sequence
                    opener.sequence = found
                    side.lost_bytes = 0
                    side.start_frame = event.frame
                    self._anomaly(
                        AnomalyKind.TLS_RESYNCHRONISED,
                        f"the {self._role(event.direction)}'s TLS records were found again after "
                        f"the gap: {counted(lost_records, 'record')} "
                        f"{agreeing(lost_records, 'was')} lost in it",
                        event.frame,
                    )
                    return True
            elif 0 < length <= MAX_FRAGMENT:
                break  # a candidate still arriving: wait for more bytes
            start = position + 1
        # Keep only what may still hold the start of a record.
        if len(buffer) > HEADER + MAX_FRAGMENT:
            del buffer[: len(buffer) - HEADER - MAX_FRAGMENT]
        return False

    def _end(self, event: StreamEnd, out: list[StreamEvent]) -> None:
        side = self._sides[event.direction]
        if side.buffer and not side.lost:
            self._anomaly(
                AnomalyKind.TLS_RECORD_TRUNCATED,
                f"the {self._role(event.direction)}'s last TLS record is cut "
                f"({len(side.buffer)} bytes of it captured)",
                event.frame,
            )
            side.buffer.clear()
            out.append(self._hole(event.direction, UNKNOWN_LENGTH, event.frame, event.timestamp))
        out.append(event)

    def _lose(
        self,
        direction: Direction,
        side: _Side,
        what: str,
        event: StreamData,
        out: list[StreamEvent],
    ) -> None:
        side.lost = True
        side.buffer.clear()
        self._anomaly(
            AnomalyKind.TLS_RECORD_MALFORMED,
            f"the {self._role(direction)}'s TLS stream holds {what}: the rest of that "
            "direction cannot be read",
            event.frame,
        )
        out.append(self._hole(direction, UNKNOWN_LENGTH, event.frame, event.timestamp))

    # -- records ---------------------------------------------------------------------

    def _record(
        self,
        event: StreamData,
        side: _Side,
        content_type: int,
        version: bytes,
        payload: bytes,
        out: list[StreamEvent],
    ) -> None:
        direction = event.direction
        if content_type == APPLICATION_DATA and not self._has_keys():
            # Application data and no key to open anything: the handshake facts
            # are in, nothing more can be learnt from this connection.
            if self._status is KeyStatus.PENDING:
                self._status = KeyStatus.NO_HANDSHAKE
            self.opaque = True
            return
        tls13 = self._suite is not None and self._suite.tls13
        protected = side.protected or (tls13 and content_type == APPLICATION_DATA)
        if not protected:
            if content_type == HANDSHAKE:
                self._handshake_bytes(direction, side, payload, event)
            elif content_type == CHANGE_CIPHER_SPEC and not tls13:
                # RFC 5246 section 7.1: later records of this direction use the
                # pending keys, sequence numbers from 0.
                side.protected = True
                side.opener = side.pending
                side.pending = None
            elif content_type == APPLICATION_DATA:
                # Keys are ready but this direction sent no ChangeCipherSpec:
                # not TLS as RFC 5246 section 7.1 has it; not read as plaintext.
                self._failed(direction, side, event, len(payload), "sent before ChangeCipherSpec")
            return
        if side.opener is None:
            # Protected, and no keys: the status says why (missing key, no hello...).
            if self._status is KeyStatus.PENDING and self._keylog is not None:
                self._status = KeyStatus.NO_HANDSHAKE if self._hello is None else self._status
            self._check_opaque()
            if content_type == APPLICATION_DATA and self._status is not KeyStatus.NO_KEY_LOG:
                out.append(self._hole(direction, UNKNOWN_LENGTH, event.frame, event.timestamp))
            return
        if content_type == APPLICATION_DATA and self._count_only(event, side, payload):
            return
        protection, _ = _crypto()
        try:
            inner_type, plain = side.opener.open(content_type, version, payload)
        except protection.ProtectionError as error:
            self._failed(
                direction, side, event, self._plain_length(side.opener, payload), str(error)
            )
            out.append(
                self._hole(
                    direction,
                    self._plain_length(side.opener, payload),
                    event.frame,
                    event.timestamp,
                )
            )
            return
        self._opened += 1
        if inner_type == APPLICATION_DATA:
            if plain:
                out.append(
                    StreamData(
                        self.connection,
                        direction,
                        plain,
                        side.start_frame,
                        event.frame,
                        event.timestamp,
                    )
                )
        elif inner_type == HANDSHAKE:
            self._handshake_bytes(direction, side, plain, event)
        elif inner_type == ALERT and len(plain) >= 2 and plain[0] == 2:
            self._anomaly(
                AnomalyKind.TLS_ALERT,
                f"the {self._role(direction)} sent a fatal TLS alert ({plain[1]})",
                event.frame,
            )

    def _count_only(self, event: StreamData, side: _Side, payload: bytes) -> bool:
        """Count a protected application-data record instead of decrypting it,
        where the module docstring allows: True when counted (its sequence
        number is used up as `open` would)."""
        reader = self._reader
        opener = side.opener
        if reader is None or not self._count_bodies or opener is None:
            return False
        length = self._plain_length(opener, payload)
        if length == UNKNOWN_LENGTH:
            return False
        sink = reader(event.direction)
        if sink is None or not sink.count_only(b"", 0, length, event.frame, event.timestamp):
            return False
        opener.sequence += 1
        self._counted += 1
        return True

    @staticmethod
    def _plain_length(opener: RecordOpener, payload: bytes) -> int:
        """The plaintext length of a record that did not open, where the format
        fixes it (TLS 1.2 AEAD); UNKNOWN_LENGTH otherwise (TLS 1.3 padding, CBC)."""
        suite = opener.suite
        if suite.tls13 or not suite.aead:
            return UNKNOWN_LENGTH
        explicit = 0 if suite.fixed_iv_length == 12 else 8
        return max(0, len(payload) - explicit - suite.tag_length)

    def _failed(
        self, direction: Direction, side: _Side, event: StreamData, length: int, reason: str
    ) -> None:
        side.failed += 1
        if side.failed == 1:
            self._anomaly(
                AnomalyKind.TLS_RECORD_UNDECRYPTABLE,
                f"a TLS record from the {self._role(direction)} did not decrypt ({reason}); "
                "its content is not seen (later failures on this direction are counted in "
                "the connection's TLS facts)",
                event.frame,
            )
        if self._opened == 0 and self._status is KeyStatus.PENDING:
            self._status = KeyStatus.WRONG_KEY

    # -- handshake -------------------------------------------------------------------

    def _handshake_bytes(
        self, direction: Direction, side: _Side, data: bytes, event: StreamData
    ) -> None:
        side.handshake += data
        try:
            messages = hs.split_messages(side.handshake)
        except hs.HandshakeError as error:
            side.handshake.clear()
            self._anomaly(AnomalyKind.TLS_HANDSHAKE_MALFORMED, str(error), event.frame)
            return
        for message in messages:
            try:
                self._message(direction, side, message)
            except hs.HandshakeError as error:
                self._anomaly(AnomalyKind.TLS_HANDSHAKE_MALFORMED, str(error), event.frame)

    def _message(self, direction: Direction, side: _Side, message: hs.Message) -> None:
        kind = message.type
        if kind == hs.HandshakeType.CLIENT_HELLO:
            self._hello = hs.decode_client_hello(message.body)
            self._client = direction
        elif kind == hs.HandshakeType.SERVER_HELLO:
            server = hs.decode_server_hello(message.body)
            if server.retry:
                return  # RFC 8446 section 4.1.4: a second ClientHello follows
            self._server_hello = server
            self._version = server.version
            self._alpn = server.alpn or self._alpn
            # TLS 1.2: the server echoed the session id (RFC 5246 section
            # 7.4.1.3); TLS 1.3: it chose a pre-shared key (RFC 8446 section 2.2).
            self._resumed = server.psk or bool(
                self._hello is not None
                and server.session_id
                and server.session_id == self._hello.session_id
                and server.version < hs.TLS13
            )
            self._install_keys(server)
        elif kind == hs.HandshakeType.ENCRYPTED_EXTENSIONS:
            self._alpn = hs.decode_encrypted_extensions(message.body) or self._alpn
        elif kind == hs.HandshakeType.CERTIFICATE and direction is not self._client:
            tls13 = self._version == hs.TLS13
            self._certificates = hs.decode_certificate(message.body, tls13) or self._certificates
        elif kind == hs.HandshakeType.FINISHED and self._version == hs.TLS13 and not side.finished:
            # RFC 8446 section 7.1: after its Finished a side sends with its
            # application traffic secret.
            side.finished = True
            self._application_keys(direction, side)
        elif kind == hs.HandshakeType.KEY_UPDATE and self._version == hs.TLS13:
            hs.decode_key_update(message.body)
            if side.opener is not None and side.secret and self._suite is not None:
                protection, schedule = _crypto()
                side.secret = schedule.next_traffic_secret(self._suite, side.secret)
                side.opener = protection.RecordOpener(
                    self._suite, self._version, schedule.tls13_keys(self._suite, side.secret)
                )
                self._key_updates += 1

    def _install_keys(self, server: hs.ServerHello) -> None:
        """At the ServerHello: look the client random up and prepare the keys."""
        hello = self._hello
        keylog = self._keylog
        if hello is None:
            self._status = KeyStatus.NO_HANDSHAKE
            return
        suite = SUITES.get(server.cipher_suite)
        if suite is None or server.version < 0x0301 or suite.tls13 != (server.version == hs.TLS13):
            self._status = KeyStatus.UNSUPPORTED
            self._anomaly(
                AnomalyKind.TLS_UNSUPPORTED,
                f"{version_name(server.version)} with {suite_name(server.cipher_suite)}: "
                "authtrace cannot decrypt this connection",
            )
            self._suite = None
            return
        self._suite = suite
        if keylog is None:
            self._status = KeyStatus.NO_KEY_LOG
            return
        protection, schedule = _crypto()
        client = self._client or Direction.TO_SERVER
        server_side = self._sides[_other(client)]
        client_side = self._sides[client]
        if suite.tls13:
            secrets = (
                keylog.get(Label.CLIENT_HANDSHAKE_TRAFFIC_SECRET, hello.random),
                keylog.get(Label.SERVER_HANDSHAKE_TRAFFIC_SECRET, hello.random),
            )
            if None in secrets:
                self._missing(
                    hello, "CLIENT_HANDSHAKE_TRAFFIC_SECRET / SERVER_HANDSHAKE_TRAFFIC_SECRET"
                )
                return
            client_secret, server_secret = secrets
            assert client_secret is not None and server_secret is not None
            client_side.opener = protection.RecordOpener(
                suite, server.version, schedule.tls13_keys(suite, client_secret)
            )
            server_side.opener = protection.RecordOpener(
                suite, server.version, schedule.tls13_keys(suite, server_secret)
            )
            self._status = KeyStatus.PENDING
            return
        master = keylog.get(Label.CLIENT_RANDOM, hello.random)
        if master is None:
            self._missing(hello, "CLIENT_RANDOM")
            return
        client_keys, server_keys = schedule.tls12_keys(
            server.version, suite, master, hello.random, server.random
        )
        etm = server.encrypt_then_mac and not suite.aead
        client_side.pending = protection.RecordOpener(suite, server.version, client_keys, etm)
        server_side.pending = protection.RecordOpener(suite, server.version, server_keys, etm)
        self._status = KeyStatus.PENDING

    def _application_keys(self, direction: Direction, side: _Side) -> None:
        hello, suite, keylog = self._hello, self._suite, self._keylog
        if hello is None or suite is None or keylog is None or side.opener is None:
            return
        label = (
            Label.CLIENT_TRAFFIC_SECRET_0
            if direction is self._client
            else Label.SERVER_TRAFFIC_SECRET_0
        )
        secret = keylog.get(label, hello.random)
        if secret is None:
            side.opener = None
            self._missing(hello, label.value, f"the {self._role(direction)}'s application data")
            return
        protection, schedule = _crypto()
        side.secret = secret
        side.opener = protection.RecordOpener(
            suite, self._version, schedule.tls13_keys(suite, secret)
        )

    def _missing(self, hello: hs.ClientHello, labels: str, what: str = "this connection") -> None:
        self._status = KeyStatus.KEY_MISSING
        self._anomaly(
            AnomalyKind.TLS_KEY_MISSING,
            f"the key log has no {labels} line for client random {hello.random.hex()[:16]}…: "
            f"{what} stays encrypted (not seen)",
        )
        self._check_opaque()

    def _has_keys(self) -> bool:
        return any(s.opener is not None or s.pending is not None for s in self._sides.values())

    def _check_opaque(self) -> None:
        """Nothing more to decrypt: no keys, and the handshake facts that can
        be read without them are in (TLS 1.2's certificate is in clear before
        the ChangeCipherSpec, TLS 1.3's is encrypted)."""
        if self._status in (
            KeyStatus.KEY_MISSING,
            KeyStatus.NO_KEY_LOG,
            KeyStatus.NO_HANDSHAKE,
            KeyStatus.UNSUPPORTED,
        ):
            sides = self._sides.values()
            if self._has_keys():
                return  # one direction still decrypts
            if self._version == hs.TLS13 or all(s.protected for s in sides):
                self.opaque = True

    # -- helpers ---------------------------------------------------------------------

    def _role(self, direction: Direction) -> str:
        if self._client is None:
            return "client" if direction is Direction.TO_SERVER else "server"
        return "client" if direction is self._client else "server"

    def _hole(self, direction: Direction, length: int, frame: int, timestamp: float) -> StreamGap:
        return StreamGap(self.connection, direction, length, frame, timestamp)

    def _anomaly(self, kind: AnomalyKind, message: str, frame: int | None = None) -> None:
        self.anomalies.append(Anomaly(kind, message, frame, self.connection))


# Sequence numbers tried per candidate record when looking for records after a
# gap: each try is one AEAD open or HMAC of one record.
MAX_SEQUENCE_TRIES = 256
# The smallest protected record: header, and a 16-byte tag (TLS 1.3 adds the
# content type byte; TLS 1.2 GCM an 8-byte nonce).
_MIN_RECORD = HEADER + 17


class _UnfinishedRecord:
    """The fast lane's sink for one direction (tcp/events.py LaneSink): bytes
    that `_data` would only append to a record whose header is in and whose
    end these bytes do not reach (the header was checked when it arrived);
    everything once the direction's framing is lost (`_data` drops it)."""

    __slots__ = ("_tls", "_side")

    def __init__(self, tls: TlsConnection, side: _Side) -> None:
        self._tls = tls
        self._side = side

    def count_only(self, buf: bytes, start: int, size: int, frame: int, timestamp: float) -> bool:
        side = self._side
        if side.lost or self._tls.opaque:
            return True
        buffer = side.buffer
        have = len(buffer)
        if have < HEADER or side.lost_bytes:
            return False
        if have + size >= HEADER + ((buffer[3] << 8) | buffer[4]):
            return False  # completes the record: the normal path reads it
        buffer += buf[start : start + size]
        return True


def _candidates(opener: RecordOpener, lost: int, payload: bytes) -> list[int]:
    """Sequence numbers the first record after a gap of `lost` bytes may have,
    most likely first: at least one record was lost (the gap cut it or held it
    whole), at most lost / _MIN_RECORD; most likely as many as full records
    fill the gap. TLS 1.2 GCM/CCM senders usually put the sequence number in
    the explicit nonce: that one is tried first."""
    first = opener.sequence + 1
    last = opener.sequence + max(1, lost // _MIN_RECORD) + 1
    likely = min(last, opener.sequence + max(1, -(-lost // (MAX_FRAGMENT + HEADER))))
    order = sorted(range(first, last + 1), key=lambda n: (abs(n - likely), n))
    suite = opener.suite
    if not suite.tls13 and suite.aead and suite.fixed_iv_length == 4 and len(payload) >= 8:
        nonce = int.from_bytes(payload[:8], "big")
        if first <= nonce <= last:
            order.insert(0, nonce)
    return order[:MAX_SEQUENCE_TRIES]


def _other(direction: Direction) -> Direction:
    return Direction.TO_CLIENT if direction is Direction.TO_SERVER else Direction.TO_SERVER
