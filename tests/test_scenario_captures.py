"""Checks that captures/scenarios hold what expected.json and README.md claim,
using tshark as the oracle (HTTP status codes, NTLM message types, Kerberos
message types and error codes, SPNEGO results at the cited frame numbers) and
pyspnego's parse_token on every HTTP authentication token, and that rebuilding
the captures is byte-identical."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "captures" / "scenarios"
EXPECTED = (
    json.loads((SCENARIOS / "expected.json").read_text())
    if (SCENARIOS / "expected.json").exists()
    else {}
)
FIELDS = [
    "frame.number",
    "http.request.method",
    "http.response.code",
    "ntlmssp.messagetype",
    "kerberos.msg_type",
    "kerberos.error_code",
    "spnego.negResult",
    "http.authorization",
    "http.proxy_authorization",
    "http.www_authenticate",
    "http.proxy_authenticate",
    "http.server",
    "_ws.malformed",
]
TOKEN_SCHEMES = ("NTLM ", "Negotiate ")

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")


@functools.cache
def tshark_fields(path: Path) -> dict[int, dict[str, list[str]]]:
    cmd = [
        "tshark",
        "-r",
        str(path),
        "-T",
        "fields",
        "-E",
        "separator=\t",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=\x1f",
    ]
    for name in FIELDS:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows: dict[int, dict[str, list[str]]] = {}
    for line in out.splitlines():
        cells = line.split("\t")
        rows[int(cells[0])] = {
            name: [v for v in cell.split("\x1f") if v]
            for name, cell in zip(FIELDS[1:], cells[1:], strict=True)
        }
    return rows


@functools.cache
def all_fields() -> dict[str, dict[int, dict[str, list[str]]]]:
    # tshark start-up dominates; running the captures side by side keeps the suite fast.
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = pool.map(lambda name: tshark_fields(SCENARIOS / name), sorted(EXPECTED))
        return dict(zip(sorted(EXPECTED), results, strict=True))


@pytest.fixture(params=sorted(EXPECTED))
def scenario(request: pytest.FixtureRequest) -> tuple[str, dict, dict[int, dict[str, list[str]]]]:
    name = request.param
    return name, EXPECTED[name], all_fields()[name]


def test_expected_json_covers_every_capture() -> None:
    on_disk = {p.relative_to(SCENARIOS).as_posix() for p in SCENARIOS.rglob("*.pcap")}
    assert on_disk == set(EXPECTED)
    assert len(EXPECTED) >= 30


@needs_tshark
def test_cited_frames_hold_what_is_claimed(scenario) -> None:
    name, entry, rows = scenario
    assert entry["frames"], f"{name}: no frame is cited"
    for frame, fields in entry["frames"].items():
        seen = rows[int(frame)]
        for field, value in fields.items():
            assert value in seen[field], (
                f"{name} frame {frame}: {field}={seen[field]}, README says {value}"
            )


@needs_tshark
def test_wireshark_finds_nothing_malformed(scenario) -> None:
    name, _, rows = scenario
    bad = [number for number, row in rows.items() if row["_ws.malformed"]]
    assert not bad, f"{name}: tshark reports malformed packets in frames {bad}"


@needs_tshark
def test_every_iis_triple_is_on_an_http_response(scenario) -> None:
    name, entry, rows = scenario
    for frame, triple in entry["iis"].items():
        status = triple.split()[0]
        assert rows[int(frame)]["http.response.code"] == [status], f"{name} frame {frame}"
    # Every IIS 401 in the capture has a predicted triple (Apache and proxies have none).
    for number, row in rows.items():
        if row["http.response.code"] == ["401"] and str(number) not in entry["iis"]:
            iis = any(server.startswith("Microsoft-IIS") for server in row["http.server"])
            assert not iis or "Digest" in " ".join(row["http.www_authenticate"]), (
                f"{name} frame {number} has no triple"
            )


@needs_tshark
def test_tokens_decode_with_pyspnego(scenario) -> None:
    from spnego.__main__ import parse_token

    name, _, rows = scenario
    tokens = 0
    for number, row in rows.items():
        for field in (
            "http.authorization",
            "http.proxy_authorization",
            "http.www_authenticate",
            "http.proxy_authenticate",
        ):
            for value in row[field]:
                scheme, _, blob = value.partition(" ")
                if f"{scheme} " not in TOKEN_SCHEMES or not blob or "," in blob:
                    continue
                parsed = parse_token(base64.b64decode(blob))
                assert not parsed["MessageType"].startswith("Unknown"), (
                    f"{name} frame {number}: {parsed['Data']}"
                )
                assert "Failed to parse" not in json.dumps(parsed, default=str), (
                    f"{name} frame {number}"
                )
                tokens += 1
    has_tokens = any(
        v.startswith(TOKEN_SCHEMES) and " " in v
        for row in rows.values()
        for f in FIELDS[7:11]
        for v in row[f]
    )
    assert tokens > 0 or not has_tokens


@needs_tshark
def test_ntlm_and_kerberos_content_matches_the_rules(scenario) -> None:
    """Spot checks on what makes each scenario what it is, read back from tshark."""
    name, entry, rows = scenario
    ntlm = [t for row in rows.values() for t in row["ntlmssp.messagetype"]]
    krb = [t for row in rows.values() for t in row["kerberos.msg_type"]]
    errors = [e for row in rows.values() for e in row["kerberos.error_code"]]
    statuses = [s for row in rows.values() for s in row["http.response.code"]]
    if "kerberos-fallback-to-ntlm" in entry["rules"]:
        # No AP-REQ over HTTP (the TGS-REQ's PA-TGS-REQ carries one to the KDC; that is not it).
        http_krb = [
            t
            for row in rows.values()
            if row["http.request.method"]
            for t in row["kerberos.msg_type"]
        ]
        assert "14" not in http_krb and "0x00000003" in ntlm
    if "kerberos-clock-skew" in entry["rules"]:
        assert "37" in errors
    if "kdc-error" in entry["rules"]:
        assert "14" in errors
    if "ntlm-logon-failed" in entry["rules"]:
        assert statuses[-1] == "401" and "0x00000003" in ntlm
    if "repeated-logon-failures" in entry["rules"]:
        assert ntlm.count("0x00000003") == 5
    if "auth-header-too-large" in entry["rules"]:
        assert "400" in statuses
    if name.startswith("healthy-kdc-benign"):
        assert {"25", "52"} <= set(errors) and {"10", "11", "12", "13"} <= set(krb)
    if not entry["rules"]:
        assert statuses[-1] in ("200",), f"{name}: a healthy capture must end in success"


@needs_tshark
def test_ntlmv1_capture_has_a_24_byte_nt_response() -> None:
    from spnego._ntlm_raw.messages import Authenticate

    rows = tshark_fields(SCENARIOS / "ntlmv1-response.pcap")
    type3 = [
        v
        for row in rows.values()
        for v in row["http.authorization"]
        if v.startswith("NTLM TlRMTVNTUAADAAAA")
    ]
    assert len(Authenticate.unpack(base64.b64decode(type3[0][5:])).nt_challenge_response) == 24


@pytest.mark.skipif(not SCENARIOS.exists(), reason="scenario captures not built")
def test_rebuild_is_byte_identical(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "captures" / "build_scenarios.py"), str(tmp_path)],
        check=True,
        capture_output=True,
    )
    for name in EXPECTED:
        built = hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
        stored = hashlib.sha256((SCENARIOS / name).read_bytes()).hexdigest()
        assert built == stored, f"{name} differs after rebuild"
    assert (tmp_path / "expected.json").read_text() == (SCENARIOS / "expected.json").read_text()
