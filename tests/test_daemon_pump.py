"""skipd's compiled send and receive loops (``skip._native.pump_out`` / ``pump_in``, run by
runtime.py's ``_pump_tun`` / ``_pump_wire``) against the Python loops they replace.

Two pairs of daemons with real engines and real descriptors (a datagram socket pair stands in
for each TUN device; raw sockets on the loopback carry SKIP between 127.0.0.1 and
127.0.0.2) go through the same script: a flow across Kp renewals and a flush, the key
management port, IPv4 options, a datagram too big for the path, a reply flow, a replay, a
forgery, and a send the kernel refuses. One pair runs the loops, the other the Python path.
Both must deliver the same datagrams and end with the same counters, drops and statistics:
the loops decline whatever is not the steady state before changing anything, so the Python
path still makes every error, count and log line.
"""

from __future__ import annotations

import collections
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from skip import native
from skip.daemon.config import load_config
from skip.daemon.kernel_filter import SLOW_BATCH
from skip.daemon.keying_adapter import build_engine
from skip.daemon.runtime import Daemon
from skip.daemon.sockets import RawReceiver, RawSender
from skip.wire.ip import ExtensionHeader, build_ipv4, build_ipv6
from tests.netns import make_pki, skipd_config
from tests.test_daemon_runtime import ipv4, udp

pytestmark = [
    pytest.mark.skipif(native.core is None, reason="the compiled core is not built"),
    pytest.mark.skipif(not hasattr(socket, "SO_MARK") or __import__("os").geteuid() != 0,
                       reason="needs root (raw sockets)"),
]

A, B = ("127.0.0.1", "10.57.0.1"), ("127.0.0.2", "10.57.0.2")


class Tun:
    """The daemon's end of a datagram socket pair, read and written like the TUN device."""

    name = "tun-test"

    def __init__(self) -> None:
        self.outside, self.inside = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.inside.setblocking(False)
        self.outside.setblocking(False)

    def fileno(self) -> int:
        return self.inside.fileno()

    def read(self) -> bytes | None:
        try:
            return self.inside.recv(65536)
        except BlockingIOError:
            return None

    def write(self, packet: bytes) -> bool:
        try:
            self.inside.send(packet)
        except OSError:
            return False
        return True

    def feed(self, packets: list[bytes]) -> None:
        for packet in packets:
            self.outside.send(packet)

    def written(self) -> list[bytes]:
        return [] if self.outside.fileno() < 0 else list(_drain(self.outside))

    def close(self) -> None:
        self.inside.close()
        self.outside.close()


def _drain(sock: socket.socket) -> Iterator[bytes]:
    sock.setblocking(False)
    while True:
        try:
            yield sock.recv(65536)
        except BlockingIOError:
            return


class Node:
    def __init__(self, name: str, address: str, daemon: Daemon, receiver: RawReceiver) -> None:
        self.name, self.address, self.d, self.receiver = name, address, daemon, receiver
        self.tun: Tun = daemon.tun  # type: ignore[assignment]


V6 = {"a": "fd57::1", "b": "fd57::2"}  # inner IPv6 addresses beside the IPv4 overlay


def wired_pair(tmp_path: Path, pumped: bool, **daemon: object) -> tuple[Node, Node]:
    pki = tmp_path / "pki"
    make_pki(pki, {"a": ([A[0]], "x25519"), "b": ([B[0]], "x25519")}, time.time())
    nodes = []
    for me, (_lan, overlay), other in (("a", A, B), ("b", B, A)):
        peer = "b" if me == "a" else "a"
        (tmp_path / f"peers-{me}").mkdir()
        (tmp_path / f"peers-{me}" / f"{peer}.pem").write_bytes((pki / f"{peer}.pem").read_bytes())
        config = skipd_config(tmp_path, me, pki, overlay=[f"{overlay}/24", f"{V6[me]}/64"],
                              peers=[{"name": peer, "hosts": [other[1], V6[peer]],
                                      "tunnel": other[0], "action": "protect"}], daemon=daemon)
        d = Daemon(load_config(config), build_engine)
        d.engine = d.engine_factory(d.config, time.time())
        d.mtu = d._compute_mtu(d.config, d.engine)
        d.tun, d.sender = Tun(), RawSender(0, ipv6=False)  # type: ignore[assignment]
        if pumped:
            d.pump_fds = (d.tun.fileno(), d.sender.v4.fileno())
        nodes.append(Node(me, _lan, d, RawReceiver(socket.AF_INET)))
    return nodes[0], nodes[1]


def close(*nodes: Node) -> None:
    for node in nodes:
        node.tun.close()
        node.receiver.sock.close()
        assert node.d.sender is not None
        node.d.sender.v4.close()


def across(a: Node, b: Node, packets: list[bytes],
           mangle: Callable[[list[bytes]], list[bytes]] = lambda wires: wires) -> list[bytes]:
    """``packets`` into a's TUN device, a's batches; what reached b's address, through
    ``mangle``, injected again at b and b's batches; what b wrote to its TUN device."""
    for node in (a, b):
        list(_drain(node.receiver.sock))  # both raw sockets see every protocol-57 datagram
    a.tun.feed(packets)
    for _ in range(len(packets) // 64 + 2):
        a.d._on_tun()
    wires = [w for w in _drain(b.receiver.sock) if w[16:20] == socket.inet_aton(b.address)]
    list(_drain(a.receiver.sock))
    injector = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    try:
        for wire in mangle(wires):
            injector.sendto(wire, (b.address, 0))
    finally:
        injector.close()
    for _ in range(len(wires) // 64 + 2):
        b.d._on_wire(b.receiver)
    list(_drain(a.receiver.sock))
    return b.tun.written()


def with_options(src: str, dst: str) -> bytes:
    """IPv4 with a four-byte option (NOPs, then end of list): never the loops'."""
    plain = ipv4(bytes(40), src, dst, proto=6)
    head = bytearray(plain[:20] + b"\x01\x01\x01\x00")
    head[0], head[2:4] = 0x46, (len(plain) + 4).to_bytes(2, "big")
    head[10:12] = b"\0\0"
    total = sum(int.from_bytes(head[i:i + 2], "big") for i in range(0, 24, 2))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    head[10:12] = (~total & 0xFFFF).to_bytes(2, "big")
    return bytes(head) + plain[20:]


def script(a: Node, b: Node) -> dict[str, Any]:
    flow = [build_ipv4(A[1], B[1], 6, bytes([i]) * 1200) for i in range(64)]
    seen: dict[str, Any] = collections.defaultdict(list)
    for _ in range(3):  # 64 kB per Kp: renewals within the flow
        seen["flow"].append(across(a, b, flow) == flow)
    kmp = udp(A[1], B[1], 20, sport=1640, dport=1640)
    seen["kmp"] = across(a, b, [kmp])  # cleartext, never a loop's
    odd = with_options(A[1], B[1])
    seen["options"] = across(a, b, [odd, flow[0]])
    big = build_ipv4(A[1], B[1], 6, bytes(1500))
    seen["too big"] = across(a, b, [big, flow[1]])
    seen["icmp to the sender"] = [p[20] for p in a.tun.written()]  # type 3 code 4
    assert a.d.engine is not None
    a.d.engine.flush(time.time())
    seen["after a flush"] = across(a, b, flow) == flow
    back = [udp(B[1], A[1], 500)] * 10
    seen["back"] = across(b, a, back) == back
    seen["replay"] = across(a, b, flow[:3], lambda w: [w[0], w[1], w[1], w[2], w[0]])

    def forged(wires: list[bytes]) -> list[bytes]:
        bad = bytearray(wires[1])
        bad[-1] ^= 1
        return [wires[0], bytes(bad), wires[1], wires[2]]

    seen["forgery"] = across(a, b, flow[:3], forged)
    seen["ping"] = across(a, b, [build_ipv4(A[1], B[1], 1, b"\x08\0\0\0" + bytes(60))])
    for node in (a, b):
        assert node.d.engine is not None
        seen[f"{node.name} engine"] = dict(node.d.engine.counters())
        endpoint = node.d.engine.endpoint  # type: ignore[attr-defined]
        keys = [*endpoint._rx.values(), *endpoint._tx.values()]
        seen[f"{node.name} SAs"] = sorted(
            (c.packets_in, c.bytes_in, c.packets_out, c.bytes_out, sa.last_sequence)
            for k in keys for sa in [k.transforms.sas[0]] for c in [sa.counters])
        seen[f"{node.name} drops"] = dict(node.d.drops)
        seen[f"{node.name} traffic"] = dict(node.d.traffic)
        seen[f"{node.name} stats"] = {
            k: (s.packets_in, s.packets_out, s.bytes_in, s.bytes_out)
            for k, s in node.d.stats.items()}
    return dict(seen)


def test_the_loops_deliver_and_count_exactly_as_the_python_path(tmp_path: Path) -> None:
    results, general = [], []
    for pumped in (True, False):
        a, b = wired_pair(tmp_path / str(pumped), pumped, rekey_bytes=65536)
        took = collections.Counter[str]()
        for node, name in ((a, "a"), (b, "b")):
            for method in ("_from_tun", "inbound"):
                real = getattr(node.d, method)

                def counted(*args: Any, _real: Any = real, _key: str = f"{name}.{method}",
                            _took: collections.Counter[str] = took) -> Any:
                    _took[_key] += 1
                    return _real(*args)

                setattr(node.d, method, counted)
        try:
            results.append(script(a, b))
        finally:
            close(a, b)
        general.append(took)
    pumped_run, python_run = results
    assert pumped_run == python_run
    assert pumped_run["flow"] == [True] * 3 and pumped_run["after a flush"] and \
        pumped_run["back"]
    assert pumped_run["kmp"] == [] and pumped_run["a traffic"]["cleartext_out"] == 1
    assert len(pumped_run["options"]) == 2 and len(pumped_run["too big"]) == 1
    assert pumped_run["a drops"] == {"packet_too_big": 1} and len(pumped_run["ping"]) == 1
    assert pumped_run["icmp to the sender"] == [3]
    assert len(pumped_run["replay"]) == 3 and len(pumped_run["forgery"]) == 3
    assert pumped_run["a engine"]["kp_new"] >= 4 and pumped_run["b engine"].get("replay") == 2
    assert pumped_run["b engine"].get("bad_icv") == 1
    # the Python path saw every datagram of the Python run, and only the odd ones (each
    # Kp's first, the key-management port, options, too big, replay, forgery) of the other
    assert general[1]["a._from_tun"] > 250 and general[1]["b.inbound"] > 250
    assert general[0]["a._from_tun"] < 20 and general[0]["b.inbound"] < 20


def ipv6_script(a: Node, b: Node) -> dict[str, Any]:
    """Inner IPv6 over the IPv4 tunnel: TCP and UDP are the loops' (fastpath.py's
    _IPV6_ROUTED, mirrored in C by is_routed_v6); ICMPv6 and extension headers are not."""
    tcp = [build_ipv6(V6["a"], V6["b"], 6, bytes([i]) * 1000) for i in range(40)]
    seen: dict[str, Any] = {}
    seen["tcp"] = across(a, b, tcp) == tcp
    datagrams = [build_ipv6(V6["a"], V6["b"], 17, bytes(300))] * 5
    seen["udp"] = across(a, b, datagrams) == datagrams
    echo = build_ipv6(V6["a"], V6["b"], 58, b"\x80\0\0\0" + bytes(56))
    hop = build_ipv6(V6["a"], V6["b"], 6, bytes(100),
                     extension_headers=[ExtensionHeader(0, 6, bytes(6))])
    seen["icmpv6 and hop-by-hop"] = across(a, b, [echo, tcp[0], hop, tcp[1]])
    seen["back"] = across(b, a, [build_ipv6(V6["b"], V6["a"], 6, bytes(500))] * 5)
    for node in (a, b):
        assert node.d.engine is not None
        seen[f"{node.name} engine"] = dict(node.d.engine.counters())
        seen[f"{node.name} drops"] = dict(node.d.drops)
        seen[f"{node.name} traffic"] = dict(node.d.traffic)
        seen[f"{node.name} stats"] = {
            k: (s.packets_in, s.packets_out, s.bytes_in, s.bytes_out)
            for k, s in node.d.stats.items()}
    return seen


def test_inner_ipv6_goes_through_the_loops_as_through_the_python_path(tmp_path: Path) -> None:
    results, general = [], []
    for pumped in (True, False):
        a, b = wired_pair(tmp_path / str(pumped), pumped)
        took = collections.Counter[str]()
        real = b.d.inbound

        def counted(*args: Any, _real: Any = real, _took: Any = took) -> Any:
            _took["inbound"] += 1
            return _real(*args)

        b.d.inbound = counted  # type: ignore[method-assign]
        try:
            results.append(ipv6_script(a, b))
        finally:
            close(a, b)
        general.append(took["inbound"])
    pumped_run, python_run = results
    assert pumped_run == python_run
    assert pumped_run["tcp"] and pumped_run["udp"] and len(pumped_run["back"]) == 5
    assert len(pumped_run["icmpv6 and hop-by-hop"]) == 4
    # the loops took the steady TCP and UDP; the Python path every datagram of its run
    # (40 + 5 + 4)
    assert general == [3, 49]  # pumped: the first Kp packet, the ICMPv6 and the hop-by-hop


def test_a_send_the_kernel_refuses_counts_as_the_python_path_counts_it(tmp_path: Path) -> None:
    a, b = wired_pair(tmp_path, True)
    try:
        flow = [build_ipv4(A[1], B[1], 6, bytes(200))] * 4
        assert across(a, b, flow) == flow
        assert a.d.engine is not None and a.d.pump_fds is not None
        sa = a.d.engine.endpoint._tx[("local", "b")].transforms.sas[0]  # type: ignore[attr-defined]
        before = sa.last_sequence, sa.counters.packets_out, a.d.stats["b"].packets_out
        refusing = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # no IPv4 address: EINVAL
        a.d.pump_fds = (a.d.pump_fds[0], refusing.fileno())
        a.tun.feed(flow[:1])
        a.d._on_tun()
        refusing.close()
        # protected (a sequence number spent, the SA counted), not sent: the peer's counts
        # stay, one io_error, as when RawSender.send raises
        assert (sa.last_sequence, sa.counters.packets_out, a.d.stats["b"].packets_out) == (
            before[0] + 1, before[1] + 1, before[2])
        assert a.d.drops["io_error"] == 1
    finally:
        close(a, b)


def test_a_full_tun_device_loses_the_datagram_after_its_number_is_taken(tmp_path: Path) -> None:
    a, b = wired_pair(tmp_path, True)
    try:
        flow = [build_ipv4(A[1], B[1], 6, bytes(200))] * 2
        assert across(a, b, flow) == flow
        b.tun.outside.close()  # the device refuses from now on
        wires: list[bytes] = []
        across(a, b, flow[:1], lambda w: wires.extend(w) or w)
        assert b.d.drops["io_error"] == 1 and b.d.traffic["protected_in"] == 2
        engine = b.d.engine
        assert engine is not None
        replays = engine.counters().get("replay", 0)
        across(a, b, [], lambda _: wires)  # the same datagram again: its number is spent
        assert engine.counters().get("replay", 0) == replays + 1
    finally:
        close(a, b)


def test_the_slow_lane_reads_on_through_the_loop_while_it_delivers(tmp_path: Path) -> None:
    a, b = wired_pair(tmp_path, True)
    try:
        flow = [build_ipv4(A[1], B[1], 6, bytes(200))] * 40
        assert across(a, b, flow[:1]) == flow[:1]
        a.tun.feed(flow)
        a.d._on_tun()
        b.d._on_wire(b.receiver, SLOW_BATCH)  # one wake-up of the kernel filter's second lane
        assert b.tun.written() == flow
    finally:
        close(a, b)
