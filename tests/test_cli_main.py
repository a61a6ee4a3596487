"""The `authtrace` group itself: commands load on demand, --help lists them
all, and the process-wide garbage-collector setting is undone after a command."""

from __future__ import annotations

import gc
import subprocess
import sys

from click.testing import CliRunner

from authtrace.cli import _COMMAND_MODULES, main

COMMANDS = {"analyze", "connections", "decode", "diff", "explain", "iislog", "rules"}


def test_help_lists_every_command() -> None:
    assert set(_COMMAND_MODULES) == COMMANDS
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    listed = {line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line}
    assert listed == COMMANDS


def test_unknown_command_is_a_one_line_usage_error() -> None:
    result = CliRunner().invoke(main, ["analyse", "x.pcap"])
    assert result.exit_code == 2
    assert "No such command 'analyse'" in result.output
    assert "Traceback" not in result.output


def test_a_command_imports_only_what_it_needs() -> None:
    probe = (
        "import sys\n"
        "from authtrace.cli import main\n"
        "try:\n"
        "    main(['explain', '401.2'], standalone_mode=False)\n"
        "finally:\n"
        "    loaded = sorted(m for m in sys.modules if m.startswith('authtrace.cli.cmd_'))\n"
        "    print(loaded, file=sys.stderr)\n"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert run.stderr.strip().splitlines()[-1] == "['authtrace.cli.cmd_explain']"


def test_garbage_collector_setting_is_restored() -> None:
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    seen: list[tuple[int, ...]] = []
    original = gc.set_threshold

    def spy(*values: int) -> None:
        seen.append(values)
        original(*values)

    gc.set_threshold = spy  # type: ignore[assignment]
    try:
        result = CliRunner().invoke(main, ["explain", "401 1 2148074248"])
    finally:
        gc.set_threshold = original  # type: ignore[assignment]
    assert result.exit_code == 0
    assert seen and seen[0] != before and seen[-1] == before
    assert gc.get_threshold() == before and gc.get_freeze_count() == frozen


def test_ctrl_c_is_status_130_and_one_line(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Ctrl-C in any command (here while analyze reads) is status 130 with one
    line, not click's "Aborted!" with status 1, which reads as "findings"."""
    from pathlib import Path

    from authtrace.cli import cmd_analyze

    def interrupted(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(cmd_analyze, "analyze", interrupted)
    capture = Path(__file__).resolve().parent.parent / "captures/scenarios/pooling-proxy.pcap"
    result = CliRunner().invoke(main, ["analyze", str(capture)])
    assert result.exit_code == 130
    assert result.output.strip().splitlines() == ["authtrace: interrupted"]
