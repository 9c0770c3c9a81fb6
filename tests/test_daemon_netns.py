"""skipd against the real Linux network stack, in network namespaces the tests create and
remove: policy routing, deny and key-management bypass, reload (good and bad), metrics,
control-socket permissions, and what SIGTERM leaves in the kernel (the block: fail closed)
and what ``skipd --cleanup`` removes."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from skip import native
from skip.daemon.control import request
from skip.wire.ip import (
    PROTO_DSTOPTS,
    PROTO_HOPOPTS,
    PROTO_SKIP,
    ExtensionHeader,
    IPv6Option,
    build_ipv6,
)
from tests.netns import Lab, Namespace, can_run, start_skipd, stop_skipd

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(can_run() is not None, reason=str(can_run()))]

A4, B4, A6, B6 = "192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2"

BASE = """
[daemon]
control_socket = "{sock}"
metrics = "127.0.0.1:9657"
log_format = "json"

[default]
action = "allow-cleartext"

[[peer]]
name = "beta"
hosts = ["192.0.2.2", "2001:db8::2"]
mode = "transport"
action = "{action}"
"""


class Pair:
    def __init__(self, lab: Lab, tmp: Path) -> None:
        self.lab = lab
        self.a = lab.host("a")
        self.b = lab.host("b")
        lab.link(self.a, [f"{A4}/24", f"{A6}/64"], self.b, [f"{B4}/24", f"{B6}/64"])
        self.tmp = tmp
        self.sock = tmp / "a.sock"
        self.config = tmp / "a.toml"
        self.log = tmp / "a.log"

    def write(self, action: str, extra: str = "") -> None:
        self.config.write_text(BASE.format(sock=self.sock, action=action) + extra)

    def ping(self, address: str) -> bool:
        return self.a.run("ping", "-c1", "-W1", address, check=False).returncode == 0

    def counters(self) -> dict:
        return request(self.sock, "counters")["result"]

    def skipctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.a.run(sys.executable, "-m", "skip.cli.skipctl", *args, "-s",
                          str(self.sock), check=False)


@pytest.fixture()
def pair(tmp_path: Path) -> Iterator[Pair]:
    with Lab() as lab:
        yield Pair(lab, tmp_path)


def kernel_state(ns: Namespace) -> dict[str, str]:
    return {
        "rules4": ns.run("ip", "-4", "rule").stdout,
        "rules6": ns.run("ip", "-6", "rule").stdout,
        "table4": ns.run("ip", "-4", "route", "show", "table", "57", check=False).stdout,
        "table6": ns.run("ip", "-6", "route", "show", "table", "57", check=False).stdout,
        "links": ns.run("ip", "-o", "link").stdout,
    }


def test_deny_is_enforced_counted_and_cleaned_up(pair: Pair) -> None:
    assert pair.ping(B4) and pair.ping(B6)
    pair.write("deny")
    proc = start_skipd(pair.a, pair.config, pair.sock, pair.log)
    state = kernel_state(pair.a)
    assert "not from all fwmark 0x5c1 lookup 57" in state["rules4"] + state["rules6"]
    assert "192.0.2.2 dev skip0" in state["table4"] and "2001:db8::2 dev skip0" in state["table6"]
    assert not pair.ping(B4) and not pair.ping(B6)
    assert pair.counters()["drops"]["policy_deny"] >= 2
    assert stop_skipd(proc) == 0
    # fail closed: the device and its routes are gone, the rule and the blocks stay
    state = kernel_state(pair.a)
    assert "not from all fwmark 0x5c1 lookup 57" in state["rules4"] + state["rules6"]
    assert "skip0" not in state["links"] and "skip0" not in state["table4"] + state["table6"]
    assert "unreachable 192.0.2.2 " in state["table4"]
    assert "unreachable 2001:db8::2 " in state["table6"]
    assert not pair.sock.exists()
    assert not pair.ping(B4) and not pair.ping(B6)
    # until the operator lifts them on purpose
    assert pair.a.run(sys.executable, "-m", "skip.cli.skipd", "-c", str(pair.config),
                      "--cleanup").returncode == 0
    state = kernel_state(pair.a)
    assert "fwmark" not in state["rules4"] + state["rules6"]
    assert not state["table4"] and not state["table6"]
    assert pair.ping(B4)
    lines = [json.loads(line) for line in pair.log.read_text().splitlines()]
    assert any(line.get("reason") == "policy_deny" and line.get("peer") == "beta"
               for line in lines)


def test_key_management_port_bypasses_a_deny_rule(pair: Pair) -> None:
    pair.write("deny")
    start_skipd(pair.a, pair.config, pair.sock, pair.log)
    listener = pair.b.popen(sys.executable, "-c", (
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
        f"s.bind(('{B4}', 1640)); s.settimeout(10); print(s.recv(100).decode(), flush=True)"),
        stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    pair.a.run(sys.executable, "-c", (
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
        f"s.sendto(b'cdp-get', ('{B4}', 1640))"))
    out, _ = listener.communicate(timeout=10)
    assert out.strip() == "cdp-get"
    assert pair.counters()["traffic"]["cleartext_out"] == 1  # it did go through skipd


def test_reload_good_and_bad(pair: Pair) -> None:
    pair.write("deny")
    start_skipd(pair.a, pair.config, pair.sock, pair.log)
    assert not pair.ping(B4)
    # a bad file is refused with the key named, and the running policy stays
    pair.config.write_text(pair.config.read_text().replace('action = "deny"',
                                                           'action = "dney"'))
    refused = pair.skipctl("reload")
    assert refused.returncode == 1
    assert "peer[0].action: 'dney' is not one of" in refused.stderr
    assert not pair.ping(B4)
    # SIGHUP with the same bad file: still running, still denying
    pid = request(pair.sock, "status")["result"]["pid"]
    os.kill(pid, signal.SIGHUP)
    time.sleep(0.3)
    assert not pair.ping(B4)
    before = pair.counters()["drops"]["policy_deny"]
    # a good file takes effect: cleartext peers are no longer routed through skipd
    pair.write("allow-cleartext")
    assert pair.skipctl("reload").returncode == 0
    assert pair.ping(B4) and pair.ping(B6)
    assert not kernel_state(pair.a)["table4"]
    assert pair.counters()["drops"]["policy_deny"] == before  # counters survive reload


def test_metrics_and_private_control_socket(pair: Pair) -> None:
    pair.write("deny")
    start_skipd(pair.a, pair.config, pair.sock, pair.log)
    assert stat.S_IMODE(pair.sock.stat().st_mode) == 0o600
    pair.ping(B4)
    text = pair.a.run(sys.executable, "-c", (
        "import urllib.request; "
        "print(urllib.request.urlopen('http://127.0.0.1:9657/metrics').read().decode())")).stdout
    assert "# TYPE skipd_dropped_packets_total counter" in text
    assert 'skipd_dropped_packets_total{reason="policy_deny"} 1' in text
    status = json.loads(pair.skipctl("status", "--json").stdout)["result"]
    assert status["interface"] == "skip0" and status["transport"] == "ip/57"
    assert status["engine"] == native.describe()  # skipd runs the core the suite runs


def test_bad_config_refused_at_start_with_one_line(pair: Pair) -> None:
    pair.config.write_text("[daemon]\nmtu = 100\n")
    result = pair.a.run(sys.executable, "-m", "skip.cli.skipd", "-c", str(pair.config),
                        check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"skipd: config_invalid: {pair.config}: daemon.mtu: 100 is "
                                     "below the IPv4 minimum of 576 (0 = automatic)")
    assert "skip0" not in kernel_state(pair.a)["links"]


def test_a_killed_skipd_leaves_nothing_a_new_one_cannot_take_over(pair: Pair) -> None:
    pair.write("deny")
    proc = start_skipd(pair.a, pair.config, pair.sock, pair.log)
    proc.kill()  # SIGKILL: no clean-up at all
    proc.wait(timeout=10)
    assert "fwmark 0x5c1" in kernel_state(pair.a)["rules4"]  # the rule outlived it
    proc = start_skipd(pair.a, pair.config, pair.sock, pair.log)
    assert not pair.ping(B4)
    assert stop_skipd(proc) == 0
    state = kernel_state(pair.a)
    assert state["rules4"].count("lookup 57") == 1 and state["rules6"].count("lookup 57") == 1
    assert not pair.ping(B4)  # fail closed until skipd --cleanup
    pair.a.run(sys.executable, "-m", "skip.cli.skipd", "-c", str(pair.config), "--cleanup")
    state = kernel_state(pair.a)
    assert "fwmark" not in state["rules4"] + state["rules6"] and pair.ping(B4)


IPV4_ONLY = """
[daemon]
control_socket = "{sock}"
log_format = "json"

[default]
action = "allow-cleartext"

[[peer]]
name = "beta"
hosts = [{hosts}]
mode = "transport"
action = "deny"
"""


def test_a_host_without_ipv6_gets_an_ipv4_only_skipd(tmp_path: Path) -> None:
    with Lab() as lab:
        a, b = lab.host("a"), lab.host("b")
        for key in ("all", "default"):
            a.sysctl(f"net.ipv6.conf.{key}.disable_ipv6", "1")
        lab.link(a, [f"{A4}/24"], b, [f"{B4}/24"])
        sock, config, log = tmp_path / "a.sock", tmp_path / "a.toml", tmp_path / "a.log"
        config.write_text(IPV4_ONLY.format(sock=sock, hosts=f'"{B4}"'))
        proc = start_skipd(a, config, sock, log)
        assert a.run("ping", "-c1", "-W1", B4, check=False).returncode != 0  # policy holds
        assert request(sock, "counters")["result"]["drops"]["policy_deny"] >= 1
        assert request(sock, "status")["result"]["ip_versions"] == [4]
        # the kernel's own lists: skipd holds IPv4 raw sockets and no IPv6 one, no IPv6 rule
        assert len(a.run("cat", "/proc/net/raw").stdout.splitlines()) > 1
        assert len(a.run("cat", "/proc/net/raw6").stdout.splitlines()) == 1  # header only
        assert "fwmark" not in a.run("ip", "-6", "rule").stdout
        assert "fwmark 0x5c1" in a.run("ip", "-4", "rule").stdout
        # a reload that brings IPv6 is refused, and the running policy stays
        config.write_text(IPV4_ONLY.format(sock=sock, hosts=f'"{B4}", "{B6}"'))
        refused = request(sock, "reload")
        assert not refused["ok"] and "needs IPv6; skipd runs IPv4-only" in str(refused)
        assert a.run("ping", "-c1", "-W1", B4, check=False).returncode != 0
        assert stop_skipd(proc) == 0
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        said = [line for line in lines if line["msg"].startswith("IPv6 unavailable")]
        assert said and said[0]["why"] == "net.ipv6.conf.all.disable_ipv6 is 1"
        assert any(line.get("ip_versions") == "4" for line in lines)
        # a configuration that names an IPv6 address is refused there, saying why
        config.write_text(IPV4_ONLY.format(sock=sock, hosts=f'"{B4}", "{B6}"'))
        result = a.run(sys.executable, "-m", "skip.cli.skipd", "-c", str(config), check=False)
        assert result.returncode == 2, result.stderr
        assert f"peer 'beta': {B6} needs IPv6, but net.ipv6.conf.all.disable_ipv6 is 1" in (
            result.stderr)
        assert "skip0" not in a.run("ip", "-o", "link").stdout


RECEIVE_ONE = """
import select, socket
from skip.daemon.sockets import RawReceiver
receiver = RawReceiver(socket.AF_INET6)
print("ready", flush=True)
for _ in range({count}):
    select.select([receiver], [], [], 10)
    print(receiver.read().hex(), flush=True)
"""


def test_ipv6_receive_rebuilds_the_extension_headers_in_front_of_skip(pair: Pair) -> None:
    """What Linux delivered on a raw socket, rebuilt, is byte for byte what was sent: the
    fixed header's class and flow label, a hop-by-hop and a destination-options header (the
    headers a legacy AH over IPv6 covers)."""
    options = ExtensionHeader.with_options(PROTO_DSTOPTS, 0, [IPv6Option(0x1E, b"skip")])
    sent = [
        build_ipv6(B6, A6, PROTO_SKIP, bytes(range(24)), traffic_class=0x28, flow_label=0x5A5A5,
                   extension_headers=[ExtensionHeader.with_options(PROTO_HOPOPTS, 0, []),
                                      options]),
        build_ipv6(B6, A6, PROTO_SKIP, b"plain", hop_limit=9),
    ]
    receiver = pair.a.popen(sys.executable, "-c", RECEIVE_ONE.format(count=len(sent)),
                            stdout=subprocess.PIPE, text=True)
    assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
    pair.b.run(sys.executable, "-c", (
        "import socket, sys; s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 255); "
        "s.setsockopt(socket.IPPROTO_IPV6, 36, 1)\n"
        f"for p in {[p.hex() for p in sent]!r}: s.sendto(bytes.fromhex(p), ('{A6}', 0))"))
    out, _ = receiver.communicate(timeout=15)
    assert out.split() == [p.hex() for p in sent]
