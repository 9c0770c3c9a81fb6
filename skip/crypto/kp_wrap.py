"""Encryption of the traffic key Kp under Kijn: the "Kp encrypted in Kijn" header field.

Legacy (draft-06 section 1.8): the Kij Alg block cipher in CBC mode with an all-zero IV over
``random fill | Kp`` (fill in front, up to a block multiple), keyed with the low-order bytes of
Kijn; the receiver keeps the rightmost L_kp bytes. There is no integrity: a wrong key or a
tampered EKp yields a wrong Kp, which the traffic ICV then rejects.

Modern (docs/protocol/modern-profile.md section 4.3): AES-256 key wrap (RFC 3394) of Kp and its
creation time with the directional Kijn as the key-encryption key; unwrapping checks integrity,
so a tampered EKp is refused before any traffic key is derived.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from cryptography.hazmat.decrepit.ciphers.algorithms import IDEA, TripleDES
from cryptography.hazmat.primitives.ciphers import BlockCipherAlgorithm, Cipher, modes
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from skip.crypto.kdf import low
from skip.crypto.skip_numbers import MODERN_KP_SIZE, KijAlgorithm
from skip.errors import AlgorithmError, KeyingError

Rng = Callable[[int], bytes]

# Single DES is EDE with K1 = K2 = K3, which is how `cryptography` still offers it.
_BLOCK_CIPHERS: dict[str, Callable[[bytes], BlockCipherAlgorithm]] = {
    "des-cbc": lambda key: TripleDES(key * 3),
    "3des-ede-cbc": TripleDES,
    "idea-cbc": IDEA,
}


def _cipher(kij_alg: KijAlgorithm, kijn: bytes) -> Cipher[modes.CBC]:
    factory = _BLOCK_CIPHERS.get(kij_alg.name)
    if factory is None or not kij_alg.implemented:
        raise AlgorithmError("unsupported_kij_alg", f"Kij Alg {kij_alg.number} ({kij_alg.name})")
    key = low(kijn, kij_alg.key_size)
    return Cipher(factory(key), modes.CBC(bytes(kij_alg.block_size)))


def legacy_encrypt_kp(
    kij_alg: KijAlgorithm, kijn: bytes, kp: bytes, ekp_length: int, rng: Rng
) -> bytes:
    """EKp = Kij-Alg-CBC(IV 0, key = low bytes of Kijn)(random fill | Kp)."""
    block = rng(ekp_length - len(kp)) + kp
    enc = _cipher(kij_alg, kijn).encryptor()
    return enc.update(block) + enc.finalize()


def legacy_decrypt_kp(kij_alg: KijAlgorithm, kijn: bytes, ekp: bytes, kp_length: int) -> bytes:
    """Kp = the rightmost ``kp_length`` bytes of the CBC-decrypted EKp."""
    dec = _cipher(kij_alg, kijn).decryptor()
    return low(dec.update(ekp) + dec.finalize(), kp_length)


_STAMP = struct.Struct("!Q")


def modern_wrap_kp(kek: bytes, kp: bytes, created_ms: int) -> bytes:
    """RFC 3394 AES key wrap of Kp || u64(created_ms) under the directional Kijn.

    The creation time travels inside the wrap, so it is authenticated with the Kp: a receiver
    that restarted can refuse every Kp made before it started (modern-profile.md s. 4.3).
    """
    return aes_key_wrap(kek, kp + _STAMP.pack(created_ms))


def modern_unwrap_kp(kek: bytes, ekp: bytes) -> tuple[bytes, int]:
    """(Kp, creation time in ms); a wrong Kijn or a changed EKp raises KeyingError."""
    try:
        plain = aes_key_unwrap(kek, ekp)
    except (InvalidUnwrap, ValueError):
        raise KeyingError("kp_unwrap_failed", "the encrypted Kp does not unwrap") from None
    if len(plain) != MODERN_KP_SIZE + _STAMP.size:
        raise KeyingError("kp_unwrap_failed", f"the wrapped key holds {len(plain)} bytes")
    return plain[:MODERN_KP_SIZE], _STAMP.unpack_from(plain, MODERN_KP_SIZE)[0]
