"""Predicted IIS log triples (iis.predict): the classic normal legs, the wire
facts that change a prediction, and no prediction for servers that are not IIS."""

from __future__ import annotations

from authtrace.handshake.model import Leg
from authtrace.http.messages import Header, HttpResponse
from authtrace.iis.predict import IIS_TRIPLES, WireFacts, iis_triple, looks_like_iis, predict


def _response(status: int, server: str | None = None) -> HttpResponse:
    headers = (Header("Server", server),) if server is not None else ()
    return HttpResponse(
        version="HTTP/1.1",
        status=status,
        reason="",
        headers=headers,
        frame=1,
        head_frame=1,
        timestamp=0.0,
        header_bytes=64,
    )


def test_normal_legs_log_as_the_classic_triples() -> None:
    assert str(IIS_TRIPLES[Leg.ANONYMOUS_CHALLENGED]) == "401 2 5"
    assert str(IIS_TRIPLES[Leg.NTLM_CHALLENGE]) == "401 1 2148074254"
    assert str(iis_triple(Leg.NTLM_OUT_OF_SEQUENCE, 401)) == "401 1 2148074248"
    assert iis_triple(Leg.NTLM_CHALLENGE, 200) is None


def test_wire_facts_change_the_prediction() -> None:
    response = _response(401, "Microsoft-IIS/10.0")
    assert str(predict(Leg.NTLM_REJECTED, response)) == "401 1 1326"
    assert str(predict(Leg.NTLM_REJECTED, response, WireFacts(unbound_over_tls=True))) == (
        "401 1 2148074310"
    )
    assert str(predict(Leg.NTLM_REJECTED, response, WireFacts(anonymous_authenticate=True))) == (
        "401 2 5"
    )
    assert str(predict(Leg.KERBEROS_REJECTED, response, WireFacts(clock_skew=True))) == (
        "401 1 2148074276"
    )


def test_a_server_that_is_not_iis_gets_no_prediction() -> None:
    assert not looks_like_iis(_response(401, "nginx/1.24"))
    assert looks_like_iis(_response(401))  # http.sys may send no Server header
    assert looks_like_iis(_response(401, "Microsoft-HTTPAPI/2.0"))
    assert predict(Leg.NTLM_REJECTED, _response(401, "Apache/2.4")) is None
    assert predict(Leg.NTLM_REJECTED, None) is None
