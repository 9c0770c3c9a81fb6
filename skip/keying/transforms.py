"""The ESP/AH security associations one traffic key Kp stands for, built once per Kp.

A SKIP header implies its transforms (:attr:`Suite.layers`); this module turns the header's
algorithms and the derived keys E_kp / A_kp into :class:`skip.ipsec.sa.SecurityAssociation`
objects with SPI 1 (SKIP_SPI) and runs a packet through them with the SKIP header as the
engine's shim. Building SAs costs cipher-context set-up, so both ends keep the result for as
long as the Kp lives: that is what makes steady-state SKIP traffic cost about what the bare
engine costs.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import ip_address

from skip.crypto import kdf
from skip.crypto import skip_numbers as num
from skip.crypto.kdf import low
from skip.errors import KeyingError
from skip.ipsec.sa import SecurityAssociation
from skip.keying.suite import Suite
from skip.wire.skip_header import SKIP_SPI

Rng = Callable[[int], bytes]


class Transforms:
    """Outermost first: ``(ah,)``, ``(esp,)`` or ``(ah, esp)``; the SKIP header goes in front.

    ``protect(packet, *, shim)`` and ``unprotect(packet, *, shim_len, shim_icv)`` run a packet
    through all of them. With one SA they are that SA's own bound methods, so the per-packet
    call is a single call into the engine (a ``functools.partial`` binding the shim costs
    more than the keyword argument it saves).
    """

    __slots__ = ("protect", "sas", "unprotect")

    protect: Callable[..., bytes]
    unprotect: Callable[..., bytes]

    def __init__(self, sas: tuple[SecurityAssociation, ...]) -> None:
        self.sas = sas
        if len(sas) == 1:
            self.protect, self.unprotect = sas[0].protect, sas[0].unprotect
            return
        outer, inner = sas

        def protect(packet: bytes, *, shim: tuple[int, bytes]) -> bytes:
            return outer.protect(inner.protect(packet), shim=shim)

        def unprotect(packet: bytes, *, shim_len: int, shim_icv: bytes | None = None) -> bytes:
            return inner.unprotect(outer.unprotect(packet, shim_len=shim_len, shim_icv=shim_icv))

        self.protect, self.unprotect = protect, unprotect

    def lane(self, shim: tuple[int, bytes]) -> tuple[object, ...] | None:
        """The compiled send loop's view of a one-SA transform (SecurityAssociation.lane);
        None for two SAs (legacy AH + ESP) or no compiled core."""
        return self.sas[0].lane(shim) if len(self.sas) == 1 else None

    def open_lane(self) -> tuple[object, ...] | None:
        """The receiving twin of :meth:`lane` (SecurityAssociation.open_lane)."""
        return self.sas[0].open_lane() if len(self.sas) == 1 else None


def traffic_keys(suite: Suite, kp: bytes, ekp_len: int, header: bytes, *, pre06: bool = False
                 ) -> tuple[bytes, bytes]:
    """E_kp and A_kp of one Kp: the one derivation both directions, and offline decryption
    (skip.offline), run. Legacy keys depend on the EKp's length (Kp', draft-06 s. 2.5);
    modern ones on the whole SKIP header (modern-profile.md s. 4.4)."""
    prof = suite.profile
    _, crypt, mac, _ = suite.algorithms
    if suite.version == num.LEGACY_VERSION:
        kp_p = kdf.kp_prime(kp, ekp_len)
        e_kp = kdf.legacy_e_kp(kp_p, crypt, pre06=pre06) if crypt else b""
        a_kp = kdf.legacy_a_kp(kp_p, mac, pre06=pre06) if mac else b""
        return e_kp, a_kp
    return kdf.modern_traffic_keys(kp, header, prof.crypt_key_size(crypt),
                                   prof.mac_key_size(crypt, mac))


def build(
    suite: Suite,
    e_kp: bytes,
    a_kp: bytes,
    *,
    tunnel: tuple[bytes, bytes] | None,
    replay_window: int,
    rng: Rng,
) -> Transforms:
    """SAs for one Kp. Legacy keys are the low-order bytes of the 32-byte E_kp / A_kp; modern
    E_kp / A_kp already have the exact sizes (HKDF output). ``tunnel`` = (outer source, outer
    destination) puts the innermost SA in tunnel mode; the outer AH of AH+ESP stays transport."""
    prof = suite.profile
    legacy = suite.version == num.LEGACY_VERSION
    crypt = prof.crypt.get(suite.crypt_alg) if suite.crypt_alg else None
    mac = None if suite.aead or not suite.mac_alg else prof.mac[suite.mac_alg]
    cipher_key = low(e_kp, crypt.key_size) if crypt and legacy else e_kp
    mac_key = low(a_kp, mac.key_size) if mac and legacy else a_kp
    window = replay_window if not legacy else 64  # legacy: no sequence numbers, no window
    outer_src = ip_address(tunnel[0]) if tunnel else None
    outer_dst = ip_address(tunnel[1]) if tunnel else None
    layers = suite.layers
    sas: list[SecurityAssociation] = []
    for i, layer in enumerate(layers):
        innermost = i == len(layers) - 1
        mode = "tunnel" if tunnel and innermost else "transport"
        src, dst = (outer_src, outer_dst) if innermost else (None, None)
        if layer == "esp":
            if crypt is None:
                raise KeyingError("unsupported_crypt_alg", f"{suite}: ESP without a cipher")
            esp_mac = mac if not legacy else None  # legacy authenticates in a separate AH
            sas.append(SecurityAssociation(
                "esp", SKIP_SPI, mode, cipher=crypt.registry_name, cipher_key=cipher_key,
                integrity=esp_mac.registry_name if esp_mac else None,
                integrity_key=mac_key if esp_mac else b"", allow_unauthenticated=legacy,
                sequence=not legacy, allow_legacy=legacy, replay_window=window,
                tunnel_src=src, tunnel_dst=dst, rng=rng,
            ))
        else:
            if mac is None:
                raise KeyingError("unsupported_mac_alg", f"{suite}: AH without a MAC")
            sas.append(SecurityAssociation(
                "ah", SKIP_SPI, mode, integrity=mac.registry_name, integrity_key=mac_key,
                sequence=not legacy, allow_legacy=legacy, replay_window=window,
                tunnel_src=src, tunnel_dst=dst, rng=rng,
            ))
    return Transforms(tuple(sas))
