"""diagnose: rules that read judged handshakes and KDC exchanges and return
findings. Each rule is declared once in its family module (diagnose/rule.py);
this module gathers the declarations, derives the catalogue of ids and
meanings from them, and `diagnose()` runs every rule (`Diagnosis`, block by
block where a rule's declaration allows: rule.Across); a rule that fails on
some unexpected shape becomes an `analysis-error` anomaly, never a crash."""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable, Set

from authtrace.anomalies import Anomaly, AnomalyKind
from authtrace.diagnose.context import RuleContext
from authtrace.diagnose.finding import (
    Citation,
    FieldValue,
    FieldValues,
    Finding,
    Severity,
    plural_of,
)
from authtrace.diagnose.groups import Collected
from authtrace.diagnose.rule import Across, Rule, RuleDeclarationError, merge_groups
from authtrace.diagnose.rules import (
    capture,
    credentials,
    http2,
    iis,
    kerberos,
    negotiation,
    ntlm,
    topology,
)
from authtrace.strict import internal_error
from authtrace.words import counted

# Every rule, in the order the negotiation unfolds (topology, schemes, Kerberos,
# NTLM, per-request schemes, the capture itself): the order of `authtrace rules`.
ALL_RULES: tuple[Rule, ...] = (
    *topology.RULES,
    *negotiation.RULES,
    *kerberos.RULES,
    *ntlm.RULES,
    *http2.RULES,
    *credentials.RULES,
    *iis.RULES,
    *capture.RULES,
)
RULES_BY_ID: dict[str, Rule] = {declared.id: declared for declared in ALL_RULES}
if len(RULES_BY_ID) != len(ALL_RULES):
    raise RuleDeclarationError("two rules declare the same id")
# The ids are part of the interface (users script against them).
RULE_IDS = tuple(RULES_BY_ID)
RULE_DESCRIPTIONS: dict[str, str] = {declared.id: declared.meaning for declared in ALL_RULES}


def diagnose(context: RuleContext) -> tuple[list[Finding], list[Anomaly]]:
    """Run every rule over one context; findings sorted by severity, then by first frame."""
    diagnosis = Diagnosis()
    diagnosis.block(context)
    diagnosis.capture(context)
    return diagnosis.finish()


class Diagnosis:
    """The findings of a capture diagnosed in blocks of connections.

    `block` runs the rules declared Across.BLOCK over one block's context (the
    block's connections and those it was linked with, `own` naming the
    block's); a finding is kept by the block that holds its first connection,
    so a finding met again in a neighbour's context is kept once. It also
    collects, for each CAPTURE rule that groups steps (`Rule.grouping`), the
    steps of the block's own connections it selects. `capture` runs the other
    CAPTURE rules over a context of every connection, and the grouping rules
    over the groups collected (merged as one run would have made them; over
    `capture`'s context when no block was given). Findings are folded as they
    come (`merge_repeats` is associative), so the result is what one run of
    every rule over the whole capture gives.

    Invariant: every rule judges each connection once; `finish` sorts as
    `diagnose` always did. Cost: each block's rules are linear (or n log n) in
    the block's context, and a connection is in the context of at most its own
    block and its neighbours'."""

    __slots__ = ("_findings", "_anomalies", "_groups", "_failed", "_blocks")

    def __init__(self) -> None:
        self._findings: list[Finding] = []
        self._anomalies: dict[str, Anomaly] = {}  # one per rule and error, however many blocks
        # Grouping rule -> the groups of every block so far, each key held once.
        self._groups: dict[str, Collected] = {}
        self._failed: set[str] = set()  # grouping rules that failed in some block
        self._blocks = 0

    def block(self, context: RuleContext, own: Set[int] | None = None) -> None:
        """Run the BLOCK rules over `context`, keeping the findings whose first
        connection is in `own` (every finding for None: the context is one
        block), and collect the grouping rules' steps of `own`."""
        self._blocks += 1
        found = []
        for declared in ALL_RULES:
            if declared.across is Across.BLOCK:
                found.extend(self._run(declared, context, own))
            elif declared.grouping is not None and declared.id not in self._failed:
                try:
                    groups = declared.collect(context, own)
                except Exception as error:  # noqa: BLE001 - as in _run
                    self._failure(declared, error)
                    continue
                if groups:
                    held = self._groups.get(declared.id)
                    if held is None:
                        self._groups[declared.id] = groups
                    else:
                        held.absorb(groups)
        self._fold(found)

    def capture(self, context: RuleContext) -> None:
        """Run the CAPTURE rules: those that group steps over what the blocks
        collected (over `context` when no block was given), the others over
        `context`, which then holds every connection."""
        found = []
        for declared in ALL_RULES:
            if declared.across is not Across.CAPTURE:
                continue
            if declared.grouping is None or not self._blocks:
                found.extend(self._run(declared, context))
            elif declared.id not in self._failed:
                held = self._groups.pop(declared.id, None)
                groups = held if held is not None else merge_groups(())
                try:
                    found.extend(declared.report(context, groups))
                except Exception as error:  # noqa: BLE001 - as in _run
                    self._failure(declared, error)
        self._blocks = 0
        self._fold(found)

    def finish(self) -> tuple[list[Finding], list[Anomaly]]:
        """Findings sorted by severity, then by first frame; the rules' failures."""
        findings = merge_repeats(self._findings)
        findings.sort(key=lambda f: (f.severity.rank, f.frames[0] if f.frames else 0, f.rule))
        return findings, list(self._anomalies.values())

    def _fold(self, found: list[Finding]) -> None:
        # Folded per block now (what is kept is small), across blocks in `finish`.
        self._findings.extend(merge_repeats(found))

    def _failure(self, declared: Rule, error: Exception) -> None:
        internal_error(error)
        self._failed.add(declared.id)
        anomaly = Anomaly(AnomalyKind.ANALYSIS_ERROR, f"rule {declared.id} failed: {error!r}")
        self._anomalies.setdefault(anomaly.message, anomaly)

    def _run(
        self, declared: Rule, context: RuleContext, own: Set[int] | None = None
    ) -> list[Finding]:
        try:
            found = list(declared(context))
            if declared.across is Across.BLOCK:
                if any(not finding.connections for finding in found):
                    raise RuleDeclarationError(
                        f"rule {declared.id} is declared per block but yielded a finding "
                        "about no connection"
                    )
                if own is not None:
                    found = [f for f in found if f.connections[0] in own]
            return found
        except Exception as error:  # noqa: BLE001 - one broken rule must not hide the others
            self._failure(declared, error)
            return []


class Fold(enum.Enum):
    """What folding does with a field when the occurrences of a finding differ in it."""

    KEY = "key"  # a different value is a different story (and fix): findings stay apart
    LIST = "list"  # who or what it happened to: the distinct values are listed, with counts
    SUM = "sum"  # a count of the occurrence: the folded finding adds them up


# Every field a rule writes, and how it folds (merge_repeats' docstring says why,
# field by field). A field not named here folds as KEY: an unknown field never
# merges two stories.
FIELD_FOLDING: dict[str, Fold] = {
    "user": Fold.LIST,
    "workstation": Fold.LIST,
    "client": Fold.LIST,
    "clients": Fold.LIST,
    "authenticated_client": Fold.LIST,
    "client_principal": Fold.LIST,
    "stream": Fold.LIST,
    "challenge_stream": Fold.LIST,
    "authenticate_stream": Fold.LIST,
    "negotiate_bytes": Fold.LIST,
    "header_bytes": Fold.LIST,
    "token_bytes": Fold.LIST,
    "failures": Fold.SUM,
    "count": Fold.SUM,
    "anonymous_requests": Fold.SUM,
    "spn": Fold.KEY,
    "host": Fold.KEY,
    "service": Fold.KEY,
    "kdc_error": Fold.KEY,
    "krb_error": Fold.KEY,
    "proxy": Fold.KEY,
    "category": Fold.KEY,
    "evidence": Fold.KEY,
    "mechanism": Fold.KEY,
    "server": Fold.KEY,
    "offered": Fold.KEY,
    "sent": Fold.KEY,
    "error": Fold.KEY,
    "retried": Fold.KEY,
    "response": Fold.KEY,
    "binding": Fold.KEY,
    "closed_by": Fold.KEY,
}
# A rule's own count of repeats at the end of a title: "... (3 times)".
_TIMES = re.compile(r" \((\d{1,9}) times\)$")
_HOLE = "\x00"


def folding_of(name: str) -> Fold:
    return FIELD_FOLDING.get(name, Fold.KEY)


def _title_parts(finding: Finding) -> tuple[str, int]:
    """The title without its trailing "(N times)", and N (1 when absent)."""
    matched = _TIMES.search(finding.title)
    if matched is None:
        return finding.title, 1
    return finding.title[: matched.start()], int(matched.group(1))


def _template(original: Finding) -> str:
    """The rule's title with the values of its LIST and SUM fields cut out
    (longest first, whole words only): what the occurrences must share."""
    title, _times = _title_parts(original)
    foldable = [(n, v) for n, v in original.fields if v and folding_of(n) is not Fold.KEY]
    for name, value in sorted(foldable, key=lambda item: -len(item[1])):
        pattern = r"(?<![\w\\])" + re.escape(value) + r"(?!\w)"
        # A function as the replacement: the value is capture text, never a template.
        title = re.sub(pattern, _hole(name), title)
    return title


def _hole(name: str) -> Callable[[re.Match[str]], str]:
    hole = f"{_HOLE}{name}{_HOLE}"
    return lambda _matched: hole


def _fold_key(finding: Finding) -> tuple[object, ...]:
    original = finding.original
    kept = tuple((n, v) for n, v in original.fields if folding_of(n) is Fold.KEY)
    return (
        finding.rule,
        finding.host,
        finding.severity,
        finding.iis,
        finding.fix,
        _template(original),
        kept,
    )


def _order(finding: Finding) -> tuple[object, ...]:
    """Which occurrence comes first (and tells the story): the earliest frame."""
    return (
        finding.frames[:1],
        finding.connections[:1],
        finding.title,
        finding.explanation,
        finding.frames,
        finding.connections,
        finding.fields,
        tuple(_citation_order(c) + (c.message or "",) for c in finding.citations),
    )


def merge_repeats(findings: list[Finding]) -> list[Finding]:
    """Fold the findings that tell one story into one: same rule, host, severity,
    IIS triple and fix, the same values of every KEY field (see FIELD_FOLDING),
    and the same title once the LIST and SUM field values are cut out of it
    ("NTLM logon failed for A" and "... for B" fold; "... at the proxy for A" does
    not fold with them).

    Which fields keep findings apart (decided per field, FIELD_FOLDING):
    - LIST, folded and listed: who or what it happened to — user, workstation,
      client(s), authenticated_client, client_principal, stream ids, token and
      header sizes. A hundred users with a wrong password are one page to read
      and one list for the help desk, not a hundred findings.
    - KEY, never folded together: what decides the fix — spn (each missing or
      misplaced SPN is its own setspn), service, kdc_error, krb_error, proxy (the
      proxy that answered a 407 is where to look), category and evidence (the
      IIS 401.x and how it is known), mechanism, server (one bad node behind a
      balancer), offered and sent (the schemes), error (Bearer), retried,
      response, binding, closed_by. A field not in the table is KEY.
    - SUM, added up: failures, count, anonymous_requests.

    A folded finding keeps its first occurrence's explanation and adds one
    sentence with the totals; its title names how many values each LIST field
    took ("NTLM logon failed for 108 users (108 times)"); `fields` keeps what
    every occurrence shares (SUM fields added up); `values` lists every distinct
    value of the others with how many times it was met (occurrences, or the
    rule's own count where it keeps one: failures per user) and its connections;
    frames, connections and citations are the union of all (the text report
    shows the first and last, --json lists them all); `parts` keeps every
    occurrence as its rule reported it.

    Pure and associative: folding folded findings again (per window of
    connections, per worker) gives what folding everything at once gives, because
    a folded finding keeps its occurrences (`parts`, in one total order) and
    every aggregate is a sum or a union. The result is in first-seen order of the
    groups; diagnose() sorts it. Cost: linear in the findings, their frames and
    their fields (n log n to order the occurrences)."""
    groups: dict[tuple[object, ...], list[Finding]] = {}
    for finding in findings:
        groups.setdefault(_fold_key(finding), []).append(finding)
    return [group[0] if len(group) == 1 else _fold(group) for group in groups.values()]


def _fold(group: list[Finding]) -> Finding:
    parts = tuple(sorted((o for f in group for o in f.occurrences_kept), key=_order))
    first = parts[0]
    occurrences = len(parts)
    connections = tuple(sorted({c for f in group for c in f.connections}))
    frames = tuple(sorted({frame for f in group for frame in f.frames}))
    citations: dict[tuple[int, str], Citation] = {}
    for f in group:
        for citation in f.citations:
            slot = (citation.frame, citation.role.value)
            held = citations.get(slot)
            if held is None or _citation_order(citation) < _citation_order(held):
                citations[slot] = citation
    # Per field: value -> (times met with it, their connections); SUM fields: totals.
    seen: dict[str, dict[str, tuple[int, set[int]]]] = {}
    totals: dict[str, int] = {}
    for f in group:
        contributions = [(n, v, _times_of(f), f.connections) for n, v in f.fields]
        contributions += [
            (held.name, each.value, each.count, each.connections)
            for held in f.values
            for each in held.values
        ]
        for name, value, count, where in contributions:
            if folding_of(name) is Fold.SUM and value.isdigit():
                totals[name] = totals.get(name, 0) + int(value)
                continue
            count_before, connections_before = seen.setdefault(name, {}).get(value, (0, set()))
            seen[name][value] = (count_before + count, connections_before | set(where))
    times = sum(_times_of(f) for f in group)
    names = [n for n, _v in first.fields]
    names += sorted((set(seen) | set(totals)) - set(names))
    shared: list[tuple[str, str]] = []
    varying: list[FieldValues] = []
    for name in names:
        if name in totals and name not in seen:
            shared.append((name, str(totals[name])))
            continue
        values = seen.get(name, {})
        if len(values) == 1 and next(iter(values.values()))[0] == times:
            shared.append((name, next(iter(values))))
            continue
        ordered = sorted(values.items(), key=lambda item: (-item[1][0], item[0]))
        varying.append(
            FieldValues(
                name,
                tuple(FieldValue(v, count, tuple(sorted(c))) for v, (count, c) in ordered),
            )
        )
    title = _folded_title(group, first, dict(shared), varying)
    spread = [f"{len(v.values)} {plural_of(v.name)}" for v in varying if len(v.values) > 1]
    # A folded finding has two occurrences at least: "once more", "4 more times".
    again = "once more" if occurrences == 2 else f"{occurrences - 1} more times"
    explanation = (
        f"{first.explanation} The same happened {again}: "
        f"{occurrences} in all, on {counted(len(connections), 'connection')}"
        + (f", {', '.join(spread)}" if spread else "")
        + " (listed in the evidence)."
    )
    return dataclasses.replace(
        first,
        title=title,
        explanation=explanation,
        connections=connections,
        frames=frames,
        fields=tuple(shared),
        citations=_citations_in_order(first, citations),
        values=tuple(varying),
        parts=parts,
    )


def _times_of(finding: Finding) -> int:
    """How many times a finding (folded or not) met its problem: the total of its
    SUM field when its rule counts its own repeats ("3 failed logons for ann"),
    else its occurrences. A value's count in `values` adds these up, so that
    each user of a folded lockout warning keeps the number of their failures."""
    for name, value in finding.fields:
        if folding_of(name) is Fold.SUM and value.isdigit():
            return int(value)
    return finding.occurrences


def _citations_in_order(
    first: Finding, citations: dict[tuple[int, str], Citation]
) -> tuple[Citation, ...]:
    """The first occurrence's citations in the order its words name them, then
    the others by frame (an order that does not depend on how folding was split)."""
    own = [(c.frame, c.role.value) for c in first.citations]
    head = [citations[slot] for slot in dict.fromkeys(own)]
    rest = sorted((c for s, c in citations.items() if s not in set(own)), key=_citation_order)
    return (*head, *rest)


def _citation_order(citation: Citation) -> tuple[object, ...]:
    return (citation.frame, citation.role.value, citation.connection or 0, citation.proves)


def _folded_title(
    group: list[Finding], first: Finding, shared: dict[str, str], varying: list[FieldValues]
) -> str:
    """The template with each hole filled: the shared value, the SUM total, or
    how many values a LIST field took; "(N times)" unless a total says it."""
    many = {v.name: len(v.values) for v in varying}
    pieces = _template(first).split(_HOLE)
    summed = False
    for index in range(1, len(pieces), 2):
        name = pieces[index]
        if folding_of(name) is Fold.SUM and name in shared:
            summed = True
            pieces[index] = shared[name]
        elif name in shared:
            pieces[index] = shared[name]
        else:
            pieces[index] = f"{many.get(name, 0)} {plural_of(name)}"
    times = sum(_title_parts(f)[1] for f in group)
    title = "".join(pieces)
    if summed:
        return title
    # "Basic ... in clear text (37 users)" -> "... (37 users, 41 times)"
    return f"{title[:-1]}, {times} times)" if title.endswith(")") else f"{title} ({times} times)"


__all__ = [
    "ALL_RULES",
    "FIELD_FOLDING",
    "Across",
    "Diagnosis",
    "Finding",
    "Fold",
    "RULES_BY_ID",
    "RULE_DESCRIPTIONS",
    "RULE_IDS",
    "Rule",
    "RuleContext",
    "Severity",
    "diagnose",
    "merge_repeats",
]
