"""Helpers shared by the subcommands: reading captures with progress and
turning unusable input into one line and exit status 2."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from authtrace.tls.keylog import KeyLog

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


# A key log is text; a browser's grows for days. Beyond this it is not one.
MAX_KEYLOG_BYTES = 256 * 1024 * 1024


def tls_keylog_option() -> Callable:
    return click.option(
        "--tls-keylog",
        "tls_keylogs",
        multiple=True,
        metavar="FILE",
        help="TLS key log (NSS format: SSLKEYLOGFILE of browsers, curl, Python, OpenSSL) to "
        "decrypt HTTPS; repeatable. Keys embedded in a pcapng (editcap --inject-secrets) are "
        "used without it.",
    )


def read_keylogs(paths: tuple[str, ...]) -> KeyLog | None:
    """The key logs named on the command line, in one KeyLog (None for none).
    A file that cannot be read is unusable input: one line, exit status 2."""
    if not paths:
        return None
    from authtrace.tls.keylog import KeyLog

    keylog = KeyLog()
    for path in paths:
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_KEYLOG_BYTES + 1)
        except OSError as error:
            fail(f"{path}: cannot read the TLS key log: {error.strerror or error}")
        if len(data) > MAX_KEYLOG_BYTES:
            fail(f"{path}: larger than {MAX_KEYLOG_BYTES // 2**20} MiB: not a TLS key log")
        keylog.add_text(data, os.path.basename(path))
    return keylog
