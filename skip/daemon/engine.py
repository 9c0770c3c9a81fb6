"""The narrow interface between skipd's data plane and the SKIP keying engine.

skipd needs five things from keying: protect a cleartext datagram for a peer, unprotect a
protocol-57 datagram, report events (a certificate is needed), expose counters and per-peer
state, and forget cached keys. Keeping that surface in one Protocol keeps the I/O side (TUN,
sockets, routing, control) independent of how the engine is built, and lets the adapter in
:mod:`skip.daemon.keying_adapter` be the only module that knows the keying API.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from skip.daemon.config import Config, IPAddress, PeerPolicy, SkipName
from skip.keying.events import TrafficKeys


@dataclass(slots=True)
class Inbound:
    """A datagram the engine authenticated and decrypted (one per received packet: not
    frozen, as a frozen dataclass pays ``object.__setattr__`` per field, 0.65 against
    0.25 us)."""

    packet: bytes  # the inner (cleartext) IP datagram to hand to the kernel
    peer: str  # the authenticated sender: the name of its [[peer]] rule (or of its
    #            certificate, for peers admitted by a protecting default rule)
    version: int = 2  # SKIP header version: 1 legacy profile, 2 modern


@dataclass(frozen=True, slots=True)
class CertificateNeeded:
    """The engine met a peer it has no public value for (the packet is queued or dropped)."""

    name: SkipName
    address: IPAddress | None


@dataclass(frozen=True, slots=True)
class Transmit:
    """A protected datagram the engine produced on its own (a released packet, an ADP answer)."""

    packet: bytes
    why: str


@dataclass(frozen=True, slots=True)
class PfsDatagram:
    """A datagram of the ephemeral exchange (PFS) to send: to UDP 1640 of ``address`` (a
    request), or from the CDP port to ``reply_to`` (a reply: the request's source)."""

    payload: bytes
    address: IPAddress | None
    reply_to: object


class KeyingEngine(Protocol):
    #: DANGEROUS: where traffic keys are logged (``[daemon] key_log``), or None; multicast
    #: groups log theirs to the same file
    key_log: Callable[[TrafficKeys], None] | None

    def protect(self, packet: bytes, now: float, rule: PeerPolicy) -> bytes | None:
        """The protected outer datagram for ``rule``'s peer (addressed to its tunnel, its
        host, or where a nomadic peer last wrote from), or None when the packet waits for a
        certificate. Raises SkipError with a reason code when it must be dropped."""

    def precompute(self, count: int) -> int:
        """Compute the master key (Kij) of up to ``count`` more configured peers ahead of
        their first packet; returns how many are still to do (0: done). Made for small
        slices on the event loop: a DH computation costs 0.1 to a few ms."""

    def steady_sender(self, rule: PeerPolicy) -> Callable[[bytes, float], bytes | None] | None:
        """What protects the next datagrams for ``rule``'s peer while its current Kp lives
        (skipd's steady state, skip/daemon/fastpath.py): the protected datagram, or None
        when no Kp is current (:meth:`protect` then makes one). It never makes keys, events
        or log lines; it raises SkipError like :meth:`protect`, without counting (the
        caller hands the datagram to :meth:`protect`, which counts). None: no such sender
        for the rule (it has no peer yet)."""

    def steady_lane(self, rule: PeerPolicy) -> object | None:
        """:meth:`steady_sender` for skipd's compiled send loop (``skip._native.pump_out``):
        an opaque value the loop understands, or None (no peer yet, or an engine the loop
        does not know: every packet then takes the steady sender or :meth:`protect`)."""

    def receive_lane(self) -> object | None:
        """:meth:`unprotect`'s steady state for skipd's compiled receive loop
        (``skip._native.pump_in``): opaque, or None (every datagram takes :meth:`unprotect`)."""

    def unprotect(self, datagram: bytes, now: float) -> Inbound | None:
        """None when the engine kept the packet (queued for a certificate, or consumed as
        algorithm-discovery advice). Raises SkipError (ParseError, IntegrityError,
        KeyingError...) to drop."""

    def is_newest(self, datagram: bytes) -> bool:
        """Whether a datagram :meth:`unprotect` just accepted is the newest its sender has
        sent (never a replay or a late packet): only such a packet may move a peer's
        SKIP-in-UDP endpoint. False where the profile cannot tell (legacy)."""

    def rx_generation(self) -> int:
        """Moves whenever the set of receive Kps does (cheap: asked after every batch)."""

    def live_keys(self, limit: int) -> list[tuple[bytes, int | None, int]] | None:
        """Every receive Kp held: (EKp, its sequence number's offset from the SKIP header,
        or None in the legacy profile, the highest accepted): the kernel filter's first
        lane (skip/daemon/kernel_filter.py). None when more than ``limit``."""

    def events(self) -> Sequence[object]:
        """Events since the last call: CertificateNeeded, Transmit, PfsDatagram, and Inbound
        for packets released from the certificate queue."""

    def pfs_receive(self, payload: bytes, source: tuple[str, int], now: float) -> None:
        """A CDP datagram of the ephemeral exchange from ``source`` (address, port); the
        answer and the released packets come out of :meth:`events`. Raises SkipError."""

    def counters(self) -> Mapping[str, int]:
        """Engine counters by reason code (drops) and by activity."""

    def peers(self, now: float) -> list[dict[str, Any]]:
        """Per-peer state without secrets: name, algorithms, Kp age, n skew..."""

    def flush(self, now: float) -> int:
        """Drop cached master keys and send keys, never replay state; returns how many keys
        went."""

    def reconfigure(self, config: Config, now: float) -> None:
        """Adopt a new configuration (identity, peers, certificates, CRLs) or raise SkipError
        and keep the old one: the daemon relies on this being all or nothing."""

    def prepare(self, config: Config, now: float) -> object:
        """The slow, failing half of :meth:`reconfigure` (read and validate; raise SkipError
        to refuse), safe on another thread: it changes nothing packets use."""

    def commit(self, plan: object, now: float) -> None:
        """The other half: apply what :meth:`prepare` returned (on the event loop)."""

    def get_timer(self) -> float:
        """When :meth:`handle_timer` must next run (clock of ``time.time()``)."""

    def handle_timer(self, now: float) -> None:
        """What is due without a packet: expiries, timeouts (then drain :meth:`events`)."""

    def rule_for(self, name: SkipName) -> PeerPolicy | None:
        """The protecting rule whose certificate must answer to ``name`` (discovery)."""

    def learn(self, rule: PeerPolicy, name: SkipName, certificates: Sequence[tuple[int, bytes]],
              source: str, now: float, *, refresh: bool = False,
              anchored: bool = True) -> str:
        """Use the first of ``certificates`` discovery returned for ``rule`` that answers to
        ``name`` and validates; "ok" or the reason none was used. ``refresh``: a re-fetch
        that may replace what discovery brought before."""

    def unlearn(self, rule: PeerPolicy) -> None:
        """Drop what discovery brought for ``rule`` (its source withdrew it)."""

    def own_certificates(self, name: SkipName) -> tuple[tuple[int, bytes], ...]:
        """What a CDP responder hands out for ``name`` (our own certificate)."""

    def learned_status(self) -> dict[str, Any]:
        """The certificates discovery brought, per rule (``learned``), and how full their
        cache is (``cache``: entries, capacity, evicted) for skipctl discovery."""

    def overhead(self, rule: PeerPolicy) -> int:
        """Worst-case bytes protection adds to a datagram for this rule (MTU sizing)."""
