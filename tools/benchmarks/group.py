"""Group rekeying cost (issue 12; docs/multicast.md): one eviction from a group of 10,000.

* LKH (what skip does): the owner replaces the evicted member's path and signs one rekey
  message; a remaining member parses it, checks the signature and unwraps its new keys.
  Goals: at most 2 * ceil(log2 n) wrapped keys, owner CPU under 10 ms, member under 1 ms.
* Naive (beside it, for the ratio): a new random Kg wrapped for every remaining member
  under a key it shares with the owner, n - 1 wraps, as a per-member unicast rekey costs
  the owner before any packet is sent.

Run with ``tools/bench group`` (``--quick``: 1,000 members).
"""

from __future__ import annotations

import math
import os
import statistics
import time

from cryptography.hazmat.primitives.keywrap import aes_key_wrap

from skip.keying.suite import Suite
from skip.multicast.member import GroupMember, Joined
from skip.multicast.owner import GroupOwner
from skip.multicast.traffic import GroupParams

NOW = 1_800_000_000.0
GROUP = bytes([239, 1, 1, 1])


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def run(quick: bool) -> dict:
    n = 1_000 if quick else 10_000
    rounds = 3 if quick else 7
    params = GroupParams(GROUP, Suite(2, 10, 11, 11))
    built = time.process_time()
    owner = GroupOwner(params, [f"m{i}" for i in range(n)], NOW, os.urandom)
    setup = time.process_time() - built
    watcher = GroupMember(params, "owner", os.urandom)
    owner.members.add("watcher")
    owner.tree.add("watcher")
    response = owner.handle_request(watcher.request(NOW), "watcher", NOW)
    assert isinstance(watcher.receive(response, "owner", NOW), Joined)
    owner_s, member_s, wraps = [], [], []
    for i in range(rounds):
        start = time.process_time()
        rekey = owner.evict(f"m{i * 97}", NOW + i)
        owner_s.append(time.process_time() - start)
        wraps.append(rekey.wraps)
        start = time.process_time()
        assert isinstance(watcher.receive(rekey.payload, None, NOW + i), Joined)
        member_s.append(time.process_time() - start)
    keys = [os.urandom(32) for _ in range(n)]
    naive = []
    for _ in range(rounds):
        start = time.process_time()
        kg = os.urandom(32)
        for key in keys:
            aes_key_wrap(key, kg)
        naive.append(time.process_time() - start)
    bound = 2 * math.ceil(math.log2(n))
    return {"members": n, "setup_ms": setup * 1e3, "wraps": max(wraps), "wrap_bound": bound,
            "owner_ms": _median_ms(owner_s), "member_ms": _median_ms(member_s),
            "naive_owner_ms": _median_ms(naive), "naive_wraps": n,
            "ratio_naive_over_lkh": statistics.median(naive) / statistics.median(owner_s)}


def report(f: dict) -> str:
    def mark(ok: bool) -> str:
        return "met" if ok else "MISSED"

    return "\n".join([
        f"one eviction from a group of {f['members']:,} (median CPU; tree built in "
        f"{f['setup_ms']:.0f} ms)",
        f"  LKH rekey message: {f['wraps']} wrapped keys (goal <= {f['wrap_bound']}: "
        f"{mark(f['wraps'] <= f['wrap_bound'])})",
        f"  owner  {f['owner_ms']:8.3f} ms (goal < 10 ms: {mark(f['owner_ms'] < 10)})",
        f"  member {f['member_ms']:8.3f} ms (goal < 1 ms: {mark(f['member_ms'] < 1)})",
        f"  naive per-member rekey: {f['naive_wraps']:,} wraps, owner {f['naive_owner_ms']:.1f}"
        f" ms; ratio naive / LKH {f['ratio_naive_over_lkh']:.0f}x",
    ])
