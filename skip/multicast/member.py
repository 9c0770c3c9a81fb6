"""A group member (next-wave.md 4.5; MC-1..MC-7, MC-M1..MC-M3).

It asks its configured owner for the group key (a GIK request with a fresh nonce, sent again
with back-off until answered), accepts a response only from that owner (the caller hands in
the authenticated unicast peer it came from), echoing its nonce, with an epoch newer than the
one it holds (a replayed response is ``gik_unexpected`` or ``stale_epoch``), and then follows
the owner's signed rekey messages: each must build on the epoch it holds (else it asks again:
``gik_epoch_gap``). A rekey that leaves the member without the new root key means it was
evicted: it forgets the group's keys.

Sans-I/O: the caller sends :meth:`request` payloads to the owner over SKIP-protected unicast
(UDP 1660) and hands back what arrives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from skip.errors import KeyingError
from skip.multicast.lkh import MemberKeys
from skip.multicast.traffic import GroupParams, GroupTraffic
from skip.wire.gik import (
    NONCE_SIZE,
    REKEY_REBUILD,
    GikRekey,
    GikRequest,
    GikResponse,
    parse_gik,
)

Rng = Callable[[int], bytes]
RETRY_FIRST = 1.0  # seconds before the first retransmission (CDP-22's timers)
RETRY_MAX = 30.0
TRIES = 5
CATCH_UP_SPACING = 5.0  # seconds between catch-up requests a rekey can trigger
REBUILD_SPREAD = 5.0  # members re-ask within this many seconds of a rebuild, not all at once


@dataclass(frozen=True, slots=True)
class Joined:
    """The member holds epoch ``epoch`` now (from a response or a rekey)."""

    epoch: int
    via: str  # "response" or "rekey"


@dataclass(frozen=True, slots=True)
class Rebuilding:
    """The owner rebuilt its key tree: this member asks again at ``ask_at`` (its timer)."""

    epoch: int
    ask_at: float


@dataclass(frozen=True, slots=True)
class Evicted:
    """A rekey this member could not follow: it is no longer in the group."""

    epoch: int


class GroupMember:
    def __init__(self, params: GroupParams, owner: str, rng: Rng) -> None:
        self.params = params
        self.owner = owner
        self.rng = rng
        self.traffic = GroupTraffic(params, rng)
        self.keys: MemberKeys | None = None
        self.owner_key: Ed25519PublicKey | None = None
        self.epoch = 0
        self.nonce: bytes | None = None
        self.retry_at: float | None = None
        self.tries = 0
        self.state = "none"  # none -> requesting -> member (-> evicted / failed)
        self.last_catch_up = float("-inf")

    # --- asking ----------------------------------------------------------------------------

    def request(self, now: float) -> bytes:
        """A GIK request to send to the owner (a fresh nonce each time: an answer to an
        earlier one is refused)."""
        self.nonce = self.rng(NONCE_SIZE)
        if self.keys is None and self.state != "evicted":
            self.state = "requesting"
        self.tries += 1
        self.retry_at = now + min(RETRY_MAX, RETRY_FIRST * 2 ** (self.tries - 1))
        return GikRequest(self.params.group, self.nonce, self.epoch).encode()

    def next_timer(self) -> float | None:
        return self.retry_at

    def on_timer(self, now: float) -> bytes | None:
        """The request again when no answer came in time; None once the tries are used up."""
        if self.retry_at is None or now < self.retry_at:
            return None
        if self.tries >= TRIES:
            self.retry_at = None
            if self.keys is None and self.state != "evicted":
                self.state = "failed"
            return None
        return self.request(now)

    def _catch_up(self, now: float) -> None:
        """Ask the owner again at the next ``on_timer`` (MC-M3: a member that missed a
        rekey asks over unicast)."""
        if self.retry_at is not None or now - self.last_catch_up < CATCH_UP_SPACING:
            return
        self.last_catch_up = now
        self.tries = 0
        self.retry_at = now

    def unreadable(self, now: float) -> None:
        """Group traffic arrived that no key we hold opens: we may have missed every resend
        of a rekey (or been evicted and since added back), so ask the owner again, no more
        often than every CATCH_UP_SPACING seconds however much traffic comes."""
        self._catch_up(now)

    # --- answers -------------------------------------------------------------------------

    def receive(
        self, payload: bytes, peer: str | None, now: float
    ) -> Joined | Evicted | Rebuilding:
        """A GIK message: a response over unicast (``peer``: who SKIP says sent it) or a
        rekey off the group address (``peer`` None: the owner's signature speaks for it)."""
        message = parse_gik(payload)
        if isinstance(message, GikResponse):
            return self._response(message, peer, now)
        if isinstance(message, GikRekey):
            return self._rekey(message, now)
        raise KeyingError("gik_unexpected", "a member takes responses and rekeys only")

    def _response(self, message: GikResponse, peer: str | None, now: float) -> Joined:
        if peer != self.owner:
            raise KeyingError("gik_wrong_owner", f"a response from {peer!r}, the owner is "
                              f"{self.owner!r}")
        if self.nonce is None or message.nonce != self.nonce:
            raise KeyingError("gik_unexpected", "the response echoes no request in progress")
        if message.group != self.params.group or \
                (message.kg_alg, message.crypt_alg, message.mac_alg, message.comp_alg) != \
                self.params.suite.algorithms:
            raise KeyingError("group_algorithms", "the response is for another group or "
                              "other algorithms than configured (MC-7)")
        if message.epoch == self.epoch and self.keys is not None and \
                message.kg == self.keys.root_key:
            # a catch-up that found us current (the rekey that prompted it was a forgery)
            self.nonce, self.retry_at, self.tries = None, None, 0
            return Joined(message.epoch, "response")
        if message.epoch <= self.epoch:
            raise KeyingError("stale_epoch", f"epoch {message.epoch}, holding {self.epoch}")
        keys = dict(message.path)
        keys[1] = message.kg
        self.keys = MemberKeys(message.leaf, keys)
        self.owner_key = Ed25519PublicKey.from_public_bytes(message.owner_key)
        self.traffic.set_key(message.epoch, message.kg, float(message.expiry), now)
        self.epoch = message.epoch
        self.nonce, self.retry_at, self.tries, self.state = None, None, 0, "member"
        return Joined(message.epoch, "response")

    def _rekey(self, message: GikRekey, now: float) -> Joined | Evicted | Rebuilding:
        if self.owner_key is None or self.keys is None:
            raise KeyingError("gik_unexpected", "a rekey before any response")
        try:
            self.owner_key.verify(message.signature, message.signed_part())
        except InvalidSignature:
            # a forgery, or an owner that restarted with a new rekey key: only asking the
            # owner over authenticated unicast tells which (spaced, so forgeries cannot make
            # us flood it)
            self._catch_up(now)
            raise KeyingError("gik_bad_signature", "the owner's signature does not verify") \
                from None
        if message.group != self.params.group or message.epoch <= self.epoch:
            raise KeyingError("stale_epoch", f"epoch {message.epoch}, holding {self.epoch}")
        if message.reason == REKEY_REBUILD:
            # our path is gone with the old tree; until the response comes, the old epoch's
            # keys stay (received traffic under them passes for the grace period)
            self.epoch = message.epoch - 1  # the response, at epoch or later, is newer
            spread = int.from_bytes(self.rng(2), "big") / 65536 * REBUILD_SPREAD
            self.nonce, self.tries, self.retry_at = None, 0, now + spread
            self.last_catch_up = now
            return Rebuilding(message.epoch, now + spread)
        if message.previous != self.epoch:
            self._catch_up(now)
            raise KeyingError("gik_epoch_gap", f"a rekey from epoch {message.previous}, "
                              f"holding {self.epoch}: ask the owner again")
        root = self.keys.root_key
        self.keys.apply(message.wraps)
        if self.keys.root_key == root:
            # nothing in the message was for us: the owner left us out (MC-M3)
            self.keys = None
            self.traffic.forget()
            self.state = "evicted"
            return Evicted(message.epoch)
        self.traffic.set_key(message.epoch, self.keys.root_key, float(message.expiry), now)
        self.epoch = message.epoch
        self.nonce, self.retry_at, self.tries = None, None, 0  # caught up: no catch-up due
        return Joined(message.epoch, "rekey")
