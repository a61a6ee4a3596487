"""The public Windows traces of mlgualtieri/NTLMRawUnHide (../shared/captures):
a `netsh trace` ETL file, a pktmon trace converted to Network Monitor format,
and tcpdump / Wireshark captures taken on the Linux client.

What the files really hold (checked here, against what SOURCES.md says): the
four files are four runs of the same smbclient logon from 10.1.10.49 to the
Windows 10 host 10.1.10.36 (user mikeg), not one run seen from both ends:
each has its own client port and its own server challenge. So the ETL is
compared with the pcap on what every run shares (the endpoints, the SMB2
NTLM message sequence, the client's byte-identical NEGOTIATE, the names and
flags of the AUTHENTICATE), and each file is checked against tshark or
dissect.etl for what is its own.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from dissect.etl.etl import ETL

from authtrace.anomalies import AnomalyKind
from authtrace.auth.ntlm import NtlmAuthenticate, NtlmChallenge, NtlmNegotiate, decode_ntlm
from authtrace.net.decoder import PacketDecoder
from authtrace.net.packets import TcpSegment
from authtrace.readers import open_capture
from authtrace.tcp.events import StreamData
from authtrace.tcp.reassembly import TcpReassembler
from tests._shared import shared_capture

FOLDER = "mlgualtieri__NTLMRawUnHide/"


@dataclass
class Conversation:
    """The TCP connections to port 445 of one file, their bytes and NTLM messages."""

    endpoints: set[tuple[str, str, int]]  # (client, server, server port)
    client_ports: set[int]
    ntlm: list[tuple[int, object]]  # (frame of the bytes, decoded message)
    segments: int
    anomalies: list[str]


def conversation(path: Path) -> Conversation:
    decoder = PacketDecoder()
    tcp = TcpReassembler()
    endpoints: set[tuple[str, str, int]] = set()
    ports: set[int] = set()
    streams: dict[tuple[int, object], bytearray] = {}
    first_frames: dict[tuple[int, object], list[tuple[int, int]]] = {}
    segments = 0
    capture = open_capture(path)
    for frame in capture:
        packet = decoder.decode(frame)
        if not isinstance(packet, TcpSegment) or 445 not in (packet.src_port, packet.dst_port):
            continue
        segments += 1
        client, server = (
            (packet.src, packet.dst) if packet.dst_port == 445 else (packet.dst, packet.src)
        )
        endpoints.add((client, server, 445))
        ports.add(packet.src_port if packet.dst_port == 445 else packet.dst_port)
        for event in tcp.feed(packet):
            if isinstance(event, StreamData):
                key = (event.connection, event.direction)
                buffer = streams.setdefault(key, bytearray())
                first_frames.setdefault(key, []).append((len(buffer), event.frame))
                buffer += event.data
    tcp.finish()
    decoder.finish()
    messages: list[tuple[int, object]] = []
    for key, data in streams.items():
        start = 0
        while (found := data.find(b"NTLMSSP\x00", start)) >= 0:
            frame = max(f for offset, f in first_frames[key] if offset <= found)
            messages.append((frame, decode_ntlm(bytes(data[found : found + 2048]))))
            start = found + 8
    messages.sort(key=lambda item: item[0])
    return Conversation(
        endpoints,
        ports,
        messages,
        segments,
        [a.kind for a in [*capture.anomalies, *decoder.anomalies, *tcp.anomalies]],
    )


def test_the_etl_holds_the_smb_ntlm_logon_the_pcap_holds() -> None:
    etl = conversation(shared_capture(FOLDER + "examples__capture.etl", tshark=False))
    pcap = conversation(shared_capture(FOLDER + "examples__capture.pcap", tshark=False))
    assert etl.endpoints == pcap.endpoints == {("10.1.10.49", "10.1.10.36", 445)}
    kinds = [[type(m).__name__ for _, m in c.ntlm] for c in (etl, pcap)]
    assert kinds[0] == kinds[1] == ["NtlmNegotiate", "NtlmChallenge", "NtlmAuthenticate"]
    (_, etl_negotiate), (_, etl_challenge), (_, etl_auth) = etl.ntlm
    (_, pcap_negotiate), (_, pcap_challenge), (_, pcap_auth) = pcap.ntlm
    assert isinstance(etl_negotiate, NtlmNegotiate) and etl_negotiate == pcap_negotiate
    assert isinstance(etl_challenge, NtlmChallenge) and isinstance(pcap_challenge, NtlmChallenge)
    assert etl_challenge.flags == pcap_challenge.flags
    assert etl_challenge.target_name == pcap_challenge.target_name
    assert isinstance(etl_auth, NtlmAuthenticate) and isinstance(pcap_auth, NtlmAuthenticate)
    assert (etl_auth.user, etl_auth.domain, etl_auth.workstation, etl_auth.flags) == (
        pcap_auth.user,
        pcap_auth.domain,
        pcap_auth.workstation,
        pcap_auth.flags,
    )
    assert etl_auth.user == "mikeg"
    # Two runs, not one seen from both ends: the ports and challenges differ.
    assert etl.client_ports == {40988} and pcap.client_ports == {40960}
    assert etl_challenge.server_challenge != pcap_challenge.server_challenge
    assert not [kind for kind in etl.anomalies if kind != AnomalyKind.ETW_EVENTS_SKIPPED]


def test_the_etl_frames_are_the_fragment_events_dissect_etl_reads() -> None:
    """Independent reader: dissect.etl walks the same buffers; every NDIS packet
    fragment event it finds is one frame here, in the same order, with the same
    bytes and time stamp (etl2pcapng numbers one frame per such event: since
    Windows 8.1 each packet is one event)."""
    path = shared_capture(FOLDER + "examples__capture.etl", tshark=False)
    expected = []
    with path.open("rb") as handle:
        for record in ETL(handle):
            header = record.header
            if type(header).__name__ != "EventHeader" or header.header.Id != 1001:
                continue
            # dissect.etl reads an EVENT_HEADER's provider GUID in the wrong byte
            # order (UUID(bytes=) where the header holds Windows order), so the
            # provider is checked on the raw bytes.
            raw = bytes(header.data[: header.size])
            assert raw[0x18:0x28] == bytes.fromhex("6e00d62e29470946b4233ee7bcd678ef")
            payload = raw[0x50:]
            size = int.from_bytes(payload[8:12], "little")
            expected.append((payload[12 : 12 + size], header.timestamp.timestamp()))
    frames = list(open_capture(path))
    assert len(frames) == len(expected) == 44
    assert [f.number for f in frames] == list(range(1, 45))
    assert [f.data for f in frames] == [data for data, _ in expected]
    for frame, (_, stamp) in zip(frames, expected, strict=True):
        assert frame.timestamp == pytest.approx(stamp, abs=2e-6)


def test_the_etl_counts_the_events_that_are_not_packets() -> None:
    path = shared_capture(FOLDER + "examples__capture.etl", tshark=False)
    capture = open_capture(path)
    list(capture)
    assert capture.format == "etl"
    (skipped,) = [a for a in capture.anomalies if a.kind == AnomalyKind.ETW_EVENTS_SKIPPED]
    # 95 records in the file (SOURCES.md), 44 of them packets.
    assert "51 ETW events carry no packet" in skipped.message
    assert "Microsoft-Windows-NDIS-PacketCapture" in skipped.message  # its 1011 and 1016


def test_the_pktmon_netmon_file_yields_its_tcp_conversation_without_skipped_frames() -> None:
    path = shared_capture(FOLDER + "examples__PktMon.cap")
    pktmon = conversation(path)
    assert pktmon.endpoints == {("10.1.10.49", "10.1.10.36", 445)}
    assert pktmon.segments == 33  # the 33 PktMon packet events (id 160) of the 408 records
    assert [type(m).__name__ for _, m in pktmon.ntlm] == [
        "NtlmNegotiate",
        "NtlmChallenge",
        "NtlmAuthenticate",
    ]
    # Network Monitor numbers every event: the NTLM messages are at the frames
    # where Wireshark shows their events.
    assert [frame for frame, _ in pktmon.ntlm] == [23, 26, 32]
    assert AnomalyKind.NET_LINK_SKIPPED not in pktmon.anomalies
    capture = open_capture(path)
    frames = list(capture)
    assert capture.tally is not None and capture.tally.records == 408
    (skipped,) = [a for a in capture.anomalies if a.kind == AnomalyKind.ETW_EVENTS_SKIPPED]
    assert "375 ETW events carry no packet" in skipped.message
    # tshark shows each of these frames as a PktMon event whose user data end
    # with the Ethernet frame authtrace yields.
    numbers = ",".join(str(f.number) for f in frames[:5])
    shown = subprocess.run(
        ["tshark", "-r", str(path), "-Y", f"frame.number in {{{numbers}}}", "-T", "fields",
         "-e", "frame.number", "-e", "netmon_event.user_data"],
        capture_output=True, text=True, check=True,
    ).stdout.split("\n")  # fmt: skip
    rows = [line.split("\t") for line in shown if line]
    assert [int(number) for number, _ in rows] == [f.number for f in frames[:5]]
    for (_, user_data), frame in zip(rows, frames[:5], strict=True):
        assert bytes.fromhex(user_data.replace(":", "")).endswith(frame.data)
