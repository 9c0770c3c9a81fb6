"""Anti-replay window (RFC 4303 section 3.4.3, ESN per Appendix A) and the sender's counter."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skip.crypto.replay import MAX_WINDOW, ReplayWindow, SequenceCounter
from skip.errors import AlgorithmError, ReplayError

M32 = 2**32


def receive(window: ReplayWindow, seq_low32: int) -> int:
    """What the engine does for a packet whose ICV verifies."""
    seq = window.check(seq_low32)
    window.accept(seq)
    return seq


def reason(window: ReplayWindow, seq_low32: int) -> str:
    with pytest.raises(ReplayError) as err:
        window.check(seq_low32)
    return err.value.reason


def test_in_order_duplicates_and_zero():
    w = ReplayWindow()
    assert [receive(w, s) for s in range(1, 101)] == list(range(1, 101))
    assert w.top == 100
    assert reason(w, 100) == "replay"
    assert reason(w, 50) == "replay"
    assert reason(w, 0) == "seq_zero"


def test_window_edge_is_exact():
    w = ReplayWindow(size=64)
    receive(w, 100)
    assert w.check(37) == 37  # 63 behind the top: inside
    assert reason(w, 36) == "replay_too_old"  # 64 behind: outside
    receive(w, 37)
    assert reason(w, 37) == "replay"


def test_window_slides_and_big_jumps_forget_the_old_bitmap():
    w = ReplayWindow(size=32)
    for s in (1, 2, 3, 5):
        receive(w, s)
    assert w.check(4) == 4
    receive(w, 30)
    assert reason(w, 5) == "replay" and w.check(4) == 4
    receive(w, 40)  # slide by 10: 5..8 have fallen out
    assert reason(w, 8) == "replay_too_old"
    assert w.check(9) == 9 and reason(w, 30) == "replay"
    receive(w, 10_000)  # a jump beyond the window
    assert w.top == 10_000
    assert w.check(9_999) == 9_999 and w.check(9_969) == 9_969
    assert reason(w, 9_968) == "replay_too_old"


def test_forged_packets_never_move_the_window():
    w = ReplayWindow()
    receive(w, 10)
    assert w.check(5_000) == 5_000  # a forgery passes the pre-check ...
    # ... its ICV fails, so accept() is never called: the window has not moved
    assert w.top == 10
    assert w.check(9) == 9
    assert w.check(5_000) == 5_000  # and the genuine packet 5000 is still acceptable


def test_accept_rechecks_so_a_copy_accepted_twice_counts_once():
    w = ReplayWindow()
    first, second = w.check(7), w.check(7)  # both copies pass the pre-check
    w.accept(first)
    with pytest.raises(ReplayError) as err:
        w.accept(second)
    assert err.value.reason == "replay"


@pytest.mark.parametrize("size", [0, -1, MAX_WINDOW + 1, 2**31, 2**31 + 1, 1.5, True, "64"])
def test_invalid_window_sizes(size):
    with pytest.raises(AlgorithmError) as err:
        ReplayWindow(size=size)
    assert err.value.reason == "bad_sa"


def test_largest_window_is_accepted():
    assert MAX_WINDOW == 65536  # 2**31 (RFC 4303's limit) peaked at 558 MB per window
    assert ReplayWindow(size=MAX_WINDOW).size == MAX_WINDOW


def test_non_esn_top_of_the_space():
    w = ReplayWindow()
    assert receive(w, M32 - 1) == M32 - 1
    assert reason(w, M32 - 1) == "replay"
    assert w.check(M32 - 2) == M32 - 2


# --- ESN (RFC 4303 Appendix A) -----------------------------------------------------------------

def test_esn_case_a_then_case_b_across_the_wrap():
    w = ReplayWindow(size=64, esn=True)
    receive(w, M32 // 2)  # steps below 2**32 - W are read as forward moves
    receive(w, M32 - 10)  # Tl = 2**32-10 >= W-1: Case A
    assert w.check(M32 - 20) == M32 - 20  # Seql >= Bl: Seqh = Th = 0
    assert w.check(5) == M32 + 5  # Seql < Bl: Seqh = Th + 1
    assert w.check(M32 - 73) == M32 - 73  # Seql == Bl: the window's bottom edge
    assert w.check(M32 - 74) == 2 * M32 - 74  # just below Bl: read as the next block
    receive(w, 5)
    assert w.top == M32 + 5  # Tl = 5 < W-1: Case B from now on
    assert w.check(M32 - 3) == M32 - 3  # Seql >= Bl: Seqh = Th - 1 (a late pre-wrap packet)
    assert w.check(M32 - 58) == M32 - 58  # Seql == Bl = Tl - W + 1 (mod 2**32): bottom edge
    assert w.check(M32 - 59) == 2 * M32 - 59  # just below Bl: Seqh = Th
    assert reason(w, M32 - 10) == "replay"  # received before the wrap
    assert w.check(3) == M32 + 3  # Seql < Bl, <= Tl: Seqh = Th, inside the window
    assert w.check(1000) == M32 + 1000  # Seql < Bl, > Tl: ahead
    # Case B, Seql < Bl but far below: the RFC reads it as ahead in this block (the ICV,
    # which covers the high half, is what rejects a genuinely old packet)
    assert w.check(M32 - 100) == 2 * M32 - 100
    assert w.check(0) == M32  # low half 0 is a valid number once Th >= 1


def test_esn_numbers_before_the_first_packet_are_too_old():
    w = ReplayWindow(size=64, esn=True)
    assert reason(w, M32 - 1) == "replay_too_old"  # Case B at start: Seqh would be -1
    assert reason(w, 0) == "seq_zero"
    assert w.check(1) == 1


def at_top(size: int, top: int) -> ReplayWindow:
    """A window as if ``top`` had just been accepted (getting there takes ~top packets)."""
    w = ReplayWindow(size=size, esn=True)
    w._top, w._bitmap = top, 1
    return w


def test_esn_sequence_space_exhaustion():
    w = at_top(64, 2**64 - 10)
    assert w.check(M32 - 5) == 2**64 - 5
    assert reason(w, 3) == "seq_exhausted"


@settings(max_examples=300, deadline=None)
@given(top=st.integers(1, 2**64 - 2**33), size=st.sampled_from([32, 64, 1024, 4096]),
       data=st.data())
def test_esn_inference_is_right_in_the_whole_rfc_range(top, size, data):
    """Appendix A: the true number is recovered from -(W-1) .. 2**32-W around the top."""
    w = at_top(size, top)
    delta = data.draw(st.integers(-(size - 1), M32 - size))
    true_seq = top + delta
    if true_seq <= 0:
        return
    assert w.infer(true_seq % M32) == true_seq


# --- against an independent model, every window size ------------------------------------------

@pytest.mark.parametrize("size", [32, 64, 1024, 4096])
@settings(max_examples=60, deadline=None)
@given(ops=st.lists(st.tuples(st.integers(-5000, 5000), st.booleans()), max_size=150))
def test_window_matches_the_set_model(size, ops):
    """Model: a number is new iff > 0, never accepted, and more than top - W."""
    w = ReplayWindow(size=size)
    received: set[int] = set()
    top = 0
    for delta, icv_ok in ops:
        seq = top + delta
        if not 0 <= seq < M32:
            continue
        new = seq > 0 and seq not in received and seq > top - size
        try:
            assert w.check(seq) == seq
        except ReplayError as err:
            assert not new
            expected = ("seq_zero" if seq == 0 else
                        "replay_too_old" if seq <= top - size else "replay")
            assert err.reason == expected
            continue
        assert new
        if icv_ok:
            w.accept(seq)
            received.add(seq)
            assert w.top == max(top, seq) >= top  # never regresses
            assert w._bitmap.bit_length() <= size  # memory stays bounded by the window
            top = w.top


# --- the sender -------------------------------------------------------------------------------

def test_sequence_counter_counts_from_one_and_refuses_to_cycle():
    c = SequenceCounter()
    assert [c.next() for _ in range(3)] == [1, 2, 3]
    c = SequenceCounter(last=M32 - 2)
    assert c.next() == M32 - 1
    with pytest.raises(ReplayError) as err:
        c.next()
    assert err.value.reason == "seq_exhausted"
    assert c.last == M32 - 1
    esn = SequenceCounter(esn=True, last=M32 - 1)
    assert esn.next() == M32
    with pytest.raises(AlgorithmError):
        SequenceCounter(last=M32)


def test_a_counter_advanced_by_the_send_loop_goes_on_from_there_and_never_back() -> None:
    counter = SequenceCounter()
    assert counter.limit == 2**32 - 1 and SequenceCounter(esn=True).limit == 2**64 - 1
    counter.next()
    counter.advance(41)  # skipd's compiled loop sent 2..41
    assert counter.next() == 42
    for bad in (41, counter.limit + 1):
        with pytest.raises(ValueError):
            counter.advance(bad)
    assert counter.last == 42
