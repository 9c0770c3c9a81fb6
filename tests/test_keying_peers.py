"""A peer's life in the endpoint: tunnel changes, the status read-out, the certificate wait
queue under a flood, and nomadic peers whose outer address is learned from their packets."""

from __future__ import annotations

import ipaddress
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skip.crypto.kdf import counter_n
from skip.errors import SkipError
from skip.keying.endpoint import SkipEndpoint
from skip.keying.events import CertificateNeeded, Transmit
from skip.keying.identity import LocalIdentity, Peer
from skip.keying.pending import PendingPackets
from skip.keying.policy import KeyingPolicy
from skip.wire.checksum import internet_checksum
from skip.wire.ip import build_ipv4
from skip.wire.names import SkipName

from .keying_harness import NOW, STARTED, Link, identity, pair, peer_of, udp


def _outer(wire: bytes) -> tuple[str, str]:
    """(source, destination) of a protected datagram's outer header."""
    if wire[0] >> 4 == 4:
        return str(ipaddress.ip_address(wire[12:16])), str(ipaddress.ip_address(wire[16:20]))
    return str(ipaddress.ip_address(wire[8:24])), str(ipaddress.ip_address(wire[24:40]))


def _from(wire: bytes, source: str) -> bytes:
    """The same IPv4 datagram as if sent from ``source`` (a move, a NAT, or a forger)."""
    out = bytearray(wire)
    out[12:16] = ipaddress.ip_address(source).packed
    out[10:12] = b"\0\0"
    out[10:12] = internet_checksum(out, 0, 20).to_bytes(2, "big")
    return bytes(out)


def _refused(call, reason: str) -> None:
    with pytest.raises(SkipError) as err:
        call()
    assert err.value.reason == reason


# --- a peer's tunnel changes ---------------------------------------------------------------


def test_tunnel_change_renews_send_keys_and_keeps_receive_state() -> None:
    link = pair("x25519")
    ida, idb = identity("a", ("x25519",)), identity("b", ("x25519",))
    link.a.add_peer(peer_of(idb, "x25519"), NOW, tunnel="2001:db8::2")
    link.b.add_peer(peer_of(ida, "x25519"), NOW, tunnel="10.0.0.1")
    from_b = link.b.protect(udp("b", "a"), NOW)
    assert link.a.unprotect(from_b, NOW).peer == "b"
    before = link.a.protect(udp(), NOW)
    assert _outer(before)[1] == "2001:db8::2"
    link.a.add_peer(peer_of(idb, "x25519"), NOW, tunnel="2001:db8::2")  # unchanged: kept
    link.a.protect(udp(), NOW)
    assert link.a.counters["kp_new"] == 1

    link.a.add_peer(peer_of(idb, "x25519"), NOW + 1, tunnel="10.0.0.2")  # the tunnel moved
    after = link.a.protect(udp(), NOW + 1)
    assert _outer(after) == ("10.0.0.1", "10.0.0.2")  # a new Kp with SAs for the new address
    assert link.b.unprotect(after, NOW + 1).packet == udp()
    assert link.a.counters["kp_new"] == 2 and link.a.counters["kij_computed"] == 1
    # b's key did not change: its Kp and replay window live on (a re-add would reset them)
    _refused(lambda: link.a.unprotect(from_b, NOW + 1), "replay")
    assert link.a.unprotect(link.b.protect(udp("b", "a"), NOW + 1), NOW + 1).peer == "b"
    assert link.a.counters["kp_decrypted"] == 1


def test_a_new_public_value_without_grace_drops_everything() -> None:
    link = pair("x25519", policy_b=KeyingPolicy(allow_legacy=True, key_rotation_seconds=0))
    wire, _ = link.send(udp())
    stranger = identity("c", ("x25519",))
    link.b.add_peer(Peer.create("a", "x25519", stranger.publics["x25519"],
                                addresses=["10.0.0.1"]), NOW)
    assert link.b.peer_status("a", NOW).rx_keys == 0
    # the cached Kp is gone: the header is unwrapped afresh with the new key, and fails
    _refused(lambda: link.b.unprotect(wire, NOW), "kp_unwrap_failed")


def _rotated(grace: float = 300.0) -> tuple[Link, SkipEndpoint]:
    """b learns that a's key pair changed (a's new key is c's), while a still sends under
    its old one; returns the link and an endpoint holding a's new key at a's addresses."""
    link = pair("x25519", policy_b=KeyingPolicy(key_rotation_seconds=grace))
    link.send(udp())
    new = identity("c", ("x25519",))
    link.b.add_peer(Peer.create("a", "x25519", new.publics["x25519"],
                                addresses=["10.0.0.1", "2001:db8::1"]), NOW)
    renewed_a = SkipEndpoint([LocalIdentity.create("a", new.keys,
                                                   addresses=["10.0.0.1", "2001:db8::1"])],
                             [peer_of(identity("b", ("x25519",)), "x25519")], started=STARTED)
    return link, renewed_a


def test_a_rotation_keeps_the_old_keys_traffic_for_its_grace() -> None:
    """Issue 9 s. 2: several live keys per principal; a rotation is not remove + add."""
    link, renewed_a = _rotated()
    # the Kp a was using goes on verifying, with its replay window
    second = link.a.protect(udp(payload=b"second"), NOW + 1)
    assert link.b.unprotect(second, NOW + 1).packet == udp(payload=b"second")
    _refused(lambda: link.b.unprotect(second, NOW + 1), "replay")
    # a has not switched yet: a new Kp under its old key is admitted during the grace
    link.a.flush(NOW + 2)
    third = link.a.protect(udp(payload=b"third"), NOW + 2)
    assert link.b.unprotect(third, NOW + 2).peer == "a"
    assert link.b.counters["rx_previous_key"] == 1
    assert link.b.peer_status("a", NOW + 2).rotating
    # a's new key works at once, both ways: b sends under it
    fresh = renewed_a.protect(udp(payload=b"new key"), NOW + 3)
    assert link.b.unprotect(fresh, NOW + 3).packet == udp(payload=b"new key")
    back = link.b.protect(udp("b", "a"), NOW + 3)
    assert renewed_a.unprotect(back, NOW + 3).packet == udp("b", "a")
    _refused(lambda: link.a.unprotect(back, NOW + 3), "kp_unwrap_failed")


def test_the_old_key_is_refused_once_the_grace_is_over() -> None:
    link, _ = _rotated(grace=60.0)
    link.b.handle_timer(NOW)  # started two hours ago: the hourly sweep was due
    assert link.b.get_timer() == NOW + 60
    link.b.handle_timer(NOW + 60)
    assert not link.b.peer_status("a", NOW + 60).rotating
    link.a.flush(NOW + 61)
    late = link.a.protect(udp(payload=b"late"), NOW + 61)
    _refused(lambda: link.b.unprotect(late, NOW + 61), "kp_unwrap_failed")
    assert link.b.counters["rx_previous_key"] == 0


# --- the status read-out -------------------------------------------------------------------


def test_peer_status_reports_the_traffic_and_no_key_bytes() -> None:
    link = pair("x25519")
    empty = link.a.peer_status("b", NOW)
    assert (empty.kp_age, empty.last_sent, empty.last_received, empty.n_skew) == (None,) * 4
    sizes = [len(udp(payload=bytes(n))) for n in (10, 200, 900)]
    for i, n in enumerate((10, 200, 900)):
        link.a.protect(udp(payload=bytes(n)), NOW + i)
    # b's clock is an hour ahead: its packets carry n + 1, which SKIP still accepts
    link.a.unprotect(link.b.protect(udp("b", "a"), NOW + 3600), NOW + 2)
    status = link.a.peer_status("b", NOW + 10)
    assert status.kp_age == 10.0 and status.kp_bytes == sum(sizes) and status.kp_packets == 3
    assert (status.last_sent, status.last_received) == (NOW + 2, NOW + 2)
    assert status.last_n == counter_n(NOW) + 1 and status.n_skew == 1
    assert status.rx_keys == 1 and status.version == 2 and status.tunnel is None
    assert status.algorithms == KeyingPolicy().modern_default.algorithms
    assert not any(isinstance(getattr(status, f), bytes) for f in status.__slots__)
    # no live Kp once its 2 minutes are over; the last packet times stay
    idle = link.a.peer_status("b", NOW + 200)
    assert idle.kp_age is None and idle.kp_bytes == 0 and idle.last_sent == NOW + 2
    _refused(lambda: link.a.peer_status("nobody", NOW), "unknown_mkid")


# --- principals waiting for a certificate ----------------------------------------------------


def _to(address: str) -> bytes:
    return build_ipv4("10.0.0.1", address, 17, bytes(8))


def test_waiting_principals_expire_and_are_replaced_least_recent_first() -> None:
    policy = KeyingPolicy(pending_peers=2, queue_per_peer=2, pending_seconds=5.0)
    link = pair("x25519", policy_a=policy)
    a = link.a
    a.remove_peer("b")
    assert a.protect(_to("10.0.0.2"), NOW) is None  # b waits (since NOW)
    assert a.protect(_to("10.0.0.3"), NOW + 1) is None  # c waits
    assert a.protect(_to("10.0.0.2"), NOW + 2) is None  # b again: c is now the quietest
    assert a.protect(_to("10.0.0.4"), NOW + 3) is None  # full: c makes room
    assert a.counters["queue_evicted"] == 1
    assert set(a.status(NOW)["pending"]) == {"010a000002", "010a000004"}
    assert a.protect(_to("10.0.0.3"), NOW + 5.5) is None  # b waited 5.5 s: it expired
    assert a.counters["cert_wait_expired"] == 2
    asked = [e.address for e in a.events() if isinstance(e, CertificateNeeded)]
    assert asked == [bytes([10, 0, 0, n]) for n in (2, 3, 4, 3)]  # c is asked for again
    # b's certificate arrives too late for its stale packets; c's in time for its new one
    assert a.add_peer(peer_of(identity("b", ("x25519",)), "x25519"), NOW + 6) == []
    c = peer_of(identity("c", ("x25519",)), "x25519")
    assert [type(e) for e in a.add_peer(c, NOW + 7)] == [Transmit]
    assert a.add_peer(c, NOW + 7) == []  # nothing waits any more (10.0.0.4 does, for 5 s)
    a.add_peer(peer_of(identity("b", ("x25519",)), "x25519"), NOW + 20)
    assert a.status(NOW)["pending"] == {} and a.counters["cert_wait_expired"] == 3


def test_a_flood_of_unknown_principals_cannot_lock_out_a_real_one() -> None:
    link = pair("x25519")  # the default policy: 64 principals, 5 s
    a = link.a
    a.remove_peer("b")
    for i in range(500):  # an attacker names 500 principals within one second
        assert a.protect(_to(f"10.1.{i // 250}.{i % 250}"), NOW + i / 500) is None
    assert len(a.status(NOW)["pending"]) == 64 and a.counters["queue_evicted"] == 500 - 64
    assert a.protect(udp(), NOW + 1) is None  # the real one is asked for, not refused
    [need] = [e for e in a.events() if isinstance(e, CertificateNeeded)][-1:]
    assert need.address == bytes([10, 0, 0, 2])
    released = a.add_peer(peer_of(identity("b", ("x25519",)), "x25519"), NOW + 1.5)
    assert link.b.unprotect(released[0].packet, NOW + 1.5).packet == udp()


def test_pending_seconds_must_be_positive() -> None:
    _refused(lambda: KeyingPolicy(pending_seconds=0), "config_invalid")


# --- nomadic peers -------------------------------------------------------------------------


def _nomadic() -> Link:
    """Server a knows laptop b by its MKID only; b sends to a in tunnel mode."""
    link = pair("x25519", mkids=True)
    idb = identity("b", ("x25519",), 8, b"B" * 16)
    ida = identity("a", ("x25519",), 8, b"A" * 16)
    link.a.add_peer(Peer.create("b", "x25519", idb.publics["x25519"], nsid=8, mkid=b"B" * 16,
                                nomadic=True), NOW)
    link.b.add_peer(peer_of(ida, "x25519"), NOW, tunnel="10.0.0.1")
    return link


def test_nomadic_peer_is_followed_after_its_packets_verify() -> None:
    link = _nomadic()
    a, b = link.a, link.b
    _refused(lambda: a.protect(udp(), NOW, identity="a", peer="b"), "nomadic_unheard")
    first = b.protect(udp("b", "a"), NOW)
    assert a.unprotect(first, NOW).peer == "b"
    assert a.peer_status("b", NOW).tunnel == "10.0.0.2"
    reply = a.protect(udp(), NOW, identity="a", peer="b")
    assert _outer(reply) == ("10.0.0.1", "10.0.0.2") and b.unprotect(reply, NOW).packet == udp()
    # the laptop moves (or a NAT rewrites it): its next packet moves the server's replies
    a.unprotect(_from(b.protect(udp("b", "a"), NOW + 1), "10.0.0.50"), NOW + 1)
    moved = a.protect(udp(), NOW + 1, identity="a", peer="b")
    assert _outer(moved)[1] == "10.0.0.50" and b.unprotect(moved, NOW + 1).packet == udp()
    assert a.counters["peer_moved"] == 2 and a.counters["kij_computed"] == 1
    # its receive state survived the move: the first packet is still a replay
    _refused(lambda: a.unprotect(_from(first, "10.0.0.50"), NOW + 1), "replay")
    assert a.peer_status("b", NOW + 1).rx_keys == 1


def test_forged_replayed_or_late_packets_do_not_move_a_nomadic_peer() -> None:
    link = _nomadic()
    a, b = link.a, link.b
    packets = [b.protect(udp("b", "a", bytes([i])), NOW) for i in range(4)]
    a.unprotect(packets[0], NOW)
    a.unprotect(packets[2], NOW)
    _refused(lambda: a.unprotect(_from(packets[0], "10.6.6.6"), NOW), "replay")
    forged = bytearray(_from(packets[3], "10.6.6.6"))
    forged[-1] ^= 1
    _refused(lambda: a.unprotect(bytes(forged), NOW), "bad_icv")
    assert a.peer_status("b", NOW).tunnel == "10.0.0.2"
    # packet 1 is genuine and new, but older than packet 2: a late one, not a move
    assert a.unprotect(_from(packets[1], "10.0.0.77"), NOW).packet == udp("b", "a", b"\1")
    assert a.peer_status("b", NOW).tunnel == "10.0.0.2" and a.counters["peer_moved"] == 1


def test_nomadic_peer_renewed_keeps_its_learned_address() -> None:
    link = _nomadic()
    link.a.unprotect(link.b.protect(udp("b", "a"), NOW), NOW)
    idb = identity("b", ("x25519",), 8, b"B" * 16)
    link.a.add_peer(Peer.create("b", "x25519", idb.publics["x25519"], nsid=8, mkid=b"B" * 16,
                                nomadic=True), NOW + 1)
    assert link.a.peer_status("b", NOW + 1).tunnel == "10.0.0.2"
    assert _outer(link.a.protect(udp(), NOW + 1, identity="a", peer="b"))[1] == "10.0.0.2"


def test_a_flush_neither_moves_a_nomadic_peer_nor_lets_a_replay_move_it() -> None:
    link = _nomadic()
    a, b = link.a, link.b
    first = b.protect(udp("b", "a"), NOW)
    a.unprotect(first, NOW)
    a.flush(NOW + 1)
    assert a.peer_status("b", NOW + 1).tunnel == "10.0.0.2"
    # the receive window outlived the flush: the captured packet, sent from elsewhere, is a
    # replay and moves nothing (a fresh window would have accepted it and followed it)
    _refused(lambda: a.unprotect(_from(first, "10.6.6.6"), NOW + 1), "replay")
    assert a.peer_status("b", NOW + 1).tunnel == "10.0.0.2" and a.counters["peer_moved"] == 1
    reply = a.protect(udp(), NOW + 1, identity="a", peer="b")
    assert _outer(reply)[1] == "10.0.0.2" and b.unprotect(reply, NOW + 1).packet == udp()


def test_nomadic_needs_an_mkid_and_the_modern_profile() -> None:
    idb = identity("b", ("x25519", "skip-1024"))
    _refused(lambda: Peer.create("b", "x25519", idb.publics["x25519"], nomadic=True),
             "config_invalid")
    legacy = Peer.create("b", "skip-1024", idb.publics["skip-1024"], nsid=8, mkid=b"B" * 16,
                         nomadic=True)
    endpoint = SkipEndpoint([identity("a", ("skip-1024",))],
                            policy=KeyingPolicy(allow_legacy=True), started=STARTED)
    _refused(lambda: endpoint.add_peer(legacy), "config_invalid")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.floats(0, 3)), max_size=60))
def test_wait_queue_bounds_hold_under_any_arrivals(arrivals: list[tuple[int, float]]) -> None:
    """Any arrival pattern, driven as the endpoint drives it (expire, then add): at most 3
    principals, 2 packets each, none waiting longer than 5 s, and every packet is held,
    refused or counted as dropped (a refusal must not lose the count of what expired)."""
    pending = PendingPackets(max_names=3, per_name=2, max_age=5.0)
    now, refused, dropped = 0.0, 0, Counter()
    started: dict[str, float] = {}
    for count, (name, step) in enumerate(arrivals, 1):
        now += step
        key = SkipName(9, bytes([name]) * 16)
        dropped += pending.expire(now)
        if key.encode().hex() not in pending.sizes():
            started[key.encode().hex()] = now
        try:
            dropped["queue_evicted"] += pending.add(key, "inbound", b"p", now)[1]
        except SkipError as err:
            assert err.reason == "queue_full"
            refused += 1
        sizes = pending.sizes()
        assert len(sizes) <= 3 and all(n <= 2 for n in sizes.values())
        assert all(now - started[k] <= 5.0 for k in sizes)
        assert sum(sizes.values()) + refused + sum(dropped.values()) == count
    assert set(dropped) <= {"cert_wait_expired", "queue_evicted"}
    dropped += pending.expire(now + 5.01)
    assert pending.sizes() == {} and sum(dropped.values()) + refused == len(arrivals)


def test_nomadic_peer_may_move_to_the_other_address_family() -> None:
    link = _nomadic()
    a, b = link.a, link.b
    a.unprotect(b.protect(udp("b", "a"), NOW), NOW)
    ida = identity("a", ("x25519",), 8, b"A" * 16)
    b.add_peer(peer_of(ida, "x25519"), NOW, tunnel="2001:db8::1")  # the laptop went IPv6-only
    over_v6 = b.protect(udp("b", "a"), NOW + 1)
    assert _outer(over_v6) == ("2001:db8::2", "2001:db8::1")
    assert a.unprotect(over_v6, NOW + 1).packet == udp("b", "a")
    reply = a.protect(udp(), NOW + 1, identity="a", peer="b")
    assert _outer(reply) == ("2001:db8::1", "2001:db8::2")
    assert b.unprotect(reply, NOW + 1).packet == udp()


def test_only_the_newest_packet_is_newest() -> None:
    """is_newest: what may move a SKIP-in-UDP endpoint (issue 15 item 7)."""
    link = pair("x25519")
    first = link.a.protect(udp(payload=b"1"), NOW)
    second = link.a.protect(udp(payload=b"2"), NOW)
    assert link.b.unprotect(second, NOW) is not None and link.b.is_newest(second)
    assert link.b.unprotect(first, NOW) is not None  # late, inside the window: delivered
    assert not link.b.is_newest(first)
    link.a.flush(NOW)  # a's next packet starts a new Kp: the old Kp's packets are not newest
    third = link.a.protect(udp(payload=b"3"), NOW)
    assert link.b.unprotect(third, NOW) is not None and link.b.is_newest(third)
    assert not link.b.is_newest(second)
    legacy = pair("skip-1024")
    wire = legacy.a.protect(udp(), NOW)
    assert legacy.b.unprotect(wire, NOW) is not None and not legacy.b.is_newest(wire)
