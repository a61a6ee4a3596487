"""readers: every format variant yields the same frames; damage becomes anomalies."""

from __future__ import annotations

import gzip
import io
import struct
import sys
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authtrace.readers import CaptureError, Frame, open_capture
from authtrace.readers.base import BlockLayout
from authtrace.readers.base import make_frame as fast_frame
from authtrace.readers.linktypes import (
    LINKTYPE_NETMON_MEDIA,
    LINKTYPE_PCAPNG_CUSTOM,
    LINKTYPE_RAW,
)

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "captures" / "readers"
SHARED = ROOT / ".." / "shared" / "captures"
BASE = CAPTURES / "eth-ipv4-tcp.pcap"


def read(source: object) -> tuple[list[Frame], object]:
    capture = open_capture(source)  # type: ignore[arg-type]
    return list(capture), capture


class Pipe(io.RawIOBase):
    """A non-seekable stream, like standard input fed by a pipe."""

    def __init__(self, data: bytes, step: int = 4096) -> None:
        self._data = data
        self._step = step

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), self._step, len(self._data))
        buffer[:count] = self._data[:count]
        self._data = self._data[count:]
        return count


@pytest.fixture(scope="module")
def base() -> list[Frame]:
    frames, capture = read(BASE)
    assert capture.format == "pcap"  # type: ignore[attr-defined]
    assert capture.anomalies == []  # type: ignore[attr-defined]
    return frames


def test_base_capture_is_numbered_from_one(base: list[Frame]) -> None:
    assert [f.number for f in base] == list(range(1, 11))
    assert all(f.link_type == 1 and f.original_length == len(f.data) for f in base)
    # 10 packets written by the kit one millisecond apart from 1_700_000_000.
    assert base[0].timestamp == pytest.approx(1_700_000_000.001, abs=1e-6)


@pytest.mark.parametrize(
    ("name", "expected_format"),
    [
        ("eth-ipv4-tcp-be.pcap", "pcap"),
        ("eth-ipv4-tcp-ns.pcap", "pcap-ns"),
        ("eth-ipv4-tcp-modified.pcap", "pcap-modified"),
        ("eth-ipv4-tcp.pcapng", "pcapng"),
        ("eth-ipv4-tcp-ns.pcapng", "pcapng"),
        ("eth-ipv4-tcp.netmon2.cap", "netmon2"),
        ("eth-ipv4-tcp.pcap.gz", "pcap+gzip"),
        ("eth-ipv4-tcp-pcapng.gz.cap", "pcapng+gzip"),
    ],
)
def test_format_variants_yield_the_same_frames(
    base: list[Frame], name: str, expected_format: str
) -> None:
    frames, capture = read(CAPTURES / name)
    assert capture.format == expected_format  # type: ignore[attr-defined]
    assert capture.anomalies == []  # type: ignore[attr-defined]
    assert [(f.number, f.link_type, f.data, f.original_length) for f in frames] == [
        (f.number, f.link_type, f.data, f.original_length) for f in base
    ]
    for mine, theirs in zip(frames, base, strict=True):
        assert mine.timestamp == pytest.approx(theirs.timestamp, abs=2e-3)


def test_pcapng_interfaces_resolutions_sections_and_block_kinds(base: list[Frame]) -> None:
    frames, capture = read(CAPTURES / "mixed-interfaces-sections.pcapng")
    assert capture.anomalies == []  # type: ignore[attr-defined]
    # Frame 1 is the custom block; the local-use block is skipped unnumbered.
    assert frames[0].link_type == LINKTYPE_PCAPNG_CUSTOM
    assert struct.unpack("<I", frames[0].data[:4]) == (32473,)
    packets = frames[1:]
    assert [f.number for f in packets] == list(range(2, 12))
    third = len(base) // 3
    for i, (mine, theirs) in enumerate(zip(packets, base, strict=True)):
        if third <= i < 2 * third:
            # raw-IP interface with nanosecond resolution
            assert mine.link_type == LINKTYPE_RAW
            assert mine.data == theirs.data[14:]
        else:
            assert mine.link_type == 1
            assert mine.data == theirs.data
        if i != 2 * third + 1:  # the simple packet block has no time stamp
            # 2^-20 s resolution is about a microsecond.
            assert mine.timestamp == pytest.approx(theirs.timestamp, abs=2e-6)


def test_netmon_per_frame_media_types(base: list[Frame]) -> None:
    frames, capture = read(CAPTURES / "netmon23-media-types.cap")
    assert capture.format == "netmon2"  # type: ignore[attr-defined]
    # Frame 5 is a 40-byte "event" record: too short to be an ETW event, so it
    # is reported and yields nothing; the numbering still counts it.
    assert [f.link_type for f in frames] == [1] * 4 + [101] * 6
    assert [f.number for f in frames] == [1, 2, 3, 4, *range(6, 12)]
    assert [f.data for f in frames[4:]] == [f.data[14:] for f in base[4:]]
    assert frames[5].timestamp == pytest.approx(base[5].timestamp, abs=1e-6)
    damaged = [a for a in capture.anomalies if a.kind == "etw-event-malformed"]  # type: ignore[attr-defined]
    assert [a.frame for a in damaged] == [5]


def test_netmon_from_a_pipe_is_spooled(base: list[Frame]) -> None:
    data = (CAPTURES / "eth-ipv4-tcp.netmon2.cap").read_bytes()
    frames, capture = read(Pipe(data))
    assert [f.data for f in frames] == [f.data for f in base]


@pytest.mark.shared
def test_pktmon_event_records_yield_the_packets_they_carry() -> None:
    """Issue 14: the events of a NetMon file of ETW events are unwrapped; the
    packet events give Ethernet frames at their NetMon frame numbers, the other
    events are counted (tests/test_etl_shared.py checks them against tshark)."""
    path = SHARED / "mlgualtieri__NTLMRawUnHide" / "examples__PktMon.cap"
    if not path.exists():
        pytest.skip("shared captures absent")
    frames, capture = read(path)
    assert len(frames) == 33
    assert {f.link_type for f in frames} == {1}
    assert frames[0].number == 5 and frames[-1].number == 101
    assert LINKTYPE_NETMON_MEDIA + 0xFFE0 not in {f.link_type for f in frames}


def test_non_seekable_stream_and_stdin(base: list[Frame], monkeypatch: pytest.MonkeyPatch) -> None:
    data = BASE.read_bytes()
    frames, _ = read(io.BufferedReader(Pipe(data, step=7)))
    assert [f.data for f in frames] == [f.data for f in base]
    gz = gzip.compress(data)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(Pipe(gz, step=5))))
    frames, capture = read("-")
    assert capture.format == "pcap+gzip"  # type: ignore[attr-defined]
    assert [f.data for f in frames] == [f.data for f in base]


def test_open_binary_file_is_left_open(base: list[Frame]) -> None:
    with open(BASE, "rb") as handle:
        frames, _ = read(handle)
        assert not handle.closed
    assert len(frames) == len(base)


def _record_offsets(data: bytes) -> list[int]:
    offsets, pos = [], 24
    while pos < len(data):
        offsets.append(pos)
        (captured,) = struct.unpack_from("<I", data, pos + 8)
        pos += 16 + captured
    return offsets


def test_file_cut_inside_a_record_keeps_earlier_frames(base: list[Frame]) -> None:
    data = BASE.read_bytes()
    offsets = _record_offsets(data)
    for cut in (offsets[4] + 10, offsets[4] + 20):  # inside the header, inside the data
        frames, capture = read(io.BytesIO(data[:cut]))
        assert [f.data for f in frames] == [f.data for f in base[:4]]
        assert [a.kind for a in capture.anomalies] == ["capture-truncated"]  # type: ignore[attr-defined]
        assert capture.anomalies[0].frame == 5  # type: ignore[attr-defined]


def test_pcapng_and_gzip_cut_short(base: list[Frame]) -> None:
    data = (CAPTURES / "eth-ipv4-tcp.pcapng").read_bytes()
    frames, capture = read(io.BytesIO(data[: len(data) - 30]))
    assert [f.data for f in frames] == [f.data for f in base[:-1]]
    assert [a.kind for a in capture.anomalies] == ["capture-truncated"]  # type: ignore[attr-defined]
    plain = BASE.read_bytes()
    plain += plain[24:] * 300  # the same ten records again and again
    big = gzip.compress(plain)
    frames, capture = read(io.BytesIO(big[: len(big) // 2]))
    assert 10 < len(frames) < 3010
    assert [f.data for f in frames] == [base[i % 10].data for i in range(len(frames))]
    assert [a.kind for a in capture.anomalies] == ["capture-truncated"]  # type: ignore[attr-defined]


def _damaged_gzip(plain: bytes, after: float) -> tuple[bytes, int]:
    """`plain` gzip-compressed with one byte flipped at the first position past
    the fraction `after` of the file where zlib finds the deflate data invalid
    (a flipped byte may also decode silently into other bytes, caught only by
    the checksum at the end); and that position."""
    packed = gzip.compress(plain, mtime=0)
    # Past the 10-byte member header (RFC 1952 section 2.3), before the trailer.
    for position in range(max(10, int(len(packed) * after)), len(packed) - 8):
        damaged = bytearray(packed)
        damaged[position] ^= 0x55
        try:
            zlib.decompress(bytes(damaged), 16 + zlib.MAX_WBITS)
        except zlib.error as error:
            if "invalid" in str(error):
                return bytes(damaged), position
    raise AssertionError("no position where the damage is detected")


def test_damaged_gzip_keeps_the_frames_before_the_damage() -> None:
    # Issue 11 item 12: a small file's compressed data is one zlib call, which
    # used to lose everything (and give "damaged gzip data", exit 2).
    plain = (ROOT / "captures" / "scenarios" / "ntlm-logon-failed.pcap").read_bytes()
    intact, _ = read(io.BytesIO(plain))
    kept = []
    for after in (0.2, 0.4, 0.6):
        damaged, position = _damaged_gzip(plain, after)
        frames, capture = read(io.BytesIO(damaged))
        # Deflate may turn the damaged byte into wrong bytes before zlib sees
        # the damage, so the last frames read may differ; the ones before are
        # the file's own.
        same = 0
        while same < len(frames) and frames[same].data == intact[same].data:
            same += 1
        kept.append(same)
        kinds = [a.kind for a in capture.anomalies]  # type: ignore[attr-defined]
        assert kinds and set(kinds) <= {"capture-corrupt", "capture-truncated"}, position
    assert 0 < kept[0] < kept[1] < kept[2] < len(intact)


def test_gzip_damage_before_the_file_header_is_one_line_error() -> None:
    plain = BASE.read_bytes()
    damaged, _ = _damaged_gzip(plain, 0.0)
    with pytest.raises(CaptureError, match="before the first frame: .*damaged compressed data"):
        open_capture(io.BytesIO(damaged))


def test_gzip_members_checksum_and_trailing_bytes(base: list[Frame]) -> None:
    plain = BASE.read_bytes()
    packed = gzip.compress(plain, mtime=0)
    # RFC 1952 section 2.2: members follow each other (here: the records again).
    frames, capture = read(io.BytesIO(packed + gzip.compress(plain[24:], mtime=0)))
    assert [f.data for f in frames] == [f.data for f in base] * 2
    assert capture.anomalies == []  # type: ignore[attr-defined]
    frames, capture = read(io.BytesIO(packed + b"\0\0\0\0"))
    assert [f.data for f in frames] == [f.data for f in base]
    assert ["ignored" in a.message for a in capture.anomalies] == [True]  # type: ignore[attr-defined]
    bad_crc = bytearray(packed)
    bad_crc[-8] ^= 1  # RFC 1952 section 2.3.1: CRC32 of the uncompressed data
    frames, capture = read(io.BytesIO(bytes(bad_crc)))
    assert [f.data for f in frames] == [f.data for f in base]
    assert ["checksum" in a.message for a in capture.anomalies] == [True]  # type: ignore[attr-defined]


def test_corrupt_record_length_stops_reading(base: list[Frame]) -> None:
    data = bytearray(BASE.read_bytes())
    offsets = _record_offsets(bytes(data))
    struct.pack_into("<I", data, offsets[2] + 8, 0x7FFFFFFF)
    frames, capture = read(io.BytesIO(bytes(data)))
    assert [f.data for f in frames] == [f.data for f in base[:2]]
    assert [a.kind for a in capture.anomalies] == ["capture-corrupt"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not a capture"),
        (b"\xd4\xc3\xb2\xa1\x02\x00", "pcap header"),
        (gzip.compress(b""), "empty"),
    ],
)
def test_unreadable_input_raises_capture_error(data: bytes, words: str) -> None:
    with pytest.raises(CaptureError, match=words):
        open_capture(io.BytesIO(data))


def test_missing_file_raises_capture_error(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="cannot open"):
        open_capture(tmp_path / "absent.pcap")


def test_header_only_capture_has_no_frames() -> None:
    frames, capture = read(io.BytesIO(BASE.read_bytes()[:24]))
    assert frames == [] and capture.anomalies == []  # type: ignore[attr-defined]


def test_fast_frame_is_a_frame() -> None:
    made = fast_frame(3, 1.5, 1, b"abc", 10)
    assert made == Frame(3, 1.5, 1, b"abc", 10)
    assert type(made) is Frame and hash(made) == hash(Frame(3, 1.5, 1, b"abc", 10))
    with pytest.raises(AttributeError):
        made.number = 4  # type: ignore[misc]


SAMPLES = [
    (CAPTURES / name).read_bytes()
    for name in (
        "eth-ipv4-tcp.pcap",
        "eth-ipv4-tcp-be.pcap",
        "mixed-interfaces-sections.pcapng",
        "netmon23-media-types.cap",
        "eth-ipv4-tcp.netmon2.cap",
        "eth-ipv4-tcp.pcap.gz",
    )
]
MAGICS = [b"", b"\xd4\xc3\xb2\xa1", b"\x0a\x0d\x0d\x0a", b"GMBU\x03\x02", b"RTSS", b"\x1f\x8b"]


def _must_not_raise(data: bytes) -> None:
    try:
        capture = open_capture(io.BytesIO(data))
    except CaptureError:
        return
    for frame in capture:
        assert len(frame.data) <= 256 * 1024
        assert frame.number >= 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(MAGICS), st.binary(max_size=400))
def test_random_bytes_never_raise(magic: bytes, tail: bytes) -> None:
    _must_not_raise(magic + tail)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(range(len(SAMPLES))),
    st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=8),
    st.integers(0, 1 << 16),
)
def test_mutated_captures_never_raise(index: int, edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(SAMPLES[index])
    for position, value in edits:
        data[position % len(data)] = value
    _must_not_raise(bytes(data[: max(cut, 4)]))


def test_pcapng_walker_takes_packet_blocks_and_numbering_is_kept() -> None:
    """readers/base.py's walker contract for pcapng: a walker is asked for per
    section and interface table, offered only the blocks of its link type's
    interfaces, and what it takes is numbered and tallied like any frame."""
    path = CAPTURES / "mixed-interfaces-sections.pcapng"
    everything, _ = read(path)
    layouts: list[tuple[int, BlockLayout]] = []

    def walker_for(link_type: int, layout: object) -> object:
        assert isinstance(layout, BlockLayout)
        layouts.append((link_type, layout))
        if link_type != 1:
            return None
        head = struct.Struct(layout.order + "III")

        def walk(buf: bytes, pos: int, end: int, number: int) -> tuple[int, int, float]:
            ts = 0.0
            while end - pos >= 12:
                kind, length, interface = head.unpack_from(buf, pos)
                if pos + length > end:
                    break
                enhanced = kind == 6 and layout.interfaces[interface] is not None
                if not enhanced and not (kind == 3 and layout.simple is not None):
                    break
                pos += length
                number += 1
                ts = everything[number - 1].timestamp
            return pos, number, ts

        return walk

    capture = open_capture(path, walker_for)  # type: ignore[arg-type]
    frames = list(capture)
    # Frame 1 (the custom block) comes before any walker may take a block;
    # frame 8 is an obsolete Packet Block, which walkers are never offered.
    kept = [f for f in everything if f.link_type != 1 or f.number == 8]
    assert [f.number for f in frames] == [f.number for f in kept] == [1, 5, 6, 7, 8]
    assert [f.data for f in frames] == [f.data for f in kept]
    tally = capture.tally
    assert tally is not None and tally.records == len(everything) == 11
    assert tally.first_timestamp == everything[0].timestamp
    assert tally.last_timestamp == everything[-1].timestamp
    # Section 1: Ethernet in microseconds, raw IP in nanoseconds, Ethernet in
    # 2^-20 s; section 2 (big-endian): Ethernet.
    ethernet = [layout for link_type, layout in layouts if link_type == 1]
    assert ethernet[-2].order == "<"
    assert ethernet[-2].interfaces == ((1e6, 0), None, (2.0**20, 0))
    assert ethernet[-1].order == ">" and ethernet[-1].interfaces == ((1e6, 0),)
    assert all(layout.simple == 0 for layout in ethernet)
    # Interface 0's link type got a walker: no other link type was asked about.
    assert {link_type for link_type, _ in layouts} == {1}
