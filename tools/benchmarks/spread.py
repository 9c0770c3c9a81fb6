"""Steady per-packet cost of the keying engine as the number of active peers grows.

The same number of 1400-byte UDP datagrams goes through a :class:`SkipEndpoint` (the "hub",
one local principal, X25519, modern AES-GCM default suite) either all to or from one peer, or
round-robin over N peers (N = 1,000, 10,000, 100,000; 1,000 and 10,000 with ``--quick``), every
pair already holding a current Kp, so only the steady path is timed:

* send: the per-pair ``steady_sender(identity, peer)`` closure that skipd's fast path keeps
  (skip/daemon/fastpath.py), and ``protect(datagram, now, identity=, peer=)``;
* receive: ``unprotect`` of packets the N peers made toward the hub. The peers are the N
  local principals of a second endpoint that makes all of a run's packets before the clock
  starts (every packet is new: the replay windows move as in real traffic).

The hub is a fresh endpoint per N whose peers are the first N of one set of key pairs, and
every master key is a real X25519 computation (precomputed, so pinned; the Kij cache and the
receive-Kp bound are raised to fit N, since their defaults of 4096 and 65536 are below the top
N); building the two endpoints of a size and warming every pair (first packet each way) is
set-up, reported but not timed. The send loop hands every pair the same, cache-warm datagram
(a driver's freshly read one is warm too): what grows with N is the engine's per-peer state
alone. "one" is a hub with one peer; "one of N" sends everything to the first peer of the
N-peer hub (the tables' size without the spread). Each figure is the best of ``REPEATS``.

ratio = spread / one (goal: flat, 1.0). Memory per peer: the hub's resident-size growth from
adding its peers through the warm-up, divided by N, and for the smallest N (tracing doubles
the set-up) its traced Python allocations (tracemalloc), which miss OpenSSL's cipher contexts.
Run with ``tools/bench spread`` (``--quick``: under a minute; ``--json FILE`` for figures).
"""

from __future__ import annotations

import gc
import hashlib
import os
import time
import tracemalloc
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path

from skip.crypto.kdf import n_start
from skip.keying.endpoint import SkipEndpoint
from skip.keying.identity import LocalIdentity, Peer
from skip.keying.policy import KeyingPolicy
from skip.wire.ip import build_ipv4

NOW = float(n_start(280_000) + 1800)
STARTED = NOW - 7200
PAYLOAD = 1400
HUB_ADDR = "10.0.0.1"
FIRST_PEER = 0x0B000000  # 11.0.0.0: peer i is at 11.0.0.0 + i
REPEATS = 5
HUB = "hub"
#: largest byte allowance per Kp (KeyingPolicy's limit): the one-peer runs must not re-key
MAX_KP_BYTES = 20 * (2**32 - 1)


def _private(label: str) -> bytes:
    return hashlib.shake_256(f"spread/{label}".encode()).digest(32)


def _udp(src: bytes | str, dst: bytes | str) -> bytes:
    body = b"\x04\xd2\x16\x2e" + (8 + PAYLOAD).to_bytes(2, "big") + b"\0\0" + bytes(PAYLOAD)
    return build_ipv4(IPv4Address(src), IPv4Address(dst), 17, body)


def _policy(peers: int) -> KeyingPolicy:
    return KeyingPolicy(kij_cache_size=peers + 16, rx_keys=max(65536, 2 * peers),
                        kp_max_bytes=MAX_KP_BYTES)


def _rss() -> int:
    """Resident set size in bytes (Linux), 0 where /proc is missing."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


class Site:
    """The hub with ``n`` peers and the endpoint whose principals those peers are."""

    def __init__(self, ids: list[LocalIdentity], hub: LocalIdentity, trace: bool) -> None:
        n = len(ids)
        t0 = time.perf_counter()
        self.n = n
        self.names = [i.name for i in ids]
        policy = _policy(n)
        # The far side first (not part of the hub's memory): n principals, one peer.
        self.far = far = SkipEndpoint(ids, [Peer.create(HUB, "x25519", hub.publics["x25519"],
                                                        addresses=hub.addresses)],
                                      policy=policy, started=STARTED)
        far.precompute(HUB)
        heads = [_udp(next(iter(i.addresses)), HUB_ADDR)[:20] for i in ids]
        body = _udp(HUB_ADDR, HUB_ADDR)[20:]
        self.body = body
        self.heads = heads
        first = [far.protect(h + body, NOW, identity=name, peer=HUB)
                 for h, name in zip(heads, self.names, strict=True)]
        self.far_senders = [far.steady_sender(name, HUB) for name in self.names]
        gc.collect()
        rss0 = _rss()
        if trace:
            tracemalloc.start()
        hub_ep = SkipEndpoint([hub], policy=policy, started=STARTED)
        for i in ids:
            hub_ep.add_peer(Peer.create(i.name, "x25519", i.publics["x25519"],
                                        addresses=i.addresses))
        for name in self.names:
            hub_ep.precompute(name)
        for i, name in zip(ids, self.names, strict=True):
            hub_ep.protect(_udp(HUB_ADDR, next(iter(i.addresses))), NOW, identity=HUB,
                           peer=name)
        for wire in first:
            hub_ep.unprotect(wire, NOW)
        self.traced = tracemalloc.get_traced_memory()[0] if trace else 0
        if trace:
            tracemalloc.stop()
        gc.collect()
        self.rss = _rss() - rss0
        self.hub = hub_ep
        self.senders = [hub_ep.steady_sender(HUB, name) for name in self.names]
        self.datagram = _udp(HUB_ADDR, next(iter(ids[0].addresses)))
        self.setup_seconds = time.perf_counter() - t0
        c = hub_ep.counters
        if c["kp_new"] != n or c["kp_decrypted"] != n:
            raise RuntimeError(f"warm-up made {c['kp_new']} send and {c['kp_decrypted']} "
                               f"receive Kps for {n} peers")

    def _check(self, before: dict[str, int], packets: int, what: str) -> None:
        """Every timed packet took the steady path: no new Kp, nothing refused."""
        c = self.hub.counters
        for name, want in (("kp_new", 0), ("kp_decrypted", 0), (what, packets)):
            if c[name] - before.get(name, 0) != want:
                raise RuntimeError(f"{name} moved by {c[name] - before.get(name, 0)}, "
                                   f"not {want}: the timed loop left the steady path")

    def _counts(self) -> dict[str, int]:
        return dict(self.hub.counters)

    def send_closure(self, order: list[int]) -> float:
        """Seconds for one pass of steady_sender over ``order`` (peer indices)."""
        senders = [self.senders[i] for i in order]
        datagram, now = self.datagram, NOW
        before = self._counts()
        gc.disable()
        t0 = time.perf_counter()
        for send in senders:
            send(datagram, now)
        elapsed = time.perf_counter() - t0
        gc.enable()
        self._check(before, len(order), "tx_ok")
        return elapsed

    def send_protect(self, order: list[int]) -> float:
        """Seconds for one pass of protect(identity=, peer=) over ``order``."""
        names = [self.names[i] for i in order]
        protect, datagram, now = self.hub.protect, self.datagram, NOW
        before = self._counts()
        gc.disable()
        t0 = time.perf_counter()
        for name in names:
            protect(datagram, now, identity=HUB, peer=name)
        elapsed = time.perf_counter() - t0
        gc.enable()
        self._check(before, len(order), "tx_ok")
        return elapsed

    def receive(self, order: list[int]) -> float:
        """Seconds for unprotect of packets from ``order``'s peers, all made (by the far side)
        before the clock starts, so its work does not evict the hub's state mid-run."""
        far, heads, body, now = self.far_senders, self.heads, self.body, NOW
        wires = [far[i](heads[i] + body, now) for i in order]
        unprotect = self.hub.unprotect
        before = self._counts()
        gc.collect()
        gc.disable()
        t0 = time.perf_counter()
        for wire in wires:
            unprotect(wire, now)
        elapsed = time.perf_counter() - t0
        gc.enable()
        self._check(before, len(order), "rx_ok")
        return elapsed


DIRECTIONS: dict[str, Callable[[Site, list[int]], float]] = {
    "send: steady_sender": Site.send_closure,
    "send: protect(identity, peer)": Site.send_protect,
    "receive: unprotect": Site.receive,
}


def _measure(single: Site, site: Site, packets: int) -> dict[str, dict[str, float]]:
    """Microseconds per packet by direction: the one-peer hub, the first peer of ``site``
    alone, and ``site``'s peers round-robin, interleaved repeat by repeat (a noisy machine
    disturbs all three alike); the best of REPEATS of each."""
    cases = {"one": (single, [0] * packets), "one_of_n": (site, [0] * packets),
             "spread": (site, [i % site.n for i in range(packets)])}
    out: dict[str, dict[str, float]] = {}
    for direction, fn in DIRECTIONS.items():
        best = dict.fromkeys(cases, float("inf"))
        for _ in range(REPEATS):
            for case, (where, order) in cases.items():
                best[case] = min(best[case], fn(where, order))
        row = {case: seconds / packets * 1e6 for case, seconds in best.items()}
        row["ratio"] = row["spread"] / row["one"]
        out[direction] = row
    return out


def run(quick: bool) -> dict:
    sizes = (1000, 10_000) if quick else (1000, 10_000, 100_000)
    packets = 30_000 if quick else 100_000
    t0 = time.perf_counter()
    ids = [LocalIdentity.create(f"p{i}", {"x25519": _private(f"p{i}")},
                                addresses=[IPv4Address(FIRST_PEER + i).packed])
           for i in range(max(sizes))]
    hub = LocalIdentity.create(HUB, {"x25519": _private(HUB)}, addresses=[HUB_ADDR])
    figures: dict = {"payload_bytes": PAYLOAD, "packets": packets, "repeats": REPEATS,
                     "key_pairs_seconds": time.perf_counter() - t0, "peers": {}}
    single = Site(ids[:1], hub, trace=False)
    figures["one_peer_setup_seconds"] = single.setup_seconds
    for n in sizes:
        site = Site(ids[:n], hub, trace=n == sizes[0])  # tracing doubles set-up time
        figures["peers"][str(n)] = {
            "setup_seconds": site.setup_seconds,
            "us_per_packet": _measure(single, site, packets),
            "traced_bytes_per_peer": site.traced / n if n == sizes[0] else None,
            "rss_bytes_per_peer": site.rss / n,
        }
        del site
        gc.collect()
    return figures


def report(figures: dict) -> str:
    lines = [f"steady state, us per {figures['payload_bytes']}-byte datagram "
             f"({figures['packets']:,} packets, best of {figures['repeats']}); "
             "ratio = spread / one (goal 1.0)",
             f"  {'':<31} {'peers':>7} {'one':>6} {'1st of N':>8} {'spread':>7} {'ratio':>6}"]
    for direction in DIRECTIONS:
        for n, f in figures["peers"].items():
            r = f["us_per_packet"][direction]
            lines.append(f"  {direction:<31} {int(n):>7,} {r['one']:>6.2f} {r['one_of_n']:>8.2f} "
                         f"{r['spread']:>7.2f} {r['ratio']:>6.2f}")
    lines.append("  one: a hub with one peer; 1st of N: every packet to/from the first of N "
                 "peers; spread: round-robin over the N")
    lines.append("memory per peer (the hub, after warm-up): traced Python / resident growth")
    for n, f in figures["peers"].items():
        traced = f["traced_bytes_per_peer"]
        traced_text = f"{traced:>7,.0f} B" if traced is not None else f"{'-':>9}"
        lines.append(f"  N={int(n):>7,}: {traced_text} / {f['rss_bytes_per_peer']:>7,.0f} B; "
                     f"set-up {f['setup_seconds']:.1f} s (not timed)")
    lines.append(f"set-up, not timed: key pairs {figures['key_pairs_seconds']:.1f} s, one-peer "
                 f"hub {figures['one_peer_setup_seconds']:.2f} s")
    return "\n".join(lines)
