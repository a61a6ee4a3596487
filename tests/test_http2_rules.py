"""The HTTP/2 rules (diagnose/rules/http2.py) on the hand-built captures of
captures/h2 (scripts/captures/build_h2.py: IIS's RST_STREAM HTTP_1_1_REQUIRED
cannot be recorded from Debian software) and on the real lab captures."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_tls_oracle import keylog_for, load

from authtrace.diagnose.finding import Severity
from authtrace.pipeline import analyze

REPO = Path(__file__).resolve().parent.parent
H2 = REPO / "captures" / "h2"
TSHARK = shutil.which("tshark")


def _findings(name: str, keys: bool = False):  # type: ignore[no-untyped-def]
    keylog = load(keylog_for(H2 / name)) if keys else None
    report = analyze([H2 / name], keylog=keylog)
    assert not report.anomalies
    return report.findings


def test_a_reset_retried_over_http1_is_a_note() -> None:
    findings = _findings("built-iis-http11-required-retried.pcap")
    (finding,) = findings
    assert (finding.rule, finding.severity) == ("http2-http11-required", Severity.INFO)
    assert finding.field("retried") == "yes"
    # The request on stream 1, the RST_STREAM, the HTTP/1.1 retry and its 401.
    assert finding.frames == (10, 12, 22, 24)
    assert finding.connections == (0, 1)


def test_a_reset_never_retried_is_an_error() -> None:
    findings = _findings("built-iis-http11-required-no-retry.pcap")
    (finding,) = findings
    assert (finding.rule, finding.severity) == ("http2-http11-required", Severity.ERROR)
    assert finding.field("retried") == "no"
    assert finding.frames == (10, 12)


def test_ntlm_across_streams_is_its_own_finding_not_a_wrong_password() -> None:
    findings = _findings("built-ntlm-across-h2-streams.pcap")
    assert [f.rule for f in findings] == ["ntlm-over-http2"]
    (finding,) = findings
    assert finding.field("challenge_stream") == "3"
    assert finding.field("authenticate_stream") == "5"
    assert finding.frames == (14, 16, 18, 20)
    assert finding.field("user") == "CONTOSO\\alice"


def test_real_apache_mod_http2_loses_the_ntlm_context_between_streams() -> None:
    # lab/h2.py: a Python h2 client (pyspnego) against Apache mod_http2 and
    # mod_auth_gssapi with gss-ntlmssp; Apache logs "gss_accept_sec_context()
    # failed: Invalid token" for the AUTHENTICATE on stream 5. No channel binding
    # was sent, but the refusal is the lost context, not Extended Protection.
    findings = _findings("h2-apache-ntlm-streams.pcap", keys=True)
    assert [f.rule for f in findings] == ["ntlm-over-http2"]
    (finding,) = findings
    assert (finding.field("challenge_stream"), finding.field("authenticate_stream")) == ("3", "5")
    assert finding.frames == (20, 22, 24, 25)


def test_basic_and_anonymous_over_h2_raise_nothing() -> None:
    for name in ("h2-apache-basic.pcap", "h2-nginx-basic.pcap"):
        assert not [f for f in _findings(name, keys=True) if f.severity.is_problem]


@pytest.mark.oracle
@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
def test_the_reset_frame_is_where_tshark_shows_rst_stream_http_1_1_required() -> None:
    out = subprocess.run(
        [
            TSHARK or "tshark",
            "-r",
            str(H2 / "built-iis-http11-required-retried.pcap"),
            "-Y",
            "http2.type == 3",
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "http2.streamid",
            "-e",
            "http2.rst_stream.error",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert out == ["12", "1", "13"]


def test_the_built_captures_are_rebuilt_byte_for_byte(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "captures" / "build_h2.py"), str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    built = sorted(p.name for p in tmp_path.glob("*.pcap"))
    assert built == sorted(p.name for p in H2.glob("built-*.pcap"))
    for name in built:
        assert (tmp_path / name).read_bytes() == (H2 / name).read_bytes(), name


@pytest.mark.parametrize("command", ["analyze", "connections"])
@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_credentials_sent_over_h2_stay_redacted(command: str, json_flag: list[str]) -> None:
    from click.testing import CliRunner

    from authtrace.cli import main

    capture = H2 / "h2-apache-basic.pcap"
    keys = capture.with_suffix(".keys")
    args = [command, str(capture), "--tls-keylog", str(keys), "--ladders", "all", *json_flag]
    if command == "connections":
        args.remove("--ladders")
        args.remove("all")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "HTTP/2 stream" in result.output or '"stream": {' in result.output
    # The password and the whole Basic token (base64 of alice:Passw0rd!) never show.
    assert "Passw0rd!" not in result.output
    assert "YWxpY2U6UGFzc3cwcmQh" not in result.output
    if json_flag:
        # The control: the JSON carries the secret only when asked.
        shown = CliRunner().invoke(main, [*args, "--show-secrets"])
        assert "Passw0rd!" in shown.output or "YWxpY2U6UGFzc3cwcmQh" in shown.output


def test_a_capture_begun_inside_an_h2c_connection_lists_its_streams_undecoded() -> None:
    from authtrace.anomalies import AnomalyKind
    from authtrace.pipeline import read_connections

    capture = H2 / "built-h2c-capture-starts-midway.pcap"
    (connection,), result = read_connections([capture])
    streams = [e.stream for e in connection.exchanges]
    assert [s.id for s in streams if s] == [1, 3]
    third = connection.exchanges[1]
    assert third.request is None and third.response is None  # nothing invented
    assert third.stream is not None and third.stream.not_decodable
    assert (third.stream.request_frame, third.stream.response_frame) == (3, 5)
    kinds = {a.kind for a in result.anomalies}
    assert AnomalyKind.HTTP2_HEADERS_NOT_DECODABLE in kinds
    assert AnomalyKind.HTTP2_FRAME_MALFORMED not in kinds
    report = analyze([capture])
    assert report.findings == ()  # nothing judged from headers not seen
