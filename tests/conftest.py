"""Strict mode for the whole suite: a catch-all that would turn a bug into an
anomaly raises instead (authtrace/strict.py), so no test counts an internal
error as a damaged capture. Subprocesses inherit it through the environment.

AUTHTRACE_TEST_SPILL_BUDGET=N runs the whole suite with the judged-timeline
store's budget (handshake/store.py SPILL_BUDGET) set to N in this process:
`AUTHTRACE_TEST_SPILL_BUDGET=0 python3 -m pytest` spills every timeline of
every `analyze` to disk, so every test reads the timelines back through the
store's views. Only this file reads the variable (authtrace itself never
does): tests that run authtrace in a subprocess keep the default budget."""

from __future__ import annotations

import os

from authtrace.strict import set_strict

os.environ["AUTHTRACE_STRICT"] = "1"
set_strict(True)

_budget = os.environ.get("AUTHTRACE_TEST_SPILL_BUDGET")
if _budget is not None:
    from authtrace.handshake import store

    store.SPILL_BUDGET = int(_budget)
