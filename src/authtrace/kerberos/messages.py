"""Kerberos V5 messages (RFC 4120 section 5): what the KDC exchange and the
GSS-API tokens carry, decoded into frozen dataclasses.

This module owns the Kerberos message types used everywhere in authtrace:
the same `KerberosApReq` / `KerberosApRep` / `KrbError` objects come out of
port-88 traffic and out of HTTP `Negotiate`/`Kerberos` tokens.

Invariant: `decode_kerberos` never raises; anything it cannot read becomes a
`Malformed` value with a one-line reason. Cipher text (tickets,
authenticators, enc-parts, pre-authentication values) is kept but is only
rendered by `to_dict(show_secrets=True)`.

The error-code labels come from kerberos/errors.py; the message for a
KRB-ERROR is named `KrbError` (RFC 4120's KRB-ERROR) because `KerberosError`
already names an entry of that table.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from authtrace.auth.kinds import Mechanism, Message
from authtrace.auth.malformed import Malformed
from authtrace.fastinit import constructor
from authtrace.kerberos import der
from authtrace.kerberos.der import DerError, DerTruncated, TagClass, Tlv
from authtrace.kerberos.errors import KerberosError, kerberos_error
from authtrace.kerberos.fields import (
    Labelled,
    dataclass_to_dict,
    flag_names,
    label,
)
from authtrace.sharing import lazy_fields

# RFC 4120 section 7.5.7 message types (and MS-KILE / user-to-user 16, 17).
MESSAGE_TYPES: dict[int, str] = {
    10: "AS-REQ",
    11: "AS-REP",
    12: "TGS-REQ",
    13: "TGS-REP",
    14: "AP-REQ",
    15: "AP-REP",
    16: "KRB-TGT-REQ",
    17: "KRB-TGT-REP",
    20: "KRB-SAFE",
    21: "KRB-PRIV",
    22: "KRB-CRED",
    30: "KRB-ERROR",
}

# RFC 3961 section 8, RFC 3962, RFC 8009, RFC 4757, RFC 6803; the negative
# numbers are Microsoft's legacy RC4 variants as Windows lists them.
ENCRYPTION_TYPES: dict[int, str] = {
    1: "des-cbc-crc",
    2: "des-cbc-md4",
    3: "des-cbc-md5",
    5: "des3-cbc-md5",
    7: "des3-cbc-sha1",
    16: "des3-cbc-sha1-kd",
    17: "aes128-cts-hmac-sha1-96",
    18: "aes256-cts-hmac-sha1-96",
    19: "aes128-cts-hmac-sha256-128",
    20: "aes256-cts-hmac-sha384-192",
    23: "rc4-hmac",
    24: "rc4-hmac-exp",
    25: "camellia128-cts-cmac",
    26: "camellia256-cts-cmac",
    -128: "rc4-md4",
    -133: "rc4-hmac-old",
    -135: "rc4-hmac-old-exp",
}

# RFC 4120 section 7.5.2, RFC 6113 (FAST), MS-KILE / MS-SFU / MS-PAC types.
PADATA_TYPES: dict[int, str] = {
    1: "PA-TGS-REQ",
    2: "PA-ENC-TIMESTAMP",
    3: "PA-PW-SALT",
    11: "PA-ETYPE-INFO",
    16: "PA-PK-AS-REQ",
    17: "PA-PK-AS-REP",
    19: "PA-ETYPE-INFO2",
    20: "PA-SVR-REFERRAL-INFO",
    128: "PA-PAC-REQUEST",
    129: "PA-FOR-USER",
    130: "PA-FOR-X509-USER",
    133: "PA-FX-COOKIE",
    136: "PA-FX-FAST",
    137: "PA-FX-ERROR",
    138: "PA-ENCRYPTED-CHALLENGE",
    149: "PA-REQ-ENC-PA-REP",
    150: "PA-AS-FRESHNESS",
    151: "PA-SPAKE",
    165: "PA-SUPPORTED-ENCTYPES",
    166: "PA-EXTENDED-ERROR",
    167: "PA-PAC-OPTIONS",
}

# RFC 4120 section 6.2 name types (and RFC 6806 enterprise names).
NAME_TYPES: dict[int, str] = {
    0: "NT-UNKNOWN",
    1: "NT-PRINCIPAL",
    2: "NT-SRV-INST",
    3: "NT-SRV-HST",
    4: "NT-SRV-XHST",
    5: "NT-UID",
    6: "NT-X500-PRINCIPAL",
    7: "NT-SMTP-NAME",
    10: "NT-ENTERPRISE",
    -128: "NT-MS-PRINCIPAL",
}

# RFC 4120 section 5.4.1 KDCOptions (bit 14 MS-SFU cname-in-addl-tkt, bit 16
# RFC 6112 anonymous).
KDC_OPTIONS: dict[int, str] = {
    0: "reserved",
    1: "forwardable",
    2: "forwarded",
    3: "proxiable",
    4: "proxy",
    5: "allow-postdate",
    6: "postdated",
    8: "renewable",
    14: "cname-in-addl-tkt",
    15: "canonicalize",
    16: "request-anonymous",
    26: "disable-transited-check",
    27: "renewable-ok",
    28: "enc-tkt-in-skey",
    30: "renew",
    31: "validate",
}

# RFC 4120 section 5.5.1 APOptions.
AP_OPTIONS: dict[int, str] = {0: "reserved", 1: "use-session-key", 2: "mutual-required"}

# MS-KILE section 2.2.1 KERB-ERROR-DATA data-type 3: the e-data carries an
# NTSTATUS (KERB-EXT-ERROR) explaining the error in Windows terms.
KERB_ERR_TYPE_EXTENDED = 3


def enctype(value: int) -> Labelled:
    return label(ENCRYPTION_TYPES, value)


@dataclass(frozen=True, slots=True)
class PrincipalName:
    """RFC 4120 section 5.2.2::

    PrincipalName ::= SEQUENCE {
            name-type       [0] Int32,
            name-string     [1] SEQUENCE OF KerberosString
    }
    """

    name_type: Labelled
    components: tuple[str, ...]

    def __str__(self) -> str:
        # "HTTP/web01.contoso.com": components joined by "/" (section 2.1.1
        # of RFC 1964 writes service principals this way).
        return "/".join(self.components)

    def to_dict(self, show_secrets: bool = False) -> dict[str, Any]:
        return {"name_type": self.name_type.name, "name": str(self)}


@lazy_fields("cipher")
@dataclass(frozen=True, slots=True)
class EncryptedData:
    """RFC 4120 section 5.2.9::

    EncryptedData ::= SEQUENCE {
            etype   [0] Int32 -- EncryptionType --,
            kvno    [1] UInt32 OPTIONAL,
            cipher  [2] OCTET STRING -- ciphertext
    }

    cipher is a secret (tickets and authenticators can be attacked offline).
    """

    etype: Labelled
    kvno: int | None
    cipher: bytes

    def to_dict(self, show_secrets: bool = False) -> dict[str, Any]:
        return dataclass_to_dict(self, show_secrets)


@lazy_fields(inside=("enc_part",))
@dataclass(frozen=True, slots=True)
class Ticket:
    """RFC 4120 section 5.3::

    Ticket ::= [APPLICATION 1] SEQUENCE {
            tkt-vno         [0] INTEGER (5),
            realm           [1] Realm,
            sname           [2] PrincipalName,
            enc-part        [3] EncryptedData
    }
    """

    tkt_vno: int
    realm: str
    sname: PrincipalName
    enc_part: EncryptedData

    def to_dict(self, show_secrets: bool = False) -> dict[str, Any]:
        return dataclass_to_dict(self, show_secrets)


@dataclass(frozen=True, slots=True)
class PaData:
    """RFC 4120 section 5.2.7::

    PA-DATA ::= SEQUENCE {
            padata-type     [1] Int32,
            padata-value    [2] OCTET STRING
    }

    value is treated as a secret: PA-ENC-TIMESTAMP is crackable and
    PA-TGS-REQ carries an authenticator.
    """

    type: Labelled
    value: bytes

    def to_dict(self, show_secrets: bool = False) -> dict[str, Any]:
        return dataclass_to_dict(self, show_secrets)


class _KerberosBase:
    """`.mechanism` and `.to_dict()` shared by every message class."""

    __slots__ = ()

    @property
    def mechanism(self) -> Mechanism:
        return Mechanism.KERBEROS

    def to_dict(self, show_secrets: bool = False) -> dict[str, Any]:
        return dataclass_to_dict(self, show_secrets)


@lazy_fields("raw", inside=("ticket", "authenticator"))
@dataclass(frozen=True, slots=True)
class KerberosApReq(_KerberosBase):
    """RFC 4120 section 5.5.1::

    AP-REQ ::= [APPLICATION 14] SEQUENCE {
            pvno            [0] INTEGER (5),
            msg-type        [1] INTEGER (14),
            ap-options      [2] APOptions,
            ticket          [3] Ticket,
            authenticator   [4] EncryptedData -- Authenticator
    }
    """

    ap_options: int
    ap_option_names: tuple[str, ...]
    ticket: Ticket
    authenticator: EncryptedData
    raw: bytes = b""

    @property
    def message(self) -> Message:
        return Message.AP_REQ

    @property
    def mutual_required(self) -> bool:
        return "mutual-required" in self.ap_option_names

    @property
    def spn(self) -> str:
        return str(self.ticket.sname)


@lazy_fields("raw", inside=("enc_part",))
@dataclass(frozen=True, slots=True)
class KerberosApRep(_KerberosBase):
    """RFC 4120 section 5.5.2::

    AP-REP ::= [APPLICATION 15] SEQUENCE {
            pvno            [0] INTEGER (5),
            msg-type        [1] INTEGER (15),
            enc-part        [2] EncryptedData -- EncAPRepPart
    }
    """

    enc_part: EncryptedData
    raw: bytes = b""

    @property
    def message(self) -> Message:
        return Message.AP_REP


@dataclass(frozen=True, slots=True)
class KdcRequest(_KerberosBase):
    """AS-REQ / TGS-REQ, RFC 4120 section 5.4.1::

    AS-REQ ::= [APPLICATION 10] KDC-REQ
    TGS-REQ ::= [APPLICATION 12] KDC-REQ
    KDC-REQ ::= SEQUENCE {
            pvno            [1] INTEGER (5) ,
            msg-type        [2] INTEGER (10 -- AS -- | 12 -- TGS --),
            padata          [3] SEQUENCE OF PA-DATA OPTIONAL,
            req-body        [4] KDC-REQ-BODY
    }
    KDC-REQ-BODY ::= SEQUENCE {
            kdc-options             [0] KDCOptions,
            cname                   [1] PrincipalName OPTIONAL,
            realm                   [2] Realm,
            sname                   [3] PrincipalName OPTIONAL,
            from                    [4] KerberosTime OPTIONAL,
            till                    [5] KerberosTime,
            rtime                   [6] KerberosTime OPTIONAL,
            nonce                   [7] UInt32,
            etype                   [8] SEQUENCE OF Int32,
            addresses               [9] HostAddresses OPTIONAL,
            enc-authorization-data  [10] EncryptedData OPTIONAL,
            additional-tickets      [11] SEQUENCE OF Ticket OPTIONAL
    }

    A TGS-REQ names no client in clear: the client is inside the encrypted
    authenticator of `tgs_ap_req` (from PA-TGS-REQ); cname is then None.
    """

    msg_type: Labelled
    padata: tuple[PaData, ...]
    kdc_options: int
    kdc_option_names: tuple[str, ...]
    cname: PrincipalName | None
    realm: str
    sname: PrincipalName | None
    from_time: str | None
    till: str | None
    rtime: str | None
    nonce: int | None
    etypes: tuple[Labelled, ...]
    additional_tickets: tuple[Ticket, ...] = ()
    tgs_ap_req: KerberosApReq | None = None
    raw: bytes = b""

    @property
    def message(self) -> Message:
        return Message.AS_REQ if self.msg_type.value == 10 else Message.TGS_REQ

    @property
    def spn(self) -> str | None:
        return str(self.sname) if self.sname is not None else None

    @property
    def padata_types(self) -> tuple[Labelled, ...]:
        return tuple(item.type for item in self.padata)


@dataclass(frozen=True, slots=True)
class KdcReply(_KerberosBase):
    """AS-REP / TGS-REP, RFC 4120 section 5.4.2::

    AS-REP ::= [APPLICATION 11] KDC-REP
    TGS-REP ::= [APPLICATION 13] KDC-REP
    KDC-REP ::= SEQUENCE {
            pvno            [0] INTEGER (5),
            msg-type        [1] INTEGER (11 -- AS -- | 13 -- TGS --),
            padata          [2] SEQUENCE OF PA-DATA OPTIONAL,
            crealm          [3] Realm,
            cname           [4] PrincipalName,
            ticket          [5] Ticket,
            enc-part        [6] EncryptedData
    }
    """

    msg_type: Labelled
    padata: tuple[PaData, ...]
    crealm: str
    cname: PrincipalName
    ticket: Ticket
    enc_part: EncryptedData
    raw: bytes = b""

    @property
    def message(self) -> Message:
        return Message.AS_REP if self.msg_type.value == 11 else Message.TGS_REP


@lazy_fields("e_data", "raw")
@dataclass(frozen=True, slots=True)
class KrbError(_KerberosBase):
    """KRB-ERROR, RFC 4120 section 5.9.1::

    KRB-ERROR ::= [APPLICATION 30] SEQUENCE {
            pvno            [0] INTEGER (5),
            msg-type        [1] INTEGER (30),
            ctime           [2] KerberosTime OPTIONAL,
            cusec           [3] Microseconds OPTIONAL,
            stime           [4] KerberosTime,
            susec           [5] Microseconds,
            error-code      [6] Int32,
            crealm          [7] Realm OPTIONAL,
            cname           [8] PrincipalName OPTIONAL,
            realm           [9] Realm -- service realm --,
            sname           [10] PrincipalName -- service name --,
            e-text          [11] KerberosString OPTIONAL,
            e-data          [12] OCTET STRING OPTIONAL
    }

    e_data_types: the padata types when e-data is METHOD-DATA (section
    5.9.1), or the data-type of a Windows KERB-ERROR-DATA (MS-KILE 2.2.1);
    extended_status: the NTSTATUS of a KERB-EXT-ERROR, when present.
    """

    error_code: int
    error: KerberosError
    ctime: str | None
    cusec: int | None
    stime: str | None
    susec: int | None
    crealm: str | None
    cname: PrincipalName | None
    realm: str | None
    sname: PrincipalName | None
    e_text: str | None
    e_data: bytes | None
    e_data_types: tuple[Labelled, ...] = ()
    extended_status: int | None = None
    raw: bytes = b""

    @property
    def message(self) -> Message:
        return Message.KRB_ERROR

    @property
    def error_name(self) -> str:
        return self.error.name


@lazy_fields("raw")
@dataclass(frozen=True, slots=True)
class KerberosOther(_KerberosBase):
    """A Kerberos message recognised by type but not decoded further
    (KRB-SAFE 20, KRB-PRIV 21, KRB-CRED 22, user-to-user TGT request and
    reply 16/17)."""

    msg_type: Labelled
    raw: bytes = b""

    @property
    def message(self) -> Message:
        return Message.UNKNOWN


KerberosMessage = KerberosApReq | KerberosApRep | KdcRequest | KdcReply | KrbError | KerberosOther

# Decoding a KDC-REQ builds some twenty of these frozen objects; these build the
# very same objects faster (authtrace/fastinit.py: tests/test_fastinit.py checks
# the equivalence for any slots dataclass).
_make_principal = constructor(PrincipalName)
_make_encrypted = constructor(EncryptedData)
_make_ticket = constructor(Ticket)
_make_padata = constructor(PaData)
_make_ap_req = constructor(KerberosApReq)
_make_kdc_request = constructor(KdcRequest)
_make_kdc_reply = constructor(KdcReply)


# --- decoding -------------------------------------------------------------


def decode_kerberos(data: bytes) -> KerberosMessage | Malformed:
    """Decode one Kerberos message (RFC 4120 section 5); never raises."""
    try:
        return _decode(data)
    except DerError as exc:
        truncated = isinstance(exc, DerTruncated)
        return Malformed(f"Kerberos: {exc}", raw=data, truncated=truncated)
    except (ValueError, IndexError, KeyError, TypeError, RecursionError) as exc:
        return Malformed(f"Kerberos: {type(exc).__name__}: {exc}", raw=data)


def _decode(data: bytes) -> KerberosMessage:
    if not data:
        raise DerError("empty message")
    outer = der.read_tlv(data)
    if outer.end != len(data):
        raise DerError(f"{len(data) - outer.end} trailing bytes after the message")
    if outer.tag_class is TagClass.UNIVERSAL and outer.number == der.SEQUENCE:
        # MS-KILE 2.2.4: the user-to-user KERB-TGT-REQUEST / REPLY are plain
        # SEQUENCEs { pvno [0], msg-type [1], ... } with no APPLICATION tag.
        fields = der.explicit_fields(outer, "KRB-TGT message")
        msg_type = _int(fields, 1, "msg-type")
        if _int(fields, 0, "pvno") != 5 or msg_type not in (16, 17):
            raise DerError("SEQUENCE is not a Kerberos user-to-user message")
        return KerberosOther(label(MESSAGE_TYPES, msg_type), raw=data)
    if outer.tag_class is not TagClass.APPLICATION or not outer.constructed:
        raise DerError(f"not a Kerberos message (identifier 0x{data[0]:02x})")
    number = outer.number
    inner = der.read_single(outer.value)
    if number in (10, 12):
        return _kdc_request(number, inner, data)
    if number in (11, 13):
        return _kdc_reply(number, inner, data)
    if number == 14:
        return _ap_req(inner, data)
    if number == 15:
        return _ap_rep(inner, data)
    if number == 30:
        return _krb_error(inner, data)
    if number in (20, 21, 22):
        return KerberosOther(label(MESSAGE_TYPES, number), raw=data)
    raise DerError(f"APPLICATION {number} is not a Kerberos message type")


def _field(fields: dict[int, Tlv], number: int, what: str) -> Tlv:
    tlv = fields.get(number)
    if tlv is None:
        raise DerError(f"{what} [{number}] missing")
    return tlv


def _int(fields: dict[int, Tlv], number: int, what: str) -> int:
    return der.decode_integer(_field(fields, number, what), what)


def _opt_int(fields: dict[int, Tlv], number: int, what: str) -> int | None:
    tlv = fields.get(number)
    return None if tlv is None else der.decode_integer(tlv, what)


def _opt_str(fields: dict[int, Tlv], number: int, what: str) -> str | None:
    tlv = fields.get(number)
    return None if tlv is None else der.decode_string(tlv, what)


def _opt_time(fields: dict[int, Tlv], number: int, what: str) -> str | None:
    tlv = fields.get(number)
    return None if tlv is None else der.decode_time(tlv, what)


def _check_header(fields: dict[int, Tlv], pvno_at: int, expected: int, what: str) -> None:
    pvno = _int(fields, pvno_at, "pvno")
    if pvno != 5:
        raise DerError(f"{what}: pvno {pvno}, expected 5")
    msg_type = _int(fields, pvno_at + 1, "msg-type")
    if msg_type != expected:
        raise DerError(f"{what}: msg-type {msg_type} inside APPLICATION {expected}")


# Principal names repeat in every message of a capture (krbtgt/REALM, the
# HTTP/host services, each user in its requests, replies and tickets): each
# distinct encoding is decoded once, and one copy is kept. Keyed by the
# SEQUENCE's content (its identifier is checked first); only successes are
# kept, so a malformed name is reported every time, worded for its field.
# Bounded: starts over past _MAX_PRINCIPALS.
_MAX_PRINCIPALS = 4096
_MAX_PRINCIPAL_BYTES = 512
_PRINCIPALS: dict[bytes, PrincipalName] = {}


def _principal(tlv: Tlv, what: str) -> PrincipalName:
    sequence = tlv.tag_class is TagClass.UNIVERSAL and tlv.number == der.SEQUENCE
    if sequence and tlv.constructed:
        known = _PRINCIPALS.get(tlv.value)
        if known is not None:
            return known
    principal = _decode_principal(tlv, what)
    if len(tlv.value) <= _MAX_PRINCIPAL_BYTES:
        if len(_PRINCIPALS) >= _MAX_PRINCIPALS:
            _PRINCIPALS.clear()
        _PRINCIPALS[tlv.value] = principal
    return principal


def _decode_principal(tlv: Tlv, what: str) -> PrincipalName:
    """RFC 4120 section 5.2.2 PrincipalName, from its SEQUENCE."""
    fields = der.explicit_fields(tlv, what)
    name_type = _int(fields, 0, f"{what} name-type")
    parts = der.sequence_of(_field(fields, 1, f"{what} name-string"), what)
    return _make_principal(
        label(NAME_TYPES, name_type),
        tuple(der.decode_string(part, what) for part in parts),
    )


def _opt_principal(fields: dict[int, Tlv], number: int, what: str) -> PrincipalName | None:
    tlv = fields.get(number)
    return None if tlv is None else _principal(tlv, what)


def _encrypted(tlv: Tlv, what: str) -> EncryptedData:
    fields = der.explicit_fields(tlv, what)
    return _make_encrypted(
        etype=enctype(_int(fields, 0, f"{what} etype")),
        kvno=_opt_int(fields, 1, f"{what} kvno"),
        cipher=der.decode_octets(_field(fields, 2, f"{what} cipher"), what),
    )


def _ticket(tlv: Tlv) -> Ticket:
    der.expect(tlv, TagClass.APPLICATION, 1, "Ticket")
    return _ticket_content(bytes(tlv.value))


# A client shows the same ticket again and again: its service ticket in every
# AP-REQ to that service (one per HTTP connection) after the TGS-REP that
# carried it, its TGT in every TGS-REQ. A Ticket is immutable, so each distinct
# one is decoded once; the bound keeps a capture of distinct tickets from
# growing the cache (a ticket is about 1 KB). Failures raise and are not kept
# (lru_cache keeps only results), so every malformed ticket is reported.
@functools.lru_cache(maxsize=512)
def _ticket_content(content: bytes) -> Ticket:
    """The Ticket whose [APPLICATION 1] content is `content` (RFC 4120 section 5.3)."""
    fields = der.explicit_fields(der.read_single(content), "Ticket")
    return _make_ticket(
        tkt_vno=_int(fields, 0, "tkt-vno"),
        realm=der.decode_string(_field(fields, 1, "ticket realm"), "realm"),
        sname=_principal(_field(fields, 2, "ticket sname"), "ticket sname"),
        enc_part=_encrypted(_field(fields, 3, "ticket enc-part"), "ticket enc-part"),
    )


def _padata_list(tlv: Tlv | None) -> tuple[PaData, ...]:
    if tlv is None:
        return ()
    items = []
    for element in der.sequence_of(tlv, "padata"):
        fields = der.explicit_fields(element, "PA-DATA")
        items.append(
            _make_padata(
                type=label(PADATA_TYPES, _int(fields, 1, "padata-type")),
                value=der.decode_octets(_field(fields, 2, "padata-value"), "padata-value"),
            )
        )
    return tuple(items)


def _kdc_request(number: int, inner: Tlv, raw: bytes) -> KdcRequest:
    what = MESSAGE_TYPES[number]
    fields = der.explicit_fields(inner, what)
    _check_header(fields, 1, number, what)
    padata = _padata_list(fields.get(3))
    body = der.explicit_fields(_field(fields, 4, "req-body"), "KDC-REQ-BODY")
    options, _bits = der.decode_bit_string(_field(body, 0, "kdc-options"), "kdc-options")
    etype_list = der.sequence_of(_field(body, 8, "etype"), "etype")
    tickets: tuple[Ticket, ...] = ()
    if 11 in body:
        tickets = tuple(_ticket(t) for t in der.sequence_of(body[11], "additional-tickets"))
    tgs_ap_req = None
    for item in padata:
        # RFC 4120 section 5.4.1: PA-TGS-REQ holds the AP-REQ with the TGT.
        if item.type.value == 1:
            decoded = decode_kerberos(item.value)
            if isinstance(decoded, KerberosApReq):
                tgs_ap_req = decoded
            break
    return _make_kdc_request(
        msg_type=label(MESSAGE_TYPES, number),
        padata=padata,
        kdc_options=options,
        kdc_option_names=flag_names(KDC_OPTIONS, options),
        cname=_opt_principal(body, 1, "cname"),
        realm=der.decode_string(_field(body, 2, "realm"), "realm"),
        sname=_opt_principal(body, 3, "sname"),
        from_time=_opt_time(body, 4, "from"),
        till=_opt_time(body, 5, "till"),
        rtime=_opt_time(body, 6, "rtime"),
        nonce=_opt_int(body, 7, "nonce"),
        etypes=tuple(enctype(der.decode_integer(e, "etype")) for e in etype_list),
        additional_tickets=tickets,
        tgs_ap_req=tgs_ap_req,
        raw=raw,
    )


def _kdc_reply(number: int, inner: Tlv, raw: bytes) -> KdcReply:
    what = MESSAGE_TYPES[number]
    fields = der.explicit_fields(inner, what)
    _check_header(fields, 0, number, what)
    return _make_kdc_reply(
        msg_type=label(MESSAGE_TYPES, number),
        padata=_padata_list(fields.get(2)),
        crealm=der.decode_string(_field(fields, 3, "crealm"), "crealm"),
        cname=_principal(_field(fields, 4, "cname"), "cname"),
        ticket=_ticket(_field(fields, 5, "ticket")),
        enc_part=_encrypted(_field(fields, 6, "enc-part"), "enc-part"),
        raw=raw,
    )


def _ap_req(inner: Tlv, raw: bytes) -> KerberosApReq:
    fields = der.explicit_fields(inner, "AP-REQ")
    _check_header(fields, 0, 14, "AP-REQ")
    options, _bits = der.decode_bit_string(_field(fields, 2, "ap-options"), "ap-options")
    return _make_ap_req(
        ap_options=options,
        ap_option_names=flag_names(AP_OPTIONS, options),
        ticket=_ticket(_field(fields, 3, "ticket")),
        authenticator=_encrypted(_field(fields, 4, "authenticator"), "authenticator"),
        raw=raw,
    )


def _ap_rep(inner: Tlv, raw: bytes) -> KerberosApRep:
    fields = der.explicit_fields(inner, "AP-REP")
    _check_header(fields, 0, 15, "AP-REP")
    return KerberosApRep(enc_part=_encrypted(_field(fields, 2, "enc-part"), "enc-part"), raw=raw)


def _krb_error(inner: Tlv, raw: bytes) -> KrbError:
    fields = der.explicit_fields(inner, "KRB-ERROR")
    _check_header(fields, 0, 30, "KRB-ERROR")
    code = _int(fields, 6, "error-code")
    e_data_tlv = fields.get(12)
    e_data = None if e_data_tlv is None else der.decode_octets(e_data_tlv, "e-data")
    e_data_types, extended = _e_data_details(e_data)
    return KrbError(
        error_code=code,
        error=kerberos_error(code),
        ctime=_opt_time(fields, 2, "ctime"),
        cusec=_opt_int(fields, 3, "cusec"),
        stime=_opt_time(fields, 4, "stime"),
        susec=_opt_int(fields, 5, "susec"),
        crealm=_opt_str(fields, 7, "crealm"),
        cname=_opt_principal(fields, 8, "cname"),
        realm=_opt_str(fields, 9, "realm"),
        sname=_opt_principal(fields, 10, "sname"),
        e_text=_opt_str(fields, 11, "e-text"),
        e_data=e_data,
        e_data_types=e_data_types,
        extended_status=extended,
        raw=raw,
    )


def _e_data_details(e_data: bytes | None) -> tuple[tuple[Labelled, ...], int | None]:
    """Types inside e-data, best effort: an unreadable e-data is not an error
    of the KRB-ERROR itself (its code and names are still good)."""
    if not e_data:
        return (), None
    try:
        tlv = der.read_single(e_data)
        items = der.sequence_of(tlv, "e-data")
        if items and items[0].tag_class is TagClass.CONTEXT:
            # MS-KILE 2.2.1 KERB-ERROR-DATA ::= SEQUENCE {
            #     data-type [1] INTEGER, data-value [2] OCTET STRING OPTIONAL }
            fields = der.explicit_fields(tlv, "KERB-ERROR-DATA")
            data_type = _int(fields, 1, "data-type")
            extended = None
            if data_type == KERB_ERR_TYPE_EXTENDED and 2 in fields:
                value = der.decode_octets(fields[2], "data-value")
                if len(value) >= 4:
                    # KERB-EXT-ERROR: status (NTSTATUS, little-endian) first.
                    extended = int.from_bytes(value[:4], "little")
            return (Labelled(data_type, f"KERB-ERR-TYPE ({data_type})"),), extended
        # RFC 4120 section 5.9.1: METHOD-DATA ::= SEQUENCE OF PA-DATA.
        return tuple(item.type for item in _padata_list(tlv)), None
    except DerError:
        return (), None
