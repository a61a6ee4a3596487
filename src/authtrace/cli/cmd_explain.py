"""`authtrace explain CODE...`: what an IIS log triple, substatus, Win32/SSPI
code, Kerberos error or NTLM flag means.

Exit codes: 0 every code explained, 2 when one or more codes are unknown.
"""

from __future__ import annotations

import json

import click

from authtrace.cli import main
from authtrace.iis.codes import explain, group_codes
from authtrace.iis.render import explanation_to_dict, format_explanation
from authtrace.schemas import Schema, document_head
from authtrace.visible import visible


@main.command("explain")
@click.argument("codes", nargs=-1, required=True)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print JSON (schema authtrace.explain/1): one entry per CODE, in order.",
)
def explain_command(codes: tuple[str, ...], as_json: bool) -> None:
    """Explain CODE: 401 1 2148074248, 401.2, 2148074254, 0x8009030E,
    SEC_E_INVALID_TOKEN, ERROR_LOGON_FAILURE, a Kerberos error, an NTLM flag.

    The three status fields of an IIS log line (sc-status, sc-substatus,
    sc-win32-status) are read as one triple, quoted or not.

    \b
    Examples:
      authtrace explain 401 1 2148074248
      authtrace explain 401.2 SEC_E_INVALID_TOKEN KRB_AP_ERR_SKEW
      authtrace explain --json 401 2 5 | jq '.explanations[0]'
    """
    results = [(code, explain(code)) for code in group_codes(codes)]
    unknown = [code for code, result in results if result is None]
    if as_json:
        explanations = [
            explanation_to_dict(result) if result is not None else {"query": code, "unknown": True}
            for code, result in results
        ]
        document = {**document_head(Schema.EXPLAIN), "explanations": explanations}
        click.echo(json.dumps(document, indent=2))
    else:
        blocks = [
            format_explanation(result)
            if result is not None
            else f"{visible(code)}: unknown code (not an IIS triple, substatus, Win32/SSPI, "
            "Kerberos or NTLM flag code authtrace knows)"
            for code, result in results
        ]
        click.echo("\n\n".join(blocks))
    if unknown:
        raise SystemExit(2)
