"""Certificates and keys from disk, matched to the rules of a configuration.

skipd's local certificate store is a directory of peer certificates. Each one is validated
(chain, time, signature, usage, revocation, DH value: :mod:`skip.pki`) and then assigned to
the ``[[peer]]`` rule whose SKIP name it answers to: the rule's NSID/MKID, or for NSID 0 the
address the rule sends to. A certificate that fails is reported with its reason and left out,
so one bad file costs one peer, not the daemon; a bad *own* key or certificate, on the other
hand, is a configuration error (nothing could work).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from skip.daemon.config import Config, PeerPolicy
from skip.errors import CertificateError, ConfigError, SkipError
from skip.files import read_bounded
from skip.pki.certificate import Certificate, load_certificate, load_certificates
from skip.pki.dhkey import DHPrivateKey, DHPublicKey, load_private_key
from skip.pki.names import address_name

#: ``validate(certificate, now)`` raises CertificateError when it must not be used.
Validator = Callable[[Certificate, float], None]
_CERT_SUFFIXES = {".pem", ".crt", ".cer", ".der"}
_MAX_STORE_FILES = 10_000


@dataclass(frozen=True)
class PeerKey:
    """A validated public value for one rule, and where it came from."""

    rule: str
    public: DHPublicKey
    source: str
    fingerprint: str


@dataclass
class Credentials:
    private: DHPrivateKey | None
    certificate: Certificate | None
    addresses: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]
    peers: dict[str, PeerKey] = field(default_factory=dict)
    refused: list[tuple[str, str, str]] = field(default_factory=list)  # (file, reason, text)


def _read(path: Path, what: str) -> bytes:
    try:
        return read_bounded(path)
    except OSError as exc:
        raise ConfigError("config_invalid", f"{path}: cannot read {what}: {exc.strerror}") \
            from None


def expected_names(rule: PeerPolicy) -> set[tuple[int, bytes]]:
    """The (NSID, MKID) pairs a certificate must answer to to serve ``rule``."""
    if rule.peer.nsid:
        return {(rule.peer.nsid, rule.peer.mkid)}
    addresses = [rule.tunnel] if rule.tunnel is not None else list(rule.hosts)
    return {(n.nsid, n.mkid) for n in map(address_name, addresses)}


def _answers(cert: Certificate, names: set[tuple[int, bytes]]) -> bool:
    return any((n.nsid, n.mkid) in names for n in cert.skip_names())


def load_credentials(config: Config, now: float, validate: Validator) -> Credentials:
    ident = config.identity
    private = certificate = None
    if ident.private_key is not None and ident.certificate is not None:
        try:
            private = load_private_key(_read(ident.private_key, "the private key"))
            certificate = load_certificate(_read(ident.certificate, "the certificate"))
        except CertificateError as exc:
            raise ConfigError("config_invalid", f"identity: {exc}") from None
        if certificate.dh_key is None or \
                certificate.dh_key.public_value != private.public.public_value:
            raise ConfigError("config_invalid", f"{ident.certificate}: does not certify the "
                              f"public value of {ident.private_key}")
        try:
            validate(certificate, now)
        except CertificateError as exc:
            raise ConfigError("config_invalid",
                              f"{ident.certificate}: our own certificate: {exc}") from None
    addresses = ident.addresses or (
        (*certificate.ip_attributes, *certificate.san_addresses) if certificate else ())
    creds = Credentials(private, certificate, tuple(dict.fromkeys(addresses)))
    wanted = [r for r in config.peers if r.action == "protect"]
    for rule in wanted:
        if rule.certificate is not None:
            _offer(creds, rule, [rule.certificate], now, validate, explicit=True)
    store = ident.peer_certificates
    if store is not None:
        if not store.is_dir():
            raise ConfigError("config_invalid", f"{store}: identity.peer_certificates is not "
                              "a directory")
        try:
            files = sorted(p for p in store.iterdir() if p.suffix.lower() in _CERT_SUFFIXES)
        except OSError as exc:
            raise ConfigError("config_invalid", f"{store}: cannot list "
                              f"identity.peer_certificates: {exc.strerror}") from None
        if len(files) > _MAX_STORE_FILES:
            raise ConfigError("config_invalid", f"{store}: more than {_MAX_STORE_FILES} files")
        for rule in wanted:
            if rule.name not in creds.peers:
                _offer(creds, rule, files, now, validate, explicit=False)
    return creds


def _offer(creds: Credentials, rule: PeerPolicy, files: list[Path], now: float,
           validate: Validator, *, explicit: bool) -> None:
    """Give ``rule`` the first valid certificate among ``files`` that answers to its name."""
    names = expected_names(rule)
    for path in files:
        try:
            certs = load_certificates(_read(path, "a certificate"))
        except SkipError as exc:
            creds.refused.append((str(path), exc.reason, str(exc)))
            continue
        for cert in certs:
            if cert.dh_key is None or not _answers(cert, names):
                if explicit:
                    creds.refused.append((str(path), "cert_name_mismatch",
                                          f"does not answer to the name of peer {rule.name}"))
                continue
            try:
                validate(cert, now)
            except CertificateError as exc:
                creds.refused.append((str(path), exc.reason, f"peer {rule.name}: {exc}"))
                continue
            creds.peers[rule.name] = PeerKey(rule.name, cert.dh_key, str(path),
                                             cert.fingerprint)
            return
