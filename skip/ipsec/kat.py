"""Known-answer-test support: make an ESP SA send a fixed IV.  DANGEROUS outside tests.

Published ESP examples (RFC 3602 section 4, RFC 7634 Appendix A) print the IV their packet
used.  To reproduce them byte for byte the engine must send exactly that IV, which a real SA
must never do (a repeated CBC IV leaks plaintext equality; a repeated GCM/ChaCha20 nonce leaks
the key stream and the authentication key).  This wrapper exists only for that, and is reached
only through :meth:`skip.ipsec.esp.EspSA.dangerously_fix_iv_for_testing`.

It uses nothing but the crypto layer's public contexts:

* counter-IV algorithms (CTR, GCM, GMAC, ChaCha20-Poly1305, RFC 1829's 32-bit IV) send the
  per-packet counter as their IV, so the fixed IV is passed as the counter;
* CBC sends ``E_k(R xor chain)`` as its IV, R being the rng's block, and a fresh context starts
  from a zero chain.  A fresh context's ``open(zeros || IV)`` returns ``D_k(IV)``, so sealing
  with ``R = D_k(IV)`` on another fresh context sends exactly ``IV``.
"""

from __future__ import annotations

from skip.crypto.ciphers import CipherContext
from skip.crypto.integrity import BytesLike
from skip.crypto.registry import CipherAlgorithm
from skip.errors import AlgorithmError


class FixedIvForTesting(CipherContext):
    """A cipher context that seals every packet with the same IV.  Tests only."""

    __slots__ = ("_algorithm", "_iv", "_key", "_open_ctx")

    def __init__(self, algorithm: CipherAlgorithm, key_material: bytes, iv: bytes) -> None:
        super().__init__(algorithm.iv_size)
        if len(iv) != algorithm.iv_size:
            raise AlgorithmError(
                "bad_sa", f"{algorithm.name} IVs are {algorithm.iv_size} bytes, got {len(iv)}")
        self._algorithm, self._key, self._iv = algorithm, key_material, bytes(iv)
        self._open_ctx = algorithm.new(key_material)

    def _is_cbc(self) -> bool:
        alg = self._algorithm
        return alg.block_size > 1 and alg.iv_size == alg.block_size

    def seal(self, plaintext: BytesLike, aad: BytesLike, counter: int) -> bytes:
        alg = self._algorithm
        if self._is_cbc():
            pre_image = alg.new(self._key).open(bytes(alg.block_size) + self._iv, b"")
            return alg.new(self._key, rng=lambda n: pre_image).seal(plaintext, aad, counter)
        return self._open_ctx.seal(plaintext, aad, int.from_bytes(self._iv, "big"))

    def open(self, payload: BytesLike, aad: BytesLike) -> bytes:
        return self._open_ctx.open(payload, aad)
