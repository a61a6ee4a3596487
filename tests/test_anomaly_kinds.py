"""Anomaly kinds are declared once (anomalies.AnomalyKind) and documented.

Every layer passes an anomaly kind as an `AnomalyKind` member, never as a
string; every anomaly the pipeline reports on
the repository's captures carries a declared kind; docs/json.md lists them.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from authtrace.anomalies import AnomalyKind
from authtrace.pipeline import CaptureError, analyze

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "authtrace"
CAPTURES = sorted(
    p for p in (ROOT / "captures").rglob("*") if p.is_file() and p.suffix not in {".md", ".json"}
)
# Callables that take an anomaly kind among their arguments.
KIND_TAKERS = frozenset({"Anomaly", "_anomaly", "_dead", "_Malformed", "_report"})
_ID = re.compile(r"[a-z0-9]+(-[a-z0-9]+)+")


def _kinds_passed(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, id) of every string literal shaped like an id given to a kind taker."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name not in KIND_TAKERS:
            continue
        for arg in [*node.args, *(k.value for k in node.keywords)]:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                if _ID.fullmatch(arg.value):
                    found.append((node.lineno, arg.value))
    return found


def test_every_kind_given_in_the_source_is_the_enum() -> None:
    """Producers pass `AnomalyKind` members, never the id as a string (mypy
    says the same of `Anomaly(...)`; this also covers the helpers that take a
    kind), so a misspelt id cannot reach the output."""
    literal = [
        f"{path.relative_to(SRC)}:{line}: {kind!r}"
        for path in sorted(SRC.rglob("*.py"))
        for line, kind in _kinds_passed(ast.parse(path.read_text()))
    ]
    assert not literal, "pass anomalies.AnomalyKind members instead:\n" + "\n".join(literal)


def test_the_source_check_sees_a_string_kind() -> None:
    tree = ast.parse('self._anomaly("http-made-up", "x")\nAnomaly(AnomalyKind.TCP_GAP, "y")')
    assert _kinds_passed(tree) == [(1, "http-made-up")]


def test_reported_anomalies_carry_declared_kinds() -> None:
    analysed, kinds = 0, set()
    for capture in CAPTURES:
        try:
            report = analyze([capture])
        except CaptureError:
            continue  # an unusable file on purpose: one line, no report
        analysed += 1
        kinds |= {anomaly.kind for anomaly in report.anomalies}
    assert analysed > 50 and kinds
    undeclared = {kind for kind in kinds if kind not in AnomalyKind._value2member_map_}
    assert not undeclared


def test_docs_list_every_kind() -> None:
    text = (ROOT / "docs" / "json.md").read_text()
    missing = [kind.value for kind in AnomalyKind if f"`{kind.value}`" not in text]
    assert not missing, missing
