"""The command line: the only place that prints and picks exit codes.

Each subcommand lives in its own module and registers on the `main` group.
Exit codes: 0 nothing wrong, 1 findings/differences, 2 unusable input.
"""

from __future__ import annotations

import click

from authtrace import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="authtrace")
def main() -> None:
    """Explain HTTP authentication failures (401/407) from packet captures.

    \b
    Typical use:
      authtrace analyze capture.pcapng        what went wrong, with frames and fixes
      authtrace diff working.pcap failing.pcap  where the failing capture departs
      authtrace connections capture.pcap      every TCP connection and its HTTP exchanges
      authtrace decode 'Negotiate YIIH...'    decode one header value or token
      authtrace explain '401 1 2148074248'    explain an IIS log status triple
      authtrace iislog u_ex231114.log         summarise the 401s of an IIS log
      authtrace rules                         the finding ids and what they mean
    """


def _register() -> None:
    # Subcommand modules import lazily-heavy layers; import them here so that
    # `authtrace --help` lists every command.
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        if module.name.startswith("cmd_"):
            importlib.import_module(f"{__name__}.{module.name}")


_register()
