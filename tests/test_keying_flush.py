"""An operator's flush (SkipEndpoint.flush): master keys and send keys are forgotten and made
again on the next packet, while the receive side keeps every live Kp with its replay window,
so nothing captured before the flush can be replayed after it."""

from __future__ import annotations

import pytest

from skip.crypto.kdf import N_PERIOD
from skip.crypto.skip_numbers import header_ekp_length
from skip.errors import SkipError
from skip.wire.skip_header import measure

from .keying_harness import NOW, pair, udp


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

