"""SPNEGO tokens (auth/spnego.py, reached through decode_gss), checked against
pyspnego's parser and tshark on public captures, and on tokens built here
from the RFC 4178 / MS-SPNG ASN.1."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from _shared import tlv

from authtrace.auth.gssapi import decode_gss
from authtrace.auth.kinds import Mechanism, Message
from authtrace.auth.malformed import Malformed
from authtrace.auth.spnego import (
    OID_KERBEROS,
    OID_MS_KERBEROS,
    OID_NEGOEX,
    OID_NTLMSSP,
    NegState,
    SpnegoInit,
    SpnegoResp,
)
from authtrace.kerberos.messages import KerberosApReq, KrbError

CAPTURES = Path(__file__).resolve().parent.parent / ".." / "shared" / "captures"
SMB_SKEW = "ntop__nDPI/tests__cfgs__default__pcap__smb_frags.pcap"
HTTP_KERBEROS = "odedshimon__BruteShark/Pcap_Examples__Kerberos v5 UDP 2.pcap"


def oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray([arcs[0] * 40 + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return tlv(0x06, bytes(body))


def framed_spnego(token: bytes) -> bytes:
    return tlv(0x60, oid("1.3.6.1.5.5.2") + token)


def neg_token_resp(state: int | None, mech: str | None, mic: bytes | None = None) -> bytes:
    fields = b""
    if state is not None:
        fields += tlv(0xA0, tlv(0x0A, bytes([state])))
    if mech is not None:
        fields += tlv(0xA1, oid(mech))
    if mic is not None:
        fields += tlv(0xA3, tlv(0x04, mic))
    return tlv(0xA1, tlv(0x30, fields))


def neg_token_init2(hint: str) -> bytes:
    mechs = tlv(0x30, oid(OID_NEGOEX) + oid(OID_MS_KERBEROS) + oid(OID_NTLMSSP))
    hints = tlv(0x30, tlv(0xA0, tlv(0x1B, hint.encode())))
    return framed_spnego(tlv(0xA0, tlv(0x30, tlv(0xA0, mechs) + tlv(0xA3, hints))))


# --- built tokens, with pyspnego as the second opinion ----------------------


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (0, NegState.ACCEPT_COMPLETED),
        (1, NegState.ACCEPT_INCOMPLETE),
        (2, NegState.REJECT),
        (3, NegState.REQUEST_MIC),
        (9, NegState.UNKNOWN),
    ],
)
def test_neg_token_resp_states(state: int, expected: NegState) -> None:
    result = decode_gss(neg_token_resp(state, OID_KERBEROS))
    assert isinstance(result, SpnegoResp)
    assert result.neg_state is expected and result.neg_state_value == state
    assert result.message is Message.NEG_TOKEN_RESP
    # No inner token: the mechanism comes from supportedMech.
    assert result.mechanism is Mechanism.KERBEROS
    assert result.supported_mech is not None and result.supported_mech.name == "Kerberos"


def test_neg_token_resp_matches_pyspnego() -> None:
    from spnego._spnego import NegTokenResp, unpack_token

    data = neg_token_resp(1, OID_NTLMSSP, mic=b"\x01" * 16)
    theirs = unpack_token(data)
    ours = decode_gss(data)
    assert isinstance(theirs, NegTokenResp) and isinstance(ours, SpnegoResp)
    assert ours.neg_state_value == int(theirs.neg_state)
    assert ours.supported_mech is not None
    assert ours.supported_mech.oid == theirs.supported_mech
    assert ours.mech_list_mic == theirs.mech_list_mic


def test_mech_list_mic_is_kept_but_redacted() -> None:
    mic = bytes(range(16))
    result = decode_gss(neg_token_resp(0, OID_NTLMSSP, mic=mic))
    assert isinstance(result, SpnegoResp) and result.mech_list_mic_present
    assert mic.hex() not in repr(result.to_dict())
    assert mic.hex() in repr(result.to_dict(show_secrets=True))


def test_neg_token_init2_server_hints() -> None:
    from spnego._spnego import NegTokenInit, unpack_token

    data = neg_token_init2("not_defined_in_RFC4178@please_ignore")
    ours = decode_gss(data)
    theirs = unpack_token(data)
    assert isinstance(ours, SpnegoInit) and isinstance(theirs, NegTokenInit)
    assert ours.init2 and ours.message is Message.NEG_TOKEN_INIT2
    assert ours.hint_name == theirs.hint_name.decode()
    assert [m.oid for m in ours.mech_types] == theirs.mech_types
    assert [m.name for m in ours.mech_types] == ["NEGOEX", "MS Kerberos", "NTLMSSP"]
    assert ours.inner is None and ours.mechanism is Mechanism.SPNEGO


def test_unknown_mechanism_oid_keeps_its_number() -> None:
    data = neg_token_resp(0, "1.2.3.4.5")
    result = decode_gss(data)
    assert isinstance(result, SpnegoResp) and result.supported_mech is not None
    assert result.supported_mech.name == "UNKNOWN (1.2.3.4.5)"
    assert result.mechanism is Mechanism.SPNEGO


def test_broken_spnego_is_malformed() -> None:
    good = neg_token_resp(0, OID_KERBEROS)
    assert isinstance(decode_gss(good[:-3]), Malformed)
    # A NegTokenResp whose negState is an OCTET STRING.
    bad = tlv(0xA1, tlv(0x30, tlv(0xA0, tlv(0x04, b"\x00"))))
    result = decode_gss(bad)
    assert isinstance(result, Malformed) and "negState" in result.reason


# --- public captures ------------------------------------------------------------


def _need(name: str) -> Path:
    path = CAPTURES / name
    if not path.exists():
        pytest.skip("shared captures absent")
    if shutil.which("tshark") is None:
        pytest.skip("tshark absent")
    return path


def _tshark(path: Path, display_filter: str, *fields: str) -> list[list[str]]:
    cmd = ["tshark", "-r", str(path), "-Y", display_filter, "-T", "fields"]
    for name in fields:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    return [line.split("\t") for line in out.splitlines()]


@pytest.mark.shared
@pytest.mark.oracle
def test_smb_spnego_tokens_match_tshark_and_pyspnego() -> None:
    from spnego._spnego import NegTokenInit, NegTokenResp, unpack_token

    path = _need(SMB_SKEW)
    rows = _tshark(
        path,
        "smb.security_blob",
        "frame.number",
        "smb.security_blob",
        "spnego.negResult",
        "spnego.supportedMech",
        "kerberos.msg_type",
        "kerberos.error_code",
    )
    assert len(rows) == 3
    seen = []
    for _frame, blob, neg_result, supported, msg_type, error_code in rows:
        data = bytes.fromhex(blob.replace(":", ""))
        ours = decode_gss(data)
        theirs = unpack_token(data)
        if isinstance(theirs, NegTokenInit):
            assert isinstance(ours, SpnegoInit)
            assert [m.oid for m in ours.mech_types] == theirs.mech_types
        else:
            assert isinstance(theirs, NegTokenResp) and isinstance(ours, SpnegoResp)
            assert ours.neg_state_value == int(neg_result)
            assert ours.supported_mech is not None and ours.supported_mech.oid == supported
        if msg_type:
            assert ours.inner is not None
            assert ours.inner.message.value.replace("_", "-") in ("AP-REQ", "KRB-ERROR")
        if error_code:
            assert isinstance(ours.inner, KrbError)
            assert ours.inner.error_code == int(error_code) == 37
            assert ours.inner.error_name == "KRB_AP_ERR_SKEW"
        seen.append(type(ours.inner).__name__)
    # Server NegTokenInit2 (no token), client AP-REQ, server KRB-ERROR.
    assert seen == ["NoneType", "KerberosApReq", "KrbError"]


@pytest.mark.shared
@pytest.mark.oracle
def test_http_negotiate_kerberos_matches_tshark() -> None:
    import base64

    path = _need(HTTP_KERBEROS)
    rows = _tshark(
        path,
        "http.authorization or http.www_authenticate",
        "http.authorization",
        "http.www_authenticate",
        "spnego.negResult",
        "spnego.supportedMech",
        "kerberos.SNameString",
        "kerberos.realm",
    )
    decoded = []
    for authorization, challenge, neg_result, supported, snames, realm in rows:
        scheme, _, token = (authorization or challenge).partition(" ")
        if not token:
            continue  # a bare "Negotiate" offer
        ours = decode_gss(base64.b64decode(token))
        if isinstance(ours, SpnegoInit):
            assert isinstance(ours.inner, KerberosApReq)
            assert ours.inner.spn == snames.replace(",", "/")
            assert ours.inner.ticket.realm == realm
            assert ours.mech_types[0].oid == OID_MS_KERBEROS
        else:
            assert isinstance(ours, SpnegoResp)
            assert ours.neg_state is NegState.ACCEPT_COMPLETED
            assert ours.neg_state_value == int(neg_result)
            assert ours.supported_mech is not None and ours.supported_mech.oid == supported
        decoded.append(ours.message)
    assert decoded == [Message.NEG_TOKEN_INIT, Message.NEG_TOKEN_RESP]
