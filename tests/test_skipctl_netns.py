"""skipctl and the metrics against a real skipd pair in network namespaces (issue 13): the
Prometheus exposition parsed by prometheus_client's own parser and compared, number for
number, with what ``skipctl`` shows (past 10^6, where ``{value:g}`` used to round), every
reason code present at 0, ``skipctl certs`` against the certificates on disk, ``counters
--reset``, ``monitor`` as JSON lines, and ``-c CONFIG reload`` of a broken file reaching skipd
(which refuses it and logs the attempt)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from skip import __version__
from skip.daemon.control import request
from skip.errors import REASONS
from skip.pki.certificate import iso_time, load_certificate
from tests.netns import (
    Lab,
    can_run,
    eventually,
    make_pki,
    skipd_config,
    start_skipd,
    tcp_transfer,
)

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(can_run() is not None, reason=str(can_run()))]

LAN = {"a": "192.0.2.1", "b": "192.0.2.2"}
OVERLAY = {"a": "10.57.0.1", "b": "10.57.0.2"}
METRICS = "127.0.0.1:9657"
SCRAPE = ("import sys, urllib.request\n"
          "req = urllib.request.Request('http://{addr}/metrics',\n"
          "                             headers={{'Accept': {accept!r}}})\n"
          "r = urllib.request.urlopen(req)\n"
          "sys.stdout.write(r.headers['Content-Type'] + '\\n' + r.read().decode())\n")


class Pair:
    def __init__(self, lab: Lab, work: Path) -> None:
        self.work = work
        self.ns = {n: lab.host(n) for n in ("a", "b")}
        lab.link(self.ns["a"], [f"{LAN['a']}/24"], self.ns["b"], [f"{LAN['b']}/24"])
        self.pki = work / "pki"
        make_pki(self.pki, {n: ([LAN[n]], "x25519") for n in LAN}, time.time())
        self.config: dict[str, Path] = {}
        for me, other in (("a", "b"), ("b", "a")):
            store = work / f"peers-{me}"
            store.mkdir()
            shutil.copy(self.pki / f"{other}.pem", store)
            daemon = {"metrics": METRICS} if me == "a" else {}
            self.config[me] = skipd_config(
                work, me, self.pki, overlay=[f"{OVERLAY[me]}/24"], daemon=daemon,
                peers=[{"name": other, "hosts": [OVERLAY[other]], "tunnel": LAN[other],
                        "action": "protect"}])
            start_skipd(self.ns[me], self.config[me], self.sock(me), work / f"{me}.log")

    def sock(self, me: str) -> Path:
        return self.work / f"{me}.sock"

    def skipctl(self, *args: str, me: str = "a") -> subprocess.CompletedProcess[str]:
        return self.ns[me].run(sys.executable, "-m", "skip.cli.skipctl", *args, "-s",
                               str(self.sock(me)), check=False)

    def scrape(self, accept: str = "text/plain") -> tuple[str, str]:
        out = self.ns["a"].run(sys.executable, "-c",
                               SCRAPE.format(addr=METRICS, accept=accept)).stdout
        content_type, _, body = out.partition("\n")
        return content_type, body

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        _, body = self.scrape()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(body) for s in family.samples}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with Lab() as lab:
        yield Pair(lab, tmp_path_factory.mktemp("skipctl-pair"))


def _ping(pair: Pair) -> bool:
    return pair.ns["a"].run("ping", "-c", "2", "-i", "0.2", "-W", "2", OVERLAY["b"],
                            check=False).returncode == 0


def test_metrics_are_exact_and_named_by_prometheus_conventions(pair: Pair) -> None:
    assert _ping(pair)
    sent, got, _ = tcp_transfer(pair.ns["b"], pair.ns["a"], OVERLAY["b"], 3 * 1024 * 1024)
    assert sent == got
    peers = json.loads(pair.skipctl("peers", "--json").stdout)["result"]
    counters = request(pair.sock("a"), "counters")["result"]
    status = request(pair.sock("a"), "status")["result"]
    metrics = pair.metrics()
    # the witness: prometheus_client's parser, compared with skipctl number for number
    beta = next(p for p in peers if p["name"] == "b")
    assert beta["bytes_out"] > 3_000_000  # where {value:g} rounded to 6 digits
    sent_bytes = metrics[("skipd_peer_sent_bytes_total", (("peer", "b"),))]
    assert sent_bytes == beta["bytes_out"] and sent_bytes == int(sent_bytes)
    assert metrics[("skipd_peer_received_bytes_total", (("peer", "b"),))] == beta["bytes_in"]
    assert metrics[("skipd_peer_sent_packets_total", (("peer", "b"),))] == beta["packets_out"]
    # every reason code from the start, 0 where nothing happened
    drops = {dict(k[1])["reason"]: v for k, v in metrics.items()
             if k[0] == "skipd_dropped_packets_total"}
    assert set(drops) == set(REASONS)
    assert all(drops[r] == counters["drops"].get(r, 0) for r in REASONS)
    assert drops["bad_icv"] == 0
    # the engine's counters, as skipctl counters shows them
    engine = {dict(k[1])["event"]: v for k, v in metrics.items()
              if k[0] == "skipd_keying_events_total"}
    assert engine and engine == counters["engine"]
    assert engine.get("kij_computed", 0) >= 1
    traffic = {dict(k[1])["kind"]: v for k, v in metrics.items()
               if k[0] == "skipd_packets_total"}
    assert traffic["protected_out"] >= counters["traffic"]["protected_out"]
    assert metrics[("skipd_build_info", (("version", __version__),))] == 1
    started = metrics[("skipd_start_time_seconds", ())]
    assert abs(started - time.time() + status["uptime_seconds"]) < 5
    assert ("process_start_time_seconds", ()) in metrics  # prometheus_client's collector
    assert metrics[("process_open_fds", ())] > 3
    assert not any(k[0] == "skipd_uptime_seconds" for k in metrics)


def test_metrics_speak_openmetrics_when_asked(pair: Pair) -> None:
    content_type, body = pair.scrape("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    families = {f.name: f for f in openmetrics_families(body)}
    assert families["skipd_dropped_packets"].type == "counter"
    assert families["skipd_build"].type == "info"
    content_type, _ = pair.scrape()
    assert content_type.startswith("text/plain") and "version=0.0.4" in content_type


def test_certs_lists_ours_and_the_peers_with_expiry(pair: Pair) -> None:
    result = pair.skipctl("certs", "--json")
    assert result.returncode == 0, result.stderr
    certs = json.loads(result.stdout)["result"]
    own = load_certificate((pair.pki / "a.pem").read_bytes())
    peer = load_certificate((pair.pki / "b.pem").read_bytes())
    assert certs["own"]["subject"] == own.subject_text
    assert certs["own"]["not_after"] == iso_time(own.not_after)
    assert certs["own"]["certificate"] == own.fingerprint[:16]
    row = certs["peers"][0]
    assert row["peer"] == "b" and row["certificate"] == peer.fingerprint[:16]
    assert row["subject"] == peer.subject_text and row["issuer"] == peer.issuer_text
    assert row["not_after"] == iso_time(peer.not_after)
    assert abs(row["expires_in"] - (peer.not_after - time.time())) < 60
    assert row["source"] == str(pair.work / "peers-a" / "b.pem")
    assert row["skip_names"] == [str(n) for n in peer.skip_names()]
    table = pair.skipctl("certs").stdout.splitlines()
    assert table[0].split()[:3] == ["PEER", "CERTIFICATE", "SUBJECT"]
    assert table[1].startswith("(ours)") and ("29d" in table[1] or "30d" in table[1])
    assert table[2].startswith("b ") and peer.fingerprint[:16] in table[2]


def test_counters_reset_is_skipctls_view_only(pair: Pair) -> None:
    assert _ping(pair)
    before = json.loads(pair.skipctl("counters", "--reset", "--json").stdout)["result"]
    assert before["traffic"]["protected_out"] >= 2
    scraped = pair.metrics()[("skipd_packets_total", (("kind", "protected_out"),))]
    after = request(pair.sock("a"), "counters")["result"]
    assert after["traffic"].get("protected_out", 0) == 0 and "since" in after
    assert "since the reset at" in pair.skipctl("counters").stdout
    assert _ping(pair)
    after = request(pair.sock("a"), "counters")["result"]
    assert after["traffic"]["protected_out"] == 2
    # the metrics never go back (rate() would see a counter reset)
    assert pair.metrics()[("skipd_packets_total", (("kind", "protected_out"),))] \
        == scraped + 2


def test_monitor_follows_events_as_json_lines(pair: Pair) -> None:
    monitor = pair.ns["a"].popen(sys.executable, "-m", "skip.cli.skipctl", "monitor", "-s",
                                 str(pair.sock("a")), stdout=subprocess.PIPE, text=True)
    try:
        # flush only once skipd lists the subscriber: a flush before that is not seen
        assert eventually(lambda: _attached(pair), timeout=10)
        assert pair.skipctl("flush").returncode == 0
        assert pair.skipctl("reload").returncode == 0
        assert monitor.stdout is not None
        events = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            events.append(json.loads(monitor.stdout.readline()))
            if events[-1]["msg"] == "configuration reloaded":
                break
        messages = [e["msg"] for e in events]
        assert "key caches flushed" in messages and messages[-1] == "configuration reloaded"
        assert events[-1]["peers"] == 1 and events[-1]["level"] == "info"
        assert all(isinstance(e["ts"], float) for e in events)
    finally:
        monitor.send_signal(signal.SIGINT)
        assert monitor.wait(timeout=10) == 0
    # skipd forgot the subscriber once the client went
    assert eventually(lambda: not _attached(pair), timeout=5)


def _attached(pair: Pair) -> bool:
    return bool(request(pair.sock("a"), "status")["result"].get("monitors"))


def test_reload_of_a_broken_config_reaches_skipd(pair: Pair) -> None:
    config = pair.config["a"]
    good = config.read_text()
    try:
        config.write_text(good.replace("[default]", "[default]\nbogus_key = 1", 1))
        result = pair.ns["a"].run(sys.executable, "-m", "skip.cli.skipctl", "-c", str(config),
                                  "reload", check=False)
        assert result.returncode == 1, result.stderr
        assert "reload refused" in result.stderr and "bogus_key" in result.stderr
        # and skipd logged the attempt
        lines = [json.loads(x) for x in (pair.work / "a.log").read_text().splitlines()
                 if x.startswith("{")]
        assert any(x["msg"] == "reload refused, old configuration kept"
                   and "bogus_key" in x["error"] for x in lines)
        config.write_text(good + "\n[[peer\n")  # not even TOML: the socket is still found
        result = pair.ns["a"].run(sys.executable, "-m", "skip.cli.skipctl", "-c", str(config),
                                  "reload", "--json", check=False)
        assert result.returncode == 1
        reply = json.loads(result.stdout)
        assert reply["ok"] is False and reply["reason"] == "config_invalid"
    finally:
        config.write_text(good)
    assert pair.ns["a"].run(sys.executable, "-m", "skip.cli.skipctl", "-c", str(config),
                            "reload").returncode == 0
