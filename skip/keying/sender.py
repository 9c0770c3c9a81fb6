"""The sending side: one current Kp per (local principal, peer), made when none is live.

The endpoint's ``protect`` finds a live :class:`~skip.keying.keys.TxKey` in :attr:`tx` or
:attr:`by_route` inline; everything else - finding the principals of a packet, making a Kp
(Kij, Kijn, the EKp, the header, the SAs), retiring Kps whose parameters changed - is here.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from skip.crypto import kdf
from skip.crypto import skip_numbers as num
from skip.crypto.kp_wrap import legacy_encrypt_kp, modern_wrap_kp
from skip.errors import KeyingError, PolicyError
from skip.keying.context import KeyingContext
from skip.keying.ephemeral_key import EphemeralKey
from skip.keying.identity import LocalIdentity, Peer, group
from skip.keying.keys import IPV4_PLAIN, TxKey, addresses
from skip.keying.pfs import Pfs
from skip.keying.principals import Principals
from skip.keying.suite import Suite, check_group
from skip.wire.ephemeral import EMKID_NSID
from skip.wire.ip import PROTO_AH, PROTO_ESP, locate_upper
from skip.wire.names import SkipName
from skip.wire.skip_header import IP_PROTOCOL_SKIP, SkipHeader

_U32 = struct.Struct("!I")


class Sender:
    def __init__(self, ctx: KeyingContext, principals: Principals, pfs: Pfs) -> None:
        self.ctx = ctx
        self.principals = principals
        self.pfs = pfs
        self.tx: dict[tuple[str, str], TxKey] = {}
        self.by_route: dict[bytes, TxKey] = {}  # IPv4 source+destination -> current Kp

    def current(self, packet: bytes, now: float, identity_name: str | None,
                peer_name: str | None) -> TxKey | None:
        """The Kp for a packet the fast path could not place: finds the principal and the
        peer, makes a Kp when the pair has none that is live, and remembers the IPv4 route.
        None: the peer is unknown and the packet waits for its certificate."""
        p = self.principals
        locate_upper(packet, verify_checksum=False)  # validates the header chain
        src, dst = addresses(packet)
        them = p.peers.get(peer_name) if peer_name else p.peer_by_addr.get(dst)
        if identity_name is not None:
            me = p.identities.get(identity_name)
        elif them is not None and them.local:
            me = p.identity_for(them)
        else:
            me = p.identity_by_addr.get(src)
        if me is None:
            raise PolicyError("no_identity", "no such local principal, or none at this address")
        if them is None:
            if peer_name:
                raise KeyingError("unknown_mkid", f"no peer named {peer_name!r}")
            self.ctx.queue(SkipName.of_address(dst), "outbound", packet, 0, b"", dst, now)
            return None
        suite = p.suite_for(them, self.ctx.policy)
        if them.pfs == "required" and \
                self.pfs.sending_key(me, them, suite.version, now) is None:
            self.pfs.hold(me, them, packet)  # never under the long-term key (PFS-M6)
            return None
        tx = self.pair(me, them, suite, kdf.counter_n(now), now)
        if identity_name is None and peer_name is None and len(src) == 4 and \
                len(packet) >= IPV4_PLAIN and packet[0] == 0x45:
            self.by_route[packet[12:20]] = tx  # bounded: only routes that found a pair
        return tx

    def pair(self, me: LocalIdentity, them: Peer, suite: Suite, n: int, now: float,
             usable: Callable[[TxKey], bool] = lambda tx: True) -> TxKey:
        """The pair's current send Kp, or (none live, or not ``usable``) a new one in ``suite``
        that becomes it; the old one is retired, so routes that still point at it take the
        slow path."""
        pair = (me.name, them.name)
        tx = self.tx.get(pair)
        ephemeral = self.pfs.sending_key(me, them, suite.version, now)
        if tx is None or not tx.live(now) or not usable(tx) or tx.ephemeral is not ephemeral:
            if tx is not None:
                tx.expires = -1.0
            tx = self.tx[pair] = self.new(me, them, suite, n, now, ephemeral)
        return tx

    def new(self, me: LocalIdentity, them: Peer, suite: Suite, n: int, now: float,
            ephemeral: EphemeralKey | None = None) -> TxKey:
        """A fresh Kp: new at every n, after the byte/time limits, per peer and principal;
        under ``ephemeral``'s EKijn (PFS-2, PFS-15) if given, else under Kijn."""
        ctx = self.ctx
        if ephemeral is None and them.pfs == "required":
            raise PolicyError("pfs_required", f"no ephemeral key with {them.name!r} yet")
        state = self.principals.states[them.name]
        if state.nomadic and state.tunnel is None:
            raise KeyingError("nomadic_unheard", f"{them.name!r} has not been heard from yet")
        if them.not_after is not None and now >= them.not_after:
            raise KeyingError("cert_expired", f"the certificate of {them.name!r} has expired")
        suite.check()
        check_group(suite.version, group(them.group))
        ctx.check_accepts(suite)
        prof = suite.profile
        kij, crypt, mac, _ = suite.algorithms
        ekp_len = prof.ekp_length(kij, crypt, mac)
        kp = ctx.rng(prof.kp_length(crypt, mac))
        names = (me.nsid, them.nsid, me.mkid, them.mkid)
        if ephemeral is not None:
            # Source NSID 0 and MKID absent, the peer's EMKID as destination (PFS-15)
            names = (0, EMKID_NSID, b"", _U32.pack(ephemeral.tx_emkid))
            kijn = ephemeral.ekijn(n, True)
        elif suite.version == num.LEGACY_VERSION:
            kijn = ctx.kij_entry(me, them, suite.version, now).kijn_for(n, kdf.legacy_kijn)
        else:
            mine, theirs = me.publics[them.group], them.public
            kijn = ctx.kij_entry(me, them, suite.version, now).kijn_for(
                n, lambda k, n: kdf.modern_kijn(k, n, mine, theirs), 1)
        if suite.version == num.LEGACY_VERSION:
            ekp = legacy_encrypt_kp(prof.kij[kij], kijn, kp, ekp_len, ctx.rng)
        else:
            # strictly increasing per pair (the receiver retires older Kps by it), never
            # below what the peer asked for after it restarted
            created = max(int(now * 1000), state.kp_floor.get(me.name, 0),
                          state.tx_created.get(me.name, -1) + 1)
            state.tx_created[me.name] = created
            ekp = modern_wrap_kp(kijn, kp, created)
        next_header = PROTO_ESP if suite.layers[0] == "esp" else PROTO_AH
        src_nsid, dst_nsid, src_mkid, dst_mkid = names
        raw = SkipHeader(suite.version, src_nsid, dst_nsid, next_header, n, kij, crypt, mac, 0,
                         ekp, src_mkid, dst_mkid).encode()
        transforms = ctx.transforms(suite, kp, ekp_len, raw, them, me, state)
        ctx.counters["kp_new"] += 1
        expires = min(now + ctx.policy.kp_max_seconds, kdf.n_start(n + 1))
        if them.not_after is not None:
            expires = min(expires, them.not_after)
        if ephemeral is not None:
            expires = min(expires, ephemeral.expires)  # no Kp outlives its EKijn (PFS-2)
        shim = (IP_PROTOCOL_SKIP, raw)
        return TxKey(expires, transforms.sas[-1].counters, ctx.policy.kp_max_bytes, suite, raw,
                     transforms.protect, shim, now, transforms, state, ephemeral,
                     transforms.lane(shim))

    def retire(self, peer_name: str | None = None) -> int:
        """Retire the send Kps toward one peer (None: toward every peer); returns how many."""
        pairs = [p for p in self.tx if peer_name is None or p[1] == peer_name]
        for pair in pairs:
            self.tx.pop(pair).expires = -1.0
        self.by_route.clear()
        return len(pairs)

    def expire(self, now: float) -> int:
        """Drop the send Kps no packet may use any more (the timer's sweep: memory, not
        correctness, since the fast path tests liveness itself)."""
        dead = [pair for pair, tx in self.tx.items() if not tx.live(now)]
        for pair in dead:
            self.tx.pop(pair).expires = -1.0
        if dead:
            self.by_route.clear()
        return len(dead)
