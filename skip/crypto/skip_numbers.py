"""The SKIP algorithm numbers (Kij / Crypt / MAC / Comp Alg bytes) and what each one means.

Draft-06 section 1.9 asks for exactly this: "a table indexed by the algorithm number, which
produces the key lengths", because the SKIP header carries no lengths and the receiver must
compute the size of the encrypted Kp from the algorithm bytes alone. The tables are split by
header version: version 1 (the legacy profile) uses draft-06's numbers (plus the 1997 SKIP
assigned-numbers list, for parsing only); version 2 (this project's modern profile, see
docs/protocol/modern-profile.md) uses numbers from 10 upward, which the IANA registry the drafts
announced never filled. A number from one profile is not valid in the other.

Traffic algorithms are mapped to names of the crypto registry (skip/crypto/registry.py); an
entry whose ``registry_name`` is None is known only well enough to parse a header that uses it
(its key length) and is answered as unsupported.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType
from typing import TypeVar

from skip.errors import ParseError

LEGACY_VERSION = 1
MODERN_VERSION = 2
VERSIONS = (LEGACY_VERSION, MODERN_VERSION)

#: Kp length of the modern profile: traffic keys are expanded from it with HKDF, so its length
#: does not depend on the algorithms (docs/protocol/modern-profile.md section 4).
MODERN_KP_SIZE = 32
#: RFC 3394 adds one 64-bit integrity block to the wrapped key.
_KEY_WRAP_OVERHEAD = 8
#: The modern Kp is wrapped with its 8-byte creation time (modern-profile.md s. 4.3).
MODERN_KP_STAMP = 8


class AlgClass(IntEnum):
    """The four algorithm bytes of the SKIP header, in header order (offsets 8-11)."""

    KIJ = 0
    CRYPT = 1
    MAC = 2
    COMP = 3


@dataclass(frozen=True)
class KijAlgorithm:
    """A key-encryption algorithm: encrypts Kp under (the low-order bytes of) Kijn."""

    number: int
    name: str
    key_size: int  # bytes taken from Kijn
    block_size: int  # EKp is padded to this (legacy); 0 for key wrap
    implemented: bool = True


@dataclass(frozen=True)
class TrafficAlgorithm:
    """A Crypt or MAC algorithm: the ESP/AH transform keyed by E_kp or A_kp."""

    number: int
    name: str
    key_size: int  # SKIP key bytes (legacy: taken from E_kp/A_kp; modern: HKDF output length)
    registry_name: str | None  # name in skip.crypto.registry; None = parse-only
    aead: bool = False  # a combined transform: MAC Alg must equal Crypt Alg
    rfc: str = ""


@dataclass(frozen=True)
class Profile:
    """Everything version-specific about the algorithm bytes of one header version."""

    version: int
    kij: MappingProxyType[int, KijAlgorithm]
    crypt: MappingProxyType[int, TrafficAlgorithm]
    mac: MappingProxyType[int, TrafficAlgorithm]
    comp: MappingProxyType[int, str]

    def ekp_length(self, kij_alg: int, crypt_alg: int, mac_alg: int) -> int:
        """Bytes of "Kp encrypted in Kijn" implied by the algorithm bytes (draft-06 s. 1.3, 1.9).

        Raises KeyError naming the class whose number is unknown (the caller turns this into
        the matching reason code); Kij Alg 0 means "no Kp" (an ADP solicitation, Q21).
        """
        if kij_alg == 0:
            return 0
        kij = self.kij[kij_alg]
        kp = self.kp_length(crypt_alg, mac_alg)
        if kp == 0:
            return 0
        if kij.block_size == 0:  # key wrap
            return kp + MODERN_KP_STAMP + _KEY_WRAP_OVERHEAD
        return -(-kp // kij.block_size) * kij.block_size

    def kp_length(self, crypt_alg: int, mac_alg: int) -> int:
        """L_kp: the larger key of Crypt and MAC (legacy); fixed 32 bytes (modern)."""
        crypt = self.crypt_key_size(crypt_alg)
        mac = self.mac_key_size(crypt_alg, mac_alg)
        if self.version == MODERN_VERSION:
            return MODERN_KP_SIZE if (crypt or mac) else 0
        return max(crypt, mac)

    def crypt_key_size(self, crypt_alg: int) -> int:
        if crypt_alg == 0:
            return 0
        return self.crypt[crypt_alg].key_size

    def mac_key_size(self, crypt_alg: int, mac_alg: int) -> int:
        """MAC key bytes; a combined transform (MAC Alg = Crypt Alg, AEAD) has none of its own."""
        if mac_alg == 0:
            return 0
        if mac_alg == crypt_alg and crypt_alg in self.crypt and self.crypt[crypt_alg].aead:
            return 0
        return self.mac[mac_alg].key_size

    def supported(self, cls: AlgClass) -> tuple[int, ...]:
        """Implemented numbers of one class, most preferred first (the ADP list order)."""
        if cls is AlgClass.KIJ:
            return tuple(n for n, a in self.kij.items() if a.implemented)
        if cls is AlgClass.CRYPT:
            return tuple(n for n, a in self.crypt.items() if a.registry_name)
        if cls is AlgClass.MAC:
            return tuple(n for n, a in self.mac.items() if a.registry_name)
        return tuple(self.comp)


_Entry = TypeVar("_Entry", KijAlgorithm, TrafficAlgorithm)


def _table(*entries: _Entry) -> MappingProxyType[int, _Entry]:
    return MappingProxyType({e.number: e for e in entries})


# --- version 1: draft-06 section 4.4 (+ the 1997 list for parse-only entries) ---------------
# Dict order is preference order (strongest first): it is what ADP advertises.
LEGACY = Profile(
    version=LEGACY_VERSION,
    kij=_table(
        KijAlgorithm(2, "3des-ede-cbc", 24, 8),
        KijAlgorithm(3, "idea-cbc", 16, 8),
        KijAlgorithm(1, "des-cbc", 8, 8),
        KijAlgorithm(241, "safer-128sk-cbc", 16, 8, implemented=False),
        KijAlgorithm(242, "rc2-40-cbc", 5, 8, implemented=False),
    ),
    crypt=_table(
        TrafficAlgorithm(2, "3des-ede-cbc", 24, "3des-cbc", rfc="RFC 1851"),
        TrafficAlgorithm(1, "des-cbc", 8, "des-cbc", rfc="RFC 1829"),
        TrafficAlgorithm(3, "idea-cbc", 16, None),
        TrafficAlgorithm(241, "safer-128sk", 16, None),
        TrafficAlgorithm(242, "rc2-40-cbc", 5, None),
    ),
    mac=_table(
        TrafficAlgorithm(3, "keyed-sha", 20, "keyed-sha1", rfc="RFC 1852"),
        TrafficAlgorithm(1, "keyed-md5", 16, "keyed-md5", rfc="RFC 1828"),
        TrafficAlgorithm(2, "des-cbc-mac", 8, None),
    ),
    comp=MappingProxyType({}),
)

# --- version 2: this project's modern profile (docs/protocol/numbers.md) -------------------
AES256_KEY_WRAP = 10
AES128_GCM, AES256_GCM, CHACHA20_POLY1305, AES128_CBC, AES256_CBC = 10, 11, 12, 13, 14
# MAC numbers do not overlap Crypt numbers, so "MAC Alg = Crypt Alg" (the combined-transform
# rule of draft-06 section 1.12) can never be mistaken for an HMAC paired with a cipher.
HMAC_SHA256_128, HMAC_SHA384_192, HMAC_SHA512_256 = 20, 21, 22

MODERN = Profile(
    version=MODERN_VERSION,
    kij=_table(KijAlgorithm(AES256_KEY_WRAP, "aes-256-key-wrap", 32, 0)),
    crypt=_table(
        TrafficAlgorithm(AES256_GCM, "aes-256-gcm-16", 36, "aes-256-gcm-16", True, "RFC 4106"),
        TrafficAlgorithm(
            CHACHA20_POLY1305, "chacha20-poly1305", 36, "chacha20-poly1305", True, "RFC 7634"
        ),
        TrafficAlgorithm(AES128_GCM, "aes-128-gcm-16", 20, "aes-128-gcm-16", True, "RFC 4106"),
        TrafficAlgorithm(AES256_CBC, "aes-256-cbc", 32, "aes-256-cbc", rfc="RFC 3602"),
        TrafficAlgorithm(AES128_CBC, "aes-128-cbc", 16, "aes-128-cbc", rfc="RFC 3602"),
    ),
    mac=_table(
        TrafficAlgorithm(HMAC_SHA256_128, "hmac-sha2-256-128", 32, "hmac-sha2-256-128",
                         rfc="RFC 4868"),
        TrafficAlgorithm(HMAC_SHA512_256, "hmac-sha2-512-256", 64, "hmac-sha2-512-256",
                         rfc="RFC 4868"),
        TrafficAlgorithm(HMAC_SHA384_192, "hmac-sha2-384-192", 48, "hmac-sha2-384-192",
                         rfc="RFC 4868"),
    ),
    comp=MappingProxyType({}),
)

PROFILES: MappingProxyType[int, Profile] = MappingProxyType(
    {LEGACY_VERSION: LEGACY, MODERN_VERSION: MODERN}
)


def profile(version: int) -> Profile:
    """The algorithm tables of header version ``version`` (KeyError if there is none)."""
    return PROFILES[version]


_UNKNOWN_REASON = {
    AlgClass.KIJ: "unsupported_kij_alg",
    AlgClass.CRYPT: "unsupported_crypt_alg",
    AlgClass.MAC: "unsupported_mac_alg",
}


def header_ekp_length(version: int, kij_alg: int, crypt_alg: int, mac_alg: int) -> int:
    """EKp length for :mod:`skip.wire.skip_header`; unknown numbers raise ParseError.

    An unknown number makes the rest of the header unparseable (its length is unknown), so
    the reason names the first class that is not in the table. Kij Alg 0 (an ADP
    solicitation) has no EKp whatever the other numbers are: it parses, so that a node can be
    asked for its algorithms while using numbers the receiver does not know.
    """
    try:
        prof = PROFILES[version]
    except KeyError:
        raise ParseError("bad_version", f"SKIP header version {version}") from None
    if kij_alg == 0:
        return 0
    if kij_alg and kij_alg not in prof.kij:
        raise ParseError(_UNKNOWN_REASON[AlgClass.KIJ], f"Kij Alg {kij_alg}")
    if crypt_alg and crypt_alg not in prof.crypt:
        raise ParseError(_UNKNOWN_REASON[AlgClass.CRYPT], f"Crypt Alg {crypt_alg}")
    if mac_alg and mac_alg not in prof.mac and not (
        mac_alg == crypt_alg and prof.crypt[crypt_alg].aead
    ):
        raise ParseError(_UNKNOWN_REASON[AlgClass.MAC], f"MAC Alg {mac_alg}")
    return prof.ekp_length(kij_alg, crypt_alg, mac_alg)
