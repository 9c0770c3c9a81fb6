"""TCP throughput through skipd between two network namespaces, next to the bare link.

Two namespaces joined by a veth pair; iperf3 (Debian) runs over the bare link and over the
overlay addresses that skipd protects, with the modern default suite (AES-256-GCM), the modern
ChaCha20-Poly1305 and AES-CBC + HMAC-SHA-256 suites, and the legacy default (3DES + keyed
MD5), all in one run on this machine. For each run: throughput, packets, the CPU time both
skipd processes used (from /proc) and so the microseconds per packet; one extra run of the
modern default under cProfile says where skipd's time goes. Then one bulk transfer of
6 GB (600 MB with ``--quick``) with the default 10 MB per traffic key: well over the 512 keys a
receiver holds per peer (before modern revision 2.1 such a flow stalled for good at 5.12 GB);
its throughput, the Kps it went through and the receiver's `kp_limit` count (must be 0).
With ``--peers``, the same iperf3 runs side by side with the tunnels users would pick instead
(wireguard-go and OpenVPN 2.6 p2p with TLS and AES-256-GCM, see _peers.py; their Debian
packages installed with apt-get when missing): interleaved rounds (3, one with ``--quick``)
of skipd modern, wireguard-go and OpenVPN, each with throughput, CPU seconds per GB,
retransmits, the first ping once both ends are up (skipd's zero-message keying; WireGuard's
handshake) next to the second, and the time from spawning both daemons to the first ping reply.
Needs root; run with ``tools/bench skipd`` (``--quick`` for short runs, ``--peers``).
"""

from __future__ import annotations

import compileall
import contextlib
import importlib.util
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from skip.daemon.control import request  # noqa: E402
from tests.netns import Lab, can_run, make_pki, skipd_config, start_skipd  # noqa: E402


def _load_peers():
    """tools/benchmarks/_peers.py (the tunnels for --peers), loaded by path: this directory
    is not a package and must not shadow modules on sys.path."""
    path = Path(__file__).resolve().parent / "_peers.py"
    spec = importlib.util.spec_from_file_location("skip_bench__peers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_peers = _load_peers()

A, B = ("192.0.2.1", "10.57.0.1"), ("192.0.2.2", "10.57.0.2")
SUITES = {  # label: (profile, key group, rule keys)
    "modern aes-256-gcm": ("modern", "x25519", {}),
    "modern chacha20-poly1305": ("modern", "x25519", {"crypt_alg": "chacha20-poly1305"}),
    "modern aes-256-cbc+hmac-sha2-256": ("modern", "x25519",
                                         {"crypt_alg": "aes-256-cbc",
                                          "mac_alg": "hmac-sha2-256-128"}),
    "legacy 3des+keyed-md5": ("legacy", "skip-2048", {}),
}
#: where the time goes: cProfile functions grouped by the layer they belong to
GROUPS = (("compiled loops (skip._native: I/O, ESP, counts)", ("pump_out", "pump_in")),
          ("crypto (cryptography/OpenSSL calls)", ("cryptography", "_rust", "aead", "ciphers")),
          ("ESP/AH engine", ("skip/ipsec",)),
          ("SKIP keying", ("skip/keying", "skip/wire", "skip/crypto")),
          ("TUN and socket system calls", ("posix.read", "posix.write", "sendto", "recv",
                                           "'read'", "'write'")),
          ("skipd policy and bookkeeping", ("skip/daemon",)),
          ("asyncio event loop", ("asyncio", "selectors")),
          ("ipaddress objects", ("ipaddress.py",)))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _iperf(lab_a, lab_b, address: str, seconds: float, nbytes: int = 0) -> dict:
    """``seconds`` of iperf3 a -> b, or (``nbytes``) exactly that much, however long it takes."""
    server = lab_b.popen("iperf3", "-s", "-1", "-B", address, stdout=subprocess.DEVNULL)
    time.sleep(0.3)
    amount = ("-n", str(nbytes)) if nbytes else ("-t", str(seconds))
    out = lab_a.run("iperf3", "-c", address, *amount, "-J", timeout=seconds + 30)
    server.wait(timeout=10)
    result = json.loads(out.stdout)["end"]
    return {"mbit_s": round(result["sum_received"]["bits_per_second"] / 1e6, 1),
            "retransmits": result["sum_sent"].get("retransmits", 0),
            "bytes": result["sum_received"]["bytes"]}


def _write_config(work: Path, pki: Path, me: str, profile: str, rule: dict) -> tuple[str, Path]:
    """skipd's configuration for host ``me`` (a or b) protecting the other's overlay address;
    returns its name (``a-modern``...) and the file."""
    (_lan, overlay), other = (A, B) if me == "a" else (B, A)
    name = f"{me}-{profile}"
    (work / f"peers-{name}").mkdir(exist_ok=True)
    peer = f"{'b' if me == 'a' else 'a'}-{profile}"
    (work / f"peers-{name}" / f"{peer}.pem").write_bytes((pki / f"{peer}.pem").read_bytes())
    config = skipd_config(work, name, pki, overlay=[f"{overlay}/24"], peers=[{
        "name": peer, "hosts": [other[1]], "tunnel": other[0], "action": "protect",
        "profile": profile, **rule}])
    return name, config


def _start_pair(lab, ns, work: Path, pki: Path, profile: str, rule: dict,
                profile_to: Path | None = None) -> list[int]:
    pids = []
    for me in ("a", "b"):
        name, config = _write_config(work, pki, me, profile, rule)
        if profile_to is not None and me == "a":
            proc = ns[me].popen(sys.executable, "-m", "cProfile", "-o", str(profile_to), "-m",
                                "skip.cli.skipd", "-c", str(config),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 20
            while not (work / f"{name}.sock").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
        else:
            proc = start_skipd(ns[me], config, work / f"{name}.sock", work / f"{name}.log")
        pids.append(proc.pid)
    return pids


def _cipher_ceiling(seconds: float = 0.5) -> dict[str, float]:
    """Mbit/s one core encrypts 1400-byte payloads at, bare (cryptography/OpenSSL, no
    tunnel): 3DES-CBC bounds the legacy profile whatever the code around it does."""
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    from cryptography.hazmat.primitives.ciphers import Cipher, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    payload, out = bytes(1400), {}
    des = Cipher(TripleDES(bytes(range(24))), modes.CBC(bytes(8))).encryptor()
    gcm, nonce = AESGCM(bytes(32)), bytes(12)
    for name, seal in (("3des-cbc", lambda: des.update(payload)),
                       ("aes-256-gcm", lambda: gcm.encrypt(nonce, payload, None))):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(64):
                seal()
            count += 64
        out[name] = round(count * 1400 * 8 / (time.perf_counter() - start) / 1e6)
    return out


def _per_gb(cpu_seconds: float, nbytes: int) -> float | None:
    """CPU seconds per GB (10**9 bytes) carried."""
    return round(cpu_seconds / (nbytes / 1e9), 2) if nbytes else None


class _SkipdPair:
    """skipd in a and b (modern default suite) as a tunnel for the side-by-side runs: its own
    Popen start (``spawn`` does not wait, so "start to first forwarded packet" can be timed),
    ``wait_ready`` polls both control sockets as start_skipd does."""

    label = "skipd modern aes-256-gcm"
    overlay_b = B[1]

    def __init__(self, ns: dict, work: Path, pki: Path) -> None:
        self.ns, self.work = ns, work
        self.configs = {me: _write_config(work, pki, me, "modern", {}) for me in ("a", "b")}
        self.procs: list[subprocess.Popen] = []

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def spawn(self) -> None:
        for me, (name, config) in self.configs.items():
            log = (self.work / f"{name}.log").open("ab")
            self.procs.append(self.ns[me].popen(sys.executable, "-m", "skip.cli.skipd", "-c",
                                                str(config), stdout=log,
                                                stderr=subprocess.STDOUT))

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        for (name, _config), proc in zip(self.configs.values(), self.procs, strict=True):
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"skipd {name} did not come up: "
                                       + (self.work / f"{name}.log").read_text()[-800:])
                with contextlib.suppress(Exception):
                    if request(self.work / f"{name}.sock", "status").get("ok"):
                        break
                time.sleep(0.02)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []


def _side_by_side(ns: dict, tunnels: list, seconds: float, quick: bool) -> dict:
    """Interleaved rounds over ``tunnels``: per tunnel and round one fresh start timed to the
    first ping reply, then one more fresh start for the first and second ping (no traffic
    before them) and, in the first ``rounds`` rounds, the iperf3 run and both daemons' CPU."""
    rounds, samples = (1, 2) if quick else (3, 5)
    out: dict = {"rounds": rounds, "fresh_starts": samples, "seconds_per_run": seconds,
                 "tunnels": {}}
    data = {t.label: {"runs": [], "first_ping_ms": [], "second_ping_ms": [],
                      "start_to_reply_s": []} for t in tunnels}
    for i in range(max(rounds, samples)):
        for tunnel in tunnels:
            d = data[tunnel.label]
            if "error" in d:
                continue
            try:
                ns["a"].run("ping", "-c", "1", "-W", "1", B[0], check=False)  # ARP, not keying
                since = time.time()
                tunnel.spawn()
                d["start_to_reply_s"].append(_peers.first_reply_after(ns["a"], tunnel.overlay_b,
                                                                      since))
                tunnel.stop()
                tunnel.spawn()
                tunnel.wait_ready()
                time.sleep(0.5)  # up, and idle: the first ping is the first packet
                d["first_ping_ms"].append(_peers.ping_ms(ns["a"], tunnel.overlay_b))
                d["second_ping_ms"].append(_peers.ping_ms(ns["a"], tunnel.overlay_b))
                if i < rounds:
                    cpu0 = [_cpu_seconds(p) for p in tunnel.pids]
                    result = _iperf(ns["a"], ns["b"], tunnel.overlay_b, seconds)
                    cpu = [_cpu_seconds(p) - c for p, c in zip(tunnel.pids, cpu0, strict=True)]
                    result["cpu_seconds"] = [round(c, 3) for c in cpu]
                    d["runs"].append(result)
                if getattr(tunnel, "cipher", None):
                    d["cipher"] = tunnel.cipher
            except Exception as exc:  # one tunnel failing costs its row, not the benchmark
                d["error"] = f"{type(exc).__name__}: {str(exc).strip()[-300:]}"
            finally:
                tunnel.stop()
    for label, d in data.items():
        out["tunnels"][label] = d
        runs = d["runs"]
        if not runs:
            d.setdefault("error", "no iperf3 run completed")
            continue
        nbytes = sum(r["bytes"] for r in runs)
        d["mbit_s"] = round(statistics.median(r["mbit_s"] for r in runs), 1)
        d["cpu_s_per_gb"] = _per_gb(sum(sum(r["cpu_seconds"]) for r in runs), nbytes)
        d["retransmits"] = round(statistics.median(r["retransmits"] for r in runs))
        for key in ("first_ping_ms", "second_ping_ms", "start_to_reply_s"):
            got = [v for v in d[key] if v is not None]
            d[f"{key}_median"] = round(statistics.median(got), 3) if got else None
            d[f"{key}_min"] = min(got) if got else None
            d[f"{key}_lost"] = len(d[key]) - len(got)
    base = data.get(_SkipdPair.label, {}).get("mbit_s")
    for d in data.values():
        if "mbit_s" in d:
            d["ratio_to_skipd"] = round(d["mbit_s"] / base, 3) if base else None
    return out


def _stop(lab, pids: list[int]) -> None:
    for proc in lab.processes:
        if proc.pid in pids and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=20)


def _breakdown(path: Path) -> dict[str, float]:
    """Shares of skipd's busy time (waiting in epoll is idle, left out) by layer."""
    stats = pstats.Stats(str(path))
    busy = {key: value for key, value in stats.stats.items() if "select.epoll" not in key[2]}
    total = sum(tt for (_cc, _nc, tt, _ct, _callers) in busy.values())
    shares: dict[str, float] = {label: 0.0 for label, _ in GROUPS}
    shares["other"] = 0.0
    for (filename, _line, func), (_cc, _nc, tt, _ct, _callers) in busy.items():
        where = f"{filename}:{func}"
        label = next((label for label, keys in GROUPS if any(k in where for k in keys)),
                     "other")
        shares[label] += tt
    return {k: round(100 * v / total, 1) for k, v in shares.items() if total}


def run(quick: bool, peers: bool = False) -> dict:
    reason = can_run()
    if reason:
        return {"skipped": reason}
    # only asked for (--peers) does the benchmark install anything: never in tests
    missing = _peers.ensure_installed() if peers else {}
    # skipd's start is timed as installed: with bytecode (as tools/setup.sh and a wheel leave it)
    compileall.compile_dir(str(ROOT / "skip"), quiet=1)
    seconds = 2 if quick else 6
    figures: dict = {"seconds_per_run": seconds, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="skipd-bench-") as tmp, Lab("sktb-") as lab:
        work, pki = Path(os.environ.get("SKIPD_BENCH_DIR", tmp)), Path(tmp) / "pki"
        make_pki(pki, {"a-modern": ([A[0]], "x25519"), "b-modern": ([B[0]], "x25519"),
                       "a-legacy": ([A[0]], "skip-2048"), "b-legacy": ([B[0]], "skip-2048")},
                 time.time())
        ns = {"a": lab.host("a"), "b": lab.host("b")}
        lab.link(ns["a"], [f"{A[0]}/24"], ns["b"], [f"{B[0]}/24"])
        figures["runs"]["bare veth"] = _iperf(ns["a"], ns["b"], B[0], seconds)
        for label, (profile, _group, rule) in SUITES.items():
            if quick and label not in ("modern aes-256-gcm", "legacy 3des+keyed-md5"):
                continue
            pids = _start_pair(lab, ns, work, pki, profile, rule)
            cpu0 = [_cpu_seconds(p) for p in pids]
            result = _iperf(ns["a"], ns["b"], B[1], seconds)
            cpu = [_cpu_seconds(p) - c for p, c in zip(pids, cpu0, strict=True)]
            packets = result["bytes"] / 1400
            result["skipd_cpu_percent"] = [round(100 * c / seconds) for c in cpu]
            result["us_per_packet_per_daemon"] = round(max(cpu) / packets * 1e6, 1)
            result["cpu_s_per_gb"] = _per_gb(sum(cpu), result["bytes"])
            figures["runs"][label] = result
            _stop(lab, pids)
        pids = _start_pair(lab, ns, work, pki, "modern", {})
        bulk = (600 if quick else 6000) * 10**6
        start = time.monotonic()
        result = _iperf(ns["a"], ns["b"], B[1], 1200, nbytes=bulk)
        result["seconds"] = round(time.monotonic() - start, 1)
        counters = request(work / "b-modern.sock", "counters")["result"]
        result["kps_received"] = counters["engine"].get("kp_decrypted", 0)
        result["kp_limit"] = counters["drops"].get("kp_limit", 0)
        figures["bulk"] = result
        _stop(lab, pids)
        prof = work / "skipd.prof"
        pids = _start_pair(lab, ns, work, pki, "modern", {}, profile_to=prof)
        _iperf(ns["a"], ns["b"], B[1], seconds)
        _stop(lab, pids)
        figures["sender_profile_percent"] = _breakdown(prof) if prof.exists() else {}
        figures["cipher_mbit_s"] = _cipher_ceiling(0.2 if quick else 1.0)
        if peers:
            lan = {"a": A[0], "b": B[0]}
            tunnels: list = [_SkipdPair(ns, work, pki)]
            skipped = {}
            for key, kind in (("wireguard-go", _peers.WireGuardGo),
                              ("openvpn", _peers.OpenVPN)):
                if missing.get(key):
                    skipped[key] = missing[key]
                    continue
                try:
                    tunnels.append(kind(ns, lan, Path(tmp) / key))
                except (OSError, subprocess.SubprocessError) as exc:
                    skipped[key] = f"cannot set up: {exc}"
            figures["peers"] = _side_by_side(ns, tunnels, seconds, quick)
            figures["peers"]["skipped"] = skipped
    bare = figures["runs"]["bare veth"]["mbit_s"]
    figures["bulk"]["ratio_to_bare"] = round(figures["bulk"]["mbit_s"] / bare, 4) if bare else None
    for result in figures["runs"].values():
        result["ratio_to_bare"] = round(result["mbit_s"] / bare, 4) if bare else None
    return figures


def report(figures: dict) -> str:
    if "skipped" in figures:
        return f"skipped: {figures['skipped']}"
    lines = [f"iperf3 TCP a -> b, {figures['seconds_per_run']} s per run, same machine & run",
             f"{'path':<36} {'Mbit/s':>9} {'vs bare':>8} {'retr':>6} {'skipd CPU a/b':>14} "
             f"{'us/pkt':>7} {'CPU s/GB':>9}"]
    for label, r in figures["runs"].items():
        cpu = "/".join(f"{c}%" for c in r.get("skipd_cpu_percent", [])) or "-"
        lines.append(f"{label:<36} {r['mbit_s']:>9.1f} {r['ratio_to_bare']:>8.4f} "
                     f"{r['retransmits']:>6} {cpu:>14} {r.get('us_per_packet_per_daemon', '-'):>7}"
                     f" {_num(r.get('cpu_s_per_gb')):>9}")
    bulk = figures["bulk"]
    lines.append(f"bulk: {bulk['bytes'] / 1e9:.1f} GB in {bulk['seconds']} s, "
                 f"{bulk['mbit_s']} Mbit/s ({bulk['ratio_to_bare']} of bare), through "
                 f"{bulk['kps_received']} Kps; receiver kp_limit {bulk['kp_limit']} (must be 0)")
    modern = figures["runs"].get("modern aes-256-gcm", {}).get("mbit_s")
    legacy = figures["runs"].get("legacy 3des+keyed-md5", {}).get("mbit_s")
    ceiling = figures.get("cipher_mbit_s", {})
    if modern and legacy and ceiling:
        lines.append(f"legacy / modern: {legacy / modern:.2f}; bare 3DES-CBC encrypts "
                     f"{ceiling['3des-cbc']} Mbit/s on one core (AES-256-GCM "
                     f"{ceiling['aes-256-gcm']}), so no legacy tunnel here passes "
                     f"{ceiling['3des-cbc'] / modern:.2f} of modern")
    if figures.get("sender_profile_percent"):
        lines.append("where the sending skipd's busy time goes (cProfile, modern aes-256-gcm):")
        for label, share in sorted(figures["sender_profile_percent"].items(),
                                   key=lambda kv: -kv[1]):
            lines.append(f"  {share:5.1f}%  {label}")
    if "peers" in figures:
        lines += ["", *_report_peers(figures["peers"])]
    lines.append(
        "skipd is one thread; with the compiled core its steady state runs in C "
        "(skip._native pump_out/pump_in), so near 100% CPU is mostly the kernel's TUN and "
        "raw-socket work. What would raise it: GSO/GRO on the TUN device (IFF_VNET_HDR) so "
        "one read carries 64 kB, recvmmsg/sendmmsg, TUN multiqueue with one worker per "
        "queue, and moving the per-packet path to the kernel (XFRM with SKIP keys).")
    return "\n".join(lines)


def _num(value: object, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _report_peers(peers: dict) -> list[str]:
    rounds, starts = peers["rounds"], peers["fresh_starts"]
    lines = [f"side by side, same namespaces and veth: iperf3 TCP a -> b, "
             f"{peers['seconds_per_run']} s per run, {rounds} interleaved round(s) (medians); "
             f"pings over the tunnel from {starts} fresh starts each",
             f"{'tunnel':<44} {'Mbit/s':>8} {'vs skipd':>8} {'CPU s/GB':>9} {'retr':>6} "
             f"{'1st ping ms med/min':>20} {'2nd ping ms':>11} {'start->reply s':>14}"]
    for label, d in peers["tunnels"].items():
        if "mbit_s" not in d:
            lines.append(f"{label:<44} skipped: {d.get('error', 'no figures')}")
            continue
        first = f"{_num(d['first_ping_ms_median'])}/{_num(d['first_ping_ms_min'])}"
        if d["first_ping_ms_lost"]:
            first += f" ({d['first_ping_ms_lost']} lost)"
        note = f"  [{d['error']}]" if "error" in d else ""
        if d.get("cipher") and d["cipher"].lower() not in label.lower():
            note += f"  [negotiated {d['cipher']}]"
        lines.append(f"{label:<44} {d['mbit_s']:>8.1f} {_num(d['ratio_to_skipd'], 3):>8} "
                     f"{_num(d['cpu_s_per_gb']):>9} {d['retransmits']:>6} {first:>20} "
                     f"{_num(d['second_ping_ms_median']):>11} "
                     f"{_num(d['start_to_reply_s_median']):>14}{note}")
    for key, why in peers.get("skipped", {}).items():
        lines.append(f"{key:<44} skipped: {why}")
    lines.append(
        "CPU s/GB: both tunnel processes' CPU seconds (/proc) per 10^9 bytes received. 1st "
        "ping: the first packet once both ends are up and idle (skipd: zero-message keying, "
        "Kij, Kp and SAs on both sides; wireguard-go: its handshake; OpenVPN: none, its TLS "
        "handshake ran at start-up); 2nd ping: steady state. start->reply: from spawning both "
        "daemons (configured, certificates present) to the first ping reply over the tunnel "
        "(pings every 10 ms).")
    return lines
