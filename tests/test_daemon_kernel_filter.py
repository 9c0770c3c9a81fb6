"""skipd's kernel filter on its IPv4 raw receiver (issue 15, floods; skip/daemon/kernel_filter.py)
in network namespaces: a and b run skipd, g is on the same LAN without one and plays the
attacker. Protocol-57 packets from g's address die in the kernel (skipd never reads them:
no counter moves), the same bytes from b's address reach skipd and are counted by reason, and
a nomadic rule (a peer from anywhere) turns the filter off."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skip.daemon.control import request
from tests.netns import can_run, eventually
from tests.test_daemon_traffic import (
    LAN,
    LAPTOP,
    LAPTOP_MKID,
    OVERLAY,
    Site,
    rules_ab,
    site_fixtures,
    start_pair,
)

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(can_run() is not None, reason=str(can_run()))]


lab_site, site = site_fixtures("skipd-filter")


def _skip_packets(src: str, dst: str, count: int) -> list[bytes]:
    """Version-2 SKIP headers followed by random bytes, from ``src`` (IP_HDRINCL: the kernel
    fills in the checksum)."""
    header = bytes([0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 57, 0, 0]) + \
        bytes(map(int, src.split("."))) + bytes(map(int, dst.split(".")))
    return [header + bytes([0x20]) + os.urandom(99) for _ in range(count)]


def _send(site: Site, host: str, datagrams: list[bytes]) -> None:
    site.ns[host].run(sys.executable, "-c", (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)\n"
        "for line in sys.stdin.read().split():\n"
        "    d = bytes.fromhex(line); s.sendto(d, (socket.inet_ntoa(d[16:20]), 0))\n"),
        input="\n".join(d.hex() for d in datagrams))


def _dropped(site: Site, me: str) -> int:
    return sum(request(site.sock(me), "counters")["result"]["drops"].values())


def test_packets_from_unknown_addresses_die_in_the_kernel(site: Site) -> None:
    start_pair(site)
    status = request(site.sock("a"), "status")["result"]
    assert status["kernel_filter"] == "1 source"  # b's IPv4 tunnel address
    assert site.ping("a", OVERLAY["b"][0])
    before = _dropped(site, "a")
    _send(site, "g", _skip_packets(LAN["g"][0], LAN["a"][0], 200))  # an address no rule names
    time.sleep(0.5)
    assert _dropped(site, "a") == before
    # the same bytes from a known peer's address reach skipd and are counted by reason
    _send(site, "b", _skip_packets(LAN["b"][0], LAN["a"][0], 200))
    assert eventually(lambda: _dropped(site, "a") >= before + 200, 5), \
        request(site.sock("a"), "counters")["result"]["drops"]
    assert site.ping("a", OVERLAY["b"][0])


def test_a_nomadic_rule_turns_the_filter_off_and_a_reload_on(site: Site) -> None:
    nomadic = {"name": "laptop", "nomadic": True, "nsid": 1, "mkid": LAPTOP_MKID,
               "hosts": [LAPTOP], "action": "protect"}
    config = site.start("a", "a", [*rules_ab("a", "b"), nomadic], store=("b", "laptop"))
    site.start("b", "b", rules_ab("b", "a"), store=("a",))
    assert request(site.sock("a"), "status")["result"]["kernel_filter"] == "off"
    before = _dropped(site, "a")
    _send(site, "g", _skip_packets(LAN["g"][0], LAN["a"][0], 100))
    assert eventually(lambda: _dropped(site, "a") >= before + 100, 5)  # a laptop could be g
    # without the nomadic rule, a reload puts the filter back
    text = config.read_text()
    config.write_text(text[:text.index("[[peer]]\nname = \"laptop\"")])
    assert request(site.sock("a"), "reload")["ok"]
    assert request(site.sock("a"), "status")["result"]["kernel_filter"] == "1 source"
    before = _dropped(site, "a")
    _send(site, "g", _skip_packets(LAN["g"][0], LAN["a"][0], 100))
    time.sleep(0.5)
    assert _dropped(site, "a") == before
    assert site.ping("a", OVERLAY["b"][0])


def test_a_flood_from_elsewhere_costs_the_peers_little(site: Site) -> None:
    """Measured, not timed: a's pings to b while g floods a as fast as one Python process
    can (printed; the loss bound is loose because the flooder shares the 2 cores; that no
    flood packet reached skipd is the exact part)."""
    start_pair(site)
    assert site.ping("a", OVERLAY["b"][0])
    before = _dropped(site, "a")
    flooder = site.ns["g"].popen(sys.executable, "-c", (
        "import os, socket, time\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)\n"
        f"d = {_skip_packets(LAN['g'][0], LAN['a'][0], 1)[0]!r}\n"
        f"to = ({LAN['a'][0]!r}, 0); end = time.monotonic() + 4; n = 0\n"
        "while time.monotonic() < end:\n"
        "    for _ in range(1000):\n"
        "        s.sendto(d, to)\n"
        "    n += 1000\n"
        "print(n)\n"), stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    ping = site.ns["a"].run("ping", "-q", "-c", "100", "-i", "0.02", "-W", "1", OVERLAY["b"][0],
                            check=False).stdout
    sent = int(flooder.communicate(timeout=30)[0])
    loss = int(ping.split("% packet loss")[0].rsplit(" ", 1)[-1])
    print(f"flood of {sent / 4:.0f} pps from g: a->b ping loss {loss}%")
    # MEASURED (2-core VM): 0% at 134k pps; 20% at 97k pps with the filter off
    assert loss <= 10, ping
    assert _dropped(site, "a") == before  # not one flood packet reached skipd


def test_which_sources_the_filter_admits() -> None:
    import ipaddress

    from skip.daemon.config import parse_config
    from skip.daemon.kernel_filter import MAX_ADDRESSES, outer_networks, program

    def nets(peers: str) -> list[str] | None:
        config = parse_config('[default]\naction = "deny"\n' + peers, Path("/x.toml"))
        found = outer_networks(config)
        return None if found is None else [str(n) for n in found]

    tunnel = '[[peer]]\nname = "b"\nhosts = ["10.57.0.2"]\ntunnel = "192.0.2.2"\n' \
        'action = "protect"\n'
    transport = '[[peer]]\nname = "t"\nhosts = ["198.51.100.7", "2001:db8::7"]\n' \
        'mode = "transport"\naction = "protect"\n'
    clear = '[[peer]]\nname = "c"\nhosts = ["203.0.113.9"]\naction = "allow-cleartext"\n'
    assert nets(tunnel + transport + clear) == ["192.0.2.2/32", "198.51.100.7/32"]
    by_mkid = tunnel.replace('action', 'nsid = 1\nmkid = "c0000202"\naction')
    assert nets(by_mkid) is None  # known by name from any address
    many = "".join(f'[[peer]]\nname = "p{i}"\nhosts = ["10.{i >> 8}.{i & 255}.1"]\n'
                   f'mode = "transport"\naction = "protect"\n' for i in range(MAX_ADDRESSES + 1))
    assert nets(many) is None
    insns = program([ipaddress.IPv4Network("192.0.2.2/32"),
                     ipaddress.IPv4Network("198.51.100.0/24")])
    # group test, then per source (mask only for a prefix), each accept right after its test
    assert len(insns) == 4 + 3 + 4 + 1 and insns[-1] == (0x06, 0, 0, 0)
    assert all(jt <= 1 and jf <= 1 for _, jt, jf, _ in insns)
