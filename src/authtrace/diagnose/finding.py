"""A finding: one thing that went wrong (or deserves a look), with the frames
that prove it and the fix. Rule ids and field names are part of the JSON
interface; users script against them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from authtrace.handshake.model import IisTriple


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


@dataclass(frozen=True, slots=True)
class Finding:
    """rule: stable id; host: the server as the client named it; frames: the
    Wireshark frame numbers that prove it; fields: decoded evidence (user, spn,
    kdc error ...) as (name, value) pairs; iis: the IIS log triple the failing
    response most likely produced."""

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

    def field(self, name: str) -> str | None:
        for key, value in self.fields:
            if key == name:
                return value
        return None
