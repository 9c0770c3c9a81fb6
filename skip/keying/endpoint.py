"""The SKIP endpoint: zero-message keying in front of the shared ESP/AH engine (sans-I/O).

``protect(ip_packet, now)`` -> the packet with a SKIP header and AH/ESP;
``unprotect(wire_packet, now)`` -> :class:`Received` (or None when the packet was queued for a
certificate or consumed as algorithm-discovery advice). Every refusal raises a
:class:`skip.errors.SkipError` whose reason is also counted in :attr:`SkipEndpoint.counters`;
side effects the driver must carry out (certificate fetches, packets to send) are queued as
events (:meth:`SkipEndpoint.events`). Time is always the ``now`` argument and all randomness
comes from the one ``rng`` given at construction; what must happen without a packet (expiry
of waiting packets, of certificates, of keys) happens in :meth:`handle_timer`, at the time
:meth:`get_timer` names.

This class is the facade: the two per-packet fast paths, read top to bottom, and the
configuration calls that must touch several parts in order. The parts, one job each:

- :mod:`~skip.keying.principals`: local principals and peers, and their indices;
- :mod:`~skip.keying.sender`: making and keeping send Kps;
- :mod:`~skip.keying.receiver`: admitting, keeping and retiring receive Kps;
- :mod:`~skip.keying.advisor`: algorithm discovery and Kp-floor notices (SKIP ICMP);
- :mod:`~skip.keying.context`: what they share (policy, counters, events, master keys);
- :mod:`~skip.keying.status`: what operators see.

Per packet, steady state costs a few dictionary look-ups in front of the engine: the sender
keeps one current Kp per (local principal, peer) with its SAs and encoded header; the receiver
keeps the SAs of every live Kp it has verified, keyed by the SKIP header bytes (plus the
addresses that name NSID-0 principals), so neither side repeats DH, Kp decryption or key
derivation until the Kp changes. The protocol rules and their sources are in docs/keying.md
and docs/protocol/decisions.md.
"""

from __future__ import annotations

import heapq
import itertools
import os
from collections.abc import Callable, Iterable, Sequence
from ipaddress import ip_address

from skip.crypto import kdf
from skip.crypto import skip_numbers as num
from skip.errors import ConfigError, KeyingError, SkipError
from skip.keying import adp
from skip.keying.advisor import Advisor
from skip.keying.context import KeyingContext, Rng
from skip.keying.events import (
    Counters,
    Dropped,
    Event,
    PeerExpired,
    Received,
    TrafficKeys,
    Transmit,
)
from skip.keying.identity import LocalIdentity, Peer, group
from skip.keying.keys import (
    FIXED_WORDS,
    IPV4_PLAIN,
    RSVD_AND_NSIDS,
    PeerState,
    RxCacheKey,
    addresses,
    rx_key,
)
from skip.keying.kij_cache import CacheKey, KijCache
from skip.keying.pfs import Pfs
from skip.keying.policy import KeyingPolicy
from skip.keying.principals import Principals
from skip.keying.receiver import Receiver
from skip.keying.sender import Sender
from skip.keying.status import PeerStatus, endpoint_status, peer_status
from skip.keying.suite import Suite, check_group
from skip.wire.ephemeral import EMKID_LENGTH, EMKID_NSID
from skip.wire.ip import PROTO_ICMP
from skip.wire.names import SkipName
from skip.wire.nsid import STANDARD_NSIDS, NsidTable
from skip.wire.skip_icmp import SkipIcmp


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
        if EMKID_NSID not in nsids.lengths:  # packets under ephemeral keys (PFS-17)
            nsids = nsids.with_private(EMKID_NSID, EMKID_LENGTH)
        elif nsids.lengths[EMKID_NSID] != EMKID_LENGTH:
            raise ConfigError("config_invalid", f"private NSID {EMKID_NSID} is the EMKID "
                              f"(PFS): its MKID has {EMKID_LENGTH} bytes")
        self._ctx = ctx = KeyingContext(policy or KeyingPolicy(), rng, nsids, started)
        self._principals = principals = Principals()
        self._pfs = pfs = Pfs(ctx, principals, lambda name: self._sender.retire(name),
                              lambda key: self._receiver.drop(lambda rx: rx.ephemeral is key))
        self._sender = sender = Sender(ctx, principals, pfs)
        self._advisor = advisor = Advisor(ctx, principals, sender)
        self._receiver = receiver = Receiver(ctx, principals, sender, advisor)
        # What the two fast paths read, bound once: the parts never rebind these tables.
        self._counters = ctx.counters
        self._tx = sender.tx
        self._tx_by_route = sender.by_route
        self._rx = receiver.rx
        self._layouts = receiver.layouts
        self._tx_ok = self._rx_ok = 0  # the two per-packet counts, folded in by `counters`
        # (when, tie-break, what): certificate expiries and rotations' grace ends, lazily
        # deleted (an entry whose peer changed since is skipped when it comes due)
        self._deadlines: list[tuple[float, int, str, Peer]] = []
        self._tie = itertools.count()
        self._hour = kdf.counter_n(started)  # the n of the timer's last hourly sweep
        for identity in identities:
            self.add_identity(identity)
        for peer in peers:
            self.add_peer(peer)

    @property
    def policy(self) -> KeyingPolicy:
        return self._ctx.policy

    @property
    def kij_cache(self) -> KijCache:
        return self._ctx.kij_cache

    @property
    def capabilities(self) -> dict[str, SkipIcmp]:
        """The last algorithm-discovery advice each peer sent, by peer name."""
        return self._advisor.capabilities

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
        self._principals.add_identity(identity)

    def replace_identity(self, identity: LocalIdentity) -> None:
        """Rename, readdress or rekey a local principal in place (a driver's reload).

        With the same private values, what was derived from them stays valid, and stays: the
        master keys and the receive Kps with their replay windows (a new endpoint would give
        each peer's current Kp a fresh window, and a captured packet would pass again). The
        send Kps are retired: their headers and SAs carry the old names and addresses. With
        other private values (a new key pair), everything derived from the old ones goes.
        """
        p = self._principals
        old = p.remove_identity(identity.name)
        if old is None:
            raise ConfigError("config_invalid", f"no identity {identity.name!r} to replace")
        try:
            p.add_identity(identity)
        except SkipError:
            p.add_identity(old)
            raise
        if dict(old.keys) != dict(identity.keys):
            self._ctx.kij_cache.discard(lambda key: key[0] == identity.name)
            self._pfs.forget_identity(identity.name)
            self._receiver.drop(lambda rx: rx.identity == identity.name)
        self._sender.retire()

    def remove_identity(self, name: str) -> None:
        """Forget a local principal and everything derived from its private values."""
        if self._principals.remove_identity(name) is None:
            return
        self._ctx.kij_cache.discard(lambda key: key[0] == name)
        self._pfs.forget_identity(name)
        self._receiver.drop(lambda rx: rx.identity == name)
        self._sender.retire()

    def set_policy(self, policy: KeyingPolicy) -> None:
        """Adopt another policy in place (a driver's reload), keeping what it still allows.

        The receive Kps stay with their replay windows (for the reason given under
        :meth:`replace_identity`), except those the new policy refuses - legacy when it is no
        longer allowed, algorithms no longer accepted - whose packets the slow path would now
        refuse anyway. Send Kps are retired: their suites, lifetimes and mode came from the old
        policy. The master-key cache, the certificate wait queue and the SKIP ICMP rate limit
        take the new bounds (pinned master keys are never evicted to fit).
        """
        self._ctx.adopt(policy)
        self._advisor.adopt_policy()
        self._receiver.drop(lambda rx: bool(adp.failed_classes(policy, rx.version,
                                                               rx.algorithms)))
        self._sender.retire()

    def add_peer(self, peer: Peer, now: float | None = None, *,
                 tunnel: str | bytes | None = None) -> list[Event]:
        """Learn (or replace) a peer; packets queued for it are released at ``now``.

        ``tunnel``: send to this peer in tunnel mode with this outer destination address (for
        a nomadic peer: where to send until it is heard from; None keeps a learned address).
        A peer renewed with the same public value keeps its master key, its receive Kps and
        their replay windows (its traffic stays valid); if anything about how we send to it
        changed (tunnel, names, algorithms), its send Kps are retired, so the next packet
        starts a new Kp with SAs for the new parameters. A peer whose key pair changed (a
        rotation) keeps its receive Kps too, and for ``policy.key_rotation_seconds`` after
        ``now`` new Kps under its previous key are still admitted (it may not have switched
        yet); we send under the new key at once. Returns the events the release produced
        (they are also queued in :meth:`events`).
        """
        p = self._principals
        if peer.nomadic and self.suite_for(peer).version != num.MODERN_VERSION:
            # a legacy packet can be replayed from anywhere: it must never move a peer
            raise ConfigError("config_invalid", f"nomadic peer {peer.name!r} needs the modern "
                              "profile (replay protection)")
        p.check_unique(peer)
        outer = ip_address(tunnel).packed if tunnel is not None else None
        old = p.peers.get(peer.name)
        state = p.states.get(peer.name)
        grace = self._ctx.policy.key_rotation_seconds
        if old is not None and state is not None:
            same_key = (old.group, old.public) == (peer.group, peer.public)
            if not same_key and (now is None or grace <= 0):
                self.remove_peer(peer.name)  # no grace: everything of the old key goes
                state = p.states[peer.name] = PeerState()
            else:
                if outer is None and old.nomadic and peer.nomadic:
                    outer = state.tunnel
                p.unindex(old)
                self._tx_by_route.clear()
                if not same_key and now is not None:
                    self._rotate(old, state, now + grace)
                elif _sending(old, state.tunnel) != _sending(peer, outer):
                    self._sender.retire(peer.name)
        else:
            state = p.states[peer.name] = PeerState()
        state.tunnel, state.nomadic = outer, peer.nomadic
        p.index(peer, outer)
        if peer.not_after is not None:
            self._deadline(peer.not_after, "expiry", peer)
        return self._release(peer, now)

    def _rotate(self, old: Peer, state: PeerState, until: float) -> None:
        """The peer's key pair changed: send under the new one from now on, keep its receive
        Kps, and admit new ones under the old key until ``until``."""
        self._sender.retire(old.name)
        previous = state.previous
        if previous is not None:  # a second rotation within the grace: the oldest key goes
            self._ctx.kij_cache.discard(
                lambda key: key[1] == old.name and key[3] == previous.public)
        state.previous, state.previous_until = old, until
        self._deadline(until, "rotation", old)

    def remove_peer(self, name: str) -> None:
        """Forget a peer and every key derived from its public value (e.g. on revocation).

        Which of its modern Kps were live is remembered past it (bounded): if the same
        public value comes back, those Kps are ``kp_stale`` and the peer is told to make a
        new one, instead of every packet captured under them passing once more."""
        p = self._principals
        peer = p.peers.get(name)
        if peer is None:
            return
        p.unindex(peer)
        self._tx_by_route.clear()
        self._ctx.kij_cache.discard(lambda key: key[1] == name)
        self._pfs.forget_peer(name)
        self._sender.retire(name)
        self._receiver.drop(lambda rx: rx.peer == name)
        self._receiver.per_peer.pop(name, None)
        p.chosen.pop(name, None)
        self._advisor.forget(name)
        state = p.states.pop(name, None)
        if state is not None:
            self._ctx.forget_peer(peer, state)
            if state.previous is not None:
                self._ctx.forget_peer(state.previous, state)

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
        dropped = self._ctx.kij_cache.drop_unpinned() + self._sender.retire()
        return dropped + self._receiver.purge(kdf.counter_n(now))

    def precompute(self, peer_name: str, identity_name: str | None = None, *,
                   version: int | None = None) -> None:
        """Compute and pin Kij for an expected peer (draft-06 s. 1.6.3), outside the DH budget.

        ``version``: the profile whose Kij to compute (default: the peer's current suite).
        """
        p, ctx = self._principals, self._ctx
        peer = p.peers[peer_name]
        version = version or self.suite_for(peer).version
        check_group(version, group(peer.group))
        names = [identity_name] if identity_name else list(p.identities)
        for name in names:
            identity = p.identities[name]
            if peer.group in identity.keys:
                ctx.kij_cache.precompute((name, peer.name, version, peer.public),
                                         ctx.kij_function(identity, peer, version))

    def suite_for(self, peer: Peer) -> Suite:
        """ADP choice > the peer's configured suite > the policy default for its group."""
        return self._principals.suite_for(peer, self._ctx.policy)

    def solicit(self, peer: str, now: float, *, identity: str | None = None) -> bytes:
        """A SKIP packet with Kij Alg 0 (no Kp) that asks the peer for its algorithms
        (:meth:`skip.keying.advisor.Advisor.solicit`); the answer updates
        :attr:`capabilities`."""
        p = self._principals
        them = p.peers[peer]
        me = p.identities[identity] if identity else p.identity_for(them)
        if me is None:
            raise KeyingError("no_identity", f"no local principal for peer {peer!r}")
        return self._advisor.solicit(them, me, now)

    # --- what an operator sees ---------------------------------------------------------------

    def status(self, now: float) -> dict[str, object]:
        """Everything an operator may see (skipctl): names, algorithms, key ages, no key bytes."""
        return endpoint_status(self._principals, self._sender, self._receiver, self._advisor,
                               self._ctx, self.counters, now)

    def peer_status(self, name: str, now: float) -> PeerStatus:
        """The state of one peer for operators: key ages and counts, never key bytes."""
        return peer_status(name, self._principals, self._sender, self._receiver,
                           self._ctx.policy, now)

    def last_activity(self, name: str) -> float | None:
        """When a packet was last protected for or verified from peer ``name`` (None: never,
        or no such peer): what a driver's least-recently-used choice needs, without the
        rest of :meth:`peer_status`."""
        state = self._principals.states.get(name)
        if state is None:
            return None
        times = [t for t in (state.sent, state.received) if t is not None]
        return max(times, default=None)

    def events(self) -> Sequence[Event]:
        """Drain the event queue.

        Drivers ask after every packet and almost always find nothing: that case returns a
        shared empty tuple without allocating.
        """
        events = self._ctx.events
        if not events:
            return ()
        out = list(events)
        events.clear()
        return out

    # --- time ----------------------------------------------------------------------------------

    def get_timer(self) -> float:
        """When :meth:`handle_timer` must next run (in the clock of ``now``): the earliest of
        a waiting packet's deadline, a certificate's expiry, the end of a key rotation's grace
        and the next hour (n changes: receive Kps two hours old go). The driver keeps one
        timer and re-reads this after every call that may have changed it (a packet queued,
        a peer added, the timer handled)."""
        when = float(kdf.n_start(self._hour + 1))
        waiting = self._ctx.pending.next_expiry()
        if waiting is not None:
            when = min(when, waiting)
        if self._deadlines:
            when = min(when, self._deadlines[0][0])
        pfs = self._pfs.get_timer()
        if pfs is not None:
            when = min(when, pfs)
        return when

    def handle_timer(self, now: float) -> None:
        """Do what is due at ``now``: drop packets that waited too long for a certificate,
        forget peers whose certificate expired (:class:`PeerExpired`: their next packet asks
        for a certificate again), end rotations' grace periods, and once an hour sweep the
        keys no packet may use any more."""
        ctx, p = self._ctx, self._principals
        ctx.count_dropped(ctx.pending.expire(now))
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _when, _tie, what, peer = heapq.heappop(deadlines)
            state = p.states.get(peer.name)
            if what == "expiry" and p.peers.get(peer.name) is peer:
                self.remove_peer(peer.name)
                ctx.counters["peer_expired"] += 1
                ctx.events.append(PeerExpired(peer.name, float(peer.not_after or now)))
            elif what == "rotation" and state is not None and state.previous is peer and \
                    state.previous_until <= now:
                state.previous = None
                ctx.kij_cache.discard(_entries_of(peer))
        self._pfs.handle_timer(now)
        n = kdf.counter_n(now)
        if n != self._hour:
            self._hour = n
            self._receiver.purge(n)
            self._sender.expire(now)

    def _deadline(self, when: float, what: str, peer: Peer) -> None:
        heapq.heappush(self._deadlines, (when, next(self._tie), what, peer))

    # --- sending ---------------------------------------------------------------------------

    def protect(self, packet: bytes, now: float, *, identity: str | None = None,
                peer: str | None = None) -> bytes | None:
        """SKIP-protect one IP datagram to its peer; None if it waits for a certificate.

        The local principal is found by the source address and the peer by the destination
        address, unless named explicitly. The common case (a current Kp for the named pair, or
        for this IPv4 address pair) runs inline here; the rest is :class:`Sender`'s. The
        engine validates the IP header.
        """
        try:
            if identity is None and peer is None:
                tx = self._tx_by_route.get(packet[12:20]) \
                    if len(packet) >= IPV4_PLAIN and packet[0] == 0x45 else None
            elif identity is not None and peer is not None:
                tx = self._tx.get((identity, peer))
            else:
                tx = None
            if tx is None or not (now < tx.expires and tx.used.bytes_out < tx.max_bytes):
                tx = self._sender.current(packet, now, identity, peer)
                if tx is None:
                    return None
            wire = tx.protect(packet, shim=tx.shim)
            tx.state.sent = now
            self._tx_ok += 1
            return wire
        except SkipError as err:
            self._counters.hit(err.reason)
            raise

    def steady_sender(self, identity: str, peer: str) -> Callable[[bytes, float], bytes | None]:
        """:meth:`protect` for one named pair, reduced to its steady state: the datagram
        protected under the pair's current Kp, or None when there is none (then
        :meth:`protect` makes one). A driver that sends many datagrams to one peer keeps
        this function instead of naming the pair per packet. Errors are raised, not
        counted: the driver hands the datagram to :meth:`protect`, which counts them."""
        txs, pair = self._tx, (identity, peer)

        def send(packet: bytes, now: float) -> bytes | None:
            tx = txs.get(pair)
            if tx is None or not (now < tx.expires and tx.used.bytes_out < tx.max_bytes):
                return None
            wire = tx.protect(packet, shim=tx.shim)
            tx.state.sent = now
            self._tx_ok += 1
            return wire

        return send

    def steady_lane(self, identity: str, peer: str) -> tuple[object, ...]:
        """:meth:`steady_sender` for a compiled send loop (``skip._native.pump_out``): the
        send Kps by pair, the pair, and this endpoint, whose ``_tx_ok`` the loop counts. The
        loop applies the steady sender's test (``expires``, ``max_bytes``) and protects with
        the Kp's ``lane``."""
        return (self._tx, (identity, peer), self)

    def receive_lane(self) -> tuple[object, ...]:
        """The inline half of :meth:`unprotect` for a compiled receive loop
        (``skip._native.pump_in``): the receive cache, the SKIP header layouts, and this
        endpoint, whose ``_rx_ok`` the loop counts. The loop takes only what that half takes
        (IPv4 without options, a cached Kp within +-1 of n) and declines, before the replay
        window moves, every Kp that wants more: PFS to confirm, a nomadic peer, SKIP ICMP."""
        return (self._rx, self._layouts, self)

    # --- receiving -------------------------------------------------------------------------

    def unprotect(self, packet: bytes, now: float) -> Received | None:
        """Check and strip SKIP + AH/ESP. None: queued for a certificate, or ADP consumed.

        The common case (IPv4 without options, a Kp already verified) runs inline here; the
        first packet under a Kp is :class:`Receiver`'s. The engine re-checks the IP header
        (checksum, length, fragments) before anything is decrypted.
        """
        try:
            if len(packet) >= IPV4_PLAIN + 12 and packet[0] == 0x45 and packet[9] == 57:
                off = IPV4_PLAIN
            else:
                off = Receiver.skip_offset(packet)
            word0, word2 = FIXED_WORDS.unpack_from(packet, off)
            length = self._layouts.get((word0, word2)) or \
                self._receiver.measure(packet, off, word0, word2, now)
            # A header cut short matches no cached key (its fixed words fix the key's length)
            # and the slow path's parse refuses it (truncated): no length test here.
            end = off + length
            shim_icv = None
            if off == IPV4_PLAIN and not word0 & RSVD_AND_NSIDS:
                key: RxCacheKey = packet[12:end]  # what rx_key makes of it, in one slice
            else:
                key, shim_icv = rx_key(packet, off, end, word0)
            rx = self._rx.get(key)
            if rx is not None and rx.accept_from <= now < rx.accept_until:  # n within +-1
                inner = rx.unprotect(packet, shim_len=length, shim_icv=shim_icv)
            else:
                local_n = kdf.counter_n(now)
                src, dst = addresses(packet)
                header = shim_icv or packet[off:end]
                rx = self._receiver.admit(packet, end, header, src, dst, local_n, now)
                if rx is None:
                    return None
                inner = rx.unprotect(packet, shim_len=length, shim_icv=shim_icv)
                self._receiver.store(key, rx, local_n, now)
                if rx.ephemeral is not None and not rx.ephemeral.confirmed:
                    self._pfs.confirm(rx.ephemeral)  # the initiator uses the key: ours too
            state = rx.state
            state.received = now
            state.last = rx
            if state.nomadic:
                self._receiver.roam(rx, packet, end)
            if inner[9 if inner[0] >> 4 == 4 else 6] == PROTO_ICMP and \
                    self._advisor.consume(inner, rx):
                return None
            self._rx_ok += 1
            return Received(inner, rx.peer, rx.identity, rx.version, rx.algorithms, rx.n)
        except SkipError as err:
            self._counters.hit(err.reason)
            raise

    def live_keys(self, limit: int) -> list[tuple[bytes, int | None, int]] | None:
        """See :meth:`Receiver.live_keys` (skipd's kernel filter)."""
        return self._receiver.live_keys(limit)

    def rx_generation(self) -> int:
        """Moves whenever the set of receive Kps does (not their sequence numbers)."""
        return self._receiver.generation

    def is_newest(self, packet: bytes) -> bool:
        """Whether ``packet``, which :meth:`unprotect` has just accepted, is the newest its
        sender has sent (its newest Kp, its highest sequence number): what may move a peer's
        transport address (SKIP-in-UDP behind NAT), as WireGuard moves an endpoint. A replay
        that passed the window (the window was lost) or a delayed packet is not. Always False
        in the legacy profile, which cannot tell a replay from a new packet."""
        try:
            if len(packet) >= IPV4_PLAIN + 12 and packet[0] == 0x45 and packet[9] == 57:
                off = IPV4_PLAIN
            else:
                off = Receiver.skip_offset(packet)
            word0, word2 = FIXED_WORDS.unpack_from(packet, off)
            length = self._layouts.get((word0, word2))
            if length is None:
                return False
            key = rx_key(packet, off, off + length, word0)[0]
        except SkipError:
            return False
        rx = self._rx.get(key)
        return rx is not None and self._receiver.newest(rx, packet, off + length)

    def hold(self, packet: bytes, name: SkipName, address: bytes, now: float, *,
             identity: str, peer: str) -> None:
        """Keep an outbound packet for a peer whose certificate the driver does not have yet
        (a configured rule, say, with none in its store): it waits in the bounded queue under
        ``name`` (the name its certificate must answer to), a :class:`CertificateNeeded` asks
        for it, and ``add_peer`` for a peer with that name releases it, protected for
        (``identity``, ``peer``). Raises ``queue_full`` when it cannot wait."""
        try:
            self._ctx.queue(name, "outbound", packet, name.nsid, name.mkid, address, now,
                            route=(identity, peer))
        except SkipError as err:
            self._counters.hit(err.reason)
            raise

    def log_traffic_keys_insecurely(self, callback: Callable[[TrafficKeys], None] | None
                                    ) -> None:
        """DANGEROUS: hand every traffic key made or admitted from now on to ``callback``
        (None: stop). For decrypting one's own captures (``skip-decrypt --keylog``), like
        SSLKEYLOGFILE; it defeats forward secrecy and everything else. Off unless called."""
        self._ctx.key_log = callback

    # --- perfect forward secrecy ------------------------------------------------------------

    def pfs_receive(self, payload: bytes, src: str | bytes, now: float, *,
                    reply_to: object = None) -> list[Event]:
        """A CDP datagram of the ephemeral exchange from ``src`` (docs/pfs.md): a request is
        answered (a :class:`PfsSend` event), a reply establishes the key; either way the
        packets held for the new key are protected under it and returned (and queued) as
        :class:`Transmit` events. ``reply_to`` comes back in the reply's ``PfsSend`` (the
        driver's return address, e.g. with the port). Raises a SkipError (counted) on a
        refusal."""
        source = ip_address(src).packed if isinstance(src, str) else bytes(src)
        produced: list[Event] = []
        for identity, peer in self._pfs.receive(payload, source, now, reply_to):
            for packet in self._pfs.release((identity, peer)):
                self._counters["released"] += 1
                try:
                    wire = self.protect(packet, now, identity=identity, peer=peer)
                    produced.append(Transmit(wire, "released") if wire else
                                    Dropped("pfs_required", ""))
                except SkipError as err:
                    produced.append(Dropped(err.reason, err.detail))
        self._ctx.events.extend(produced)
        return produced

    def pfs_status(self, peer: str, now: float) -> dict[str, object]:
        """Whether the pair sends under an ephemeral key, and that key's age (no bytes)."""
        them = self._principals.peers.get(peer)
        if them is None:
            raise KeyingError("unknown_mkid", f"no peer named {peer!r}")
        me = self._principals.identity_for(them)
        out: dict[str, object] = {"mode": them.pfs}
        if me is not None:
            out.update(self._pfs.status(me.name, peer, now))
        return out

    # --- certificates that arrived -----------------------------------------------------------

    def _release(self, peer: Peer, now: float | None) -> list[Event]:
        ctx = self._ctx
        names = {SkipName.of_address(a) for a in peer.addresses}
        if peer.nsid:
            names.add(SkipName(peer.nsid, peer.mkid))
        outer = self._principals.states[peer.name].tunnel
        if outer and not peer.nomadic:
            names.add(SkipName.of_address(outer))
        if now is not None:
            ctx.count_dropped(ctx.pending.expire(now))  # never release stale packets
        waiting = ctx.pending.take(names)
        if not waiting:
            return []
        if now is None:
            raise KeyingError("cert_pending", "releasing queued packets needs `now`")
        produced = [self._replay_queued(direction, packet, route, now)
                    for direction, packet, route in waiting]
        ctx.events.extend(produced)
        return produced

    def _replay_queued(self, direction: str, packet: bytes, route: tuple[str, str] | None,
                       now: float) -> Event:
        self._counters["released"] += 1
        try:
            if direction == "outbound":
                identity, peer = route or (None, None)
                wire = self.protect(packet, now, identity=identity, peer=peer)
                return Transmit(wire, "released") if wire else Dropped("cert_pending", "")
            got = self.unprotect(packet, now)
            return got if got is not None else Dropped("cert_pending", "consumed")
        except SkipError as err:
            return Dropped(err.reason, err.detail)


def _entries_of(peer: Peer) -> Callable[[CacheKey], bool]:
    """Matches the master keys made with one public value of a peer."""
    return lambda key: (key[1], key[3]) == (peer.name, peer.public)


def _sending(peer: Peer, tunnel: bytes | None) -> tuple[object, ...]:
    """What a send Kp's header and SAs were built from, besides the public value: names
    (destination MKID), addresses (the host-to-host tunnel end point), algorithms, tunnel."""
    return (peer.nsid, peer.mkid, peer.addresses, peer.suite, peer.pre06, peer.nomadic, tunnel,
            peer.local, peer.pfs)
