"""The fast lane (lane.py) changes nothing but speed: a capture read with the
lane and without it gives the same connections (every field: exchanges,
messages, gaps, frames, packet counts), the same anomalies and the same
capture summaries. Checked on every capture we have, on the benchmark's
generator output, and on hand-built connections that are reordered,
retransmitted, lost (with and without ACKs proving the loss), cut by the
snapshot length, or closed early. The lane must also really be used, or
these comparisons would prove nothing."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authtrace import lane as lane_module
from authtrace.pipeline import Ownership, Pipeline

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "captures"
_SUFFIXES = {".pcap", ".pcapng", ".cap", ".gz"}

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _run(path: Path, fast_lane: bool) -> tuple[object, ...]:
    pipeline = Pipeline(fast_lane=fast_lane)
    connections = list(pipeline.connections([path]))
    result = pipeline.result
    return (
        connections,
        result.anomalies,
        result.captures,
        result.other_connections,
        result.kdc,
    )


Taken = Callable[[], int]


@pytest.fixture
def claims(monkeypatch: pytest.MonkeyPatch) -> Taken:
    """How many frames the lanes created during the test took."""
    lanes: list[lane_module.FastLane] = []
    original = lane_module.FastLane.__init__

    def recording(self, reassembler):  # type: ignore[no-untyped-def]
        original(self, reassembler)
        lanes.append(self)

    monkeypatch.setattr(lane_module.FastLane, "__init__", recording)
    return lambda: sum(lane.taken for lane in lanes)


def _captures() -> list[Path]:
    found = sorted(p for p in (REPO / "captures").rglob("*") if p.suffix in _SUFFIXES)
    if SHARED.is_dir():
        found += sorted(p for p in SHARED.rglob("*") if p.suffix in _SUFFIXES)
    return [p for p in found if p.is_file()]


@pytest.mark.parametrize("capture", _captures(), ids=lambda p: p.name[:60])
def test_same_results_with_and_without_the_lane(capture: Path) -> None:
    assert _run(capture, True) == _run(capture, False)


def test_benchmark_capture_same_results_and_lane_takes_most_frames(
    tmp_path: Path, claims: Taken
) -> None:
    from benchmarks.make_capture import write_pcap

    path = tmp_path / "bench.pcap"
    stats = write_pcap(path, seed=3, scale=0.01)
    with_lane = _run(path, True)
    assert claims() > stats.packets // 2
    assert with_lane == _run(path, False)


def _run_part(path: Path, fast_lane: bool, index: int, jobs: int = 2) -> tuple[object, ...]:
    """What a reader of part of the capture (parallel.py) hands on and keeps."""
    pipeline = Pipeline(fast_lane=fast_lane, ownership=Ownership(index, jobs))
    connections = list(pipeline.connections([path]))
    result = pipeline.result
    return (
        [(connection, pipeline.settled_below) for connection in connections],
        result.anomalies,
        result.orders,
        result.captures,
        result.stream_first_ids,
        result.other_connections,
        result.kdc,
    )


@pytest.mark.parametrize("index", [0, 1])
@pytest.mark.parametrize("capture", _captures(), ids=lambda p: p.name[:60])
def test_a_reader_of_part_same_with_and_without_the_lane(capture: Path, index: int) -> None:
    # Its lanes take the frames of the flows another reader owns, too.
    assert _run_part(capture, True, index) == _run_part(capture, False, index)


@pytest.mark.parametrize("profile", ["proxy", "mix"])
def test_a_reader_of_part_does_not_decode_the_frames_of_flows_it_does_not_own(
    tmp_path: Path, claims: Taken, profile: str
) -> None:
    """On the proxy profile one reader's lanes never open (test below): a reader
    of a third of the flows takes most of the frames of the other two thirds
    before decoding them (all but their SYN, FIN and RST frames, and the first
    of each direction), and reads what it owns as without the lane."""
    from benchmarks.auth_dense import write_pcap

    path = tmp_path / f"{profile}.pcap"
    stats = write_pcap(path, profile, 300)
    for index in range(3):
        before = claims()
        assert _run_part(path, True, index, jobs=3) == _run_part(path, False, index, jobs=3)
        assert claims() - before > stats.packets // 3


# -- hand-built connections ---------------------------------------------------------

CLIENT = (bytes([192, 0, 2, 10]), 50000)
SERVER = (bytes([198, 51, 100, 20]), 80)
MSS = 100
ACK, PSH, SYN, FIN = 0x10, 0x08, 0x02, 0x01


def _frame(to_server: bool, seq: int, ack: int, flags: int, payload: bytes, cut: int = 0) -> bytes:
    """Ethernet II / IPv4 / TCP bytes; `cut` bytes of the payload left out (snaplen)."""
    (src, sport), (dst, dport) = (CLIENT, SERVER) if to_server else (SERVER, CLIENT)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack, 0x50, flags, 65535, 0, 0)
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, 6, 0, src, dst)
    eth = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
    data = eth + ip + tcp + payload
    return data[: len(data) - cut] if cut else data


def _pcap(path: Path, frames: list[bytes]) -> None:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for n, data in enumerate(frames):
        out.append(struct.pack("<IIII", 1_700_000_000 + n, n, len(data), len(data)) + data)
    path.write_bytes(b"".join(out))


def _segments(data: bytes, base: int) -> list[tuple[int, bytes]]:
    return [(base + i, data[i : i + MSS]) for i in range(0, len(data), MSS)]


def _conversation(body_size: int, http: bool = True) -> list[tuple[bool, int, bytes]]:
    """(to_server, seq, payload) of each data segment of two exchanges."""
    request = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n" if http else b"\x16\x03\x01" + b"x" * 150
    body = bytes(range(256)) * (body_size // 256 + 1)
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % body_size + body[:body_size]
        if http
        else b"\x16\x03\x03" + b"y" * body_size
    )
    out: list[tuple[bool, int, bytes]] = []
    cseq, sseq = 1001, 5001
    for _ in range(2):
        for seq, chunk in _segments(request, cseq):
            out.append((True, seq, chunk))
        cseq += len(request)
        for seq, chunk in _segments(response, sseq):
            out.append((False, seq, chunk))
        sseq += len(response)
    return out


def _frames(
    segments: list[tuple[bool, int, bytes]],
    drops: set[int] = frozenset(),  # type: ignore[assignment]
    cuts: set[int] = frozenset(),  # type: ignore[assignment]
    ack_every: int = 2,
    fin: bool = True,
) -> list[bytes]:
    """The handshake, the data segments (some dropped or cut), ACKs that cover
    everything sent so far (so a dropped segment is proven lost), and FINs."""
    frames = [
        _frame(True, 1000, 0, SYN, b""),
        _frame(False, 5000, 1001, SYN | ACK, b""),
        _frame(True, 1001, 5001, ACK, b""),
    ]
    sent = {True: 1001, False: 5001}
    for n, (to_server, seq, chunk) in enumerate(segments):
        sent[to_server] = max(sent[to_server], seq + len(chunk))
        if n not in drops:
            cut = min(len(chunk), 30) if n in cuts else 0
            frames.append(_frame(to_server, seq, sent[not to_server], ACK | PSH, chunk, cut=cut))
        if ack_every and n % ack_every == ack_every - 1:
            frames.append(_frame(not to_server, sent[not to_server], sent[to_server], ACK, b""))
    if fin:
        frames.append(_frame(True, sent[True], sent[False], FIN | ACK, b""))
        frames.append(_frame(False, sent[False], sent[True] + 1, FIN | ACK, b""))
        frames.append(_frame(True, sent[True] + 1, sent[False] + 1, ACK, b""))
    return frames


def _compare(tmp_path: Path, frames: list[bytes]) -> tuple[object, ...]:
    path = tmp_path / "built.pcap"
    _pcap(path, frames)
    with_lane = _run(path, True)
    assert with_lane == _run(path, False)
    return with_lane


def test_clean_connection_is_mostly_taken_by_the_lane(tmp_path: Path, claims: Taken) -> None:
    connections, *_ = _compare(tmp_path, _frames(_conversation(3000)))
    assert len(connections) == 1  # type: ignore[arg-type]
    exchanges = connections[0].exchanges  # type: ignore[index]
    assert [e.response.body_size for e in exchanges] == [3000, 3000]
    assert claims() > 30


def test_not_http_connection_is_taken_by_the_lane(tmp_path: Path, claims: Taken) -> None:
    connections, anomalies, captures, other, _ = _compare(
        tmp_path, _frames(_conversation(3000, http=False))
    )
    assert connections == [] and other == 1
    assert claims() > 30


def test_lane_stays_closed_where_every_message_fits_a_segment(
    tmp_path: Path, claims: Taken
) -> None:
    """Issue 10: where the lane could take only bare ACKs (every message in one
    segment, as on captures of short authenticated exchanges), its look-up per
    frame costs more than it saves, so it does not open (`lane_pays`); the
    results are the same."""
    connections, *_ = _compare(tmp_path, _frames(_conversation(50)))
    assert [e.response.body_size for e in connections[0].exchanges] == [50, 50]  # type: ignore[index]
    assert claims() == 0


@pytest.mark.parametrize("profile", ["proxy", "kerberos", "mix"])
def test_auth_dense_profiles_same_with_the_adaptive_lane(
    tmp_path: Path, claims: Taken, profile: str
) -> None:
    """The benchmark's auth-dense profiles: the same results; on the proxy
    profile (short bodies, each in one segment) the lane never opens, on the
    Kerberos one only the few bodies that span segments open it."""
    from benchmarks.auth_dense import write_pcap

    path = tmp_path / f"{profile}.pcap"
    stats = write_pcap(path, profile, 60)
    assert _run(path, True) == _run(path, False)
    if profile == "proxy":
        assert claims() == 0
    assert claims() < stats.packets // 10


def test_loss_proven_by_acks_is_a_gap_with_the_lane(tmp_path: Path, claims: Taken) -> None:
    segments = _conversation(3000)
    dropped = 10  # a mid-body segment of the first response
    assert not segments[dropped][0]
    connections, anomalies, *_ = _compare(tmp_path, _frames(segments, drops={dropped}))
    connection = connections[0]  # type: ignore[index]
    assert [gap.length for gap in connection.gaps] == [MSS]
    assert connection.exchanges[0].response.complete is False
    assert connection.exchanges[1].response.complete is True
    assert any(a.kind == "tcp-gap" for a in anomalies)  # type: ignore[attr-defined]
    assert claims() > 0


@settings(max_examples=40, deadline=None)
@given(
    body=st.integers(min_value=1, max_value=2500),
    http=st.booleans(),
    swaps=st.lists(st.integers(min_value=0, max_value=80), max_size=4),
    repeats=st.lists(st.integers(min_value=0, max_value=80), max_size=4),
    drops=st.sets(st.integers(min_value=0, max_value=80), max_size=3),
    cuts=st.sets(st.integers(min_value=0, max_value=80), max_size=3),
    ack_every=st.sampled_from([0, 1, 2, 5]),
    fin=st.booleans(),
)
def test_perturbed_connections_same_with_and_without_lane(
    tmp_path_factory: pytest.TempPathFactory,
    body: int,
    http: bool,
    swaps: list[int],
    repeats: list[int],
    drops: set[int],
    cuts: set[int],
    ack_every: int,
    fin: bool,
) -> None:
    segments = _conversation(body, http)
    for i in swaps:  # out of order: a segment and its successor exchanged
        if i + 1 < len(segments):
            segments[i], segments[i + 1] = segments[i + 1], segments[i]
    for i in repeats:  # retransmission: a copy two segments later
        if i < len(segments):
            segments.insert(min(i + 3, len(segments)), segments[i])
    frames = _frames(segments, drops, cuts, ack_every, fin)
    _compare(tmp_path_factory.mktemp("lane"), frames)


# -- pcapng: the lane takes Enhanced and Simple Packet Blocks too ------------------

LINKTYPE_RAW = 101


def _pad(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


def _block(order: str, kind: int, body: bytes) -> bytes:
    """A pcapng block (draft-ietf-opsawg-pcapng section 3.1): type, total
    length, body padded to 32 bits, total length again."""
    body = _pad(body)
    length = 12 + len(body)
    return struct.pack(order + "II", kind, length) + body + struct.pack(order + "I", length)


def _shb(order: str) -> bytes:
    return _block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def _idb(
    order: str, link_type: int, tsresol: int | None = None, tsoffset: int = 0, snaplen: int = 0
) -> bytes:
    options = b""
    if tsresol is not None:  # if_tsresol (code 9), one byte
        options += struct.pack(order + "HH", 9, 1) + _pad(bytes([tsresol]))
    if tsoffset:  # if_tsoffset (code 14), signed 64-bit seconds
        options += struct.pack(order + "HHq", 14, 8, tsoffset)
    if options:
        options += struct.pack(order + "HH", 0, 0)
    return _block(order, 1, struct.pack(order + "HHI", link_type, 0, snaplen) + options)


def _epb(order: str, interface: int, ticks: int, data: bytes) -> bytes:
    head = struct.pack(
        order + "IIIII", interface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data)
    )
    return _block(order, 6, head + data)


def _spb(order: str, data: bytes) -> bytes:
    return _block(order, 3, struct.pack(order + "I", len(data)) + data)


def _other_port(raw: bytes) -> bytes:
    """A raw-IP copy of a frame moved to client port 50001 (another connection)."""
    data = bytearray(raw)
    for at in (20, 22):  # TCP source and destination ports after a 20-byte IPv4 header
        if data[at : at + 2] == struct.pack("!H", CLIENT[1]):
            data[at : at + 2] = struct.pack("!H", CLIENT[1] + 1)
    return bytes(data)


def _mixed_pcapng(first_order: str) -> tuple[bytes, int]:
    """Two sections (the second in the other byte order). Each has an Ethernet
    interface (nanosecond time stamps and an offset, then microseconds) and a
    raw-IP interface with 2^-20 s time stamps carrying another connection;
    some frames are Simple Packet Blocks, one a Custom Block.
    (file bytes, frames numbered)."""
    main = _frames(_conversation(3000))
    other = [_other_port(data[14:]) for data in _frames(_conversation(500))]
    orders = (first_order, ">" if first_order == "<" else "<")
    half = len(main) // 2
    order = orders[0]
    out = [_shb(order), _idb(order, 1, 9, 1000), _idb(order, LINKTYPE_RAW, 0x94)]
    numbered = 0
    for n, data in enumerate(main):
        if n == half:
            order = orders[1]
            out += [_shb(order), _idb(order, 1), _idb(order, LINKTYPE_RAW, 0x94)]
        if n % 7 == 6:
            out.append(_spb(order, data))
        else:
            ticks = (1_700_000_000 + n) * (10**9 if n < half else 10**6) + 123 * n
            out.append(_epb(order, 0, ticks, data))
        numbered += 1
        if n % 3 == 0 and other:
            out.append(_epb(order, 1, (1_700_000_000 + n) << 20 | 77, other.pop(0)))
            numbered += 1
        if n == half // 2:
            # Custom Block (section 4.8): numbered as a frame.
            out.append(_block(order, 0x00000BAD, struct.pack(order + "I", 32473) + b"note"))
            numbered += 1
    assert not other
    return b"".join(out), numbered


@pytest.mark.parametrize("order", ["<", ">"], ids=["little-first", "big-first"])
def test_pcapng_interfaces_sections_and_simple_blocks_are_taken(
    tmp_path: Path, claims: Taken, order: str
) -> None:
    data, numbered = _mixed_pcapng(order)
    path = tmp_path / "mixed.pcapng"
    path.write_bytes(data)
    with_lane = _run(path, True)
    taken = claims()
    assert with_lane == _run(path, False)
    connections, anomalies, captures, *_ = with_lane
    # The custom block is a frame that carries no packet.
    assert [a.kind for a in anomalies] == ["net-link-skipped"]  # type: ignore[attr-defined]
    assert captures[0].frames == numbered  # type: ignore[index]
    bodies = [e.response.body_size for c in connections for e in c.exchanges]  # type: ignore[attr-defined]
    assert sorted(bodies) == [500, 500, 3000, 3000]
    assert taken > 30


def test_pcapng_big_endian_only_is_taken(tmp_path: Path, claims: Taken) -> None:
    frames = _frames(_conversation(3000))
    out = [_shb(">"), _idb(">", 1, 3)]  # milliseconds
    out += [_epb(">", 0, (1_700_000_000 + n) * 1000 + n, d) for n, d in enumerate(frames)]
    path = tmp_path / "big.pcapng"
    path.write_bytes(b"".join(out))
    assert _run(path, True) == _run(path, False)
    assert claims() > 30


def test_pcapng_cut_mid_block_same_with_the_lane(tmp_path: Path, claims: Taken) -> None:
    data, _ = _mixed_pcapng("<")
    path = tmp_path / "cut.pcapng"
    # Cuts in both sections: the last frame read may be one the lane took.
    for cut in (len(data) * share // 3 + k for share in (1, 2) for k in range(0, 60, 13)):
        path.write_bytes(data[:cut])
        with_lane = _run(path, True)
        assert with_lane == _run(path, False)
        kinds = [a.kind for a in with_lane[1]]  # type: ignore[attr-defined]
        assert "capture-truncated" in kinds
    assert claims() > 30


def test_benchmark_as_pcapng_is_taken_by_the_lane(tmp_path: Path, claims: Taken) -> None:
    editcap = shutil.which("editcap")
    if editcap is None:
        pytest.skip("editcap (Wireshark) is not installed")
    from benchmarks.make_capture import write_pcap

    pcap = tmp_path / "bench.pcap"
    stats = write_pcap(pcap, seed=5, scale=0.01)
    path = tmp_path / "bench.pcapng"
    subprocess.run([editcap, "-F", "pcapng", str(pcap), str(path)], check=True)
    assert path.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    with_lane = _run(path, True)
    assert claims() > stats.packets // 2
    assert with_lane == _run(path, False)


def test_pcapng_simple_blocks_cut_by_the_snaplen_take_the_normal_path(
    tmp_path: Path, claims: Taken
) -> None:
    # Section 4.4: a Simple Packet Block holds at most the interface's snaplen.
    # 60 bytes keep every ACK whole (54 bytes) and cut every data segment
    # (of a connection that is not HTTP: its data may be taken when whole).
    frames = _frames(_conversation(3000, http=False))
    out = [_shb("<"), _idb("<", 1, snaplen=60)] + [_spb("<", d) for d in frames]
    path = tmp_path / "simple.pcapng"
    path.write_bytes(b"".join(out))
    assert _run(path, True) == _run(path, False)
    assert claims() > 10
