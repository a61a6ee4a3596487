"""decode_gss (auth/gssapi.py): GSS-API framing, raw Kerberos tokens (WinRM
`Kerberos` scheme), NTLMSSP with and without SPNEGO, NEGOEX, the recursion
bound and fuzzing. Oracles: tshark and pyspnego's parse_token."""

from __future__ import annotations

import base64
import shutil
import struct
import subprocess
import uuid
from pathlib import Path

import pytest
from _shared import tlv
from hypothesis import given, settings
from hypothesis import strategies as st

from authtrace.auth.gssapi import MAX_DEPTH, GssToken, NegoexToken, decode_gss
from authtrace.auth.kinds import Mechanism, Message
from authtrace.auth.malformed import Malformed
from authtrace.auth.spnego import OID_NTLMSSP, SpnegoInit, SpnegoResp
from authtrace.kerberos.messages import KerberosApRep, KerberosApReq

CAPTURES = Path(__file__).resolve().parent.parent / ".." / "shared" / "captures"
WINRM = (
    "OTRF__Security-Datasets/datasets__atomic__windows__lateral_movement__network__"
    "empire_psremoting_stager.zip__empire_psremoting_stager_WORKSTATION5_2020-09-20170827.cap"
)
NTLM_SYNTHETIC = "arkime__arkime/tests__pcap__ntlm_synthetic.pcap"
NTLM_GSSAPI = "odedshimon__BruteShark/Pcap_Examples__HTTP - NTLM GSSAPI.pcap"
HTTP_KERBEROS = "odedshimon__BruteShark/Pcap_Examples__Kerberos v5 UDP 2.pcap"


SPNEGO_OID = tlv(0x06, bytes.fromhex("2b0601050502"))
NTLMSSP_OID = tlv(0x06, bytes.fromhex("2b0601040182370202 0a".replace(" ", "")))
IAKERB_OID = tlv(0x06, bytes.fromhex("2b06010502 05".replace(" ", "")))


def spnego_init(mech_token: bytes, framed: bool = True) -> bytes:
    body = tlv(0xA0, tlv(0x30, NTLMSSP_OID)) + tlv(0xA2, tlv(0x04, mech_token))
    token = tlv(0xA0, tlv(0x30, body))
    return tlv(0x60, SPNEGO_OID + token) if framed else token


def _need(name: str) -> Path:
    path = CAPTURES / name
    if not path.exists():
        pytest.skip("shared captures absent")
    if shutil.which("tshark") is None:
        pytest.skip("tshark absent")
    return path


def _http_tokens(path: Path) -> list[tuple[int, str, bytes, dict[str, str]]]:
    """(frame, scheme, token, tshark fields) for every HTTP auth header with a token."""
    fields = ["kerberos.msg_type", "kerberos.SNameString", "kerberos.realm", "ntlmssp.messagetype"]
    cmd = ["tshark", "-r", str(path), "-Y", "http.authorization or http.www_authenticate"]
    cmd += ["-T", "fields", "-e", "frame.number", "-e", "http.authorization"]
    cmd += ["-e", "http.www_authenticate"]
    for name in fields:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    tokens = []
    for line in out.splitlines():
        frame, authorization, challenge, *values = line.split("\t")
        for header in (authorization, challenge):
            scheme, _, token = header.partition(" ")
            if token:
                info = dict(zip(fields, values, strict=True))
                tokens.append((int(frame), scheme, base64.b64decode(token), info))
    return tokens


# --- public captures -----------------------------------------------------------


@pytest.mark.shared
@pytest.mark.oracle
def test_winrm_kerberos_scheme_tokens_match_tshark_and_pyspnego() -> None:
    from spnego.__main__ import parse_token

    tokens = _http_tokens(_need(WINRM))
    assert len(tokens) == 6
    for _frame, scheme, token, info in tokens:
        assert scheme == "Kerberos"
        ours = decode_gss(token)
        theirs = parse_token(token)["Data"]["innerContextToken"]
        assert ours.mechanism is Mechanism.KERBEROS
        if isinstance(ours, KerberosApReq):
            assert info["kerberos.msg_type"] == "14"
            assert theirs["MessageType"] == "AP-REQ (14)"
            assert ours.spn == info["kerberos.SNameString"].replace(",", "/")
            assert ours.spn.startswith("HTTP/")
            assert ours.ticket.realm == info["kerberos.realm"]
            assert ours.mutual_required
            etype = theirs["Data"]["ticket"]["enc-part"]["etype"]
            assert etype.endswith(f"({ours.ticket.enc_part.etype.value})")
        else:
            assert isinstance(ours, KerberosApRep)
            assert info["kerberos.msg_type"] == "15"
            assert theirs["MessageType"] == "AP-REP (15)"


@pytest.mark.shared
@pytest.mark.oracle
@pytest.mark.parametrize("name", [NTLM_SYNTHETIC, NTLM_GSSAPI])
def test_raw_ntlmssp_in_negotiate_is_ntlm(name: str) -> None:
    pytest.importorskip("authtrace.auth.ntlm", reason="NTLM decoder not written yet")
    tokens = _http_tokens(_need(name))
    assert tokens
    for _frame, _scheme, token, info in tokens:
        ours = decode_gss(token)
        assert not isinstance(ours, Malformed), ours
        assert ours.mechanism is Mechanism.NTLM
        expected = {"1": "NTLM_NEGOTIATE", "2": "NTLM_CHALLENGE", "3": "NTLM_AUTHENTICATE"}
        assert ours.message.value == expected[info["ntlmssp.messagetype"].removeprefix("0x0000000")]


@pytest.mark.shared
def test_ntlm_inside_spnego_is_decoded_as_inner() -> None:
    pytest.importorskip("authtrace.auth.ntlm", reason="NTLM decoder not written yet")
    tokens = _http_tokens(_need(NTLM_GSSAPI))
    negotiate = next(token for _f, _s, token, _i in tokens if token[8] == 1)
    for framed in (True, False):
        ours = decode_gss(spnego_init(negotiate, framed=framed))
        assert isinstance(ours, SpnegoInit)
        assert ours.framed is framed
        assert ours.mech_types[0].oid == OID_NTLMSSP
        assert ours.mechanism is Mechanism.NTLM
        assert ours.inner.message is Message.NTLM_NEGOTIATE
        assert isinstance(ours.to_dict(), dict)


@pytest.mark.shared
def test_kerberos_tokens_render_without_secrets() -> None:
    tokens = _http_tokens(_need(HTTP_KERBEROS))
    spnego = next(token for _f, _s, token, _i in tokens if len(token) > 100)
    ours = decode_gss(spnego)
    assert isinstance(ours, SpnegoInit) and isinstance(ours.inner, KerberosApReq)
    rendered = repr(ours.to_dict())
    cipher = ours.inner.authenticator.cipher
    assert cipher.hex() not in rendered and "redacted" in rendered
    assert "HTTP/fc4.denyDC.com" in rendered
    assert cipher.hex() in repr(ours.to_dict(show_secrets=True))


# --- built tokens ------------------------------------------------------------


def test_krb5_token_id_must_match_message() -> None:
    # A krb5 token saying AP-REP (02 00) around a KRB-ERROR-shaped body.
    krb5_oid = tlv(0x06, bytes.fromhex("2a864886f712010202"))
    body = tlv(0x7E, tlv(0x30, tlv(0xA0, tlv(0x02, b"\x05")) + tlv(0xA1, tlv(0x02, b"\x1e"))))
    result = decode_gss(tlv(0x60, krb5_oid + b"\x02\x00" + body))
    assert isinstance(result, Malformed)
    result = decode_gss(tlv(0x60, krb5_oid + b"\x09\x09" + body))
    assert isinstance(result, Malformed) and "TOK_ID" in result.reason


def test_negoex_is_recognised_and_named() -> None:
    conversation = uuid.UUID("12345678-1234-5678-1234-567812345678")
    header = struct.Struct("<8sIIII16s")
    first = header.pack(b"NEGOEXTS", 0, 0, 40, 40 + 8, conversation.bytes_le) + b"\x00" * 8
    second = header.pack(b"NEGOEXTS", 2, 1, 40, 40, conversation.bytes_le)
    result = decode_gss(first + second)
    assert isinstance(result, NegoexToken)
    assert [t.name for t in result.message_types] == ["INITIATOR_NEGO", "INITIATOR_META_DATA"]
    assert result.conversation_id == str(conversation)
    assert result.mechanism is Mechanism.NEGOEX
    truncated = decode_gss((first + second)[:-5])
    assert isinstance(truncated, Malformed) and truncated.truncated


def test_unknown_mechanism_is_named_by_oid() -> None:
    result = decode_gss(tlv(0x60, IAKERB_OID + b"\x05\x01anything"))
    assert isinstance(result, GssToken)
    assert result.mech.name == "IAKERB" and result.mechanism is Mechanism.KERBEROS


def test_nesting_is_bounded() -> None:
    data = b"NTLMSSP\x00"
    for _ in range(MAX_DEPTH + 5):
        data = spnego_init(data)
    result = decode_gss(data)
    depth = 0
    while isinstance(result, SpnegoInit):
        result = result.inner
        depth += 1
    assert depth == MAX_DEPTH + 1
    assert isinstance(result, Malformed) and "nested" in result.reason


@pytest.mark.parametrize(
    "data",
    [b"", b"\x60", b"\x60\x80\x00\x00", b"\xa1\x05\x30\x03", b"Basic dXNlcg==", b"\xff" * 10],
)
def test_garbage_is_malformed_with_reason(data: bytes) -> None:
    result = decode_gss(data)
    assert isinstance(result, Malformed) and result.reason


# --- fuzzing ------------------------------------------------------------------

SEEDS = [
    spnego_init(b"NTLMSSP\x00\x01\x00\x00\x00" + b"\x00" * 24),
    tlv(0xA1, tlv(0x30, tlv(0xA0, tlv(0x0A, b"\x01")) + tlv(0xA2, tlv(0x04, spnego_init(b"x"))))),
    tlv(0x60, IAKERB_OID + b"\x00"),
]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data: bytes) -> None:
    decode_gss(data)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6),
)
def test_mutated_tokens_never_raise(seed: bytes, edits: list[tuple[int, int]]) -> None:
    data = bytearray(seed)
    for position, value in edits:
        data[position % len(data)] = value
    result = decode_gss(bytes(data))
    to_dict = getattr(result, "to_dict", None)
    if to_dict is not None:
        to_dict()


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 40))
def test_deeply_nested_resp_tokens_terminate(levels: int) -> None:
    data = b"\x00"
    for _ in range(levels):
        data = tlv(0xA1, tlv(0x30, tlv(0xA2, tlv(0x04, data))))
    result = decode_gss(data)
    assert isinstance(result, SpnegoResp | Malformed)
