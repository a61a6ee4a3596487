"""Golden JSON reports: the whole `analyze --json` output of a few scenario
captures, with volatile fields (program version, capture path, times)
normalised, compared with the reviewed copies in tests/golden/.

After an intended change, regenerate with AUTHTRACE_UPDATE_GOLDEN=1 and review
the diff of tests/golden/ before committing it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from authtrace.pipeline import analyze
from authtrace.report.as_json import report_to_dict

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
CASES = [
    "healthy-ntlm.pcap",
    "healthy-kerberos.pcap",
    "pooling-proxy.pcap",
    "kerberos-fallback-spn-unknown.pcap",
    "client-ignores-negotiate.pcap",
    # IIS 401 categories decided by the error page and by a wire fact (AP-REP in a 401).
    "anonymous-logon-failed.pcap",
    "resource-acl-denied-kerberos.pcap",
]
_VOLATILE = {"authtrace", "time", "first_time", "last_time", "request_time", "reply_time"}


def normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("<volatile>" if k in _VOLATILE else normalise(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


@pytest.mark.parametrize("name", CASES)
def test_report_matches_golden(name: str) -> None:
    data = report_to_dict(analyze([ROOT / "captures" / "scenarios" / name]))
    for capture in data["captures"]:
        capture["name"] = Path(capture["name"]).name
    got = normalise(json.loads(json.dumps(data)))
    path = GOLDEN / (Path(name).stem + ".json")
    if os.environ.get("AUTHTRACE_UPDATE_GOLDEN"):
        path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    expected = json.loads(path.read_text())
    assert got == expected, f"{name}: report changed; see the module docstring"
