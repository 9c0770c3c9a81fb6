"""The frozen SKIP known-answer files (tests/vectors/skip_*_kat.json) against the code.

The files were written once by tools/make_skip_kat.py. Where a value can be recomputed
without our code (public values and shared secrets with ``pow`` / ``cryptography``, Kij as the
low 256 bits, the MD5 formulas of draft-06), it is recomputed independently here too.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import x448, x25519

from skip.crypto import kdf
from skip.crypto import skip_numbers as num
from skip.crypto.dh import GROUPS
from skip.crypto.kp_wrap import legacy_decrypt_kp, modern_unwrap_kp
from skip.errors import KeyingError
from skip.keying.endpoint import SkipEndpoint
from skip.keying.identity import LocalIdentity, Peer
from skip.keying.policy import KeyingPolicy
from skip.keying.suite import Suite
from skip.wire.skip_header import SkipHeader

VECTORS = Path(__file__).parent / "vectors"
LEGACY = json.loads((VECTORS / "skip_legacy_kat.json").read_text())["vectors"]
MODERN = json.loads((VECTORS / "skip_modern_kat.json").read_text())["vectors"]
_ECX = {"x25519": x25519.X25519PrivateKey, "x448": x448.X448PrivateKey}


def _b(v: dict, key: str) -> bytes:
    return bytes.fromhex(v[key])


def _dh_independently(v: dict) -> tuple[bytes, bytes, bytes]:
    group = GROUPS[v["group"]]
    i, j = _b(v, "private_i"), _b(v, "private_j")
    if group.kind == "ecx":
        ki, kj = _ECX[v["group"]].from_private_bytes(i), _ECX[v["group"]].from_private_bytes(j)
        gj = kj.public_key().public_bytes_raw()
        return ki.public_key().public_bytes_raw(), gj, ki.exchange(kj.public_key())
    p, g, size = group.p, group.g, group.public_size
    xi, xj = int.from_bytes(i, "big"), int.from_bytes(j, "big")
    return (pow(g, xi, p).to_bytes(size, "big"), pow(g, xj, p).to_bytes(size, "big"),
            pow(g, xi * xj, p).to_bytes(size, "big"))


@pytest.mark.parametrize("v", LEGACY + MODERN, ids=lambda v: v["name"])
def test_public_values_and_shared_secret(v: dict) -> None:
    gi, gj, shared = _dh_independently(v)
    assert (gi.hex(), gj.hex(), shared.hex()) == (v["public_i"], v["public_j"], v["shared_secret"])


@pytest.mark.parametrize("v", LEGACY, ids=lambda v: v["name"])
def test_legacy_key_hierarchy(v: dict) -> None:
    kij = _b(v, "shared_secret")[-32:]
    assert kij == _b(v, "kij") == kdf.legacy_kij(_b(v, "shared_secret"))
    n = v["n"].to_bytes(4, "big")
    md5 = hashlib.md5
    assert _b(v, "kijn") == md5(kij + n + b"\1").digest() + md5(kij + n + b"\0").digest()
    assert v["n"] == (v["now"] - 788918400) // 3600
    prof = num.LEGACY
    kij_alg = prof.kij[v["kij_alg"]]
    assert _b(v, "kij_alg_key") == _b(v, "kijn")[-kij_alg.key_size:]
    kp = legacy_decrypt_kp(kij_alg, _b(v, "kijn"), _b(v, "ekp"), len(_b(v, "kp")))
    assert kp == _b(v, "kp")
    kp_p = _b(v, "kp_prime")
    assert kp_p == bytes(len(_b(v, "ekp")) - len(kp)) + kp
    c, m = bytes([v["crypt_alg"]]), bytes([v["mac_alg"]])
    if v["pre06"]:
        e_kp = md5(kp_p + b"\1").digest() + md5(kp_p + b"\0").digest()
        a_kp = md5(kp_p + b"\3").digest() + md5(kp_p + b"\2").digest()
    else:
        e_kp = md5(kp_p + c + b"\2").digest() + md5(kp_p + c + b"\0").digest()
        a_kp = md5(kp_p + m + b"\3").digest() + md5(kp_p + m + b"\1").digest()
    assert (e_kp, a_kp) == (_b(v, "e_kp"), _b(v, "a_kp"))
    if v["crypt_alg"]:
        assert _b(v, "crypt_key") == e_kp[-prof.crypt[v["crypt_alg"]].key_size:]
    if v["mac_alg"]:
        assert _b(v, "mac_key") == a_kp[-prof.mac[v["mac_alg"]].key_size:]


@pytest.mark.parametrize("v", MODERN, ids=lambda v: v["name"])
def test_modern_key_hierarchy(v: dict) -> None:
    kij = kdf.modern_kij(_b(v, "shared_secret"), v["group"], _b(v, "public_i"),
                         _b(v, "public_j"))
    assert kij == _b(v, "kij")
    publics = _b(v, "public_i"), _b(v, "public_j")
    assert kdf.modern_kijn(kij, v["n"], *publics) == _b(v, "kijn")
    assert kdf.modern_kijn(kij, v["n"], *publics[::-1]) == _b(v, "kijn_j_to_i") != _b(v, "kijn")
    assert modern_unwrap_kp(_b(v, "kijn"), _b(v, "ekp")) == (_b(v, "kp"), v["created_ms"])
    with pytest.raises(KeyingError):  # the packet reflected back to i does not unwrap
        modern_unwrap_kp(_b(v, "kijn_j_to_i"), _b(v, "ekp"))
    prof = num.MODERN
    e_kp, a_kp = kdf.modern_traffic_keys(
        _b(v, "kp"), _b(v, "skip_header"), prof.crypt_key_size(v["crypt_alg"]),
        prof.mac_key_size(v["crypt_alg"], v["mac_alg"]))
    assert (e_kp.hex(), a_kp.hex()) == (v["crypt_key"], v["mac_key"])


@pytest.mark.parametrize("v", LEGACY + MODERN, ids=lambda v: v["name"])
def test_header_and_packet(v: dict) -> None:
    header = SkipHeader.parse(_b(v, "skip_header"), num.header_ekp_length)
    assert (header.version, header.n, header.kij_alg, header.crypt_alg, header.mac_alg) == (
        v["version"], v["n"], v["kij_alg"], v["crypt_alg"], v["mac_alg"])
    assert (header.ekp, header.src_nsid, header.src_mkid, header.dst_nsid, header.dst_mkid) == (
        _b(v, "ekp"), v["src_nsid"], _b(v, "src_mkid"), v["dst_nsid"], _b(v, "dst_mkid"))
    suite = Suite(v["version"], v["kij_alg"], v["crypt_alg"], v["mac_alg"])
    receiver = SkipEndpoint(
        [LocalIdentity.create("j", {v["group"]: _b(v, "private_j")}, nsid=v["dst_nsid"],
                              mkid=_b(v, "dst_mkid"), addresses=["192.0.2.2"])],
        [Peer.create("i", v["group"], _b(v, "public_i"), nsid=v["src_nsid"],
                     mkid=_b(v, "src_mkid"), addresses=["192.0.2.1"], suite=suite,
                     pre06=v["pre06"])],
        policy=KeyingPolicy(allow_legacy=True), started=v["now"],
    )
    got = receiver.unprotect(_b(v, "wire"), v["now"])
    assert got.packet == _b(v, "plaintext") and got.peer == "i"
    assert _b(v, "wire")[20:20 + len(_b(v, "skip_header"))] == _b(v, "skip_header")


@pytest.mark.parametrize("v", LEGACY + MODERN, ids=lambda v: v["name"])
def test_sender_reproduces_the_header(v: dict) -> None:
    """The generator's rng: SHAKE-256(name | 32-bit call counter), one stream per vector."""
    calls = iter(range(1, 1000))

    def rng(n: int) -> bytes:
        label = v["name"].encode() + next(calls).to_bytes(4, "big")
        return hashlib.shake_256(label).digest(n)

    suite = Suite(v["version"], v["kij_alg"], v["crypt_alg"], v["mac_alg"])
    sender = SkipEndpoint(
        [LocalIdentity.create("i", {v["group"]: _b(v, "private_i")}, nsid=v["src_nsid"],
                              mkid=_b(v, "src_mkid"), addresses=["192.0.2.1"])],
        [Peer.create("j", v["group"], _b(v, "public_j"), nsid=v["dst_nsid"],
                     mkid=_b(v, "dst_mkid"), addresses=["192.0.2.2"], suite=suite,
                     pre06=v["pre06"])],
        policy=KeyingPolicy(allow_legacy=True), rng=rng, started=v["now"],
    )
    wire = sender.protect(_b(v, "plaintext"), v["now"])
    assert wire[20:20 + len(_b(v, "skip_header"))] == _b(v, "skip_header")
