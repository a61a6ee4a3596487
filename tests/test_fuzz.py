"""A bounded mutation fuzz campaign over the repository's captures.

Fixed seeds, a few hundred mutants (scripts/fuzzing/mutate.py: bit flips,
truncation, huge length fields, duplicated / removed / swapped records, damaged
tokens inside base64), each through `analyze --json`, and in turn `connections
--json` and the text of `analyze`. Whatever the damage: the exit status is 0, 1
or 2, nothing escapes as an exception (strict mode is on: an internal error is
a failure here, not an anomaly), the JSON parses, the text carries no raw
control character, and no secret of the seed is printed. `scripts/fuzz` runs
the same for hours, over any seed folder.
"""

from __future__ import annotations

import json
import random
import re
import sys
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from authtrace.cli import main

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from scripts.fuzzing.mutate import mutants, secrets_of  # noqa: E402

SEEDS = sorted(
    p
    for p in (ROOT / "captures").rglob("*")
    if p.is_file() and p.suffix in {".pcap", ".pcapng", ".cap", ".gz"} and p.stat().st_size < 2**20
)
PER_SEED = 3
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def _check(args: list[str], data: bytes, secrets: list[bytes], where: str, keep: Path) -> None:
    result = CliRunner().invoke(main, args + ["-"], input=data)
    problem = None
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        problem = f"raised {result.exception!r}"
    elif result.exit_code not in (0, 1, 2):
        problem = f"exit status {result.exit_code}"
    elif "Traceback" in result.output:
        problem = "a traceback in the output"
    elif result.exit_code != 2 and "--json" in args:
        try:
            json.loads(result.stdout)
        except ValueError as error:
            problem = f"invalid JSON: {error}"
    elif result.exit_code != 2 and _CONTROL.search(result.stdout):
        problem = "a raw control character in the text"
    if problem is None:
        printed = result.stdout.encode("utf-8", "replace")
        shown = [s for s in secrets if s in printed]
        if shown:
            problem = f"secret of the seed shown: {shown[0][:8]!r}..."
    if problem is not None:
        keep.write_bytes(data)
        pytest.fail(f"{where}: authtrace {' '.join(args)} - < {keep}: {problem}")


@pytest.mark.parametrize("seed", SEEDS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_mutants_never_crash_leak_or_inject(seed: Path, tmp_path: Path) -> None:
    raw = seed.read_bytes()
    secrets = secrets_of(raw)
    rng = random.Random(zlib.crc32(seed.name.encode()))
    commands = (["analyze", "--json"], ["connections", "--json"], ["analyze"], ["connections"])
    for index, (what, data) in enumerate(mutants(raw, rng, PER_SEED)):
        where = f"{seed.name} mutant {index} ({what})"
        keep = tmp_path / f"mutant-{index}.bin"
        _check(["analyze", "--json"], data, secrets, where, keep)
        _check(commands[1 + index % 3], data, secrets, where, keep)


def test_the_campaign_is_a_few_hundred_mutants() -> None:
    assert len(SEEDS) * PER_SEED >= 300


def test_mutants_are_reproducible() -> None:
    raw = (ROOT / "captures" / "scenarios" / "healthy-ntlm.pcap").read_bytes()
    first = list(mutants(raw, random.Random(7), 20))
    assert first == list(mutants(raw, random.Random(7), 20))
    assert len({data for _what, data in first}) > 15  # and they differ from each other


# Inputs the campaign found, kept with the seed they were made from: each
# failed once (an assertion in a rule, "²" taken for a digit, a credential run
# into the Host line by a flipped line end and printed as the host, a token
# run into its scheme by a flipped space and printed as the scheme).
FOUND = [
    ("continue-interim-only.pcap", "http/continue.pcap"),
    ("content-length-superscript.pcap", "scenarios/healthy-digest-stale.pcap"),
    ("credential-run-into-host.pcap", "lab/kerberos-ticket-rejected.pcap"),
    ("token-run-into-scheme.pcap", "scenarios/healthy-proxy-407.pcap"),
]


@pytest.mark.parametrize(("found", "seed"), FOUND, ids=[f for f, _s in FOUND])
def test_inputs_the_campaign_found(found: str, seed: str, tmp_path: Path) -> None:
    data = (ROOT / "tests" / "data" / "fuzz" / found).read_bytes()
    secrets = secrets_of((ROOT / "captures" / seed).read_bytes())
    for args in (["analyze", "--json"], ["connections", "--json"], ["analyze"]):
        _check(args, data, secrets, found, tmp_path / found)


def test_the_long_campaign_script_keeps_what_fails(tmp_path: Path) -> None:
    """scripts/fuzz: a run that fails (here: an address-space cap no Python
    can start under) is kept with the command that fails on it."""
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.SourceFileLoader("fuzz_script", str(ROOT / "scripts" / "fuzz"))
    spec = importlib.util.spec_from_loader("fuzz_script", loader)
    assert spec is not None
    script = importlib.util.module_from_spec(spec)
    loader.exec_module(script)
    data = (ROOT / "captures" / "scenarios" / "healthy-ntlm.pcap").read_bytes()
    assert script.run_one(data, "connections", [], 2048, 120.0) is None
    reason = script.run_one(data, "analyze", [], 8, 120.0)
    assert reason is not None
    kept = script._keep(tmp_path, data, "analyze", reason, "healthy-ntlm.pcap")
    assert kept.read_bytes() == data
    note = kept.with_suffix(".txt").read_text()
    assert "python3 -m authtrace analyze --json" in note and reason in note
