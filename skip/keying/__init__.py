"""keying layer: the SKIP engine (see docs/keying.md and docs/architecture.md)."""

from skip.keying.endpoint import SkipEndpoint
from skip.keying.events import (
    AlgorithmsChanged,
    CertificateNeeded,
    Counters,
    Dropped,
    Received,
    Transmit,
)
from skip.keying.identity import LocalIdentity, Peer
from skip.keying.policy import KeyingPolicy
from skip.keying.status import PeerStatus
from skip.keying.suite import Suite

__all__ = [
    "AlgorithmsChanged",
    "CertificateNeeded",
    "Counters",
    "Dropped",
    "KeyingPolicy",
    "LocalIdentity",
    "Peer",
    "PeerStatus",
    "Received",
    "SkipEndpoint",
    "Suite",
    "Transmit",
]
