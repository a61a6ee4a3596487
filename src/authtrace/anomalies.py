"""Anomalies ("weirds"): oddities found in the input, named by stable ids.

Every layer reports what it could not read as an `Anomaly` value instead of
raising out of the pipeline. This module owns the ids: every kind is declared
once in `AnomalyKind` (tests/test_anomaly_kinds.py refuses an undeclared one
and keeps docs/json.md listing them all). The values are part of the JSON
output and must not change once released; add new ones instead.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class AnomalyKind(enum.StrEnum):
    """Every anomaly id, by the layer that reports it. A StrEnum: the value is
    the id itself, so it prints and serialises as the id."""

    # readers: the capture file
    CAPTURE_UNREADABLE = "capture-unreadable"  # not a capture authtrace can read
    CAPTURE_TRUNCATED = "capture-truncated"  # the file ends inside a record
    CAPTURE_CORRUPT = "capture-corrupt"  # a record that cannot be right; reading stopped
    CAPTURE_OVERLAP = "capture-overlap"  # several captures whose times overlap
    # readers: Windows traces (ETL files, Network Monitor files of ETW events)
    ETL_BUFFER_DAMAGED = "etl-buffer-damaged"  # a buffer that cannot be right; the next is read
    ETL_EVENTS_LOST = "etl-events-lost"  # the trace says it lost events or buffers
    ETL_OUT_OF_ORDER = "etl-out-of-order"  # packets not in time order (numbering differs)
    ETW_EVENTS_SKIPPED = "etw-events-skipped"  # events that carry no packet, counted
    ETW_EVENT_MALFORMED = "etw-event-malformed"  # a packet event that does not parse
    ETW_PACKETS_TRUNCATED = "etw-packets-truncated"  # netsh / pktmon kept the first bytes only
    PKTMON_APPEARANCES_FOLDED = "pktmon-appearances-folded"  # one packet, several components
    # net: link, IP and transport headers
    NET_TRUNCATED = "net-truncated"  # a header cut short by the snap length
    NET_MALFORMED = "net-malformed"  # a header that cannot be decoded
    NET_LINK_SKIPPED = "net-link-skipped"  # a link type authtrace does not decode
    DUPLICATE_FRAMES = "duplicate-frames"  # the capture holds frames twice (SPAN, merged copies)
    IP_FRAGMENT_INCOMPLETE = "ip-fragment-incomplete"  # fragments never completed
    # tcp: reassembly
    TCP_GAP = "tcp-gap"  # bytes not captured, never invented
    TCP_PORT_REUSED = "tcp-port-reused"  # a new connection on a live 4-tuple
    TCP_INTERNAL_ERROR = "tcp-internal-error"  # a bug, contained
    # tls
    TLS_ALERT = "tls-alert"
    TLS_GAP = "tls-gap"
    TLS_HANDSHAKE_MALFORMED = "tls-handshake-malformed"
    TLS_KEY_MISSING = "tls-key-missing"
    TLS_RECORD_MALFORMED = "tls-record-malformed"
    TLS_RECORD_TRUNCATED = "tls-record-truncated"
    TLS_RECORD_UNDECRYPTABLE = "tls-record-undecryptable"
    TLS_RESYNCHRONISED = "tls-resynchronised"
    TLS_SECRETS_TOO_LARGE = "tls-secrets-too-large"
    TLS_UNSUPPORTED = "tls-unsupported"
    # http: the HTTP/1.x parser and exchange pairing
    HTTP_GARBAGE = "http-garbage"  # bytes that do not start a message
    HTTP_BAD_START_LINE = "http-bad-start-line"
    HTTP_BAD_HEADER = "http-bad-header"
    HTTP_HEADER_TOO_LARGE = "http-header-too-large"
    HTTP_BAD_FRAMING = "http-bad-framing"  # Content-Length / Transfer-Encoding
    HTTP_BAD_CHUNK = "http-bad-chunk"
    HTTP_RESYNC = "http-resync"  # bytes skipped to the next message
    HTTP_ROLES_SWAPPED = "http-roles-swapped"  # the SYN's sender answered
    HTTP_BODY_NOT_FOLLOWED = "http-body-not-followed"  # a direction past its cost cap
    HTTP_ANOMALIES_SUPPRESSED = "http-anomalies-suppressed"  # past 10,000 in one run
    HTTP_PARSER_ERROR = "http-parser-error"  # a bug, contained
    HTTP_INTERNAL_ERROR = "http-internal-error"  # a bug, contained
    # http2: frames, HPACK and streams (http2/)
    HTTP2_PREFACE_MISSING = "http2-preface-missing"  # the client did not start with the preface
    HTTP2_FRAME_MALFORMED = "http2-frame-malformed"  # a frame breaks its type's layout
    HTTP2_FRAME_TOO_LARGE = "http2-frame-too-large"  # a header block or control frame not kept
    HTTP2_FRAMING_LOST = "http2-framing-lost"  # a gap hid frame boundaries
    HTTP2_RESYNC = "http2-resync"  # frames found again after a gap
    HTTP2_HEADERS_NOT_DECODABLE = "http2-headers-not-decodable"  # HPACK state lost: not seen
    HTTP2_GOAWAY = "http2-goaway"  # GOAWAY with an error code
    HTTP2_TOO_MANY_STREAMS = "http2-too-many-streams"  # past the open-stream bound
    HTTP2_INTERNAL_ERROR = "http2-internal-error"  # a bug, contained
    # kerberos: KDC traffic
    KERBEROS_MALFORMED = "kerberos-malformed"
    KERBEROS_STREAM_GAP = "kerberos-stream-gap"
    KERBEROS_RECORD_INCOMPLETE = "kerberos-record-incomplete"
    KERBEROS_RECORD_OVERSIZE = "kerberos-record-oversize"
    KERBEROS_RECORD_RESERVED_BIT = "kerberos-record-reserved-bit"
    KERBEROS_REPLY_WITHOUT_REQUEST = "kerberos-reply-without-request"
    KERBEROS_TOO_MANY_PENDING = "kerberos-too-many-pending"
    KERBEROS_ANOMALIES_SUPPRESSED = "kerberos-anomalies-suppressed"
    KERBEROS_INTERNAL_ERROR = "kerberos-internal-error"  # a bug, contained
    # handshake: links between connections
    LINKS_OUT_OF_TIME_ORDER = "links-out-of-time-order"  # a connection began back in time
    # diagnose
    ANALYSIS_ERROR = "analysis-error"  # a rule failed, contained
    # the pipeline's fast lane (lane.py)
    LANE_INTERNAL_ERROR = "lane-internal-error"  # a bug: the lane switched itself off


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One oddity in the capture.

    kind: its stable id (an `AnomalyKind`).
    message: one line, plain words, for a person.
    frame: the 1-based frame number where it was seen, when there is one.
    connection: the TCP connection id, when it belongs to one.
    """

    kind: AnomalyKind
    message: str
    frame: int | None = None
    connection: int | None = None
