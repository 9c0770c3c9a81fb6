"""The SKIP key hierarchy against the worked numbers of skip-core.md section 9.2.

Those numbers were computed by the spec digest's author, not by this code; where the digest
gives only a fingerprint (g^i mod p) the test recomputes it with plain ``pow`` and checks the
published ends, so a wrong prime or byte order here cannot hide behind our own output.
"""

from __future__ import annotations

import calendar
import hashlib

import pytest
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap

from skip.crypto import kdf
from skip.crypto.kp_wrap import (
    legacy_decrypt_kp,
    legacy_encrypt_kp,
    modern_unwrap_kp,
    modern_wrap_kp,
)
from skip.crypto.skip_numbers import LEGACY
from skip.errors import KeyingError

P1024 = int(
    "F488FD584E49DBCD20B49DE49107366B336C380D451D0F7C88B31C7C5B2D8EF6"
    "F3C923C043F0A55B188D8EBB558CB85D38D334FD7C175743A31D186CDE33212C"
    "B52AFF3CE1B1294018118D7C84A70A72D686C40319C807297ACA950CD9969FAB"
    "D00A509B0246D3083D66A45D419F9C7CBD894B221926BAABA25EC355E92F78C7",
    16,
)


def _twice_md5(text: str) -> int:
    return int.from_bytes(hashlib.md5(text.encode()).digest() * 2, "big")


SECRET_I = _twice_md5("skip-example-i")
SECRET_J = _twice_md5("skip-example-j")
GIJ = pow(pow(2, SECRET_I, P1024), SECRET_J, P1024).to_bytes(128, "big")
KIJ = bytes.fromhex("407e639c4b1efc682a40a13348989ff91ae34eccaff09b287fb8ec2a6a9fab7d")
KIJN = bytes.fromhex("f7e45c67172e61cd86f82a4f9008e97da56cb7ad0adb1e5dbe1a6ac077dd3bc4")


def test_inputs_match_the_digest() -> None:
    assert hashlib.md5(P1024.to_bytes(128, "big")).hexdigest() == "6c67b4172ca107e5e20a3a3241cc5996"
    assert f"{SECRET_I:064x}".startswith("a1fefb79e839852c")
    gi = pow(2, SECRET_I, P1024).to_bytes(128, "big")
    assert gi[:8].hex() == "d197999d52e6e7a1" and gi[-8:].hex() == "4174646d29009a2b"
    assert GIJ.hex().startswith("da42104a6b4ab7ce95703bdc2b4c7646")


def test_kij_is_low_256_bits() -> None:
    assert kdf.legacy_kij(GIJ) == KIJ
    assert kdf.legacy_kij(b"\x05") == bytes(31) + b"\x05"  # short secrets are left-padded


@pytest.mark.parametrize(
    ("when", "n"),
    [((1996, 1, 1, 0, 0, 0), 0x2238), ((2000, 1, 1, 0, 0, 0), 43824),
     ((2026, 1, 1, 0, 0, 0), 271752), ((1995, 1, 1, 0, 59, 59), 0)],
)
def test_counter_n(when: tuple[int, ...], n: int) -> None:
    now = calendar.timegm((*when, 0, 0, 0))
    assert kdf.counter_n(now) == n
    assert kdf.counter_n(now + 0.999) == n
    assert kdf.n_start(kdf.counter_n(now)) <= now < kdf.n_start(kdf.counter_n(now) + 1)


def test_kijn_and_kij_alg_keys() -> None:
    assert kdf.legacy_kijn(KIJ, 0x2238) == KIJN
    assert kdf.low(KIJN, 8).hex() == "be1a6ac077dd3bc4"
    assert kdf.low(KIJN, 24).hex() == "86f82a4f9008e97da56cb7ad0adb1e5dbe1a6ac077dd3bc4"
    assert kdf.low(KIJN, 16).hex() == "a56cb7ad0adb1e5dbe1a6ac077dd3bc4"


def _no_fill(n: int) -> bytes:
    assert n == 0, "examples A and B have no random fill"
    return b""


def test_example_a_esp_des() -> None:
    kp = bytes.fromhex("0123456789abcdef")
    ekp_len = LEGACY.ekp_length(1, 1, 0)
    ekp = legacy_encrypt_kp(LEGACY.kij[1], KIJN, kp, ekp_len, _no_fill)
    assert ekp.hex() == "c433e95db3a03616"
    assert legacy_decrypt_kp(LEGACY.kij[1], KIJN, ekp, 8) == kp
    e_kp = kdf.legacy_e_kp(kdf.kp_prime(kp, ekp_len), 1)
    assert e_kp.hex() == "28aab479afa338dd6190a74d1aa24617e91098d386e7e669a2c9c7cb559b55d3"
    assert kdf.low(e_kp, 8).hex() == "a2c9c7cb559b55d3"


def test_example_b_ah_md5_esp_des_3des_kij() -> None:
    kp = bytes.fromhex("a0a1a2a3a4a5a6a7a8a9aaabacadaeaf")
    assert LEGACY.kp_length(1, 1) == 16
    ekp_len = LEGACY.ekp_length(2, 1, 1)
    assert ekp_len == 16
    ekp = legacy_encrypt_kp(LEGACY.kij[2], KIJN, kp, ekp_len, _no_fill)
    assert ekp.hex() == "7480e882cae60e3e669161916afbe57b"
    kp_p = kdf.kp_prime(kp, ekp_len)
    e_kp = kdf.legacy_e_kp(kp_p, 1)
    a_kp = kdf.legacy_a_kp(kp_p, 1)
    assert e_kp.hex() == "1e73072edfc7a6ea311912530e16c774b6dbef9faf1b6368234da99030fa9a24"
    assert a_kp.hex() == "c3dfa69210581655d077432e69cffc36103a849a30b97a41e6fc49b0c6f2bd04"
    assert kdf.low(a_kp, 16).hex() == "103a849a30b97a41e6fc49b0c6f2bd04"


def test_example_c_fill_is_zeroed_for_key_separation() -> None:
    kp = bytes.fromhex("0102030405060708090a0b0c0d0e0f")
    assert kdf.kp_prime(kp, 16).hex() == "000102030405060708090a0b0c0d0e0f"
    ekp = legacy_encrypt_kp(LEGACY.kij[1], KIJN, kp, 16, lambda n: b"\x5a" * n)
    # The fill is encrypted in front of Kp and dropped again on decryption.
    assert legacy_decrypt_kp(LEGACY.kij[1], KIJN, ekp, 15) == kp


def test_pre06_key_separation_has_no_algorithm_byte() -> None:
    kp_p = bytes(range(16))
    md5 = hashlib.md5
    assert kdf.legacy_e_kp(kp_p, 7, pre06=True) == (
        md5(kp_p + b"\x01").digest() + md5(kp_p + b"\x00").digest()
    )
    assert kdf.legacy_a_kp(kp_p, 7, pre06=True) == (
        md5(kp_p + b"\x03").digest() + md5(kp_p + b"\x02").digest()
    )
    assert kdf.legacy_e_kp(kp_p, 7) != kdf.legacy_e_kp(kp_p, 7, pre06=True)


def test_hkdf_rfc5869_case_1() -> None:
    prk = kdf.hkdf_extract(bytes(range(13)), b"\x0b" * 22)
    assert prk.hex() == "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"
    okm = kdf.hkdf_expand(prk, bytes(range(0xF0, 0xFA)), 42)
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_aes_key_wrap_rfc3394_4_6() -> None:
    """The primitive under the modern EKp: RFC 3394 s. 4.6 (256-bit data, 256-bit KEK)."""
    kek = bytes(range(32))
    kp = bytes.fromhex("00112233445566778899aabbccddeeff000102030405060708090a0b0c0d0e0f")
    assert aes_key_wrap(kek, kp).hex() == (
        "28c9f404c4b810f4cbccb35cfb87f8263f5786e2d80ed326cbc7f0e71a99f43bfb988b9b7a02dd21"
    )


def test_modern_ekp_wraps_kp_and_its_creation_time() -> None:
    kek = bytes(range(32))
    kp = bytes(range(100, 132))
    created = 1_796_919_634_123
    wrapped = modern_wrap_kp(kek, kp, created)
    assert len(wrapped) == 48
    assert aes_key_unwrap(kek, wrapped) == kp + created.to_bytes(8, "big")
    assert modern_unwrap_kp(kek, wrapped) == (kp, created)
    tampered = bytes([wrapped[0] ^ 1]) + wrapped[1:]
    with pytest.raises(KeyingError) as err:
        modern_unwrap_kp(kek, tampered)
    assert err.value.reason == "kp_unwrap_failed"
    with pytest.raises(KeyingError) as err:  # a bare 32-byte Kp (revision 2.0) is refused
        modern_unwrap_kp(kek, aes_key_wrap(kek, kp))
    assert err.value.reason == "kp_unwrap_failed"


def test_modern_kij_is_symmetric_and_bound_to_inputs() -> None:
    a, b = b"A" * 32, b"B" * 32
    k = kdf.modern_kij(b"s" * 32, "x25519", a, b)
    assert k == kdf.modern_kij(b"s" * 32, "x25519", b, a)
    assert k != kdf.modern_kij(b"s" * 32, "x448", a, b)
    assert k != kdf.modern_kij(b"s" * 32, "x25519", a, b"C" * 32)
    assert kdf.modern_kijn(k, 1, a, b) != kdf.modern_kijn(k, 2, a, b)
    # directional: A->B and B->A have different key-encryption keys (no reflection)
    assert kdf.modern_kijn(k, 1, a, b) != kdf.modern_kijn(k, 1, b, a)
