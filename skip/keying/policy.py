"""Knobs of the keying engine, with the drafts' values as defaults where the drafts give one."""

from __future__ import annotations

from dataclasses import dataclass, field

from skip.crypto import skip_numbers as num
from skip.errors import ConfigError
from skip.keying.suite import LEGACY_DEFAULT, MODERN_DEFAULT, Suite

_MAX_KP_BYTES = 20 * (2**32 - 1)
MAX_REPLAY_WINDOW = 4096


def _all_implemented(version: int) -> frozenset[tuple[int, int]]:
    prof = num.PROFILES[version]
    return frozenset((cls, a) for cls in num.AlgClass for a in prof.supported(cls))


@dataclass(frozen=True)
class KeyingPolicy:
    """Everything configurable about one endpoint.

    Kp lifetime: draft-06 s. 2.2 says SHOULD re-key every 10 MB or 2 minutes and MUST at every
    change of n. ``kij_cache_size`` bounds the master-key cache; ``dh_per_second`` bounds the
    DH computations an unprecomputed peer may cause (draft-06 s. 1.6.3 clogging defence).
    ``pending_seconds`` is how long a principal's packets wait for its certificate: a fetch
    (CDP, DNS) that has not answered by then has failed or is slow, and the packets it held
    are stale for the transports that sent them (TCP retransmits after its 1 s RTO).
    ``accepted`` lists, per version, the (class, number) pairs policy accepts on receive; a
    packet using anything else is refused and answered with SKIP ICMP.
    ``rx_superseded_seconds``: how long a modern receive Kp stays usable once its sender has
    started a newer one (packets reordered across the change); then it is retired and its
    packets are refused (``kp_superseded``), so a fast flow never fills ``rx_keys_per_peer``.
    ``key_rotation_seconds``: when a peer's key pair changes (:meth:`SkipEndpoint.add_peer`
    with a new public value), how long new Kps under its previous key are still admitted,
    since the peer may switch after we learn its new certificate; 0 drops the old key at once
    (a rotation because the old key leaked).
    ``adp_per_second``: all SKIP ICMP answers together, whatever their sources (a spoofed
    flood cannot turn the node into a reflector).
    ``pfs_*``: the ephemeral keys of peers with ``Peer.pfs`` on (docs/pfs.md): each lives
    ``pfs_lifetime`` seconds (the smaller of both sides' offers), a new exchange starts after
    ``pfs_rekey_fraction`` of it; a request is sent ``pfs_tries`` times, ``pfs_retransmit``
    seconds apart and doubling; at most ``pfs_exchanges`` run at once.
    """

    allow_legacy: bool = False
    kp_max_bytes: int = 10_000_000
    kp_max_seconds: float = 120.0
    kij_cache_size: int = 4096
    dh_per_second: float = 100.0
    dh_burst: int = 20
    queue_per_peer: int = 4
    pending_peers: int = 64
    pending_seconds: float = 5.0
    rx_keys: int = 65536
    rx_keys_per_peer: int = 512
    replay_window: int = 64
    rx_superseded_seconds: float = 5.0
    key_rotation_seconds: float = 300.0
    adp_interval: float = 1.0
    adp_sources: int = 1024
    adp_per_second: float = 20.0
    mode: str = "transport"
    pfs_lifetime: float = 120.0
    pfs_rekey_fraction: float = 0.8
    pfs_retransmit: float = 1.0
    pfs_tries: int = 3
    pfs_exchanges: int = 1024
    legacy_default: Suite = LEGACY_DEFAULT
    modern_default: Suite = MODERN_DEFAULT
    accepted: dict[int, frozenset[tuple[int, int]]] = field(
        default_factory=lambda: {v: _all_implemented(v) for v in num.VERSIONS}
    )

    def __post_init__(self) -> None:
        if self.mode not in ("transport", "tunnel"):
            raise ConfigError("config_invalid", f"mode must be transport or tunnel: {self.mode}")
        if not 0 < self.kp_max_bytes <= _MAX_KP_BYTES:
            # even 20-byte datagrams could not then exhaust one Kp's 32-bit sequence space
            raise ConfigError("config_invalid", f"kp_max_bytes must be 1..{_MAX_KP_BYTES}")
        if self.kp_max_seconds <= 0 or self.replay_window < 1 or self.kij_cache_size < 1 or \
                self.pending_seconds <= 0:
            raise ConfigError("config_invalid", "lifetimes, window and cache must be positive")
        if self.replay_window > MAX_REPLAY_WINDOW:
            # one window per live Kp: its bitmap must stay small (docs/keying.md)
            raise ConfigError("config_invalid",
                              f"replay_window must be at most {MAX_REPLAY_WINDOW} packets")
        if self.key_rotation_seconds < 0:
            raise ConfigError("config_invalid", "key_rotation_seconds must not be negative")
        if not (10 <= self.pfs_lifetime <= 0xFFFFFFFF and 0.5 <= self.pfs_rekey_fraction < 1
                and self.pfs_retransmit > 0 and self.pfs_tries >= 1 and self.pfs_exchanges >= 1):
            raise ConfigError("config_invalid", "pfs_lifetime must be 10 s or more, "
                              "pfs_rekey_fraction in [0.5, 1), the retransmission knobs positive")
        if not (self.rx_superseded_seconds > 0 and self.adp_per_second > 0):
            raise ConfigError("config_invalid", "grace period and SKIP ICMP rate must be positive")

    def accepts(self, version: int, cls: num.AlgClass, number: int) -> bool:
        if version == num.LEGACY_VERSION and not self.allow_legacy:
            return False
        return (cls, number) in self.accepted.get(version, frozenset())

    def preference(self, version: int, cls: num.AlgClass) -> tuple[int, ...]:
        """Our supported numbers of one class, most preferred first, as policy allows them."""
        return tuple(a for a in num.PROFILES[version].supported(cls)
                     if self.accepts(version, cls, a))
