"""The vocabulary of authentication steps: mechanisms and message kinds.

A header's scheme word is not its mechanism: ``Negotiate`` often carries NTLM.
Steps are classified by decoding their token, and these enums name the result.
Their values appear in JSON output and are part of the interface.
"""

from __future__ import annotations

from authtrace.fastinit import FastEnum


class Mechanism(FastEnum):
    NTLM = "ntlm"
    KERBEROS = "kerberos"
    SPNEGO = "spnego"  # SPNEGO whose inner mechanism cannot be told (e.g. bare accept)
    NEGOEX = "negoex"
    BASIC = "basic"
    DIGEST = "digest"
    BEARER = "bearer"
    UNKNOWN = "unknown"
    NONE = "none"  # a challenge that only names a scheme, no token


class Message(FastEnum):
    NTLM_NEGOTIATE = "NTLM_NEGOTIATE"
    NTLM_CHALLENGE = "NTLM_CHALLENGE"
    NTLM_AUTHENTICATE = "NTLM_AUTHENTICATE"
    NEG_TOKEN_INIT = "NEG_TOKEN_INIT"
    NEG_TOKEN_INIT2 = "NEG_TOKEN_INIT2"
    NEG_TOKEN_RESP = "NEG_TOKEN_RESP"
    AS_REQ = "AS_REQ"
    AS_REP = "AS_REP"
    TGS_REQ = "TGS_REQ"
    TGS_REP = "TGS_REP"
    AP_REQ = "AP_REQ"
    AP_REP = "AP_REP"
    KRB_ERROR = "KRB_ERROR"
    BASIC_CREDENTIALS = "BASIC_CREDENTIALS"
    DIGEST_CHALLENGE = "DIGEST_CHALLENGE"
    DIGEST_RESPONSE = "DIGEST_RESPONSE"
    BEARER_CHALLENGE = "BEARER_CHALLENGE"
    BEARER_TOKEN = "BEARER_TOKEN"
    OFFER = "OFFER"  # scheme offered without a token (e.g. bare "WWW-Authenticate: NTLM")
    UNKNOWN = "UNKNOWN"
    MALFORMED = "MALFORMED"
