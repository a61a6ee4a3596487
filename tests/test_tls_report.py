"""TLS connections not read: bounded memory however many there are, and the text
that tells the administrator what they are and how to read them."""

from __future__ import annotations

import pytest

from authtrace.report.tls import encrypted_lines
from authtrace.tcp.events import Endpoint
from authtrace.tls.model import EncryptedConnection, KeyStatus, NotReadTally, TlsFacts


def _facts(sni: str, keys: KeyStatus = KeyStatus.NO_KEY_LOG) -> TlsFacts:
    return TlsFacts(
        "TLS 1.3",
        "TLS_AES_128_GCM_SHA256",
        sni,
        ("h2", "http/1.1"),
        "h2",
        (b"\x30" * 900,),
        "00" * 32,
        keys,
        0,
        0,
    )


def _connection(index: int, sni: str, port: int = 443) -> EncryptedConnection:
    return EncryptedConnection(
        index,
        Endpoint("10.0.0.1", 50000 + index),
        Endpoint("10.0.0.2", port),
        10 * index + 1,
        10 * index + 9,
        _facts(sni),
    )


def test_many_connections_are_counted_in_bounded_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(NotReadTally, "MAX_LISTED", 5)
    monkeypatch.setattr(NotReadTally, "MAX_GROUPS", 3)
    tally = NotReadTally()
    for index in range(40):
        tally.add(_connection(index, f"host{index % 4}.example"))
    assert tally.total == 40
    assert len(tally.listed) == 5
    groups = tally.groups()
    assert [g.server_name for g in groups] == ["host0.example", "host1.example", "host2.example"]
    assert [g.count for g in groups] == [10, 10, 10]
    assert tally.ungrouped == 10
    lines = encrypted_lines(groups, tally.total, None)
    assert lines[0].startswith("TLS connections not read (40)")
    assert "  10 x to host0.example (10.0.0.2:443), TLS 1.3, ALPN h2: no key log given" in lines[1]
    assert "  10 more to other servers (not grouped: too many servers)" in lines
    assert any("SSLKEYLOGFILE" in line for line in lines)


def test_no_connection_no_section() -> None:
    assert encrypted_lines((), 0, None) == []


def test_basic_inside_decrypted_tls_is_not_cleartext() -> None:
    """Basic over HTTPS is read from the decrypted records; the wire carried it
    encrypted, so basic-over-cleartext must not fire (it did before the rule
    looked at the connection's TLS facts)."""
    from pathlib import Path

    from authtrace.cli.common import read_keylogs
    from authtrace.pipeline import analyze

    base = Path(__file__).resolve().parent.parent / "captures" / "tls" / "tls13-aes128gcm-basic"
    keylog = read_keylogs((str(base.with_suffix(".keys")),))
    report = analyze([str(base.with_suffix(".pcap"))], keylog=keylog)
    basic = [s for t in report.view.timelines for s in t.steps if s.sent.name == "BASIC"]
    assert basic, "the capture must decrypt to Basic requests for this test to mean anything"
    assert "basic-over-cleartext" not in {f.rule for f in report.findings}
