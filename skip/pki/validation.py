"""Deciding whether to believe a DH public value, at a given time.

Sans-I/O: every input (certificates, CRLs, trust anchors, ``now``) is a parameter; nothing
here reads files or the clock. The result, :class:`PeerKey`, is all the keying layer needs:
the group, the public value and the SKIP names the key answers to.

Checks, in the order a person would debug them:

1. the end entity carries a DH / X25519 / X448 key (``cert_key_type``) and may be used for key
   agreement (``cert_bad_usage``);
2. a chain to a trust anchor exists with good signatures (``cert_untrusted``,
   ``cert_bad_signature``); issuers are CAs (``cert_bad_usage``);
3. every certificate on the chain, anchor included, is valid at ``now`` (``cert_expired``,
   ``cert_not_yet_valid``) - as OpenSSL does;
4. no certificate on the chain is revoked by a CRL of its issuer that is itself valid and
   correctly signed (``cert_revoked``, ``cert_crl_invalid``, ``cert_crl_missing``);
5. the DH parameters are a well-known group or pass validation when policy allows custom
   groups, the modulus is large enough, and the public value is in range and in the
   subgroup (``bad_group``, ``bad_public_value``);
6. the key answers to the SKIP name asked for (``cert_name_mismatch``).
"""

from __future__ import annotations

import ipaddress
import itertools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from skip.crypto.dh import DHGroup, Rng, validate_parameters
from skip.errors import CertificateError, KeyingError
from skip.pki.certificate import Certificate, iso_time
from skip.pki.crl import Crl
from skip.pki.dhkey import DHPublicKey
from skip.pki.names import SkipName, address_name
from skip.pki.signing import verify_signature
from skip.pki.udh import UdhCertificate
from skip.wire.nsid import Nsid


@dataclass(frozen=True)
class Policy:
    """Knobs a site sets once. Defaults follow draft-06 (1024-bit minimum for peers) and
    refuse anything that needs an explicit decision (custom groups, MD5/SHA-1 signatures)."""

    min_modp_bits: int = 1024
    allow_custom_groups: bool = False
    require_crl: bool = False
    allow_legacy_signatures: bool = False
    max_chain_length: int = 8


@dataclass(frozen=True)
class PeerKey:
    """A believed public value: what :mod:`skip.keying` feeds to ``group.shared_secret``.

    ``not_after`` is the earliest expiry on the chain, so a cache of derived keys knows when
    to forget them.
    """

    group: DHGroup
    public_value: bytes
    names: tuple[SkipName, ...]
    not_after: int
    source: Certificate | UdhCertificate

    def answers_to(self, nsid: int, mkid: bytes) -> bool:
        return any(name.nsid == nsid and name.mkid == mkid for name in self.names)


class TrustStore:
    """The configured trust anchors, looked up by subject name."""

    def __init__(self, anchors: Iterable[Certificate]) -> None:
        self.anchors = tuple(anchors)
        self._by_subject: dict[bytes, list[Certificate]] = {}
        for anchor in self.anchors:
            if anchor.dh_key is not None:
                raise CertificateError("cert_key_type", "a trust anchor must hold a signing key")
            self._by_subject.setdefault(anchor.subject, []).append(anchor)

    def issuers_of(self, cert: Certificate) -> list[Certificate]:
        return self._by_subject.get(cert.issuer, [])

    def __contains__(self, cert: Certificate) -> bool:
        return any(anchor.der == cert.der for anchor in self.anchors)


def validate_certificate(
    cert: Certificate,
    trust: TrustStore,
    now: float,
    *,
    intermediates: Sequence[Certificate] = (),
    crls: Sequence[Crl] = (),
    policy: Policy = Policy(),
    name: tuple[int, bytes] | None = None,
    rng: Rng = os.urandom,
) -> PeerKey:
    """Validate an X.509 DH certificate at ``now``; see the module docstring for the checks.

    ``name`` is the (NSID, MKID) the key must answer to (NSID 0 takes the packet's address as
    MKID). ``rng`` feeds the primality tests of custom groups.
    """
    key = _end_entity_key(cert)
    chain = _build_chain(cert, trust, intermediates, policy)
    for link in chain:
        check_time(link, now)
    _check_revocation(chain, crls, now, policy)
    group = check_dh_key(key, policy, rng)
    names = cert.skip_names()
    peer = PeerKey(group, key.public_value, names, min(c.not_after for c in chain), cert)
    if name is not None:
        require_name(peer, *name)
    return peer


def validate_unanchored(cert: Certificate, now: float, *, policy: Policy = Policy(),
                        rng: Rng = os.urandom) -> PeerKey:
    """DANGEROUS unless something else vouches for ``cert``: every check of
    :func:`validate_certificate` on the certificate itself (a DH key for key agreement,
    validity at ``now``, the DH value) but no chain to an anchor and no CRL.

    For a certificate a DNSSEC-secure answer gave for the name asked (skipd's ``dns_trust =
    "dnssec"``): the signed zone is then what binds the key to the name, as a DANE-EE record
    does; the signature on the certificate is not looked at.
    """
    key = _end_entity_key(cert)
    check_time(cert, now)
    group = check_dh_key(key, policy, rng)
    return PeerKey(group, key.public_value, cert.skip_names(), cert.not_after, cert)


def validate_udh(
    udh: UdhCertificate,
    now: float,
    *,
    expected_name: bytes,
    policy: Policy = Policy(),
    rng: Rng = os.urandom,
) -> PeerKey:
    """Validate a UDH value against the NSID 8 name it was looked up by (skip-udh-01 section
    3: the MD5 of the encoding must equal the securely known name)."""
    if udh.name.mkid != expected_name:
        raise CertificateError(
            "cert_name_mismatch", f"UDH hashes to {udh.fingerprint}, not {expected_name.hex()}"
        )
    check_time(udh, now)
    group = check_dh_key(udh.dh_key, policy, rng)
    return PeerKey(group, udh.dh_key.public_value, udh.skip_names(), udh.not_after, udh)


def require_name(peer: PeerKey, nsid: int, mkid: bytes) -> None:
    """Refuse a key that does not answer to (nsid, mkid); NSID 0 means "this IP address"."""
    if nsid == Nsid.NONE:
        if len(mkid) not in (4, 16):
            raise CertificateError("cert_name_mismatch", "NSID 0 needs a 4 or 16 byte address")
        as_address = address_name(ipaddress.ip_address(mkid))
        nsid, mkid = as_address.nsid, as_address.mkid
    if not peer.answers_to(nsid, mkid):
        raise CertificateError(
            "cert_name_mismatch", f"the key does not answer to NSID {nsid} MKID {mkid.hex()}"
        )


def check_time(cert: Certificate | UdhCertificate, now: float) -> None:
    what = cert.subject_text if isinstance(cert, Certificate) else "the UDH value"
    if now < cert.not_before:
        raise CertificateError(
            "cert_not_yet_valid",
            f"{what} is not valid before {iso_time(cert.not_before)} (now {iso_time(now)})",
        )
    if now > cert.not_after:
        raise CertificateError(
            "cert_expired", f"{what} expired at {iso_time(cert.not_after)} (now {iso_time(now)})"
        )


def check_dh_key(key: DHPublicKey, policy: Policy = Policy(), rng: Rng = os.urandom) -> DHGroup:
    """The group to compute with, after the parameter and public-value checks."""
    group = key.group
    try:
        if not key.well_known:
            if not policy.allow_custom_groups:
                raise CertificateError(
                    "bad_group", "DH parameters are not a well-known group (policy refuses others)"
                )
            group = validate_parameters(group.p, group.g, group.q, rng=rng)
        if group.kind == "modp" and group.bits < policy.min_modp_bits:
            raise CertificateError(
                "bad_group",
                f"{group.bits}-bit modulus is below the {policy.min_modp_bits}-bit minimum",
            )
        group.validate_public(key.public_value)
    except KeyingError as exc:
        raise CertificateError(exc.reason, exc.detail) from exc
    return group


# --- chain ------------------------------------------------------------------------------------


def _end_entity_key(cert: Certificate) -> DHPublicKey:
    if cert.dh_key is None:
        raise CertificateError("cert_key_type", "the certificate does not hold a DH public value")
    if cert.key_usage is not None and "key_agreement" not in cert.key_usage:
        raise CertificateError("cert_bad_usage", "key usage does not include keyAgreement")
    if cert.unknown_critical:
        raise CertificateError(
            "cert_bad_usage", f"unknown critical extension {cert.unknown_critical[0]}"
        )
    return cert.dh_key


def _build_chain(
    leaf: Certificate, trust: TrustStore, intermediates: Sequence[Certificate], policy: Policy
) -> list[Certificate]:
    """leaf, its issuers ..., a trust anchor - each signature checked on the way up."""
    chain = [leaf]
    current = leaf
    pool = [c for c in intermediates if c.dh_key is None]
    last_error: CertificateError | None = None
    while len(chain) <= policy.max_chain_length:
        last_error = None
        candidates = trust.issuers_of(current) + [c for c in pool if c.subject == current.issuer]
        if current.authority_key_id:  # try the key-id match first during CA key rollover
            candidates.sort(key=lambda c: c.subject_key_id != current.authority_key_id)
        for issuer in candidates:
            if issuer in chain:
                continue
            try:
                verify_signature(
                    issuer.spki,
                    current.signature_algorithm,
                    current.tbs,
                    current.signature,
                    allow_legacy=policy.allow_legacy_signatures,
                )
            except CertificateError as exc:
                last_error = exc
                continue
            _check_issuer(issuer, len(chain) - 1)
            chain.append(issuer)
            if issuer in trust:
                return chain
            current = issuer
            break
        else:
            if last_error is not None:
                raise last_error
            raise CertificateError(
                "cert_untrusted", f"no trusted issuer found for {current.issuer_text}"
            )
    raise CertificateError("cert_untrusted", "certificate chain too long")


def _check_issuer(issuer: Certificate, below: int) -> None:
    """An issuer must be a CA allowed to sign certificates; ``below`` counts the
    intermediate CAs between it and the end entity (for pathLenConstraint)."""
    if issuer.version >= 3:
        if not issuer.is_ca:
            raise CertificateError("cert_bad_usage", f"{issuer.subject_text} is not a CA")
        if issuer.key_usage is not None and "key_cert_sign" not in issuer.key_usage:
            raise CertificateError(
                "cert_bad_usage", f"{issuer.subject_text} may not sign certificates"
            )
        if issuer.path_length is not None and below > issuer.path_length:
            raise CertificateError(
                "cert_bad_usage", f"path length of {issuer.subject_text} exceeded"
            )
        if issuer.unknown_critical:
            raise CertificateError(
                "cert_bad_usage", f"unknown critical extension in {issuer.subject_text}"
            )
    elif not issuer.self_issued:
        raise CertificateError("cert_bad_usage", "a v1 certificate can only be a root CA")


def _check_revocation(
    chain: list[Certificate], crls: Sequence[Crl], now: float, policy: Policy
) -> None:
    for cert, issuer in itertools.pairwise(chain):
        relevant = [c for c in crls if c.issuer == issuer.subject]
        good = []
        for item in relevant:
            try:
                verify_signature(
                    issuer.spki,
                    item.signature_algorithm,
                    item.tbs,
                    item.signature,
                    allow_legacy=policy.allow_legacy_signatures,
                )
            except CertificateError as exc:  # the CRL is bad, not the certificate
                raise CertificateError(
                    "cert_crl_invalid",
                    f"the CRL naming {issuer.subject_text} as issuer does not verify with "
                    f"that issuer's key: {exc.detail}",
                ) from exc
            if issuer.key_usage is not None and "crl_sign" not in issuer.key_usage:
                raise CertificateError(
                    "cert_crl_invalid", f"{issuer.subject_text} may not sign CRLs"
                )
            if now < item.this_update or (item.next_update is not None and now > item.next_update):
                until = iso_time(item.next_update) if item.next_update is not None else "-"
                raise CertificateError(
                    "cert_crl_invalid",
                    f"the CRL of {issuer.subject_text} is not current (this update "
                    f"{iso_time(item.this_update)}, next update {until}, now {iso_time(now)})",
                )
            good.append(item)
        if not good and policy.require_crl:
            raise CertificateError("cert_crl_missing", f"no CRL from {issuer.subject_text}")
        for item in good:
            entry = item.revoked.get(cert.serial)
            if entry is not None and entry.revoked_at <= now:
                raise CertificateError(
                    "cert_revoked",
                    f"serial {cert.serial:x} revoked at {iso_time(entry.revoked_at)}"
                    + (f" ({entry.reason})" if entry.reason else ""),
                )
