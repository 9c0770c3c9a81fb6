"""Packets waiting for a principal's certificate: a small, bounded holding area.

Draft-06 only says a receiver "may have to obtain" an unknown sender's public value; skip-core
s. 8.2 recommends holding a few packets while the certificate is fetched. Both bounds matter:
an attacker naming many unknown principals fills ``max_names`` and is refused (``queue_full``)
without growing memory, and no principal holds more than ``per_name`` packets.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from skip.errors import KeyingError


class PendingPackets:
    def __init__(self, max_names: int, per_name: int) -> None:
        self.max_names = max_names
        self.per_name = per_name
        self._queues: OrderedDict[bytes, deque[tuple[str, bytes]]] = OrderedDict()

    def add(self, name: bytes, direction: str, packet: bytes) -> bool:
        """Hold ``packet`` for the principal ``name``; True if nobody was waiting for it yet
        (the caller then asks for its certificate)."""
        queue = self._queues.get(name)
        first = queue is None
        if first:
            if len(self._queues) >= self.max_names:
                raise KeyingError("queue_full", "too many principals await certificates")
            queue = self._queues[name] = deque()
        if len(queue) >= self.per_name:
            raise KeyingError("queue_full", f"{len(queue)} packets already wait for {name.hex()}")
        queue.append((direction, packet))
        return first

    def take(self, names: set[bytes]) -> list[tuple[str, bytes]]:
        """Remove and return, oldest first per name, what waits for any of ``names``."""
        out: list[tuple[str, bytes]] = []
        for name in names:
            out.extend(self._queues.pop(name, ()))
        return out

    def sizes(self) -> dict[str, int]:
        return {name.hex(): len(q) for name, q in self._queues.items()}
