"""`authtrace rules`: every finding id authtrace can report, with its meaning."""

from __future__ import annotations

import json

import click

from authtrace.cli import main
from authtrace.diagnose import RULE_DESCRIPTIONS


@main.command("rules")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object: id -> meaning.")
def rules_command(as_json: bool) -> None:
    """List the finding ids of `authtrace analyze` and what each means.

    The ids are stable: scripts may select findings by them
    (e.g. `jq '.findings[] | select(.rule == "ntlm-handshake-split")'`).
    """
    if as_json:
        click.echo(json.dumps(RULE_DESCRIPTIONS, indent=2))
        return
    width = max(len(rule) for rule in RULE_DESCRIPTIONS)
    for rule, meaning in RULE_DESCRIPTIONS.items():
        click.echo(f"{rule:<{width}}  {meaning}")
