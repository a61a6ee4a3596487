"""What TCP reassembly yields: per-connection, per-direction stream events.

Invariant: bytes are never invented. Data is delivered in sequence order; a
hole that cannot be filled is reported as a `StreamGap` of known length.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from authtrace.fastinit import FastEnum, constructor


class Direction(FastEnum):
    TO_SERVER = "to_server"
    TO_CLIENT = "to_client"


@dataclass(frozen=True, slots=True)
class Endpoint:
    ip: str
    port: int

    def __str__(self) -> str:
        if ":" in self.ip:
            return f"[{self.ip}]:{self.port}"
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True, slots=True)
class ConnectionOpened:
    """First packet of a connection. id: 0-based, in order of first packet, as
    Wireshark's tcp.stream (a new SYN after a close starts a new id)."""

    connection: int
    client: Endpoint
    server: Endpoint
    frame: int
    timestamp: float
    syn_seen: bool


@dataclass(frozen=True, slots=True)
class StreamData:
    """Contiguous bytes of one direction. frame: the frame whose segment
    completed (or carried) these bytes; first_frame: where they started."""

    connection: int
    direction: Direction
    data: bytes
    first_frame: int
    frame: int
    timestamp: float


# One StreamData per delivered segment: the reassembler builds them with this
# (authtrace/fastinit.py).
make_stream_data = constructor(StreamData)


@dataclass(frozen=True, slots=True)
class StreamGap:
    """length bytes of one direction were never captured (loss, snaplen, start
    of connection before the capture). frame: where the gap became certain."""

    connection: int
    direction: Direction
    length: int
    frame: int
    timestamp: float


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """One direction reached its FIN in sequence: no more bytes will come that
    way. frame: the frame that carried the FIN (or completed the bytes before
    it). Lets a reader end a body delimited by the close of its direction."""

    connection: int
    direction: Direction
    frame: int
    timestamp: float


class CloseReason(enum.Enum):
    FIN = "fin"
    RST = "rst"
    END_OF_CAPTURE = "end_of_capture"
    PORT_REUSED = "port_reused"


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The connection ended (or the capture did). Carries its summary."""

    connection: int
    reason: CloseReason
    closed_by: Direction | None
    frame: int
    timestamp: float
    first_frame: int
    last_frame: int
    syn_seen: bool
    fin_seen: bool
    rst_seen: bool
    gap_bytes: int
    packets: int


@dataclass(frozen=True, slots=True)
class ConnectionElsewhere:
    """A new connection the reassembler gave an id but does not read: its flow
    belongs to another reader of the same capture (a worker process owning
    other flows, authtrace/parallel.py). No other event follows for it."""

    connection: int
    frame: int


StreamEvent = ConnectionOpened | StreamData | StreamGap | StreamEnd | ConnectionClosed
# What the reassembler emits: the stream events of the connections it reads,
# and one ConnectionElsewhere for each connection another reader reads.
TcpEvent = StreamEvent | ConnectionElsewhere


class LaneSink(Protocol):
    """What the layer reading one direction of a connection lets the fast
    lane (authtrace/lane.py) skip. Each layer answers for itself; the lane
    never looks inside it."""

    def count_only(self, buf: bytes, start: int, size: int, frame: int, timestamp: float) -> bool:
        """The next `size` in-order bytes of the direction are buf[start:start
        + size], delivered at `frame`. If handing them to this layer would only
        be counted (no event, nothing kept, no decision taken), count them now
        and return True; else change nothing and return False (the normal path
        will feed them)."""
        ...


class _SkipAll:
    """The sink of a direction whose layer keeps nothing of its data any more
    (not HTTP, TLS without keys): every byte may be skipped."""

    __slots__ = ()

    def count_only(self, buf: bytes, start: int, size: int, frame: int, timestamp: float) -> bool:
        return True


SKIP_ALL: LaneSink = _SkipAll()
