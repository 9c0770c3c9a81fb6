"""Per-key cipher contexts for ESP: built once when an SA is keyed, reused for every packet.

Creating a cryptography ``Cipher(...).encryptor()`` costs about 15 us, ten times the work of
encrypting a 1400-byte packet, so no context here creates one per packet:

* CBC (AES, DES, 3DES) keeps ONE encryptor and ONE decryptor for the life of the key. A CBC
  context chains from the previous ciphertext block, which we exploit instead of fighting:
  encrypting ``R || plaintext`` with R a fresh random block yields ``C0 || C1 ...`` where C0 is
  unpredictable (a block-cipher output of a random input) and ``C1 ...`` is exactly
  CBC(plaintext) with IV = C0. So C0 *is* the packet's IV (RFC 3602 section 3 asks for a random,
  unpredictable one) and the output is already ``IV || ciphertext`` as ESP carries it.
  Decrypting ``IV || ciphertext`` with the long-lived decryptor yields one garbage block (chained
  from the previous call) followed by the plaintext, because CBC decryption of block i only
  needs ciphertext block i-1.
* CTR (RFC 3686) keeps one CTR context and moves it with ``reset_nonce`` per packet.
* AEAD (RFC 4106 GCM, RFC 7634 ChaCha20-Poly1305, RFC 4543 GMAC) keeps one AEAD object; the
  8-byte explicit IV is the caller's per-key unique counter (the SA's sequence number), which
  both RFCs allow and which guarantees nonce uniqueness without an RNG.

Every context offers the wire-shaped pair ``seal(plaintext, aad, counter) -> iv || ciphertext``
and ``open(payload, aad) -> plaintext`` (what the ESP payload field holds, so the engine slices
and joins nothing), plus the architecture contract's ``encrypt``/``decrypt`` that keep the IV
separate.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, CipherAlgorithm, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

from skip.crypto.integrity import BytesLike, check_icv
from skip.errors import AlgorithmError, IntegrityError, ParseError

Rng = Callable[[int], bytes]

_EXPLICIT_IV = 8  # RFC 3686 / 4106 / 4543 / 7634 all carry a 64-bit IV
_GCM_TAG = 16
_CTR_FIRST_BLOCK = b"\x00\x00\x00\x01"  # RFC 3686 section 4: the block counter starts at 1
_GCM_FIRST_DATA_BLOCK = b"\x00\x00\x00\x02"  # GCM: counter 1 encrypts the tag, data starts at 2


def _truncated(size: int, minimum: int) -> ParseError:
    return ParseError("truncated", f"encrypted payload of {size} bytes, need >= {minimum}")


class CipherContext:
    """One key's cipher, as the ESP engine uses it."""

    __slots__ = ("iv_size",)

    def __init__(self, iv_size: int) -> None:
        self.iv_size = iv_size

    def seal(self, plaintext: BytesLike, aad: BytesLike, counter: int) -> bytes:
        """``iv || ciphertext`` (with the AEAD tag appended) for one packet.

        ``counter`` must be unique per key (the SA's 64-bit sequence number); ``aad`` is only
        used by AEAD algorithms (ESP: SPI || sequence number, 32 or 64 bits).
        """
        raise NotImplementedError

    def open(self, payload: BytesLike, aad: BytesLike) -> bytes:
        """The plaintext of ``iv || ciphertext [|| tag]``.

        Raises ParseError("truncated" | "bad_block_size") for impossible lengths and
        IntegrityError("bad_icv") when an AEAD tag does not verify.
        """
        raise NotImplementedError

    def encrypt(self, plaintext: BytesLike, aad: BytesLike, counter: int) -> tuple[bytes, bytes]:
        """The architecture contract's form of :meth:`seal`: ``(iv, ciphertext)``."""
        sealed = self.seal(plaintext, aad, counter)
        return sealed[: self.iv_size], sealed[self.iv_size :]

    def decrypt(self, iv: BytesLike, ciphertext: BytesLike, aad: BytesLike) -> bytes:
        """The architecture contract's form of :meth:`open`."""
        if len(iv) != self.iv_size:
            raise ParseError("bad_length", f"IV is {len(iv)} bytes, expected {self.iv_size}")
        return self.open(bytes(iv) + ciphertext, aad)

    def _need(self, payload: BytesLike, minimum: int) -> int:
        size = len(payload)
        if size < minimum:
            raise _truncated(size, minimum)
        return size


class NullContext(CipherContext):
    """ENCR_NULL (RFC 2410): ESP with integrity only. No IV, the payload travels as it is."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(0)

    def seal(self, plaintext: BytesLike, aad: BytesLike, counter: int) -> bytes:
        return bytes(plaintext)

    def open(self, payload: BytesLike, aad: BytesLike) -> bytes:
        return bytes(payload)


class CbcContext(CipherContext):
    """CBC with a random IV (RFC 3602 AES, RFC 2405 DES, RFC 2451 3DES); see the module doc."""

    __slots__ = ("_block", "_decryptor", "_encryptor", "_rng")

    def __init__(self, algorithm: CipherAlgorithm, block: int, rng: Rng) -> None:
        super().__init__(block)
        cipher = Cipher(algorithm, modes.CBC(bytes(block)))
        # A zero IV at creation: the encryptor's chain value is then known (CbcIv32Context
        # relies on it) and the decryptor's first, discarded block never matters.
        self._encryptor = cipher.encryptor()
        self._decryptor = cipher.decryptor()
        self._block = block
        self._rng = rng

    def _check_plaintext(self, plaintext: BytesLike) -> None:
        # Checked BEFORE update(): a partial block would stay buffered in the long-lived
        # context and shift every later packet.
        if len(plaintext) % self._block:
            raise AlgorithmError(
                "bad_block_size",
                f"plaintext of {len(plaintext)} bytes is not a multiple of the "
                f"{self._block}-byte block: pad it first",
            )

    def _check_ciphertext(self, size: int) -> None:
        if size % self._block:
            raise ParseError(
                "bad_block_size",
                f"ciphertext of {size} bytes is not a multiple of the {self._block}-byte block",
            )

    def seal(self, plaintext: BytesLike, aad: BytesLike, counter: int) -> bytes:
        self._check_plaintext(plaintext)
        block = self._rng(self._block)
        if len(block) != self._block:  # a short block would shift the context for good
            raise AlgorithmError("bad_sa", f"rng returned {len(block)} bytes, not {self._block}")
        return self._encryptor.update(block + plaintext)

    def open(self, payload: BytesLike, aad: BytesLike) -> bytes:
        self._check_ciphertext(self._need(payload, self._block))
        return self._decryptor.update(payload)[self._block :]


class CbcIv32Context(CbcContext):
    """DES-CBC with RFC 1829's 32-bit IV, expanded to ``IV32 || ~IV32`` for CBC.

    The IV32 is the low 32 bits of the per-key counter: RFC 1829 section 2 allows a counter and
    asks only that an IV not repeat while the key lives (and a rekey every 2**32 datagrams).
    To start CBC from a chosen IV on the long-lived encryptor, the first plaintext block is
    XORed with (previous chain value XOR wanted IV), which cancels the chaining.
    """

    __slots__ = ("_chain",)

    _IV32_MASK = 0xFFFFFFFF

    def __init__(self, algorithm: CipherAlgorithm, rng: Rng) -> None:
        super().__init__(algorithm, 8, rng)
        self.iv_size = 4
        self._chain = 0  # the encryptor was created with a zero IV

    @classmethod
    def expand_iv(cls, iv32: BytesLike) -> bytes:
        """RFC 1829 section 2: the 64-bit CBC IV is the 32-bit IV followed by its complement."""
        value = int.from_bytes(iv32, "big")
        return (value << 32 | value ^ cls._IV32_MASK).to_bytes(8, "big")

    def seal(self, plaintext: BytesLike, aad: BytesLike, counter: int) -> bytes:
        self._check_plaintext(plaintext)
        iv32 = (counter & self._IV32_MASK).to_bytes(4, "big")
        if not plaintext:
            return iv32
        iv = int.from_bytes(self.expand_iv(iv32), "big")
        first = int.from_bytes(plaintext[:8], "big") ^ self._chain ^ iv
        out = self._encryptor.update(first.to_bytes(8, "big") + plaintext[8:])
        self._chain = int.from_bytes(out[-8:], "big")
        return iv32 + out

    def open(self, payload: BytesLike, aad: BytesLike) -> bytes:
        self._check_ciphertext(self._need(payload, 4) - 4)
        return self._decryptor.update(self.expand_iv(payload[:4]) + payload[4:])[8:]


class CtrContext(CipherContext):
    """AES-CTR for ESP (RFC 3686): counter block = nonce(4) || IV(8) || 00000001."""

    __slots__ = ("_context", "_nonce")

    def __init__(self, algorithm: CipherAlgorithm, nonce: bytes) -> None:
        super().__init__(_EXPLICIT_IV)
        self._context = Cipher(algorithm, modes.CTR(bytes(16))).encryptor()
        self._nonce = nonce

    def seal(self, plaintext: BytesLike, aad: BytesLike, counter: int) -> bytes:
        iv = counter.to_bytes(_EXPLICIT_IV, "big")
        self._context.reset_nonce(self._nonce + iv + _CTR_FIRST_BLOCK)
        return iv + self._context.update(plaintext)

    def open(self, payload: BytesLike, aad: BytesLike) -> bytes:
        self._need(payload, _EXPLICIT_IV)
        self._context.reset_nonce(self._nonce + payload[:_EXPLICIT_IV] + _CTR_FIRST_BLOCK)
        return self._context.update(payload[_EXPLICIT_IV:])


class AeadContext(CipherContext):
    """AES-GCM with a 16-byte ICV (RFC 4106) or ChaCha20-Poly1305 (RFC 7634).

    Nonce = salt(4) || IV(8), the IV being the big-endian counter; output = IV || ct || tag.
    """

    __slots__ = ("_aead", "_salt")

    def __init__(self, aead: AESGCM | AESCCM | ChaCha20Poly1305, salt: bytes) -> None:
        super().__init__(_EXPLICIT_IV)
        self._aead = aead
        self._salt = salt

    def seal(self, plaintext: BytesLike, aad: BytesLike, counter: int) -> bytes:
        iv = counter.to_bytes(_EXPLICIT_IV, "big")
        return iv + self._aead.encrypt(self._salt + iv, plaintext, aad)

    def open(self, payload: BytesLike, aad: BytesLike) -> bytes:
        if len(payload) < _EXPLICIT_IV + _GCM_TAG:  # inline: this is the hottest path
            raise _truncated(len(payload), _EXPLICIT_IV + _GCM_TAG)
        try:
            return self._aead.decrypt(
                self._salt + payload[:_EXPLICIT_IV], payload[_EXPLICIT_IV:], aad
            )
        except InvalidTag:
            raise IntegrityError("bad_icv", "AEAD tag does not verify") from None


class TruncatedGcmContext(AeadContext):
    """AES-GCM with an 8- or 12-byte ICV (RFC 4106 section 6: the tag's leftmost bytes).

    cryptography's AESGCM object only checks full 16-byte tags, and a per-packet
    ``Cipher(AES, GCM(iv, tag, min_tag_length))`` would cost a context creation. So opening
    recovers the plaintext with the GCM keystream (CTR from counter 2, on a long-lived CTR
    context), recomputes the full tag by re-sealing it, and compares the truncated tags in
    constant time. Nothing is returned before the tag verified.
    """

    __slots__ = ("_ctr", "_tag_size")

    def __init__(self, aead: AESGCM, algorithm: CipherAlgorithm, salt: bytes, tag: int) -> None:
        super().__init__(aead, salt)
        self._ctr = Cipher(algorithm, modes.CTR(bytes(16))).encryptor()
        self._tag_size = tag

    def seal(self, plaintext: BytesLike, aad: BytesLike, counter: int) -> bytes:
        sealed = super().seal(plaintext, aad, counter)
        return sealed[: len(sealed) - _GCM_TAG + self._tag_size]

    def open(self, payload: BytesLike, aad: BytesLike) -> bytes:
        size = self._need(payload, _EXPLICIT_IV + self._tag_size)
        nonce = self._salt + payload[:_EXPLICIT_IV]
        self._ctr.reset_nonce(nonce + _GCM_FIRST_DATA_BLOCK)
        plaintext = self._ctr.update(payload[_EXPLICIT_IV : size - self._tag_size])
        tag = self._aead.encrypt(nonce, plaintext, aad)[-_GCM_TAG:][: self._tag_size]
        check_icv(tag, payload[size - self._tag_size :])
        return plaintext


class CcmContext(AeadContext):
    """AES-CCM for ESP (RFC 4309): nonce = salt(3) || IV(8), so L = 4; an 8, 12 or 16-byte
    ICV (the CCM tag, cryptography's AESCCM checks it whole at any of those lengths)."""

    __slots__ = ("_icv",)

    def __init__(self, aead: AESCCM, salt: bytes, icv: int) -> None:
        super().__init__(aead, salt)
        self._icv = icv

    def open(self, payload: BytesLike, aad: BytesLike) -> bytes:
        if len(payload) < _EXPLICIT_IV + self._icv:
            raise _truncated(len(payload), _EXPLICIT_IV + self._icv)
        try:
            return self._aead.decrypt(
                self._salt + payload[:_EXPLICIT_IV], payload[_EXPLICIT_IV:], aad
            )
        except InvalidTag:
            raise IntegrityError("bad_icv", "CCM tag does not verify") from None


class GmacContext(AeadContext):
    """ENCR_NULL_AUTH_AES_GMAC (RFC 4543): GCM with no plaintext, everything authenticated.

    The payload stays in clear; the tag covers AAD = ``aad || IV || payload`` (RFC 4543 section
    3.5: SPI, sequence number, IV, then the whole clear ESP payload and trailer).
    """

    __slots__ = ()

    def seal(self, plaintext: BytesLike, aad: BytesLike, counter: int) -> bytes:
        iv = counter.to_bytes(_EXPLICIT_IV, "big")
        clear = iv + plaintext
        return clear + self._aead.encrypt(self._salt + iv, b"", bytes(aad) + clear)

    def open(self, payload: BytesLike, aad: BytesLike) -> bytes:
        size = self._need(payload, _EXPLICIT_IV + _GCM_TAG)
        clear = payload[: size - _GCM_TAG]
        try:
            self._aead.decrypt(
                self._salt + payload[:_EXPLICIT_IV], payload[size - _GCM_TAG :],
                bytes(aad) + clear,
            )
        except InvalidTag:
            raise IntegrityError("bad_icv", "GMAC tag does not verify") from None
        return bytes(payload[_EXPLICIT_IV : size - _GCM_TAG])
