"""Rate limits with time as a parameter: a token bucket, and one per source with a bound on
the sources remembered. Everything that answers unauthenticated input (SKIP ICMP answers,
DH computations for new peers, CDP answers and lookups) spends from one of these, so that a
flood costs the node a bounded amount of work whatever it names."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class TokenBucket:
    """``rate`` events per second on average, ``burst`` at once; time comes from the caller."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp: float | None = None

    def take(self, now: float) -> bool:
        if self.stamp is not None and now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        if self.stamp is None or now > self.stamp:
            self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class PerSource:
    """A token bucket per source (at most ``sources`` remembered, the quietest forgotten
    first) and one for all sources together (``total_rate`` None: none)."""

    def __init__(self, rate: float, burst: int, sources: int, total_rate: float | None
                 ) -> None:
        self.rate, self.burst, self.sources = rate, burst, sources
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()
        self._all = TokenBucket(total_rate, max(1, int(total_rate))) \
            if total_rate is not None else None

    def allow(self, source: Hashable, now: float) -> bool:
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = self._buckets[source] = TokenBucket(self.rate, self.burst)
            while len(self._buckets) > self.sources:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(source)
        return bucket.take(now) and (self._all is None or self._all.take(now))
