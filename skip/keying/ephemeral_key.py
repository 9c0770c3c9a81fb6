"""One established ephemeral master key (pfs-00's EKijn source) and its erasure.

Everything secret of an exchange that outlives it - the legacy Kij and g^xy, or the modern
PRK - lives in one ``bytearray`` owned by this object, so that erasing it at expiry
(PFS-16, PFS-M7) overwrites the bytes in place rather than dropping a reference and hoping.
What Python cannot promise is written in docs/pfs.md: the EKijn values handed to the Kp wrap,
the Kps and the traffic keys inside the cipher objects are immutable ``bytes`` or OpenSSL
state, freed (not overwritten) when the last reference goes; the endpoint drops every such
reference at expiry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from skip.crypto import kdf
from skip.crypto import skip_numbers as num


@dataclass(slots=True, eq=False)
class EphemeralKey:
    """EKijn between one local principal and one peer, named by two EMKIDs (PFS-15).

    ``rx_emkid`` is ours (the Destination MKID of the peer's packets to us, unique among our
    live keys); ``tx_emkid`` is the peer's (what we put in the Destination MKID)."""

    identity: str
    peer: str
    version: int
    initiator: bool
    rx_emkid: int
    tx_emkid: int
    established: float
    expires: float
    material: bytearray  # legacy: Kij | g^xy; modern: the PRK
    kij_size: int = kdf.KIJ_SIZE
    transcript: bytes = b""  # modern: T (public, but it names the exchange)
    confirmed: bool = True  # a responder's: once a packet from the initiator verified
    _kijn: dict[tuple[int, bool], bytes] = field(default_factory=dict)

    def live(self, now: float) -> bool:
        return now < self.expires and any(self.material)

    def ekijn(self, n: int, sending: bool) -> bytes:
        """EKijn for counter ``n`` in one direction (legacy: both directions share it, as
        Kijn; modern: one per direction). Memoised for n +- 1 at most."""
        key = (n, sending)
        value = self._kijn.get(key)
        if value is None:
            if len(self._kijn) >= 6:
                self._kijn.clear()
            material = bytes(self.material)
            if self.version == num.LEGACY_VERSION:
                value = kdf.legacy_ekijn(material[:self.kij_size], material[self.kij_size:], n)
            else:
                to_responder = sending == self.initiator
                direction = kdf.TO_RESPONDER if to_responder else kdf.TO_INITIATOR
                value = kdf.modern_ekijn(material, self.transcript, direction, n)
            self._kijn[key] = value
        return value

    def erase(self) -> None:
        """Overwrite the secret material and drop the derived keys (PFS-16)."""
        self.material[:] = bytes(len(self.material))
        self._kijn.clear()
        self.expires = -1.0
