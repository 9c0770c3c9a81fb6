"""Network namespaces for tests and the demo: hosts joined by veth links, always removed.

Every namespace is named ``<prefix><pid>-<name>`` so leftovers are recognisable; at start-up,
namespaces of the same prefix whose creating process is gone are removed. Addresses exist only
inside the namespaces, so nothing here touches the machine's own networking. ``ip`` is used
for this set-up (it is test scaffolding, not skipd's hot path).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from skip.crypto.dh import GROUPS
from skip.daemon.control import request
from skip.pki.certificate import Subject, issue
from skip.pki.crl import Revocation, issue_crl
from skip.pki.dhkey import dump_private_key, generate_key
from skip.pki.signing import generate_signer

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
        self.links = 0

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
             b_addrs: Sequence[str], names: tuple[str, str] | None = None) -> tuple[str, str]:
        """A veth pair between ``a`` and ``b``; returns the interface names (a side, b side)."""
        a_if, b_if = names or (f"v-{b.short}"[:15], f"v-{a.short}"[:15])
        self.links += 1
        tmp_a, tmp_b = (f"skt{os.getpid() % 100000}{side}{self.links}" for side in "ab")
        _sh("ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
        _sh("ip", "link", "set", tmp_a, "netns", a.name, "name", a_if)
        _sh("ip", "link", "set", tmp_b, "netns", b.name, "name", b_if)
        for ns, ifname, addrs in ((a, a_if, a_addrs), (b, b_if, b_addrs)):
            for addr in addrs:
                ns.run("ip", "addr", "add", addr, "dev", ifname, "nodad")
            ns.run("ip", "link", "set", ifname, "up")
        return a_if, b_if

    def switch(self, members: Sequence[tuple[Namespace, Sequence[str]]]) -> dict[str, str]:
        """A bridge (in a namespace of its own) joining ``members``; returns each member's
        interface name (``lan``)."""
        hub = self.host("sw")
        hub.run("ip", "link", "add", "br0", "type", "bridge")
        hub.run("ip", "link", "set", "br0", "up")
        names = {}
        for ns, addrs in members:
            _port, lan = self.link(hub, [], ns, addrs, names=(f"p-{ns.short}"[:15], "lan"))
            hub.run("ip", "link", "set", f"p-{ns.short}"[:15], "master", "br0")
            names[ns.short] = lan
        return names

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


def start_skipd(ns: Namespace, config: Path, socket_path: Path, log: Path,
                timeout: float = 15) -> subprocess.Popen:
    """Run skipd in ``ns`` and wait until its control socket answers; raise with its log
    otherwise."""
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
    """A CA, one DH key + certificate per host (``name -> (addresses, group)``), an empty CRL
    and one revoking ``revoked``, written as ``ca.pem``, ``ca.crl``, ``revoked.crl``,
    ``NAME.key``, ``NAME.pem``. Built with skip.pki (the demo uses the skip-cert command).
    Returns the serial number of each host certificate."""
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
        (directory / f"{name}.key").chmod(0o600)  # skipd refuses a key others can read
        (directory / f"{name}.pem").write_bytes(cert.pem())
        serials[name] = cert.serial
    for number, (file, names) in enumerate((("ca.crl", ()), ("revoked.crl", revoked)), 1):
        crl = issue_crl(signer=signer, issuer=ca, this_update=start, next_update=end,
                        number=number, revoked=[Revocation(serials[n], start) for n in names])
        (directory / file).write_bytes(crl.pem())
    return serials


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def skipd_config(work: Path, me: str, pki: Path, *, overlay: Sequence[str] = (),
                 peers: Sequence[dict[str, object]] = (), default: str = "deny",
                 daemon: dict[str, object] | None = None, store: Path | None = None,
                 certificate: str = "{me}.pem", anchor: str = "ca.pem",
                 identity: dict[str, object] | None = None,
                 groups: Sequence[dict[str, object]] = ()) -> Path:
    """Write ``work/ME.toml`` for host ``me`` (``ME.key``, its certificate, the CA and
    ``ca.crl`` in ``pki``; peer certificates in ``store``, default ``work/peers-ME``) and
    return its path."""
    settings = {"control_socket": str(work / f"{me}.sock"), "addresses": list(overlay),
                "log_format": "json", **(daemon or {})}
    lines = ["[daemon]", *(f"{k} = {_toml(v)}" for k, v in settings.items()), "",
             "[identity]",
             f"private_key = {_toml(pki / f'{me}.key')}",
             f"certificate = {_toml(pki / certificate.format(me=me))}",
             f"trust_anchors = {_toml([str(pki / anchor)])}",
             f"crls = {_toml([str(pki / 'ca.crl')])}",
             f"peer_certificates = {_toml(store or work / f'peers-{me}')}",
             *(f"{k} = {_toml(v)}" for k, v in (identity or {}).items()), "",
             "[default]", f"action = {_toml(default)}", ""]
    for peer in peers:
        lines += ["[[peer]]", *(f"{k} = {_toml(v)}" for k, v in peer.items()), ""]
    for group in groups:
        lines += ["[[group]]", *(f"{k} = {_toml(v)}" for k, v in group.items()), ""]
    path = work / f"{me}.toml"
    path.write_text("\n".join(lines))
    return path


def tcp_transfer(server: Namespace, client: Namespace, address: str, size: int,
                 port: int = 5001, timeout: float = 120) -> tuple[str, str, float]:
    """Send ``size`` random bytes over TCP; returns (sent sha256, received sha256, seconds)."""
    family = "AF_INET6" if ":" in address else "AF_INET"
    receiver = server.popen(sys.executable, "-c", (
        "import hashlib, socket\n"
        f"s = socket.socket(socket.{family}); s.setsockopt(socket.SOL_SOCKET, "
        f"socket.SO_REUSEADDR, 1); s.bind(({address!r}, {port})); s.listen(1)\n"
        "print('ready', flush=True)\n"
        "c, _ = s.accept(); h = hashlib.sha256(); n = 0\n"
        "while d := c.recv(1 << 16): h.update(d); n += len(d)\n"
        "print(n, h.hexdigest(), flush=True)\n"), stdout=subprocess.PIPE, text=True)
    assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
    sent = client.run(sys.executable, "-c", (
        "import hashlib, os, socket, time\n"
        f"n = {size}; block = os.urandom(1 << 20); h = hashlib.sha256(); done = 0\n"
        f"s = socket.create_connection(({address!r}, {port}), timeout=30); t = time.time()\n"
        "while done < n:\n"
        "    chunk = block[: min(len(block), n - done)]; s.sendall(chunk); h.update(chunk)\n"
        "    done += len(chunk)\n"
        "s.shutdown(socket.SHUT_WR); s.recv(1); print(done, h.hexdigest(), time.time() - t)\n"),
        timeout=timeout).stdout.split()
    got = receiver.stdout.readline().split()
    receiver.wait(timeout=10)
    assert int(sent[0]) == size and int(got[0]) == size, (sent, got)
    return sent[1], got[1], float(sent[2])


def udp_exchange(server: Namespace, client: Namespace, address: str, payload: bytes,
                 port: int = 5002) -> bytes:
    """One UDP datagram to an echo server in ``server``; returns what came back."""
    family = "AF_INET6" if ":" in address else "AF_INET"
    echo = server.popen(sys.executable, "-c", (
        f"import socket; s = socket.socket(socket.{family}, socket.SOCK_DGRAM)\n"
        f"s.bind(({address!r}, {port})); print('ready', flush=True); s.settimeout(10)\n"
        "d, peer = s.recvfrom(65535); s.sendto(d, peer)\n"), stdout=subprocess.PIPE, text=True)
    assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
    out = client.run(sys.executable, "-c", (
        f"import socket, sys; s = socket.socket(socket.{family}, socket.SOCK_DGRAM)\n"
        f"s.settimeout(5); s.sendto(bytes.fromhex({payload.hex()!r}), ({address!r}, {port}))\n"
        "sys.stdout.write(s.recv(65535).hex())\n")).stdout
    echo.wait(timeout=10)
    return bytes.fromhex(out)


class Capture:
    """dumpcap (from tshark's package) on one interface of a namespace, to a pcapng file."""

    def __init__(self, ns: Namespace, interface: str, path: Path) -> None:
        self.path = path
        self.proc = ns.popen("dumpcap", "-q", "-i", interface, "-w", str(path),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)

    def stop(self) -> bytes:
        time.sleep(0.2)
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=10)
        return self.path.read_bytes()

    #: IPv6 neighbour discovery, MLD and IGMP are link plumbing, not traffic
    NOT_LINK_LOCAL = ("(ip or ipv6) and not igmp and "
                      "not (icmpv6.type >= 130 and icmpv6.type <= 143)")

    def protocols(self) -> list[str]:
        """One "v4:PROTO" / "v6:NEXTHDR" / "udp:PORT" entry per IP packet except neighbour
        discovery, as tshark reads them."""
        fields = subprocess.run(
            ["tshark", "-r", str(self.path), "-Y", self.NOT_LINK_LOCAL, "-T", "fields",
             "-e", "ip.proto", "-e", "ipv6.nxt", "-e", "udp.dstport"],
            capture_output=True, text=True, check=True).stdout
        out = []
        for line in fields.splitlines():
            proto4, proto6, port = [*line.split("\t"), "", ""][:3]
            proto = (proto4 or proto6).split(",")[0]
            if proto == "17":
                out.append(f"udp:{port.split(',')[0]}")
            else:
                out.append(f"{'v4' if proto4 else 'v6'}:{proto}")
        return out


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``check`` until true (a loaded 2-core machine may take a moment to drain)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


LAN_AB = {"a": "192.0.2.1", "b": "192.0.2.2"}
OVERLAY_AB = {"a": "10.57.0.1", "b": "10.57.0.2"}


class TwoHosts:
    """Hosts a and b on one LAN (192.0.2.0/24), each with skipd protecting the other's
    overlay address (10.57.0.0/24) through a tunnel to its LAN address; a PKI of X25519
    certificates (``revoked``: names a second CRL, ``revoked.crl``, revokes)."""

    def __init__(self, lab: Lab, work: Path, *, revoked: Sequence[str] = ()) -> None:
        self.work = work
        self.ns = {n: lab.host(n) for n in ("a", "b")}
        self.lan = lab.switch([(self.ns[n], [f"{LAN_AB[n]}/24"]) for n in ("a", "b")])
        self.pki = work / "pki"
        make_pki(self.pki, {n: ([LAN_AB[n]], "x25519") for n in LAN_AB}, time.time(),
                 revoked=list(revoked))
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, me: str, *, known: bool = False, rule: dict[str, object] | None = None,
              **daemon: object) -> None:
        """skipd on ``me``; ``known``: its store holds the peer's certificate (else it is
        empty: discovery must find it); ``rule``: more keys of the peer's rule."""
        other = "b" if me == "a" else "a"
        store = self.work / f"peers-{me}"
        store.mkdir(exist_ok=True)
        if known:
            shutil.copy(self.pki / f"{other}.pem", store / f"{other}.pem")
        config = skipd_config(
            self.work, me, self.pki, store=store, overlay=[f"{OVERLAY_AB[me]}/24"],
            daemon=daemon or None,
            peers=[{"name": other, "hosts": [OVERLAY_AB[other]], "tunnel": LAN_AB[other],
                    "action": "protect", **(rule or {})}])
        self.procs[me] = start_skipd(self.ns[me], config, self.sock(me),
                                     self.work / f"{me}.log")

    def sock(self, me: str) -> Path:
        return self.work / f"{me}.sock"

    def ask(self, me: str, command: str) -> Any:
        reply = request(self.sock(me), command)
        assert reply["ok"], reply
        return reply["result"]

    def ping(self, host: str, address: str, count: int = 1) -> bool:
        return self.ns[host].run("ping", "-c", str(count), "-i", "0.2", "-W", "2", address,
                                 check=False).returncode == 0

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                assert stop_skipd(proc) == 0
