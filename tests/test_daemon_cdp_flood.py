"""A flood of CDP requests from spoofed addresses against a running skipd (issue 10: "does
not make the responder send more than the limits allow nor stop answering the legitimate
requester (measure both)"; next-wave.md CDP-M2, CDP-M6; decisions.md "CDP under a flood").

Hosts a, b and g on one LAN. g sends GETs for b's name to b's port 1640 from addresses all
over 198.51.0.0/16 (b routes them back via g, so its answers are on the wire), as fast as one
Python process can. One second in, a starts skipd knowing nobody and pings b: its CDP lookup
must get b's certificate through the flood. dumpcap on b's side of the LAN is the witness of
what came in and what went out, counted by tshark.
"""

from __future__ import annotations

import collections
import ipaddress
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skip.wire.cdp import Action, CdpMessage, CdpRecord, NameType, RecordAction
from skip.wire.names import SkipName
from tests.netns import can_run
from tests.test_daemon_traffic import LAN, OVERLAY, Site, rules_ab, site_fixtures

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(can_run() is not None, reason=str(can_run()))]

lab_site, site = site_fixtures("skipd-cdp-flood")

SPOOFED = "198.51.0.0/16"
FLOOD_SECONDS = 4.0
BURST, PER_SOURCE = 10, 5.0  # the responder's per-address limits (CdpResponder defaults)

FLOOD = """
import os, socket, struct, sys, time
get, dst, seconds = bytes.fromhex(sys.argv[1]), socket.inet_aton(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
sent, end = 0, time.monotonic() + seconds
while time.monotonic() < end:
    for _ in range(256):
        src = bytes([198, 51]) + os.urandom(2)
        sport = 1024 + (sent % 60000)
        udp = struct.pack("!HHHH", sport, 1640, 8 + len(get), 0) + get
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, src, dst)
        try:
            s.sendto(ip + udp, (sys.argv[2], 0))
            sent += 1
        except OSError:
            pass
print(sent)
"""


def _get(name: SkipName) -> bytes:
    record = CdpRecord(RecordAction.GET, NameType.SKIP, name.encode())
    return CdpMessage(Action.REQUEST, 0x5EED, 0, (record,)).encode()


def _udp_1640(pcap: Path) -> list[tuple[str, str, int]]:
    """(source, destination, UDP payload bytes) of each datagram to or from port 1640."""
    out = subprocess.run(["tshark", "-r", str(pcap), "-Y", "udp.port == 1640", "-T", "fields",
                          "-e", "ip.src", "-e", "ip.dst", "-e", "udp.length"],
                         capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        src, dst, length = line.split("\t")
        rows.append((src, dst, int(length) - 8))
    return rows


def test_a_spoofed_flood_is_not_amplified_and_the_real_requester_gets_its_answer(
        site: Site) -> None:
    b4 = LAN["b"][0]
    site.ns["b"].run("ip", "route", "replace", SPOOFED, "via", LAN["g"][0])
    try:
        peers_b = [r for r in rules_ab("b", "a") if r["name"] == "a"]
        peers_a = [r for r in rules_ab("a", "b") if r["name"] == "b"]
        site.start("b", "b", peers_b, store=("a",))
        pcap = site.work / "cdp-flood.pcap"
        dumpcap = site.ns["b"].popen("dumpcap", "-q", "-i", site.lan["b"], "-B", "64",
                                     "-f", "udp port 1640", "-w", str(pcap),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        flood = site.ns["g"].popen(
            sys.executable, "-c", FLOOD,
            _get(SkipName.of_address(ipaddress.ip_address(b4).packed)).hex(), b4,
            str(FLOOD_SECONDS), stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)
        site.start("a", "a", peers_a, store=())  # knows nobody: must discover b
        started = time.monotonic()
        answered = site.ns["a"].run("ping", "-c", "1", "-W", "5", OVERLAY["b"][0],
                                    check=False).returncode == 0
        first_ping = time.monotonic() - started
        flooded = int(flood.communicate(timeout=FLOOD_SECONDS + 30)[0])
        time.sleep(0.5)
        dumpcap.terminate()
        dumpcap.wait(timeout=10)
        found = site.ns["a"].run(sys.executable, "-m", "skip.cli.skipctl", "discovery",
                                 "--json", "-s", str(site.sock("a"))).stdout
        responder = site.ns["b"].run(sys.executable, "-m", "skip.cli.skipctl", "discovery",
                                     "--json", "-s", str(site.sock("b"))).stdout
    finally:
        site.ns["b"].run("ip", "route", "del", SPOOFED, check=False)
    spoofed = ipaddress.ip_network(SPOOFED)
    rows = _udp_1640(pcap)
    came = [(s, n) for s, d, n in rows if d == b4 and ipaddress.ip_address(s) in spoofed]
    went = [(d, n) for s, d, n in rows if s == b4 and ipaddress.ip_address(d) in spoofed]
    per_address = collections.Counter(d for d, _ in went)
    report = (f"flood: {flooded} GETs sent by g, {len(came)} seen at b "
              f"({sum(n for _, n in came)} B); b answered {len(went)} "
              f"({sum(n for _, n in went)} B) to {len(per_address)} addresses, at most "
              f"{max(per_address.values(), default=0)} to one; a's first ping "
              f"{'answered' if answered else 'LOST'} in {first_ping:.2f} s")
    print(report)
    # the legitimate requester was answered in the middle of the flood
    assert answered, report + "\n" + responder + "\n" + found
    assert json.loads(found)["result"]["counters"]["cdp_learned"] == 1, found
    # what the flood made b send: never more bytes than it was sent, no address more
    # than its burst and rate allow, and every answer to a spoofed address a bare cookie
    assert len(came) > 1000, report  # the flood really ran
    assert sum(n for _, n in went) <= sum(n for _, n in came), report
    assert max(per_address.values()) <= BURST + PER_SOURCE * (FLOOD_SECONDS + 1), report
    assert {n for _, n in went} <= {12}, report  # COOKIE_REQUIRED, 0 records
