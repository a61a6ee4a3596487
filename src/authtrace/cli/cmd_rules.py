"""`authtrace rules`: every finding id authtrace can report, with its severity and
meaning, and for named ids what evidence the rule needs; all of it read from the
rule declarations (diagnose/rule.py), never written here."""

from __future__ import annotations

import json
import textwrap

import click

from authtrace.cli import main
from authtrace.diagnose import ALL_RULES, RULES_BY_ID, Across, Rule
from authtrace.schemas import Schema, document_head


@main.command("rules")
@click.argument("rule_ids", nargs=-1, metavar="[ID]...")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print JSON (schema authtrace.rules/1): each rule's id, severity, family, meaning, "
    "the evidence it needs and how it reads a long capture (across).",
)
def rules_command(rule_ids: tuple[str, ...], as_json: bool) -> None:
    """List the finding ids of `authtrace analyze`, the most severe each can be
    (error, warning, info) and what each means. Name one or more ids to read what
    evidence each rule needs before it reports.

    The ids are stable: scripts may select findings by them
    (e.g. `jq '.findings[] | select(.rule == "ntlm-handshake-split")'`).
    """
    unknown = [rule_id for rule_id in rule_ids if rule_id not in RULES_BY_ID]
    if unknown:
        raise click.UsageError(f"unknown rule id {unknown[0]!r}; `authtrace rules` lists them all")
    if as_json:
        wanted = set(rule_ids)
        rules = [rule_to_dict(r) for r in ALL_RULES if not wanted or r.id in wanted]
        click.echo(json.dumps({**document_head(Schema.RULES), "rules": rules}, indent=2))
        return
    if rule_ids:
        click.echo("\n\n".join(format_rule(RULES_BY_ID[rule_id]) for rule_id in rule_ids))
        return
    click.echo(format_rule_list(ALL_RULES))


def rule_to_dict(declared: Rule) -> dict[str, str | None]:
    return {
        "id": declared.id,
        "severity": declared.severity.value,
        "family": declared.family,
        "meaning": declared.meaning,
        "evidence": declared.evidence or None,
        "across": declared.across.value,
    }


def format_rule_list(rules: tuple[Rule, ...]) -> str:
    width = max(len(declared.id) for declared in rules)
    return "\n".join(
        f"{declared.id:<{width}}  {declared.severity.value:<7}  {declared.meaning}"
        for declared in rules
    )


def format_rule(declared: Rule) -> str:
    """One rule in full: id, severity, family, meaning, the evidence it needs
    and how it reads a long capture."""
    evidence = textwrap.indent(declared.evidence or "(not documented)", "  ")
    return (
        f"{declared.id} ({declared.severity.value} at most; {declared.family} rules)\n"
        f"  {declared.meaning}\n"
        f"Evidence it needs:\n{evidence}\n"
        f"Reads: {_ACROSS_WORDS[declared.across]}"
    )


_ACROSS_WORDS = {
    Across.BLOCK: "each stretch of the capture with the connections linked to it "
    "(its findings are about one connection or linked ones)",
    Across.CAPTURE: "the whole capture at once (it counts or groups across all connections)",
}
