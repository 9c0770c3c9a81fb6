"""Certificate discovery through the DNS between two skipd in network namespaces (issue 10;
next-wave.md 2.7 "outside witness"): a Knot DNS in b's namespace serves the reverse zone of
the LAN, signed by knot itself, the CERT records written by ``skip-cert export --format dns``;
each skipd knows only its own key, the CA and the zone's DS. tshark reads what crossed the
LAN."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.knot import KnotServer, Zone, have_knot
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
              pytest.mark.skipif(not have_knot(), reason="needs Knot DNS (Debian package knot)"),
              pytest.mark.skipif(not (shutil.which("tshark") and shutil.which("dumpcap")),
                                 reason="needs tshark and dumpcap (Debian package tshark)")]

LAN, OVERLAY = LAN_AB, OVERLAY_AB
ZONE = "2.0.192.in-addr.arpa."


def _cert_records(pki: Path, served: dict[str, str], ttl: int) -> str:
    """``served``: reverse-name label -> whose certificate knot serves there."""
    lines: list[str] = []
    for label, who in served.items():
        out = subprocess.run([sys.executable, "-m", "skip.cli.cert", "export",
                              str(pki / f"{who}.pem"), "--format", "dns", "--owner",
                              f"{label}.{ZONE}", "--ttl", str(ttl)],
                             capture_output=True, text=True, check=True)
        lines += [line for line in out.stdout.splitlines() if " CERT " in line]
    return "\n".join(lines) + "\n"


class DnsSite:
    def __init__(self, hosts: TwoHosts, served: dict[str, str], *, signed: bool = True,
                 ttl: int = 300) -> None:
        self.hosts, self.ttl = hosts, ttl
        self.knot = KnotServer(hosts.work / "knot", [self.zone(served, signed)],
                               address=LAN["b"], port=53, netns=hosts.ns["b"].name, ttl=ttl)
        self.knot.start()
        self.anchor = hosts.work / "dns-anchor.ds"

    def zone(self, served: dict[str, str], signed: bool = True) -> Zone:
        return Zone(ZONE, f"@ NS ns.example.\n{_cert_records(self.hosts.pki, served, self.ttl)}",
                    signed=signed)

    def write_anchor(self, text: str | None = None) -> None:
        self.anchor.write_text(text if text is not None else self.knot.anchor(ZONE) + "\n")

    def start(self, me: str, **daemon: object) -> None:
        settings: dict[str, object] = {"discovery": ["dns"], "dns_servers": [LAN["b"]],
                                       "dns_trust_anchors": [str(self.anchor)], **daemon}
        self.hosts.start(me, **settings)


@pytest.fixture()
def hosts(tmp_path: Path) -> Iterator[TwoHosts]:
    with Lab() as lab:
        site = TwoHosts(lab, tmp_path)
        yield site
        site.stop_all()


@pytest.fixture()
def revoking_hosts(tmp_path: Path) -> Iterator[TwoHosts]:
    with Lab() as lab:
        site = TwoHosts(lab, tmp_path, revoked=["b"])
        yield site
        site.stop_all()


@pytest.fixture()
def dns_site(hosts: TwoHosts) -> Iterator[DnsSite]:
    site = DnsSite(hosts, {"1": "a", "2": "b"})
    yield site
    site.knot.stop()


def test_a_peer_found_in_a_signed_zone_is_protected_from_the_first_packet(
        dns_site: DnsSite) -> None:
    """DNS-1, DNS-10, DNS-20, DNS-25: the first ping waits for a CERT lookup and DNSSEC
    validation of knot's signatures from the configured DS; the capture shows DNS on port 53,
    then only protocol 57."""
    hosts = dns_site.hosts
    dns_site.write_anchor()
    dns_site.start("a")
    dns_site.start("b")
    cap = Capture(hosts.ns["a"], hosts.lan["a"], hosts.work / "lan.pcap")
    assert hosts.ping("a", OVERLAY["b"], 2), (hosts.work / "a.log").read_text()[-3000:]
    sent, got, _ = tcp_transfer(hosts.ns["b"], hosts.ns["a"], OVERLAY["b"], 1024 * 1024)
    assert sent == got
    cap.stop()
    kinds = cap.protocols()
    dns_kinds = {k for k in kinds if k.startswith("udp:") or k.startswith("tcp:")}
    assert dns_kinds and all(k.endswith(":53") or _ephemeral(k) for k in dns_kinds), kinds
    assert set(kinds) <= dns_kinds | {"v4:57"}, set(kinds) - dns_kinds
    last_dns = max(i for i, kind in enumerate(kinds) if kind in dns_kinds)
    assert set(kinds[last_dns + 1:]) == {"v4:57"}
    found = hosts.ask("a", "discovery")
    assert found["sources"] == ["dns"]
    [learned] = found["learned"]
    assert learned["rule"] == "b" and learned["name"] == f"nsid 1 {LAN['b']}"
    assert learned["source"].startswith(f"dns 2.{ZONE}") and "(secure)" in learned["source"]
    assert found["counters"]["dns_learned"] == 1 and found["counters"]["dns_found_secure"] == 1
    plain = subprocess.run([sys.executable, "-m", "skip.cli.skipctl", "discovery", "-s",
                            str(hosts.sock("a"))], capture_output=True, text=True)
    assert plain.returncode == 0 and f"from dns 2.{ZONE}" in plain.stdout, plain.stdout


def _ephemeral(kind: str) -> bool:
    return int(kind.split(":")[1]) >= 1024


def test_a_chain_that_does_not_reach_the_anchor_is_bogus_and_refused(dns_site: DnsSite) -> None:
    """DNS-20/25: a DS that no DNSKEY of the zone matches (a forged or rolled key): every
    answer is bogus, nothing is learned, ``dns_bogus`` is counted and logged."""
    hosts = dns_site.hosts
    fields = dns_site.knot.anchor(ZONE).split()
    fields[-1] = ("0" if fields[-1][0] != "0" else "1") + fields[-1][1:]
    dns_site.write_anchor(" ".join(fields) + "\n")
    dns_site.start("a")
    dns_site.start("b", discovery=[])
    assert not hosts.ping("a", OVERLAY["b"])
    found = hosts.ask("a", "discovery")
    assert found["learned"] == [] and found["counters"]["dns_bogus"] == 1
    log = (hosts.work / "a.log").read_text()
    assert '"reason": "dns_bogus"' in log and "DS" in log


def test_a_certificate_published_under_another_name_is_refused(hosts: TwoHosts) -> None:
    """DNS-11: a's certificate at b's reverse name is signed and secure, but it does not
    answer to b's SKIP name: cert_name_mismatch, nothing learned."""
    _secure_but_refused(hosts, {"2": "a"}, "cert_name_mismatch")


def _secure_but_refused(hosts: TwoHosts, served: dict[str, str], reason: str) -> None:
    """a finds b's name in a signed zone, and refuses what it holds for ``reason``."""
    site = DnsSite(hosts, served)
    try:
        site.write_anchor()
        site.start("a")
        assert not hosts.ping("a", OVERLAY["b"])
        found = hosts.ask("a", "discovery")
        assert found["learned"] == [] and found["counters"]["dns_found_secure"] == 1
        assert found["counters"][reason] == 1
        assert f'"reason": "{reason}"' in (hosts.work / "a.log").read_text()
    finally:
        site.knot.stop()


def test_an_unsigned_zone_under_an_anchor_is_bogus_and_without_one_needs_the_ca(
        hosts: TwoHosts) -> None:
    """DNS-25/26: the same records from an unsigned zone. With the zone's anchor configured
    the missing signatures make the answer bogus (a stripped signature must not downgrade to
    unsigned); with no anchor it is refused by default (``dns_trust = "both"``: DNSSEC and
    the CA) and taken with ``dns_trust = "ca"`` because it chains to the CA."""
    site = DnsSite(hosts, {"1": "a", "2": "b"}, signed=False)
    try:
        site.write_anchor(_anchor_of_some_signed_zone())
        site.start("a")
        assert not hosts.ping("a", OVERLAY["b"])
        assert hosts.ask("a", "discovery")["counters"]["dns_bogus"] == 1
        hosts.stop_all()
        hosts.procs.clear()
        hosts.start("a", discovery=["dns"], dns_servers=[LAN["b"]])
        assert not hosts.ping("a", OVERLAY["b"])
        assert hosts.ask("a", "discovery")["counters"]["dns_insecure"] == 1
        hosts.stop_all()
        hosts.procs.clear()
        hosts.start("a", discovery=["dns"], dns_servers=[LAN["b"]], dns_trust="ca")
        hosts.start("b", discovery=["dns"], dns_servers=[LAN["b"]], dns_trust="ca")
        assert hosts.ping("a", OVERLAY["b"], 2)
        found = hosts.ask("a", "discovery")
        assert "(unvalidated)" in found["learned"][0]["source"]
    finally:
        site.knot.stop()


def _anchor_of_some_signed_zone() -> str:
    """A DS for the zone's name made from a key knot never served: what an operator who
    signed the zone once, then served it unsigned, would still hold."""
    import dns.dnssec
    import dns.name
    from cryptography.hazmat.primitives.asymmetric import ec

    key = dns.dnssec.make_dnskey(ec.generate_private_key(ec.SECP256R1()).public_key(),
                                 dns.dnssec.Algorithm.ECDSAP256SHA256, flags=257)
    ds = dns.dnssec.make_ds(dns.name.from_text(ZONE), key, "SHA256")
    return f"{ZONE} IN DS {ds.to_text()}\n"


def test_a_discovered_certificate_is_fetched_again_kept_through_an_outage_and_withdrawn(
        hosts: TwoHosts) -> None:
    """DNS-12: with a 5 s TTL the certificate is asked for again every 5 s (80 % of the TTL,
    at least 5 s). With knot stopped the re-fetch times out and the peer stays (the
    certificate still validates; a silent DNS proves nothing); once knot serves the zone
    without b, the signed NXDOMAIN withdraws it: the peer is dropped (``dns_withdrawn``)."""
    site = DnsSite(hosts, {"1": "a", "2": "b"}, ttl=5)
    try:
        site.write_anchor()
        site.start("a")
        site.start("b")
        assert hosts.ping("a", OVERLAY["b"], 2)
        counters = lambda: hosts.ask("a", "discovery")["counters"]  # noqa: E731
        assert eventually(lambda: counters().get("dns_refreshed", 0) >= 1, 10), counters()
        site.knot.stop()
        assert eventually(lambda: counters().get("dns_refresh_failed", 0) >= 1, 15), counters()
        assert hosts.ask("a", "discovery")["learned"] and hosts.ping("a", OVERLAY["b"])
        site.knot.zones = [site.zone({"1": "a"})]
        site.knot.start()
        assert eventually(lambda: counters().get("dns_withdrawn", 0) == 1, 15), counters()
        assert hosts.ask("a", "discovery")["learned"] == []
        assert not hosts.ping("a", OVERLAY["b"])
        assert '"reason": "dns_withdrawn"' in (hosts.work / "a.log").read_text()
    finally:
        site.knot.stop()


def test_a_revoked_certificate_is_refused_even_when_a_signed_zone_serves_it(
        revoking_hosts: TwoHosts) -> None:
    """DNSSEC vouches for where a certificate was published, not for the certificate: b's,
    served from a signed zone, is refused as ``cert_revoked`` under a CRL that revokes it."""
    hosts = revoking_hosts
    (hosts.pki / "ca.crl").write_bytes((hosts.pki / "revoked.crl").read_bytes())
    _secure_but_refused(hosts, {"2": "b"}, "cert_revoked")
