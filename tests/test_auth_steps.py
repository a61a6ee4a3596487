"""AuthStep classification (auth/steps.py): by token content, never by the
scheme word; checked on real captures against tshark, and fuzzed."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authtrace.auth.kinds import Mechanism, Message
from authtrace.auth.malformed import Malformed
from authtrace.auth.ntlm import NtlmAuthenticate, NtlmNegotiate
from authtrace.auth.render import describe_step, format_step_tree, step_to_dict
from authtrace.auth.steps import (
    AuthStep,
    StepKind,
    decode_value,
    step_from_credentials_header,
    steps_from_challenge_header,
)

DATA = Path(__file__).parent / "data"
CAPTURES = Path(__file__).resolve().parent.parent / ".." / "shared" / "captures"

NTLM_NEGOTIATE_B64 = "TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAFASgKAAAADw=="  # HTTP - NTLM.pcap


def test_bare_offers_and_proxy() -> None:
    steps = steps_from_challenge_header("Proxy-Authenticate", "Negotiate, NTLM")
    assert [(s.scheme, s.message, s.mechanism, s.token) for s in steps] == [
        ("Negotiate", Message.OFFER, Mechanism.NONE, None),
        ("NTLM", Message.OFFER, Mechanism.NONE, None),
    ]
    assert all(s.proxy and s.kind is StepKind.CHALLENGE for s in steps)
    assert describe_step(steps[0]) == "Negotiate (offer) [proxy]"
    assert not steps_from_challenge_header("WWW-Authenticate", "NTLM")[0].proxy


def test_negotiate_carrying_raw_ntlm_is_ntlm() -> None:
    step = step_from_credentials_header("Authorization", "Negotiate " + NTLM_NEGOTIATE_B64)
    assert step.mechanism is Mechanism.NTLM and step.message is Message.NTLM_NEGOTIATE
    assert step.wrapper is None and isinstance(step.token, NtlmNegotiate)
    assert step.raw.startswith(b"NTLMSSP\0")
    assert describe_step(step) == "Negotiate → NTLM NEGOTIATE"
    same = step_from_credentials_header("authorization", "ntlm " + NTLM_NEGOTIATE_B64)
    assert same.message is Message.NTLM_NEGOTIATE
    assert describe_step(same).startswith("ntlm NEGOTIATE")


def test_spnego_wrapped_ntlm_from_pyspnego() -> None:
    spnego = pytest.importorskip("spnego")
    # No Kerberos here, so pyspnego's Negotiate falls back to NTLM inside SPNEGO.
    client = spnego.client("alice", "pw", hostname="web01", service="http", protocol="negotiate")
    token = client.step()
    step = step_from_credentials_header(
        "Authorization", "Negotiate " + base64.b64encode(token).decode()
    )
    assert step.wrapper is Message.NEG_TOKEN_INIT
    assert step.message is Message.NTLM_NEGOTIATE and step.mechanism is Mechanism.NTLM
    assert describe_step(step) == "Negotiate → NTLM NEGOTIATE"
    assert "spnego" in step_to_dict(step)


def test_authenticate_line_and_secrets() -> None:
    data = bytes.fromhex((DATA / "ms-nlmp_4.2.4.3_authenticate.hex").read_text().strip())
    step = decode_value("Authorization: NTLM " + base64.b64encode(data).decode())
    assert isinstance(step.token, NtlmAuthenticate)
    assert describe_step(step) == "NTLM AUTHENTICATE Domain\\User (NTLMv2)"
    rendered = step_to_dict(step)
    assert rendered["nt_response"] == "<redacted, 84 bytes>"
    assert rendered["ntlmv2"]["ntproofstr"] == "<redacted, 16 bytes>"
    assert rendered["raw_token"] == f"<redacted, {len(data)} bytes>"
    assert data[-16:].hex() not in format_step_tree(step)
    assert step_to_dict(step, show_secrets=True)["encrypted_random_session_key"] == data[-16:].hex()


def test_malformed_tokens() -> None:
    bad = step_from_credentials_header("Authorization", "NTLM !!!!")
    assert bad.message is Message.MALFORMED and isinstance(bad.token, Malformed)
    unknown = step_from_credentials_header("Authorization", "Negotiate aGVsbG8=")
    assert unknown.message is Message.MALFORMED
    assert "first byte" in unknown.token.reason
    truncated = step_from_credentials_header("Authorization", "NTLM " + NTLM_NEGOTIATE_B64[:20])
    assert truncated.message is Message.MALFORMED
    assert step_from_credentials_header("Authorization", "Negotiate").message is Message.MALFORMED


def test_decode_value_forms() -> None:
    raw = base64.b64decode(NTLM_NEGOTIATE_B64)
    for text in (NTLM_NEGOTIATE_B64, raw.hex(), " ".join(f"{b:02x}" for b in raw)):
        step = decode_value(text)
        assert step.message is Message.NTLM_NEGOTIATE and step.kind is StepKind.CREDENTIALS
    assert decode_value('Digest realm="r", nonce="n"').kind is StepKind.CHALLENGE
    assert decode_value('Digest username="u", realm="r"').kind is StepKind.CREDENTIALS
    assert decode_value('Bearer error="invalid_token"').message is Message.BEARER_CHALLENGE
    assert decode_value("WWW-Authenticate: Negotiate, NTLM").message is Message.OFFER
    assert decode_value("").message is Message.MALFORMED
    assert decode_value("not a token at all").message is Message.MALFORMED


def _tshark_headers(capture: Path) -> list[dict[str, str]]:
    fields = [
        "frame.number",
        "http.authorization",
        "http.www_authenticate",
        "ntlmssp.messagetype",
        "kerberos.msg_type",
        "spnego.negResult",
    ]
    out = subprocess.run(
        ["tshark", "-r", str(capture), "-Y", "http.authorization or http.www_authenticate"]
        + ["-T", "fields", "-E", "occurrence=f"]
        + [arg for field in fields for arg in ("-e", field)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return [dict(zip(fields, line.split("\t"), strict=False)) for line in out.splitlines()]


def _steps(row: dict[str, str]) -> list[AuthStep]:
    if row["http.authorization"]:
        return [step_from_credentials_header("Authorization", row["http.authorization"])]
    return steps_from_challenge_header("WWW-Authenticate", row["http.www_authenticate"])


_NTLM_MESSAGES = {
    1: Message.NTLM_NEGOTIATE,
    2: Message.NTLM_CHALLENGE,
    3: Message.NTLM_AUTHENTICATE,
}
_KERBEROS_MESSAGES = {14: Message.AP_REQ, 15: Message.AP_REP, 30: Message.KRB_ERROR}


@pytest.mark.oracle
@pytest.mark.shared
@pytest.mark.parametrize(
    "name",
    [
        "odedshimon__BruteShark/Pcap_Examples__HTTP - NTLM GSSAPI.pcap",
        "odedshimon__BruteShark/Pcap_Examples__HTTP - NTLM.pcap",
        "odedshimon__BruteShark/Pcap_Examples__Kerberos v5 UDP 2.pcap",
        "arkime__arkime/tests__pcap__ntlm_synthetic.pcap",
        "OTRF__Security-Datasets/datasets__atomic__windows__lateral_movement__network__"
        "empire_psremoting_stager.zip__empire_psremoting_stager_WORKSTATION5_2020-09-20170827.cap",
    ],
)
def test_capture_steps_match_tshark(name: str) -> None:
    capture = CAPTURES / name
    if not capture.exists():
        pytest.skip("shared captures absent")
    if shutil.which("tshark") is None:
        pytest.skip("tshark absent")
    rows = _tshark_headers(capture)
    assert rows
    checked = 0
    for row in rows:
        steps = _steps(row)
        assert steps
        with_token = [s for s in steps if s.raw]
        if not with_token:
            assert all(s.message is Message.OFFER for s in steps), row
            continue
        (step,) = with_token
        assert step.message is not Message.MALFORMED, (row, step.token)
        if row["ntlmssp.messagetype"]:
            assert step.mechanism is Mechanism.NTLM
            assert step.message is _NTLM_MESSAGES[int(row["ntlmssp.messagetype"], 16)]
            checked += 1
        elif row["kerberos.msg_type"]:
            assert step.mechanism is Mechanism.KERBEROS
            assert step.message is _KERBEROS_MESSAGES[int(row["kerberos.msg_type"])]
            if step.scheme == "Negotiate":
                assert step.wrapper is Message.NEG_TOKEN_INIT
                assert describe_step(step).startswith("Negotiate → Kerberos AP-REQ HTTP/")
            else:  # WinRM's "Kerberos" scheme: a bare GSS Kerberos token
                assert step.wrapper is None
            checked += 1
        elif row["spnego.negResult"]:
            # accept-completed with no inner token: the SPNEGO message itself.
            assert step.message is Message.NEG_TOKEN_RESP and step.wrapper is None
            checked += 1
    assert checked


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_decode_value_never_raises(text: str) -> None:
    step = decode_value(text)
    describe_step(step)
    step_to_dict(step)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["NTLM", "Negotiate", "Kerberos", "Basic", "Bearer", "X"]),
    st.binary(max_size=120),
)
def test_fuzz_binary_tokens(scheme: str, data: bytes) -> None:
    for prefix in (b"", b"NTLMSSP\0", b"\x60", b"\xa1", b"\xa0"):
        token = base64.b64encode(prefix + data).decode()
        step = step_from_credentials_header("Authorization", f"{scheme} {token}")
        format_step_tree(step)
        for challenge in steps_from_challenge_header("WWW-Authenticate", f"{scheme} {token}"):
            step_to_dict(challenge, show_secrets=True)
