"""Per-request schemes (Basic RFC 7617, Digest RFC 7616, Bearer RFC 6750) and
oversized credentials headers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

from authtrace.auth.bearer import BearerChallenge
from authtrace.diagnose.context import (
    Located,
    RuleContext,
    is_proxy,
    make_finding,
    party,
    user_of,
)
from authtrace.diagnose.finding import Finding, Severity
from authtrace.diagnose.rule import Groups, Rule, Select, grouping_rule, rule
from authtrace.handshake.model import Leg, Realm, Sent
from authtrace.handshake.timeline import largest_credentials_field, too_large_text
from authtrace.words import counted


def _basic_in_clear(ctx: RuleContext) -> Iterator[tuple[tuple[str, str], Located]]:
    """Each request with Basic credentials on a clear-text connection, by host and user."""
    for located in ctx.steps():
        if (
            located.step.sent is Sent.BASIC
            and located.timeline.connection.tls is None
            and not ctx.relayed(located)
        ):
            yield (located.host, user_of(located.step) or "?"), located


@grouping_rule(
    "basic-over-cleartext",
    Severity.WARNING,
    "Basic credentials over unencrypted HTTP",
    select=_basic_in_clear,
    needs_pairing=False,  # the request alone exposes the password
)
def basic_over_cleartext(ctx: RuleContext, groups: Groups) -> Iterator[Finding]:
    """Needs a request carrying Basic credentials (RFC 7617 section 4: the password
    is only base64-encoded) on a connection that was clear text on the wire: one
    whose HTTP was decrypted from TLS (`connection.tls`) is left out. One finding
    per host and user."""
    for key, legs in groups.items():
        host, user = cast(tuple[str, str], key)
        words = ctx.words()
        yield make_finding(
            basic_over_cleartext,
            f"Basic credentials sent in clear text ({user})",
            f"{counted(len(legs), 'request')} to {host} carried `{_header_of(legs[0])}: Basic` "
            f"for {user} over unencrypted HTTP (first at frame "
            f"{words.request(legs[0])}): anyone on the path can read the password "
            "(authtrace redacts it; --show-secrets reveals it).",
            "Serve the site over HTTPS only, or use Negotiate/Kerberos; change the password, "
            "it has been exposed.",
            legs[:5],
            words=words,
            fields=[("user", user)],
            host=host,
        )


def _header_of(located: Located) -> str:
    credentials = located.step.credentials
    return credentials.header if credentials is not None else "Authorization"


def _refusals(leg: Leg) -> Select:
    """The steps of `leg` (a refused Basic, Digest or Bearer request), by host,
    realm and user: a person retrying a password is one story."""

    def select(ctx: RuleContext) -> Iterator[tuple[tuple[str, bool, str], Located]]:
        for located in ctx.steps():
            if located.step.leg is leg and not ctx.relayed(located) and not ctx.overruled(located):
                yield (located.host, is_proxy(located), user_of(located.step) or ""), located

    return select


@grouping_rule(
    "basic-logon-failed",
    Severity.ERROR,
    "Basic credentials refused",
    select=_refusals(Leg.BASIC_REJECTED),
)
def basic_logon_failed(ctx: RuleContext, groups: Groups) -> Iterator[Finding]:
    """Needs Basic credentials answered by a 401. One finding per
    host and user."""
    yield from _rejected(
        ctx,
        groups,
        basic_logon_failed,
        "Basic logon failed",
        "{party} refused the user name and password sent with Basic authentication: wrong "
        "password, unknown or locked account, or (IIS) the account lacks the 'Log on locally' "
        "right Basic logons need.",
        "Check the account and password; on IIS check the logon type (defaultLogonDomain, "
        "logonMethod) and the user's logon rights.",
        "{party} refused the user name and password sent in Proxy-Authorization: Basic: wrong "
        "password, or an account unknown to or locked in the directory the proxy checks; the "
        "web server was not asked.",
        "Check the account in the proxy's user directory (squid: the auth_param basic helper "
        "and its password file, LDAP or AD; other proxies: their user store) and the password "
        "saved in the client's proxy settings.",
    )


@grouping_rule(
    "digest-failed",
    Severity.ERROR,
    "Digest response refused (not a stale nonce)",
    select=_refusals(Leg.DIGEST_REJECTED),
)
def digest_failed(ctx: RuleContext, groups: Groups) -> Iterator[Finding]:
    """Needs a Digest response answered by a 401 without stale=true
    (RFC 7616 section 3.3: stale=true asks for a retry, which is
    normal). One finding per host and user."""
    yield from _rejected(
        ctx,
        groups,
        digest_failed,
        "Digest authentication failed",
        "{party} refused the Digest response and did not say stale=true, so it was not an "
        "expired nonce: wrong password, a realm or URI mismatch, or an algorithm the server does "
        "not accept.",
        "Check the password and the realm; compare the response's uri with the request line "
        "(proxies that rewrite URLs break Digest).",
        "{party} refused the Digest response in Proxy-Authorization and did not say "
        "stale=true: wrong password, or a realm the proxy does not know; the web server was not "
        "asked.",
        "Check the account in the proxy's user directory (squid: the auth_param digest helper "
        "and its password file) and the password saved in the client's proxy settings.",
    )


@grouping_rule(
    "bearer-token-rejected",
    Severity.ERROR,
    "Bearer token refused",
    select=_refusals(Leg.BEARER_REJECTED),
)
def bearer_token_rejected(ctx: RuleContext, groups: Groups) -> Iterator[Finding]:
    """Needs a Bearer token answered by a 401; the challenge's
    error and error_description (RFC 6750 section 3) are quoted when present.
    One finding per host and user."""
    yield from _rejected(
        ctx,
        groups,
        bearer_token_rejected,
        "Bearer token rejected",
        "{party} refused the access token.",
        "Get a new token (expired?), check its audience and scopes against what the API "
        "expects, and the clock of the issuer.",
        "{party} refused the access token sent in Proxy-Authorization; the web server was "
        "not asked.",
        "Get a new token for the proxy, and check its audience against what the proxy expects.",
        bearer=True,
    )


def _rejected(
    ctx: RuleContext,
    groups: Groups,
    declared: Rule,
    title: str,
    explanation: str,
    fix: str,
    proxy_explanation: str,
    proxy_fix: str,
    bearer: bool = False,
) -> Iterator[Finding]:
    """One finding per host, realm and user (`_refusals`). A proxy's refusal
    (407) names the proxy and gives proxy-side fixes."""
    for key, legs in groups.items():
        _host, proxy, user = cast(tuple[str, bool, str], key)
        first = legs[0].step
        who = party(legs[0])
        fields: list[tuple[str, str]] = [("user", user)] if user else []
        if proxy:
            fields.append(("proxy", who.removeprefix("the proxy ")))
            explanation, fix = proxy_explanation, proxy_fix
        extra = ""
        if bearer:
            error, description = _bearer_error(legs[0])
            if error:
                fields.append(("error", error))
                extra = f' {party(legs[0], capital=True)} said error="{error}"' + (
                    f" ({description})." if description else "."
                )
        times = f" ({len(legs)} times)" if len(legs) > 1 else ""
        words = ctx.words()
        yield make_finding(
            declared,
            title + (" at the proxy" if proxy else "") + (f" for {user}" if user else "") + times,
            f"Frame {words.request(first)}{', and later ones' if len(legs) > 1 else ''}: "
            + explanation.format(party=party(legs[0], capital=True))
            + extra,
            fix,
            legs[:5],
            words=words,
            fields=fields,
            iis=first.iis,
        )


def _bearer_error(located: Located) -> tuple[str, str]:
    for challenge in located.step.challenges:
        token = challenge.token
        if isinstance(token, BearerChallenge) and token.error:
            return token.error, token.error_description or ""
    return "", ""


# Where each server sets its header limits (the default in parentheses).
_LIMITS = {
    "http.sys": "HTTP.sys MaxFieldLength (16 KB) and MaxRequestBytes (16 KB) under "
    "HKLM\\SYSTEM\\CurrentControlSet\\Services\\HTTP\\Parameters, e.g. 65534 and "
    "16777216, then restart HTTP (or reboot)",
    "apache": "Apache LimitRequestFieldSize (8190) and LimitRequestLine, e.g. "
    "LimitRequestFieldSize 65536",
    "nginx": "nginx large_client_header_buffers (4 8k), e.g. large_client_header_buffers 4 64k",
}


def _limits_of(server: str) -> list[str]:
    lowered = server.lower()
    if "microsoft" in lowered:
        return [_LIMITS["http.sys"]]
    for name in ("apache", "nginx"):
        if name in lowered:
            return [_LIMITS[name]]
    return list(_LIMITS.values())


@rule(
    "auth-header-too-large",
    Severity.ERROR,
    "request headers too large (usually a big Kerberos token): 400",
)
def auth_header_too_large(ctx: RuleContext) -> Iterator[Finding]:
    """Needs a 400 answering a request with credentials, judged too large by what
    it answers rather than by one size (limits differ and are often lowered): the
    error page or reason says the header is too long, the headers exceed every
    default limit (16 KB), or the request's largest field is its credentials
    header (at least 1 KB) and no error page says something else."""
    for located in ctx.steps():
        step = located.step
        if step.leg is not Leg.HEADER_TOO_LARGE or ctx.relayed(located):
            continue
        request = step.exchange.request
        response = step.exchange.response
        size = request.header_bytes if request is not None else 0
        token = len(step.credentials.raw) if step.credentials is not None else 0
        header = step.credentials.header if step.credentials is not None else "Authorization"
        said = too_large_text(response)
        server = (response.header("Server") if response is not None else None) or ""
        limits = _limits_of(server)
        words = ctx.words()
        yield make_finding(
            auth_header_too_large,
            "Request headers too large (authentication token too big)",
            f"The request at frame {words.request(step)} has {size} bytes of headers"
            + (
                f", the largest of them its {token}-byte {header} header"
                if token and largest_credentials_field(request) is not None
                else (f", of which a {token}-byte {header} token" if token else "")
            )
            + ", and the "
            + ("proxy" if step.realm is Realm.PROXY else "server")
            + f" answered 400 (frame {words.response(step)})"
            + (f" saying '{said}'" if said else " without saying why")
            + ". A header larger than the server's limit is refused before authentication; "
            "large Kerberos tickets (users in many groups: a big PAC) are the usual cause.",
            "Raise the limit: "
            + "; or ".join(limits)
            + ". Or make the token smaller: reduce the user's group memberships, enable "
            "resource SID compression.",
            [located],
            words=words,
            fields=[("header_bytes", str(size)), ("token_bytes", str(token))]
            + ([("server", server)] if server else []),
        )


RULES = (
    basic_over_cleartext,
    basic_logon_failed,
    digest_failed,
    bearer_token_rejected,
    auth_header_too_large,
)
