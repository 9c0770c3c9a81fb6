"""What every part of the endpoint shares: policy, randomness, counters, the event queue, the
master-key cache and the certificate wait queue, with the few operations on them that the
sending, receiving and discovery sides all need (master keys, traffic SAs, queueing).

One object, handed to each part at construction, so that a new policy (a reload) reaches all
of them by one assignment and no part keeps a stale copy of it.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Callable

from skip.crypto import kdf
from skip.crypto import skip_numbers as num
from skip.errors import PolicyError
from skip.keying import adp
from skip.keying.events import CertificateNeeded, Counters, Event, TrafficKeys
from skip.keying.identity import LocalIdentity, Peer, group
from skip.keying.keys import PeerState
from skip.keying.kij_cache import KijCache, KijEntry
from skip.keying.pending import PendingPackets
from skip.keying.policy import KeyingPolicy
from skip.keying.suite import Suite
from skip.keying.transforms import Transforms, build, traffic_keys
from skip.wire.names import SkipName
from skip.wire.nsid import NsidTable
from skip.wire.skip_icmp import AdpCode

Rng = Callable[[int], bytes]
_MAX_FORGOTTEN = 65536  # public values whose Kp floor outlives the peer (see forget_peer)


class KeyingContext:
    def __init__(self, policy: KeyingPolicy, rng: Rng, nsids: NsidTable, started: float
                 ) -> None:
        self.policy = policy
        self.rng = rng
        self.nsids = nsids
        self.started_ms = int(started * 1000)
        self.counters = Counters()
        self.events: deque[Event] = deque()
        self.kij_cache = KijCache(policy.kij_cache_size, policy.dh_per_second, policy.dh_burst)
        self.pending = PendingPackets(policy.pending_peers, policy.queue_per_peer,
                                      policy.pending_seconds)
        #: (group, public value) of a forgotten peer -> the least creation time (ms) of a Kp
        #: of its that is admitted again: what was live when the peer went lost its window
        self.forgotten: OrderedDict[tuple[str, bytes], int] = OrderedDict()
        #: DANGEROUS when set: every traffic key goes to it (log_traffic_keys_insecurely)
        self.key_log: Callable[[TrafficKeys], None] | None = None

    def kp_floor(self, them: Peer) -> int:
        """Modern Kps of ``them`` made before this are refused as ``kp_stale`` (their
        replay windows are gone: this node started after them, or forgot the peer since)."""
        return max(self.started_ms, self.forgotten.get((them.group, them.public), 0))

    def forget_peer(self, them: Peer, state: PeerState) -> None:
        """Remember past a peer's removal which of its Kps we held: a peer added again
        with the same public value (a reload, a certificate re-fetched after expiry) would
        otherwise give them fresh replay windows, and every packet captured under them would
        pass once more. Bounded: the oldest entries go first."""
        newest = max((rx.created for live in state.rx_live.values() for rx in live),
                     default=-1)
        floor = max(newest + 1, *state.rx_floor.values(), 0)
        if floor <= 0:
            return  # nothing modern was received: nothing to guard
        key = (them.group, them.public)
        self.forgotten[key] = max(floor, self.forgotten.pop(key, 0))
        while len(self.forgotten) > _MAX_FORGOTTEN:
            self.forgotten.popitem(last=False)

    def adopt(self, policy: KeyingPolicy) -> None:
        """The new bounds for the cache and the wait queue (pinned master keys stay)."""
        self.policy = policy
        self.kij_cache.resize(policy.kij_cache_size, policy.dh_per_second, policy.dh_burst)
        evicted = self.pending.resize(policy.pending_peers, policy.queue_per_peer,
                                      policy.pending_seconds)
        if evicted:
            self.counters.hit("queue_evicted", evicted)

    # --- master keys ---------------------------------------------------------------------

    def kij_function(self, me: LocalIdentity, them: Peer, version: int) -> Callable[[], bytes]:
        """The (deferred) DH computation and the profile's Kij derivation from its result."""
        def compute() -> bytes:
            dh = group(them.group)
            if them.group not in me.prepared:
                me.private(them.group)  # raises bad_group
            secret = dh.agree(me.prepared[them.group], them.public)
            self.counters["kij_computed"] += 1
            if version == num.LEGACY_VERSION:
                return kdf.legacy_kij(secret)
            return kdf.modern_kij(secret, dh.name, me.publics[them.group], them.public)
        return compute

    def kij_entry(self, me: LocalIdentity, them: Peer, version: int, now: float) -> KijEntry:
        return self.kij_cache.get((me.name, them.name, version, them.public),
                                  self.kij_function(me, them, version), now)

    def check_accepts(self, suite: Suite) -> None:
        failed = adp.failed_classes(self.policy, suite.version, suite.algorithms)
        if failed:
            raise PolicyError(first_reason(failed), f"policy refuses {suite}")

    # --- traffic keys ----------------------------------------------------------------------

    def transforms(self, suite: Suite, kp: bytes, ekp_len: int, header: bytes, them: Peer,
                   me: LocalIdentity, state: PeerState, *, inbound: bytes | None = None
                   ) -> Transforms:
        """Derive E_kp / A_kp and build the SAs (tunnel endpoints oriented for the direction).

        ``inbound``: the outer source of the received packet the SAs are for (None: sending).
        Receiving SAs only decide the mode: the engine does not compare a tunnel packet's outer
        addresses with them, so a nomadic peer's SAs stay valid wherever it sends from.
        """
        e_kp, a_kp = traffic_keys(suite, kp, ekp_len, header, pre06=them.pre06)
        if self.key_log is not None:
            self.key_log(TrafficKeys("in" if inbound is not None else "out", me.name, them.name,
                                     suite.version, bytes(header), kp, e_kp, a_kp))
        tunnel = None
        outer = inbound if state.nomadic and inbound is not None else state.tunnel
        if outer is None and self.policy.mode == "tunnel":
            # host-to-host tunnel: the outer header carries the principals' own addresses
            outer = min(them.addresses, default=None)
            if outer is None:
                raise PolicyError("no_identity", f"tunnel mode needs an address of {them.name}")
        if outer is not None:
            local = next((a for a in sorted(me.addresses) if len(a) == len(outer)), None)
            if local is None:
                raise PolicyError("no_identity", "no local address of the tunnel's family")
            tunnel = (outer, local) if inbound is not None else (local, outer)
        return build(suite, e_kp, a_kp, tunnel=tunnel, replay_window=self.policy.replay_window,
                     rng=self.rng)

    # --- certificates not yet known --------------------------------------------------------

    def queue(self, name: SkipName, direction: str, packet: bytes, nsid: int, mkid: bytes,
              address: bytes, now: float, *, route: tuple[str, str] | None = None) -> None:
        """Hold a packet for a principal whose certificate we lack; the first one asks."""
        self.count_dropped(self.pending.expire(now))
        first, evicted = self.pending.add(name, direction, packet, now, route=route)
        if evicted:
            self.counters.hit("queue_evicted", evicted)
        if first:
            self.events.append(CertificateNeeded(nsid, mkid, address, name, direction))
        self.counters["queued"] += 1
        self.counters["cert_pending"] += 1

    def count_dropped(self, dropped: Counter[str]) -> None:
        for reason, packets in dropped.items():
            self.counters.hit(reason, packets)


def first_reason(code: AdpCode) -> str:
    """The reason code of the first algorithm class an ADP code marks as refused."""
    for bit, reason in (
        (AdpCode.KIJ_UNSUPPORTED, "unsupported_kij_alg"),
        (AdpCode.CRYPT_UNSUPPORTED, "unsupported_crypt_alg"),
        (AdpCode.MAC_UNSUPPORTED, "unsupported_mac_alg"),
        (AdpCode.COMP_UNSUPPORTED, "unsupported_comp_alg"),
    ):
        if code & bit:
            return reason
    return "unsupported_algorithm"
