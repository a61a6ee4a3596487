"""KdcTracker (kerberos/kdc.py): pairing over UDP and record-marked TCP,
unanswered requests and SYNs, hostile records; tshark as the oracle on public
KDC captures (the pcaps are read here with scapy, and TCP is put in order by
a small test-only reassembler that reports gaps, never invents bytes)."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from typing import Any

import pytest
from _shared import shared_capture as _need
from hypothesis import given, settings
from hypothesis import strategies as st

from authtrace.auth.kinds import Message
from authtrace.kerberos.kdc import (
    MAX_RECORD,
    KdcResult,
    KdcSummary,
    KdcTracker,
    Transport,
    looks_like_kerberos,
)
from authtrace.net.packets import ACK, RST, SYN, TcpSegment, UdpDatagram
from authtrace.tcp.events import (
    CloseReason,
    ConnectionClosed,
    ConnectionOpened,
    Direction,
    Endpoint,
    StreamData,
    StreamGap,
)

CAPTURES = Path(__file__).resolve().parent.parent / ".." / "shared" / "captures"

_spec = importlib.util.spec_from_file_location(
    "_kerberos_builders", Path(__file__).with_name("test_kerberos_messages.py")
)
assert _spec is not None and _spec.loader is not None
B: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(B)


def tgs_rep() -> bytes:
    return B.app(
        13,
        B.seq(
            B.ctx(0, B.integer(5)),
            B.ctx(1, B.integer(13)),
            B.ctx(3, B.gstr("CONTOSO.COM")),
            B.ctx(4, B.principal(1, "alice")),
            B.ctx(5, B.ticket("CONTOSO.COM", "HTTP", "web01.contoso.com")),
            B.ctx(6, B.encrypted(18, b"\x22" * 30)),
        ),
    )


CLIENT = Endpoint("192.0.2.10", 50000)
KDC = Endpoint("192.0.2.1", 88)


def udp(frame: int, src: Endpoint, dst: Endpoint, payload: bytes) -> UdpDatagram:
    return UdpDatagram(frame, float(frame), src.ip, dst.ip, src.port, dst.port, payload)


def record(message: bytes) -> bytes:
    return len(message).to_bytes(4, "big") + message


def tcp_session(
    chunks: list[tuple[Direction, bytes]], client: Endpoint = CLIENT, server: Endpoint = KDC
) -> tuple[KdcTracker, KdcSummary]:
    tracker = KdcTracker()
    tracker.receive_tcp(ConnectionOpened(0, client, server, 1, 1.0, True))
    frame = 1
    for direction, data in chunks:
        frame += 1
        tracker.receive_tcp(StreamData(0, direction, data, frame, frame, float(frame)))
    closed = ConnectionClosed(
        connection=0,
        reason=CloseReason.FIN,
        closed_by=Direction.TO_SERVER,
        frame=frame + 1,
        timestamp=float(frame + 1),
        first_frame=1,
        last_frame=frame + 1,
        syn_seen=True,
        fin_seen=True,
        rst_seen=False,
        gap_bytes=0,
        packets=frame + 1,
    )
    tracker.receive_tcp(closed)
    return tracker, tracker.finish()


# --- UDP ----------------------------------------------------------------------


def test_udp_pairs_request_and_error_and_names_them() -> None:
    tracker = KdcTracker()
    assert tracker.receive_udp(udp(1, CLIENT, KDC, B.tgs_req())) == ()
    done = tracker.receive_udp(udp(2, KDC, CLIENT, B.krb_error(7)))
    assert len(done) == 1
    exchange = done[0]
    assert exchange.transport is Transport.UDP
    assert exchange.request_type is Message.TGS_REQ
    assert exchange.service == "HTTP/web01.contoso.com" and exchange.realm == "CONTOSO.COM"
    assert (exchange.request_frame, exchange.reply_frame) == (1, 2)
    assert exchange.result is KdcResult.ERROR
    assert exchange.error_code == 7 and exchange.error_name == "KDC_ERR_S_PRINCIPAL_UNKNOWN"
    assert exchange.e_text == "no such SPN"
    assert [e.value for e in exchange.etypes] == [18, 17, 23, -135]
    summary = tracker.finish()
    assert summary.exchanges == (exchange,) and summary.unanswered == ()
    assert "redacted" in repr(exchange.to_dict())


def test_udp_retransmission_is_one_exchange_and_fifo_pairing() -> None:
    tracker = KdcTracker()
    tracker.receive_udp(udp(1, CLIENT, KDC, B.tgs_req()))
    tracker.receive_udp(udp(2, CLIENT, KDC, B.tgs_req()))  # same nonce: resent
    other = B.tgs_req().replace(bytes.fromhex("01234567"), bytes.fromhex("07654321"))
    tracker.receive_udp(udp(3, CLIENT, KDC, other))
    first = tracker.receive_udp(udp(4, KDC, CLIENT, tgs_rep()))
    summary = tracker.finish()
    assert first[0].request_frame == 1 and first[0].retransmissions == 1
    assert first[0].result is KdcResult.TICKET
    assert first[0].ticket_etype is not None and first[0].ticket_etype.value == 18
    assert first[0].client_principal == "alice"  # from the TGS-REP, the request has none
    assert [e.request_frame for e in summary.unanswered] == [3]
    assert summary.unanswered[0].result is KdcResult.UNANSWERED


def test_udp_reply_without_request_is_kept_with_an_anomaly() -> None:
    tracker = KdcTracker()
    done = tracker.receive_udp(udp(5, KDC, CLIENT, B.krb_error(7)))
    assert done[0].request_frame is None and done[0].service == "HTTP/alias.contoso.com"
    kinds = [a.kind for a in tracker.finish().anomalies]
    assert kinds == ["kerberos-reply-without-request"]


def test_udp_other_ports_by_content_only() -> None:
    tracker = KdcTracker()
    odd = Endpoint("192.0.2.1", 8888)
    tracker.receive_udp(udp(1, CLIENT, odd, B.tgs_req()))
    tracker.receive_udp(udp(2, CLIENT, Endpoint("192.0.2.1", 53), b"\x12\x34\x01\x00" * 8))
    summary = tracker.finish()
    assert [e.kdc for e in summary.unanswered] == [odd]
    assert summary.anomalies == ()


def test_looks_like_kerberos() -> None:
    assert looks_like_kerberos(B.tgs_req())
    assert looks_like_kerberos(record(B.krb_error(25)))
    assert looks_like_kerberos(record(B.tgs_req())[:30])  # partial record is enough
    assert not looks_like_kerberos(b"GET / HTTP/1.1\r\n\r\n")
    assert not looks_like_kerberos(b"")
    # APPLICATION 14 shape but pvno 4.
    assert not looks_like_kerberos(bytes.fromhex("6e0e300ca003020104a103020e"))


# --- TCP ----------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 400), min_size=1, max_size=40))
def test_tcp_records_reassemble_however_segmented(cuts: list[int]) -> None:
    to_server = record(B.tgs_req()) + record(B.tgs_req())
    to_client = record(B.krb_error(7)) + record(tgs_rep())
    chunks: list[tuple[Direction, bytes]] = []
    for direction, stream in ((Direction.TO_SERVER, to_server), (Direction.TO_CLIENT, to_client)):
        pos = 0
        for cut in cuts:
            if pos >= len(stream):
                break
            chunks.append((direction, stream[pos : pos + cut]))
            pos += cut
        if pos < len(stream):
            chunks.append((direction, stream[pos:]))
    _tracker, summary = tcp_session(chunks)
    assert [e.result for e in summary.exchanges] == [KdcResult.ERROR, KdcResult.TICKET]
    assert all(e.connection == 0 and e.transport is Transport.TCP for e in summary.exchanges)
    assert summary.anomalies == ()


def test_tcp_oversize_and_reserved_bit_are_anomalies() -> None:
    big = (MAX_RECORD + 1).to_bytes(4, "big") + b"\x6c"
    _t, summary = tcp_session([(Direction.TO_SERVER, big)])
    assert [a.kind for a in summary.anomalies] == ["kerberos-record-oversize"]
    reserved = (0x80000000 | 10).to_bytes(4, "big") + b"\x00" * 10
    _t, summary = tcp_session([(Direction.TO_SERVER, reserved + record(B.tgs_req()))])
    assert [a.kind for a in summary.anomalies] == ["kerberos-record-reserved-bit"]
    assert summary.exchanges == ()


def test_tcp_gap_drops_the_partial_record_and_resynchronises() -> None:
    tracker = KdcTracker()
    tracker.receive_tcp(ConnectionOpened(3, CLIENT, KDC, 1, 1.0, True))
    first = record(B.tgs_req())
    tracker.receive_tcp(StreamData(3, Direction.TO_SERVER, first[:50], 2, 2, 2.0))
    tracker.receive_tcp(StreamGap(3, Direction.TO_SERVER, 100, 3, 3.0))
    tracker.receive_tcp(StreamData(3, Direction.TO_SERVER, first[150:], 4, 4, 4.0))
    tracker.receive_tcp(StreamData(3, Direction.TO_SERVER, record(B.tgs_req()), 5, 5, 5.0))
    done = tracker.receive_tcp(StreamData(3, Direction.TO_CLIENT, record(B.krb_error(7)), 6, 6, 6))
    summary = tracker.finish()
    assert [(e.request_frame, e.reply_frame) for e in done] == [(5, 6)]
    assert [a.kind for a in summary.anomalies] == ["kerberos-stream-gap"]


def test_tcp_unanswered_request_on_close_and_incomplete_record() -> None:
    _t, summary = tcp_session(
        [(Direction.TO_SERVER, record(B.tgs_req())), (Direction.TO_CLIENT, b"\x00\x00\x01")]
    )
    assert [e.result for e in summary.unanswered] == [KdcResult.UNANSWERED]
    assert [a.kind for a in summary.anomalies] == ["kerberos-record-incomplete"]


def test_tcp_non_kerberos_stream_on_other_port_is_ignored() -> None:
    web = Endpoint("192.0.2.80", 80)
    _t, summary = tcp_session(
        [(Direction.TO_SERVER, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 4)], server=web
    )
    assert summary.exchanges == () and summary.anomalies == ()
    _t, summary = tcp_session([(Direction.TO_SERVER, record(B.tgs_req()))], server=web)
    assert len(summary.unanswered) == 1


def test_syns_to_port_88() -> None:
    tracker = KdcTracker()
    other = Endpoint("192.0.2.10", 50001)

    def segment(frame: int, src: Endpoint, dst: Endpoint, flags: int) -> TcpSegment:
        return TcpSegment(frame, float(frame), src.ip, dst.ip, src.port, dst.port, 0, 0, flags, b"")

    tracker.note_tcp_syn(segment(1, CLIENT, KDC, SYN))
    tracker.note_tcp_syn(segment(2, CLIENT, KDC, SYN))  # retransmitted SYN
    tracker.note_tcp_syn(segment(3, other, KDC, SYN))
    tracker.note_tcp_syn(segment(4, KDC, other, RST | ACK))
    answered = Endpoint("192.0.2.10", 50002)
    tracker.note_tcp_syn(segment(5, answered, KDC, SYN))
    tracker.note_tcp_syn(segment(6, KDC, answered, SYN | ACK))
    attempts = tracker.finish().unanswered_connects
    assert [(a.client, a.syns, a.first_frame, a.last_frame, a.refused) for a in attempts] == [
        (CLIENT, 2, 1, 2, False),
        (other, 1, 3, 3, True),
    ]


# --- public captures, tshark as the oracle -------------------------------------


def feed_pcap(path: Path) -> KdcSummary:
    """Read a pcap with scapy and feed the tracker as the pipeline would."""
    from scapy.all import IP, TCP, UDP, IPv6, PcapReader

    tracker = KdcTracker()
    connections: dict[tuple[Any, ...], list[Any]] = {}
    with PcapReader(str(path)) as reader:
        for frame, packet in enumerate(reader, 1):
            ip = packet[IP] if IP in packet else packet[IPv6] if IPv6 in packet else None
            if ip is None:
                continue
            ts = float(packet.time)
            if UDP in packet:
                u = packet[UDP]
                # The captured bytes, not scapy's re-serialisation of its
                # own Kerberos dissection (which can differ).
                payload = bytes(u.original[8:])
                tracker.receive_udp(
                    UdpDatagram(frame, ts, ip.src, ip.dst, u.sport, u.dport, payload)
                )
                continue
            if TCP not in packet:
                continue
            t = packet[TCP]
            flags = int(t.flags)
            payload = bytes(t.original[t.dataofs * 4 :])
            if flags & SYN or (flags & RST and t.sport == 88):
                tracker.note_tcp_syn(
                    TcpSegment(
                        frame, ts, ip.src, ip.dst, t.sport, t.dport, t.seq, t.ack, flags, b""
                    )
                )
            key = (ip.src, t.sport, ip.dst, t.dport)
            back = (ip.dst, t.dport, ip.src, t.sport)
            if key not in connections and back not in connections:
                client, server = Endpoint(ip.src, t.sport), Endpoint(ip.dst, t.dport)
                if flags & (SYN | ACK) == SYN | ACK or t.sport == 88:
                    client, server = server, client
                connections[key] = [len(connections), client, server, {}]
                tracker.receive_tcp(
                    ConnectionOpened(
                        connections[key][0], client, server, frame, ts, bool(flags & SYN)
                    )
                )
            number, client, _server, expected = connections.get(key) or connections[back]
            to_server = (ip.src, t.sport) == (client.ip, client.port)
            direction = Direction.TO_SERVER if to_server else Direction.TO_CLIENT
            opposite = Direction.TO_CLIENT if to_server else Direction.TO_SERVER
            if opposite not in expected and flags & ACK:
                expected[opposite] = t.ack
            if direction not in expected:
                expected[direction] = t.seq + (1 if flags & SYN else 0)
            if not payload:
                continue
            if t.seq < expected[direction]:
                continue  # retransmission (the captures used here do not overlap)
            if t.seq > expected[direction]:
                gap = t.seq - expected[direction]
                tracker.receive_tcp(StreamGap(number, direction, gap, frame, ts))
            expected[direction] = t.seq + len(payload)
            tracker.receive_tcp(StreamData(number, direction, payload, frame, frame, ts))
    return tracker.finish()


def tshark_kdc_frames(path: Path) -> dict[int, tuple[int, int | None]]:
    cmd = ["tshark", "-r", str(path), "-Y", "kerberos and (udp.port == 88 or tcp.port == 88)"]
    cmd += ["-T", "fields", "-e", "frame.number", "-e", "kerberos.msg_type"]
    cmd += ["-e", "kerberos.error_code"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    frames = {}
    for line in out.splitlines():
        frame, msg_types, error_code = line.split("\t")
        if not msg_types:
            continue
        # Several messages can end in one frame (TCP); the first is enough here.
        msg_type = int(msg_types.split(",")[0])
        frames[int(frame)] = (msg_type, int(error_code.split(",")[0]) if error_code else None)
    return frames


KDC_CAPTURES = [
    "odedshimon__BruteShark/Pcap_Examples__Kerberos v5 UDP 2.pcap",
    "odedshimon__BruteShark/Pcap_Examples__Kerberos - v5 TCP.pcap",
    "odedshimon__BruteShark/Pcap_Examples__Kerberos-816.pcap",
    "odedshimon__BruteShark/Pcap_Examples__Kerberos - v5 UDP.pcap",
    "ntop__nDPI/tests__cfgs__default__pcap__kerberos-error.pcap",
    "ntop__nDPI/tests__cfgs__default__pcap__kerberos-login.pcap",
    "zeek__zeek/testing__btest__Traces__krb__kinit.pcap",
    "the-tcpdump-group__tcpdump/tests__afs.pcap",
    "kholia__my-pcaps/KRB5__KRB5-MitM__KRB5-MitM-krb5_downgrade-openwall-TCP.pcap",
    "OTRF__Security-Datasets/datasets__atomic__windows__lateral_movement__network__"
    "covenant_dcom_registerxll.zip__covenant_dcom_registerxll_2020-09-18145959.cap",
    "OTRF__Security-Datasets/datasets__atomic__windows__lateral_movement__network__"
    "empire_psremoting_stager.zip__empire_psremoting_stager_WORKSTATION5_2020-09-20170827.cap",
]


@pytest.mark.shared
@pytest.mark.oracle
@pytest.mark.parametrize("name", KDC_CAPTURES)
def test_exchanges_match_tshark(name: str) -> None:
    path = _need(name)
    summary = feed_pcap(path)
    frames = tshark_kdc_frames(path)
    requests = {f for f, (t, _e) in frames.items() if t in (10, 12)}
    replies = {f: e for f, (t, e) in frames.items() if t in (11, 13, 30)}
    ours_requests = {e.request_frame for e in summary.exchanges if e.request_frame}
    ours_replies = {e.reply_frame: e for e in summary.exchanges if e.reply_frame}
    folded = sum(e.retransmissions for e in summary.exchanges)
    assert ours_requests <= requests
    assert len(requests) == len(ours_requests) + folded
    assert set(ours_replies) == set(replies)
    for frame, error_code in replies.items():
        exchange = ours_replies[frame]
        assert exchange.error_code == error_code
        assert (exchange.result is KdcResult.ERROR) == (error_code is not None)
        if exchange.request_frame is not None:
            assert exchange.request_frame < frame
    assert not [a for a in summary.anomalies if a.kind != "kerberos-reply-without-request"]


@pytest.mark.shared
@pytest.mark.oracle
def test_http_spn_ticket_and_errors_in_captures() -> None:
    summary = feed_pcap(_need(KDC_CAPTURES[0]))
    http = [e for e in summary.exchanges if e.service == "HTTP/fc4.denyDC.com"]
    assert len(http) == 1 and http[0].result is KdcResult.TICKET
    assert http[0].request_type is Message.TGS_REQ and http[0].client_principal == "u1"
    assert http[0].ticket_etype is not None and http[0].ticket_etype.name == "rc4-hmac"

    summary = feed_pcap(_need(KDC_CAPTURES[4]))
    assert [(e.request_type, e.error_name) for e in summary.exchanges] == [
        (Message.AS_REQ, "KRB_ERR_RESPONSE_TOO_BIG")
    ]

    summary = feed_pcap(_need(KDC_CAPTURES[9]))
    unknown = [e for e in summary.exchanges if e.error_code == 7]
    assert len(unknown) == 1 and unknown[0].transport is Transport.TCP
    assert unknown[0].service and unknown[0].request_type is Message.TGS_REQ


def test_finished_exchange_keeps_facts_and_spools_its_messages_wire_bytes() -> None:
    """Issue 10: a KdcExchange keeps only the facts rules read; the whole
    messages (tickets: ~8 KB decoded) wait in the spool for --json as their
    wire bytes, decoded again when read (pickling the decoded messages cost
    half as much again as decoding them), and the exchange pickles
    self-contained (the bytes inline)."""
    import pickle

    from authtrace.kerberos.kdc import Redecoded
    from authtrace.kerberos.messages import decode_kerberos
    from authtrace.spool import Inline, Spool, Spooled

    spool = Spool()
    tracker = KdcTracker(spool)
    request, reply = B.tgs_req(), tgs_rep()
    tracker.receive_udp(udp(1, CLIENT, KDC, request))
    (done,) = tracker.receive_udp(udp(2, KDC, CLIENT, reply))
    assert isinstance(done.messages, Redecoded) and isinstance(done.messages.raw, Spooled)
    assert done.messages.raw.get() == (request, reply)
    # The bytes and a few dozen bytes of pickle framing, not thirty dataclasses.
    assert spool.size <= len(request) + len(reply) + 64
    assert done.request is not None and done.request.spn == done.service
    assert done.request == decode_kerberos(request) and done.reply == decode_kerberos(reply)
    assert done.reply is not None and done.reply.message is Message.TGS_REP
    copy = pickle.loads(pickle.dumps(done))
    assert isinstance(copy.messages, Redecoded) and isinstance(copy.messages.raw, Inline)
    assert copy == done and copy.to_dict() == done.to_dict()
    assert copy.to_dict()["reply"]["type"] == "KdcReply"


def test_request_then_reply_decodes_the_pair_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """--json reads an exchange's request and then its reply: the spooled bytes
    are decoded once for both (one message each), not once per property."""
    from authtrace.kerberos import kdc

    tracker = KdcTracker()
    tracker.receive_udp(udp(1, CLIENT, KDC, B.tgs_req()))
    (done,) = tracker.receive_udp(udp(2, KDC, CLIENT, tgs_rep()))
    decoded: list[bytes] = []
    real = kdc.decode_kerberos

    def counting(data: bytes) -> object:
        decoded.append(data)
        return real(data)

    monkeypatch.setattr(kdc, "decode_kerberos", counting)
    assert done.request is not None and done.reply is not None
    assert done.request.spn == done.service and len(decoded) == 2


def test_exchanges_share_the_facts_they_repeat() -> None:
    """Issue 10: what a run keeps of each KDC exchange is one copy of the KDC,
    realm, service and offered enc-types that every exchange repeats."""
    tracker = KdcTracker()
    done = []
    for frame in (1, 3):
        tracker.receive_udp(udp(frame, CLIENT, KDC, B.tgs_req()))
        done += tracker.receive_udp(udp(frame + 1, KDC, CLIENT, tgs_rep()))
    first, second = done
    assert first.request_frame == 1 and second.request_frame == 3
    assert first.etypes and first.etypes is second.etypes
    assert first.kdc is second.kdc and first.service is second.service
    assert first.realm is second.realm
