"""Channel bindings proved from the capture: the RFC 5929 `tls-server-end-point`
binding of the server certificate a decrypted connection carried, and what an
NTLMv2 AUTHENTICATE's MsvAvChannelBindings says about it.

Kerberos carries its binding in the authenticator's checksum (RFC 4121
section 4.1.1, the Bnd field: the MD5 of the same gss_channel_bindings_struct),
and the authenticator is encrypted with the ticket's session key, which only
the service's key (a keytab) opens. authtrace takes no keytab, so a Kerberos
AP-REQ's binding is `NOT_VISIBLE`: not seen, never "not sent".

Owns: computing the binding (RFC 5929 section 4.1: the certificate hashed with
its signature's hash, SHA-256 for MD5 and SHA-1), the MD5 of the
gss_channel_bindings_struct that NTLM carries (MS-NLMP 2.2.2.1; RFC 2744
section 3.11 for the structure, flattened as SSPI does: addresses empty,
application data = "tls-server-end-point:" + hash), and the verdict.

Invariant: a verdict needs the server certificate of the very connection the
AUTHENTICATE came over; without it there is none (None), never a guess.
The certificate hash is public (the certificate is sent in clear or to anyone
who connects); the NTLM value compared is not shown by this module.
"""

from __future__ import annotations

import enum
import hashlib
import struct

from authtrace.tls.model import TlsFacts

_PREFIX = b"tls-server-end-point:"
# RFC 5929 section 4.1: MD5 and SHA-1 certificates are hashed with SHA-256.
_UPGRADED = {"md5": "sha256", "sha1": "sha256"}


class Binding(enum.Enum):
    """What an NTLMv2 AUTHENTICATE's channel binding says about the TLS channel."""

    MATCHES = "matches"  # bound to the server certificate of this connection
    NOT_SENT = "not_sent"  # no MsvAvChannelBindings, or all zeros (MS-NLMP 2.2.2.1)
    OTHER_CERTIFICATE = "other_certificate"  # bound to another channel: TLS ends in between
    # Kerberos: inside the encrypted authenticator (RFC 4121 section 4.1.1): not seen.
    NOT_VISIBLE = "not_visible"


def server_end_point(certificate: bytes) -> bytes | None:
    """The tls-server-end-point hash of a DER certificate (RFC 5929 section 4.1),
    None when it cannot be parsed. A certificate whose signature has no
    separate hash (Ed25519, Ed448) is hashed with SHA-256, as Windows does
    (RFC 5929 leaves it undefined)."""
    from cryptography import x509  # only when a certificate is judged
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        parsed = x509.load_der_x509_certificate(certificate)
        algorithm = parsed.signature_hash_algorithm
    except (ValueError, UnsupportedAlgorithm):
        return None
    name = algorithm.name if algorithm is not None else "sha256"
    name = _UPGRADED.get(name, name)
    try:
        return hashlib.new(name, certificate).digest()
    except ValueError:
        return None


def ntlm_binding_value(end_point: bytes) -> bytes:
    """MsvAvChannelBindings for a tls-server-end-point hash: MD5 over
    initiator_addrtype, initiator_address (length 0), acceptor_addrtype,
    acceptor_address (length 0), application_data (length + bytes), each
    length or type a 32-bit little-endian integer."""
    application = _PREFIX + end_point
    flat = struct.pack("<IIIII", 0, 0, 0, 0, len(application)) + application
    return hashlib.md5(flat).digest()  # noqa: S324 - MD5 is what MS-NLMP specifies


def ntlm_binding(facts: TlsFacts | None, channel_bindings: bytes | None) -> Binding | None:
    """The verdict on one AUTHENTICATE's MsvAvChannelBindings (None or its 16
    bytes) over the connection whose TLS facts are `facts`; None when the
    connection's server certificate is not known."""
    if facts is None or not facts.certificates:
        return None
    if channel_bindings is None or not any(channel_bindings):
        return Binding.NOT_SENT
    end_point = server_end_point(facts.certificates[0])
    if end_point is None:
        return None
    if channel_bindings == ntlm_binding_value(end_point):
        return Binding.MATCHES
    return Binding.OTHER_CERTIFICATE


def kerberos_binding(facts: TlsFacts | None) -> Binding | None:
    """The verdict on a Kerberos AP-REQ over the connection whose TLS facts are
    `facts`: NOT_VISIBLE when it came over TLS whose certificate is known (a
    binding may be there, encrypted), None otherwise."""
    if facts is None or not facts.certificates:
        return None
    return Binding.NOT_VISIBLE
