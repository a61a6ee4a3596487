"""Link, IP, tunnel and transport decoding: one frame in, one TCP segment or
UDP datagram (or nothing) out.

Owns: link layers (Ethernet with 802.1Q/802.1ad/QinQ tags, 802.3 SNAP, Linux
SLL and SLL2, raw IPv4/IPv6, BSD null and OpenBSD loopback), MPLS and PPPoE
on Ethernet, IPv4 and IPv6 with extension headers, fragment reassembly (via
`Reassembler`), the tunnels port mirrors deliver (GRE, ERSPAN II/III, VXLAN,
Geneve, IP-in-IP), and the TCP and UDP headers.

Invariants:
- `decode` never raises: a header that does not parse becomes a
  `net-malformed` anomaly (a header cut by the snapshot length, a
  `net-truncated` one) and the frame yields None.
- bytes are never invented: payload is what the capture holds, trimmed to
  what the IP length says (Ethernet padding is not payload); what the IP
  length promised beyond the capture is counted in `missing`.
- every loop (VLAN tags, MPLS labels, IPv6 extension headers, tunnel nesting)
  is bounded.
"""

from __future__ import annotations

import socket
import struct
from collections import Counter

from authtrace.anomalies import Anomaly, AnomalyKind
from authtrace.net.fragments import Reassembler
from authtrace.net.packets import TcpSegment, UdpDatagram, make_tcp_segment
from authtrace.readers.base import Frame
from authtrace.readers.linktypes import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    LINKTYPE_RAW_BSDOS,
    LINKTYPE_RAW_OPENBSD,
    describe,
)
from authtrace.words import counted

Packet = TcpSegment | UdpDatagram

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_VLAN_TAGS = (0x8100, 0x88A8, 0x9100)  # 802.1Q, 802.1ad, pre-standard QinQ
ETHERTYPE_MPLS = (0x8847, 0x8848)
ETHERTYPE_PPPOE_SESSION = 0x8864
ETHERTYPE_TEB = 0x6558  # transparent Ethernet bridging (Ethernet inside GRE/Geneve)
ETHERTYPE_ERSPAN_2 = 0x88BE
ETHERTYPE_ERSPAN_3 = 0x22EB
ETHERTYPE_PPP = 0x880B  # PPTP enhanced GRE

PROTO_IPV4 = 4
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_IPV6 = 41
PROTO_GRE = 47

UDP_VXLAN = 4789  # RFC 7348
UDP_GENEVE = 6081  # RFC 8926

MAX_TAGS = 8
MAX_EXTENSION_HEADERS = 8
MAX_TUNNEL_DEPTH = 4
MAX_ANOMALIES = 1000

# IPv6 extension headers whose length field counts 8-octet units beyond the first
# (RFC 8200 section 4: hop-by-hop 0, routing 43, destination options 60;
# mobility 135, HIP 139, shim6 140 use the same layout).
_IPV6_EIGHT_OCTET = frozenset((0, 43, 60, 135, 139, 140))
_IPV6_FRAGMENT = 44
_IPV6_AH = 51  # RFC 4302: length in 4-octet units minus 2
_IPV6_NO_NEXT = 59

# BSD null/loopback address families (AF_INET6 differs between the BSDs).
_AF_INET = 2
_AF_INET6 = frozenset((10, 23, 24, 28, 30))

_ETH_IPV4_TCP = struct.Struct("!12xHBxHxxHxBxx4s4sHHIIBB")  # Ethernet + IPv4 + TCP fixed part
_IPV4 = struct.Struct("!BxHHHxBxx4s4s")
_IPV6 = struct.Struct("!4xHBx16s16s")
_TCP = struct.Struct("!HHIIBB")
_UDP = struct.Struct("!HHH")
_U16 = struct.Struct("!H")
_U32_LE = struct.Struct("<I")
_U32_BE = struct.Struct("!I")

_inet_ntop = socket.inet_ntop
_AF4 = socket.AF_INET
_AF6 = socket.AF_INET6


class _Malformed(Exception):
    """A header does not parse; the message is the one-line reason."""

    def __init__(self, reason: str, kind: AnomalyKind = AnomalyKind.NET_MALFORMED) -> None:
        super().__init__(reason)
        self.kind = kind


class PacketDecoder:
    """Decodes frames one at a time; keeps fragment state between them.

    anomalies: net-malformed / net-truncated / ip-fragment-incomplete /
        net-link-skipped, in the order met (at most MAX_ANOMALIES are listed,
        the rest counted in `suppressed_anomalies`).
    skipped_link_types: frames per link type that carry no packet this layer
        reads (NetMon events, unknown link layers).
    """

    def __init__(self) -> None:
        self.anomalies: list[Anomaly] = []
        self.suppressed_anomalies = 0
        self.skipped_link_types: Counter[int] = Counter()
        self._fragments = Reassembler(self.anomalies)
        self._names: dict[bytes, str] = {}

    # -- entry point -----------------------------------------------------

    def decode(self, frame: Frame) -> TcpSegment | UdpDatagram | None:
        """The TCP segment or UDP datagram in `frame` (innermost when tunnelled)."""
        data = frame.data
        try:
            # Fast path: Ethernet / IPv4 without options or fragmentation / TCP.
            if (
                frame.link_type == LINKTYPE_ETHERNET
                and len(data) >= 54
                and data[12] == 0x08
                and data[13] == 0x00
                and data[14] == 0x45
                and data[23] == PROTO_TCP
            ):
                (_, _, total, fragment, _, src, dst, sport, dport, seq, ack, offset, flags) = (
                    _ETH_IPV4_TCP.unpack_from(data)
                )
                header = (offset >> 4) * 4
                if not fragment & 0x3FFF and total >= 40 and header >= 20:
                    end = 14 + total
                    available = len(data)
                    start = 34 + header
                    if start <= available and start <= end:
                        missing = 0
                        if end > available:
                            missing = end - available
                            end = available
                        names = self._names
                        src_text = names.get(src)
                        if src_text is None:
                            src_text = self._name(src)
                        dst_text = names.get(dst)
                        if dst_text is None:
                            dst_text = self._name(dst)
                        return make_tcp_segment(
                            frame.number,
                            frame.timestamp,
                            src_text,
                            dst_text,
                            sport,
                            dport,
                            seq,
                            ack,
                            flags,
                            data[start:end],
                            missing,
                        )
            return self._link(frame, data)
        except _Malformed as exc:
            self._report(exc.kind, str(exc), frame.number)
        except Exception as exc:  # noqa: BLE001 - hostile input never escapes this layer
            self._report(AnomalyKind.NET_MALFORMED, f"undecodable frame: {exc!r}", frame.number)
        return None

    def finish(self) -> None:
        """End of capture: report incomplete fragments and skipped link types."""
        self._fragments.finish()
        for link_type, count in sorted(self.skipped_link_types.items()):
            self.anomalies.append(
                Anomaly(
                    AnomalyKind.NET_LINK_SKIPPED,
                    f"{counted(count, 'frame')} of {describe(link_type)} ({link_type}) with no "
                    "packet this tool reads; skipped",
                )
            )
        self.skipped_link_types.clear()
        if self.suppressed_anomalies:
            self.anomalies.append(
                Anomaly(
                    AnomalyKind.NET_MALFORMED,
                    f"{counted(self.suppressed_anomalies, 'more undecodable frame')} not listed",
                )
            )
            self.suppressed_anomalies = 0

    # -- helpers -----------------------------------------------------------

    def _report(self, kind: AnomalyKind, message: str, frame: int) -> None:
        if len(self.anomalies) >= MAX_ANOMALIES:
            self.suppressed_anomalies += 1
            return
        self.anomalies.append(Anomaly(kind, message, frame))

    def _name(self, raw: bytes) -> str:
        names = self._names
        if len(names) >= 65536:
            names.clear()  # a small cache: a scan of many addresses must not grow it
        text = _inet_ntop(_AF4 if len(raw) == 4 else _AF6, raw)
        names[raw] = text
        return text

    # -- link layers ---------------------------------------------------------

    def _link(self, frame: Frame, data: bytes) -> Packet | None:
        link_type = frame.link_type
        if link_type == LINKTYPE_ETHERNET:
            return self._ethernet(frame, data, 0, 0)
        if link_type in (LINKTYPE_RAW, LINKTYPE_RAW_OPENBSD, LINKTYPE_RAW_BSDOS):
            return self._ip_by_version(frame, data, 0, 0)
        if link_type == LINKTYPE_IPV4:
            return self._ipv4(frame, data, 0, 0)
        if link_type == LINKTYPE_IPV6:
            return self._ipv6(frame, data, 0, 0)
        if link_type in (LINKTYPE_NULL, LINKTYPE_LOOP):
            if len(data) < 4:
                raise _Malformed("loopback header cut short", AnomalyKind.NET_TRUNCATED)
            # The family is in the writer's byte order for null, network order
            # for loop; a value above 0xFFFF means the other order.
            if link_type == LINKTYPE_LOOP:
                (family,) = _U32_BE.unpack_from(data)
            else:
                (family,) = _U32_LE.unpack_from(data)
            if family > 0xFFFF:
                family = int.from_bytes(family.to_bytes(4, "little"), "big")
            if family == _AF_INET:
                return self._ipv4(frame, data, 4, 0)
            if family in _AF_INET6:
                return self._ipv6(frame, data, 4, 0)
            return None
        if link_type == LINKTYPE_LINUX_SLL:
            # Linux cooked capture v1: 16-byte header, protocol at offset 14.
            if len(data) < 16:
                raise _Malformed("Linux cooked header cut short", AnomalyKind.NET_TRUNCATED)
            (protocol,) = _U16.unpack_from(data, 14)
            return self._ethertype(frame, data, 16, protocol, 0)
        if link_type == LINKTYPE_LINUX_SLL2:
            # Linux cooked capture v2: 20-byte header, protocol first.
            if len(data) < 20:
                raise _Malformed("Linux cooked v2 header cut short", AnomalyKind.NET_TRUNCATED)
            (protocol,) = _U16.unpack_from(data, 0)
            return self._ethertype(frame, data, 20, protocol, 0)
        self.skipped_link_types[link_type] += 1
        return None

    def _ethernet(self, frame: Frame, data: bytes, offset: int, depth: int) -> Packet | None:
        if len(data) < offset + 14:
            raise _Malformed("Ethernet header cut short", AnomalyKind.NET_TRUNCATED)
        (ethertype,) = _U16.unpack_from(data, offset + 12)
        offset += 14
        if ethertype < 0x0600:
            # IEEE 802.3 length field: only LLC/SNAP with an EtherType carries IP.
            if data[offset : offset + 6] != b"\xaa\xaa\x03\x00\x00\x00" or len(data) < offset + 8:
                return None
            (ethertype,) = _U16.unpack_from(data, offset + 6)
            offset += 8
        return self._ethertype(frame, data, offset, ethertype, depth)

    def _ethertype(
        self, frame: Frame, data: bytes, offset: int, ethertype: int, depth: int
    ) -> Packet | None:
        tags = 0
        # 802.1Q / 802.1ad tags: 2 bytes of tag control, then the next EtherType.
        while ethertype in ETHERTYPE_VLAN_TAGS:
            tags += 1
            if tags > MAX_TAGS:
                raise _Malformed(f"more than {MAX_TAGS} VLAN tags")
            if len(data) < offset + 4:
                raise _Malformed("VLAN tag cut short", AnomalyKind.NET_TRUNCATED)
            (ethertype,) = _U16.unpack_from(data, offset + 2)
            offset += 4
        if ethertype == ETHERTYPE_IPV4:
            return self._ipv4(frame, data, offset, depth)
        if ethertype == ETHERTYPE_IPV6:
            return self._ipv6(frame, data, offset, depth)
        if ethertype in ETHERTYPE_MPLS:
            # RFC 3032 label stack entries until the bottom-of-stack bit.
            for _ in range(MAX_TAGS):
                if len(data) < offset + 4:
                    raise _Malformed("MPLS label cut short", AnomalyKind.NET_TRUNCATED)
                bottom = data[offset + 2] & 0x01
                offset += 4
                if bottom:
                    return self._ip_by_version(frame, data, offset, depth, strict=False)
            raise _Malformed(f"more than {MAX_TAGS} MPLS labels")
        if ethertype == ETHERTYPE_PPPOE_SESSION:
            # RFC 2516: 6-byte PPPoE header, then the 2-byte PPP protocol.
            if len(data) < offset + 8:
                raise _Malformed("PPPoE header cut short", AnomalyKind.NET_TRUNCATED)
            (protocol,) = _U16.unpack_from(data, offset + 6)
            return self._ppp(frame, data, offset + 8, protocol, depth)
        return None

    def _ppp(
        self, frame: Frame, data: bytes, offset: int, protocol: int, depth: int
    ) -> Packet | None:
        if protocol == 0x0021:
            return self._ipv4(frame, data, offset, depth)
        if protocol == 0x0057:
            return self._ipv6(frame, data, offset, depth)
        return None

    # -- IP ------------------------------------------------------------------

    def _ip_by_version(
        self, frame: Frame, data: bytes, offset: int, depth: int, strict: bool = True
    ) -> Packet | None:
        if len(data) <= offset:
            raise _Malformed("IP header missing", AnomalyKind.NET_TRUNCATED)
        version = data[offset] >> 4
        if version == 4:
            return self._ipv4(frame, data, offset, depth)
        if version == 6:
            return self._ipv6(frame, data, offset, depth)
        if strict:
            raise _Malformed(f"raw IP packet with version {version}")
        return None

    def _ipv4(self, frame: Frame, data: bytes, offset: int, depth: int) -> Packet | None:
        # RFC 791 section 3.1
        if len(data) < offset + 20:
            raise _Malformed("IPv4 header cut short", AnomalyKind.NET_TRUNCATED)
        version_ihl, total, ident, fragment, protocol, src_raw, dst_raw = _IPV4.unpack_from(
            data, offset
        )
        if version_ihl >> 4 != 4:
            raise _Malformed(f"IPv4 header with version {version_ihl >> 4}")
        header = (version_ihl & 0x0F) * 4
        if header < 20:
            raise _Malformed(f"IPv4 header length {header} below 20")
        available = len(data) - offset
        if total == 0:
            # TCP segmentation offload: the stack had not filled the length in yet.
            total = available
        if total < header:
            raise _Malformed(f"IPv4 total length {total} below header length {header}")
        if available < header:
            raise _Malformed("IPv4 options cut short", AnomalyKind.NET_TRUNCATED)
        end = offset + total
        missing = 0
        if total > available:
            missing = total - available
            end = len(data)
        src = self._names.get(src_raw) or self._name(src_raw)
        dst = self._names.get(dst_raw) or self._name(dst_raw)
        start = offset + header
        if fragment & 0x3FFF:
            # A fragment: MF flag 0x2000, offset in 8-octet units (RFC 791).
            whole = self._fragments.add(
                (src, dst, protocol, ident),
                frame.number,
                (fragment & 0x1FFF) * 8,
                bool(fragment & 0x2000),
                data[start:end],
                protocol,
                missing > 0,
            )
            if whole is None:
                return None
            return self._transport(
                frame, src, dst, whole.protocol, whole.payload, 0, len(whole.payload), 0, depth
            )
        return self._transport(frame, src, dst, protocol, data, start, end, missing, depth)

    def _ipv6(self, frame: Frame, data: bytes, offset: int, depth: int) -> Packet | None:
        # RFC 8200 section 3
        if len(data) < offset + 40:
            raise _Malformed("IPv6 header cut short", AnomalyKind.NET_TRUNCATED)
        if data[offset] >> 4 != 6:
            raise _Malformed(f"IPv6 header with version {data[offset] >> 4}")
        length, next_header, src_raw, dst_raw = _IPV6.unpack_from(data, offset)
        start = offset + 40
        available = len(data) - start
        if length == 0:
            # Jumbogram (RFC 2675) or segmentation offload: take what was captured.
            length = available
        end = start + length
        missing = 0
        if length > available:
            missing = length - available
            end = len(data)
        src = self._names.get(src_raw) or self._name(src_raw)
        dst = self._names.get(dst_raw) or self._name(dst_raw)
        for _ in range(MAX_EXTENSION_HEADERS):
            if next_header in _IPV6_EIGHT_OCTET:
                if end < start + 2:
                    raise _Malformed("IPv6 extension header cut short", AnomalyKind.NET_TRUNCATED)
                next_header, size = data[start], (data[start + 1] + 1) * 8
            elif next_header == _IPV6_AH:
                if end < start + 2:
                    raise _Malformed("IPv6 AH header cut short", AnomalyKind.NET_TRUNCATED)
                next_header, size = data[start], (data[start + 1] + 2) * 4
            elif next_header == _IPV6_FRAGMENT:
                # RFC 8200 section 4.5: offset in 8-octet units, M flag, 32-bit id.
                if end < start + 8:
                    raise _Malformed("IPv6 fragment header cut short", AnomalyKind.NET_TRUNCATED)
                inner = data[start]
                (offset_flags,) = _U16.unpack_from(data, start + 2)
                (ident,) = _U32_BE.unpack_from(data, start + 4)
                fragment_offset = offset_flags & 0xFFF8
                more = bool(offset_flags & 1)
                if not fragment_offset and not more:
                    # An atomic fragment (RFC 6946): nothing to reassemble.
                    next_header, size = inner, 8
                else:
                    whole = self._fragments.add(
                        (src, dst, ident),
                        frame.number,
                        fragment_offset,
                        more,
                        data[start + 8 : end],
                        inner if fragment_offset == 0 else None,
                        missing > 0,
                    )
                    if whole is None:
                        return None
                    return self._transport(
                        frame,
                        src,
                        dst,
                        whole.protocol,
                        whole.payload,
                        0,
                        len(whole.payload),
                        0,
                        depth,
                    )
            else:
                return self._transport(
                    frame, src, dst, next_header, data, start, end, missing, depth
                )
            start += size
            if start > end:
                raise _Malformed("IPv6 extension header longer than the packet")
        raise _Malformed(f"more than {MAX_EXTENSION_HEADERS} IPv6 extension headers")

    # -- transport and tunnels ---------------------------------------------

    def _transport(
        self,
        frame: Frame,
        src: str,
        dst: str,
        protocol: int,
        data: bytes,
        start: int,
        end: int,
        missing: int,
        depth: int,
    ) -> Packet | None:
        if protocol == PROTO_TCP:
            # RFC 9293 section 3.1: options are skipped by the data offset.
            if end - start < 20:
                if missing:
                    raise _Malformed(
                        "TCP header cut short by the capture", AnomalyKind.NET_TRUNCATED
                    )
                raise _Malformed("TCP header longer than the IP payload")
            sport, dport, seq, ack, data_offset, flags = _TCP.unpack_from(data, start)
            header = (data_offset >> 4) * 4
            if header < 20:
                raise _Malformed(f"TCP data offset {header} below 20")
            if start + header > end:
                if missing:
                    raise _Malformed(
                        "TCP options cut short by the capture", AnomalyKind.NET_TRUNCATED
                    )
                raise _Malformed(f"TCP header length {header} beyond the IP payload")
            return make_tcp_segment(
                frame.number,
                frame.timestamp,
                src,
                dst,
                sport,
                dport,
                seq,
                ack,
                flags,
                data[start + header : end],
                missing,
            )
        if protocol == PROTO_UDP:
            # RFC 768; the UDP length is checked against what IP carried.
            if end - start < 8:
                if missing:
                    raise _Malformed(
                        "UDP header cut short by the capture", AnomalyKind.NET_TRUNCATED
                    )
                raise _Malformed("UDP header longer than the IP payload")
            sport, dport, length = _UDP.unpack_from(data, start)
            payload_end = end
            payload_missing = missing
            if 8 <= length <= end - start + missing:
                promised_end = start + length
                if promised_end <= end:
                    payload_end = promised_end
                    payload_missing = 0
                else:
                    payload_missing = promised_end - end
            if depth < MAX_TUNNEL_DEPTH and (dport in (UDP_VXLAN, UDP_GENEVE)):
                inner = self._udp_tunnel(frame, data, start + 8, payload_end, dport, depth + 1)
                if inner is not False and inner is not True:
                    return inner
            return UdpDatagram(
                frame.number,
                frame.timestamp,
                src,
                dst,
                sport,
                dport,
                data[start + 8 : payload_end],
                payload_missing,
            )
        if depth >= MAX_TUNNEL_DEPTH:
            return None
        if protocol == PROTO_GRE:
            return self._gre(frame, data[:end], start, depth + 1)
        if protocol == PROTO_IPV4:
            return self._ipv4(frame, data[:end], start, depth + 1)
        if protocol == PROTO_IPV6:
            return self._ipv6(frame, data[:end], start, depth + 1)
        return None

    def _udp_tunnel(
        self, frame: Frame, data: bytes, start: int, end: int, port: int, depth: int
    ) -> Packet | None | bool:
        """VXLAN or Geneve; False when the payload does not look like one (never True)."""
        if end - start < 8:
            return False
        if port == UDP_VXLAN:
            # RFC 7348: flags (I bit 0x08), 24 reserved bits, VNI, 8 reserved bits.
            if not data[start] & 0x08:
                return False
            return self._ethernet(frame, data[:end], start + 8, depth)
        # RFC 8926 Geneve: version 0, options length in 4-octet units, protocol type.
        if data[start] >> 6 != 0:
            return False
        inner = start + 8 + (data[start] & 0x3F) * 4
        (protocol,) = _U16.unpack_from(data, start + 2)
        if inner > end:
            return False
        if protocol == ETHERTYPE_TEB:
            return self._ethernet(frame, data[:end], inner, depth)
        return self._ethertype(frame, data[:end], inner, protocol, depth)

    def _gre(self, frame: Frame, data: bytes, start: int, depth: int) -> Packet | None:
        # RFC 2784 / RFC 2890 (key, sequence); version 1 is PPTP's enhanced GRE (RFC 2637).
        if len(data) < start + 4:
            raise _Malformed("GRE header cut short", AnomalyKind.NET_TRUNCATED)
        flags, protocol = struct.unpack_from("!HH", data, start)
        version = flags & 0x7
        offset = start + 4
        if flags & 0x4000:
            # RFC 1701 source routing: rare enough to leave undecoded.
            return None
        if flags & 0x8000:
            offset += 4  # checksum + reserved
        if flags & 0x2000:
            offset += 4  # key (PPTP: payload length + call id)
        sequenced = bool(flags & 0x1000)
        if sequenced:
            offset += 4
        if version == 1 and flags & 0x0080:
            offset += 4  # PPTP acknowledgement number
        if offset > len(data):
            raise _Malformed("GRE header cut short", AnomalyKind.NET_TRUNCATED)
        if version == 1:
            if protocol != ETHERTYPE_PPP:
                return None
            # PPP in HDLC-like framing: optional address/control, 1- or 2-byte protocol.
            if data[offset : offset + 2] == b"\xff\x03":
                offset += 2
            if offset >= len(data):
                return None
            if data[offset] & 1:
                return self._ppp(frame, data, offset + 1, data[offset], depth)
            if offset + 2 > len(data):
                return None
            (ppp_protocol,) = _U16.unpack_from(data, offset)
            return self._ppp(frame, data, offset + 2, ppp_protocol, depth)
        if version != 0:
            return None
        if protocol == ETHERTYPE_TEB:
            return self._ethernet(frame, data, offset, depth)
        if protocol == ETHERTYPE_ERSPAN_2:
            # ERSPAN type II carries an 8-byte header and sets the GRE sequence
            # bit; type I has neither.
            return self._ethernet(frame, data, offset + 8 if sequenced else offset, depth)
        if protocol == ETHERTYPE_ERSPAN_3:
            # ERSPAN type III: 12-byte header; O bit (last bit) adds an 8-byte
            # platform-specific subheader; frame type 0 Ethernet, 2 IP.
            if len(data) < offset + 12:
                raise _Malformed("ERSPAN III header cut short", AnomalyKind.NET_TRUNCATED)
            (last,) = _U16.unpack_from(data, offset + 10)
            frame_type = (last >> 10) & 0x1F
            inner = offset + 12 + (8 if last & 1 else 0)
            if frame_type == 0:
                return self._ethernet(frame, data, inner, depth)
            if frame_type == 2:
                return self._ip_by_version(frame, data, inner, depth)
            return None
        return self._ethertype(frame, data, offset, protocol, depth)
