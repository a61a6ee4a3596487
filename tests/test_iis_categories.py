"""The IIS 401 categories (issue 16): each scenario's finding names the evidence
that decided it, stronger evidence wins over what the wire or the sequence
suggested, a server that is not IIS borrows no category, and `explain`,
`iislog` and the findings give the same fixes per category."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from authtrace.cli import main
from authtrace.cli.logfiles import read_log_entries
from authtrace.diagnose import RuleContext, diagnose
from authtrace.handshake.links import HandshakeView
from authtrace.handshake.model import AuthExchange, IisTriple, Leg
from authtrace.handshake.timeline import ConnectionTimeline
from authtrace.http.messages import Header
from authtrace.iis.category import Category, LoggedLine, Source, decide
from authtrace.iis.codes import status_code
from authtrace.pipeline import analyze

SCENARIOS = Path(__file__).resolve().parent.parent / "captures" / "scenarios"
EXPECTED = json.loads((SCENARIOS / "expected.json").read_text())
WITH_EVIDENCE = sorted(name for name, entry in EXPECTED.items() if entry.get("evidence"))
WITH_LOG = sorted(name for name, entry in EXPECTED.items() if entry.get("iis_log"))


def _findings(name: str, log: bool = False) -> dict[str, object]:
    entries = []
    if log:
        entries = read_log_entries(SCENARIOS / EXPECTED[name]["iis_log"]["file"], [], [])
    report = analyze([SCENARIOS / name], iis_log=list(entries))
    return {finding.rule: finding for finding in report.findings}


def test_every_category_has_a_scenario() -> None:
    rules = {rule for name in WITH_EVIDENCE for rule in EXPECTED[name]["evidence"]}
    rules |= {rule for name in WITH_LOG for rule in EXPECTED[name]["iis_log"]["evidence"]}
    assert {
        "anonymous-logon-failed",
        "resource-acl-denied",
        "filter-denied",
        "application-denied",
    } <= rules
    sources = {source for name in WITH_EVIDENCE for source in EXPECTED[name]["evidence"].values()}
    assert {"error-page", "wire", "sequence"} <= sources


@pytest.mark.parametrize("name", WITH_EVIDENCE)
def test_finding_names_the_evidence_that_decided_it(name: str) -> None:
    findings = _findings(name)
    for rule, source in EXPECTED[name]["evidence"].items():
        finding = findings[rule]
        if source != "sequence":  # the sequence rules predate evidence fields
            assert finding.field("evidence") == source, finding
            assert f"Decided by {source} evidence" in finding.explanation


@pytest.mark.parametrize("name", WITH_LOG)
def test_the_log_line_wins_in_the_finding_itself(name: str) -> None:
    expected = EXPECTED[name]["iis_log"]
    findings = _findings(name, log=True)
    assert set(findings) == set(expected["rules"])
    assert not set(findings) & set(expected["not_rules"])
    for rule, source in expected["evidence"].items():
        finding = findings[rule]
        assert finding.field("evidence") == source
        assert "evidence wins" in finding.explanation  # what it overruled is said
        assert finding.iis is not None and finding.iis.certain  # the logged triple


def _step(name: str, leg: Leg) -> AuthExchange:
    report = analyze([SCENARIOS / name])
    return next(s for t in report.view.timelines for s in t.steps if s.leg is leg)


def test_evidence_strength_order() -> None:
    step = _step("resource-acl-denied-kerberos.pcap", Leg.REFUSED_AFTER_LOGON)
    wire = decide(step)
    assert wire is not None and wire.source is Source.WIRE
    assert wire.category is Category.RESOURCE_ACL
    paged = dataclasses.replace(step, iis_from_body="401.5")
    page = decide(paged)
    assert page is not None and page.source is Source.ERROR_PAGE
    assert page.category is Category.APPLICATION
    logged = decide(paged, LoggedLine(IisTriple(401, 4, 0), "u_ex.log", 7))
    assert logged is not None and logged.source is Source.IIS_LOG
    assert logged.category is Category.FILTER and "u_ex.log:7" in logged.detail


def _not_iis(step: AuthExchange) -> AuthExchange:
    response = step.exchange.response
    assert response is not None
    headers = tuple(h for h in response.headers if h.name.lower() != "server")
    response = dataclasses.replace(response, headers=(*headers, Header("Server", "nginx/1.24")))
    return dataclasses.replace(step, exchange=dataclasses.replace(step.exchange, response=response))


def _rediagnosed(report, change) -> list:
    """The findings of `report` with every judged step passed through `change`
    (a hand-made variant of a scenario: another Server header, a query ...)."""
    timelines = tuple(
        ConnectionTimeline(t.connection, tuple(change(s) for s in t.steps))
        for t in report.view.timelines
    )
    view: HandshakeView = dataclasses.replace(
        report.view, timelines=timelines, by_id={t.connection.id: t for t in timelines}
    )
    findings, problems = diagnose(RuleContext(view, report.kdc))
    assert not problems
    return findings


def test_a_server_that_is_not_iis_borrows_no_category() -> None:
    report = analyze([SCENARIOS / "application-denied.pcap"])
    assert decide(_not_iis(_step("application-denied.pcap", Leg.REFUSED_AFTER_LOGON))) is None
    findings = _rediagnosed(report, _not_iis)
    iis_rules = {"resource-acl-denied", "filter-denied", "application-denied"}
    fired = {f.rule for f in findings}
    assert not fired & iis_rules
    assert "denied-after-authentication" in fired  # what is known is still said
    assert all("401." not in f.title and "401." not in f.explanation for f in findings)
    assert all(f.iis is None for f in findings)


CATEGORY_SCENARIOS = {
    (Category.LOGON_FAILED, True): ("anonymous-logon-failed.pcap", "anonymous-logon-failed"),
    (Category.RESOURCE_ACL, False): ("resource-acl-denied.pcap", "resource-acl-denied"),
    (Category.APPLICATION, False): ("application-denied.pcap", "application-denied"),
}


@pytest.mark.parametrize(("key", "scenario"), sorted(CATEGORY_SCENARIOS.items(), key=str))
def test_explain_iislog_and_findings_give_the_same_fixes(
    key: tuple[Category, bool], scenario: tuple[str, str], tmp_path: Path
) -> None:
    category, anonymous = key
    code = status_code(401, category.value, anonymous=anonymous)
    assert code is not None and code.fixes and code.causes
    finding = _findings(scenario[0])[scenario[1]]
    explained = CliRunner().invoke(main, ["explain", code.code]).output
    # An IIS log of that category, as a log-only user would have it.
    log = tmp_path / "u_ex.log"
    user = "-" if anonymous else "CONTOSO\\alice"
    log.write_text(
        "#Fields: date time cs-method cs-uri-stem cs-username c-ip sc-status sc-substatus "
        f"sc-win32-status\n2024-01-02 03:04:05 GET /a.html {user} 192.0.2.10 401 "
        f"{category.value} 5\n"
    )
    logged = CliRunner().invoke(main, ["iislog", str(log)]).output
    for fix in code.fixes:
        assert fix[1:] in finding.fix, fix
        assert fix in explained, fix
        assert fix in logged, fix
    for cause in code.causes:
        assert cause in explained and cause in logged, cause
    if not anonymous:  # a triple says nothing of the request's credentials
        triple = CliRunner().invoke(main, ["explain", f"401 {category.value} 5"]).output
        assert all(fix in triple for fix in code.fixes)
        assert all(cause in triple for cause in code.causes)


def test_a_query_string_never_reaches_the_finding() -> None:
    # A query may carry a token: the findings name the path only.
    report = analyze([SCENARIOS / "application-denied.pcap"])

    def with_query(step: AuthExchange) -> AuthExchange:
        request = step.exchange.request
        assert request is not None
        request = dataclasses.replace(request, uri=request.uri + "?access_token=s3cr3t")
        return dataclasses.replace(
            step, exchange=dataclasses.replace(step.exchange, request=request)
        )

    findings = _rediagnosed(report, with_query)
    finding = next(f for f in findings if f.rule == "application-denied")
    assert "/reports/q3.html" in finding.explanation
    assert "s3cr3t" not in finding.explanation + finding.title + finding.fix


def test_anonymous_refusals_of_a_server_that_is_not_iis_say_what_is_known() -> None:
    report = analyze([SCENARIOS / "anonymous-logon-failed.pcap"])
    findings = _rediagnosed(report, _not_iis)
    assert [f.rule for f in findings] == ["refused-without-challenge"]
    assert "nginx/1.24" in findings[0].explanation and findings[0].iis is None
    assert "401." not in findings[0].explanation


def _wire_only(step: AuthExchange) -> AuthExchange:
    return dataclasses.replace(step, iis_from_body=None)


def test_wire_only_anonymous_logon_failure_needs_iis_and_no_anonymous_success() -> None:
    report = analyze([SCENARIOS / "anonymous-logon-failed.pcap"])
    # No page: the wire alone decides, for a server that names itself IIS.
    findings = _rediagnosed(report, _wire_only)
    assert [f.rule for f in findings] == ["anonymous-logon-failed"]
    assert findings[0].field("evidence") == "wire"
    assert "401.2" in findings[0].explanation  # the look-alike is named

    # One request without credentials served: the account can log on, this URL refuses.
    def one_served(step: AuthExchange) -> AuthExchange:
        step = _wire_only(step)
        if step.exchange.index != 1:
            return step
        response = step.exchange.response
        assert response is not None
        served = dataclasses.replace(response, status=200)
        return dataclasses.replace(
            step,
            exchange=dataclasses.replace(step.exchange, response=served),
            leg=Leg.ANONYMOUS,
            outcome=None,
        )

    findings = _rediagnosed(report, one_served)
    assert [f.rule for f in findings] == ["refused-without-challenge"]
    assert "this URL itself refuses it" in findings[0].explanation

    # A server that does not name itself: no IIS category from the wire alone.
    def unnamed(step: AuthExchange) -> AuthExchange:
        step = _wire_only(step)
        response = step.exchange.response
        assert response is not None
        headers = tuple(h for h in response.headers if h.name.lower() != "server")
        return dataclasses.replace(
            step,
            exchange=dataclasses.replace(
                step.exchange, response=dataclasses.replace(response, headers=headers)
            ),
        )

    findings = _rediagnosed(report, unnamed)
    assert [f.rule for f in findings] == ["refused-without-challenge"]
    assert "does not name itself" in findings[0].explanation
