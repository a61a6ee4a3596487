"""ETL files (netsh trace, pktmon) and NetMon files of ETW events, built by
scripts/captures/build_etl.py from the scenario captures (captures/etl/).

Each built file is checked three ways: against the scenario pcap it was built
from (same packets, same time stamps, same findings), against dissect.etl as
an independent reader of the ETL container, and for what the reader must say
about the trace (truncation, folded pktmon appearances, damaged buffers,
events that are not packets). The public traces are in test_etl_shared.py.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from dissect.etl.etl import ETL
from dissect.util.compression import lzxpress
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authtrace.anomalies import AnomalyKind
from authtrace.cli import main
from authtrace.pipeline import analyze
from authtrace.readers import etl, etw, open_capture, xpress
from authtrace.readers.base import CaptureError, Frame, ReadOptions
from authtrace.words import counted

ROOT = Path(__file__).resolve().parent.parent
ETL_DIR = ROOT / "captures" / "etl"
SCENARIOS = ROOT / "captures" / "scenarios"
sys.path.insert(0, str(ROOT / "scripts" / "captures"))

import build_etl  # noqa: E402

BUILT = {
    "healthy-ntlm.netsh.etl": "healthy-ntlm.pcap",
    "healthy-ntlm-compressed.netsh.etl": "healthy-ntlm.pcap",
    "healthy-ntlm-two-layers.netsh.etl": "healthy-ntlm.pcap",
    "healthy-ntlm.netsh.cap": "healthy-ntlm.pcap",
    "ntlm-logon-failed.netsh.etl": "ntlm-logon-failed.pcap",
    "ntlm-logon-failed-32bit-systemtime.netsh.etl": "ntlm-logon-failed.pcap",
    "ntlm-logon-failed-truncated.netsh.etl": "ntlm-logon-failed.pcap",
    "ntlm-logon-failed-truncated.pktmon.etl": "ntlm-logon-failed.pcap",
    "ntlm-logon-failed.pktmon.cap": "ntlm-logon-failed.pcap",
    "pooling-proxy.pktmon.etl": "pooling-proxy.pcap",
    "pooling-proxy-damaged.netsh.etl": "pooling-proxy.pcap",
    "pooling-proxy-two-processors.netsh.etl": "pooling-proxy.pcap",
}
WHOLE = [
    name
    for name in BUILT
    if "truncated" not in name and "damaged" not in name and "two-layers" not in name
]


def frames_of(path: Path, options: ReadOptions | None = None) -> tuple[list[Frame], object]:
    capture = open_capture(path, options=options or ReadOptions())
    return list(capture), capture


def kinds(capture: object) -> list[str]:
    return [a.kind for a in capture.anomalies]  # type: ignore[attr-defined]


def test_the_builder_is_deterministic_and_the_files_are_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build_etl, "OUT", tmp_path)
    build_etl.main()
    built = sorted(p.name for p in tmp_path.iterdir())
    assert built == sorted(BUILT)
    for name in built:
        assert (tmp_path / name).read_bytes() == (ETL_DIR / name).read_bytes(), name


@pytest.mark.parametrize("name", WHOLE)
def test_a_trace_holds_the_packets_of_its_pcap(name: str) -> None:
    """Every packet of the scenario, in order, with its bytes and time stamp; in
    an ETL one frame per packet numbered 1.. (pktmon: one number per appearance,
    the first kept); in a NetMon file, at the number of its event."""
    mine, capture = frames_of(ETL_DIR / name)
    theirs, _ = frames_of(SCENARIOS / BUILT[name])
    assert [f.data for f in mine] == [f.data for f in theirs]
    for frame, source in zip(mine, theirs, strict=True):
        # pktmon appearances are a microsecond apart in the built traces.
        assert frame.timestamp == pytest.approx(source.timestamp, abs=2e-6)
    numbers = [f.number for f in mine]
    if name.endswith(".pktmon.etl"):
        assert numbers == list(range(1, 3 * len(theirs), 3))
    elif name.endswith(".etl"):
        assert numbers == list(range(1, len(theirs) + 1))
    else:
        assert numbers == sorted(set(numbers)) and numbers[-1] <= capture.tally.records  # type: ignore[attr-defined]
    assert AnomalyKind.ETW_EVENTS_SKIPPED in kinds(capture)
    assert not {AnomalyKind.ETL_BUFFER_DAMAGED, AnomalyKind.ETW_EVENT_MALFORMED} & set(
        kinds(capture)
    )


def _findings(report: object, numbers: dict[int, int] | None = None) -> list[tuple]:
    """(rule, severity, connections, frames) of each finding; frames renumbered."""
    found = []
    for finding in report.findings:  # type: ignore[attr-defined]
        frames = tuple(numbers.get(f, -f) if numbers else f for f in finding.frames)
        found.append((finding.rule, finding.severity, tuple(finding.connections), frames))
    return sorted(found)


@pytest.mark.parametrize("name", [*WHOLE, "healthy-ntlm-two-layers.netsh.etl"])
def test_analyze_gives_the_findings_of_the_pcap(name: str) -> None:
    """The same findings on the same connections, citing the same packets (a
    frame number of the trace maps to the pcap frame of the packet it holds)."""
    mine, _ = frames_of(ETL_DIR / name)
    theirs, _ = frames_of(SCENARIOS / BUILT[name])
    if "two-layers" in name:
        # Each packet logged twice: at the miniport and at the filter above it.
        assert [f.data for f in mine] == [f.data for f in theirs for _ in range(2)]
        numbers = {m.number: t.number for m, t in zip(mine[::2], theirs, strict=True)}
    else:
        numbers = {m.number: t.number for m, t in zip(mine, theirs, strict=True)}
    expected = _findings(analyze([SCENARIOS / BUILT[name]]))
    got = _findings(analyze([ETL_DIR / name]), numbers)
    assert got == expected
    if "logon-failed" in name:
        assert expected  # the comparison is not between two empty lists


def test_dissect_etl_reads_the_same_packet_events() -> None:
    """The independent reader: the NDIS and PktMon packet events dissect.etl
    finds in each built ETL file carry the bytes our reader yields (dissect.etl
    reads an EVENT_HEADER's provider GUID byte-swapped, so it is compared raw)."""
    for name in BUILT:
        if not name.endswith(".etl") or "damaged" in name or "compressed" in name:
            continue
        payloads = []
        with (ETL_DIR / name).open("rb") as handle:
            trace = ETL(handle)
            assert trace.pointer_size == (4 if "32bit" in name else 8)
            for record in trace:
                header = record.header
                if type(header).__name__ != "EventHeader":
                    continue
                raw = bytes(header.data[: header.size])
                provider, event_id = raw[0x18:0x28], header.header.Id
                user = raw[0x50:]
                if provider == etw.NDIS_PACKET_CAPTURE and event_id == 1001:
                    size = struct.unpack_from("<I", user, 8)[0]
                    payloads.append(user[12 : 12 + size])
                elif provider == etw.PKTMON and event_id == 160:
                    group, number = struct.unpack_from("<QH", user)
                    logged = struct.unpack_from("<H", user, 32)[0]
                    payloads.append((group, number, user[34 : 34 + logged]))
        mine, _ = frames_of(ETL_DIR / name, ReadOptions(all_appearances=True))
        if "two-processors" in name:
            # dissect.etl reads buffers in file order; ours are merged by time.
            assert sorted(f.data for f in mine) == sorted(payloads)
        elif name.endswith(".pktmon.etl"):
            assert [f.data for f in mine] == [data for _, _, data in payloads], name
        else:
            assert [f.data for f in mine] == payloads, name
        assert payloads


def test_a_compressed_trace_decompresses_as_dissect_does() -> None:
    """Buffers of a trace in compressed mode (BufferFlag 0x40): their records
    decompress ([MS-XCA] plain LZ77) to the bytes dissect.util's decompressor
    gives, and the packets are those of the same trace uncompressed."""
    data = (ETL_DIR / "healthy-ntlm-compressed.netsh.etl").read_bytes()
    size = struct.unpack_from("<I", data)[0]
    checked = 0
    for offset in range(size, len(data), size):
        flags = struct.unpack_from("<H", data, offset + 0x34)[0]
        filled = struct.unpack_from("<I", data, offset + 0x30)[0]
        assert flags & 0x40
        body = data[offset + 0x48 : offset + filled]
        assert xpress.decompress(body, size) == lzxpress.decompress(body)
        checked += 1
    assert checked >= 2
    plain, _ = frames_of(ETL_DIR / "healthy-ntlm.netsh.etl")
    packed, _ = frames_of(ETL_DIR / "healthy-ntlm-compressed.netsh.etl")
    assert [(f.number, f.data) for f in packed] == [(f.number, f.data) for f in plain]


@given(st.binary(max_size=3000), st.integers(1, 40))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_xpress_round_trips_and_never_raises_but_its_error(data: bytes, repeat: int) -> None:
    sample = data * (repeat % 5 + 1)
    packed = build_etl.xpress_compress(sample)
    assert xpress.decompress(packed, len(sample)) == sample
    try:
        xpress.decompress(packed[: len(packed) // 2] + data[:20], 1 << 16)
    except xpress.XpressError:
        pass


def test_truncated_traces_are_read_like_a_snap_length(tmp_path: Path) -> None:
    """netsh packettruncatebytes / pktmon --pkt-size: the missing bytes are gaps,
    exactly as in the pcap cut to the same snap length, and the report says how
    to take the trace whole."""
    theirs, _ = frames_of(SCENARIOS / "ntlm-logon-failed.pcap")
    snap = tmp_path / "snap128.pcap"
    records = b"".join(
        struct.pack(
            "<IIII",
            int(f.timestamp),
            round((f.timestamp % 1) * 1e6),
            min(len(f.data), 128),
            len(f.data),
        )
        + f.data[:128]
        for f in theirs
    )
    snap.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + records)
    expected = _findings(analyze([snap]))
    for name, fix in (
        ("ntlm-logon-failed-truncated.netsh.etl", "packettruncatebytes"),
        ("ntlm-logon-failed-truncated.pktmon.etl", "--pkt-size 0"),
    ):
        mine, capture = frames_of(ETL_DIR / name)
        assert [f.data for f in mine] == [f.data[:128] for f in theirs]
        assert [f.original_length for f in mine] == [len(f.data) for f in theirs]
        numbers = {m.number: t.number for m, t in zip(mine, theirs, strict=True)}
        assert _findings(analyze([ETL_DIR / name]), numbers) == expected
        (truncated,) = [
            a
            for a in capture.anomalies  # type: ignore[attr-defined]
            if a.kind == AnomalyKind.ETW_PACKETS_TRUNCATED
        ]
        short = sum(len(f.data) > 128 for f in theirs)
        assert f"of {counted(short, 'packet')} (" in truncated.message and fix in truncated.message
        first_cut = next(m for m, t in zip(mine, theirs, strict=True) if len(t.data) > 128)
        assert truncated.frame == first_cut.number
        report = analyze([ETL_DIR / name])
        assert AnomalyKind.TCP_GAP in {a.kind for a in report.anomalies}


def test_pktmon_appearances_are_folded_unless_all_are_asked_for() -> None:
    path = ETL_DIR / "pooling-proxy.pktmon.etl"
    theirs, _ = frames_of(SCENARIOS / "pooling-proxy.pcap")
    folded, capture = frames_of(path)
    assert len(folded) == len(theirs)
    (note,) = [
        a
        for a in capture.anomalies  # type: ignore[attr-defined]
        if a.kind == AnomalyKind.PKTMON_APPEARANCES_FOLDED
    ]
    assert note.message.count(f"{2 * len(theirs)} later appearances of packets") == 1
    assert note.frame == 2
    every, capture = frames_of(path, ReadOptions(all_appearances=True))
    assert [f.data for f in every] == [f.data for f in theirs for _ in range(3)]
    assert [f.number for f in every] == list(range(1, 3 * len(theirs) + 1))
    assert AnomalyKind.PKTMON_APPEARANCES_FOLDED not in kinds(capture)
    # The frame numbers of the packets kept are the same either way.
    assert [f.number for f in folded] == [f.number for f in every[::3]]


def test_all_appearances_is_an_option_of_every_command_that_reads_captures() -> None:
    path = str(ETL_DIR / "pooling-proxy.pktmon.etl")
    runner = CliRunner()
    folded = runner.invoke(main, ["analyze", "--ladders", "none", path])
    every = runner.invoke(main, ["analyze", "--ladders", "none", "--all-appearances", path])
    assert folded.exit_code == every.exit_code == 1  # the pooling proxy's findings
    assert "(etl, 108 frames)" in folded.output and "(etl, 108 frames)" in every.output
    assert "pktmon-appearances-folded" in folded.output
    assert "pktmon-appearances-folded" not in every.output
    listed = runner.invoke(main, ["connections", "--json", "--all-appearances", path])
    assert listed.exit_code == 0, listed.output
    diff = runner.invoke(main, ["diff", "--all-appearances", path, path])
    assert diff.exit_code == 0, diff.output
    for command in ("analyze", "connections", "diff"):
        helped = runner.invoke(main, [command, "--help"])
        assert "--all-appearances" in helped.output


def test_buffers_of_several_processors_are_merged_by_time() -> None:
    """ETW keeps a buffer per processor and writes each when it is full, so the
    file's buffers are out of time order; ProcessTrace (and so etl2pcapng)
    merges the processors' streams by time stamp, and so does the reader when
    it can search the file. From a stream it reads in file order and says that
    the numbers may differ from etl2pcapng's."""
    import gzip
    import io

    path = ETL_DIR / "pooling-proxy-two-processors.netsh.etl"
    data = path.read_bytes()
    size = struct.unpack_from("<I", data)[0]
    processors = [data[offset + 0x28] for offset in range(size, len(data), size)]
    assert processors != sorted(processors)  # the processors' buffers interleave
    theirs, _ = frames_of(SCENARIOS / "pooling-proxy.pcap")
    merged, capture = frames_of(path)
    assert [f.data for f in merged] == [f.data for f in theirs]
    assert AnomalyKind.ETL_OUT_OF_ORDER not in kinds(capture)
    streamed = open_capture(io.BytesIO(gzip.compress(data, mtime=0)))
    in_file_order = list(streamed)
    assert sorted(f.data for f in in_file_order) == sorted(f.data for f in theirs)
    assert [f.data for f in in_file_order] != [f.data for f in theirs]
    (note,) = [a for a in streamed.anomalies if a.kind == AnomalyKind.ETL_OUT_OF_ORDER]
    assert "etl2pcapng" in note.message and note.frame is not None


def test_a_circular_trace_that_wrapped_is_read_in_the_order_it_was_written(
    tmp_path: Path,
) -> None:
    """netsh trace writes a circular file by default: once full, the logger goes
    on at the start, so the oldest data buffer can sit in the middle of the
    file. The buffers' sequence numbers give the order they were written in."""
    data = (ETL_DIR / "pooling-proxy.pktmon.etl").read_bytes()
    size = struct.unpack_from("<I", data)[0]
    buffers = [data[offset : offset + size] for offset in range(0, len(data), size)]
    assert len(buffers) >= 3
    header, rest = buffers[0], buffers[1:]
    wrapped = tmp_path / "wrapped.etl"
    wrapped.write_bytes(header + b"".join(rest[1:] + rest[:1]))  # the oldest data buffer last
    original, _ = frames_of(ETL_DIR / "pooling-proxy.pktmon.etl")
    mine, capture = frames_of(wrapped)
    assert [(f.number, f.data) for f in mine] == [(f.number, f.data) for f in original]
    assert AnomalyKind.ETL_OUT_OF_ORDER not in kinds(capture)


def test_a_damaged_buffer_is_reported_and_the_next_buffer_is_read() -> None:
    path = ETL_DIR / "pooling-proxy-damaged.netsh.etl"
    mine, capture = frames_of(path)
    theirs, _ = frames_of(SCENARIOS / "pooling-proxy.pcap")
    (damaged,) = [
        a
        for a in capture.anomalies  # type: ignore[attr-defined]
        if a.kind == AnomalyKind.ETL_BUFFER_DAMAGED
    ]
    assert "buffer 3 (offset 8192)" in damaged.message
    # What the buffer held from its second record on is lost; the packets of
    # the buffers before and after it are all there, in order.
    data = [f.data for f in theirs]
    got = [f.data for f in mine]
    lost = len(data) - len(got)
    assert lost > 0
    cut = damaged.frame - 1
    assert got == data[:cut] + data[cut + lost :]
    assert got[-1] == data[-1]
    # dissect.etl stops at the same record.
    with path.open("rb") as handle:
        trace = ETL(handle)
        with pytest.raises(Exception, match="flags"):
            list(trace.buffer(2))  # our "buffer 3" counts from 1
    # The lost packets are gaps, never absence: the report names them.
    report = analyze([path])
    assert AnomalyKind.TCP_GAP in {a.kind for a in report.anomalies}
    assert "capture-incomplete" in {f.rule for f in report.findings}


def _edit(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    damaged = bytearray(data)
    for position, value in edits:
        damaged[position % len(damaged)] = value
    return bytes(damaged[:cut] if cut is not None else damaged)


ETL_FILES = sorted(name for name in BUILT if name.endswith(".etl"))
# Where a byte damages the most: buffer headers and the first records.
_HOT = [b * 8192 + o for b in range(4) for o in range(0, 0x200)] + list(range(16384, 16384 + 512))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(ETL_FILES),
    edits=st.lists(
        st.tuples(st.one_of(st.sampled_from(_HOT), st.integers(0, 70000)), st.integers(0, 255)),
        min_size=1,
        max_size=8,
    ),
    cut=st.one_of(st.none(), st.integers(0, 70000)),
)
def test_any_byte_damage_gives_anomalies_never_an_exception(
    name: str,
    edits: list[tuple[int, int]],
    cut: int | None,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Strict mode is on (tests/conftest.py): a catch-all that would turn a bug
    into an anomaly raises instead. Damage either leaves the frames as they
    were, or the reader says what it could not read."""
    original = (ETL_DIR / name).read_bytes()
    data = _edit(original, edits, cut)
    path = tmp_path_factory.mktemp("damaged") / name
    path.write_bytes(data)
    try:
        capture = open_capture(path)
    except CaptureError:  # nothing usable before the first packet: one line
        return
    frames = list(capture)
    clean, clean_capture = frames_of(ETL_DIR / name)
    structural = set(kinds(capture)) - set(kinds(clean_capture))
    if [(f.number, f.data, f.timestamp) for f in frames] != [
        (f.number, f.data, f.timestamp) for f in clean
    ] and not structural:
        # Only packet bytes, time stamps or event fields were changed, which a
        # trace cannot tell from real ones: the same events, differently filled.
        assert len(frames) <= len(clean) + 8 * len(edits)
    analyze([path])  # the whole pipeline survives it too


def test_a_file_cut_inside_a_buffer_keeps_what_came_before() -> None:
    data = (ETL_DIR / "healthy-ntlm.netsh.etl").read_bytes()
    full, _ = frames_of(ETL_DIR / "healthy-ntlm.netsh.etl")
    import io

    cut = io.BytesIO(data[: 8192 + 3000])
    frames = list(capture := open_capture(cut))
    assert 0 < len(frames) < len(full)
    assert [f.data for f in frames] == [f.data for f in full[: len(frames)]]
    assert AnomalyKind.CAPTURE_TRUNCATED in kinds(capture)


def test_gzip_and_standard_input_streams_are_read() -> None:
    import gzip
    import io

    data = (ETL_DIR / "pooling-proxy.pktmon.etl").read_bytes()
    plain, _ = frames_of(ETL_DIR / "pooling-proxy.pktmon.etl")
    capture = open_capture(io.BytesIO(gzip.compress(data, mtime=0)))
    frames = list(capture)
    assert capture.format == "etl+gzip"
    assert [(f.number, f.data) for f in frames] == [(f.number, f.data) for f in plain]


def test_a_first_buffer_without_a_trace_header_is_one_line() -> None:
    import io

    data = bytearray((ETL_DIR / "healthy-ntlm.netsh.etl").read_bytes())
    struct.pack_into("<H", data, 0x48 + 4, 0x30)  # the trace header record: 48 bytes
    with pytest.raises(CaptureError, match="ETL trace header damaged"):
        open_capture(io.BytesIO(bytes(data)))


def test_the_clock_of_the_trace_header_is_used() -> None:
    """QPC (PerfFreq) and system time (FILETIME) traces give the pcap's times;
    the header layout of 32-bit pointers is read too."""
    for name in ("ntlm-logon-failed.netsh.etl", "ntlm-logon-failed-32bit-systemtime.netsh.etl"):
        head = (ETL_DIR / name).read_bytes()[:8192]
        header = etl.parse_logfile_header(head)
        if "32bit" in name:
            assert header.pointer_size == 4 and header.clock.kind is etl.ClockType.SYSTEM_TIME
        else:
            assert header.pointer_size == 8
            assert header.clock.kind is etl.ClockType.QUERY_PERFORMANCE_COUNTER
            assert header.clock.ticks_per_second == 10_000_000


def test_the_assembler_joins_fragments_on_the_packet_end_keyword() -> None:
    """Before Windows 8.1 a packet could span several 1001 events: start, middle,
    end (etl2pcapng joins them on the end keyword); a start while a packet is
    unfinished means its end was lost."""
    frame = next(iter(open_capture(SCENARIOS / "healthy-ntlm.pcap"))).data
    assembler = etw.PacketAssembler("t")

    def event(part: bytes, keywords: int) -> etw.EtwEvent:
        user = struct.pack("<III", 13, 13, len(part)) + part
        return etw.EtwEvent(etw.NDIS_PACKET_CAPTURE, 1001, 0, keywords | 0x1, 1.0, user)

    start, end = etw.KW_PACKET_START, etw.KW_PACKET_END
    assert assembler.take(event(frame[:20], start), 1).outcome is etw.Outcome.NOTHING
    assert assembler.take(event(frame[20:40], 0), 1).outcome is etw.Outcome.NOTHING
    taken = assembler.take(event(frame[40:], end), 1)
    assert taken.outcome is etw.Outcome.FRAME and taken.packet is not None
    assert taken.packet.data == frame
    assembler.take(event(frame[:20], start), 2)
    assembler.take(event(frame, start | end), 2)
    bad = etw.EtwEvent(etw.NDIS_PACKET_CAPTURE, 1001, 0, start | end, 1.0, b"\x00" * 11)
    assert assembler.take(bad, 3).outcome is etw.Outcome.NOTHING
    found = {a.kind: a for a in assembler.finish()}
    assert AnomalyKind.ETW_EVENT_MALFORMED in found
    assert sum(a.kind == AnomalyKind.ETW_EVENT_MALFORMED for a in assembler.finish()) == 2
