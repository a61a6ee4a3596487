"""IIS status codes: what `sc-status sc-substatus sc-win32-status` means.

This module owns the tables that explain an IIS log triple and the lookup behind
`authtrace explain`: IIS substatuses (401.x and the authentication-related
403.x), Win32 error codes and SSPI HRESULTs (SEC_E_*) as IIS logs them in
`sc-win32-status`, and the judgement of a whole triple as a normal handshake leg
or a failure.

Invariant: numbers stay next to their labels. A code missing from a table is
shown as ``UNKNOWN (n)``, never guessed; a combination of triple parts not known
to be documented is explained part by part, never given an invented meaning.
Every function here is pure and never raises on any input string or integer.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

from authtrace.auth.ntlm import NegotiateFlags
from authtrace.kerberos.errors import KerberosError, kerberos_error, kerberos_error_by_name

_U32 = 0xFFFFFFFF


class Verdict(enum.Enum):
    """How one log line (or one triple) reads on its own."""

    NORMAL_LEG = "normal handshake leg"
    FAILURE = "failure"
    SUCCESS = "success"
    NOT_AUTH = "not an authentication status"


class CodeFamily(enum.Enum):
    """Where an `sc-win32-status` value comes from."""

    WIN32 = "Win32 error"
    SSPI = "SSPI status (HRESULT)"


@dataclass(frozen=True, slots=True)
class StatusCode:
    """An HTTP status with an IIS substatus (`sc-status`.`sc-substatus`).

    label: the short name IIS gives it; meaning: plain words;
    causes: typical causes, most likely first; fixes: what to do, in order.
    """

    status: int
    substatus: int
    label: str
    meaning: str
    causes: tuple[str, ...] = ()
    fixes: tuple[str, ...] = ()
    anonymous: bool = False  # the variant for requests without credentials

    @property
    def code(self) -> str:
        return f"{self.status}.{self.substatus}"


@dataclass(frozen=True, slots=True)
class Win32Code:
    """One `sc-win32-status` value: a Win32 error or an SSPI HRESULT.

    code: the unsigned 32-bit value (IIS logs it in decimal);
    name: the Windows SDK name (winerror.h), ``UNKNOWN (n)`` when not in the table.
    """

    code: int
    name: str
    family: CodeFamily
    meaning: str
    causes: tuple[str, ...] = ()
    known: bool = True

    @property
    def hex(self) -> str:
        return f"0x{self.code:08X}"


@dataclass(frozen=True, slots=True)
class TripleExplanation:
    """What an IIS log triple means as a whole.

    documented: True when the combination itself is a known one (not only its
    parts); summary is one line, detail says why and what to check.
    """

    status: int
    substatus: int
    win32: int
    status_code: StatusCode | None
    win32_code: Win32Code
    verdict: Verdict
    summary: str
    detail: str
    documented: bool

    @property
    def triple(self) -> str:
        return f"{self.status} {self.substatus} {self.win32}"


@dataclass(frozen=True, slots=True)
class NtlmFlag:
    """One NTLM negotiate flag (MS-NLMP 2.2.2.5); value keeps its bit."""

    value: int
    name: str
    meaning: str


@dataclass(frozen=True, slots=True)
class NtlmFlagsExplanation:
    """A NegotiateFlags value decoded bit by bit; unknown bits kept as `UNKNOWN (0x...)`."""

    value: int
    flags: tuple[NtlmFlag, ...]


@dataclass(frozen=True, slots=True)
class Explanation:
    """Everything `explain(code)` found for one query.

    Several parts may be set at once when the query is ambiguous (a bare small
    number is both a Win32 error and a Kerberos error code).
    """

    query: str
    triple: TripleExplanation | None = None
    status: StatusCode | None = None
    win32: Win32Code | None = None
    kerberos: KerberosError | None = None
    ntlm_flags: NtlmFlagsExplanation | None = None
    note: str = ""
    # 401.1 means something else for requests without credentials (the
    # anonymous account could not log on): that variant, shown beside it.
    anonymous_status: StatusCode | None = None


# IIS substatus codes. Source: Microsoft's "HTTP status code in IIS 7 and later
# versions" list (and the IIS 6 list it extends); only authentication and
# access related ones, in our own words.
_STATUS: dict[tuple[int, int], tuple[str, str, tuple[str, ...]]] = {
    (401, 0): (
        "Unauthorized (no IIS substatus)",
        "IIS did not set a substatus: the 401 came from the application or a module "
        "(ASP.NET, a Bearer/JWT or forms handler, a reverse-proxied back end), not from "
        "IIS Windows/Basic authentication.",
        (
            "application code or middleware returned 401",
            "token (Bearer) rejected by the application",
        ),
    ),
    (401, 1): (
        "Logon failed",
        "The server could not turn the credentials it received into a user token. "
        "During an NTLM/Negotiate handshake this is also what IIS logs for the challenge "
        "leg (with 2148074254); anything else with 401.1 is a real logon failure.",
        (
            "wrong user name or password",
            "Kerberos ticket the server cannot decrypt (SPN registered on another account "
            "than the application pool identity, kernel-mode authentication mismatch)",
            "NTLM handshake split across connections by a proxy or load balancer",
            "account disabled, locked out, expired, or logon denied by policy",
        ),
    ),
    (401, 2): (
        "Logon failed due to server configuration",
        "The client did not authenticate with any protocol the server requires. "
        "IIS logs it for the anonymous first request of every handshake (normal when "
        "credentials follow); repeated without credentials ever following, the client "
        "and server have no authentication protocol in common.",
        (
            "first, anonymous request of a normal handshake",
            "browser not configured to send Windows credentials to this host (intranet "
            "zone, Firefox trusted URIs, Chrome/Edge allow-lists)",
            "client that cannot do Negotiate/NTLM (curl without --negotiate/--ntlm)",
            "proxy that pools connections and sends a request meant for an authenticated "
            "connection over an unauthenticated one",
        ),
    ),
    (401, 3): (
        "Unauthorized due to ACL on resource",
        "Authentication worked: the server knows who the user is. The file system "
        "refused that user (or the anonymous identity) access to the file or folder. "
        "Of all the 401 substatuses, only this one has anything to do with file ACLs.",
        (
            "the NTFS ACL of the file or folder does not grant the authenticated user read access",
            "content on a UNC share: the share permissions, or the account IIS uses to reach "
            "the share (pass-through or 'Connect as'), lack access",
            "the user authenticated is not the one expected (a saved credential, another "
            "account's Kerberos ticket, NTLM under a local account)",
            "anonymous requests: the anonymous identity (IUSR or the pool identity) lacks "
            "read access",
        ),
    ),
    (401, 4): (
        "Authorization failed by filter",
        "Authentication worked; an ISAPI filter installed on the site or the server then "
        "refused the request with 401.",
        (
            "an ISAPI filter (single sign-on, URL protection, custom authentication) denied "
            "the request",
            "the filter's own configuration or back end (a policy server) refused the user",
        ),
    ),
    (401, 5): (
        "Authorization failed by ISAPI/CGI application",
        "Authentication worked; the ISAPI extension or CGI application that handles the "
        "URL (or a wildcard script map that handles every URL) refused the request with "
        "401. A 401.5 on a static .html file means a wildcard mapping or a custom "
        "authentication module handles static files too.",
        (
            "the application handling the URL refused the user (its own authorization)",
            "a wildcard script map sends every request, static files included, through an "
            "ISAPI extension that refuses it",
            "custom authentication in front of the content",
        ),
    ),
    (403, 0): (
        "Forbidden (no IIS substatus)",
        "Access denied without an IIS substatus: usually the application or a module "
        "(URL authorization, request filtering rules in the application) refused it.",
        ("application or module refused the authenticated user",),
    ),
    (403, 1): (
        "Execute access forbidden",
        "The handler needs Execute/Script permission that the folder does not grant.",
        ("handler mapping requires script or execute access that is not enabled",),
    ),
    (403, 2): (
        "Read access forbidden",
        "Read access is not enabled for the folder.",
        ("read permission disabled in the handler or folder settings",),
    ),
    (403, 3): (
        "Write access forbidden",
        "Write access is not enabled for the folder.",
        ("write permission disabled",),
    ),
    (403, 4): (
        "SSL required",
        "The site or folder requires HTTPS and the request came over HTTP.",
        ("request sent over plain HTTP to a site with Require SSL",),
    ),
    (403, 5): (
        "SSL 128 required",
        "The site requires 128-bit encryption and the connection did not use it.",
        ("client negotiated weaker encryption than required",),
    ),
    (403, 6): (
        "IP address rejected",
        "IP address and domain restrictions denied the client address.",
        ("client address in a deny list, or not in the allow list",),
    ),
    (403, 7): (
        "Client certificate required",
        "The site requires a client certificate and the client did not send one.",
        ("no client certificate presented", "certificate not trusted for client auth"),
    ),
    (403, 8): (
        "Site access denied",
        "Restrictions by DNS name denied the client.",
        ("client host name in a deny list",),
    ),
    (403, 12): (
        "Mapper denied access",
        "The client certificate mapping did not map the certificate to an allowed account.",
        ("client certificate mapped to no account, or to one denied access",),
    ),
    (403, 13): (
        "Client certificate revoked",
        "The client certificate has been revoked.",
        ("revoked client certificate",),
    ),
    (403, 14): (
        "Directory listing denied",
        "The URL names a folder, there is no default document and directory browsing is "
        "off. Not an authentication problem.",
        ("no default document for the folder", "directory browsing disabled"),
    ),
    (403, 16): (
        "Client certificate untrusted or invalid",
        "The client certificate does not chain to a trusted root, or is invalid.",
        ("issuing CA not trusted by the server",),
    ),
    (403, 17): (
        "Client certificate expired or not yet valid",
        "The client certificate is outside its validity period.",
        ("expired client certificate", "clock difference between client and server"),
    ),
    (403, 502): (
        "Too many requests from the same client IP",
        "Dynamic IP Restrictions: the client reached the request-rate limit.",
        ("client above the configured request rate", "many users behind one proxy address"),
    ),
    (403, 503): (
        "IP address denied",
        "IP and Domain Restrictions: the client address is in the deny list.",
        ("client address denied",),
    ),
}

# What to do about each 401 category, in the guide's order; `explain`,
# `iislog` and the analyze findings all give these same lists.
_FIXES: dict[tuple[int, int], tuple[str, ...]] = {
    (401, 1): (
        "check the account on the domain controller: the Security log (events 4625/4776) "
        "names the exact reason",
        "check the password the client saved (Credential Manager) or typed",
        "check the 'Access this computer from the network' right on the server",
        "for Kerberos, check which account holds the HTTP/<host> SPN (setspn -Q) against the "
        "application pool identity",
    ),
    (401, 3): (
        "confirm who authenticated and by which protocol (the user and mechanism in the "
        "finding or the log's cs-username): you may not be authenticating as who you think",
        "grant that user (or a group it is in) Read on the file or folder in its NTFS ACL; "
        "for content on a UNC share, also the share permissions and the account IIS "
        "connects to the share as",
        "never grant Everyone: Full Control to make the error go away",
        "find the exact path refused with Failed Request Tracing (IIS 7+) or Process Monitor",
    ),
    (401, 4): (
        "list the ISAPI filters of the site and of the server (ISAPI Filters feature, "
        "applicationHost.config <isapiFilters>)",
        "find which filter answers: Failed Request Tracing (IIS 7+) names the module, or "
        "remove filters one at a time on a test server",
        "check that filter's own configuration and logs, or ask its vendor",
    ),
    (401, 5): (
        "find which handler serves the URL (Handler Mappings): a 401.5 on a static .html "
        "file means a wildcard script map or custom authentication handles every file",
        "check that ISAPI extension's or CGI application's own authorization and logs",
        "enable Failed Request Tracing (IIS 7+) for 401.5 to see the module and handler that "
        "set the status",
    ),
}

# 401.1 to requests without credentials: the anonymous account itself cannot log
# on. Causes and fixes differ from a user's failed logon.
_ANONYMOUS_401_1 = (
    "Logon failed (anonymous account)",
    "The site allows anonymous access, but the server could not log on the anonymous "
    "account (IUSR, a configured user, or the application pool identity) to serve the "
    "request, so every anonymous request gets 401.1 and no scheme is offered to answer it.",
    (
        "the password configured for the anonymous user in IIS no longer matches the "
        "account (changed or expired)",
        "anonymous password synchronization (sub-authentication) lost after an upgrade",
        "a security template or group policy denies the account network or local logon, "
        "or puts it in a denied group such as Guests",
        "the Security event log is full and auditing is set to stop logons (KB 832981)",
        "the account is locked out by the failed logons IIS made with the wrong password",
    ),
    (
        "check the anonymous identity (Authentication > Anonymous Authentication > Edit): "
        "re-enter the user's password, or use the application pool identity",
        "check the account's logon rights and group memberships in the effective group "
        "policy (gpresult /h, 'Deny access to this computer from the network')",
        "check the Security event log on the server: room left, and event 4625 for the "
        "anonymous account with its failure reason",
        "unlock the account once the password is fixed",
    ),
)

_KNOWN_STATUS_ONLY: dict[int, tuple[str, str]] = {
    400: (
        "Bad request",
        "The request was malformed. With Windows authentication, an oversized "
        "Authorization: Negotiate header (Kerberos token bloat from many group "
        "memberships) is refused by HTTP.sys with 400 'Request Header Too Long'; that "
        "rejection is written to the HTTPERR log, not to the W3C site log.",
    ),
    401: ("Unauthorized", "The server requires authentication (see the substatus)."),
    403: ("Forbidden", "The server refused the request (see the substatus)."),
    407: (
        "Proxy authentication required",
        "A proxy, not IIS, asked for credentials (IIS itself does not answer 407).",
    ),
}


# Win32 error codes (winerror.h), as IIS writes them in sc-win32-status.
_WIN32: dict[int, tuple[str, str, tuple[str, ...]]] = {
    0: ("ERROR_SUCCESS", "no error recorded", ()),
    2: ("ERROR_FILE_NOT_FOUND", "the file was not found", ()),
    3: ("ERROR_PATH_NOT_FOUND", "the path was not found", ()),
    5: (
        "ERROR_ACCESS_DENIED",
        "access denied",
        (
            "with 401.2: the request was anonymous and anonymous access is off",
            "with 401.3: the file or folder ACL denies the user",
        ),
    ),
    64: (
        "ERROR_NETNAME_DELETED",
        "the client connection went away before the response was sent",
        ("client closed or reset the connection", "a proxy or load balancer timed out"),
    ),
    1236: (
        "ERROR_CONNECTION_ABORTED",
        "the connection was aborted by the local system",
        ("client disconnected",),
    ),
    1311: (
        "ERROR_NO_LOGON_SERVERS",
        "no domain controller was available to validate the logon",
        ("server cannot reach a domain controller", "secure channel to the domain broken"),
    ),
    1317: ("ERROR_NO_SUCH_USER", "the specified account does not exist", ()),
    1326: (
        "ERROR_LOGON_FAILURE",
        "the user name or password is incorrect",
        ("wrong password", "unknown user", "wrong domain"),
    ),
    1327: (
        "ERROR_ACCOUNT_RESTRICTION",
        "account restrictions prevent this logon (blank password, policy restriction)",
        ("blank password not allowed for network logon", "policy restriction"),
    ),
    1328: (
        "ERROR_INVALID_LOGON_HOURS",
        "the account is not allowed to log on at this time of day",
        ("logon hours restriction on the account",),
    ),
    1329: (
        "ERROR_INVALID_WORKSTATION",
        "the account is not allowed to log on from this computer",
        ("'Log On To' workstation restriction on the account",),
    ),
    1330: ("ERROR_PASSWORD_EXPIRED", "the password has expired", ("expired password",)),
    1331: ("ERROR_ACCOUNT_DISABLED", "the account is disabled", ("disabled account",)),
    1355: ("ERROR_NO_SUCH_DOMAIN", "the specified domain does not exist or cannot be reached", ()),
    1385: (
        "ERROR_LOGON_TYPE_NOT_GRANTED",
        "the user has not been granted the requested logon type on this server",
        (
            "user lacks 'Access this computer from the network' (or the logon type IIS "
            "uses for Basic authentication)",
            "'Deny access to this computer from the network' applies to the user",
        ),
    ),
    1396: (
        "ERROR_WRONG_TARGET_NAME",
        "the target account name (SPN) is incorrect",
        ("SPN registered on another account",),
    ),
    1398: (
        "ERROR_TIME_SKEW",
        "the clocks of client and server differ too much",
        ("clock skew beyond the Kerberos tolerance (5 minutes by default)",),
    ),
    1793: ("ERROR_ACCOUNT_EXPIRED", "the account has expired", ("expired account",)),
    1907: (
        "ERROR_PASSWORD_MUST_CHANGE",
        "the password must be changed before logging on",
        ("'user must change password at next logon' is set",),
    ),
    1909: (
        "ERROR_ACCOUNT_LOCKED_OUT",
        "the account is locked out",
        ("too many failed attempts (repeated wrong passwords, stale saved credentials)",),
    ),
}

# SSPI status codes (HRESULTs 0x8009xxxx, winerror.h), what AcceptSecurityContext
# returned; IIS logs them in decimal (0x80090308 = 2148074248).
_SSPI: dict[int, tuple[str, str, tuple[str, ...]]] = {
    0x80090300: ("SEC_E_INSUFFICIENT_MEMORY", "not enough memory for the security operation", ()),
    0x80090301: (
        "SEC_E_INVALID_HANDLE",
        "the security context handle is invalid (the context the token refers to is gone)",
        ("handshake continued on a connection whose context was dropped",),
    ),
    0x80090302: ("SEC_E_UNSUPPORTED_FUNCTION", "the requested function is not supported", ()),
    0x80090303: (
        "SEC_E_TARGET_UNKNOWN",
        "the target (service principal) is unknown",
        ("SPN missing or wrong",),
    ),
    0x80090304: (
        "SEC_E_INTERNAL_ERROR",
        "the Local Security Authority could not be contacted or failed internally",
        ("LSA problem on the server", "domain controller communication failure"),
    ),
    0x80090305: (
        "SEC_E_SECPKG_NOT_FOUND",
        "the requested security package does not exist",
        ("client asked for a package the server does not have",),
    ),
    0x80090308: (
        "SEC_E_INVALID_TOKEN",
        "the token given to the server is invalid",
        (
            "NTLM handshake split across connections (Type 3 arrives on a connection that "
            "never saw the challenge): load balancer without affinity, pooling proxy",
            "corrupted or truncated token",
            "token the server cannot use (mechanism it does not accept)",
        ),
    ),
    0x80090309: ("SEC_E_CANNOT_PACK", "the package cannot pack the context", ()),
    0x8009030B: ("SEC_E_NO_IMPERSONATION", "no impersonation is allowed for this context", ()),
    0x8009030C: (
        "SEC_E_LOGON_DENIED",
        "the logon attempt failed",
        (
            "wrong user name or password (NTLM)",
            "NTLM refused by policy (NTLM restrictions, LmCompatibilityLevel)",
            "loopback check when client and server are the same machine",
        ),
    ),
    0x8009030D: (
        "SEC_E_UNKNOWN_CREDENTIALS",
        "the credentials supplied to the package were not recognised",
        ("credentials the package cannot use",),
    ),
    0x8009030E: (
        "SEC_E_NO_CREDENTIALS",
        "no credentials are available yet; during an NTLM/Negotiate handshake this is "
        "the challenge leg (the server sent its challenge and waits for the next token)",
        ("normal NTLM challenge leg",),
    ),
    0x8009030F: (
        "SEC_E_MESSAGE_ALTERED",
        "the message or signature was altered (integrity check failed)",
        ("NTLM MIC check failed", "token modified in transit"),
    ),
    0x80090310: (
        "SEC_E_OUT_OF_SEQUENCE",
        "the message was received out of sequence",
        ("handshake legs arrived in the wrong order or on the wrong connection",),
    ),
    0x80090311: (
        "SEC_E_NO_AUTHENTICATING_AUTHORITY",
        "no authority (domain controller) could be contacted for authentication",
        ("server cannot reach a domain controller", "trust between domains broken"),
    ),
    0x80090316: ("SEC_E_BAD_PKGID", "the requested security package does not exist", ()),
    0x80090317: (
        "SEC_E_CONTEXT_EXPIRED",
        "the security context has expired",
        ("Kerberos ticket or NTLM context expired",),
    ),
    0x80090318: ("SEC_E_INCOMPLETE_MESSAGE", "the supplied message is incomplete", ()),
    0x80090320: ("SEC_E_INCOMPLETE_CREDENTIALS", "the credentials are incomplete", ()),
    0x80090321: ("SEC_E_BUFFER_TOO_SMALL", "the buffer supplied was too small", ()),
    0x80090322: (
        "SEC_E_WRONG_PRINCIPAL",
        "the target principal name is incorrect: the Kerberos ticket was issued for "
        "another account than the one the service runs as",
        (
            "SPN registered on another account than the application pool identity",
            "duplicate SPN",
            "kernel-mode authentication with a custom pool identity and no useAppPoolCredentials",
        ),
    ),
    0x80090324: (
        "SEC_E_TIME_SKEW",
        "the clocks of client and server differ too much",
        ("clock skew beyond the Kerberos tolerance (5 minutes by default)",),
    ),
    0x80090325: ("SEC_E_UNTRUSTED_ROOT", "the certificate chain was issued by an untrusted CA", ()),
    0x80090326: ("SEC_E_ILLEGAL_MESSAGE", "the message received was unexpected or malformed", ()),
    0x80090327: ("SEC_E_CERT_UNKNOWN", "an unknown error occurred processing the certificate", ()),
    0x80090328: ("SEC_E_CERT_EXPIRED", "the received certificate has expired", ()),
    0x80090342: (
        "SEC_E_KDC_UNKNOWN_ETYPE",
        "the encryption type requested is not supported by the KDC",
        ("no encryption type in common (RC4/DES disabled, account without AES keys)",),
    ),
    0x80090343: ("SEC_E_UNSUPPORTED_PREAUTH", "an unsupported pre-authentication was used", ()),
    0x80090345: (
        "SEC_E_DELEGATION_REQUIRED",
        "the computer must be trusted for delegation",
        ("constrained/unconstrained delegation not configured",),
    ),
    0x80090346: (
        "SEC_E_BAD_BINDINGS",
        "the client's channel bindings were incorrect (Extended Protection)",
        (
            "TLS terminated by a proxy or load balancer in front of IIS",
            "client does not send channel bindings while Extended Protection is Required",
        ),
    ),
    0x80090347: ("SEC_E_MULTIPLE_ACCOUNTS", "the certificate maps to several accounts", ()),
    0x80090348: ("SEC_E_NO_KERB_KEY", "no Kerberos key was found", ()),
}

# The combinations of the classic troubleshooting guide (shared/DESIGN.md,
# "What a 401 means"). Anything not here is explained part by part.
_TRIPLES: dict[tuple[int, int, int], tuple[Verdict, str, str]] = {
    (401, 2, 5): (
        Verdict.NORMAL_LEG,
        "anonymous first request of a handshake",
        "The request carried no credentials and anonymous access is off, so IIS asked "
        "for authentication. Normal when the same client follows with credentials; a "
        "failure only when credentials never follow (no protocol in common).",
    ),
    (401, 1, 0x8009030E): (
        Verdict.NORMAL_LEG,
        "NTLM/Negotiate challenge leg",
        "IIS received the first NTLM token (Type 1) and answered with its challenge "
        "(Type 2). Normal when the client's next request on the same connection "
        "completes the handshake.",
    ),
    (401, 1, 0x80090308): (
        Verdict.FAILURE,
        "invalid token: the server could not use the client's token",
        "Typically an NTLM handshake split across connections: the final token arrived "
        "on a connection that never saw the challenge (load balancer without affinity, "
        "reverse proxy pooling upstream connections). Otherwise a corrupted token or a "
        "mechanism the server does not accept.",
    ),
    (401, 1, 1326): (
        Verdict.FAILURE,
        "wrong user name or password",
        "The credentials were checked and rejected. Repeated failures for one user risk "
        "locking the account out.",
    ),
    (401, 1, 0x8009030C): (
        Verdict.FAILURE,
        "logon denied",
        "The security package rejected the logon: wrong credentials, NTLM refused by "
        "policy, or the loopback check when client and server are the same machine.",
    ),
    (401, 3, 5): (
        Verdict.FAILURE,
        "authenticated, but the file ACL denies the user",
        "Authentication succeeded; the user (or anonymous identity) lacks NTFS "
        "permissions on the resource.",
    ),
}


def _status_code(status: int, substatus: int) -> StatusCode | None:
    entry = _STATUS.get((status, substatus))
    if entry is None:
        return None
    label, meaning, causes = entry
    return StatusCode(
        status, substatus, label, meaning, causes, _FIXES.get((status, substatus), ())
    )


def status_code(status: int, substatus: int, anonymous: bool = False) -> StatusCode | None:
    """The IIS label of `status.substatus`, or None when it is not in the table.
    `anonymous`: the request carried no credentials (401.1 then means the
    anonymous account could not log on, with its own causes and fixes)."""
    if anonymous and (status, substatus) == (401, 1):
        label, meaning, causes, fixes = _ANONYMOUS_401_1
        return StatusCode(401, 1, label, meaning, causes, fixes, anonymous=True)
    return _status_code(status, substatus)


def win32_code(code: int) -> Win32Code:
    """The name and meaning of an `sc-win32-status` value; never raises.

    Negative values (a signed 32-bit rendering of an HRESULT) are read as the
    unsigned value IIS would log.
    """
    value = code & _U32 if -(2**31) <= code < 2**32 else code
    if value in _WIN32:
        name, meaning, causes = _WIN32[value]
        return Win32Code(value, name, CodeFamily.WIN32, meaning, causes)
    if value in _SSPI:
        name, meaning, causes = _SSPI[value]
        return Win32Code(value, name, CodeFamily.SSPI, meaning, causes)
    family = CodeFamily.SSPI if (value & 0xFFFF0000) == 0x80090000 else CodeFamily.WIN32
    return Win32Code(
        value, f"UNKNOWN ({value})", family, "not in authtrace's table", (), known=False
    )


def _verdict_from_parts(status: int, substatus: int, win32: int) -> Verdict:
    if 200 <= status < 400:
        return Verdict.SUCCESS
    if status == 401 and substatus == 2:
        # 401.2 means "no credentials the server accepts": whatever the win32
        # value, it is the shape of a first leg; the sequence decides.
        return Verdict.NORMAL_LEG
    if status in (401, 403):
        return Verdict.FAILURE
    return Verdict.NOT_AUTH


def explain_triple(status: int, substatus: int, win32: int) -> TripleExplanation:
    """What an IIS log triple means and whether it is a normal handshake leg."""
    w32 = win32_code(win32)
    sc = _status_code(status, substatus)
    known = _TRIPLES.get((status, substatus, w32.code))
    if known is not None:
        verdict, summary, detail = known
        return TripleExplanation(
            status, substatus, w32.code, sc, w32, verdict, summary, detail, True
        )
    verdict = _verdict_from_parts(status, substatus, w32.code)
    if verdict is Verdict.SUCCESS:
        summary = "request served"
        detail = "Not a failure."
    elif sc is not None:
        summary = f"{sc.label.lower()}; {w32.name}: {w32.meaning}"
        detail = (
            f"{sc.code} ({sc.label}): {sc.meaning} "
            f"{w32.name} ({w32.code} = {w32.hex}): {w32.meaning}. "
            "This combination is explained part by part."
        )
    else:
        generic = _KNOWN_STATUS_ONLY.get(status)
        head = generic[0].lower() if generic else f"HTTP {status}"
        summary = f"{head} (substatus {substatus}); {w32.name}: {w32.meaning}"
        detail = (
            (generic[1] + " " if generic else "")
            + f"Substatus {substatus} is not in authtrace's table. "
            + f"{w32.name} ({w32.code} = {w32.hex}): {w32.meaning}."
        )
    if verdict is Verdict.NORMAL_LEG:
        detail += " Normal only when credentials follow from the same client."
    return TripleExplanation(status, substatus, w32.code, sc, w32, verdict, summary, detail, False)


# NTLM negotiate flag meanings, MS-NLMP section 2.2.2.5 (in our words).
_FLAG_MEANINGS: dict[int, str] = {
    0x00000001: "strings are Unicode",
    0x00000002: "strings are in the OEM code page",
    0x00000004: "the server's target name (domain or server) is requested",
    0x00000010: "session signing requested",
    0x00000020: "session sealing (encryption) requested",
    0x00000040: "connectionless (datagram) authentication",
    0x00000080: "LAN Manager session key",
    0x00000200: "NTLM v1 session security",
    0x00000800: "anonymous connection (no user)",
    0x00001000: "the domain name is supplied in the NEGOTIATE message",
    0x00002000: "the workstation name is supplied in the NEGOTIATE message",
    0x00004000: "local call: client and server are on the same machine",
    0x00008000: "a signature is always present, even without signing",
    0x00010000: "the target name is a domain",
    0x00020000: "the target name is a server",
    0x00080000: "NTLM v2 session security (extended session security)",
    0x00100000: "identify-level token requested",
    0x00400000: "non-NT session key requested",
    0x00800000: "the CHALLENGE carries target information (AV pairs)",
    0x02000000: "the message carries a version field",
    0x20000000: "128-bit session key",
    0x40000000: "explicit key exchange",
    0x80000000: "56-bit encryption",
}


def ntlm_flag(member: NegotiateFlags) -> NtlmFlag:
    value = int(member)
    return NtlmFlag(value, member.name or f"UNKNOWN (0x{value:08X})", _FLAG_MEANINGS.get(value, ""))


def explain_ntlm_flags(value: int) -> NtlmFlagsExplanation:
    """Decode a NegotiateFlags value into its flags, lowest bit first."""
    value &= _U32
    flags: list[NtlmFlag] = []
    for bit in range(32):
        mask = 1 << bit
        if not value & mask:
            continue
        try:
            member = NegotiateFlags(mask)
        except ValueError:
            flags.append(NtlmFlag(mask, f"UNKNOWN (0x{mask:08X})", "bit not defined by MS-NLMP"))
            continue
        flags.append(ntlm_flag(member))
    return NtlmFlagsExplanation(value, tuple(flags))


def _ntlm_flag_by_name(name: str) -> NegotiateFlags | None:
    wanted = name.upper()
    for member in NegotiateFlags:
        full = member.name or ""
        short = full.split("_", 1)[1] if "_" in full else full
        after_negotiate = full.split("NEGOTIATE_", 1)[1] if "NEGOTIATE_" in full else None
        if wanted in (full, short, after_negotiate):
            return member
    return None


def _win32_by_name(name: str) -> tuple[Win32Code, str] | None:
    """Look a code up by its SDK name, or by the name without its prefix.

    A short name can be both (TIME_SKEW is ERROR_TIME_SKEW and SEC_E_TIME_SKEW):
    the SSPI one is returned, as IIS logs SSPI values for Negotiate/NTLM
    failures, and the other is named in the note.
    """
    wanted = name.upper()
    short_matches: list[int] = []
    for table in (_SSPI, _WIN32):
        for value, (label, _meaning, _causes) in table.items():
            if wanted == label:
                return win32_code(value), ""
            short = label.removeprefix("SEC_E_").removeprefix("ERROR_")
            if wanted == short:
                short_matches.append(value)
    if not short_matches:
        return None
    others = ", ".join(f"{win32_code(v).name} ({v})" for v in short_matches[1:])
    return win32_code(short_matches[0]), (f"also {others}" if others else "")


_INT = re.compile(r"^(?:-?\d{1,12}|0[xX][0-9A-Fa-f]{1,8})$")
_SUBSTATUS = re.compile(r"^(\d{3})\.(\d{1,4})$")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{1,80}$")
_MAX_QUERY = 200


def _to_int(token: str) -> int:
    return int(token, 16) if token.lower().startswith("0x") else int(token)


def _explain_number(query: str, token: str) -> Explanation | None:
    value = _to_int(token)
    is_hex = token.lower().startswith("0x")
    if is_hex:
        w32 = win32_code(value)
        if w32.known:
            return Explanation(query, win32=w32)
        if 0 < value <= _U32:
            return Explanation(
                query,
                ntlm_flags=explain_ntlm_flags(value),
                note="not a known Win32/SSPI code; decoded as NTLM negotiate flags",
            )
        return None
    w32 = win32_code(value)
    if 100 <= value <= 599 and value in _KNOWN_STATUS_ONLY:
        return Explanation(query, status=_generic_status(value))
    krb = kerberos_error(value) if 0 <= value < 128 else None
    if krb is not None and krb.name.startswith("UNKNOWN"):
        krb = None
    if not w32.known and krb is None:
        return None
    note = ""
    if w32.known and krb is not None:
        note = "a bare small number is ambiguous: shown as a Win32 error and as a Kerberos error"
    return Explanation(query, win32=w32 if w32.known else None, kerberos=krb, note=note)


def _generic_status(status: int) -> StatusCode:
    label, meaning = _KNOWN_STATUS_ONLY[status]
    return StatusCode(status, 0, label, meaning)


def group_codes(words: Sequence[str]) -> list[str]:
    """The codes in `words` as a shell splits an unquoted command line: three
    decimal numbers in a row that an IIS log line could end a response's
    status with (`401 1 2148074248`: sc-status 100-599, sc-substatus,
    sc-win32-status) are one triple, as `explain` reads it quoted; every other
    word is a code of its own (`401.2 0x8009030E` are two codes). O(n)."""
    codes: list[str] = []
    at = 0
    while at < len(words):
        here = words[at : at + 3]
        if len(here) == 3 and all(t.isdigit() for t in here) and 100 <= int(here[0]) <= 599:
            codes.append(" ".join(here))
            at += 3
        else:
            codes.append(words[at])
            at += 1
    return codes


def explain(code: str) -> Explanation | None:
    """Explain one code as a person would type it; None when nothing matches.

    Accepts `401.2`, `401 1 2148074248` (also `401.1 2148074248`), a decimal or
    hex Win32/SSPI code, a SEC_E_/ERROR_ name, a Kerberos error name or number,
    an NTLM flag name or a hex flags value. Never raises.
    """
    query = code.strip()
    if not query or len(query) > _MAX_QUERY:
        return None
    tokens = query.replace(",", " ").split()
    try:
        if len(tokens) == 3 and all(_INT.match(t) for t in tokens):
            status, substatus, win32 = (_to_int(t) for t in tokens)
            if not 100 <= status <= 599 or not 0 <= substatus <= 0xFFFF:
                return None
            return Explanation(query, triple=explain_triple(status, substatus, win32))
        if len(tokens) == 2 and _SUBSTATUS.match(tokens[0]) and _INT.match(tokens[1]):
            match = _SUBSTATUS.match(tokens[0])
            assert match is not None
            return Explanation(
                query,
                triple=explain_triple(int(match.group(1)), int(match.group(2)), _to_int(tokens[1])),
            )
        if len(tokens) != 1:
            return None
        token = tokens[0]
        match = _SUBSTATUS.match(token)
        if match:
            status, substatus = int(match.group(1)), int(match.group(2))
            sc = _status_code(status, substatus)
            if sc is None:
                return None
            anonymous = status_code(status, substatus, anonymous=True)
            return Explanation(
                query, status=sc, anonymous_status=anonymous if anonymous != sc else None
            )
        if _INT.match(token):
            return _explain_number(query, token)
        if _NAME.match(token):
            return _explain_name(query, token)
    except (ValueError, OverflowError):
        return None
    return None


def _explain_name(query: str, token: str) -> Explanation | None:
    by_name = _win32_by_name(token)
    if by_name is not None:
        return Explanation(query, win32=by_name[0], note=by_name[1])
    krb = kerberos_error_by_name(token)
    if krb is not None:
        return Explanation(query, kerberos=krb)
    flag = _ntlm_flag_by_name(token)
    if flag is not None:
        return Explanation(query, ntlm_flags=NtlmFlagsExplanation(int(flag), (ntlm_flag(flag),)))
    return None


def win32_table() -> tuple[Win32Code, ...]:
    """Every Win32 and SSPI code in the table, Win32 first, by value."""
    return tuple(win32_code(v) for v in sorted(_WIN32)) + tuple(
        win32_code(v) for v in sorted(_SSPI)
    )


def status_table() -> tuple[StatusCode, ...]:
    """Every IIS status.substatus in the table, by value."""
    return tuple(sc for key in sorted(_STATUS) if (sc := _status_code(*key)) is not None)
