"""The group key derivations: Kgn from Kg and the hourly counter n, legacy and modern.

They live here, not in skip/crypto/kdf.py, because only the multicast layer uses them; they
build on the unicast primitives below (the legacy form is the Kijn formula with Kg in Kij's
place, the modern one the profile's HKDF).
"""

from __future__ import annotations

import struct

from skip.crypto.kdf import hkdf_expand, hkdf_extract, legacy_kijn

LABEL_KG = b"SKIP v2 Kg"  # next-wave.md MC-M1
LABEL_KGN = b"SKIP v2 Kgn"
KGN_SIZE = 32
_U32 = struct.Struct("!I")


def legacy_kgn(kg: bytes, n: int) -> bytes:
    """MC-10: Kgn = MD5(Kg | n | 01h) | MD5(Kg | n | 00h); the same bytes as Kijn with Kg for
    Kij, so a version-1 peer that implements unicast SKIP already computes it."""
    return legacy_kijn(kg, n)


def modern_kgn(kg: bytes, group16: bytes, epoch: int, n: int) -> bytes:
    """MC-M1: HKDF-Expand(HKDF-Extract("SKIP v2 Kg", Kg), "SKIP v2 Kgn" 0x00 M(16) u32(epoch)
    u32(n), 32). Binding the group address and the epoch means a Kg reused for another group,
    or an old epoch's key, unwraps nothing of this one (what MC-M6's trial unwrap relies on)."""
    if len(group16) != 16:
        raise ValueError("M is 16 bytes (IPv4-mapped for IPv4)")
    info = LABEL_KGN + b"\0" + group16 + _U32.pack(epoch) + _U32.pack(n)
    return hkdf_expand(hkdf_extract(LABEL_KG, kg), info, KGN_SIZE)
