"""HPACK (RFC 7541) for the header blocks of one direction, through the `hpack`
library, bounded.

Owns: whether this direction's decoding context is still known. HPACK is a
stateful compression: each block may refer to the dynamic table that every
earlier block of the direction built (RFC 7541 section 2.3.2). A capture that
starts inside the connection, a gap that may hide a header block, or a block
that fails to decode loses that state for good, and every later block of the
direction is "not decodable" (never "malformed": the sender did nothing
wrong that we can see).

Invariants: the decoded header list of one block is at most MAX_HEADER_LIST
octets as RFC 7541 section 4.1 counts them (name + value + 32 each; a block that
would decode larger — an HPACK bomb — is refused and the state is lost); the
dynamic table is at most MAX_TABLE_SIZE octets whatever the peer announces.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import hpack

# Far above any real header list (Kerberos tokens of large groups reach 64 KiB),
# far below what a bomb of repeated table references would decode to.
MAX_HEADER_LIST = 256 * 1024
# RFC 7541 section 4.2: the receiver's SETTINGS_HEADER_TABLE_SIZE bounds the
# encoder's table; we follow announced sizes up to this.
MAX_TABLE_SIZE = 64 * 1024
DEFAULT_TABLE_SIZE = 4096


class Lost(enum.Enum):
    """Why a direction's HPACK context is not known."""

    START_UNSEEN = "the capture began inside the connection"
    GAP = "a gap in the stream may have hidden header blocks"
    TOO_LARGE = "a header block was too large to keep"
    UNDECODABLE = "a header block did not decode"
    HEADER_LIST_TOO_LARGE = "a header block decoded larger than the bound"


@dataclass(frozen=True, slots=True)
class DecodedBlock:
    """The header fields of one block, in order, as sent (octets)."""

    fields: tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class NotDecodable:
    """A block seen whose fields cannot be known: `reason` says why; `new` is
    True for the block that lost the state (the others only follow from it)."""

    reason: Lost
    new: bool


class HeaderDecoder:
    """One direction's HPACK decoding context."""

    def __init__(self) -> None:
        self._decoder = hpack.Decoder(max_header_list_size=MAX_HEADER_LIST)
        self._decoder.max_allowed_table_size = DEFAULT_TABLE_SIZE
        self.lost: Lost | None = None

    def allow_table_size(self, size: int) -> None:
        """The receiver announced SETTINGS_HEADER_TABLE_SIZE (RFC 9113 section 6.5.2)."""
        self._decoder.max_allowed_table_size = min(size, MAX_TABLE_SIZE)

    def lose(self, reason: Lost) -> None:
        if self.lost is None:
            self.lost = reason

    def decode(self, block: bytes) -> DecodedBlock | NotDecodable:
        if self.lost is not None:
            return NotDecodable(self.lost, new=False)
        try:
            fields = self._decoder.decode(block, raw=True)
        except hpack.OversizedHeaderListError:
            self.lost = Lost.HEADER_LIST_TOO_LARGE
            return NotDecodable(self.lost, new=True)
        except (hpack.HPACKError, ValueError, IndexError, TypeError):
            # The library's own errors; a ValueError, IndexError or TypeError
            # from inside it on damaged input is the same fact.
            self.lost = Lost.UNDECODABLE
            return NotDecodable(self.lost, new=True)
        return DecodedBlock(tuple((bytes(name), bytes(value)) for name, value in fields))
