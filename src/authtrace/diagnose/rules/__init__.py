"""The rules, one module per family. Each module exposes `RULES`: functions
taking a RuleContext and yielding Findings. A rule reads judged timelines and
KDC exchanges; it never parses bytes."""
