"""Runtime dependencies are what the package imports (issue 11 item 16).

pyproject.toml's `dependencies` must name exactly the third-party
distributions that src/ imports, and its `test` extra those that tests/,
scripts/ and benchmarks/ import besides; lab/ installs its own (lab/system.py).
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Distribution name -> the top-level module it provides, where they differ.
MODULE_OF = {"pyspnego": "spnego", "dissect.etl": "dissect"}
LOCAL = {"authtrace", "tests", "benchmarks", "lab", "scripts"}


def _imports(folder: Path) -> set[str]:
    """Top-level names of the absolute imports in every .py file under folder."""
    local = {path.stem for path in folder.rglob("*.py")} | {
        path.name for path in folder.rglob("*") if path.is_dir()
    }
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names} - LOCAL - local


def _modules(requirements: list[str]) -> set[str]:
    names = {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements}
    return {MODULE_OF.get(name, name) for name in names}


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_runtime_dependencies_are_what_src_imports() -> None:
    declared = _modules(_project()["dependencies"])
    assert declared == _imports(ROOT / "src")
    assert "scapy" not in declared and "pyshark" not in declared


def test_the_test_extra_covers_what_tests_scripts_and_benchmarks_import() -> None:
    runtime = _modules(_project()["dependencies"])
    test = _modules(_project()["optional-dependencies"]["test"])
    folders = ("tests", "scripts", "benchmarks")
    used = set().union(*(_imports(ROOT / d) for d in folders))
    # tests/_timelines.py imports the scenario captures' token factories from scripts/.
    used -= {path.stem for d in folders for path in (ROOT / d).rglob("*.py")}
    assert used - runtime <= test, used - runtime - test
    assert test - used <= {"pytest"}, test - used  # pytest is the runner, not imported by all
