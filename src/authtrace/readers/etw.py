"""ETW packet events: the events of the two Windows providers that carry
packets, decoded from an event's header fields and user data, and turned into
frames the same way whichever container held them (an ETL file, or a Network
Monitor file of ETW events).

Owns: the provider ids and event layouts of Microsoft-Windows-NDIS-PacketCapture
(what `netsh trace start capture=yes` logs) and Microsoft-Windows-PktMon (what
`pktmon start --capture` logs); `PacketAssembler`, which joins NDIS packet
fragments, folds the several appearances pktmon logs of one packet, and counts
what the report tells about the trace: events that are not packets, truncated
packets, folded appearances, damaged packet events.

Invariant: every event of a trace goes through one `PacketAssembler`, the only
place that decides what becomes a frame, so both containers decide alike.
Nothing here raises on hostile bytes: a packet event that does not parse is
counted (and reported), never turned into a frame with invented bytes.
Memory: one packet being joined (at most MAX_PACKET bytes) and a bounded table
of the pktmon packets seen recently (MAX_PACKET_IDS).
"""

from __future__ import annotations

import enum
import struct
import uuid
from collections import Counter, OrderedDict
from dataclasses import dataclass

from authtrace.anomalies import Anomaly, AnomalyKind
from authtrace.readers.linktypes import LINKTYPE_ETHERNET, LINKTYPE_RAW
from authtrace.words import agreeing, counted

# Provider ids, as the 16 bytes of a GUID in an event header (Windows GUID
# byte order: the first three fields little-endian).
NDIS_PACKET_CAPTURE = uuid.UUID("2ED6006E-4729-4609-B423-3EE7BCD678EF").bytes_le
PKTMON = uuid.UUID("4D4F80D9-C8BD-4D73-BB5B-19C90402C5AC").bytes_le
PACKET_PROVIDERS = frozenset({NDIS_PACKET_CAPTURE, PKTMON})

PROVIDER_NAMES = {
    NDIS_PACKET_CAPTURE: "Microsoft-Windows-NDIS-PacketCapture",
    PKTMON: "Microsoft-Windows-PktMon",
}

LINKTYPE_IEEE802_11 = 105

# Microsoft-Windows-NDIS-PacketCapture (the provider manifest, and Microsoft's
# etl2pcapng, which documents how the events make packets).
NDIS_PACKET_FRAGMENT = 1001  # MiniportIfIndex, LowerIfIndex, FragmentSize, Fragment
NDIS_VMSWITCH_FRAGMENT = 1003  # + SourcePortId, three names, destinations, OOB data
KW_MEDIA_WIRELESS_WAN = 0x200  # the fragment starts with the IP header
KW_MEDIA_NATIVE_802_11 = 0x10000  # an 802.11 frame
KW_PACKET_TRUNCATED = 0x2000000  # netsh kept only the first bytes (packettruncatebytes)
KW_PACKET_START = 0x40000000
KW_PACKET_END = 0x80000000
KW_SEND = 0x1_0000_0000
KW_RECEIVE = 0x2_0000_0000

# Microsoft-Windows-PktMon: 160 a packet logged at a component, 170 a packet
# dropped there (same layout). PktGroupId u64, PktNumber, AppearanceCount,
# DirTag, PacketType, ComponentId, EdgeId, FilterId (u16 each), DropReason,
# DropLocation (u32), OriginalPayloadSize, LoggedPayloadSize (u16), Payload.
PKTMON_PACKET_LOGGED = 160
PKTMON_PACKET_DROPPED = 170
_PKTMON_FIXED = struct.Struct("<QHHHHHHHIIHH")
# PKTMON_PACKET_TYPE: 1 Ethernet, 2 Wi-Fi, 3 mobile broadband (an IP packet).
_PKTMON_LINK_TYPES = {1: LINKTYPE_ETHERNET, 2: LINKTYPE_IEEE802_11, 3: LINKTYPE_RAW}

MAX_PACKET = 65535  # a joined packet beyond this is damage (etl2pcapng's limit too)
MAX_PACKET_IDS = 1 << 16  # pktmon packet ids remembered for folding appearances
MAX_NAME_UNITS = 1024  # UTF-16 units of a VMSwitch port or NIC name searched for its end

_U32 = struct.Struct("<I")
_U16_BE = struct.Struct(">H")


class Direction(enum.Enum):
    """Which way the packet went through the interface or component."""

    SEND = "send"
    RECEIVE = "receive"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class EtwEvent:
    """One ETW event as a container holds it (EVENT_HEADER fields that matter here).

    provider: the provider GUID, 16 bytes in Windows byte order.
    event_id: EventDescriptor.Id.
    version: EventDescriptor.Version.
    keywords: EventDescriptor.Keyword (the provider's keyword bits).
    timestamp: seconds since the epoch, UTC, from the trace's clock.
    user_data: the event's payload (after any extended data items).
    raw_time: the time stamp as the container holds it (the trace's clock
        ticks in an ETL file), for ordering events exactly.
    """

    provider: bytes
    event_id: int
    version: int
    keywords: int
    timestamp: float
    user_data: bytes
    raw_time: int = 0


@dataclass(frozen=True, slots=True)
class PacketEvent:
    """A packet event of either provider, decoded.

    data: the bytes logged (a whole frame, its first bytes, or one fragment of it).
    original_length: the frame's length on the wire when known (else len(data)).
    link_type: LINKTYPE_* of the bytes.
    direction: send or receive.
    interface: (miniport interface index, lower interface index) for NDIS;
        (component id, edge id) for pktmon.
    truncated: the provider says it kept only the first bytes.
    starts, ends: NDIS packet start / end keywords (pktmon events are whole).
    packet_id: pktmon (PktGroupId, PktNumber), the same for every appearance of
        one packet; None for NDIS.
    appearance: pktmon AppearanceCount (1 for NDIS).
    """

    data: bytes
    original_length: int
    link_type: int
    direction: Direction
    interface: tuple[int, int]
    truncated: bool
    starts: bool
    ends: bool
    packet_id: tuple[int, int] | None
    appearance: int


class EtwDecodeError(ValueError):
    """A packet event whose user data does not hold what its layout says."""


def _direction(keywords: int) -> Direction:
    if keywords & KW_SEND:
        return Direction.SEND
    if keywords & KW_RECEIVE:
        return Direction.RECEIVE
    return Direction.UNKNOWN


def _skip_utf16z(data: bytes, offset: int) -> int:
    """The offset after a NUL-terminated UTF-16LE string starting at `offset`."""
    end = min(len(data) - 1, offset + 2 * MAX_NAME_UNITS)
    position = offset
    while position < end:
        if data[position] == 0 and data[position + 1] == 0:
            return position + 2
        position += 2
    raise EtwDecodeError("a VMSwitch name runs past the end of the event")


def decode_packet(event: EtwEvent) -> PacketEvent | None:
    """The packet an event carries; None for an event that carries none (another
    event of these providers, or another provider). Raises EtwDecodeError for a
    packet event that does not parse."""
    if event.provider == NDIS_PACKET_CAPTURE:
        if event.event_id in (NDIS_PACKET_FRAGMENT, NDIS_VMSWITCH_FRAGMENT):
            return _ndis_fragment(event)
        return None
    if event.provider == PKTMON and event.event_id in (
        PKTMON_PACKET_LOGGED,
        PKTMON_PACKET_DROPPED,
    ):
        return _pktmon_packet(event)
    return None


def _ndis_fragment(event: EtwEvent) -> PacketEvent:
    data = event.user_data
    if len(data) < 12:
        raise EtwDecodeError(f"NDIS packet event {event.event_id} of {len(data)} bytes")
    miniport, lower = struct.unpack_from("<II", data)
    offset = 8
    if event.event_id == NDIS_VMSWITCH_FRAGMENT:
        # SourcePortId, SourcePortName, SourceNicName, SourceNicType,
        # DestinationCount, Destination[count] (8 bytes each), then the fragment.
        offset += 4
        for _ in range(3):
            offset = _skip_utf16z(data, offset)
        if offset + 4 > len(data):
            raise EtwDecodeError("VMSwitch packet event ends before its destinations")
        (count,) = _U32.unpack_from(data, offset)
        offset += 4 + 8 * count
    if offset + 4 > len(data):
        raise EtwDecodeError("NDIS packet event ends before its fragment size")
    (size,) = _U32.unpack_from(data, offset)
    offset += 4
    if size > len(data) - offset:
        raise EtwDecodeError(
            f"NDIS fragment claims {size} bytes, the event holds {len(data) - offset}"
        )
    keywords = event.keywords
    if keywords & KW_MEDIA_NATIVE_802_11:
        link_type = LINKTYPE_IEEE802_11
    elif keywords & KW_MEDIA_WIRELESS_WAN:
        link_type = LINKTYPE_RAW
    else:
        link_type = LINKTYPE_ETHERNET
    fragment = data[offset : offset + size]
    return PacketEvent(
        fragment,
        len(fragment),
        link_type,
        _direction(keywords),
        (miniport, lower),
        bool(keywords & KW_PACKET_TRUNCATED),
        bool(keywords & KW_PACKET_START),
        bool(keywords & KW_PACKET_END),
        None,
        1,
    )


def _pktmon_packet(event: EtwEvent) -> PacketEvent | None:
    data = event.user_data
    if len(data) < _PKTMON_FIXED.size:
        raise EtwDecodeError(f"PktMon packet event of {len(data)} bytes")
    (group, number, appearance, direction_tag, packet_type, component, edge, _filter, _reason,
     _location, original, logged) = _PKTMON_FIXED.unpack_from(data)  # fmt: skip
    if logged > len(data) - _PKTMON_FIXED.size:
        raise EtwDecodeError(
            f"PktMon payload claims {logged} bytes, the event holds "
            f"{len(data) - _PKTMON_FIXED.size}"
        )
    link_type = _PKTMON_LINK_TYPES.get(packet_type)
    if link_type is None:
        return None  # a payload type authtrace does not read: counted by the caller
    payload = data[_PKTMON_FIXED.size : _PKTMON_FIXED.size + logged]
    # DirTag: the sample traces show 3 for packets coming in, 4 going out.
    direction = {3: Direction.RECEIVE, 4: Direction.SEND}.get(direction_tag, Direction.UNKNOWN)
    return PacketEvent(
        payload,
        max(original, logged),
        link_type,
        direction,
        (component, edge),
        logged < original,
        True,
        True,
        (group, number),
        appearance,
    )


def inferred_length(data: bytes, link_type: int) -> int:
    """The frame's length from its IP header (as etl2pcapng infers it: NDIS
    events do not say how long a truncated packet was), else len(data)."""
    start = 14 if link_type == LINKTYPE_ETHERNET else 0 if link_type == LINKTYPE_RAW else -1
    if start < 0 or len(data) < start + 20:
        return len(data)
    if start:
        (ethertype,) = _U16_BE.unpack_from(data, 12)
        version = 4 if ethertype == 0x0800 else 6 if ethertype == 0x86DD else 0
    else:
        version = data[0] >> 4
    if version == 4:
        (total,) = _U16_BE.unpack_from(data, start + 2)
        return max(len(data), start + total)
    if version == 6 and len(data) >= start + 40:
        (payload,) = _U16_BE.unpack_from(data, start + 4)
        return max(len(data), start + 40 + payload)
    return len(data)


class Outcome(enum.Enum):
    """What an event became."""

    FRAME = "frame"  # a packet to hand on
    FOLDED = "folded"  # another appearance of a packet already handed on (pktmon)
    NOTHING = "nothing"  # not a packet, a fragment of one, or a damaged packet event


@dataclass(frozen=True, slots=True)
class Taken:
    """What `PacketAssembler.take` made of one event."""

    outcome: Outcome
    packet: PacketEvent | None = None


_NOTHING = Taken(Outcome.NOTHING)
_FOLDED = Taken(Outcome.FOLDED)


class PacketAssembler:
    """Turns a trace's events, in order, into packets; counts the rest.

    all_appearances: keep every appearance pktmon logged of a packet (else the
        first is kept and the others are folded and counted).

    Cost: O(1) per event; memory bounded (see the module docstring).
    """

    def __init__(self, label: str, all_appearances: bool = False) -> None:
        self.label = label
        self.all_appearances = all_appearances
        self.not_packets: Counter[tuple[bytes | None, int | None]] = Counter()
        self.malformed = 0
        self.first_malformed: tuple[int, str] | None = None
        self.folded = 0
        self.first_folded: int | None = None
        self.truncated: Counter[bytes] = Counter()  # provider -> packets truncated
        self.truncated_at: dict[bytes, int] = {}  # provider -> largest bytes kept
        self.first_truncated: int | None = None
        self.incomplete = 0
        self.interfaces: set[tuple[bytes, tuple[int, int]]] = set()
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._seen: OrderedDict[tuple[int, int], None] = OrderedDict()

    def count_other(self, provider: bytes | None, event_id: int | None = None) -> None:
        """An event that is not an event of the packet providers (a system or
        classic event has no provider GUID: None)."""
        self.not_packets[(provider, event_id)] += 1

    def take(self, event: EtwEvent, number: int) -> Taken:
        """What `event` makes; `number` is the frame number the container would
        give a packet made now (for the report's references)."""
        try:
            packet = decode_packet(event)
        except EtwDecodeError as exc:
            self._malformed(number, str(exc))
            return _NOTHING
        if packet is None:
            self.not_packets[(event.provider, event.event_id)] += 1
            return _NOTHING
        self.interfaces.add((event.provider, packet.interface))
        if packet.packet_id is not None:
            return self._appearance(event.provider, packet, number)
        return self._fragment(event.provider, packet, number)

    def _appearance(self, provider: bytes, packet: PacketEvent, number: int) -> Taken:
        """pktmon: one appearance of a packet at one component."""
        key = packet.packet_id
        assert key is not None
        seen = self._seen
        if key in seen:
            seen.move_to_end(key)
            if not self.all_appearances:
                self.folded += 1
                if self.first_folded is None:
                    self.first_folded = number
                return _FOLDED
        else:
            seen[key] = None
            if len(seen) > MAX_PACKET_IDS:
                seen.popitem(last=False)
        self._note_truncation(provider, packet, number)
        return Taken(Outcome.FRAME, packet)

    def _fragment(self, provider: bytes, packet: PacketEvent, number: int) -> Taken:
        """NDIS: fragments accumulate until the one with the packet-end keyword
        (since Windows 8.1 every packet is one event with both keywords)."""
        if packet.starts and self._pending:
            # A new packet while another was not finished: its end was lost.
            self.incomplete += 1
            self._pending, self._pending_size = [], 0
        if self._pending_size + len(packet.data) > MAX_PACKET:
            self._malformed(number, f"NDIS packet fragments join to more than {MAX_PACKET} bytes")
            self._pending, self._pending_size = [], 0
            return _NOTHING
        if not packet.ends:
            self._pending.append(packet.data)
            self._pending_size += len(packet.data)
            return _NOTHING
        if self._pending:
            data = b"".join([*self._pending, packet.data])
            self._pending, self._pending_size = [], 0
            original = inferred_length(data, packet.link_type)
            packet = PacketEvent(
                data,
                original,
                packet.link_type,
                packet.direction,
                packet.interface,
                packet.truncated,
                True,
                True,
                None,
                1,
            )
        else:
            original = inferred_length(packet.data, packet.link_type)
            if original != packet.original_length:
                packet = PacketEvent(
                    packet.data,
                    original,
                    packet.link_type,
                    packet.direction,
                    packet.interface,
                    packet.truncated or original > len(packet.data),
                    True,
                    True,
                    None,
                    1,
                )
        self._note_truncation(provider, packet, number)
        return Taken(Outcome.FRAME, packet)

    def _note_truncation(self, provider: bytes, packet: PacketEvent, number: int) -> None:
        if not packet.truncated and packet.original_length <= len(packet.data):
            return
        self.truncated[provider] += 1
        self.truncated_at[provider] = max(self.truncated_at.get(provider, 0), len(packet.data))
        if self.first_truncated is None:
            self.first_truncated = number

    def _malformed(self, number: int, reason: str) -> None:
        self.malformed += 1
        if self.first_malformed is None:
            self.first_malformed = (number, reason)

    def finish(self) -> list[Anomaly]:
        """What the report says about the trace, once every event was taken."""
        found: list[Anomaly] = []
        label = self.label
        if self._pending:
            self.incomplete += 1
            self._pending = []
        if self.malformed and self.first_malformed is not None:
            number, reason = self.first_malformed
            found.append(
                Anomaly(
                    AnomalyKind.ETW_EVENT_MALFORMED,
                    f"{label}: {counted(self.malformed, 'packet event')} "
                    f"{agreeing(self.malformed, 'does', 'do')} not hold what "
                    f"{agreeing(self.malformed, 'its')} layout says and "
                    f"{agreeing(self.malformed, 'was')} not read (the first before frame "
                    f"{number}: {reason})",
                    number,
                )
            )
        if self.incomplete:
            found.append(
                Anomaly(
                    AnomalyKind.ETW_EVENT_MALFORMED,
                    f"{label}: {counted(self.incomplete, 'packet')} logged in fragments "
                    f"{agreeing(self.incomplete, 'lacks', 'lack')} "
                    f"{agreeing(self.incomplete, 'its')} last fragment (events lost by the "
                    "trace): not read",
                )
            )
        for provider, count in sorted(self.truncated.items()):
            kept = self.truncated_at.get(provider, 0)
            if provider == PKTMON:
                how = (
                    f"pktmon logged only the first {kept} bytes or fewer of "
                    f"{counted(count, 'packet')} "
                    "(its --pkt-size, 128 bytes unless told otherwise)"
                )
                fix = (
                    "take the trace again with `pktmon start --capture --pkt-size 0` "
                    "(0 logs whole packets)"
                )
            else:
                how = (
                    f"netsh trace kept only the first {kept} bytes or fewer of "
                    f"{counted(count, 'packet')} "
                    "(packettruncatebytes)"
                )
                fix = (
                    "take the trace again with `netsh trace start capture=yes` and no "
                    "packettruncatebytes= (or one above the largest frame, 1514 bytes on Ethernet)"
                )
            found.append(
                Anomaly(
                    AnomalyKind.ETW_PACKETS_TRUNCATED,
                    f"{label}: {how}; the bytes left out are gaps in their connections, as "
                    f"with a capture's snap length, never read as absent: {fix}",
                    self.first_truncated,
                )
            )
        if self.folded:
            found.append(
                Anomaly(
                    AnomalyKind.PKTMON_APPEARANCES_FOLDED,
                    f"{label}: {counted(self.folded, 'later appearance')} of packets pktmon "
                    f"logged at several components {agreeing(self.folded, 'was')} folded into "
                    "the first (same packet group and "
                    "number); --all-appearances keeps them",
                    self.first_folded,
                )
            )
        total = sum(self.not_packets.values())
        if total:
            found.append(
                Anomaly(
                    AnomalyKind.ETW_EVENTS_SKIPPED,
                    f"{label}: {counted(total, 'ETW event')} "
                    f"{agreeing(total, 'carries', 'carry')} no packet (other providers, trace "
                    f"and component information): counted and skipped ({self._describe()})",
                )
            )
        return found

    def _describe(self) -> str:
        by_provider: Counter[bytes | None] = Counter()
        for (provider, _event_id), count in self.not_packets.items():
            by_provider[provider] += count
        listed = by_provider.most_common(5)
        parts = []
        for provider, count in listed:
            if provider is None:
                name = "system (kernel) events"
            else:
                name = PROVIDER_NAMES.get(provider) or "{" + str(uuid.UUID(bytes_le=provider)) + "}"
            parts.append(f"{count} {name}")
        rest = sum(by_provider.values()) - sum(count for _, count in listed)
        if rest:
            parts.append(f"{rest} of {counted(len(by_provider) - len(listed), 'more provider')}")
        return ", ".join(parts)
