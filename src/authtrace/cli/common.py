"""Helpers shared by the subcommands: reading captures with progress and
turning unusable input into one line and exit status 2."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from authtrace.visible import visible

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_UNUSABLE = 2


def fail(message: str) -> None:
    """One line on stderr, exit status 2 (unusable input)."""
    click.echo(f"authtrace: {visible(message)}", err=True)
    sys.exit(EXIT_UNUSABLE)


def progress_printer(enabled: bool) -> Callable[[int], None] | None:
    """A progress callback writing 'read N frames' to stderr on a terminal."""
    if not enabled:
        return None

    def show(frames: int) -> None:
        click.echo(f"\rread {frames:,} frames", err=True, nl=False)

    return show


def wants_progress(flag: bool | None) -> bool:
    if flag is not None:
        return flag
    return sys.stderr.isatty()


def capture_argument() -> Callable:
    return click.argument("captures", nargs=-1, required=True, metavar="CAPTURE...")


def show_secrets_option() -> Callable:
    return click.option(
        "--show-secrets",
        is_flag=True,
        help="Show passwords, hashes and tokens (redacted by default).",
    )


def progress_option() -> Callable:
    return click.option(
        "--progress/--no-progress",
        default=None,
        help="Report reading progress on stderr (default: on a terminal).",
    )
