"""Key logs: the NSS key log format (SSLKEYLOGFILE of browsers, curl, OpenSSL,
Python; the IETF draft draft-ietf-tls-keylogfile) and the same text carried in
pcapng Decryption Secrets Blocks (secrets type 0x544c534b, "TLSK").

Owns: reading key log text into a `KeyLog` (secrets by label and client
random), and counting what it read: secrets, comments, blank lines, lines it
could not read and labels it does not use.

Invariant: a line is taken whole or not at all; secrets never leave this
module in any message (only counts and labels do). Memory is bounded by
MAX_ENTRIES secrets and MAX_LINE bytes per line.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

# A line longer than this is not a key log line (the longest valid one, a
# SHA-384 secret, is 31 + 1 + 64 + 1 + 96 characters).
MAX_LINE = 1024
MAX_ENTRIES = 1_000_000

# pcapng Decryption Secrets Block, secrets type for a TLS key log
# (draft-ietf-opsawg-pcapng section 4.7.2).
DSB_TLS_KEY_LOG = 0x544C534B


class Label(enum.Enum):
    """The labels of the NSS key log format that authtrace uses."""

    CLIENT_RANDOM = "CLIENT_RANDOM"  # TLS 1.2 and earlier: the 48-byte master secret
    CLIENT_HANDSHAKE_TRAFFIC_SECRET = "CLIENT_HANDSHAKE_TRAFFIC_SECRET"
    SERVER_HANDSHAKE_TRAFFIC_SECRET = "SERVER_HANDSHAKE_TRAFFIC_SECRET"
    CLIENT_TRAFFIC_SECRET_0 = "CLIENT_TRAFFIC_SECRET_0"
    SERVER_TRAFFIC_SECRET_0 = "SERVER_TRAFFIC_SECRET_0"


# Labels of the format that decrypt nothing authtrace reads (0-RTT data,
# exporters) or need what a capture does not hold (RSA: the pre-master secret
# by encrypted pre-master prefix): counted, not kept.
_KNOWN_UNUSED = frozenset(
    {"CLIENT_EARLY_TRAFFIC_SECRET", "EARLY_EXPORTER_SECRET", "EXPORTER_SECRET", "RSA"}
)
# OpenSSL also logs the secrets after each KeyUpdate (CLIENT_TRAFFIC_SECRET_N,
# or numbered): authtrace derives those itself (RFC 8446 section 7.2).
_LATER_SECRET = re.compile(r"(?:CLIENT|SERVER)_TRAFFIC_SECRET_(?:N|[1-9][0-9]*)")
_BY_NAME = {label.value: label for label in Label}
_LINE = re.compile(rb"([A-Z0-9_]{1,64}) ([0-9A-Fa-f]{16,128}) ([0-9A-Fa-f]{2,256})")


@dataclass(frozen=True, slots=True)
class KeyLogCounts:
    """What the key logs given held, line by line.

    secrets: lines kept (one secret each); duplicates: lines repeating a kept
    secret; comments and blank lines; unused: valid lines with a label
    authtrace does not use (0-RTT, exporters, RSA, secrets after a KeyUpdate);
    garbage: lines that are not key log lines; first_garbage: where the first
    of those is ("keys.log line 3"), "" when there is none; sources: files and
    pcapng blocks read; dropped: secrets beyond MAX_ENTRIES.
    """

    secrets: int = 0
    duplicates: int = 0
    comments: int = 0
    blank: int = 0
    unused: int = 0
    garbage: int = 0
    first_garbage: str = ""
    sources: int = 0
    dropped: int = 0


@dataclass
class KeyLog:
    """Secrets by (label, client random). Fill it with `add_text`; read it with `get`."""

    _secrets: dict[tuple[Label, bytes], bytes] = field(default_factory=dict)
    _counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            (
                "secrets",
                "duplicates",
                "comments",
                "blank",
                "unused",
                "garbage",
                "sources",
                "dropped",
            ),
            0,
        )
    )
    _first_garbage: str = ""

    def add_text(self, data: bytes, source: str) -> None:
        """Read one key log (a file's bytes or a Decryption Secrets Block's).
        `source` names it in counts ("keys.log", "pcapng block at frame 1")."""
        counts = self._counts
        counts["sources"] += 1
        lines = data.split(b"\n")
        if lines and not lines[-1]:
            lines.pop()  # what follows the last newline is not a line
        for number, raw in enumerate(lines, start=1):
            line = raw.strip()
            if not line:
                counts["blank"] += 1
                continue
            if line.startswith(b"#"):
                counts["comments"] += 1
                continue
            match = _LINE.fullmatch(line) if len(line) <= MAX_LINE else None
            if match is None:
                self._garbage(source, number)
                continue
            name = match.group(1).decode("ascii")
            label = _BY_NAME.get(name)
            if label is None:
                if name in _KNOWN_UNUSED or _LATER_SECRET.fullmatch(name):
                    counts["unused"] += 1
                else:
                    self._garbage(source, number)
                continue
            random = bytes.fromhex(match.group(2).decode("ascii"))
            secret_hex = match.group(3).decode("ascii")
            if len(random) != 32 or len(secret_hex) % 2 or not _sized(label, len(secret_hex) // 2):
                self._garbage(source, number)
                continue
            key = (label, random)
            secret = bytes.fromhex(secret_hex)
            if key in self._secrets:
                counts["duplicates"] += 1
            elif len(self._secrets) >= MAX_ENTRIES:
                counts["dropped"] += 1
            else:
                self._secrets[key] = secret
                counts["secrets"] += 1

    def _garbage(self, source: str, number: int) -> None:
        self._counts["garbage"] += 1
        if not self._first_garbage:
            self._first_garbage = f"{source} line {number}"

    def get(self, label: Label, client_random: bytes) -> bytes | None:
        return self._secrets.get((label, client_random))

    def __len__(self) -> int:
        return len(self._secrets)

    @property
    def counts(self) -> KeyLogCounts:
        return KeyLogCounts(**self._counts, first_garbage=self._first_garbage)


def _sized(label: Label, length: int) -> bool:
    """A master secret is 48 bytes (RFC 5246 section 8.1); a TLS 1.3 traffic
    secret is as long as the suite's hash: 32 (SHA-256) or 48 (SHA-384)."""
    if label is Label.CLIENT_RANDOM:
        return length == 48
    return length in (32, 48)
