"""diagnose layer."""
