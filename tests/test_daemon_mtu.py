"""skipd against an underlay narrower than ``underlay_mtu``: the path MTU comes from the kernel.

``underlay_mtu`` defaults to 1500. On a 1400-byte link every full-size protected packet used
to fail with EMSGSIZE, counted as ``io_error`` and answered with nothing, so TCP through the
tunnel stalled at 0 bytes. Here the link between the two hosts is 1400 bytes: skipd must size
its TUN device from the route toward the peer (a TCP transfer of a few MB arrives intact),
and when the link shrinks under a running skipd, the packet that no longer fits must be
answered with ICMP "fragmentation needed" / ICMPv6 "packet too big" naming the MTU that does
fit, so path-MTU discovery works through the tunnel.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from skip.daemon.control import request
from tests.netns import (
    Lab,
    can_run,
    eventually,
    make_pki,
    skipd_config,
    start_skipd,
    tcp_transfer,
)

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(can_run() is not None, reason=str(can_run()))]

UNDERLAY = {"a": "192.0.2.1", "b": "192.0.2.2"}
OVERLAY = {"a": ("10.57.0.1", "fd57::1"), "b": ("10.57.0.2", "fd57::2")}
SIZE = 4 * 1024 * 1024


class Pair:
    def __init__(self, lab: Lab, work: Path, link_mtu: int) -> None:
        self.work = work
        self.ns = {"a": lab.host("a"), "b": lab.host("b")}
        self.ifs = dict(zip("ab", lab.link(self.ns["a"], [f"{UNDERLAY['a']}/24"], self.ns["b"],
                                           [f"{UNDERLAY['b']}/24"]), strict=True))
        self.set_link_mtu(link_mtu)
        pki = work / "pki"
        make_pki(pki, {n: ([UNDERLAY[n]], "x25519") for n in "ab"}, time.time())
        for me, other in (("a", "b"), ("b", "a")):
            store = work / f"peers-{me}"
            store.mkdir()
            (store / f"{other}.pem").write_bytes((pki / f"{other}.pem").read_bytes())
            config = skipd_config(work, me, pki, store=store,
                                  overlay=[f"{OVERLAY[me][0]}/24", f"{OVERLAY[me][1]}/64"],
                                  peers=[{"name": other, "hosts": list(OVERLAY[other]),
                                          "tunnel": UNDERLAY[other], "action": "protect"}])
            start_skipd(self.ns[me], config, self.sock(me), work / f"{me}.log")

    def set_link_mtu(self, mtu: int) -> None:
        for name, ns in self.ns.items():
            ns.run("ip", "link", "set", "dev", self.ifs[name], "mtu", str(mtu))

    def sock(self, me: str) -> Path:
        return self.work / f"{me}.sock"

    def status(self, me: str) -> dict:
        return request(self.sock(me), "status")["result"]

    def drops(self, me: str) -> dict:
        return request(self.sock(me), "counters")["result"]["drops"]

    def df_ping(self, address: str, payload: int) -> subprocess.CompletedProcess[str]:
        return self.ns["a"].run("ping", "-c", "1", "-W", "2", "-M", "do", "-s", str(payload),
                                address, check=False)


@pytest.fixture()
def narrow(tmp_path: Path) -> Iterator[Pair]:
    with Lab() as lab:
        yield Pair(lab, tmp_path, 1400)


@pytest.fixture()
def wide(tmp_path: Path) -> Iterator[Pair]:
    with Lab() as lab:
        yield Pair(lab, tmp_path, 1500)


def test_tun_mtu_follows_a_narrow_link_and_tcp_flows(narrow: Pair) -> None:
    # (with the TUN MTU made from underlay_mtu, 1500, this stalled: every full-size segment
    # failed with EMSGSIZE and the transfer ran into the timeout)
    sent, got, seconds = tcp_transfer(narrow.ns["b"], narrow.ns["a"], OVERLAY["b"][0], SIZE,
                                      timeout=20)
    assert sent == got
    mtu = narrow.status("a")["mtu"]
    assert 1280 <= mtu <= 1400 - 40, mtu  # the link's 1400, less SKIP + ESP + outer IP
    # every full-size segment fitted: nothing refused by the kernel, nothing too big
    assert "io_error" not in narrow.drops("a") and "packet_too_big" not in narrow.drops("a")
    assert narrow.df_ping(OVERLAY["b"][0], mtu - 28).returncode == 0  # the largest that fits
    print(f"{SIZE} bytes through a 1400-byte link in {seconds:.2f} s, TUN MTU {mtu}")


def test_a_link_narrowed_under_skipd_is_answered_with_icmp(wide: Pair) -> None:
    before = wide.status("a")["mtu"]
    assert wide.df_ping(OVERLAY["b"][0], before - 28).returncode == 0
    # sized for 1500, this no longer fits once protected: skipd, not silence, says so
    # (IPv6: "packet too big" from the destination whose path is narrow)
    wide.set_link_mtu(1450)
    answer = wide.df_ping(OVERLAY["b"][1], before - 48)
    text = answer.stdout + answer.stderr
    found = re.search(r"Packet too big: mtu=(\d+)", text)
    assert answer.returncode != 0 and found, text
    assert 1280 <= int(found.group(1)) <= 1450 - 40 and int(found.group(1)) < before
    # the TUN device follows the path at once (so TCP flows without an ICMP round per flow)
    assert eventually(lambda: wide.status("a")["mtu"] == int(found.group(1)))
    middle = wide.status("a")["mtu"]
    # IPv4: "fragmentation needed" with the next-hop MTU that fits
    wide.set_link_mtu(1400)
    answer = wide.df_ping(OVERLAY["b"][0], middle - 28)
    text = answer.stdout + answer.stderr
    found = re.search(r"Frag needed and DF set \(mtu = (\d+)\)", text)
    assert answer.returncode != 0 and found, text
    assert 1280 <= int(found.group(1)) <= 1400 - 40 and int(found.group(1)) < middle
    assert wide.drops("a").get("packet_too_big", 0) >= 2
    assert "io_error" not in wide.drops("a")
    # the sender's kernel learned it: the same ping is now refused locally, at that MTU
    again = wide.df_ping(OVERLAY["b"][0], middle - 28)
    assert again.returncode != 0 and f"mtu={found.group(1)}" in again.stdout + again.stderr
    assert eventually(lambda: wide.status("a")["mtu"] == int(found.group(1)))
    sent, got, _ = tcp_transfer(wide.ns["b"], wide.ns["a"], OVERLAY["b"][0], SIZE, timeout=20)
    assert sent == got
