"""SKIP key derivations: the draft-06 MD5 hierarchy and the modern profile's HKDF labels.

Legacy (header version 1, draft-ietf-ipsec-skip-06 sections 1.2, 1.9, 5.1)::

    n    = hours since 1995-01-01 00:00 UTC
    Kij  = low-order 256 bits of g^ij mod p (32 bytes, MSB first)
    Kijn = MD5(Kij | n | 01h) | MD5(Kij | n | 00h)
    E_kp = MD5(Kp' | Crypt Alg | 02h) | MD5(Kp' | Crypt Alg | 00h)
    A_kp = MD5(Kp' | MAC Alg | 03h)   | MD5(Kp' | MAC Alg | 01h)

where Kp' is the decrypted EKp block with its random fill set to zero, and every key is taken
from the low-order (rightmost) bytes. Drafts 03-05 had no algorithm byte in E_kp / A_kp; peers
from the December 1995 interop builds need that form (``pre06=True``).

Modern (header version 2, revision 2.1): HKDF-SHA-256 (RFC 5869) with the labels below,
specified byte by byte in docs/protocol/modern-profile.md. Labels are ASCII, NUL-terminated
inside ``info`` so no label is a prefix of another's input.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

#: 1995-01-01 00:00:00 UTC in POSIX seconds: the epoch of the counter n (draft-06 s. 5.1).
SKIP_EPOCH = 788918400
N_PERIOD = 3600
KIJ_SIZE = 32

_N = struct.Struct("!I")


def counter_n(now: float) -> int:
    """The SKIP counter n at POSIX time ``now`` (whole hours since the SKIP epoch)."""
    return (int(now) - SKIP_EPOCH) // N_PERIOD


def n_start(n: int) -> int:
    """POSIX time at which counter ``n`` begins (the instant n changes to this value)."""
    return SKIP_EPOCH + n * N_PERIOD


def low(key: bytes, size: int) -> bytes:
    """The low-order ``size`` bytes of a key built MSB first (its rightmost bytes)."""
    return key[len(key) - size :] if size else b""


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data).digest()


# --- legacy (version 1) ------------------------------------------------------------------


def legacy_kij(shared_secret: bytes) -> bytes:
    """Kij from the big-endian DH shared secret g^ij mod p: its low-order 256 bits."""
    return bytes(max(0, KIJ_SIZE - len(shared_secret))) + shared_secret[-KIJ_SIZE:]


def legacy_kijn(kij: bytes, n: int) -> bytes:
    """Kijn = MD5(Kij | n | 01h) | MD5(Kij | n | 00h) (32 bytes, high half first)."""
    prefix = kij + _N.pack(n)
    return _md5(prefix + b"\x01") + _md5(prefix + b"\x00")


def kp_prime(kp: bytes, ekp_length: int) -> bytes:
    """The hash input Kp': the EKp-sized block with the random fill bytes zeroed."""
    return bytes(ekp_length - len(kp)) + kp


def legacy_e_kp(kp_p: bytes, crypt_alg: int, *, pre06: bool = False) -> bytes:
    """E_kp (32 bytes); ``pre06`` selects the draft-03..05 form without the algorithm byte."""
    if pre06:
        return _md5(kp_p + b"\x01") + _md5(kp_p + b"\x00")
    return _md5(kp_p + bytes((crypt_alg, 2))) + _md5(kp_p + bytes((crypt_alg, 0)))


def legacy_a_kp(kp_p: bytes, mac_alg: int, *, pre06: bool = False) -> bytes:
    """A_kp (32 bytes); ``pre06`` selects the draft-03..05 form without the algorithm byte."""
    if pre06:
        return _md5(kp_p + b"\x03") + _md5(kp_p + b"\x02")
    return _md5(kp_p + bytes((mac_alg, 3))) + _md5(kp_p + bytes((mac_alg, 1)))


# --- modern (version 2) ------------------------------------------------------------------

LABEL_KIJ = b"SKIP v2.1 Kij"
LABEL_KIJN = b"SKIP v2.1 Kijn"
LABEL_KP = b"SKIP v2.1 Kp"
LABEL_E_KP = b"SKIP v2.1 E_kp"
LABEL_A_KP = b"SKIP v2.1 A_kp"


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    """RFC 5869 HKDF-Extract with SHA-256."""
    return hmac.digest(salt, ikm, "sha256")


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF-Expand with SHA-256."""
    return HKDFExpand(SHA256(), length, info).derive(prk)


def _lv(value: bytes) -> bytes:
    return struct.pack("!H", len(value)) + value


def modern_kij(shared_secret: bytes, group: str, public_a: bytes, public_b: bytes) -> bytes:
    """Kij of the modern profile, bound to the group and to both public values.

    The public values are sorted so that both ends compute the same Kij without roles.
    """
    lo, hi = sorted((public_a, public_b))
    prk = hkdf_extract(LABEL_KIJ, shared_secret)
    info = LABEL_KIJ + b"\0" + _lv(group.encode("ascii")) + _lv(lo) + _lv(hi)
    return hkdf_expand(prk, info, KIJ_SIZE)


def modern_kijn(kij: bytes, n: int, sender_public: bytes, receiver_public: bytes) -> bytes:
    """The hourly key-encryption key of one direction: the sender's public value first.

    Kij is the same for both directions; binding the order of the two public values into
    Kijn gives A->B and B->A different keys, so a packet reflected back to its sender (source
    and destination swapped) no longer unwraps there (modern-profile.md s. 4.2).
    """
    info = LABEL_KIJN + b"\0" + _N.pack(n) + _lv(sender_public) + _lv(receiver_public)
    return hkdf_expand(kij, info, KIJ_SIZE)


def modern_traffic_keys(
    kp: bytes, header: bytes, e_size: int, a_size: int
) -> tuple[bytes, bytes]:
    """(E_kp, A_kp) bound to the whole SKIP header, so a changed header field changes the keys.

    ``header`` is the encoded version-2 SKIP header exactly as sent; ``e_size`` is the cipher's
    key material (key and salt), ``a_size`` the MAC key (0 for AEAD: no A_kp).
    """
    prk = hkdf_extract(LABEL_KP, kp)
    e_kp = hkdf_expand(prk, LABEL_E_KP + b"\0" + header, e_size) if e_size else b""
    a_kp = hkdf_expand(prk, LABEL_A_KP + b"\0" + header, a_size) if a_size else b""
    return e_kp, a_kp


# --- perfect forward secrecy (draft-ietf-ipsec-skip-pfs-00, next-wave.md part 3) -----------

LABEL_PFS_MAC = b"SKIP v2.1 PFS mac"
LABEL_EKIJN = b"SKIP v2.1 EKijn"
PFS_MAC_SIZE = 16  # HMAC-SHA-256 truncated (MAC Alg 20)
#: the direction bytes of the modern EKijn: initiator to responder, and back
TO_RESPONDER, TO_INITIATOR = b"\x01", b"\x02"


def legacy_ekijn(kij: bytes, gxy: bytes, n: int) -> bytes:
    """EKijn = MD5(Kij | g^xy | n | 01h) | MD5(Kij | g^xy | n | 00h) (pfs-00 s. 2, PFS-1).

    ``gxy`` is the ephemeral shared secret as the big-endian value left-padded to the byte
    length of p (A-PFS-3: the draft gives no byte form; this is the form g^ij has in Kij).
    It replaces Kijn for the pair's packets under the EMKID and is used like it."""
    prefix = kij + gxy + _N.pack(n)
    return _md5(prefix + b"\x01") + _md5(prefix + b"\x00")


def pfs_mac_key(kij: bytes, role: bytes) -> bytes:
    """The key of one side's ephemeral-certificate MAC (PFS-M2): separate for initiator
    (``b"I"``) and responder (``b"J"``), so one side's message can never pass as the other's
    (a reflected request is not a reply)."""
    return hkdf_expand(kij, LABEL_PFS_MAC + b"\0" + role, 32)


def pfs_mac(key: bytes, *parts: bytes) -> bytes:
    return hmac.digest(key, b"".join(parts), "sha256")[:PFS_MAC_SIZE]


def pfs_transcript(public_i: bytes, public_j: bytes, request: bytes, reply: bytes) -> bytes:
    """T of PFS-M3: both long-term public values in the roles' order, then both messages
    without their MACs. Binding the identities keeps an ephemeral key to one pair and
    one direction of roles, as the base modern profile binds Kijn (modern-profile.md 4.2)."""
    return hashlib.sha256(_lv(public_i) + _lv(public_j) + _lv(request) + _lv(reply)).digest()


def pfs_prk(kij: bytes, ephemeral_secret: bytes) -> bytes:
    """HKDF-Extract(salt = Kij, IKM = DH(e_I, e_J)) (PFS-M3): the ephemeral master secret
    every modern EKijn of one exchange is expanded from."""
    return hkdf_extract(kij, ephemeral_secret)


def modern_ekijn(prk: bytes, transcript: bytes, direction: bytes, n: int) -> bytes:
    """EKijn of one direction and one n (PFS-M3): a packet under one direction's key does
    not unwrap in the other (reflection), nor under another exchange's (T differs)."""
    info = LABEL_EKIJN + b"\0" + direction + transcript + _N.pack(n)
    return hkdf_expand(prk, info, KIJ_SIZE)
