"""Rules as data: each rule is declared once (diagnose/rule.py) and everything
that lists rules — `authtrace rules`, the README's table, the JSON descriptions —
is derived from the declarations; a finding a declaration does not cover is an
error."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from authtrace.cli import main
from authtrace.diagnose import ALL_RULES, RULE_DESCRIPTIONS, RULE_IDS, RULES_BY_ID, diagnose
from authtrace.diagnose.context import RuleContext
from authtrace.diagnose.finding import Finding, Severity
from authtrace.diagnose.rule import Rule, RuleDeclarationError, rule
from authtrace.handshake.links import link

README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_rule_table() -> list[tuple[str, str, str]]:
    text = README.read_text()
    section = text.split("### Rule ids", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| (\w+) \| (.+) \|$", section, re.MULTILINE)
    return [(rule_id, severity, meaning) for rule_id, severity, meaning in rows]


def test_readme_table_is_the_declarations() -> None:
    declared = [(r.id, r.severity.value, r.meaning) for r in ALL_RULES]
    expected = "\n".join(f"| `{i}` | {s} | {m} |" for i, s, m in declared)
    assert _readme_rule_table() == declared, f"README's rule table should read:\n{expected}"


def test_every_rule_is_declared_once_with_its_evidence() -> None:
    assert len(RULE_IDS) == len(ALL_RULES) == len(set(RULE_IDS))
    for declared in ALL_RULES:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", declared.id), declared.id
        assert "\n" not in declared.meaning and declared.meaning, declared.id
        assert declared.evidence.startswith("Needs "), declared.id
        assert declared.family in {
            "topology",
            "negotiation",
            "kerberos",
            "ntlm",
            "http2",
            "credentials",
            "capture",
            "iis",
        }
        assert RULES_BY_ID[declared.id] is declared
    assert RULE_DESCRIPTIONS == {r.id: r.meaning for r in ALL_RULES}


def _finding(rule_id: str, severity: Severity) -> Finding:
    return Finding(rule_id, severity, "t", "e", "f", None, (), (1,))


def _empty_context() -> RuleContext:
    return RuleContext(view=link([], 0.0, 0.0), kdc=())


def test_a_finding_with_another_id_is_an_error() -> None:
    @rule("made-up-rule", Severity.WARNING, "test")
    def liar(ctx: RuleContext) -> Iterator[Finding]:
        """Needs nothing."""
        yield _finding("some-other-id", Severity.WARNING)

    with pytest.raises(RuleDeclarationError, match="some-other-id"):
        list(liar(_empty_context()))


def test_a_finding_more_severe_than_declared_is_an_error() -> None:
    @rule("made-up-rule", Severity.WARNING, "test")
    def alarmist(ctx: RuleContext) -> Iterator[Finding]:
        """Needs nothing."""
        yield _finding("made-up-rule", Severity.WARNING)
        yield _finding("made-up-rule", Severity.ERROR)

    assert isinstance(alarmist, Rule)
    found = alarmist(_empty_context())
    assert next(found).severity is Severity.WARNING
    with pytest.raises(RuleDeclarationError, match="warning at most"):
        next(found)


def test_diagnose_reports_a_broken_declaration_as_an_analysis_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import authtrace.diagnose as diagnose_module

    @rule("made-up-rule", Severity.INFO, "test")
    def broken(ctx: RuleContext) -> Iterator[Finding]:
        """Needs nothing."""
        yield _finding("undeclared-id", Severity.INFO)

    monkeypatch.setattr(diagnose_module, "ALL_RULES", (broken,))
    # What a user's run does; the suite's strict mode would raise instead.
    monkeypatch.setattr("authtrace.strict._strict", False)
    findings, anomalies = diagnose(_empty_context())
    assert findings == []
    assert [a.kind for a in anomalies] == ["analysis-error"]
    assert "made-up-rule" in anomalies[0].message


def test_rules_command_lists_the_declarations() -> None:
    result = CliRunner().invoke(main, ["rules"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert len(lines) == len(ALL_RULES)
    for line, declared in zip(lines, ALL_RULES, strict=True):
        assert line.split()[:2] == [declared.id, declared.severity.value]
        assert line.endswith(declared.meaning)


def test_rules_command_explains_one_rule() -> None:
    declared = RULES_BY_ID["ntlm-handshake-split"]
    result = CliRunner().invoke(main, ["rules", "ntlm-handshake-split"])
    assert result.exit_code == 0
    assert declared.meaning in result.output
    assert "MsvAvTimestamp" in result.output  # from the check's docstring
    unknown = CliRunner().invoke(main, ["rules", "no-such-rule"])
    assert unknown.exit_code == 2
    assert "no-such-rule" in unknown.output


def test_rules_json_is_the_declared_meanings() -> None:
    result = CliRunner().invoke(main, ["rules", "--json"])
    assert result.exit_code == 0
    document = json.loads(result.output)
    assert document["schema"] == "authtrace.rules/1"
    assert {r["id"]: r["meaning"] for r in document["rules"]} == RULE_DESCRIPTIONS
    assert [r["id"] for r in document["rules"]] == list(RULE_DESCRIPTIONS)
