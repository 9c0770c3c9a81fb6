"""The records the sending and receiving sides keep per peer and per Kp, and how a received
packet finds its Kp (the receive-cache key).

They are shared by :mod:`skip.keying.sender`, :mod:`skip.keying.receiver` and
:mod:`skip.keying.advisor`; the endpoint's two fast paths read their attributes directly, so
they are slotted dataclasses with no behaviour beyond a liveness test.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from skip.crypto import kdf
from skip.crypto import skip_numbers as num
from skip.errors import ParseError
from skip.ipsec.counters import Counters as SaCounters
from skip.keying.ephemeral_key import EphemeralKey
from skip.keying.identity import Peer
from skip.keying.suite import Suite
from skip.keying.transforms import Transforms

#: The fixed part of a SKIP header but n (which the cached Kp knows): Ver|Rsvd NSIDs
#: NextHeader, and the algorithms word.
FIXED_WORDS = struct.Struct("!I4xI")
IPV4_PLAIN = 20  # an IPv4 header without options (first byte 0x45)
RSVD_AND_NSIDS = 0x0FFFFF00  # of the first SKIP header word


def addresses(packet: bytes | memoryview) -> tuple[bytes, bytes]:
    """(source, destination) in network form; the caller has validated the IP header."""
    if packet[0] >> 4 == 4:
        return bytes(packet[12:16]), bytes(packet[16:20])
    return bytes(packet[8:24]), bytes(packet[24:40])


#: A verified Kp is found by its SKIP header (as its ICV image) and by the addresses that name
#: a principal: bytes src|dst|header when both are named by address (NSID 0), else a tuple
#: with b"" for a principal named by MKID (then any address reaches it). One form per NSID
#: pair, whatever the IP options or Rsvd bits, so a packet cannot reach the same Kp under a
#: second key (with a fresh replay window).
RxCacheKey = bytes | tuple[bytes, bytes, bytes]


def rx_key(packet: bytes, off: int, end: int, word0: int) -> tuple[RxCacheKey, bytes | None]:
    """The receive-cache key of a packet, and its header's ICV image when Rsvd is not zero
    (Rsvd is ignored on receive and zero in the AH ICV, draft-06 s. 1.8 and 1.10.1)."""
    src, dst = addresses(packet)
    header = packet[off:end]
    shim_icv = None
    if word0 & 0x0F000000:
        if word0 >> 28 == num.MODERN_VERSION:
            # revision 2.1: Rsvd is 0, and a packet that says otherwise is not ours to guess at
            raise ParseError("bad_header", "Rsvd is not 0 in a modern SKIP header")
        header = shim_icv = bytes((header[0] & 0xF0,)) + header[1:]
    if word0 & 0xFFFF00:
        return (b"" if word0 & 0xFF0000 else src, b"" if word0 & 0xFF00 else dst, header), \
            shim_icv
    return src + dst + header, shim_icv


@dataclass(slots=True, eq=False)
class PeerState:
    """Per-peer facts that outlive any one Kp: where its packets go and when it was heard.

    Kept while the peer's public value stays the same (a renewed certificate, a new tunnel),
    dropped with its keys by remove_peer. Send and receive keys point at it, so the per-packet
    bookkeeping is an attribute store, not a dictionary look-up.
    """

    tunnel: bytes | None = None  # outer destination (tunnel mode); learned if nomadic
    nomadic: bool = False
    sent: float | None = None  # `now` of the last packet protected for the peer
    received: float | None = None  # `now` of the last packet from the peer that verified
    last: RxKey | None = None  # the Kp that packet came under (its n)
    newest: RxKey | None = None  # the newest Kp admitted: only its packets move a nomadic peer
    # Per local principal (by name), in the modern profile, times in ms of Kp creation:
    tx_created: dict[str, int] = field(default_factory=dict)  # of our last Kp to the peer
    kp_floor: dict[str, int] = field(default_factory=dict)  # least for our next (its notice)
    rx_floor: dict[str, int] = field(default_factory=dict)  # its Kps made before are refused
    rx_live: dict[str, list[RxKey]] = field(default_factory=dict)  # its Kps we hold
    # A rotated-away key of the peer, still accepted for new Kps until `previous_until`
    # (the peer may not have switched yet when we learnt its new certificate):
    previous: Peer | None = None
    previous_until: float = 0.0


@dataclass(slots=True)
class TxKey:
    """The sender's current Kp towards one peer from one principal, ready to use.

    ``expires`` folds the two time rules into one comparison: the Kp ends when n changes (the
    start of the next hour) or ``kp_max_seconds`` after it was made, whichever comes first.
    If the clock steps back, the Kp is kept until then: n in the headers never decreases, as
    draft-06 s. 5.1 wants. The byte limit is checked against what the engine counts anyway:
    the innermost SA's ``bytes_out`` is the cleartext that went into it.
    """

    expires: float
    used: SaCounters  # the innermost SA's counters
    max_bytes: int
    suite: Suite
    header: bytes
    protect: Callable[..., bytes]  # Transforms.protect, one attribute nearer
    shim: tuple[int, bytes]  # (IP protocol 57, header): what the engine inserts
    born: float
    transforms: Transforms
    state: PeerState
    ephemeral: EphemeralKey | None = None  # the PFS key its EKp is under (None: Kijn)
    #: what skipd's compiled send loop protects with (Transforms.lane), or None
    lane: tuple[object, ...] | None = None

    def live(self, now: float) -> bool:
        """Still the Kp to send under (protect's fast path has this test inline)."""
        return now < self.expires and self.used.bytes_out < self.max_bytes


@dataclass(slots=True)
class RxKey:
    """A verified Kp: its SAs (with their replay window in the modern profile)."""

    transforms: Transforms
    unprotect: Callable[..., bytes]  # Transforms.unprotect, one attribute nearer
    peer: str
    identity: str
    version: int
    algorithms: tuple[int, int, int, int]
    n: int
    authenticated: bool
    state: PeerState
    index: tuple[str, str, bytes]  # (local principal, peer, EKp): one Kp, one window
    header: bytes  # as the ICV image (Rsvd 0): a second header for the same Kp is refused
    created: int = -1  # ms, authenticated with the Kp (modern); -1 in the legacy profile
    keys: list[RxCacheKey] = field(default_factory=list)  # the receive-cache keys reaching it
    accept_from: float = 0.0  # local times at which the local n is within +-1 of n
    accept_until: float = 0.0
    ephemeral: EphemeralKey | None = None  # the PFS key its EKp was under (None: Kijn)
    #: what skipd's compiled receive loop opens with (Transforms.open_lane), or None
    lane: tuple[object, ...] | None = None

    def __post_init__(self) -> None:
        self.lane = self.transforms.open_lane()
        self.accept_from = float(kdf.n_start(self.n - 1))
        self.accept_until = float(kdf.n_start(self.n + 2))

    @property
    def aead(self) -> bool:
        """Its transform authenticates even without a MAC Alg (SKIP ICMP may ride on it)."""
        _, crypt, mac, _ = self.algorithms
        return mac == crypt and Suite(self.version, 0, crypt, mac).aead
