"""Packets waiting for a principal's certificate: a small, bounded holding area.

Draft-06 only says a receiver "may have to obtain" an unknown sender's public value; skip-core
s. 8.2 recommends holding a few packets while the certificate is fetched. Three bounds matter:
no principal holds more than ``per_name`` packets (``queue_full``); a principal whose
certificate has not come within ``max_age`` seconds of its first packet loses its slot
(``cert_wait_expired``: by then its packets are stale, and a later packet asks again); and
when ``max_names`` principals wait, a new one replaces the one that has been quiet longest
(``queue_evicted``). Without the last two, an attacker naming random principals would fill
the table once and lock every real principal out for good; with them, a flood can only make
real principals' first packets wait again, never stop them being asked for.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass

from skip.errors import KeyingError
from skip.wire.names import SkipName


@dataclass(slots=True)
class _Waiting:
    since: float  # when the principal's first packet was queued (its certificate was asked)
    packets: deque[Held]


#: (direction, packet, route): "inbound" or "outbound", and for an outbound packet held for a
#: named peer, the (local principal, peer) to protect it for once released
Held = tuple[str, bytes, tuple[str, str] | None]


class PendingPackets:
    def __init__(self, max_names: int, per_name: int, max_age: float) -> None:
        self.max_names = max_names
        self.per_name = per_name
        self.max_age = max_age
        # least recently queued-to first: the order LRU replacement evicts in
        self._queues: OrderedDict[SkipName, _Waiting] = OrderedDict()

    def add(self, name: SkipName, direction: str, packet: bytes, now: float, *,
            route: tuple[str, str] | None = None) -> tuple[bool, int]:
        """Hold ``packet`` for the principal ``name`` (call :meth:`expire` first).

        Returns (first, evicted): ``first`` is True if nobody was waiting for ``name`` (the
        caller then asks for its certificate); ``evicted`` counts the packets of the principal
        that made room for it (``queue_evicted``).
        """
        waiting = self._queues.get(name)
        if waiting is not None:
            self._queues.move_to_end(name)
            if len(waiting.packets) >= self.per_name:
                raise KeyingError("queue_full",
                                  f"{len(waiting.packets)} packets already wait for {name}")
            waiting.packets.append((direction, packet, route))
            return False, 0
        if self.max_names < 1 or self.per_name < 1:
            raise KeyingError("queue_full", "no packet may wait for a certificate")
        evicted = 0
        if len(self._queues) >= self.max_names:
            evicted = len(self._queues.popitem(last=False)[1].packets)
        self._queues[name] = _Waiting(now, deque([(direction, packet, route)]))
        return True, evicted

    def expire(self, now: float) -> Counter[str]:
        """Drop the principals that have waited longer than ``max_age``; counts by reason."""
        dropped: Counter[str] = Counter()
        stale = [n for n, w in self._queues.items() if now - w.since > self.max_age]
        for name in stale:
            dropped["cert_wait_expired"] += len(self._queues.pop(name).packets)
        return dropped

    def next_expiry(self) -> float | None:
        """When :meth:`expire` will next have something to drop (None: nothing waits)."""
        if not self._queues:
            return None
        # the first instant past the deadline (expire drops what waited *longer*)
        return math.nextafter(min(w.since for w in self._queues.values()) + self.max_age,
                              math.inf)

    def take(self, names: set[SkipName]) -> list[Held]:
        """Remove and return, oldest first per name, what waits for any of ``names``."""
        out: list[Held] = []
        for name in names:
            waiting = self._queues.pop(name, None)
            if waiting is not None:
                out.extend(waiting.packets)
        return out

    def resize(self, max_names: int, per_name: int, max_age: float) -> int:
        """New bounds (a new policy); returns how many packets the surplus principals held
        (evicted quietest first). Longer queues than ``per_name`` only stop growing."""
        self.max_names, self.per_name, self.max_age = max_names, per_name, max_age
        evicted = 0
        while len(self._queues) > max(max_names, 0):
            evicted += len(self._queues.popitem(last=False)[1].packets)
        return evicted

    def sizes(self) -> dict[str, int]:
        return {name.encode().hex(): len(w.packets) for name, w in self._queues.items()}
