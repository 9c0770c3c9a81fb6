"""IPv4/IPv6 wire formats: parsing, building, the header chain and the AH ICV image."""

from __future__ import annotations

import contextlib
import json
import struct
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skip.errors import ParseError
from skip.wire import ip
from skip.wire.checksum import internet_checksum
from skip.wire.ip import ExtensionHeader, IPv4Header, IPv4Option, IPv6Header, IPv6Option
from tests.ipsec_cases import ipv4_router_hop, ipv6_router_hops

VECTORS = Path(__file__).parent / "vectors"


def rfc1071(data: bytes) -> int:
    """The textbook RFC 1071 loop, as an independent reference for the fast checksum."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def published_ipv4_headers() -> list[bytes]:
    """IPv4 headers printed in RFC 3602 and RFC 7634 (checksums computed by their authors)."""
    heads = []
    for v in json.loads((VECTORS / "rfc3602_aes_cbc_esp.json").read_text())["vectors"][4:]:
        heads += [bytes.fromhex(v["original_ip_header"]),
                  bytes.fromhex(v["post_encryption_ip_header"])]
    v = json.loads((VECTORS / "rfc7634_chacha_esp.json").read_text())["vectors"][0]
    heads += [bytes.fromhex(v["source_packet"])[:20], bytes.fromhex(v["esp_packet_full"])[:20]]
    return heads


@pytest.mark.parametrize("header", published_ipv4_headers())
def test_checksum_of_published_headers_verifies(header):
    assert internet_checksum(header) == 0
    parsed = IPv4Header.parse(header, verify_checksum=True)
    assert parsed.encode() == header  # re-encoding recomputes the same checksum


@given(st.binary(min_size=2, max_size=60).filter(lambda b: len(b) % 2 == 0))
def test_checksum_matches_rfc1071(data):
    assert internet_checksum(data) == rfc1071(data)


def test_checksum_of_all_ones_sum_is_zero_not_ffff():
    # sum 0xFFFF ("negative zero") must give checksum 0, all-zero data gives 0xFFFF
    assert internet_checksum(b"\xff\xff") == rfc1071(b"\xff\xff") == 0
    assert internet_checksum(bytes(4)) == rfc1071(bytes(4)) == 0xFFFF


def test_ipv4_parse_fields_of_rfc3602_case5():
    head = bytes.fromhex("4500005408f200004001f9fec0a87b03c0a87b64")
    h = IPv4Header.parse(head)
    assert (h.src, h.dst, h.protocol, h.total_length, h.identification, h.ttl) == (
        IPv4Address("192.168.123.3"), IPv4Address("192.168.123.100"), 1, 84, 0x08F2, 64)


def test_ipv4_options_round_trip_and_padding():
    nop = IPv4Option(1)
    opts = [IPv4Option(148, b"\0\0"), nop, nop, IPv4Option(7, bytes([4]) + bytes(8))]
    pkt = ip.build_ipv4("10.0.0.1", "10.0.0.2", 17, b"payload!", options=opts)
    h = IPv4Header.parse(pkt, verify_checksum=True)
    assert h.header_length == 40 and h.total_length == len(pkt)
    assert ip.parse_ipv4_options(h.options) == (*opts, IPv4Option(0))  # EOL padding
    assert [o.mutable for o in opts] == [False, False, False, True]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b[:10], "truncated"),
        (lambda b: bytes([0x55]) + b[1:], "bad_version"),
        (lambda b: bytes([0x44]) + b[1:], "bad_header"),
        (lambda b: bytes([0x4F]) + b[1:], "truncated"),
        (lambda b: b[:2] + struct.pack("!H", 10) + b[4:], "bad_length"),
        (lambda b: b + b"x", "bad_length"),
        (lambda b: b[:-1], "truncated"),
        (lambda b: b[:8] + b"\x41" + b[9:], "bad_checksum"),
        (lambda b: b[:6] + b"\x20\x00" + b[8:], "fragment"),
        (lambda b: b[:6] + b"\x00\x10" + b[8:], "fragment"),
    ],
)
def test_ipv4_rejections(mutate, reason):
    pkt = ip.build_ipv4("10.0.0.1", "10.0.0.2", 17, bytes(8))
    bad = mutate(pkt)
    if reason == "fragment":  # keep the checksum right so the fragment test is what fires
        buf = bytearray(bad)
        ip.finish_ipv4_header(buf)
        bad = bytes(buf)
    with pytest.raises(ParseError) as e:
        ip.locate_upper(bad)
    assert e.value.reason == reason


def test_ipv4_bad_option_length():
    opts = [IPv4Option(7, bytes(6))]
    pkt = bytearray(ip.build_ipv4("10.0.0.1", "10.0.0.2", 17, b"", options=opts))
    pkt[21] = 40  # option length beyond the header
    with pytest.raises(ParseError) as e:
        IPv4Header.parse(bytes(pkt))
    assert e.value.reason == "bad_option"


def ipv6_with_chain() -> bytes:
    return ip.build_ipv6(
        "2001:db8::1", "2001:db8::2", ip.PROTO_UDP, b"u" * 12,
        extension_headers=[
            ExtensionHeader.with_options(ip.PROTO_HOPOPTS, 0, [IPv6Option(5, b"\0\0")]),
            ExtensionHeader.with_options(ip.PROTO_DSTOPTS, 0, [IPv6Option(0x1E, b"pre")]),
            ExtensionHeader.routing(0, ["2001:db8::3", "2001:db8::4"]),
            ExtensionHeader.fragment(0, 0, False, 0x1234),  # atomic fragment: a whole datagram
            ExtensionHeader.with_options(ip.PROTO_DSTOPTS, 0, [IPv6Option(0x1E, b"post")]),
        ],
    )


def test_ipv6_chain_insertion_point_and_upper():
    pkt = ipv6_with_chain()
    # 40 fixed + 8 HBH + 8 DST + 40 RH + 8 FRAG = 104; the trailing DST (8) stays behind ESP
    assert ip.insertion_point(pkt) == (6, 96, 104, ip.PROTO_DSTOPTS)
    assert ip.locate_upper(pkt) == (6, 104, 112, ip.PROTO_UDP)
    h = IPv6Header.parse(pkt)
    assert (h.next_header, h.payload_length) == (ip.PROTO_HOPOPTS, len(pkt) - 40)
    rh, end = ExtensionHeader.parse_from(pkt, 56, ip.PROTO_ROUTING)
    assert end == 96 and rh.body[1] == 2 and rh.encode() == pkt[56:96]
    dst, _ = ExtensionHeader.parse_from(pkt, 104, ip.PROTO_DSTOPTS)
    assert dst.options()[0] == IPv6Option(0x1E, b"post")


def test_ipv6_destination_options_without_routing_stay_behind():
    pkt = ip.build_ipv6("::1", "::2", 6, b"t", extension_headers=[
        ExtensionHeader.with_options(ip.PROTO_DSTOPTS, 0, [IPv6Option(0x1E, b"x")])])
    assert ip.insertion_point(pkt) == (6, 6, 40, ip.PROTO_DSTOPTS)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ([ExtensionHeader.fragment(0, 8, False, 1)], "fragment"),
        ([ExtensionHeader.fragment(0, 0, True, 1)], "fragment"),
        ([ExtensionHeader.routing(0, ["::3"], segments_left=2)], "bad_header"),
    ],
)
def test_ipv6_chain_rejections(headers, reason):
    pkt = ip.build_ipv6("::1", "::2", 17, b"x" * 8, extension_headers=headers)
    for fn in (ip.insertion_point, ip.locate_upper):
        with pytest.raises(ParseError) as e:
            fn(pkt)
        assert e.value.reason == reason


def test_ipv6_truncated_extension_header():
    pkt = bytearray(ip.build_ipv6("::1", "::2", 17, b"", extension_headers=[
        ExtensionHeader.with_options(ip.PROTO_HOPOPTS, 0, [IPv6Option(5, b"\0\0")])]))
    pkt[41] = 3  # claims 32 bytes
    with pytest.raises(ParseError) as e:
        ip.locate_upper(bytes(pkt))
    assert e.value.reason == "truncated"


# --- the AH ICV image: what a router may change must not change the image ------------------


def image(pkt: bytes, end: int) -> bytes:
    buf = bytearray(pkt[:end])
    ip.zero_mutable_fields(buf, end)
    return bytes(buf)


def test_ipv4_image_is_stable_across_routers_with_source_route():
    route = IPv4Address("10.9.9.9").packed + IPv4Address("10.0.0.2").packed  # hop 2, final
    opts = [
        IPv4Option(ip.IPV4_OPT_LSRR, bytes([4]) + route),
        IPv4Option(ip.IPV4_OPT_RR, bytes([4]) + bytes(8)),
        IPv4Option(68, bytes([5, 0]) + bytes(8)),
        IPv4Option(148, b"\0\0"),
    ]
    sent = ip.build_ipv4("10.0.0.1", "10.5.5.5", ip.PROTO_AH, b"data", tos=0xB8,
                         identification=7, options=opts)
    hl = (sent[0] & 15) * 4
    seen = sent
    for hop in (b"\x0a\x05\x05\x05", b"\x0a\x09\x09\x09"):
        seen = ipv4_router_hop(seen, hop)
    assert IPv4Header.parse(seen).dst == IPv4Address("10.0.0.2")
    assert seen != sent
    assert image(seen, hl) == image(sent, hl)
    img = image(sent, hl)
    assert img[16:20] == IPv4Address("10.0.0.2").packed  # final destination
    assert img[1] == img[8] == 0 and img[6:8] == img[10:12] == b"\0\0"
    assert img[20:60].count(0) == 40 - 2  # all zeroed but router alert type and length
    assert b"\x94\x04\x00\x00" in img[20:]


@pytest.mark.parametrize("offset", [0, 2, 3, 4, 5, 9, 12, 19])
def test_ipv4_image_keeps_immutable_fields(offset):
    pkt = ip.build_ipv4("10.0.0.1", "10.0.0.2", ip.PROTO_AH, b"", identification=0x1234)
    changed = bytearray(pkt)
    changed[offset] ^= 0x01
    assert image(bytes(changed), 20) != image(pkt, 20)


def test_ipv6_image_is_stable_across_routers():
    pkt = ip.build_ipv6(
        "2001:db8::1", "2001:db8::a", ip.PROTO_AH, b"x" * 8, traffic_class=0xB8,
        flow_label=0x12345, extension_headers=[
            ExtensionHeader.with_options(ip.PROTO_HOPOPTS, 0,
                                         [IPv6Option(0x3E, b"mutable"), IPv6Option(5, b"\0\0")]),
            ExtensionHeader.routing(0, ["2001:db8::b", "2001:db8::c", "2001:db8::f"]),
        ])
    end = ip.insertion_point(pkt)[2]
    seen = ipv6_router_hops(pkt)
    assert IPv6Header.parse(seen).dst == IPv6Address("2001:db8::f") and seen != pkt
    assert image(seen, end) == image(pkt, end)
    img = image(pkt, end)
    assert img[24:40] == IPv6Address("2001:db8::f").packed
    assert img[0] == 0x60 and img[1:4] == b"\0\0\0" and img[7] == 0
    assert b"\x3e\x07" + bytes(7) in img and b"\x05\x02\x00\x00" in img


def test_ipv6_image_refuses_unknown_routing_type_in_flight():
    pkt = ip.build_ipv6("::1", "::2", ip.PROTO_AH, b"", extension_headers=[
        ExtensionHeader.routing(0, ["::3"], routing_type=253)])
    with pytest.raises(ParseError) as e:
        image(pkt, 64)
    assert e.value.reason == "unsupported_protocol"


# --- hypothesis: parsers return or raise ParseError, nothing else --------------------------


def _parsers(data: bytes) -> None:
    for fn in (
        ip.insertion_point,
        ip.locate_upper,
        IPv4Header.parse,
        IPv6Header.parse,
        lambda d: ip.parse_ipv4_options(d),
        lambda d: ExtensionHeader.parse_from(d, 0, d[0] % 4 * 20 if d else 0),
        lambda d: ExtensionHeader(ip.PROTO_DSTOPTS, 0, d[2:]).options(),
        lambda d: image(d, ip.locate_upper(d, verify_checksum=False)[2]),
    ):
        with contextlib.suppress(ParseError):
            fn(data)


@settings(max_examples=300)
@given(st.binary(max_size=120))
def test_parsers_raise_only_parse_error_on_noise(data):
    _parsers(data)


@settings(max_examples=300)
@given(st.data())
def test_parsers_raise_only_parse_error_on_mutated_packets(data):
    base = data.draw(st.sampled_from([
        ipv6_with_chain(),
        ip.build_ipv4("10.0.0.1", "10.0.0.2", 17, b"abc", options=[
            IPv4Option(ip.IPV4_OPT_LSRR, bytes([4]) + bytes(8)), IPv4Option(148, b"\0\0")]),
    ]))
    pkt = bytearray(base)
    for _ in range(data.draw(st.integers(1, 4))):
        pkt[data.draw(st.integers(0, len(pkt) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(pkt)))
    _parsers(bytes(pkt[:cut]))
    _parsers(bytes(pkt))


# --- the one IPv6 chain walk ----------------------------------------------------------------


def test_chain_walk_lists_headers_in_order_and_ends_where_locate_upper_does():
    headers = [ExtensionHeader.with_options(ip.PROTO_HOPOPTS, 0, []),
               ExtensionHeader.routing(0, ["2001:db8::9"], segments_left=0),
               ExtensionHeader.with_options(ip.PROTO_DSTOPTS, 0, [IPv6Option(5, b"\0\0")])]
    pkt = ip.build_ipv6("2001:db8::1", "2001:db8::2", ip.PROTO_UDP, bytes(8),
                        extension_headers=headers)
    chain = ip.ipv6_extension_headers(pkt)
    assert [kind for kind, _, _ in chain] == [ip.PROTO_HOPOPTS, ip.PROTO_ROUTING,
                                             ip.PROTO_DSTOPTS]
    assert [start for _, start, _ in chain] == [40, 48, 72]
    assert ip.locate_upper(pkt) == (6, 72, chain[-1][2], ip.PROTO_UDP)


@pytest.mark.parametrize(("offset", "more", "walked"), [(0, True, 2), (8, False, 1)])
def test_chain_walk_keeps_fragments_only_when_asked(offset, more, walked):
    # a later fragment ends the walk: the hop-by-hop-looking bytes behind it are payload
    headers = [ExtensionHeader.fragment(0, offset, more, 7),
               ExtensionHeader.with_options(ip.PROTO_HOPOPTS, 0, [])]
    pkt = ip.build_ipv6("2001:db8::1", "2001:db8::2", ip.PROTO_UDP, bytes(8),
                        extension_headers=headers)
    assert len(ip.ipv6_extension_headers(pkt, keep_fragments=True)) == walked
    with pytest.raises(ParseError) as e:
        ip.ipv6_extension_headers(pkt)
    assert e.value.reason == "fragment"
