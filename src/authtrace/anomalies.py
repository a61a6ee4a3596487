"""Anomalies ("weirds"): oddities found in the input, named by stable ids.

Every layer reports what it could not read as an `Anomaly` value instead of
raising out of the pipeline. The `kind` strings are part of the JSON output
and must not change once released; add new ones instead.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One oddity in the capture.

    kind: stable id, e.g. ``capture-truncated``, ``ip-fragment-incomplete``,
        ``tcp-gap``, ``http-header-too-large``.
    message: one line, plain words, for a person.
    frame: the 1-based frame number where it was seen, when there is one.
    connection: the TCP connection id, when it belongs to one.
    """

    kind: str
    message: str
    frame: int | None = None
    connection: int | None = None
