"""Per-SA traffic counters, keyed by the same reason codes as the errors."""

from __future__ import annotations


class Counters:
    """Packets and bytes through one SA, and rejections per reason code.

    Bytes are those of the cleartext datagrams: what went into ``protect`` and what came
    out of ``unprotect``.

    Plain attributes (no locking, no dict per packet): the engine bumps them in its hot path
    and skipd / skipctl read them.  ``rejected`` maps a reason code to a count and only holds
    codes that happened.  A ``tfc_dummy`` discard is counted there too: it is a drop by design,
    not an attack, which the reason code says.
    """

    __slots__ = ("bytes_in", "bytes_out", "packets_in", "packets_out", "rejected")

    def __init__(self) -> None:
        self.packets_out = 0
        self.bytes_out = 0
        self.packets_in = 0
        self.bytes_in = 0
        self.rejected: dict[str, int] = {}

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def as_dict(self) -> dict[str, object]:
        return {
            "packets_out": self.packets_out, "bytes_out": self.bytes_out,
            "packets_in": self.packets_in, "bytes_in": self.bytes_in,
            "rejected": dict(self.rejected),
        }
