"""The per-packet shortcuts of the engine agree with the general code they stand in for.

The option-free IPv4 / lone IPv6 header rewrites (``respliced_ipv4``, ``respliced_ipv6``) are
checked against a full recomputation (``finish_ipv4_header`` and the general splice), also for
headers whose old checksum is wrong; the shortcut layouts give the same bytes as the general
chain walk; and oversized datagrams are refused with ``bad_length`` on every path, not with a
``struct.error`` from a pack.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skip.errors import ParseError
from skip.ipsec.layout import finish_head, spliced_head, transport_head
from skip.wire.checksum import internet_checksum
from skip.wire.ip import (
    build_ipv4,
    build_ipv6,
    finish_ipv4_header,
    insertion_point,
    ipv4_sum,
    locate_upper,
    lone_ipv6,
    plain_ipv4,
    respliced_ipv4,
    respliced_ipv6,
)
from tests.ipsec_cases import AH_SUITES, ALL_SUITES, ESP_SUITES, LAYOUTS, TUNNEL, datagram

GCM = next(s for s in ESP_SUITES if s.cipher == "aes-gcm-16" and s.sequence)
HMAC_AH = next(s for s in AH_SUITES if s.integrity == "hmac-sha2-256-128")

ipv4_headers = st.builds(
    lambda tos, ident, df, ttl, proto, src, dst, size: build_ipv4(
        src, dst, proto, bytes(size), tos=tos, identification=ident, flags=2 if df else 0,
        ttl=ttl),
    st.integers(0, 255), st.integers(0, 0xFFFF), st.booleans(), st.integers(0, 255),
    st.integers(0, 255), st.ip_addresses(v=4), st.ip_addresses(v=4), st.integers(0, 64))


def full_rewrite(packet: bytes, total: int, protocol: int) -> bytes:
    """The slow, obvious way: copy, patch length and protocol, sum the header again."""
    head = bytearray(packet[:20])
    struct.pack_into("!H", head, 2, total)
    head[9] = protocol
    finish_ipv4_header(head)
    return bytes(head)


@settings(max_examples=300, deadline=None)
@given(packet=ipv4_headers, total=st.integers(20, 0xFFFF), protocol=st.integers(0, 255),
       bad=st.integers(0, 0xFFFF))
def test_respliced_ipv4_equals_a_full_recomputation(packet, total, protocol, bad):
    fields = plain_ipv4(packet, True)
    assert fields is not None and ipv4_sum(packet) == 0
    want = full_rewrite(packet, total, protocol)
    assert respliced_ipv4(fields, 0, total, protocol) == want  # verified: incremental
    assert internet_checksum(want, 0, 20) == 0
    # A wrong old checksum does not carry over when the old sum is given (the send side).
    broken = packet[:10] + bad.to_bytes(2, "big") + packet[12:]
    fields = plain_ipv4(broken, False)
    assert respliced_ipv4(fields, ipv4_sum(broken), total, protocol) == want


def test_plain_ipv4_refuses_what_the_general_path_must_see():
    plain = datagram(4, 40)
    assert plain_ipv4(plain, True) is not None
    assert plain_ipv4(datagram(4, 40, fancy=True), False) is None  # options
    assert plain_ipv4(datagram(6, 40), False) is None
    assert plain_ipv4(plain[:-1], False) is None  # length disagrees
    fragment = bytearray(plain)
    fragment[6] |= 0x20  # MF
    assert plain_ipv4(bytes(fragment), False) is None
    bad_sum = bytearray(plain)
    bad_sum[11] ^= 1
    assert plain_ipv4(bytes(bad_sum), False) is not None
    assert plain_ipv4(bytes(bad_sum), True) is None


def test_lone_ipv6_is_only_the_extension_free_whole_datagram():
    plain = datagram(6, 40)
    assert lone_ipv6(plain)
    assert insertion_point(plain) == locate_upper(plain) == (6, 6, 40, plain[6])
    assert not lone_ipv6(datagram(6, 40, fancy=True))  # hop-by-hop and destination options
    assert not lone_ipv6(plain[:-1]) and not lone_ipv6(plain + b"x")  # length disagrees
    assert not lone_ipv6(datagram(4, 40)) and not lone_ipv6(plain[:39])
    with pytest.raises(ParseError) as err:
        locate_upper(plain[:-1])  # the general walk says what is wrong
    assert err.value.reason == "truncated"


@pytest.mark.parametrize("fancy", [False, True])
def test_ipv6_splice_equals_the_general_one(fancy):
    packet = datagram(6, 50, fancy=fancy)
    _, nh_off, offset, _ = insertion_point(packet)
    general = bytes(finish_head(transport_head(packet, nh_off, offset, 50, 500)))
    assert spliced_head(packet, nh_off, offset, 50, 500) == general
    if not fancy:
        assert respliced_ipv6(packet, 500, 50) == general


@pytest.mark.parametrize("suite", [GCM, HMAC_AH], ids=lambda s: s.id)
@pytest.mark.parametrize(("mode", "version", "outer"),
                         [("transport", 4, None), ("transport", 6, None), ("tunnel", 4, 4),
                          ("tunnel", 6, 6)])
def test_oversized_datagrams_are_bad_length_on_every_path(suite, mode, version, outer):
    sa = suite.sa(mode, outer)
    room = 0xFFFF - (20 if version == 4 else 0)
    build = build_ipv4 if version == 4 else build_ipv6
    src, dst = TUNNEL[version]
    with pytest.raises(ParseError) as err:
        sa.protect(build(src, dst, 17, bytes(room)))
    assert err.value.reason == "bad_length"
    assert sa.counters.rejected == {"bad_length": 1}


@pytest.mark.parametrize("kind", [bytearray, memoryview], ids=lambda k: k.__name__)
@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.id)
def test_any_bytes_like_packet_goes_in_and_bytes_come_out(suite, kind):
    """The fast paths join with ``+``, which a memoryview does not offer: the public methods
    take bytes, bytearray and memoryview alike (and shims of any of them)."""
    for mode, inner, outer in LAYOUTS:
        for fancy in (False, True):
            tx, rx = suite.sa(mode, outer), suite.sa(mode, outer)
            original = datagram(inner, 50, fancy=fancy)
            wire = tx.protect(kind(original))
            assert type(wire) is bytes
            out = rx.unprotect(kind(wire))
            assert type(out) is bytes and out == original
