"""skipd's steady state (skip/daemon/fastpath.py): packets of a flow whose first packet the
general path handled take a route, and a route never says what the general path would not.

Driven through the batch readers (``_on_tun``, ``_on_wire``) with queued packets: first with
the runtime tests' marking double (which path a packet took is counted), then between two
daemons with the real keying engine, across Kp renewals, a flush and a reload, in both
profiles; every packet compared with what was sent.
"""

from __future__ import annotations

import asyncio
import collections
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from skip.daemon.config import load_config, parse_config
from skip.daemon.kernel_filter import SLOW_BATCH
from skip.daemon.keying_adapter import build_engine
from skip.daemon.runtime import Daemon
from skip.wire.ip import build_ipv4
from tests.netns import make_pki, skipd_config
from tests.test_daemon_runtime import (
    CONFIG,
    MARK,
    DoubleEngine,
    Recorder,
    ipv4,
    reloadable,
    udp,
)


class Queue:
    """A TUN device or a receiving socket: ``read`` what was queued, None when drained."""

    def __init__(self) -> None:
        self.queued: collections.deque[bytes] = collections.deque()
        self.packets: list[bytes] = []

    def read(self) -> bytes | None:
        return self.queued.popleft() if self.queued else None

    def write(self, packet: bytes) -> bool:
        self.packets.append(packet)
        return True


def tcp(src: str, dst: str, size: int = 40) -> bytes:
    return ipv4(struct.pack("!HHIIHHHH", 5000, 80, 1, 0, 0x5010, 512, 0, 0) + bytes(size),
                src, dst, proto=6)


@pytest.fixture()
def daemon() -> Daemon:
    d = Daemon(parse_config(CONFIG, Path("t.toml")), lambda c, n: DoubleEngine())
    d.engine = d.engine_factory(d.config, 0)
    d.mtu = d._compute_mtu(d.config, d.engine)
    d.tun, d.sender = Queue(), Recorder()  # type: ignore[assignment]
    return d


def send(d: Daemon, *packets: bytes) -> None:
    d.tun.queued.extend(packets)  # type: ignore[union-attr]
    d._on_tun()


def test_the_first_packet_takes_the_general_path_and_the_next_ones_the_route(
        daemon: Daemon) -> None:
    send(daemon, *[tcp("10.57.0.1", "10.57.0.2")] * 5)
    assert daemon.engine.counted["steady"] == 4
    assert len(daemon.sender.packets) == 5 and daemon.traffic["protected_out"] == 5
    assert daemon.stats["beta"].packets_out == 5
    assert daemon.engine.sent == [("beta", "192.0.2.2")] * 5


def test_key_management_udp_never_takes_a_route(daemon: Daemon) -> None:
    send(daemon, tcp("10.57.0.1", "10.57.0.2"))  # the destination now has a route
    cdp = udp("10.57.0.1", "10.57.0.2", sport=40000, dport=1640)
    other = udp("10.57.0.1", "10.57.0.2", sport=40000, dport=1641)
    send(daemon, cdp, other)
    assert daemon.sender.packets[1] == cdp  # in cleartext, as policy says for CDP
    assert daemon.traffic["cleartext_out"] == 1 and daemon.engine.counted["steady"] == 1


def test_a_route_without_a_current_kp_hands_the_packet_to_the_general_path(
        daemon: Daemon) -> None:
    send(daemon, tcp("10.57.0.1", "10.57.0.2"))
    route = daemon.routes.sends[bytes([10, 57, 0, 2])]
    route.protect = lambda packet, now: None  # what the engine says once the Kp is gone
    send(daemon, tcp("10.57.0.1", "10.57.0.2"))
    assert len(daemon.sender.packets) == 2 and daemon.engine.counted["steady"] == 0


def test_a_reload_forgets_every_route(tmp_path: Path) -> None:
    path = tmp_path / "skipd.toml"
    d = reloadable(path, Queue())
    packet = tcp("10.57.0.1", "10.57.0.2")
    send(d, packet, packet)
    assert d.engine.counted["steady"] == 1
    path.write_text(CONFIG.replace('hosts = ["10.57.0.2"]\ntunnel = "192.0.2.2"\n'
                                   'action = "protect"',
                                   'hosts = ["10.57.0.2"]\ntunnel = "192.0.2.2"\n'
                                   'action = "deny"'))
    asyncio.run(d.reload())
    d.netlink.shutdown()
    send(d, packet)
    assert d.drops == {"policy_deny": 1} and len(d.sender.packets) == 2


def wire(src: str, inner: bytes) -> bytes:
    return ipv4(b"", src, "192.0.2.1", 57) + MARK + inner


def receive(d: Daemon, *datagrams: bytes) -> None:
    source = Queue()
    source.queued.extend(datagrams)
    d._on_wire(source)  # type: ignore[arg-type]


def test_a_source_route_holds_only_for_the_peer_that_was_allowed(daemon: Daemon) -> None:
    inner = tcp("10.57.0.2", "10.57.0.1")
    receive(daemon, wire("192.0.2.2", inner), wire("192.0.2.2", inner))
    assert daemon.tun.packets == [inner, inner] and bytes([10, 57, 0, 2]) in \
        daemon.routes.receives
    assert daemon.stats["beta"].packets_in == 2
    # the gateway, authenticated as itself, claims beta's address: its route does not apply
    daemon.engine.expect[bytes([10, 57, 0, 2])] = ("gw", "192.0.2.3")
    receive(daemon, wire("192.0.2.3", inner))
    assert daemon.drops == {"inner_source_mismatch": 1} and len(daemon.tun.packets) == 2


def test_a_route_does_not_carry_another_skip_version(daemon: Daemon) -> None:
    inner = tcp("10.57.0.2", "10.57.0.1")
    receive(daemon, wire("192.0.2.2", inner))
    unprotect = daemon.engine.unprotect

    def legacy(datagram: bytes, now: float):  # the same peer, but in SKIP version 1
        result = unprotect(datagram, now)
        result.version = 1
        return result

    daemon.engine.unprotect = legacy  # type: ignore[method-assign]
    receive(daemon, wire("192.0.2.2", inner))
    assert daemon.drops == {"legacy_refused": 1} and daemon.tun.packets == [inner]


def test_with_groups_an_inner_udp_datagram_always_asks_policy(daemon: Daemon) -> None:
    daemon.routes.clear(1640, gik=True)  # as a configuration with [[group]] sets it
    inner = udp("10.57.0.2", "10.57.0.1")
    receive(daemon, wire("192.0.2.2", inner))
    assert daemon.routes.receive_route(inner, "beta", 2) is None
    tcp_inner = tcp("10.57.0.2", "10.57.0.1")
    assert daemon.routes.receive_route(tcp_inner, "beta", 2) is not None


def test_ipv6_with_an_extension_header_takes_the_general_path(daemon: Daemon) -> None:
    dst = bytes.fromhex("20010db8000000000000000000000002")
    route = daemon.routes.sends[dst] = object()  # type: ignore[assignment]
    head = bytes([0x60, 0, 0, 0, 0, 8]) + bytes([6, 64]) + bytes(16) + dst
    assert daemon.routes.send_route(head + bytes(8)) is route  # TCP right after the header
    hop_by_hop = bytes([0x60, 0, 0, 0, 0, 8]) + bytes([0, 64]) + bytes(16) + dst + bytes(8)
    assert daemon.routes.send_route(hop_by_hop) is None
    assert daemon.routes.send_route(b"") is None


# --- the real engine between two daemons ------------------------------------------------------

A, B = ("192.0.2.1", "10.57.0.1"), ("192.0.2.2", "10.57.0.2")


def pair(tmp_path: Path, profile: str, group: str, **daemon: object) -> tuple[Daemon, Daemon]:
    pki = tmp_path / "pki"
    make_pki(pki, {"a": ([A[0]], group), "b": ([B[0]], group)}, time.time())
    daemons = []
    for me, (_lan, overlay), other in (("a", A, B), ("b", B, A)):
        peer = "b" if me == "a" else "a"
        (tmp_path / f"peers-{me}").mkdir()
        (tmp_path / f"peers-{me}" / f"{peer}.pem").write_bytes((pki / f"{peer}.pem").read_bytes())
        config = skipd_config(tmp_path, me, pki, overlay=[f"{overlay}/24"], peers=[{
            "name": peer, "hosts": [other[1]], "tunnel": other[0], "action": "protect",
            "profile": profile}], daemon=daemon)
        d = Daemon(load_config(config), build_engine)
        d.engine = d.engine_factory(d.config, time.time())
        d.mtu = d._compute_mtu(d.config, d.engine)
        d.tun, d.sender = Queue(), Recorder()  # type: ignore[assignment]
        d._learn_limit = lambda dst: 1500  # type: ignore[method-assign]
        daemons.append(d)
    return daemons[0], daemons[1]


def across(a: Daemon, b: Daemon, packets: list[bytes]) -> list[bytes]:
    send(a, *packets)
    out = list(a.sender.packets)
    a.sender.packets.clear()
    receive(b, *out)
    got = list(b.tun.packets)
    b.tun.packets.clear()
    return got


@pytest.mark.parametrize("profile, group", [("modern", "x25519"), ("legacy", "skip-1024")])
def test_a_flow_through_kp_renewals_a_flush_and_both_directions(
        tmp_path: Path, profile: str, group: str) -> None:
    # 64 kB per Kp: a new Kp every 54 packets, each one's first packet the general path's
    a, b = pair(tmp_path, profile, group, rekey_bytes=65536)
    packets = [build_ipv4(A[1], B[1], 6, bytes([i]) * 1200) for i in range(64)]
    general = collections.Counter[str]()

    def counting(name: str, real: Callable[..., object]) -> Callable[..., object]:
        def counted(*args: object) -> object:
            general[name] += 1
            return real(*args)
        return counted

    a.outbound = counting("outbound", a.outbound)  # type: ignore[method-assign]
    b.policy.inbound = counting("policy", b.policy.inbound)  # type: ignore[method-assign]
    for _ in range(3):
        assert across(a, b, packets) == packets
    counters = a.engine.counters()
    assert counters["kp_new"] == 4 and counters["tx_ok"] == 3 * 64
    # the general path saw each Kp's first packet; the receiver's policy, the first one only
    assert general == {"outbound": 4, "policy": 1}
    assert b.routes.receives.keys() == {bytes([10, 57, 0, 1])}
    a.engine.flush(time.time())
    back = [build_ipv4(B[1], A[1], 17, struct.pack("!HHHH", 7, 9, 508, 0) + bytes(500))] * 10
    assert across(a, b, packets) == packets and across(b, a, back) == back
    assert a.stats["b"].packets_out == 4 * 64 and b.stats["a"].packets_in == 4 * 64
    assert b.stats["a"].packets_out == 10 and a.stats["b"].packets_in == 10
    assert not a.drops and not b.drops


def test_a_replayed_datagram_is_refused_on_the_route_too(tmp_path: Path) -> None:
    a, b = pair(tmp_path, "modern", "x25519")
    packets = [build_ipv4(A[1], B[1], 6, bytes(100))] * 3
    send(a, *packets)
    out = list(a.sender.packets)
    receive(b, *out, out[1])
    assert len(b.tun.packets) == 3 and b.engine.counters()["replay"] == 1


@pytest.mark.parametrize("window, refused", [(None, 0), (64, 400)])
def test_the_replay_window_takes_what_the_two_receive_lanes_reorder(
        tmp_path: Path, window: int | None, refused: int) -> None:
    # a new Kp's first packets wait in the kernel filter's slow lane while newer ones take
    # the first: 500 datagrams, the last 100 delivered first
    a, b = pair(tmp_path, "modern", "x25519",
                **({"replay_window": window} if window else {}))
    send(a, build_ipv4(A[1], B[1], 6, bytes(100)))
    receive(b, *a.sender.packets)
    a.sender.packets.clear()
    for i in range(500 // 50):
        send(a, *[build_ipv4(A[1], B[1], 6, bytes([i]) * 100)] * 50)
    out = list(a.sender.packets)
    for start in range(0, 500, 64):
        receive(b, *(out[400:] + out[:400])[start:start + 64])
    assert b.engine.counters().get("replay_too_old", 0) == refused
    assert len(b.tun.packets) == 501 - refused


def test_the_slow_lane_reads_on_while_it_delivers_and_stops_at_its_batch_on_garbage(
        tmp_path: Path) -> None:
    a, b = pair(tmp_path, "modern", "x25519")
    send(a, *[build_ipv4(A[1], B[1], 6, bytes(100))] * 40)
    good = list(a.sender.packets)
    garbage = [bytes(w[:-1]) + bytes([w[-1] ^ 1]) for w in good]  # forged tags
    for datagrams, read in ((garbage, SLOW_BATCH), (good, 40)):
        source = Queue()
        source.queued.extend(datagrams)
        b._on_wire(source, SLOW_BATCH)  # type: ignore[arg-type]
        assert len(datagrams) - len(source.queued) == read
    assert len(b.tun.packets) == 40 and b.engine.counters()["bad_icv"] == SLOW_BATCH


def test_master_keys_are_computed_ahead_so_a_first_contact_needs_no_dh(tmp_path: Path) -> None:
    a, b = pair(tmp_path, "modern", "x25519")
    for d in (a, b):
        assert d.engine.precompute(0) == 1  # one configured peer waits
        assert d.engine.precompute(5) == 0
        assert d.engine.endpoint.kij_cache.computed == 1  # type: ignore[union-attr]
    packet = build_ipv4(A[1], B[1], 6, bytes(100))
    reply = build_ipv4(B[1], A[1], 6, bytes(100))
    assert across(a, b, [packet]) == [packet] and across(b, a, [reply]) == [reply]
    for d in (a, b):  # nothing computed on the way: the first packets found Kij pinned
        assert d.engine.endpoint.kij_cache.computed == 1  # type: ignore[union-attr]
        assert d.engine.precompute(5) == 0


def test_precomputation_runs_in_slices_between_packets(daemon: Daemon) -> None:
    left, turns = [12], []

    def precompute(count: int) -> int:
        time.sleep(0.001)  # a DH computation
        left[0] -= count
        return left[0]

    daemon.engine.precompute = precompute  # type: ignore[method-assign]
    warm = daemon._warm
    daemon._warm = lambda: (turns.append(left[0]), warm())  # type: ignore[method-assign]

    async def main() -> None:
        daemon._warm_soon()
        daemon._warm_soon()  # already scheduled: no second chain
        for _ in range(100):
            await asyncio.sleep(0)
            if not left[0]:
                break

    asyncio.run(main())
    assert left == [0] and daemon.warming is None
    assert 3 <= len(turns) <= 12 and turns == sorted(turns, reverse=True)
