"""UDH values as certificates: the unsigned DH public value of draft-ietf-ipsec-skip-udh-01.

A UDH value is trusted only through its name: the holder is named (NSID 8) by the MD5 of the
exact encoding, and that name must reach the relying party securely (out of band, in a
config file). Section 4 of the draft: never accept a UDH value for any other kind of name.
"""

from __future__ import annotations

from dataclasses import dataclass

from skip.errors import CertificateError, ParseError
from skip.pki.dhkey import DHPublicKey, dh_public_key
from skip.pki.names import SkipName, udh_name
from skip.wire.udh import UnsignedDH, ntp_seconds, unix_seconds


@dataclass(frozen=True)
class UdhCertificate:
    """A parsed UDH value with the same accessors as an X.509 :class:`Certificate`."""

    encoding: bytes
    value: UnsignedDH
    dh_key: DHPublicKey

    @property
    def not_before(self) -> int:
        return unix_seconds(self.value.not_before)

    @property
    def not_after(self) -> int:
        return unix_seconds(self.value.not_after)

    @property
    def name(self) -> SkipName:
        return udh_name(self.encoding)

    @property
    def fingerprint(self) -> str:
        """The NSID 8 MKID in hex: what an administrator compares and configures."""
        return self.name.mkid.hex()

    def skip_names(self) -> tuple[SkipName, ...]:
        return (self.name,)


def parse_udh(data: bytes) -> UdhCertificate:
    """Decode a UDH value. Raises ParseError (layout) or CertificateError (DH values)."""
    value = UnsignedDH.parse(data)
    key = dh_public_key(value.p, value.g, None, value.public_value, "pkcs3")
    return UdhCertificate(bytes(data), value, key)


def make_udh(key: DHPublicKey, not_before: int, not_after: int) -> UdhCertificate:
    """The UDH value for ``key`` valid from ``not_before`` to ``not_after`` (POSIX seconds)."""
    if key.group.kind != "modp":
        raise CertificateError("cert_key_type", f"UDH carries MODP values, not {key.group.name}")
    if not_after <= not_before:
        raise CertificateError("cert_expired", "not-after must be later than not-before")
    try:
        value = UnsignedDH(
            ntp_seconds(not_before),
            ntp_seconds(not_after),
            key.group.p,
            key.group.g,
            int.from_bytes(key.public_value),
        )
    except ValueError as exc:
        raise CertificateError("cert_malformed", str(exc)) from exc
    return parse_udh(value.encode())


def looks_like_udh(data: bytes) -> bool:
    """True when ``data`` parses as a UDH value (used to tell UDH files from DER)."""
    try:
        UnsignedDH.parse(data)
    except ParseError:
        return False
    return True
