"""Diffie-Hellman groups: the one place that does key agreement arithmetic.

SKIP's master key Kij is a static-static Diffie-Hellman secret, so the whole protocol rests on
three things done right here: well-known parameters copied exactly, private exponents long
enough for the group, and peer public values checked before use (a value of 1, p-1 or one
outside the prime-order subgroup would leak bits of our long-term private key or force a
predictable Kij).

Finite-field arithmetic for the RFC 3526 / RFC 7919 groups runs in OpenSSL through
``cryptography`` (a 2048-bit exchange costs about 0.2-0.5 ms there against ~20 ms with a
full-length Python ``pow``); the SKIP primes and custom groups use Python's ``pow``, because
OpenSSL re-tests the primality of moduli it does not know by name whenever a key object is
built (see :func:`_ffdh_power`). ``cryptography`` marks finite-field DH deprecated, so its use
is confined to :func:`_ffdh_power` here (plus the PKCS #8 encryption of DH key files in
skip.pki.dhkey): if the backend has to change, only those change.

Byte conventions (shared by keying, pki and the wire formats):

- MODP private values are the exponent, big-endian: ``private_size`` bytes for keys made here,
  up to ``public_size`` bytes for keys imported from elsewhere; public values and shared
  secrets are big-endian and left-padded to the byte length of p (``public_size``).
- X25519 / X448 private, public and shared values are the raw 32 / 56 byte strings of RFC 7748.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dh, x448, x25519
from cryptography.utils import CryptographyDeprecationWarning

from skip.errors import KeyingError

Rng = Callable[[int], bytes]

MIN_MODP_BITS = 1024
"""Smallest modulus accepted from a peer (draft-06 §2.1: 1024 bits for 128-bit keys)."""

MIN_NEW_MODP_BITS = 2048
"""Smallest modulus used by default when *we* make a new key (1024 bits is ~80-bit security)."""

MIN_EXPONENT_BITS = 256
"""draft-06 §2.3: private exponents of at least 256 bits for 128-bit traffic keys."""

MAX_CUSTOM_MODP_BITS = 8192
"""Largest modulus :func:`validate_parameters` will test. Primality testing costs grow with
the cube of the size (about a second at 2048 bits, tens of seconds at 8192), and a UDH value
or certificate from anyone may carry a p of up to 65535 bytes: hours of Miller-Rabin. 8192
bits is the largest well-known group (ffdhe8192), so nothing legitimate is bigger."""


def _hex(text: str) -> int:
    return int("".join(text.split()), 16)


def _strength(bits: int) -> int:
    """Symmetric-equivalent security of a MODP group (NIST SP 800-57 style estimates).

    Used to size private exponents (twice the strength, at least 256 bits) and to let policy
    compare MODP and X25519/X448 groups on one scale.
    """
    for limit, strength in (
        (1024, 80),
        (1536, 96),
        (2048, 112),
        (3072, 128),
        (4096, 152),
        (6144, 176),
    ):
        if bits <= limit:
            return strength
    return 200


@dataclass(frozen=True, slots=True, eq=False)
class PreparedPrivate:
    """A private value in the form agreement uses (see :meth:`DHGroup.prepare`). Holds the
    secret: never logged (no repr of the value)."""

    group: DHGroup
    handle: _EcxPrivate | int = field(repr=False)


@dataclass(frozen=True)
class DHGroup:
    """One Diffie-Hellman group and the operations SKIP needs on it.

    ``q`` is the prime order of the subgroup ``g`` generates, when that subgroup is smaller
    than the whole group (so membership can be checked as y^q = 1); it is None when ``g``
    generates the whole multiplicative group (skip-2048) or for X25519/X448.
    """

    name: str
    kind: Literal["modp", "ecx"]
    p: int
    g: int
    q: int | None
    bits: int
    public_size: int
    private_size: int
    strength: int

    # --- key generation ------------------------------------------------------------------

    def generate_private(self, rng: Rng = os.urandom) -> bytes:
        """A fresh private value.

        MODP exponents normally have their top bit set, so every key of a group has the same
        length and full strength (never a short exponent by chance). In a group whose subgroup
        order q is shorter than that (X9.42 groups such as RFC 5114's 224-bit q) the exponent
        is drawn uniformly from [2, q) instead.
        """
        if self.kind == "ecx":
            return _read_rng(rng, self.private_size)
        if self.q is not None and self.q.bit_length() <= 8 * self.private_size:
            excess = 8 * self.private_size - self.q.bit_length()
            while True:
                x = int.from_bytes(_read_rng(rng, self.private_size)) >> excess
                if 2 <= x < self.q:
                    return x.to_bytes(self.private_size)
        raw = _read_rng(rng, self.private_size)
        return bytes([raw[0] | 0x80]) + raw[1:]

    def public_value(self, private: bytes) -> bytes:
        """g^x (MODP, padded to ``public_size``) or the X25519/X448 public key."""
        if self.kind == "ecx":
            return _ecx_private(self, private).public_key().public_bytes_raw()
        x = self._exponent(private)
        return _ffdh_power(self.p, self.g, x, self.q is not None).to_bytes(self.public_size)

    def shared_secret(self, private: bytes, peer_public: bytes) -> bytes:
        """The raw agreed value, after :meth:`validate_public` on the peer's value."""
        return self.agree(self.prepare(private), peer_public)

    def prepare(self, private: bytes) -> PreparedPrivate:
        """A private value made ready for many agreements: what a long-term key is held as.

        For X25519/X448 that is the library's key object, whose construction derives the
        public key and costs more than an exchange (57 us against 40 us for X25519); for
        MODP the exponent as an integer."""
        if self.kind == "ecx":
            return PreparedPrivate(self, _ecx_private(self, private))
        return PreparedPrivate(self, self._exponent(private))

    def agree(self, prepared: PreparedPrivate, peer_public: bytes) -> bytes:
        """:meth:`shared_secret` with a prepared private value.

        X25519/X448: the exchange itself is the low-order check (OpenSSL refuses the
        all-zero output), so the peer's value is not exchanged twice (first contact pays
        one X25519, not two)."""
        if prepared.group is not self:
            raise KeyingError("bad_key", f"a {prepared.group.name} key used in {self.name}")
        handle = prepared.handle
        if self.kind == "ecx":
            if len(peer_public) != self.public_size:
                self.validate_public(peer_public)  # raises, with the length in the message
            assert not isinstance(handle, int)
            try:
                return _ecx_exchange(self, handle, peer_public)
            except ValueError as exc:  # low-order point: the all-zero output (RFC 7748 §6)
                raise KeyingError("bad_public_value", f"{self.name}: low-order point") from exc
        self.validate_public(peer_public)
        assert isinstance(handle, int)
        y = int.from_bytes(peer_public)
        return _ffdh_power(self.p, y, handle, self.q is not None).to_bytes(self.public_size)

    def prepared_public(self, prepared: PreparedPrivate) -> bytes:
        """The public value of a prepared private value (no second key derivation)."""
        handle = prepared.handle
        if isinstance(handle, int):
            return _ffdh_power(self.p, self.g, handle, self.q is not None).to_bytes(
                self.public_size)
        return handle.public_key().public_bytes_raw()

    # --- checks ---------------------------------------------------------------------------

    def validate_public(self, peer_public: bytes) -> None:
        """Refuse values that would make Kij predictable or leak private-key bits.

        MODP: 1 < y < p-1 and, where the subgroup order q is known, y^q = 1 (a value outside
        the subgroup is how small-subgroup attacks extract key bits). X25519/X448: right length
        and not a low-order point (those force an all-zero shared secret whatever our key is).
        """
        if len(peer_public) != self.public_size and not (
            self.kind == "modp" and 0 < len(peer_public) < self.public_size
        ):
            raise KeyingError(
                "bad_public_value",
                f"{self.name}: public value of {len(peer_public)} bytes, "
                f"expected {self.public_size}",
            )
        if self.kind == "ecx":
            _ecx_check_order(self, peer_public)
            return
        y = int.from_bytes(peer_public)
        if not 1 < y < self.p - 1:
            raise KeyingError("bad_public_value", f"{self.name}: public value out of range")
        if self.q is not None and not _ffdh_in_subgroup(self.p, self.q, y):
            raise KeyingError(
                "bad_public_value", f"{self.name}: public value outside the prime-order subgroup"
            )

    def _exponent(self, private: bytes) -> int:
        """Keys we generate are ``private_size`` bytes; keys imported from elsewhere (OpenSSL
        uses longer exponents) may be up to the modulus size, as long as 1 < x < q (or p-1)."""
        x = int.from_bytes(private)
        limit = self.q if self.q is not None else self.p - 1
        if not 0 < len(private) <= self.public_size or not 1 < x < limit:
            raise KeyingError("bad_key", f"{self.name}: private value out of range")
        return x


def modp_group(name: str, p: int, g: int, q: int | None) -> DHGroup:
    """A MODP group object with sizes derived from p (no validation: see
    :func:`validate_parameters` for parameters that do not come from this module)."""
    bits = p.bit_length()
    strength = _strength(bits)
    exponent_bits = max(MIN_EXPONENT_BITS, 2 * strength)
    if q is not None:  # exponents beyond q add nothing
        exponent_bits = min(exponent_bits, q.bit_length())
    return DHGroup(
        name=name,
        kind="modp",
        p=p,
        g=g,
        q=q,
        bits=bits,
        public_size=(bits + 7) // 8,
        private_size=(exponent_bits + 7) // 8,
        strength=strength,
    )


def group_for(p: int, g: int) -> DHGroup | None:
    """The well-known group with exactly these parameters, or None.

    Certificates carry p and g, not a group name; this is how they map back to a group whose
    parameters need no primality testing."""
    return _BY_PARAMETERS.get((p, g))


def validate_parameters(
    p: int, g: int, q: int | None = None, *, rng: Rng = os.urandom, name: str = "custom"
) -> DHGroup:
    """Check parameters that are not well known and return them as a group.

    Costly (probabilistic primality tests with Python integers: about a second for 2048
    bits), so the PKI only calls it when policy allows groups outside :data:`GROUPS`.
    Accepts a safe prime (q = (p-1)/2 prime) or an X9.42-style group where q is given.
    Raises ``KeyingError("bad_group")``.
    """

    def refuse(why: str) -> KeyingError:
        return KeyingError("bad_group", f"{name}: {why}")

    if p.bit_length() < MIN_MODP_BITS:
        raise refuse(f"modulus of {p.bit_length()} bits is below {MIN_MODP_BITS}")
    if p.bit_length() > MAX_CUSTOM_MODP_BITS:
        raise refuse(
            f"modulus of {p.bit_length()} bits is above {MAX_CUSTOM_MODP_BITS} "
            "(custom groups are primality-tested; larger ones would take hours)"
        )
    if not 1 < g < p - 1:
        raise refuse("generator out of range")
    # The order checks use Python's pow, never _ffdh_power: a generator of the wrong order
    # makes g^q come out as 1 or p-1, results OpenSSL refuses (and cryptography panics on).
    if pow(g, 2, p) == 1:
        raise refuse("generator of order 2")
    safe_q = (p - 1) // 2
    if q is None or q == safe_q:
        g_to_q = pow(g, safe_q, p)
        if g_to_q not in (1, p - 1):  # in a safe-prime group every g^q is +-1
            raise refuse("modulus is not a safe prime")
        if q is not None and g_to_q != 1:  # X9.42 says g generates the order-q subgroup
            raise refuse("g does not generate the order-q subgroup")
        if p % 2 == 0 or not _probably_prime(safe_q, rng) or not _pocklington(p, safe_q):
            raise refuse("modulus is not a safe prime")
        # g generates the order-q subgroup iff it is a quadratic residue; else the whole group.
        return modp_group(name, p, g, safe_q if g_to_q == 1 else None)
    if q.bit_length() < 2 * _strength(p.bit_length()) or (p - 1) % q:
        raise refuse("subgroup order q is too small or does not divide p-1")
    if pow(g, q, p) != 1:
        raise refuse("g does not generate the order-q subgroup")
    if not _probably_prime(q, rng) or not _probably_prime(p, rng):
        raise refuse("p or q is not prime")
    return modp_group(name, p, g, q)


# --- primality (only for parameters from outside) ------------------------------------------

_MR_ROUNDS = 32  # error <= 4^-32 even for adversarially chosen composites


def _probably_prime(n: int, rng: Rng) -> bool:
    if n < 3 or n % 2 == 0:
        return n == 2
    for small in (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        if n % small == 0:
            return n == small
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    size = (n.bit_length() + 7) // 8 + 8
    for _ in range(_MR_ROUNDS):
        a = 2 + int.from_bytes(_read_rng(rng, size)) % (n - 3)
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _pocklington(p: int, q: int) -> bool:
    """With q prime and p = 2q + 1, one witness proves p prime (Pocklington's criterion:
    the factored part 2q of p-1 exceeds sqrt(p)); cheaper than Miller-Rabin on p."""
    for a in (2, 3, 5, 7, 11, 13):
        if pow(a, p - 1, p) != 1:
            return False
        if _gcd(pow(a, 2, p) - 1, p) == 1:
            return True
    return False


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def _read_rng(rng: Rng, n: int) -> bytes:
    data = rng(n)
    if len(data) != n:
        raise KeyingError("bad_key", f"random source returned {len(data)} bytes, wanted {n}")
    return data


# --- the backend (cryptography / OpenSSL) ---------------------------------------------------


@functools.lru_cache(maxsize=16)
def _ffdh_parameters(p: int) -> dh.DHParameterNumbers:
    # g is irrelevant to the raw power operation below; 2 keeps the object valid for any p.
    with quiet_ffdh_deprecation():
        return dh.DHParameterNumbers(p, 2)


@contextlib.contextmanager
def quiet_ffdh_deprecation() -> Iterator[None]:
    """Silence cryptography's FFDH deprecation notice: the dependency is known and documented,
    and the notice would otherwise reach every user of skip. Used here and around the PKCS #8
    encryption of DH key files (skip.pki.dhkey), the only other FFDH use."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        yield


def _ffdh_power(p: int, base: int, exponent: int, prime_order: bool) -> int:
    """base^exponent mod p.

    OpenSSL runs it as a DH "exchange" with the exponent as private key, but only for the
    moduli it knows as named groups (RFC 3526 / RFC 7919): for any other modulus it re-tests
    primality whenever a key object is built (about 175 ms for the 2048-bit SKIP prime),
    which makes Python's ``pow`` (about 2 ms with a 256-bit exponent) the faster choice there.
    OpenSSL refuses results of 1 or p-1 (and cryptography would abort), so callers only pass
    bases whose powers cannot be +-1: the generator, validated peer values, or the y^(q+1)
    trick of :func:`_ffdh_in_subgroup`. That guarantee needs a base in a subgroup of prime
    order q and an exponent in 1 < x < q, so ``prime_order`` must say whether the group has
    one: a custom group over an RFC 3526 prime whose g generates the whole group (q None) can
    meet g^x = p-1, and there Python's ``pow`` runs instead."""
    if not prime_order or p not in _OPENSSL_NAMED:
        return pow(base, exponent, p)
    numbers = _ffdh_parameters(p)
    with quiet_ffdh_deprecation():
        key = dh.DHPrivateNumbers(exponent, dh.DHPublicNumbers(2, numbers)).private_key()
        peer = dh.DHPublicNumbers(base, numbers).public_key()
        try:
            return int.from_bytes(key.exchange(peer))
        except ValueError as exc:
            raise KeyingError("bad_public_value", "modular exponentiation refused") from exc


def _ffdh_in_subgroup(p: int, q: int, y: int) -> bool:
    """y^q = 1, computed as y^(q+1) = y: the direct form would produce 1, which OpenSSL
    refuses to output; y^(q+1) is y for members and p-y for the rest."""
    return _ffdh_power(p, y, q + 1, prime_order=True) == y


_EcxPrivate = x25519.X25519PrivateKey | x448.X448PrivateKey
_EcxPublic = x25519.X25519PublicKey | x448.X448PublicKey
_ECX: dict[str, type[x25519.X25519PrivateKey] | type[x448.X448PrivateKey]] = {
    "x25519": x25519.X25519PrivateKey,
    "x448": x448.X448PrivateKey,
}
_ECX_PUBLIC: dict[str, type[x25519.X25519PublicKey] | type[x448.X448PublicKey]] = {
    "x25519": x25519.X25519PublicKey,
    "x448": x448.X448PublicKey,
}


def _ecx_private(group: DHGroup, private: bytes) -> _EcxPrivate:
    if len(private) != group.private_size:
        raise KeyingError(
            "bad_key", f"{group.name}: private value must be {group.private_size} bytes"
        )
    try:
        return _ECX[group.name].from_private_bytes(private)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyingError("bad_key", f"{group.name}: unusable private value") from exc


def _ecx_public(group: DHGroup, public: bytes) -> _EcxPublic:
    try:
        return _ECX_PUBLIC[group.name].from_public_bytes(public)
    except ValueError as exc:
        raise KeyingError("bad_public_value", f"{group.name}: malformed public value") from exc


@functools.lru_cache(maxsize=2)
def _ecx_probe(name: str) -> _EcxPrivate:
    return _ECX[name].generate()


def _ecx_exchange(group: DHGroup, key: _EcxPrivate, public: bytes) -> bytes:
    """X25519 / X448 agreement of ``key`` with the peer's raw ``public`` value, both of
    ``group``'s curve. A malformed value raises KeyingError; a low-order point gets OpenSSL's
    ValueError, which the callers translate."""
    peer = _ecx_public(group, public)
    if isinstance(key, x25519.X25519PrivateKey) and isinstance(peer, x25519.X25519PublicKey):
        return key.exchange(peer)
    if isinstance(key, x448.X448PrivateKey) and isinstance(peer, x448.X448PublicKey):
        return key.exchange(peer)
    # Unreachable: the key and the value are both made from group.name.
    raise KeyingError("bad_key", f"{group.name}: private and public values of different curves")


def _ecx_check_order(group: DHGroup, public: bytes) -> None:
    """A low-order point yields the all-zero secret for every (clamped) private key, so one
    exchange with a throw-away key detects it; OpenSSL reports that case as ValueError."""
    try:
        _ecx_exchange(group, _ecx_probe(group.name), public)
    except ValueError as exc:
        raise KeyingError("bad_public_value", f"{group.name}: low-order point") from exc


# --- the well-known groups -------------------------------------------------------------------
# SKIP primes: draft-ietf-ipsec-skip-06 §5.3 (derivable from the Gandhi seed, see tests).
# MODP: RFC 3526 §2-5. FFDHE: RFC 7919 Appendix A. Every value is re-derived from its RFC
# formula and compared with OpenSSL's built-in copy in tests/test_dh.py.

_SKIP1024 = _hex(
    """
    F488FD584E49DBCD20B49DE49107366B336C380D451D0F7C88B31C7C5B2D8EF6
    F3C923C043F0A55B188D8EBB558CB85D38D334FD7C175743A31D186CDE33212C
    B52AFF3CE1B1294018118D7C84A70A72D686C40319C807297ACA950CD9969FAB
    D00A509B0246D3083D66A45D419F9C7CBD894B221926BAABA25EC355E92F78C7
    """
)
_SKIP2048 = _hex(
    """
    F64257B7087F081772A2BAD6A942F305E8F95311394FB6F16EB94B3820DA01A7
    56A314E98F4055F3D007C6CB43A994ADF74C648649F80C83BD65E917D4A1D350
    F8F5595FDC76524F3D3D8DDBCE99E1579259CDFDB8AE744FC5FC76BC83C54730
    61CE7CC966FF15F9BBFD915EC701AAD35B9E8DA0A5723AD41AF0BF4600582BE5
    F488FD584E49DBCD20B49DE49107366B336C380D451D0F7C88B31C7C5B2D8EF6
    F3C923C043F0A55B188D8EBB558CB85D38D334FD7C175743A31D186CDE33212C
    B52AFF3CE1B1294018118D7C84A70A72D686C40319C807297ACA950CD9969FAB
    D00A509B0246D3083D66A45D419F9C7CBD894B221926BAABA25EC355E9320B3B
    """
)
_MODP1536 = _hex(
    """
    FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74
    020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437
    4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED
    EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05
    98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB
    9ED529077096966D670C354E4ABC9804F1746C08CA237327FFFFFFFFFFFFFFFF
    """
)
_MODP2048 = _hex(
    """
    FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74
    020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437
    4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED
    EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05
    98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB
    9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B
    E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718
    3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF
    """
)
_MODP3072 = _hex(
    """
    FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74
    020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437
    4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED
    EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05
    98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB
    9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B
    E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718
    3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33
    A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7
    ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864
    D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2
    08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF
    """
)
_MODP4096 = _hex(
    """
    FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74
    020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437
    4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED
    EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05
    98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB
    9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B
    E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718
    3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33
    A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7
    ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864
    D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2
    08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7
    88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8
    DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2
    233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9
    93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF
    """
)
_FFDHE2048 = _hex(
    """
    FFFFFFFFFFFFFFFFADF85458A2BB4A9AAFDC5620273D3CF1D8B9C583CE2D3695
    A9E13641146433FBCC939DCE249B3EF97D2FE363630C75D8F681B202AEC4617A
    D3DF1ED5D5FD65612433F51F5F066ED0856365553DED1AF3B557135E7F57C935
    984F0C70E0E68B77E2A689DAF3EFE8721DF158A136ADE73530ACCA4F483A797A
    BC0AB182B324FB61D108A94BB2C8E3FBB96ADAB760D7F4681D4F42A3DE394DF4
    AE56EDE76372BB190B07A7C8EE0A6D709E02FCE1CDF7E2ECC03404CD28342F61
    9172FE9CE98583FF8E4F1232EEF28183C3FE3B1B4C6FAD733BB5FCBC2EC22005
    C58EF1837D1683B2C6F34A26C1B2EFFA886B423861285C97FFFFFFFFFFFFFFFF
    """
)
_FFDHE3072 = _hex(
    """
    FFFFFFFFFFFFFFFFADF85458A2BB4A9AAFDC5620273D3CF1D8B9C583CE2D3695
    A9E13641146433FBCC939DCE249B3EF97D2FE363630C75D8F681B202AEC4617A
    D3DF1ED5D5FD65612433F51F5F066ED0856365553DED1AF3B557135E7F57C935
    984F0C70E0E68B77E2A689DAF3EFE8721DF158A136ADE73530ACCA4F483A797A
    BC0AB182B324FB61D108A94BB2C8E3FBB96ADAB760D7F4681D4F42A3DE394DF4
    AE56EDE76372BB190B07A7C8EE0A6D709E02FCE1CDF7E2ECC03404CD28342F61
    9172FE9CE98583FF8E4F1232EEF28183C3FE3B1B4C6FAD733BB5FCBC2EC22005
    C58EF1837D1683B2C6F34A26C1B2EFFA886B4238611FCFDCDE355B3B6519035B
    BC34F4DEF99C023861B46FC9D6E6C9077AD91D2691F7F7EE598CB0FAC186D91C
    AEFE130985139270B4130C93BC437944F4FD4452E2D74DD364F2E21E71F54BFF
    5CAE82AB9C9DF69EE86D2BC522363A0DABC521979B0DEADA1DBF9A42D5C4484E
    0ABCD06BFA53DDEF3C1B20EE3FD59D7C25E41D2B66C62E37FFFFFFFFFFFFFFFF
    """
)
_FFDHE4096 = _hex(
    """
    FFFFFFFFFFFFFFFFADF85458A2BB4A9AAFDC5620273D3CF1D8B9C583CE2D3695
    A9E13641146433FBCC939DCE249B3EF97D2FE363630C75D8F681B202AEC4617A
    D3DF1ED5D5FD65612433F51F5F066ED0856365553DED1AF3B557135E7F57C935
    984F0C70E0E68B77E2A689DAF3EFE8721DF158A136ADE73530ACCA4F483A797A
    BC0AB182B324FB61D108A94BB2C8E3FBB96ADAB760D7F4681D4F42A3DE394DF4
    AE56EDE76372BB190B07A7C8EE0A6D709E02FCE1CDF7E2ECC03404CD28342F61
    9172FE9CE98583FF8E4F1232EEF28183C3FE3B1B4C6FAD733BB5FCBC2EC22005
    C58EF1837D1683B2C6F34A26C1B2EFFA886B4238611FCFDCDE355B3B6519035B
    BC34F4DEF99C023861B46FC9D6E6C9077AD91D2691F7F7EE598CB0FAC186D91C
    AEFE130985139270B4130C93BC437944F4FD4452E2D74DD364F2E21E71F54BFF
    5CAE82AB9C9DF69EE86D2BC522363A0DABC521979B0DEADA1DBF9A42D5C4484E
    0ABCD06BFA53DDEF3C1B20EE3FD59D7C25E41D2B669E1EF16E6F52C3164DF4FB
    7930E9E4E58857B6AC7D5F42D69F6D187763CF1D5503400487F55BA57E31CC7A
    7135C886EFB4318AED6A1E012D9E6832A907600A918130C46DC778F971AD0038
    092999A333CB8B7A1A1DB93D7140003C2A4ECEA9F98D0ACC0A8291CDCEC97DCF
    8EC9B55A7F88A46B4DB5A851F44182E1C68A007E5E655F6AFFFFFFFFFFFFFFFF
    """
)
_FFDHE6144 = _hex(
    """
    FFFFFFFFFFFFFFFFADF85458A2BB4A9AAFDC5620273D3CF1D8B9C583CE2D3695
    A9E13641146433FBCC939DCE249B3EF97D2FE363630C75D8F681B202AEC4617A
    D3DF1ED5D5FD65612433F51F5F066ED0856365553DED1AF3B557135E7F57C935
    984F0C70E0E68B77E2A689DAF3EFE8721DF158A136ADE73530ACCA4F483A797A
    BC0AB182B324FB61D108A94BB2C8E3FBB96ADAB760D7F4681D4F42A3DE394DF4
    AE56EDE76372BB190B07A7C8EE0A6D709E02FCE1CDF7E2ECC03404CD28342F61
    9172FE9CE98583FF8E4F1232EEF28183C3FE3B1B4C6FAD733BB5FCBC2EC22005
    C58EF1837D1683B2C6F34A26C1B2EFFA886B4238611FCFDCDE355B3B6519035B
    BC34F4DEF99C023861B46FC9D6E6C9077AD91D2691F7F7EE598CB0FAC186D91C
    AEFE130985139270B4130C93BC437944F4FD4452E2D74DD364F2E21E71F54BFF
    5CAE82AB9C9DF69EE86D2BC522363A0DABC521979B0DEADA1DBF9A42D5C4484E
    0ABCD06BFA53DDEF3C1B20EE3FD59D7C25E41D2B669E1EF16E6F52C3164DF4FB
    7930E9E4E58857B6AC7D5F42D69F6D187763CF1D5503400487F55BA57E31CC7A
    7135C886EFB4318AED6A1E012D9E6832A907600A918130C46DC778F971AD0038
    092999A333CB8B7A1A1DB93D7140003C2A4ECEA9F98D0ACC0A8291CDCEC97DCF
    8EC9B55A7F88A46B4DB5A851F44182E1C68A007E5E0DD9020BFD64B645036C7A
    4E677D2C38532A3A23BA4442CAF53EA63BB454329B7624C8917BDD64B1C0FD4C
    B38E8C334C701C3ACDAD0657FCCFEC719B1F5C3E4E46041F388147FB4CFDB477
    A52471F7A9A96910B855322EDB6340D8A00EF092350511E30ABEC1FFF9E3A26E
    7FB29F8C183023C3587E38DA0077D9B4763E4E4B94B2BBC194C6651E77CAF992
    EEAAC0232A281BF6B3A739C1226116820AE8DB5847A67CBEF9C9091B462D538C
    D72B03746AE77F5E62292C311562A846505DC82DB854338AE49F5235C95B9117
    8CCF2DD5CACEF403EC9D1810C6272B045B3B71F9DC6B80D63FDD4A8E9ADB1E69
    62A69526D43161C1A41D570D7938DAD4A40E329CD0E40E65FFFFFFFFFFFFFFFF
    """
)
_FFDHE8192 = _hex(
    """
    FFFFFFFFFFFFFFFFADF85458A2BB4A9AAFDC5620273D3CF1D8B9C583CE2D3695
    A9E13641146433FBCC939DCE249B3EF97D2FE363630C75D8F681B202AEC4617A
    D3DF1ED5D5FD65612433F51F5F066ED0856365553DED1AF3B557135E7F57C935
    984F0C70E0E68B77E2A689DAF3EFE8721DF158A136ADE73530ACCA4F483A797A
    BC0AB182B324FB61D108A94BB2C8E3FBB96ADAB760D7F4681D4F42A3DE394DF4
    AE56EDE76372BB190B07A7C8EE0A6D709E02FCE1CDF7E2ECC03404CD28342F61
    9172FE9CE98583FF8E4F1232EEF28183C3FE3B1B4C6FAD733BB5FCBC2EC22005
    C58EF1837D1683B2C6F34A26C1B2EFFA886B4238611FCFDCDE355B3B6519035B
    BC34F4DEF99C023861B46FC9D6E6C9077AD91D2691F7F7EE598CB0FAC186D91C
    AEFE130985139270B4130C93BC437944F4FD4452E2D74DD364F2E21E71F54BFF
    5CAE82AB9C9DF69EE86D2BC522363A0DABC521979B0DEADA1DBF9A42D5C4484E
    0ABCD06BFA53DDEF3C1B20EE3FD59D7C25E41D2B669E1EF16E6F52C3164DF4FB
    7930E9E4E58857B6AC7D5F42D69F6D187763CF1D5503400487F55BA57E31CC7A
    7135C886EFB4318AED6A1E012D9E6832A907600A918130C46DC778F971AD0038
    092999A333CB8B7A1A1DB93D7140003C2A4ECEA9F98D0ACC0A8291CDCEC97DCF
    8EC9B55A7F88A46B4DB5A851F44182E1C68A007E5E0DD9020BFD64B645036C7A
    4E677D2C38532A3A23BA4442CAF53EA63BB454329B7624C8917BDD64B1C0FD4C
    B38E8C334C701C3ACDAD0657FCCFEC719B1F5C3E4E46041F388147FB4CFDB477
    A52471F7A9A96910B855322EDB6340D8A00EF092350511E30ABEC1FFF9E3A26E
    7FB29F8C183023C3587E38DA0077D9B4763E4E4B94B2BBC194C6651E77CAF992
    EEAAC0232A281BF6B3A739C1226116820AE8DB5847A67CBEF9C9091B462D538C
    D72B03746AE77F5E62292C311562A846505DC82DB854338AE49F5235C95B9117
    8CCF2DD5CACEF403EC9D1810C6272B045B3B71F9DC6B80D63FDD4A8E9ADB1E69
    62A69526D43161C1A41D570D7938DAD4A40E329CCFF46AAA36AD004CF600C838
    1E425A31D951AE64FDB23FCEC9509D43687FEB69EDD1CC5E0B8CC3BDF64B10EF
    86B63142A3AB8829555B2F747C932665CB2C0F1CC01BD70229388839D2AF05E4
    54504AC78B7582822846C0BA35C35F5C59160CC046FD8251541FC68C9C86B022
    BB7099876A460E7451A8A93109703FEE1C217E6C3826E52C51AA691E0E423CFC
    99E9E31650C1217B624816CDAD9A95F9D5B8019488D9C0A0A1FE3075A577E231
    83F81D4A3F2FA4571EFC8CE0BA8A4FE8B6855DFE72B0A66EDED2FBABFBE58A30
    FAFABE1C5D71A87E2F741EF8C1FE86FEA6BBFDE530677F0D97D11D49F7A8443D
    0822E506A9F4614E011E2A94838FF88CD68C8BB7C5C6424CFFFFFFFFFFFFFFFF
    """
)


def _ecx_group(name: str, size: int, strength: int) -> DHGroup:
    return DHGroup(
        name=name,
        kind="ecx",
        p=0,
        g=0,
        q=None,
        bits=8 * size,
        public_size=size,
        private_size=size,
        strength=strength,
    )


def _safe(p: int) -> int:
    return (p - 1) // 2


GROUPS: dict[str, DHGroup] = {
    group.name: group
    for group in (
        # p1024 = 7 (mod 8): 2 is a quadratic residue and generates the order-q subgroup.
        modp_group("skip-1024", _SKIP1024, 2, _safe(_SKIP1024)),
        # p2048 = 3 (mod 8): 2 generates the whole group of order p-1; no subgroup check.
        modp_group("skip-2048", _SKIP2048, 2, None),
        modp_group("modp-1536", _MODP1536, 2, _safe(_MODP1536)),
        modp_group("modp-2048", _MODP2048, 2, _safe(_MODP2048)),
        modp_group("modp-3072", _MODP3072, 2, _safe(_MODP3072)),
        modp_group("modp-4096", _MODP4096, 2, _safe(_MODP4096)),
        modp_group("ffdhe2048", _FFDHE2048, 2, _safe(_FFDHE2048)),
        modp_group("ffdhe3072", _FFDHE3072, 2, _safe(_FFDHE3072)),
        modp_group("ffdhe4096", _FFDHE4096, 2, _safe(_FFDHE4096)),
        modp_group("ffdhe6144", _FFDHE6144, 2, _safe(_FFDHE6144)),
        modp_group("ffdhe8192", _FFDHE8192, 2, _safe(_FFDHE8192)),
        _ecx_group("x25519", 32, 128),
        _ecx_group("x448", 56, 224),
    )
}

_BY_PARAMETERS = {(g.p, g.g): g for g in GROUPS.values() if g.kind == "modp"}
_OPENSSL_NAMED = frozenset(g.p for g in GROUPS.values() if g.name.startswith(("modp-", "ffdhe")))
