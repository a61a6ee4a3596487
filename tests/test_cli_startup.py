"""What a run loads before it reads a capture: the HTML template engine only
for --html (it was a tenth of the start-up of every analyze and diff)."""

from __future__ import annotations

import subprocess
import sys


def test_analyze_and_diff_load_the_template_engine_only_for_html() -> None:
    probe = (
        "import sys\n"
        "import authtrace.cli.cmd_analyze, authtrace.cli.cmd_diff\n"
        "html = [n for n in sys.modules if n == 'jinja2' or n.startswith('authtrace.report.h')]\n"
        "print(sorted(html))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
