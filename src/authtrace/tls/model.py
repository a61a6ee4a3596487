"""What the TLS layer tells the layers after it: per-connection handshake facts
and, for a connection whose content stayed encrypted, its summary.

Owns: these values only (frozen, picklable); connection.py fills them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from authtrace.anomalies import Anomaly
from authtrace.tcp.events import Endpoint


class KeyStatus(enum.Enum):
    """Whether the connection could be decrypted, and if not, why."""

    DECRYPTED = "decrypted"  # keys found and records opened
    NO_KEY_LOG = "no_key_log"  # no key log was given at all
    KEY_MISSING = "key_missing"  # the key log has no line for this client random
    NO_HANDSHAKE = "no_handshake"  # the hellos were not captured: keys cannot be matched
    UNSUPPORTED = "unsupported"  # a cipher suite or version authtrace cannot decrypt
    WRONG_KEY = "wrong_key"  # keys found, but records did not open
    PENDING = "pending"  # handshake not finished when the connection ended


@dataclass(frozen=True, slots=True)
class TlsFacts:
    """What the handshake said, and how decryption went.

    version, cipher_suite: names ("TLS 1.3", "TLS_AES_128_GCM_SHA256"), "" when
    the ServerHello was not seen; server_name: SNI ("" when absent); alpn_offered
    and alpn: protocols the client offered and the server chose ("" when none);
    certificates: the server's chain, DER, leaf first (empty when not seen or
    encrypted without keys); client_random: hex, to look the connection up in a
    key log (public: it travels in clear in the ClientHello); keys: see
    KeyStatus; records_opened / records_failed: protected records opened and
    not opened; records_counted: TLS 1.2 AEAD records that only carried body
    bytes, counted without being decrypted (tls/connection.py); key_updates:
    TLS 1.3 KeyUpdate messages followed.
    """

    version: str
    cipher_suite: str
    server_name: str
    alpn_offered: tuple[str, ...]
    alpn: str
    certificates: tuple[bytes, ...]
    client_random: str
    keys: KeyStatus
    records_opened: int
    records_failed: int
    key_updates: int = 0
    resumed: bool = False
    records_counted: int = 0


@dataclass(frozen=True, slots=True)
class EncryptedConnection:
    """A TLS connection whose HTTP could not be read (no key, wrong key, HTTP/2
    not decoded yet, not HTTP at all): listed so that nothing is said to be
    absent. client/server: as TCP saw them (the ClientHello's sender is the
    client); frames: first and last; anomalies: the TLS layer's."""

    id: int
    client: Endpoint
    server: Endpoint
    first_frame: int
    last_frame: int
    facts: TlsFacts
    anomalies: tuple[Anomaly, ...] = ()


@dataclass(frozen=True, slots=True)
class EncryptedGroup:
    """TLS connections not read that look the same to an administrator: one
    server (SNI and address), version, ALPN and reason. count: how many;
    first_frame: where the first of them starts."""

    server_name: str
    server: Endpoint
    version: str
    alpn: str
    alpn_offered: tuple[str, ...]
    keys: KeyStatus
    count: int
    first_frame: int


class NotReadTally:
    """The TLS connections whose HTTP could not be read, kept in bounded memory:
    the first MAX_LISTED in full, and every one counted in its group (at most
    MAX_GROUPS groups; connections beyond those are counted in `ungrouped`).
    Cost: O(1) per connection."""

    MAX_LISTED = 1000
    MAX_GROUPS = 1000

    def __init__(self) -> None:
        self.listed: list[EncryptedConnection] = []
        self.total = 0
        self.ungrouped = 0
        self._groups: dict[tuple[object, ...], list[int]] = {}
        self._first: dict[tuple[object, ...], EncryptedConnection] = {}
        # Where each connection was added in a run (`add`'s order), for `merged`.
        self._orders: dict[int, Any] = {}

    def add(self, connection: EncryptedConnection, order: Any = None) -> None:
        """order: where in the run the connection was met, when several
        tallies of parts of one run are to be `merged` (any comparable value)."""
        self.total += 1
        listed = len(self.listed) < self.MAX_LISTED
        if listed:
            self.listed.append(connection)
        key = self._key(connection)
        counted = self._groups.get(key)
        if counted is not None:
            counted[0] += 1
        elif len(self._groups) < self.MAX_GROUPS:
            self._groups[key] = [1]
            self._first[key] = connection
            listed = True
        else:
            self.ungrouped += 1
        if order is not None and listed:
            self._orders[connection.id] = order

    @staticmethod
    def _key(connection: EncryptedConnection) -> tuple[object, ...]:
        facts = connection.facts
        return (
            facts.server_name,
            connection.server,
            facts.version,
            facts.alpn,
            facts.alpn_offered,
            facts.keys,
        )

    @classmethod
    def merged(cls, parts: list[NotReadTally]) -> NotReadTally:
        """One tally of a run read in parts (each added with its order): the
        same as one tally of the whole run while the groups of all parts
        number at most MAX_GROUPS."""
        whole = cls()
        orders = {c_id: order for part in parts for c_id, order in part._orders.items()}
        listed = sorted((c for part in parts for c in part.listed), key=lambda c: orders[c.id])
        whole.listed = listed[: cls.MAX_LISTED]
        whole.total = sum(part.total for part in parts)
        whole.ungrouped = sum(part.ungrouped for part in parts)
        firsts = sorted(
            (
                (orders[first.id], key, part._groups[key][0], first)
                for part in parts
                for key, first in part._first.items()
            ),
            key=lambda item: item[0],
        )
        for _order, key, count, first in firsts:
            counted = whole._groups.get(key)
            if counted is not None:
                counted[0] += count
            elif len(whole._groups) < cls.MAX_GROUPS:
                whole._groups[key] = [count]
                whole._first[key] = first
            else:
                whole.ungrouped += count
        return whole

    def groups(self) -> tuple[EncryptedGroup, ...]:
        """The groups in order of their first connection."""
        out = []
        for key, (count,) in self._groups.items():
            first = self._first[key]
            facts = first.facts
            out.append(
                EncryptedGroup(
                    facts.server_name,
                    first.server,
                    facts.version,
                    facts.alpn,
                    facts.alpn_offered,
                    facts.keys,
                    count,
                    first.first_frame,
                )
            )
        return tuple(sorted(out, key=lambda g: g.first_frame))
