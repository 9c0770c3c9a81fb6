"""What the keying engine tells its driver, and the per-reason counters it keeps.

The engine is sans-I/O: anything it wants done outside (send a packet it generated, fetch a
certificate, deliver packets that were waiting) becomes an event in a queue the driver drains
with :meth:`SkipEndpoint.events`. Events and counters name failures with the reason codes of
:mod:`skip.errors`, so logs, metrics and ``skipctl`` speak one vocabulary.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from skip.errors import REASONS
from skip.wire.names import SkipName


@dataclass(frozen=True, slots=True)
class CertificateNeeded:
    """No public value is known for a principal: fetch it (CDP, DNS, ...) and call add_peer.

    ``name`` is the name to ask for (CDP: ``name.encode()``): the header's NSID and MKID, or
    NSID 1/3 and the address for a principal named by address (``nsid`` 0).
    """

    nsid: int
    mkid: bytes
    address: bytes
    name: SkipName
    direction: str  # "outbound" (we want to send) or "inbound" (a packet arrived)


@dataclass(frozen=True, slots=True)
class Transmit:
    """A protected packet the engine generated or released: put it on the wire."""

    packet: bytes
    why: str  # "released" (was queued), "adp" (a SKIP ICMP answer)


@dataclass(slots=True)
class Received:
    """A packet that passed every SKIP and ESP/AH check (returned by unprotect, or released).

    Not frozen: one is made per received packet, and frozen dataclasses pay for
    ``object.__setattr__`` on every field.
    """

    packet: bytes
    peer: str
    identity: str
    version: int
    algorithms: tuple[int, int, int, int]  # Kij, Crypt, MAC, Comp of its SKIP header
    n: int


@dataclass(frozen=True, slots=True)
class AlgorithmsChanged:
    """ADP advice from a peer made us switch algorithms towards it."""

    peer: str
    old: tuple[int, int, int, int]
    new: tuple[int, int, int, int]
    code: int


@dataclass(frozen=True, slots=True)
class Dropped:
    """A packet was discarded; ``reason`` is a code from skip.errors.REASONS."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class PfsSend:
    """A CDP datagram of the ephemeral exchange (PFS): send it to ``address`` (UDP 1640 of
    the peer for a request; for a reply, ``reply_to``: what the driver gave ``pfs_receive``
    with the request, e.g. the socket address it came from). ``peer`` is empty for a
    retransmitted reply."""

    peer: str
    address: bytes
    payload: bytes
    reply_to: object = None


@dataclass(frozen=True, slots=True)
class PfsEstablished:
    """An ephemeral key with ``peer`` is ready (packets held for it went out as Transmit)."""

    peer: str
    identity: str
    version: int
    expires: float


@dataclass(frozen=True, slots=True)
class TrafficKeys:
    """DANGEROUS: one traffic key in the clear, for a key log (SSLKEYLOGFILE's role).

    Handed to the callback of :meth:`SkipEndpoint.log_traffic_keys_insecurely` once per Kp,
    when it is made (``direction`` "out") or admitted ("in"). With it, a capture of the Kp's
    packets decrypts without any long-term or ephemeral key (docs/decrypt.md): whoever reads
    the log reads the traffic. ``header`` is the SKIP header exactly as on the wire (it
    names the Kp: its EKp, n, names and algorithms)."""

    direction: str
    identity: str
    peer: str
    version: int
    header: bytes
    kp: bytes
    e_kp: bytes
    a_kp: bytes


@dataclass(frozen=True, slots=True)
class PeerExpired:
    """A peer's certificate expired while running: the endpoint forgot the peer and its keys
    (its next packet asks for a certificate again, with :class:`CertificateNeeded`)."""

    peer: str
    not_after: float


Event = (CertificateNeeded | Transmit | Received | AlgorithmsChanged | Dropped | PeerExpired |
         PfsSend | PfsEstablished)


class Counters(Counter):
    """Counts by reason code (drops) and by a few success names (``rx_ok``, ``tx_ok``, ...)."""

    SUCCESS = frozenset({
        "rx_ok", "tx_ok", "kp_new", "kp_decrypted", "kij_computed", "adp_sent", "adp_received",
        "queued", "released", "peer_moved", "kp_notice_sent", "kp_notice_received",
        "rx_previous_key", "peer_expired", "pfs_sent", "pfs_held", "pfs_established",
        "pfs_erased",
    })

    def hit(self, name: str, amount: int = 1) -> None:
        if name not in REASONS and name not in self.SUCCESS:
            raise ValueError(f"counter {name!r} is neither a reason code nor a success name")
        self[name] += amount
