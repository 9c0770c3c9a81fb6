"""X.509 certificates for SKIP: a parsed, read-only view and the issuing function.

``cryptography`` refuses to build certificates around finite-field DH keys, so the
TBSCertificate is assembled with asn1crypto here and only the signature is computed by
``cryptography`` (:mod:`skip.pki.signing`). Two profiles:

- ``draft``: exactly draft-ietf-ipsec-skip-x509-00 - X.509 v1 (no version field, no
  extensions), PKCS #3 ``dhKeyAgreement`` key, addresses as Sun ``ipAddress`` RDNs;
- ``v3``: RFC 5280 - X.509 v3, X9.42 ``dhpublicnumber`` key (PKCS #3 for skip-2048, RFC 8410
  for X25519/X448), keyUsage keyAgreement, subjectAltName with the addresses, DNS names and
  mailboxes, subject and authority key identifiers. Addresses are also kept as ipAddress
  RDNs so that SKIP implementations of the draft era still find them.

CA certificates are always v3 (basicConstraints cA, keyUsage keyCertSign + cRLSign).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
from dataclasses import dataclass, field
from typing import Literal

from asn1crypto import core, keys, x509

from skip.crypto.dh import Rng
from skip.errors import CertificateError, ConfigError
from skip.pki.asn1 import (
    OID_DH_KEY_AGREEMENT,
    OID_DH_PUBLIC_NUMBER,
    SubjectPublicKeyInfo,
    parsing,
)
from skip.pki.dhkey import ECX_OIDS, DHPublicKey, decode_spki, encode_spki, spki_algorithm
from skip.pki.names import (
    IPAddress,
    SkipName,
    address_name,
    build_name,
    dn_name,
    dns_name,
    format_name,
    ia5_text,
    looks_like_hostname,
    mailbox_name,
    name_attributes,
    parse_ip_attribute,
)
from skip.pki.pemfile import pem_blocks, pem_encode, read_pem_or_der
from skip.pki.signing import Signer

Profile = Literal["draft", "v3"]
_DH_OIDS = {OID_DH_KEY_AGREEMENT, OID_DH_PUBLIC_NUMBER, *ECX_OIDS}
_UTC = dt.UTC
_UTCTIME_YEARS = range(1950, 2050)  # RFC 5280 4.1.2.5; other years only as GeneralizedTime


@dataclass(frozen=True)
class Certificate:
    """What skip needs from one X.509 certificate, decoded once.

    Times are POSIX seconds. ``dh_key`` is set for key-agreement certificates (the SKIP
    end-entity kind) and None for signature keys (CAs).
    """

    der: bytes
    version: int
    serial: int
    issuer: bytes
    subject: bytes
    issuer_text: str
    subject_text: str
    not_before: int
    not_after: int
    spki: bytes
    dh_key: DHPublicKey | None
    tbs: bytes
    signature_algorithm: core.Asn1Value = field(repr=False, compare=False)
    signature: bytes = field(repr=False)
    key_usage: frozenset[str] | None = None
    is_ca: bool | None = None  # None: no basicConstraints extension
    path_length: int | None = None
    subject_key_id: bytes | None = None
    authority_key_id: bytes | None = None
    ip_attributes: tuple[IPAddress, ...] = ()
    san_addresses: tuple[IPAddress, ...] = ()
    san_dns: tuple[str, ...] = ()
    san_email: tuple[str, ...] = ()
    subject_emails: tuple[str, ...] = ()
    common_names: tuple[str, ...] = ()
    unknown_critical: tuple[str, ...] = ()

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.der).hexdigest()

    @property
    def self_issued(self) -> bool:
        return self.issuer == self.subject

    def skip_names(self) -> tuple[SkipName, ...]:
        """Every (NSID, MKID) this certificate answers to (see :mod:`skip.pki.names`).

        Never raises: skipd asks before validating, to find which peer a file is for. A DNS
        name or mailbox that is not ASCII (bytes IA5String forbids) has no MKID and is left
        out, so the certificate answers to fewer names, never to a guessed one.
        """
        names: list[SkipName] = []
        for address in dict.fromkeys((*self.ip_attributes, *self.san_addresses)):
            names.append(address_name(address))
        dns = list(self.san_dns)
        if self.version == 1:
            dns += [cn for cn in self.common_names if looks_like_hostname(cn)]
        names += [dns_name(d) for d in dict.fromkeys(dns) if d.isascii()]
        names.append(dn_name(self.subject, self.subject_text))
        mailboxes = dict.fromkeys((*self.san_email, *self.subject_emails))
        names += [mailbox_name(m) for m in mailboxes if m.isascii()]
        return tuple(dict.fromkeys(names))

    def pem(self) -> bytes:
        return pem_encode("CERTIFICATE", self.der)


# --- parsing -----------------------------------------------------------------------------------


def load_certificates(data: bytes) -> list[Certificate]:
    """Every certificate in a PEM bundle, or the one DER certificate that ``data`` is."""
    blocks = pem_blocks(data) if b"-----BEGIN " in data[:4096] else [("CERTIFICATE", data)]
    certs = [parse_certificate(der) for label, der in blocks if label == "CERTIFICATE"]
    if not certs:
        raise CertificateError("cert_malformed", "no certificate found")
    return certs


def load_certificate(data: bytes) -> Certificate:
    _, der = read_pem_or_der(data, ("CERTIFICATE",))
    return parse_certificate(der)


def parse_certificate(der: bytes) -> Certificate:
    """Decode one DER certificate. Raises CertificateError (cert_malformed and friends)."""
    return parsing("certificate", lambda: _parse(der))


def _parse(der: bytes) -> Certificate:
    cert = x509.Certificate.load(der, strict=True)
    tbs = cert["tbs_certificate"]
    version = {"v1": 1, "v2": 2, "v3": 3}[tbs["version"].native]
    if cert["signature_algorithm"].dump() != tbs["signature"].dump():
        raise CertificateError("cert_malformed", "outer and inner signature algorithms differ")
    spki = tbs["subject_public_key_info"].dump()
    SubjectPublicKeyInfo.load(spki, strict=True)
    dh_key = decode_spki(spki) if spki_algorithm(spki) in _DH_OIDS else None
    subject, issuer = tbs["subject"], tbs["issuer"]
    attributes = name_attributes(subject)
    ext = _Extensions.read(tbs, version)
    return Certificate(
        der=der,
        version=version,
        serial=tbs["serial_number"].native,
        issuer=issuer.dump(),
        subject=subject.dump(),
        issuer_text=format_name(issuer),
        subject_text=format_name(subject),
        not_before=int(tbs["validity"]["not_before"].native.timestamp()),
        not_after=int(tbs["validity"]["not_after"].native.timestamp()),
        spki=spki,
        dh_key=dh_key,
        tbs=tbs.dump(),
        signature_algorithm=cert["signature_algorithm"],
        signature=bytes(cert["signature_value"].native),
        key_usage=ext.key_usage,
        is_ca=ext.is_ca,
        path_length=ext.path_length,
        subject_key_id=ext.subject_key_id,
        authority_key_id=ext.authority_key_id,
        ip_attributes=tuple(
            parse_ip_attribute(value) for key, value in attributes if key == "ipAddress"
        ),
        san_addresses=ext.san_addresses,
        san_dns=ext.san_dns,
        san_email=ext.san_email,
        subject_emails=tuple(value for key, value in attributes if key == "emailAddress"),
        common_names=tuple(value for key, value in attributes if key == "CN"),
        unknown_critical=ext.unknown_critical,
    )


_KNOWN_EXTENSIONS = {
    "key_usage",
    "basic_constraints",
    "subject_alt_name",
    "key_identifier",
    "authority_key_identifier",
    "extended_key_usage",
}


@dataclass
class _Extensions:
    key_usage: frozenset[str] | None = None
    is_ca: bool | None = None
    path_length: int | None = None
    subject_key_id: bytes | None = None
    authority_key_id: bytes | None = None
    san_addresses: tuple[IPAddress, ...] = ()
    san_dns: tuple[str, ...] = ()
    san_email: tuple[str, ...] = ()
    unknown_critical: tuple[str, ...] = ()

    @classmethod
    def read(cls, tbs: x509.TbsCertificate, version: int) -> _Extensions:
        out = cls()
        if version < 3:
            if tbs["extensions"].native:
                raise CertificateError("cert_malformed", f"a v{version} certificate has extensions")
            return out
        seen: set[str] = set()
        unknown = []
        for ext in tbs["extensions"]:
            name = ext["extn_id"].native
            if name in seen:
                raise CertificateError("cert_malformed", f"extension {name} appears twice")
            seen.add(name)
            value = ext["extn_value"].parsed
            if name == "key_usage":
                out.key_usage = frozenset(value.native)
            elif name == "basic_constraints":
                out.is_ca = bool(value["ca"].native)
                out.path_length = value["path_len_constraint"].native
            elif name == "key_identifier":
                out.subject_key_id = bytes(value.native)
            elif name == "authority_key_identifier":
                key_id = value["key_identifier"].native
                out.authority_key_id = bytes(key_id) if key_id is not None else None
            elif name == "subject_alt_name":
                for general in value:
                    kind = general.name
                    if kind == "ip_address":
                        raw = bytes(general.chosen.contents)
                        if len(raw) not in (4, 16):
                            raise CertificateError("cert_malformed", "SAN iPAddress length")
                        out.san_addresses += (ipaddress.ip_address(raw),)
                    elif kind == "dns_name":
                        out.san_dns += (ia5_text(general.chosen),)
                    elif kind == "rfc822_name":
                        out.san_email += (ia5_text(general.chosen),)
            elif name not in _KNOWN_EXTENSIONS and ext["critical"].native:
                unknown.append(ext["extn_id"].dotted)
        out.unknown_critical = tuple(unknown)
        return out


# --- issuing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    """Who a certificate is for: name attributes plus the names SKIP will look it up by."""

    attributes: list[tuple[str, str]]
    addresses: tuple[IPAddress, ...] = ()
    dns_names: tuple[str, ...] = ()
    mailboxes: tuple[str, ...] = ()


def random_serial(rng: Rng = os.urandom) -> int:
    """A positive 127-bit serial (RFC 5280: at most 20 octets; unpredictable is better)."""
    return (int.from_bytes(rng(16)) >> 1) or 1


def iso_time(when: float) -> str:
    """``when`` (POSIX seconds) as ISO 8601 UTC to the second, e.g. ``2027-01-15T08:00:00Z``:
    the one form every message and listing of skip shows a time in."""
    return dt.datetime.fromtimestamp(int(when), _UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def time_value(when: int) -> x509.Time:
    moment = dt.datetime.fromtimestamp(when, _UTC)
    kind = "utc_time" if moment.year in _UTCTIME_YEARS else "general_time"
    return x509.Time(name=kind, value=moment)


def _key_id(spki_der: bytes) -> bytes:
    """RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING contents."""
    bits = SubjectPublicKeyInfo.load(spki_der)["public_key"].native
    return hashlib.sha1(bytes(bits), usedforsecurity=False).digest()


def _extension(name: str, value: object, critical: bool = False) -> dict[str, object]:
    return {"extn_id": name, "critical": critical, "extn_value": value}


def _general_names(subject: Subject) -> list[x509.GeneralName]:
    """The SAN entries; dNSName and rfc822Name are IA5String, so ASCII only (an
    internationalised name as its xn-- A-label), refused as ``config_invalid`` otherwise."""
    for text in (*subject.dns_names, *subject.mailboxes):
        if not text.isascii():
            raise ConfigError("config_invalid", f"{text!r} is not ASCII (give a domain as xn--)")
    names = [x509.GeneralName(name="ip_address", value=str(a)) for a in subject.addresses]
    try:
        names += [x509.GeneralName(name="dns_name", value=d) for d in subject.dns_names]
        names += [x509.GeneralName(name="rfc822_name", value=m) for m in subject.mailboxes]
    except (ValueError, UnicodeError) as exc:  # asn1crypto's IDNA step: empty or long labels
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError("config_invalid", f"a subjectAltName cannot be encoded: {why}") \
            from None
    return names


def issue(
    *,
    signer: Signer,
    issuer: Certificate | None,
    subject: Subject,
    not_before: int,
    not_after: int,
    dh_key: DHPublicKey | None = None,
    profile: Profile = "v3",
    ca: bool = False,
    path_length: int | None = None,
    ca_public_key: bytes | None = None,
    serial: int | None = None,
    rng: Rng = os.urandom,
) -> Certificate:
    """Build, sign and return a certificate.

    ``signer`` is always the issuer's key. ``issuer`` None means self-signed: a root CA
    (``ca=True``) certifying ``signer``'s own key. With an issuer, the certificate is either a
    DH end-entity one certifying ``dh_key`` or, with ``ca=True``, an intermediate CA
    certifying the SubjectPublicKeyInfo DER ``ca_public_key``.
    """
    if not_after <= not_before:
        raise CertificateError("cert_expired", "not-after must be later than not-before")
    if ca and dh_key is not None:
        raise CertificateError("cert_key_type", "a CA certificate certifies a signing key")
    if ca and profile != "v3":
        raise CertificateError("cert_bad_usage", "CA certificates are always X.509 v3")
    if dh_key is None and not ca:
        raise CertificateError("cert_key_type", "an end-entity SKIP certificate needs a DH key")
    if profile == "draft" and (dh_key is None or dh_key.group.kind != "modp"):
        raise CertificateError("cert_key_type", "the draft profile certifies MODP keys only")

    name = build_name(subject.attributes, list(subject.addresses))
    if not name.chosen:
        raise CertificateError("cert_malformed", "the subject name is empty")
    if ca and (ca_public_key is None) != (issuer is None):
        raise CertificateError("cert_key_type", "an intermediate CA needs ca_public_key")
    if dh_key is None:
        spki = ca_public_key or signer.public_spki()
    else:
        spki = encode_spki(dh_key, "pkcs3" if profile == "draft" else None)
    issuer_name = name if issuer is None else x509.Name.load(issuer.subject)
    tbs: dict[str, object] = {
        "version": "v1" if profile == "draft" else "v3",
        "serial_number": serial if serial is not None else random_serial(rng),
        "signature": signer.algorithm(),
        "issuer": issuer_name,
        "validity": {"not_before": time_value(not_before), "not_after": time_value(not_after)},
        "subject": name,
        "subject_public_key_info": keys.PublicKeyInfo.load(spki),
    }
    if profile == "v3":
        extensions = []
        if ca:
            constraints: dict[str, object] = {"ca": True}
            if path_length is not None:
                constraints["path_len_constraint"] = path_length
            extensions.append(_extension("basic_constraints", constraints, critical=True))
            extensions.append(_extension("key_usage", {"key_cert_sign", "crl_sign"}, critical=True))
        else:
            extensions.append(_extension("basic_constraints", {"ca": False}, critical=True))
            extensions.append(_extension("key_usage", {"key_agreement"}, critical=True))
            general = _general_names(subject)
            if general:
                extensions.append(_extension("subject_alt_name", general))
        extensions.append(_extension("key_identifier", _key_id(spki)))
        issuer_key_id = _key_id(signer.public_spki())
        if issuer is not None and issuer.subject_key_id:
            issuer_key_id = issuer.subject_key_id
        extensions.append(_extension("authority_key_identifier", {"key_identifier": issuer_key_id}))
        tbs["extensions"] = extensions
    tbs_cert = x509.TbsCertificate(tbs)
    tbs_der = tbs_cert.dump()
    cert = x509.Certificate(
        {
            "tbs_certificate": tbs_cert,
            "signature_algorithm": signer.algorithm(),
            "signature_value": signer.sign(tbs_der),
        }
    )
    return parse_certificate(cert.dump())
