"""Trust anchors and CRLs from the files ``[identity]`` names, as a certificate validator.

Read at start and on every reload, so a new CRL takes effect with ``skipctl reload``. A file
that cannot be read or parsed is a configuration error: validating against a silently missing
CRL would accept revoked peers.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

from skip.daemon.config import Config
from skip.errors import CertificateError, ConfigError
from skip.files import read_bounded
from skip.pki.certificate import Certificate, load_certificates
from skip.pki.crl import Crl, load_crls
from skip.pki.validation import PeerKey, TrustStore, validate_certificate


def _load(path: Path, what: str, digest: hashlib._Hash, parse):  # type: ignore[no-untyped-def]
    try:
        data = read_bounded(path)
        digest.update(len(data).to_bytes(8, "big") + data)
        return parse(data)
    except OSError as exc:
        raise ConfigError("config_invalid", f"{path}: cannot read {what}: {exc.strerror}") \
            from None
    except CertificateError as exc:
        raise ConfigError("config_invalid", f"{path}: {what}: {exc}") from None


class TrustValidator:
    """Validates peer certificates against one reading of the anchors and CRLs.

    ``token`` is a digest of what was read (anchor and CRL bytes): two validators with the
    same token decide alike, so a verdict may be reused across reloads while it holds.
    ``until`` is when the verdicts stop holding whatever the certificates say: the earliest
    CRL next-update (after it, a CRL may list a serial it does not list now).
    """

    def __init__(self, anchors: list[Certificate], crls: list[Crl], token: bytes) -> None:
        try:
            self.store = TrustStore(anchors)
        except CertificateError as exc:
            raise ConfigError("config_invalid", f"identity.trust_anchors: {exc}") from None
        self.crls = crls
        self.token = token
        self.until = float(min((c.next_update for c in crls if c.next_update is not None),
                               default=math.inf))

    def __call__(self, cert: Certificate, now: float) -> PeerKey:
        return validate_certificate(cert, self.store, now, crls=self.crls)


def validator(config: Config) -> TrustValidator:
    digest = hashlib.sha256()
    anchors: list[Certificate] = []
    for path in config.identity.trust_anchors:
        anchors += _load(path, "trust anchor", digest, load_certificates)
    crls: list[Crl] = []
    for path in config.identity.crls:
        crls += _load(path, "CRL", digest, load_crls)
    return TrustValidator(anchors, crls, digest.digest())
