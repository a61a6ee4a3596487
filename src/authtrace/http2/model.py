"""What HTTP/2 adds to the HTTP model: a stream's id, how it was reset, and
which of its header blocks could not be decoded (RFC 9113).

Owns: these values and the names of the error codes (RFC 9113 section 7; 0xd
HTTP_1_1_REQUIRED, the answer of servers whose authentication needs the TCP
connection, RFC 7540 section 13.2 / RFC 9113 section 9.2.2). Imports nothing of
authtrace, so that http/messages.py can carry a `StreamInfo` on each Exchange.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ErrorCode(enum.IntEnum):
    """RFC 9113 section 7 (RST_STREAM and GOAWAY)."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


def error_name(code: int) -> str:
    """The spec's name of an error code, `UNKNOWN (0x..)` for one it does not define
    (RFC 9113 section 7: unknown codes must not trigger special behaviour)."""
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"UNKNOWN (0x{code:x})"


class Side(enum.Enum):
    """Who sent a frame: the side that sent the connection preface is the client."""

    CLIENT = "client"
    SERVER = "server"


@dataclass(frozen=True, slots=True)
class StreamReset:
    """A RST_STREAM ending the stream (RFC 9113 section 6.4).

    code: the error code as sent (`name` labels it); by: who sent it; frame: the
    capture frame where Wireshark shows the RST_STREAM; timestamp: that frame's
    time (0.0 when not known), where a ladder draws it."""

    code: int
    by: Side
    frame: int
    timestamp: float = 0.0

    @property
    def name(self) -> str:
        return error_name(self.code)

    @property
    def benign(self) -> bool:
        """The stream ended without a failure: NO_ERROR, or CANCEL (the client
        no longer needs the response), RFC 9113 section 7."""
        return self.code in (ErrorCode.NO_ERROR, ErrorCode.CANCEL)


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """The HTTP/2 facts of one exchange (one stream).

    id: the stream identifier (odd: opened by the client; even: pushed);
    request_frame / response_frame: where Wireshark shows the HEADERS frame
    completing each header block (0: not seen); reset: the RST_STREAM that ended
    it, if any; request_not_decodable / response_not_decodable: a header block
    was seen but its HPACK state was lost (a capture started inside the
    connection, a gap in the stream): "not seen", never "not sent", so rules
    judge nothing on such a stream; pushed_by: for a server push, the stream
    whose PUSH_PROMISE announced it (0 otherwise)."""

    id: int
    request_frame: int = 0
    response_frame: int = 0
    reset: StreamReset | None = None
    request_not_decodable: bool = False
    response_not_decodable: bool = False
    pushed_by: int = 0

    @property
    def not_decodable(self) -> bool:
        return self.request_not_decodable or self.response_not_decodable
