"""What an operator may know about the endpoint and one peer (``SkipEndpoint.status`` and
``peer_status``): names, algorithms, key ages and counts, never key bytes.

Drivers (skipd's ``skipctl peers``) used to infer a Kp's age from changes of the ``kp_new``
counter and the skew from the packets they happened to see; the endpoint knows both exactly,
so it says them. Times are the ``now`` values the endpoint was called with.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_address

from skip.crypto import kdf
from skip.errors import KeyingError
from skip.keying.advisor import Advisor
from skip.keying.context import KeyingContext
from skip.keying.events import Counters
from skip.keying.policy import KeyingPolicy
from skip.keying.principals import Principals
from skip.keying.receiver import Receiver
from skip.keying.sender import Sender


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
    not_after: float | None = None  # when the peer's certificate expires
    rotating: bool = False  # its previous key is still accepted (a rotation's grace)


def endpoint_status(principals: Principals, sender: Sender, receiver: Receiver,
                    advisor: Advisor, ctx: KeyingContext, counters: Counters, now: float
                    ) -> dict[str, object]:
    """Everything an operator may see (skipctl): names, algorithms, key ages, no key bytes."""
    policy = ctx.policy
    return {
        "identities": [{"name": i.name, "nsid": i.nsid, "mkid": i.mkid.hex(),
                        "groups": sorted(i.keys)} for i in principals.identities.values()],
        "peers": [{"name": p.name, "group": p.group, "nsid": p.nsid, "mkid": p.mkid.hex(),
                   "suite": principals.suite_for(p, policy).algorithms,
                   "version": principals.suite_for(p, policy).version,
                   "advice": advisor.capabilities[p.name].encode().hex()
                   if p.name in advisor.capabilities else None,
                   "rx_keys": receiver.per_peer.get(p.name, 0)}
                  for p in principals.peers.values()],
        "tx_keys": [{"identity": me, "peer": them, "suite": tx.suite.algorithms,
                     "expires_in": max(0.0, tx.expires - now),
                     "bytes_left": max(0, tx.max_bytes - tx.used.bytes_out)}
                    for (me, them), tx in sender.tx.items()],
        "kij_cache": {"entries": len(ctx.kij_cache), "capacity": ctx.kij_cache.capacity,
                      "computed": ctx.kij_cache.computed},
        "pending": ctx.pending.sizes(),
        "counters": dict(counters),
    }


def peer_status(name: str, principals: Principals, sender: Sender, receiver: Receiver,
                policy: KeyingPolicy, now: float) -> PeerStatus:
    """The state of one peer for operators: key ages and counts, never key bytes.

    The current send Kp is the newest live one toward the peer (from any local principal);
    the skew is that of the last packet that verified, against the local n of its arrival.
    """
    peer = principals.peers.get(name)
    if peer is None:
        raise KeyingError("unknown_mkid", f"no peer named {name!r}")
    state = principals.states[name]
    live = [tx for me in principals.identities
            if (tx := sender.tx.get((me, name))) is not None and tx.live(now)]
    tx = max(live, key=lambda k: k.born, default=None)
    suite = principals.suite_for(peer, policy)
    last = state.last
    return PeerStatus(
        peer=name, version=suite.version, algorithms=suite.algorithms,
        tunnel=str(ip_address(state.tunnel)) if state.tunnel else None,
        nomadic=peer.nomadic,
        kp_age=max(0.0, now - tx.born) if tx else None,
        kp_bytes=tx.used.bytes_out if tx else 0,
        kp_packets=tx.transforms.sas[0].counters.packets_out if tx else 0,
        last_sent=state.sent, last_received=state.received,
        last_n=last.n if last else None,
        n_skew=last.n - kdf.counter_n(state.received)
        if last and state.received is not None else None,
        rx_keys=receiver.per_peer.get(name, 0),
        not_after=peer.not_after,
        rotating=state.previous is not None and now < state.previous_until,
    )
