"""Sequence numbers and anti-replay through the engine: duplicates, stale packets, window
slides, large windows, ESN across the 2**32 boundary, counter exhaustion."""

from __future__ import annotations

import pytest

from skip.errors import AlgorithmError, IntegrityError, ReplayError
from tests.ipsec_cases import Suite, datagram

GCM = Suite("esp", "aes-gcm-16")
GCM_ESN = Suite("esp", "aes-gcm-16", esn=True)
CBC_ESN = Suite("esp", "aes-cbc", "hmac-sha2-256-128", esn=True)
AH_ESN = Suite("ah", integrity="hmac-sha2-256-128", esn=True)


def stream(suite: Suite, count: int, start: int = 0, **kw) -> list[bytes]:
    """Packets with sequence numbers start+1 .. start+count."""
    sender = suite.sa("tunnel", 4, **kw)
    sender.set_sequence(start)
    return [sender.protect(datagram(4, 16)) for _ in range(count)]


def reason_of(receiver, wire: bytes) -> str | None:
    try:
        receiver.unprotect(wire)
    except (ReplayError, IntegrityError) as err:
        return err.reason
    return None


def test_duplicate_is_rejected_and_counted():
    rx = GCM.sa("tunnel", 4)
    [p1, p2] = stream(GCM, 2)
    assert reason_of(rx, p2) is None
    assert reason_of(rx, p1) is None  # late but inside the window
    assert reason_of(rx, p1) == "replay"
    assert reason_of(rx, p2) == "replay"
    assert rx.counters.rejected == {"replay": 2}
    assert rx.counters.packets_in == 2


def test_window_slides_and_left_edge_is_exact():
    rx = GCM.sa("tunnel", 4)
    packets = stream(GCM, 200)
    assert reason_of(rx, packets[199]) is None  # seq 200 first: the window is 137..200
    assert reason_of(rx, packets[136]) is None  # 200 - 137 = 63 < 64
    assert reason_of(rx, packets[135]) == "replay_too_old"  # 136 is 64 behind
    assert reason_of(rx, packets[150]) is None
    assert rx.replay_window.top == 200


@pytest.mark.parametrize("size", [32, 1024, 4096, 10000])
def test_large_windows(size):
    rx = GCM.sa("tunnel", 4, replay_window=size)
    first = stream(GCM, 1, start=0)[0]
    far = stream(GCM, 1, start=size + 99)[0]  # seq size + 100
    edge = stream(GCM, 1, start=100)[0]  # seq 101 = top - (size - 1)
    out = stream(GCM, 1, start=99)[0]  # seq 100: exactly size behind
    assert reason_of(rx, first) is None
    assert reason_of(rx, far) is None
    assert reason_of(rx, edge) is None
    assert reason_of(rx, out) == "replay_too_old"
    assert reason_of(rx, edge) == "replay"


def test_window_zero_is_refused_never_silently_off():
    with pytest.raises(AlgorithmError) as e:
        GCM.sa("tunnel", 4, replay_window=0)
    assert e.value.reason == "bad_sa"


def test_forged_packet_does_not_move_the_window():
    rx = CBC_ESN.sa("tunnel", 4)
    early = stream(CBC_ESN, 1)[0]
    forged = bytearray(stream(CBC_ESN, 1, start=5000)[0])
    forged[-1] ^= 1
    assert reason_of(rx, bytes(forged)) == "bad_icv"
    assert rx.replay_window.top == 0
    assert reason_of(rx, early) is None  # still new, not "too old"


@pytest.mark.parametrize("suite", [GCM_ESN, CBC_ESN, AH_ESN], ids=lambda s: s.id)
def test_esn_crosses_the_32_bit_boundary(suite):
    start = 2**32 - 3
    packets = stream(suite, 6, start=start)  # 2**32-2 .. 2**32+3
    low = [int.from_bytes(p[24:28] if suite.protocol == "esp" else p[28:32], "big")
           for p in packets]
    assert low == [0xFFFFFFFE, 0xFFFFFFFF, 0, 1, 2, 3]  # only the low half travels
    rx = suite.sa("tunnel", 4)
    # A fresh receiver (top 0) places a low half in the last 64 of the 32-bit space at high
    # half -1 (RFC 4303 A2.1 Case B), so it first meets the stream a little earlier.
    assert reason_of(rx, packets[0]) == "replay_too_old"
    assert reason_of(rx, stream(suite, 1, start=start - 100)[0]) is None
    for p in packets[:2] + packets[3:]:
        assert reason_of(rx, p) is None
    assert rx.replay_window.top == 2**32 + 3
    assert reason_of(rx, packets[2]) is None  # 2**32: inferred from "0" in Case B
    assert reason_of(rx, packets[1]) == "replay"  # 0xFFFFFFFF -> high half 0 again
    assert reason_of(rx, packets[4]) == "replay"


@pytest.mark.parametrize("suite", [GCM_ESN, CBC_ESN, AH_ESN], ids=lambda s: s.id)
def test_esn_high_half_is_in_the_icv(suite):
    """A packet sent as 2**32 + 5 shows low half 5.  A receiver near 0 infers high half 0:
    the ICV (or AEAD tag) must then fail, because the sender's high half 1 entered it."""
    wire = stream(suite, 1, start=2**32 + 4)[0]
    rx = suite.sa("tunnel", 4)
    assert reason_of(rx, wire) == "bad_icv"
    rx2 = suite.sa("tunnel", 4)
    assert reason_of(rx2, stream(suite, 1, start=2**32 - 100)[0]) is None  # Case A from here
    assert reason_of(rx2, wire) is None
    assert rx2.replay_window.top == 2**32 + 5


def test_sender_refuses_to_cycle():
    sa = GCM.sa("tunnel", 4)
    sa.set_sequence(2**32 - 1)
    with pytest.raises(ReplayError) as e:
        sa.protect(datagram(4, 1))
    assert e.value.reason == "seq_exhausted"
    assert sa.counters.rejected == {"seq_exhausted": 1}
    esn = GCM_ESN.sa("tunnel", 4)
    esn.set_sequence(2**32 - 1)
    esn.protect(datagram(4, 1))  # fine with ESN
    esn.set_sequence(2**64 - 1)
    with pytest.raises(ReplayError):
        esn.protect(datagram(4, 1))


def test_skip_era_sa_has_no_replay_protection():
    """RFC 1826/1827 carry no sequence number: a duplicate is delivered again (SKIP bounds
    replays with its hour counter n, in the keying layer)."""
    suite = Suite("ah", integrity="keyed-md5", sequence=False)
    rx = suite.sa("transport")
    wire = suite.sa("transport").protect(datagram(4, 10))
    assert rx.replay_window is None
    assert rx.unprotect(wire) == rx.unprotect(wire) == datagram(4, 10)
