"""A finding: one thing that went wrong (or deserves a look), with the frames
that prove it and the fix. Rule ids and field names are part of the JSON
interface; users script against them.

Invariant: every frame a finding names is a typed `Citation` (which frame,
on which connection, which message it shows, what that proves); `frames` is
derived from the citations, and the words name frames only through them
(`diagnose.context.Words`), so that a checker can hold each one against what
Wireshark shows without reading prose.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from authtrace.handshake.model import IisTriple
from authtrace.words import counted as counted  # counts in words: one copy, in authtrace.words


class Severity(enum.Enum):
    ERROR = "error"  # authentication failed, or security is broken
    WARNING = "warning"  # works, but not as intended (NTLM instead of Kerberos, lockout risk)
    INFO = "info"  # worth knowing (capture cut, gaps)

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def is_problem(self) -> bool:
        """Errors and warnings make `analyze` exit 1; info does not."""
        return self is not Severity.INFO


_RANK = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


class Role(enum.Enum):
    """What a cited frame shows, as Wireshark shows it there."""

    REQUEST = "request"  # an HTTP request head
    RESPONSE = "response"  # an HTTP response head
    KDC_REQUEST = "kdc-request"  # an AS-REQ or TGS-REQ
    KDC_REPLY = "kdc-reply"  # an AS-REP, TGS-REP or KRB-ERROR from the KDC
    KDC_CONNECT = "kdc-connect"  # a SYN to the KDC's port 88
    CLOSE = "close"  # the FIN or RST that ended a connection
    GAP = "gap"  # the frame after which TCP lost bytes


@dataclass(frozen=True, slots=True)
class Citation:
    """One frame a finding cites.

    frame: the report's frame number (stream-wide: with several streams the
        file's own number is in `name`);
    name: how the report writes it ("12", or "capture.pcap#12" when the
        captures were analysed as separate streams);
    connection: the connection id it belongs to (None for a KDC frame whose
        connection is not an HTTP one);
    role: what the frame shows;
    message: the authentication message in it (NTLM_CHALLENGE, AP_REQ ...),
        None when it carries none or the role is not an HTTP one;
    proves: what this frame shows for the finding, in a few words."""

    frame: int
    name: str
    connection: int | None
    role: Role
    message: str | None
    proves: str

    def __format__(self, spec: str) -> str:
        return format(self.name, spec)


# How a title names several values of a LIST field ("108 users").
_PLURAL = {
    "user": "users",
    "workstation": "workstations",
    "client": "clients",
    "clients": "client groups",
    "authenticated_client": "authenticated clients",
    "client_principal": "client principals",
    "stream": "streams",
    "challenge_stream": "streams",
    "authenticate_stream": "streams",
}


def plural_of(name: str) -> str:
    """How the report names several values of field `name` ("users")."""
    return _PLURAL.get(name, f"{name.replace('_', ' ')} values")


# The occurrences of a folded finding a report draws: the first few and the last.
EXAMPLES_FIRST = 3


@dataclass(frozen=True, slots=True)
class FieldValue:
    """One value a field took in the occurrences of a folded finding.

    value: as the rule wrote it; count: how many times the problem was met with
    it (the occurrences that carried it, or, for a rule that counts its own
    repeats in a SUM field such as `failures`, their total);
    connections: the connections of those occurrences (sorted)."""

    value: str
    count: int
    connections: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class FieldValues:
    """The distinct values of one field across a folded finding's occurrences,
    most frequent first (then by value): e.g. every user whose logon failed."""

    name: str
    values: tuple[FieldValue, ...]


@dataclass(frozen=True, slots=True)
class Finding:
    """rule: stable id; host: the server as the client named it; frames: the
    Wireshark frame numbers that prove it (those of `citations`, sorted);
    fields: decoded evidence (user, spn, kdc error ...) as (name, value) pairs
    (in a folded finding, those every occurrence shares);
    iis: the IIS log triple the failing response most likely produced;
    citations: what each frame shows and proves, in the order first named;
    occurrences: how many times the rule met this problem (1 unless folded by
    `diagnose.merge_repeats`);
    values: in a folded finding, the fields whose value differs between
    occurrences (or that some occurrences lack), each with its distinct values;
    parts: in a folded finding, every occurrence as its rule reported it, in
    order (the first tells the story): what folding again starts from, and what
    a `--host`/`--client` filter folds again from the occurrences it keeps;
    () otherwise. (The findings as the rules reported them, as before folding:
    folding adds the aggregates, it does not multiply the memory of findings.)"""

    rule: str
    severity: Severity
    title: str
    explanation: str
    fix: str
    host: str | None
    connections: tuple[int, ...]
    frames: tuple[int, ...]
    fields: tuple[tuple[str, str], ...] = ()
    iis: IisTriple | None = None
    citations: tuple[Citation, ...] = ()
    values: tuple[FieldValues, ...] = ()
    parts: tuple[Finding, ...] = ()

    @property
    def occurrences(self) -> int:
        """How many times the rule met this problem: 1, or its parts when folded."""
        return len(self.parts) or 1

    @property
    def original(self) -> Finding:
        """The finding as its rule reported it (the first occurrence when folded)."""
        return self.parts[0] if self.parts else self

    @property
    def occurrences_kept(self) -> tuple[Finding, ...]:
        """Every occurrence as its rule reported it: its parts, or itself."""
        return self.parts or (self,)

    @property
    def examples(self) -> tuple[Finding, ...]:
        """The occurrences a report draws: the first EXAMPLES_FIRST and the last."""
        kept = self.occurrences_kept
        return kept[:EXAMPLES_FIRST] + kept[EXAMPLES_FIRST:][-1:]

    def name_of(self, frame: int) -> str:
        """How the report writes `frame` ("12" or "capture.pcap#12")."""
        for citation in self.citations:
            if citation.frame == frame:
                return citation.name
        return str(frame)

    def field(self, name: str) -> str | None:
        for key, value in self.fields:
            if key == name:
                return value
        return None
