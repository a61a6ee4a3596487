"""GSS-API token classification: the one entry point that turns the bytes of
an HTTP ``Negotiate`` / ``Kerberos`` token (or any GSS token) into a decoded
authtrace object.

This module owns the RFC 2743 section 3.1 framing, the RFC 4121 section 4.1
Kerberos token ids, NEGOEX recognition, and the recursion bound for tokens
nested inside SPNEGO.

Invariant: `decode_gss` never raises and never recurses deeper than
`MAX_DEPTH`; every failure is a `Malformed` value with a one-line reason.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from typing import Any

from authtrace.auth.kinds import Mechanism, Message
from authtrace.auth.malformed import Malformed
from authtrace.auth.ntlm import NtlmMessage, decode_ntlm
from authtrace.auth.spnego import (
    MECHANISM_BY_OID,
    OID_KERBEROS,
    OID_KERBEROS_U2U,
    OID_MS_KERBEROS,
    OID_NEGOEX,
    OID_NTLMSSP,
    OID_SPNEGO,
    MechType,
    SpnegoInit,
    SpnegoResp,
    decode_negotiation_token,
    mech_type,
)
from authtrace.kerberos import der
from authtrace.kerberos.der import DerError, DerTruncated, TagClass
from authtrace.kerberos.fields import (
    Labelled,
    dataclass_to_dict,
    label,
)
from authtrace.kerberos.messages import (
    KerberosApRep,
    KerberosApReq,
    KerberosMessage,
    KerberosOther,
    KrbError,
    decode_kerberos,
)
from authtrace.sharing import keep_one_copy, lazy_fields

# SPNEGO inside SPNEGO is not legitimate; the bound only stops hostile nesting.
MAX_DEPTH = 4

NTLMSSP_SIGNATURE = b"NTLMSSP\x00"
NEGOEX_SIGNATURE = b"NEGOEXTS"

_KERBEROS_OIDS = frozenset({OID_KERBEROS, OID_MS_KERBEROS, OID_KERBEROS_U2U})

# RFC 4121 section 4.1 TOK_ID values of context-establishment tokens (and the
# user-to-user TGT request/reply of draft-swift-win2k-krb-user2user).
_TOKEN_IDS: dict[bytes, type] = {
    b"\x01\x00": KerberosApReq,
    b"\x02\x00": KerberosApRep,
    b"\x03\x00": KrbError,
    b"\x04\x00": KerberosOther,
    b"\x04\x01": KerberosOther,
}

# MS-NEGOEX section 2.2.6.1 MESSAGE_TYPE.
NEGOEX_MESSAGE_TYPES: dict[int, str] = {
    0: "INITIATOR_NEGO",
    1: "ACCEPTOR_NEGO",
    2: "INITIATOR_META_DATA",
    3: "ACCEPTOR_META_DATA",
    4: "CHALLENGE",
    5: "AP_REQUEST",
    6: "VERIFY",
    7: "ALERT",
}
_NEGOEX_HEADER = struct.Struct("<8sIIII16s")
MAX_NEGOEX_MESSAGES = 64


@lazy_fields("raw")
@dataclass(frozen=True, slots=True)
class NegoexToken:
    """NEGOEX messages (MS-NEGOEX section 2.2.6.2 MESSAGE_HEADER), recognised
    and named, not interpreted: Signature "NEGOEXTS", MessageType,
    SequenceNum, cbHeaderLength, cbMessageLength, ConversationId."""

    message_types: tuple[Labelled, ...]
    conversation_id: str
    raw: bytes = b""

    @property
    def mechanism(self) -> Mechanism:
        return Mechanism.NEGOEX

    @property
    def message(self) -> Message:
        return Message.UNKNOWN

    def to_dict(self, show_secrets: bool = False) -> dict[str, Any]:
        return dataclass_to_dict(self, show_secrets)


@lazy_fields("inner_token")
@dataclass(frozen=True, slots=True)
class GssToken:
    """A GSS-API InitialContextToken for a mechanism authtrace recognises by
    OID but does not decode (IAKERB, PKU2U, unknown OIDs)."""

    mech: MechType
    inner_token: bytes

    @property
    def mechanism(self) -> Mechanism:
        return MECHANISM_BY_OID.get(self.mech.oid, Mechanism.UNKNOWN)

    @property
    def message(self) -> Message:
        return Message.UNKNOWN

    def to_dict(self, show_secrets: bool = False) -> dict[str, Any]:
        return dataclass_to_dict(self, show_secrets)


GssResult = (
    SpnegoInit | SpnegoResp | KerberosMessage | NegoexToken | GssToken | NtlmMessage | Malformed
)


def decode_gss(data: bytes) -> GssResult:
    """Decode any GSS-API token carried by HTTP Negotiate/Kerberos; never raises.

    Returns SpnegoInit / SpnegoResp (with `.inner` decoded), a Kerberos
    message (AP-REQ, AP-REP, KRB-ERROR...), an NTLM message, NegoexToken,
    GssToken, or Malformed.

    The decoded object holds the token's bytes once: the slices its fields
    keep (mechToken, the Kerberos message, cipher texts) are parts of `data`
    (authtrace/sharing.py `keep_one_copy`), which the caller keeps as the step's
    raw token.
    """
    decoded = _decode(data, 0)
    keep_one_copy(decoded, data)
    return decoded


def _decode(data: bytes, depth: int) -> GssResult:
    if depth > MAX_DEPTH:
        return Malformed(f"GSS-API: tokens nested deeper than {MAX_DEPTH}", raw=data)
    try:
        return _classify(bytes(data), depth)
    except DerTruncated as exc:
        return Malformed(f"GSS-API: {exc}", raw=data, truncated=True)
    except DerError as exc:
        return Malformed(f"GSS-API: {exc}", raw=data)
    except Exception as exc:  # noqa: BLE001 - hostile input must not escape
        return Malformed(f"GSS-API: {type(exc).__name__}: {exc}", raw=data)


def _classify(data: bytes, depth: int) -> GssResult:
    if not data:
        return Malformed("GSS-API: empty token")
    if data.startswith(NTLMSSP_SIGNATURE):
        return decode_ntlm(data)
    if data.startswith(NEGOEX_SIGNATURE):
        return _negoex(data)
    first = data[0]
    if first == 0x60:
        return _initial_context_token(data, depth)
    if first in (0xA0, 0xA1):
        # RFC 4178 section 4.2: tokens after the first are a bare
        # NegotiationToken (in practice negTokenResp, 0xa1).
        tlv = der.read_single(data)
        return decode_negotiation_token(tlv, lambda inner: _decode(inner, depth + 1), False)
    if first in (0x6E, 0x6F, 0x7E):
        # A bare AP-REQ / AP-REP / KRB-ERROR without the GSS-API framing.
        return decode_kerberos(data)
    return Malformed(f"GSS-API: unrecognised token (first byte 0x{first:02x})", raw=data)


def _initial_context_token(data: bytes, depth: int) -> GssResult:
    """RFC 2743 section 3.1::

    InitialContextToken ::= [APPLICATION 0] IMPLICIT SEQUENCE {
            thisMech MechType,
            innerContextToken ANY DEFINED BY thisMech
    }
    """
    outer = der.read_single(data)
    if outer.tag_class is not TagClass.APPLICATION or outer.number != 0:
        raise DerError("not a GSS-API InitialContextToken")
    oid_tlv = der.read_tlv(outer.value)
    oid = der.decode_oid(oid_tlv, "thisMech")
    inner = outer.value[oid_tlv.end :]
    if oid == OID_SPNEGO:
        tlv = der.read_single(inner)
        return decode_negotiation_token(tlv, lambda token: _decode(token, depth + 1), True)
    if oid in _KERBEROS_OIDS:
        return _kerberos_token(inner, oid)
    if oid == OID_NTLMSSP:
        return decode_ntlm(inner)
    if oid == OID_NEGOEX:
        return _negoex(inner)
    # IAKERB, PKU2U and unknown mechanisms: named by OID, not decoded.
    return GssToken(mech_type(oid), inner)


def _kerberos_token(inner: bytes, oid: str) -> KerberosMessage | Malformed:
    """RFC 4121 section 4.1: a two-byte TOK_ID, then the Kerberos message."""
    token_id = inner[:2]
    expected = _TOKEN_IDS.get(token_id)
    if expected is None:
        return Malformed(f"Kerberos GSS token: unknown TOK_ID {token_id.hex()}", raw=inner)
    message = decode_kerberos(inner[2:])
    if isinstance(message, Malformed):
        return message
    if not isinstance(message, expected):
        return Malformed(
            f"Kerberos GSS token: TOK_ID {token_id.hex()} carries {type(message).__name__}",
            raw=inner,
        )
    return message


def _negoex(data: bytes) -> NegoexToken | Malformed:
    types: list[Labelled] = []
    conversation = ""
    offset = 0
    while offset < len(data):
        if len(types) >= MAX_NEGOEX_MESSAGES:
            return Malformed(f"NEGOEX: more than {MAX_NEGOEX_MESSAGES} messages", raw=data)
        if len(data) - offset < _NEGOEX_HEADER.size:
            return Malformed("NEGOEX: message header truncated", raw=data, truncated=True)
        signature, msg_type, _seq, header_len, msg_len, conv = _NEGOEX_HEADER.unpack_from(
            data, offset
        )
        if signature != NEGOEX_SIGNATURE:
            return Malformed(f"NEGOEX: bad signature at offset {offset}", raw=data)
        if msg_len < _NEGOEX_HEADER.size or header_len > msg_len:
            return Malformed(f"NEGOEX: invalid message length {msg_len}", raw=data)
        if offset + msg_len > len(data):
            return Malformed("NEGOEX: message truncated", raw=data, truncated=True)
        types.append(label(NEGOEX_MESSAGE_TYPES, msg_type))
        conversation = str(uuid.UUID(bytes_le=conv))
        offset += msg_len
    return NegoexToken(tuple(types), conversation, raw=data)
