"""Perfect forward secrecy: the ephemeral DH exchange of draft-ietf-ipsec-skip-pfs-00 and the
ephemeral keys it yields (next-wave.md part 3; docs/pfs.md).

Sans-I/O, like the rest of the engine: :meth:`Pfs.start` and :meth:`Pfs.receive` queue the
CDP datagrams to send as :class:`~skip.keying.events.PfsSend` events, time is ``now``, the
timer is :meth:`get_timer` / :meth:`handle_timer`. The exchange rides in CDP (3.5): the
request is a CDP REQUEST with one PUT record naming the exchange by EMKID (not the initiator:
pfs-00's anonymity), the reply the RESPONSE with PUT SUCCEEDED.

Two forms, chosen by the pair's profile:

- legacy (version 1): pfs-00 byte for byte - g^x/g^y in the pair's long-term MODP group with
  g and p carried, a keyed-MD5 (or keyed-SHA) MAC under Kij, EKijn from MD5 (PFS-1);
- modern (version 2): X25519/X448 (or the pair's MODP group) ephemerals, 16-byte nonces, MACs
  keyed per role from Kij, the responder's over the request's hash (key confirmation), and an
  EKijn per direction from HKDF over a transcript that names both principals (PFS-M1..M3).

What is refused, and why, is in docs/pfs.md and decisions.md ("PFS").
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from skip.crypto import kdf
from skip.crypto import skip_numbers as num
from skip.crypto.keyed import KeyedHashContext
from skip.errors import KeyingError, ParseError, PolicyError, SkipError
from skip.keying.context import KeyingContext
from skip.keying.ephemeral_key import EphemeralKey
from skip.keying.events import Dropped, PfsEstablished, PfsSend
from skip.keying.identity import LocalIdentity, Peer, group
from skip.keying.principals import Principals
from skip.wire.cdp import Action, CdpMessage, CdpRecord, NameType, RecordAction
from skip.wire.ephemeral import (
    EMKID_NSID,
    EPHEMERAL_CERT_TYPE,
    NONCE_SIZE,
    EphemeralCertificate,
)

if TYPE_CHECKING:
    from collections.abc import Callable

MODES = ("off", "preferred", "required")
_LEGACY_MACS = {1: "md5", 3: "sha1"}  # Cert MAC Alg -> keyed hash (PFS-3)
_MODERN_MAC = 20  # HMAC-SHA-256-128
_U32 = struct.Struct("!I")
_REPLY_CACHE = 1024  # replies kept for retransmitted requests (3.5)
_LIVE_PER_PAIR = 2  # confirmed keys: the current one and the one it replaces (3.6)
_UNCONFIRMED_PER_PAIR = 2  # a responder's keys the initiator has not used yet
_SEEN_PER_PAIR = 64  # requests remembered per pair (at the default lifetime, ~1.7 h of them)


def _big(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1)


@dataclass(slots=True, eq=False)
class _Exchange:
    """An initiator's exchange in flight (state SENT, or REKEYING while a key is live)."""

    identity: str
    peer: str
    version: int
    emkid: int  # EMKID_J_I: ours
    private: bytearray
    request: EphemeralCertificate
    payload: bytes
    address: bytes
    tries: int
    next_try: float


class Pfs:
    """The ephemeral keys of one endpoint: exchanges in flight, established keys, erasure."""

    def __init__(self, ctx: KeyingContext, principals: Principals,
                 retire: Callable[[str], int], forget_rx: Callable[[EphemeralKey], int]
                 ) -> None:
        self.ctx = ctx
        self.principals = principals
        self._retire = retire  # send Kps toward a peer (they move to the new key)
        self._forget_rx = forget_rx  # receive Kps under a key that ended
        self.by_emkid: dict[int, EphemeralKey] = {}  # ours -> key: the receive side's index
        self.current: dict[tuple[str, str], EphemeralKey] = {}  # (identity, peer): to send
        self.exchanges: dict[int, _Exchange] = {}  # by our EMKID_J_I
        self.by_pair: dict[tuple[str, str], _Exchange] = {}
        self.replies: dict[tuple[bytes, int, bytes], bytes] = {}  # (src, EMKID_J_I, g^x)
        self.waiting: dict[tuple[str, str], list[bytes]] = {}  # packets held for a key
        self.failed: dict[tuple[str, str], float] = {}  # pair -> no new try before
        self._reply_to: object = None  # of the request being answered (PfsSend.reply_to)
        self.seen: dict[tuple[str, str], deque[bytes]] = {}  # g^x digests answered, per pair

    # --- sending side --------------------------------------------------------------------

    def sending_key(self, me: LocalIdentity, them: Peer, version: int, now: float
                    ) -> EphemeralKey | None:
        """The ephemeral key to send under toward ``them`` (None: the long-term key, or -
        with ``required`` - nothing). Starts (or renews) an exchange as policy asks."""
        if them.pfs == "off":
            return None
        pair = (me.name, them.name)
        key = self.current.get(pair)
        if key is not None and (not key.live(now) or key.version != version):
            key = None
        # the initiator renews before the end (3.6); a responder only once its key is gone,
        # so the two sides do not both start exchanges at the same moment
        renew = key is None or (key.initiator and now >= key.established + \
            (key.expires - key.established) * self.ctx.policy.pfs_rekey_fraction)
        if renew and pair not in self.by_pair and now >= self.failed.get(pair, 0.0):
            self.start(me, them, version, now)
        return key

    def hold(self, me: LocalIdentity, them: Peer, packet: bytes) -> None:
        """Keep a packet that may only go under an ephemeral key until one is established
        (``required``; never under the long-term key, PFS-M6). Bounded per pair; with no
        exchange running (the last one failed moments ago) it is dropped."""
        if (me.name, them.name) not in self.by_pair:
            raise PolicyError("pfs_required", f"no ephemeral key with {them.name!r} and no "
                              "exchange running")
        held = self.waiting.setdefault((me.name, them.name), [])
        if len(held) >= self.ctx.policy.queue_per_peer:
            raise PolicyError("pfs_required", f"{len(held)} packets already wait for the "
                              f"ephemeral key with {them.name!r}")
        held.append(packet)
        self.ctx.counters["pfs_held"] += 1

    def release(self, pair: tuple[str, str]) -> list[bytes]:
        return self.waiting.pop(pair, [])

    # --- the exchange ---------------------------------------------------------------------

    def start(self, me: LocalIdentity, them: Peer, version: int, now: float) -> None:
        """Send a new ephemeral certificate to ``them`` (PFS-10, PFS-11)."""
        ctx = self.ctx
        if len(self.exchanges) >= ctx.policy.pfs_exchanges:
            ctx.counters.hit("pfs_limit")
            return
        address = min(them.addresses, default=None)
        state = self.principals.states.get(them.name)
        if state is not None and state.tunnel is not None:
            address = state.tunnel
        if address is None:
            raise PolicyError("no_identity", f"no address to reach {them.name!r} for PFS")
        dh = group(them.group)
        private = bytearray(dh.generate_private(ctx.rng))
        emkid = self._fresh_emkid()
        kij = ctx.kij_entry(me, them, version, now).kij
        if version == num.LEGACY_VERSION:
            cert = EphemeralCertificate(1, 1, int(ctx.policy.pfs_lifetime),
                                        dh.public_value(bytes(private)), 0, emkid,
                                        _big(dh.g), _big(dh.p))
            cert = cert.with_mac(_legacy_mac(cert, kij))
        else:
            cert = EphemeralCertificate(2, _MODERN_MAC, int(ctx.policy.pfs_lifetime),
                                        dh.public_value(bytes(private)), 0, emkid,
                                        nonce=ctx.rng(NONCE_SIZE))
            cert = cert.with_mac(kdf.pfs_mac(kdf.pfs_mac_key(kij, b"I"), cert.body()))
        cookie = _U32.unpack(ctx.rng(4))[0]
        payload = CdpMessage(Action.REQUEST, cookie, 0, (
            CdpRecord(RecordAction.PUT, NameType.SKIP, _name(emkid), EPHEMERAL_CERT_TYPE,
                      cert.encode()),)).encode()
        exchange = _Exchange(me.name, them.name, version, emkid, private, cert, payload,
                             address, 1, now + ctx.policy.pfs_retransmit)
        self.exchanges[emkid] = exchange
        self.by_pair[(me.name, them.name)] = exchange
        ctx.events.append(PfsSend(them.name, address, payload))
        ctx.counters["pfs_sent"] += 1

    def receive(self, payload: bytes, src: bytes, now: float, reply_to: object = None
                ) -> list[tuple[str, str]]:
        """A CDP datagram carrying an ephemeral certificate (either role). Returns the pairs
        whose new key is established (their held packets can go). Raises a SkipError on a
        refusal; nothing is kept from a refused message."""
        self._reply_to = reply_to
        try:
            return self._receive(payload, src, now)
        except SkipError as err:
            self.ctx.counters.hit(err.reason)
            raise

    def _receive(self, payload: bytes, src: bytes, now: float) -> list[tuple[str, str]]:
        message = CdpMessage.parse(payload)
        if len(message.records) != 1:
            raise ParseError("pfs_bad_certificate", "one ephemeral certificate per message")
        record = message.records[0]
        if record.cert_type != EPHEMERAL_CERT_TYPE or record.name_type != NameType.SKIP or \
                len(record.name) != 5 or record.name[0] != EMKID_NSID:
            raise ParseError("pfs_bad_certificate", "not an ephemeral certificate record")
        cert = EphemeralCertificate.parse(record.certificate)
        if cert.emkid_ji != _U32.unpack_from(record.name, 1)[0]:
            raise ParseError("pfs_bad_certificate", "the record names another exchange")
        if message.is_request and record.action == RecordAction.PUT:
            return self._respond(message, cert, src, now)
        if not message.is_request and record.action == RecordAction.PUT_SUCCEEDED:
            return self._complete(cert, now)
        raise ParseError("pfs_bad_certificate", f"record action {record.action}")

    def _check_common(self, cert: EphemeralCertificate, them: Peer) -> None:
        version = cert.version
        if version == num.LEGACY_VERSION and not self.ctx.policy.allow_legacy:
            raise PolicyError("legacy_refused", "SKIP version 1 is disabled by policy")
        if cert.cert_type == EPHEMERAL_CERT_TYPE or cert.cert_enc_alg:
            # an ephemeral certificate inside one; encryption (anonymity) is not offered
            raise ParseError("pfs_bad_certificate", "the long-lived certificate field")
        dh = group(them.group)
        if version == num.LEGACY_VERSION:
            if cert.mac_alg not in _LEGACY_MACS or \
                    (cert.generator, cert.modulus) != (_big(dh.g), _big(dh.p)) or \
                    dh.kind != "modp":
                raise ParseError("pfs_bad_certificate", "g, p or the MAC algorithm is not "
                                 "the pair's")
        elif cert.mac_alg != _MODERN_MAC or cert.generator or cert.modulus:
            raise ParseError("pfs_bad_certificate", "a modern ephemeral certificate carries "
                             "HMAC-SHA-256-128 and no g or p")
        if len(cert.public) != dh.public_size:
            raise KeyingError("bad_public_value", "ephemeral public value of the wrong size")
        dh.validate_public(cert.public)

    def _respond(self, message: CdpMessage, cert: EphemeralCertificate, src: bytes,
                 now: float) -> list[tuple[str, str]]:
        """Responder J (PFS-13, PFS-14)."""
        ctx, p = self.ctx, self.principals
        cached = self.replies.get((src, cert.emkid_ji, cert.public))
        if cached is not None:  # a retransmission: the same reply, never a second y (3.5)
            ctx.events.append(PfsSend("", src, cached, self._reply_to))
            ctx.counters["pfs_sent"] += 1
            return []
        them = p.peer_by_addr.get(src)
        if them is None:
            raise KeyingError("pfs_unknown_peer", "the request's source names no peer")
        me = p.identity_for(them)
        if me is None:
            raise KeyingError("no_identity", f"no local principal for peer {them.name!r}")
        if cert.emkid_ij != 0 or cert.emkid_ji == 0:
            raise ParseError("pfs_bad_certificate", "a request sets EMKID_J_I and only it")
        if cert.protocol or cert.port:
            # a per-process scope (pfs-00 s. 3, optional): keys here are per node
            raise ParseError("pfs_bad_certificate", "Protocol/Port scopes are not offered")
        self._check_common(cert, them)
        if cert.version != p.suite_for(them, ctx.policy).version:
            raise PolicyError("pfs_bad_certificate", "the request's version is not the pair's")
        pair = (me.name, them.name)
        if sum(not k.confirmed for k in self.by_emkid.values()) >= ctx.policy.pfs_exchanges:
            raise KeyingError("pfs_limit", "too many unconfirmed ephemeral keys")
        kij = ctx.kij_entry(me, them, cert.version, now).kij  # within the DH budget
        _verify(cert, kij, b"I", b"")
        # pfs-00 gives a request no freshness (3.8.1): one captured and replayed after its
        # reply left the cache would pass the MAC. Its g^x is remembered per pair, and a key
        # it makes stays unconfirmed (never sent under, never displacing a key in use) until
        # the initiator's own packet arrives under it.
        seen = self.seen.setdefault(pair, deque(maxlen=_SEEN_PER_PAIR))
        mark = hashlib.sha256(cert.public).digest()[:16]
        if mark in seen:
            raise KeyingError("replay", "an ephemeral request answered before")
        seen.append(mark)
        dh = group(them.group)
        y = bytearray(dh.generate_private(ctx.rng))
        secret = bytearray(dh.shared_secret(bytes(y), cert.public))
        emkid = self._fresh_emkid()
        validity = min(cert.validity, int(ctx.policy.pfs_lifetime))
        if cert.version == num.LEGACY_VERSION:
            reply = EphemeralCertificate(1, cert.mac_alg, int(ctx.policy.pfs_lifetime),
                                         dh.public_value(bytes(y)), emkid, cert.emkid_ji,
                                         cert.generator, cert.modulus)
            reply = reply.with_mac(_legacy_mac(reply, kij))
            material = bytearray(kij) + secret
            transcript = b""
        else:
            reply = EphemeralCertificate(2, _MODERN_MAC, int(ctx.policy.pfs_lifetime),
                                         dh.public_value(bytes(y)), emkid, cert.emkid_ji,
                                         nonce=ctx.rng(NONCE_SIZE))
            request_hash = hashlib.sha256(cert.body()).digest()
            reply = reply.with_mac(kdf.pfs_mac(kdf.pfs_mac_key(kij, b"J"), reply.body(),
                                               request_hash))
            transcript = kdf.pfs_transcript(them.public, me.publics[them.group], cert.body(),
                                            reply.body())
            material = bytearray(kdf.pfs_prk(kij, bytes(secret)))
        _zero(y, secret)
        payload = CdpMessage(Action.RESPONSE, message.requester_cookie, 0, (
            CdpRecord(RecordAction.PUT_SUCCEEDED, NameType.SKIP, _name(cert.emkid_ji),
                      EPHEMERAL_CERT_TYPE, reply.encode()),)).encode()
        if len(self.replies) >= _REPLY_CACHE:
            del self.replies[next(iter(self.replies))]
        self.replies[(src, cert.emkid_ji, cert.public)] = payload
        key = EphemeralKey(me.name, them.name, cert.version, False, emkid, cert.emkid_ji,
                           now, now + validity, material, transcript=transcript,
                           confirmed=False)
        self._establish(key)
        ctx.events.append(PfsSend(them.name, src, payload, self._reply_to))
        ctx.counters["pfs_sent"] += 1
        return [pair]

    def _complete(self, cert: EphemeralCertificate, now: float) -> list[tuple[str, str]]:
        """Initiator I on a reply (PFS-12)."""
        ctx, p = self.ctx, self.principals
        exchange = self.exchanges.get(cert.emkid_ji)
        if exchange is None:
            raise KeyingError("pfs_unexpected", "a reply to no exchange in progress")
        me, them = p.identities.get(exchange.identity), p.peers.get(exchange.peer)
        if me is None or them is None:
            raise KeyingError("pfs_unexpected", "the exchange's principals are gone")
        if cert.emkid_ij == 0 or cert.protocol or cert.port or cert.version != exchange.version:
            raise ParseError("pfs_bad_certificate", "a reply names EMKID_I_J, Protocol and "
                             "Port 0, the request's version")
        self._check_common(cert, them)
        kij = ctx.kij_entry(me, them, exchange.version, now).kij
        request_hash = hashlib.sha256(exchange.request.body()).digest() \
            if exchange.version != num.LEGACY_VERSION else b""
        _verify(cert, kij, b"J", request_hash)
        dh = group(them.group)
        secret = bytearray(dh.shared_secret(bytes(exchange.private), cert.public))
        validity = min(cert.validity, exchange.request.validity)
        if exchange.version == num.LEGACY_VERSION:
            material = bytearray(kij) + secret
            transcript = b""
        else:
            material = bytearray(kdf.pfs_prk(kij, bytes(secret)))
            transcript = kdf.pfs_transcript(me.publics[them.group], them.public,
                                            exchange.request.body(), cert.body())
        _zero(secret)
        self._end_exchange(exchange)
        key = EphemeralKey(me.name, them.name, exchange.version, True, exchange.emkid,
                           cert.emkid_ij, now, now + validity, material,
                           transcript=transcript)
        self._establish(key)
        return [(me.name, them.name)]

    def _establish(self, key: EphemeralKey) -> None:
        pair = (key.identity, key.peer)
        self.by_emkid[key.rx_emkid] = key
        self.failed.pop(pair, None)
        self.ctx.counters["pfs_established"] += 1
        if not key.confirmed:
            # a responder's key waits for the initiator's first packet; at most a few do
            waiting = sorted((k for k in self._keys(pair) if not k.confirmed),
                             key=lambda k: k.established)
            for stale in waiting[:-_UNCONFIRMED_PER_PAIR]:
                self._destroy(stale)
            return
        self.confirm(key)

    def confirm(self, key: EphemeralKey) -> None:
        """The key is known to be shared: the initiator's because the reply's MAC covered its
        request, the responder's once a packet from the initiator verified under it. It
        becomes the one to send under; older keys of the pair stay for packets in flight
        until they expire, beyond the newest two (a peer re-running exchanges cannot grow
        our state), and unconfirmed ones older than it go."""
        pair = (key.identity, key.peer)
        key.confirmed = True
        self.current[pair] = key
        keys = sorted(self._keys(pair), key=lambda k: k.established)
        confirmed = [k for k in keys if k.confirmed]
        for stale in confirmed[:-_LIVE_PER_PAIR]:
            self._destroy(stale)
        for stale in keys:
            if not stale.confirmed and stale.established < key.established:
                self._destroy(stale)
        self._retire(key.peer)  # the next packet starts a Kp under the new key
        self.ctx.events.append(PfsEstablished(key.peer, key.identity, key.version,
                                              key.expires))

    def _keys(self, pair: tuple[str, str]) -> list[EphemeralKey]:
        return [k for k in self.by_emkid.values() if (k.identity, k.peer) == pair]

    def _end_exchange(self, exchange: _Exchange) -> None:
        self.exchanges.pop(exchange.emkid, None)
        if self.by_pair.get((exchange.identity, exchange.peer)) is exchange:
            del self.by_pair[(exchange.identity, exchange.peer)]
        _zero(exchange.private)  # x is gone with the exchange (PFS-16)

    def _destroy(self, key: EphemeralKey) -> None:
        pair = (key.identity, key.peer)
        if self.by_emkid.get(key.rx_emkid) is key:
            del self.by_emkid[key.rx_emkid]
        if self.current.get(pair) is key:
            del self.current[pair]
            self._retire(key.peer)
        self._forget_rx(key)
        key.erase()
        self.ctx.counters["pfs_erased"] += 1

    def _fresh_emkid(self) -> int:
        """A random non-zero EMKID unique among our live keys and exchanges (PFS-M8)."""
        while True:
            emkid = _U32.unpack(self.ctx.rng(4))[0]
            if emkid and emkid not in self.by_emkid and emkid not in self.exchanges:
                return emkid

    # --- forgetting -----------------------------------------------------------------------

    def forget_peer(self, name: str) -> None:
        """A peer removed (revoked, expired): its exchanges and ephemeral keys go."""
        for exchange in [e for e in self.exchanges.values() if e.peer == name]:
            self._end_exchange(exchange)
        for key in [k for k in self.by_emkid.values() if k.peer == name]:
            self._destroy(key)
        for pair in [q for q in self.waiting if q[1] == name]:
            del self.waiting[pair]
        for pair in [q for q in self.seen if q[1] == name]:
            del self.seen[pair]
        self.failed = {q: t for q, t in self.failed.items() if q[1] != name}

    def forget_identity(self, name: str) -> None:
        for exchange in [e for e in self.exchanges.values() if e.identity == name]:
            self._end_exchange(exchange)
        for key in [k for k in self.by_emkid.values() if k.identity == name]:
            self._destroy(key)

    # --- time -----------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        times = [e.next_try for e in self.exchanges.values()]
        times += [k.expires for k in self.by_emkid.values()]
        return min(times, default=None)

    def handle_timer(self, now: float) -> None:
        """Retransmit, give up (``pfs_timeout``: held packets are dropped, never sent under
        the long-term key), and destroy expired keys (PFS-16)."""
        ctx = self.ctx
        for exchange in [e for e in self.exchanges.values() if e.next_try <= now]:
            pair = (exchange.identity, exchange.peer)
            if exchange.tries >= ctx.policy.pfs_tries:
                self._end_exchange(exchange)
                ctx.counters.hit("pfs_timeout")
                self.failed[pair] = now + ctx.policy.pfs_retransmit * 2 ** ctx.policy.pfs_tries
                held = self.release(pair)
                if held:
                    ctx.counters.hit("pfs_required", len(held))
                    ctx.events.append(Dropped("pfs_timeout", f"{len(held)} packets for "
                                              f"{exchange.peer!r}"))
                continue
            exchange.tries += 1
            exchange.next_try = now + ctx.policy.pfs_retransmit * 2 ** (exchange.tries - 1)
            ctx.events.append(PfsSend(exchange.peer, exchange.address, exchange.payload))
            ctx.counters["pfs_sent"] += 1
        for key in [k for k in self.by_emkid.values() if k.expires <= now]:
            self._destroy(key)
        if self.replies and not self.exchanges and not self.by_emkid:
            self.replies.clear()

    def status(self, identity: str, peer: str, now: float) -> dict[str, object]:
        """What an operator may see of a pair's PFS state (no key bytes)."""
        key = self.current.get((identity, peer))
        out: dict[str, object] = {"pfs": key is not None and key.live(now),
                                  "exchange_in_progress": (identity, peer) in self.by_pair}
        if key is not None and key.live(now):
            out["ephemeral_age"] = round(now - key.established, 3)
            out["ephemeral_expires_in"] = round(key.expires - now, 3)
        return out


def carries_ephemeral(payload: bytes) -> bool:
    """Whether a CDP datagram is part of an ephemeral exchange (for a driver that shares
    the CDP port between discovery and PFS); False for anything unparsable."""
    try:
        message = CdpMessage.parse(payload)
    except SkipError:
        return False
    return any(r.cert_type == EPHEMERAL_CERT_TYPE for r in message.records)


def _name(emkid: int) -> bytes:
    """The CDP name of an exchange: EMKID NSID || EMKID_J_I (3.5), not the initiator's."""
    return bytes((EMKID_NSID,)) + _U32.pack(emkid)


def _legacy_mac(cert: EphemeralCertificate, kij: bytes) -> bytes:
    """PFS-3: keyed hash under Kij over the whole certificate, MAC field zero-filled."""
    return KeyedHashContext(_LEGACY_MACS[cert.mac_alg], kij, cert.mac_length).compute(
        cert.unsigned())


def _verify(cert: EphemeralCertificate, kij: bytes, role: bytes, request_hash: bytes) -> None:
    if cert.version == num.LEGACY_VERSION:
        expected = _legacy_mac(cert, kij)
    else:
        expected = kdf.pfs_mac(kdf.pfs_mac_key(kij, role), cert.body(), request_hash)
    if not hmac.compare_digest(expected, cert.mac):
        raise KeyingError("pfs_mac", "the ephemeral certificate's MAC does not verify")


def _zero(*buffers: bytearray) -> None:
    for buffer in buffers:
        buffer[:] = bytes(len(buffer))
