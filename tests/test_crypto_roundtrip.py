"""Every cipher context against an independent, freshly built cryptography reference.

The contexts reuse one long-lived cryptography object per key; the references here build a new
standard object per packet with the IV/nonce the RFC prescribes, so an error in the reuse
tricks (CBC chaining, CTR nonce reset, truncated GCM tags, GMAC's AAD) shows up as a mismatch.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import CAST5, Blowfish, TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.ciphers.algorithms import AES
from hypothesis import given, settings
from hypothesis import strategies as st

from skip.crypto.registry import cipher_algorithms, get_cipher
from skip.errors import AlgorithmError, IntegrityError, ParseError

ALL = [a.name for a in cipher_algorithms()]
AEAD = [a.name for a in cipher_algorithms() if a.aead]
CBC = ["des-cbc", "3des-cbc", "aes-cbc", "blowfish-cbc", "cast5-cbc"]


def primitive(name: str, key: bytes):
    if name.startswith("aes"):
        return AES(key)
    if name == "blowfish-cbc":
        return Blowfish(key)
    if name == "cast5-cbc":
        return CAST5(key)
    return TripleDES(key * 3 if len(key) == 8 else key)


def reference_open(name: str, key: bytes, salt: bytes, sealed: bytes, aad: bytes) -> bytes:
    """Decrypt/verify ``sealed`` the textbook way, one fresh object per packet."""
    if name == "null":
        return sealed
    if name in CBC:
        bs = 16 if name == "aes-cbc" else 8
        return Cipher(primitive(name, key), modes.CBC(sealed[:bs])).decryptor().update(
            sealed[bs:])
    if name == "des-cbc-iv32":
        iv = sealed[:4] + bytes(b ^ 0xFF for b in sealed[:4])  # RFC 1829: IV32 || ~IV32
        return Cipher(primitive(name, key), modes.CBC(iv)).decryptor().update(sealed[4:])
    iv, body = sealed[:8], sealed[8:]
    nonce = salt + iv
    if name == "aes-ctr":
        block = nonce + b"\x00\x00\x00\x01"  # RFC 3686 counter block
        return Cipher(AES(key), modes.CTR(block)).decryptor().update(body)
    if name == "chacha20-poly1305":
        return ChaCha20Poly1305(key).decrypt(nonce, body, aad)
    if name == "aes-gcm-16":
        return AESGCM(key).decrypt(nonce, body, aad)
    if name.startswith("aes-ccm-"):  # RFC 4309: an 11-byte nonce, the ICV is the CCM tag
        tag = int(name.rsplit("-", 1)[1])
        return AESCCM(key, tag_length=tag).decrypt(nonce, body, aad)
    if name == "aes-gmac":
        clear, tag = body[:-16], body[-16:]
        gmac = Cipher(AES(key), modes.GCM(nonce)).encryptor()
        gmac.authenticate_additional_data(aad + iv + clear)  # RFC 4543: IV and payload in AAD
        gmac.finalize()
        assert gmac.tag == tag
        return clear
    tag_size = int(name.rsplit("-", 1)[1])  # aes-gcm-8 / aes-gcm-12
    decryptor = Cipher(AES(key), modes.GCM(nonce, body[-tag_size:], min_tag_length=tag_size)
                       ).decryptor()
    decryptor.authenticate_additional_data(aad)
    return decryptor.update(body[:-tag_size]) + decryptor.finalize()


@st.composite
def packets(draw, name: str):
    alg = get_cipher(name, allow_legacy=True)
    size = draw(st.sampled_from(alg.key_sizes))
    key = draw(st.binary(min_size=size, max_size=size))
    salt = draw(st.binary(min_size=alg.salt_size, max_size=alg.salt_size))
    sizes = draw(st.lists(st.integers(0, 40), min_size=1, max_size=4))
    plaintexts = [draw(st.binary(min_size=n * alg.block_size, max_size=n * alg.block_size))
                  for n in sizes]
    aad_size = draw(st.sampled_from([8, 12]))  # SPI || seq, or SPI || 64-bit ESN
    aad = draw(st.binary(min_size=aad_size, max_size=aad_size))
    counter = draw(st.integers(1, 2**64 - len(plaintexts) - 1))
    return alg, key, salt, plaintexts, aad, counter


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_seal_matches_reference_and_opens_in_any_order(name, data):
    alg, key, salt, plaintexts, aad, counter = data.draw(packets(name))
    ctx = alg.new(key + salt)
    sealed = [ctx.seal(pt, aad, counter + i) for i, pt in enumerate(plaintexts)]
    for pt, out in zip(plaintexts, sealed, strict=True):
        assert len(out) == alg.iv_size + len(pt) + alg.icv_size
        assert reference_open(name, key, salt, out, aad) == pt
    for pt, out in reversed(list(zip(plaintexts, sealed, strict=True))):
        assert ctx.open(out, aad) == pt
        assert ctx.open(memoryview(bytearray(out)), aad) == pt  # packet slices work too
        iv, ct = out[: alg.iv_size], out[alg.iv_size :]
        assert ctx.decrypt(iv, ct, aad) == pt


@pytest.mark.parametrize("name", ["aes-ctr", "aes-gcm-8", "aes-gcm-12", "aes-gcm-16", "aes-gmac",
                                  "chacha20-poly1305", "des-cbc-iv32"])
def test_counter_ivs_are_the_big_endian_counter(name):
    alg = get_cipher(name, allow_legacy=True)
    ctx = alg.new(bytes(alg.key_size + alg.salt_size))
    iv, _ = ctx.encrypt(bytes(alg.block_size), b"\x00" * 8, 0x0102030405060708)
    assert iv == bytes.fromhex("0102030405060708")[-alg.iv_size :]


@pytest.mark.parametrize("name", CBC)
def test_cbc_ivs_are_fresh_and_unpredictable_blocks(name):
    alg = get_cipher(name, allow_legacy=True)
    ctx = alg.new(bytes(range(alg.key_size)))
    ivs = {ctx.encrypt(b"", b"", 1)[0] for _ in range(50)}  # same counter every time
    assert len(ivs) == 50


@pytest.mark.parametrize("name", [*CBC, "des-cbc-iv32"])
def test_cbc_misaligned_input_is_refused_without_breaking_the_context(name):
    alg = get_cipher(name, allow_legacy=True)
    key = bytes(range(alg.key_size))
    ctx = alg.new(key)
    with pytest.raises(AlgorithmError) as err:
        ctx.seal(b"x" * (alg.block_size + 1), b"", 1)
    assert err.value.reason == "bad_block_size"
    good = bytes(range(2 * alg.block_size))
    out = ctx.seal(good, b"", 2)
    assert reference_open(name, key, b"", out, b"") == good  # nothing stayed buffered
    with pytest.raises(ParseError) as err:
        ctx.open(out[:-1], b"")
    assert err.value.reason == "bad_block_size"
    with pytest.raises(ParseError) as err:
        ctx.open(out[: alg.iv_size - 1], b"")
    assert err.value.reason == "truncated"
    assert ctx.open(out, b"") == good


@pytest.mark.parametrize("name", AEAD)
def test_every_single_bit_flip_in_an_aead_packet_is_bad_icv(name):
    alg = get_cipher(name)
    ctx = alg.new(bytes(range(alg.key_size + alg.salt_size)))
    aad = bytes.fromhex("0000123400000007")
    sealed = ctx.seal(b"twenty bytes payload", aad, 7)
    for position in range(len(sealed)):
        bad = bytearray(sealed)
        bad[position] ^= 0x80
        with pytest.raises(IntegrityError) as err:
            ctx.open(bytes(bad), aad)
        assert err.value.reason == "bad_icv"
    for position in range(len(aad)):
        bad_aad = bytearray(aad)
        bad_aad[position] ^= 1
        with pytest.raises(IntegrityError):
            ctx.open(sealed, bytes(bad_aad))
    with pytest.raises(ParseError) as err:
        ctx.open(sealed[: 8 + alg.icv_size - 1], aad)
    assert err.value.reason == "truncated"
    assert ctx.open(sealed, aad) == b"twenty bytes payload"


def test_truncated_gcm_tags_are_the_leftmost_bytes_of_the_full_tag():
    key = bytes(range(20))
    full = get_cipher("aes-gcm-16").new(key).seal(b"payload", b"A" * 8, 9)
    for size in (8, 12):
        short = get_cipher(f"aes-gcm-{size}").new(key).seal(b"payload", b"A" * 8, 9)
        assert short == full[: len(full) - 16 + size]


def test_a_short_rng_block_is_refused_before_it_reaches_the_cbc_context():
    key = bytes(16)
    ctx = get_cipher("aes-cbc").new(key, rng=lambda n: bytes(n - 1))
    with pytest.raises(AlgorithmError) as err:
        ctx.seal(bytes(16), b"", 1)
    assert err.value.reason == "bad_sa"


def test_decrypt_checks_the_iv_length():
    ctx = get_cipher("aes-cbc").new(bytes(16))
    with pytest.raises(ParseError) as err:
        ctx.decrypt(bytes(8), bytes(16), b"")
    assert err.value.reason == "bad_length"


def test_gmac_leaves_the_payload_readable():
    ctx = get_cipher("aes-gmac").new(bytes(20))
    sealed = ctx.seal(b"visible", b"\x00" * 8, 1)
    assert sealed[8:-16] == b"visible"
