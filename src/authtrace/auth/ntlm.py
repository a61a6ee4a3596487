"""NTLM messages (MS-NLMP section 2.2): NEGOTIATE, CHALLENGE, AUTHENTICATE.

This module owns the NTLM wire format: the flag table, AV pairs, the three
messages and the NTLMv2 response inside AUTHENTICATE. Invariant: `decode_ntlm`
never raises; every offset/length field is checked against the token, the AV
pair list is bounded, and text that does not decode is replaced, not guessed.
"""

from __future__ import annotations

import codecs
import datetime
import enum
from dataclasses import dataclass

from authtrace.auth.kinds import Mechanism, Message
from authtrace.auth.malformed import Malformed
from authtrace.buffer import Buffer, BufferReadError, Fields
from authtrace.sharing import SharedTable


class NegotiateFlags(enum.IntFlag):
    """NTLM negotiate flags, MS-NLMP section 2.2.2.5 (names as the spec writes them)."""

    NTLMSSP_NEGOTIATE_UNICODE = 0x00000001
    NTLM_NEGOTIATE_OEM = 0x00000002
    NTLMSSP_REQUEST_TARGET = 0x00000004
    NTLMSSP_NEGOTIATE_SIGN = 0x00000010
    NTLMSSP_NEGOTIATE_SEAL = 0x00000020
    NTLMSSP_NEGOTIATE_DATAGRAM = 0x00000040
    NTLMSSP_NEGOTIATE_LM_KEY = 0x00000080
    NTLMSSP_NEGOTIATE_NTLM = 0x00000200
    NTLMSSP_ANONYMOUS = 0x00000800
    NTLMSSP_NEGOTIATE_OEM_DOMAIN_SUPPLIED = 0x00001000
    NTLMSSP_NEGOTIATE_OEM_WORKSTATION_SUPPLIED = 0x00002000
    NTLMSSP_NEGOTIATE_LOCAL_CALL = 0x00004000
    NTLMSSP_NEGOTIATE_ALWAYS_SIGN = 0x00008000
    NTLMSSP_TARGET_TYPE_DOMAIN = 0x00010000
    NTLMSSP_TARGET_TYPE_SERVER = 0x00020000
    NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY = 0x00080000
    NTLMSSP_NEGOTIATE_IDENTIFY = 0x00100000
    NTLMSSP_REQUEST_NON_NT_SESSION_KEY = 0x00400000
    NTLMSSP_NEGOTIATE_TARGET_INFO = 0x00800000
    NTLMSSP_NEGOTIATE_VERSION = 0x02000000
    NTLMSSP_NEGOTIATE_128 = 0x20000000
    NTLMSSP_NEGOTIATE_KEY_EXCH = 0x40000000
    NTLMSSP_NEGOTIATE_56 = 0x80000000


# --- decoding (everything below is additive to the flag table above) -------

NTLMSSP_SIGNATURE = b"NTLMSSP\x00"

# Caps against hostile tokens: real target info holds about ten AV pairs.
MAX_AV_PAIRS = 64
MAX_NTLM_TOKEN = 64 * 1024

# MS-NLMP 2.2.2.1 MsvAvFlags bits.
AV_FLAG_ACCOUNT_CONSTRAINED = 0x1
AV_FLAG_MIC_PRESENT = 0x2
AV_FLAG_UNTRUSTED_SPN_SOURCE = 0x4

_KNOWN_FLAG_BITS = 0
for _flag in NegotiateFlags:
    _KNOWN_FLAG_BITS |= int(_flag)

# The flags the decoders test, as plain ints: `flags & NegotiateFlags.X`
# builds a new IntFlag member on every test, several times per message.
_UNICODE = int(NegotiateFlags.NTLMSSP_NEGOTIATE_UNICODE)
_ANONYMOUS = int(NegotiateFlags.NTLMSSP_ANONYMOUS)
_VERSION_FLAG = int(NegotiateFlags.NTLMSSP_NEGOTIATE_VERSION)


def _bit_name(value: int) -> str:
    if value & _KNOWN_FLAG_BITS:
        return NegotiateFlags(value).name or f"UNKNOWN (0x{value:08x})"
    return f"UNKNOWN (0x{value:08x})"


# (bit value, name) of the 32 flag bits, low bit first, worked out once: the
# JSON of every NTLM message lists its flags by name.
_BIT_NAMES = tuple((1 << bit, _bit_name(1 << bit)) for bit in range(32))


def flag_names(flags: int) -> tuple[str, ...]:
    """Names of the set flag bits, low bit first; unknown bits as ``UNKNOWN (0x...)``."""
    return tuple(name for value, name in _BIT_NAMES if flags & value)


class AvId(enum.IntEnum):
    """AV_PAIR identifiers, MS-NLMP section 2.2.2.1."""

    MsvAvEOL = 0x0000
    MsvAvNbComputerName = 0x0001
    MsvAvNbDomainName = 0x0002
    MsvAvDnsComputerName = 0x0003
    MsvAvDnsDomainName = 0x0004
    MsvAvDnsTreeName = 0x0005
    MsvAvFlags = 0x0006
    MsvAvTimestamp = 0x0007
    MsvAvSingleHost = 0x0008
    MsvAvTargetName = 0x0009
    MsvAvChannelBindings = 0x000A


def av_id_name(av_id: int) -> str:
    try:
        return AvId(av_id).name
    except ValueError:
        return f"UNKNOWN ({av_id})"


class NtlmResponseKind(enum.Enum):
    """What the NT response of an AUTHENTICATE message is (MS-NLMP 3.3.1, 3.3.2)."""

    NTLMV1 = "NTLMv1"  # 24-byte NT response (with or without extended session security)
    NTLMV2 = "NTLMv2"  # NTProofStr + NTLMv2_CLIENT_CHALLENGE
    ANONYMOUS = "anonymous"  # MS-NLMP 3.2.5.1.2: empty user, empty NT, empty or Z(1) LM
    UNKNOWN = "unknown"  # an NT response of any other length


@dataclass(frozen=True, slots=True)
class NtlmVersion:
    """VERSION structure, MS-NLMP section 2.2.2.10 (debugging information only)."""

    major: int
    minor: int
    build: int
    revision: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.build} (NTLM revision {self.revision})"


@dataclass(frozen=True, slots=True)
class AvPair:
    """One AV_PAIR, MS-NLMP section 2.2.2.1: the id number and its raw value."""

    av_id: int
    value: bytes

    @property
    def name(self) -> str:
        return av_id_name(self.av_id)


@dataclass(frozen=True, slots=True)
class TargetInfo:
    """An AV_PAIR list (CHALLENGE TargetInfo or NTLMv2 client challenge AvPairs).

    pairs: every pair in wire order (the raw truth); the named fields are the
    decoded values of the pairs of MS-NLMP section 2.2.2.1. terminated: an
    MsvAvEOL was seen; problem: why reading stopped early, else None.
    """

    pairs: tuple[AvPair, ...] = ()
    nb_computer_name: str | None = None
    nb_domain_name: str | None = None
    dns_computer_name: str | None = None
    dns_domain_name: str | None = None
    dns_tree_name: str | None = None
    av_flags: int | None = None
    timestamp: datetime.datetime | None = None
    single_host: bytes | None = None
    target_name: str | None = None
    channel_bindings: bytes | None = None
    terminated: bool = False
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class NtlmV2Response:
    """NTLMv2_RESPONSE, MS-NLMP section 2.2.2.8, with its NTLMv2_CLIENT_CHALLENGE
    (section 2.2.2.7).

    ntproofstr: the HMAC proving the password (a secret); timestamp: the
    client's FILETIME; av_pairs: the client's copy of the target info plus
    MsvAvFlags, MsvAvChannelBindings, MsvAvTargetName it adds.
    """

    ntproofstr: bytes
    resp_type: int
    hi_resp_type: int
    timestamp: datetime.datetime | None
    client_challenge: bytes
    av_pairs: TargetInfo

    @property
    def channel_bindings_present(self) -> bool:
        return self.av_pairs.channel_bindings is not None

    @property
    def channel_bindings_all_zero(self) -> bool:
        """True when the pair is there but zero: the client had no TLS binding to give."""
        cb = self.av_pairs.channel_bindings
        return cb is not None and not any(cb)

    @property
    def target_name(self) -> str | None:
        return self.av_pairs.target_name


@dataclass(frozen=True, slots=True)
class NtlmNegotiate:
    """NEGOTIATE_MESSAGE (type 1), MS-NLMP section 2.2.1.1.

    domain / workstation: OEM strings the client volunteered (None when the
    field is absent or empty); version: when NTLMSSP_NEGOTIATE_VERSION is set.
    """

    flags: int
    domain: str | None
    workstation: str | None
    version: NtlmVersion | None

    @property
    def flag_names(self) -> tuple[str, ...]:
        return flag_names(self.flags)

    @property
    def mechanism(self) -> Mechanism:
        return Mechanism.NTLM

    @property
    def message(self) -> Message:
        return Message.NTLM_NEGOTIATE


@dataclass(frozen=True, slots=True)
class NtlmChallenge:
    """CHALLENGE_MESSAGE (type 2), MS-NLMP section 2.2.1.2.

    target_name: the server's domain or name (Unicode or OEM per flags);
    target_info: AV pairs (section 2.2.2.1), None when the message has none.
    """

    flags: int
    server_challenge: bytes
    target_name: str | None
    target_info: TargetInfo | None
    version: NtlmVersion | None

    @property
    def flag_names(self) -> tuple[str, ...]:
        return flag_names(self.flags)

    @property
    def mechanism(self) -> Mechanism:
        return Mechanism.NTLM

    @property
    def message(self) -> Message:
        return Message.NTLM_CHALLENGE


@dataclass(frozen=True, slots=True)
class NtlmAuthenticate:
    """AUTHENTICATE_MESSAGE (type 3), MS-NLMP section 2.2.1.3.

    lm_response / nt_response / encrypted_random_session_key / mic are
    secrets: kept for analysis, redacted when rendered. mic is the 16 bytes at
    offset 72 when the payload leaves room for them (None otherwise);
    mic_present says whether the client announced a MIC (MsvAvFlags 0x2).
    ntlmv2: the parsed NTLMv2 response when response_kind is NTLMV2.
    local_call: NTLMSSP_NEGOTIATE_LOCAL_CALL, client and server on one host.
    """

    flags: int
    user: str
    domain: str
    workstation: str
    lm_response: bytes
    nt_response: bytes
    encrypted_random_session_key: bytes
    version: NtlmVersion | None
    mic: bytes | None
    response_kind: NtlmResponseKind
    ntlmv2: NtlmV2Response | None
    anonymous: bool
    mic_present: bool
    problem: str | None = None

    @property
    def flag_names(self) -> tuple[str, ...]:
        return flag_names(self.flags)

    @property
    def session_key_present(self) -> bool:
        return bool(self.encrypted_random_session_key)

    @property
    def local_call(self) -> bool:
        return bool(self.flags & NegotiateFlags.NTLMSSP_NEGOTIATE_LOCAL_CALL)

    @property
    def extended_session_security(self) -> bool:
        return bool(self.flags & NegotiateFlags.NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY)

    @property
    def mechanism(self) -> Mechanism:
        return Mechanism.NTLM

    @property
    def message(self) -> Message:
        return Message.NTLM_AUTHENTICATE


NtlmMessage = NtlmNegotiate | NtlmChallenge | NtlmAuthenticate

_utf_16_le_decode = codecs.utf_16_le_decode

_FILETIME_EPOCH = datetime.datetime(1601, 1, 1, tzinfo=datetime.UTC)


def filetime_to_datetime(value: int) -> datetime.datetime | None:
    """A Windows FILETIME (100 ns since 1601-01-01 UTC), None when out of range."""
    if value <= 0:
        return None
    try:
        return _FILETIME_EPOCH + datetime.timedelta(microseconds=value // 10)
    except OverflowError:
        return None


def _unicode(data: bytes) -> str:
    # Odd lengths or lone surrogates happen in hostile tokens; never raise.
    # The codec function itself, final=True, is what data.decode("utf-16-le",
    # errors="replace") ends up calling after a codec lookup that costs three
    # times the decoding of a name (and a message holds up to ten names).
    return _utf_16_le_decode(data, "replace", True)[0]


def _oem(data: bytes) -> str:
    # The OEM code page is unknown from the wire; latin-1 keeps every byte.
    return data.decode("latin-1")


def _text(data: bytes, flags: int) -> str:
    # MS-NLMP 2.2.2.5 flag A: Unicode when negotiated, else OEM.
    if flags & _UNICODE:
        return _name(_unicode(data))
    return _name(_oem(data))


# What a run keeps of every NTLM message repeats across connections (the same
# users, domains, servers and versions): one copy of each (sharing.py). Long
# values are not shared: they are unique anyway.
_SHARED_CHARS = 256
_NAMES: SharedTable[str] = SharedTable()
# AV pairs by their wire form (id, value), with the TargetInfo field each one
# names and that field's decoded value (None, None for a pair that names none):
# a pair seen before (the server's names, its flags) costs one look-up keyed by
# an int and bytes, where sharing the AvPair itself cost its dataclass __hash__
# and __eq__ and the name its UTF-16 decoding every time. Time stamps are unique
# to each message and never kept. Bounded: starts over past _SHARED_PAIRS.
_SHARED_PAIRS = 4096
_PAIRS: dict[tuple[int, bytes], tuple[AvPair, str | None, object]] = {}
_VERSIONS: SharedTable[NtlmVersion] = SharedTable(256)


def _name(text: str) -> str:
    return _NAMES.share(text) if len(text) <= _SHARED_CHARS else text


# Fixed parts of the messages, each read with one unpack (buffer.Fields);
# a token cut inside one is reported at the field where it ends, exactly as
# reading field by field would. "HHI" is a Len/MaxLen/BufferOffset triple
# (MS-NLMP 2.2.1.1); MaxLen is ignored.
_NEGOTIATE_FLAGS = Fields("<I")  # at 12: NegotiateFlags
_NEGOTIATE_FIELDS = Fields("<HHIHHI")  # at 16: DomainNameFields, WorkstationFields
_CHALLENGE_FIXED = Fields("<HHII8s")  # at 12: TargetNameFields, NegotiateFlags, ServerChallenge
_TRIPLE = Fields("<HHI")  # one *Fields triple (TargetInfoFields at 40)
# At 12: LmChallengeResponse, NtChallengeResponse, DomainName, UserName,
# Workstation fields; then at 52 EncryptedRandomSessionKeyFields and flags.
_AUTHENTICATE_FIELDS = Fields("<HHIHHIHHIHHIHHI")
_AUTHENTICATE_KEY_AND_FLAGS = Fields("<HHII")
_VERSION = Fields("<BBH3sB")  # MS-NLMP 2.2.2.10
# MS-NLMP 2.2.2.8 / 2.2.2.7: NTProofStr, RespType, HiRespType, Reserved1 (2),
# Reserved2 (4), TimeStamp, ChallengeFromClient, Reserved3 (4).
_NTLMV2_FIXED = Fields("<16sBB6sQ8s4s")
_AV_PAIR_HEADER = Fields("<HH")  # AvId, AvLen


def _payload(data: bytes, length: int, offset: int) -> bytes:
    if length == 0:
        return b""
    if offset + length > len(data):
        raise _Truncated(f"field at offset {offset} length {length} beyond {len(data)} bytes")
    return data[offset : offset + length]


class _Truncated(BufferReadError):
    """A payload field points past the end of the token."""


def _version(data: bytes, offset: int) -> NtlmVersion:
    major, minor, build, _reserved, revision = _VERSION.unpack_from(data, offset)
    return _VERSIONS.share(NtlmVersion(major, minor, build, revision))


def decode_av_pairs(data: bytes) -> TargetInfo:
    """Read an AV_PAIR list (MS-NLMP 2.2.2.1). Never raises; bounded by MAX_AV_PAIRS.

    Unknown ids are kept as pairs; a list that ends without MsvAvEOL or with a
    pair running past the end keeps what was read and says why in ``problem``.
    """
    pairs: list[AvPair] = []
    named: dict[str, object] = {}
    terminated = False
    problem: str | None = None
    size = len(data)
    position = 0
    while True:
        if position >= size:
            if pairs:
                problem = "AV pair list has no MsvAvEOL"
            break
        if len(pairs) >= MAX_AV_PAIRS:
            problem = f"more than {MAX_AV_PAIRS} AV pairs"
            break
        try:
            av_id, length = _AV_PAIR_HEADER.unpack_from(data, position)
            start = position + 4
            position = start + length
            if position > size:
                # Raises: the value runs past the end, worded as every read is.
                Buffer(data, start).pull_bytes(length)
        except BufferReadError as error:
            problem = f"AV pair truncated: {error}"
            break
        value = data[start:position]
        if av_id == _MSV_AV_EOL:
            terminated = True
            break
        known = _PAIRS.get((av_id, value))
        if known is None:
            known = _decode_pair(av_id, value)
        pair, field, decoded = known
        pairs.append(pair)
        # The first occurrence wins: MS-NLMP 2.2.2.1 allows each id once; a
        # duplicate is kept in pairs but does not override the decoded field.
        if field is not None and field not in named:
            named[field] = decoded
    return TargetInfo(
        pairs=tuple(pairs),
        terminated=terminated,
        problem=problem,
        **named,  # type: ignore[arg-type]
    )


# Keyed and compared by plain int: the pair loop sees every id of every
# target info, and an AvId(...) call or enum comparison per pair costs more
# than the rest of the loop.
_MSV_AV_EOL = int(AvId.MsvAvEOL)
_MSV_AV_FLAGS = int(AvId.MsvAvFlags)
_MSV_AV_TIMESTAMP = int(AvId.MsvAvTimestamp)
_MSV_AV_SINGLE_HOST = int(AvId.MsvAvSingleHost)
_MSV_AV_CHANNEL_BINDINGS = int(AvId.MsvAvChannelBindings)

_TEXT_PAIRS = {
    int(AvId.MsvAvNbComputerName): "nb_computer_name",
    int(AvId.MsvAvNbDomainName): "nb_domain_name",
    int(AvId.MsvAvDnsComputerName): "dns_computer_name",
    int(AvId.MsvAvDnsDomainName): "dns_domain_name",
    int(AvId.MsvAvDnsTreeName): "dns_tree_name",
    int(AvId.MsvAvTargetName): "target_name",
}


def _decode_pair(av_id: int, value: bytes) -> tuple[AvPair, str | None, object]:
    """The AvPair, the TargetInfo field it names and that field's value (see
    _PAIRS), remembered unless it is unique anyway (a time stamp, a long value)."""
    field: str | None = None
    decoded: object = None
    text_field = _TEXT_PAIRS.get(av_id)
    if text_field is not None:
        field, decoded = text_field, _name(_unicode(value))
    elif av_id == _MSV_AV_FLAGS and len(value) == 4:
        field, decoded = "av_flags", int.from_bytes(value, "little")
    elif av_id == _MSV_AV_TIMESTAMP and len(value) == 8:
        field = "timestamp"
        decoded = filetime_to_datetime(int.from_bytes(value, "little"))
        return AvPair(av_id, value), field, decoded
    elif av_id == _MSV_AV_SINGLE_HOST:
        field, decoded = "single_host", value
    elif av_id == _MSV_AV_CHANNEL_BINDINGS:
        field, decoded = "channel_bindings", value
    known = (AvPair(av_id, value), field, decoded)
    if len(value) <= _SHARED_CHARS:
        if len(_PAIRS) >= _SHARED_PAIRS:
            _PAIRS.clear()
        _PAIRS[(av_id, value)] = known
    return known


def _decode_negotiate(data: bytes) -> NtlmNegotiate:
    (flags,) = _NEGOTIATE_FLAGS.unpack_from(data, 12)
    domain = workstation = None
    version = None
    # Old clients send a 16-byte NEGOTIATE with no fields at all; the fields
    # only exist when the message is long enough to hold them.
    if len(data) >= 32:
        domain_len, _, domain_off, ws_len, _, ws_off = _NEGOTIATE_FIELDS.unpack_from(data, 16)
        # MS-NLMP 2.2.1.1: DomainName and WorkstationName are OEM strings.
        domain = _oem(_payload(data, domain_len, domain_off)) or None
        workstation = _oem(_payload(data, ws_len, ws_off)) or None
        if flags & _VERSION_FLAG and len(data) >= 40:
            version = _version(data, 32)
    return NtlmNegotiate(flags, domain, workstation, version)


def _decode_challenge(data: bytes) -> NtlmChallenge:
    name_len, _, name_off, flags, server_challenge = _CHALLENGE_FIXED.unpack_from(data, 12)
    target_info = None
    version = None
    target_name = _text(_payload(data, name_len, name_off), flags) if name_len else None
    # TargetInfoFields (offset 40) only exist in messages of 48 bytes or more
    # (MS-NLMP 2.2.1.2; old servers send the 32-byte form).
    if len(data) >= 48:
        info_len, _, info_off = _TRIPLE.unpack_from(data, 40)
        if info_len:
            target_info = decode_av_pairs(_payload(data, info_len, info_off))
        payload_start = min(
            (off for length, off in ((name_len, name_off), (info_len, info_off)) if length),
            default=len(data),
        )
        if flags & _VERSION_FLAG and payload_start >= 56:
            version = _version(data, 48)
    return NtlmChallenge(flags, server_challenge, target_name, target_info, version)


def _decode_ntlmv2_response(nt_response: bytes) -> NtlmV2Response:
    # MS-NLMP 2.2.2.8: NTProofStr (16) then NTLMv2_CLIENT_CHALLENGE (2.2.2.7):
    # RespType, HiRespType, Reserved1 (2), Reserved2 (4), TimeStamp (8),
    # ChallengeFromClient (8), Reserved3 (4), AvPairs.
    ntproofstr, resp_type, hi_resp_type, _, filetime, client_challenge, _ = (
        _NTLMV2_FIXED.unpack_from(nt_response, 0)
    )
    av_pairs = decode_av_pairs(nt_response[_NTLMV2_FIXED.size :])
    return NtlmV2Response(
        ntproofstr,
        resp_type,
        hi_resp_type,
        filetime_to_datetime(filetime),
        client_challenge,
        av_pairs,
    )


def _decode_authenticate(data: bytes) -> NtlmAuthenticate:
    (
        lm_len,
        _,
        lm_off,
        nt_len,
        _,
        nt_off,
        domain_len,
        _,
        domain_off,
        user_len,
        _,
        user_off,
        ws_len,
        _,
        ws_off,
    ) = _AUTHENTICATE_FIELDS.unpack_from(data, 12)
    key_len, key_off = 0, 0
    # Very old clients end the fixed part before EncryptedRandomSessionKeyFields.
    if len(data) >= 64:
        key_len, _, key_off, flags = _AUTHENTICATE_KEY_AND_FLAGS.unpack_from(data, 52)
    else:
        flags = 0
    fields = (
        (lm_len, lm_off),
        (nt_len, nt_off),
        (domain_len, domain_off),
        (user_len, user_off),
        (ws_len, ws_off),
        (key_len, key_off),
    )
    lm_response = _payload(data, lm_len, lm_off)
    nt_response = _payload(data, nt_len, nt_off)
    domain = _text(_payload(data, domain_len, domain_off), flags)
    user = _text(_payload(data, user_len, user_off), flags)
    workstation = _text(_payload(data, ws_len, ws_off), flags)
    session_key = _payload(data, key_len, key_off)

    # The payload starts where the first non-empty field points; the Version
    # (offset 64) and MIC (offset 72) exist only when the fixed part reaches
    # that far (MS-NLMP 2.2.1.3: MIC is 16 bytes after Version).
    payload_start = min((off for length, off in fields if length), default=len(data))
    version = None
    if flags & _VERSION_FLAG and payload_start >= 72 and len(data) >= 72:
        version = _version(data, 64)
    mic = data[72:88] if payload_start >= 88 and len(data) >= 88 else None

    ntlmv2 = None
    problem = None
    if nt_len == 24:
        kind = NtlmResponseKind.NTLMV1
    elif nt_len > 24:
        kind = NtlmResponseKind.NTLMV2
        try:
            ntlmv2 = _decode_ntlmv2_response(nt_response)
        except BufferReadError as error:
            problem = f"NTLMv2 response unreadable: {error}"
    elif nt_len == 0 and not user and lm_response in (b"", b"\x00"):
        # MS-NLMP 3.2.5.1.2: anonymous = empty user, empty NT, LM empty or Z(1).
        kind = NtlmResponseKind.ANONYMOUS
    else:
        kind = NtlmResponseKind.UNKNOWN
    anonymous = kind is NtlmResponseKind.ANONYMOUS or bool(flags & _ANONYMOUS)
    # MS-NLMP 2.2.2.1 MsvAvFlags 0x2: the client says a MIC is in the message.
    av_flags = ntlmv2.av_pairs.av_flags if ntlmv2 else None
    mic_present = bool(av_flags and av_flags & AV_FLAG_MIC_PRESENT)
    return NtlmAuthenticate(
        flags=flags,
        user=user,
        domain=domain,
        workstation=workstation,
        lm_response=lm_response,
        nt_response=nt_response,
        encrypted_random_session_key=session_key,
        version=version,
        mic=mic,
        response_kind=kind,
        ntlmv2=ntlmv2,
        anonymous=anonymous,
        mic_present=mic_present,
        problem=problem,
    )


def is_ntlm(data: bytes) -> bool:
    """True when the bytes start with the NTLMSSP signature."""
    return data.startswith(NTLMSSP_SIGNATURE)


def decode_ntlm(data: bytes) -> NtlmMessage | Malformed:
    """Decode one NTLM message (MS-NLMP 2.2.1.1-3). Never raises.

    Returns NtlmNegotiate, NtlmChallenge or NtlmAuthenticate, or Malformed
    with a one-line reason (truncated=True when a field runs past the end).
    """
    try:
        data = bytes(data)
    except (TypeError, ValueError):
        return Malformed("not bytes")
    if len(data) > MAX_NTLM_TOKEN:
        return Malformed(f"NTLM token larger than {MAX_NTLM_TOKEN} bytes", data[:64])
    if len(data) < 12:
        if NTLMSSP_SIGNATURE.startswith(data[:8]):
            return Malformed("NTLM message shorter than its header", data, truncated=True)
        return Malformed("no NTLMSSP signature", data)
    if not data.startswith(NTLMSSP_SIGNATURE):
        return Malformed("no NTLMSSP signature", data)
    message_type = int.from_bytes(data[8:12], "little")
    try:
        if message_type == 1:
            return _decode_negotiate(data)
        if message_type == 2:
            return _decode_challenge(data)
        if message_type == 3:
            return _decode_authenticate(data)
    except _Truncated as error:
        return Malformed(f"NTLM type {message_type}: {error}", data, truncated=True)
    except BufferReadError as error:
        return Malformed(f"NTLM type {message_type} truncated: {error}", data, truncated=True)
    except (ValueError, OverflowError) as error:  # defensive: nothing escapes
        return Malformed(f"NTLM type {message_type}: {error}", data)
    return Malformed(f"unknown NTLM message type {message_type}", data)
