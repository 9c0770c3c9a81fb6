"""AES-CCM for ESP (RFC 4309) against the Linux kernel's own expected outputs.

RFC 4309 publishes no vectors. The kernel's crypto self-test table for ``rfc4309(ccm(aes))``
(``crypto/testmgr.h``, copied into tests/vectors/rfc4309_linux_testmgr.json) is what the
kernel's IPsec checks its own CCM against at boot, so matching it byte for byte is matching
what a Linux peer sends. Each vector is run through the cipher context the engine uses, and
then as a whole ESP packet: our SA, given the vector's SPI, sequence number and IV, must send
exactly the kernel's bytes and open them again, for 32-bit and 64-bit (ESN) sequence numbers
(RFC 4309 section 5's two AAD forms). The 8- and 12-byte ICVs, which the kernel table lacks,
are covered by scapy (tests/test_ipsec_scapy.py) and by an independent recomputation here.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from skip.crypto.registry import get_cipher
from skip.errors import IntegrityError
from skip.ipsec import SecurityAssociation
from skip.wire.ip import build_ipv4

DOC = json.loads((Path(__file__).parent / "vectors" / "rfc4309_linux_testmgr.json").read_text())
VECTORS = DOC["vectors"]
SRC, DST = "192.0.2.1", "192.0.2.2"
h = bytes.fromhex


def _ids(v: dict) -> str:
    return v["name"].split(" ", 2)[2].split(" ")[0]


@pytest.mark.parametrize("v", VECTORS, ids=_ids)
def test_kernel_vectors_through_the_engine_context(v):
    """Sealing with the vector's IV as the counter gives IV || ciphertext || tag."""
    bits = len(h(v["key"])) * 8
    aad, counter = h(v["aad"]), int(v["iv"], 16)
    expected = h(v["iv"] + v["ciphertext"] + v["tag"])
    for ctx in (get_cipher("aes-ccm-16").new(h(v["keymat"])),
                get_cipher(f"aes-{bits}-ccm-16").new(h(v["keymat"]))):
        ctx.seal(b"an earlier packet", aad, counter ^ 1)  # the context is long-lived
        assert ctx.seal(h(v["plaintext"]), aad, counter) == expected
        assert ctx.open(expected, aad) == h(v["plaintext"])
        bad = bytearray(expected)
        bad[8] ^= 0x80  # first ciphertext byte (or, for an empty payload, the tag)
        with pytest.raises(IntegrityError):
            ctx.open(bytes(bad), aad)
        with pytest.raises(IntegrityError):  # the AAD (SPI, sequence) is authenticated
            ctx.open(expected, aad[:-1] + bytes([aad[-1] ^ 1]))


def _spi_seq(v: dict) -> tuple[int, int]:
    aad = h(v["aad"])
    if v["esn"]:
        spi, hi, lo = struct.unpack("!III", aad)
        return spi, hi << 32 | lo
    return struct.unpack("!II", aad)


def _inner(v: dict) -> bytes:
    """The transport-mode datagram whose ESP payload is the vector's plaintext: the payload
    bytes up to the trailer, the trailer's Next Header as the IP protocol. (The engine pads
    to 4 bytes with 1, 2, 3...; every chosen vector is padded that way, asserted here.)"""
    pt = h(v["plaintext"])
    pad, next_header = pt[-2], pt[-1]
    body = pt[: len(pt) - pad - 2]
    assert pt[len(body): -2] == bytes(range(1, pad + 1))
    assert pad == -(len(body) + 2) % 4
    return build_ipv4(SRC, DST, next_header, body)


def _esp_vectors() -> list[dict]:
    """The vectors that are possible ESP packets: #1 and #2 have SPI 0 and sequence number
    0, which RFC 4303 never sends (they stay context-level tests above)."""
    return [v for v in VECTORS if min(_spi_seq(v)) > 0]


def _receiver(v: dict, seq: int) -> SecurityAssociation:
    """A receiver that has already accepted ``seq - 1``, so with ESN it infers the vector's
    high half (RFC 4303 Appendix A2) rather than 0."""
    rx = SecurityAssociation("esp", _spi_seq(v)[0], "transport", cipher="aes-ccm-16",
                             cipher_key=h(v["keymat"]), esn=v["esn"])
    assert rx.replay_window is not None
    if seq > 1:
        rx.replay_window.accept(seq - 1)
    return rx


@pytest.mark.parametrize("v", _esp_vectors(), ids=_ids)
def test_engine_sends_and_opens_the_kernels_esp_packet(v):
    spi, seq = _spi_seq(v)
    inner = _inner(v)
    tx = SecurityAssociation("esp", spi, "transport", cipher="aes-ccm-16",
                             cipher_key=h(v["keymat"]), esn=v["esn"])
    tx.set_sequence(seq - 1)
    tx.dangerously_fix_iv_for_testing(h(v["iv"]))
    wire = tx.protect(inner)
    esp = wire[20:]
    assert wire[9] == 50
    assert esp == (struct.pack("!II", spi, seq & 0xFFFFFFFF)
                   + h(v["iv"] + v["ciphertext"] + v["tag"]))

    assert _receiver(v, seq).unprotect(wire) == inner
    bad = bytearray(wire)
    bad[-1] ^= 1
    with pytest.raises(IntegrityError):
        _receiver(v, seq).unprotect(bytes(bad))


@pytest.mark.parametrize("icv", [8, 12, 16])
@pytest.mark.parametrize("esn", [False, True])
@pytest.mark.parametrize("key_size", [16, 24, 32])
def test_every_icv_size_matches_rfc4309_recomputed_by_hand(icv, esn, key_size):
    """RFC 4309 assembled from its text with cryptography's AESCCM: nonce = salt || IV
    (section 4, the salt the last 3 bytes of the keying material), AAD = SPI || seq or
    SPI || seq_hi || seq_lo (section 5), ICV = the M-byte CCM tag (M = 8, 12, 16)."""
    key, salt = bytes(range(7, 7 + key_size)), b"\xa1\xb2\xc3"
    spi, seq = 0x01020304, (0x0000000500000009 if esn else 9)
    sa = SecurityAssociation("esp", spi, "transport", cipher=f"aes-ccm-{icv}",
                             cipher_key=key + salt, esn=esn)
    sa.set_sequence(seq - 1)
    inner = build_ipv4(SRC, DST, 17, struct.pack("!HHHH", 1, 2, 13, 0) + b"hello")
    esp = sa.protect(inner)[20:]
    iv, sealed = esp[8:16], esp[16:]
    assert struct.unpack("!II", esp[:8]) == (spi, seq & 0xFFFFFFFF)
    assert iv == struct.pack("!Q", seq)  # the counter is the IV (RFC 4309 section 3.1)
    aad = struct.pack("!III", spi, seq >> 32, seq & 0xFFFFFFFF) if esn else esp[:8]
    opened = AESCCM(key, tag_length=icv).decrypt(salt + iv, sealed, aad)
    pad = -(len(inner) - 20 + 2) % 4
    assert opened == inner[20:] + bytes([*range(1, pad + 1), pad, 17])  # body, pad, UDP
    assert len(sealed) == len(opened) + icv
