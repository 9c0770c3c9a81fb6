"""The receiving side: every check of skip-core s. 1.4 for the first packet under a Kp, then
the verified Kps (:class:`~skip.keying.keys.RxKey`, each with its replay window) and their
retirement.

The endpoint's ``unprotect`` finds a verified Kp in :attr:`rx` inline. Everything here runs
once per Kp, or once per hour: admission (principals, n, algorithms, Kp recovery, creation
time), storage under the per-peer and global bounds, the grace period of superseded Kps,
moving a nomadic peer, and forgetting Kps no packet may use.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from skip.crypto import kdf
from skip.crypto import skip_numbers as num
from skip.crypto.kp_wrap import legacy_decrypt_kp, modern_unwrap_kp
from skip.errors import KeyingError, ParseError, PolicyError
from skip.keying import adp
from skip.keying.advisor import Advisor
from skip.keying.context import KeyingContext, first_reason
from skip.keying.ephemeral_key import EphemeralKey
from skip.keying.identity import LocalIdentity, Peer, group
from skip.keying.keys import PeerState, RxCacheKey, RxKey, addresses
from skip.keying.kij_cache import KijEntry
from skip.keying.principals import Principals
from skip.keying.sender import Sender
from skip.keying.suite import Suite, check_group
from skip.wire.ephemeral import EMKID_NSID
from skip.wire.ip import PROTO_AH, PROTO_ESP, PROTO_ICMP, locate_upper
from skip.wire.names import SkipName
from skip.wire.skip_header import FIXED, IP_PROTOCOL_SKIP, SkipHeader, measure
from skip.wire.skip_icmp import AdpCode

_MAX_LAYOUTS = 4096  # real traffic uses a handful; the bound stops a flood of variants
_MAX_ALIASES = 8  # receive-cache keys per Kp (address pairs of its two principals)
_PROTO_ICMPV6 = 58
_SEQ = struct.Struct("!I")
_SEQ_OFFSET = {PROTO_ESP: 4, PROTO_AH: 8}  # from the start of ESP / AH to its sequence number
#: ParseError reasons of an algorithm number missing from our tables (the EKp length is unknown)
_UNKNOWN_NUMBER = frozenset({"unsupported_kij_alg", "unsupported_crypt_alg",
                             "unsupported_mac_alg"})


class Receiver:
    def __init__(self, ctx: KeyingContext, principals: Principals, sender: Sender,
                 advisor: Advisor) -> None:
        self.ctx = ctx
        self.principals = principals
        self.sender = sender
        self.advisor = advisor
        self.rx: dict[RxCacheKey, RxKey] = {}
        self.kps: dict[tuple[str, str, bytes], RxKey] = {}  # by RxKey.index
        self.per_peer: dict[str, int] = {}
        self.layouts: dict[tuple[int, int], int] = {}  # memo of measure
        self._n = -1  # the local n of the last purge
        #: moves whenever a Kp joins or leaves :attr:`kps`: the daemon's kernel filter
        #: follows the live EKps (skip/daemon/kernel_filter.py) and asks only when it moved
        self.generation = 0

    # --- parsing ---------------------------------------------------------------------------

    @staticmethod
    def skip_offset(packet: bytes) -> int:
        _version, _nh_off, off, proto = locate_upper(packet)
        if proto != IP_PROTOCOL_SKIP:
            raise ParseError("unsupported_protocol", f"protocol {proto} is not SKIP")
        if len(packet) < off + 12:
            raise ParseError("truncated", "SKIP header shorter than its 12 fixed bytes")
        return off

    def measure(self, packet: bytes, off: int, word0: int, word2: int, now: float) -> int:
        """Length of a SKIP header layout not seen before (everything of the fixed part but n
        decides it); memoised, at most _MAX_LAYOUTS of them, and only layouts that parse."""
        try:
            end = measure(packet, off, num.header_ekp_length, self.ctx.nsids)[0]
        except ParseError as err:
            if err.reason in _UNKNOWN_NUMBER:
                self._answer_unknown_numbers(packet, off, now)
            raise
        if len(self.layouts) < _MAX_LAYOUTS:
            self.layouts[(word0, word2)] = end - off
        return end - off

    def _answer_unknown_numbers(self, packet: bytes, off: int, now: float) -> None:
        """A header with an algorithm number we do not know: answer it if we can (ADP-00).

        The EKp's length follows from the numbers, so nothing behind the 12 fixed bytes can be
        found: not the source MKID that would name the sender, not the destination MKID, not
        the AH/ESP. The sender can still be named when its Source NSID is 0 (its address names
        it), and the packet is still known to be for us when the Dest NSID is 0: then it gets
        the checks of :meth:`admit` that the fixed part allows, and a SKIP ICMP answer. With
        an MKID in the header there is no one to answer (decisions.md 3.11). The caller
        raises the parse error (``unsupported_*_alg``) unless a check here raised first.
        """
        b0, src_nsid, dst_nsid, next_header, n, *algs = FIXED.unpack_from(packet, off)
        version = b0 >> 4
        failed = adp.failed_classes(self.ctx.policy, version, algs)
        if src_nsid == dst_nsid == 0:
            src, dst = addresses(packet)
            me = self._local_principal(version, 0, b"", dst, n, kdf.counter_n(now))
            # AH's own Next Header is out of reach: AH alone (Crypt Alg 0) may carry SKIP ICMP
            may_be_icmp = next_header == PROTO_AH and algs[1] == 0
            self.advisor.answer(packet, version, may_be_icmp, failed, me,
                                self.principals.peer_by_addr.get(src), now)

    # --- admission ---------------------------------------------------------------------------

    def _local_principal(self, version: int, dst_nsid: int, dst_mkid: bytes, dst: bytes,
                         n: int, local_n: int) -> LocalIdentity:
        """The checks of skip-core s. 1.4 before the algorithms: version allowed, destination
        one of our principals, n within +-1 of ours. Returns that principal."""
        if version == num.LEGACY_VERSION and not self.ctx.policy.allow_legacy:
            raise PolicyError("legacy_refused", "SKIP version 1 is disabled by policy")
        if dst_nsid:
            me = self.principals.identity_by_mkid.get((dst_nsid, dst_mkid))
            if me is None:
                raise KeyingError("not_our_mkid", "destination MKID is not a local one")
        else:
            me = self.principals.identity_by_addr.get(dst)
            if me is None:
                raise KeyingError("no_identity", "no local principal at the destination")
        if not -1 <= n - local_n <= 1:
            raise KeyingError("n_out_of_window", f"n {n}, local n {local_n}")
        return me

    def admit(self, packet: bytes, end: int, header: bytes, src: bytes, dst: bytes,
              local_n: int, now: float) -> RxKey | None:
        """First packet under a Kp: every check in the order of skip-core s. 1.4, then key
        recovery (the slow path). None: the packet waits for the sender's certificate."""
        ctx, p = self.ctx, self.principals
        hdr = SkipHeader.parse(header, num.header_ekp_length, ctx.nsids)
        ephemeral = None
        them: Peer | None
        if hdr.dst_nsid == EMKID_NSID:
            ephemeral, me, them = self._ephemeral(hdr, local_n, now)
        else:
            me = self._local_principal(hdr.version, hdr.dst_nsid, hdr.dst_mkid, dst, hdr.n,
                                       local_n)
            if hdr.src_nsid:
                them = p.peer_by_mkid.get((hdr.src_nsid, hdr.src_mkid))
            else:
                them = p.peer_by_addr.get(src)
        algs = (hdr.kij_alg, hdr.crypt_alg, hdr.mac_alg, hdr.comp_alg)
        failed = adp.failed_classes(ctx.policy, hdr.version, algs)
        if hdr.kij_alg == 0 or failed:
            # AH alone shows what it carries; ESP (alone or inside AH) hides it
            may_be_icmp = hdr.next_header == PROTO_AH and end < len(packet) and \
                packet[end] in (PROTO_ICMP, _PROTO_ICMPV6)
            self.advisor.answer(packet, hdr.version, may_be_icmp, failed, me, them, now)
            if hdr.kij_alg == 0:
                raise KeyingError("no_kp", "Kij Alg 0: an algorithm-discovery solicitation")
            raise KeyingError(first_reason(failed), f"algorithms {algs}")
        if them is None:
            ctx.queue(SkipName.of_header(hdr.src_nsid, hdr.src_mkid, src), "inbound", packet,
                      hdr.src_nsid, hdr.src_mkid, src, now)
            return None
        suite = Suite(hdr.version, hdr.kij_alg, hdr.crypt_alg, hdr.mac_alg)
        suite.check()
        if hdr.next_header != (PROTO_ESP if suite.layers[0] == "esp" else PROTO_AH):
            # draft-06 s. 1.8: Next Header names what follows; the algorithms imply it
            raise ParseError("bad_header", f"Next Header {hdr.next_header} does not match "
                             f"the transforms {suite.layers}")
        index = (me.name, them.name, bytes(hdr.ekp))
        known = self.kps.get(index)
        if known is not None:
            # the same Kp under other addresses (re-wrapped, IPv4 <-> IPv6): one window
            if known.header != header:
                raise KeyingError("replay", "a known traffic key under another header")
            if known.accept_until <= now:
                raise KeyingError("kp_superseded", "the sender has moved to a newer Kp")
            return known
        if them.not_after is not None and now >= them.not_after:
            raise KeyingError("cert_expired", f"the certificate of {them.name!r} has expired")
        check_group(hdr.version, group(them.group))
        prof = suite.profile
        kp_len = prof.kp_length(hdr.crypt_alg, hdr.mac_alg)
        state = p.states[them.name]
        created = -1
        if ephemeral is not None:
            kijn = ephemeral.ekijn(hdr.n, False)
            if hdr.version == num.LEGACY_VERSION:
                kp = legacy_decrypt_kp(prof.kij[hdr.kij_alg], kijn, hdr.ekp, kp_len)
            else:
                kp, created = modern_unwrap_kp(kijn, hdr.ekp)
                self._check_created(created, me, them, state, packet, now)
            return self._verified(suite, kp, hdr, header, src, me, them, state, algs, index,
                                  created, ephemeral)
        entry = ctx.kij_entry(me, them, hdr.version, now)
        if hdr.version == num.LEGACY_VERSION:
            kijn = entry.kijn_for(hdr.n, kdf.legacy_kijn)
            kp = legacy_decrypt_kp(prof.kij[hdr.kij_alg], kijn, hdr.ekp, kp_len)
        else:
            try:
                kp, created = self._unwrap(entry, hdr.n, hdr.ekp, me, them)
            except KeyingError as err:
                old = state.previous
                if err.reason != "kp_unwrap_failed" or old is None or \
                        now >= state.previous_until:
                    raise
                # the peer has not switched to its new key yet (a rotation's grace period)
                entry = ctx.kij_entry(me, old, hdr.version, now)
                kp, created = self._unwrap(entry, hdr.n, hdr.ekp, me, old)
                ctx.counters["rx_previous_key"] += 1
            self._check_created(created, me, them, state, packet, now)
        return self._verified(suite, kp, hdr, header, src, me, them, state, algs, index,
                              created, None)

    def _verified(self, suite: Suite, kp: bytes, hdr: SkipHeader, header: bytes, src: bytes,
                  me: LocalIdentity, them: Peer, state: PeerState,
                  algs: tuple[int, int, int, int], index: tuple[str, str, bytes],
                  created: int, ephemeral: EphemeralKey | None) -> RxKey:
        ctx = self.ctx
        ctx.counters["kp_decrypted"] += 1
        transforms = ctx.transforms(suite, kp, len(hdr.ekp), header, them, me, state,
                                    inbound=bytes(src))
        authenticated = bool(hdr.mac_alg)
        return RxKey(transforms, transforms.unprotect, them.name, me.name,
                     hdr.version, algs, hdr.n, authenticated, state, index, bytes(header),
                     created, ephemeral=ephemeral)

    def _ephemeral(self, hdr: SkipHeader, local_n: int, now: float
                   ) -> tuple[EphemeralKey, LocalIdentity, Peer]:
        """A packet to one of our EMKIDs (PFS-15, PFS-18): the EMKID names the key, and
        the key its two principals; the source is not named (Source NSID 0 is all it may
        say) and its address plays no part."""
        if hdr.version == num.LEGACY_VERSION and not self.ctx.policy.allow_legacy:
            raise PolicyError("legacy_refused", "SKIP version 1 is disabled by policy")
        key = self.sender.pfs.by_emkid.get(int.from_bytes(hdr.dst_mkid))
        if key is None or not key.live(now) or key.version != hdr.version:
            raise KeyingError("pfs_expired", "no live ephemeral key has this EMKID")
        if hdr.src_nsid:
            raise ParseError("bad_header", "a packet under an EMKID names no source (PFS-15)")
        if not -1 <= hdr.n - local_n <= 1:
            raise KeyingError("n_out_of_window", f"n {hdr.n}, local n {local_n}")
        me = self.principals.identities.get(key.identity)
        them = self.principals.peers.get(key.peer)
        if me is None or them is None:
            raise KeyingError("pfs_expired", "the ephemeral key's principals are gone")
        return key, me, them

    @staticmethod
    def _unwrap(entry: KijEntry, n: int, ekp: bytes, me: LocalIdentity, them: Peer
                ) -> tuple[bytes, int]:
        mine, theirs = me.publics[them.group], them.public
        kijn = entry.kijn_for(n, lambda k, n: kdf.modern_kijn(k, n, theirs, mine), 2)
        return modern_unwrap_kp(kijn, ekp)

    def _check_created(self, created: int, me: LocalIdentity, them: Peer, state: PeerState,
                       packet: bytes, now: float) -> None:
        """Refuse a modern Kp made before this node started (or learnt the peer again after
        forgetting it), or before the peer's newest Kp's predecessors were retired: its old
        replay window is gone, so its packets could be replays. A Kp from before the start
        gets the sender told to make a new one (the notice carries the floor, so a sender
        whose clock is behind ours recovers too)."""
        floor = self.ctx.kp_floor(them)
        if created < floor:
            self.advisor.answer(packet, num.MODERN_VERSION, False, AdpCode.NONE, me, them, now,
                                kp_floor=floor)
            raise KeyingError("kp_stale", "the traffic key was made before this node started "
                              "(or last learnt the peer)")
        if created < state.rx_floor.get(me.name, 0):
            raise KeyingError("kp_superseded", "the sender has moved to a newer Kp")

    # --- storage -----------------------------------------------------------------------------

    def store(self, key: RxCacheKey, rx: RxKey, local_n: int, now: float) -> None:
        """Remember a verified Kp, or one more way to reach a known one (another address pair).

        Bounded without reopening replay windows: a modern Kp is retired once its sender has
        made a newer one and ``rx_superseded_seconds`` have passed, and a Kp made before the
        retired one's creation is refused from then on (so dropping the window loses nothing);
        a legacy Kp has no window, so the least recently admitted one makes room. What is still
        full after that refuses new Kps (``kp_limit``)."""
        if rx.keys:  # a known Kp: one more receive-cache key, the same window
            if len(rx.keys) < _MAX_ALIASES:
                rx.keys.append(key)
                self.rx[key] = rx
            return
        policy = self.ctx.policy
        if local_n != self._n:
            self.purge(local_n)
        if rx.created >= 0:
            self._supersede(rx, now)
        count = self.per_peer.get(rx.peer, 0)
        if count >= policy.rx_keys_per_peer:
            if rx.created < 0:
                oldest = next((k for k in self.kps.values()
                               if k.peer == rx.peer and k.created < 0), None)
                if oldest is not None:
                    self.forget(oldest)
                    count -= 1
            elif self._retire_oldest(rx):
                count -= 1
        if count >= policy.rx_keys_per_peer or len(self.kps) >= policy.rx_keys:
            live = rx.state.rx_live.get(rx.identity, [])
            if rx in live:
                live.remove(rx)  # never admitted: it must not raise the floor when it goes
            raise KeyingError("kp_limit", f"{count} live traffic keys from {rx.peer!r}")
        rx.keys.append(key)
        self.rx[key] = rx
        self.kps[rx.index] = rx
        self.generation += 1
        self.per_peer[rx.peer] = count + 1
        if rx.state.newest is None or rx.created > rx.state.newest.created or rx.created < 0:
            rx.state.newest = rx

    def _retire_oldest(self, rx: RxKey) -> bool:
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
        self.forget(old)
        live.remove(old)
        return True

    def _supersede(self, rx: RxKey, now: float) -> None:
        """A modern Kp joins its pair's live list: the older ones get their grace period (or
        this one does, if a newer one arrived first); those whose grace is over are retired,
        raising the pair's floor past them."""
        state = rx.state
        live = state.rx_live.setdefault(rx.identity, [])
        grace_end = now + self.ctx.policy.rx_superseded_seconds
        keep = []
        for old in live:
            if old.accept_until <= now or old.index not in self.kps:
                floor = state.rx_floor.get(rx.identity, 0)
                state.rx_floor[rx.identity] = max(floor, old.created + 1)
                self.forget(old)
                continue
            if old.created < rx.created:
                old.accept_until = min(old.accept_until, grace_end)
            else:
                rx.accept_until = min(rx.accept_until, grace_end)
            keep.append(old)
        keep.append(rx)
        state.rx_live[rx.identity] = keep

    def roam(self, rx: RxKey, packet: bytes, end: int) -> None:
        """A nomadic peer's packet verified: if from another outer address, send there now on.

        Only a packet that can only have come from the peer now moves it: it verified (ICV)
        and passed the replay check under the peer's newest Kp, in the modern profile (legacy
        has no replay protection), and it is the highest sequence number seen under that Kp,
        so a packet delayed or reordered from the old address does not move the peer back.
        The receive side is untouched (same Kps, same replay windows); the send Kps are
        retired, so the next packet starts a Kp whose SAs carry the new outer header.
        """
        state = rx.state
        src = addresses(packet)[0]
        if src == state.tunnel or rx.version != num.MODERN_VERSION or \
                not self.newest(rx, packet, end):
            return
        me = self.principals.identities.get(rx.identity)
        if me is None or not any(len(a) == len(src) for a in me.addresses):
            return  # no local address of that family to answer from
        state.tunnel = bytes(src)
        self.sender.retire(rx.peer)
        self.ctx.counters["peer_moved"] += 1

    @staticmethod
    def newest(rx: RxKey, packet: bytes, end: int) -> bool:
        """Whether a packet just accepted under ``rx`` is the newest its sender has sent:
        under the sender's newest Kp, with the highest sequence number seen under it. Only
        the modern profile can tell (legacy has no sequence numbers: False)."""
        if rx.version != num.MODERN_VERSION or rx is not rx.state.newest:
            return False
        sa = rx.transforms.sas[0]  # the modern profile has one layer: ESP, or AH alone
        window = sa.replay_window
        seq = _SEQ.unpack_from(packet, end + _SEQ_OFFSET[sa.protocol_number])[0]
        return window is not None and window.top & 0xFFFFFFFF == seq

    def live_keys(self, limit: int) -> list[tuple[bytes, int | None, int]] | None:
        """Every receive Kp held, as (EKp, where its packets' sequence number is from the
        SKIP header's start, the highest one accepted): packets under such a Kp numbered
        above it are the known peers' live traffic (skipd's kernel filter,
        skip/daemon/kernel_filter.py). The offset is None in the legacy profile, which
        numbers nothing. None when there are more than ``limit`` (no list built)."""
        if len(self.kps) > limit:
            return None
        out: list[tuple[bytes, int | None, int]] = []
        for rx in self.kps.values():
            sa = rx.transforms.sas[0]
            window = sa.replay_window
            if rx.version != num.MODERN_VERSION or window is None:
                out.append((rx.index[2], None, 0))
            else:
                out.append((rx.index[2], len(rx.header) + _SEQ_OFFSET[sa.protocol_number],
                            window.top & 0xFFFFFFFF))
        return out

    # --- forgetting --------------------------------------------------------------------------

    def purge(self, local_n: int) -> int:
        """Forget the receive Kps no packet can use any more (n below local n - 1)."""
        self._n = local_n
        return self.drop(lambda rx: rx.n < local_n - 1)

    def drop(self, doomed: Callable[[RxKey], bool]) -> int:
        gone = [rx for rx in self.kps.values() if doomed(rx)]
        for rx in gone:
            self.forget(rx)
        return len(gone)

    def forget(self, rx: RxKey) -> None:
        """One receive Kp and every receive-cache key that reaches it (O(aliases))."""
        if self.kps.pop(rx.index, None) is None:
            return
        self.generation += 1
        for k in rx.keys:
            self.rx.pop(k, None)
        self.per_peer[rx.peer] -= 1
