"""skipd's packet decisions without a kernel: the runtime is driven directly with packets, a
recording TUN/sender, and a transparent test double for the keying engine (the real engine is
exercised end to end in tests/test_daemon_netns.py). What is checked here is skipd's own
logic: policy enforcement in both directions, the anti-spoofing check on inner sources,
nomadic peers (whose address only the engine knows), ICMP too-big, counting and log hygiene."""

from __future__ import annotations

import asyncio
import collections
import errno
import ipaddress
import json
import logging
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from skip.daemon import logs
from skip.daemon.config import PeerPolicy, load_config, parse_config
from skip.daemon.engine import Inbound
from skip.daemon.runtime import Daemon
from skip.errors import ConfigError, IntegrityError, KeyingError
from skip.wire.checksum import internet_checksum

CONFIG = """
[daemon]
addresses = ["10.57.0.1/24"]
underlay_mtu = 1500
[default]
action = "deny"
[[peer]]
name = "beta"
hosts = ["10.57.0.2"]
tunnel = "192.0.2.2"
action = "protect"
[[peer]]
name = "gw"
networks = ["10.9.0.0/24"]
tunnel = "192.0.2.3"
action = "protect"
nsid = 1
mkid = "c0000203"
[[peer]]
name = "roamer"
nomadic = true
hosts = ["10.57.0.9"]
nsid = 1
mkid = "0a393909"
action = "protect"
[[peer]]
name = "web"
hosts = ["10.57.0.80"]
action = "allow-cleartext"
mode = "transport"
"""

OVERHEAD = 100
MARK = b"SKIPDOUBLE"


class DoubleEngine:
    """Marks instead of encrypting: protect = outer header + MARK + inner."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.expect: dict[bytes, tuple[str, str]] = {}
        self.nomads: dict[str, str] = {}
        self.counted: collections.Counter[str] = collections.Counter({"kp_generated": 1})

    def protect(self, packet: bytes, now: float, rule: PeerPolicy) -> bytes:
        if rule.nomadic and rule.name not in self.nomads:
            self.counted["nomadic_unheard"] += 1  # like the real engine: nowhere to send yet
            raise KeyingError("nomadic_unheard", "test double: not heard from")
        outer = str(self.nomads.get(rule.name, rule.tunnel))
        self.sent.append((rule.name, outer))
        return ipv4(b"", "192.0.2.1", outer, proto=57) + MARK + packet + bytes(OVERHEAD - 30)

    def precompute(self, count: int) -> int:
        return 0

    def steady_lane(self, rule: PeerPolicy) -> Any:
        return None

    def receive_lane(self) -> Any:
        return None

    def steady_sender(self, rule: PeerPolicy) -> Any:
        """Like the real engine's: protect's steady state (here the same marking), counted
        apart so tests can tell which path a packet took."""
        def send(packet: bytes, now: float) -> bytes:
            self.counted["steady"] += 1
            return self.protect(packet, now, rule)
        return send

    def unprotect(self, datagram: bytes, now: float) -> Inbound:
        if MARK not in datagram:
            self.counted["bad_icv"] += 1  # like the real engine, it counts what it refuses
            raise IntegrityError("bad_icv", "test double: not marked")
        inner = datagram[datagram.index(MARK) + len(MARK):]
        name, outer = self.expect.get(inner[12:16], ("beta", "192.0.2.2"))
        if name == "roamer":
            self.nomads[name] = outer  # like the real engine: follows authenticated packets
        return Inbound(inner, name)

    def events(self) -> list[object]:
        return []

    def counters(self) -> dict[str, int]:
        return dict(self.counted)

    def peers(self, now: float) -> list[dict[str, Any]]:
        rows = [{"rule": "beta", "algorithms": "double", "kp_age": 3.0}]
        return rows + [{"rule": name, "address": address}
                       for name, address in self.nomads.items()]

    def flush(self, now: float) -> int:
        return 0

    def reconfigure(self, config: Any, now: float) -> None:
        pass

    def is_newest(self, datagram: bytes) -> bool:
        return b"REPLAY" not in datagram

    def rx_generation(self) -> int:
        return 0

    def live_keys(self, limit: int) -> list[tuple[bytes, int | None, int]] | None:
        return []

    def prepare(self, config: Any, now: float) -> Any:
        return config

    def commit(self, plan: Any, now: float) -> None:
        pass

    def get_timer(self) -> float:
        return now_plus_an_hour()

    def handle_timer(self, now: float) -> None:
        pass

    def overhead(self, rule: PeerPolicy) -> int:
        return OVERHEAD


def now_plus_an_hour() -> float:
    return time.time() + 3600


def ipv4(payload: bytes, src: str, dst: str, proto: int = 17) -> bytes:
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64,
                                proto, 0, ipaddress.ip_address(src).packed,
                                ipaddress.ip_address(dst).packed))
    hdr[10:12] = struct.pack("!H", internet_checksum(bytes(hdr)))
    return bytes(hdr) + payload


def udp(src: str, dst: str, size: int = 8, sport: int = 5000, dport: int = 6000) -> bytes:
    body = bytes(size)
    return ipv4(struct.pack("!HHHH", sport, dport, 8 + size, 0) + body, src, dst)


class Recorder:
    def __init__(self) -> None:
        self.packets: list[bytes] = []

    def write(self, packet: bytes) -> bool:
        self.packets.append(packet)
        return True

    def send(self, packet: bytes) -> None:
        self.packets.append(packet)


@pytest.fixture()
def daemon() -> Daemon:
    d = Daemon(parse_config(CONFIG, Path("t.toml")), lambda c, n: DoubleEngine())
    d.engine = d.engine_factory(d.config, 0)
    d.mtu = d._compute_mtu(d.config, d.engine)
    d.tun, d.sender = Recorder(), Recorder()  # type: ignore[assignment]
    return d


def test_mtu_leaves_room_for_the_overhead(daemon: Daemon) -> None:
    assert daemon.mtu == 1500 - OVERHEAD


def test_protect_goes_to_the_rule_tunnel(daemon: Daemon) -> None:
    daemon.outbound(udp("10.57.0.1", "10.9.0.5"), 1.0)
    daemon.outbound(udp("10.57.0.1", "10.57.0.2"), 1.0)
    assert daemon.engine.sent == [("gw", "192.0.2.3"), ("beta", "192.0.2.2")]
    assert len(daemon.sender.packets) == 2
    assert daemon.traffic["protected_out"] == 2


def test_deny_and_cleartext(daemon: Daemon) -> None:
    daemon.outbound(udp("10.57.0.1", "10.200.0.1"), 1.0)
    assert daemon.drops == {"policy_deny": 1} and not daemon.sender.packets
    plain = udp("10.57.0.1", "10.57.0.80")
    daemon.outbound(plain, 1.0)
    assert daemon.sender.packets == [plain]


def test_too_big_answers_with_icmp_to_the_sender(daemon: Daemon) -> None:
    big = udp("10.57.0.7", "10.57.0.2", size=1500 - OVERHEAD - 28 + 1)
    daemon.outbound(big, 1.0)
    assert daemon.drops["packet_too_big"] == 1 and not daemon.sender.packets
    (icmp,) = daemon.tun.packets
    assert icmp[9] == 1 and icmp[16:20] == bytes([10, 57, 0, 7]) and icmp[20:22] == b"\x03\x04"
    assert icmp[12:16] == bytes([192, 0, 0, 8])  # RFC 7600 dummy, not one of our addresses
    assert struct.unpack_from("!H", icmp, 26)[0] == 1500 - OVERHEAD


def test_a_path_narrower_than_underlay_mtu_is_answered_not_lost(daemon: Daemon) -> None:
    """The kernel's route toward the tunnel says 1400 although underlay_mtu says 1500: the
    packet that no longer fits gets ICMP with the MTU that does, not a silent io_error; and
    where skipd learns it only from EMSGSIZE (the link shrank under it), the same."""
    paths = {bytes([192, 0, 2, 2]): 1400}
    daemon.path_mtu = paths.get  # type: ignore[assignment]
    big = udp("10.57.0.7", "10.57.0.2", size=1400 - OVERHEAD - 28 + 1)
    daemon.outbound(big, 1.0)
    assert daemon.drops == {"packet_too_big": 1} and not daemon.sender.packets
    assert struct.unpack_from("!H", daemon.tun.packets[-1], 26)[0] == 1400 - OVERHEAD
    fits = udp("10.57.0.7", "10.57.0.2", size=1400 - OVERHEAD - 28)
    daemon.outbound(fits, 1.0)
    assert len(daemon.sender.packets) == 1

    class Refusing(Recorder):  # the link went down to 1300 since skipd last asked
        def send(self, packet: bytes) -> None:
            if len(packet) > 1300:
                raise OSError(errno.EMSGSIZE, "Message too long")
            super().send(packet)

    daemon.sender = Refusing()  # type: ignore[assignment]
    paths[bytes([192, 0, 2, 2])] = 1300
    daemon.outbound(fits, 1.0)
    assert daemon.drops == {"packet_too_big": 2}  # not io_error
    assert struct.unpack_from("!H", daemon.tun.packets[-1], 26)[0] == 1300 - OVERHEAD
    assert daemon.limits[bytes([192, 0, 2, 2])] == 1300


def test_inbound_delivers_and_counts(daemon: Daemon) -> None:
    inner = udp("10.57.0.2", "10.57.0.1", size=100)
    daemon.inbound(ipv4(b"", "192.0.2.2", "192.0.2.1", 57) + MARK + inner, 5.0)
    assert daemon.tun.packets == [inner]
    (beta, *_rest) = daemon.peers()
    assert beta["bytes_in"] == len(inner) and beta["kp_age"] == 3.0


def test_peer_cannot_claim_another_peers_addresses(daemon: Daemon) -> None:
    # authenticated as beta (by address 192.0.2.2) but inner source in the gateway's network
    spoof = udp("10.9.0.5", "10.57.0.1")
    daemon.inbound(ipv4(b"", "192.0.2.2", "192.0.2.1", 57) + MARK + spoof, 5.0)
    assert daemon.drops == {"inner_source_mismatch": 1} and not daemon.tun.packets
    # the gateway's MKID is required for its network
    daemon.engine.expect[bytes([10, 9, 0, 5])] = ("gw", "192.0.2.3")
    daemon.inbound(ipv4(b"", "192.0.2.3", "192.0.2.1", 57) + MARK + spoof, 5.0)
    assert daemon.tun.packets == [spoof]


def _roamer(daemon: Daemon) -> dict[str, Any]:
    return next(p for p in daemon.peers() if p["name"] == "roamer")


def test_nomadic_peer_address_comes_from_the_engine(daemon: Daemon) -> None:
    daemon.outbound(udp("10.57.0.1", "10.57.0.9"), 1.0)
    assert daemon.counters()["drops"] == {"nomadic_unheard": 1}  # the engine's refusal
    assert not daemon.sender.packets and _roamer(daemon)["address"] is None
    daemon.engine.expect[bytes([10, 57, 0, 9])] = ("roamer", "198.51.100.4")
    daemon.inbound(ipv4(b"", "198.51.100.4", "192.0.2.1", 57) + MARK
                   + udp("10.57.0.9", "10.57.0.1"), 2.0)
    daemon.outbound(udp("10.57.0.1", "10.57.0.9"), 3.0)
    assert daemon.engine.sent[-1] == ("roamer", "198.51.100.4")
    assert _roamer(daemon)["address"] == "198.51.100.4"


def test_garbage_is_counted_by_reason(daemon: Daemon) -> None:
    daemon.inbound(b"\x45" + bytes(30), 1.0)
    daemon.outbound(b"\x99garbage", 1.0)
    assert daemon.counters()["drops"] == {"bad_icv": 1, "bad_version": 1}
    samples = list(daemon.samples())
    assert ("skipd_dropped_packets_total", "counter", "packets dropped, by reason code",
            {"reason": "bad_icv"}, 1) in samples
    assert daemon.counters()["engine"] == {"kp_generated": 1}


def test_json_logs_carry_reason_and_refuse_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("json", "info")
    logs.LOGGER.info("hello", extra=logs.fields(reason="bad_icv", peer="beta"))
    line = json.loads(capsys.readouterr().err)
    assert line["reason"] == "bad_icv" and line["peer"] == "beta" and line["msg"] == "hello"
    with pytest.raises(TypeError, match="never keys"):
        logs.fields(key=b"\x01" * 16)


def test_drop_log_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    logs.configure("text", "info")
    logs.LOGGER.propagate = True
    try:
        droplog = logs.DropLog(interval=60, burst=2)
        with caplog.at_level(logging.INFO, logger="skipd"):
            for _ in range(1000):
                droplog.drop("bad_icv", "bad packet")
        assert len(caplog.records) == 2
    finally:
        logs.LOGGER.propagate = False


def test_an_engine_bug_costs_one_packet_not_the_daemon(daemon: Daemon) -> None:
    def broken(*_args: object) -> None:
        raise NameError("a bug in the engine")

    class Socket:  # what the loop's reader drains: two datagrams, then nothing waiting
        def __init__(self) -> None:
            self.waiting = [b"anything", b"anything"]

        def read(self) -> bytes | None:
            return self.waiting.pop() if self.waiting else None

    daemon.engine.unprotect = broken  # type: ignore[method-assign]
    daemon._on_wire(Socket())  # type: ignore[arg-type]
    assert daemon.drops == {"internal_error": 2}
    daemon.outbound(udp("10.57.0.1", "10.57.0.2"), 1.0)  # the rest keeps working
    assert daemon.traffic["protected_out"] == 1


def test_drop_fields_are_formatted_only_for_lines_written(
        daemon: Daemon, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    logs.configure("json", "info")
    denied = udp("10.57.0.1", "10.200.0.1")
    formatted: list[bytes] = []
    original = ipaddress.ip_address

    def address(packed: bytes) -> object:
        formatted.append(packed)
        return original(packed)

    monkeypatch.setattr(ipaddress, "ip_address", address)
    for _ in range(50):
        daemon.outbound(denied, 1.0)
    monkeypatch.undo()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert daemon.drops == {"policy_deny": 50}
    assert [line["dst"] for line in lines] == ["10.200.0.1"] * daemon.droplog.burst
    assert len(formatted) == daemon.droplog.burst  # not once per dropped packet
    with pytest.raises(TypeError, match="never keys"):
        str(logs.Deferred(bytes, 16))


class RecordedRouting:
    """The kernel's part of a reload, recorded."""

    def set_routes(self, wanted: dict) -> None:
        self.wanted = wanted


def reloadable(path: Path, tun: Any) -> Daemon:
    """A daemon on the double, from CONFIG written to ``path`` (rewrite it, then reload)."""
    path.write_text(CONFIG)
    d = Daemon(load_config(path), lambda c, n: DoubleEngine())
    d.engine = d.engine_factory(d.config, 0)
    d.tun, d.sender = tun, Recorder()  # type: ignore[assignment]
    d.routing = RecordedRouting()  # type: ignore[assignment]
    return d


def test_reload_forgets_cached_policy_decisions(tmp_path: Path) -> None:
    path = tmp_path / "skipd.toml"
    d = reloadable(path, Recorder())
    packet = udp("10.57.0.1", "10.200.0.1")
    d.outbound(packet, 1.0)
    d.outbound(packet, 1.0)  # the second answered from the cached decision
    assert d.drops == {"policy_deny": 2} and not d.sender.packets
    path.write_text(CONFIG.replace('[default]\naction = "deny"',
                                   '[default]\naction = "allow-cleartext"'))
    asyncio.run(d.reload())
    d.netlink.shutdown()
    d.outbound(packet, 1.0)
    assert d.sender.packets == [packet] and d.drops == {"policy_deny": 2}


def test_a_reload_of_an_emptied_file_is_refused_with_what_happened(tmp_path: Path) -> None:
    """Issue 15 item 6: an emptied file was reported as "daemon.control_socket: changing it
    needs a restart"; now it says the file is empty, and a real restart-only change names
    both values. Either way the running configuration stays."""
    path = tmp_path / "skipd.toml"
    path.write_text(CONFIG)
    d = Daemon(load_config(path), lambda c, n: DoubleEngine())
    d.engine = d.engine_factory(d.config, 0)
    running = d.config
    path.write_text("# truncated by an editor\n\n")
    with pytest.raises(ConfigError, match="the file is empty; a reload would drop every rule"):
        asyncio.run(d.reload())
    assert d.config is running
    path.write_text(CONFIG.replace("[daemon]", "[daemon]\nudp_port = 4500", 1))
    with pytest.raises(ConfigError, match=r"daemon.udp_port: the file says 4500, skipd runs "
                       r"with 0; changing it needs a restart"):
        asyncio.run(d.reload())
    assert d.config is running
    d.netlink.shutdown()


def test_a_udp_endpoint_moves_only_on_the_peers_newest_packet(daemon: Daemon) -> None:
    """Issue 15 item 7: in SKIP-in-UDP mode a replay that got through (after a restart, say)
    from the attacker's address moved all of our traffic for the peer there. Now the first
    authentic packet sets the endpoint and only the peer's newest packet moves it."""
    inner = udp("10.57.0.2", "10.57.0.1", size=20)
    wire = ipv4(b"", "192.0.2.2", "192.0.2.1", 57) + MARK + inner
    daemon.inbound(wire, 5.0, via=("192.0.2.2", 1640))
    assert daemon.udp_peers["beta"] == ("192.0.2.2", 1640)
    replay = ipv4(b"", "203.0.113.66", "192.0.2.1", 57) + MARK + inner + b"REPLAY"
    daemon.inbound(replay, 6.0, via=("203.0.113.66", 40000))
    assert daemon.udp_peers["beta"] == ("192.0.2.2", 1640)  # delivered, but not followed
    moved = ipv4(b"", "198.51.100.9", "192.0.2.1", 57) + MARK + inner
    daemon.inbound(moved, 7.0, via=("198.51.100.9", 50000))  # the peer behind a new NAT port
    assert daemon.udp_peers["beta"] == ("198.51.100.9", 50000)
