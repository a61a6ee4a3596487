"""What the reports say about TLS: the connections that stayed encrypted (and
how to get a key log for them), the key logs read, a connection's TLS facts.

Owns: these sentences and their JSON. Text comes out as plain lines; the
caller's renderer makes them visible (authtrace/visible.py) like every line.
Invariant: never a key log secret; SNI and ALPN are capture strings, printed
only through the caller's escaping; a connection that stayed encrypted is
"not read", never "no HTTP".
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from authtrace.auth.ntlm import NtlmAuthenticate
from authtrace.http.messages import HttpConnection
from authtrace.kerberos.messages import KerberosApReq
from authtrace.tls.bindings import Binding, kerberos_binding, ntlm_binding
from authtrace.tls.keylog import KeyLogCounts
from authtrace.tls.model import EncryptedConnection, EncryptedGroup, KeyStatus, TlsFacts
from authtrace.words import counted

# How to get a key log, per client: what an administrator can do at 2 a.m.
KEYLOG_HOWTO = (
    "To decrypt, record a TLS key log while capturing and pass it with --tls-keylog FILE:",
    "  - Chrome, Edge, Firefox, curl (OpenSSL/NSS builds), Python: set the environment "
    "variable SSLKEYLOGFILE=C:\\keys\\tls.log (or /tmp/tls.log) before starting them;",
    "  - Wireshark-made pcapng: editcap --inject-secrets tls,KEYLOG in.pcap out.pcapng "
    "embeds it (authtrace then finds it without any option);",
    "  - .NET 5+ (HttpClient): SSLKEYLOGFILE works on Linux/OpenSSL; on Windows (SChannel) "
    "the keys are not exported, capture behind the TLS terminator instead;",
    "  - Java: a key-logging agent such as jSSLKeyLog (-javaagent:jSSLKeyLog.jar=/tmp/tls.log);",
    "  - IIS / HTTP.sys and SChannel clients do not write key logs: capture decrypted traffic "
    "behind the load balancer or TLS terminator.",
)

_REASONS = {
    KeyStatus.NO_KEY_LOG: "no key log given",
    KeyStatus.KEY_MISSING: "the key log has no line for them",
    KeyStatus.NO_HANDSHAKE: "their handshake is not in the capture (keys cannot be matched)",
    KeyStatus.UNSUPPORTED: "a TLS version or cipher suite authtrace cannot decrypt",
    KeyStatus.WRONG_KEY: "the key log's keys do not open their records (wrong key log?)",
    KeyStatus.PENDING: "the handshake did not finish in the capture",
    KeyStatus.DECRYPTED: "decrypted, but neither HTTP/1 nor HTTP/2, or no complete message",
}


def _target(group: EncryptedGroup) -> str:
    name = group.server_name
    return f"{name} ({group.server})" if name else str(group.server)


def _alpn(alpn: str, offered: tuple[str, ...]) -> str:
    if alpn:
        return f"ALPN {alpn}"
    if offered:
        return f"ALPN offered {', '.join(offered)}, none chosen"
    return "no ALPN"


def encrypted_lines(
    groups: tuple[EncryptedGroup, ...], total: int, keylog: KeyLogCounts | None
) -> list[str]:
    """The "TLS seen" section: how many TLS connections stayed encrypted, to
    which server (SNI) with which ALPN and version, why, and how to get keys.
    Empty when there are none."""
    if not total:
        return []
    lines = [
        f"TLS connections not read ({total}): their HTTP, if any, is not seen (it is not absent)"
    ]
    for group in groups:
        lines.append(
            f"  {group.count} x to {_target(group)}, {group.version or 'version not seen'}, "
            f"{_alpn(group.alpn, group.alpn_offered)}: {_REASONS[group.keys]} "
            f"(first at frame {group.first_frame})"
        )
    rest = total - sum(g.count for g in groups)
    if rest > 0:
        lines.append(f"  {rest} more to other servers (not grouped: too many servers)")
    statuses = {g.keys for g in groups}
    if statuses & {KeyStatus.NO_KEY_LOG, KeyStatus.KEY_MISSING} or rest > 0:
        lines.extend(KEYLOG_HOWTO)
    if keylog is not None and KeyStatus.KEY_MISSING in statuses:
        lines.append(
            "  (a key log must come from the client or server of the captured connections, "
            "written during that capture)"
        )
    return lines


def keylog_line(counts: KeyLogCounts | None) -> str:
    """One line on what the key logs held, "" when none was given or embedded."""
    if counts is None:
        return ""
    parts = [f"{counted(counts.secrets, 'secret')} from {counted(counts.sources, 'source')}"]
    if counts.comments:
        parts.append(counted(counts.comments, "comment line"))
    if counts.unused:
        parts.append(f"{counted(counts.unused, 'line')} authtrace does not need")
    if counts.duplicates:
        parts.append(counted(counts.duplicates, "duplicate"))
    if counts.garbage:
        parts.append(
            f"{counted(counts.garbage, 'line')} not understood, first at {counts.first_garbage}"
        )
    if counts.dropped:
        parts.append(f"{counted(counts.dropped, 'secret')} beyond the limit, dropped")
    return "TLS key log: " + "; ".join(parts)


_BINDING_WORDS = {
    Binding.MATCHES: "bound to this server certificate",
    Binding.NOT_SENT: "no channel binding sent",
    Binding.OTHER_CERTIFICATE: "bound to another certificate (TLS is terminated or "
    "inspected in between)",
    Binding.NOT_VISIBLE: "not visible (inside the authenticator, encrypted with the "
    "session key: not seen, not proved absent)",
}


def channel_bindings(connection: HttpConnection) -> list[tuple[int, Binding]]:
    """For each NTLMv2 AUTHENTICATE on a decrypted connection: its request's
    frame and what its MsvAvChannelBindings proves (tls/bindings.py); for each
    Kerberos AP-REQ, that its binding is not visible (NOT_VISIBLE: RFC 4121
    section 4.1.1 puts it in the encrypted authenticator). Empty for cleartext
    connections and when the server certificate was not seen."""
    from authtrace.report.connections import exchange_steps

    if connection.tls is None or not connection.tls.certificates:
        return []
    found = []
    for exchange in connection.exchanges:
        if exchange.request is None:
            continue
        for step in exchange_steps(exchange)[0]:
            inner = step.innermost
            if isinstance(inner, KerberosApReq):
                verdict = kerberos_binding(connection.tls)
            elif isinstance(inner, NtlmAuthenticate) and inner.ntlmv2 is not None:
                verdict = ntlm_binding(connection.tls, inner.ntlmv2.av_pairs.channel_bindings)
            else:
                continue
            if verdict is not None:
                found.append((exchange.request.shown_frame, verdict))
    return found


def binding_text(verdicts: list[tuple[int, Binding]]) -> str:
    """ "NTLM channel binding: frame 20 bound to this server certificate" (then
    "; Kerberos channel binding: ..." for AP-REQs), "" for none."""
    ntlm = [f"frame {f} {_BINDING_WORDS[v]}" for f, v in verdicts if v is not Binding.NOT_VISIBLE]
    kerberos = [f"frame {f} {_BINDING_WORDS[v]}" for f, v in verdicts if v is Binding.NOT_VISIBLE]
    parts = []
    if ntlm:
        parts.append("NTLM channel binding: " + "; ".join(ntlm))
    if kerberos:
        parts.append("Kerberos channel binding: " + "; ".join(kerberos))
    return "; ".join(parts)


def facts_text(facts: TlsFacts) -> str:
    """A decrypted connection's TLS in a few words, for one-line listings."""
    sni = f" SNI {facts.server_name}" if facts.server_name else ""
    failed = (
        f", {counted(facts.records_failed, 'record')} not decrypted" if facts.records_failed else ""
    )
    alpn = _alpn(facts.alpn, facts.alpn_offered)
    return f"{facts.version} {facts.cipher_suite}{sni}, {alpn}{failed}"


def facts_to_dict(
    facts: TlsFacts, verdicts: list[tuple[int, Binding]] | None = None
) -> dict[str, Any]:
    """JSON of TlsFacts (docs/json.md, "tls"): certificates as their count and
    sizes only; the client random is public (it is sent in clear). `verdicts`:
    the connection's NTLM channel bindings (channel_bindings()), when it had HTTP."""
    data = {
        "version": facts.version,
        "cipher_suite": facts.cipher_suite,
        "server_name": facts.server_name,
        "alpn_offered": list(facts.alpn_offered),
        "alpn": facts.alpn,
        "certificates": [len(der) for der in facts.certificates],
        "client_random": facts.client_random,
        "keys": facts.keys.value,
        "records_decrypted": facts.records_opened,
        "records_not_decrypted": facts.records_failed,
        "records_counted": facts.records_counted,
        "key_updates": facts.key_updates,
        "resumed": facts.resumed,
    }
    if verdicts is not None:
        data["channel_bindings"] = [
            {"frame": frame, "verdict": verdict.value} for frame, verdict in verdicts
        ]
    return data


def encrypted_to_dict(connection: EncryptedConnection) -> dict[str, Any]:
    return {
        "id": connection.id,
        "client": str(connection.client),
        "server": str(connection.server),
        "first_frame": connection.first_frame,
        "last_frame": connection.last_frame,
        "tls": facts_to_dict(connection.facts),
        "anomalies": [
            {"kind": a.kind, "message": a.message, "frame": a.frame} for a in connection.anomalies
        ],
    }


def keylog_to_dict(counts: KeyLogCounts | None) -> dict[str, Any] | None:
    """JSON of the key log counts: the KeyLogCounts fields as they are (never a secret)."""
    return asdict(counts) if counts is not None else None
