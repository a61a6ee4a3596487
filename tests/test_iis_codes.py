"""iis.codes: the tables checked against published values, and explain()."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authtrace.auth.ntlm import NegotiateFlags
from authtrace.iis.codes import (
    CodeFamily,
    Verdict,
    explain,
    explain_ntlm_flags,
    explain_triple,
    status_table,
    win32_code,
    win32_table,
)

# shared/DESIGN.md's list: decimal as IIS logs it, hex, and the SDK name
# without its SEC_E_ prefix. Written out independently of the module.
PUBLISHED_SSPI = [
    (2148074241, "0x80090301", "INVALID_HANDLE"),
    (2148074243, "0x80090303", "TARGET_UNKNOWN"),
    (2148074244, "0x80090304", "INTERNAL_ERROR"),
    (2148074245, "0x80090305", "SECPKG_NOT_FOUND"),
    (2148074248, "0x80090308", "INVALID_TOKEN"),
    (2148074252, "0x8009030C", "LOGON_DENIED"),
    (2148074253, "0x8009030D", "UNKNOWN_CREDENTIALS"),
    (2148074254, "0x8009030E", "NO_CREDENTIALS"),
    (2148074256, "0x80090310", "OUT_OF_SEQUENCE"),
    (2148074257, "0x80090311", "NO_AUTHENTICATING_AUTHORITY"),
    (2148074263, "0x80090317", "CONTEXT_EXPIRED"),
    (2148074274, "0x80090322", "WRONG_PRINCIPAL"),
    (2148074276, "0x80090324", "TIME_SKEW"),
    (2148074306, "0x80090342", "KDC_UNKNOWN_ETYPE"),
    (2148074310, "0x80090346", "BAD_BINDINGS"),
]

# winerror.h values of the Win32 codes DESIGN.md lists.
PUBLISHED_WIN32 = [
    (0, "ERROR_SUCCESS"),
    (5, "ERROR_ACCESS_DENIED"),
    (1311, "ERROR_NO_LOGON_SERVERS"),
    (1326, "ERROR_LOGON_FAILURE"),
    (1327, "ERROR_ACCOUNT_RESTRICTION"),
    (1328, "ERROR_INVALID_LOGON_HOURS"),
    (1329, "ERROR_INVALID_WORKSTATION"),
    (1330, "ERROR_PASSWORD_EXPIRED"),
    (1331, "ERROR_ACCOUNT_DISABLED"),
    (1385, "ERROR_LOGON_TYPE_NOT_GRANTED"),
    (1907, "ERROR_PASSWORD_MUST_CHANGE"),
    (1909, "ERROR_ACCOUNT_LOCKED_OUT"),
]


@pytest.mark.parametrize(("decimal", "hex_text", "short"), PUBLISHED_SSPI)
def test_sspi_codes_match_published_values(decimal: int, hex_text: str, short: str) -> None:
    assert int(hex_text, 16) == decimal
    code = win32_code(decimal)
    assert code.known
    assert code.family is CodeFamily.SSPI
    assert code.name == f"SEC_E_{short}"
    assert code.hex == hex_text
    # The same entry whichever way a person types it.
    for query in (str(decimal), hex_text, hex_text.lower(), f"SEC_E_{short}", short.lower()):
        found = explain(query)
        assert found is not None and found.win32 == code, query


@pytest.mark.parametrize(("decimal", "name"), PUBLISHED_WIN32)
def test_win32_codes_match_winerror_h(decimal: int, name: str) -> None:
    code = win32_code(decimal)
    assert (code.name, code.family, code.known) == (name, CodeFamily.WIN32, True)
    found = explain(name.lower())
    assert found is not None and found.win32 == code


def test_every_sspi_entry_is_a_security_facility_failure_hresult() -> None:
    # HRESULT layout: severity bit 31 set, facility (bits 16-28) 9 = FACILITY_SECURITY.
    sspi = [c for c in win32_table() if c.family is CodeFamily.SSPI]
    assert len(sspi) >= len(PUBLISHED_SSPI)
    for code in sspi:
        assert code.code & 0x80000000, code.name
        assert (code.code >> 16) & 0x1FFF == 9, code.name
        assert code.name.startswith("SEC_E_")
    win32 = [c for c in win32_table() if c.family is CodeFamily.WIN32]
    assert all(c.code < 0x10000 and c.name.startswith("ERROR_") for c in win32)
    assert len({c.name for c in win32_table()}) == len(win32_table())


def test_unknown_codes_keep_their_number() -> None:
    code = win32_code(4242)
    assert not code.known and code.name == "UNKNOWN (4242)"
    assert win32_code(0x800903FF).family is CodeFamily.SSPI
    # A signed rendering of an HRESULT is the same code.
    assert win32_code(-2146893048).name == "SEC_E_INVALID_TOKEN"


def test_substatus_table_covers_the_401_family() -> None:
    codes = {sc.code for sc in status_table()}
    assert {"401.1", "401.2", "401.3", "401.4", "401.5"} <= codes
    assert all(sc.status in (401, 403) for sc in status_table())


@pytest.mark.parametrize(
    ("triple", "verdict"),
    [
        ((401, 2, 5), Verdict.NORMAL_LEG),
        ((401, 1, 2148074254), Verdict.NORMAL_LEG),
        ((401, 1, 2148074248), Verdict.FAILURE),
        ((401, 1, 1326), Verdict.FAILURE),
        ((401, 1, 2148074252), Verdict.FAILURE),
        ((401, 3, 5), Verdict.FAILURE),
        ((403, 4, 5), Verdict.FAILURE),
        ((200, 0, 0), Verdict.SUCCESS),
        ((404, 0, 2), Verdict.NOT_AUTH),
    ],
)
def test_triple_verdicts(triple: tuple[int, int, int], verdict: Verdict) -> None:
    assert explain_triple(*triple).verdict is verdict


def test_documented_triples_say_what_they_are() -> None:
    assert "anonymous" in explain_triple(401, 2, 5).summary
    assert "challenge" in explain_triple(401, 1, 2148074254).summary
    split = explain_triple(401, 1, 2148074248)
    assert split.documented and "split across connections" in split.detail
    assert "password" in explain_triple(401, 1, 1326).summary


def test_undocumented_combination_is_explained_part_by_part() -> None:
    t = explain_triple(401, 2, 2148074254)
    assert not t.documented
    assert "401.2" in t.detail and "SEC_E_NO_CREDENTIALS" in t.detail
    assert "part by part" in t.detail
    # 401.2 is the shape of a first leg whatever the win32 value; the sequence decides.
    assert t.verdict is Verdict.NORMAL_LEG
    odd = explain_triple(401, 77, 4242)
    assert odd.status_code is None and "UNKNOWN (4242)" in odd.summary


def test_explain_triple_forms() -> None:
    a = explain("401 1 2148074248")
    b = explain("401.1 0x80090308")
    c = explain("  401,1,2148074248 ")
    assert a is not None and b is not None and c is not None
    assert a.triple == b.triple == c.triple
    assert a.triple is not None and a.triple.win32_code.name == "SEC_E_INVALID_TOKEN"


def test_explain_substatus_and_bare_status() -> None:
    e = explain("401.2")
    assert e is not None and e.status is not None and e.status.label.startswith("Logon failed")
    bare = explain("401")
    assert bare is not None and bare.status is not None and bare.status.status == 401
    assert explain("401.99") is None


def test_bare_small_number_is_win32_and_kerberos() -> None:
    e = explain("5")
    assert e is not None and e.win32 is not None and e.kerberos is not None
    assert e.win32.name == "ERROR_ACCESS_DENIED"
    assert e.kerberos.name == "KDC_ERR_S_OLD_MAST_KVNO"
    assert "ambiguous" in e.note
    seven = explain("7")
    assert seven is not None and seven.kerberos is not None
    assert seven.kerberos.name == "KDC_ERR_S_PRINCIPAL_UNKNOWN"


def test_kerberos_names() -> None:
    for query in ("KDC_ERR_S_PRINCIPAL_UNKNOWN", "s_principal_unknown"):
        e = explain(query)
        assert e is not None and e.kerberos is not None and e.kerberos.code == 7
    e = explain("KRB_AP_ERR_MODIFIED")
    assert e is not None and e.kerberos is not None and e.kerberos.code == 41


def test_ntlm_flag_names_and_values() -> None:
    for query in ("NTLMSSP_NEGOTIATE_SIGN", "negotiate_sign", "SIGN"):
        e = explain(query)
        assert e is not None and e.ntlm_flags is not None, query
        assert [f.name for f in e.ntlm_flags.flags] == ["NTLMSSP_NEGOTIATE_SIGN"]
    value = int(
        NegotiateFlags.NTLMSSP_NEGOTIATE_UNICODE
        | NegotiateFlags.NTLMSSP_NEGOTIATE_NTLM
        | NegotiateFlags.NTLMSSP_NEGOTIATE_56
    )
    e = explain(hex(value))
    assert e is not None and e.ntlm_flags is not None and e.win32 is None
    assert [f.name for f in e.ntlm_flags.flags] == [
        "NTLMSSP_NEGOTIATE_UNICODE",
        "NTLMSSP_NEGOTIATE_NTLM",
        "NTLMSSP_NEGOTIATE_56",
    ]
    # Bit 3 is reserved in MS-NLMP 2.2.2.5: kept, with its number.
    reserved = explain_ntlm_flags(0x8)
    assert [f.name for f in reserved.flags] == ["UNKNOWN (0x00000008)"]


@given(st.sampled_from(list(NegotiateFlags)), st.sampled_from(list(NegotiateFlags)))
@settings(max_examples=60)
def test_flag_decoding_round_trips(a: NegotiateFlags, b: NegotiateFlags) -> None:
    value = int(a | b)
    decoded = explain_ntlm_flags(value)
    assert sum(f.value for f in decoded.flags) == value
    assert {f.name for f in decoded.flags} == {m.name for m in (a, b)}


@pytest.mark.parametrize("query", ["", "zzz", "99999999999", "401 1", "1 2 3", "0x", "401.1.5"])
def test_unknown_queries_return_none(query: str) -> None:
    assert explain(query) is None


@given(st.text(max_size=60))
@settings(max_examples=300)
def test_explain_never_raises(text: str) -> None:
    explain(text)
