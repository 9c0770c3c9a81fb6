"""Every algorithm suite x mode x IP version (inner and outer): protect, look at the wire
layout, unprotect, and get the datagram back unchanged."""

from __future__ import annotations

import pytest

from skip.crypto.registry import get_cipher, get_integrity
from skip.ipsec import peek
from skip.wire import ah as wire_ah
from skip.wire.checksum import internet_checksum
from skip.wire.ip import IPv4Header, IPv6Header, insertion_point, locate_upper
from tests.ipsec_cases import ALL_SUITES, LAYOUTS, TUNNEL, datagram

SIZES = (0, 1, 63, 1400)


def expected_overhead(suite, outer_version: int) -> int:
    """AH/ESP bytes added, from the RFC layouts and the registry's sizes alone."""
    if suite.protocol == "ah":
        icv = get_integrity(suite.integrity, allow_legacy=True).icv_size
        return wire_ah.fixed_size(suite.sequence) + wire_ah.icv_field_size(
            icv, suite.sequence, outer_version == 6)
    cipher = get_cipher(suite.cipher, allow_legacy=True)
    icv = get_integrity(suite.integrity, allow_legacy=True).icv_size if suite.integrity else 0
    return (8 if suite.sequence else 4) + cipher.iv_size + cipher.icv_size + icv


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda la: f"{la[0]}-in{la[1]}-out{la[2]}")
@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.id)
def test_round_trip(suite, layout):
    mode, inner_v, outer_v = layout
    sender, receiver = suite.sa(mode, outer_v), suite.sa(mode, outer_v)
    for n, size in enumerate(SIZES, start=1):
        for fancy in (False, True):
            original = datagram(inner_v, size, fancy=fancy)
            wire = sender.protect(original)
            assert peek(wire) == ((50 if suite.protocol == "esp" else 51), 0x1234)
            version = outer_v or inner_v
            assert wire[0] >> 4 == version
            # the result is a valid datagram of the outer version
            _, _, at, proto = locate_upper(wire)
            assert proto == (50 if suite.protocol == "esp" else 51)
            if version == 4:
                h = IPv4Header.parse(wire, verify_checksum=True)
                assert h.total_length == len(wire)
            else:
                assert IPv6Header.parse(wire).payload_length == len(wire) - 40
            if mode == "tunnel":
                assert wire[:at] == wire[:20 if version == 4 else 40]
                src, dst = TUNNEL[outer_v]
                head = IPv4Header.parse(wire) if version == 4 else IPv6Header.parse(wire)
                assert (str(head.src), str(head.dst)) == (src, dst)
                body = len(original)
            else:
                body = len(original) - insertion_point(original)[2]
            overhead = len(wire) - at - body
            assert overhead >= expected_overhead(suite, version)
            if suite.protocol == "ah":
                assert overhead == expected_overhead(suite, version)
                assert wire.endswith(original[len(original) - body :])  # AH does not encrypt
            else:
                assert overhead - expected_overhead(suite, version) < 256 + 2  # pad, trailer
            assert receiver.unprotect(wire) == original
            if suite.sequence:
                assert receiver.replay_window.top == sender.last_sequence == 2 * n - (not fancy)
    assert sender.counters.packets_out == receiver.counters.packets_in == 2 * len(SIZES)
    assert receiver.counters.rejected == {}


def test_tunnel_outer_header_fields():
    """Fresh TTL, DSCP+ECN copied, DF copied, IDs counting up; IPv6 traffic class copied."""
    from tests.ipsec_cases import ESP_SUITES

    suite = ESP_SUITES[4]
    sa = suite.sa("tunnel", 4, tunnel_ttl=9)
    sa.next_ipv4_id = 0xFFFF
    inner = datagram(4, 10)  # TOS 0x2A, DF set
    a, b = IPv4Header.parse(sa.protect(inner)), IPv4Header.parse(sa.protect(inner))
    assert (a.ttl, a.tos, a.flags, a.identification, b.identification) == (9, 0x2A, 2, 0xFFFF, 0)
    v6 = suite.sa("tunnel", 6)
    outer = IPv6Header.parse(v6.protect(datagram(4, 10)))
    assert (outer.traffic_class, outer.flow_label, outer.hop_limit) == (0x2A, 0, 64)
    outer4 = IPv4Header.parse(sa.protect(datagram(6, 10)))  # 6-in-4: DF clear, TC copied
    assert (outer4.tos, outer4.flags) == (0x29, 0)
    assert IPv4Header.parse(suite.sa("tunnel", 4, df="set").protect(datagram(6, 3))).flags == 2


def test_transport_keeps_header_chain_and_fixes_checksum():
    from tests.ipsec_cases import AH_SUITES, ESP_SUITES

    for suite in (ESP_SUITES[5], AH_SUITES[1]):
        original = datagram(4, 30, fancy=True)
        wire = suite.sa("transport").protect(original)
        hl = (original[0] & 15) * 4
        assert wire[20:hl] == original[20:hl]  # options untouched
        assert wire[9] == (50 if suite.protocol == "esp" else 51)
        assert internet_checksum(wire, 0, hl) == 0
        original6 = datagram(6, 30, fancy=True)
        wire6 = suite.sa("transport").protect(original6)
        _, nh_off, at, _ = insertion_point(original6)
        assert wire6[40:at] == original6[40:at][: nh_off - 40] + bytes(
            [50 if suite.protocol == "esp" else 51]) + original6[nh_off + 1 : at]
