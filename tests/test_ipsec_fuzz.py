"""Hypothesis: unprotect, peek and the wire parsers either succeed or raise the project's
own error type, whatever bytes arrive."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skip.errors import SkipError
from skip.ipsec import peek
from skip.wire.ah import AHHeader
from skip.wire.esp import ESPHeader, ESPTrailer
from skip.wire.ip import (
    ExtensionHeader,
    IPv4Option,
    IPv6Option,
    build_ipv4,
    build_ipv6,
    finish_ipv4_header,
)
from tests.ipsec_cases import LAYOUTS, Suite, datagram

SUITES = (
    Suite("esp", "aes-gcm-16"),
    Suite("esp", "aes-cbc", "hmac-sha1-96"),
    Suite("esp", "null", "hmac-sha2-256-128"),
    Suite("esp", "aes-cbc"),  # unauthenticated: garbage reaches decryption and padding
    Suite("esp", "des-cbc", sequence=False),
    Suite("ah", integrity="hmac-sha2-256-128", esn=True),
    Suite("ah", integrity="keyed-md5", sequence=False),
)
RECEIVERS = [(s, layout, s.sa(layout[0], layout[2])) for s in SUITES for layout in LAYOUTS]
SAMPLES = [s.sa(la[0], la[2]).protect(datagram(la[1], 24, fancy=True)) for s, la, _ in RECEIVERS]


def survive(call, *args, **kwargs) -> None:
    with contextlib.suppress(SkipError):
        call(*args, **kwargs)


def with_valid_checksum(packet: bytearray) -> bytes:
    """Mutations usually break the IPv4 checksum first; repair it to reach the layers below."""
    if len(packet) >= 20 and packet[0] >> 4 == 4 and 20 <= (packet[0] & 15) * 4 <= len(packet):
        finish_ipv4_header(packet)
    return bytes(packet)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(RECEIVERS) - 1), st.binary(max_size=200))
def test_unprotect_noise(index, data):
    _, _, rx = RECEIVERS[index]
    survive(rx.unprotect, data)
    survive(rx.unprotect, data, shim_len=len(data) % 24)
    survive(peek, data)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_unprotect_mutated_packets(data):
    index = data.draw(st.integers(0, len(RECEIVERS) - 1))
    _, _, rx = RECEIVERS[index]
    packet = bytearray(SAMPLES[index])
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(packet) - 1))
        packet[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(packet)))
    survive(rx.unprotect, bytes(packet))
    survive(rx.unprotect, bytes(packet[:cut]))
    survive(rx.unprotect, with_valid_checksum(packet))
    survive(peek, bytes(packet))


@given(st.binary(max_size=64), st.integers(0, 70), st.booleans())
def test_header_parsers(data, offset, sequence):
    survive(AHHeader.parse_from, data, offset, sequence=sequence)
    survive(ESPHeader.parse_from, data, offset, sequence=sequence)
    survive(ESPTrailer.parse, data, check_pattern=sequence)


IPV4_OPTIONS = st.lists(st.sampled_from([
    IPv4Option(148, b"\0\0"), IPv4Option(1), IPv4Option(7, bytes([4]) + bytes(8)),
    IPv4Option(68, bytes([5, 0]) + bytes(4)), IPv4Option(130, bytes(9)),
]), max_size=3)
IPV6_CHAINS = st.lists(st.sampled_from([
    ExtensionHeader.with_options(0, 0, [IPv6Option(0x3E, b"x" * 5)]),
    ExtensionHeader.with_options(60, 0, [IPv6Option(0x1E, b"dst")]),
    ExtensionHeader.routing(0, ["2001:db8::5", "2001:db8::6"]),
    ExtensionHeader.fragment(0, 0, False, 99),
]), max_size=3).map(lambda hs: sorted(hs, key=lambda h: h.kind != 0))  # hop-by-hop first


@st.composite
def datagrams(draw) -> bytes:
    payload = draw(st.binary(max_size=300))
    protocol = draw(st.sampled_from([1, 6, 17, 58, 253]))
    if draw(st.booleans()):
        return build_ipv4("10.0.0.1", "10.9.9.9", protocol, payload,
                          tos=draw(st.integers(0, 255)), ttl=draw(st.integers(1, 255)),
                          identification=draw(st.integers(0, 65535)),
                          flags=draw(st.sampled_from([0, 2])), options=draw(IPV4_OPTIONS))
    return build_ipv6("2001:db8::1", "2001:db8::9", protocol, payload,
                      traffic_class=draw(st.integers(0, 255)),
                      flow_label=draw(st.integers(0, 2**20 - 1)),
                      hop_limit=draw(st.integers(1, 255)), extension_headers=draw(IPV6_CHAINS))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SUITES), st.sampled_from(LAYOUTS), datagrams())
def test_round_trip_of_arbitrary_datagrams(suite, layout, packet):
    mode, _, outer = layout
    if mode == "tunnel":
        outer = 4 if packet[0] >> 4 == 6 else 6  # always the other version outside
    assert suite.sa(mode, outer).unprotect(suite.sa(mode, outer).protect(packet)) == packet
