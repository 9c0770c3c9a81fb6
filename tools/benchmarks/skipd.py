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
Needs root; run with ``tools/bench skipd`` (``--quick`` for short runs).
"""

from __future__ import annotations

import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from skip.daemon.control import request  # noqa: E402
from tests.netns import Lab, can_run, make_pki, skipd_config, start_skipd  # noqa: E402

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
GROUPS = (("crypto (cryptography/OpenSSL calls)", ("cryptography", "_rust", "aead", "ciphers")),
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


def _start_pair(lab, ns, work: Path, pki: Path, profile: str, rule: dict,
                profile_to: Path | None = None) -> list[int]:
    pids = []
    for me, (_lan, overlay), other in (("a", A, B), ("b", B, A)):
        name = f"{me}-{profile}"
        (work / f"peers-{name}").mkdir(exist_ok=True)
        peer = f"{'b' if me == 'a' else 'a'}-{profile}"
        (work / f"peers-{name}" / f"{peer}.pem").write_bytes((pki / f"{peer}.pem").read_bytes())
        config = skipd_config(work, name, pki, overlay=[f"{overlay}/24"], peers=[{
            "name": peer, "hosts": [other[1]], "tunnel": other[0], "action": "protect",
            "profile": profile, **rule}])
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


def run(quick: bool) -> dict:
    reason = can_run()
    if reason:
        return {"skipped": reason}
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
             f"{'us/pkt':>7}"]
    for label, r in figures["runs"].items():
        cpu = "/".join(f"{c}%" for c in r.get("skipd_cpu_percent", [])) or "-"
        lines.append(f"{label:<36} {r['mbit_s']:>9.1f} {r['ratio_to_bare']:>8.4f} "
                     f"{r['retransmits']:>6} {cpu:>14} {r.get('us_per_packet_per_daemon', '-'):>7}")
    bulk = figures["bulk"]
    lines.append(f"bulk: {bulk['bytes'] / 1e9:.1f} GB in {bulk['seconds']} s, "
                 f"{bulk['mbit_s']} Mbit/s ({bulk['ratio_to_bare']} of bare), through "
                 f"{bulk['kps_received']} Kps; receiver kp_limit {bulk['kp_limit']} (must be 0)")
    if figures.get("sender_profile_percent"):
        lines.append("where the sending skipd's busy time goes (cProfile, modern aes-256-gcm):")
        for label, share in sorted(figures["sender_profile_percent"].items(),
                                   key=lambda kv: -kv[1]):
            lines.append(f"  {share:5.1f}%  {label}")
    lines.append(
        "skipd is one Python thread per direction pair: near 100% CPU means it is the limit. "
        "What would raise it: batching TUN reads/writes (recvmmsg/sendmmsg, TUN multiqueue "
        "with one worker per queue), GSO/GRO on the TUN device (IFF_VNET_HDR) so one read "
        "carries 64 kB, and moving the per-packet path to the kernel (XFRM with SKIP keys).")
    return "\n".join(lines)
