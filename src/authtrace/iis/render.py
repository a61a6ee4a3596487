"""Text and JSON renderings of IIS code explanations and log summaries.

Pure functions from the values of `iis.codes` and `iis.w3c` to strings and
JSON-ready dicts; only the CLI prints them. Numbers are always shown next to
their labels (decimal as IIS logs them, and hex for HRESULTs). Log summaries
show user names and addresses (what an administrator needs) and never a cookie
or query string value.
"""

from __future__ import annotations

from typing import Any

from authtrace.iis.codes import (
    Explanation,
    NtlmFlagsExplanation,
    StatusCode,
    TripleExplanation,
    Verdict,
    Win32Code,
    status_code,
)
from authtrace.iis.w3c import ClientUrl, Count, LogSummary, ParseReport, TripleGroup
from authtrace.kerberos.errors import KerberosError
from authtrace.visible import visible_lines
from authtrace.words import agreeing, counted

_CHALLENGE_LEG = "401 1 2148074254"


def win32_label(code: Win32Code) -> str:
    """A win32 status as administrators search for it: decimal (as IIS logs
    it), hex (as Windows and SSPI documentation write it) and symbol, e.g.
    ``2148074248 = 0x80090308 SEC_E_INVALID_TOKEN``; an unknown code keeps
    its numbers."""
    name = code.name if code.known else "(not in authtrace's table)"
    return f"{code.code} = {code.hex} {name}"


def _win32_line(code: Win32Code) -> str:
    return f"{win32_label(code)}: {code.meaning}"


def _status_lines(sc: StatusCode, indent: str = "") -> list[str]:
    lines = [f"{indent}{sc.code} {sc.label}", f"{indent}  {sc.meaning}"]
    lines += _causes(sc.causes, indent + "  ")
    lines += _fixes(sc.fixes, indent + "  ")
    return lines


def _fixes(fixes: tuple[str, ...], indent: str) -> list[str]:
    if not fixes:
        return []
    return [f"{indent}What to do:"] + [f"{indent}  {n}. {f}" for n, f in enumerate(fixes, 1)]


def _causes(causes: tuple[str, ...], indent: str) -> list[str]:
    if not causes:
        return []
    return [f"{indent}Typical causes:"] + [f"{indent}  - {c}" for c in causes]


def format_triple(t: TripleExplanation) -> str:
    head = f"{t.triple}: {t.verdict.value.upper()} - {t.summary}"
    lines = [head]
    if t.status_code is not None:
        lines.append(f"  sc-status.sc-substatus {t.status_code.code}: {t.status_code.label}")
    else:
        lines.append(f"  sc-status.sc-substatus {t.status}.{t.substatus}: not in the table")
    lines.append(f"  sc-win32-status {_win32_line(t.win32_code)}")
    lines.append(f"  {t.detail}")
    if t.status_code is not None and (not t.documented or t.status_code.fixes):
        # A category with its own advice (401.1, 401.3 ...) gives the guide's
        # causes, the same lists iislog and the findings give.
        lines += _causes(t.status_code.causes, "  ")
    else:
        lines += _causes(t.win32_code.causes, "  ")
    if t.verdict is Verdict.FAILURE and t.status_code is not None:
        lines += _fixes(t.status_code.fixes, "  ")
    return "\n".join(lines)


def format_win32(code: Win32Code) -> str:
    lines = [f"{_win32_line(code)} ({code.family.value})"]
    lines += _causes(code.causes, "  ")
    return "\n".join(lines)


def format_kerberos(error: KerberosError) -> str:
    return f"Kerberos error {error.code} {error.name}: {error.meaning}"


def format_ntlm_flags(flags: NtlmFlagsExplanation) -> str:
    lines = [f"NTLM negotiate flags 0x{flags.value:08X}:"]
    width = max((len(f.name) for f in flags.flags), default=0)
    lines += [f"  0x{f.value:08X} {f.name:<{width}}  {f.meaning}" for f in flags.flags]
    return "\n".join(lines)


def format_explanation(e: Explanation) -> str:
    """Everything `explain()` found for one query, as text."""
    parts: list[str] = []
    if e.triple is not None:
        parts.append(format_triple(e.triple))
    if e.status is not None:
        parts.append("\n".join(_status_lines(e.status)))
    if e.anonymous_status is not None:
        parts.append(
            "For requests without credentials:\n" + "\n".join(_status_lines(e.anonymous_status))
        )
    if e.win32 is not None:
        parts.append(format_win32(e.win32))
    if e.kerberos is not None:
        parts.append(format_kerberos(e.kerberos))
    if e.ntlm_flags is not None:
        parts.append(format_ntlm_flags(e.ntlm_flags))
    text = "\n".join(parts)
    if e.note:
        text += f"\n  ({e.note})"
    # Our own line breaks; the query and the tables hold no capture text.
    return visible_lines(text.split("\n"))


def _status_dict(sc: StatusCode) -> dict[str, Any]:
    return {
        "code": sc.code,
        "status": sc.status,
        "substatus": sc.substatus,
        "label": sc.label,
        "meaning": sc.meaning,
        "causes": list(sc.causes),
        "fixes": list(sc.fixes),
        "anonymous": sc.anonymous,
    }


def _win32_dict(code: Win32Code) -> dict[str, Any]:
    return {
        "code": code.code,
        "hex": code.hex,
        "name": code.name,
        "family": code.family.name.lower(),
        "meaning": code.meaning,
        "causes": list(code.causes),
        "known": code.known,
    }


def triple_to_dict(t: TripleExplanation) -> dict[str, Any]:
    return {
        "triple": t.triple,
        "status": t.status,
        "substatus": t.substatus,
        "win32": t.win32,
        "verdict": t.verdict.name.lower(),
        "summary": t.summary,
        "detail": t.detail,
        "documented": t.documented,
        "substatus_info": _status_dict(t.status_code) if t.status_code else None,
        "win32_info": _win32_dict(t.win32_code),
    }


def explanation_to_dict(e: Explanation) -> dict[str, Any]:
    out: dict[str, Any] = {"query": e.query}
    if e.triple is not None:
        out["triple"] = triple_to_dict(e.triple)
    if e.status is not None:
        out["status"] = _status_dict(e.status)
    if e.anonymous_status is not None:
        out["anonymous_status"] = _status_dict(e.anonymous_status)
    if e.win32 is not None:
        out["win32"] = _win32_dict(e.win32)
    if e.kerberos is not None:
        out["kerberos"] = {
            "code": e.kerberos.code,
            "name": e.kerberos.name,
            "meaning": e.kerberos.meaning,
        }
    if e.ntlm_flags is not None:
        out["ntlm_flags"] = {
            "value": e.ntlm_flags.value,
            "hex": f"0x{e.ntlm_flags.value:08X}",
            "flags": [
                {"value": f.value, "name": f.name, "meaning": f.meaning} for f in e.ntlm_flags.flags
            ],
        }
    if e.note:
        out["note"] = e.note
    return out


# --- log summaries -------------------------------------------------------------


def _counts(counts: tuple[Count, ...], limit: int = 5) -> str:
    shown = ", ".join(f"{c.key} ({c.count:,})" for c in counts[:limit])
    more = len(counts) - limit
    return shown + (f", +{more} more" if more > 0 else "")


def _never_reason(pair: ClientUrl) -> str:
    challenged = any(c.key == _CHALLENGE_LEG for c in pair.triples)
    if challenged:
        return (
            "the handshake started (challenge sent) but never completed: the final token "
            "never arrived on that connection (connection closed, or split by a proxy)"
        )
    return (
        "the client never sent credentials the server accepts: no protocol in common "
        "(browser not configured for this host, client without Negotiate/NTLM)"
    )


def group_advice(g: TripleGroup) -> StatusCode | None:
    """The category advice for a failure group: its substatus's causes and
    fixes (the same lists `explain` and the analyze findings give); for 401.1
    with no user logged, the anonymous account's variant."""
    t = g.explanation
    if t.verdict is not Verdict.FAILURE:
        return None
    return status_code(t.status, t.substatus, anonymous=not g.users)


def _group_lines(g: TripleGroup) -> list[str]:
    lines = [
        f"  {g.explanation.triple}  x{g.count:,}  {g.explanation.summary}",
        f"      sc-win32-status {win32_label(g.explanation.win32_code)}",
        f"      urls: {_counts(g.urls)}",
        f"      clients: {_counts(g.clients)}",
        *([f"      users: {_counts(g.users)}"] if g.users else []),
        f"      first seen: {g.first}",
    ]
    advice = group_advice(g)
    if advice is not None and advice.fixes:
        lines.append(
            f"      {advice.code} {advice.label}"
            + (
                " (no user logged: read as requests without credentials)"
                if advice.anonymous
                else ""
            )
        )
        lines += _causes(advice.causes, "      ")
        lines += _fixes(advice.fixes, "      ")
    return lines


def _skipped_lines(reports: tuple[ParseReport, ...]) -> list[str]:
    lines: list[str] = []
    for report in reports:
        for problem in report.problems:
            where = ", ".join(map(str, problem.first_lines))
            more = "" if problem.count <= len(problem.first_lines) else ", ..."
            lines.append(
                f"  {report.source}: {problem.count:,} x {problem.kind.value} "
                f"(lines {where}{more}): {problem.reason}"
            )
    return lines


def format_summary(
    summary: LogSummary, reports: tuple[ParseReport, ...] = (), errors: tuple[str, ...] = ()
) -> str:
    """The iislog report: failures first, then normal legs, per URL/client, users."""
    skipped = sum(r.skipped for r in reports)
    head = f"IIS log: {summary.entries:,} {agreeing(summary.entries, 'entry')}"
    if reports:
        head += f" from {counted(len(reports), 'file')}"
    if skipped:
        head += f" ({skipped:,} {agreeing(skipped, 'line')} skipped)"
    if summary.first_time and summary.last_time:
        head += (
            f", {summary.first_time:%Y-%m-%d %H:%M:%S} .. {summary.last_time:%Y-%m-%d %H:%M:%S} UTC"
        )
    lines = [head, ""]

    failures = [g for g in summary.groups if g.verdict is Verdict.FAILURE]
    never = [p for p in summary.per_client_url if p.never_authenticated]
    if summary.failures:
        lines.append(f"{summary.failures:,} {agreeing(summary.failures, 'failure')}")
        for g in failures:
            lines += _group_lines(g)
        if never:
            lines.append("  client never authenticated (handshake legs only, nothing accepted):")
            for pair in never:
                triples = ", ".join(f"{c.key} x{c.count:,}" for c in pair.triples)
                lines.append(f"    {pair.client} {pair.url}: {triples}")
                lines.append(f"      {_never_reason(pair)} (first seen {pair.first})")
    else:
        lines.append("no authentication failures")
    lines.append("")

    leg_groups = [g for g in summary.groups if g.verdict is Verdict.NORMAL_LEG]
    leg_triples = " / ".join(g.explanation.triple for g in leg_groups)
    lines.append(
        f"{summary.normal_legs:,} {agreeing(summary.normal_legs, 'normal handshake leg')}"
        + (f" ({leg_triples})" if leg_triples else "")
    )
    for g in leg_groups:
        lines.append(
            f"  {g.explanation.triple}  x{g.count:,}  "
            f"sc-win32-status {win32_label(g.explanation.win32_code)}"
        )
    lines.append(
        f"{summary.successes:,} {agreeing(summary.successes, 'successful response')} (2xx/3xx)"
    )
    if summary.success_users:
        lines.append(f"  users on successful responses: {_counts(summary.success_users, 10)}")
    if summary.failure_users:
        lines.append(f"  users on failures: {_counts(summary.failure_users, 10)}")

    if summary.per_client_url:
        lines += ["", "per URL and client (401/403 triples; successes):"]
        for pair in summary.per_client_url[:50]:
            mark = "FAIL" if pair.failures or pair.never_authenticated else "ok  "
            triples = ", ".join(f"{c.key} x{c.count:,}" for c in pair.triples)
            users = f"; users {', '.join(pair.users)}" if pair.users else ""
            lines.append(
                f"  {mark} {pair.url}  {pair.client}: {triples}; {pair.successes:,} ok{users}"
            )
        if len(summary.per_client_url) > 50:
            lines.append(f"  ... {len(summary.per_client_url) - 50:,} more")

    skipped_lines = _skipped_lines(reports)
    if skipped_lines or errors:
        lines += ["", "unread lines:"] + skipped_lines + [f"  {e}" for e in errors]
    return visible_lines(lines)


def summary_to_dict(
    summary: LogSummary, reports: tuple[ParseReport, ...] = (), errors: tuple[str, ...] = ()
) -> dict[str, Any]:
    def counts(items: tuple[Count, ...]) -> list[dict[str, Any]]:
        return [{"key": c.key, "count": c.count} for c in items]

    return {
        "entries": summary.entries,
        "failures": summary.failures,
        "normal_legs": summary.normal_legs,
        "successes": summary.successes,
        "first_time": summary.first_time.isoformat() if summary.first_time else None,
        "last_time": summary.last_time.isoformat() if summary.last_time else None,
        "groups": [
            {
                **triple_to_dict(g.explanation),
                "advice": _status_dict(advice) if (advice := group_advice(g)) else None,
                "count": g.count,
                "urls": counts(g.urls),
                "clients": counts(g.clients),
                "users": counts(g.users),
                "first_seen": g.first,
            }
            for g in summary.groups
        ],
        "per_client_url": [
            {
                "client": p.client,
                "url": p.url,
                "triples": counts(p.triples),
                "normal_legs": p.normal_legs,
                "failures": p.failures,
                "successes": p.successes,
                "users": list(p.users),
                "never_authenticated": p.never_authenticated,
                "reason": _never_reason(p) if p.never_authenticated else None,
                "first_seen": p.first,
            }
            for p in summary.per_client_url
        ],
        "success_users": counts(summary.success_users),
        "failure_users": counts(summary.failure_users),
        "files": [
            {
                "source": r.source,
                "lines": r.lines,
                "entries": r.entries,
                "software": list(r.software),
                "fields_blocks": r.fields_blocks,
                "skipped": [
                    {
                        "kind": p.kind.value,
                        "count": p.count,
                        "first_lines": list(p.first_lines),
                        "reason": p.reason,
                    }
                    for p in r.problems
                ],
            }
            for r in reports
        ],
        "errors": list(errors),
    }
