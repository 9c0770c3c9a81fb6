"""PFS between two skipd in network namespaces (issue 11; next-wave.md 3.5, PFS-15, PFS-M6).

With ``pfs = "required"`` the first packet waits for the ephemeral exchange on UDP 1640, and
every SKIP packet on the LAN names an EMKID (Destination NSID 250) with no source MKID. With
the peer unable to answer, nothing at all leaves under the long-term key. tshark reads the
capture; the SKIP header bytes it shows as data are checked here.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

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

pytestmark = [pytest.mark.netns, pytest.mark.tshark,
              pytest.mark.skipif(can_run() is not None, reason=str(can_run())),
              pytest.mark.skipif(not (shutil.which("tshark") and shutil.which("dumpcap")),
                                 reason="needs tshark and dumpcap (Debian package tshark)")]

LAN, OVERLAY = LAN_AB, OVERLAY_AB


@pytest.fixture()
def hosts(tmp_path: Path) -> Iterator[TwoHosts]:
    with Lab() as lab:
        site = TwoHosts(lab, tmp_path)
        yield site
        site.stop_all()


def skip_headers(capture: Path) -> list[bytes]:
    """The payload of every protocol-57 packet in the capture, as tshark shows it."""
    out = subprocess.run(["tshark", "-r", str(capture), "-Y", "ip.proto == 57", "-T",
                          "fields", "-e", "data.data"], capture_output=True, text=True,
                         check=True).stdout
    return [bytes.fromhex(line.replace(":", "")) for line in out.split() if line]


def test_required_pfs_protects_from_the_first_packet_under_emkids(hosts: TwoHosts) -> None:
    hosts.start("a", known=True, rule={"pfs": "required"})
    hosts.start("b", known=True, rule={"pfs": "required"})
    cap = Capture(hosts.ns["a"], hosts.lan["a"], hosts.work / "lan.pcap")
    assert hosts.ping("a", OVERLAY["b"]), (hosts.work / "a.log").read_text()
    sent, got, _ = tcp_transfer(hosts.ns["b"], hosts.ns["a"], OVERLAY["b"], 1024 * 1024)
    assert sent == got
    cap.stop()
    kinds = cap.protocols()
    assert "udp:1640" in kinds
    first_skip = kinds.index("v4:57")
    assert all(k.startswith("udp:") for k in kinds[:first_skip])  # the exchange came first
    headers = skip_headers(cap.path)
    assert len(headers) > 100
    # Version 2, Source NSID 0, Destination NSID 250: every packet under an EMKID (PFS-15)
    assert {(h[0] >> 4, h[1], h[2]) for h in headers} == {(2, 0, 250)}
    for me, other in (("a", "b"), ("b", "a")):
        (peer,) = [p for p in hosts.ask(me, "peers") if p["name"] == other]
        assert peer["pfs"]["mode"] == "required" and peer["pfs"]["pfs"] is True
        assert 0 <= peer["pfs"]["ephemeral_age"] < 60


def test_required_pfs_never_falls_back_to_the_long_term_key(hosts: TwoHosts) -> None:
    """PFS-M6: b cannot answer the exchange (no CDP port: discovery off, PFS off), so a
    sends nothing under the long-term key: the ping fails and no SKIP packet crosses."""
    hosts.start("a", known=True, rule={"pfs": "required"})
    hosts.start("b", known=True, rule={"pfs": "off"}, discovery=[])
    cap = Capture(hosts.ns["a"], hosts.lan["a"], hosts.work / "lan.pcap")
    assert not hosts.ping("a", OVERLAY["b"])
    assert eventually(lambda: hosts.ask("a", "counters")["drops"].get("pfs_timeout", 0) >= 1,
                      timeout=15)
    cap.stop()
    assert "v4:57" not in cap.protocols()
    assert skip_headers(cap.path) == []


def test_preferred_pfs_moves_to_the_ephemeral_key(hosts: TwoHosts) -> None:
    hosts.start("a", known=True, rule={"pfs": "preferred"})
    hosts.start("b", known=True, rule={"pfs": "off"})  # answers, though it would not start
    assert hosts.ping("a", OVERLAY["b"], count=3)
    assert eventually(lambda: next(p for p in hosts.ask("a", "peers")
                               if p["name"] == "b")["pfs"]["pfs"] is True)
    cap = Capture(hosts.ns["a"], hosts.lan["a"], hosts.work / "lan.pcap")
    assert hosts.ping("a", OVERLAY["b"], count=2)
    cap.stop()
    headers = skip_headers(cap.path)
    a_to_b = [h for h in headers if h[2] == 250]
    assert a_to_b, headers  # a sends under the EMKID b chose
