"""Algorithm choice: a suite is the four algorithm bytes of a SKIP header plus its version.

It also says which transforms follow the SKIP header, because in SKIP that is implied by the
algorithms (draft-06 sections 1.10-1.12, 3): Crypt only -> ESP; MAC only -> AH; both -> AH then
ESP (legacy) or one ESP with encryption and integrity (modern); an AEAD is a combined transform
with MAC Alg = Crypt Alg.
"""

from __future__ import annotations

from dataclasses import dataclass

from skip.crypto import skip_numbers as num
from skip.crypto.dh import DHGroup
from skip.errors import AlgorithmError, KeyingError


@dataclass(frozen=True, slots=True)
class Suite:
    version: int
    kij_alg: int
    crypt_alg: int
    mac_alg: int
    comp_alg: int = 0

    @property
    def profile(self) -> num.Profile:
        return num.PROFILES[self.version]

    @property
    def aead(self) -> bool:
        crypt = self.profile.crypt.get(self.crypt_alg)
        return bool(crypt and crypt.aead)

    @property
    def layers(self) -> tuple[str, ...]:
        """Outermost first: the protocols that follow the SKIP header."""
        if self.version == num.MODERN_VERSION:
            return ("esp",) if self.crypt_alg else ("ah",)
        return tuple(p for p, on in (("ah", self.mac_alg), ("esp", self.crypt_alg)) if on)

    @property
    def algorithms(self) -> tuple[int, int, int, int]:
        return self.kij_alg, self.crypt_alg, self.mac_alg, self.comp_alg

    def check(self) -> Suite:
        """Refuse combinations no SKIP header of this version can carry."""
        prof = num.PROFILES.get(self.version)
        if prof is None:
            raise AlgorithmError("unsupported_algorithm", f"no SKIP version {self.version}")
        if self.kij_alg not in prof.kij:
            raise AlgorithmError("unsupported_kij_alg", f"Kij Alg {self.kij_alg}")
        if self.crypt_alg and self.crypt_alg not in prof.crypt:
            raise AlgorithmError("unsupported_crypt_alg", f"Crypt Alg {self.crypt_alg}")
        if self.comp_alg:
            raise AlgorithmError("unsupported_comp_alg", "no compression algorithm exists")
        if self.aead:
            if self.mac_alg != self.crypt_alg:
                raise AlgorithmError("unsupported_mac_alg", "an AEAD needs MAC Alg = Crypt Alg")
        elif self.mac_alg and self.mac_alg not in prof.mac:
            raise AlgorithmError("unsupported_mac_alg", f"MAC Alg {self.mac_alg}")
        if not (self.crypt_alg or self.mac_alg):
            raise AlgorithmError("unsupported_algorithm", "a suite protects something")
        if self.version == num.MODERN_VERSION and not (self.aead or self.mac_alg):
            raise AlgorithmError("unsupported_mac_alg", "the modern profile always authenticates")
        if self.kij_too_weak:
            raise AlgorithmError("kij_too_weak", f"Kij Alg {self.kij_alg} would wrap stronger "
                                 f"traffic keys (Crypt {self.crypt_alg}, MAC {self.mac_alg})")
        return self

    @property
    def kij_too_weak(self) -> bool:
        """Draft-06 s. 2.3 (MUST): the key-encryption key is at least as strong as the traffic
        keys. Legacy numbers fall into two classes (docs/protocol/decisions.md 3.12): weak,
        under 64 bits (DES, RC2-40, DES-CBC-MAC), and strong, 112 bits or more (3DES, IDEA,
        SAFER-128, keyed MD5/SHA); a weak Kij Alg may wrap only weak traffic keys."""
        if self.version != num.LEGACY_VERSION or self.kij_alg not in _WEAK_KIJ:
            return False
        return bool(self.crypt_alg and self.crypt_alg not in _WEAK_CRYPT) or \
            bool(self.mac_alg and self.mac_alg not in _WEAK_MAC)


_WEAK_KIJ = frozenset({1, 242})  # DES-CBC, RC2-40
_WEAK_CRYPT = frozenset({1, 242})  # DES-CBC, RC2-40
_WEAK_MAC = frozenset({2})  # DES-CBC-MAC


#: 3DES Kij Alg (mandatory with keyed MD5, draft-06 s. 2.3), 3DES traffic, keyed MD5 AH.
LEGACY_DEFAULT = Suite(num.LEGACY_VERSION, 2, 2, 1)
#: AES-256 key wrap, AES-256-GCM.
MODERN_DEFAULT = Suite(num.MODERN_VERSION, num.AES256_KEY_WRAP, num.AES256_GCM, num.AES256_GCM)
#: How ADP answers are protected (ADP-00: SKIP + AH with keyed MD5; A-ADP-1: Kij Alg 3DES).
LEGACY_ADP = Suite(num.LEGACY_VERSION, 2, 0, 1)
MODERN_ADP = MODERN_DEFAULT


_MIN_MODERN_MODP_BITS = 2048


def check_group(version: int, dh: DHGroup) -> None:
    """Which key agreement each profile is defined for (docs/protocol/decisions.md 3.9)."""
    if version == num.LEGACY_VERSION and dh.kind != "modp":
        raise KeyingError("bad_group", "the legacy profile is defined for MODP groups only")
    if version == num.MODERN_VERSION and dh.kind == "modp" and (
        dh.bits < _MIN_MODERN_MODP_BITS or dh.name.startswith("skip-")
    ):
        raise KeyingError("bad_group", "the modern profile needs X25519, X448 or MODP>=2048")
