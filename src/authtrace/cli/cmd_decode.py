"""``authtrace decode``: decode one header value or token and show it.

This module owns only the command line of decoding: reading the value,
choosing tree or JSON, and the exit code (0 decoded, 2 unusable input). The
decoding is authtrace.auth.steps.decode_values; the rendering is auth.render.
"""

from __future__ import annotations

import json
import sys

import click

from authtrace.auth.kinds import Message
from authtrace.auth.malformed import Malformed
from authtrace.auth.render import format_step_tree, step_to_dict
from authtrace.auth.steps import AuthStep, decode_values
from authtrace.cli import main
from authtrace.cli.common import EXIT_UNUSABLE
from authtrace.schemas import Schema, document_head
from authtrace.visible import visible

# A pasted value bigger than this is not a header (MaxTokenSize is 64 KiB,
# about 88 KiB of base64).
MAX_INPUT = 256 * 1024


def _reason(step: AuthStep) -> str:
    inner = step.innermost
    if isinstance(inner, Malformed):
        return inner.reason
    return "the value could not be decoded"


def _refuse(reason: str) -> None:
    """One line on stderr and exit status 2, the rule for bad input everywhere."""
    click.echo(f"authtrace decode: {visible(reason)}", err=True)
    sys.exit(EXIT_UNUSABLE)


@main.command("decode")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print JSON (schema authtrace.decode/1) instead of a tree.",
)
@click.option(
    "--show-secrets",
    is_flag=True,
    help="Show passwords, NTLM responses, keys, tickets and tokens (redacted by default).",
)
@click.argument("value")
def decode_command(as_json: bool, show_secrets: bool, value: str) -> None:
    """Decode an auth header value or token (VALUE, or - to read stdin).

    \b
    Accepts what you copy from a capture, a log or the browser:
      'NTLM TlRMTVNTUAAB...'              scheme and token
      'Authorization: Negotiate YII...'   a whole header line
      'WWW-Authenticate: Negotiate, NTLM' a challenge line: every challenge
      'Negotiate, NTLM'                   challenges joined by commas, as tshark
                                          prints several headers
      'Digest realm="a, b", nonce="x", Basic realm="y"'
      Negotiate                           a scheme offered alone
      TlRMTVNTUAAB... / 4e544c4d...       a bare base64 or hex token
    Several header lines (one per line, on stdin) are decoded in order.

    \b
    Exit status: 0 decoded (a challenge list may hold a malformed one, shown
    with its reason), 2 nothing could be decoded.
    """
    if value == "-":
        # Bytes, not text: a binary paste must not fail in the codec. Tokens are
        # ASCII; anything else is replaced and then refused by the decoders.
        data = sys.stdin.buffer.read(MAX_INPUT + 1)
        value = data.decode("utf-8", "replace")
    if len(value) > MAX_INPUT:
        # Bad input is exit status 2, as for every command (cli/common.py).
        _refuse(f"input longer than {MAX_INPUT} characters")
    steps = decode_values(value)
    if all(step.message is Message.MALFORMED for step in steps):
        _refuse("; ".join(dict.fromkeys(_reason(step) for step in steps)))
    if as_json:
        document = {
            **document_head(Schema.DECODE),
            "steps": [step_to_dict(step, show_secrets) for step in steps],
        }
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        click.echo("\n\n".join(format_step_tree(step, show_secrets) for step in steps))
