"""Certificates and keys from disk, matched to the rules of a configuration.

skipd's local certificate store is a directory of peer certificates
(:class:`~skip.daemon.cert_store.CertificateStore`: read once per file version, indexed by
SKIP name). Each one is validated (chain, time, signature, usage, revocation, DH value:
:mod:`skip.pki`) and then assigned to the ``[[peer]]`` rule whose SKIP name it answers to: the
rule's NSID/MKID, or for NSID 0 the address the rule sends to. A certificate that fails is
reported with its reason and left out, so one bad file costs one peer, not the daemon; a bad
*own* key or certificate, on the other hand, is a configuration error (nothing could work).
"""

from __future__ import annotations

import ipaddress
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from skip.daemon.cert_store import CertificateStore, Name, Validator
from skip.daemon.config import Config, PeerPolicy
from skip.errors import CertificateError, ConfigError
from skip.files import read_bounded
from skip.pki.certificate import Certificate, load_certificate
from skip.pki.dhkey import DHPrivateKey, load_private_key
from skip.pki.names import address_name
from skip.pki.validation import PeerKey


@dataclass(frozen=True)
class Assigned:
    """The validated key of the certificate that serves one rule, and which file it is."""

    key: PeerKey
    file: str
    fingerprint: str


@dataclass
class Credentials:
    private: DHPrivateKey | None
    certificate: Certificate | None
    addresses: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]
    peers: dict[str, Assigned] = field(default_factory=dict)  # by rule name
    refused: list[tuple[str, str, str]] = field(default_factory=list)  # (file, reason, text)


def _read(path: Path, what: str) -> bytes:
    try:
        return read_bounded(path)
    except OSError as exc:
        raise ConfigError("config_invalid", f"{path}: cannot read {what}: {exc.strerror}") \
            from None


def _check_private(path: Path, allowed: bool) -> None:
    """Refuse a private key file that group or others may read, as ssh does: whoever can
    read it can read every packet this host ever exchanged (SKIP without PFS), and an
    operator who copied it with the wrong mode should learn it at start, not from an
    incident. ``identity.allow_readable_key`` is the way out (a key on a read-only medium)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # _read says why it cannot be read
    if mode & 0o077 and not allowed and stat.S_ISREG(mode):
        raise ConfigError("config_invalid", f"{path}: the private key is readable by group or "
                          f"others (mode {stat.S_IMODE(mode):04o}); run chmod 600 {path}, or "
                          "set identity.allow_readable_key = true")


def expected_names(rule: PeerPolicy) -> set[Name]:
    """The (NSID, MKID) pairs a certificate must answer to to serve ``rule``."""
    if rule.peer.nsid:
        return {(rule.peer.nsid, rule.peer.mkid)}
    addresses = [rule.tunnel] if rule.tunnel is not None else list(rule.hosts)
    return {(n.nsid, n.mkid) for n in map(address_name, addresses)}


def load_credentials(config: Config, now: float, validate: Validator,
                     store: CertificateStore | None = None) -> Credentials:
    """Our key and certificate, and a validated certificate per protecting rule that has one.

    ``store``: the certificate store of the previous load, so that a reload reads only what
    changed (None: a fresh one)."""
    ident = config.identity
    private = certificate = None
    if ident.private_key is not None and ident.certificate is not None:
        _check_private(ident.private_key, ident.allow_readable_key)
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
    store = store or CertificateStore()
    for rule in wanted:
        if rule.certificate is not None:
            entry = store.load(rule.certificate)
            if entry.error is not None:
                creds.refused.append((str(rule.certificate), *entry.error))
            _offer(creds, rule, [(rule.certificate, c) for c in entry.certs], now, validate,
                   store, explicit=True)
    directory = ident.peer_certificates
    if directory is not None:
        creds.refused += store.refresh(directory)
        for rule in wanted:
            if rule.name not in creds.peers:
                _offer(creds, rule, store.candidates(expected_names(rule)), now, validate,
                       store, explicit=False)
    return creds


def _offer(creds: Credentials, rule: PeerPolicy, certs: list[tuple[Path, Certificate]],
           now: float, validate: Validator, store: CertificateStore, *, explicit: bool
           ) -> None:
    """Give ``rule`` the first valid certificate among ``certs`` that answers to its name."""
    names = expected_names(rule)
    for path, cert in certs:
        try:  # the store's candidates answer by construction; an explicit file may not
            answers = not explicit or any((n.nsid, n.mkid) in names for n in cert.skip_names())
        except CertificateError as exc:
            creds.refused.append((str(path), exc.reason, f"peer {rule.name}: {exc}"))
            continue
        if cert.dh_key is None or not answers:
            if explicit:
                creds.refused.append((str(path), "cert_name_mismatch",
                                      f"does not answer to the name of peer {rule.name}"))
            continue
        try:
            key = store.validate(cert, now, validate)
        except CertificateError as exc:
            creds.refused.append((str(path), exc.reason, f"peer {rule.name}: {exc}"))
            continue
        creds.peers[rule.name] = Assigned(key, str(path), cert.fingerprint)
        return
