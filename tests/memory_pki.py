"""A CA and leaf certificates made in memory, for tests and benchmarks that need many
certificates fast (no skip-cert process per certificate)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from skip.crypto.dh import GROUPS
from skip.pki.certificate import Certificate, Subject, issue
from skip.pki.crl import issue_crl
from skip.pki.dhkey import DHPrivateKey, dump_private_key, generate_key
from skip.pki.signing import generate_signer


class Pki:
    """One CA (Ed25519, skip's default signer) and X25519 leaf certificates it signs."""

    def __init__(self, now: float, name: str = "test CA") -> None:
        self.start, self.end = int(now) - 3600, int(now) + 30 * 86_400
        self.signer = generate_signer()
        self.ca = issue(signer=self.signer, issuer=None, subject=Subject([("CN", name)]),
                        not_before=self.start, not_after=self.end, ca=True)

    def leaf(self, cn: str, address: str) -> tuple[DHPrivateKey, Certificate]:
        key = generate_key(GROUPS["x25519"])
        cert = issue(signer=self.signer, issuer=self.ca, not_before=self.start,
                     not_after=self.end, dh_key=key.public,
                     subject=Subject([("CN", cn)],
                                     addresses=(ipaddress.ip_address(address),)))
        return key, cert

    def write(self, directory: Path, me: str, address: str) -> None:
        """ca.pem, ca.crl, ME.key, ME.pem as tests.netns.skipd_config expects them."""
        directory.mkdir(parents=True, exist_ok=True)
        key, cert = self.leaf(me, address)
        (directory / "ca.pem").write_bytes(self.ca.pem())
        crl = issue_crl(signer=self.signer, issuer=self.ca, this_update=self.start,
                        next_update=self.end, number=1, revoked=[])
        (directory / "ca.crl").write_bytes(crl.pem())
        (directory / f"{me}.key").write_bytes(dump_private_key(key))
        (directory / f"{me}.key").chmod(0o600)
        (directory / f"{me}.pem").write_bytes(cert.pem())
