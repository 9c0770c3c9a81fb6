"""Network namespaces for tests and the demo: hosts joined by veth links, always removed.

Every namespace is named ``<prefix><pid>-<name>`` so leftovers are recognisable; at start-up,
namespaces of the same prefix whose creating process is gone are removed. Addresses exist only
inside the namespaces, so nothing here touches the machine's own networking. ``ip`` is used
for this set-up (it is test scaffolding, not skipd's hot path).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

PREFIX = "skt-"


def can_run() -> str | None:
    """None when namespaces can be made here, else the reason to skip."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, TUN devices, raw sockets)"
    if not Path("/dev/net/tun").exists():
        return "no /dev/net/tun in this environment"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot use network namespaces: {probe.stderr.strip()}"
    return None


def _sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check)


def remove_stale(prefix: str = PREFIX) -> list[str]:
    """Delete namespaces of ``prefix`` whose owning pid no longer runs."""
    removed = []
    for line in _sh("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith(prefix):
            continue
        pid = name[len(prefix):].split("-", 1)[0]
        alive = pid.isdigit() and Path(f"/proc/{pid}").exists()
        if not alive:
            _sh("ip", "netns", "del", name, check=False)
            removed.append(name)
    return removed


class Namespace:
    def __init__(self, lab: Lab, name: str) -> None:
        self.lab = lab
        self.short = name
        self.name = f"{lab.prefix}{os.getpid()}-{name}"

    def argv(self, args: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def run(self, *args: str, check: bool = True, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(self.argv(args), capture_output=True, text=True,
                                timeout=timeout, input=input)
        if check and result.returncode != 0:
            raise AssertionError(f"[{self.short}] {' '.join(args)} -> {result.returncode}\n"
                                 f"{result.stdout}{result.stderr}")
        return result

    def popen(self, *args: str, **kwargs: object) -> subprocess.Popen:
        proc = subprocess.Popen(self.argv(args), **kwargs)  # type: ignore[call-overload]
        self.lab.processes.append(proc)
        return proc

    def sysctl(self, key: str, value: str) -> None:
        self.run("sysctl", "-q", "-w", f"{key}={value}")


class Lab:
    """A set of namespaces and links; use as a context manager (teardown in ``finally``)."""

    def __init__(self, prefix: str = PREFIX) -> None:
        self.prefix = prefix
        self.namespaces: dict[str, Namespace] = {}
        self.processes: list[subprocess.Popen] = []

    def __enter__(self) -> Lab:
        remove_stale(self.prefix)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def host(self, name: str, forwarding: bool = False) -> Namespace:
        ns = Namespace(self, name)
        _sh("ip", "netns", "add", ns.name)
        self.namespaces[name] = ns
        ns.run("ip", "link", "set", "lo", "up")
        if forwarding:
            ns.sysctl("net.ipv4.ip_forward", "1")
            ns.sysctl("net.ipv6.conf.all.forwarding", "1")
        return ns

    def link(self, a: Namespace, a_addrs: Sequence[str], b: Namespace,
             b_addrs: Sequence[str]) -> tuple[str, str]:
        """A veth pair between ``a`` and ``b``; returns the interface names (a side, b side)."""
        a_if, b_if = f"v-{b.short}"[:15], f"v-{a.short}"[:15]
        tmp_a, tmp_b = f"skt{os.getpid() % 100000}a{len(self.namespaces)}", \
            f"skt{os.getpid() % 100000}b{len(self.namespaces)}"
        _sh("ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
        _sh("ip", "link", "set", tmp_a, "netns", a.name, "name", a_if)
        _sh("ip", "link", "set", tmp_b, "netns", b.name, "name", b_if)
        for ns, ifname, addrs in ((a, a_if, a_addrs), (b, b_if, b_addrs)):
            for addr in addrs:
                ns.run("ip", "addr", "add", addr, "dev", ifname, "nodad")
            ns.run("ip", "link", "set", ifname, "up")
        return a_if, b_if

    def close(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.processes.clear()
        for ns in self.namespaces.values():
            _sh("ip", "netns", "del", ns.name, check=False)
        self.namespaces.clear()


@contextlib.contextmanager
def lab(prefix: str = PREFIX) -> Iterator[Lab]:
    with Lab(prefix) as made:
        yield made


def start_skipd(ns: Namespace, config: Path, socket_path: Path, log: Path,
                timeout: float = 15) -> subprocess.Popen:
    """Run skipd in ``ns`` and wait until its control socket answers; raise with its log
    otherwise."""
    import sys

    from skip.daemon.control import request

    out = log.open("ab")
    proc = ns.popen(sys.executable, "-m", "skip.cli.skipd", "-c", str(config),
                    stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"skipd in {ns.short} exited {proc.returncode}:\n"
                                 + log.read_text())
        if socket_path.exists():
            with contextlib.suppress(Exception):
                if request(socket_path, "status").get("ok"):
                    return proc
        time.sleep(0.05)
    raise AssertionError(f"skipd in {ns.short} did not come up:\n{log.read_text()}")


def stop_skipd(proc: subprocess.Popen, timeout: float = 10) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=timeout)


def make_pki(directory: Path, hosts: dict[str, tuple[Sequence[str], str]], now: float,
             revoked: Sequence[str] = ()) -> dict[str, int]:
    """A CA, one DH key + certificate per host (``name -> (addresses, group)``) and a CRL
    revoking ``revoked``, written as ``ca.pem``, ``ca.crl``, ``NAME.key``, ``NAME.pem``.
    Built with skip.pki (the demo builds the same with the skip-cert command).
    Returns the serial number of each host certificate."""
    import ipaddress

    from skip.crypto.dh import GROUPS
    from skip.pki.certificate import Subject, issue
    from skip.pki.crl import Revocation, issue_crl
    from skip.pki.dhkey import dump_private_key, generate_key
    from skip.pki.signing import generate_signer

    directory.mkdir(parents=True, exist_ok=True)
    start, end = int(now) - 3600, int(now) + 30 * 86400
    signer = generate_signer()
    ca = issue(signer=signer, issuer=None, subject=Subject([("CN", "skip test CA")]),
               not_before=start, not_after=end, ca=True)
    (directory / "ca.pem").write_bytes(ca.pem())
    serials = {}
    for name, (addresses, group) in hosts.items():
        key = generate_key(GROUPS[group])
        cert = issue(signer=signer, issuer=ca, not_before=start, not_after=end,
                     subject=Subject([("CN", name)],
                                     addresses=tuple(map(ipaddress.ip_address, addresses))),
                     dh_key=key.public)
        (directory / f"{name}.key").write_bytes(dump_private_key(key))
        (directory / f"{name}.pem").write_bytes(cert.pem())
        serials[name] = cert.serial
    crl = issue_crl(signer=signer, issuer=ca, this_update=start, next_update=end, number=1,
                    revoked=[Revocation(serials[n], start) for n in revoked])
    (directory / "ca.crl").write_bytes(crl.pem())
    return serials
