#!/usr/bin/env python3
"""skip's main demonstration: real SKIP-protected traffic between Linux network namespaces.

    sudo .venv/bin/python tools/netns_demo.py [--keep-certs] [--size MB]

It builds a small PKI with `skip-cert` under certs/demo/, creates four network namespaces
(two hosts, a gateway, and a host behind the gateway) joined by virtual Ethernet links,
starts `skipd` in the three SKIP nodes, sends ping and a TCP transfer through, shows
`skipctl peers` / `skipctl counters`, proves with a packet capture (read by tshark) that the
shared link carries only SKIP (IP protocol 57) and no cleartext, and removes everything again.
Nothing outside the namespaces is touched; it needs root (namespaces, TUN devices, raw
sockets).
"""

from __future__ import annotations

import argparse
import collections
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.netns import (  # noqa: E402 - the repository root must be importable first
    Capture,
    Lab,
    can_run,
    skipd_config,
    start_skipd,
    stop_skipd,
    tcp_transfer,
    udp_exchange,
)

CERTS = ROOT / "certs" / "demo"
PYTHON = sys.executable
SECRET = b"attack at dawn - this sentence must never appear on the shared link"

HOSTS = {  # name: (LAN address, overlay address on its skip0 device)
    "alpha": ("192.0.2.1", "10.57.0.1"),
    "beta": ("192.0.2.2", "10.57.0.2"),
    "gamma": ("192.0.2.3", "10.57.0.3"),
}
DELTA, BEHIND = "10.9.0.2", "10.9.0.0/24"

PICTURE = r"""
      alpha                  beta                   gamma (gateway)            delta
  skip0 10.57.0.1        skip0 10.57.0.2        skip0 10.57.0.3
  lan   192.0.2.1        lan   192.0.2.2        lan   192.0.2.3   10.9.0.1 --- 10.9.0.2
      |                      |                      |
      +----------------------+----------------------+   shared LAN 192.0.2.0/24
                  (only SKIP, IP protocol 57, may cross it)
"""


def say(text: str = "") -> None:
    print(textwrap.indent(textwrap.dedent(text).strip("\n"), "  "), flush=True)


def step(number: int, title: str) -> None:
    print(f"\n=== {number}. {title} " + "=" * max(0, 70 - len(title)), flush=True)


def show(command: list[str], output: str, head: int = 14, tail: int = 0,
         where: str = "") -> None:
    """Print a command the way a person would type it (in namespace ``where``), then its
    output: the first ``head`` and the last ``tail`` lines."""
    print(f"  {where}$ " + shlex.join(command))
    lines = output.rstrip().splitlines()
    if len(lines) > head + tail:
        lines = [*lines[:head], f"... ({len(lines) - head - tail} lines)",
                 *(lines[-tail:] if tail else [])]
    for line in lines:
        print("    " + line)


def skip_cert(*args: str, quiet: bool = False) -> str:
    command = [PYTHON, "-m", "skip.cli.cert", *args]  # what the skip-cert entry point runs
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"demo: skip-cert {' '.join(args)} failed:\n{result.stderr}")
    if not quiet:
        show(["skip-cert", *args], result.stdout)
    return result.stdout


def build_pki() -> None:
    step(1, "A small PKI with skip-cert (certs/demo/)")
    say("""
        Every SKIP node has a long-term Diffie-Hellman key (here X25519) certified by a CA.
        Two nodes that hold each other's certificate share a master key without exchanging
        a single message: that is SKIP's "zero-message keying".
    """)
    shutil.rmtree(CERTS, ignore_errors=True)
    CERTS.mkdir(parents=True)
    os.chdir(CERTS)
    skip_cert("init-ca", "ca", "--subject", "CN=skip demo CA")
    for name, (lan, _overlay) in HOSTS.items():
        quiet = name != "alpha"
        skip_cert("genkey", f"{name}.key", "--group", "x25519", quiet=quiet)
        skip_cert("issue", "--ca", "ca", "--key", f"{name}.key", "--subject", f"CN={name}",
                  "--ip", lan, "--out", f"{name}.crt", quiet=quiet)
    say("(the same for beta and gamma)")
    skip_cert("crl", "--ca", "ca", "--out", "ca.crl")
    skip_cert("name", "alpha.crt")
    for name in HOSTS:
        store = CERTS / f"peers-{name}"
        store.mkdir()
        for other in HOSTS:
            if other != name:
                shutil.copy(CERTS / f"{other}.crt", store / f"{other}.pem")
    os.chdir(ROOT)


def configs(work: Path) -> dict[str, Path]:
    """alpha talks to beta (host to host) and to delta through gamma (host to gateway)."""
    overlay = {n: [f"{o}/24"] for n, (_lan, o) in HOSTS.items()}
    peer = {n: {"name": n, "hosts": [HOSTS[n][1]], "tunnel": HOSTS[n][0], "action": "protect"}
            for n in HOSTS}
    gateway = {**peer["gamma"], "networks": [BEHIND]}
    rules = {"alpha": [peer["beta"], gateway], "beta": [peer["alpha"]],
             "gamma": [peer["alpha"]]}
    out = {}
    for name, peers in rules.items():
        out[name] = skipd_config(work, name, CERTS, overlay=overlay[name], peers=peers,
                                 daemon={"log_format": "text"},
                                 store=CERTS / f"peers-{name}", certificate="{me}.crt",
                                 anchor="ca/ca.crt")
    return out


def protocols_seen(capture: Capture) -> collections.Counter[str]:
    names = {"v4:57": "SKIP (IP protocol 57)", "v4:1": "ICMP (cleartext!)",
             "v4:6": "TCP (cleartext!)", "v4:17": "UDP (cleartext!)"}
    return collections.Counter(names.get(k, k) for k in capture.protocols())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20, help="MB for the TCP transfer")
    parser.add_argument("--keep-certs", action="store_true", help="leave certs/demo/ behind")
    args = parser.parse_args()
    reason = can_run()
    if reason:
        print(f"demo: cannot run here: {reason}", file=sys.stderr)
        return 2
    say("""
        skip demonstration: SKIP (Simple Key-Management for Internet Protocols) protecting
        real traffic between Linux network namespaces, with skipd and skipctl.
    """)
    build_pki()
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"skip-demo-{os.getpid()}"
    work.mkdir()
    with Lab(prefix="skipdemo-") as lab:
        try:
            demo(lab, work, args.size)
        finally:
            step(7, "Tear-down")
            lab.close()
            shutil.rmtree(work, ignore_errors=True)
            if not args.keep_certs:
                shutil.rmtree(CERTS, ignore_errors=True)
            say("""
                skipd removed its routing rules and TUN devices on SIGTERM; the namespaces,
                links and demo certificates are gone. Nothing outside them was touched.
            """)
    return 0


def demo(lab: Lab, work: Path, size_mb: int) -> None:
    step(2, "Network namespaces joined by a virtual LAN")
    ns = {name: lab.host(name, forwarding=(name == "gamma")) for name in (*HOSTS, "delta")}
    lan = lab.switch([(ns[n], [f"{HOSTS[n][0]}/24"]) for n in HOSTS])
    lab.link(ns["gamma"], ["10.9.0.1/24"], ns["delta"], [f"{DELTA}/24"])
    ns["delta"].run("ip", "route", "add", "default", "via", "10.9.0.1")
    say(PICTURE)

    step(3, "skipd in alpha, beta and gamma")
    files = configs(work)
    say(f"""
        alpha's configuration ({files['alpha'].name}): protect traffic to beta's overlay
        address, and to the network {BEHIND} behind gateway gamma; deny everything else.
    """)
    for line in files["alpha"].read_text().splitlines():
        if line and not line.startswith(("control_socket", "log_format")):
            print("    " + line)
    procs = {}
    for name in HOSTS:
        procs[name] = start_skipd(ns[name], files[name], work / f"{name}.sock",
                                  work / f"{name}.log")
    say("skipd runs in all three; in alpha it created skip0 and a policy-routing rule that "
        "sends\nprotected destinations (table 57) into skip0 - except skipd's own packets "
        "(fwmark):")
    show(["ip", "rule"], ns["alpha"].run("ip", "rule").stdout, where="alpha")
    show(["ip", "route", "show", "table", "57"],
         ns["alpha"].run("ip", "route", "show", "table", "57").stdout, where="alpha")

    step(4, "Traffic through SKIP, watched on the shared LAN")
    capture = Capture(ns["alpha"], lan["alpha"], work / "lan.pcapng")
    for target in (HOSTS["beta"][1], DELTA):
        show(["ping", "-c", "3", target],
             ns["alpha"].run("ping", "-c", "3", "-i", "0.3", target).stdout, 2, 2, "alpha")
    echo = udp_exchange(ns["beta"], ns["alpha"], HOSTS["beta"][1], SECRET)
    say(f"UDP message alpha -> beta and back: {echo.decode()!r}")
    size = size_mb * 1024 * 1024
    sent, got, seconds = tcp_transfer(ns["beta"], ns["alpha"], HOSTS["beta"][1], size)
    say(f"""
        TCP alpha -> beta: {size_mb} MB in {seconds:.2f} s ({size_mb / seconds:.1f} MB/s)
          sha256 sent     {sent}
          sha256 received {got}   {'(match)' if sent == got else '(MISMATCH!)'}
    """)
    sent, got, seconds = tcp_transfer(ns["delta"], ns["alpha"], DELTA, size // 4, port=5003)
    say(f"TCP alpha -> delta through gateway gamma: {size_mb / 4:g} MB, sha256 "
        f"{'match' if sent == got else 'MISMATCH'}")
    raw = capture.stop()

    step(5, "What skipd says: skipctl")
    for command in (["peers"], ["counters"]):
        show(["skipctl", *command],
             ns["alpha"].run(PYTHON, "-m", "skip.cli.skipctl", *command, "-s",
                             str(work / "alpha.sock")).stdout, 20, where="alpha")
    say("""
        KP AGE: age of the current traffic key (a new one every 10 MB, 2 minutes or hour);
        N SKEW: the peer's hour counter n minus ours (SKIP accepts -1..+1).
    """)

    step(6, "Proof: what crossed the shared LAN")
    seen = protocols_seen(capture)
    say(f"tshark read {sum(seen.values())} IP packets captured on alpha's LAN interface "
        "(neighbour discovery aside):")
    for kind, count in seen.most_common():
        print(f"    {count:>7}  {kind}")
    packets = subprocess.run(["tshark", "-r", str(capture.path), "-Y", "ip.proto==57"],
                             capture_output=True, text=True).stdout
    show(["tshark", "-r", "lan.pcapng", "-Y", "ip.proto==57"], packets, 4)
    leaked = SECRET in raw
    say(f"""
        The UDP message {SECRET[:14].decode()!r}... appears in the capture: {leaked}.
        Every packet on the LAN is SKIP: the cleartext (ping, TCP, UDP) exists only inside
        the nodes (on skip0) and, behind the gateway, on the gamma-delta link.
    """)
    if leaked or set(seen) != {"SKIP (IP protocol 57)"} or sent != got:
        raise SystemExit("demo: FAILED - cleartext or unexpected packets on the LAN")
    for name, proc in procs.items():
        stop_skipd(proc)
        if "skip0" in ns[name].run("ip", "-o", "link").stdout:
            raise SystemExit(f"demo: skipd in {name} left skip0 behind")
    say("OK: SKIP protected every packet, and each skipd cleaned up after itself.")


if __name__ == "__main__":
    sys.exit(main())
