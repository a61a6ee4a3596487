"""The IIS 401 categories the troubleshooting guide names beyond a failed user
logon and a missing protocol: the anonymous account's failed logon (401.1 to
requests without credentials), the resource ACL (401.3), an ISAPI filter
(401.4) and an ISAPI/CGI application (401.5).

Each rule reads the category `iis.category` decided for a refused request
from the strongest evidence there is (the IIS log line, the error page, a wire
fact, then the sequence), says which evidence decided it, and gives the
category's own fixes (the same lists `authtrace explain` and `iislog` print:
`iis.codes`). Where that evidence contradicts what the sequence alone
suggested, the finding says so; the sequence rules (ntlm-logon-failed,
kerberos-ticket-rejected, basic-logon-failed ...) leave such a 401 alone
(`RuleContext.overruled`). Servers that say they are not IIS get no category:
`denied-after-authentication` and `refused-without-challenge` say what the
wire shows about their refusals.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import cast

from authtrace.auth.kinds import Mechanism
from authtrace.diagnose.context import (
    Located,
    RuleContext,
    Words,
    make_finding,
    user_of,
)
from authtrace.diagnose.finding import Finding, Severity
from authtrace.diagnose.rule import Groups, Rule, Select, grouping_rule
from authtrace.handshake.model import Answer, AuthExchange, Leg, Outcome, Realm, Sent
from authtrace.iis.category import Category, CategoryEvidence, Source
from authtrace.iis.codes import status_code
from authtrace.iis.predict import looks_like_iis
from authtrace.words import counted

# How many refused requests one finding cites at most.
MAX_CITED = 5

_MECHANISM_WORDS = {
    Mechanism.NTLM: "NTLM",
    Mechanism.KERBEROS: "Kerberos",
    Mechanism.BASIC: "Basic",
    Mechanism.DIGEST: "Digest",
    Mechanism.BEARER: "Bearer",
}


def _fix_text(category: Category, anonymous: bool = False) -> str:
    """The category's fixes as one paragraph, numbered (iis.codes holds them)."""
    code = status_code(401, category.value, anonymous=anonymous)
    assert code is not None and code.fixes
    return " ".join(f"({n}) {fix[0].upper()}{fix[1:]}." for n, fix in enumerate(code.fixes, 1))


def _meaning(category: Category, anonymous: bool = False) -> str:
    code = status_code(401, category.value, anonymous=anonymous)
    assert code is not None
    return f"IIS {code.code} ({code.label}): {code.meaning}"


def _refused(ctx: RuleContext) -> Iterator[tuple[Located, CategoryEvidence]]:
    """Every failed 401 of the origin server with its decided category."""
    for located in ctx.steps(Realm.ORIGIN):
        step = located.step
        if step.status != 401 or step.outcome is not Outcome.FAILURE or ctx.relayed(located):
            continue
        evidence = ctx.category(located)
        if evidence is not None:
            yield located, evidence


def _strongest(items: list[tuple[Located, CategoryEvidence]]) -> CategoryEvidence:
    return min((evidence for _located, evidence in items), key=lambda e: e.source.rank)


def _evidence_words(evidence: CategoryEvidence, step: AuthExchange) -> str:
    """Which evidence decided, and what it overruled."""
    words = f" Decided by {evidence.source.value} evidence: {evidence.detail}."
    guessed = step.iis
    if (
        evidence.source is not Source.SEQUENCE
        and guessed is not None
        and guessed.substatus != evidence.substatus
    ):
        words += (
            f" The capture alone suggested {guessed} (401.{guessed.substatus}); the "
            f"{evidence.source.value} evidence wins."
        )
    return words


def _authenticated_as(ctx: RuleContext, located: Located) -> tuple[str | None, str | None]:
    """Who the server authenticated, and by which mechanism: this request's
    credentials, else the last ones sent earlier on its connection (a request
    on an authenticated connection carries none)."""
    steps = located.timeline.steps
    for step in (located.step, *reversed(steps[: located.position])):
        if step.realm is not located.step.realm or step.credentials is None:
            continue
        mechanism = _MECHANISM_WORDS.get(step.credentials.mechanism)
        user = user_of(step)
        if user is None and step.credentials.mechanism is Mechanism.KERBEROS:
            user = _kerberos_client(ctx, located)
        return user, mechanism
    return None, None


def _kerberos_client(ctx: RuleContext, located: Located) -> str | None:
    """The client principal the KDC exchanges behind this step name (the AP-REQ
    itself carries it only encrypted)."""
    for exchange in ctx.view.kdc_for(located.ref):
        if exchange.client_principal:
            return exchange.client_principal
    return None


def _anonymous_marks(ctx: RuleContext) -> Iterator[tuple[Hashable, Located | None]]:
    """What anonymous-logon-failed and refused-without-challenge group: under
    ("failed", host) each refused request without credentials whose category
    is 401.1 by evidence stronger than the sequence; marked ("served", host)
    a host that served a request without credentials (2xx/3xx), ("served or
    not seen", host) one that did or whose credentials the capture cut
    (Sent.NOT_SEEN)."""
    for located, evidence in _refused(ctx):
        if (
            located.step.sent is Sent.NOTHING
            and evidence.category is Category.LOGON_FAILED
            and evidence.source is not Source.SEQUENCE
        ):
            yield ("failed", located.host), located
    for located in ctx.steps(Realm.ORIGIN):
        step = located.step
        if step.status is None or not 200 <= step.status < 400:
            continue
        if step.sent is Sent.NOTHING:
            yield ("served", located.host), None
        if step.sent in (Sent.NOTHING, Sent.NOT_SEEN):
            yield ("served or not seen", located.host), None


def _anonymous_logon_failures(
    ctx: RuleContext, groups: Groups
) -> dict[str, list[tuple[Located, CategoryEvidence]]]:
    """The refused anonymous requests anonymous-logon-failed reports, by host,
    from the groups `_anonymous_marks` selected."""
    failed: dict[str, list[tuple[Located, CategoryEvidence]]] = {}
    for key, steps in groups.items():
        if key[0] != "failed":  # type: ignore[index]
            continue
        host = cast(str, key[1])  # type: ignore[index]
        # The category's evidence, decided again as `_refused` decided it.
        failed[host] = [(located, e) for located in steps if (e := ctx.category(located))]
    served = _served_hosts(groups, "served or not seen")
    for host, items in list(failed.items()):
        if _strongest(items).source is not Source.WIRE:
            continue
        # The wire alone: only if IIS says it is IIS and no anonymous request
        # to the host was served (else this URL, not the account, refuses) —
        # nor one whose credentials the capture cut (it may have been one).
        response = items[0][0].step.exchange.response
        server = (response.header("Server") or "") if response is not None else ""
        if host in served or "microsoft-iis" not in server.lower():
            del failed[host]
    return failed


def _served_hosts(groups: Groups, mark: str) -> frozenset[str]:
    """The hosts `_anonymous_marks` marked so."""
    return frozenset(
        cast(str, key[1])  # type: ignore[index]
        for key in groups
        if key[0] == mark  # type: ignore[index]
    )


@grouping_rule(
    "anonymous-logon-failed",
    Severity.ERROR,
    "IIS 401.1 to requests without credentials: the anonymous account cannot log on (its "
    "password, logon rights, group policy, a full Security log)",
    select=_anonymous_marks,
)
def anonymous_logon_failed(ctx: RuleContext, found: Groups) -> Iterator[Finding]:
    """Needs 401s of an IIS server to requests without credentials that stayed
    failures (the client never came back with credentials), whose category is
    401.1 by the IIS log line or the error page, or by the wire: 401s offering no
    scheme from a server that names itself IIS, with no request without
    credentials to that host served in the whole capture (an anonymous account
    that cannot log on fails them all). One finding per host."""
    groups = _anonymous_logon_failures(ctx, found)
    for host, items in groups.items():
        evidence = _strongest(items)
        first = items[0][0]
        offered = sorted({c.scheme for located, _ in items for c in located.step.challenges})
        words = ctx.words()
        yield make_finding(
            anonymous_logon_failed,
            "The anonymous account cannot log on (IIS 401.1 to anonymous requests)",
            f"{counted(len(items), 'request')} without credentials to {host} got 401 (the "
            f"first at frame {words.response(first.step)})"
            + (
                f", and the server offered {', '.join(offered)} to answer with"
                if offered
                else ", and the server offered no authentication scheme to answer with"
            )
            + ". "
            + _meaning(Category.LOGON_FAILED, anonymous=True)
            + " The users' credentials play no part: no request carried any."
            + _evidence_words(evidence, first.step)
            + (
                " A site with every authentication method disabled answers the same way "
                "(401.2): its error page or the IIS log tells the two apart."
                if evidence.source is Source.WIRE
                else ""
            ),
            _fix_text(Category.LOGON_FAILED, anonymous=True),
            [located for located, _ in items[:MAX_CITED]],
            fields=[
                ("category", "401.1"),
                ("evidence", evidence.source.value),
                ("anonymous_requests", str(len(items))),
            ],
            iis=evidence.triple,
            words=words,
        )


def _denied_after_logon(category: Category) -> Select:
    """The failed 401s of `category`, by host and authenticated user."""

    def select(ctx: RuleContext) -> Iterator[tuple[tuple[str, str], Located]]:
        for located, evidence in _refused(ctx):
            if evidence.category is not category and not (
                category is Category.APPLICATION
                and evidence.category is None
                and evidence.substatus == 0
                and evidence.source in (Source.IIS_LOG, Source.ERROR_PAGE)
            ):
                continue
            user, _mechanism = _authenticated_as(ctx, located)
            yield (located.host, user or ""), located

    return select


def _after_logon(
    ctx: RuleContext, groups: Groups, category: Category, declared: Rule
) -> Iterator[Finding]:
    """One finding per host and authenticated user for the 401s of `category`
    (grouped by `_denied_after_logon`)."""
    for key, steps in groups.items():
        host, user = cast(tuple[str, str], key)
        # The category's evidence, decided again as `_refused` decided it.
        items = [(located, evidence) for located in steps if (evidence := ctx.category(located))]
        evidence = _strongest(items)
        first = items[0][0]
        anonymous = not user and first.step.sent is Sent.NOTHING
        words = ctx.words()
        yield make_finding(
            declared,
            _TITLE[category] + (f" for {user}" if user else ""),
            _story(ctx, words, first, len(items), host)
            + " "
            + _meaning(category, anonymous=anonymous)
            + _category_note(category, first)
            + _evidence_words(evidence, first.step),
            _fix_text(category, anonymous=anonymous),
            [located for located, _ in items[:MAX_CITED]],
            fields=[
                ("category", evidence.code),
                ("evidence", evidence.source.value),
                *([("user", user)] if user else []),
                *(
                    [("mechanism", mechanism)]
                    if (mechanism := _authenticated_as(ctx, first)[1])
                    else []
                ),
            ],
            iis=evidence.triple,
            host=host,
            words=words,
        )


def _story(ctx: RuleContext, words: Words, located: Located, count: int, host: str) -> str:
    """What the wire shows: who authenticated how, and the 401 that followed."""
    user, mechanism = _authenticated_as(ctx, located)
    uri = _path(located)
    times = f" ({counted(count, 'time')})" if count > 1 else ""
    if user or mechanism:
        who = f"as {user}" if user else "as a user the capture does not name"
        how = f" with {mechanism}" if mechanism else ""
        return (
            f"The client authenticated {who}{how} (request at frame "
            f"{words.request(located.step)}) and {host} answered 401 for {uri} at frame "
            f"{words.response(located.step)}{times}."
        )
    return (
        f"A request without credentials for {uri} got 401 from {host} at frame "
        f"{words.response(located.step)}{times}."
    )


def _path(located: Located) -> str:
    """The request's path without its query (a query may carry a token)."""
    request = located.step.exchange.request
    return request.uri.split("?", 1)[0] if request is not None else "?"


def _category_note(category: Category, located: Located) -> str:
    uri = _path(located)
    if category is Category.APPLICATION and uri.lower().endswith((".htm", ".html", ".txt", ".css")):
        return (
            f" {uri} is a static file, so a wildcard script map or custom authentication "
            "handles it."
        )
    if category is Category.RESOURCE_ACL:
        return " The password was right: resetting it changes nothing."
    return ""


_TITLE = {
    Category.RESOURCE_ACL: "Authenticated, but the resource ACL denies access (IIS 401.3)",
    Category.FILTER: "Authenticated, but an ISAPI filter denied the request (IIS 401.4)",
    Category.APPLICATION: "Authenticated, but the application denied the request (IIS 401.5)",
}


@grouping_rule(
    "resource-acl-denied",
    Severity.ERROR,
    "IIS 401.3: authenticated, but the file or share ACL denies the user",
    select=_denied_after_logon(Category.RESOURCE_ACL),
)
def resource_acl_denied(ctx: RuleContext, groups: Groups) -> Iterator[Finding]:
    """Needs a failed 401 of an IIS server whose category is 401.3: by its IIS
    log line, its error page, or a Kerberos AP-REP / SPNEGO accept-completed
    inside the 401 (authentication succeeded). One finding per host and user."""
    yield from _after_logon(ctx, groups, Category.RESOURCE_ACL, resource_acl_denied)


@grouping_rule(
    "filter-denied",
    Severity.ERROR,
    "IIS 401.4: authenticated, but an ISAPI filter denied the request",
    select=_denied_after_logon(Category.FILTER),
)
def filter_denied(ctx: RuleContext, groups: Groups) -> Iterator[Finding]:
    """Needs a failed 401 of an IIS server whose category is 401.4 by its IIS
    log line or its error page (nothing on the wire tells a filter apart from an
    application). One finding per host and user."""
    yield from _after_logon(ctx, groups, Category.FILTER, filter_denied)


@grouping_rule(
    "application-denied",
    Severity.ERROR,
    "IIS 401.5: authenticated, but the ISAPI/CGI application (or a wildcard mapping) denied "
    "the request",
    select=_denied_after_logon(Category.APPLICATION),
)
def application_denied(ctx: RuleContext, groups: Groups) -> Iterator[Finding]:
    """Needs a failed 401 of an IIS server whose category is 401.5 by its IIS
    log line or error page, or a 401 naming no scheme after credentials (IIS
    authentication offers its schemes again when it refuses a logon); a logged
    or shown 401.0 (set by the application, not by IIS) counts too. One finding
    per host and user."""
    yield from _after_logon(ctx, groups, Category.APPLICATION, application_denied)


def _denied_elsewhere(ctx: RuleContext) -> Iterator[tuple[tuple[str, str], Located]]:
    """The failed 401s refused after the logon that no IIS category tells, by
    host and authenticated user."""
    for located in ctx.steps(Realm.ORIGIN):
        step = located.step
        response = step.exchange.response
        if (
            step.leg is not Leg.REFUSED_AFTER_LOGON
            or step.outcome is not Outcome.FAILURE
            or response is None
            or ctx.relayed(located)
        ):
            continue
        if looks_like_iis(response) and (
            step.answer is not Answer.OFFER or ctx.category(located) is not None
        ):
            continue  # an IIS category tells it (rules above)
        user, _mechanism = _authenticated_as(ctx, located)
        yield (located.host, user or ""), located


@grouping_rule(
    "denied-after-authentication",
    Severity.ERROR,
    "the credentials were accepted and the request refused anyway where no IIS category "
    "applies (a server that is not IIS, or an application asking for a Bearer token after "
    "Windows authentication)",
    select=_denied_elsewhere,
)
def denied_after_authentication(ctx: RuleContext, groups: Groups) -> Iterator[Finding]:
    """Needs a failed 401 judged refused after the logon (it carries the server's
    final authentication token, names no scheme after credentials, or asks for
    another scheme than the one the logon completed in, e.g. a Bearer token
    after Windows authentication) from a server whose Server header names
    something other than IIS, or from IIS asking for another scheme (its
    application's own demand, none of IIS's categories) unless the IIS log or
    error page names a category: what the wire shows, without borrowing IIS's
    substatuses. One finding per host and user."""
    for key, items in groups.items():
        host, user = cast(tuple[str, str], key)
        first = items[0]
        response = first.step.exchange.response
        assert response is not None
        server = response.header("Server") or "?"
        asked = sorted({c.scheme for c in first.step.challenges})
        if first.step.answer is Answer.COMPLETED:
            proof = (
                "carries the server's final authentication token (accept-completed): the logon "
                "succeeded"
            )
        elif first.step.answer is Answer.OFFER:
            proof = (
                f"asks for {', '.join(asked)} instead, not for the scheme the logon went through "
                "again: whatever sits behind the authentication wants other credentials (an API "
                "expecting a token)"
            )
        else:
            proof = (
                "names no authentication scheme to answer with: the refusal is not a request "
                "for other credentials"
            )
        words = ctx.words()
        yield make_finding(
            denied_after_authentication,
            "Authenticated, but the server refused the request" + (f" for {user}" if user else ""),
            _story(ctx, words, first, len(items), host)
            + f" The 401 {proof}. "
            + (
                f"The server says it is {server}; the 401 is its application's own, not a "
                "refusal of IIS authentication."
                if looks_like_iis(response)
                else f"The server says it is {server}, not IIS, so it logs no IIS substatus: the "
                "refusal comes from what sits behind its authentication (an authorization rule, "
                "the application, a module)."
            ),
            (
                f"Give the client the {', '.join(asked)} credentials the application expects (for "
                "a Bearer token: how it is meant to obtain one), or configure the application to "
                "accept the Windows authentication it receives."
                if first.step.answer is Answer.OFFER
                else f"Look in {server}'s own error log and the application's log for this "
                "request; check the authorization rules for that URL and that user (group "
                "membership, required roles or claims)."
            ),
            items[:MAX_CITED],
            fields=[("server", server), *([("user", user)] if user else [])],
            host=host,
            words=words,
        )


def _refused_unchallenged(ctx: RuleContext) -> Iterator[tuple[Hashable, Located | None]]:
    """What `_anonymous_marks` selects (anonymous-logon-failed's own 401s are
    not refused-without-challenge's), and under ("refused", host) each failed
    401 naming no scheme to a request without credentials whose category no
    log line or error page named."""
    yield from _anonymous_marks(ctx)
    for located in ctx.steps(Realm.ORIGIN):
        step = located.step
        if (
            step.leg is not Leg.ANONYMOUS_REFUSED
            or step.outcome is not Outcome.FAILURE
            or step.exchange.response is None
            or ctx.relayed(located)
        ):
            continue
        evidence = ctx.category(located)
        if evidence is not None and evidence.source in (Source.IIS_LOG, Source.ERROR_PAGE):
            continue  # the log or the page named the category: not ours to guess
        yield ("refused", located.host), located


@grouping_rule(
    "refused-without-challenge",
    Severity.ERROR,
    "requests without credentials answered 401 naming no scheme, where no IIS category "
    "applies: nothing the client could authenticate with",
    select=_refused_unchallenged,
)
def refused_without_challenge(ctx: RuleContext, found: Groups) -> Iterator[Finding]:
    """Needs failed 401s to requests without credentials that name no
    authentication scheme (RFC 9110 section 11.6.1 wants a WWW-Authenticate in
    every 401) and that anonymous-logon-failed does not explain: a server that
    is not IIS (or does not say), or an IIS host that served other requests
    without credentials. The client never came back with credentials. One
    finding per host."""
    claimed = {
        located.ref
        for items in _anonymous_logon_failures(ctx, found).values()
        for located, _ in items
    }
    served = _served_hosts(found, "served")
    groups: dict[str, list[Located]] = {}
    for key, steps in found.items():
        if key[0] == "refused":  # type: ignore[index]
            kept = [located for located in steps if located.ref not in claimed]
            if kept:
                groups[cast(str, key[1])] = kept  # type: ignore[index]
    for host, items in groups.items():
        first = items[0]
        response = first.step.exchange.response
        assert response is not None
        server = response.header("Server")
        iis = server is not None and "microsoft-iis" in server.lower()
        if iis:
            who = (
                f"The server says it is {server}, and other requests without credentials to "
                f"{host} were served: the anonymous account can log on, so this URL itself "
                "refuses it (its file ACL for the anonymous identity, or an application)."
            )
        elif server:
            who = (
                f"The server says it is {server}, not IIS: the refusal comes from its own "
                "configuration or the application, which expects credentials the client was "
                "never asked for (a token, a cookie, a client certificate)."
            )
        else:
            who = (
                "The server does not name itself (no Server header), so nothing says which "
                "layer refused: its configuration or the application expects credentials the "
                "client was never asked for."
            )
        words = ctx.words()
        yield make_finding(
            refused_without_challenge,
            "401 without any authentication scheme to answer with",
            f"{counted(len(items), 'request')} without credentials to {host} got 401 (the first "
            f"at frame {words.response(first.step)}) without a WWW-Authenticate header, and the "
            "client never came back with credentials. A 401 must name the schemes that may "
            "answer it (RFC 9110 section 11.6.1); this one names none, so no client can "
            "authenticate. "
            + who
            + (
                " Other requests without credentials to it were served in this capture."
                if host in served and not iis
                else ""
            ),
            "Look in the server's error log and the application's log for these requests "
            "(Failed Request Tracing on IIS names the module); check which authentication that "
            "URL requires and how the client is meant to obtain it.",
            items[:MAX_CITED],
            fields=[("server", server or "?"), ("anonymous_requests", str(len(items)))],
            host=host,
            words=words,
        )


RULES = (
    anonymous_logon_failed,
    resource_acl_denied,
    filter_denied,
    application_denied,
    denied_after_authentication,
    refused_without_challenge,
)
