"""Certificate discovery by CDP between two skipd in network namespaces (issue 10; next-wave.md
part 1): each host knows only its own key and the CA, the first packet waits while skipd asks
its peer on UDP 1640, and from then on the LAN carries nothing but SKIP. tshark, reading a
capture of the LAN, is the witness of what crossed it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.netns import (
    LAN_AB,
    OVERLAY_AB,
    Capture,
    Lab,
    TwoHosts,
    can_run,
    eventually,
    tcp_transfer,
)
from tests.test_skipctl_netns import SCRAPE

pytestmark = [pytest.mark.netns, pytest.mark.tshark,
              pytest.mark.skipif(can_run() is not None, reason=str(can_run())),
              pytest.mark.skipif(not (shutil.which("tshark") and shutil.which("dumpcap")),
                                 reason="needs tshark and dumpcap (Debian package tshark)")]

LAN, OVERLAY = LAN_AB, OVERLAY_AB
METRICS = "127.0.0.1:9641"


@pytest.fixture()
def hosts(tmp_path: Path) -> Iterator[TwoHosts]:
    with Lab() as lab:
        site = TwoHosts(lab, tmp_path, revoked=["b"])
        yield site
        site.stop_all()


def test_a_peer_learnt_by_cdp_is_protected_from_the_first_packet(hosts: TwoHosts) -> None:
    """next-wave.md 1.9 end to end: the first ping waits for the certificate (both ways:
    b learns a when a's first SKIP packet arrives) and gets its answer; the capture shows
    the CDP exchange (the cookie round trip included, CDP-M2) and then only protocol 57."""
    hosts.start("a", metrics=METRICS)
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
    assert "cache: 1 of 4096 (evicted 0" in plain.stdout
    # the metrics count discovery too (issue 10: "metrics count them")
    body = hosts.ns["a"].run(sys.executable, "-c", SCRAPE.format(
        addr=METRICS, accept="text/plain")).stdout.partition("\n")[2]
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(body) for s in family.samples}
    assert samples[("skipd_discovery_events_total", (("event", "cdp_learned"),))] == 1
    assert samples[("skipd_discovery_learned", ())] == 1
    assert samples[("skipd_discovery_in_flight", ())] == 0
    assert samples[("skipd_discovery_evicted_total", ())] == 0
    peers = {p["name"]: p for p in hosts.ask("a", "peers")}
    assert peers["b"]["bytes_out"] > 2 * 1024 * 1024


def test_a_revoked_certificate_is_refused_whoever_serves_it(hosts: TwoHosts) -> None:
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


def test_without_discovery_an_unknown_peer_is_dropped_as_before(hosts: TwoHosts) -> None:
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
