"""Every `--json` document validates against its schema file in docs/schemas/.

The schema files are the contract that docs/json.md describes in words. Each
command's output is validated on every capture in captures/ (and on every
authentication header those captures carry, for `decode`), with jsonschema's
Draft 2020-12 validator. The documented objects are closed
(additionalProperties / unevaluatedProperties false), so a field added to the
output without its schema makes this test fail; decoded token fields, which
differ by message, stay open.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from _shared import shared_capture
from click.testing import CliRunner
from referencing import Registry, Resource

from authtrace.cli import main
from authtrace.pipeline import Pipeline
from authtrace.schemas import Schema

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "docs" / "schemas"
CAPTURES = sorted(
    path
    for path in (ROOT / "captures").rglob("*")
    # .keys: TLS key logs; .log: the IIS logs some scenarios come with (read below)
    if path.is_file() and path.suffix not in {".md", ".json", ".keys", ".log"}
)
BASELINE = ROOT / "captures" / "scenarios" / "healthy-ntlm.pcap"
# IIS W3C logs: the test data, and the logs some scenario captures come with.
IIS_LOGS = sorted((ROOT / "tests" / "data" / "iis").glob("*.log")) + sorted(
    (ROOT / "captures" / "scenarios").glob("*.log")
)
AUTH_HEADERS = ("authorization", "proxy-authorization", "www-authenticate", "proxy-authenticate")
CODES = (
    "401 1 2148074248",
    "401 2 5",
    "401.2",
    "401.3",
    "2148074254",
    "0x80090308",
    "SEC_E_INVALID_TOKEN",
    "ERROR_LOGON_FAILURE",
    "5",
    "KDC_ERR_S_PRINCIPAL_UNKNOWN",
    "KRB_AP_ERR_SKEW",
    "NTLMSSP_NEGOTIATE_SIGN",
    "0x00000001",
    "not-a-code",
)


@cache
def _registry() -> Registry:
    resources = [
        (path.name, Resource.from_contents(json.loads(path.read_text())))
        for path in SCHEMAS.glob("*.schema.json")
    ]
    return Registry().with_resources(resources)


def _validator(schema: Schema) -> jsonschema.Draft202012Validator:
    contents = _registry().contents(f"{schema.document}.schema.json")
    return jsonschema.Draft202012Validator(contents, registry=_registry())


def _check(schema: Schema, document: Any) -> None:
    errors = sorted(_validator(schema).iter_errors(document), key=lambda e: list(e.path))
    messages = [f"{'/'.join(map(str, e.path)) or '(top)'}: {e.message[:300]}" for e in errors]
    assert not messages, "\n".join(messages[:10])


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout


def _document(*args: str) -> Any:
    code, out = _run(*args)
    assert code in (0, 1), (code, out[:300])
    return json.loads(out)


def _capture_id(path: Path) -> str:
    return str(path.relative_to(ROOT / "captures"))


def test_captures_found() -> None:
    assert len(CAPTURES) > 50 and BASELINE in CAPTURES


@pytest.mark.parametrize("schema", list(Schema), ids=lambda s: s.document)
def test_schema_file_is_valid_and_names_its_document(schema: Schema) -> None:
    contents = _registry().contents(f"{schema.document}.schema.json")
    jsonschema.Draft202012Validator.check_schema(contents)
    assert contents["properties"]["schema"] == {
        "const": schema.value,
        "description": "document name and version",
    }
    assert schema.value in (ROOT / "docs" / "json.md").read_text()


@pytest.mark.parametrize("capture", CAPTURES, ids=_capture_id)
def test_analyze_connections_and_diff(capture: Path) -> None:
    analyzed = _document("analyze", "--json", str(capture))
    _check(Schema.ANALYZE, analyzed)
    _check(Schema.CONNECTIONS, _document("connections", "--json", str(capture)))
    code, out = _run("diff", "--json", str(BASELINE), str(capture))
    if not analyzed["exchanges"]:
        assert (code, out) == (2, "")  # nothing to compare: one line on stderr, no document
    else:
        assert code in (0, 1)
        _check(Schema.DIFF, json.loads(out))


def test_analyze_with_secrets_and_iis_log(tmp_path: Path) -> None:
    capture = ROOT / "captures" / "scenarios" / "pooling-proxy.pcap"
    log = tmp_path / "u_ex.log"
    log.write_text(
        "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip "
        "cs(User-Agent) sc-status sc-substatus sc-win32-status time-taken\n"
        "2023-11-14 22:13:20 198.51.100.20 GET / - 80 - 203.0.113.5 curl 401 2 5 15\n"
    )
    data = _document("analyze", "--json", "--show-secrets", str(capture), "--iis-log", str(log))
    assert "iis_log" in data
    _check(Schema.ANALYZE, data)


@cache
def _pasted_headers() -> tuple[str, ...]:
    """Every distinct auth header line of every capture, as an administrator pastes it."""
    seen: dict[str, None] = {}
    for capture in CAPTURES:
        pipeline = Pipeline()
        try:
            for connection in pipeline.connections([str(capture)]):
                for exchange in connection.exchanges:
                    for message in (exchange.request, exchange.response):
                        for header in message.headers if message is not None else ():
                            if header.name.lower() in AUTH_HEADERS:
                                seen.setdefault(f"{header.name}: {header.value}")
        except Exception:  # noqa: BLE001 - an unreadable capture has no headers to paste
            continue
    return tuple(seen)


def test_decode_every_header_of_the_captures() -> None:
    lines = _pasted_headers()
    assert len(lines) > 50
    for line in lines:
        for args in (("--json", line), ("--json", "--show-secrets", line)):
            code, out = _run("decode", *args)
            if code == 2:
                continue  # malformed on purpose in some captures: one line on stderr
            assert code == 0, (line[:100], out[:200])
            _check(Schema.DECODE, json.loads(out))


def test_explain_rules_and_iislog() -> None:
    code, out = _run("explain", "--json", *CODES)
    assert code == 2  # one code is unknown; the document is still printed
    _check(Schema.EXPLAIN, json.loads(out))
    _check(Schema.RULES, _document("rules", "--json"))
    for log in IIS_LOGS:
        code, out = _run("iislog", "--json", str(log))
        if code != 2:
            _check(Schema.IISLOG, json.loads(out))
    _check(Schema.IISLOG, _document("iislog", "--json", *map(str, IIS_LOGS)))


def test_schemas_reject_what_the_documents_do_not_say() -> None:
    """The validation can fail: a missing field, an undocumented field, a wrong
    type and a wrong schema name are each refused."""
    good = _document(
        "analyze", "--json", str(ROOT / "captures" / "scenarios" / "pooling-proxy.pcap")
    )
    _check(Schema.ANALYZE, good)
    broken = []
    missing = copy.deepcopy(good)
    del missing["findings"][0]["iis_certain"]
    broken.append(missing)
    undocumented = copy.deepcopy(good)
    undocumented["connections"][0]["color"] = "red"
    broken.append(undocumented)
    wrong_type = copy.deepcopy(good)
    wrong_type["exchanges"][0]["request"]["frame"] = "7"
    broken.append(wrong_type)
    wrong_name = copy.deepcopy(good)
    wrong_name["schema"] = "authtrace.analyze/2"
    broken.append(wrong_name)
    no_realm = copy.deepcopy(good)
    del no_realm["exchanges"][0]["auth"][0]["realm"]
    broken.append(no_realm)
    for document in broken:
        assert not _validator(Schema.ANALYZE).is_valid(document)


def test_auth_realm_is_origin_or_proxy_and_the_token_keeps_its_own() -> None:
    """`realm` of an auth[] entry says origin or proxy; a Basic realm used to
    overwrite it (`"realm": "example"`), it is now `token_realm`."""
    capture = str(ROOT / "captures" / "scenarios" / "basic-logon-failed.pcap")
    for document, exchanges in (
        (data := _document("analyze", "--json", capture), data["exchanges"]),
        (data := _document("connections", "--json", capture), data["connections"][0]["exchanges"]),
    ):
        entries = [entry for exchange in exchanges for entry in exchange["auth"]]
        basic = [e for e in entries if e["message"] == "OFFER" and e["scheme"] == "Basic"]
        assert basic and all(e["realm"] == "origin" for e in entries), document["schema"]
        assert all(e["token_realm"] for e in basic)


@pytest.mark.shared
def test_kdc_reply_without_its_request_validates() -> None:
    """A public capture whose TGS-REP is captured without its TGS-REQ: the
    request's type and frame are null (not seen), and the schema says so."""
    capture = shared_capture("ntop__nDPI/tests__cfgs__default__pcap__kerberos.pcap", tshark=False)
    data = _document("analyze", "--json", str(capture))
    assert any(k["request_frame"] is None and k["reply_frame"] for k in data["kdc"])
    _check(Schema.ANALYZE, data)
