"""HMAC integrity contexts (RFC 2104 with the IPsec truncations of RFC 2403/2404/4868/2085).

A context holds one key's HMAC state with the inner and outer pads already absorbed, and copies
it per packet: that saves the two key-pad compressions a one-shot ``hmac.digest`` repeats for
every packet. Of the three ways Python offers (``hmac.new(...).copy()``, ``hmac.digest``,
cryptography's ``HMAC.copy()``), cryptography's copy measured fastest here (1400 B with
HMAC-SHA-256: 1.23 us against 1.60 and 2.07 us), so it is the one used.
"""

from __future__ import annotations

import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac

from skip.errors import IntegrityError

#: What the per-packet paths accept: slices of a received packet arrive as memoryviews.
BytesLike = bytes | bytearray | memoryview

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "md5": hashes.MD5,
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def check_icv(expected: bytes, received: BytesLike) -> None:
    """Constant-time ICV comparison shared by every MAC context."""
    if not hmac.compare_digest(expected, received):
        raise IntegrityError("bad_icv", "integrity check value does not match")


class MacContext:
    """What every integrity context offers: ``compute`` (subclasses) and ``verify`` (here)."""

    __slots__ = ()

    def compute(self, *parts: BytesLike) -> bytes:
        """The (truncated) ICV over the concatenation of ``parts``."""
        raise NotImplementedError

    def verify(self, icv: BytesLike, *parts: BytesLike) -> None:
        """Raise IntegrityError("bad_icv") unless ``icv`` is right (constant-time compare)."""
        check_icv(self.compute(*parts), icv)


class HmacContext(MacContext):
    """One key's HMAC, truncated to its leftmost ``icv_size`` bytes (RFC 2104 section 5)."""

    __slots__ = ("_base", "_icv_size")

    def __init__(self, hash_name: str, key: bytes, icv_size: int) -> None:
        self._base = crypto_hmac.HMAC(bytes(key), _HASHES[hash_name]())
        self._icv_size = icv_size

    def compute(self, *parts: BytesLike) -> bytes:
        """The ICV over the concatenation of ``parts`` (nothing is concatenated in memory)."""
        h = self._base.copy()
        for part in parts:
            h.update(part)
        return h.finalize()[: self._icv_size]
