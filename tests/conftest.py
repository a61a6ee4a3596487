"""Strict mode for the whole suite: a catch-all that would turn a bug into an
anomaly raises instead (authtrace/strict.py), so no test counts an internal
error as a damaged capture. Subprocesses inherit it through the environment."""

from __future__ import annotations

import os

from authtrace.strict import set_strict

os.environ["AUTHTRACE_STRICT"] = "1"
set_strict(True)
