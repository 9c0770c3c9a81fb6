"""Certificate discovery by CDP between two skipd in network namespaces (issue 10; next-wave.md
part 1): each host knows only its own key and the CA, the first packet waits while skipd asks
its peer on UDP 1640, and from then on the LAN carries nothing but SKIP. tshark, reading a
capture of the LAN, is the witness of what crossed it."""

from __future__ import annotations

import json
import shutil
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
    can_run,
    eventually,
    make_pki,
    skipd_config,
    start_skipd,
    stop_skipd,
    tcp_transfer,
)

pytestmark = [pytest.mark.netns, pytest.mark.tshark,
              pytest.mark.skipif(can_run() is not None, reason=str(can_run())),
              pytest.mark.skipif(not (shutil.which("tshark") and shutil.which("dumpcap")),
                                 reason="needs tshark and dumpcap (Debian package tshark)")]

LAN = {"a": "192.0.2.1", "b": "192.0.2.2"}
OVERLAY = {"a": "10.57.0.1", "b": "10.57.0.2"}


class Hosts:
    def __init__(self, lab: Lab, work: Path) -> None:
        self.work = work
        self.ns = {n: lab.host(n) for n in ("a", "b")}
        self.lan = lab.switch([(self.ns[n], [f"{LAN[n]}/24"]) for n in ("a", "b")])
        self.pki = work / "pki"
        make_pki(self.pki, {n: ([LAN[n]], "x25519") for n in LAN}, time.time(),
                 revoked=["b"])
        self.procs: dict[str, subprocess.Popen] = {}
        self.configs: dict[str, Path] = {}

    def start(self, me: str, **daemon: object) -> None:
        other = "b" if me == "a" else "a"
        store = self.work / f"peers-{me}"
        store.mkdir(exist_ok=True)  # empty: nothing known of the peer
        self.configs[me] = skipd_config(
            self.work, me, self.pki, store=store, overlay=[f"{OVERLAY[me]}/24"],
            daemon=daemon or None,
            peers=[{"name": other, "hosts": [OVERLAY[other]], "tunnel": LAN[other],
                    "action": "protect"}])
        self.procs[me] = start_skipd(self.ns[me], self.configs[me], self.sock(me),
                                     self.work / f"{me}.log")

    def sock(self, me: str) -> Path:
        return self.work / f"{me}.sock"

    def ask(self, me: str, command: str) -> dict:
        reply = request(self.sock(me), command)
        assert reply["ok"], reply
        return reply["result"]

    def ping(self, host: str, address: str, count: int = 1) -> bool:
        return self.ns[host].run("ping", "-c", str(count), "-i", "0.2", "-W", "2", address,
                                 check=False).returncode == 0


@pytest.fixture()
def hosts(tmp_path: Path) -> Iterator[Hosts]:
    with Lab() as lab:
        site = Hosts(lab, tmp_path)
        yield site
        for proc in site.procs.values():
            if proc.poll() is None:
                assert stop_skipd(proc) == 0


def test_a_peer_learnt_by_cdp_is_protected_from_the_first_packet(hosts: Hosts) -> None:
    """next-wave.md 1.9 end to end: the first ping waits for the certificate (both ways:
    b learns a when a's first SKIP packet arrives) and gets its answer; the capture shows
    the CDP exchange (the cookie round trip included, CDP-M2) and then only protocol 57."""
    hosts.start("a")
    hosts.start("b")
    cap = Capture(hosts.ns["a"], hosts.lan["a"], hosts.work / "lan.pcap")
    assert hosts.ping("a", OVERLAY["b"]), (hosts.work / "a.log").read_text()
    sent, got, _ = tcp_transfer(hosts.ns["b"], hosts.ns["a"], OVERLAY["b"], 2 * 1024 * 1024)
    assert sent == got
    cap.stop()
    kinds = cap.protocols()
    cdp = {"udp:1640", *(f"udp:{port}" for port in _client_ports(cap))}
    assert len(cdp) == 3  # the responder port and one requester port per host
    assert set(kinds) <= cdp | {"v4:57"}, set(kinds) - cdp
    # each way: a GET, a COOKIE_REQUIRED, the GET with the cookie, the certificate (CDP-M2)
    assert sum(kind in cdp for kind in kinds) == 8
    last_cdp = max(i for i, kind in enumerate(kinds) if kind in cdp)
    assert last_cdp < 20 and set(kinds[last_cdp + 1:]) == {"v4:57"}
    for me, other in (("a", "b"), ("b", "a")):
        found = hosts.ask(me, "discovery")
        assert found["enabled"] and found["responder"]
        assert [(e["rule"], e["name"]) for e in found["learned"]] == [
            (other, f"nsid 1 {LAN[other]}")]
        assert found["counters"]["cdp_learned"] == 1
        assert found["counters"]["responder_cdp_cookie_sent"] == 1
    plain = subprocess.run([sys.executable, "-m", "skip.cli.skipctl", "discovery", "-s",
                            str(hosts.sock("a"))], capture_output=True, text=True)
    assert plain.returncode == 0 and f"b  nsid 1 {LAN['b']}  from cdp {LAN['b']}:1640" \
        in plain.stdout
    peers = {p["name"]: p for p in hosts.ask("a", "peers")}
    assert peers["b"]["bytes_out"] > 2 * 1024 * 1024


def test_a_revoked_certificate_is_refused_whoever_serves_it(hosts: Hosts) -> None:
    """Discovery validates like the store: after a reload with a CRL that revokes b, the
    learned certificate goes, and what CDP brings again is refused as cert_revoked."""
    hosts.start("a")
    hosts.start("b")
    assert hosts.ping("a", OVERLAY["b"])
    (hosts.pki / "ca.crl").write_bytes((hosts.pki / "revoked.crl").read_bytes())
    assert hosts.ask("a", "reload")
    assert not hosts.ping("a", OVERLAY["b"])
    assert eventually(lambda: hosts.ask("a", "discovery")["counters"].get("cert_revoked", 0)
                      >= 1)
    assert hosts.ask("a", "discovery")["learned"] == []
    log = [json.loads(line) for line in (hosts.work / "a.log").read_text().splitlines()]
    assert any(line.get("reason") == "cert_revoked" and line.get("peer") == "b"
               for line in log)


def test_without_discovery_an_unknown_peer_is_dropped_as_before(hosts: Hosts) -> None:
    hosts.start("a", discovery=[])
    hosts.start("b")
    assert not hosts.ping("a", OVERLAY["b"])
    assert hosts.ask("a", "discovery") == {"enabled": False}
    assert hosts.ask("a", "counters")["drops"].get("unknown_mkid", 0) >= 1


def _client_ports(cap: Capture) -> set[str]:
    """The requesters' ephemeral ports, as tshark saw GETs leave from them."""
    out = subprocess.run(["tshark", "-r", str(cap.path), "-Y", "udp.dstport == 1640",
                          "-T", "fields", "-e", "udp.srcport"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())
