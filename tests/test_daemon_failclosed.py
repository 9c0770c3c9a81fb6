"""skipd fails closed: what its policy protects stays unroutable while it is not running.

When skipd stops (SIGTERM) or dies (SIGKILL) the kernel removes its TUN device and the routes
into it. Unless something stays in their place, protected destinations fall through to the
main table, and a default route via another host carries them in clear. Here host ``a`` has
exactly that: a default route via host ``c``, which records every packet it is handed, while
the protected overlay address of ``b`` is reached through skipd's tunnel over a direct link.
The test proves the tunnel works, that neither a killed nor a stopped skipd lets ``c`` see a
single packet for the protected addresses, and that ``skipd --cleanup`` lifts the block on
purpose (after which ``c`` does see them: the capture would have caught a leak).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from skip.daemon.control import request
from tests.netns import (
    Capture,
    Lab,
    Namespace,
    can_run,
    make_pki,
    skipd_config,
    start_skipd,
    stop_skipd,
)

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(can_run() is not None, reason=str(can_run()))]

A4, B4 = "192.0.2.1", "192.0.2.2"  # the direct link a-b (the underlay)
A_UP4, C4, A_UP6, C6 = "198.51.100.1", "198.51.100.3", "2001:db8:c::1", "2001:db8:c::3"
OVERLAY = {"a": ("10.57.0.1", "fd57::1"), "b": ("10.57.0.2", "fd57::2")}
PROTECTED = OVERLAY["b"]


class Site:
    def __init__(self, lab: Lab, work: Path) -> None:
        self.work = work
        self.a, self.b, self.c = lab.host("a"), lab.host("b"), lab.host("c")
        lab.link(self.a, [f"{A4}/24"], self.b, [f"{B4}/24"])
        self.c_if = lab.link(self.a, [f"{A_UP4}/24", f"{A_UP6}/64"], self.c,
                             [f"{C4}/24", f"{C6}/64"])[1]
        self.a.run("ip", "route", "add", "default", "via", C4)
        self.a.run("ip", "-6", "route", "add", "default", "via", C6)
        self.pki = work / "pki"
        make_pki(self.pki, {"a": ([A4], "x25519"), "b": ([B4], "x25519")}, time.time())
        self.configs = {me: self._config(me, other, tunnel)
                        for me, other, tunnel in (("a", "b", B4), ("b", "a", A4))}

    def _config(self, me: str, other: str, tunnel: str) -> Path:
        store = self.work / f"peers-{me}"
        store.mkdir()
        (store / f"{other}.pem").write_bytes((self.pki / f"{other}.pem").read_bytes())
        return skipd_config(self.work, me, self.pki, store=store,
                            overlay=[f"{OVERLAY[me][0]}/24", f"{OVERLAY[me][1]}/64"],
                            peers=[{"name": other, "hosts": list(OVERLAY[other]),
                                    "tunnel": tunnel, "action": "protect"}])

    def start(self, me: str) -> subprocess.Popen:
        ns = self.a if me == "a" else self.b
        return start_skipd(ns, self.configs[me], self.work / f"{me}.sock",
                           self.work / f"{me}.log")

    def ping(self, address: str) -> bool:
        return self.a.run("ping", "-c", "2", "-i", "0.2", "-W", "1", address,
                          check=False).returncode == 0

    def skipd(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.a.run(sys.executable, "-m", "skip.cli.skipd", "-c", str(self.configs["a"]),
                          *args, check=False)

    def table(self) -> str:
        return (self.a.run("ip", "-4", "route", "show", "table", "57").stdout
                + self.a.run("ip", "-6", "route", "show", "table", "57").stdout)


def seen_by_c(capture: Capture) -> list[str]:
    """Destinations of the IP packets c was handed for the protected addresses."""
    fields = subprocess.run(
        ["tshark", "-r", str(capture.path), "-Y",
         " or ".join(f"{'ipv6' if ':' in p else 'ip'}.dst == {p}" for p in PROTECTED),
         "-T", "fields", "-e", "ip.dst", "-e", "ipv6.dst"],
        capture_output=True, text=True, check=True).stdout
    return [line.strip() for line in fields.splitlines() if line.strip()]


@pytest.fixture()
def site(tmp_path: Path) -> Iterator[Site]:
    with Lab() as lab:
        yield Site(lab, tmp_path)


def _down(site: Site, proc: subprocess.Popen, how: str) -> None:
    if how == "kill":
        proc.kill()
        proc.wait(timeout=10)
    else:
        assert stop_skipd(proc) == 0


def test_protected_addresses_stay_unroutable_while_skipd_is_down(site: Site) -> None:
    site.start("b")
    capture = Capture(site.c, site.c_if, site.work / "c.pcapng")
    for how in ("kill", "term"):
        proc = site.start("a")
        assert all(site.ping(p) for p in PROTECTED), how  # through the tunnel
        _down(site, proc, how)
        assert "skip0" not in site.a.run("ip", "-o", "link").stdout
        assert not any(site.ping(p) for p in PROTECTED), how
        table = site.table()
        assert "unreachable 10.57.0.2 " in table and "unreachable fd57::2 " in table, table
    # the next start takes the leftovers over: one rule per family, no second block
    proc = site.start("a")
    assert all(site.ping(p) for p in PROTECTED)
    assert site.a.run("ip", "-4", "rule").stdout.count("lookup 57") == 1
    assert site.a.run("ip", "-6", "rule").stdout.count("lookup 57") == 1
    assert site.table().count("unreachable") == 2
    # while a skipd runs, --cleanup is refused and changes nothing
    refused = site.skipd("--cleanup")
    assert refused.returncode == 2 and refused.stderr.startswith("skipd: in_use: "), refused
    assert site.table().count("unreachable") == 2
    proc.kill()
    proc.wait(timeout=10)
    time.sleep(0.3)
    assert seen_by_c(capture) == []  # a killed and a stopped skipd: not one packet leaked
    assert not any(site.ping(p) for p in PROTECTED)
    # the operator lifts the block on purpose: the destinations follow the main table, in
    # clear, via c (which shows that c's capture sees such packets)
    done = site.skipd("--cleanup")
    assert done.returncode == 0 and "removed 2 policy rule(s)" in done.stdout, done
    assert "and 2 blocking route(s) from table 57" in done.stdout, done.stdout
    assert "lookup 57" not in site.a.run("ip", "rule").stdout + site.a.run("ip", "-6",
                                                                           "rule").stdout
    assert site.table() == ""
    site.ping(PROTECTED[0])  # c does not answer; it is only handed the packet
    capture.stop()
    assert PROTECTED[0] in seen_by_c(capture)
    again = site.skipd("--cleanup")
    assert again.returncode == 0 and "nothing to remove" in again.stdout, again


STALE = """
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


def test_the_next_start_drops_blocks_its_configuration_no_longer_routes(tmp_path: Path
                                                                        ) -> None:
    with Lab() as lab:
        a: Namespace = lab.host("a")
        sock, config, log = tmp_path / "a.sock", tmp_path / "a.toml", tmp_path / "a.log"
        config.write_text(STALE.format(sock=sock, hosts='"192.0.2.2", "192.0.2.7"'))
        proc = start_skipd(a, config, sock, log)
        proc.kill()
        proc.wait(timeout=10)
        table = a.run("ip", "route", "show", "table", "57").stdout
        assert "unreachable 192.0.2.7 " in table and "unreachable 192.0.2.2 " in table
        config.write_text(STALE.format(sock=sock, hosts='"192.0.2.2"'))
        proc = start_skipd(a, config, sock, log)
        table = a.run("ip", "route", "show", "table", "57").stdout
        assert "192.0.2.7" not in table and "unreachable 192.0.2.2 " in table, table
        assert "192.0.2.2 dev skip0" in table
        assert request(sock, "status")["ok"]
        assert stop_skipd(proc) == 0
