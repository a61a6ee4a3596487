"""TLS handshake messages: the few authtrace reads, decoded from bytes.

Owns: splitting a direction's handshake bytes into messages (RFC 8446 section
4, RFC 5246 section 7.4: type(1) length(3) body) and decoding ClientHello,
ServerHello (and HelloRetryRequest), EncryptedExtensions, Certificate and
KeyUpdate into frozen values. Everything else is kept as its type alone.

Invariant: sans-IO and bounded: a message longer than MAX_MESSAGE is refused
(`HandshakeError`), and decoding reads only inside the message through
`Buffer`, whose reads raise on truncation (turned into `HandshakeError`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from authtrace.buffer import Buffer, BufferReadError

# Certificate chains are the largest messages; 256 KiB holds any real one.
MAX_MESSAGE = 256 * 1024
MAX_CERTIFICATES = 16

# RFC 8446 section 4.1.3: the ServerHello.random of a HelloRetryRequest.
HELLO_RETRY_RANDOM = bytes.fromhex(
    "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
)


class HandshakeError(ValueError):
    """A handshake message that cannot be decoded (truncated or malformed)."""


class HandshakeType(enum.IntEnum):
    """RFC 8446 section 4 and RFC 5246 section 7.4."""

    HELLO_REQUEST = 0
    CLIENT_HELLO = 1
    SERVER_HELLO = 2
    NEW_SESSION_TICKET = 4
    END_OF_EARLY_DATA = 5
    ENCRYPTED_EXTENSIONS = 8
    CERTIFICATE = 11
    SERVER_KEY_EXCHANGE = 12
    CERTIFICATE_REQUEST = 13
    SERVER_HELLO_DONE = 14
    CERTIFICATE_VERIFY = 15
    CLIENT_KEY_EXCHANGE = 16
    FINISHED = 20
    KEY_UPDATE = 24
    MESSAGE_HASH = 254


# Extension numbers (IANA TLS ExtensionType Values).
EXT_SERVER_NAME = 0  # RFC 6066 section 3
EXT_ALPN = 16  # RFC 7301 section 3.1
EXT_ENCRYPT_THEN_MAC = 22  # RFC 7366
EXT_EXTENDED_MASTER_SECRET = 23  # RFC 7627
EXT_PRE_SHARED_KEY = 41  # RFC 8446 section 4.2.11
EXT_SUPPORTED_VERSIONS = 43  # RFC 8446 section 4.2.1

TLS13 = 0x0304


@dataclass(frozen=True, slots=True)
class ClientHello:
    """random: the 32 bytes key logs are indexed by; server_name: SNI host
    name ("" when absent); alpn: protocols offered; versions: from
    supported_versions, else the legacy version alone."""

    random: bytes
    session_id: bytes
    cipher_suites: tuple[int, ...]
    server_name: str
    alpn: tuple[str, ...]
    versions: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ServerHello:
    """version: the negotiated one (supported_versions wins over the legacy
    field, RFC 8446 section 4.2.1); retry: a HelloRetryRequest; alpn: chosen
    protocol in TLS 1.2 ("" when none); encrypt_then_mac and
    extended_master_secret: the server accepted those extensions; psk: TLS 1.3
    resumption (the server chose a pre-shared key)."""

    random: bytes
    session_id: bytes
    version: int
    cipher_suite: int
    retry: bool
    alpn: str
    encrypt_then_mac: bool
    extended_master_secret: bool
    psk: bool = False


@dataclass(frozen=True, slots=True)
class Message:
    """One handshake message: its type and its body (the bytes after the header)."""

    type: int
    body: bytes


def split_messages(buffer: bytearray) -> list[Message]:
    """Take every complete message from the front of `buffer` (the rest stays).
    Raises HandshakeError for a message longer than MAX_MESSAGE."""
    out: list[Message] = []
    pos = 0
    while len(buffer) - pos >= 4:
        length = int.from_bytes(buffer[pos + 1 : pos + 4], "big")
        if length > MAX_MESSAGE:
            del buffer[:pos]
            raise HandshakeError(f"handshake message of {length} bytes")
        if len(buffer) - pos - 4 < length:
            break
        out.append(Message(buffer[pos], bytes(buffer[pos + 4 : pos + 4 + length])))
        pos += 4 + length
    del buffer[:pos]
    return out


def _vector(buf: Buffer, width: int) -> bytes:
    length = int.from_bytes(buf.pull_bytes(width), "big")
    return buf.pull_bytes(length)


def _extensions(buf: Buffer) -> dict[int, bytes]:
    """RFC 8446 section 4.2: extensions<0..2^16-1>, absent in an old hello."""
    if buf.eof():
        return {}
    block = Buffer(_vector(buf, 2))
    found: dict[int, bytes] = {}
    while not block.eof():
        kind = block.pull_u16_be()
        found.setdefault(kind, _vector(block, 2))
    return found


def _alpn_list(data: bytes) -> tuple[str, ...]:
    """RFC 7301 section 3.1: ProtocolNameList of ProtocolName<1..2^8-1>."""
    names = Buffer(_vector(Buffer(data), 2))
    protocols: list[str] = []
    while not names.eof():
        protocols.append(_vector(names, 1).decode("ascii", "replace"))
    return tuple(protocols)


def _server_name(data: bytes) -> str:
    """RFC 6066 section 3: the first host_name (type 0) of the ServerNameList."""
    names = Buffer(_vector(Buffer(data), 2))
    while not names.eof():
        kind = names.pull_u8()
        name = _vector(names, 2)
        if kind == 0:
            return name.decode("ascii", "replace")
    return ""


def decode_client_hello(body: bytes) -> ClientHello:
    """RFC 8446 section 4.1.2 (the same layout as RFC 5246 section 7.4.1.2)."""
    try:
        buf = Buffer(body)
        legacy = buf.pull_u16_be()
        random = buf.pull_bytes(32)
        session_id = _vector(buf, 1)
        raw_suites = _vector(buf, 2)
        _vector(buf, 1)  # compression methods
        extensions = _extensions(buf)
        suites = tuple(
            int.from_bytes(raw_suites[i : i + 2], "big") for i in range(0, len(raw_suites) - 1, 2)
        )
        sni = _server_name(extensions[EXT_SERVER_NAME]) if EXT_SERVER_NAME in extensions else ""
        alpn = _alpn_list(extensions[EXT_ALPN]) if EXT_ALPN in extensions else ()
        versions: tuple[int, ...] = (legacy,)
        if EXT_SUPPORTED_VERSIONS in extensions:
            listed = _vector(Buffer(extensions[EXT_SUPPORTED_VERSIONS]), 1)
            versions = tuple(
                int.from_bytes(listed[i : i + 2], "big") for i in range(0, len(listed) - 1, 2)
            )
    except BufferReadError as error:
        raise HandshakeError(f"ClientHello: {error}") from None
    return ClientHello(random, session_id, suites, sni, alpn, versions)


def decode_server_hello(body: bytes) -> ServerHello:
    """RFC 8446 section 4.1.3 (and 4.1.4 for a HelloRetryRequest)."""
    try:
        buf = Buffer(body)
        version = buf.pull_u16_be()
        random = buf.pull_bytes(32)
        session_id = _vector(buf, 1)
        suite = buf.pull_u16_be()
        buf.pull_u8()  # compression method
        extensions = _extensions(buf)
        if EXT_SUPPORTED_VERSIONS in extensions:
            version = Buffer(extensions[EXT_SUPPORTED_VERSIONS]).pull_u16_be()
        alpn = _alpn_list(extensions[EXT_ALPN]) if EXT_ALPN in extensions else ()
    except BufferReadError as error:
        raise HandshakeError(f"ServerHello: {error}") from None
    return ServerHello(
        random=random,
        session_id=session_id,
        version=version,
        cipher_suite=suite,
        retry=random == HELLO_RETRY_RANDOM,
        alpn=alpn[0] if alpn else "",
        encrypt_then_mac=EXT_ENCRYPT_THEN_MAC in extensions,
        extended_master_secret=EXT_EXTENDED_MASTER_SECRET in extensions,
        psk=EXT_PRE_SHARED_KEY in extensions,
    )


def decode_encrypted_extensions(body: bytes) -> str:
    """RFC 8446 section 4.3.1: the ALPN protocol the server chose, "" when none."""
    try:
        extensions = _extensions(Buffer(body))
        alpn = _alpn_list(extensions[EXT_ALPN]) if EXT_ALPN in extensions else ()
    except BufferReadError as error:
        raise HandshakeError(f"EncryptedExtensions: {error}") from None
    return alpn[0] if alpn else ""


def decode_certificate(body: bytes, tls13: bool) -> tuple[bytes, ...]:
    """The DER certificates of a Certificate message, leaf first: RFC 5246
    section 7.4.2 (certificate_list of ASN.1Cert<1..2^24-1>) or RFC 8446
    section 4.4.2 (a request context, then CertificateEntry with extensions).
    At most MAX_CERTIFICATES are kept."""
    try:
        buf = Buffer(body)
        if tls13:
            _vector(buf, 1)  # certificate_request_context
        entries = Buffer(_vector(buf, 3))
        chain: list[bytes] = []
        while not entries.eof() and len(chain) < MAX_CERTIFICATES:
            chain.append(_vector(entries, 3))
            if tls13:
                _vector(entries, 2)  # per-certificate extensions
    except BufferReadError as error:
        raise HandshakeError(f"Certificate: {error}") from None
    return tuple(chain)


def decode_key_update(body: bytes) -> bool:
    """RFC 8446 section 4.6.3: True when the sender asks the peer to update too."""
    if len(body) != 1 or body[0] > 1:
        raise HandshakeError("KeyUpdate: not one byte 0 or 1")
    return body[0] == 1
