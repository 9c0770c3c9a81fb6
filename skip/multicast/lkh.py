"""The logical key hierarchy (RFC 2627; Wong, Gouda and Lam's key graphs) behind eviction.

A complete binary tree in heap numbering (root 1, children 2i and 2i+1), one leaf per member
slot. Every node has a 32-byte key; a member holds the keys on the path from its leaf to the
root, and the root key is the group key Kg. Evicting a member replaces every key on its path;
each new key is sent wrapped (RFC 3394) under the keys of its node's children, except the
evicted leaf: at most two wraps per level, 2 * depth - 1 in all, in one multicast message,
instead of one unicast message per remaining member. The evicted member holds none of the
keys the new ones are wrapped under, so it learns nothing; a member that joins is given a
fresh leaf and, with backward secrecy, its path is replaced too (each new key wrapped under
its node's old key), so it cannot read what was sent before it joined.

Pure: randomness is the injected ``rng``; nothing here knows about packets or time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from skip.errors import KeyingError, PolicyError
from skip.wire.gik import KEY_SIZE, Wrap

Rng = Callable[[int], bytes]
MAX_DEPTH = 20  # a million member slots: far past any group this owner is sized for


def path(leaf: int) -> Iterator[int]:
    """The nodes from ``leaf`` up to the root, leaf first."""
    node = leaf
    while node >= 1:
        yield node
        node //= 2


class KeyTree:
    """The owner's tree: every node key, which leaf each member has, the free leaves."""

    def __init__(self, depth: int, rng: Rng) -> None:
        if not 1 <= depth <= MAX_DEPTH:
            raise PolicyError("group_limit", f"a key tree of depth {depth} (1-{MAX_DEPTH})")
        self.depth = depth
        self.rng = rng
        self.first_leaf = 1 << depth
        self.keys: dict[int, bytes] = {}  # only nodes with a member below them
        self.leaf_of: dict[str, int] = {}
        self.member_at: dict[int, str] = {}
        self.free = list(range(self.first_leaf + (1 << depth) - 1, self.first_leaf - 1, -1))

    @classmethod
    def for_members(cls, capacity: int, rng: Rng) -> KeyTree:
        depth = max(1, (max(capacity, 2) - 1).bit_length())
        return cls(depth, rng)

    @property
    def root_key(self) -> bytes:
        return self.keys[1]

    def add(self, member: str) -> int:
        """A leaf for ``member`` with fresh keys where its path had none; returns the leaf."""
        if member in self.leaf_of:
            return self.leaf_of[member]
        if not self.free:
            raise PolicyError("group_limit", f"the key tree is full ({len(self.leaf_of)} "
                              "members)")
        leaf = self.free.pop()
        self.leaf_of[member] = leaf
        self.member_at[leaf] = member
        for node in path(leaf):
            if node not in self.keys:
                self.keys[node] = self.rng(KEY_SIZE)
        return leaf

    def path_keys(self, member: str) -> list[tuple[int, bytes]]:
        """The member's keys, leaf first, the root (Kg) last."""
        return [(node, self.keys[node]) for node in path(self.leaf_of[member])]

    def _replace_above(self, leaf: int) -> list[Wrap]:
        """A leaf was vacated: new keys from its parent up to the root, and the wraps,
        bottom-up, that let every remaining member learn them."""
        wraps: list[Wrap] = []
        self.keys.pop(leaf, None)
        for node in list(path(leaf))[1:]:
            children = [c for c in (2 * node, 2 * node + 1) if c in self.keys]
            if not children:
                self.keys.pop(node, None)  # the last member below it is gone
                continue
            new = self.rng(KEY_SIZE)
            wraps += [Wrap(node, c, aes_key_wrap(self.keys[c], new)) for c in children]
            self.keys[node] = new
        return wraps

    def evict(self, member: str) -> list[Wrap]:
        leaf = self.leaf_of.pop(member, None)
        if leaf is None:
            raise KeyingError("not_a_member", f"{member!r} is not a member")
        del self.member_at[leaf]
        self.free.append(leaf)
        return self._replace_above(leaf)

    def refresh_for_join(self, member: str) -> list[Wrap]:
        """Backward secrecy (MC-M4): the new member's path gets new keys, each wrapped under
        its node's old key, which the members already below that node hold; the newcomer
        gets its path by unicast instead."""
        leaf = self.leaf_of[member]
        wraps = []
        for node in list(path(leaf))[1:]:
            old = self.keys[node]
            new = self.rng(KEY_SIZE)
            wraps.append(Wrap(node, node, aes_key_wrap(old, new)))
            self.keys[node] = new
        self.keys[leaf] = self.rng(KEY_SIZE)
        return wraps


class MemberKeys:
    """What one member holds: the keys on its path, and how to apply a rekey's wraps."""

    def __init__(self, leaf: int, keys: dict[int, bytes]) -> None:
        self.leaf = leaf
        self.keys = dict(keys)
        self.nodes = frozenset(path(leaf))

    @property
    def root_key(self) -> bytes:
        return self.keys[1]

    def apply(self, wraps: tuple[Wrap, ...] | list[Wrap]) -> int:
        """Learn every new key of ours the wraps carry, bottom-up; returns how many unwraps
        it took. A wrap under a key we replaced earlier in this message uses the new one."""
        fresh: dict[int, bytes] = {}
        unwraps = 0
        for wrap in wraps:
            if wrap.target not in self.nodes or wrap.target in fresh:
                continue
            under = fresh.get(wrap.under) if wrap.under != wrap.target else None
            if under is None:
                under = self.keys.get(wrap.under) if wrap.under in self.nodes else None
            if under is None:
                continue
            try:
                fresh[wrap.target] = aes_key_unwrap(under, wrap.wrapped)
            except InvalidUnwrap:
                # under a newer key of that node than ours (we were left out of a rekey):
                # not for us; the caller sees the root key unchanged
                continue
            unwraps += 1
        self.keys.update(fresh)
        return unwraps
