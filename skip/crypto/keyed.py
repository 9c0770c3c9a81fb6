"""The SKIP-era "keyed hash" MACs: keyed MD5 (RFC 1828) and keyed SHA-1 (RFC 1852).

Both RFCs authenticate ``key || keyfill || data || key`` with the bare hash, where ``keyfill``
pads the key to the hash's 64-byte block "using the same pad with length technique" the hash
itself uses (RFC 1828 section 2, RFC 1852 section 2). The hash's own final padding then follows
the trailing key. The only difference between the two is the byte order of the 64-bit length:
MD5 pads with a little-endian bit count, SHA-1 with a big-endian one.

Because the leading ``key || keyfill`` fills whole blocks, it is hashed once per key and the
resulting state is copied per packet (RFC 1852's discussion mentions this "prehash" too).
These MACs are broken by today's standards (RFC 8221: MUST NOT); the registry marks them legacy.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from skip.crypto.integrity import BytesLike, MacContext

_BLOCK = 64  # MD5 and SHA-1 both work on 512-bit blocks
_LENGTH_ORDER: dict[str, Literal["little", "big"]] = {"md5": "little", "sha1": "big"}


def keyfill(hash_name: str, key_length: int) -> bytes:
    """The hash's own pad-with-length for a message of ``key_length`` bytes (the RFCs' keyfill).

    0x80, then zeros up to 56 mod 64, then the key's length in *bits* as 64 bits in the hash's
    byte order, so that ``key || keyfill`` is a whole number of 64-byte blocks.
    """
    zeros = (_BLOCK - 9 - key_length) % _BLOCK
    bits = (8 * key_length).to_bytes(8, _LENGTH_ORDER[hash_name])
    return b"\x80" + bytes(zeros) + bits


class KeyedHashContext(MacContext):
    """One key's keyed-hash MAC; built once, used for every packet."""

    __slots__ = ("_icv_size", "_key", "_prefix")

    def __init__(self, hash_name: str, key: bytes, icv_size: int) -> None:
        self._key = bytes(key)
        self._prefix = hashlib.new(hash_name, self._key + keyfill(hash_name, len(key)))
        self._icv_size = icv_size

    def compute(self, *parts: BytesLike) -> bytes:
        """The ICV over the concatenation of ``parts`` (nothing is concatenated in memory)."""
        h = self._prefix.copy()
        for part in parts:
            h.update(part)
        h.update(self._key)
        return h.digest()[: self._icv_size]
