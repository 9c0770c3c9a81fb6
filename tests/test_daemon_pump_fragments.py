"""Fragments of inner ICMP (written by an independent review of the compiled loops): the
receive loop declines them, so they get the Python path's answer (SKIP ICMP is looked for
in ICMP, and a fragment is refused there), exactly as without the loop."""
from __future__ import annotations

from pathlib import Path

from skip.wire.ip import build_ipv4
from tests.test_daemon_pump import A, B, across, close, wired_pair


def frag(pkt: bytes, flags_off: int) -> bytes:
    h = bytearray(pkt)
    h[6:8] = flags_off.to_bytes(2, "big")
    h[10:12] = b"\0\0"
    s = sum(int.from_bytes(h[i:i+2], "big") for i in range(0, 20, 2))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    h[10:12] = (~s & 0xFFFF).to_bytes(2, "big")
    return bytes(h)


def run(tmp: Path, pumped: bool):
    a, b = wired_pair(tmp, pumped)
    try:
        warm = [build_ipv4(A[1], B[1], 6, bytes(100))]
        assert across(a, b, warm) == warm
        first = frag(build_ipv4(A[1], B[1], 1, b"\x08\0\0\0" + bytes(96)), 0x2000)  # MF
        later = frag(build_ipv4(A[1], B[1], 1, bytes(104)), 0x000D)  # offset 13*8
        got = across(a, b, [first, later, warm[0]])
        return ([p == first for p in got], [p == later for p in got], len(got),
                dict(b.d.drops), dict(b.d.engine.counters()), dict(b.d.traffic))
    finally:
        close(a, b)


def test_inner_icmp_fragments_get_the_python_paths_answer_through_the_loop(
        tmp_path: Path) -> None:
    pumped, python = run(tmp_path / "p", True), run(tmp_path / "q", False)
    assert pumped == python
    assert python[4].get("fragment") == 2
