"""SPNEGO negotiation tokens (RFC 4178 section 4.2, MS-SPNG section 2.2).

This module owns the NegTokenInit / NegTokenInit2 / NegTokenResp structures
and the names of the mechanism OIDs they list. The mechanism token inside
(mechToken / responseToken) is decoded by a decoder the caller passes in
(auth/gssapi.py), which keeps the recursion depth in one place.

Invariant: `decode_negotiation_token` raises only `DerError`; the caller
(`decode_gss`) turns that into a `Malformed` value. mechListMIC bytes are kept
and are a secret.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from authtrace.auth.kinds import Mechanism, Message
from authtrace.kerberos import der
from authtrace.kerberos.der import DerError, TagClass, Tlv
from authtrace.kerberos.fields import dataclass_to_dict
from authtrace.sharing import lazy_fields

OID_SPNEGO = "1.3.6.1.5.5.2"
OID_KERBEROS = "1.2.840.113554.1.2.2"
OID_MS_KERBEROS = "1.2.840.48018.1.2.2"
OID_KERBEROS_U2U = "1.2.840.113554.1.2.2.3"
OID_NTLMSSP = "1.3.6.1.4.1.311.2.2.10"
OID_NEGOEX = "1.3.6.1.4.1.311.2.2.30"
OID_IAKERB = "1.3.6.1.5.2.5"
OID_PKU2U = "1.3.6.1.5.2.7"

MECHANISM_NAMES: dict[str, str] = {
    OID_SPNEGO: "SPNEGO",
    OID_KERBEROS: "Kerberos",
    OID_MS_KERBEROS: "MS Kerberos",
    OID_KERBEROS_U2U: "Kerberos user-to-user",
    OID_NTLMSSP: "NTLMSSP",
    OID_NEGOEX: "NEGOEX",
    OID_IAKERB: "IAKERB",
    OID_PKU2U: "PKU2U",
}

# Which authtrace Mechanism a mechanism OID stands for.
MECHANISM_BY_OID: dict[str, Mechanism] = {
    OID_KERBEROS: Mechanism.KERBEROS,
    OID_MS_KERBEROS: Mechanism.KERBEROS,
    OID_KERBEROS_U2U: Mechanism.KERBEROS,
    OID_IAKERB: Mechanism.KERBEROS,
    OID_NTLMSSP: Mechanism.NTLM,
    OID_NEGOEX: Mechanism.NEGOEX,
    OID_SPNEGO: Mechanism.SPNEGO,
}

# RFC 4178 section 4.2.1 ContextFlags (bit 0 first).
CONTEXT_FLAGS: dict[int, str] = {
    0: "delegFlag",
    1: "mutualFlag",
    2: "replayFlag",
    3: "sequenceFlag",
    4: "anonFlag",
    5: "confFlag",
    6: "integFlag",
}


class NegState(enum.Enum):
    """RFC 4178 section 4.2.2 negState."""

    ACCEPT_COMPLETED = "accept-completed"
    ACCEPT_INCOMPLETE = "accept-incomplete"
    REJECT = "reject"
    REQUEST_MIC = "request-mic"
    UNKNOWN = "unknown"


_NEG_STATES = {
    0: NegState.ACCEPT_COMPLETED,
    1: NegState.ACCEPT_INCOMPLETE,
    2: NegState.REJECT,
    3: NegState.REQUEST_MIC,
}


@dataclass(frozen=True, slots=True)
class MechType:
    """A mechanism OID and its name (``UNKNOWN (oid)`` when unknown)."""

    oid: str
    name: str

    @property
    def mechanism(self) -> Mechanism:
        return MECHANISM_BY_OID.get(self.oid, Mechanism.UNKNOWN)

    def to_dict(self, show_secrets: bool = False) -> dict[str, Any]:
        return {"oid": self.oid, "name": self.name}


# Every NegTokenInit lists three or four of the known mechanisms; their
# MechType values are made once (they are immutable and compare by value).
_KNOWN_MECH_TYPES = {oid: MechType(oid, name) for oid, name in MECHANISM_NAMES.items()}


def mech_type(oid: str) -> MechType:
    known = _KNOWN_MECH_TYPES.get(oid)
    if known is not None:
        return known
    return MechType(oid, f"UNKNOWN ({oid})")


@lazy_fields("mech_token", inside=("inner",))
@dataclass(frozen=True, slots=True)
class SpnegoInit:
    """RFC 4178 section 4.2.1 and MS-SPNG section 2.2.1::

    NegTokenInit ::= SEQUENCE {
        mechTypes       [0] MechTypeList,
        reqFlags        [1] ContextFlags  OPTIONAL,
        mechToken       [2] OCTET STRING  OPTIONAL,
        mechListMIC     [3] OCTET STRING  OPTIONAL
    }
    NegTokenInit2 ::= SEQUENCE {
        mechTypes       [0] MechTypeList  OPTIONAL,
        reqFlags        [1] ContextFlags  OPTIONAL,
        mechToken       [2] OCTET STRING  OPTIONAL,
        negHints        [3] NegHints      OPTIONAL,
        mechListMIC     [4] OCTET STRING  OPTIONAL
    }
    NegHints ::= SEQUENCE {
        hintName        [0] GeneralString OPTIONAL,
        hintAddress     [1] OCTET STRING  OPTIONAL
    }

    init2: True for the server-sent NegTokenInit2 form (it has negHints or
    [4]); inner: the decoded mechToken (None when absent).
    """

    mech_types: tuple[MechType, ...]
    req_flags: tuple[str, ...]
    mech_token: bytes | None
    mech_list_mic: bytes | None
    init2: bool = False
    hint_name: str | None = None
    hint_address: bytes | None = None
    inner: Any = None
    framed: bool = True

    @property
    def mechanism(self) -> Mechanism:
        inner_mechanism = getattr(self.inner, "mechanism", None)
        if isinstance(inner_mechanism, Mechanism):
            return inner_mechanism
        return Mechanism.SPNEGO

    @property
    def message(self) -> Message:
        return Message.NEG_TOKEN_INIT2 if self.init2 else Message.NEG_TOKEN_INIT

    @property
    def preferred(self) -> MechType | None:
        return self.mech_types[0] if self.mech_types else None

    @property
    def mech_list_mic_present(self) -> bool:
        return self.mech_list_mic is not None

    def to_dict(
        self, show_secrets: bool = False, skip: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        return dataclass_to_dict(self, show_secrets, skip=skip)


@lazy_fields("response_token", inside=("inner",))
@dataclass(frozen=True, slots=True)
class SpnegoResp:
    """RFC 4178 section 4.2.2::

    NegTokenResp ::= SEQUENCE {
        negState       [0] ENUMERATED {
            accept-completed    (0),
            accept-incomplete   (1),
            reject              (2),
            request-mic         (3)
        }                                 OPTIONAL,
        supportedMech   [1] MechType      OPTIONAL,
        responseToken   [2] OCTET STRING  OPTIONAL,
        mechListMIC     [3] OCTET STRING  OPTIONAL
    }

    neg_state_value keeps the wire number (None when absent); inner: the
    decoded responseToken.
    """

    neg_state: NegState | None
    neg_state_value: int | None
    supported_mech: MechType | None
    response_token: bytes | None
    mech_list_mic: bytes | None
    inner: Any = None

    @property
    def mechanism(self) -> Mechanism:
        inner_mechanism = getattr(self.inner, "mechanism", None)
        if isinstance(inner_mechanism, Mechanism):
            return inner_mechanism
        if self.supported_mech is not None and self.supported_mech.mechanism in (
            Mechanism.KERBEROS,
            Mechanism.NTLM,
            Mechanism.NEGOEX,
        ):
            return self.supported_mech.mechanism
        return Mechanism.SPNEGO

    @property
    def message(self) -> Message:
        return Message.NEG_TOKEN_RESP

    @property
    def mech_list_mic_present(self) -> bool:
        return self.mech_list_mic is not None

    def to_dict(
        self, show_secrets: bool = False, skip: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        return dataclass_to_dict(self, show_secrets, skip=skip)


InnerDecoder = Callable[[bytes], Any]


def decode_negotiation_token(
    tlv: Tlv, inner_decoder: InnerDecoder, framed: bool
) -> SpnegoInit | SpnegoResp:
    """RFC 4178 section 4.2::

    NegotiationToken ::= CHOICE {
        negTokenInit    [0] NegTokenInit,
        negTokenResp    [1] NegTokenResp
    }

    framed: whether the token came inside the GSS-API InitialContextToken
    (RFC 2743 section 3.1), as the first token must.
    """
    if tlv.tag_class is not TagClass.CONTEXT or tlv.number not in (0, 1):
        raise DerError(f"not a SPNEGO NegotiationToken ({tlv.tag_class.name} {tlv.number})")
    body = der.read_single(tlv.value)
    fields = der.explicit_fields(body, "NegTokenInit" if tlv.number == 0 else "NegTokenResp")
    if tlv.number == 0:
        return _init(fields, inner_decoder, framed)
    return _resp(fields, inner_decoder)


def _octets(fields: dict[int, Tlv], number: int, what: str) -> bytes | None:
    tlv = fields.get(number)
    return None if tlv is None else der.decode_octets(tlv, what)


def _init(fields: dict[int, Tlv], inner_decoder: InnerDecoder, framed: bool) -> SpnegoInit:
    mech_types: tuple[MechType, ...] = ()
    if 0 in fields:
        items = der.sequence_of(fields[0], "MechTypeList")
        mech_types = tuple(mech_type(der.decode_oid(item, "MechType")) for item in items)
    flags: tuple[str, ...] = ()
    if 1 in fields:
        value, bits = der.decode_bit_string(fields[1], "reqFlags")
        flags = tuple(
            CONTEXT_FLAGS.get(bit, f"bit-{bit}")
            for bit in range(bits)
            if value >> (bits - 1 - bit) & 1
        )
    mech_token = _octets(fields, 2, "mechToken")
    hint_name = hint_address = mic = None
    init2 = 4 in fields
    hints = fields.get(3)
    if hints is not None and hints.is_universal(der.SEQUENCE):
        # MS-SPNG 2.2.1: [3] is negHints (a SEQUENCE) in NegTokenInit2.
        init2 = True
        hint_fields = der.explicit_fields(hints, "NegHints")
        if 0 in hint_fields:
            hint_name = der.decode_string(hint_fields[0], "hintName")
        hint_address = _octets(hint_fields, 1, "hintAddress")
        mic = _octets(fields, 4, "mechListMIC")
    elif hints is not None:
        mic = der.decode_octets(hints, "mechListMIC")
    elif init2:
        mic = _octets(fields, 4, "mechListMIC")
    return SpnegoInit(
        mech_types=mech_types,
        req_flags=flags,
        mech_token=mech_token,
        mech_list_mic=mic,
        init2=init2,
        hint_name=hint_name,
        hint_address=hint_address,
        inner=inner_decoder(mech_token) if mech_token else None,
        framed=framed,
    )


def _resp(fields: dict[int, Tlv], inner_decoder: InnerDecoder) -> SpnegoResp:
    state_value = None
    if 0 in fields:
        state_value = der.decode_integer(fields[0], "negState")
    supported = None
    if 1 in fields:
        supported = mech_type(der.decode_oid(fields[1], "supportedMech"))
    response_token = _octets(fields, 2, "responseToken")
    return SpnegoResp(
        neg_state=None if state_value is None else _NEG_STATES.get(state_value, NegState.UNKNOWN),
        neg_state_value=state_value,
        supported_mech=supported,
        response_token=response_token,
        mech_list_mic=_octets(fields, 3, "mechListMIC"),
        inner=inner_decoder(response_token) if response_token else None,
    )
