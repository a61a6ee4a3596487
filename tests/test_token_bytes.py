"""A token is held once (issue 10, authtrace/sharing.py): the SPNEGO
mechToken, the Kerberos AP-REQ inside it and the cipher texts inside that are
parts of the step's raw token (kerberos/fields.py `keep_one_copy`), the header
value is that token's base64 (`Header.keep_token_once`), each reads back as the
same value, and a pickled step or judged timeline carries the token once. The
token is the auth-dense benchmark's SPNEGO init around an AP-REQ
(benchmarks/auth_dense.py)."""

from __future__ import annotations

import base64
import pickle
import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from authtrace.auth.render import step_to_dict  # noqa: E402
from authtrace.auth.spnego import SpnegoInit  # noqa: E402
from authtrace.auth.steps import step_from_credentials_header  # noqa: E402
from authtrace.handshake.timeline import build_timeline  # noqa: E402
from authtrace.http.messages import Header, TokenHeader, make_header  # noqa: E402
from authtrace.kerberos import der  # noqa: E402
from authtrace.kerberos.messages import KerberosApReq  # noqa: E402
from authtrace.pipeline import read_connections  # noqa: E402
from authtrace.sharing import Part  # noqa: E402
from benchmarks.auth_dense import HOST, Shape, kerberos_ap_req, write_pcap  # noqa: E402
from benchmarks.make_capture import KRB5, MS_KRB5, NTLMSSP, spnego_init  # noqa: E402


def _token(seed: int) -> bytes:
    return spnego_init([MS_KRB5, KRB5, NTLMSSP], kerberos_ap_req(random.Random(seed), HOST))


def _step(seed: int = 7):  # type: ignore[no-untyped-def]
    value = "Negotiate " + base64.b64encode(_token(seed)).decode()
    return step_from_credentials_header("Authorization", value)


def _wire_fields(token: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """mechToken, the AP-REQ, the ticket's and the authenticator's cipher, read
    from the DER here, independently of the decoders."""
    outer = der.read_single(token)
    oid = der.read_tlv(outer.value)
    neg = der.read_single(outer.value[oid.end :])
    init = der.explicit_fields(der.read_single(neg.value), "NegTokenInit")
    mech_token = init[2].value
    krb_outer = der.read_single(mech_token)
    krb_oid = der.read_tlv(krb_outer.value)
    ap_req = krb_outer.value[krb_oid.end + 2 :]
    fields = der.explicit_fields(der.read_single(der.read_single(ap_req).value), "AP-REQ")
    ticket = der.explicit_fields(der.read_single(fields[3].value), "Ticket")
    ticket_cipher = der.explicit_fields(ticket[3], "EncryptedData")[2].value
    authenticator = der.explicit_fields(fields[4], "EncryptedData")[2].value
    return mech_token, ap_req, ticket_cipher, authenticator


def test_fields_read_as_the_bytes_on_the_wire() -> None:
    step = _step()
    mech_token, ap_req, ticket_cipher, authenticator = _wire_fields(step.raw)
    assert isinstance(step.token, SpnegoInit)
    inner = step.innermost
    assert isinstance(inner, KerberosApReq)
    assert step.token.mech_token == mech_token
    assert type(step.token.mech_token) is bytes
    assert inner.raw == ap_req
    assert inner.ticket.enc_part.cipher == ticket_cipher
    assert inner.authenticator.cipher == authenticator


def test_the_parts_refer_to_the_one_raw_token() -> None:
    step = _step()
    inner = step.innermost
    held = [
        type(step.token).mech_token.held(step.token),
        type(inner).raw.held(inner),
        type(inner.authenticator).cipher.held(inner.authenticator),
    ]
    assert all(type(part) is Part and part.source is step.raw for part in held)


def test_a_pickled_step_carries_the_token_once_and_comes_back_equal() -> None:
    # A ticket of its own: a ticket seen before is the decoder's cached one,
    # whose cipher is a part of the token that first carried it.
    step = _step(seed=11)
    shipped = pickle.dumps(step, pickle.HIGHEST_PROTOCOL)
    # the mechToken, the AP-REQ and its cipher texts are each nearly the whole
    # token: four copies before, one now (and the decoded names, a few hundred bytes)
    assert len(shipped) < len(step.raw) + 1024
    back = pickle.loads(shipped)
    assert back == step
    assert hash(back.innermost) == hash(step.innermost)
    assert back.innermost.raw == step.innermost.raw
    assert step_to_dict(back, show_secrets=True) == step_to_dict(step, show_secrets=True)


def test_redaction_is_unchanged_by_the_parts() -> None:
    step = _step()
    shown = step_to_dict(step)
    mech_token = _wire_fields(step.raw)[0]
    assert shown["spnego"]["mech_token"] == f"<redacted, {len(mech_token)} bytes>"
    assert shown["raw"] == f"<redacted, {len(step.innermost.raw)} bytes>"
    text = repr(shown)
    assert step.raw.hex()[:32] not in text
    assert mech_token.hex()[40:72] not in text


def test_a_header_value_is_held_as_the_token_it_carries() -> None:
    token = _token(seed=13)
    text = "Negotiate " + base64.b64encode(token).decode()
    header = make_header("Authorization", text)
    header.keep_token_once(token)
    assert header.value == text
    assert header == make_header("Authorization", text)
    assert hash(header) == hash(make_header("Authorization", text))
    assert type(header) is TokenHeader
    assert repr(header) == repr(make_header("Authorization", text))
    shipped = pickle.dumps((token, header), pickle.HIGHEST_PROTOCOL)
    assert len(shipped) < len(token) + 200
    back = pickle.loads(shipped)[1]
    assert back.value == text
    assert type(back) is TokenHeader


@pytest.mark.parametrize(
    "text",
    [
        "Negotiate " + base64.b64encode(_token(seed=17)).decode().rstrip("="),  # unpadded
        "Negotiate " + base64.b64encode(_token(seed=17)).decode() + " ",  # text after it
        "Negotiate " + base64.b64encode(_token(seed=19)).decode(),  # another token
    ],
    ids=["unpadded", "text-after", "another-token"],
)
def test_a_value_that_is_not_exactly_the_token_stays_as_written(text: str) -> None:
    header = make_header("Authorization", text)
    header.keep_token_once(_token(seed=17))
    assert type(header) is Header
    assert header.value is text


def test_a_judged_timeline_pickles_the_token_once(tmp_path: Path) -> None:
    path = tmp_path / "kerberos.pcap"
    write_pcap(path, "kerberos", 3, shape=Shape(seed=5))
    connections, _ = read_connections([path])
    timelines = [build_timeline(connection) for connection in connections]
    steps = [s for t in timelines for s in t.steps if s.credentials and s.credentials.raw]
    assert steps
    for timeline in timelines:
        shipped = pickle.dumps(timeline, pickle.HIGHEST_PROTOCOL)
        for step in timeline.steps:
            for auth in (step.credentials, *step.challenges):
                if auth is None or len(auth.raw) < 200:
                    continue
                assert shipped.count(auth.raw[-100:]) == 1
                assert base64.b64encode(auth.raw)[-100:] not in shipped
        assert pickle.loads(shipped) == timeline
