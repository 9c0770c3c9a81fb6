"""Certificate revocation lists (RFC 5280 section 5; the drafts say "as in RFC 1422").

Built with asn1crypto and signed by :class:`skip.pki.signing.Signer` like certificates, so one
code path signs everything a SKIP CA emits. Parsing returns the issuer, the update times and
the revoked serials; checking the signature is the validator's job because it needs the
issuer's certificate.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from asn1crypto import core, crl, x509

from skip.errors import CertificateError
from skip.pki.asn1 import parsing
from skip.pki.certificate import Certificate, time_value
from skip.pki.names import format_name
from skip.pki.pemfile import is_pem, pem_blocks, pem_encode
from skip.pki.signing import Signer

REASONS = tuple(crl.CRLReason._map.values())


@dataclass(frozen=True, order=True)
class Revocation:
    serial: int
    revoked_at: int
    reason: str | None = None


@dataclass(frozen=True)
class Crl:
    der: bytes
    issuer: bytes
    issuer_text: str
    this_update: int
    next_update: int | None
    number: int | None
    revoked: dict[int, Revocation]
    tbs: bytes
    signature_algorithm: core.Asn1Value = field(repr=False, compare=False)
    signature: bytes = field(repr=False)

    def pem(self) -> bytes:
        return pem_encode("X509 CRL", self.der)


def issue_crl(
    *,
    signer: Signer,
    issuer: Certificate,
    revoked: Iterable[Revocation],
    this_update: int,
    next_update: int,
    number: int,
) -> Crl:
    """A v2 CRL with a CRL number and the issuer's key identifier (RFC 5280 5.2.1, 5.2.3)."""
    if next_update <= this_update:
        raise CertificateError("cert_crl_invalid", "next update must be after this update")
    entries = []
    for item in sorted(revoked):
        entry: dict[str, object] = {
            "user_certificate": item.serial,
            "revocation_date": time_value(item.revoked_at),
        }
        if item.reason:
            entry["crl_entry_extensions"] = [
                {"extn_id": "crl_reason", "critical": False, "extn_value": item.reason}
            ]
        entries.append(entry)
    extensions: list[dict[str, object]] = [
        {"extn_id": "crl_number", "critical": False, "extn_value": number}
    ]
    if issuer.subject_key_id:
        extensions.append(
            {
                "extn_id": "authority_key_identifier",
                "critical": False,
                "extn_value": {"key_identifier": issuer.subject_key_id},
            }
        )
    tbs_fields: dict[str, object] = {
        "version": "v2",
        "signature": signer.algorithm(),
        "issuer": x509.Name.load(issuer.subject),
        "this_update": time_value(this_update),
        "next_update": time_value(next_update),
        "crl_extensions": extensions,
    }
    if entries:  # an empty revokedCertificates SEQUENCE must be omitted (RFC 5280 5.1.2.6)
        tbs_fields["revoked_certificates"] = entries
    tbs = crl.TbsCertList(tbs_fields)
    signed = crl.CertificateList(
        {
            "tbs_cert_list": tbs,
            "signature_algorithm": signer.algorithm(),
            "signature": signer.sign(tbs.dump()),
        }
    )
    return parse_crl(signed.dump())


def load_crls(data: bytes) -> list[Crl]:
    """Every CRL in a PEM bundle, or the one DER CRL ``data`` is."""
    if not is_pem(data):
        return [parse_crl(data)]
    crls = [parse_crl(der) for label, der in pem_blocks(data) if label == "X509 CRL"]
    if not crls:
        raise CertificateError("cert_malformed", "no X509 CRL block found")
    return crls


def parse_crl(der: bytes) -> Crl:
    return parsing("CRL", lambda: _parse(der))


def _stamp(value: dt.datetime) -> int:
    return int(value.timestamp())


def _parse(der: bytes) -> Crl:
    cert_list = crl.CertificateList.load(der, strict=True)
    tbs = cert_list["tbs_cert_list"]
    if cert_list["signature_algorithm"].dump() != tbs["signature"].dump():
        raise CertificateError("cert_malformed", "outer and inner CRL signature algorithms differ")
    revoked: dict[int, Revocation] = {}
    for entry in tbs["revoked_certificates"]:
        reason = None
        for ext in entry["crl_entry_extensions"]:
            if ext["extn_id"].native == "crl_reason":
                reason = ext["extn_value"].parsed.native
            elif ext["critical"].native:
                raise CertificateError("cert_crl_invalid", "unknown critical CRL entry extension")
        serial = entry["user_certificate"].native
        revoked[serial] = Revocation(serial, _stamp(entry["revocation_date"].native), reason)
    number = None
    for ext in tbs["crl_extensions"]:
        name = ext["extn_id"].native
        if name == "crl_number":
            number = ext["extn_value"].parsed.native
        elif name != "authority_key_identifier" and ext["critical"].native:
            raise CertificateError("cert_crl_invalid", f"unsupported critical CRL extension {name}")
    next_update = tbs["next_update"].native
    return Crl(
        der=der,
        issuer=tbs["issuer"].dump(),
        issuer_text=format_name(tbs["issuer"]),
        this_update=_stamp(tbs["this_update"].native),
        next_update=_stamp(next_update) if next_update is not None else None,
        number=number,
        revoked=revoked,
        tbs=tbs.dump(),
        signature_algorithm=cert_list["signature_algorithm"],
        signature=bytes(cert_list["signature"].native),
    )
