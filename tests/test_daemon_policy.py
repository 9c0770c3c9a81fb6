"""Policy lookup order (host, then longest network, then default), nomadic peers by MKID,
the key-management bypass, and the header peek that feeds it (checked against packets built
by the standard library's ipaddress/struct, not by the code under test)."""

from __future__ import annotations

import contextlib
import ipaddress
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skip.daemon.config import parse_config
from skip.daemon.packet import summarize, too_big
from skip.daemon.policy import PolicyTable
from skip.errors import ParseError
from skip.wire.checksum import internet_checksum
from skip.wire.ip import ExtensionHeader, build_ipv6

CONFIG = """
[default]
action = "allow-cleartext"

[[peer]]
name = "wide"
networks = ["10.0.0.0/8"]
tunnel = "192.0.2.1"
action = "protect"

[[peer]]
name = "narrow"
networks = ["10.9.0.0/16", "2001:db8:9::/48"]
tunnel = "192.0.2.2"
action = "deny"

[[peer]]
name = "exempt"
hosts = ["10.9.0.7"]
action = "allow-cleartext"
mode = "transport"

[[peer]]
name = "nomad"
nomadic = true
nsid = 1
mkid = "0a000001"
action = "protect"
"""


@pytest.fixture()
def table() -> PolicyTable:
    return PolicyTable(parse_config(CONFIG, Path("t.toml")))


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(
    ("address", "rule", "matched"),
    [
        ("10.9.0.7", "exempt", "host"),
        ("10.9.0.8", "narrow", "network"),
        ("10.9.255.255", "narrow", "network"),
        ("10.10.0.1", "wide", "network"),
        ("11.0.0.1", "default", "default"),
        ("2001:db8:9:1::5", "narrow", "network"),
        ("2001:db8:a::5", "default", "default"),
    ],
)
def test_host_then_longest_network_then_default(table, address, rule, matched) -> None:
    decision = table.for_address(ip(address))
    assert (decision.rule.name, decision.matched) == (rule, matched)
    assert decision.action == decision.rule.action


def v4_udp(src: str, dst: str, sport: int, dport: int, payload: bytes = b"x") -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                      ip(src).packed, ip(dst).packed)
    return hdr + udp


def v6_udp(src: str, dst: str, sport: int, dport: int, ext: bytes = b"") -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 9, 0) + b"x"
    nxt = 0 if ext else 17
    return struct.pack("!IHBB16s16s", 6 << 28, len(ext) + len(udp), nxt, 64, ip(src).packed,
                       ip(dst).packed) + ext + udp


def test_key_management_bypasses_even_a_deny_rule(table) -> None:
    info = summarize(v4_udp("10.1.1.1", "10.9.0.8", 40000, 1640))
    assert table.outbound(info).matched == "key-management"
    assert table.outbound(info).action == "allow-cleartext"
    other = summarize(v4_udp("10.1.1.1", "10.9.0.8", 40000, 1641))
    assert table.outbound(other).action == "deny"


def test_ipv6_ports_found_behind_extension_header(table) -> None:
    hop_by_hop = bytes([17, 0]) + b"\x01\x04\0\0\0\0"  # next=UDP, len 0, PadN
    info = summarize(v6_udp("2001:db8::1", "2001:db8:9::1", 1640, 5, hop_by_hop))
    assert (info.protocol, info.sport, info.dport) == (17, 1640, 5)
    assert table.outbound(info).matched == "key-management"


@pytest.mark.parametrize(("offset", "ports"), [(0, (1640, 5)), (185, (None, None))])
def test_ipv6_fragments_first_has_ports_later_not(offset: int, ports: tuple) -> None:
    udp = struct.pack("!HHHH", 1640, 5, 8, 0)
    fragment = ExtensionHeader.fragment(17, offset, True, 0x1234)
    hop_by_hop = ExtensionHeader.with_options(0, 17, [])
    packet = build_ipv6("2001:db8::1", "2001:db8:9::1", 17, udp,
                        extension_headers=[hop_by_hop, fragment])
    info = summarize(packet)
    assert (info.protocol, info.sport, info.dport) == (17, *ports)


def test_nomadic_peer_matched_by_name_not_address(table) -> None:
    info = summarize(v4_udp("198.51.100.77", "10.57.0.1", 1, 2))
    decision = table.inbound(info, "nomad")
    assert decision.rule.name == "nomad" and table.authorised(decision, "nomad")
    other = table.inbound(info, "wide")
    assert other.matched == "default" and not table.authorised(other, "wide")
    assert table.authorised(other, "someone-from-the-store")


def test_peer_owns_only_its_addresses(table) -> None:
    info = summarize(v4_udp("10.9.0.8", "10.57.0.1", 1, 2))
    decision = table.inbound(info, "wide")
    assert decision.rule.name == "narrow"
    assert not table.authorised(decision, "wide") and table.authorised(decision, "narrow")


def test_routed_prefixes_skip_cleartext_rules(table) -> None:
    assert {str(n) for n in table.routed_prefixes()} == {
        "10.0.0.0/8", "10.9.0.0/16", "2001:db8:9::/48"}


@given(st.binary(max_size=80))
def test_summarize_raises_only_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        summarize(data)


def test_fragmentation_needed_is_a_valid_icmp_error() -> None:
    original = v4_udp("10.57.0.2", "10.9.0.5", 1, 2, b"y" * 1400)
    err = too_big(original, 1300, ip("10.57.0.1"))
    assert internet_checksum(err[:20]) == 0  # header checksum verifies
    assert internet_checksum(err[20:]) == 0  # ICMP checksum verifies
    assert err[20:22] == bytes([3, 4])
    assert struct.unpack_from("!H", err, 26)[0] == 1300
    assert err[28:48] == original[:20]
    assert summarize(err).destination == ip("10.57.0.2")
    assert len(err) <= 576


def test_packet_too_big_v6_checksum_with_pseudo_header() -> None:
    original = v6_udp("fd57::2", "2001:db8:9::5", 1, 2)
    err = too_big(original, 1280, ip("fd57::1"))
    pseudo = err[8:40] + struct.pack("!I3xB", len(err) - 40, 58)
    assert internet_checksum(pseudo + err[40:]) == 0
    assert (err[40], struct.unpack_from("!I", err, 44)[0]) == (2, 1280)


def reference_rule(config_table: PolicyTable, address: ipaddress._BaseAddress) -> tuple[str, str]:
    """Host, then longest network, then default, worked out with the standard library's
    ``in`` over every rule, independently of the table's lookup structures and its cache."""
    rules = list(config_table.by_label.values())
    for rule in rules:
        if address in rule.hosts:
            return rule.name, "host"
    nets = [(net.prefixlen, rule.name) for rule in rules for net in rule.networks
            if net.version == address.version and address in net]
    if nets:
        return max(nets)[1], "network"
    return "default", "default"


V4_NEAR_RULES = st.one_of(st.integers(0x0A000000, 0x0AFFFFFF), st.integers(0, 2**32 - 1)) \
    .map(ipaddress.IPv4Address)


@given(st.lists(V4_NEAR_RULES, min_size=1, max_size=40))
def test_cached_decisions_agree_with_the_reference(addresses: list) -> None:
    table = PolicyTable(parse_config(CONFIG, Path("t.toml")))
    for _ in range(2):  # the second pass is answered from the cache
        for address in [*addresses, ipaddress.ip_address("10.9.0.7")]:
            decision = table.for_address(address)
            assert (decision.rule.name, decision.matched) == reference_rule(table, address)


def test_decision_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("skip.daemon.policy.CACHE_SIZE", 8)
    table = PolicyTable(parse_config(CONFIG, Path("t.toml")))
    for n in range(100):
        address = ipaddress.IPv4Address(0x0A090000 + n)
        assert table.for_address(address).rule.name == ("exempt" if n == 7 else "narrow")
        assert len(table._cache) <= 8
