"""NTLM failures: wrong credentials, weak or anonymous responses, missing
channel bindings, and repeated failures that lock accounts (MS-NLMP 3.3 for the
response kinds, 2.2.2.1 for MsvAvChannelBindings)."""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import cast

from authtrace.auth.kinds import Message
from authtrace.auth.ntlm import NtlmAuthenticate, NtlmResponseKind
from authtrace.diagnose.context import (
    Located,
    RuleContext,
    is_proxy,
    is_sure,
    make_finding,
    party,
    proxy_fields,
    user_of,
)
from authtrace.diagnose.finding import Finding, Severity
from authtrace.diagnose.rule import Groups, grouping_rule, rule
from authtrace.diagnose.rules.http2 import challenge_on_another_stream
from authtrace.handshake.model import Leg, Outcome, State
from authtrace.handshake.timeline import channel_binding
from authtrace.tls.bindings import Binding, ntlm_binding_value, server_end_point
from authtrace.words import counted, times

# A NEGOTIATE refused on a connection where another handshake was half done is
# a symptom of interleaving (topology.ntlm_handshake_split), not of the client.
_MIDWAY = frozenset({State.NTLM_CHALLENGED, State.CONTINUING})

# More failures than this for one user in one capture risks an account lockout.
LOCKOUT_RISK_FAILURES = 3


def _authenticate(located: Located) -> NtlmAuthenticate | None:
    credentials = located.step.credentials
    if credentials is None or credentials.message is not Message.NTLM_AUTHENTICATE:
        return None
    inner = credentials.innermost
    return inner if isinstance(inner, NtlmAuthenticate) else None


def _failed_logons(ctx: RuleContext) -> list[Located]:
    """Refused AUTHENTICATE messages that answered their own CHALLENGE: a split
    handshake (ntlm-handshake-split) or an anonymous logon (ntlm-anonymous) is
    explained by its own rule, and so is a refusal of an unbound AUTHENTICATE
    over TLS (channel-binding-missing), of one bound to another certificate
    (channel-binding-other-certificate), or of one sent across HTTP/2 streams
    (ntlm-over-http2)."""
    split = {s.authenticate for s in ctx.view.splits}
    split |= {located.ref for located in _bound(ctx, Binding.NOT_SENT)}
    split |= {located.ref for located in _bound(ctx, Binding.OTHER_CERTIFICATE)}
    failed = []
    for located in ctx.steps():
        if (
            located.step.leg is not Leg.NTLM_REJECTED
            or located.step.outcome is not Outcome.FAILURE
            or ctx.relayed(located)
            or located.ref in split
            or ctx.overruled(located)
            or located.step.exchange.stream is not None
        ):
            continue
        message = _authenticate(located)
        if message is not None and message.anonymous:
            continue
        failed.append(located)
    return failed


@rule(
    "ntlm-logon-failed",
    Severity.ERROR,
    "full NTLM handshake on one connection, final 401 (wrong password, account problem, "
    "loopback check)",
)
def ntlm_logon_failed(ctx: RuleContext) -> Iterator[Finding]:
    """Needs an NTLM AUTHENTICATE answering the CHALLENGE just before it on the
    same connection, refused with a 401 that ended up a failure; not anonymous,
    not part of a split handshake, not an unbound AUTHENTICATE over TLS (each has
    its own rule). Same client and server address, or the local-call flag, adds
    the loopback check. Channel binding is never suggested: a refusal where TLS was
    in the path and the binding is missing is channel-binding-missing instead,
    and without TLS there is no channel to bind (MS-NLMP 3.1.5.1.2)."""
    for located in _failed_logons(ctx):
        message = _authenticate(located)
        user = user_of(located.step) or "an unknown user"
        workstation = message.workstation if message else ""
        connection = located.timeline.connection
        # The loopback check (KB 896861): Windows refuses NTLM logons from the
        # server to itself under a name other than its own.
        loopback = connection.client.ip == connection.server.ip or (
            message is not None and message.local_call
        )
        proxy = is_proxy(located)
        who = party(located)
        words = ctx.words()
        yield make_finding(
            ntlm_logon_failed,
            f"NTLM logon failed{' at the proxy' if proxy else ''} for {user}",
            f"The client completed the NTLM handshake on connection "
            f"{located.timeline.connection.id} as {user}"
            + (f" from workstation {workstation}" if workstation else "")
            + f" (AUTHENTICATE at frame {words.request(located.step)}) and {who} answered "
            f"{located.step.status}: {who} (or its domain controller) refused the credentials "
            "— wrong password, unknown, disabled, expired or locked-out account, or a logon "
            "right removed by policy."
            + (
                " Client and server are the same machine: Windows' loopback check refuses "
                "NTLM to itself under a host name that is not its own."
                if loopback
                else ""
            ),
            (
                "Add the host name to BackConnectionHostNames (or test from another machine). "
                if loopback
                else ""
            )
            + "Check the account on the domain controller (Security log event 4625/4776 names the "
            "exact reason), the password saved in the client (Credential Manager), and "
            + (
                "the proxy's domain membership and NTLM helper (squid: ntlm_auth / winbind)."
                if proxy
                else "the 'Access this computer from the network' right on the server."
            ),
            [located],
            fields=[("user", user)]
            + ([("workstation", workstation)] if workstation else [])
            + ([("proxy", who.removeprefix("the proxy "))] if proxy else []),
            iis=located.step.iis,
            words=words,
        )


def _failed_logon_users(ctx: RuleContext) -> Iterator[tuple[str, Located]]:
    """Each refused NTLM, Basic or Digest logon that names a user, by the user
    (case-insensitive)."""
    for located in ctx.steps():
        step = located.step
        if step.outcome is not Outcome.FAILURE or ctx.relayed(located):
            continue
        if step.leg not in (Leg.NTLM_REJECTED, Leg.BASIC_REJECTED, Leg.DIGEST_REJECTED):
            continue
        if ctx.overruled(located):
            continue  # authenticated, refused afterwards: not a failed logon
        user = user_of(step)
        if user:
            yield user.lower(), located


@grouping_rule(
    "repeated-logon-failures",
    Severity.WARNING,
    "several failed logons for one user: lockout risk",
    select=_failed_logon_users,
)
def repeated_logon_failures(ctx: RuleContext, by_user: Groups) -> Iterator[Finding]:
    """Needs at least LOCKOUT_RISK_FAILURES refused NTLM, Basic or Digest logons
    naming the same user (case-insensitive) in the capture."""
    for failures in by_user.values():
        if len(failures) < LOCKOUT_RISK_FAILURES:
            continue
        user = user_of(failures[0].step) or "?"
        words = ctx.words()
        yield make_finding(
            repeated_logon_failures,
            f"{len(failures)} failed logons for {user}: account lockout risk",
            f"{user} failed to authenticate {len(failures)} times in this capture (on "
            f"{counted(len({f.timeline.connection.id for f in failures}), 'connection')}). "
            "Each failure "
            "counts towards the domain's account lockout threshold.",
            "Fix the stored or typed password before the account locks out; find the client "
            "that retries (often a saved credential, a mapped drive, a service or a phone).",
            failures,
            fields=[("user", user), ("failures", str(len(failures)))],
            words=words,
        )


def _ntlmv1_users(ctx: RuleContext) -> Iterator[tuple[tuple[str, str], Located]]:
    """Each non-anonymous AUTHENTICATE with a 24-byte NT response, by host and user."""
    for located in ctx.steps():
        message = _authenticate(located)
        if message is None or ctx.relayed(located):
            continue
        if message.response_kind is not NtlmResponseKind.NTLMV1 or message.anonymous:
            continue
        yield (located.host, user_of(located.step) or "?"), located


@grouping_rule(
    "ntlmv1-response",
    Severity.WARNING,
    "NTLMv1 (24-byte) response, weak and refused where NTLMv2 is required",
    select=_ntlmv1_users,
    needs_pairing=False,  # the AUTHENTICATE alone shows it; refusals counted if sure
)
def ntlmv1_response(ctx: RuleContext, groups: Groups) -> Iterator[Finding]:
    """Needs a non-anonymous NTLM AUTHENTICATE whose NT response is 24 bytes
    (MS-NLMP 3.3.1), accepted or not. One finding per host and user: the
    client's LM compatibility level is one setting."""
    for key, legs in groups.items():
        _host, user = cast(tuple[str, str], key)
        first = legs[0]
        message = _authenticate(first)
        assert message is not None
        refused = [leg for leg in legs if leg.step.leg is Leg.NTLM_REJECTED and is_sure(leg.step)]
        words = ctx.words()
        yield make_finding(
            ntlmv1_response,
            f"NTLMv1 response from {user}" + (f" ({len(legs)} times)" if len(legs) > 1 else ""),
            (
                f"{len(legs)} AUTHENTICATE messages (the first at frame "
                f"{words.request(first.step)}) carry 24-byte NTLMv1 responses"
                if len(legs) > 1
                else f"The AUTHENTICATE at frame {words.request(first.step)} carries a 24-byte "
                "NTLMv1 response"
            )
            + (" (with extended session security)" if message.extended_session_security else "")
            + ". NTLMv1 is easily cracked, and servers or domains that require NTLMv2 refuse it"
            + (f" — here the server answered 401 {times(len(refused))}." if refused else "."),
            "Set 'Network security: LAN Manager authentication level' to 'Send NTLMv2 response "
            "only. Refuse LM & NTLM' on clients (LmCompatibilityLevel 5), and update clients "
            "that cannot do NTLMv2.",
            legs[:5],
            fields=[("user", user), ("response", "NTLMv1"), ("count", str(len(legs)))],
            iis=(refused[0] if refused else first).step.iis,
            words=words,
        )


@rule(
    "ntlm-anonymous",
    Severity.WARNING,
    "anonymous NTLM AUTHENTICATE",
    needs_pairing=False,  # the AUTHENTICATE alone shows it
)
def ntlm_anonymous(ctx: RuleContext) -> Iterator[Finding]:
    """Needs an NTLM AUTHENTICATE that is anonymous (MS-NLMP 3.2.5.1.2: empty
    user and responses, or the anonymous flag)."""
    for located in ctx.steps():
        message = _authenticate(located)
        if message is None or not message.anonymous or ctx.relayed(located):
            continue
        words = ctx.words()
        yield make_finding(
            ntlm_anonymous,
            "Anonymous NTLM authentication",
            f"The AUTHENTICATE at frame {words.request(located.step)} is anonymous (no user, "
            "empty responses): the client had no credentials to offer for this server, "
            "or was told to log on anonymously.",
            "Check why the client has no credentials for this site (not logged on to the "
            "domain, a service running as a local account, credential delegation settings).",
            [located],
            iis=located.step.iis,
            words=words,
        )


@rule(
    "channel-binding-missing",
    Severity.ERROR,
    "NTLM over TLS without channel binding refused (Extended Protection)",
)
def channel_binding_missing(ctx: RuleContext) -> Iterator[Finding]:
    """Needs a refused NTLMv2 AUTHENTICATE with no (or an all-zero)
    MsvAvChannelBindings (MS-NLMP 2.2.2.1) where TLS was in the path: decrypted
    in this capture (then proved, whatever the port), else cleartext HTTP on a
    TLS port of a capture without TLS (exported decrypted), or a proxy that
    says so (X-Forwarded-Proto: https, Front-End-Https: on)."""
    for located in _bound(ctx, Binding.NOT_SENT):
        message = _authenticate(located)
        assert message is not None and message.ntlmv2 is not None
        missing = not message.ntlmv2.channel_bindings_present
        body = located.step.iis_from_body
        words = ctx.words()
        proxy = is_proxy(located)
        who = party(located)
        yield make_finding(
            channel_binding_missing,
            "NTLM without channel binding refused"
            + (" by the proxy" if proxy else " (Extended Protection)"),
            f"The AUTHENTICATE at frame {words.request(located.step)} "
            + ("has no MsvAvChannelBindings" if missing else "has an all-zero channel binding")
            + f" and {who} refused it ({located.step.status}). "
            + (
                "The proxy requires a binding to the TLS channel the client opened to it; a "
                "client that does not send one, or a TLS-inspecting device between client and "
                "proxy, fails it; the web server was not asked."
                if proxy
                else "With Extended Protection for Authentication the server requires a binding "
                "to its own TLS channel; a client that does not send one, or a TLS-terminating "
                "proxy or load balancer in front of the server, fails it"
                + (f" (the server's page says {body})." if body else ".")
            ),
            (
                "Let the client reach the proxy over TLS with nothing inspecting it in between, "
                "update the client so it sends channel bindings, or relax the proxy's channel-"
                "binding (Extended Protection) setting for these clients; or authenticate to the "
                "proxy with Kerberos."
                if proxy
                else "Terminate TLS on the server itself (TLS pass-through on the balancer), or "
                "set extendedProtection tokenChecking to Allow (with the proxy's SPN in spnList), "
                "update the client so it sends channel bindings, or use Kerberos."
            ),
            [located],
            fields=[("user", user_of(located.step) or "?"), *proxy_fields(located)],
            iis=None if proxy else located.step.iis,
            words=words,
        )


def _bound(ctx: RuleContext, verdict: Binding, refused: bool = True) -> list[Located]:
    """NTLMv2 AUTHENTICATEs whose channel binding has this verdict
    (handshake/timeline.py `channel_binding`: proved from the server
    certificate when the TLS was decrypted, else from hints), refused ones
    only unless `refused` is False. One sent on another HTTP/2 stream than its
    CHALLENGE is ntlm-over-http2's: the context was lost before any binding
    could be checked."""
    found = []
    for located in ctx.steps():
        message = _authenticate(located)
        if (
            message is None
            or ctx.relayed(located)
            or (refused and located.step.leg is not Leg.NTLM_REJECTED)
            or ctx.overruled(located)
            or (refused and challenge_on_another_stream(located) is not None)
        ):
            continue
        connection = located.timeline.connection
        if channel_binding(connection, located.step.exchange.request, message) is verdict:
            found.append(located)
    return found


def _other_certificate_bindings(ctx: RuleContext) -> Iterator[tuple[Hashable, Located | None]]:
    """The AUTHENTICATEs bound to another certificate (under "bound"), and,
    marked without a step, each decrypted connection's server certificate
    binding with who presented it (under ("owner", binding value, connection
    id, server, client)): the binding -> connection table carried from block
    to block is these small keys. O(connections of the block)."""
    for located in _bound(ctx, Binding.OTHER_CERTIFICATE, refused=False):
        yield "bound", located
    for timeline in ctx.view.timelines:
        tls = timeline.connection.tls
        if tls is None or not tls.certificates:
            continue
        end_point = server_end_point(tls.certificates[0])
        if end_point is not None:
            connection = timeline.connection
            value = ntlm_binding_value(end_point)
            yield (
                ("owner", value, connection.id, str(connection.server), str(connection.client)),
                None,
            )


@dataclass(frozen=True, slots=True)
class _Owner:
    """The connection that first presented a certificate, as the finding names it."""

    id: int
    server: str
    client: str


def _certificate_owners(groups: Groups) -> dict[bytes, _Owner]:
    """The NTLM channel-binding value of each decrypted connection's server
    certificate -> the first connection that presented it. O(connections)."""
    owners: dict[bytes, _Owner] = {}
    marked = [key for key in groups if isinstance(key, tuple) and key[0] == "owner"]
    for _owner, value, connection, server, client in sorted(marked, key=lambda key: key[2]):
        owners.setdefault(value, _Owner(connection, server, client))
    return owners


@grouping_rule(
    "channel-binding-other-certificate",
    Severity.ERROR,
    "NTLM bound to another TLS certificate than the server's: TLS is terminated or "
    "inspected in between",
    select=_other_certificate_bindings,
)
def channel_binding_other_certificate(ctx: RuleContext, groups: Groups) -> Iterator[Finding]:
    """Needs an NTLMv2 AUTHENTICATE over TLS decrypted in this capture whose
    MsvAvChannelBindings is not the MD5 of this connection's server certificate
    binding (RFC 5929 tls-server-end-point, MS-NLMP 2.2.2.1): the client spoke
    TLS to another certificate (a TLS-terminating proxy, load balancer or
    inspection device) and the AUTHENTICATE was relayed. An error when the
    server refused it (Extended Protection), a warning when it accepted it (the
    server does not check bindings, so it cannot tell a relayed logon apart).
    Never without the certificate of the very connection: no guess from ports.
    When another decrypted connection of the capture presented the certificate
    the binding is for (the proxy's front end), the finding names it: one pass
    over the connections builds a binding -> connection table."""
    # That pass is each block's over its own connections (the marked owners).
    found = groups.get("bound")
    owners = _certificate_owners(groups) if found else {}
    for located in found or ():
        refused = located.step.leg is Leg.NTLM_REJECTED
        words = ctx.words()
        frame = words.request(located)
        name = located.timeline.connection.tls
        sni = f" ({name.server_name})" if name is not None and name.server_name else ""
        message = _authenticate(located)
        assert message is not None and message.ntlmv2 is not None
        owner = owners.get(message.ntlmv2.av_pairs.channel_bindings or b"")
        yield make_finding(
            channel_binding_other_certificate,
            "NTLM bound to another TLS certificate: TLS is terminated or inspected in between",
            f"The AUTHENTICATE at frame {frame} carries a channel binding, and it is not the "
            f"one of the certificate this server{sni} presented on this connection: the "
            "client spoke TLS with another certificate (a TLS-terminating proxy, load "
            "balancer or inspection device between client and server) and the AUTHENTICATE "
            "was passed on over a new TLS connection. "
            + (
                f"It is bound to the certificate that {owner.server} presented to "
                f"{owner.client} on connection {owner.id}: that is where the client's TLS "
                "ended. "
                if owner is not None
                else ""
            )
            + (
                "The server refused it: with Extended Protection it only accepts a binding to "
                "its own TLS channel."
                if refused
                else "The server accepted it, so it does not check channel bindings: it cannot "
                "tell a logon relayed by an attacker apart from this one."
            ),
            "Terminate TLS on the server itself (TLS pass-through on the balancer or proxy), "
            "exempt the proxy with extendedProtection tokenChecking Allow and its SPN in "
            "spnList, or use Kerberos."
            if refused
            else "Turn on Extended Protection (tokenChecking Require) once clients reach the "
            "server without TLS inspection in between, or use Kerberos.",
            [located],
            words=words,
            severity=None if refused else Severity.WARNING,
            fields=[("user", user_of(located.step) or "?"), ("binding", "other_certificate")],
            iis=located.step.iis,
        )


def _negotiate_rejections(ctx: RuleContext) -> Iterator[tuple[Hashable, Located | None]]:
    """Under ("rejected", client, host, proxy): each NTLM NEGOTIATE refused
    without a CHALLENGE; under ("authenticated", client, host, proxy): each
    step with credentials that left its connection authenticated (whether the
    client got in another way afterwards); "splits" marked when the block
    holds a split handshake."""
    if ctx.view.splits:
        yield "splits", None
    for located in ctx.steps():
        key = (ctx.client_of(located), located.host, is_proxy(located))
        if located.step.state_after is State.AUTHENTICATED and located.step.credentials:
            yield ("authenticated", *key), located
        if (
            located.step.leg is Leg.NTLM_NEGOTIATE_REJECTED
            and located.step.state_before not in _MIDWAY
            and not ctx.relayed(located)
        ):
            yield ("rejected", *key), located


@grouping_rule(
    "ntlm-negotiate-rejected",
    Severity.ERROR,
    "the server refused the NTLM NEGOTIATE before any challenge",
    select=_negotiate_rejections,
)
def ntlm_negotiate_rejected(ctx: RuleContext, found: Groups) -> Iterator[Finding]:
    """Needs an NTLM NEGOTIATE answered by a 401 without a CHALLENGE on a
    connection that was not in the middle of another handshake (that is
    interleaving: ntlm-handshake-split). One finding per client and host; a
    warning when the same client then authenticated to that host another way
    (Chromium falls back to Kerberos): NTLM is still broken for it, but nothing
    failed."""
    rejected = [
        cast(tuple[str, str, bool], key[1:])
        for key in found
        if isinstance(key, tuple) and key[0] == "rejected"
    ]
    splits = "splits" in found
    for client, host, proxy in rejected:
        legs = found[("rejected", client, host, proxy)]
        refusal = legs[0]
        credentials = refusal.step.credentials
        size = len(credentials.raw) if credentials is not None else 0
        # The first authentication from the first refusal on, found by the
        # steps' times alone: only that step is located (each holds its
        # timeline, read back from disk when spilled: diagnose/groups.py).
        start = legs.time(0)
        authenticated = found.get(("authenticated", client, host, proxy))
        after = None
        if authenticated:
            after = min(
                (i for i in range(len(authenticated)) if authenticated.time(i) >= start),
                key=authenticated.time,
                default=None,
            )
        later = authenticated[after] if authenticated and after is not None else None
        used = later.step.credentials if later is not None else None
        mechanism = used.mechanism.value if used is not None else ""
        words = ctx.words()
        who = party(refusal)
        yield make_finding(
            ntlm_negotiate_rejected,
            f"The {'proxy' if proxy else 'server'} refused the client's NTLM NEGOTIATE without "
            "a CHALLENGE",
            f"The client {client} opened an NTLM handshake ({size}-byte NEGOTIATE at frame "
            f"{words.request(refusal.step)}) and {who} answered {refusal.step.status} without a "
            f"CHALLENGE ({times(len(legs))}), so no password was ever checked. "
            + (
                "The proxy's NTLM helper does not accept this client's NEGOTIATE (message "
                "version or flags it requires), or NTLM is turned off in the proxy's "
                "authentication setup; the web server was not asked."
                if proxy
                else "The server's NTLM implementation does not accept this client's NEGOTIATE "
                "(message version or flags it requires, e.g. gss-ntlmssp refusing curl's 32-byte "
                "NEGOTIATE), or NTLM is disabled for this site or by policy (Restrict NTLM)."
            )
            + (
                " This capture also shows a proxy splitting NTLM handshakes: a NEGOTIATE "
                "forwarded on an upstream connection that another client's handshake is using "
                "is refused the same way."
                if splits
                else ""
            )
            + (
                f" The client then authenticated with {mechanism} (credentials at frame "
                f"{words.request(later.step)}), so nothing failed here; NTLM stays broken for "
                "this client where that is not available."
                if later is not None
                else ""
            ),
            (
                "On the proxy, check its NTLM helper and its domain membership (squid: "
                "auth_param ntlm with ntlm_auth from Samba; `wbinfo -t` checks the machine "
                "account's trust), and that the helper accepts this client's NEGOTIATE; or "
                "authenticate to the proxy with Kerberos (negotiate_kerberos_auth)."
                if proxy
                else "Use a client whose NTLM the server accepts (or Kerberos); check the "
                "server's NTLM provider logs and the 'Network security: Restrict NTLM' policies."
            ),
            [*legs[:3], *([later] if later is not None else [])],
            severity=Severity.WARNING if later is not None else None,
            fields=[("client", client), ("negotiate_bytes", str(size)), *proxy_fields(refusal)],
            iis=None if proxy else refusal.step.iis,
            host=host,
            words=words,
        )


RULES = (
    ntlm_logon_failed,
    ntlm_negotiate_rejected,
    ntlmv1_response,
    ntlm_anonymous,
    channel_binding_missing,
    channel_binding_other_certificate,
    repeated_logon_failures,
)
