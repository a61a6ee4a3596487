"""NTLM decoding (auth/ntlm.py) against MS-NLMP section 4.2 vectors, real HTTP
captures (checked against tshark and pyspnego) and pyspnego-generated messages."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authtrace.auth.malformed import Malformed
from authtrace.auth.ntlm import (
    NegotiateFlags,
    NtlmAuthenticate,
    NtlmChallenge,
    NtlmNegotiate,
    NtlmResponseKind,
    decode_av_pairs,
    decode_ntlm,
    flag_names,
)

DATA = Path(__file__).parent / "data"
CAPTURES = Path(__file__).resolve().parent.parent / ".." / "shared" / "captures"
HTTP_NTLM_CAPTURES = [
    "odedshimon__BruteShark/Pcap_Examples__HTTP - NTLM GSSAPI.pcap",
    "odedshimon__BruteShark/Pcap_Examples__HTTP - NTLM.pcap",
    "arkime__arkime/tests__pcap__ntlm_synthetic.pcap",
]


def vector(name: str) -> bytes:
    return bytes.fromhex((DATA / name).read_text().strip())


# --- MS-NLMP section 4.2 ----------------------------------------------------


def test_ms_nlmp_4_2_4_3_challenge() -> None:
    message = decode_ntlm(vector("ms-nlmp_4.2.4.3_challenge.hex"))
    assert isinstance(message, NtlmChallenge)
    # Values stated in MS-NLMP 4.2.4 (Server, Domain, server challenge 0123456789abcdef).
    assert message.server_challenge == bytes.fromhex("0123456789abcdef")
    assert message.target_name == "Server"
    assert message.flags == 0xE28A8233
    assert message.target_info is not None
    assert message.target_info.nb_domain_name == "Domain"
    assert message.target_info.nb_computer_name == "Server"
    assert message.target_info.terminated
    assert str(message.version).startswith("6.0.6000")
    assert "NTLMSSP_NEGOTIATE_TARGET_INFO" in message.flag_names


def test_ms_nlmp_4_2_4_3_authenticate_is_ntlmv2() -> None:
    message = decode_ntlm(vector("ms-nlmp_4.2.4.3_authenticate.hex"))
    assert isinstance(message, NtlmAuthenticate)
    assert (message.user, message.domain, message.workstation) == ("User", "Domain", "COMPUTER")
    assert message.response_kind is NtlmResponseKind.NTLMV2
    assert len(message.lm_response) == 24 and len(message.nt_response) == 84
    assert message.ntlmv2 is not None
    assert message.ntlmv2.ntproofstr == bytes.fromhex("68cd0ab851e51c96aabc927bebef6a1c")
    assert message.ntlmv2.client_challenge == b"\xaa" * 8
    assert message.ntlmv2.av_pairs.nb_domain_name == "Domain"
    assert not message.ntlmv2.channel_bindings_present
    assert message.session_key_present and not message.mic_present and message.mic is None
    assert not message.anonymous and not message.local_call


def test_ms_nlmp_4_2_2_3_authenticate_is_ntlmv1() -> None:
    message = decode_ntlm(vector("ms-nlmp_4.2.2.3_authenticate.hex"))
    assert isinstance(message, NtlmAuthenticate)
    assert message.response_kind is NtlmResponseKind.NTLMV1
    assert message.ntlmv2 is None
    assert message.user == "User"


@pytest.mark.parametrize(
    "name",
    [
        "ms-nlmp_4.2.4.3_challenge.hex",
        "ms-nlmp_4.2.4.3_authenticate.hex",
        "ms-nlmp_4.2.2.3_authenticate.hex",
    ],
)
def test_every_truncation_is_a_value_not_an_exception(name: str) -> None:
    data = vector(name)
    for end in range(len(data)):
        result = decode_ntlm(data[:end])
        assert isinstance(result, Malformed | NtlmChallenge | NtlmAuthenticate)
        if isinstance(result, Malformed) and end >= 12:
            assert result.truncated, (end, result.reason)


def test_pyspnego_agrees_on_the_vectors() -> None:
    messages = pytest.importorskip("spnego._ntlm_raw.messages")
    data = vector("ms-nlmp_4.2.4.3_authenticate.hex")
    theirs = messages.Authenticate.unpack(data)
    ours = decode_ntlm(data)
    assert isinstance(ours, NtlmAuthenticate)
    assert ours.user == theirs.user_name and ours.domain == theirs.domain_name
    assert ours.flags == int(theirs.flags)
    assert ours.nt_response == theirs.nt_challenge_response


# --- structure details ------------------------------------------------------


def test_flag_names_keep_unknown_bits() -> None:
    names = flag_names(0x00000001 | 0x00000100)
    assert names == ("NTLMSSP_NEGOTIATE_UNICODE", "UNKNOWN (0x00000100)")


def _authenticate(user: bytes, lm: bytes, nt: bytes, flags: int) -> bytes:
    # A minimal AUTHENTICATE (MS-NLMP 2.2.1.3) with the payload after a 64-byte header.
    payload = b""
    fields = b""
    offset = 64
    for value in (lm, nt, b"", user, b"", b""):
        fields += len(value).to_bytes(2, "little") * 2 + offset.to_bytes(4, "little")
        payload += value
        offset += len(value)
    return b"NTLMSSP\0" + (3).to_bytes(4, "little") + fields + flags.to_bytes(4, "little") + payload


def test_anonymous_authenticate() -> None:
    message = decode_ntlm(_authenticate(b"", b"\0", b"", NegotiateFlags.NTLMSSP_ANONYMOUS))
    assert isinstance(message, NtlmAuthenticate)
    assert message.response_kind is NtlmResponseKind.ANONYMOUS and message.anonymous


def test_local_call_flag_and_oem_names() -> None:
    message = decode_ntlm(
        _authenticate(b"bob", b"x" * 24, b"y" * 24, NegotiateFlags.NTLMSSP_NEGOTIATE_LOCAL_CALL)
    )
    assert isinstance(message, NtlmAuthenticate)
    assert message.local_call and message.user == "bob"  # OEM: no Unicode flag
    assert message.response_kind is NtlmResponseKind.NTLMV1


def test_field_past_the_end_is_truncated() -> None:
    data = bytearray(_authenticate(b"bob", b"", b"", 0))
    data[36:38] = (200).to_bytes(2, "little")  # UserNameFields.Len
    result = decode_ntlm(bytes(data))
    assert isinstance(result, Malformed) and result.truncated


def test_av_pairs_without_eol_and_too_many() -> None:
    one = (1).to_bytes(2, "little") + (2).to_bytes(2, "little") + b"A\0"
    info = decode_av_pairs(one)
    assert info.nb_computer_name == "A" and not info.terminated and info.problem
    many = decode_av_pairs(one * 1000)
    assert len(many.pairs) == 64 and "more than" in (many.problem or "")
    assert decode_av_pairs(b"").problem is None


def _pair(av_id: int, value: bytes) -> bytes:
    return av_id.to_bytes(2, "little") + len(value).to_bytes(2, "little") + value


def test_av_pairs_seen_before_decode_the_same_and_the_first_still_wins() -> None:
    """Pairs are remembered by their wire form (issue 10): a list read again
    gives an equal TargetInfo, and a duplicate id keeps the first value even
    when the second one was met (and remembered) in an earlier list."""
    eol = _pair(0, b"")
    stamp = _pair(7, (133_600_000_000_000_000).to_bytes(8, "little"))
    first = _pair(1, "WEB02".encode("utf-16-le")) + _pair(6, b"\x02\0\0\0") + stamp + eol
    again = decode_av_pairs(first)
    assert again == decode_av_pairs(first) and again.nb_computer_name == "WEB02"
    assert again.av_flags == 2 and again.timestamp is not None
    twice = _pair(1, "WEB01".encode("utf-16-le")) + _pair(1, "WEB02".encode("utf-16-le")) + eol
    info = decode_av_pairs(twice)
    assert info.nb_computer_name == "WEB01"
    assert [p.value.decode("utf-16-le") for p in info.pairs] == ["WEB01", "WEB02"]


def test_not_ntlm() -> None:
    assert isinstance(decode_ntlm(b"hello world, not ntlm"), Malformed)
    assert isinstance(decode_ntlm(b"NTLMSSP\0\x09\0\0\0"), Malformed)


# --- pyspnego as an independent NTLM implementation -------------------------


def test_pyspnego_generated_authenticate_with_mic_and_channel_bindings() -> None:
    spnego = pytest.importorskip("spnego")
    messages = pytest.importorskip("spnego._ntlm_raw.messages")
    from spnego.channel_bindings import GssChannelBindings

    client = spnego.client(
        "alice",
        "Passw0rd!",
        hostname="web01",
        service="http",
        protocol="ntlm",
        channel_bindings=GssChannelBindings(application_data=b"tls-server-end-point:" + b"x" * 32),
    )
    negotiate = decode_ntlm(client.step())
    assert isinstance(negotiate, NtlmNegotiate)
    # A challenge with MsvAvTimestamp makes the client add a MIC (MS-NLMP 3.1.5.1.2).
    info = messages.TargetInfo()
    info[messages.AvId.nb_domain_name] = "CONTOSO"
    info[messages.AvId.nb_computer_name] = "WEB01"
    info[messages.AvId.timestamp] = messages.FileTime.now()
    challenge = messages.Challenge(
        flags=negotiate.flags | NegotiateFlags.NTLMSSP_NEGOTIATE_TARGET_INFO,
        server_challenge=b"\x11" * 8,
        target_name="CONTOSO",
        target_info=info,
    ).pack()
    decoded_challenge = decode_ntlm(challenge)
    assert isinstance(decoded_challenge, NtlmChallenge)
    assert decoded_challenge.target_info is not None
    assert decoded_challenge.target_info.timestamp is not None
    message = decode_ntlm(client.step(challenge))
    assert isinstance(message, NtlmAuthenticate)
    assert message.user == "alice" and message.response_kind is NtlmResponseKind.NTLMV2
    assert message.mic_present and message.mic is not None and any(message.mic)
    assert message.ntlmv2 is not None
    assert message.ntlmv2.channel_bindings_present and not message.ntlmv2.channel_bindings_all_zero
    assert message.ntlmv2.target_name == "http/web01"
    assert message.ntlmv2.timestamp is not None


# --- real captures, compared with tshark and pyspnego -----------------------


def _http_ntlm_tokens(capture: Path) -> list[tuple[int, bytes, dict[str, str]]]:
    fields = [
        "frame.number",
        "http.authorization",
        "http.www_authenticate",
        "ntlmssp.messagetype",
        "ntlmssp.auth.username",
        "ntlmssp.auth.domain",
    ]
    out = subprocess.run(
        ["tshark", "-r", str(capture), "-Y", "ntlmssp", "-T", "fields"]
        + [arg for field in fields for arg in ("-e", field)]
        + ["-E", "separator=\t", "-E", "occurrence=f"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    tokens = []
    for line in out.splitlines():
        row = dict(zip(fields, line.split("\t"), strict=False))
        header = row.get("http.authorization") or row.get("http.www_authenticate") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("ntlm", "negotiate") or not token:
            continue
        tokens.append((int(row["frame.number"]), base64.b64decode(token.strip()), row))
    return tokens


@pytest.mark.oracle
@pytest.mark.shared
@pytest.mark.parametrize("name", HTTP_NTLM_CAPTURES)
def test_http_capture_tokens_match_tshark_and_pyspnego(name: str) -> None:
    capture = CAPTURES / name
    if not capture.exists():
        pytest.skip("shared captures absent")
    if shutil.which("tshark") is None:
        pytest.skip("tshark absent")
    messages = pytest.importorskip("spnego._ntlm_raw.messages")
    tokens = _http_ntlm_tokens(capture)
    assert tokens, "the capture holds NTLM tokens in HTTP headers"
    for frame, data, row in tokens:
        ours = decode_ntlm(data)
        assert not isinstance(ours, Malformed), (frame, ours)
        expected_type = int(row["ntlmssp.messagetype"], 16)
        assert {1: NtlmNegotiate, 2: NtlmChallenge, 3: NtlmAuthenticate}[expected_type] is type(
            ours
        )
        if isinstance(ours, NtlmNegotiate):
            theirs = messages.Negotiate.unpack(data)
            assert ours.flags == int(theirs.flags)
            assert ours.domain == (theirs.domain_name or None)
            assert ours.workstation == (theirs.workstation or None)
        elif isinstance(ours, NtlmChallenge):
            theirs = messages.Challenge.unpack(data)
            assert ours.flags == int(theirs.flags)
            assert ours.server_challenge == theirs.server_challenge
            assert ours.target_name == theirs.target_name
            if ours.target_info is not None:
                assert [p.av_id for p in ours.target_info.pairs] == [
                    int(k) for k in theirs.target_info if int(k) != 0
                ]
        else:
            assert isinstance(ours, NtlmAuthenticate)
            theirs = messages.Authenticate.unpack(data)
            assert ours.flags == int(theirs.flags)
            assert ours.user == theirs.user_name == row["ntlmssp.auth.username"]
            assert ours.domain == theirs.domain_name
            assert ours.domain == (row["ntlmssp.auth.domain"] if ours.domain else "")
            assert ours.workstation == (theirs.workstation or "")
            assert ours.lm_response == (theirs.lm_challenge_response or b"")
            assert ours.nt_response == (theirs.nt_challenge_response or b"")
            kind = NtlmResponseKind.NTLMV1 if len(ours.nt_response) == 24 else None
            if kind:
                assert ours.response_kind is kind


# --- fuzzing ----------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_never_raises(tail: bytes) -> None:
    for message_type in (1, 2, 3):
        result = decode_ntlm(b"NTLMSSP\0" + message_type.to_bytes(4, "little") + tail)
        assert isinstance(result, Malformed | NtlmNegotiate | NtlmChallenge | NtlmAuthenticate)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzz_mutated_vectors(data: st.DataObject) -> None:
    original = bytearray(vector("ms-nlmp_4.2.4.3_authenticate.hex"))
    for _ in range(data.draw(st.integers(1, 8))):
        index = data.draw(st.integers(0, len(original) - 1))
        original[index] = data.draw(st.integers(0, 255))
    decode_ntlm(bytes(original))  # must not raise


def test_what_tokens_repeat_is_kept_once() -> None:
    """Issue 10: a run keeps every decoded token until its report. Two
    different tokens naming the same domain and server hold one copy of each
    name and of each equal AV pair (sharing.py); equality is unchanged."""
    challenge = decode_ntlm(vector("ms-nlmp_4.2.4.3_challenge.hex"))
    authenticate = decode_ntlm(vector("ms-nlmp_4.2.4.3_authenticate.hex"))
    assert isinstance(challenge, NtlmChallenge) and isinstance(authenticate, NtlmAuthenticate)
    assert challenge.target_info is not None and authenticate.ntlmv2 is not None
    offered, echoed = challenge.target_info, authenticate.ntlmv2.av_pairs
    assert offered.nb_domain_name == "Domain" and offered.nb_domain_name is echoed.nb_domain_name
    assert authenticate.domain is offered.nb_domain_name
    same = [(a, b) for a in offered.pairs for b in echoed.pairs if a == b]
    assert same and all(a is b for a, b in same)
