"""What the HTTP layer yields: requests, responses and their pairing into exchanges.

Header values are kept as written (latin-1 decoded, original order and case of
names) so the wire truth stays next to any interpretation.
"""

from __future__ import annotations

import base64
import enum
import re
from dataclasses import dataclass, field

from authtrace.anomalies import Anomaly
from authtrace.fastinit import constructor
from authtrace.http2.model import StreamInfo
from authtrace.sharing import Base64Of, SharedTable
from authtrace.tcp.events import CloseReason, Direction, Endpoint
from authtrace.tls.model import TlsFacts

# A DNS name is at most 253 characters; with "[" IPv6 "]" and ":port" a
# little more.
MAX_HOST = 270
_HOST = re.compile(rf"[^ \t\r\n]{{1,{MAX_HOST}}}")


# A header value that ends with the base64 of a token the auth step keeps is
# held as that token's encoding (`Header.keep_token_once`): tokens shorter than
# this are not worth the holder, prefixes longer than this are not a scheme.
MIN_TOKEN = 48
MAX_PREFIX = 64

# The prefixes ("Negotiate ", "NTLM ") kept once, bounded (authtrace/sharing.py).
_PREFIXES: SharedTable[str] = SharedTable(256)


@dataclass(frozen=True, slots=True)
class Header:
    """One header line as written: name and value (latin-1 decoded)."""

    name: str
    value: str

    def keep_token_once(self, token: bytes) -> None:
        """Hold the value as the base64 of `token` (the decoded token the auth
        step keeps as its raw bytes) when it is some text followed by exactly
        that encoding (RFC 4648 section 4, padded), so that the token is held
        once: the header becomes a `TokenHeader`, whose value reads the same.
        Otherwise nothing changes. Cost: one base64 encoding and one
        comparison of the token's size."""
        if type(self) is not Header or len(token) < MIN_TOKEN:
            return
        value = self.value
        encoded = base64.b64encode(token).decode("ascii")
        prefix_size = len(value) - len(encoded)
        if 0 <= prefix_size <= MAX_PREFIX and value.endswith(encoded):
            prefix = _PREFIXES.share(value[:prefix_size])
            _set_value(self, Base64Of(prefix, token))
            # Same slots, so the object itself changes class: every message
            # and shared header tuple that holds it keeps holding it.
            object.__setattr__(self, "__class__", TokenHeader)


class TokenHeader(Header):
    """A header whose value is held as the base64 of a token the auth step
    keeps (`Header.keep_token_once`). It reads, compares, hashes and prints as
    the Header of the same name and value; pickling keeps the token form.
    Ordinary headers stay plain Headers, so reading their values costs nothing
    more."""

    __slots__ = ()

    @property  # type: ignore[override]
    def value(self) -> str:
        held: Base64Of = _get_value(self)
        return held.resolve()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Header):
            return (self.name, self.value) == (other.name, other.value)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.name, self.value))

    def __repr__(self) -> str:
        return f"Header(name={self.name!r}, value={self.value!r})"

    def __getstate__(self) -> list[object]:
        return [self.name, _get_value(self)]

    def __setstate__(self, state: list[object]) -> None:
        _set_name(self, state[0])
        _set_value(self, state[1])


@dataclass(frozen=True, slots=True)
class CutHeader:
    """A header line of a header block cut at the parser's limit: seen, not kept.

    name: the field name as written; size: the bytes of the line (name, colon
    and value, without its line end), counted even past the limit; whole: False
    when the line's end was not seen (the capture or the stream ended inside
    it), so `size` is what was seen; first_word: the value's first token (an
    auth-scheme such as ``Negotiate``, at most 32 characters), "" when none.
    """

    name: str
    size: int
    whole: bool = True
    first_word: str = ""


class _Message:
    """What requests and responses share: header look-ups (names compared
    case-insensitively, RFC 9110 section 5.1) and the frame to cite."""

    __slots__ = ()
    headers: tuple[Header, ...]
    cut_headers: tuple[CutHeader, ...]
    head_frame: int
    end_frame: int
    complete: bool

    def header(self, name: str) -> str | None:
        return _first(self.headers, name)

    def header_all(self, name: str) -> list[str]:
        return _all(self.headers, name)

    @property
    def host(self) -> str | None:
        """The Host header as a host (RFC 9110 section 7.2: uri-host [":" port]),
        or an HTTP/2 request's `:authority` when it has no Host (RFC 9113
        section 8.3.1):
        the value up to its first whitespace, at most MAX_HOST characters;
        None when absent. A damaged head can run another header (an
        Authorization, say) into the Host line after a bare CR: that is not
        shown. Other control characters stay (renderers make them visible)."""
        value = _first(self.headers, "Host")
        if value is None:
            value = _first(self.headers, ":authority")
        if value is None:
            return None
        match = _HOST.match(value)
        return match.group(0) if match else ""

    def cut_header(self, name: str) -> CutHeader | None:
        """The first header of that name seen in a cut head but not kept."""
        lowered = name.lower()
        for cut in self.cut_headers:
            if cut.name.lower() == lowered:
                return cut
        return None

    @property
    def shown_frame(self) -> int:
        """The frame where Wireshark shows this message, the one to cite: the one
        completing it, head and body (a body delimited by the close ends at the
        FIN). A message whose end was forced (body cut by a gap, FIN, RST or the
        end of the capture) is shown at its head, never at the frame that cut it,
        which may be an ACK from the other side: Wireshark either dissects the
        head there (RPC_IN_DATA) or shows the start line there and no message."""
        if self.complete:
            return self.end_frame or self.head_frame
        return self.head_frame


@dataclass(frozen=True, slots=True)
class HttpRequest(_Message):
    """frame: frame that carried the first byte of the request line;
    head_frame: frame that completed the header block."""

    method: str
    uri: str
    version: str
    headers: tuple[Header, ...]
    frame: int
    head_frame: int
    timestamp: float
    header_bytes: int
    body_size: int = 0
    complete: bool = True
    end_frame: int = 0
    """frame that completed the whole message (head and body); 0 when unknown.
    This is the frame where Wireshark shows the request (http.request)."""
    head_cut: bool = False
    """the header block was larger than the parser keeps (or never ended):
    `headers` holds the whole lines before the cut, `cut_headers` the rest."""
    cut_headers: tuple[CutHeader, ...] = ()
    rest_not_seen: bool = False
    """the end of the header block was never seen (a gap, a snap length or an
    ETW packet truncation, the end of the capture, a head that never ended):
    any header after `headers` and `cut_headers` may have been sent and is not
    known. Never read such a head's missing header as "not sent"."""


@dataclass(frozen=True, slots=True)
class HttpResponse(_Message):
    """body: kept only when small (error pages) and up to a cap, else None."""

    version: str
    status: int
    reason: str
    headers: tuple[Header, ...]
    frame: int
    head_frame: int
    timestamp: float
    header_bytes: int
    body_size: int = 0
    body: bytes | None = None
    complete: bool = True
    end_frame: int = 0
    """frame that completed the whole message (head and body); 0 when unknown.
    This is the frame where Wireshark shows the response (http.response)."""
    head_cut: bool = False
    """as for HttpRequest"""
    cut_headers: tuple[CutHeader, ...] = ()
    rest_not_seen: bool = False
    """as for HttpRequest"""


class Pairing(enum.Enum):
    """How sure it is that this response answers this request (exchanges.py
    decides; rules must not judge a pairing that is not sure)."""

    IN_ORDER = "in_order"  # first in, first out (RFC 9112 section 9.3.2), nothing lost between
    REALIGNED = "realigned"  # a gap hid responses; TCP facts proved which request this answers
    RESPONSE_LOST = "response_lost"  # the response was in bytes the capture lost (not seen)
    UNCERTAIN = "uncertain"  # a gap may have hidden messages: the response may answer another


@dataclass(frozen=True, slots=True)
class Exchange:
    """A request and the response that answered it on one connection.

    connection: TCP connection id; index: 0-based position on that connection.
    Either side may be None (response without a request seen, or no answer;
    `pairing` RESPONSE_LOST says the answer was sent but not captured).
    stream: the HTTP/2 stream (its id, reset, header blocks not decodable);
    None for HTTP/1.
    """

    connection: int
    index: int
    request: HttpRequest | None
    response: HttpResponse | None
    interim: tuple[HttpResponse, ...] = field(default=())
    pairing: Pairing = Pairing.IN_ORDER
    stream: StreamInfo | None = None


# The parser builds a Header per header line and a message and an Exchange per
# HTTP message: these build the same objects faster (authtrace/fastinit.py).
make_header = constructor(Header)
# The slots of Header, for TokenHeader (whose `value` is a property).
_get_value = vars(Header)["value"].__get__
_set_value = vars(Header)["value"].__set__
_set_name = vars(Header)["name"].__set__
make_request = constructor(HttpRequest)
make_response = constructor(HttpResponse)
make_exchange = constructor(Exchange)


# Header look-ups run for every message many times over (judging, linking,
# rules), so a name is lower-cased only when it could match: str.lower() keeps
# the length of every latin-1 string (the wire decoding of header names), so a
# name of another length never matches, and one written as asked needs no
# lower-casing at all.


def _first(headers: tuple[Header, ...], name: str) -> str | None:
    lowered = name.lower()
    size = len(name)
    for header in headers:
        written = header.name
        if written == name or (len(written) == size and written.lower() == lowered):
            return header.value
    return None


def _all(headers: tuple[Header, ...], name: str) -> list[str]:
    lowered = name.lower()
    size = len(name)
    return [
        header.value
        for header in headers
        if header.name == name or (len(header.name) == size and header.name.lower() == lowered)
    ]


@dataclass(frozen=True, slots=True)
class GapMark:
    """Where a TCP connection lost bytes (loss, snaplen, capture start)."""

    direction: Direction
    length: int
    frame: int


@dataclass(frozen=True, slots=True)
class HttpConnection:
    """One TCP connection as the HTTP layer leaves it: who talked to whom, how it
    began and ended, and its exchanges in order. Built by the pipeline from the
    TCP layer's events and the HTTP tracker's output."""

    id: int
    client: Endpoint
    server: Endpoint
    first_frame: int
    last_frame: int
    first_timestamp: float
    last_timestamp: float
    syn_seen: bool
    fin_seen: bool
    rst_seen: bool
    close_reason: CloseReason
    closed_by: Direction | None  # the side whose FIN came first, if both closed
    close_frame: int
    packets: int
    gaps: tuple[GapMark, ...]
    exchanges: tuple[Exchange, ...]
    is_http: bool
    anomalies: tuple[Anomaly, ...] = ()
    # The TLS handshake facts when the HTTP was decrypted from TLS (tls/model.py).
    tls: TlsFacts | None = None
