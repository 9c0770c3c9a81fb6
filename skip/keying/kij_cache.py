"""The master-key cache: Kij per (local principal, peer), bounded, LRU, with precompute.

Kij costs one Diffie-Hellman computation; everything after it is symmetric. Draft-06 section
1.6.3 defends against "clogging" (an attacker naming many peers to force DH work) by
precomputing Kij for expected peers and, under attack, computing no new ones. Here:

- ``precompute`` entries (administrators, expected peers) are pinned: never evicted;
- other entries are computed on demand, at most ``dh_per_second`` on average (token bucket,
  burst ``dh_burst``), and evicted least-recently-used when the cache is full;
- the cache never holds more than ``capacity`` entries, so memory is bounded too.

An attacker can only name peers whose public values the driver has already accepted (unknown
ones produce a certificate request, not DH work), and even then gets at most the DH budget.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from skip.errors import KeyingError
from skip.keying.ratelimit import TokenBucket

#: (local identity name, peer name, header version, the peer's public value): a peer whose
#: key rotates has two entries while the old key's grace lasts
CacheKey = tuple[str, str, int, bytes]


@dataclass(slots=True)
class KijEntry:
    kij: bytes
    #: (n, direction) -> Kijn; at most 3 live n. Direction 0 is the legacy Kijn (the same
    #: both ways), 1 the modern one we send under, 2 the modern one we receive under.
    kijn: dict[tuple[int, int], bytes] = field(default_factory=dict)

    def kijn_for(self, n: int, derive: Callable[[bytes, int], bytes], direction: int = 0
                 ) -> bytes:
        """Kijn for counter n, cached; values more than one hour away are dropped."""
        value = self.kijn.get((n, direction))
        if value is None:
            for old in [k for k in self.kijn if abs(k[0] - n) > 1]:
                del self.kijn[old]
            value = self.kijn[(n, direction)] = derive(self.kij, n)
        return value


class KijCache:
    """Pinned entries live apart from the LRU ones so eviction is O(1); both count to capacity."""

    def __init__(self, capacity: int, dh_per_second: float, dh_burst: int) -> None:
        if capacity < 1:
            raise ValueError("the Kij cache needs room for at least one entry")
        self.capacity = capacity
        self.budget = TokenBucket(dh_per_second, dh_burst)
        self._pinned: dict[CacheKey, KijEntry] = {}
        self._lru: OrderedDict[CacheKey, KijEntry] = OrderedDict()
        self.computed = 0

    def __len__(self) -> int:
        return len(self._pinned) + len(self._lru)

    def __contains__(self, key: CacheKey) -> bool:
        return key in self._pinned or key in self._lru

    def get(self, key: CacheKey, compute: Callable[[], bytes], now: float) -> KijEntry:
        """The cached entry, or a new one if the DH budget and the capacity allow it."""
        entry = self._pinned.get(key)
        if entry is not None:
            return entry
        entry = self._lru.get(key)
        if entry is not None:
            self._lru.move_to_end(key)
            return entry
        if not self.budget.take(now):
            raise KeyingError("rate_limited", "DH budget exhausted: no new master keys now")
        self._make_room()
        entry = self._lru[key] = KijEntry(self._compute(compute))
        return entry

    def precompute(self, key: CacheKey, compute: Callable[[], bytes]) -> KijEntry:
        """Compute (outside the DH budget) and pin: the entry is never evicted."""
        entry = self._pinned.get(key) or self._lru.pop(key, None)
        if entry is None:
            self._make_room()
            entry = KijEntry(self._compute(compute))
        self._pinned[key] = entry
        return entry

    def discard(self, predicate: Callable[[CacheKey], bool]) -> int:
        """Drop every entry whose key matches (a peer or identity went away)."""
        count = 0
        for table in (self._pinned, self._lru):
            for k in [k for k in table if predicate(k)]:
                del table[k]
                count += 1
        return count

    def resize(self, capacity: int, dh_per_second: float, dh_burst: int) -> None:
        """New bounds (a new policy): least recently used entries go until the rest fit."""
        self.capacity = capacity
        self.budget.rate, self.budget.burst = dh_per_second, dh_burst
        self.budget.tokens = min(self.budget.tokens, float(dh_burst))
        while len(self) > capacity and self._lru:
            self._lru.popitem(last=False)

    def drop_unpinned(self) -> int:
        """Forget every entry computed on demand (an operator's flush); pinned ones stay,
        since they were computed to keep their peers out of the DH budget's reach."""
        count = len(self._lru)
        self._lru.clear()
        return count

    def _compute(self, compute: Callable[[], bytes]) -> bytes:
        kij = compute()
        self.computed += 1
        return kij

    def _make_room(self) -> None:
        """Evict the least recently used unpinned entry if full (before any DH work)."""
        if len(self) < self.capacity:
            return
        if not self._lru:
            raise KeyingError("kij_cache_full", f"all {self.capacity} entries are pinned")
        self._lru.popitem(last=False)
