"""Official known-answer vectors (tests/vectors, see its README) run through skip's own contexts.

Every cipher vector goes through the long-lived contexts the engine uses, including after the
context has already processed other packets, so the CBC chaining trick is checked against the
published bytes and not just against itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.hazmat.primitives.ciphers.algorithms import AES

from skip.crypto.integrity import HmacContext
from skip.crypto.registry import get_cipher, get_integrity

VECTORS = Path(__file__).parent / "vectors"


def load(name: str) -> list[dict]:
    return json.loads((VECTORS / name).read_text())["vectors"]


def h(text: str) -> bytes:
    return bytes.fromhex(text)


HASH_OF = {"HMAC-MD5": "md5", "HMAC-SHA-1": "sha1", "HMAC-SHA-256": "sha256",
           "HMAC-SHA-384": "sha384", "HMAC-SHA-512": "sha512"}
HMAC_VECTORS = [
    (v["id"], HASH_OF[v["algorithm"]], h(v["key"]), h(v["data"]), h(v.get("digest") or v["mac"]))
    for name in ("rfc2104_hmac_md5.json", "rfc2202_hmac.json", "rfc4231_hmac_sha2.json")
    for v in load(name)
    if v["algorithm"] in HASH_OF  # RFC 4231's SHA-224 has no IPsec transform
]


@pytest.mark.parametrize(("vid", "hash_name", "key", "data", "mac"), HMAC_VECTORS,
                         ids=[v[0] for v in HMAC_VECTORS])
def test_hmac_vectors_through_the_context(vid, hash_name, key, data, mac):
    """RFC 2104/2202/4231: full-length HMACs (and RFC 4231 case 5's 128-bit truncation)."""
    ctx = HmacContext(hash_name, key, len(mac))
    assert ctx.compute(data) == mac
    # The per-packet copy leaves the keyed state untouched, and parts need not be joined.
    assert ctx.compute(data[:3], memoryview(data)[3:]) == mac
    ctx.verify(mac, data)


@pytest.mark.parametrize("vector", [v for v in load("rfc2202_hmac.json") if v.get("digest_96")],
                         ids=lambda v: v["id"])
def test_rfc2202_96_bit_truncations(vector):
    """RFC 2202 case 5 gives the HMAC-MD5-96 / HMAC-SHA-1-96 outputs of RFC 2403 / 2404."""
    name = {"HMAC-MD5": "hmac-md5-96", "HMAC-SHA-1": "hmac-sha1-96"}[vector["algorithm"]]
    ctx = get_integrity(name, allow_legacy=True).new(h(vector["key"]))
    assert ctx.compute(h(vector["data"])) == h(vector["digest_96"])


IPSEC_KEY_SIZE = {"HMAC-MD5": ("hmac-md5-96", 16), "HMAC-SHA-1": ("hmac-sha1-96", 20)}


@pytest.mark.parametrize("vector", [v for v in load("rfc2202_hmac.json")
                                    if v["key_len"] == IPSEC_KEY_SIZE[v["algorithm"]][1]],
                         ids=lambda v: v["id"])
def test_rfc2202_through_the_registry_where_the_key_size_fits(vector):
    """Keys of the size RFC 2403/2404 prescribe go through the registry's transforms."""
    name = IPSEC_KEY_SIZE[vector["algorithm"]][0]
    key, digest = h(vector["key"]), h(vector["digest"])
    assert get_integrity(name, allow_legacy=True).new(key).compute(h(vector["data"])) == \
        digest[:12]
    if vector["algorithm"] == "HMAC-MD5":  # RFC 2085's untruncated HMAC-MD5
        assert get_integrity("hmac-md5-128", allow_legacy=True).new(key).compute(
            h(vector["data"])) == digest


@pytest.mark.parametrize("vector", load("rfc4868_hmac_sha2_ipsec.json"), ids=lambda v: v["id"])
def test_rfc4868_ipsec_vectors(vector):
    name = vector["algorithm"].lower().replace("hmac-sha-", "hmac-sha2-")
    alg = get_integrity(name)
    assert alg.icv_size * 8 == vector["icv_bits"]
    ctx = alg.new(h(vector["key"]))
    assert ctx.compute(h(vector["data"])) == h(vector["icv"])
    assert h(vector["prf_output"]).startswith(h(vector["icv"]))


# --- CBC: DES, 3DES, AES ---------------------------------------------------------------------

def raw_cbc_decrypt_block(algorithm, block: bytes) -> bytes:
    """D_K(block) via an independent ECB context (used to steer the random IV block)."""
    return Cipher(algorithm, modes.ECB()).decryptor().update(block)


def forced_rng(algorithm, wanted_iv: bytes, chain: bytes):
    """An rng whose block makes the long-lived encryptor emit ``wanted_iv`` as its IV block.

    The encryptor outputs E(chain XOR R); choosing R = D(wanted_iv) XOR chain gives wanted_iv.
    """
    r = bytes(a ^ b for a, b in zip(raw_cbc_decrypt_block(algorithm, wanted_iv), chain,
                                    strict=True))
    return lambda n: r


CBC_VECTORS = [
    ("des-cbc", v["key"], v["iv"], v["plaintext"], v["ciphertext"], v["id"])
    for v in load("des_3des_kat.json") if v["algorithm"] == "DES-CBC"
] + [
    ("3des-cbc", v["key"], v["iv"], v["plaintext"], v["ciphertext"], v["id"])
    for v in load("des_3des_kat.json") if v["algorithm"] == "3DES-EDE3-CBC"
] + [
    ("aes-cbc", v["key"], v["iv"], v["plaintext"], v["ciphertext"], v["id"])
    for v in load("rfc3602_aes_cbc_esp.json") if v["kind"] == "cipher"
] + [
    # Cases 5-8: the encrypted part of whole ESP packets (payload, 1-2-3 padding, trailer).
    ("aes-cbc", v["key"], v["iv"], v["plaintext_before_encryption"], v["encrypted_data"], v["id"])
    for v in load("rfc3602_aes_cbc_esp.json") if v["kind"] == "esp_packet"
    if v["plaintext_before_encryption"].endswith(v["padding"] + v["pad_length"] +
                                                 v["next_header"])
]


def test_every_cbc_vector_is_collected():
    # FIPS 81 DES-CBC 1, CAVP 3DES 6, RFC 3602 cases 1-4 and 5-8.
    assert len(CBC_VECTORS) == 1 + 6 + 4 + 4


def primitive(name: str, key: bytes):
    return AES(key) if name == "aes-cbc" else TripleDES(key * 3 if len(key) == 8 else key)


@pytest.mark.parametrize(("name", "key", "iv", "pt", "ct", "vid"), CBC_VECTORS,
                         ids=[v[-1] for v in CBC_VECTORS])
def test_cbc_vectors_decrypt_on_a_used_context(name, key, iv, pt, ct, vid):
    key, iv, pt, ct = h(key), h(iv), h(pt), h(ct)
    ctx = get_cipher(name, allow_legacy=True).new(key)
    assert ctx.open(iv + ct, b"") == pt
    # Unrelated traffic in between must not matter: the first block of every call is
    # discarded, so decryption never depends on the previous packet.
    ctx.open(bytes(range(len(iv))) * 3, b"")
    assert ctx.open(iv + ct, b"") == pt
    assert ctx.decrypt(iv, ct, b"") == pt


@pytest.mark.parametrize(("name", "key", "iv", "pt", "ct", "vid"), CBC_VECTORS,
                         ids=[v[-1] for v in CBC_VECTORS])
def test_cbc_vectors_encrypt_exactly(name, key, iv, pt, ct, vid):
    """With the random block steered so the IV equals the vector's, the output is the KAT."""
    key, iv, pt, ct = h(key), h(iv), h(pt), h(ct)
    alg = get_cipher(name, allow_legacy=True)
    prim = primitive(name, key)
    steer = {"rng": None}
    ctx = alg.new(key, rng=lambda n: steer["rng"](n))
    steer["rng"] = forced_rng(prim, iv, bytes(len(iv)))  # a fresh context chains from zero
    first = ctx.seal(pt, b"", 1)
    assert first == iv + ct
    steer["rng"] = forced_rng(prim, iv, first[-len(iv):])  # later, from the last block sent
    assert ctx.seal(pt, b"", 2) == iv + ct


@pytest.mark.parametrize("vector", [v for v in load("des_3des_kat.json")
                                    if v["algorithm"] == "DES-ECB"], ids=lambda v: v["id"])
def test_des_ecb_vectors_block_by_block(vector):
    """FIPS 81 ECB: each block alone is CBC with a zero IV."""
    ctx = get_cipher("des-cbc", allow_legacy=True).new(h(vector["key"]))
    pt, ct = h(vector["plaintext"]), h(vector["ciphertext"])
    for i in range(0, len(ct), 8):
        assert ctx.open(bytes(8) + ct[i:i + 8], b"") == pt[i:i + 8]


# --- ChaCha20-Poly1305 ESP (RFC 7634 Appendix A) -----------------------------------------------

def test_rfc7634_esp_example():
    v = load("rfc7634_chacha_esp.json")[0]
    trailer = v["plaintext_trailer"]
    plaintext = h(v["plaintext"])  # the inner packet followed by the ESP trailer
    assert plaintext.endswith(h(trailer["padding"] + trailer["pad_length"] +
                                trailer["next_header"]))
    alg = get_cipher(28, namespace="ikev2")
    assert alg is get_cipher("chacha20-poly1305")
    ctx = alg.new(h(v["keymat"]))
    sealed = ctx.seal(plaintext, h(v["aad"]), int(v["iv"], 16))
    assert sealed == h(v["iv"] + v["ciphertext"] + v["tag"])
    packet = h(v["esp_packet_full"])
    assert sealed in packet  # the published ESP packet carries exactly IV || ct || tag
    assert ctx.open(sealed, h(v["aad"])) == plaintext


# --- AES-CTR (RFC 3686 section 6) and AES-GCM for ESP (draft-mcgrew-gcm-test-01) ---------------

@pytest.mark.parametrize("vector", load("rfc3686_aes_ctr.json"), ids=lambda v: v["id"])
def test_rfc3686_ctr_vectors(vector):
    alg = get_cipher(13, namespace="ikev2")
    sized = get_cipher(f"aes-{len(h(vector['key'])) * 8}-ctr")
    for ctx in (alg.new(h(vector["keymat"])), sized.new(h(vector["keymat"]))):
        ctx.seal(b"some earlier packet", b"", 99)  # the long-lived context has been used
        sealed = ctx.seal(h(vector["plaintext"]), b"", int(vector["iv"], 16))
        assert sealed == h(vector["iv"] + vector["ciphertext"])
        assert ctx.open(sealed, b"") == h(vector["plaintext"])


@pytest.mark.parametrize("vector", load("gcm_test_01_esp.json"), ids=lambda v: v["id"])
def test_gcm_esp_vectors(vector):
    ctx = get_cipher(20, namespace="ikev2").new(h(vector["keymat"]))
    aad, counter = h(vector["aad"]), int(vector["iv"], 16)
    sealed = ctx.seal(h(vector["plaintext"]), aad, counter)
    assert sealed == h(vector["iv"] + vector["ciphertext"] + vector["tag"])
    assert ctx.open(sealed, aad) == h(vector["plaintext"])


@pytest.mark.parametrize("vector", load("gcm_test_01_esp.json"), ids=lambda v: v["id"])
@pytest.mark.parametrize("icv", [8, 12])
def test_gcm_short_icvs_are_the_published_tag_truncated(vector, icv):
    """RFC 4106 section 6: ENCR_AES_GCM_8/12 carry the leftmost 8/12 octets of the tag."""
    ctx = get_cipher(f"aes-gcm-{icv}").new(h(vector["keymat"]))
    aad, counter = h(vector["aad"]), int(vector["iv"], 16)
    expected = h(vector["iv"] + vector["ciphertext"] + vector["tag"][: 2 * icv])
    assert ctx.seal(h(vector["plaintext"]), aad, counter) == expected
    assert ctx.open(expected, aad) == h(vector["plaintext"])
