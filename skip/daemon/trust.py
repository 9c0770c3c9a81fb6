"""Trust anchors and CRLs from the files ``[identity]`` names, as a certificate validator.

Read at start and on every reload, so a new CRL takes effect with ``skipctl reload``. A file
that cannot be read or parsed is a configuration error: validating against a silently missing
CRL would accept revoked peers.
"""

from __future__ import annotations

from pathlib import Path

from skip.daemon.config import Config
from skip.daemon.credentials import Validator
from skip.errors import CertificateError, ConfigError
from skip.files import read_bounded
from skip.pki.certificate import Certificate, load_certificates
from skip.pki.crl import Crl, load_crls
from skip.pki.validation import TrustStore, validate_certificate


def _load(path: Path, what: str, parse):  # type: ignore[no-untyped-def]
    try:
        return parse(read_bounded(path))
    except OSError as exc:
        raise ConfigError("config_invalid", f"{path}: cannot read {what}: {exc.strerror}") \
            from None
    except CertificateError as exc:
        raise ConfigError("config_invalid", f"{path}: {what}: {exc}") from None


def validator(config: Config) -> Validator:
    anchors: list[Certificate] = []
    for path in config.identity.trust_anchors:
        anchors += _load(path, "trust anchor", load_certificates)
    crls: list[Crl] = []
    for path in config.identity.crls:
        crls += _load(path, "CRL", load_crls)
    try:
        store = TrustStore(anchors)
    except CertificateError as exc:
        raise ConfigError("config_invalid", f"identity.trust_anchors: {exc}") from None

    def validate(cert: Certificate, now: float) -> None:
        validate_certificate(cert, store, now, crls=crls)

    return validate
