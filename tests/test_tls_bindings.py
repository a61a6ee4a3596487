"""Channel bindings proved from decrypted TLS (RFC 5929 tls-server-end-point,
MS-NLMP 2.2.2.1 MsvAvChannelBindings), on real captures from lab/tls.py: Python's
requests_ntlm binds to the server certificate, curl's NTLM sends no binding."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from authtrace.handshake.timeline import build_timeline
from authtrace.pipeline import analyze, read_connections
from authtrace.report.tls import binding_text, channel_bindings
from authtrace.tcp.events import Endpoint
from authtrace.tls.bindings import Binding, ntlm_binding_value, server_end_point
from authtrace.tls.keylog import KeyLog

ROOT = Path(__file__).resolve().parent.parent
TLS = ROOT / "captures" / "tls"
BOUND = TLS / "tls13-ntlm-channel-binding.pcap"
UNBOUND = TLS / "tls13-aes256gcm-ntlm.pcap"


def _connection(capture: Path):  # type: ignore[no-untyped-def]
    log = KeyLog()
    log.add_text(capture.with_suffix(".keys").read_bytes(), "keys")
    (connection,) = read_connections([capture], keylog=log)[0]
    return connection


def test_binding_value_is_what_pyspnego_computes() -> None:
    """The gss_channel_bindings_struct flattening and MD5, against pyspnego's own."""
    import hashlib

    from spnego.channel_bindings import GssChannelBindings

    end_point = bytes(range(32))
    packed = GssChannelBindings(application_data=b"tls-server-end-point:" + end_point).pack()
    assert ntlm_binding_value(end_point) == hashlib.md5(packed).digest()


def test_requests_ntlm_binding_matches_the_server_certificate() -> None:
    connection = _connection(BOUND)
    assert connection.tls is not None and connection.tls.certificates
    assert server_end_point(connection.tls.certificates[0]) is not None
    verdicts = channel_bindings(connection)
    assert verdicts == [(20, Binding.MATCHES)]
    assert binding_text(verdicts) == (
        "NTLM channel binding: frame 20 bound to this server certificate"
    )


def test_curl_sends_no_binding() -> None:
    verdicts = channel_bindings(_connection(UNBOUND))
    assert verdicts and all(v is Binding.NOT_SENT for _, v in verdicts)


def test_binding_for_another_certificate_says_tls_ends_in_between() -> None:
    """As if a TLS-inspecting proxy sat between: the client bound to the
    certificate it saw, the server presents another (the two lab runs made two
    certificates)."""
    bound, other = _connection(BOUND), _connection(UNBOUND)
    assert bound.tls.certificates[0] != other.tls.certificates[0]
    swapped = dataclasses.replace(
        bound, tls=dataclasses.replace(bound.tls, certificates=other.tls.certificates)
    )
    assert channel_bindings(swapped) == [(20, Binding.OTHER_CERTIFICATE)]


def test_cleartext_connection_has_no_binding_verdict() -> None:
    bound = _connection(BOUND)
    assert channel_bindings(dataclasses.replace(bound, tls=None)) == []


def test_tls13_resumption_is_seen() -> None:
    log = KeyLog()
    resumption = TLS / "tls13-resumption-basic.pcap"
    log.add_text(resumption.with_suffix(".keys").read_bytes(), "keys")
    connections, _ = read_connections([resumption], keylog=log)
    assert [c.tls.resumed for c in connections] == [False, True, True, True]


def test_decrypted_tls_counts_as_tls_whatever_the_port() -> None:
    """An NTLM refusal without binding predicts IIS's 401 1 2148074310
    (SEC_E_BAD_BINDINGS) when TLS was in the path: decrypted TLS proves it on
    any port, not only 443/8443."""
    scenario = ROOT / "captures" / "scenarios" / "channel-binding-missing.pcap"
    (connection,) = read_connections([scenario])[0]
    bound = _connection(BOUND)

    def triples(candidate) -> set[str]:  # type: ignore[no-untyped-def]
        timeline = build_timeline(candidate)
        return {str(s.iis) for s in timeline.steps if s.iis is not None}

    on_other_port = dataclasses.replace(connection, server=Endpoint(connection.server.ip, 8444))
    assert not any("2148074310" in t for t in triples(on_other_port))
    decrypted = dataclasses.replace(on_other_port, tls=bound.tls)
    assert any("2148074310" in t for t in triples(decrypted))


def test_channel_binding_rule_trusts_decrypted_tls_on_any_port() -> None:
    """channel-binding-missing needs TLS in the path: a decrypted connection on
    port 8444 proves it; the same connection as cleartext on 8444 does not."""
    from authtrace.diagnose import RuleContext, diagnose
    from authtrace.handshake.links import link

    scenario = ROOT / "captures" / "scenarios" / "channel-binding-missing.pcap"
    (connection,) = read_connections([scenario])[0]
    on_other_port = dataclasses.replace(connection, server=Endpoint(connection.server.ip, 8444))
    decrypted = dataclasses.replace(on_other_port, tls=_connection(BOUND).tls)

    def rules(candidate) -> set[str]:  # type: ignore[no-untyped-def]
        view = link([build_timeline(candidate)], 0.0, 0.0, ())
        findings, _ = diagnose(RuleContext(view, (), ()))
        return {f.rule for f in findings}

    assert "channel-binding-missing" not in rules(on_other_port)
    assert "channel-binding-missing" in rules(decrypted)


PROXIED = TLS / "tls13-ntlm-proxy-other-certificate.pcap"


def test_tls_terminating_proxy_shows_another_certificate() -> None:
    """Real nginx between client and server (lab/tls.py), each leg its own TLS
    with its own certificate: the client's binding matches the proxy's
    certificate on the front leg, and is for another certificate on the
    upstream leg, where the server (Extended Protection) refused it."""
    log = KeyLog()
    log.add_text(PROXIED.with_suffix(".keys").read_bytes(), "keys")
    front, upstream = read_connections([PROXIED], keylog=log)[0]
    assert front.tls.certificates[0] != upstream.tls.certificates[0]
    assert {v for _, v in channel_bindings(front)} == {Binding.MATCHES}
    assert [v for _, v in channel_bindings(upstream)] == [Binding.OTHER_CERTIFICATE] * 2
    report = analyze([PROXIED], keylog=log)
    (finding,) = [f for f in report.findings if f.rule == "channel-binding-other-certificate"]
    assert finding.connections == (upstream.id,)
    frames = [frame for frame, _ in channel_bindings(upstream)]
    assert set(frames) <= set(finding.frames)
    assert f"on connection {front.id}: that is where the client's TLS ended" in (
        finding.explanation
    )
    assert {f.rule for f in report.findings} == {"channel-binding-other-certificate"}
