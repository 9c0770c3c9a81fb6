"""skipd in network namespaces against what an attacker (or a long transfer) does to keying:
a replay of traffic captured before a restart, a bulk flow that runs through hundreds of
traffic keys, and forged algorithm-discovery requests (issue 9 s. 1.3; issue 15 defects 1, 3).

Each ran against skipd before modern revision 2.1 and failed: the replay was delivered, the
flow stalled once the receiver held 512 keys, and every forged request took one of the
peer's receive-key slots.
"""

from __future__ import annotations

import re
import struct
import subprocess
import sys
import time

import pytest

from skip.crypto.kdf import counter_n
from skip.daemon.control import request
from tests.netns import can_run, eventually, tcp_transfer
from tests.test_daemon_traffic import LAN, OVERLAY, Site, _send_raw, site_fixtures, start_pair

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(can_run() is not None, reason=str(can_run()))]


lab_site, site = site_fixtures("skipd-attacks")


def _capture_one(site: Site, host: str) -> subprocess.Popen:
    """A raw protocol-57 socket in ``host``'s namespace: the next SKIP packet it receives."""
    listener = site.ns[host].popen(sys.executable, "-c", (
        "import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 57)\n"
        "s.settimeout(10); sys.stdout.write(s.recv(65535).hex())\n"),
        stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    return listener


def _peer(site: Site, me: str, name: str) -> dict:
    rows = request(site.sock(me), "peers")["result"]
    return next(r for r in rows if r["name"] == name)


def _first_reply(site: Site, host: str, address: str) -> int | None:
    """Ping every 0.1 s for a second: the icmp_seq of the first reply (None: no reply)."""
    out = site.ns[host].run("ping", "-c", "10", "-i", "0.1", "-W", "1", address,
                            check=False).stdout
    seqs = [int(s) for s in re.findall(r"icmp_seq=(\d+)", out)]
    return min(seqs) if seqs else None


def test_a_packet_captured_before_a_restart_is_dropped_and_traffic_recovers(site: Site) -> None:
    start_pair(site)
    listener = _capture_one(site, "a")
    assert site.ping("a", OVERLAY["b"][0], 1)
    captured = bytes.fromhex(listener.communicate(timeout=10)[0])  # b's reply to a
    assert captured[9] == 57 and captured[12:16] == bytes(map(int, LAN["b"][0].split(".")))
    site.stop("a")
    site.start("a", "a", [{"name": "b", "hosts": list(OVERLAY["b"]), "tunnel": LAN["b"][0],
                           "action": "protect"},
                          {"name": "b-transport", "hosts": [LAN["b"][1]],
                           "mode": "transport", "action": "protect"}], store=("b",))
    # b still sends under its Kp from before the restart: the first reply is refused
    # (kp_stale), b is told, and its next packet has a new Kp: within a second
    first = _first_reply(site, "a", OVERLAY["b"][0])
    assert first is not None and first <= 10, first
    assert site.counters("a")["engine"].get("kp_notice_sent", 0) >= 1
    assert site.counters("b")["engine"].get("kp_notice_received", 0) >= 1
    stale = site.counters("a")["drops"].get("kp_stale", 0)
    _send_raw(site.ns["b"], [captured] * 3)  # the replay, from b's address
    assert eventually(lambda: site.counters("a")["drops"].get("kp_stale", 0) == stale + 3), \
        site.counters("a")["drops"]
    assert site.ping("a", OVERLAY["b"][0])  # and live traffic is untouched


def test_a_bulk_flow_runs_through_far_more_kps_than_the_receiver_holds(site: Site) -> None:
    """rekey_bytes scaled down to 64 KB: 48 MB is about 770 Kps, where the receiver's table
    holds 512 (10 MB Kps: a 7.7 GB flow; before, it stalled for good at 5.12 GB)."""
    start_pair(site, rekey_bytes=65536)
    size = 48 * 1024 * 1024
    sent, got, seconds = tcp_transfer(site.ns["a"], site.ns["b"], OVERLAY["a"][0], size,
                                      timeout=120)
    assert sent == got
    made = site.counters("b")["engine"]["kp_new"]
    assert made > 600, made
    assert "kp_limit" not in site.counters("a")["drops"]
    # bounded: retired once superseded (5 s), the oldest early when Kps come faster
    assert _peer(site, "a", "b")["rx_keys"] <= 512
    assert site.ping("b", OVERLAY["a"][0])
    print(f"{size} bytes in {seconds:.1f} s under {made} Kps")


def _solicitation() -> bytes:
    """A modern Kij Alg 0 request (ADP-00) as anyone can make it: header and padding."""
    header = struct.pack("!BBBBIBBBB", 0x20, 0, 0, 59, counter_n(time.time()), 0, 11, 11, 0)
    return header + bytes(256 - 20 - len(header))


def _ipv4(src: str, dst: str, payload: bytes) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, 57, 0,
                         bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))))
    return header + payload  # the kernel fills the checksum for IP_HDRINCL


def test_forged_solicitations_do_not_use_up_the_peers_receive_keys(site: Site) -> None:
    """g forges 300 requests to b "from a": b answers a at most once a second, always under
    its one current Kp to a, so a's table of b's keys does not grow and b->a keeps flowing;
    requests "from" an address b does not know get no answer at all (the kernel drops them)."""
    start_pair(site)
    assert site.ping("b", OVERLAY["a"][0], 1)
    keys = _peer(site, "a", "b")["rx_keys"]
    forged = [_ipv4(LAN["a"][0], LAN["b"][0], _solicitation())] * 300
    unknown = [_ipv4("192.0.2.77", LAN["b"][0], _solicitation())] * 50
    for batch in range(3):
        _send_raw(site.ns["g"], forged[batch * 100:(batch + 1) * 100] + unknown)
        time.sleep(0.5)
    engine, drops = site.counters("b")["engine"], site.counters("b")["drops"]
    # every request "from a" refused (there is no Kp to decrypt); the 150 from an address no
    # rule names never reached skipd: its kernel filter dropped them (docs/skipd.md)
    assert drops["no_kp"] == 300, drops
    assert 1 <= engine.get("adp_sent", 0) <= 4, engine  # one a second toward a
    # the other requests "from a" were rate limited; those from nowhere got nothing at all
    assert engine["adp_sent"] + drops.get("rate_limited", 0) == 300, (engine, drops)
    assert _peer(site, "a", "b")["rx_keys"] <= keys + 1
    assert site.ping("b", OVERLAY["a"][0])
    assert "kp_limit" not in site.counters("a")["drops"]
