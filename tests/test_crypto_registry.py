"""The algorithm registry: names, IKEv2 ids, sizes, legacy gating, key checks, keyed hashes."""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from skip.crypto.keyed import keyfill
from skip.crypto.registry import (
    LEGACY_FLAG,
    cipher_algorithms,
    get_cipher,
    get_integrity,
    integrity_algorithms,
)
from skip.errors import REASONS, AlgorithmError, IntegrityError

# IANA "IKEv2 Transform Type 1 / Type 3" ids (RFC 7296 section 3.3.2 and the registry).
IKEV2_ENCR = {2: "des-cbc", 3: "3des-cbc", 9: "des-cbc-iv32", 11: "null", 12: "aes-cbc",
              13: "aes-ctr", 18: "aes-gcm-8", 19: "aes-gcm-12", 20: "aes-gcm-16",
              21: "aes-gmac", 28: "chacha20-poly1305", 6: "cast5-cbc", 7: "blowfish-cbc",
              14: "aes-ccm-8", 15: "aes-ccm-12", 16: "aes-ccm-16"}
IKEV2_INTEG = {1: "hmac-md5-96", 2: "hmac-sha1-96", 4: "keyed-md5", 6: "hmac-md5-128",
               12: "hmac-sha2-256-128", 13: "hmac-sha2-384-192", 14: "hmac-sha2-512-256"}
LEGACY = {"des-cbc", "des-cbc-iv32", "3des-cbc", "keyed-md5", "keyed-sha1", "hmac-md5-96",
          "hmac-md5-128", "blowfish-cbc", "cast5-cbc"}


@pytest.mark.parametrize(("number", "name"), IKEV2_ENCR.items())
def test_ikev2_encryption_ids(number, name):
    assert get_cipher(number, namespace="ikev2", allow_legacy=True) is get_cipher(
        name, allow_legacy=True)


@pytest.mark.parametrize(("number", "name"), IKEV2_INTEG.items())
def test_ikev2_integrity_ids(number, name):
    assert get_integrity(number, namespace="ikev2", allow_legacy=True) is get_integrity(
        name, allow_legacy=True)


def test_every_algorithm_is_listed_and_legacy_exactly_where_expected():
    names = {a.name for a in cipher_algorithms()} | {a.name for a in integrity_algorithms()}
    assert names == set(IKEV2_ENCR.values()) | set(IKEV2_INTEG.values()) | {"keyed-sha1"}
    legacy = {a.name for a in (*cipher_algorithms(), *integrity_algorithms()) if a.legacy}
    assert legacy == LEGACY


@pytest.mark.parametrize(
    ("name", "keys", "salt", "block", "iv", "icv", "aead"),
    [
        ("null", (0,), 0, 1, 0, 0, False),
        ("des-cbc", (8,), 0, 8, 8, 0, False),
        ("des-cbc-iv32", (8,), 0, 8, 4, 0, False),
        ("3des-cbc", (24,), 0, 8, 8, 0, False),
        ("aes-cbc", (16, 24, 32), 0, 16, 16, 0, False),
        ("aes-ctr", (16, 24, 32), 4, 1, 8, 0, False),
        ("aes-gcm-8", (16, 24, 32), 4, 1, 8, 8, True),
        ("aes-gcm-12", (16, 24, 32), 4, 1, 8, 12, True),
        ("aes-gcm-16", (16, 24, 32), 4, 1, 8, 16, True),
        ("aes-gmac", (16, 24, 32), 4, 1, 8, 16, True),
        ("chacha20-poly1305", (32,), 4, 1, 8, 16, True),
        ("aes-256-gcm-16", (32,), 4, 1, 8, 16, True),
        ("aes-128-cbc", (16,), 0, 16, 16, 0, False),
        ("aes-ccm-8", (16, 24, 32), 3, 1, 8, 8, True),
        ("aes-ccm-12", (16, 24, 32), 3, 1, 8, 12, True),
        ("aes-ccm-16", (16, 24, 32), 3, 1, 8, 16, True),
        ("aes-192-ccm-16", (24,), 3, 1, 8, 16, True),
        ("blowfish-cbc", (16, *(n for n in range(5, 57) if n != 16)), 0, 8, 8, 0, False),
        ("cast5-cbc", (16, *range(5, 16)), 0, 8, 8, 0, False),
    ],
)
def test_cipher_sizes_follow_the_rfcs(name, keys, salt, block, iv, icv, aead):
    alg = get_cipher(name, allow_legacy=True)
    assert (alg.key_sizes, alg.salt_size, alg.block_size, alg.iv_size, alg.icv_size,
            alg.aead) == (keys, salt, block, iv, icv, aead)
    assert alg.key_size == keys[0]
    assert alg.rfc.startswith("RFC ")


@pytest.mark.parametrize(
    ("name", "key", "icv"),
    [("keyed-md5", 16, 16), ("keyed-sha1", 20, 20), ("hmac-md5-96", 16, 12),
     ("hmac-md5-128", 16, 16), ("hmac-sha1-96", 20, 12), ("hmac-sha2-256-128", 32, 16),
     ("hmac-sha2-384-192", 48, 24), ("hmac-sha2-512-256", 64, 32)],
)
def test_integrity_sizes_follow_the_rfcs(name, key, icv):
    alg = get_integrity(name, allow_legacy=True)
    assert (alg.key_size, alg.icv_size) == (key, icv)


def test_names_are_case_insensitive_and_sized_names_pin_the_key():
    assert get_cipher("AES-GCM-16") is get_cipher("aes-gcm-16")
    with pytest.raises(AlgorithmError) as err:
        get_cipher("aes-128-gcm-16").new(bytes(36))
    assert err.value.reason == "bad_key"
    get_cipher("aes-gcm-16").new(bytes(36))  # the unsized name infers AES-256


@pytest.mark.parametrize("name", sorted(LEGACY))
def test_legacy_is_refused_with_instructions(name):
    lookup = get_cipher if name in IKEV2_ENCR.values() else get_integrity
    with pytest.raises(AlgorithmError) as err:
        lookup(name)
    assert err.value.reason == "legacy_refused"
    assert LEGACY_FLAG in str(err.value)
    assert lookup(name, allow_legacy=True).legacy


def test_legacy_is_refused_by_ikev2_id_too():
    with pytest.raises(AlgorithmError) as err:
        get_cipher(2, namespace="ikev2")
    assert err.value.reason == "legacy_refused"


@pytest.mark.parametrize(
    ("key", "namespace"),
    [("rc4", "name"), ("idea-cbc", "name"), (8, "ikev2"), (5, "ikev2"), ("12", "ikev2"),
     (12, "name"), (True, "ikev2"), ("aes-cbc", "skip"), ("", "name")],
)
def test_unknown_algorithms_and_namespaces(key, namespace):
    with pytest.raises(AlgorithmError) as err:
        get_cipher(key, namespace=namespace)
    assert err.value.reason == "unsupported_algorithm"


def test_wrong_key_sizes_name_the_expected_sizes():
    with pytest.raises(AlgorithmError) as err:
        get_cipher("aes-gcm-16").new(bytes(17))
    assert err.value.reason == "bad_key"
    assert "20 or 28 or 36" in err.value.detail and "4-byte salt" in err.value.detail
    with pytest.raises(AlgorithmError) as err:
        get_integrity("hmac-sha2-256-128").new(bytes(20))
    assert err.value.reason == "bad_key" and "32-byte key" in err.value.detail
    with pytest.raises(AlgorithmError) as err:
        get_integrity("keyed-md5", allow_legacy=True).new(b"")
    assert err.value.reason == "bad_key"
    with pytest.raises(AlgorithmError) as err:
        get_cipher("aes-cbc").new("a text key, not bytes")  # type: ignore[arg-type]
    assert err.value.reason == "bad_key"


def test_every_reason_used_here_is_listed():
    for code in ("legacy_refused", "unsupported_algorithm", "bad_key", "bad_block_size",
                 "bad_icv", "truncated"):
        assert code in REASONS


# --- keyed MD5 (RFC 1828) and keyed SHA-1 (RFC 1852) -----------------------------------------

def test_keyfill_structure_for_the_skip_key_sizes():
    """RFC 1828/1852 keyfill = the hash's own pad-with-length of the key alone."""
    # 16-byte MD5 key: 0x80, 39 zeros, then 128 as a little-endian 64-bit count.
    assert keyfill("md5", 16) == b"\x80" + bytes(39) + struct.pack("<Q", 128)
    # 20-byte SHA-1 key: 0x80, 35 zeros, then 160 as a big-endian 64-bit count.
    assert keyfill("sha1", 20) == b"\x80" + bytes(35) + struct.pack(">Q", 160)
    for n in (1, 55, 56, 63, 64, 100):
        assert (n + len(keyfill("md5", n))) % 64 == 0
        assert 9 <= len(keyfill("md5", n)) <= 72


@pytest.mark.openssl
@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
@pytest.mark.parametrize(("name", "digest", "key_len"),
                         [("keyed-md5", "-md5", 16), ("keyed-md5", "-md5", 5),
                          ("keyed-md5", "-md5", 70), ("keyed-sha1", "-sha1", 20),
                          ("keyed-sha1", "-sha1", 3)])
def test_keyed_hash_matches_openssl(tmp_path, name, digest, key_len):
    """openssl hashes key || keyfill || datagram || key written to a file; we must agree."""
    key = bytes((7 * i + 3) & 0xFF for i in range(key_len))
    data = bytes(range(256)) * 5 + b"tail"
    order = "<Q" if digest == "-md5" else ">Q"
    fill = b"\x80" + bytes((55 - key_len) % 64) + struct.pack(order, 8 * key_len)
    message = tmp_path / "message"
    message.write_bytes(key + fill + data + key)
    expected = subprocess.run(["openssl", "dgst", digest, "-binary", str(message)],
                              capture_output=True, check=True).stdout
    ctx = get_integrity(name, allow_legacy=True).new(key)
    assert ctx.compute(data) == expected
    assert ctx.compute(data[:100], memoryview(data)[100:]) == expected
    ctx.verify(expected, data)


def test_keyed_md5_differs_from_plain_envelope_without_fill():
    """The fill matters: MD5(key || data || key) is a different MAC (guards against dropping it)."""
    key, data = bytes(16), b"datagram"
    ctx = get_integrity("keyed-md5", allow_legacy=True).new(key)
    assert ctx.compute(data) != hashlib.md5(key + data + key).digest()


@pytest.mark.parametrize("name", [a.name for a in integrity_algorithms()])
def test_mac_tamper_is_bad_icv(name):
    alg = get_integrity(name, allow_legacy=True)
    ctx = alg.new(bytes(range(1, alg.key_size + 1)))
    data = b"an authenticated datagram"
    icv = ctx.compute(data)
    assert len(icv) == alg.icv_size
    for position in range(len(icv)):
        bad = bytearray(icv)
        bad[position] ^= 0x01
        with pytest.raises(IntegrityError) as err:
            ctx.verify(bytes(bad), data)
        assert err.value.reason == "bad_icv"
    with pytest.raises(IntegrityError):
        ctx.verify(icv, data + b"!")
    with pytest.raises(IntegrityError):
        ctx.verify(icv[:-1], data)


def _sizes(sizes: tuple[int, ...]) -> str:
    """Key sizes as docs/crypto.md writes them: ``16/24/32``, or a range ``5-56`` when they
    run on (RFC 2451's 40-448-bit Blowfish)."""
    ordered = sorted(sizes)
    if len(ordered) > 3 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}-{ordered[-1]}"
    return "/".join(map(str, sizes))


def test_the_tables_in_docs_crypto_md_match_the_registry():
    """docs/crypto.md is what people read; it must not drift from the code."""
    text = (Path(__file__).parent.parent / "docs" / "crypto.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): [c.strip() for c in line.split("|")[2:-1]]
            for line in text.splitlines() if line.startswith("| `")}
    for a in cipher_algorithms():
        assert rows[a.name] == [str(a.ikev2_id), _sizes(a.key_sizes),
                                str(a.salt_size), str(a.iv_size), str(a.block_size),
                                str(a.icv_size), "yes" if a.aead else "-", a.rfc,
                                "**yes**" if a.legacy else "-"]
    for a in integrity_algorithms():
        keys = (f"any (default {a.key_size})" if a.key_sizes is None
                else "/".join(map(str, a.key_sizes)))
        assert rows[a.name] == ["-" if a.ikev2_id is None else str(a.ikev2_id), keys,
                                str(a.icv_size), a.hash_name, a.rfc,
                                "**yes**" if a.legacy else "-"]
