"""Two SKIP endpoints over an in-memory link, with keys made once per test session.

DH private values are fixed bytes (not secret, not random) so failures reproduce; public values
are computed once at import time because MODP exponentiation is the slow part of these tests.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache

from skip.crypto.dh import GROUPS
from skip.crypto.kdf import n_start
from skip.keying.endpoint import SkipEndpoint
from skip.keying.identity import LocalIdentity, Peer
from skip.keying.policy import KeyingPolicy
from skip.keying.suite import Suite
from skip.wire.ip import build_ipv4, build_ipv6

#: The start of SKIP hour n = 280000 (in 2026), plus 30 minutes: far from both hour edges.
NOW = float(n_start(280_000) + 1800)
#: When the harness's endpoints started: two hours before NOW, so clock-skew tests stay valid.
STARTED = NOW - 7200
ADDR = {"a": ("10.0.0.1", "2001:db8::1"), "b": ("10.0.0.2", "2001:db8::2"),
        "c": ("10.0.0.3", "2001:db8::3")}


def private(name: str, group: str) -> bytes:
    """A valid private value for ``group``, derived from a label (deterministic)."""
    dh = GROUPS[group]
    raw = hashlib.shake_256(f"{name}/{group}".encode()).digest(dh.private_size)
    if dh.kind == "ecx":
        return raw
    value = int.from_bytes(raw) >> 1 | 1 << (8 * dh.private_size - 1)
    if dh.q is not None:
        value = value % (dh.q - 2) + 2
    return value.to_bytes(dh.private_size)


@cache
def identity(name: str, groups: tuple[str, ...], nsid: int = 0, mkid: bytes = b"") -> LocalIdentity:
    return LocalIdentity.create(name, {g: private(name, g) for g in groups}, nsid=nsid,
                                mkid=mkid, addresses=ADDR[name])


def peer_of(ident: LocalIdentity, group: str, suite: Suite | None = None, *,
            pre06: bool = False) -> Peer:
    return Peer.create(ident.name, group, ident.publics[group], nsid=ident.nsid, mkid=ident.mkid,
                       addresses=[a for a in ADDR[ident.name]], suite=suite, pre06=pre06)


@dataclass
class Link:
    a: SkipEndpoint
    b: SkipEndpoint

    def send(self, packet: bytes, now: float = NOW, *, a_to_b: bool = True):
        src, dst = (self.a, self.b) if a_to_b else (self.b, self.a)
        wire = src.protect(packet, now)
        assert wire is not None
        return wire, dst.unprotect(wire, now)


def pair(group: str, suite: Suite | None = None, *, policy_a: KeyingPolicy | None = None,
         policy_b: KeyingPolicy | None = None, mkids: bool = False, pre06=(False, False),
         rng=None, started: float = STARTED) -> Link:
    """Endpoints a and b, each knowing the other's public value in ``group``; both started
    at ``started`` (long before NOW by default: Kps made before it are refused)."""
    ida = identity("a", (group,), *((8, b"A" * 16) if mkids else ()))
    idb = identity("b", (group,), *((8, b"B" * 16) if mkids else ()))
    kw = {"rng": rng} if rng else {}
    kw["started"] = started
    policy = KeyingPolicy(allow_legacy=True)
    a = SkipEndpoint([ida], [peer_of(idb, group, suite, pre06=pre06[0])],
                     policy=policy_a or policy, **kw)
    b = SkipEndpoint([idb], [peer_of(ida, group, suite, pre06=pre06[1])],
                     policy=policy_b or policy, **kw)
    return Link(a, b)


def udp(src: str = "a", dst: str = "b", payload: bytes = b"hello, skip", *, v6: bool = False,
        ) -> bytes:
    """A UDP datagram between two of the harness hosts (checksum 0 is fine for the engine)."""
    body = (1234).to_bytes(2, "big") + (5678).to_bytes(2, "big") + \
        (8 + len(payload)).to_bytes(2, "big") + b"\0\0" + payload
    index = 1 if v6 else 0
    build = build_ipv6 if v6 else build_ipv4
    return build(ADDR[src][index], ADDR[dst][index], 17, body)
