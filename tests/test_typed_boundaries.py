"""Typed boundaries: what crosses a layer as an enum is compared as one.

Close reasons, directions, step kinds, realms, legs, states, outcomes,
mechanisms, messages and severities are enums; comparing one of these
attributes with a string literal (`connection.close_reason == "rst"`) is
always false once the value is an enum, so it is a bug that no type checker
run by the suite would see. This test reads the source (ast) and refuses it.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "authtrace"
ENUM_ATTRIBUTES = frozenset(
    {
        "close_reason",
        "closed_by",
        "direction",
        "reason",
        "kind",
        "realm",
        "leg",
        "state",
        "state_after",
        "state_before",
        "outcome",
        "mechanism",
        "message",
        "wrapper",
        "severity",
        "presence",
    }
)
# (module, attribute) pairs whose value is a plain string by design.
PLAIN = {
    ("iis/w3c.py", "reason"),  # a sentence for a person
}


def _literal(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return True
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_literal(element) for element in node.elts)
    return False


def _enum_attribute(node: ast.AST) -> str | None:
    """`x.close_reason`, or its `x.close_reason.value`: the attribute's name."""
    if isinstance(node, ast.Attribute) and node.attr == "value":
        node = node.value
    return node.attr if isinstance(node, ast.Attribute) else None


def _comparisons(tree: ast.AST):  # type: ignore[no-untyped-def]
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            names = [n for o in operands if (n := _enum_attribute(o)) is not None]
            if any(n in ENUM_ATTRIBUTES for n in names) and any(_literal(o) for o in operands):
                yield node.lineno, next(n for n in names if n in ENUM_ATTRIBUTES)


def test_no_enum_attribute_is_compared_with_a_string_literal() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        module = str(path.relative_to(SRC))
        for line, attribute in _comparisons(ast.parse(path.read_text(), module)):
            if (module, attribute) not in PLAIN:
                found.append(f"{module}:{line}: .{attribute} compared with a string")
    assert not found, "\n".join(found)


def test_the_check_sees_a_comparison_with_a_literal() -> None:
    tree = ast.parse(
        'if connection.close_reason == "rst" or gap.direction in ("to_server",): pass\n'
        'if f.severity.value in ("error", "warning"): pass'
    )
    found = sorted(attribute for _, attribute in _comparisons(tree))
    assert found == ["close_reason", "direction", "severity"]
