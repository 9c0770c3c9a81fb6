"""The proof of issue 11, in network namespaces: what forward secrecy buys, measured by the
tool that decrypts captures.

Two skipd (tests/netns.py TwoHosts) carry a 1 MiB TCP transfer, captured by dumpcap on the
LAN. With ``pfs = "off"``, ``skip-decrypt`` given both hosts' long-term private keys opens
every SKIP packet, and the TCP stream tshark reassembles from its output is byte for byte
what was sent. With ``pfs = "required"`` and both daemons stopped (their ephemeral keys
erased), the same long-term keys open nothing: every packet is ``ephemeral_key``. The traffic
keys skipd exported (``[daemon] key_log``) open that same capture completely, so it is the
keys that fail, not the tool."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import OVERLAY_AB, Capture, Lab, TwoHosts, can_run, tcp_transfer

pytestmark = [pytest.mark.netns, pytest.mark.tshark,
              pytest.mark.skipif(can_run() is not None, reason=str(can_run())),
              pytest.mark.skipif(not (shutil.which("tshark") and shutil.which("dumpcap")),
                                 reason="needs tshark and dumpcap (Debian package tshark)")]

SIZE = 1024 * 1024


@pytest.fixture()
def hosts(tmp_path: Path) -> Iterator[TwoHosts]:
    with Lab() as lab:
        site = TwoHosts(lab, tmp_path)
        yield site
        site.stop_all()


def transfer(hosts: TwoHosts, name: str, pfs: str, **daemon: object) -> tuple[Path, str]:
    """Both skipd with ``pfs``, a captured 1 MiB transfer a -> b, both skipd stopped."""
    hosts.start("a", known=True, rule={"pfs": pfs}, **daemon)
    hosts.start("b", known=True, rule={"pfs": pfs})
    capture = Capture(hosts.ns["a"], hosts.lan["a"], hosts.work / f"{name}.pcapng")
    try:
        assert hosts.ping("a", OVERLAY_AB["b"]), (hosts.work / "a.log").read_text()
        sent, got, _ = tcp_transfer(hosts.ns["b"], hosts.ns["a"], OVERLAY_AB["b"], SIZE)
        assert sent == got
    finally:
        capture.stop()
        hosts.stop_all()
    return capture.path, sent


def decrypt(capture: Path, out: Path, *material: str) -> tuple[int, dict]:
    done = subprocess.run([sys.executable, "-m", "skip.cli.decrypt", "-r", str(capture),
                           "-w", str(out), "--force", "--json", "-q", *material],
                          capture_output=True, text=True)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def client_stream_sha256(pcap: Path) -> str:
    """tshark's own reassembly of the TCP stream; the client's bytes are the lines it does
    not indent (follow,tcp,raw)."""
    out = subprocess.run(["tshark", "-r", str(pcap), "-q", "-z", "follow,tcp,raw,0"],
                         capture_output=True, text=True, check=True).stdout
    data = bytearray()
    for line in out.splitlines():  # headers and "=====" rules are not hex
        if line and all(c in "0123456789abcdef" for c in line):
            data += bytes.fromhex(line)
    return hashlib.sha256(data).hexdigest()


def test_long_term_keys_open_base_skip_but_not_pfs_and_the_key_log_opens_both(hosts):
    pki = hosts.pki
    long_term = ["--key", str(pki / "a.key"), "--key", str(pki / "b.key"),
                 "--cert", str(pki / "a.pem"), "--cert", str(pki / "b.pem")]

    base, sent = transfer(hosts, "base", "off")
    code, report = decrypt(base, hosts.work / "base.clear.pcap", *long_term)
    assert code == 0 and report["skip_packets"] > SIZE // 1500, report
    assert report["decrypted"] == report["skip_packets"] and report["not_decrypted"] == 0
    assert client_stream_sha256(hosts.work / "base.clear.pcap") == sent

    key_log = hosts.work / "a.keys"
    pfs, sent = transfer(hosts, "pfs", "required", key_log=str(key_log))
    code, report = decrypt(pfs, hosts.work / "pfs.clear.pcap", *long_term)
    assert code == 3 and report["skip_packets"] > SIZE // 1500, report
    assert report["decrypted"] == 0
    assert report["reasons"] == {"ephemeral_key": report["skip_packets"]}

    assert stat.S_IMODE(os.stat(key_log).st_mode) == 0o600
    assert "DANGEROUS: key_log is on" in (hosts.work / "a.log").read_text()
    code, report = decrypt(pfs, hosts.work / "pfs.keys.pcap", "--keylog", str(key_log))
    assert code == 0 and report["decrypted"] == report["skip_packets"], report
    assert client_stream_sha256(hosts.work / "pfs.keys.pcap") == sent
