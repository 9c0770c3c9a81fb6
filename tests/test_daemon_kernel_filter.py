"""skipd's kernel filter on its IPv4 raw receiver (issue 15, floods; skip/daemon/kernel_filter.py)
in network namespaces: a and b run skipd, g is on the same LAN without one and plays the
attacker. Protocol-57 packets from g's address die in the kernel (skipd never reads them:
no counter moves), the same bytes from b's address reach skipd and are counted by reason, and
a nomadic rule (a peer from anywhere) turns the filter off."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from skip.daemon.control import request
from tests import floods
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
    """Version-2 SKIP headers followed by random bytes, from ``src``."""
    return [floods.datagram("unknown_source", src, dst, b"") for _ in range(count)]


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
    assert request(site.sock("a"), "status")["result"]["kernel_lanes"] == 1
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
    flood = floods.flooder(site.ns["g"], _skip_packets(LAN["g"][0], LAN["a"][0], 1)[0], 4)
    time.sleep(0.5)
    ping = site.ns["a"].run("ping", "-q", "-c", "100", "-i", "0.02", "-W", "1", OVERLAY["b"][0],
                            check=False).stdout
    sent = int(flood.communicate(timeout=30)[0])
    loss = floods.ping_loss(ping)
    print(f"flood of {sent / 4:.0f} pps from g: a->b ping loss {loss:.0f}%")
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
                   f'mode = "transport"\naction = "protect"\n' for i in range(MAX_ADDRESSES[4] + 1))
    assert nets(many) is None
    insns = program([ipaddress.IPv4Network("192.0.2.2/32"),
                     ipaddress.IPv4Network("198.51.100.0/24")])
    # group test, then per source (mask only for a prefix), each accept right after its test
    assert len(insns) == 4 + 3 + 4 + 1 and insns[-1] == (0x06, 0, 0, 0)
    assert all(jt <= 1 and jf <= 1 for _, jt, jf, _ in insns)


# the two that cost the most before the lanes (100 % and 57 % ping loss); tools/bench flood
# runs all five kinds and measures the rate
@pytest.mark.parametrize("kind", ["forged_ekp", "replay"])
def test_a_flood_from_a_known_address_costs_the_peer_little(site: Site, kind: str) -> None:
    """Issue 15, floods: g spoofs b's own address (which the source filter must admit).
    What carries no EKp of a live key (forged, garbage, an unknown algorithm) goes to
    skipd's second queue (skip/daemon/kernel_filter.py, two lanes) and b's packets under
    its live Kp to the first, so a's pings to b keep flowing; a replay of b's live traffic
    joins the second lane once the filter's floor has passed it. Each flood is counted by
    reason as far as it is read."""
    start_pair(site)
    real = floods.capture_one(site.ns["a"], lambda: site.ping("a", OVERLAY["b"][0], 1))
    assert request(site.sock("a"), "status")["result"]["kernel_lanes"] == 2
    reason = floods.REASONS[kind]
    datagram = floods.datagram(kind, LAN["b"][0], LAN["a"][0], real)
    pps, loss, drops = _pings_under_flood(site, datagram, OVERLAY["b"][0])
    print(f"{kind} flood of {pps:.0f} pps from b's address: a->b ping loss {loss:.0f}%; "
          f"read and refused as {reason}: {drops.get(reason, 0)}")
    assert drops.get(reason, 0) > 0  # the flood reached skipd and was counted
    assert loss <= 10


def _pings_under_flood(site: Site, datagram: bytes, target: str
                       ) -> tuple[float, float, dict[str, int]]:
    """100 pings a -> ``target`` (50/s) while g floods ``datagram``: the flood's rate, the
    ping loss (%) and a's drops by reason."""
    flooder = floods.flooder(site.ns["g"], datagram, 3.5)
    time.sleep(0.5)
    ping = site.ns["a"].run("ping", "-q", "-c", "100", "-i", "0.02", "-W", "1", target,
                            check=False).stdout
    sent = int(flooder.communicate(timeout=30)[0])
    return sent / 3.5, floods.ping_loss(ping), \
        request(site.sock("a"), "counters")["result"]["drops"]


def test_an_ipv6_flood_from_a_known_address_costs_the_peer_little(site: Site) -> None:
    """The same two lanes on the IPv6 receiver (its filter reads the addresses at
    SKF_NET_OFF): g floods a over IPv6 with forged EKps from b's IPv6 address, whose
    transport-mode rule protects what a sends b there; a's pings to it keep flowing."""
    start_pair(site)
    b6, a6 = LAN["b"][1], LAN["a"][1]
    status = request(site.sock("a"), "status")["result"]
    assert status["kernel_filter_v6"] == "1 source", status
    assert site.ping("a", b6)
    pps, loss, drops = _pings_under_flood(site, floods.datagram("forged_ekp", b6, a6, b""), b6)
    print(f"IPv6 forged-EKp flood of {pps:.0f} pps from b's address: a->b ping loss "
          f"{loss:.0f}%; read and refused: {drops.get('kp_unwrap_failed', 0)}")
    assert drops.get("kp_unwrap_failed", 0) > 0
    assert loss <= 10
    # and from an address no rule names, nothing reaches skipd (once skipd has read what
    # the second lane still held of the first flood)
    before = -1
    while before != (before := _dropped(site, "a")):
        time.sleep(0.5)
    stranger = floods.flooder(site.ns["g"], floods.datagram("forged_ekp", LAN["g"][1], a6,
                                                            b""), 1)
    stranger.communicate(timeout=30)
    time.sleep(0.3)
    assert _dropped(site, "a") == before


LANES_SCRIPT = """
import json, socket, sys, time
from skip.daemon import kernel_filter as kf
import ipaddress
nets = [ipaddress.IPv4Network("127.0.0.2/32")]
first, second = (socket.socket(socket.AF_INET, socket.SOCK_RAW, 57) for _ in range(2))
for s in (first, second):
    s.setblocking(False)
lanes = kf.Lanes(first, second)
out = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
cases = json.loads(sys.stdin.read())
result = {}
for step, (ekps, packets) in enumerate(cases):
    lanes.apply(nets, [(bytes.fromhex(e), at, top) for e, at, top in ekps], step, 0.0)
    for name, hexed in packets.items():
        d = bytes.fromhex(hexed)
        out.sendto(d, (socket.inet_ntoa(d[16:20]), 0))
        time.sleep(0.02)
        got = []
        for lane, s in (("first", first), ("second", second)):
            try:
                while True:
                    if s.recv(65535)[12:] == d[12:]:  # the kernel fills length, id, sum
                        got.append(lane)
            except BlockingIOError:
                pass
        result[f"{step}:{name}"] = got
print(json.dumps(result))
"""


def test_the_two_lanes_in_the_kernel(site: Site) -> None:
    """The filters of skip/daemon/kernel_filter.py as Linux runs them (loopback, in a's
    namespace): from the known address, a packet under a live Kp numbered above the highest
    accepted takes the first lane; one numbered at or below it (a replay, a late packet),
    under another EKp, or too short for one the second; an unknown source neither; and after
    the live keys change, the new key's packets move to the first lane and the old one's to
    the second. A legacy Kp (no numbers) admits every packet under it."""
    site.ns["a"].run("ip", "link", "set", "lo", "up")

    def packet(src: str, ekp: bytes, seq: int = 0) -> str:
        ip = bytes([0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 57, 0, 0]) + \
            bytes(map(int, src.split("."))) + bytes([127, 0, 0, 1])
        fixed = bytes([0x20, 0, 0, 50, 0, 0, 0, 1, 10, 11, 11, 0])
        esp = b"" if len(ekp) < 40 else b"\0\0\0\1" + seq.to_bytes(4, "big") + bytes(32)
        return (ip + fixed + ekp + esp).hex()

    live, other = bytes(range(1, 41)), bytes(range(101, 141))
    packets = {
        "live": packet("127.0.0.2", live, 100), "live_old": packet("127.0.0.2", live, 50),
        "other": packet("127.0.0.2", other, 100), "other_old": packet("127.0.0.2", other, 7),
        "short": packet("127.0.0.2", live[:3]), "stranger": packet("127.0.0.3", live, 100),
    }
    seq_at = 12 + 40 + 4  # the SKIP header, then ESP's SPI
    cases = [[[(live.hex(), seq_at, 50)], packets],
             [[(other.hex(), seq_at, 7)], packets],
             [[(other.hex(), None, 0)], packets]]  # legacy
    run = site.ns["a"].run(sys.executable, "-c", LANES_SCRIPT, input=json.dumps(cases))
    got = json.loads(run.stdout)
    first, second = ["first"], ["second"]
    assert got == {
        "0:live": first, "0:live_old": second, "0:other": second, "0:other_old": second,
        "0:short": second, "0:stranger": [],
        "1:live": second, "1:live_old": second, "1:other": first, "1:other_old": second,
        "1:short": second, "1:stranger": [],
        "2:live": second, "2:live_old": second, "2:other": first, "2:other_old": first,
        "2:short": second, "2:stranger": []}, got
