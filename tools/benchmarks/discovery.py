"""Certificate discovery through the DNS (issue 10): lookup latency with a cold and a warm
DNSSEC chain, the first protected packet in network namespaces, and memory per learned
certificate. All figures come from one run on this machine.

* **Lookup** (sans-I/O :class:`~skip.discovery.dns_lookup.DnsRequester` over a real UDP
  socket against Debian's knotd on 127.0.0.1, a free port, signing ``example.`` itself with
  ECDSA P-256 / NSEC; each name holds one CERT PKIX record with a real 0.4 kB X25519
  certificate). *Cold*: a fresh requester per lookup: the CERT query, the DNSKEY query at the
  anchor and the validation from the configured DS. *Warm chain*: one requester kept across
  lookups, so the DNSKEY answer is reused (validated again): one CERT query and the
  validation. Both over distinct names, alternating, after one unmeasured lookup of each.
  The requester's rate limit is raised for the benchmark (the default is 20 lookups/s).
  *Validation*: :func:`skip.discovery.dnssec.validate` alone, on the same evidence a cold
  lookup gathers (the CERT and DNSKEY responses, fetched beforehand), per lookup.
* **End to end** (tests.netns TwoHosts: hosts a and b on one LAN, skipd each, knotd in b's
  namespace on port 53 serving the signed reverse zone of the LAN with the CERT records
  ``skip-cert export --format dns`` writes, ``discovery = ["dns"]`` and the zone's DS as the
  anchor): the RTT ``ping -c 1`` reports for a's first echo to b's overlay address, with fresh
  daemons each sample. *Cold, both discover*: neither store holds the other's certificate:
  a's packet waits for a's lookup; b's reply waits for b's (b learns of a from a's SKIP
  packet). *Cold, a discovers*: b's store holds a's certificate. *Warm*: the next ping, both
  certificates learned and keys cached. *Stored*: both stores hold the certificates
  (``discovery`` unused): the first ping still computes the master key and the first
  traffic keys. *Bare LAN*: a ping to b's LAN address, not protected.
* **Memory** per learned certificate: a real :class:`~skip.daemon.keying_adapter.SkipKeying`
  (skipd's keying adapter and engine) configured with N protecting rules (NSID 0, a tunnel
  address each) and an empty store; then, under tracemalloc, each rule is given its
  certificate through ``SkipKeying.learn`` as the DNS source does (a fresh copy of the DER
  bytes, the source string skipd writes), plus the refresh entries ``Discovery._schedule``
  keeps per DNS-learned name (N = 10,000 certificates, all minted). Counted is what is still
  allocated after ``gc.collect()``, divided by N: the learned entry (DER bytes, source, the
  bound PeerKey with its parsed Certificate), the store's verdict, the rule's peer spec, the
  engine's Peer and the refresh schedule. Not counted: the rules themselves (configuration),
  keys toward the peer (none until traffic), the DnsAnswer (dropped). ``Learned.take`` alone
  (entry + verdict, on its own Learned and CertificateStore, for the first 1,000 rules) is
  measured as well.

Run with ``tools/bench discovery`` (``--quick``: small N, no namespaces).
"""

from __future__ import annotations

import base64
import gc
import ipaddress
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.name  # noqa: E402
import dns.query  # noqa: E402
import dns.rdatatype  # noqa: E402

from skip.daemon import trust  # noqa: E402
from skip.daemon.cert_store import CertificateStore  # noqa: E402
from skip.daemon.config import load_config  # noqa: E402
from skip.daemon.discovery import Discovery, _dns_source  # noqa: E402
from skip.daemon.keying_adapter import SkipKeying  # noqa: E402
from skip.daemon.learned import Learned  # noqa: E402
from skip.discovery.dns_lookup import EDNS_PAYLOAD, DnsAnswer, DnsRequester  # noqa: E402
from skip.discovery.dns_names import owner_name  # noqa: E402
from skip.discovery.dnssec import Evidence, TrustAnchor, validate  # noqa: E402
from skip.wire.names import SkipName  # noqa: E402
from tests.knot import KnotServer, Zone, have_knot  # noqa: E402
from tests.memory_pki import Pki  # noqa: E402
from tests.netns import LAN_AB, OVERLAY_AB, Lab, TwoHosts, can_run  # noqa: E402

ZONE = "example."
REVERSE = "2.0.192.in-addr.arpa."
A_LAN = "192.0.2.1"
TAKE_PEERS = 1000  # Learned.take alone is measured on this many (bytes per entry are flat)


def _peer_address(i: int) -> str:
    return str(ipaddress.ip_address("198.18.0.1") + i)


def _overlay_address(i: int) -> str:
    return str(ipaddress.ip_address("10.128.0.1") + i)


# --- 1. sans-I/O lookups against knotd on loopback --------------------------------------------

def _resolve(requester: DnsRequester, server: tuple[str, int], owner: dns.name.Name,
             name: SkipName) -> tuple[DnsAnswer, float]:
    """Drive one lookup over a UDP socket until it ends; (answer, seconds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.5)
        t0 = time.perf_counter()
        assert requester.lookup(name, owner, [server], time.time())
        while True:
            for data, to in requester.datagrams_to_send():
                sock.sendto(data, to)
            if requester.tcp_to_send():
                raise RuntimeError("unexpected truncation: the benchmark answers fit UDP")
            if events := requester.events():
                elapsed = time.perf_counter() - t0
                [answer] = events
                return answer, elapsed
            try:
                data, source = sock.recvfrom(65535)
            except TimeoutError:
                requester.handle_timer(time.time())
            else:
                requester.receive_datagram(data, source, time.time())
            if time.perf_counter() - t0 > 10:
                raise RuntimeError("a lookup did not end")


def _evidence(server: tuple[str, int], owner: dns.name.Name) -> Evidence:
    """What a cold lookup of ``owner`` gathers: the CERT and the anchor's DNSKEY answers."""
    evidence = Evidence()
    for qname, qtype in ((owner, dns.rdatatype.CERT),
                         (dns.name.from_text(ZONE), dns.rdatatype.DNSKEY)):
        query = dns.message.make_query(qname, qtype, want_dnssec=True, use_edns=0,
                                       payload=EDNS_PAYLOAD)
        query.flags |= dns.flags.CD
        evidence.extend(Evidence.from_message(dns.query.udp(query, server[0], timeout=2,
                                                            port=server[1])))
    return evidence


def _stats(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {"median_ms": statistics.median(ordered) * 1e3, "p90_ms": p90 * 1e3,
            "samples": len(ordered)}


def lookups(count: int, pki: Pki) -> dict:
    if not have_knot():
        return {"skipped": "knotd is not installed (tools/setup.sh installs Debian's knot)"}
    total = 2 * count + 2  # cold names, warm names, one unmeasured of each
    records = []
    for i in range(total):
        _key, cert = pki.leaf(f"h{i}", _peer_address(i))
        records.append(f"h{i} CERT PKIX 0 0 {base64.b64encode(cert.der).decode()}")
    with tempfile.TemporaryDirectory(prefix="skip-bench-knot-") as tmp:
        knot = KnotServer(Path(tmp), [Zone(ZONE, "ns A 127.0.0.1\n" + "\n".join(records)
                                           + "\n")])
        knot.start()
        try:
            server = (knot.address, knot.port)
            anchor = TrustAnchor.from_text(knot.anchor(ZONE))
            owners = [dns.name.from_text(f"h{i}.{ZONE}") for i in range(total)]
            names = [SkipName.of_address(ipaddress.ip_address(_peer_address(i)).packed)
                     for i in range(total)]

            def fresh() -> DnsRequester:
                return DnsRequester([anchor], rate=1e6, burst=1e6)

            warm = fresh()
            cold_s, warm_s, queries = [], [], {"cold": 0, "warm": 0}
            for i in range(count + 1):
                cold = fresh()
                answer, seconds = _resolve(cold, server, owners[2 * i], names[2 * i])
                assert answer.outcome == "secure" and answer.certificates, answer.detail
                before = warm.counters["dns_queries"]
                answer2, seconds2 = _resolve(warm, server, owners[2 * i + 1], names[2 * i + 1])
                assert answer2.outcome == "secure" and answer2.certificates, answer2.detail
                if i == 0:
                    continue  # the socket, knotd and the warm requester's chain warm up
                cold_s.append(seconds)
                warm_s.append(seconds2)
                queries["cold"] += cold.counters["dns_queries"]
                queries["warm"] += warm.counters["dns_queries"] - before
            assert warm.counters["dns_chain_reused"] == count
            validation = []
            now = time.time()
            for i in range(1, count + 1):
                evidence = _evidence(server, owners[2 * i])
                t0 = time.perf_counter()
                verdict = validate(anchor, evidence, owners[2 * i], dns.rdatatype.CERT, now)
                validation.append(time.perf_counter() - t0)
                assert str(verdict.outcome) == "secure", verdict.detail
        finally:
            knot.stop()
    out = {"cold": _stats(cold_s), "warm_chain": _stats(warm_s),
           "validate": _stats(validation),
           "queries_per_lookup": {k: v / count for k, v in queries.items()},
           "certificate_bytes": len(cert.der)}
    out["cold_over_warm"] = out["cold"]["median_ms"] / out["warm_chain"]["median_ms"]
    return out


# --- 2. end to end in network namespaces ------------------------------------------------------

def _cert_records(pki_dir: Path, served: dict[str, str]) -> str:
    lines: list[str] = []
    for label, who in served.items():
        out = subprocess.run([sys.executable, "-m", "skip.cli.cert", "export",
                              str(pki_dir / f"{who}.pem"), "--format", "dns", "--owner",
                              f"{label}.{REVERSE}", "--ttl", "300"],
                             capture_output=True, text=True, check=True, cwd=ROOT)
        lines += [line for line in out.stdout.splitlines() if " CERT " in line]
    return "\n".join(lines) + "\n"


def _ping_ms(hosts: TwoHosts, address: str) -> float | None:
    out = hosts.ns["a"].run("ping", "-c", "1", "-W", "6", address, check=False, timeout=15)
    found = re.search(r"time=([\d.]+) ms", out.stdout)
    return float(found.group(1)) if out.returncode == 0 and found else None


def _restart(hosts: TwoHosts, known: dict[str, bool], dns: dict[str, object]) -> None:
    hosts.stop_all()
    hosts.procs.clear()
    for me in ("a", "b"):
        store = hosts.work / f"peers-{me}"
        shutil.rmtree(store, ignore_errors=True)
        hosts.start(me, known=known[me], **dns)


def end_to_end(samples: int) -> dict:
    reason = can_run()
    if reason:
        return {"skipped": reason}
    if not have_knot():
        return {"skipped": "knotd is not installed (tools/setup.sh installs Debian's knot)"}
    cases: dict[str, list[float]] = {"cold, both discover": [], "cold, a discovers": [],
                                     "warm (next ping)": [], "stored, first ping": [],
                                     "stored, next ping": [], "bare LAN": []}
    failed: dict[str, int] = {k: 0 for k in cases}

    def note(case: str, ms: float | None) -> None:
        if ms is None:
            failed[case] += 1
        else:
            cases[case].append(ms)

    with tempfile.TemporaryDirectory(prefix="skip-bench-dns-") as tmp, Lab("skdb-") as lab:
        work = Path(tmp)
        hosts = TwoHosts(lab, work)
        knot = KnotServer(work / "knot", [Zone(REVERSE, "@ NS ns.example.\n" + _cert_records(
            hosts.pki, {"1": "a", "2": "b"}))], address=LAN_AB["b"], port=53,
            netns=hosts.ns["b"].name)
        knot.start()
        try:
            anchor = work / "dns-anchor.ds"
            anchor.write_text(knot.anchor(REVERSE) + "\n")
            dns_settings: dict[str, object] = {"discovery": ["dns"],
                                               "dns_servers": [LAN_AB["b"]],
                                               "dns_trust_anchors": [str(anchor)]}
            target = OVERLAY_AB["b"]
            for _ in range(samples):
                note("bare LAN", _ping_ms(hosts, LAN_AB["b"]))
                _restart(hosts, {"a": False, "b": False}, dns_settings)
                note("cold, both discover", _ping_ms(hosts, target))
                note("warm (next ping)", _ping_ms(hosts, target))
                _restart(hosts, {"a": False, "b": True}, dns_settings)
                note("cold, a discovers", _ping_ms(hosts, target))
                _restart(hosts, {"a": True, "b": True}, {})
                note("stored, first ping", _ping_ms(hosts, target))
                note("stored, next ping", _ping_ms(hosts, target))
        finally:
            hosts.stop_all()
            knot.stop()
    out: dict = {"samples": samples, "rtt_ms": {}, "failed": failed}
    for case, values in cases.items():
        if values:
            out["rtt_ms"][case] = {"median": statistics.median(values), "min": min(values),
                                   "max": max(values), "n": len(values)}
    rtt = out["rtt_ms"]
    if "cold, both discover" in rtt and "warm (next ping)" in rtt:
        out["cold_over_warm"] = rtt["cold, both discover"]["median"] / \
            rtt["warm (next ping)"]["median"]
    if "cold, a discovers" in rtt and "stored, first ping" in rtt:
        out["cold_a_over_stored"] = rtt["cold, a discovers"]["median"] / \
            rtt["stored, first ping"]["median"]
    return out


# --- 3. memory per learned certificate --------------------------------------------------------

def memory(peers: int, pki: Pki) -> dict:
    from tests.netns import skipd_config

    now = time.time()
    t0 = time.perf_counter()
    ders = [pki.leaf(f"p{i}", _peer_address(i))[1].der for i in range(peers)]
    mint_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="skip-bench-mem-") as tmp:
        work = Path(tmp)
        pki.write(work / "pki", "a", A_LAN)
        (work / "peers-a").mkdir()
        rules = [{"name": f"p{i}", "hosts": [_overlay_address(i)], "tunnel": _peer_address(i),
                  "action": "protect"} for i in range(peers)]
        config_path = skipd_config(work, "a", work / "pki", peers=rules,
                                   store=work / "peers-a", identity={"addresses": [A_LAN]},
                                   daemon={"max_peers": max(1024, peers)})
        t0 = time.perf_counter()
        engine = SkipKeying(load_config(config_path), now, trust.validator)
        setup_s = time.perf_counter() - t0
        config = engine.config
    wanted = []
    for rule in config.peers:
        name, address = engine.learned.wanted(rule)
        wanted.append((rule, name, owner_name(name, address=address)))

    # Learned.take alone: the entry and the store's verdict (on the first TAKE_PEERS rules)
    learned, store = Learned(), CertificateStore()
    learned.configure(config)
    take_peers = min(peers, TAKE_PEERS)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for (rule, name, owner), der in zip(wanted[:take_peers], ders, strict=False):
        answer = DnsAnswer(name, owner, "found", "secure", ((1, bytes(bytearray(der))),),
                           300.0, server=("192.0.2.53", 53))
        cert_type, data = answer.certificates[0]
        learned.take(rule, name, cert_type, data, _dns_source(answer), now, engine.validator,
                     store)
    del answer, data
    gc.collect()
    take_bytes = (tracemalloc.get_traced_memory()[0] - base) / take_peers
    tracemalloc.stop()
    del learned, store
    gc.collect()

    # what skipd keeps: SkipKeying.learn (entry, verdict, peer spec, engine Peer) + refresh
    schedule = SimpleNamespace(_refresh={}, _interval={})
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    for (rule, name, owner), der in zip(wanted, ders, strict=True):
        answer = DnsAnswer(name, owner, "found", "secure", ((1, bytes(bytearray(der))),),
                           300.0, server=("192.0.2.53", 53))
        result = engine.learn(rule, name, answer.certificates, _dns_source(answer), now)
        assert result == "ok", result
        Discovery._schedule(schedule, answer, now)  # type: ignore[arg-type]
    learn_s = time.perf_counter() - t0
    del answer
    gc.collect()
    full_bytes = tracemalloc.get_traced_memory()[0] - base
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    assert len(engine.learned.status()) == peers
    by_file: dict[str, int] = {}
    for stat in after.compare_to(before, "filename"):
        parts = Path(stat.traceback[0].filename).parts
        label = ("/".join(parts[parts.index("skip"):][:3]) if "skip" in parts
                 else "/".join(parts[-2:]))
        by_file[label] = by_file.get(label, 0) + stat.size_diff
    top = dict(sorted(((k, v) for k, v in by_file.items() if v > 0),
                      key=lambda kv: -kv[1])[:6])
    return {"peers": peers, "certificate_der_bytes": statistics.mean(map(len, ders)),
            "mint_ms_per_certificate": mint_s / peers * 1e3,
            "engine_setup_s": setup_s,
            "learn_ms_per_certificate_traced": learn_s / peers * 1e3,
            "take_peers": take_peers, "take_bytes_per_certificate": take_bytes,
            "skipd_bytes_per_certificate": full_bytes / peers,
            "skipd_total_mib": full_bytes / 2**20,
            "by_allocating_file_bytes_per_certificate": {k: v / peers for k, v in top.items()}}


# --- the runner's interface -------------------------------------------------------------------

def run(quick: bool) -> dict:
    pki = Pki(time.time())
    figures: dict = {"lookup": lookups(20 if quick else 200, pki)}
    figures["end_to_end"] = ({"skipped": "--quick (namespaces take tens of seconds)"}
                             if quick else end_to_end(5))
    figures["memory"] = memory(300 if quick else 10_000, pki)
    return figures


def report(figures: dict) -> str:
    lines: list[str] = []
    look = figures["lookup"]
    if "skipped" in look:
        lines.append(f"lookup: skipped: {look['skipped']}")
    else:
        q = look["queries_per_lookup"]
        lines += [f"DNS lookup, sans-I/O DnsRequester over UDP to knotd on loopback "
                  f"({look['cold']['samples']} distinct names each; "
                  f"{look['certificate_bytes']}-byte certificate)",
                  f"  {'':<48} {'median ms':>10} {'p90 ms':>8}"]
        for key, label in (("cold", f"cold: fresh requester ({q['cold']:.0f} queries + "
                                    "validate)"),
                           ("warm_chain", f"warm chain: DNSKEY reused ({q['warm']:.0f} query "
                                          "+ validate)"),
                           ("validate", "dnssec.validate alone (CPU, per lookup)")):
            s = look[key]
            lines.append(f"  {label:<48} {s['median_ms']:>10.3f} {s['p90_ms']:>8.3f}")
        lines.append(f"  ratio cold / warm chain (medians): {look['cold_over_warm']:.2f}")
    e2e = figures["end_to_end"]
    if "skipped" in e2e:
        lines.append(f"end to end: skipped: {e2e['skipped']}")
    else:
        lines += [f"end to end, ping -c 1 RTT a -> b's overlay address, fresh skipd pair per "
                  f"sample ({e2e['samples']} samples)",
                  f"  {'':<28} {'median ms':>10} {'min':>8} {'max':>8}"]
        for case, s in e2e["rtt_ms"].items():
            lines.append(f"  {case:<28} {s['median']:>10.3f} {s['min']:>8.3f} {s['max']:>8.3f}")
        if any(e2e["failed"].values()):
            lines.append(f"  pings lost: { {k: v for k, v in e2e['failed'].items() if v} }")
        if "cold_over_warm" in e2e:
            lines.append(f"  ratio cold (both discover) / warm: {e2e['cold_over_warm']:.1f}")
        if "cold_a_over_stored" in e2e:
            lines.append(f"  ratio cold (a discovers) / stored first ping: "
                         f"{e2e['cold_a_over_stored']:.1f}")
    mem = figures["memory"]
    lines += [f"memory per learned certificate, {mem['peers']} peers "
              f"({mem['certificate_der_bytes']:.0f}-byte DER each; tracemalloc, retained "
              "after gc)",
              f"  Learned.take alone (entry + store verdict; first {mem['take_peers']}):  "
              f"{mem['take_bytes_per_certificate']:>8.0f} bytes",
              f"  as skipd holds it (+ peer spec, engine Peer, refresh): "
              f"{mem['skipd_bytes_per_certificate']:>5.0f} bytes "
              f"({mem['skipd_total_mib']:.1f} MiB in all)",
              "  by allocating file (bytes per certificate): " + ", ".join(
                  f"{k} {v:.0f}" for k, v in
                  mem["by_allocating_file_bytes_per_certificate"].items()),
              f"  (minting {mem['mint_ms_per_certificate']:.2f} ms/certificate; engine with "
              f"{mem['peers']} rules built in {mem['engine_setup_s']:.2f} s; learn "
              f"{mem['learn_ms_per_certificate_traced']:.2f} ms each under tracemalloc)"]
    return "\n".join(lines)
