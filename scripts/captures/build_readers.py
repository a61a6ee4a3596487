"""Write the small captures that test the readers and net layers.

Run from anywhere: python3 scripts/captures/build_readers.py
Output: captures/readers/ (committed). Each file holds one short HTTP
exchange (the same request/response bytes) behind a different file format,
link layer, tunnel or fragmentation, so a test can check that every path
yields the same TCP payload. Format variants the kit cannot write
(nanosecond, pcapng, NetMon, modified pcap) come from `editcap`; variants
editcap cannot write either (big-endian pcap, multi-interface/multi-section
pcapng with simple and obsolete packet blocks, NetMon 2.3 with per-frame
media types) are written with struct here, byte for byte per their specs.

Only documentation addresses are used (RFC 5737, RFC 3849).
"""

from __future__ import annotations

import gzip
import struct
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from pcapkit import CaptureBuilder, http_request, http_response  # noqa: E402
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III  # noqa: E402
from scapy.contrib.geneve import GENEVE  # noqa: E402
from scapy.contrib.mpls import MPLS  # noqa: E402
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment  # noqa: E402
from scapy.layers.inet6 import (  # noqa: E402
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, GRE, Dot1AD, Dot1Q, Ether  # noqa: E402
from scapy.layers.ppp import PPP, PPPoE  # noqa: E402
from scapy.layers.vxlan import VXLAN  # noqa: E402
from scapy.packet import Packet, Raw  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "captures" / "readers"

REQUEST = http_request("GET", "/secure/", "www.example.test", [("User-Agent", "authtrace-test")])
RESPONSE = http_response(
    401, "Unauthorized", [("WWW-Authenticate", "Negotiate"), ("WWW-Authenticate", "NTLM")]
)

Record = tuple[float, bytes, int]  # time stamp, captured bytes, original length


def eth(**fields: object) -> Packet:
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", **fields)


def conversation(client: str = "192.0.2.10", server: str = "198.51.100.20") -> CaptureBuilder:
    capture = CaptureBuilder()
    tcp = capture.tcp(client=(client, 50000), server=(server, 80))
    tcp.send(REQUEST)
    tcp.reply(RESPONSE)
    tcp.close()
    return capture


def ip_layer(packet: Packet) -> Packet:
    return packet[IPv6] if IPv6 in packet else packet[IP]


def records(packets: list[Packet], wrap=lambda p: bytes(p)) -> list[Record]:  # noqa: ANN001
    out = []
    for packet in packets:
        data = wrap(packet)
        out.append((float(packet.time), data, len(data)))
    return out


def write_pcap(
    path: Path,
    items: list[Record],
    link_type: int,
    big_endian: bool = False,
    snaplen: int = 65535,
) -> None:
    """Classic pcap (draft-ietf-opsawg-pcap section 4), microsecond magic."""
    order = ">" if big_endian else "<"
    with open(path, "wb") as out:
        out.write(struct.pack(order + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, link_type))
        for stamp, data, original in items:
            seconds = int(stamp)
            micros = round((stamp - seconds) * 1e6)
            data = data[:snaplen]
            out.write(struct.pack(order + "IIII", seconds, micros, len(data), original))
            out.write(data)


def editcap(source: Path, target: Path, file_type: str, *extra: str) -> None:
    subprocess.run(["editcap", *extra, "-F", file_type, str(source), str(target)], check=True)


# -- pcapng by hand (draft-ietf-opsawg-pcapng) -------------------------------


def _block(order: str, block_type: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    length = len(body) + 12
    return struct.pack(order + "II", block_type, length) + body + struct.pack(order + "I", length)


def _option(order: str, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


def _shb(order: str) -> bytes:
    return _block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def _idb(order: str, link_type: int, tsresol: int | None = None) -> bytes:
    options = b""
    if tsresol is not None:
        options = _option(order, 9, bytes([tsresol])) + _option(order, 0, b"")
    return _block(order, 1, struct.pack(order + "HHI", link_type, 0, 0) + options)


def _epb(order: str, interface: int, ticks: int, data: bytes, original: int) -> bytes:
    header = struct.pack(
        order + "IIIII", interface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), original
    )
    return _block(order, 6, header + data)


def _opb(order: str, interface: int, ticks: int, data: bytes) -> bytes:
    header = struct.pack(
        order + "HHIIII", interface, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data)
    )
    return _block(order, 2, header + data)


def _spb(order: str, data: bytes) -> bytes:
    return _block(order, 3, struct.pack(order + "I", len(data)) + data)


def write_mixed_pcapng(path: Path, packets: list[Packet]) -> None:
    """Two sections (little- then big-endian), three interfaces with different
    link types and resolutions, enhanced/simple/obsolete packet blocks and
    blocks a reader must skip."""
    eth = [bytes(p) for p in packets]
    raw = [bytes(ip_layer(p)) for p in packets]
    stamps = [float(p.time) for p in packets]
    le, be = "<", ">"
    blob = _shb(le)
    blob += _idb(le, 1)  # Ethernet, microseconds (default)
    blob += _idb(le, 101, 9)  # raw IP, nanoseconds
    blob += _idb(le, 1, 0x80 | 20)  # Ethernet, 2^-20 s
    # A Custom Block (Wireshark numbers it as a frame) and a local-use block
    # type nobody defines (skipped, not numbered).
    blob += _block(le, 0x00000BAD, struct.pack(le + "I", 32473) + b"custom data")
    blob += _block(le, 0x80000123, b"local block a reader does not know")
    blob += _block(le, 4, b"\x00\x00\x00\x00")  # name resolution block, only end marker
    third = len(packets) // 3
    for i in range(third):
        blob += _epb(le, 0, round(stamps[i] * 1e6), eth[i], len(eth[i]))
    for i in range(third, 2 * third):
        blob += _epb(le, 1, round(stamps[i] * 1e9), raw[i], len(raw[i]))
    blob += _opb(le, 2, round(stamps[2 * third] * (1 << 20)), eth[2 * third])
    blob += _spb(le, eth[2 * third + 1])
    blob += _block(le, 5, struct.pack(le + "III", 0, 0, 0))  # interface statistics
    blob += _shb(be)
    blob += _idb(be, 1)
    for i in range(2 * third + 2, len(packets)):
        blob += _epb(be, 0, round(stamps[i] * 1e6), eth[i], len(eth[i]))
    path.write_bytes(blob)


# -- Network Monitor 2.3 by hand (Wireshark's NetMon file-format notes) -------


def write_netmon23(path: Path, frames: list[tuple[float, bytes, int]]) -> None:
    """NetMon 2.3: 128-byte header, frames with a 15-byte trailer carrying
    the media type, frame table at the end. frames: (time, bytes, media)."""
    start = frames[0][0]
    body = b""
    offsets = []
    for stamp, data, media in frames:
        offsets.append(128 + len(body))
        delta = round((stamp - start) * 1e6)
        filetime = round(stamp * 1e7) + 116444736000000000
        body += struct.pack("<QII", delta, len(data), len(data)) + data
        body += struct.pack("<HIQB", media, 0, filetime, 0)
    table_offset = 128 + len(body)
    import time

    tm = time.gmtime(start)
    header = struct.pack(
        "<4sBBH8HII",
        b"GMBU",
        3,
        2,
        1,
        tm.tm_year,
        tm.tm_mon,
        (tm.tm_wday + 1) % 7,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        round((start % 1) * 1000),
        table_offset,
        4 * len(offsets),
    )
    header += b"\x00" * (128 - len(header))
    path.write_bytes(header + body + struct.pack(f"<{len(offsets)}I", *offsets))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    base = conversation()
    packets = base.packets
    eth_file = OUT / "eth-ipv4-tcp.pcap"
    write_pcap(eth_file, records(packets), 1)

    # File format variants of the same packets.
    write_pcap(OUT / "eth-ipv4-tcp-be.pcap", records(packets), 1, big_endian=True)
    editcap(eth_file, OUT / "eth-ipv4-tcp-ns.pcap", "nsecpcap")
    editcap(eth_file, OUT / "eth-ipv4-tcp.pcapng", "pcapng")
    editcap(OUT / "eth-ipv4-tcp-ns.pcap", OUT / "eth-ipv4-tcp-ns.pcapng", "pcapng")
    editcap(eth_file, OUT / "eth-ipv4-tcp-modified.pcap", "modpcap")
    editcap(eth_file, OUT / "eth-ipv4-tcp.netmon2.cap", "netmon2")
    # Compressed, with a misleading name: detection is by magic, never by name.
    (OUT / "eth-ipv4-tcp.pcap.gz").write_bytes(gzip.compress(eth_file.read_bytes(), mtime=0))
    (OUT / "eth-ipv4-tcp-pcapng.gz.cap").write_bytes(
        gzip.compress((OUT / "eth-ipv4-tcp.pcapng").read_bytes(), mtime=0)
    )
    write_mixed_pcapng(OUT / "mixed-interfaces-sections.pcapng", packets)
    netmon_frames = [(float(p.time), bytes(p), 1) for p in packets[:4]]
    netmon_frames.append((float(packets[4].time), b"\x00" * 40, 0xFFE0))  # an ETW event
    netmon_frames += [(float(p.time), bytes(ip_layer(p)), 0xE000 + 101) for p in packets[4:]]
    write_netmon23(OUT / "netmon23-media-types.cap", netmon_frames)

    # Link layers.
    def ether_with(*tags: Packet):  # noqa: ANN202
        def wrap(packet: Packet) -> bytes:
            outer = eth()
            for tag in tags:
                outer = outer / tag.copy()
            return bytes(outer / ip_layer(packet))

        return wrap

    write_pcap(OUT / "vlan-8021q.pcap", records(packets, ether_with(Dot1Q(vlan=10))), 1)
    write_pcap(
        OUT / "vlan-qinq-88a8.pcap",
        records(packets, ether_with(Dot1AD(vlan=20), Dot1Q(vlan=30))),
        1,
    )

    def qinq_9100(packet: Packet) -> bytes:
        inner = bytes(Dot1Q(vlan=40) / ip_layer(packet))
        return bytes(eth(type=0x9100)) + inner

    write_pcap(OUT / "vlan-qinq-9100.pcap", records(packets, qinq_9100), 1)

    def sll(packet: Packet) -> bytes:
        ip = bytes(ip_layer(packet))
        return struct.pack("!HHH8sH", 0, 1, 6, b"\x02\x00\x00\x00\x00\x01\x00\x00", 0x0800) + ip

    def sll2(packet: Packet) -> bytes:
        ip = bytes(ip_layer(packet))
        return struct.pack("!HHIHBB8s", 0x0800, 0, 2, 1, 0, 6, b"\x02" + b"\x00" * 7) + ip

    write_pcap(OUT / "linux-sll.pcap", records(packets, sll), 113)
    write_pcap(OUT / "linux-sll2.pcap", records(packets, sll2), 276)
    write_pcap(OUT / "raw-101.pcap", records(packets, lambda p: bytes(ip_layer(p))), 101)
    write_pcap(OUT / "raw-228-ipv4.pcap", records(packets, lambda p: bytes(ip_layer(p))), 228)
    write_pcap(OUT / "raw-12.pcap", records(packets, lambda p: bytes(ip_layer(p))), 12)
    write_pcap(OUT / "raw-14.pcap", records(packets, lambda p: bytes(ip_layer(p))), 14)
    v6 = conversation("2001:db8::10", "2001:db8::20").packets
    write_pcap(OUT / "raw-229-ipv6.pcap", records(v6, lambda p: bytes(ip_layer(p))), 229)
    write_pcap(OUT / "eth-ipv6-tcp.pcap", records(v6), 1)

    def null(family: int, order: str):  # noqa: ANN202
        return lambda p: struct.pack(order + "I", family) + bytes(ip_layer(p))

    write_pcap(OUT / "null-le-inet.pcap", records(packets, null(2, "<")), 0)
    write_pcap(OUT / "null-be-inet.pcap", records(packets, null(2, ">")), 0, big_endian=True)
    for family in (24, 28, 30):
        write_pcap(OUT / f"null-le-inet6-{family}.pcap", records(v6, null(family, "<")), 0)
    write_pcap(OUT / "loop-108.pcap", records(packets, null(2, ">")), 108)
    write_pcap(OUT / "loop-108-inet6.pcap", records(v6, null(24, ">")), 108)

    def over(outer):  # noqa: ANN001, ANN202
        return lambda p: bytes(outer() / ip_layer(p))

    # MPLS and PPPoE on Ethernet.
    write_pcap(OUT / "mpls.pcap", records(packets, over(lambda: eth() / MPLS(label=16, s=1))), 1)
    write_pcap(
        OUT / "pppoe.pcap",
        records(packets, over(lambda: eth() / PPPoE(sessionid=1) / PPP(proto=0x0021))),
        1,
    )

    # Tunnels that port mirrors deliver.
    mirror = "203.0.113.1", "203.0.113.2"

    def outer_ip() -> Packet:
        return eth() / IP(src=mirror[0], dst=mirror[1])

    def inner_eth(packet: Packet) -> Packet:
        return eth() / ip_layer(packet)

    def tunnel(make):  # noqa: ANN001, ANN202
        return lambda p: bytes(make(p))

    write_pcap(OUT / "gre-ipv4.pcap", records(packets, over(lambda: outer_ip() / GRE())), 1)
    write_pcap(
        OUT / "gre-teb-key.pcap",
        records(
            packets,
            tunnel(lambda p: outer_ip() / GRE(key_present=1, key=7, proto=0x6558) / inner_eth(p)),
        ),
        1,
    )
    write_pcap(
        OUT / "erspan-ii.pcap",
        records(
            packets,
            tunnel(
                lambda p: (
                    outer_ip()
                    / GRE(seqnum_present=1, seqence_number=1, proto=0x88BE)
                    / ERSPAN_II(session_id=5)
                    / inner_eth(p)
                )
            ),
        ),
        1,
    )
    write_pcap(
        OUT / "erspan-iii.pcap",
        records(
            packets,
            tunnel(
                lambda p: (
                    outer_ip()
                    / GRE(seqnum_present=1, proto=0x22EB)
                    / ERSPAN_III(session_id=6)
                    / inner_eth(p)
                )
            ),
        ),
        1,
    )
    write_pcap(
        OUT / "vxlan.pcap",
        records(
            packets,
            tunnel(
                lambda p: outer_ip() / UDP(sport=51000, dport=4789) / VXLAN(vni=100) / inner_eth(p)
            ),
        ),
        1,
    )
    write_pcap(
        OUT / "geneve.pcap",
        records(
            packets,
            tunnel(
                lambda p: (
                    outer_ip()
                    / UDP(sport=51000, dport=6081)
                    / GENEVE(vni=200, proto=0x6558)
                    / inner_eth(p)
                )
            ),
        ),
        1,
    )
    write_pcap(OUT / "ip-in-ip.pcap", records(packets, over(lambda: outer_ip())), 1)
    write_pcap(
        OUT / "6in4.pcap",
        records(v6, over(lambda: eth() / IP(src=mirror[0], dst=mirror[1], proto=41))),
        1,
    )

    # IPv6 extension headers before TCP.
    write_pcap(
        OUT / "ipv6-extension-headers.pcap",
        records(
            v6,
            lambda p: bytes(
                eth()
                / IPv6(src=p[IPv6].src, dst=p[IPv6].dst)
                / IPv6ExtHdrHopByHop()
                / IPv6ExtHdrDestOpt()
                / IPv6ExtHdrRouting(addresses=[])
                / p[TCP]
            ),
        ),
        1,
    )

    # Fragments: the request's data segment split into IPv4 fragments that
    # arrive out of order, with a later conflicting copy of one (first copy wins).
    request_index = 3  # after the handshake
    request_packet = packets[request_index]
    pieces = fragment(request_packet[IP], fragsize=32)
    conflicting = pieces[2].copy()
    conflicting[Raw].load = b"X" * len(conflicting[Raw].load)
    shuffled = [pieces[2], pieces[0], conflicting, *pieces[3:], pieces[1]]
    fragmented = []
    for i, packet in enumerate(packets):
        if i == request_index:
            for piece in shuffled:
                copy = eth() / piece
                copy.time = packet.time
                fragmented.append(copy)
        else:
            fragmented.append(packet)
    write_pcap(OUT / "ipv4-fragments.pcap", records(fragmented), 1)
    # The same with one fragment lost: the datagram never completes.
    completing = request_index + len(shuffled) - 1
    write_pcap(
        OUT / "ipv4-fragment-lost.pcap",
        records(fragmented[:completing] + fragmented[completing + 1 :]),
        1,
    )
    v6_request = v6[request_index]
    v6_pieces = []
    payload = bytes(v6_request[TCP])
    chunk = 96
    for start in range(0, len(payload), chunk):
        more = 1 if start + chunk < len(payload) else 0
        piece = (
            eth()
            / IPv6(src=v6_request[IPv6].src, dst=v6_request[IPv6].dst)
            / IPv6ExtHdrFragment(id=0x1234, offset=start // 8, m=more, nh=6)
            / Raw(payload[start : start + chunk])
        )
        piece.time = v6_request.time
        v6_pieces.append(piece)
    v6_fragmented = v6[:request_index] + v6_pieces[::-1] + v6[request_index + 1 :]
    write_pcap(OUT / "ipv6-fragments.pcap", records(v6_fragmented), 1)

    # Snapshot length: the response segment holds fewer bytes than it promised.
    write_pcap(OUT / "snaplen-96.pcap", records(packets), 1, snaplen=96)

    # Frames that carry no TCP/UDP, and malformed headers among good ones.
    others = [
        eth() / ARP(psrc="192.0.2.10", pdst="198.51.100.20"),
        eth() / IP(src="192.0.2.10", dst="198.51.100.20") / ICMP(),
    ]
    broken_ihl = bytearray(bytes(packets[0]))
    broken_ihl[14] = 0x43  # IPv4 header length 12 bytes
    broken_tcp = bytearray(bytes(packets[1]))
    broken_tcp[14 + 20 + 12] = 0x30  # TCP data offset 12 bytes
    items = records(others) + records(packets)
    items.insert(3, (items[2][0], bytes(broken_ihl), len(broken_ihl)))
    items.insert(4, (items[2][0], bytes(broken_tcp), len(broken_tcp)))
    write_pcap(OUT / "non-tcp-and-malformed.pcap", items, 1)


if __name__ == "__main__":
    main()
