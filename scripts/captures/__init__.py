"""Builders for the hand-built test captures under captures/ (run each build_*.py)."""
