"""A real authoritative DNS server for the DNS discovery tests: Knot DNS (Debian's ``knot``,
installed by tools/setup.sh), signing its zones itself (automatic DNSSEC signing, ECDSA P-256,
NSEC or NSEC3), so every signature, DS and denial the tests validate was made by software
nobody here wrote.

``KnotServer(...).start()`` runs knotd in the foreground of a child process, in a network
namespace when one is given (``ip netns exec``), else on loopback; ``anchor(zone)`` is the
zone's DS as keymgr prints it, the text of a :class:`skip.discovery.dnssec.TrustAnchor`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rdatatype

KNOTD = shutil.which("knotd") or "/usr/sbin/knotd"
KEYMGR = shutil.which("keymgr") or "/usr/sbin/keymgr"


def have_knot() -> bool:
    return Path(KNOTD).exists() and Path(KEYMGR).exists()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Zone:
    """One zone knotd serves: master-file ``records`` (relative to the origin, no SOA)."""

    origin: str
    records: str
    signed: bool = True
    nsec3_iterations: int | None = None  # None: NSEC


@dataclass
class KnotServer:
    work: Path
    zones: list[Zone]
    address: str = "127.0.0.1"
    port: int = field(default_factory=free_udp_port)
    netns: str | None = None
    ttl: int = 300
    proc: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        lines = ["server:", f"    rundir: {self.work}", f"    listen: {self.address}@{self.port}",
                 "    user: root:root", "database:", f"    storage: {self.work}",
                 "log:", "  - target: stderr", "    any: warning", "policy:"]
        for i, zone in enumerate(self.zones):
            nsec3 = zone.nsec3_iterations is not None
            lines += [f"  - id: p{i}", "    algorithm: ecdsap256sha256",
                      f"    nsec3: {'on' if nsec3 else 'off'}"]
            if nsec3:
                lines += [f"    nsec3-iterations: {zone.nsec3_iterations}",
                          "    nsec3-salt-length: 0"]
        lines.append("zone:")
        for i, zone in enumerate(self.zones):
            lines += [f"  - domain: {zone.origin}", f"    storage: {self.work}",
                      f"    file: {zone.origin.rstrip('.') or 'root'}.zone"]
            if zone.signed:
                lines += ["    dnssec-signing: on", f"    dnssec-policy: p{i}"]
        return "\n".join(lines) + "\n"

    def start(self) -> KnotServer:
        self.work.mkdir(parents=True, exist_ok=True)
        for zone in self.zones:
            soa = (f"$ORIGIN {zone.origin}\n$TTL {self.ttl}\n"
                   f"@ SOA ns.{zone.origin} admin.{zone.origin} 1 3600 600 86400 60\n")
            (self.work / f"{zone.origin.rstrip('.') or 'root'}.zone").write_text(
                soa + zone.records)
        conf = self.work / "knot.conf"
        conf.write_text(self.config())
        cmd = [KNOTD, "-c", str(conf)]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        with open(self.work / "knotd.log", "wb") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 15
        for zone in self.zones:
            while not self._ready(zone):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    log = (self.work / "knotd.log").read_text(errors="replace")
                    self.stop()
                    raise RuntimeError(f"knotd did not serve {zone.origin}: {log[-2000:]}")
                time.sleep(0.1)
        return self

    def _ready(self, zone: Zone) -> bool:
        if self.netns:
            try:
                probe = subprocess.run(["ip", "netns", "exec", self.netns, "kdig", "+dnssec",
                                        "+short", "+time=1", "+retry=0", f"@{self.address}",
                                        "-p", str(self.port), zone.origin,
                                        "DNSKEY" if zone.signed else "SOA"],
                                       capture_output=True, text=True, timeout=5)
            except subprocess.TimeoutExpired:
                return False
            return bool(probe.stdout.strip())
        query = dns.message.make_query(zone.origin, "DNSKEY" if zone.signed else "SOA",
                                       want_dnssec=True)
        try:
            response = dns.query.udp(query, self.address, timeout=0.5, port=self.port)
        except (OSError, dns.exception.Timeout):
            return False
        want = dns.rdatatype.DNSKEY if zone.signed else dns.rdatatype.SOA
        return any(r.rdtype == want for r in response.answer)

    def anchor(self, origin: str) -> str:
        """The zone's DS records (SHA-256), as keymgr prints them."""
        out = subprocess.run([KEYMGR, "-c", str(self.work / "knot.conf"), origin, "ds"],
                             capture_output=True, text=True, check=True, timeout=10).stdout
        return "\n".join(line for line in out.splitlines()
                         if line.split()[1:2] == ["DS"] and line.split()[4:5] == ["2"])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
