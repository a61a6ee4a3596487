"""IPv4 and IPv6 fragment reassembly (RFC 791 section 3.2, RFC 8200 section 4.5).

Owns: pending fragmented datagrams, keyed by (source, destination, protocol,
identification) for IPv4 and (source, destination, identification) for IPv6.

Invariants:
- bounded: at most `max_pending` datagrams and `max_bytes` bytes are held, a
  datagram is at most 65535 bytes, and one that has not completed within
  `timeout_frames` frames is dropped; every drop becomes an
  `ip-fragment-incomplete` anomaly, never an exception.
- overlaps: the first copy of any byte wins (later copies are ignored), the
  policy of most end hosts and of Wireshark.
- bytes are never invented: a fragment the capture cut short (snaplen) makes
  its datagram incomplete forever.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from authtrace.anomalies import Anomaly, AnomalyKind

MAX_DATAGRAM = 65535


@dataclass(slots=True)
class _Pending:
    first_frame: int
    protocol: int | None = None  # IPv6: from the fragment with offset 0
    pieces: list[tuple[int, bytes]] = field(default_factory=list)  # arrival order
    total: int | None = None  # known once the last fragment (MF=0) arrived
    size: int = 0
    damaged: str = ""


@dataclass(frozen=True, slots=True)
class Reassembled:
    """A datagram whose fragments are all in: its payload and upper protocol."""

    protocol: int
    payload: bytes


class Reassembler:
    """Collects fragments until a datagram is whole."""

    def __init__(
        self,
        anomalies: list[Anomaly],
        max_pending: int = 256,
        max_bytes: int = 8 * 1024 * 1024,
        timeout_frames: int = 10_000,
    ) -> None:
        self._anomalies = anomalies
        self._pending: dict[tuple[object, ...], _Pending] = {}
        self._bytes = 0
        self.max_pending = max_pending
        self.max_bytes = max_bytes
        self.timeout_frames = timeout_frames
        self._next_expiry_check = 0

    def __len__(self) -> int:
        return len(self._pending)

    def add(
        self,
        key: tuple[object, ...],
        frame: int,
        offset: int,
        more: bool,
        data: bytes,
        protocol: int | None,
        cut: bool,
    ) -> Reassembled | None:
        """One fragment: `offset` in bytes, `more` the MF flag, `cut` when the
        capture did not hold all of it. Returns the datagram when complete."""
        if frame >= self._next_expiry_check:
            self._expire(frame)
        pending = self._pending.get(key)
        if pending is None:
            if len(self._pending) >= self.max_pending:
                self._drop(next(iter(self._pending)), "too many fragmented datagrams pending")
            pending = self._pending[key] = _Pending(frame)
        if protocol is not None and pending.protocol is None:
            pending.protocol = protocol
        end = offset + len(data)
        if end > MAX_DATAGRAM:
            pending.damaged = f"a fragment reaches byte {end}, beyond {MAX_DATAGRAM}"
            return None
        if cut:
            pending.damaged = "a fragment was not captured in full (snaplen)"
        if not more and pending.total is None:
            pending.total = end
        if data:
            pending.pieces.append((offset, data))
            pending.size += len(data)
            self._bytes += len(data)
            while self._bytes > self.max_bytes and self._pending:
                oldest = next(iter(self._pending))
                self._drop(oldest, "fragment buffer limit reached")
                if oldest == key:
                    return None
        if pending.total is None or pending.damaged or pending.protocol is None:
            return None
        total = pending.total
        # Complete when the pieces cover [0, total) without a hole.
        covered = 0
        for start, piece in sorted(pending.pieces, key=lambda item: item[0]):
            if start > covered:
                return None
            covered = max(covered, start + len(piece))
            if covered >= total:
                break
        if covered < total:
            return None
        payload = bytearray(total)
        # Write later arrivals first so that the first copy of a byte wins.
        for start, piece in reversed(pending.pieces):
            if start < total:
                payload[start : start + len(piece)] = piece[: total - start]
        del payload[total:]
        del self._pending[key]
        self._bytes -= pending.size
        return Reassembled(pending.protocol, bytes(payload))

    def _expire(self, frame: int) -> None:
        # Checked every few hundred frames: a scan per frame would be the hot path.
        self._next_expiry_check = frame + 256
        limit = frame - self.timeout_frames
        for key in [k for k, p in self._pending.items() if p.first_frame < limit]:
            self._drop(key, f"not completed within {self.timeout_frames} frames")

    def _drop(self, key: tuple[object, ...], reason: str) -> None:
        pending = self._pending.pop(key)
        self._bytes -= pending.size
        detail = f"; {pending.damaged}" if pending.damaged else ""
        self._anomalies.append(
            Anomaly(
                AnomalyKind.IP_FRAGMENT_INCOMPLETE,
                f"fragmented IP datagram {key[0]} -> {key[1]} id {key[-1]} "
                f"({pending.size} bytes held) dropped: {reason}{detail}",
                pending.first_frame,
            )
        )

    def finish(self) -> None:
        """Report every datagram still incomplete at the end of the capture."""
        for key in list(self._pending):
            self._drop(key, "incomplete at the end of the capture")
