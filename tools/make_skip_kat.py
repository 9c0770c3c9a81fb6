#!/usr/bin/env python3
"""Generate the SKIP known-answer files tests/vectors/skip_{legacy,modern}_kat.json.

Run once; the files are then frozen and the tests check the code against them, so a change in
any derivation (byte order, label, key selection) shows up as a failing test rather than as a
silently different protocol. Regenerate only on a deliberate, documented protocol change:
``tools/make_skip_kat.py --write``. Without ``--write`` it only reports whether the frozen
files still match what the code computes.

Every input is fixed (private values and Kp derived from labels, a deterministic ``rng``), and
every intermediate value is recorded so that another implementation can find the first step
where it differs. The complete packet is recorded too; its IV / IPv4 Identification come from
the same deterministic ``rng``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from skip.crypto import kdf  # noqa: E402
from skip.crypto import skip_numbers as num  # noqa: E402
from skip.crypto.dh import GROUPS  # noqa: E402
from skip.crypto.kp_wrap import legacy_encrypt_kp, modern_wrap_kp  # noqa: E402
from skip.keying.endpoint import SkipEndpoint  # noqa: E402
from skip.keying.identity import LocalIdentity, Peer  # noqa: E402
from skip.keying.policy import KeyingPolicy  # noqa: E402
from skip.keying.suite import Suite  # noqa: E402
from skip.wire.ip import build_ipv4  # noqa: E402

VECTORS = ROOT / "tests" / "vectors"
NOW = kdf.n_start(280_000) + 1234  # 2026-12-..., inside SKIP hour n = 280000
PAYLOAD = b"SKIP known-answer test payload"


class DeterministicRng:
    """rng(n) -> SHAKE-256(label | counter) bytes: reproducible, and distinct per call."""

    def __init__(self, label: str) -> None:
        self.label = label.encode()
        self.counter = 0

    def __call__(self, n: int) -> bytes:
        self.counter += 1
        return hashlib.shake_256(self.label + self.counter.to_bytes(4, "big")).digest(n)


def private(label: str, group: str) -> bytes:
    dh = GROUPS[group]
    raw = hashlib.shake_256(label.encode()).digest(dh.private_size)
    if dh.kind == "ecx":
        return raw
    value = int.from_bytes(raw) | 1 << (8 * dh.private_size - 1)
    if dh.q is not None:
        value = value % (dh.q - 2) + 2
    return value.to_bytes(dh.private_size)


def datagram() -> bytes:
    udp = (1234).to_bytes(2, "big") + (5678).to_bytes(2, "big")
    udp += (8 + len(PAYLOAD)).to_bytes(2, "big") + b"\0\0" + PAYLOAD
    return build_ipv4("192.0.2.1", "192.0.2.2", 17, udp)


def vector(name: str, group: str, suite: Suite, *, mkids: bool, pre06: bool = False) -> dict:
    dh = GROUPS[group]
    i, j = private(f"{name}/i", group), private(f"{name}/j", group)
    gi, gj = dh.public_value(i), dh.public_value(j)
    shared = dh.shared_secret(i, gj)
    legacy = suite.version == num.LEGACY_VERSION
    n = kdf.counter_n(NOW)
    if legacy:
        kij = kdf.legacy_kij(shared)
        kijn = kdf.legacy_kijn(kij, n)
    else:
        kij = kdf.modern_kij(shared, group, gi, gj)
        kijn = kdf.modern_kijn(kij, n, gi, gj)  # the i -> j direction
    names = {"nsid_i": 8, "mkid_i": hashlib.md5(gi).digest(), "nsid_j": 8,
             "mkid_j": hashlib.md5(gj).digest()} if mkids else {
        "nsid_i": 0, "mkid_i": b"", "nsid_j": 0, "mkid_j": b""}
    policy = KeyingPolicy(allow_legacy=True)
    rng = DeterministicRng(name)
    me = LocalIdentity.create("i", {group: i}, nsid=names["nsid_i"], mkid=names["mkid_i"],
                              addresses=["192.0.2.1"])
    them = Peer.create("j", group, gj, nsid=names["nsid_j"], mkid=names["mkid_j"],
                       addresses=["192.0.2.2"], suite=suite, pre06=pre06)
    sender = SkipEndpoint([me], [them], policy=policy, rng=rng, started=NOW)
    wire = sender.protect(datagram(), NOW)
    # Replay the sender's rng stream: Kp is its first draw, the legacy random fill its second.
    prof = suite.profile
    kij_alg, crypt, mac, _ = suite.algorithms
    ekp_len = prof.ekp_length(kij_alg, crypt, mac)
    replay = DeterministicRng(name)
    kp = replay(prof.kp_length(crypt, mac))
    if legacy:
        ekp = legacy_encrypt_kp(prof.kij[kij_alg], kijn, kp, ekp_len, replay)
    else:
        ekp = modern_wrap_kp(kijn, kp, NOW * 1000)  # created: the sender's now, in ms
    header = wire[20:20 + 12 + len(ekp) + len(names["mkid_i"]) + len(names["mkid_j"])]
    assert header[12:12 + len(ekp)] == ekp, "the replayed rng must give the sender's EKp"
    out = {
        "name": name, "group": group, "version": suite.version,
        "kij_alg": kij_alg, "crypt_alg": crypt, "mac_alg": mac, "comp_alg": 0, "pre06": pre06,
        "private_i": i.hex(), "private_j": j.hex(), "public_i": gi.hex(), "public_j": gj.hex(),
        "shared_secret": shared.hex(), "now": NOW, "n": n, "kij": kij.hex(), "kijn": kijn.hex(),
        "kp": kp.hex(), "ekp": ekp.hex(),
        "src_nsid": names["nsid_i"], "src_mkid": names["mkid_i"].hex(),
        "dst_nsid": names["nsid_j"], "dst_mkid": names["mkid_j"].hex(),
        "skip_header": header.hex(), "plaintext": datagram().hex(), "wire": wire.hex(),
    }
    if legacy:
        kp_p = kdf.kp_prime(kp, ekp_len)
        e_kp = kdf.legacy_e_kp(kp_p, crypt, pre06=pre06)
        a_kp = kdf.legacy_a_kp(kp_p, mac, pre06=pre06)
        out.update({
            "kij_alg_key": kdf.low(kijn, prof.kij[kij_alg].key_size).hex(),
            "kp_prime": kp_p.hex(), "e_kp": e_kp.hex(), "a_kp": a_kp.hex(),
            "crypt_key": kdf.low(e_kp, prof.crypt_key_size(crypt)).hex() if crypt else "",
            "mac_key": kdf.low(a_kp, prof.mac_key_size(crypt, mac)).hex() if mac else "",
        })
    else:
        e_kp, a_kp = kdf.modern_traffic_keys(kp, bytes(header), prof.crypt_key_size(crypt),
                                             prof.mac_key_size(crypt, mac))
        out.update({"crypt_key": e_kp.hex(), "mac_key": a_kp.hex(), "created_ms": NOW * 1000,
                    # j -> i: the key a reflected packet would have needed
                    "kijn_j_to_i": kdf.modern_kijn(kij, n, gj, gi).hex()})
    return out


def legacy_vectors() -> list[dict]:
    return [
        vector("legacy-des-esp", "skip-1024", Suite(1, 1, 1, 0), mkids=False),
        vector("legacy-3des-ah-md5-esp-3des", "skip-1024", Suite(1, 2, 2, 1), mkids=True),
        vector("legacy-idea-kij-keyed-sha", "skip-1024", Suite(1, 3, 0, 3), mkids=False),
        vector("legacy-2048-des-fill", "skip-2048", Suite(1, 2, 1, 3), mkids=True),
        vector("legacy-pre06", "skip-1024", Suite(1, 2, 2, 1), mkids=False, pre06=True),
    ]


def modern_vectors() -> list[dict]:
    return [
        vector("modern-x25519-aes256gcm", "x25519", Suite(2, 10, 11, 11), mkids=True),
        vector("modern-x25519-chacha", "x25519", Suite(2, 10, 12, 12), mkids=False),
        vector("modern-x448-aes128cbc-hmac256", "x448", Suite(2, 10, 13, 20), mkids=True),
        vector("modern-modp2048-aes128gcm", "modp-2048", Suite(2, 10, 10, 10), mkids=False),
        vector("modern-x25519-ah-hmac512", "x25519", Suite(2, 10, 0, 22), mkids=False),
    ]


def document(profile: str, entries: list[dict]) -> dict:
    return {
        "description": f"SKIP {profile} profile known answers; see docs/protocol/ and "
                       "tools/make_skip_kat.py (generated once, then frozen)",
        "generator": "tools/make_skip_kat.py",
        "vectors": entries,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="(re)write the frozen files")
    args = parser.parse_args()
    status = 0
    for profile, make in (("legacy", legacy_vectors), ("modern", modern_vectors)):
        path = VECTORS / f"skip_{profile}_kat.json"
        text = json.dumps(document(profile, make()), indent=1) + "\n"
        if args.write:
            path.write_text(text)
            print(f"wrote {path}")
        elif not path.exists() or path.read_text() != text:
            print(f"{path}: differs from what the code computes now")
            status = 1
        else:
            print(f"{path}: matches")
    return status


if __name__ == "__main__":
    sys.exit(main())
