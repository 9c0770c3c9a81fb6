"""What an operator may know about one peer (``SkipEndpoint.peer_status``): no key bytes.

Drivers (skipd's ``skipctl peers``) used to infer a Kp's age from changes of the ``kp_new``
counter and the skew from the packets they happened to see; the endpoint knows both exactly,
so it says them. Times are the ``now`` values the endpoint was called with.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PeerStatus:
    peer: str
    version: int  # SKIP header version used toward the peer now: 1 legacy, 2 modern
    algorithms: tuple[int, int, int, int]  # Kij, Crypt, MAC, Comp toward the peer now
    tunnel: str | None  # outer destination in tunnel mode (learned, for a nomadic peer)
    nomadic: bool
    kp_age: float | None  # seconds since the current send Kp was made; None: no live Kp
    kp_bytes: int  # cleartext bytes sent under the current send Kp
    kp_packets: int  # packets sent under it
    last_sent: float | None  # time of the last packet protected for the peer
    last_received: float | None  # time of the last packet from the peer that verified
    last_n: int | None  # the SKIP counter n that packet carried
    n_skew: int | None  # last_n minus the local n when it arrived (-1, 0 or +1)
    rx_keys: int  # the peer's receive Kps cached (each with its replay window)
