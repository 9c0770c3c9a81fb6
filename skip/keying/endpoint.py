"""The SKIP endpoint: zero-message keying in front of the shared ESP/AH engine (sans-I/O).

``protect(ip_packet, now)`` -> the packet with a SKIP header and AH/ESP;
``unprotect(wire_packet, now)`` -> :class:`Received` (or None when the packet was queued for a
certificate or consumed as algorithm-discovery advice). Every refusal raises a
:class:`skip.errors.SkipError` whose reason is also counted in :attr:`SkipEndpoint.counters`;
side effects the driver must carry out (certificate fetches, packets to send) are queued as
events (:meth:`SkipEndpoint.events`). Time is always the ``now`` argument and all randomness
comes from the one ``rng`` given at construction.

Per packet, steady state costs a few dictionary look-ups in front of the engine: the sender
keeps one current Kp per (local principal, peer) with its SAs and encoded header; the receiver
keeps the SAs of every live Kp it has verified, keyed by the SKIP header bytes (plus the
addresses that name NSID-0 principals), so neither side repeats DH, Kp decryption or key
derivation until the Kp changes. The protocol rules and their sources are in docs/keying.md
and docs/protocol/decisions.md.
"""

from __future__ import annotations

import os
import struct
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import ip_address

from skip.crypto import kdf
from skip.crypto import skip_numbers as num
from skip.crypto.kp_wrap import (
    legacy_decrypt_kp,
    legacy_encrypt_kp,
    modern_unwrap_kp,
    modern_wrap_kp,
)
from skip.errors import ConfigError, KeyingError, ParseError, PolicyError, SkipError
from skip.ipsec.counters import Counters as SaCounters
from skip.keying import adp
from skip.keying.events import (
    AlgorithmsChanged,
    CertificateNeeded,
    Counters,
    Dropped,
    Event,
    Received,
    Transmit,
)
from skip.keying.identity import LocalIdentity, Peer, group, skip_name
from skip.keying.kij_cache import KijCache, KijEntry
from skip.keying.pending import PendingPackets
from skip.keying.policy import KeyingPolicy
from skip.keying.status import PeerStatus
from skip.keying.suite import Suite, check_group
from skip.keying.transforms import Transforms, build
from skip.wire.ip import (
    PROTO_AH,
    PROTO_ESP,
    PROTO_ICMP,
    PROTO_NONE,
    build_ipv4,
    build_ipv6,
    locate_upper,
)
from skip.wire.nsid import STANDARD_NSIDS, NsidTable
from skip.wire.skip_header import FIXED, IP_PROTOCOL_SKIP, SkipHeader, measure
from skip.wire.skip_icmp import ICMP_TYPE_SKIP, AdpCode, SkipIcmp

Rng = Callable[[int], bytes]

#: The fixed part of a SKIP header but n (which the cached Kp knows): Ver|Rsvd NSIDs
#: NextHeader, and the algorithms word.
_FIXED_WORDS = struct.Struct("!I4xI")
_MAX_LAYOUTS = 4096  # real traffic uses a handful; the bound stops a flood of variants
_SOLICITATION_SIZE = 256  # bytes of IP datagram: room for the answer (see solicit)
_MAX_ALIASES = 8  # receive-cache keys per Kp (address pairs of its two principals)
_IPV4_PLAIN = 20  # an IPv4 header without options (first byte 0x45)
_PROTO_ICMPV6 = 58
_SEQ = struct.Struct("!I")
_SEQ_OFFSET = {PROTO_ESP: 4, PROTO_AH: 8}  # from the start of ESP / AH to its sequence number
#: ParseError reasons of an algorithm number missing from our tables (the EKp length is unknown)
_UNKNOWN_NUMBER = frozenset({"unsupported_kij_alg", "unsupported_crypt_alg",
                             "unsupported_mac_alg"})


def _addresses(packet: bytes | memoryview) -> tuple[bytes, bytes]:
    """(source, destination) in network form; the caller has validated the IP header."""
    if packet[0] >> 4 == 4:
        return bytes(packet[12:16]), bytes(packet[16:20])
    return bytes(packet[8:24]), bytes(packet[24:40])


#: A verified Kp is found by its SKIP header (as its ICV image) and by the addresses that name
#: a principal: bytes src|dst|header when both are named by address (NSID 0), else a tuple
#: with b"" for a principal named by MKID (then any address reaches it). One form per NSID
#: pair, whatever the IP options or Rsvd bits, so a packet cannot reach the same Kp under a
#: second key (with a fresh replay window).
_RxCacheKey = bytes | tuple[bytes, bytes, bytes]
_RSVD_AND_NSIDS = 0x0FFFFF00  # of the first SKIP header word


def _rx_key(packet: bytes, off: int, end: int, word0: int) -> tuple[_RxCacheKey, bytes | None]:
    """The receive-cache key of a packet, and its header's ICV image when Rsvd is not zero
    (Rsvd is ignored on receive and zero in the AH ICV, draft-06 s. 1.8 and 1.10.1)."""
    src, dst = _addresses(packet)
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
class _PeerState:
    """Per-peer facts that outlive any one Kp: where its packets go and when it was heard.

    Kept while the peer's public value stays the same (a renewed certificate, a new tunnel),
    dropped with its keys by remove_peer. Send and receive keys point at it, so the per-packet
    bookkeeping is an attribute store, not a dictionary look-up.
    """

    tunnel: bytes | None = None  # outer destination (tunnel mode); learned if nomadic
    nomadic: bool = False
    sent: float | None = None  # `now` of the last packet protected for the peer
    received: float | None = None  # `now` of the last packet from the peer that verified
    last: _RxKey | None = None  # the Kp that packet came under (its n)
    newest: _RxKey | None = None  # the newest Kp admitted: only its packets move a nomadic peer
    # Per local principal (by name), in the modern profile, times in ms of Kp creation:
    tx_created: dict[str, int] = field(default_factory=dict)  # of our last Kp to the peer
    kp_floor: dict[str, int] = field(default_factory=dict)  # least for our next (its notice)
    rx_floor: dict[str, int] = field(default_factory=dict)  # its Kps made before are refused
    rx_live: dict[str, list[_RxKey]] = field(default_factory=dict)  # its Kps we hold


@dataclass(slots=True)
class _TxKey:
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
    state: _PeerState

    def live(self, now: float) -> bool:
        """Still the Kp to send under (protect's fast path has this test inline)."""
        return now < self.expires and self.used.bytes_out < self.max_bytes


@dataclass(slots=True)
class _RxKey:
    """A verified Kp: its SAs (with their replay window in the modern profile)."""

    transforms: Transforms
    unprotect: Callable[..., bytes]  # Transforms.unprotect, one attribute nearer
    peer: str
    identity: str
    version: int
    algorithms: tuple[int, int, int, int]
    n: int
    authenticated: bool
    state: _PeerState
    index: tuple[str, str, bytes]  # (local principal, peer, EKp): one Kp, one window
    header: bytes  # as the ICV image (Rsvd 0): a second header for the same Kp is refused
    created: int = -1  # ms, authenticated with the Kp (modern); -1 in the legacy profile
    keys: list[_RxCacheKey] = field(default_factory=list)  # the receive-cache keys reaching it
    accept_from: float = 0.0  # local times at which the local n is within +-1 of n
    accept_until: float = 0.0

    def __post_init__(self) -> None:
        self.accept_from = float(kdf.n_start(self.n - 1))
        self.accept_until = float(kdf.n_start(self.n + 2))


class SkipEndpoint:
    """One SKIP node: local principals, known peers, keys and the queues around them."""

    def __init__(
        self,
        identities: Iterable[LocalIdentity] = (),
        peers: Iterable[Peer] = (),
        *,
        policy: KeyingPolicy | None = None,
        rng: Rng = os.urandom,
        nsids: NsidTable = STANDARD_NSIDS,
        started: float,
    ) -> None:
        """``started``: when this node's receive state began (the daemon's start, in the
        same clock as every ``now``). Modern Kps made before it are refused (``kp_stale``):
        their replay windows were lost with the previous process. It has no default because
        none is safe: the first packet's arrival comes after the peer made its Kp, and a
        receiver that took it as its start would refuse its peer's live Kps."""
        self.policy = policy or KeyingPolicy()
        self._started_ms = int(started * 1000)
        self.rng = rng
        self.nsids = nsids
        self._counters = Counters()
        self._tx_ok = self._rx_ok = 0  # the two per-packet counts, folded in by `counters`
        self.kij_cache = KijCache(
            self.policy.kij_cache_size, self.policy.dh_per_second, self.policy.dh_burst
        )
        self._identities: dict[str, LocalIdentity] = {}
        self._identity_by_mkid: dict[tuple[int, bytes], LocalIdentity] = {}
        self._identity_by_addr: dict[bytes, LocalIdentity] = {}
        self._peers: dict[str, Peer] = {}
        self._peer_by_mkid: dict[tuple[int, bytes], Peer] = {}
        self._peer_by_addr: dict[bytes, Peer] = {}
        self._state: dict[str, _PeerState] = {}
        self._tx: dict[tuple[str, str], _TxKey] = {}
        self._tx_by_route: dict[bytes, _TxKey] = {}  # IPv4 source+destination -> current Kp
        self._rx: dict[_RxCacheKey, _RxKey] = {}
        self._rx_kps: dict[tuple[str, str, bytes], _RxKey] = {}  # by _RxKey.index
        self._rx_per_peer: dict[str, int] = {}
        self._rx_n = -1
        self._layouts: dict[tuple[int, int], int] = {}  # memo of _measure
        self._suites: dict[str, Suite] = {}  # ADP-chosen suites, by peer name
        self.capabilities: dict[str, SkipIcmp] = {}  # last ADP advice, by peer name
        self._pending = PendingPackets(self.policy.pending_peers, self.policy.queue_per_peer,
                                       self.policy.pending_seconds)
        self._events: deque[Event] = deque()
        self._adp_limiter = adp.AnswerLimiter(self.policy.adp_interval, self.policy.adp_sources,
                                              self.policy.adp_per_second)
        for identity in identities:
            self.add_identity(identity)
        for peer in peers:
            self.add_peer(peer)

    @property
    def counters(self) -> Counters:
        """Counts by reason code and success name (``tx_ok``, ``rx_ok``, ...).

        The two counts every packet bumps are plain integers on the hot path (a ``Counter``
        item costs several times an attribute increment) and are folded in here on reading.
        """
        counters = self._counters
        for name, count in (("tx_ok", self._tx_ok), ("rx_ok", self._rx_ok)):
            if count:
                counters[name] += count
        self._tx_ok = self._rx_ok = 0
        return counters

    # --- configuration -----------------------------------------------------------------------

    def add_identity(self, identity: LocalIdentity) -> None:
        if identity.name in self._identities:
            raise ConfigError("config_invalid", f"identity {identity.name!r} exists")
        self._identities[identity.name] = identity
        if identity.nsid:
            self._identity_by_mkid[(identity.nsid, identity.mkid)] = identity
        for a in identity.addresses:
            self._identity_by_addr[a] = identity

    def replace_identity(self, identity: LocalIdentity) -> None:
        """Rename, readdress or rekey a local principal in place (a driver's reload).

        With the same private values, what was derived from them stays valid, and stays: the
        master keys and the receive Kps with their replay windows (a new endpoint would give
        each peer's current Kp a fresh window, and a captured packet would pass again). The
        send Kps are retired: their headers and SAs carry the old names and addresses. With
        other private values (a new key pair), everything derived from the old ones goes.
        """
        old = self._identities.pop(identity.name, None)
        if old is None:
            raise ConfigError("config_invalid", f"no identity {identity.name!r} to replace")
        for table in (self._identity_by_mkid, self._identity_by_addr):
            for k in [k for k, i in table.items() if i is old]:
                del table[k]
        self.add_identity(identity)
        if dict(old.keys) != dict(identity.keys):
            self.kij_cache.discard(lambda key: key[0] == identity.name)
            self._drop_rx(lambda rx: rx.identity == identity.name)
        self._retire_tx()

    def set_policy(self, policy: KeyingPolicy) -> None:
        """Adopt another policy in place (a driver's reload), keeping what it still allows.

        The receive Kps stay with their replay windows (for the reason given under
        :meth:`replace_identity`), except those the new policy refuses - legacy when it is no
        longer allowed, algorithms no longer accepted - whose packets the slow path would now
        refuse anyway. Send Kps are retired: their suites, lifetimes and mode came from the old
        policy. The master-key cache, the certificate wait queue and the SKIP ICMP rate limit
        take the new bounds (pinned master keys are never evicted to fit).
        """
        self.policy = policy
        self.kij_cache.resize(policy.kij_cache_size, policy.dh_per_second, policy.dh_burst)
        evicted = self._pending.resize(policy.pending_peers, policy.queue_per_peer,
                                       policy.pending_seconds)
        if evicted:
            self._counters.hit("queue_evicted", evicted)
        self._adp_limiter = adp.AnswerLimiter(policy.adp_interval, policy.adp_sources,
                                              policy.adp_per_second)
        self._drop_rx(lambda rx: bool(adp.failed_classes(policy, rx.version, rx.algorithms)))
        self._retire_tx()

    def add_peer(self, peer: Peer, now: float | None = None, *,
                 tunnel: str | bytes | None = None) -> list[Event]:
        """Learn (or replace) a peer; packets queued for it are released at ``now``.

        ``tunnel``: send to this peer in tunnel mode with this outer destination address (for
        a nomadic peer: where to send until it is heard from; None keeps a learned address).
        A peer renewed with the same public value keeps its master key, its receive Kps and
        their replay windows (its traffic stays valid); if anything about how we send to it
        changed (tunnel, names, algorithms), its send Kps are retired, so the next packet
        starts a new Kp with SAs for the new parameters. Returns the events the release
        produced (they are also queued in :meth:`events`).
        """
        if peer.nomadic and self.suite_for(peer).version != num.MODERN_VERSION:
            # a legacy packet can be replayed from anywhere: it must never move a peer
            raise ConfigError("config_invalid", f"nomadic peer {peer.name!r} needs the modern "
                              "profile (replay protection)")
        self._check_unique(peer)
        outer = ip_address(tunnel).packed if tunnel is not None else None
        old = self._peers.get(peer.name)
        state = self._state.get(peer.name)
        if old is not None and state is not None and \
                (old.group, old.public) == (peer.group, peer.public):
            if outer is None and old.nomadic and peer.nomadic:
                outer = state.tunnel
            self._unindex(old)
            if _sending(old, state.tunnel) != _sending(peer, outer):
                self._retire_tx(peer.name)
        else:
            self.remove_peer(peer.name)
            state = self._state[peer.name] = _PeerState()
        state.tunnel, state.nomadic = outer, peer.nomadic
        self._peers[peer.name] = peer
        if peer.nsid:
            self._peer_by_mkid[(peer.nsid, peer.mkid)] = peer
        for a in peer.addresses:
            self._peer_by_addr[a] = peer
        if outer is not None and not peer.nomadic:
            self._peer_by_addr.setdefault(outer, peer)
        return self._release(peer, now)

    def _check_unique(self, peer: Peer) -> None:
        """One public value, one principal (docs/protocol/decisions.md 3.13).

        A CA that certifies A's public value under E's name would otherwise make this node
        take A's packets for E's (an unknown key-share), and a peer holding one of our own
        public values could be sent our own packets back as its (reflection). Peers of one
        ``principal`` (one certificate behind several policy rules) may share it.
        """
        for other in self._peers.values():
            if other.name != peer.name and other.principal != peer.principal and \
                    (other.group, other.public) == (peer.group, peer.public):
                raise ConfigError("duplicate_public_value", f"peer {peer.name!r} has the "
                                  f"public value of peer {other.name!r}")
        for me in self._identities.values():
            if me.publics.get(peer.group) == peer.public:
                raise ConfigError("duplicate_public_value", f"peer {peer.name!r} has the "
                                  f"public value of local principal {me.name!r}")

    def remove_peer(self, name: str) -> None:
        """Forget a peer and every key derived from its public value (e.g. on revocation)."""
        peer = self._peers.pop(name, None)
        if peer is None:
            return
        self._unindex(peer)
        self.kij_cache.discard(lambda key: key[1] == name)
        self._retire_tx(name)
        self._drop_rx(lambda rx: rx.peer == name)
        self._rx_per_peer.pop(name, None)
        self._suites.pop(name, None)
        self._state.pop(name, None)

    def _unindex(self, peer: Peer) -> None:
        for table in (self._peer_by_mkid, self._peer_by_addr):
            for k in [k for k, p in table.items() if p is peer]:
                del table[k]
        self._tx_by_route.clear()

    def _retire_tx(self, peer_name: str | None = None) -> int:
        """Retire the send Kps toward one peer (None: toward every peer); returns how many."""
        pairs = [p for p in self._tx if peer_name is None or p[1] == peer_name]
        for pair in pairs:
            self._tx.pop(pair).expires = -1.0
        self._tx_by_route.clear()
        return len(pairs)

    def flush(self, now: float) -> int:
        """An operator's "forget cached keys": master and send keys go, replay state stays.

        Dropped: every Kij computed on demand (the next Kp that needs one computes it again,
        within the DH budget), every send Kp (the next packet to each peer starts a new one)
        and the receive Kps whose n is already outside the +-1 window at ``now``.
        Kept: Kij pinned by :meth:`precompute` (pinned so that expected peers never wait for
        the DH budget; recomputing would give the same bytes), and the live receive Kps with
        their replay windows. A peer goes on sending under its Kp whatever we forget, so
        forgetting it would buy nothing but a fresh window: every packet captured since that
        Kp began would be accepted once more. Peers, learned nomadic addresses, algorithm
        choices and queued packets are not keys and stay as well. Returns how many keys went.
        """
        dropped = self.kij_cache.drop_unpinned() + self._retire_tx()
        return dropped + self._purge_rx(kdf.counter_n(now))

    def precompute(self, peer_name: str, identity_name: str | None = None, *,
                   version: int | None = None) -> None:
        """Compute and pin Kij for an expected peer (draft-06 s. 1.6.3), outside the DH budget.

        ``version``: the profile whose Kij to compute (default: the peer's current suite).
        """
        peer = self._peers[peer_name]
        version = version or self.suite_for(peer).version
        check_group(version, group(peer.group))
        names = [identity_name] if identity_name else list(self._identities)
        for name in names:
            identity = self._identities[name]
            if peer.group in identity.keys:
                self.kij_cache.precompute((name, peer.name, version),
                                          self._kij_function(identity, peer, version))

    def suite_for(self, peer: Peer) -> Suite:
        """ADP choice > the peer's configured suite > the policy default for its group."""
        chosen = self._suites.get(peer.name) or peer.suite
        if chosen is not None:
            return chosen
        if peer.group.startswith("skip-"):
            return self.policy.legacy_default
        return self.policy.modern_default

    def solicit(self, peer: str, now: float, *, identity: str | None = None) -> bytes:
        """A SKIP packet with Kij Alg 0 (no Kp): asks the peer for SKIP ICMP (ADP-00).

        It carries the peer's current Crypt/MAC numbers and, after the header (Next Header 59:
        nothing follows), zero padding up to 256 bytes: the answer is never larger than the
        request, so the padding is what lets it be sent. The answer, once unprotected,
        updates :attr:`capabilities`.
        """
        them = self._peers[peer]
        me = self._identities[identity] if identity else next(
            i for i in self._identities.values() if them.group in i.keys)
        suite = self.suite_for(them)
        n = kdf.counter_n(now)
        header = SkipHeader(suite.version, me.nsid, them.nsid, PROTO_NONE, n, 0,
                            suite.crypt_alg, suite.mac_alg, 0, b"", me.mkid, them.mkid).encode()
        for dst in sorted(them.addresses):
            src = next((a for a in sorted(me.addresses) if len(a) == len(dst)), None)
            if src is not None:
                build = build_ipv4 if len(dst) == 4 else build_ipv6
                hdr_len = 20 if len(dst) == 4 else 40
                pad = bytes(max(0, _SOLICITATION_SIZE - hdr_len - len(header)))
                return build(ip_address(src), ip_address(dst), IP_PROTOCOL_SKIP, header + pad)
        raise PolicyError("no_identity", "no address pair of one family to send it on")

    def status(self, now: float) -> dict[str, object]:
        """Everything an operator may see (skipctl): names, algorithms, key ages, no key bytes."""
        return {
            "identities": [{"name": i.name, "nsid": i.nsid, "mkid": i.mkid.hex(),
                            "groups": sorted(i.keys)} for i in self._identities.values()],
            "peers": [{"name": p.name, "group": p.group, "nsid": p.nsid, "mkid": p.mkid.hex(),
                       "suite": self.suite_for(p).algorithms,
                       "version": self.suite_for(p).version,
                       "advice": self.capabilities[p.name].encode().hex()
                       if p.name in self.capabilities else None,
                       "rx_keys": self._rx_per_peer.get(p.name, 0)}
                      for p in self._peers.values()],
            "tx_keys": [{"identity": me, "peer": them, "suite": tx.suite.algorithms,
                         "expires_in": max(0.0, tx.expires - now),
                         "bytes_left": max(0, tx.max_bytes - tx.used.bytes_out)}
                        for (me, them), tx in self._tx.items()],
            "kij_cache": {"entries": len(self.kij_cache), "capacity": self.kij_cache.capacity,
                          "computed": self.kij_cache.computed},
            "pending": self._pending.sizes(),
            "counters": dict(self.counters),
        }

    def peer_status(self, name: str, now: float) -> PeerStatus:
        """The state of one peer for operators: key ages and counts, never key bytes.

        The current send Kp is the newest live one toward the peer (from any local principal);
        the skew is that of the last packet that verified, against the local n of its arrival.
        """
        peer = self._peers.get(name)
        if peer is None:
            raise KeyingError("unknown_mkid", f"no peer named {name!r}")
        state = self._state[name]
        live = [tx for me in self._identities
                if (tx := self._tx.get((me, name))) is not None
                and tx.live(now)]
        tx = max(live, key=lambda k: k.born, default=None)
        suite = self.suite_for(peer)
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
            rx_keys=self._rx_per_peer.get(name, 0),
        )

    def events(self) -> Sequence[Event]:
        """Drain the event queue.

        Drivers ask after every packet and almost always find nothing: that case returns a
        shared empty tuple without allocating.
        """
        if not self._events:
            return ()
        out = list(self._events)
        self._events.clear()
        return out

    # --- sending ---------------------------------------------------------------------------

    def protect(self, packet: bytes, now: float, *, identity: str | None = None,
                peer: str | None = None) -> bytes | None:
        """SKIP-protect one IP datagram to its peer; None if it waits for a certificate.

        The local principal is found by the source address and the peer by the destination
        address, unless named explicitly. The common case (a current Kp for the named pair, or
        for this IPv4 address pair) runs inline here; the engine validates the IP header.
        """
        try:
            if identity is None and peer is None:
                tx = self._tx_by_route.get(packet[12:20]) \
                    if len(packet) >= _IPV4_PLAIN and packet[0] == 0x45 else None
            elif identity is not None and peer is not None:
                tx = self._tx.get((identity, peer))
            else:
                tx = None
            if tx is None or not (now < tx.expires and tx.used.bytes_out < tx.max_bytes):
                tx = self._current_tx(packet, now, identity, peer)
                if tx is None:
                    return None
            wire = tx.protect(packet, shim=tx.shim)
            tx.state.sent = now
            self._tx_ok += 1
            return wire
        except SkipError as err:
            self._counters.hit(err.reason)
            raise

    def _current_tx(self, packet: bytes, now: float, identity_name: str | None,
                    peer_name: str | None) -> _TxKey | None:
        """The Kp for a packet the fast path could not place: finds the principal and the
        peer, makes a Kp when the pair has none that is live, and remembers the IPv4 route.
        None: the peer is unknown and the packet waits for its certificate."""
        n = kdf.counter_n(now)
        locate_upper(packet, verify_checksum=False)  # validates the header chain
        src, dst = _addresses(packet)
        if identity_name is not None:
            me = self._identities.get(identity_name)
        else:
            me = self._identity_by_addr.get(src)
        if me is None:
            raise PolicyError("no_identity", "no such local principal, or none at this address")
        them = self._peers.get(peer_name) if peer_name else self._peer_by_addr.get(dst)
        if them is None:
            if peer_name:
                raise KeyingError("unknown_mkid", f"no peer named {peer_name!r}")
            self._queue(skip_name(0, b"", dst), "outbound", packet, 0, b"", dst, now)
            return None
        tx = self._pair_tx(me, them, self.suite_for(them), n, now)
        if identity_name is None and peer_name is None and len(src) == 4 and \
                packet[0] == 0x45:
            self._tx_by_route[packet[12:20]] = tx  # bounded: only routes that found a pair
        return tx

    def _pair_tx(self, me: LocalIdentity, them: Peer, suite: Suite, n: int, now: float,
                 usable: Callable[[_TxKey], bool] = lambda tx: True) -> _TxKey:
        """The pair's current send Kp, or (none live, or not ``usable``) a new one in ``suite``
        that becomes it; the old one is retired, so routes that still point at it take the
        slow path."""
        pair = (me.name, them.name)
        tx = self._tx.get(pair)
        if tx is None or not tx.live(now) or not usable(tx):
            if tx is not None:
                tx.expires = -1.0
            tx = self._tx[pair] = self._new_tx(me, them, suite, n, now)
        return tx

    def _new_tx(self, me: LocalIdentity, them: Peer, suite: Suite, n: int, now: float) -> _TxKey:
        """A fresh Kp: new at every n, after the byte/time limits, per peer and principal."""
        state = self._state[them.name]
        if state.nomadic and state.tunnel is None:
            raise KeyingError("nomadic_unheard", f"{them.name!r} has not been heard from yet")
        suite.check()
        check_group(suite.version, group(them.group))
        self._check_accepts(suite)
        entry = self._kij_entry(me, them, suite.version, now)
        prof = suite.profile
        kij, crypt, mac, _ = suite.algorithms
        ekp_len = prof.ekp_length(kij, crypt, mac)
        kp_len = prof.kp_length(crypt, mac)
        kp = self.rng(kp_len)
        if suite.version == num.LEGACY_VERSION:
            kijn = entry.kijn_for(n, kdf.legacy_kijn)
            ekp = legacy_encrypt_kp(prof.kij[kij], kijn, kp, ekp_len, self.rng)
        else:
            mine, theirs = me.publics[them.group], them.public
            kijn = entry.kijn_for(n, lambda k, n: kdf.modern_kijn(k, n, mine, theirs), 1)
            # strictly increasing per pair (the receiver retires older Kps by it), never
            # below what the peer asked for after it restarted
            created = max(int(now * 1000), state.kp_floor.get(me.name, 0),
                          state.tx_created.get(me.name, -1) + 1)
            state.tx_created[me.name] = created
            ekp = modern_wrap_kp(kijn, kp, created)
        next_header = PROTO_ESP if suite.layers[0] == "esp" else PROTO_AH
        raw = SkipHeader(suite.version, me.nsid, them.nsid, next_header, n, kij, crypt, mac, 0,
                         ekp, me.mkid, them.mkid).encode()
        transforms = self._transforms(suite, kp, ekp_len, raw, them, me, pre06=them.pre06)
        self._counters["kp_new"] += 1
        expires = min(now + self.policy.kp_max_seconds, kdf.n_start(n + 1))
        return _TxKey(expires, transforms.sas[-1].counters, self.policy.kp_max_bytes, suite, raw,
                      transforms.protect, (IP_PROTOCOL_SKIP, raw), now, transforms, state)

    def _transforms(self, suite: Suite, kp: bytes, ekp_len: int, header: bytes, them: Peer,
                    me: LocalIdentity, *, pre06: bool, inbound: bytes | None = None
                    ) -> Transforms:
        """Derive E_kp / A_kp and build the SAs (tunnel endpoints oriented for the direction).

        ``inbound``: the outer source of the received packet the SAs are for (None: sending).
        Receiving SAs only decide the mode: the engine does not compare a tunnel packet's outer
        addresses with them, so a nomadic peer's SAs stay valid wherever it sends from.
        """
        prof = suite.profile
        _, crypt, mac, _ = suite.algorithms
        if suite.version == num.LEGACY_VERSION:
            kp_p = kdf.kp_prime(kp, ekp_len)
            e_kp = kdf.legacy_e_kp(kp_p, crypt, pre06=pre06) if crypt else b""
            a_kp = kdf.legacy_a_kp(kp_p, mac, pre06=pre06) if mac else b""
        else:
            e_kp, a_kp = kdf.modern_traffic_keys(
                kp, header, prof.crypt_key_size(crypt), prof.mac_key_size(crypt, mac)
            )
        tunnel = None
        state = self._state[them.name]
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

    # --- receiving -------------------------------------------------------------------------

    def unprotect(self, packet: bytes, now: float) -> Received | None:
        """Check and strip SKIP + AH/ESP. None: queued for a certificate, or ADP consumed.

        The common case (IPv4 without options, a Kp already verified) runs inline here; the
        rest is in :meth:`_admit`. The engine re-checks the IP header (checksum, length,
        fragments) before anything is decrypted.
        """
        try:
            if len(packet) >= _IPV4_PLAIN + 12 and packet[0] == 0x45 and packet[9] == 57:
                off = _IPV4_PLAIN
            else:
                off = self._skip_offset(packet)
            word0, word2 = _FIXED_WORDS.unpack_from(packet, off)
            length = self._layouts.get((word0, word2)) or \
                self._measure(packet, off, word0, word2, now)
            # A header cut short matches no cached key (its fixed words fix the key's length)
            # and the slow path's parse refuses it (truncated): no length test here.
            end = off + length
            shim_icv = None
            if off == _IPV4_PLAIN and not word0 & _RSVD_AND_NSIDS:
                key: _RxCacheKey = packet[12:end]  # what _rx_key makes of it, in one slice
            else:
                key, shim_icv = _rx_key(packet, off, end, word0)
            rx = self._rx.get(key)
            if rx is not None and rx.accept_from <= now < rx.accept_until:  # n within +-1
                inner = rx.unprotect(packet, shim_len=length, shim_icv=shim_icv)
            else:
                local_n = kdf.counter_n(now)
                src, dst = _addresses(packet)
                header = shim_icv or packet[off:end]
                rx = self._admit(packet, end, header, src, dst, local_n, now)
                if rx is None:
                    return None
                inner = rx.unprotect(packet, shim_len=length, shim_icv=shim_icv)
                self._store_rx(key, rx, local_n, now)
            state = rx.state
            state.received = now
            state.last = rx
            if state.nomadic:
                self._roam(rx, packet, end)
            if inner[9 if inner[0] >> 4 == 4 else 6] == PROTO_ICMP and self._maybe_adp(inner, rx):
                return None
            self._rx_ok += 1
            return Received(inner, rx.peer, rx.identity, rx.version, rx.algorithms, rx.n)
        except SkipError as err:
            self._counters.hit(err.reason)
            raise

    @staticmethod
    def _skip_offset(packet: bytes) -> int:
        _version, _nh_off, off, proto = locate_upper(packet)
        if proto != IP_PROTOCOL_SKIP:
            raise ParseError("unsupported_protocol", f"protocol {proto} is not SKIP")
        if len(packet) < off + 12:
            raise ParseError("truncated", "SKIP header shorter than its 12 fixed bytes")
        return off

    def _measure(self, packet: bytes, off: int, word0: int, word2: int, now: float) -> int:
        """Length of a SKIP header layout not seen before (everything of the fixed part but n
        decides it); memoised, at most _MAX_LAYOUTS of them, and only layouts that parse."""
        try:
            end = measure(packet, off, num.header_ekp_length, self.nsids)[0]
        except ParseError as err:
            if err.reason in _UNKNOWN_NUMBER:
                self._answer_unknown_numbers(packet, off, now)
            raise
        if len(self._layouts) < _MAX_LAYOUTS:
            self._layouts[(word0, word2)] = end - off
        return end - off

    def _answer_unknown_numbers(self, packet: bytes, off: int, now: float) -> None:
        """A header with an algorithm number we do not know: answer it if we can (ADP-00).

        The EKp's length follows from the numbers, so nothing behind the 12 fixed bytes can be
        found: not the source MKID that would name the sender, not the destination MKID, not
        the AH/ESP. The sender can still be named when its Source NSID is 0 (its address names
        it), and the packet is still known to be for us when the Dest NSID is 0: then it gets
        the checks of :meth:`_admit` that the fixed part allows, and a SKIP ICMP answer. With
        an MKID in the header there is no one to answer (decisions.md 3.11). The caller
        raises the parse error (``unsupported_*_alg``) unless a check here raised first.
        """
        b0, src_nsid, dst_nsid, next_header, n, *algs = FIXED.unpack_from(packet, off)
        version = b0 >> 4
        failed = adp.failed_classes(self.policy, version, algs)
        if src_nsid == dst_nsid == 0:
            src, dst = _addresses(packet)
            me = self._receiver(version, 0, b"", dst, n, kdf.counter_n(now))
            # AH's own Next Header is out of reach: AH alone (Crypt Alg 0) may carry SKIP ICMP
            may_be_icmp = next_header == PROTO_AH and algs[1] == 0
            self._answer_adp(packet, version, may_be_icmp, failed, me,
                             self._peer_by_addr.get(src), now)

    def _receiver(self, version: int, dst_nsid: int, dst_mkid: bytes, dst: bytes, n: int,
                  local_n: int) -> LocalIdentity:
        """The checks of skip-core s. 1.4 before the algorithms: version allowed, destination
        one of our principals, n within +-1 of ours. Returns that principal."""
        if version == num.LEGACY_VERSION and not self.policy.allow_legacy:
            raise PolicyError("legacy_refused", "SKIP version 1 is disabled by policy")
        if dst_nsid:
            me = self._identity_by_mkid.get((dst_nsid, dst_mkid))
            if me is None:
                raise KeyingError("not_our_mkid", "destination MKID is not a local one")
        else:
            me = self._identity_by_addr.get(dst)
            if me is None:
                raise KeyingError("no_identity", "no local principal at the destination")
        if not -1 <= n - local_n <= 1:
            raise KeyingError("n_out_of_window", f"n {n}, local n {local_n}")
        return me

    def _admit(self, packet: bytes, end: int, header: bytes, src: bytes, dst: bytes,
               local_n: int, now: float) -> _RxKey | None:
        """First packet under a Kp: every check in the order of skip-core s. 1.4, then key
        recovery (the slow path)."""
        hdr = SkipHeader.parse(header, num.header_ekp_length, self.nsids)
        me = self._receiver(hdr.version, hdr.dst_nsid, hdr.dst_mkid, dst, hdr.n, local_n)
        if hdr.src_nsid:
            them = self._peer_by_mkid.get((hdr.src_nsid, hdr.src_mkid))
        else:
            them = self._peer_by_addr.get(src)
        algs = (hdr.kij_alg, hdr.crypt_alg, hdr.mac_alg, hdr.comp_alg)
        failed = adp.failed_classes(self.policy, hdr.version, algs)
        if hdr.kij_alg == 0 or failed:
            # AH alone shows what it carries; ESP (alone or inside AH) hides it
            may_be_icmp = hdr.next_header == PROTO_AH and end < len(packet) and \
                packet[end] in (PROTO_ICMP, _PROTO_ICMPV6)
            self._answer_adp(packet, hdr.version, may_be_icmp, failed, me, them, now)
            if hdr.kij_alg == 0:
                raise KeyingError("no_kp", "Kij Alg 0: an algorithm-discovery solicitation")
            raise KeyingError(_first_reason(failed), f"algorithms {algs}")
        if them is None:
            self._queue(skip_name(hdr.src_nsid, hdr.src_mkid, src), "inbound", packet,
                        hdr.src_nsid, hdr.src_mkid, src, now)
            return None
        suite = Suite(hdr.version, hdr.kij_alg, hdr.crypt_alg, hdr.mac_alg)
        suite.check()
        if hdr.next_header != (PROTO_ESP if suite.layers[0] == "esp" else PROTO_AH):
            # draft-06 s. 1.8: Next Header names what follows; the algorithms imply it
            raise ParseError("bad_header", f"Next Header {hdr.next_header} does not match "
                             f"the transforms {suite.layers}")
        index = (me.name, them.name, bytes(hdr.ekp))
        known = self._rx_kps.get(index)
        if known is not None:
            # the same Kp under other addresses (re-wrapped, IPv4 <-> IPv6): one window
            if known.header != header:
                raise KeyingError("replay", "a known traffic key under another header")
            if known.accept_until <= now:
                raise KeyingError("kp_superseded", "the sender has moved to a newer Kp")
            return known
        check_group(hdr.version, group(them.group))
        entry = self._kij_entry(me, them, hdr.version, now)
        prof = suite.profile
        kp_len = prof.kp_length(hdr.crypt_alg, hdr.mac_alg)
        state = self._state[them.name]
        created = -1
        if hdr.version == num.LEGACY_VERSION:
            kijn = entry.kijn_for(hdr.n, kdf.legacy_kijn)
            kp = legacy_decrypt_kp(prof.kij[hdr.kij_alg], kijn, hdr.ekp, kp_len)
        else:
            mine, theirs = me.publics[them.group], them.public
            kijn = entry.kijn_for(hdr.n, lambda k, n: kdf.modern_kijn(k, n, theirs, mine), 2)
            kp, created = modern_unwrap_kp(kijn, hdr.ekp)
            self._check_created(created, me, them, state, packet, now)
        self._counters["kp_decrypted"] += 1
        transforms = self._transforms(suite, kp, len(hdr.ekp), header, them, me,
                                      pre06=them.pre06, inbound=bytes(src))
        authenticated = bool(hdr.mac_alg)
        return _RxKey(transforms, transforms.unprotect, them.name, me.name,
                      hdr.version, algs, hdr.n, authenticated, state, index, bytes(header),
                      created)

    def _check_created(self, created: int, me: LocalIdentity, them: Peer, state: _PeerState,
                       packet: bytes, now: float) -> None:
        """Refuse a modern Kp made before this node started, or before the peer's newest Kp's
        predecessors were retired: its old replay window is gone, so its packets could be
        replays. A Kp from before the start gets the sender told to make a new one (the
        notice carries our start, so a sender whose clock is behind ours recovers too)."""
        if created < self._started_ms:
            self._answer_adp(packet, num.MODERN_VERSION, False, AdpCode.NONE, me, them, now,
                             kp_floor=self._started_ms)
            raise KeyingError("kp_stale", "the traffic key was made before this node started")
        if created < state.rx_floor.get(me.name, 0):
            raise KeyingError("kp_superseded", "the sender has moved to a newer Kp")

    def _store_rx(self, key: _RxCacheKey, rx: _RxKey, local_n: int, now: float) -> None:
        """Remember a verified Kp, or one more way to reach a known one (another address pair).

        Bounded without reopening replay windows: a modern Kp is retired once its sender has
        made a newer one and ``rx_superseded_seconds`` have passed, and a Kp made before the
        retired one's creation is refused from then on (so dropping the window loses nothing);
        a legacy Kp has no window, so the least recently admitted one makes room. What is still
        full after that refuses new Kps (``kp_limit``)."""
        if rx.keys:  # a known Kp: one more receive-cache key, the same window
            if len(rx.keys) < _MAX_ALIASES:
                rx.keys.append(key)
                self._rx[key] = rx
            return
        if local_n != self._rx_n:
            self._purge_rx(local_n)
        if rx.created >= 0:
            self._supersede(rx, now)
        count = self._rx_per_peer.get(rx.peer, 0)
        if count >= self.policy.rx_keys_per_peer:
            if rx.created < 0:
                oldest = next((k for k in self._rx_kps.values()
                               if k.peer == rx.peer and k.created < 0), None)
                if oldest is not None:
                    self._forget_rx(oldest)
                    count -= 1
            elif self._retire_oldest(rx):
                count -= 1
        if count >= self.policy.rx_keys_per_peer or len(self._rx_kps) >= self.policy.rx_keys:
            live = rx.state.rx_live.get(rx.identity, [])
            if rx in live:
                live.remove(rx)  # never admitted: it must not raise the floor when it goes
            raise KeyingError("kp_limit", f"{count} live traffic keys from {rx.peer!r}")
        rx.keys.append(key)
        self._rx[key] = rx
        self._rx_kps[rx.index] = rx
        self._rx_per_peer[rx.peer] = count + 1
        if rx.state.newest is None or rx.created > rx.state.newest.created or rx.created < 0:
            rx.state.newest = rx

    def _retire_oldest(self, rx: _RxKey) -> bool:
        """The peer's receive keys are full of Kps still in their grace period (a sender
        making Kps faster than one per ``rx_superseded_seconds / rx_keys_per_peer``): retire
        the oldest superseded one now. Its late packets become ``kp_superseded``, a loss TCP
        recovers from, where refusing the newest Kp (``kp_limit``) stalled the flow for good."""
        state = rx.state
        live = state.rx_live.get(rx.identity, [])
        old = min(live, key=lambda k: k.created, default=rx)
        if old is rx:  # the newcomer is the oldest of them all: refuse it instead
            return False
        state.rx_floor[rx.identity] = max(state.rx_floor.get(rx.identity, 0), old.created + 1)
        self._forget_rx(old)
        live.remove(old)
        return True

    def _supersede(self, rx: _RxKey, now: float) -> None:
        """A modern Kp joins its pair's live list: the older ones get their grace period (or
        this one does, if a newer one arrived first); those whose grace is over are retired,
        raising the pair's floor past them."""
        state = rx.state
        live = state.rx_live.setdefault(rx.identity, [])
        grace_end = now + self.policy.rx_superseded_seconds
        keep = []
        for old in live:
            if old.accept_until <= now or old.index not in self._rx_kps:
                floor = state.rx_floor.get(rx.identity, 0)
                state.rx_floor[rx.identity] = max(floor, old.created + 1)
                self._forget_rx(old)
                continue
            if old.created < rx.created:
                old.accept_until = min(old.accept_until, grace_end)
            else:
                rx.accept_until = min(rx.accept_until, grace_end)
            keep.append(old)
        keep.append(rx)
        state.rx_live[rx.identity] = keep

    def _roam(self, rx: _RxKey, packet: bytes, end: int) -> None:
        """A nomadic peer's packet verified: if from another outer address, send there now on.

        Only a packet that can only have come from the peer now moves it: it verified (ICV)
        and passed the replay check under the peer's newest Kp, in the modern profile (legacy
        has no replay protection), and it is the highest sequence number seen under that Kp,
        so a packet delayed or reordered from the old address does not move the peer back.
        The receive side is untouched (same Kps, same replay windows); the send Kps are
        retired, so the next packet starts a Kp whose SAs carry the new outer header.
        """
        state = rx.state
        src = _addresses(packet)[0]
        if src == state.tunnel or rx.version != num.MODERN_VERSION or rx is not state.newest:
            return
        sa = rx.transforms.sas[0]  # the modern profile has one layer: ESP, or AH alone
        window = sa.replay_window
        seq = _SEQ.unpack_from(packet, end + _SEQ_OFFSET[sa.protocol_number])[0]
        if window is None or window.top & 0xFFFFFFFF != seq:
            return
        me = self._identities.get(rx.identity)
        if me is None or not any(len(a) == len(src) for a in me.addresses):
            return  # no local address of that family to answer from
        state.tunnel = bytes(src)
        self._retire_tx(rx.peer)
        self._counters["peer_moved"] += 1

    def _purge_rx(self, local_n: int) -> int:
        """Forget the receive Kps no packet can use any more (n below local n - 1)."""
        self._rx_n = local_n
        return self._drop_rx(lambda rx: rx.n < local_n - 1)

    def _drop_rx(self, doomed: Callable[[_RxKey], bool]) -> int:
        gone = [rx for rx in self._rx_kps.values() if doomed(rx)]
        for rx in gone:
            self._forget_rx(rx)
        return len(gone)

    def _forget_rx(self, rx: _RxKey) -> None:
        """One receive Kp and every receive-cache key that reaches it (O(aliases))."""
        if self._rx_kps.pop(rx.index, None) is None:
            return
        for k in rx.keys:
            self._rx.pop(k, None)
        self._rx_per_peer[rx.peer] -= 1

    # --- keys ------------------------------------------------------------------------------

    def _kij_function(self, me: LocalIdentity, them: Peer, version: int
                      ) -> Callable[[], bytes]:
        """The (deferred) DH computation and the profile's Kij derivation from its result."""
        def compute() -> bytes:
            dh = group(them.group)
            secret = dh.shared_secret(me.private(them.group), them.public)
            self._counters["kij_computed"] += 1
            if version == num.LEGACY_VERSION:
                return kdf.legacy_kij(secret)
            return kdf.modern_kij(secret, dh.name, me.publics[them.group], them.public)
        return compute

    def _kij_entry(self, me: LocalIdentity, them: Peer, version: int, now: float) -> KijEntry:
        return self.kij_cache.get((me.name, them.name, version),
                                  self._kij_function(me, them, version), now)

    def _check_accepts(self, suite: Suite) -> None:
        failed = adp.failed_classes(self.policy, suite.version, suite.algorithms)
        if failed:
            raise PolicyError(_first_reason(failed), f"policy refuses {suite}")

    # --- certificates not yet known --------------------------------------------------------

    def _queue(self, name: bytes, direction: str, packet: bytes, nsid: int, mkid: bytes,
               address: bytes, now: float) -> None:
        self._count_dropped(self._pending.expire(now))
        first, evicted = self._pending.add(name, direction, packet, now)
        if evicted:
            self._counters.hit("queue_evicted", evicted)
        if first:
            self._events.append(CertificateNeeded(nsid, mkid, address, name, direction))
        self._counters["queued"] += 1
        self._counters["cert_pending"] += 1

    def _count_dropped(self, dropped: Counter[str]) -> None:
        for reason, packets in dropped.items():
            self._counters.hit(reason, packets)

    def _release(self, peer: Peer, now: float | None) -> list[Event]:
        names = {skip_name(0, b"", a) for a in peer.addresses}
        if peer.nsid:
            names.add(skip_name(peer.nsid, peer.mkid))
        outer = self._state[peer.name].tunnel
        if outer and not peer.nomadic:
            names.add(skip_name(0, b"", outer))
        if now is not None:
            self._count_dropped(self._pending.expire(now))  # never release stale packets
        waiting = self._pending.take(names)
        if waiting and now is None:
            raise KeyingError("cert_pending", "releasing queued packets needs `now`")
        produced = [self._replay_queued(direction, packet, now) for direction, packet in waiting]
        self._events.extend(produced)
        return produced

    def _replay_queued(self, direction: str, packet: bytes, now: float) -> Event:
        self._counters["released"] += 1
        try:
            if direction == "outbound":
                wire = self.protect(packet, now)
                return Transmit(wire, "released") if wire else Dropped("cert_pending", "")
            got = self.unprotect(packet, now)
            return got if got is not None else Dropped("cert_pending", "consumed")
        except SkipError as err:
            return Dropped(err.reason, err.detail)

    # --- algorithm discovery ---------------------------------------------------------------

    def _answer_adp(self, packet: bytes, version: int, may_be_icmp: bool, failed: AdpCode,
                    me: LocalIdentity, them: Peer | None, now: float, *,
                    kp_floor: int | None = None) -> None:
        """Tell the sender what we support (ADP-00), or (``kp_floor``) that it must make a new
        Kp; never about SKIP ICMP (``may_be_icmp``: the refused packet might be SKIP ICMP).

        The request is not authenticated, so the answer goes only to an address the peer is
        known at (a spoofed source gets nothing), within a per-source and a global rate, and
        an algorithm answer is never larger than the request (solicitations are padded for
        that). In the modern profile it travels under the current send Kp to the peer, so
        answers never use up the peer's receive-key slots.
        """
        if them is None:
            return  # we cannot authenticate an answer to a principal we do not know
        if may_be_icmp:
            return  # never answer SKIP ICMP with SKIP ICMP
        src, dst = _addresses(packet)
        state = self._state[them.name]
        if src not in them.addresses and src != state.tunnel:
            self._counters["adp_unknown_address"] += 1
            return
        if not self._adp_limiter.allow(src, now):
            self._counters["rate_limited"] += 1
            return
        message = replace(adp.advertisement(self.policy, version, failed),
                          kp_floor=kp_floor).encode()
        if len(src) == 4:
            reply = build_ipv4(ip_address(dst), ip_address(src), PROTO_ICMP, message)
        else:
            reply = build_ipv6(ip_address(dst), ip_address(src), PROTO_ICMP, message)
        n = kdf.counter_n(now)
        try:
            if version == num.MODERN_VERSION:
                # Every modern Kp we send becomes the pair's current one: the peer retires
                # the older ones by creation time, so a one-off Kp would end our traffic Kp.
                def ours(tx: _TxKey) -> bool:  # not in algorithms we ourselves refuse
                    return not adp.failed_classes(self.policy, version, tx.suite.algorithms)

                suite = self.suite_for(them)
                if adp.failed_classes(self.policy, version, suite.algorithms):
                    suite = adp.answer_suite(self.policy, version) or suite
                tx = self._pair_tx(me, them, suite, n, now, ours)
            else:  # a one-off Kp: legacy answers use the ADP suite (AH, keyed MD5)
                suite = adp.answer_suite(self.policy, version)
                if suite is None:
                    return
                tx = self._new_tx(me, them, suite, n, now)
            wire = tx.protect(reply, shim=tx.shim)
        except SkipError as err:  # e.g. no DH budget: count it, keep the packet's own reason
            self._counters.hit(err.reason)
            return
        if kp_floor is None and len(wire) > len(packet):
            self._counters["adp_too_large"] += 1
            return
        self._events.append(Transmit(wire, "adp"))
        self._counters["kp_notice_sent" if kp_floor is not None else "adp_sent"] += 1

    def _take_floor(self, rx: _RxKey, floor: int) -> None:
        """The peer restarted and refuses our older Kps: the next one starts at ``floor`` (its
        clock, so ours may be behind). A floor more than an hour past our newest Kp is not
        believed: a peer cannot push our creation times arbitrarily far."""
        state = rx.state
        if rx.version != num.MODERN_VERSION:
            return
        ours = state.tx_created.get(rx.identity, 0)
        if ours and floor > ours + 3_600_000:
            return
        state.kp_floor[rx.identity] = max(state.kp_floor.get(rx.identity, 0), floor)
        self._retire_tx(rx.peer)
        self._counters["kp_notice_received"] += 1

    def _maybe_adp(self, inner: bytes, rx: _RxKey) -> bool:
        """Consume a SKIP ICMP message carried by an authenticated SKIP packet."""
        _v, _nh, off, _proto = locate_upper(inner, verify_checksum=False)
        if off >= len(inner) or inner[off] != ICMP_TYPE_SKIP:
            return False
        if not rx.authenticated and not _suite_is_aead(rx):
            raise KeyingError("icmp_refused", "SKIP ICMP must arrive authenticated")
        try:
            advice = SkipIcmp.parse(inner[off:])
        except ParseError as err:
            raise KeyingError("icmp_refused", f"malformed SKIP ICMP: {err.reason}") from None
        if advice.kp_floor is not None:
            self._take_floor(rx, advice.kp_floor)
            return True
        self._counters["adp_received"] += 1
        if advice.protocol != 0:
            return True  # per-end-point advice: recorded by nobody yet (see docs/keying.md)
        self.capabilities[rx.peer] = advice
        peer = self._peers.get(rx.peer)
        if peer is None:
            return True
        current = self.suite_for(peer)
        chosen = adp.choose(self.policy, current, advice)
        if chosen is not None and chosen != current:
            self._suites[peer.name] = chosen
            self._retire_tx(peer.name)  # the next packet starts a Kp with the new algorithms
            self._events.append(
                AlgorithmsChanged(peer.name, current.algorithms, chosen.algorithms,
                                  int(advice.code))
            )
        return True


def _sending(peer: Peer, tunnel: bytes | None) -> tuple[object, ...]:
    """What a send Kp's header and SAs were built from, besides the public value: names
    (destination MKID), addresses (the host-to-host tunnel end point), algorithms, tunnel."""
    return (peer.nsid, peer.mkid, peer.addresses, peer.suite, peer.pre06, peer.nomadic, tunnel)


def _suite_is_aead(rx: _RxKey) -> bool:
    _, crypt, mac, _ = rx.algorithms
    return mac == crypt and Suite(rx.version, 0, crypt, mac).aead


def _first_reason(code: AdpCode) -> str:
    for bit, reason in (
        (AdpCode.KIJ_UNSUPPORTED, "unsupported_kij_alg"),
        (AdpCode.CRYPT_UNSUPPORTED, "unsupported_crypt_alg"),
        (AdpCode.MAC_UNSUPPORTED, "unsupported_mac_alg"),
        (AdpCode.COMP_UNSUPPORTED, "unsupported_comp_alg"),
    ):
        if code & bit:
            return reason
    return "unsupported_algorithm"
