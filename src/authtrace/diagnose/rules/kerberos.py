"""Kerberos: silently falling back to NTLM, tickets the server cannot use, clock
skew, and KDC errors that matter. Error codes: RFC 4120 section 7.5.9 (the table
in kerberos/errors.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Iterator
from typing import cast

from authtrace.auth.kinds import Mechanism, Message
from authtrace.diagnose.context import (
    Located,
    RuleContext,
    Words,
    is_ip_literal,
    is_proxy,
    make_finding,
    party,
    proxy_fields,
    spn_of,
)
from authtrace.diagnose.finding import Finding, Severity
from authtrace.diagnose.rule import Groups, Rule, grouping_rule, rule
from authtrace.handshake.links import KDC_CLOCK_SLACK
from authtrace.handshake.model import Leg
from authtrace.iis.predict import CLOCK_SKEW_TRIPLE
from authtrace.kerberos.errors import (
    BENIGN_KDC_ERRORS,
    TICKET_UNDECRYPTABLE_ERRORS,
    kerberos_error,
)
from authtrace.kerberos.kdc import KdcExchange, KdcResult, KdcUnreadable
from authtrace.kerberos.messages import KrbError
from authtrace.words import agreeing, counted

_SKEW = 37
_S_PRINCIPAL_UNKNOWN = 7


def _bare_host(host: str) -> tuple[str, str | None]:
    if host.startswith("[") or host.count(":") != 1:
        return host, None
    name, port = host.rsplit(":", 1)
    return name, port


def _fallbacks(ctx: RuleContext) -> Iterator[tuple[tuple[str, str], Located]]:
    """Negotiate headers that carried NTLM, by (client, host)."""
    for located in ctx.steps():
        credentials = located.step.credentials
        if (
            credentials is not None
            and credentials.scheme.lower() == "negotiate"
            and credentials.mechanism is Mechanism.NTLM
            and not ctx.relayed(located)
        ):
            yield (located.client_ip, located.host), located


def _cut_kdc_traffic(ctx: RuleContext, client: str, before: float) -> list[KdcUnreadable]:
    """The cut datagrams between the client and a KDC up to `before` (plus the
    slack for two capture points), or from any address when none is the
    client's (a client that asks the KDC from another address)."""
    seen = [u for u in ctx.kdc_unreadable if u.time <= before + KDC_CLOCK_SLACK]
    own = [u for u in seen if u.client.ip == client]
    return own or seen


@grouping_rule(
    "kerberos-fallback-to-ntlm",
    Severity.WARNING,
    "Negotiate carried NTLM where Kerberos was expected, with the cause (unknown SPN, host "
    "by IP, KDC unreachable, no KDC traffic)",
    select=_fallbacks,
    needs_pairing=False,  # the client's Negotiate header and the KDC traffic show it
)
def kerberos_fallback_to_ntlm(ctx: RuleContext, groups: Groups) -> Iterator[Finding]:
    """Needs an `Authorization: Negotiate` header whose token decodes to NTLM. The
    cause comes from the KDC traffic of that client before it: a
    KDC_ERR_S_PRINCIPAL_UNKNOWN for HTTP/<host>, a host that is an IP address,
    unanswered KDC requests or connects, another KDC error, tickets asked for
    other HTTP/ names, or no KDC traffic at all (said as such, not as "the client
    did not ask": the KDC may be off the capture's path). One per client and host."""
    for key, legs in groups.items():
        client, host = cast(tuple[str, str], key)
        first = legs[0]
        words = ctx.words()
        name, port = _bare_host(host)
        spn = f"HTTP/{name}"
        kdc = ctx.kdc_from(client, first.time)
        for_spn = list(ctx.view.kdc_for(first.ref))
        unknown = [k for k in for_spn if k.error_code == _S_PRINCIPAL_UNKNOWN]
        other_errors = [k for k in for_spn if k.result is KdcResult.ERROR and k not in unknown]
        unanswered = [k for k in kdc if k.result is KdcResult.UNANSWERED]
        connects = [
            c
            for c in ctx.kdc_connects
            if c.client.ip == client and not c.answered and c.first_time <= first.time + 5.0
        ]
        http_spns = sorted(
            {k.service for k in kdc if k.service and k.service.upper().startswith("HTTP/")}
        )
        fields = [("host", host), ("spn", spn)]
        if unknown:
            cause = (
                f"the KDC answered the ticket request for {spn} with KDC_ERR_S_PRINCIPAL_UNKNOWN "
                f"(frame {words.kdc_reply(unknown[0])}): no account has that SPN registered"
            )
            fix = (
                f"Register the SPN on the account the site runs as: `setspn -S {spn} "
                "DOMAIN\\account` (the computer account for the built-in app-pool identities, "
                "the service account for a custom identity) and check for duplicates with "
                "`setspn -X`."
            )
            for k in unknown:
                words.kdc(k)
            fields.append(("kdc_error", "KDC_ERR_S_PRINCIPAL_UNKNOWN (7)"))
        elif is_ip_literal(name):
            cause = (
                f"the site was reached by its IP address ({name}); Kerberos needs a host name "
                "that matches an SPN, so the client did not even ask the KDC for a ticket"
            )
            fix = "Use the server's DNS name (one that has an HTTP/ SPN) instead of its address."
        elif unanswered or connects:
            where = sorted({str(k.kdc) for k in unanswered} | {str(c.kdc) for c in connects})
            cause = (
                f"the client's requests to the KDC ({', '.join(where)}) were never answered: "
                "the KDC is unreachable from the client (firewall on port 88, wrong DC, "
                "site/DNS problem)"
            )
            fix = (
                "Make the domain controllers reachable on TCP and UDP port 88 from the client, "
                "and check that DNS finds them (_kerberos._tcp SRV records)."
            )
            for k in unanswered:
                words.kdc_request(k)
            for c in connects:
                words.connect(c)
        elif other_errors:
            error = kerberos_error(other_errors[0].error_code or 0)
            cause = f"the KDC refused the ticket for {spn} with {error.name}: {error.meaning}"
            fix = "Resolve the KDC error above; then the client will use Kerberos."
            for k in other_errors:
                words.kdc(k)
            fields.append(("kdc_error", f"{error.name} ({error.code})"))
        elif http_spns:
            cause = (
                f"the client asked the KDC for {', '.join(http_spns)} but not for {spn}: the "
                "name it used does not match a registered SPN (an alias/CNAME whose SPN is "
                "missing)"
            )
            fix = (
                f"Register {spn} on the site's account, or use the name the SPN is registered for."
            )
        elif cut := _cut_kdc_traffic(ctx, client, first.time):
            side = "to" if cut[0].to_kdc else "from"
            cause = (
                "of something in its Kerberos traffic that the capture did not keep: "
                f"{counted(len(cut), 'datagram')} between the client and the KDC "
                f"{agreeing(len(cut), 'was')} cut (first "
                f"{side} {cut[0].kdc}, frame {words.unreadable(cut[0])}), so whether it asked "
                f"for {spn} and what the KDC answered is not seen"
            )
            fix = (
                "Capture again without truncation (`netsh trace ... packettruncatebytes=` not "
                "set or 65535, `pktmon start --pkt-size 0`, tcpdump/dumpcap without -s), "
                "then run authtrace again: the KDC's answer names the cause."
            )
            for datagram in cut[1:3]:
                words.unreadable(datagram)
        else:
            cause = (
                "no Kerberos traffic from the client is in the capture: the client did not try "
                "Kerberos (not logged on to the domain, the site is not in the Local intranet "
                "zone / allow-list, or the capture was taken where the KDC traffic does not pass)"
            )
            fix = (
                f"Check on the client with `klist get {spn}`; make sure the site is in the "
                "intranet zone and the SPN exists."
            )
        if port and port not in ("80", "443"):
            fix += (
                f" The site uses port {port}: Windows clients ask for HTTP/{name} without the "
                "port unless told otherwise (SPN with port only if the client appends it)."
            )
        yield make_finding(
            kerberos_fallback_to_ntlm,
            "Negotiate fell back to NTLM instead of Kerberos",
            f"The client answered the Negotiate challenge with an NTLM token (frame "
            f"{words.request(first)}) instead of a Kerberos ticket because {cause}. NTLM "
            "works only where connection-based authentication survives every hop and is "
            "slower and weaker than Kerberos.",
            fix,
            legs[:3],
            words=words,
            fields=fields,
        )


@rule(
    "kerberos-ticket-rejected",
    Severity.ERROR,
    "the server answered a Kerberos ticket with 401 (SPN on the wrong account, stale key)",
)
def kerberos_ticket_rejected(ctx: RuleContext) -> Iterator[Finding]:
    """Needs a Kerberos AP-REQ (bare or in SPNEGO) answered by 401 without an
    AP-REP, unless the answer's KRB-ERROR is a clock skew
    (kerberos-clock-skew). The KDC exchange that issued the ticket is cited when
    the capture has it."""
    for located in ctx.steps():
        step = located.step
        if step.leg is not Leg.KERBEROS_REJECTED or ctx.relayed(located):
            continue
        if ctx.overruled(located):
            continue  # the log or page names another category (rules.iis)
        code = _response_krb_error(located)
        if code == _SKEW:
            continue  # kerberos-clock-skew
        spn = spn_of(step) or "the service"
        words = ctx.words()
        issued = [k for k in ctx.view.kdc_for(located.ref) if k.result is KdcResult.TICKET]
        fields = [("spn", spn)]
        detail = ""
        if code is not None:
            error = kerberos_error(code)
            fields.append(("krb_error", f"{error.name} ({code})"))
            detail = f" The server's answer carries {error.name}: {error.meaning}."
            if code in TICKET_UNDECRYPTABLE_ERRORS:
                detail += " The ticket was encrypted for a key the server does not have."
        proxy = is_proxy(located)
        who = party(located)
        if proxy:
            detail = detail.replace("The server's answer", "The proxy's answer").replace(
                "the server does not have", "the proxy does not have"
            )
        yield make_finding(
            kerberos_ticket_rejected,
            f"{'The proxy' if proxy else 'The server'} rejected the client's Kerberos ticket",
            f"The client presented a Kerberos ticket for {spn} (frame {words.request(step)})"
            + (f", issued by the KDC at frame {words.kdc_reply(issued[-1])}," if issued else "")
            + f" and {who} answered {step.status} again without accepting it."
            + detail
            + (
                " The usual cause is that the proxy's keytab does not hold the current key of "
                "the SPN the client asked for: the SPN is registered on another account than the "
                "one the keytab was made for, or that account's password (key version) changed "
                "since."
                if proxy
                else " The usual cause is that the SPN is registered on a different account "
                "than the one the site runs as: a custom application-pool identity with "
                "kernel-mode authentication off (or useAppPoolCredentials missing), a duplicate "
                "SPN, or a service account whose password (key version) changed."
            ),
            (
                f"On the proxy, check its keytab against the directory: `klist -k` lists the "
                f"principals and key versions it holds (squid: the keytab negotiate_kerberos_auth "
                f"reads, KRB5_KTNAME); find the account holding {spn} (`setspn -Q {spn}`) and "
                "export a fresh keytab for it (ktpass / msktutil) after any password change; "
                "remove duplicate SPNs (`setspn -X`)."
                if proxy
                else f"Find the account holding the SPN (`setspn -Q {spn}`) and make the site run "
                "as it, or move the SPN to the app-pool identity; with a custom identity and "
                "kernel-mode authentication set useAppPoolCredentials=true; remove duplicates "
                "(`setspn -X`). IIS logs 401.1 for this."
            ),
            [located],
            words=_with_kdc(words, issued[-1:]),
            fields=fields + proxy_fields(located),
            iis=None if proxy else step.iis,
        )


def _response_krb_error(located: Located) -> int | None:
    for challenge in located.step.challenges:
        if challenge.message is Message.KRB_ERROR:
            inner = challenge.innermost
            if isinstance(inner, KrbError):
                return inner.error_code
    return None


def _skewed(ctx: RuleContext) -> Iterator[tuple[Hashable, Located]]:
    """The server answers that carry KRB_AP_ERR_SKEW, in capture order."""
    for located in ctx.steps():
        if _response_krb_error(located) == _SKEW and not ctx.relayed(located):
            yield "skew", located


@grouping_rule(
    "kerberos-clock-skew",
    Severity.ERROR,
    "KRB_AP_ERR_SKEW: clocks differ too much",
    select=_skewed,
)
def kerberos_clock_skew(ctx: RuleContext, groups: Groups) -> Iterator[Finding]:
    """Needs a KRB-ERROR with code 37 (KRB_AP_ERR_SKEW, RFC 4120 section 7.5.9): in
    a server's 401 answering a ticket, or in a KDC reply."""
    # The 401s were selected block by block; the KDC replies are the capture's
    # KDC exchanges: no timeline is read here.
    for located in groups.get("skew", []):
        words = ctx.words()
        proxy = is_proxy(located)
        side = "proxy" if proxy else "server"
        yield make_finding(
            kerberos_clock_skew,
            f"Kerberos failed: client and {side} clocks differ too much",
            f"{party(located, capital=True)} answered the client's Kerberos ticket (frame "
            f"{words.request(located)}) with KRB_AP_ERR_SKEW: the clocks of client and "
            f"{side} differ by more than the allowed skew (5 minutes by default).",
            f"Synchronise the clocks (w32tm /resync, NTP) of client, {side} and domain "
            "controllers.",
            [located],
            words=words,
            fields=[("krb_error", "KRB_AP_ERR_SKEW (37)"), *proxy_fields(located)],
            iis=None if proxy else CLOCK_SKEW_TRIPLE,
        )
    for exchange in ctx.kdc:
        if exchange.error_code == _SKEW:
            yield _kdc_finding(
                ctx,
                kerberos_clock_skew,
                "Kerberos failed: client and KDC clocks differ too much",
                exchange,
                "Synchronise the client's clock with the domain controllers (w32tm /resync).",
            )


def _fallback_services(ctx: RuleContext) -> Iterator[tuple[Hashable, None]]:
    """Marks the service HTTP/<host> of each Negotiate header that carried NTLM
    (kerberos-fallback-to-ntlm explains its unknown SPN): no step is kept."""
    for (_client, host), _located in _fallbacks(ctx):
        yield f"HTTP/{_bare_host(host)[0]}".lower(), None


@grouping_rule(
    "kdc-error",
    Severity.WARNING,
    "the KDC refused a ticket request (errors that are normal are left out)",
    select=_fallback_services,
)
def kdc_error(ctx: RuleContext, explained: Groups) -> Iterator[Finding]:
    """Needs a KRB-ERROR reply from the KDC that is not normal (PREAUTH_REQUIRED,
    RESPONSE_TOO_BIG ... are left out), not a clock skew, and not an unknown SPN
    that kerberos-fallback-to-ntlm already explains. One per client, service and
    error code."""
    # `explained`: the services the blocks marked; the rest reads the capture's
    # KDC exchanges, no timeline.
    seen: set[tuple[str, str | None, int]] = set()
    for exchange in ctx.kdc:
        code = exchange.error_code
        if exchange.result is not KdcResult.ERROR or code is None:
            continue
        if code in BENIGN_KDC_ERRORS or code == _SKEW:
            continue
        service = (exchange.service or "").split("@", 1)[0].lower()
        if code == _S_PRINCIPAL_UNKNOWN and service in explained:
            continue
        key = (exchange.client.ip, exchange.service, code)
        if key in seen:
            continue
        seen.add(key)
        error = kerberos_error(code)
        yield _kdc_finding(
            ctx,
            kdc_error,
            f"The KDC refused a ticket request: {error.name}",
            exchange,
            _KDC_FIXES.get(code, "See the KDC error's meaning above."),
        )


_KDC_FIXES = {
    6: "Check the user name and realm the client uses.",
    7: "Register the missing SPN on the service's account (setspn -S).",
    8: "Remove the duplicate SPN (setspn -X lists them).",
    12: "Check the account's logon restrictions (logon hours, workstations).",
    14: "Enable an encryption type both sides support (msDS-SupportedEncryptionTypes; "
    "reset the account password to create AES keys).",
    18: "The account is disabled or locked out: enable or unlock it.",
    23: "The password has expired: change it.",
    24: "Wrong password (pre-authentication failed); repeated failures lock the account.",
}


def _with_kdc(words: Words, exchanges: list[KdcExchange]) -> Words:
    for exchange in exchanges:
        words.kdc(exchange)
    return words


def _kdc_finding(
    ctx: RuleContext, declared: Rule, title: str, exchange: KdcExchange, fix: str
) -> Finding:
    error = kerberos_error(exchange.error_code or 0)
    words = _with_kdc(ctx.words(), [exchange])
    finding = make_finding(
        declared,
        title,
        f"The KDC {exchange.kdc.ip} answered the {_kind(exchange)} of {exchange.client.ip}"
        f" for {exchange.service or 'a service'} with {error.name} ({error.code}): "
        f"{error.meaning}" + (f" (e-text: {exchange.e_text})" if exchange.e_text else "") + ".",
        fix,
        [],
        words=words,
        host=exchange.service,
        fields=(
            ("kdc_error", f"{error.name} ({error.code})"),
            ("service", exchange.service or ""),
            ("client_principal", exchange.client_principal or ""),
        ),
    )
    connections = (exchange.connection,) if exchange.connection is not None else ()
    return dataclasses.replace(finding, connections=connections)


def _kind(exchange: KdcExchange) -> str:
    if exchange.request_type is Message.AS_REQ:
        return "AS-REQ"
    if exchange.request_type is Message.TGS_REQ:
        return "TGS-REQ"
    return "request"


RULES = (kerberos_fallback_to_ntlm, kerberos_ticket_rejected, kerberos_clock_skew, kdc_error)
