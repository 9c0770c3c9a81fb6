"""Interoperability with scapy's IPsec implementation (scapy.layers.ipsec), written by people
who never saw this code: what our engine sends, scapy decrypts and ICV-checks; what scapy
sends, our engine accepts.  Covers ESP with every algorithm both implement, AH with its
mutable-field handling (IPv4 options, IPv6 extension headers and routing), transport and
tunnel, IPv4 and IPv6, and extended sequence numbers.

Where scapy 2.8 itself departs from the RFCs the case is left out here and covered in
test_ipsec_ah.py / test_ipsec_vectors.py instead: its AH gives a loose/strict source route no
final destination (RFC 4302 Appendix A) and replays no routing header on receive; zeroing an
IPv6 option marked "may change" makes it re-pad the header, so its AH image of such a header
is not RFC 4302's (ESP datagrams still carry one); and with the AEAD API its AES-GCM always
appends a 16-byte tag, so GCM with 8- or 12-byte ICVs cannot be compared.  AH placement
differs legitimately: scapy puts AH after IPv6 destination options, we put it before them
(RFC 4302 3.1.1 allows both), and each side accepts the other's.
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.layers.ipsec import AH, ESP
from scapy.layers.ipsec import SecurityAssociation as ScapySA

from skip.wire.ip import (
    PROTO_AH,
    PROTO_ESP,
    ExtensionHeader,
    IPv4Option,
    IPv6Option,
    build_ipv4,
    build_ipv6,
    insertion_point,
    locate_upper,
)
from tests.ipsec_cases import TUNNEL, V4, V6, Suite

EXPERIMENTAL = 253  # RFC 3692: a payload scapy leaves as raw bytes, so nothing is re-encoded


def datagram(version: int, size: int, *, fancy: bool = False, mutable: bool = True) -> bytes:
    """A datagram both implementations agree on: with ``fancy``, IPv4 record route and router
    alert options, or an IPv6 hop-by-hop header (with a "may change" option if ``mutable``)
    and destination options behind it."""
    payload = bytes((i * 13 + size) & 0xFF for i in range(size))
    if version == 4:
        opts = [IPv4Option(7, bytes([4]) + bytes(8)), IPv4Option(148, b"\0\0")] if fancy else []
        return build_ipv4(*V4, EXPERIMENTAL, payload, tos=0x28, identification=size,
                          options=opts, flags=2)
    hop = [IPv6Option(0x3E, b"mut")] if mutable else []
    chain = [ExtensionHeader.with_options(0, 0, [*hop, IPv6Option(5, b"\0\0")]),
             ExtensionHeader.with_options(60, 0, [IPv6Option(0x1E, b"end")])] if fancy else []
    return build_ipv6(*V6, EXPERIMENTAL, payload, traffic_class=0x28, flow_label=0xBEEF,
                      extension_headers=chain)

# (our suite, scapy crypt algo, scapy auth algo, scapy ICV size override)
ESP_PAIRS = [
    (Suite("esp", "aes-gcm-16"), "AES-GCM", None, None),
    (Suite("esp", "aes-gcm-16", key_size=32), "AES-GCM", None, None),
    (Suite("esp", "aes-gcm-16", esn=True), "AES-GCM", None, None),
    (Suite("esp", "chacha20-poly1305"), "CHACHA20-POLY1305", None, None),
    (Suite("esp", "aes-gmac"), "AES-NULL-GMAC", None, None),
    (Suite("esp", "aes-cbc", "hmac-sha1-96"), "AES-CBC", "HMAC-SHA1-96", None),
    (Suite("esp", "aes-cbc", "hmac-sha2-256-128", key_size=32), "AES-CBC", "SHA2-256-128",
     None),
    (Suite("esp", "aes-cbc", "hmac-sha2-512-256", esn=True), "AES-CBC", "SHA2-512-256", None),
    (Suite("esp", "aes-ctr", "hmac-sha2-384-192"), "AES-CTR", "SHA2-384-192", None),
    (Suite("esp", "3des-cbc", "hmac-md5-96"), "3DES", "HMAC-MD5-96", None),
    (Suite("esp", "des-cbc", "hmac-sha1-96"), "DES", "HMAC-SHA1-96", None),
    (Suite("esp", "null", "hmac-sha2-256-128"), "NULL", "SHA2-256-128", None),
    (Suite("esp", "aes-ccm-8"), "AES-CCM", None, 8),
    (Suite("esp", "aes-ccm-12", key_size=24), "AES-CCM", None, 12),
    (Suite("esp", "aes-ccm-16", key_size=32), "AES-CCM", None, 16),
    (Suite("esp", "blowfish-cbc", "hmac-sha2-256-128"), "Blowfish", "SHA2-256-128", None),
    (Suite("esp", "cast5-cbc", "hmac-sha1-96"), "CAST", "HMAC-SHA1-96", None),
]
AH_PAIRS = [
    (Suite("ah", integrity="hmac-sha1-96"), "HMAC-SHA1-96"),
    (Suite("ah", integrity="hmac-sha2-256-128"), "SHA2-256-128"),
    (Suite("ah", integrity="hmac-sha2-384-192", esn=True), "SHA2-384-192"),
    (Suite("ah", integrity="hmac-sha2-512-256"), "SHA2-512-256"),
    (Suite("ah", integrity="hmac-md5-96"), "HMAC-MD5-96"),
]
LAYOUTS = [("transport", 4, None), ("transport", 6, None), ("tunnel", 4, 4),
           ("tunnel", 6, 6), ("tunnel", 4, 6), ("tunnel", 6, 4)]
SEQ = 2**32 + 7  # with ESN: high half 1 (only in the ICV / AAD), low half 7 on the wire


def parse(raw: bytes):
    return IP(raw) if raw[0] >> 4 == 4 else IPv6(raw)


def scapy_sa(suite: Suite, crypt: str | None, auth: str | None, icv: int | None,
             mode: str, outer: int | None, seq: int):
    keys = suite.keys()
    tunnel = None
    if mode == "tunnel":
        src, dst = TUNNEL[outer]
        tunnel = IP(src=src, dst=dst) if outer == 4 else IPv6(src=src, dst=dst)
    return ScapySA(
        ESP if suite.protocol == "esp" else AH, spi=0x1234, seq_num=seq & 0xFFFFFFFF,
        crypt_algo=crypt, crypt_key=keys.get("cipher_key"), crypt_icv_size=icv,
        auth_algo=auth, auth_key=keys.get("integrity_key"), tunnel_header=tunnel,
        esn_en=suite.esn, esn=seq >> 32 if suite.esn else 0)


def _cases():
    for suite, crypt, auth, icv in ESP_PAIRS:
        for layout in LAYOUTS:
            yield pytest.param(suite, crypt, auth, icv, layout,
                               id=f"{suite.id}-{layout[0]}-{layout[1]}in{layout[2]}")
    for suite, auth in AH_PAIRS:
        for layout in LAYOUTS:
            yield pytest.param(suite, None, auth, None, layout,
                               id=f"{suite.id}-{layout[0]}-{layout[1]}in{layout[2]}")


CASES = list(_cases())


@pytest.mark.parametrize(("suite", "crypt", "auth", "icv", "layout"), CASES)
def test_scapy_decrypts_what_we_send(suite, crypt, auth, icv, layout):
    mode, inner_v, outer_v = layout
    ours = suite.sa(mode, outer_v)
    seq = SEQ if suite.esn else 7
    ours.set_sequence(seq - 1)
    for size, fancy in ((0, False), (33, True), (1200, False)):
        original = datagram(inner_v, size, fancy=fancy, mutable=suite.protocol == "esp")
        wire = ours.protect(original)
        theirs = scapy_sa(suite, crypt, auth, icv, mode, outer_v, seq)
        plain = bytes(theirs.decrypt(parse(wire)))  # raises IPSecIntegrityError on a bad ICV
        if mode == "tunnel":
            assert plain == original
        else:
            # scapy re-assembles the header chain itself (and miscounts the IPv6 payload length
            # when destination options follow the insertion point), so compare what AH/ESP
            # carried: everything from the insertion point on, and the addresses.
            tail = original[insertion_point(original)[2] :]
            assert plain.endswith(tail)
            assert parse(plain).src == parse(original).src
            assert parse(plain).dst == parse(original).dst
        seq += 1


@pytest.mark.parametrize(("suite", "crypt", "auth", "icv", "layout"), CASES)
def test_we_accept_what_scapy_sends(suite, crypt, auth, icv, layout):
    mode, inner_v, outer_v = layout
    seq = SEQ if suite.esn else 7
    theirs = scapy_sa(suite, crypt, auth, icv, mode, outer_v, seq)
    ours = suite.sa(mode, outer_v)
    if suite.esn:
        ours.replay_window.accept(seq - 1)  # our window already sits in the second block
    for size, fancy in ((0, False), (33, True), (1200, False)):
        original = datagram(inner_v, size, fancy=fancy, mutable=suite.protocol == "esp")
        wire = bytes(theirs.encrypt(parse(original)))
        _, _, _, proto = locate_upper(wire, verify_checksum=False)
        assert proto == (PROTO_ESP if suite.protocol == "esp" else PROTO_AH)
        got = ours.unprotect(wire)
        # scapy recomputes the inner IPv4 checksum on encryption; compare field by field
        assert parse(got) == parse(original) if mode == "transport" else got == bytes(
            parse(original))
    assert ours.counters.rejected == {}
