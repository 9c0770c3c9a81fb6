"""From a certificate a discovery source returned to a believed public value.

Whatever brought it (CDP, the DNS, a push), a certificate is used only if it answers to the
SKIP name that was asked for and validates exactly like a configured one (next-wave.md
CDP-24, CDP-25, DNS-11). A responder, a resolver or an off-path forger may return a perfectly
valid certificate for *another* principal: the name binding is what stops it (CDP threat 3).
"""

from __future__ import annotations

from collections.abc import Callable

from skip.errors import CertificateError, ParseError
from skip.pki.certificate import Certificate, parse_certificate
from skip.pki.udh import parse_udh
from skip.pki.validation import PeerKey, Policy, validate_udh
from skip.wire.cdp import CertType
from skip.wire.names import SkipName
from skip.wire.nsid import Nsid

#: ``validate(certificate, now)``: chain to an anchor, validity, CRLs, DH value checks.
Validate = Callable[[Certificate, float], PeerKey]


def bind(name: SkipName, cert_type: int, data: bytes, now: float, validate: Validate, *,
         policy: Policy | None = None) -> PeerKey:
    """The key of one returned certificate, or CertificateError with the reason it is not
    used (``cert_name_mismatch``, ``cert_malformed``, ``cert_key_type``, or the validator's)."""
    if cert_type == CertType.X509:
        try:
            cert = parse_certificate(data)
        except ParseError as exc:
            raise CertificateError("cert_malformed", f"returned certificate: {exc}") from None
        if (name.nsid, name.mkid) not in {(n.nsid, n.mkid) for n in cert.skip_names()}:
            raise CertificateError("cert_name_mismatch", f"the certificate does not answer to "
                                   f"{name}, the name asked for")
        return validate(cert, now)
    if cert_type == CertType.UDH:
        if name.nsid != Nsid.MD5_DH_PUBLIC:
            # an unsigned value is believed only because its hash is the name (udh-01 s. 4)
            raise CertificateError("cert_name_mismatch", f"an unsigned DH value cannot answer "
                                   f"to {name}: only to an NSID 8 name")
        try:
            udh = parse_udh(data)
        except ParseError as exc:
            raise CertificateError("cert_malformed", f"returned UDH value: {exc}") from None
        return validate_udh(udh, now, expected_name=name.mkid, policy=policy or Policy())
    raise CertificateError("cert_key_type", f"CERT-Type {cert_type} carries no DH certificate "
                           "this node uses")
