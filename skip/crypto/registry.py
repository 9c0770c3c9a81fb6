"""The algorithm registry: every ESP/AH cipher and integrity transform skip knows, by name and id.

Lookups go through :func:`get_cipher` and :func:`get_integrity` in one of two namespaces:
``"name"`` (RFC-style names such as ``aes-gcm-16`` or ``hmac-sha2-256-128``, case-insensitive)
and ``"ikev2"`` (IANA "IKEv2 Transform Type 1/3" ids, RFC 7296 section 3.3.2 and its
registry). SKIP's own Crypt/MAC Alg numbers are not a namespace here: the keying layer maps
them to these names (``skip/crypto/skip_numbers.py``).

Each record carries the sizes the engine needs to frame packets (key, salt, block, IV, ICV) and
builds a per-key context with ``new(key_material)``. Key material is ``key || salt`` for the
salted algorithms (RFC 3686, 4106, 4543, 7634), exactly as Linux and the RFCs lay it out; for
AES the key size is inferred from the length, or pinned by the sized names (``aes-256-gcm-16``).

Algorithms RFC 8221 forbids (DES, keyed MD5/SHA-1, HMAC-MD5) and 3DES stay available for SKIP
interoperability but are *legacy*: looking one up without ``allow_legacy=True`` fails with
``legacy_refused``, so nobody gets them by accident.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from cryptography.hazmat.decrepit.ciphers.algorithms import CAST5, Blowfish, TripleDES
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.ciphers.algorithms import AES

from skip.crypto.ciphers import (
    AeadContext,
    CbcContext,
    CbcIv32Context,
    CcmContext,
    CipherContext,
    CtrContext,
    GmacContext,
    NullContext,
    Rng,
    TruncatedGcmContext,
)
from skip.crypto.integrity import BytesLike, HmacContext, MacContext
from skip.crypto.keyed import KeyedHashContext
from skip.errors import AlgorithmError

NAMESPACES = ("name", "ikev2")
LEGACY_FLAG = "allow_legacy=True"


def _key_bytes(name: str, key_material: BytesLike) -> bytes:
    if not isinstance(key_material, bytes | bytearray | memoryview):
        raise AlgorithmError("bad_key", f"{name}: key material must be bytes")
    return bytes(key_material)


def _sizes_text(sizes: Iterable[int]) -> str:
    """``16 or 24 or 32``; a long unbroken run (RFC 2451's Blowfish, 5 to 56 bytes) as a
    range, so the message stays readable."""
    ordered = sorted(set(sizes))
    if len(ordered) > 3 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]} to {ordered[-1]}"
    return " or ".join(str(s) for s in ordered)


@dataclass(frozen=True, slots=True)
class CipherAlgorithm:
    """An ESP encryption transform (or combined mode) and how to key it.

    ``block_size`` is what ESP padding must align the plaintext to before ``new(...).seal``
    (1 for stream and counter modes; ESP's own 4-byte trailer alignment is the engine's job).
    ``encrypts`` is False for NULL and GMAC, whose payload stays readable.
    """

    name: str
    key_sizes: tuple[int, ...]
    salt_size: int
    block_size: int
    iv_size: int
    icv_size: int
    aead: bool
    legacy: bool
    rfc: str
    ikev2_id: int | None
    encrypts: bool
    _build: Callable[[bytes, bytes, Rng], CipherContext] = field(repr=False, compare=False)

    @property
    def key_size(self) -> int:
        """The default key size in bytes (the first listed; the smallest for AES), without
        the salt."""
        return self.key_sizes[0]

    @property
    def keymat_sizes(self) -> tuple[int, ...]:
        """Accepted lengths of ``key || salt``."""
        return tuple(k + self.salt_size for k in self.key_sizes)

    def new(self, key_material: BytesLike, *, rng: Rng = os.urandom) -> CipherContext:
        """A context for one key (``key || salt``); build it once per SA, not per packet.

        ``rng`` supplies CBC's random IV blocks (counter-IV algorithms do not use it).
        """
        material = _key_bytes(self.name, key_material)
        key_size = len(material) - self.salt_size
        if key_size not in self.key_sizes:
            salt = f" + {self.salt_size}-byte salt" if self.salt_size else ""
            raise AlgorithmError(
                "bad_key",
                f"{self.name} takes {_sizes_text(self.keymat_sizes)} bytes of key material "
                f"({_sizes_text(self.key_sizes)}-byte key{salt}), got {len(material)}",
            )
        return self._build(material[:key_size], material[key_size:], rng)


@dataclass(frozen=True, slots=True)
class IntegrityAlgorithm:
    """An AH/ESP integrity transform. ``key_sizes`` None means any non-empty key length."""

    name: str
    key_size: int
    key_sizes: tuple[int, ...] | None
    icv_size: int
    legacy: bool
    rfc: str
    ikev2_id: int | None
    hash_name: str
    _context: type[HmacContext | KeyedHashContext] = field(repr=False, compare=False)

    def new(self, key: BytesLike) -> MacContext:
        """A context for one key; build it once per SA, not per packet."""
        material = _key_bytes(self.name, key)
        if self.key_sizes is None:
            acceptable, expected = bool(material), "a non-empty key"
        else:
            acceptable = len(material) in self.key_sizes
            expected = f"a {_sizes_text(self.key_sizes)}-byte key"
        if not acceptable:
            raise AlgorithmError(
                "bad_key", f"{self.name} takes {expected}, got {len(material)} bytes"
            )
        return self._context(self.hash_name, material, self.icv_size)


# --- encryption ------------------------------------------------------------------------------

_AES_KEYS = (16, 24, 32)


def _des(key: bytes) -> TripleDES:
    # Single DES is EDE with three equal keys; cryptography deprecates 8-byte TripleDES keys.
    return TripleDES(key * 3)


def _truncated_gcm(tag: int) -> Callable[[bytes, bytes, Rng], CipherContext]:
    return lambda key, salt, rng: TruncatedGcmContext(AESGCM(key), AES(key), salt, tag)


def _ccm(tag: int) -> Callable[[bytes, bytes, Rng], CipherContext]:
    return lambda key, salt, rng: CcmContext(AESCCM(key, tag_length=tag), salt, tag)


#: RFC 2451 key lengths, 128 bits the default: Blowfish 40-448 bits, CAST-128 40-128 bits
_BLOWFISH_KEYS = (16, *(n for n in range(5, 57) if n != 16))
_CAST5_KEYS = (16, *range(5, 16))


def _cipher(name: str, keys: tuple[int, ...], salt: int, block: int, iv: int, icv: int,
            rfc: str, ikev2: int | None, build: Callable[[bytes, bytes, Rng], CipherContext],
            *, aead: bool = False, legacy: bool = False, encrypts: bool = True,
            ) -> CipherAlgorithm:
    return CipherAlgorithm(name, keys, salt, block, iv, icv, aead, legacy, rfc, ikev2, encrypts,
                           build)


_CIPHERS: tuple[CipherAlgorithm, ...] = (
    _cipher("null", (0,), 0, 1, 0, 0, "RFC 2410", 11, lambda k, s, r: NullContext(),
            encrypts=False),
    _cipher("des-cbc", (8,), 0, 8, 8, 0, "RFC 1829, RFC 2405", 2,
            lambda k, s, r: CbcContext(_des(k), 8, r), legacy=True),
    _cipher("des-cbc-iv32", (8,), 0, 8, 4, 0, "RFC 1829", 9,
            lambda k, s, r: CbcIv32Context(_des(k), r), legacy=True),
    _cipher("3des-cbc", (24,), 0, 8, 8, 0, "RFC 1851, RFC 2451", 3,
            lambda k, s, r: CbcContext(TripleDES(k), 8, r), legacy=True),
    _cipher("aes-cbc", _AES_KEYS, 0, 16, 16, 0, "RFC 3602", 12,
            lambda k, s, r: CbcContext(AES(k), 16, r)),
    _cipher("aes-ctr", _AES_KEYS, 4, 1, 8, 0, "RFC 3686", 13,
            lambda k, s, r: CtrContext(AES(k), s)),
    _cipher("blowfish-cbc", _BLOWFISH_KEYS, 0, 8, 8, 0, "RFC 2451", 7,
            lambda k, s, r: CbcContext(Blowfish(k), 8, r), legacy=True),
    _cipher("cast5-cbc", _CAST5_KEYS, 0, 8, 8, 0, "RFC 2451, RFC 2144", 6,
            lambda k, s, r: CbcContext(CAST5(k), 8, r), legacy=True),
    _cipher("aes-ccm-8", _AES_KEYS, 3, 1, 8, 8, "RFC 4309", 14, _ccm(8), aead=True),
    _cipher("aes-ccm-12", _AES_KEYS, 3, 1, 8, 12, "RFC 4309", 15, _ccm(12), aead=True),
    _cipher("aes-ccm-16", _AES_KEYS, 3, 1, 8, 16, "RFC 4309", 16, _ccm(16), aead=True),
    _cipher("aes-gcm-8", _AES_KEYS, 4, 1, 8, 8, "RFC 4106", 18, _truncated_gcm(8), aead=True),
    _cipher("aes-gcm-12", _AES_KEYS, 4, 1, 8, 12, "RFC 4106", 19, _truncated_gcm(12),
            aead=True),
    _cipher("aes-gcm-16", _AES_KEYS, 4, 1, 8, 16, "RFC 4106", 20,
            lambda k, s, r: AeadContext(AESGCM(k), s), aead=True),
    _cipher("aes-gmac", _AES_KEYS, 4, 1, 8, 16, "RFC 4543", 21,
            lambda k, s, r: GmacContext(AESGCM(k), s), aead=True, encrypts=False),
    _cipher("chacha20-poly1305", (32,), 4, 1, 8, 16, "RFC 7634", 28,
            lambda k, s, r: AeadContext(ChaCha20Poly1305(k), s), aead=True),
)

# Sized AES names (aes-128-cbc, aes-256-gcm-16, ...) pin one key size; the IKEv2 namespace
# carries the size in a separate Key Length attribute, so ids map to the unsized records.
_SIZED_CIPHERS = tuple(
    replace(alg, name=f"aes-{8 * size}-{alg.name.removeprefix('aes-')}", key_sizes=(size,))
    for alg in _CIPHERS
    if alg.key_sizes == _AES_KEYS
    for size in _AES_KEYS
)

# --- integrity -------------------------------------------------------------------------------

_INTEGRITY: tuple[IntegrityAlgorithm, ...] = (
    IntegrityAlgorithm("keyed-md5", 16, None, 16, True, "RFC 1828", 4, "md5", KeyedHashContext),
    IntegrityAlgorithm("keyed-sha1", 20, None, 20, True, "RFC 1852", None, "sha1",
                       KeyedHashContext),
    IntegrityAlgorithm("hmac-md5-128", 16, None, 16, True, "RFC 2085", 6, "md5", HmacContext),
    IntegrityAlgorithm("hmac-md5-96", 16, (16,), 12, True, "RFC 2403", 1, "md5", HmacContext),
    IntegrityAlgorithm("hmac-sha1-96", 20, (20,), 12, False, "RFC 2404", 2, "sha1",
                       HmacContext),
    IntegrityAlgorithm("hmac-sha2-256-128", 32, (32,), 16, False, "RFC 4868", 12, "sha256",
                       HmacContext),
    IntegrityAlgorithm("hmac-sha2-384-192", 48, (48,), 24, False, "RFC 4868", 13, "sha384",
                       HmacContext),
    IntegrityAlgorithm("hmac-sha2-512-256", 64, (64,), 32, False, "RFC 4868", 14, "sha512",
                       HmacContext),
)


_CIPHER_NAMES = {a.name: a for a in (*_CIPHERS, *_SIZED_CIPHERS)}
_CIPHER_IDS = {a.ikev2_id: a for a in _CIPHERS if a.ikev2_id is not None}
_INTEGRITY_NAMES = {a.name: a for a in _INTEGRITY}
_INTEGRITY_IDS = {a.ikev2_id: a for a in _INTEGRITY if a.ikev2_id is not None}

_Algorithm = TypeVar("_Algorithm", CipherAlgorithm, IntegrityAlgorithm)


def _lookup(kind: str, by_name: dict[str, _Algorithm], by_id: dict[int, _Algorithm],
            key: str | int, namespace: str, allow_legacy: bool) -> _Algorithm:
    if namespace == "name" and isinstance(key, str):
        found = by_name.get(key.lower())
    elif namespace == "ikev2" and isinstance(key, int) and not isinstance(key, bool):
        found = by_id.get(key)
    elif namespace not in NAMESPACES:
        raise AlgorithmError(
            "unsupported_algorithm",
            f"unknown namespace {namespace!r}; use one of {NAMESPACES} (SKIP algorithm "
            "numbers are mapped to names by skip.crypto.skip_numbers)",
        )
    else:
        found = None
    if found is None:
        raise AlgorithmError(
            "unsupported_algorithm", f"no {kind} algorithm {key!r} in namespace {namespace!r}"
        )
    if found.legacy and not allow_legacy:
        raise AlgorithmError(
            "legacy_refused",
            f"{found.name} ({found.rfc}) is a legacy algorithm and refused by default; "
            f"pass {LEGACY_FLAG} (the legacy SKIP profile) to use it anyway",
        )
    return found


def get_cipher(name_or_id: str | int, *, namespace: str = "name",
               allow_legacy: bool = False) -> CipherAlgorithm:
    """The encryption transform called ``name_or_id`` in ``namespace``.

    Raises AlgorithmError("unsupported_algorithm") for an unknown one and
    AlgorithmError("legacy_refused") for a legacy one unless ``allow_legacy`` is set.
    """
    return _lookup("encryption", _CIPHER_NAMES, _CIPHER_IDS, name_or_id, namespace,
                   allow_legacy)


def get_integrity(name_or_id: str | int, *, namespace: str = "name",
                  allow_legacy: bool = False) -> IntegrityAlgorithm:
    """The integrity transform called ``name_or_id`` in ``namespace`` (errors as get_cipher)."""
    return _lookup("integrity", _INTEGRITY_NAMES, _INTEGRITY_IDS, name_or_id, namespace,
                   allow_legacy)


def cipher_algorithms(*, sized: bool = False) -> tuple[CipherAlgorithm, ...]:
    """Every encryption transform (with ``sized``, also the aes-128/192/256-* names)."""
    return (*_CIPHERS, *_SIZED_CIPHERS) if sized else _CIPHERS


def integrity_algorithms() -> tuple[IntegrityAlgorithm, ...]:
    """Every integrity transform."""
    return _INTEGRITY
