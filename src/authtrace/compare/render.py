"""Text and JSON forms of a comparison: the first difference leads, then the
remaining differences, then findings raised by one capture only.

Pure functions returning strings and dicts; the CLI prints them. Nothing here
reads tokens: a comparison holds names, statuses and frame numbers, never a
secret, so there is nothing to redact.
"""

from __future__ import annotations

import textwrap
from typing import Any

from authtrace.compare.diff import (
    Comparison,
    Difference,
    HostComparison,
    OneSidedFinding,
    Presence,
)
from authtrace.compare.profile import HostProfile
from authtrace.diagnose.finding import plural_of
from authtrace.schemas import Schema, document_head
from authtrace.visible import visible, visible_lines

DIFF_SCHEMA = Schema.DIFF.value
_WIDTH = 100


def render_comparison(comparison: Comparison) -> str:
    lines = [
        f"authtrace diff: working {_names(comparison.working)}, "
        f"failing {_names(comparison.failing)}",
        "",
    ]
    lines += _wrap(comparison.headline, "", "  ")
    if comparison.differs:
        lines.append("Authentication differs.")
    lead = comparison.lead
    ordered = [lead] if lead is not None else []
    ordered += [host for host in comparison.hosts if host is not lead]
    for host in ordered:
        lines.append("")
        lines += _host_lines(host, host is lead)
    return visible_lines(lines) + "\n"


def _host_lines(host: HostComparison, lead: bool) -> list[str]:
    lines = [f"Host {host.host} ({host.presence.value})"]
    if host.first is not None:
        # The lead host's sentence already opens the report.
        sentence = "" if lead else f": {host.headline}"
        first = host.first
        lines += _wrap(
            f"first difference ({first.aspect}){sentence}: working {first.working}; "
            f"failing {first.failing}",
            "  ",
            "    ",
        )
        lines += _frames_line(first, "    ")
    else:
        lines += _wrap(host.headline, "  ", "    ")
    rest = [d for d in host.differences if d is not host.first]
    if rest:
        lines.append("  other differences:")
        for difference in rest:
            context = "" if difference.affects_auth else " (context)"
            lines += _wrap(
                f"- {difference.aspect}{context}: working {difference.working}; "
                f"failing {difference.failing}",
                "    ",
                "      ",
            )
            lines += _frames_line(difference, "      ")
    if host.findings:
        lines.append("  findings (or what they name) in one capture only:")
        for finding in host.findings:
            frames = ", ".join(str(f) for f in finding.frames[:12]) or "-"
            if finding.values:
                named = "; ".join(
                    f"{plural_of(name)} {_some_values(values)}" for name, values in finding.values
                )
                lines += _wrap(
                    f"- {finding.rule} [{finding.severity.value}] in both, but only the "
                    f"{finding.side} capture's names {named} (frames {frames})",
                    "    ",
                    "      ",
                )
                continue
            lines += _wrap(
                f"- {finding.side} only: {finding.rule} [{finding.severity.value}] "
                f"{finding.title} (frames {frames})",
                "    ",
                "      ",
            )
    for note in host.notes:
        lines += _wrap(f"note: {note}", "  ", "    ")
    if host.presence is not Presence.BOTH:
        profile = host.working or host.failing
        if profile is not None:
            lines += _wrap(_profile_summary(profile), "  ", "    ")
    return lines


def _some_values(values: tuple[str, ...], limit: int = 8) -> str:
    more = f" and {len(values) - limit} more (--json lists all)" if len(values) > limit else ""
    return ", ".join(values[:limit]) + more


def _frames_line(difference: Difference, indent: str) -> list[str]:
    working = ", ".join(str(f) for f in difference.working_frames) or "-"
    failing = ", ".join(str(f) for f in difference.failing_frames) or "-"
    return [f"{indent}frames: working {working}; failing {failing}"]


def _profile_summary(profile: HostProfile) -> str:
    offered = ", ".join(profile.schemes_offered) or "nothing"
    used = ", ".join(profile.mechanisms) or "no credentials"
    statuses = "; ".join(f"{path}: {status}" for path, status in profile.final_status[:5])
    return f"offered {offered}; client used {used}; final status {statuses or '-'}"


def _wrap(text: str, first: str, rest: str) -> list[str]:
    # Made visible before wrapping: textwrap would turn a CR or tab into a space.
    return textwrap.wrap(
        visible(text),
        _WIDTH,
        initial_indent=first,
        subsequent_indent=rest,
        break_on_hyphens=False,
        break_long_words=False,
    ) or [first.rstrip()]


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(names) if names else "(none)"


def comparison_to_dict(comparison: Comparison) -> dict[str, Any]:
    """Schema `authtrace.diff/1`; fields are only ever added within it."""
    return {
        **document_head(Schema.DIFF),
        "working": list(comparison.working),
        "failing": list(comparison.failing),
        "differs": comparison.differs,
        "headline": comparison.headline,
        "lead_host": comparison.lead.host if comparison.lead is not None else None,
        "common_hosts": list(comparison.common_hosts),
        "hosts": [_host_to_dict(host) for host in comparison.hosts],
    }


def _host_to_dict(host: HostComparison) -> dict[str, Any]:
    return {
        "host": host.host,
        "presence": host.presence.value,
        "differs": host.differs,
        "headline": host.headline,
        "first_difference": _difference_to_dict(host.first) if host.first else None,
        "differences": [_difference_to_dict(d) for d in host.differences],
        "findings_only_in_one": [_finding_to_dict(f) for f in host.findings],
        "notes": list(host.notes),
        "working": _profile_to_dict(host.working),
        "failing": _profile_to_dict(host.failing),
    }


def _difference_to_dict(difference: Difference) -> dict[str, Any]:
    return {
        "aspect": difference.aspect,
        "affects_auth": difference.affects_auth,
        "working": difference.working,
        "failing": difference.failing,
        "working_frames": list(difference.working_frames),
        "failing_frames": list(difference.failing_frames),
        "working_says": difference.working_says,
        "failing_says": difference.failing_says,
    }


def _finding_to_dict(finding: OneSidedFinding) -> dict[str, Any]:
    return {
        "side": finding.side,
        "rule": finding.rule,
        "host": finding.host,
        "severity": finding.severity.value,
        "title": finding.title,
        "frames": list(finding.frames),
        "values": {name: list(values) for name, values in finding.values},
    }


def _profile_to_dict(profile: HostProfile | None) -> dict[str, Any] | None:
    if profile is None:
        return None
    return {
        "connections": profile.connections,
        "schemes_offered": list(profile.schemes_offered),
        "mechanisms": list(profile.mechanisms),
        "authenticated_with": list(profile.authenticated_with),
        "spn": profile.spn,
        "kdc": list(profile.kdc) if profile.kdc is not None else None,
        "ticket_spns": list(profile.ticket_spns),
        "handshakes": profile.handshakes,
        "split_handshakes": profile.splits,
        "split_by_proxy": profile.split_by_proxy,
        "closing_refusals": profile.closing_refusals,
        "via": list(profile.via),
        "x_forwarded_for": profile.forwarded_for,
        "proxy_challenges": profile.proxy_challenges,
        "http_versions": list(profile.http_versions),
        "largest_credentials_header": profile.largest_credentials,
        "channel_bindings": list(profile.channel_bindings),
        "ntlm_responses": list(profile.ntlm_responses),
        "final_status": [{"path": p, "status": s} for p, s in profile.final_status],
        "rules": sorted(profile.rules),
    }
