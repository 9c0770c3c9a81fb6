"""SKIP keying costs: first packet to a new peer, steady state against the bare engine, precompute.

* First packet: a fresh pair of endpoints per sample, so the sender pays DH + Kijn + a new Kp +
  SA set-up and the receiver DH + Kp decryption + SA set-up (public values are computed before
  the clock starts: they come from certificates in real life).
* Steady state: protect + unprotect of a 1400-byte UDP datagram through the whole SKIP path
  (IP parse, principal and peer look-up, cached Kp, SKIP header as the engine's shim) against
  the same algorithms through bare engine SAs (no SKIP header, SPI 1), in the same run.
* Precompute: Kij for N peers of one local principal (X25519), time and traced memory.

Run with ``tools/bench keying`` (``--quick`` for a smoke run, ``--json FILE`` for figures).
"""

from __future__ import annotations

import gc
import hashlib
import statistics
import time
import tracemalloc
from collections.abc import Callable

from skip.crypto import skip_numbers as num
from skip.crypto.dh import GROUPS
from skip.crypto.kdf import low, n_start
from skip.ipsec.sa import SecurityAssociation
from skip.keying.endpoint import SkipEndpoint
from skip.keying.identity import LocalIdentity, Peer
from skip.keying.policy import KeyingPolicy
from skip.keying.suite import Suite
from skip.wire.ip import build_ipv4

NOW = float(n_start(280_000) + 1800)
PAYLOAD = 1400
FIRST_GROUPS = ("x25519", "x448", "modp-2048", "skip-1024")
STEADY = {
    "modern aes-256-gcm": ("x25519", Suite(2, 10, num.AES256_GCM, num.AES256_GCM)),
    "modern chacha20-poly1305": ("x25519", Suite(2, 10, num.CHACHA20_POLY1305,
                                                 num.CHACHA20_POLY1305)),
    "modern aes-128-cbc+hmac-sha256": ("x25519", Suite(2, 10, num.AES128_CBC,
                                                       num.HMAC_SHA256_128)),
    "legacy des-cbc (esp)": ("skip-1024", Suite(1, 2, 1, 0)),
    "legacy 3des + keyed-md5 (ah+esp)": ("skip-1024", Suite(1, 2, 2, 1)),
}


def _private(label: str, group: str) -> bytes:
    dh = GROUPS[group]
    raw = hashlib.shake_256(label.encode()).digest(dh.private_size)
    if dh.kind == "ecx":
        return raw
    value = (int.from_bytes(raw) | 1 << (8 * dh.private_size - 1)) % (dh.q or dh.p - 2)
    return max(value, 2).to_bytes(dh.private_size)


def _pair(group: str, suite: Suite | None = None) -> tuple[SkipEndpoint, SkipEndpoint]:
    ids = [LocalIdentity.create(n, {group: _private(n, group)}, addresses=[addr])
           for n, addr in (("a", "10.0.0.1"), ("b", "10.0.0.2"))]
    peers = [Peer.create(i.name, group, i.publics[group], addresses=i.addresses, suite=suite)
             for i in ids]
    policy = KeyingPolicy(allow_legacy=True)
    return (SkipEndpoint([ids[0]], [peers[1]], policy=policy, started=NOW),
            SkipEndpoint([ids[1]], [peers[0]], policy=policy, started=NOW))


def _datagram() -> bytes:
    body = b"\x04\xd2\x16\x2e" + (8 + PAYLOAD).to_bytes(2, "big") + b"\0\0" + bytes(PAYLOAD)
    return build_ipv4("10.0.0.1", "10.0.0.2", 17, body)


def first_packet(group: str, samples: int) -> dict[str, float]:
    packet = _datagram()
    send, receive = [], []
    for _ in range(samples):
        a, b = _pair(group)
        t0 = time.perf_counter()
        wire = a.protect(packet, NOW)
        t1 = time.perf_counter()
        b.unprotect(wire, NOW)
        t2 = time.perf_counter()
        send.append(t1 - t0)
        receive.append(t2 - t1)
    return {"send_ms": statistics.median(send) * 1e3,
            "receive_ms": statistics.median(receive) * 1e3}


def _rate(round_trip: Callable[[], object], count: int) -> float:
    round_trip()  # warm: the first call builds keys
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(count):
            round_trip()
        best = max(best, count / (time.perf_counter() - t0))
    return best


def _bare_sas(suite: Suite) -> tuple[list[SecurityAssociation], list[SecurityAssociation]]:
    """Sender and receiver SAs with the suite's algorithms, keyed directly (no SKIP)."""
    prof = suite.profile
    legacy = suite.version == num.LEGACY_VERSION
    crypt = prof.crypt.get(suite.crypt_alg)
    mac = None if suite.aead or not suite.mac_alg else prof.mac[suite.mac_alg]

    def make() -> list[SecurityAssociation]:
        common = {"sequence": not legacy, "allow_legacy": legacy}
        key = bytes(range(64))
        ck = low(key, crypt.key_size) if crypt else b""
        mk = low(key, mac.key_size) if mac else b""
        if legacy:
            esp = SecurityAssociation("esp", 1, "transport", cipher=crypt.registry_name,
                                      cipher_key=ck, allow_unauthenticated=True, **common)
            if not mac:
                return [esp]
            ah = SecurityAssociation("ah", 1, "transport", integrity=mac.registry_name,
                                     integrity_key=mk, **common)
            return [ah, esp]
        return [SecurityAssociation(
            "esp", 1, "transport", cipher=crypt.registry_name, cipher_key=ck,
            integrity=mac.registry_name if mac else None, integrity_key=mk, **common)]

    return make(), make()


def steady(group: str, suite: Suite, count: int) -> dict[str, float]:
    packet = _datagram()
    a, b = _pair(group, suite)

    def skip_round() -> None:
        b.unprotect(a.protect(packet, NOW), NOW)

    tx, rx = _bare_sas(suite)

    def bare_round() -> None:
        wire = packet
        for sa in reversed(tx):
            wire = sa.protect(wire)
        for sa in rx:
            wire = sa.unprotect(wire)

    bare = _rate(bare_round, count)
    full = _rate(skip_round, count)
    return {"skip_pps": full, "bare_pps": bare, "ratio": full / bare}


def precompute(peers: int) -> dict[str, float]:
    group = "x25519"
    dh = GROUPS[group]
    me = LocalIdentity.create("me", {group: _private("me", group)}, addresses=["10.0.0.1"])
    publics = [dh.public_value(hashlib.sha256(i.to_bytes(4, "big")).digest())
               for i in range(peers)]
    ep = SkipEndpoint([me], policy=KeyingPolicy(kij_cache_size=peers), started=NOW)
    for i, public in enumerate(publics):
        ep.add_peer(Peer.create(f"p{i}", group, public, nsid=1, mkid=i.to_bytes(4, "big")))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    for i in range(peers):
        ep.precompute(f"p{i}")
    elapsed = time.perf_counter() - t0
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return {"peers": peers, "group": group, "seconds": elapsed,
            "us_per_peer": elapsed / peers * 1e6, "memory_bytes": after - before,
            "bytes_per_peer": (after - before) / peers}


def run(quick: bool) -> dict:
    return {
        "first_packet": {g: first_packet(g, 5 if quick else 30) for g in FIRST_GROUPS},
        "steady_state": {name: steady(g, s, 300 if quick else 3000)
                         for name, (g, s) in STEADY.items()},
        "precompute": precompute(1000 if quick else 10_000),
    }


def report(figures: dict) -> str:
    lines = [f"first packet to a new peer (median; {PAYLOAD}-byte UDP)",
             f"  {'group':<12} {'send ms':>9} {'receive ms':>11}"]
    for g, f in figures["first_packet"].items():
        lines.append(f"  {g:<12} {f['send_ms']:>9.3f} {f['receive_ms']:>11.3f}")
    lines += ["steady state, protect + unprotect per second (Kp cached)",
              f"  {'suite':<34} {'SKIP':>9} {'bare':>9} {'ratio':>6}"]
    for name, f in figures["steady_state"].items():
        lines.append(f"  {name:<34} {f['skip_pps']:>9.0f} {f['bare_pps']:>9.0f} "
                     f"{f['ratio']:>6.2f}")
    p = figures["precompute"]
    lines.append(f"precompute Kij for {p['peers']} peers ({p['group']}): {p['seconds']:.2f} s "
                 f"({p['us_per_peer']:.1f} us/peer), {p['memory_bytes'] / 1e6:.2f} MB "
                 f"({p['bytes_per_peer']:.0f} B/peer)")
    return "\n".join(lines)
