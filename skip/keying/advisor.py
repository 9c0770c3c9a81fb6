"""Algorithm discovery in the endpoint (ADP-00, SKIP ICMP): answering refused packets,
soliciting a peer's algorithms, and acting on the advice and Kp-floor notices peers send.

:mod:`skip.keying.adp` holds the pure rules (which classes failed, what to advertise, what
to choose); this is the part with state: the answer rate limits, the last advice per peer,
and the send Kps answers travel under.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address

from skip.crypto import kdf
from skip.crypto import skip_numbers as num
from skip.errors import KeyingError, ParseError, PolicyError, SkipError
from skip.keying import adp
from skip.keying.context import KeyingContext
from skip.keying.events import AlgorithmsChanged, Transmit
from skip.keying.identity import LocalIdentity, Peer
from skip.keying.keys import RxKey, TxKey, addresses
from skip.keying.principals import Principals
from skip.keying.sender import Sender
from skip.wire.ip import PROTO_ICMP, PROTO_NONE, build_ipv4, build_ipv6, locate_upper
from skip.wire.skip_header import IP_PROTOCOL_SKIP, SkipHeader
from skip.wire.skip_icmp import ICMP_TYPE_SKIP, AdpCode, SkipIcmp

_SOLICITATION_SIZE = 256  # bytes of IP datagram: room for the answer (see solicit)


class Advisor:
    def __init__(self, ctx: KeyingContext, principals: Principals, sender: Sender) -> None:
        self.ctx = ctx
        self.principals = principals
        self.sender = sender
        self.capabilities: dict[str, SkipIcmp] = {}  # last ADP advice, by peer name
        self.limiter = self._limiter()

    def _limiter(self) -> adp.AnswerLimiter:
        policy = self.ctx.policy
        return adp.AnswerLimiter(policy.adp_interval, policy.adp_sources, policy.adp_per_second)

    def adopt_policy(self) -> None:
        self.limiter = self._limiter()

    def forget(self, peer_name: str) -> None:
        self.capabilities.pop(peer_name, None)

    def solicit(self, them: Peer, me: LocalIdentity, now: float) -> bytes:
        """A SKIP packet with Kij Alg 0 (no Kp): asks the peer for SKIP ICMP (ADP-00).

        It carries the peer's current Crypt/MAC numbers and, after the header (Next Header 59:
        nothing follows), zero padding up to 256 bytes: the answer is never larger than the
        request, so the padding is what lets it be sent. The answer, once unprotected,
        updates :attr:`capabilities`.
        """
        suite = self.principals.suite_for(them, self.ctx.policy)
        n = kdf.counter_n(now)
        header = SkipHeader(suite.version, me.nsid, them.nsid, PROTO_NONE, n, 0,
                            suite.crypt_alg, suite.mac_alg, 0, b"", me.mkid, them.mkid).encode()
        for dst in sorted(them.addresses):
            src = next((a for a in sorted(me.addresses) if len(a) == len(dst)), None)
            if src is not None:
                hdr_len = 20 if len(dst) == 4 else 40
                pad = bytes(max(0, _SOLICITATION_SIZE - hdr_len - len(header)))
                return _datagram(src, dst, IP_PROTOCOL_SKIP, header + pad)
        raise PolicyError("no_identity", "no address pair of one family to send it on")

    def answer(self, packet: bytes, version: int, may_be_icmp: bool, failed: AdpCode,
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
        ctx = self.ctx
        src, dst = addresses(packet)
        state = self.principals.states[them.name]
        if src not in them.addresses and src != state.tunnel:
            ctx.counters["adp_unknown_address"] += 1
            return
        if not self.limiter.allow(src, now):
            ctx.counters["rate_limited"] += 1
            return
        policy = ctx.policy
        message = replace(adp.advertisement(policy, version, failed), kp_floor=kp_floor).encode()
        reply = _datagram(dst, src, PROTO_ICMP, message)
        n = kdf.counter_n(now)
        try:
            if version == num.MODERN_VERSION:
                # Every modern Kp we send becomes the pair's current one: the peer retires
                # the older ones by creation time, so a one-off Kp would end our traffic Kp.
                def ours(tx: TxKey) -> bool:  # not in algorithms we ourselves refuse
                    return not adp.failed_classes(policy, version, tx.suite.algorithms)

                suite = self.principals.suite_for(them, policy)
                if adp.failed_classes(policy, version, suite.algorithms):
                    suite = adp.answer_suite(policy, version) or suite
                tx = self.sender.pair(me, them, suite, n, now, ours)
            else:  # a one-off Kp: legacy answers use the ADP suite (AH, keyed MD5)
                one_off = adp.answer_suite(policy, version)
                if one_off is None:
                    return
                tx = self.sender.new(me, them, one_off, n, now)
            wire = tx.protect(reply, shim=tx.shim)
        except SkipError as err:  # e.g. no DH budget: count it, keep the packet's own reason
            ctx.counters.hit(err.reason)
            return
        if kp_floor is None and len(wire) > len(packet):
            ctx.counters["adp_too_large"] += 1
            return
        ctx.events.append(Transmit(wire, "adp"))
        ctx.counters["kp_notice_sent" if kp_floor is not None else "adp_sent"] += 1

    def consume(self, inner: bytes, rx: RxKey) -> bool:
        """Consume a SKIP ICMP message carried by an authenticated SKIP packet (True), or
        leave the packet to be delivered (False)."""
        _v, _nh, off, _proto = locate_upper(inner, verify_checksum=False)
        if off >= len(inner) or inner[off] != ICMP_TYPE_SKIP:
            return False
        if not rx.authenticated and not rx.aead:
            raise KeyingError("icmp_refused", "SKIP ICMP must arrive authenticated")
        try:
            advice = SkipIcmp.parse(inner[off:])
        except ParseError as err:
            raise KeyingError("icmp_refused", f"malformed SKIP ICMP: {err.reason}") from None
        if advice.kp_floor is not None:
            self._take_floor(rx, advice.kp_floor)
            return True
        self.ctx.counters["adp_received"] += 1
        if advice.protocol != 0:
            return True  # per-end-point advice: recorded by nobody yet (see docs/keying.md)
        self.capabilities[rx.peer] = advice
        peer = self.principals.peers.get(rx.peer)
        if peer is None:
            return True
        current = self.principals.suite_for(peer, self.ctx.policy)
        chosen = adp.choose(self.ctx.policy, current, advice)
        if chosen is not None and chosen != current:
            self.principals.chosen[peer.name] = chosen
            self.sender.retire(peer.name)  # the next packet starts a Kp with the new algorithms
            self.ctx.events.append(
                AlgorithmsChanged(peer.name, current.algorithms, chosen.algorithms,
                                  int(advice.code))
            )
        return True

    def _take_floor(self, rx: RxKey, floor: int) -> None:
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
        self.sender.retire(rx.peer)
        self.ctx.counters["kp_notice_received"] += 1


def _datagram(src: bytes, dst: bytes, protocol: int, payload: bytes) -> bytes:
    """An IPv4 or IPv6 datagram between two packed addresses of one family."""
    if len(src) == 4:
        return build_ipv4(IPv4Address(src), IPv4Address(dst), protocol, payload)
    return build_ipv6(IPv6Address(src), IPv6Address(dst), protocol, payload)
