"""Kerberos error codes (RFC 4120 section 7.5.9, plus the Microsoft and PKINIT
additions seen in Windows domains), with a label and a plain explanation.

Numbers stay next to their labels: an unknown code is shown as ``UNKNOWN (n)``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KerberosError:
    code: int
    name: str
    meaning: str


_TABLE: dict[int, tuple[str, str]] = {
    0: ("KDC_ERR_NONE", "no error"),
    1: ("KDC_ERR_NAME_EXP", "the client's entry in the KDC database has expired"),
    2: ("KDC_ERR_SERVICE_EXP", "the server's entry in the KDC database has expired"),
    3: ("KDC_ERR_BAD_PVNO", "requested Kerberos protocol version not supported"),
    4: ("KDC_ERR_C_OLD_MAST_KVNO", "client's key encrypted in an old master key"),
    5: ("KDC_ERR_S_OLD_MAST_KVNO", "server's key encrypted in an old master key"),
    6: ("KDC_ERR_C_PRINCIPAL_UNKNOWN", "the client (user) is not known to the KDC"),
    7: (
        "KDC_ERR_S_PRINCIPAL_UNKNOWN",
        "no account holds the requested service principal name (SPN missing or mistyped)",
    ),
    8: (
        "KDC_ERR_PRINCIPAL_NOT_UNIQUE",
        "several accounts hold the same principal name (duplicate SPN)",
    ),
    9: ("KDC_ERR_NULL_KEY", "the client or server has a null key"),
    10: ("KDC_ERR_CANNOT_POSTDATE", "ticket not eligible for postdating"),
    11: ("KDC_ERR_NEVER_VALID", "requested start time is later than end time"),
    12: ("KDC_ERR_POLICY", "the KDC policy rejects the request (e.g. logon hours, workstation)"),
    13: ("KDC_ERR_BADOPTION", "the KDC cannot accommodate a requested option"),
    14: (
        "KDC_ERR_ETYPE_NOSUPP",
        "no encryption type in common (e.g. RC4/DES disabled, account lacks AES keys)",
    ),
    15: ("KDC_ERR_SUMTYPE_NOSUPP", "checksum type not supported"),
    16: ("KDC_ERR_PADATA_TYPE_NOSUPP", "pre-authentication type not supported"),
    17: ("KDC_ERR_TRTYPE_NOSUPP", "transited type not supported"),
    18: ("KDC_ERR_CLIENT_REVOKED", "the client's credentials have been revoked (disabled, locked)"),
    19: ("KDC_ERR_SERVICE_REVOKED", "the server's credentials have been revoked"),
    20: ("KDC_ERR_TGT_REVOKED", "the TGT has been revoked"),
    21: ("KDC_ERR_CLIENT_NOTYET", "the client is not yet valid"),
    22: ("KDC_ERR_SERVICE_NOTYET", "the server is not yet valid"),
    23: ("KDC_ERR_KEY_EXPIRED", "the password has expired"),
    24: ("KDC_ERR_PREAUTH_FAILED", "pre-authentication failed (wrong password)"),
    25: (
        "KDC_ERR_PREAUTH_REQUIRED",
        "pre-authentication required (normal first answer to an AS-REQ)",
    ),
    26: ("KDC_ERR_SERVER_NOMATCH", "the requested server and ticket do not match"),
    27: ("KDC_ERR_MUST_USE_USER2USER", "the server principal is valid for user-to-user only"),
    28: ("KDC_ERR_PATH_NOT_ACCEPTED", "KDC policy rejects the transited path"),
    29: ("KDC_ERR_SVC_UNAVAILABLE", "a service is not available"),
    31: (
        "KRB_AP_ERR_BAD_INTEGRITY",
        "integrity check failed: the service could not decrypt the ticket with its key",
    ),
    32: ("KRB_AP_ERR_TKT_EXPIRED", "the ticket has expired"),
    33: ("KRB_AP_ERR_TKT_NYV", "the ticket is not yet valid"),
    34: ("KRB_AP_ERR_REPEAT", "the request is a replay"),
    35: ("KRB_AP_ERR_NOT_US", "the ticket is not for us"),
    36: ("KRB_AP_ERR_BADMATCH", "the ticket and authenticator do not match"),
    37: ("KRB_AP_ERR_SKEW", "the clocks of client and server differ too much"),
    38: ("KRB_AP_ERR_BADADDR", "incorrect network address"),
    39: ("KRB_AP_ERR_BADVERSION", "protocol version mismatch"),
    40: ("KRB_AP_ERR_MSG_TYPE", "invalid message type"),
    41: (
        "KRB_AP_ERR_MODIFIED",
        "the service could not decrypt the ticket: the SPN's account is not the one "
        "the service runs as, or its password changed",
    ),
    42: ("KRB_AP_ERR_BADORDER", "message out of order"),
    44: ("KRB_AP_ERR_BADKEYVER", "the key version of the ticket is not the one the service has"),
    45: ("KRB_AP_ERR_NOKEY", "the service key is not available"),
    46: ("KRB_AP_ERR_MUT_FAIL", "mutual authentication failed"),
    47: ("KRB_AP_ERR_BADDIRECTION", "incorrect message direction"),
    48: ("KRB_AP_ERR_METHOD", "alternative authentication method required"),
    49: ("KRB_AP_ERR_BADSEQ", "incorrect sequence number in message"),
    50: ("KRB_AP_ERR_INAPP_CKSUM", "inappropriate type of checksum in message"),
    51: ("KRB_AP_PATH_NOT_ACCEPTED", "policy rejects the transited path"),
    52: (
        "KRB_ERR_RESPONSE_TOO_BIG",
        "response too big for UDP, retry with TCP (normal)",
    ),
    60: ("KRB_ERR_GENERIC", "generic error (see e-text)"),
    61: ("KRB_ERR_FIELD_TOOLONG", "field is too long for this implementation"),
    62: ("KDC_ERROR_CLIENT_NOT_TRUSTED", "PKINIT: client certificate not trusted"),
    63: ("KDC_ERROR_KDC_NOT_TRUSTED", "PKINIT: KDC not trusted"),
    64: ("KDC_ERROR_INVALID_SIG", "PKINIT: invalid signature"),
    65: ("KDC_ERR_KEY_TOO_WEAK", "PKINIT: key too weak"),
    66: ("KDC_ERR_CERTIFICATE_MISMATCH", "PKINIT: certificate mismatch"),
    67: ("KRB_AP_ERR_NO_TGT", "no TGT available to validate user-to-user"),
    68: ("KDC_ERR_WRONG_REALM", "wrong realm (referral to another realm)"),
    69: ("KRB_AP_ERR_USER_TO_USER_REQUIRED", "ticket must be for user-to-user"),
    70: ("KDC_ERR_CANT_VERIFY_CERTIFICATE", "PKINIT: cannot verify certificate"),
    71: ("KDC_ERR_INVALID_CERTIFICATE", "PKINIT: invalid certificate"),
    72: ("KDC_ERR_REVOKED_CERTIFICATE", "PKINIT: revoked certificate"),
    73: ("KDC_ERR_REVOCATION_STATUS_UNKNOWN", "PKINIT: revocation status unknown"),
    74: ("KDC_ERR_REVOCATION_STATUS_UNAVAILABLE", "PKINIT: revocation status unavailable"),
    75: ("KDC_ERR_CLIENT_NAME_MISMATCH", "PKINIT: client name mismatch"),
    76: ("KDC_ERR_KDC_NAME_MISMATCH", "PKINIT: KDC name mismatch"),
}

# Errors that are part of normal operation and never a finding on their own.
BENIGN_KDC_ERRORS = frozenset({25, 52})

# AP errors meaning "the service could not decrypt the ticket". Windows says
# MODIFIED (41); MIT Kerberos says BAD_INTEGRITY (31) or BADKEYVER (44).
TICKET_UNDECRYPTABLE_ERRORS = frozenset({31, 41, 44})


def kerberos_error(code: int) -> KerberosError:
    """The label and meaning of a Kerberos error code; never raises."""
    name, meaning = _TABLE.get(code, (f"UNKNOWN ({code})", "unknown Kerberos error code"))
    return KerberosError(code, name, meaning)


def kerberos_error_by_name(name: str) -> KerberosError | None:
    """Look a code up by its label (case-insensitive, with or without prefix)."""
    wanted = name.strip().upper()
    for code, (label, _meaning) in _TABLE.items():
        short = label.split("_", 2)[-1] if label.count("_") >= 2 else label
        if wanted in (label, short):
            return kerberos_error(code)
    return None
