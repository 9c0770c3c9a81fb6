"""PFS costs (docs/pfs.md): one ephemeral exchange, and steady state with PFS on against off.

* Exchange: a fresh pair of endpoints per sample (Kij cached beforehand, as for a peer that
  has already sent under the long-term key); timed are the initiator's request (one key
  pair), the responder's answer (a key pair and one DH) and the initiator's completion (one
  DH), each in the group the pair uses.
* Steady state: protect + unprotect of a 1400-byte UDP datagram under an established
  ephemeral key against the same pair with ``pfs = off``, in the same run: the ratio is what
  PFS costs per packet once keys are cached (it should be ~1: only the header differs).

Run with ``tools/bench pfs`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from skip.crypto.dh import GROUPS as DH_GROUPS
from skip.crypto.kdf import n_start
from skip.keying.endpoint import SkipEndpoint
from skip.keying.events import PfsSend
from skip.keying.identity import LocalIdentity, Peer
from skip.keying.policy import KeyingPolicy
from skip.wire.ip import build_ipv4

NOW = float(n_start(280_000) + 1800)
PAYLOAD = 1400
GROUPS = ("x25519", "x448", "modp-2048", "skip-1024")
ADDRESSES = {"a": "10.0.0.1", "b": "10.0.0.2"}


def _ids(group: str) -> dict[str, LocalIdentity]:
    dh = DH_GROUPS[group]
    return {n: LocalIdentity.create(n, {group: dh.generate_private()}, addresses=[a])
            for n, a in ADDRESSES.items()}


def _pair(ids: dict[str, LocalIdentity], group: str, pfs: str
          ) -> tuple[SkipEndpoint, SkipEndpoint]:
    policy = KeyingPolicy(allow_legacy=True)

    def peer(name: str) -> Peer:
        return Peer.create(name, group, ids[name].publics[group],
                           addresses=[ADDRESSES[name]], pfs=pfs)

    a = SkipEndpoint([ids["a"]], [peer("b")], policy=policy, started=NOW)
    b = SkipEndpoint([ids["b"]], [peer("a")], policy=policy, started=NOW)
    a.precompute("b")
    b.precompute("a")
    return a, b


def _datagram() -> bytes:
    body = b"\x04\xd2\x16\x2e" + (8 + PAYLOAD).to_bytes(2, "big") + b"\0\0" + bytes(PAYLOAD)
    return build_ipv4(ADDRESSES["a"], ADDRESSES["b"], 17, body)


def _send(endpoint: SkipEndpoint) -> PfsSend:
    return next(e for e in endpoint.events() if isinstance(e, PfsSend))


def exchange(group: str, samples: int) -> dict[str, float]:
    ids = _ids(group)
    packet = _datagram()
    start, answer, complete = [], [], []
    for _ in range(samples):
        a, b = _pair(ids, group, "required")
        t0 = time.perf_counter()
        a.protect(packet, NOW)
        request = _send(a)
        t1 = time.perf_counter()
        b.pfs_receive(request.payload, ADDRESSES["a"], NOW)
        reply = _send(b)
        t2 = time.perf_counter()
        a.pfs_receive(reply.payload, ADDRESSES["b"], NOW)
        t3 = time.perf_counter()
        start.append(t1 - t0)
        answer.append(t2 - t1)
        complete.append(t3 - t2)
    ms = 1e3
    return {"request_ms": statistics.median(start) * ms,
            "answer_ms": statistics.median(answer) * ms,
            "complete_ms": statistics.median(complete) * ms,
            "total_ms": (statistics.median(start) + statistics.median(answer) +
                         statistics.median(complete)) * ms}


def _rate(round_trip: Callable[[], object], count: int) -> float:
    round_trip()
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(count):
            round_trip()
        best = max(best, count / (time.perf_counter() - t0))
    return best


def steady(count: int) -> dict[str, float]:
    group = "x25519"
    ids = _ids(group)
    packet = _datagram()
    off_a, off_b = _pair(ids, group, "off")
    on_a, on_b = _pair(ids, group, "required")
    on_a.protect(packet, NOW)
    on_b.pfs_receive(_send(on_a).payload, ADDRESSES["a"], NOW)
    on_a.pfs_receive(_send(on_b).payload, ADDRESSES["b"], NOW)
    on_b.unprotect(on_a.protect(packet, NOW), NOW)
    off = _rate(lambda: off_b.unprotect(off_a.protect(packet, NOW), NOW), count)
    on = _rate(lambda: on_b.unprotect(on_a.protect(packet, NOW), NOW), count)
    return {"pfs_pps": on, "base_pps": off, "ratio": on / off}


def run(quick: bool) -> dict:
    return {"exchange": {g: exchange(g, 3 if quick else 20) for g in GROUPS},
            "steady_state": steady(300 if quick else 3000)}


def report(figures: dict) -> str:
    lines = ["one ephemeral exchange (median ms; Kij cached)",
             f"  {'group':<12} {'request':>8} {'answer':>8} {'complete':>9} {'total':>8}"]
    for g, f in figures["exchange"].items():
        lines.append(f"  {g:<12} {f['request_ms']:>8.3f} {f['answer_ms']:>8.3f} "
                     f"{f['complete_ms']:>9.3f} {f['total_ms']:>8.3f}")
    s = figures["steady_state"]
    lines.append(f"steady state x25519, protect + unprotect per second ({PAYLOAD}-byte UDP): "
                 f"PFS {s['pfs_pps']:.0f}, base {s['base_pps']:.0f}, ratio {s['ratio']:.2f}")
    return "\n".join(lines)
