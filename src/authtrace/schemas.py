"""The JSON family: the name and version of every document authtrace prints.

This module owns the `schema` tag of each `--json` document. Invariant: every
document begins with `schema` (one of `Schema`) and `authtrace` (the program
version), and its shape is the JSON Schema file docs/schemas/<name>.schema.json
(described in words in docs/json.md). Within one version fields are only
added, never renamed or removed; a change that breaks a reader raises the
version here and in the schema file together.
"""

from __future__ import annotations

import enum
from typing import Any

from authtrace import __version__


class Schema(enum.Enum):
    """One document of the family: value ``authtrace.<name>/<version>``."""

    ANALYZE = "authtrace.analyze/1"
    CONNECTIONS = "authtrace.connections/1"
    DIFF = "authtrace.diff/1"
    DECODE = "authtrace.decode/1"
    EXPLAIN = "authtrace.explain/1"
    RULES = "authtrace.rules/1"
    IISLOG = "authtrace.iislog/1"

    @property
    def document(self) -> str:
        """The name without prefix and version (`analyze`): the schema file's stem."""
        return self.value.removeprefix("authtrace.").split("/", 1)[0]


def document_head(schema: Schema) -> dict[str, Any]:
    """The two fields every document starts with."""
    return {"schema": schema.value, "authtrace": __version__}
