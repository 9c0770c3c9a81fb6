"""What operators do to a running endpoint: flush its keys, change its policy, rename or rekey
its principal. Send keys are renewed each time, but a live receive Kp keeps its replay window
unless its key material itself is gone, so nothing captured before can be replayed after."""

from __future__ import annotations

import pytest

from skip.crypto.kdf import N_PERIOD
from skip.crypto.skip_numbers import header_ekp_length
from skip.errors import SkipError
from skip.keying.identity import LocalIdentity
from skip.keying.kij_cache import KijCache
from skip.keying.pending import PendingPackets
from skip.keying.policy import KeyingPolicy
from skip.wire.names import SkipName
from skip.wire.skip_header import measure

from .keying_harness import ADDR, NOW, identity, pair, private, udp


def _skip_header(wire: bytes) -> bytes:
    return wire[20:measure(wire, 20, header_ekp_length)[0]]


def _refused(call, reason: str) -> None:
    with pytest.raises(SkipError) as err:
        call()
    assert err.value.reason == reason


@pytest.mark.parametrize("group", ["x25519", "skip-2048"])
def test_flush_refuses_replays_and_rekeys_the_next_packet(group: str) -> None:
    link = pair(group)
    old, got = link.send(udp())
    assert got.packet == udp()
    assert link.b.counters["kij_computed"] == link.a.counters["kij_computed"] == 1

    assert link.b.flush(NOW + 1) == 1  # b's Kij (b has sent nothing: no send Kp)
    assert link.a.flush(NOW + 1) == 2  # a's Kij and its send Kp
    if group == "x25519":  # the modern profile has a replay window; legacy has none
        _refused(lambda: link.b.unprotect(old, NOW + 2), "replay")
    assert link.b.peer_status("a", NOW + 2).rx_keys == 1  # kept, with its window

    new, got = link.send(udp(payload=b"after the flush"), NOW + 2)
    assert got.packet == udp(payload=b"after the flush")
    assert _skip_header(new) != _skip_header(old)  # a new Kp, so a new EKp
    assert link.a.counters["kp_new"] == 2 and link.a.counters["kij_computed"] == 2
    assert link.b.counters["kp_decrypted"] == 2 and link.b.counters["kij_computed"] == 2
    if group == "x25519":
        _refused(lambda: link.b.unprotect(new, NOW + 2), "replay")


def test_traffic_under_a_kept_receive_kp_needs_no_dh() -> None:
    """The peer keeps its Kp across our flush: its packets still pass, without DH work."""
    link = pair("x25519")
    link.send(udp())
    link.b.flush(NOW + 1)
    for i in range(3):
        assert link.send(udp(payload=bytes([i])), NOW + 1)[1].packet == udp(payload=bytes([i]))
    assert link.b.counters["kij_computed"] == 1 and link.b.counters["kp_decrypted"] == 1


def test_flush_keeps_pinned_master_keys() -> None:
    link = pair("x25519")
    link.a.precompute("b")
    link.send(udp())
    assert link.a.flush(NOW) == 1  # the send Kp only
    link.send(udp(), NOW)
    assert link.a.counters["kij_computed"] == 1 and link.a.counters["kp_new"] == 2


def test_flush_drops_receive_kps_that_are_out_of_window() -> None:
    link = pair("x25519")
    old, _ = link.send(udp())
    later = NOW + 2 * N_PERIOD  # n moved on by two: the Kp is dead
    assert link.b.flush(later) == 2  # b's Kij and the dead receive Kp
    assert link.b.peer_status("a", later).rx_keys == 0
    _refused(lambda: link.b.unprotect(old, later), "n_out_of_window")



# --- a new policy ----------------------------------------------------------------------------


def test_a_new_policy_keeps_receive_windows_and_renews_send_keys() -> None:
    link = pair("x25519", policy_a=KeyingPolicy(), policy_b=KeyingPolicy())
    old, _ = link.send(udp())
    for end in (link.a, link.b):
        end.set_policy(KeyingPolicy(allow_legacy=True, kij_cache_size=8, queue_per_peer=2))
    _refused(lambda: link.b.unprotect(old, NOW), "replay")
    new, got = link.send(udp(), NOW)
    assert got.packet == udp() and _skip_header(new) != _skip_header(old)
    assert link.a.counters["kp_new"] == 2 and link.a.counters["kij_computed"] == 1
    assert link.b.counters["kij_computed"] == 1


def test_a_new_policy_drops_the_receive_keys_it_refuses() -> None:
    link = pair("skip-2048")  # the legacy profile, allowed by the harness's policy
    link.send(udp())
    link.b.set_policy(KeyingPolicy(allow_legacy=False))
    assert link.b.peer_status("a", NOW).rx_keys == 0
    # the same Kp's next packet meets the slow path, and the policy there
    _refused(lambda: link.b.unprotect(link.a.protect(udp(), NOW), NOW), "legacy_refused")


def test_new_bounds_for_the_master_key_cache_and_the_wait_queue() -> None:
    cache = KijCache(4, 100.0, 20)
    cache.precompute(("me", "pinned", 2), lambda: b"p")
    for name in ("old", "mid", "new"):
        cache.get(("me", name, 2), lambda: b"k", NOW)
    cache.resize(2, 1.0, 1)
    assert ("me", "pinned", 2) in cache and ("me", "new", 2) in cache and len(cache) == 2
    assert cache.budget.tokens <= 1
    queue = PendingPackets(8, 4, 5.0)
    names = [SkipName(9, bytes([i]) * 16) for i in range(3)]
    for i, name in enumerate(names):
        queue.add(name, "inbound", b"x" * (i + 1), NOW)
        queue.add(name, "inbound", b"y", NOW)
    assert queue.resize(1, 1, 5.0) == 4  # the two quietest principals' packets
    assert list(queue.sizes()) == ["09" + "02" * 16]  # the CDP form, NSID || MKID
    _refused(lambda: queue.add(names[2], "inbound", b"z", NOW), "queue_full")


# --- a renamed or rekeyed principal ---------------------------------------------------------


def test_a_readdressed_principal_keeps_its_keys_and_windows() -> None:
    link = pair("x25519")
    link.send(udp())
    old, _ = link.send(udp("b", "a"), a_to_b=False)
    me = identity("a", ("x25519",))
    link.a.replace_identity(LocalIdentity.create("a", me.keys,
                                                 addresses=[*ADDR["a"], "10.0.0.11"]))
    _refused(lambda: link.a.unprotect(old, NOW), "replay")
    assert link.send(udp())[1].packet == udp()
    assert link.a.counters["kp_new"] == 2 and link.a.counters["kij_computed"] == 1


def test_a_new_key_pair_drops_what_the_old_one_made() -> None:
    link = pair("x25519")
    old, _ = link.send(udp("b", "a"), a_to_b=False)
    link.a.replace_identity(LocalIdentity.create("a", {"x25519": private("a2", "x25519")},
                                                 addresses=ADDR["a"]))
    assert link.a.peer_status("b", NOW).rx_keys == 0
    # b still wraps its Kp for a's old public value: nothing unwraps it now
    _refused(lambda: link.a.unprotect(old, NOW), "kp_unwrap_failed")
    _refused(lambda: link.a.replace_identity(LocalIdentity.create("z", {})), "config_invalid")
    assert link.a.counters["kij_computed"] == 2  # for the old key pair, then the new one
