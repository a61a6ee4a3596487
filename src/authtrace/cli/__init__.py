"""The command line: the only place that prints and picks exit codes.

Each subcommand lives in its own module (`cmd_<name>`) and registers on the
`main` group when imported; the group imports only the module of the command
that runs (importing every command cost `connections` 30 ms of modules it
does not use), and all of them for `--help`.
Exit codes: 0 nothing wrong, 1 findings/differences, 2 unusable input, 130
interrupted (Ctrl-C: one line on stderr, never click's "Aborted!" with status 1,
which a script would take for "findings").
"""

from __future__ import annotations

import gc
import importlib
import pkgutil

import click

from authtrace import __version__

# The exit status of a run stopped by Ctrl-C.
INTERRUPTED = 130


class _LazyGroup(click.Group):
    """A group whose commands are imported when first asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = _COMMAND_MODULES.get(cmd_name)
        if module is not None and cmd_name not in self.commands:
            importlib.import_module(f"{__name__}.{module}")
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> object:
        """Run the command; Ctrl-C ends it with status 130 (128 + SIGINT, as a
        shell reports it), so that no script reads an interrupted run as
        "findings" (1). What was being read is not reported: a report of part
        of a capture would say "not seen" of everything after the cut."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("authtrace: interrupted", err=True)
            ctx.exit(INTERRUPTED)


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="authtrace")
@click.pass_context
def main(ctx: click.Context) -> None:
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
    _tune_garbage_collector(ctx)


def _tune_garbage_collector(ctx: click.Context) -> None:
    """Fewer cycle collections for the run of one command.

    Reading a capture allocates millions of short-lived objects and almost no
    reference cycles. The default threshold (a young collection every 700 net
    allocations, older generations every tenth of those, the oldest walking
    the tens of thousands of objects the imports created) cost 3% of a 600 MB
    benchmark run. The objects that exist once the command is imported are
    set aside (gc.freeze) and young collections come every 10,000
    allocations: cycles are still collected, memory stays bounded. Both are
    undone when the command ends, for callers that run several commands in
    one process (tests through CliRunner).
    """
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)

    def restore() -> None:
        gc.set_threshold(*threshold)
        gc.unfreeze()

    ctx.call_on_close(restore)


# Command name -> the module that defines it (found once, without importing).
_COMMAND_MODULES = {
    module.name.removeprefix("cmd_"): module.name
    for module in pkgutil.iter_modules(__path__)
    if module.name.startswith("cmd_")
}
