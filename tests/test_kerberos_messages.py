"""Kerberos message decoding (kerberos/messages.py), checked against tshark on
public KDC captures and on messages built here from the RFC 4120 ASN.1."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authtrace.auth.kinds import Mechanism, Message
from authtrace.auth.malformed import Malformed
from authtrace.kerberos.messages import (
    KdcReply,
    KdcRequest,
    KerberosApReq,
    KerberosOther,
    KrbError,
    decode_kerberos,
)

CAPTURES = Path(__file__).resolve().parent.parent / ".." / "shared" / "captures"

UDP_KDC_CAPTURES = [
    "odedshimon__BruteShark/Pcap_Examples__Kerberos v5 UDP 2.pcap",
    "odedshimon__BruteShark/Pcap_Examples__Kerberos-816.pcap",
    "zeek__zeek/testing__btest__Traces__krb__kinit.pcap",
    "ntop__nDPI/tests__cfgs__default__pcap__kerberos-error.pcap",
    "kholia__my-pcaps/KRB5__AS-REP__AS-REP-eTYPE-AES256-CTS-HMAC-SHA1-96-openwall.pcap",
    "the-tcpdump-group__tcpdump/tests__afs.pcap",
]


# --- a tiny DER encoder, for building messages from the RFC 4120 ASN.1 ---


def tlv(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        length = bytes([n])
    else:
        octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(octets)]) + octets
    return bytes([tag]) + length + value


def seq(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def ctx(n: int, value: bytes) -> bytes:
    return tlv(0xA0 | n, value)


def app(n: int, value: bytes) -> bytes:
    return tlv(0x60 | n, value)


def integer(v: int) -> bytes:
    return tlv(0x02, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True))


def gstr(s: str) -> bytes:
    return tlv(0x1B, s.encode())


def octets(b: bytes) -> bytes:
    return tlv(0x04, b)


def gtime(s: str) -> bytes:
    return tlv(0x18, s.encode())


def bits(value: int) -> bytes:
    return tlv(0x03, b"\x00" + value.to_bytes(4, "big"))


def principal(name_type: int, *parts: str) -> bytes:
    return seq(ctx(0, integer(name_type)), ctx(1, seq(*(gstr(p) for p in parts))))


def encrypted(etype: int, cipher: bytes, kvno: int | None = None) -> bytes:
    kv = ctx(1, integer(kvno)) if kvno is not None else b""
    return seq(ctx(0, integer(etype)), kv, ctx(2, octets(cipher)))


def ticket(realm: str, *sname: str) -> bytes:
    return app(
        1,
        seq(
            ctx(0, integer(5)),
            ctx(1, gstr(realm)),
            ctx(2, principal(2, *sname)),
            ctx(3, encrypted(18, b"\x11" * 40, kvno=3)),
        ),
    )


SECRET_CIPHER = bytes(range(40, 80))


def ap_req(realm: str = "CONTOSO.COM", *sname: str) -> bytes:
    sname = sname or ("HTTP", "web01.contoso.com")
    return app(
        14,
        seq(
            ctx(0, integer(5)),
            ctx(1, integer(14)),
            ctx(2, bits(0x20000000)),  # bit 2 mutual-required
            ctx(3, ticket(realm, *sname)),
            ctx(4, encrypted(23, SECRET_CIPHER)),
        ),
    )


def tgs_req() -> bytes:
    body = seq(
        ctx(0, bits(0x40810000)),  # forwardable, renewable, canonicalize
        ctx(2, gstr("CONTOSO.COM")),
        ctx(3, principal(2, "HTTP", "web01.contoso.com")),
        ctx(5, gtime("20370913024805Z")),
        ctx(7, integer(0x1234567)),
        ctx(8, seq(integer(18), integer(17), integer(23), integer(-135))),
    )
    padata = seq(
        seq(ctx(1, integer(1)), ctx(2, octets(ap_req("CONTOSO.COM", "krbtgt", "CONTOSO.COM")))),
        seq(ctx(1, integer(128)), ctx(2, octets(seq(ctx(0, tlv(0x01, b"\xff")))))),
    )
    return app(12, seq(ctx(1, integer(5)), ctx(2, integer(12)), ctx(3, padata), ctx(4, body)))


def krb_error(code: int, e_data: bytes | None = None) -> bytes:
    fields = [
        ctx(0, integer(5)),
        ctx(1, integer(30)),
        ctx(4, gtime("20240102030405Z")),
        ctx(5, integer(123)),
        ctx(6, integer(code)),
        ctx(9, gstr("CONTOSO.COM")),
        ctx(10, principal(2, "HTTP", "alias.contoso.com")),
        ctx(11, gstr("no such SPN")),
    ]
    if e_data is not None:
        fields.append(ctx(12, octets(e_data)))
    return app(30, seq(*fields))


# --- hand-built messages ---------------------------------------------------


def test_tgs_req_fields() -> None:
    msg = decode_kerberos(tgs_req())
    assert isinstance(msg, KdcRequest)
    assert msg.message is Message.TGS_REQ and msg.mechanism is Mechanism.KERBEROS
    assert msg.spn == "HTTP/web01.contoso.com"
    assert msg.realm == "CONTOSO.COM"
    assert msg.cname is None
    assert [e.value for e in msg.etypes] == [18, 17, 23, -135]
    assert [e.name for e in msg.etypes][:3] == [
        "aes256-cts-hmac-sha1-96",
        "aes128-cts-hmac-sha1-96",
        "rc4-hmac",
    ]
    assert set(msg.kdc_option_names) == {"forwardable", "renewable", "canonicalize"}
    assert msg.nonce == 0x1234567 and msg.till == "20370913024805Z"
    assert [p.type.name for p in msg.padata] == ["PA-TGS-REQ", "PA-PAC-REQUEST"]
    assert msg.tgs_ap_req is not None and msg.tgs_ap_req.spn == "krbtgt/CONTOSO.COM"


def test_ap_req_options_and_secrets() -> None:
    msg = decode_kerberos(ap_req())
    assert isinstance(msg, KerberosApReq)
    assert msg.mutual_required
    assert msg.ticket.enc_part.etype.name == "aes256-cts-hmac-sha1-96"
    assert msg.ticket.enc_part.kvno == 3
    assert msg.authenticator.cipher == SECRET_CIPHER  # kept...
    hidden = repr(msg.to_dict())
    assert SECRET_CIPHER.hex() not in hidden  # ...but not rendered
    assert "web01.contoso.com" in hidden
    assert SECRET_CIPHER.hex() in repr(msg.to_dict(show_secrets=True))


def test_krb_error_with_method_data() -> None:
    method_data = seq(seq(ctx(1, integer(19)), ctx(2, octets(b""))))
    msg = decode_kerberos(krb_error(7, method_data))
    assert isinstance(msg, KrbError)
    assert msg.error_code == 7 and msg.error_name == "KDC_ERR_S_PRINCIPAL_UNKNOWN"
    assert str(msg.sname) == "HTTP/alias.contoso.com"
    assert msg.e_text == "no such SPN" and msg.stime == "20240102030405Z"
    assert [t.name for t in msg.e_data_types] == ["PA-ETYPE-INFO2"]


def test_krb_error_windows_extended_status() -> None:
    # MS-KILE KERB-ERROR-DATA, data-type 3 with an NTSTATUS (little-endian).
    ext = (0xC000006D).to_bytes(4, "little") + b"\x00" * 8
    msg = decode_kerberos(krb_error(24, seq(ctx(1, integer(3)), ctx(2, octets(ext)))))
    assert isinstance(msg, KrbError)
    assert msg.extended_status == 0xC000006D


def test_unknown_codes_keep_their_number() -> None:
    msg = decode_kerberos(krb_error(4242))
    assert isinstance(msg, KrbError) and msg.error_name == "UNKNOWN (4242)"


def test_other_message_types_are_named() -> None:
    safe = app(21, seq(ctx(0, integer(5)), ctx(1, integer(21))))
    msg = decode_kerberos(safe)
    assert isinstance(msg, KerberosOther) and msg.msg_type.name == "KRB-PRIV"
    u2u = seq(ctx(0, integer(5)), ctx(1, integer(16)))
    msg = decode_kerberos(u2u)
    assert isinstance(msg, KerberosOther) and msg.msg_type.name == "KRB-TGT-REQ"


@pytest.mark.parametrize("cut", [1, 2, 10, 100])
def test_truncated_is_malformed_and_marked_truncated(cut: int) -> None:
    data = tgs_req()
    result = decode_kerberos(data[: len(data) - cut])
    assert isinstance(result, Malformed)
    assert result.truncated
    assert result.reason.startswith("Kerberos:")


def test_wrong_pvno_and_trailing_bytes() -> None:
    bad = app(15, seq(ctx(0, integer(4)), ctx(1, integer(15)), ctx(2, encrypted(18, b"x"))))
    result = decode_kerberos(bad)
    assert isinstance(result, Malformed) and "pvno 4" in result.reason
    result = decode_kerberos(ap_req() + b"\x00")
    assert isinstance(result, Malformed) and "trailing" in result.reason
    assert isinstance(decode_kerberos(b""), Malformed)
    # Indefinite length is not DER.
    assert isinstance(decode_kerberos(b"\x6e\x80\x30\x00\x00\x00"), Malformed)


# --- fuzzing ------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data: bytes) -> None:
    decode_kerberos(data)


SEEDS = [tgs_req(), ap_req(), krb_error(25, seq(seq(ctx(1, integer(2)), ctx(2, octets(b"")))))]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6),
)
def test_mutated_messages_never_raise(seed: bytes, edits: list[tuple[int, int]]) -> None:
    data = bytearray(seed)
    for position, value in edits:
        data[position % len(data)] = value
    result = decode_kerberos(bytes(data))
    if not isinstance(result, Malformed):
        result.to_dict()


# --- tshark as the oracle on public captures ----------------------------------


def _tshark_rows(path: Path) -> dict[int, dict[str, list[str]]]:
    fields = [
        "frame.number",
        "kerberos.msg_type",
        "kerberos.error_code",
        "kerberos.SNameString",
        "kerberos.CNameString",
        "kerberos.realm",
        "kerberos.crealm",
    ]
    cmd = ["tshark", "-r", str(path), "-Y", "kerberos and udp", "-T", "fields"]
    for name in fields:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    rows = {}
    for line in out.splitlines():
        parts = line.split("\t")
        rows[int(parts[0])] = {
            name: [v for v in value.split(",") if v]
            for name, value in zip(fields[1:], parts[1:], strict=False)
        }
    return rows


def _udp_payloads(path: Path) -> dict[int, bytes]:
    from scapy.all import UDP, PcapReader

    payloads = {}
    with PcapReader(str(path)) as reader:
        for number, packet in enumerate(reader, 1):
            if UDP in packet and 88 in (packet[UDP].sport, packet[UDP].dport):
                # The captured bytes, not scapy's re-serialisation.
                payloads[number] = bytes(packet[UDP].original[8:])
    return payloads


@pytest.mark.shared
@pytest.mark.oracle
@pytest.mark.parametrize("name", UDP_KDC_CAPTURES)
def test_udp_messages_match_tshark(name: str) -> None:
    path = CAPTURES / name
    if not path.exists():
        pytest.skip("shared captures absent")
    if shutil.which("tshark") is None:
        pytest.skip("tshark absent")
    rows = _tshark_rows(path)
    payloads = _udp_payloads(path)
    compared = 0
    for frame, row in rows.items():
        if frame not in payloads or not row.get("kerberos.msg_type"):
            continue
        msg = decode_kerberos(payloads[frame])
        assert not isinstance(msg, Malformed), (frame, msg)
        msg_type = int(row["kerberos.msg_type"][0])
        names = set(row.get("kerberos.SNameString", [])) | set(row.get("kerberos.CNameString", []))
        realms = set(row.get("kerberos.realm", [])) | set(row.get("kerberos.crealm", []))
        if isinstance(msg, KdcRequest):
            assert msg.msg_type.value == msg_type
            assert msg.realm in realms
            if msg.sname is not None:
                assert set(msg.sname.components) <= names, (frame, msg.sname, names)
            if msg.cname is not None:
                assert set(msg.cname.components) <= names
        elif isinstance(msg, KdcReply):
            assert msg.msg_type.value == msg_type
            assert msg.crealm in realms and msg.ticket.realm in realms
            assert set(msg.ticket.sname.components) <= names
            assert set(msg.cname.components) <= names
        elif isinstance(msg, KrbError):
            assert msg_type == 30
            assert msg.error_code == int(row["kerberos.error_code"][0])
            if msg.realm is not None:
                assert msg.realm in realms
        else:
            raise AssertionError(f"frame {frame}: unexpected {type(msg).__name__}")
        compared += 1
    assert compared > 0


# --- decoded once: the ticket cache -------------------------------------------


def test_a_ticket_seen_again_is_the_same_ticket_decoded_once() -> None:
    from authtrace.kerberos import messages

    messages._ticket_content.cache_clear()
    first = decode_kerberos(ap_req())
    again = decode_kerberos(ap_req())
    assert isinstance(first, KerberosApReq) and isinstance(again, KerberosApReq)
    assert again.ticket is first.ticket  # the second AP-REQ reused the decoded ticket
    info = messages._ticket_content.cache_info()
    assert info.hits == 1 and info.misses == 1
    # The cached path gives what decoding the content afresh gives.
    content = ticket("CONTOSO.COM", "HTTP", "web01.contoso.com")[2:]
    assert messages._ticket_content(content) == messages._ticket_content.__wrapped__(content)


def test_a_bad_ticket_is_reported_every_time_it_is_seen() -> None:
    bad_ticket = app(1, seq(ctx(0, integer(5)), ctx(1, gstr("CONTOSO.COM"))))  # no sname
    message = app(
        14,
        seq(
            ctx(0, integer(5)),
            ctx(1, integer(14)),
            ctx(2, bits(0)),
            ctx(3, bad_ticket),
            ctx(4, encrypted(23, SECRET_CIPHER)),
        ),
    )
    for _ in range(2):
        result = decode_kerberos(message)
        assert isinstance(result, Malformed) and "sname" in result.reason


def test_a_principal_seen_again_is_one_object_and_a_bad_one_is_reported_each_time() -> None:
    """Principal names are decoded once per distinct encoding (issue 10): the
    same encoding gives one object, equal to what decoding afresh gives; a
    malformed name (a name-type that is not an INTEGER) is reported every
    time, with its own field's wording."""
    from authtrace.kerberos import der, messages

    encoded = principal(2, "HTTP", "web01.contoso.com")
    element = der.read_single(encoded)
    assert messages._principal(element, "x") is messages._principal(element, "y")
    assert messages._principal(element, "x") == messages._decode_principal(element, "x")
    bad = seq(ctx(0, gstr("two")), ctx(1, seq(gstr("HTTP"))))
    for what in ("sname", "cname"):
        with pytest.raises(der.DerError, match=what):
            messages._principal(der.read_single(bad), what)
