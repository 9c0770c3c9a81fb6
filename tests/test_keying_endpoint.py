"""Two SKIP endpoints over an in-memory link: algorithms, time, tampering, unknown peers."""

from __future__ import annotations

import contextlib
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skip.crypto import skip_numbers as num
from skip.crypto.kdf import counter_n, n_start
from skip.errors import SkipError
from skip.keying.events import CertificateNeeded, Received, Transmit
from skip.keying.policy import KeyingPolicy
from skip.keying.suite import Suite
from skip.wire.checksum import internet_checksum
from skip.wire.ip import build_ipv4, locate_upper
from skip.wire.skip_header import SkipHeader

from .keying_harness import NOW, STARTED, identity, pair, peer_of, udp

LEGACY_TRAFFIC = [(1, 0), (2, 0), (0, 1), (0, 3), (1, 1), (2, 1), (1, 3), (2, 3)]
LEGACY_SUITES = [Suite(1, k, c, m) for k, (c, m) in itertools.product((1, 2, 3), LEGACY_TRAFFIC)
                 if not Suite(1, k, c, m).kij_too_weak]
#: DES Kij Alg wrapping a 3DES or keyed-MD5/SHA traffic key: refused (draft-06 s. 2.3 MUST)
WEAK_SUITES = [Suite(1, 1, c, m) for c, m in LEGACY_TRAFFIC if Suite(1, 1, c, m).kij_too_weak]
MODERN_SUITES = [
    Suite(2, 10, c, c) for c in (num.AES128_GCM, num.AES256_GCM, num.CHACHA20_POLY1305)
] + [
    Suite(2, 10, c, m) for c in (num.AES128_CBC, num.AES256_CBC)
    for m in (num.HMAC_SHA256_128, num.HMAC_SHA384_192, num.HMAC_SHA512_256)
] + [Suite(2, 10, 0, num.HMAC_SHA256_128)]


def _header(wire: bytes) -> SkipHeader:
    _v, _nh, off, proto = locate_upper(wire)
    assert proto == 57
    return SkipHeader.parse_from(wire, off, num.header_ekp_length)[0]


def _skip_offset(wire: bytes) -> int:
    return locate_upper(wire)[2]


@pytest.mark.parametrize("suite", LEGACY_SUITES, ids=str)
def test_every_legacy_combination(suite: Suite) -> None:
    link = pair("skip-1024", suite)
    packet = udp()
    wire, got = link.send(packet)
    assert got.packet == packet and got.algorithms == suite.algorithms and got.version == 1
    header = _header(wire)
    assert header.encode()[0] == 0x10
    assert header.next_header == (51 if suite.mac_alg else 50)
    layout = wire[_skip_offset(wire) + header.length:]
    if suite.mac_alg:  # RFC 1826 AH: next, length in words, reserved, SPI 1
        assert layout[0] == (50 if suite.crypt_alg else 17)
        assert layout[1] * 4 == {1: 16, 3: 20}[suite.mac_alg]
        assert layout[4:8] == b"\0\0\0\1"
    else:  # RFC 1827 ESP: SPI 1 then the 8-byte IV, no sequence number
        assert layout[:4] == b"\0\0\0\1"


@pytest.mark.parametrize("suite", MODERN_SUITES, ids=str)
def test_modern_suites(suite: Suite) -> None:
    link = pair("x25519", suite)
    for i in range(3):
        packet = udp(payload=bytes([i]) * (10 + 50 * i))
        wire, got = link.send(packet)
        assert got.packet == packet and got.version == 2
    header = _header(wire)
    assert header.version == 2 and len(header.ekp) == 48  # Kp, creation time, key-wrap block
    after = wire[_skip_offset(wire) + header.length:]
    if suite.crypt_alg:  # RFC 4303: SPI 1 and the sequence number of the third packet
        assert after[:8] == b"\0\0\0\1\0\0\0\3"
    else:  # RFC 4302 AH: the sequence number follows the SPI
        assert after[4:12] == b"\0\0\0\1\0\0\0\3"


@pytest.mark.parametrize("group", ["x448", "modp-2048", "ffdhe2048"])
def test_modern_groups(group: str) -> None:
    link = pair(group)
    _wire, got = link.send(udp())
    assert got.version == 2


def test_ipv6_and_mkids_both_profiles() -> None:
    for group in ("skip-1024", "x25519"):
        link = pair(group, mkids=True)
        wire, got = link.send(udp(v6=True))
        header = _header(wire)
        assert (header.src_nsid, header.src_mkid, header.dst_mkid) == (8, b"A" * 16, b"B" * 16)
        assert got.packet == udp(v6=True)


def test_tunnel_mode() -> None:
    link = pair("x25519")
    ida, idb = identity("a", ("x25519",)), identity("b", ("x25519",))
    link.a.add_peer(peer_of(idb, "x25519"), NOW, tunnel="2001:db8::2")
    link.b.add_peer(peer_of(ida, "x25519"), NOW, tunnel="2001:db8::1")
    inner = udp()
    wire, got = link.send(inner)
    assert wire[0] >> 4 == 6 and got.packet == inner


def test_hour_boundary_changes_kp_and_old_n_is_still_accepted() -> None:
    link = pair("x25519")
    edge = n_start(counter_n(NOW) + 1)
    late = link.a.protect(udp(), edge - 0.5)
    fresh = link.a.protect(udp(), edge)
    assert _header(late).n + 1 == _header(fresh).n
    assert _header(late).ekp != _header(fresh).ekp  # a new Kp at every change of n
    assert link.b.unprotect(fresh, edge + 10).packet == udp()
    assert link.b.unprotect(late, edge + 10).packet == udp()  # sent at n-1, arrives at n


@pytest.mark.parametrize(("skew", "ok"), [(-3600, True), (3600, True), (-7200, False),
                                          (7200, False)])
@pytest.mark.parametrize("group", ["skip-1024", "x25519"])
def test_clock_skew(group: str, skew: int, ok: bool) -> None:
    link = pair(group)
    wire = link.a.protect(udp(), NOW + skew)
    if ok:
        assert link.b.unprotect(wire, NOW).packet == udp()
    else:
        with pytest.raises(SkipError) as err:
            link.b.unprotect(wire, NOW)
        assert err.value.reason == "n_out_of_window"
        assert link.b.counters["n_out_of_window"] == 1


@pytest.mark.parametrize(("group", "suite"), [
    ("x25519", None),
    ("skip-1024", Suite(1, 2, 2, 1)),  # AH + ESP: the byte rule counts the datagram once
])
def test_kp_lifecycle(group: str, suite: Suite | None) -> None:
    policy = KeyingPolicy(allow_legacy=True, kp_max_bytes=200, kp_max_seconds=120)
    link = pair(group, suite, policy_a=policy)
    first = _header(link.a.protect(udp(payload=bytes(100)), NOW)).ekp
    assert _header(link.a.protect(udp(payload=bytes(100)), NOW + 1)).ekp == first
    after_bytes = _header(link.a.protect(udp(), NOW + 2)).ekp
    assert after_bytes != first  # 10 MB rule, scaled down
    after_time = _header(link.a.protect(udp(), NOW + 2 + 120)).ekp
    assert after_time != after_bytes  # 2-minute rule
    # A second local principal gets its own Kp towards the same peer.
    assert link.a.counters["kp_new"] == 3


def test_receiver_decrypts_each_kp_once() -> None:
    link = pair("skip-1024")
    for _ in range(5):
        link.send(udp())
    assert link.b.counters["kp_decrypted"] == 1 and link.b.counters["rx_ok"] == 5
    assert link.b.counters["kij_computed"] == 1


def test_modern_replay_is_rejected() -> None:
    link = pair("x25519")
    wire, _ = link.send(udp())
    with pytest.raises(SkipError) as err:
        link.b.unprotect(wire, NOW + 1)
    assert err.value.reason == "replay"


def _with_ip_options(wire: bytes) -> bytes:
    """The same IPv4 datagram with 4 bytes of options (NOP, NOP, NOP, EOL) in its header."""
    out = bytearray(wire[:20]) + b"\x01\x01\x01\x00" + wire[20:]
    out[0] = 0x46
    out[2:4] = len(out).to_bytes(2, "big")
    out[10:12] = b"\0\0"
    out[10:12] = internet_checksum(out, 0, 24).to_bytes(2, "big")
    return bytes(out)


@pytest.mark.parametrize("mkids", [False, True], ids=["by-address", "by-mkid"])
def test_a_replay_cannot_reach_its_kp_under_another_cache_key(mkids: bool) -> None:
    """IP options and Rsvd bits change the bytes but not the Kp: the packet must meet the same
    receive state (replay window), not be admitted afresh."""
    link = pair("x25519", mkids=mkids)
    wire, _ = link.send(udp())
    assert link.b.unprotect(_with_ip_options(link.a.protect(udp(), NOW)), NOW).peer == "a"
    rsvd = bytearray(wire)
    rsvd[20] |= 0x05
    for replay, reason in ((_with_ip_options(wire), "replay"), (bytes(rsvd), "bad_header")):
        with pytest.raises(SkipError) as err:
            link.b.unprotect(replay, NOW)
        assert err.value.reason == reason  # modern revision 2.1: Rsvd must be 0
    assert link.b.counters["kp_decrypted"] == 1


def test_pre06_switch() -> None:
    old = pair("skip-1024", pre06=(True, True))
    assert old.send(udp())[1].packet == udp()
    mixed = pair("skip-1024", pre06=(True, False))
    with pytest.raises(SkipError) as err:
        mixed.send(udp())
    assert err.value.reason == "bad_icv"


# --- tampering with every header field ----------------------------------------------------

# (offset in the SKIP header, new value or XOR mask, expected reason); the suites authenticate
# so that a changed key shows up as a failed ICV rather than as garbage.
TAMPER = [
    ("version", 0, lambda b: (b & 0x0F) | 0x30, "bad_version"),
    ("src_nsid", 1, lambda b: 12, "unknown_nsid"),
    ("dst_nsid", 2, lambda b: 1, "not_our_mkid"),  # 4 bytes of AH/ESP read as an MKID
    ("next_header", 3, lambda b: 6, "bad_header"),  # must name the transform (draft-06 1.8)
    ("n", 7, lambda b: b ^ 1, None),
    ("kij_alg", 8, lambda b: 99, "unsupported_kij_alg"),
    ("crypt_alg", 9, lambda b: 99, "unsupported_crypt_alg"),
    ("mac_alg", 10, lambda b: 99, "unsupported_mac_alg"),
    ("comp_alg", 11, lambda b: 1, "unsupported_comp_alg"),
    ("ekp", 12, lambda b: b ^ 0x80, None),
]


@pytest.mark.parametrize(("field", "offset", "change", "reason"), TAMPER, ids=lambda v: str(v))
@pytest.mark.parametrize(("group", "suite"), [("skip-1024", Suite(1, 2, 2, 1)),
                                              ("x25519", Suite(2, 10, 11, 11))],
                         ids=["legacy", "modern"])
def test_tampered_header_field(group, suite, field, offset, change, reason) -> None:
    link = pair(group, suite)
    wire = bytearray(link.a.protect(udp(), NOW))
    at = _skip_offset(wire) + offset
    wire[at] = change(wire[at])
    expected = reason or {
        ("n", 1): "bad_icv",  # another Kijn decrypts another Kp: wrong keys
        ("n", 2): "kp_unwrap_failed",  # another Kijn fails to unwrap
        ("ekp", 1): "bad_icv",  # a wrong Kp gives wrong keys
        ("ekp", 2): "kp_unwrap_failed",  # key wrap carries its own integrity check
    }[(field, suite.version)]
    with pytest.raises(SkipError) as err:
        link.b.unprotect(bytes(wire), NOW)
    assert err.value.reason == expected
    assert link.b.counters[expected] >= 1


@pytest.mark.parametrize(("group", "suite"), [("skip-1024", Suite(1, 2, 2, 1)),
                                              ("x25519", Suite(2, 10, 11, 11))])
def test_tampered_mkids_and_rsvd(group, suite) -> None:
    link = pair(group, suite, mkids=True)
    wire = link.a.protect(udp(), NOW)
    header = _header(wire)
    off = _skip_offset(wire)
    src_at = off + 12 + len(header.ekp)
    # Destination MKID that is not ours: never processed (a gateway would forward it).
    bad_dst = bytearray(wire)
    bad_dst[src_at + 16] ^= 1
    with pytest.raises(SkipError) as err:
        link.b.unprotect(bytes(bad_dst), NOW)
    assert err.value.reason == "not_our_mkid"
    # Source MKID of nobody we know: held for its certificate, not processed.
    bad_src = bytearray(wire)
    bad_src[src_at] ^= 1
    assert link.b.unprotect(bytes(bad_src), NOW) is None
    event = link.b.events()[0]
    assert isinstance(event, CertificateNeeded) and event.nsid == 8
    # Rsvd: ignored on receive and zero in the AH ICV image in draft-06 (s. 1.8); refused in
    # the modern profile (revision 2.1, decisions.md 3.15).
    rsvd = bytearray(wire)
    rsvd[off] |= 0x05
    if header.version == 1:
        assert link.b.unprotect(bytes(rsvd), NOW).packet == udp()
    else:
        with pytest.raises(SkipError) as err:
            link.b.unprotect(bytes(rsvd), NOW)
        assert err.value.reason == "bad_header"


def test_source_mkid_selects_the_key_not_the_address() -> None:
    link = pair("x25519", mkids=True)
    moved = bytearray(link.a.protect(udp(), NOW))
    moved[15] = 99  # the sender moved to another address (DHCP): its MKID still names it
    moved[10:12] = b"\0\0"
    moved[10:12] = internet_checksum(moved, 0, 20).to_bytes(2, "big")
    assert link.b.unprotect(bytes(moved), NOW).peer == "a"


# --- unknown peers -------------------------------------------------------------------------


@pytest.mark.parametrize("group", ["skip-1024", "x25519"])
def test_unknown_peer_inbound_then_release(group: str) -> None:
    link = pair(group)
    link.b.remove_peer("a")
    wire1 = link.a.protect(udp(payload=b"one"), NOW)
    wire2 = link.a.protect(udp(payload=b"two"), NOW)
    assert link.b.unprotect(wire1, NOW) is None and link.b.unprotect(wire2, NOW) is None
    [need] = link.b.events()
    assert isinstance(need, CertificateNeeded) and need.direction == "inbound"
    assert need.name.encode() == bytes([1, 10, 0, 0, 1])  # NSID 1 + address (CDP SKIP name)
    released = link.b.add_peer(peer_of(identity("a", (group,)), group), NOW + 5)
    assert [r.packet for r in released if isinstance(r, Received)] == [
        udp(payload=b"one"), udp(payload=b"two")]


def test_unknown_peer_outbound_queue_is_bounded() -> None:
    policy = KeyingPolicy(queue_per_peer=2)
    link = pair("x25519", policy_a=policy)
    link.a.remove_peer("b")
    assert link.a.protect(udp(), NOW) is None and link.a.protect(udp(), NOW) is None
    with pytest.raises(SkipError) as err:
        link.a.protect(udp(), NOW)
    assert err.value.reason == "queue_full"
    [need] = link.a.events()
    assert need.direction == "outbound"
    out = link.a.add_peer(peer_of(identity("b", ("x25519",)), "x25519"), NOW)
    assert len(out) == 2 and all(isinstance(e, Transmit) for e in out)
    assert link.b.unprotect(out[0].packet, NOW).packet == udp()


def test_bad_public_value_is_refused() -> None:
    from skip.keying.identity import Peer
    with pytest.raises(SkipError) as err:
        Peer.create("x", "skip-1024", b"\x01", addresses=["10.9.9.9"])
    assert err.value.reason == "bad_public_value"


def test_profile_group_rules() -> None:
    with pytest.raises(SkipError) as err:
        pair("skip-1024", Suite(2, 10, 11, 11)).send(udp())
    assert err.value.reason == "bad_group"
    with pytest.raises(SkipError) as err:
        pair("x25519", Suite(1, 2, 2, 1)).send(udp())
    assert err.value.reason == "bad_group"


def test_legacy_is_refused_unless_enabled() -> None:
    link = pair("skip-1024", policy_b=KeyingPolicy())
    with pytest.raises(SkipError) as err:
        link.send(udp())
    assert err.value.reason == "legacy_refused"


# --- robustness ----------------------------------------------------------------------------

_LINK = pair("x25519", mkids=True)
_WIRE = _LINK.a.protect(udp(), NOW)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=120))
def test_unprotect_random_bytes(data: bytes) -> None:
    with contextlib.suppress(SkipError):
        _LINK.b.unprotect(data, NOW)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(_WIRE) - 1), st.integers(1, 255))
def test_unprotect_mutated_packet(position: int, mask: int) -> None:
    link = pair("x25519", mkids=True)
    wire = bytearray(link.a.protect(udp(), NOW))
    wire[position] ^= mask
    try:
        got = link.b.unprotect(bytes(wire), NOW)
    except SkipError:
        return
    # Only the SKIP header's Rsvd nibble (ignored by definition) may change unnoticed; a
    # changed source MKID names an unknown principal, so the packet waits (None).
    assert got is None or (position == 20 and not mask & 0xF0)


def test_a_cached_kp_expires_with_its_n() -> None:
    link = pair("skip-1024")  # legacy: no sequence numbers, so the same packet may come again
    wire, _ = link.send(udp())
    later = n_start(counter_n(NOW) + 2)
    assert link.b.unprotect(wire, later - 1).packet == udp()  # local n = n + 1: still fine
    with pytest.raises(SkipError) as err:
        link.b.unprotect(wire, later)
    assert err.value.reason == "n_out_of_window"


def test_several_principals_on_one_node() -> None:
    """Destination MKIDs select the local principal; each principal pair has its own Kp."""
    from skip.keying.endpoint import SkipEndpoint
    from skip.keying.identity import LocalIdentity, Peer

    from .keying_harness import ADDR, private

    group = "x25519"
    principals = [LocalIdentity.create(name, {group: private(name, group)}, nsid=6,
                                       mkid=name.encode() * 8, addresses=[ADDR["b"][0]])
                  for name in ("u1", "u2")]
    node_b = SkipEndpoint(principals, [peer_of(identity("a", (group,)), group)],
                          started=STARTED)
    node_a = SkipEndpoint([identity("a", (group,))], [
        Peer.create(p.name, group, p.publics[group], nsid=p.nsid, mkid=p.mkid,
                    addresses=[ADDR["b"][0]]) for p in principals], started=STARTED)
    wires = {name: node_a.protect(udp(), NOW, peer=name) for name in ("u1", "u2")}
    assert _header(wires["u1"]).dst_mkid == b"u1" * 8
    assert _header(wires["u1"]).ekp != _header(wires["u2"]).ekp
    for name, wire in wires.items():
        assert node_b.unprotect(wire, NOW).identity == name
    reply = node_b.protect(udp("b", "a"), NOW, identity="u2")
    assert _header(reply).src_mkid == b"u2" * 8
    assert node_a.unprotect(reply, NOW).peer == "u2"


def test_status_shows_no_key_bytes() -> None:
    link = pair("x25519")
    link.send(udp())
    status = link.a.status(NOW + 10)
    assert status["tx_keys"][0]["peer"] == "b" and status["tx_keys"][0]["expires_in"] == 110
    assert status["counters"]["tx_ok"] == 1 and status["kij_cache"]["entries"] == 1
    text = repr(status)
    for secret in (identity("a", ("x25519",)).keys["x25519"].hex(),):
        assert secret not in text


@pytest.mark.parametrize(("group", "suite"), [("skip-1024", Suite(1, 2, 2, 1)),
                                              ("x25519", None)])
def test_host_to_host_tunnel_by_policy(group, suite) -> None:
    policy = KeyingPolicy(allow_legacy=True, mode="tunnel")
    link = pair(group, suite, policy_a=policy, policy_b=policy)
    wire, got = link.send(udp())
    assert got.packet == udp()
    # the whole datagram rides inside: ESP's payload is bigger than the transport-mode one
    transport = pair(group, suite).a.protect(udp(), NOW)
    assert len(wire) >= len(transport) + 20  # one more IPv4 header, inside ESP


def test_policy_is_checked() -> None:
    from skip.errors import ConfigError
    for bad in ({"mode": "bus"}, {"kp_max_bytes": 0}, {"kp_max_bytes": 2**40},
                {"kp_max_seconds": 0}):
        with pytest.raises(ConfigError):
            KeyingPolicy(**bad)


_LINKS: dict[Suite, object] = {}


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(LEGACY_SUITES + MODERN_SUITES), st.binary(max_size=1500), st.booleans(),
       st.booleans())
def test_round_trip_property(suite: Suite, payload: bytes, v6: bool, reply: bool) -> None:
    link = _LINKS.get(suite)
    if link is None:
        link = _LINKS[suite] = pair("skip-1024" if suite.version == 1 else "x25519", suite)
    packet = udp("b", "a", payload, v6=v6) if reply else udp(payload=payload, v6=v6)
    _wire, got = link.send(packet, a_to_b=not reply)
    assert got.packet == packet


def test_named_pair_reuses_its_kp() -> None:
    link = pair("x25519")
    first = link.a.protect(udp(), NOW, identity="a", peer="b")
    second = link.a.protect(udp(), NOW + 1, identity="a", peer="b")
    assert _header(first) == _header(second) and link.a.counters["kp_new"] == 1
    with pytest.raises(SkipError) as err:
        link.a.protect(udp(), NOW, identity="a", peer="nobody")
    assert err.value.reason == "unknown_mkid"


def test_header_cut_short_is_refused_once_its_layout_is_known() -> None:
    link = pair("x25519")
    wire, _ = link.send(udp())  # the layout (and a receive Kp) is now cached
    for cut in range(32, 20 + _header(wire).length):
        with pytest.raises(SkipError) as err:
            link.b.unprotect(build_ipv4("10.0.0.1", "10.0.0.2", 57, wire[20:cut]), NOW)
        assert err.value.reason == "truncated"
