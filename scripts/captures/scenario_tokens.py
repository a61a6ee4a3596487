"""Real authentication token bytes for the hand-built scenario captures.

Owns: NTLM messages produced by pyspnego's own initiator/acceptor (so a wrong
password really fails the acceptor's verification), and Kerberos / SPNEGO /
GSS-API structures encoded with scapy's ASN.1 layers.

Invariant: every token is produced by a real encoder and is decodable by
tshark and by pyspnego's parse_token; Kerberos cipher text is random filler
(we hold no keys), drawn from a seeded generator so rebuilds are byte-identical.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import random
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import spnego
from scapy.asn1.asn1 import (
    ASN1_GENERAL_STRING,
    ASN1_GENERALIZED_TIME,
    ASN1_INTEGER,
    ASN1_OID,
)
from scapy.layers.gssapi import GSSAPI_BLOB
from scapy.layers.kerberos import (
    KRB_AP_REP,
    KRB_AP_REQ,
    KRB_AS_REP,
    KRB_AS_REQ,
    KRB_ERROR,
    KRB_KDC_REQ_BODY,
    KRB_TGS_REP,
    KRB_TGS_REQ,
    PA_PAC_REQUEST,
    PADATA,
    EncryptedData,
    KRB_GSSAPI_Token,
    KRB_InnerToken,
    KRB_Ticket,
    PrincipalName,
)
from scapy.layers.spnego import (
    SPNEGO_MechType,
    SPNEGO_negToken,
    SPNEGO_negTokenInit,
    SPNEGO_negTokenResp,
    SPNEGO_Token,
)
from spnego._ntlm_raw import messages as ntlm_messages
from spnego.exceptions import SpnegoError

# RFC 4178 / MS-SPNG mechanism OIDs, in the order a Windows client offers them.
OID_SPNEGO = "1.3.6.1.5.5.2"
OID_MS_KRB5 = "1.2.840.48018.1.2.2"
OID_KRB5 = "1.2.840.113554.1.2.2"
OID_NEGOEX = "1.3.6.1.4.1.311.2.2.30"
OID_NTLMSSP = "1.3.6.1.4.1.311.2.2.10"
WINDOWS_MECHS = [OID_MS_KRB5, OID_KRB5, OID_NEGOEX, OID_NTLMSSP]

REALM = "CONTOSO.COM"
# RFC 4120 3.1.1 etype 18 = aes256-cts-hmac-sha1-96, what a current AD uses.
AES256 = 18


def krb_time(when: float) -> ASN1_GENERALIZED_TIME:
    return ASN1_GENERALIZED_TIME(datetime.datetime.fromtimestamp(int(when), tz=datetime.UTC))


def principal(name_type: int, *parts: str) -> PrincipalName:
    # RFC 4120 6.2: 1 = NT-PRINCIPAL (users), 2 = NT-SRV-INST (krbtgt, HTTP/host).
    return PrincipalName(
        nameType=ASN1_INTEGER(name_type), nameString=[ASN1_GENERAL_STRING(p) for p in parts]
    )


def spn(service_host: str) -> PrincipalName:
    service, host = service_host.split("/", 1)
    return principal(2, service, host)


class KerberosFactory:
    """Kerberos messages whose encrypted parts are seeded random bytes (RFC 4120 5.x)."""

    def __init__(self, seed: int, realm: str = REALM) -> None:
        self.rng = random.Random(seed)
        self.realm = realm

    def _cipher(self, size: int, kvno: int | None = None) -> EncryptedData:
        data = EncryptedData(etype=ASN1_INTEGER(AES256), cipher=self.rng.randbytes(size))
        if kvno is not None:
            data.kvno = ASN1_INTEGER(kvno)
        return data

    def ticket(self, service: PrincipalName, size: int = 1100) -> KRB_Ticket:
        # A Windows service ticket carries a PAC, hence ~1 KB of cipher text.
        return KRB_Ticket(realm=self.realm, sname=service, encPart=self._cipher(size, kvno=3))

    def ap_req(self, service_host: str, mutual: bool = True) -> KRB_AP_REQ:
        # RFC 4120 5.5.1; ap-options bit 2 = mutual-required (HTTP clients ask for an AP-REP).
        return KRB_AP_REQ(
            apOptions=("001" if mutual else "000").ljust(32, "0"),
            ticket=self.ticket(spn(service_host)),
            authenticator=self._cipher(310),
        )

    def ap_rep(self) -> KRB_AP_REP:
        return KRB_AP_REP(encPart=self._cipher(120))

    def _req_body(self, cname: str | None, service: PrincipalName, when: float) -> KRB_KDC_REQ_BODY:
        body = KRB_KDC_REQ_BODY(
            # forwardable, renewable, canonicalize, renewable-ok (RFC 4120 5.4.1, RFC 6806)
            kdcOptions="01000000100000010000000000010000",
            realm=self.realm,
            sname=service,
            till=krb_time(when + 36000),
            rtime=krb_time(when + 7 * 86400),
            nonce=ASN1_INTEGER(self.rng.getrandbits(31)),
            etype=[ASN1_INTEGER(e) for e in (18, 17, 23, 24)],
        )
        if cname is not None:
            body.cname = principal(1, cname)
        return body

    def as_req(self, user: str, when: float, preauth: bool) -> KRB_AS_REQ:
        padata = [PADATA(padataType=ASN1_INTEGER(128), padataValue=PA_PAC_REQUEST(includePac=True))]
        if preauth:
            # RFC 4120 5.2.7.2 PA-ENC-TIMESTAMP (2): the encrypted timestamp.
            padata.insert(0, PADATA(padataType=ASN1_INTEGER(2), padataValue=self._cipher(56)))
        return KRB_AS_REQ(
            msgType=ASN1_INTEGER(10),
            padata=padata,
            reqBody=self._req_body(user, principal(2, "krbtgt", self.realm), when),
        )

    def as_rep(self, user: str) -> KRB_AS_REP:
        return KRB_AS_REP(
            msgType=ASN1_INTEGER(11),
            crealm=self.realm,
            cname=principal(1, user),
            ticket=self.ticket(principal(2, "krbtgt", self.realm)),
            encPart=self._cipher(330, kvno=2),
        )

    def tgs_req(self, service_host: str, when: float) -> KRB_TGS_REQ:
        # RFC 4120 5.4.1: PA-TGS-REQ (1) carries an AP-REQ with the TGT.
        tgt_ap_req = KRB_AP_REQ(
            apOptions="0" * 32,
            ticket=self.ticket(principal(2, "krbtgt", self.realm)),
            authenticator=self._cipher(260),
        )
        return KRB_TGS_REQ(
            msgType=ASN1_INTEGER(12),
            padata=[PADATA(padataType=ASN1_INTEGER(1), padataValue=tgt_ap_req)],
            reqBody=self._req_body(None, spn(service_host), when),
        )

    def tgs_rep(self, user: str, service_host: str) -> KRB_TGS_REP:
        return KRB_TGS_REP(
            msgType=ASN1_INTEGER(13),
            crealm=self.realm,
            cname=principal(1, user),
            ticket=self.ticket(spn(service_host)),
            encPart=self._cipher(300),
        )

    def error(
        self, code: int, when: float, service: PrincipalName, user: str | None = None
    ) -> KRB_ERROR:
        # RFC 4120 5.9.1 KRB-ERROR; error codes RFC 4120 7.5.9.
        err = KRB_ERROR(
            stime=krb_time(when),
            susec=ASN1_INTEGER(self.rng.randrange(1_000_000)),
            errorCode=ASN1_INTEGER(code),
            realm=self.realm,
            sname=service,
            eText=None,
            eData=None,
        )
        if user is not None:
            err.crealm = self.realm
            err.cname = principal(1, user)
        return err


def gss_krb5(inner: KRB_AP_REQ | KRB_AP_REP | KRB_ERROR, tok_id: bytes) -> KRB_GSSAPI_Token:
    # RFC 4121 4.1: the krb5 mech token is OID + 2-byte TOK_ID
    # (01 00 AP-REQ, 02 00 AP-REP, 03 00 KRB-ERROR) + the message.
    return KRB_GSSAPI_Token(MechType=OID_KRB5, innerToken=KRB_InnerToken(TOK_ID=tok_id, root=inner))


def neg_token_init(mech_token: bytes, mechs: list[str]) -> bytes:
    """RFC 4178 4.2.1 NegTokenInit inside the RFC 2743 3.1 GSS-API framing."""
    init = SPNEGO_negTokenInit(
        mechTypes=[SPNEGO_MechType(oid=ASN1_OID(m)) for m in mechs],
        mechToken=SPNEGO_Token(value=mech_token),
    )
    return bytes(GSSAPI_BLOB(MechType=OID_SPNEGO, innerToken=SPNEGO_negToken(token=init)))


def neg_token_resp(state: int | None, mech: str | None = None, token: bytes | None = None) -> bytes:
    """RFC 4178 4.2.2 NegTokenResp: 0 accept-completed, 1 accept-incomplete, 2 reject."""
    resp = SPNEGO_negTokenResp(negState=None, supportedMech=None)
    if state is not None:
        resp.negState = state
    if mech is not None:
        resp.supportedMech = SPNEGO_MechType(oid=ASN1_OID(mech))
    if token is not None:
        resp.responseToken = SPNEGO_Token(value=token)
    return bytes(SPNEGO_negToken(token=resp))


# ---------------------------------------------------------------------------
# NTLM (MS-NLMP) through pyspnego's pure-Python initiator and acceptor.


@dataclass(frozen=True, slots=True)
class NtlmLegs:
    negotiate: bytes
    challenge: bytes
    authenticate: bytes
    accepted: bool
    reason: str


@contextlib.contextmanager
def _deterministic(seed: int, when: float, hostname: str, workstation: str) -> Iterator[None]:
    """Pin pyspnego's sources of variation: os.urandom (challenges, session key),
    FileTime.now (MsvAvTimestamp), the host name (target name) and the Version
    structure, which pyspnego fills from its own package version (we present a
    Windows 10 build, MS-NLMP 2.2.2.10)."""
    rng = random.Random(seed)
    fixed = ntlm_messages.FileTime.from_datetime(
        datetime.datetime.fromtimestamp(when, tz=datetime.UTC)
    )
    saved = (
        os.urandom,
        socket.gethostname,
        ntlm_messages.FileTime.now,
        ntlm_messages.Version.get_current,
        os.environ.get("NETBIOS_COMPUTER_NAME"),
    )
    os.urandom = rng.randbytes  # type: ignore[assignment]
    socket.gethostname = lambda: hostname  # type: ignore[assignment]
    ntlm_messages.FileTime.now = classmethod(lambda cls, tz=None: fixed)  # type: ignore[method-assign,assignment]
    ntlm_messages.Version.get_current = staticmethod(  # type: ignore[method-assign]
        lambda: ntlm_messages.Version(major=10, minor=0, build=19041)
    )
    os.environ["NETBIOS_COMPUTER_NAME"] = workstation
    try:
        yield
    finally:
        os.urandom, socket.gethostname = saved[0], saved[1]  # type: ignore[assignment]
        ntlm_messages.FileTime.now = saved[2]  # type: ignore[method-assign]
        ntlm_messages.Version.get_current = saved[3]  # type: ignore[method-assign]
        if saved[4] is None:
            os.environ.pop("NETBIOS_COMPUTER_NAME", None)
        else:
            os.environ["NETBIOS_COMPUTER_NAME"] = saved[4]


@contextlib.contextmanager
def _user_file(accounts: list[tuple[str, str, str]]) -> Iterator[None]:
    # pyspnego's acceptor reads DOMAIN:user:password lines from NTLM_USER_FILE.
    with tempfile.NamedTemporaryFile("w", suffix=".ntlm", delete=False) as handle:
        for domain, user, password in accounts:
            handle.write(f"{domain}:{user}:{password}\n")
    old = os.environ.get("NTLM_USER_FILE")
    os.environ["NTLM_USER_FILE"] = handle.name
    try:
        yield
    finally:
        os.unlink(handle.name)
        if old is None:
            os.environ.pop("NTLM_USER_FILE", None)
        else:
            os.environ["NTLM_USER_FILE"] = old


# The accounts the test domain knows (what the server verifies against).
ACCOUNTS = [("CONTOSO", "alice", "Spring2024!"), ("CONTOSO", "bob", "Autumn2023#")]


class NtlmFactory:
    def __init__(self, seed: int, when: float, server_name: str = "WEB01") -> None:
        self.seed = seed
        self.when = when
        self.server_name = server_name
        self._count = 0

    def _next_seed(self) -> int:
        self._count += 1
        return self.seed * 1000 + self._count

    def client(
        self,
        user: str,
        password: str,
        host: str,
        workstation: str,
        lm_compat: int = 3,
        bindings: bytes | None = None,
    ):
        """Returns a started pyspnego NTLM initiator and its NEGOTIATE message;
        `bindings`: the channel bindings' application data (RFC 5929
        "tls-server-end-point:" + hash), None for none."""
        with _deterministic(self._next_seed(), self.when, self.server_name, workstation):
            old = os.environ.get("LM_COMPAT_LEVEL")
            # pyspnego reads the LM compatibility level (as gss-ntlmssp does)
            # when the context is made.
            os.environ["LM_COMPAT_LEVEL"] = str(lm_compat)
            try:
                channel = None
                if bindings is not None:
                    from spnego.channel_bindings import GssChannelBindings

                    channel = GssChannelBindings(application_data=bindings)
                ctx = spnego.client(
                    user,
                    password,
                    hostname=host,
                    service="HTTP",
                    protocol="ntlm",
                    channel_bindings=channel,
                )
            finally:
                if old is None:
                    os.environ.pop("LM_COMPAT_LEVEL", None)
                else:
                    os.environ["LM_COMPAT_LEVEL"] = old
            negotiate = ctx.step()
        return ctx, negotiate

    def server(self, negotiate: bytes, workstation: str = "WS"):
        """A pyspnego acceptor that answered NEGOTIATE; returns it and the CHALLENGE."""
        with (
            _user_file(ACCOUNTS),
            # Each CHALLENGE gets its own MsvAvTimestamp, as a real server's clock
            # gives it; an NTLMv2 AUTHENTICATE copies it, which ties the two.
            _deterministic(
                self._next_seed(), self.when + self._count / 1000, self.server_name, workstation
            ),
        ):
            ctx = spnego.server(protocol="ntlm")
            challenge = ctx.step(negotiate)
        return ctx, challenge

    def answer(self, client, challenge: bytes, workstation: str) -> bytes:
        with _deterministic(self._next_seed(), self.when, self.server_name, workstation):
            return client.step(challenge)

    def verify(self, server, authenticate: bytes) -> tuple[bool, str]:
        """Feeds AUTHENTICATE to the acceptor: (accepted, reason)."""
        with (
            _user_file(ACCOUNTS),
            _deterministic(self._next_seed(), self.when, self.server_name, "WS"),
        ):
            try:
                server.step(authenticate)
            except SpnegoError as error:
                return False, str(error).splitlines()[0]
        return True, "accepted"

    def handshake(
        self,
        user: str,
        password: str,
        host: str,
        workstation: str,
        lm_compat: int = 3,
        bindings: bytes | None = None,
    ) -> NtlmLegs:
        client, negotiate = self.client(user, password, host, workstation, lm_compat, bindings)
        server, challenge = self.server(negotiate)
        authenticate = self.answer(client, challenge, workstation)
        accepted, reason = self.verify(server, authenticate)
        return NtlmLegs(negotiate, challenge, authenticate, accepted, reason)


def anonymous_authenticate(challenge: bytes) -> bytes:
    """MS-NLMP 3.1.5.1.2 / 2.2.1.3: an anonymous AUTHENTICATE has empty user and
    domain, an empty NtChallengeResponse, a single zero byte LmChallengeResponse
    and NTLMSSP_ANONYMOUS (0x00000800) set.

    The workstation is left out: pyspnego packs the 1-byte LM response first,
    which would put a UTF-16 workstation name at an odd offset, and Wireshark
    4.0 reports that as a malformed packet (Windows orders strings first)."""
    parsed = ntlm_messages.Challenge.unpack(challenge)
    flags = (
        parsed.flags | ntlm_messages.NegotiateFlags.anonymous
    ) & ~ntlm_messages.NegotiateFlags.key_exch
    return ntlm_messages.Authenticate(
        flags=flags,
        lm_challenge_response=b"\x00",
        nt_challenge_response=b"",
        domain_name="",
        username="",
        workstation=None,
        version=ntlm_messages.Version(major=10, minor=0, build=19041),
    ).pack()
