"""No protocol in common: the server asked for authentication the client did
not (or could not) give. IIS logs these as 401.2, "denied by server
configuration" (DESIGN: what a 401 means).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

from authtrace.diagnose.context import (
    Located,
    RuleContext,
    is_proxy,
    make_finding,
    party,
    proxy_fields,
)
from authtrace.diagnose.finding import Finding, Severity
from authtrace.diagnose.rule import Groups, grouping_rule, rule
from authtrace.handshake.model import Leg, Outcome, Sent
from authtrace.words import times

_WINDOWS_SCHEMES = {"negotiate", "ntlm", "kerberos"}


def _ignored_offers(ctx: RuleContext) -> Iterator[tuple[tuple[object, ...], Located | None]]:
    """The anonymous requests whose 401 offering a Windows scheme stayed a
    failure, by ("ignored", client, server); and ("answered", client, server)
    marked for each client that sent credentials to a server."""
    for located in ctx.steps():
        step = located.step
        # A client that sent any credentials to the server did answer it: what
        # went wrong then has its own rule (ntlm-negotiate-rejected,
        # no-common-scheme, auth-lost-on-new-connection, a logon failure). One
        # whose request head the capture cut may have: "never sent" cannot be
        # said of it.
        pair = (ctx.client_of(located), located.server)
        if step.credentials is not None or step.sent is Sent.NOT_SEEN:
            yield ("answered", *pair), None
        if (
            step.leg is not Leg.ANONYMOUS_CHALLENGED
            or step.outcome is not Outcome.FAILURE
            or ctx.relayed(located)
        ):
            continue
        if ctx.overruled(located):
            continue  # the anonymous account's own logon failed (rules.iis)
        offered = {c.scheme.lower() for c in step.challenges}
        if offered & _WINDOWS_SCHEMES:
            yield ("ignored", *pair), located


@grouping_rule(
    "client-ignores-negotiate",
    Severity.ERROR,
    "the server offered Negotiate/NTLM and the client never answered with credentials (the "
    "classic 401.2)",
    select=_ignored_offers,
)
def client_ignores_negotiate(ctx: RuleContext, found: Groups) -> Iterator[Finding]:
    """Needs anonymous requests answered by a 401 offering Negotiate, NTLM or
    Kerberos that ended up failures (the client never came back with credentials
    to that server), from a client that sent no credentials at all to that server
    in the capture (nor a request whose head the capture cut before its
    credentials could be seen). One finding per client and server: the same
    browser repeats the same mistake."""
    keys = [cast(tuple[str, str, str], key) for key in found]
    answered = {key[1:] for key in keys if key[0] == "answered"}
    groups = {
        key[1:]: found[key] for key in keys if key[0] == "ignored" and key[1:] not in answered
    }
    for (client, _server), legs in groups.items():
        first = legs[0]
        proxy = is_proxy(first)
        schemes = ", ".join(sorted({c.scheme for loc in legs for c in loc.step.challenges}))
        body = next((loc.step.iis_from_body for loc in legs if loc.step.iis_from_body), None)
        words = ctx.words()
        yield make_finding(
            client_ignores_negotiate,
            "The client never answered the Windows authentication challenge",
            f"{party(first, capital=True)} offered {schemes} ({times(len(legs))}, first "
            f"at frame {words.response(first)})"
            f" and the client {client} never sent credentials: it repeated the request without "
            + (
                "a Proxy-Authorization header or gave up: the client does not speak, or is not "
                "configured to use, Negotiate/NTLM with its proxy."
                if proxy
                else "an Authorization header or gave up. This is the classic 401.2 (denied by "
                "server configuration): the client does not speak, or is not configured to use, "
                "Negotiate/NTLM for this host"
                + (f"; the server's error page says {body}." if body else ".")
            ),
            (
                "Configure the client to send Windows credentials to the proxy: its proxy "
                "settings (WinHTTP/WinINet use the logged-on user's credentials only for a proxy "
                "they trust for it; Firefox network.negotiate-auth.trusted-uris and "
                "network.automatic-ntlm-auth.allow-proxies; `curl --proxy-negotiate -U :` or "
                "`--proxy-ntlm`); or offer on the proxy a scheme this client supports. "
                if proxy
                else ""
            )
            + "Configure the client to send Windows credentials to this host: Internet Options > "
            "Local intranet sites (IE/Edge/Chrome on Windows), the AuthServerAllowlist policy "
            "(Chrome/Edge elsewhere), network.negotiate-auth.trusted-uris and "
            "network.automatic-ntlm-auth.trusted-uris (Firefox), `curl --negotiate -u :` or "
            "`--ntlm`; for non-browser clients, enable Windows/Negotiate authentication in the "
            "HTTP library. Or enable an authentication scheme this client supports.",
            legs,
            words=words,
            fields=[("offered", schemes), ("client", client), *proxy_fields(first)],
            iis=None if proxy else first.step.iis,
        )


@rule(
    "no-common-scheme",
    Severity.ERROR,
    "the client answered with a scheme the server did not offer",
)
def no_common_scheme(ctx: RuleContext) -> Iterator[Finding]:
    """Needs credentials in a scheme absent from the server's last offer on the
    connection, answered by a 401 offering other schemes that stayed a failure
    (never credentials the capture cut: they may have finished a logon);
    the upstream copy is judged when a proxy relayed the request."""
    for located in ctx.steps():
        step = located.step
        if (
            step.leg is not Leg.SCHEME_NOT_OFFERED
            or step.outcome is not Outcome.FAILURE
            or ctx.relayed(located)
        ):
            continue  # (credentials the capture cut are not judged: links.py)
        credentials = step.credentials
        assert credentials is not None
        offered = ", ".join(c.scheme for c in _last_offer(located)) or "other schemes"
        words = ctx.words()
        proxy = is_proxy(located)
        yield make_finding(
            no_common_scheme,
            f"The client answered with {credentials.scheme}, which the "
            f"{'proxy' if proxy else 'server'} did not offer",
            f"{party(located, capital=True)} offered {offered}; the client sent "
            f"`{credentials.header}: {credentials.scheme} ...` (frame {words.request(step)}) "
            f"and was refused ({step.status}). "
            + (
                "Client and proxy have no authentication scheme in common; the web server was "
                "not asked."
                if proxy
                else "Client and server have no authentication scheme in common."
            ),
            (
                "Enable on the proxy a scheme this client can use (squid: an auth_param line for "
                "it), or configure the client's proxy credentials for one the proxy offers (for "
                "Negotiate/NTLM: the client's Windows-authentication settings for the proxy)."
                if proxy
                else "Enable on the server a scheme this client can use, or configure the client "
                "for one the server offers (for Negotiate/NTLM see the client's "
                "Windows-authentication settings)."
            ),
            [located],
            words=words,
            fields=[("offered", offered), ("sent", credentials.scheme), *proxy_fields(located)],
            iis=None if proxy else step.iis,
        )


def _last_offer(located: Located) -> tuple:
    for position in range(located.position - 1, -1, -1):
        step = located.timeline.steps[position]
        if step.realm is located.step.realm and step.challenges:
            return step.challenges
    return ()


RULES = (client_ignores_negotiate, no_common_scheme)
