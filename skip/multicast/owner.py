"""The group owner (mc-00 s. 1.1; next-wave.md 4.5, MC-M1..M4, MC-M9, MC-M10).

It holds the membership list (SKIP peer names: the caller hands in the authenticated unicast
peer a request came from, never an address taken on trust), the key tree whose root is Kg,
and the epoch. It answers GIK requests only from members (MC-5: a non-member gets nothing),
version 1 byte for byte, version 2 with the requester's nonce, the epoch and the member's path
of the key tree. Evicting a member, or admitting one with backward secrecy, advances the
epoch with one signed multicast rekey message of O(log n) wrapped keys (MC-M3, MC-M4); it is
sent again a few times (``next_timer`` / ``on_timer``), and a member that still missed it asks
over unicast and gets a fresh response.

Sans-I/O: bytes in, bytes out; ``now`` is a parameter; the caller sends responses over
SKIP-protected unicast and rekeys to the group address (UDP port 1660).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.keywrap import aes_key_wrap
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from skip.crypto import skip_numbers as num
from skip.errors import KeyingError, PolicyError
from skip.multicast.lkh import KeyTree
from skip.multicast.traffic import GroupParams, GroupTraffic
from skip.wire.gik import (
    REKEY_EVICT,
    REKEY_JOIN,
    REKEY_REBUILD,
    REKEY_REFRESH,
    GikRekey,
    GikRequest,
    GikRequestV1,
    GikResponse,
    GikResponseV1,
    Wrap,
    parse_gik,
)

Rng = Callable[[int], bytes]
EPOCH_1995 = 788_918_400  # 1995-01-01 00:00:00 UT in POSIX seconds (mc-00 expiry)
REKEY_REPEATS = 3  # sends of each rekey message after the first
REKEY_SPACING = 1.0  # seconds between them
MAX_MEMBERS = 65_536  # MC-M10
OWNER_LEAF = "\0owner"  # no SKIP name has a NUL byte


@dataclass(frozen=True, slots=True)
class Rekey:
    """A signed rekey message for the caller to multicast to the group on UDP 1660."""

    epoch: int
    payload: bytes
    wraps: int


class GroupOwner:
    def __init__(self, params: GroupParams, members: Iterable[str], now: float, rng: Rng, *,
                 lifetime: float = 86_400.0, backward_secrecy: bool = True,
                 signing_key: Ed25519PrivateKey | None = None,
                 first_epoch: int | None = None) -> None:
        names = sorted(set(members))
        if len(names) > MAX_MEMBERS:
            raise PolicyError("group_limit", f"{len(names)} members (at most {MAX_MEMBERS})")
        self.params = params
        self.rng = rng
        self.lifetime = lifetime
        self.backward_secrecy = backward_secrecy
        self.members = set(names)
        self.tree = self._build_tree()
        self.signing_key = signing_key or Ed25519PrivateKey.from_private_bytes(rng(32))
        self.owner_key = self.signing_key.public_key().public_bytes(Encoding.Raw,
                                                                    PublicFormat.Raw)
        # MC-M1 wants epochs strictly increasing per group, across restarts too: a member
        # refuses a response older than what it holds. Without saved state the clock is the
        # floor (a restart a second later starts above any epoch reached by less than one
        # rekey per second); skipd may save ``epoch`` and pass ``first_epoch=saved + 1``.
        self.epoch = first_epoch if first_epoch is not None else max(1, int(now))
        if not 1 <= self.epoch < 2**32 - 2**16:
            raise PolicyError("group_limit", f"first epoch {self.epoch} out of range")
        self.expiry = now + lifetime
        self.traffic = GroupTraffic(params, rng)  # the owner sends and receives too
        self.traffic.set_key(self.epoch, self.tree.root_key, self.expiry, now)
        self.pending: Rekey | None = None
        self.resends: list[float] = []

    def _build_tree(self) -> KeyTree:
        """A tree with room for as many members again (joins without a rebuild), the
        owner's own leaf first so the root never goes empty."""
        tree = KeyTree.for_members((len(self.members) + 1) * 2, self.rng)
        tree.add(OWNER_LEAF)
        for name in sorted(self.members):
            tree.add(name)
        return tree

    @property
    def kg(self) -> bytes:
        return self.tree.root_key

    # --- requests ------------------------------------------------------------------------

    def handle_request(self, payload: bytes, peer: str, now: float) -> bytes:
        """The response to a GIK request from the authenticated unicast peer ``peer``
        (raises ``not_a_member`` for anyone else: the caller sends nothing back)."""
        message = parse_gik(payload)
        if peer not in self.members:
            raise KeyingError("not_a_member", f"{peer!r} is not on the membership list")
        self._refresh_if_due(now)
        p = self.params
        suite = p.suite
        if isinstance(message, GikRequestV1):
            if suite.version != num.LEGACY_VERSION or message.group != p.group:
                raise KeyingError("group_unknown", "a version-1 request for another group")
            return GikResponseV1(p.group, max(0, int(self.expiry) - EPOCH_1995),
                                 p.interval_seconds, p.interval_bytes, *suite.algorithms,
                                 self.kg).encode()
        if not isinstance(message, GikRequest):
            raise KeyingError("gik_unexpected", "not a request")
        if message.group != p.group:
            raise KeyingError("group_unknown", "a request for another group")
        keys = self.tree.path_keys(peer)
        leaf = keys[0][0]
        return GikResponse(p.group, message.nonce, self.epoch, int(self.expiry),
                           p.interval_seconds, p.interval_bytes, *suite.algorithms, leaf,
                           self.owner_key, self.kg, tuple(keys[:-1])).encode()

    def receive(self, payload: bytes, peer: str, now: float) -> bytes:
        """What skipd calls with a datagram that reached UDP 1660 over SKIP-protected unicast
        (``peer``: the authenticated SKIP name): the reply for the same peer, or SkipError
        whose reason skipd counts (nothing is sent back then)."""
        return self.handle_request(payload, peer, now)

    # --- membership changes ----------------------------------------------------------------

    def evict(self, member: str, now: float) -> Rekey:
        """MC-M3: ``member`` can learn nothing from here on."""
        if member not in self.members:
            raise KeyingError("not_a_member", f"{member!r} is not a member")
        self.members.discard(member)
        return self._rekey(self.tree.evict(member), REKEY_EVICT, now)

    def add(self, member: str, now: float) -> Rekey | None:
        """A new member; with backward secrecy (MC-M4) its path is renewed so it cannot read
        what came before (a rekey for the others), else it just gets the current keys."""
        if member in self.members:
            return None
        if len(self.members) >= MAX_MEMBERS:
            raise PolicyError("group_limit", f"{len(self.members)} members")
        self.members.add(member)
        if not self.tree.free:
            # the tree is full: a deeper one, new keys everywhere, and a signed rebuild
            # message that sends every member back to unicast (O(n) responses, once per
            # doubling of the group)
            self.tree = self._build_tree()
            return self._rekey([], REKEY_REBUILD, now)
        self.tree.add(member)
        if not self.backward_secrecy:
            return None
        return self._rekey(self.tree.refresh_for_join(member), REKEY_JOIN, now)

    def _refresh_if_due(self, now: float) -> None:
        if now >= self.expiry - self.lifetime / 10:
            self.refresh(now)

    def refresh(self, now: float) -> Rekey:
        """A new root key before Kg expires: two wraps, under the root's two children."""
        root = self.tree
        new = self.rng(32)
        wraps = [Wrap(1, c, aes_key_wrap(root.keys[c], new)) for c in (2, 3) if c in root.keys]
        root.keys[1] = new
        return self._rekey(wraps, REKEY_REFRESH, now)

    def _rekey(self, wraps: list[Wrap], reason: int, now: float) -> Rekey:
        previous = self.epoch
        self.epoch += 1
        self.expiry = now + self.lifetime
        unsigned = GikRekey(self.params.group, self.epoch, previous, int(self.expiry), reason,
                            tuple(wraps))
        signature = self.signing_key.sign(unsigned.signed_part())
        payload = GikRekey(self.params.group, self.epoch, previous, int(self.expiry), reason,
                           tuple(wraps), signature).encode()
        self.traffic.set_key(self.epoch, self.kg, self.expiry, now)
        self.pending = Rekey(self.epoch, payload, len(wraps))
        self.resends = [now + REKEY_SPACING * (i + 1) for i in range(REKEY_REPEATS)]
        return self.pending

    # --- time ------------------------------------------------------------------------------

    def next_timer(self) -> float:
        """The next resend of the latest rekey, or the refresh before Kg expires."""
        return min((*self.resends, self.expiry - self.lifetime / 10))

    def on_timer(self, now: float) -> bytes | None:
        """A rekey message to multicast now, if one is due: a resend, or a refresh."""
        if now >= self.expiry - self.lifetime / 10:
            return self.refresh(now).payload
        due = [t for t in self.resends if t <= now]
        if not due or self.pending is None:
            return None
        self.resends = [t for t in self.resends if t > now]
        return self.pending.payload
