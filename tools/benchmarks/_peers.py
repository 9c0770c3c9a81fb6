"""The tunnels users would pick instead of skipd, for ``tools/bench skipd --peers``.

wireguard-go (WireGuard in userspace, ChaCha20-Poly1305) and OpenVPN 2.6 in peer-to-peer mode
with TLS (certificates made here with openssl) and AES-256-GCM on the data channel, each on
the same two namespaces (a and b, one veth pair) as skipd's runs. A tunnel is driven through
``spawn()`` (start both ends, not waiting for them), ``wait_ready()`` (both ends up, no
traffic sent yet), ``pids`` (the two processes whose CPU time is counted) and ``stop()``.
The Debian packages are installed by :func:`ensure_installed`, which only the benchmark
calls (only with ``--peers``), never a test. Not a library module: "_" keeps it out of
``tools/bench``'s list of benchmarks.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

#: binary -> Debian package that ships it, per tunnel
NEEDS = {"wireguard-go": {"wireguard-go": "wireguard-go", "wg": "wireguard-tools"},
         "openvpn": {"openvpn": "openvpn"}}
WG_SOCKETS = Path("/var/run/wireguard")  # wireguard-go's UAPI sockets (one per interface)


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        return subprocess.run(["apt-get", *args], capture_output=True, text=True, env=env,
                              timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(["apt-get", *args], 1, "", str(exc))


def ensure_installed(say: Callable[[str], None] = print) -> dict[str, str | None]:
    """Install with apt-get the Debian packages whose binaries are missing; returns, per
    tunnel, None when it can run or the reason it cannot."""
    missing = sorted({package for binaries in NEEDS.values()
                      for binary, package in binaries.items() if shutil.which(binary) is None})
    failure = ""
    if missing:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            failure = "needs root and apt-get to install " + ", ".join(missing)
        else:
            say(f"skipd --peers: installing {' '.join(missing)} "
                "(apt-get install -y --no-install-recommends)")
            install = ("install", "-y", "--no-install-recommends", *missing)
            result = _apt(*install)
            if result.returncode != 0:  # stale or absent package lists: update once, retry
                say("skipd --peers: apt-get install failed; running apt-get update and retrying")
                _apt("update")
                result = _apt(*install)
            if result.returncode != 0:
                tail = (result.stderr or result.stdout).strip().splitlines()[-1:]
                failure = f"apt-get install {' '.join(missing)} failed: {' '.join(tail)}"
    reasons: dict[str, str | None] = {}
    for tunnel, binaries in NEEDS.items():
        absent = [b for b in binaries if shutil.which(b) is None]
        reasons[tunnel] = (f"{', '.join(absent)} not installed" + (f" ({failure})" if failure
                                                                     else "")) if absent else None
    return reasons


def ping_ms(ns, address: str, wait: float = 2) -> float | None:
    """The round-trip time of one ping (``ping -c 1 -W wait``), None when no reply came."""
    out = ns.run("ping", "-n", "-c", "1", "-W", str(wait), address, check=False,
                 timeout=wait + 10).stdout
    match = re.search(r"time=([\d.]+) ms", out)
    return float(match.group(1)) if match else None


def first_reply_after(ns, address: str, since: float, timeout: float = 30) -> float | None:
    """Seconds from ``since`` (a ``time.time()``) to the first ping reply from ``address``:
    pings every 10 ms from ``ns`` (restarted while there is no route yet); None on timeout."""
    script = (f"until ping -n -D -c 1 -i 0.01 -w {int(timeout)} {address}; "
              "do sleep 0.01; done")
    proc = ns.popen("sh", "-c", script, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                    text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None
    stamps = re.findall(r"^\[(\d+\.\d+)\] .*time=", out, re.M)
    return round(float(stamps[-1]) - since, 3) if stamps else None


def _terminate(procs: list[subprocess.Popen], timeout: float = 10) -> None:
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _version(*argv: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        result = subprocess.run(list(argv), capture_output=True, text=True, timeout=10)
        text = (result.stdout or result.stderr).strip().splitlines()
        return text[0] if text else ""
    return ""


class WireGuardGo:
    """``wireguard-go`` in each namespace (``WG_PROCESS_FOREGROUND=1``), configured with
    ``wg set``. The interfaces are wg-a and wg-b, not wg0 twice: wireguard-go's control socket
    is /var/run/wireguard/IFNAME.sock, and that directory is shared by the namespaces."""

    port = 51820

    def __init__(self, ns: dict, lan: dict[str, str], work: Path) -> None:
        self.ns, self.lan, self.work = ns, lan, work
        self.overlay = {"a": "10.58.0.1", "b": "10.58.0.2"}
        self.overlay_b = self.overlay["b"]
        self.procs: list[subprocess.Popen] = []
        work.mkdir(parents=True, exist_ok=True)
        self.keys = {}
        for me in ("a", "b"):
            private = subprocess.run(["wg", "genkey"], capture_output=True, text=True,
                                     check=True).stdout.strip()
            public = subprocess.run(["wg", "pubkey"], input=private, capture_output=True,
                                    text=True, check=True).stdout.strip()
            (work / f"{me}.key").write_text(private + "\n")
            (work / f"{me}.key").chmod(0o600)
            self.keys[me] = public
        version = _version("wireguard-go", "--version").split()  # "wireguard-go v0.0.2022..."
        self.version = version[1] if len(version) > 1 else ""

    @property
    def label(self) -> str:
        return f"wireguard-go {self.version} chacha20-poly1305".replace("  ", " ")

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def spawn(self) -> None:
        env = {**os.environ, "WG_PROCESS_FOREGROUND": "1"}
        for me in ("a", "b"):
            ifname = f"wg-{me}"
            with contextlib.suppress(FileNotFoundError):
                (WG_SOCKETS / f"{ifname}.sock").unlink()  # left by a killed wireguard-go
            log = (self.work / f"{me}.log").open("ab")
            self.procs.append(self.ns[me].popen("wireguard-go", ifname, env=env,
                                                stdout=log, stderr=subprocess.STDOUT))
        for me, proc in zip(("a", "b"), self.procs, strict=True):
            ifname, other = f"wg-{me}", "b" if me == "a" else "a"
            deadline = time.monotonic() + 10
            while not (WG_SOCKETS / f"{ifname}.sock").exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"wireguard-go {ifname} did not come up: "
                                       + (self.work / f"{me}.log").read_text()[-500:])
                time.sleep(0.01)
            ns = self.ns[me]
            ns.run("wg", "set", ifname, "listen-port", str(self.port),
                   "private-key", str(self.work / f"{me}.key"),
                   "peer", self.keys[other], "endpoint", f"{self.lan[other]}:{self.port}",
                   "allowed-ips", f"{self.overlay[other]}/32")
            ns.run("ip", "addr", "add", f"{self.overlay[me]}/24", "dev", ifname)
            ns.run("ip", "link", "set", ifname, "up")

    def wait_ready(self, timeout: float = 10) -> None:
        """Configured is ready: no handshake happens before the first packet."""
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"wireguard-go exited {proc.returncode}")

    def stop(self) -> None:
        _terminate(self.procs)
        self.procs = []


class OpenVPN:
    """OpenVPN 2.6 peer to peer (no server mode): TLS with certificates of a CA made here with
    openssl (a is --tls-server, b --tls-client), data channel AES-256-GCM negotiated through
    ``data-ciphers`` (2.6 negotiates ciphers in p2p mode too), userspace (``disable-dco``).
    Unlike skipd and WireGuard it does its handshake at start-up, so its first ping carries
    no keying."""

    port = 1194

    def __init__(self, ns: dict, lan: dict[str, str], work: Path) -> None:
        self.ns, self.lan, self.work = ns, lan, work
        self.overlay = {"a": "10.59.0.1", "b": "10.59.0.2"}
        self.overlay_b = self.overlay["b"]
        self.procs: list[subprocess.Popen] = []
        self.cipher = ""
        work.mkdir(parents=True, exist_ok=True)
        self._pki()
        for me in ("a", "b"):
            other = "b" if me == "a" else "a"
            (work / f"{me}.conf").write_text("\n".join([
                "dev ovpn0", "dev-type tun", "proto udp",
                f"local {lan[me]}", f"lport {self.port}",
                f"remote {lan[other]}", f"rport {self.port}",
                f"ifconfig {self.overlay[me]} {self.overlay[other]}",
                "tls-server" if me == "a" else "tls-client",
                *(["dh none"] if me == "a" else []),
                f"ca {work / 'ca.crt'}", f"cert {work / f'{me}.crt'}",
                f"key {work / f'{me}.key'}",
                "data-ciphers AES-256-GCM", "data-ciphers-fallback AES-256-GCM",
                "disable-dco", "verb 3", ""]))
        version = _version("openvpn", "--version").split()
        self.version = version[1] if len(version) > 1 else ""

    @property
    def label(self) -> str:
        return f"openvpn {self.version or '2.6'} p2p tls aes-256-gcm".replace("  ", " ")

    def _pki(self) -> None:
        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], cwd=self.work, capture_output=True, check=True)
        curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
        openssl("req", "-x509", *curve, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
                "-subj", "/CN=skip bench openvpn CA")
        for me in ("a", "b"):
            openssl("req", *curve, "-keyout", f"{me}.key", "-out", f"{me}.csr",
                    "-subj", f"/CN={me}")
            openssl("x509", "-req", "-in", f"{me}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                    "-CAcreateserial", "-sha256", "-days", "2", "-out", f"{me}.crt")
            (self.work / f"{me}.key").chmod(0o600)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def spawn(self) -> None:
        for me in ("a", "b"):
            log = self.work / f"{me}.log"
            log.write_bytes(b"")
            self.procs.append(self.ns[me].popen("openvpn", "--config",
                                                str(self.work / f"{me}.conf"),
                                                stdout=log.open("ab"),
                                                stderr=subprocess.STDOUT))

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        for me, proc in zip(("a", "b"), self.procs, strict=True):
            log = self.work / f"{me}.log"
            while "Initialization Sequence Completed" not in log.read_text(errors="replace"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"openvpn in {me} did not come up: "
                                       + log.read_text(errors="replace")[-800:])
                time.sleep(0.02)
        text = (self.work / "a.log").read_text(errors="replace")
        ciphers = re.findall(r"NCP negotiation result: .*cipher=([\w-]+)|"
                             r"Data Channel: cipher '([^']+)'", text)
        ciphers = [c for pair in ciphers for c in pair if c]
        self.cipher = ciphers[-1] if ciphers else "?"

    def stop(self) -> None:
        _terminate(self.procs)
        self.procs = []
