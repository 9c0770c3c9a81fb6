"""pki layer: DH certificates (X.509 PKCS #3 / X9.42 / RFC 8410), UDH values, CRLs, and the
validation that turns them into a :class:`PeerKey` for the keying layer.

This package re-exports the public API; docs/certificates.md ("Library API") describes it.
"""

from skip.pki.certificate import Certificate, Subject, issue, load_certificate, load_certificates
from skip.pki.crl import Crl, Revocation, issue_crl, load_crls
from skip.pki.dhkey import (
    DHPrivateKey,
    DHPublicKey,
    dump_private_key,
    generate_key,
    load_private_key,
    load_public_key,
)
from skip.pki.names import SkipName
from skip.pki.udh import UdhCertificate, make_udh, parse_udh
from skip.pki.validation import (
    PeerKey,
    Policy,
    TrustStore,
    check_dh_key,
    require_name,
    validate_certificate,
    validate_udh,
)

__all__ = [
    "Certificate",
    "Crl",
    "DHPrivateKey",
    "DHPublicKey",
    "PeerKey",
    "Policy",
    "Revocation",
    "SkipName",
    "Subject",
    "TrustStore",
    "UdhCertificate",
    "check_dh_key",
    "dump_private_key",
    "generate_key",
    "issue",
    "issue_crl",
    "load_certificate",
    "load_certificates",
    "load_crls",
    "load_private_key",
    "load_public_key",
    "make_udh",
    "parse_udh",
    "require_name",
    "validate_certificate",
    "validate_udh",
]
