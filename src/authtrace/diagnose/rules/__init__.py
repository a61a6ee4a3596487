"""The rules, one module per family. Each module declares its rules with
`@rule(id, severity, meaning)` (diagnose/rule.py) on the check that finds them
and lists them in `RULES`. A check reads judged timelines and KDC exchanges; it
never parses bytes."""
