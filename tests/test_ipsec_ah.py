"""AH specifics: mutable fields changed in flight, immutable ones guarded, the two header
forms, ICV padding, the shim for SKIP, AH over ESP, and an ICV recomputed by hand."""

from __future__ import annotations

import hashlib
import struct

import pytest

from skip.crypto.keyed import keyfill
from skip.errors import IntegrityError, ParseError, SkipError
from skip.ipsec import peek
from skip.wire.ah import AHHeader
from skip.wire.ip import (
    IPV4_OPT_LSRR,
    IPV4_OPT_RR,
    PROTO_AH,
    PROTO_ESP,
    PROTO_SKIP,
    PROTO_UDP,
    ExtensionHeader,
    IPv4Option,
    IPv6Option,
    build_ipv4,
    build_ipv6,
    finish_ipv4_header,
    insertion_point,
    locate_upper,
)
from tests.ipsec_cases import Suite, datagram, ipv4_router_hop, ipv6_router_hops

SHA256 = Suite("ah", integrity="hmac-sha2-256-128")
KEYED_MD5 = Suite("ah", integrity="keyed-md5", sequence=False)


def strip_ah(routed: bytes, at: int, ah_len: int) -> bytes:
    """What the receiver should get back: the routed datagram without its AH."""
    out = bytearray(routed[:at] + routed[at + ah_len :])
    if out[0] >> 4 == 4:
        out[9] = routed[at]
        struct.pack_into("!H", out, 2, len(out))
        finish_ipv4_header(out)
    else:
        struct.pack_into("!H", out, 4, len(out) - 40)
    return bytes(out)


@pytest.mark.parametrize("suite", [SHA256, KEYED_MD5], ids=lambda s: s.id)
def test_ipv4_mutable_fields_and_options_may_change_in_flight(suite):
    """Routers rewrite TTL, ECN, DF, record route, timestamp and the source route.  An RFC
    1826 SA is told to use the RFC 4302 image here (ah_mutable), see the next test for its
    own rule."""
    route = bytes([10, 9, 9, 9, 10, 0, 0, 2])
    original = build_ipv4("10.0.0.1", "10.5.5.5", PROTO_UDP, b"payload", tos=0x10, options=[
        IPv4Option(IPV4_OPT_LSRR, bytes([4]) + route),
        IPv4Option(IPV4_OPT_RR, bytes([4]) + bytes(8)),
        IPv4Option(148, b"\0\0")])
    wire = suite.sa("transport", ah_mutable="rfc4302").protect(original)
    routed = ipv4_router_hop(ipv4_router_hop(wire, b"\x0a\x05\x05\x05"), b"\x0a\x09\x09\x09")
    assert routed[16:20] == bytes([10, 0, 0, 2]) and routed[8] == wire[8] - 2
    _, _, at, _ = locate_upper(routed)
    ah_len = len(wire) - len(original)
    rx = suite.sa("transport", ah_mutable="rfc4302")
    assert rx.unprotect(routed) == strip_ah(routed, at, ah_len)


@pytest.mark.parametrize(("offset", "value", "accepted"), [
    (8, 0x01, True),  # TTL
    (1, 0x03, False),  # TOS/ECN: covered by RFC 1826's image
    (6, 0x40, False),  # DF
])
def test_rfc1826_image_zeroes_only_ttl_and_checksum(offset, value, accepted):
    assert KEYED_MD5.sa("transport").ah_mutable == "rfc1826"  # the default without sequence
    wire = bytearray(KEYED_MD5.sa("transport").protect(datagram(4, 20)))
    wire[offset] ^= value
    finish_ipv4_header(wire)
    rx = KEYED_MD5.sa("transport")
    if accepted:
        rx.unprotect(bytes(wire))
    else:
        with pytest.raises(IntegrityError):
            rx.unprotect(bytes(wire))


def test_rfc1826_ipv6_image_zeroes_hop_limit_only():
    wire = bytearray(KEYED_MD5.sa("transport").protect(datagram(6, 20)))
    wire[7] -= 1
    KEYED_MD5.sa("transport").unprotect(bytes(wire))
    wire[3] ^= 1  # flow label
    with pytest.raises(IntegrityError):
        KEYED_MD5.sa("transport").unprotect(bytes(wire))


@pytest.mark.parametrize(("offset", "value"), [(4, 0x99), (12, 0x0B), (19, 0x07), (22, 0x95)])
def test_ipv4_immutable_fields_are_guarded(offset, value):
    """Identification, source, destination and an immutable option (Router Alert data)."""
    original = build_ipv4("10.0.0.1", "10.0.0.2", PROTO_UDP, b"x", options=[
        IPv4Option(148, b"\0\0")])
    wire = bytearray(SHA256.sa("transport").protect(original))
    wire[offset] = value
    finish_ipv4_header(wire)
    with pytest.raises(IntegrityError) as e:
        SHA256.sa("transport").unprotect(bytes(wire))
    assert e.value.reason == "bad_icv"


def test_ipv6_mutable_fields_options_and_routing_header_in_flight():
    original = build_ipv6(
        "2001:db8::1", "2001:db8::a", PROTO_UDP, b"payload", traffic_class=0x20,
        flow_label=7, extension_headers=[
            ExtensionHeader.with_options(0, 0, [IPv6Option(0x3E, b"mutable"),
                                                IPv6Option(5, b"\0\0")]),
            ExtensionHeader.routing(0, ["2001:db8::b", "2001:db8::f"]),
        ])
    wire = SHA256.sa("transport").protect(original)
    routed = ipv6_router_hops(wire)
    assert routed[24:40] != wire[24:40]
    _, nh_off, at, _ = insertion_point(original)
    assert routed[nh_off] == PROTO_AH  # the routing header names AH
    ah_len = len(wire) - len(original)
    expected = bytearray(routed[:at] + routed[at + ah_len :])
    struct.pack_into("!H", expected, 4, len(expected) - 40)
    expected[nh_off] = PROTO_UDP
    assert SHA256.sa("transport").unprotect(routed) == bytes(expected)
    # an immutable option's data is guarded
    tampered = bytearray(wire)
    tampered[40 + 2 + 2 + 7 + 2] ^= 1  # the data of option type 5
    with pytest.raises(IntegrityError):
        SHA256.sa("transport").unprotect(bytes(tampered))


def test_rfc1826_and_rfc4302_length_fields():
    v4 = KEYED_MD5.sa("transport").protect(datagram(4, 8))
    head, end = AHHeader.parse_from(v4, 20, sequence=False)
    assert v4[21] == 4 and len(head.icv) == 16 and end == 20 + 8 + 16  # RFC 1826: 4 words
    assert head.spi == 0x1234 and head.sequence is None
    v6 = SHA256.sa("transport").protect(datagram(6, 8))
    # RFC 4302: 12 + 16 = 28 bytes, padded to 32 on IPv6: Payload Len = 32/4 - 2 = 6
    head, end = AHHeader.parse_from(v6, 40, sequence=True)
    assert v6[41] == 6 and len(head.icv) == 20 and head.icv[16:] == bytes(4)
    v4b = SHA256.sa("transport").protect(datagram(4, 8))
    assert v4b[21] == 5  # 28 bytes on IPv4, no padding
    assert AHHeader(6, 9, bytes(16), 3).encode()[1] == 5


def test_keyed_md5_ah_icv_recomputed_by_hand():
    """RFC 1826 + RFC 1828, computed here from the RFC text with hashlib: MD5(key ||
    keyfill || datagram with TTL, checksum and auth data zeroed || key)."""
    key = KEYED_MD5.keys()["integrity_key"]
    original = build_ipv4("10.1.1.1", "10.2.2.2", PROTO_UDP, b"hello, 1995", tos=8, ttl=30,
                          flags=2, identification=77)
    wire = KEYED_MD5.sa("transport").protect(original)
    image = bytearray(wire)
    image[8] = 0  # TTL
    image[10:12] = b"\0\0"  # checksum
    image[28:44] = bytes(16)  # authentication data
    pad = keyfill("md5", len(key))
    assert pad[0] == 0x80 and (len(key) + len(pad)) % 64 == 0  # RFC 1828 keyfill shape
    assert wire[28:44] == hashlib.md5(key + pad + bytes(image) + key).digest()
    assert (wire[20], wire[21], wire[22:24], wire[24:28]) == (
        PROTO_UDP, 4, b"\0\0", (0x1234).to_bytes(4, "big"))


def skip_header(next_header: int) -> bytes:
    """A SKIP-shaped header (12 fixed bytes + 8 bytes of EKp); its bytes matter only as data."""
    return bytes([0x10, 0, 0, next_header]) + bytes(range(1, 17))


def test_shim_is_inserted_covered_and_stripped():
    ah = Suite("ah", integrity="keyed-md5", sequence=False)
    shim = skip_header(PROTO_AH)
    original = datagram(4, 40)
    wire = ah.sa("transport", spi=1).protect(original, shim=(PROTO_SKIP, shim))
    assert wire[9] == PROTO_SKIP and wire[20:40] == shim and wire[40] == original[9]
    assert peek(wire, shim_len=len(shim), protocol=PROTO_AH) == (PROTO_AH, 1)
    rx = ah.sa("transport", spi=1)
    assert rx.unprotect(wire, shim_len=len(shim)) == original
    changed = bytearray(wire)
    changed[25] ^= 1  # a shim byte
    with pytest.raises(IntegrityError):
        rx.unprotect(bytes(changed), shim_len=len(shim))


def test_shim_icv_image_lets_reserved_fields_be_ignored():
    """draft-06 1.10.1: SKIP's RESERVED fields are zero for the MAC.  The keying layer hands
    the zeroed image; the wire value of a reserved byte then does not matter."""
    ah = Suite("ah", integrity="keyed-md5", sequence=False)
    shim = skip_header(PROTO_AH)
    image = bytearray(shim)
    image[9] = 0  # say Crypt Alg is RESERVED when only AH follows
    sent = bytearray(shim)
    sent[9] = 0x77  # a sender that left junk there
    wire = ah.sa("transport", spi=1).protect(datagram(6, 9), shim=(PROTO_SKIP, bytes(sent)),
                                             shim_icv=bytes(image))
    rx = ah.sa("transport", spi=1)
    other = bytearray(wire)
    other[40 + 9] = 0x55
    assert rx.unprotect(bytes(other), shim_len=20, shim_icv=bytes(image)) == datagram(6, 9)
    with pytest.raises(IntegrityError):
        rx.unprotect(bytes(other), shim_len=20)  # without the image the byte counts


@pytest.mark.parametrize("mode", ["transport", "tunnel"])
@pytest.mark.parametrize("version", [4, 6])
def test_skip_style_ah_over_esp(mode, version):
    """IP | SKIP(next=51) | AH(next=50, SPI 1) | ESP(SPI 1) | ..., both SKIP-era forms."""
    esp = Suite("esp", "des-cbc", sequence=False)
    ah = Suite("ah", integrity="keyed-md5", sequence=False)
    shim = skip_header(PROTO_AH)
    original = datagram(version, 33)
    esp_tx, ah_tx = esp.sa(mode, version, spi=1), ah.sa("transport", spi=1)
    wire = ah_tx.protect(esp_tx.protect(original), shim=(PROTO_SKIP, shim))
    _, _, at, proto = locate_upper(wire)
    assert proto == PROTO_SKIP and wire[at : at + 20] == shim
    assert wire[at + 20] == PROTO_ESP  # AH's next header
    assert wire[at + 20 + 24 : at + 20 + 28] == (1).to_bytes(4, "big")  # ESP SPI 1
    inner = ah.sa("transport", spi=1).unprotect(wire, shim_len=len(shim))
    assert esp.sa(mode, version, spi=1).unprotect(inner) == original
    # the ESP ciphertext is under the AH ICV
    changed = bytearray(wire)
    changed[-1] ^= 1
    with pytest.raises(IntegrityError):
        ah.sa("transport", spi=1).unprotect(bytes(changed), shim_len=len(shim))


def test_esp_does_not_cover_the_shim():
    esp = Suite("esp", "aes-gcm-16")
    shim = skip_header(PROTO_ESP)
    wire = bytearray(esp.sa("transport").protect(datagram(4, 12), shim=(PROTO_SKIP, shim)))
    wire[30] ^= 0xFF
    assert esp.sa("transport").unprotect(bytes(wire), shim_len=len(shim)) == datagram(4, 12)


@pytest.mark.parametrize(("shim_len", "reason"), [(500, "truncated"), (3, "bad_spi")])
def test_wrong_shim_length(shim_len, reason):
    wire = KEYED_MD5.sa("transport").protect(datagram(4, 12), shim=(PROTO_SKIP, bytes(8)))
    with pytest.raises(SkipError) as e:
        KEYED_MD5.sa("transport").unprotect(wire, shim_len=shim_len)
    assert e.value.reason == reason


def test_ah_length_must_match_the_sa():
    wire = Suite("ah", integrity="hmac-sha1-96").sa("transport").protect(datagram(4, 12))
    with pytest.raises(ParseError) as e:
        SHA256.sa("transport").unprotect(wire)  # 12-byte ICV where 16 are expected
    assert e.value.reason == "bad_length"


def test_ah_sa_rejects_esp_packet():
    wire = Suite("esp", "aes-gcm-16").sa("transport").protect(datagram(4, 12))
    with pytest.raises(ParseError) as e:
        SHA256.sa("transport").unprotect(wire)
    assert e.value.reason == "unsupported_protocol"


@pytest.mark.parametrize("kwargs", [
    {"shim_icv": bytes(8)},  # an image without a shim
    {"shim": (PROTO_SKIP, bytes(8)), "shim_icv": bytes(7)},
    {"shim": (256, bytes(8))},
])
def test_bad_shim_arguments(kwargs):
    with pytest.raises(SkipError) as e:
        KEYED_MD5.sa("transport").protect(datagram(4, 12), **kwargs)
    assert e.value.reason == "bad_sa"
