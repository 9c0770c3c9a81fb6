"""skip-decrypt end to end (issue 11): certificates and keys from a PKI on disk, SKIP packets
from two endpoints written as captures by scapy (pcap with Ethernet, Linux cooked and raw IP
frames) and converted to pcapng by Wireshark's editcap, decrypted by the command, and the
output read back by tshark and scapy: the inner datagrams are exactly those sent."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from skip.cli import decrypt
from skip.keying import KeyingPolicy, LocalIdentity, Peer, SkipEndpoint, Suite
from skip.keying.events import TrafficKeys
from skip.offline.capture import read_capture
from skip.offline.keylog import HEADER_COMMENT, format_keylog_line
from skip.pki.certificate import load_certificate
from skip.pki.dhkey import load_private_key
from skip.wire.ip import build_ipv4, build_ipv6
from tests.keying_harness import NOW
from tests.netns import make_pki

ADDRS = {"a": ("10.0.0.1", "2001:db8::1"), "b": ("10.0.0.2", "2001:db8::2")}
SUITES = {"x25519": None, "skip-1024": Suite(1, 2, 2, 1)}


def endpoints(pki: Path, group: str) -> tuple[SkipEndpoint, SkipEndpoint]:
    made = {}
    for me, other in (("a", "b"), ("b", "a")):
        key = load_private_key((pki / f"{me}.key").read_bytes())
        cert = load_certificate((pki / f"{other}.pem").read_bytes())
        assert cert.dh_key is not None
        ident = LocalIdentity.create(me, {group: key.private}, addresses=ADDRS[me])
        peer = Peer.create(other, group, cert.dh_key.public_value, addresses=ADDRS[other],
                           suite=SUITES[group])
        made[me] = SkipEndpoint([ident], [peer], policy=KeyingPolicy(allow_legacy=True),
                                started=NOW - 60)
    return made["a"], made["b"]


def datagram(v6: bool, payload: bytes, a_to_b: bool) -> bytes:
    src, dst = ("a", "b") if a_to_b else ("b", "a")
    body = bytes.fromhex("30393039") + (8 + len(payload)).to_bytes(2) + b"\0\0" + payload
    build = build_ipv6 if v6 else build_ipv4
    return build(ADDRS[src][v6], ADDRS[dst][v6], 17, body)


@pytest.fixture(scope="module", params=sorted(SUITES))
def world(request, tmp_path_factory):
    """A PKI, SKIP traffic both ways over IPv4 and IPv6, and the traffic-key log of a."""
    group = request.param
    work = tmp_path_factory.mktemp(group)
    make_pki(work, {n: (ADDRS[n], group) for n in ADDRS}, NOW)
    a, b = endpoints(work, group)
    logged: list[TrafficKeys] = []
    a.log_traffic_keys_insecurely(logged.append)
    sent, wire = [], []
    for i in range(6):
        a_to_b, v6 = i % 2 == 0, i % 3 == 0
        plain = datagram(v6, b"packet %d of %s" % (i, group.encode()), a_to_b)
        out = (a if a_to_b else b).protect(plain, NOW + i)
        got = (b if a_to_b else a).unprotect(out, NOW + i)
        assert got is not None and got.packet == plain
        sent.append(plain)
        wire.append(out)
    (work / "a.keylog").write_text(HEADER_COMMENT + "".join(map(format_keylog_line, logged)))
    return work, group, sent, wire


def write_captures(work: Path, wire: list[bytes]) -> dict[str, Path]:
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import CookedLinux, Ether
    from scapy.utils import wrpcap

    def ip(p: bytes):
        return IPv6(p) if p[0] >> 4 == 6 else IP(p)

    paths = {name: work / f"{name}.pcap" for name in ("ether", "sll", "raw")}
    wrpcap(str(paths["ether"]), [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02",
                                       type=0x86DD if p[0] >> 4 == 6 else 0x0800) / ip(p)
                                 for p in wire])
    wrpcap(str(paths["sll"]), [CookedLinux(proto=0x86DD if p[0] >> 4 == 6 else 0x0800) / ip(p)
                               for p in wire])
    wrpcap(str(paths["raw"]), [ip(p) for p in wire], linktype=101)
    if shutil.which("editcap"):
        paths["pcapng"] = work / "ether.pcapng"
        subprocess.run(["editcap", "-F", "pcapng", str(paths["ether"]), str(paths["pcapng"])],
                       check=True)
    return paths


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = decrypt.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_every_link_type_and_pcapng_decrypts_with_one_private_key(world, capsys):
    work, _group, sent, wire = world
    for name, path in write_captures(work, wire).items():
        frames = list(read_capture(path.open("rb")))
        assert [f.packet for f in frames] == wire, name  # the reader sees every datagram
        out = work / f"{name}.clear.pcap"
        code, text, err = run(capsys, "-r", str(path), "-w", str(out), "--force",
                              "--key", str(work / "b.key"), "--cert", str(work / "a.pem"),
                              "--cert", str(work / "b.pem"))
        assert code == 0, err
        assert text.strip().endswith("6 frames, 6 SKIP packets: 6 decrypted (0 duplicates), 0 not")
        assert [f.packet for f in read_capture(out.open("rb"))] == sent


def test_tshark_reads_the_output(world, capsys):
    if not shutil.which("tshark"):
        pytest.skip("tshark is not installed")
    work, group, sent, wire = world
    path = write_captures(work, wire)["raw"]
    out = work / "tshark.clear.pcap"
    code, _, err = run(capsys, "-r", str(path), "-w", str(out), "--force", "--key",
                       str(work / "a.key"), "--cert", str(work))
    assert code == 0, err
    fields = subprocess.run(["tshark", "-r", str(out), "-T", "fields", "-e", "ip.src",
                             "-e", "ipv6.src", "-e", "udp.dstport", "-e", "data.data"],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(fields) == len(sent)
    for line, plain in zip(fields, sent, strict=True):
        src4, src6, port, data = line.split("\t")
        assert port == "12345" and bytes.fromhex(data) == plain[-len(bytes.fromhex(data)):]
        assert (src4 or src6) in ("10.0.0.1", "10.0.0.2", "2001:db8::1", "2001:db8::2")
        assert b"of " + group.encode() in bytes.fromhex(data)


def test_keylog_alone_and_json_report(world, capsys):
    work, group, _sent, wire = world
    path = write_captures(work, wire)["raw"]
    code, text, _ = run(capsys, "-r", str(path), "--json", "--keylog", str(work / "a.keylog"))
    report = json.loads(text)
    # a logged both its own Kps and the ones it admitted from b: every packet opens
    assert code == 0 and report["decrypted"] == 6 and report["not_decrypted"] == 0
    assert {p["via"] for p in report["packets"]} == {"keylog"}
    assert {p["version"] for p in report["packets"]} == {1 if group == "skip-1024" else 2}


def test_without_the_right_key_every_packet_is_reported_with_its_reason(world, capsys):
    work, _group, _sent, wire = world
    path = write_captures(work, wire)["raw"]
    code, text, err = run(capsys, "-r", str(path), "--cert", str(work / "a.pem"),
                          "--cert", str(work / "b.pem"))
    assert code == decrypt.EXIT_SOME_CLOSED, err
    lines = text.splitlines()
    assert all("not decrypted: no_private_key" in line for line in lines[:-1])
    assert lines[-1].endswith("6 not (no_private_key 6)")


def test_bad_inputs_are_one_line_errors(tmp_path, world, capsys):
    work = world[0]
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"this is not a capture at all")
    key = ["--key", str(work / "a.key"), "--cert", str(work / "a.pem")]
    for argv, reason in [
        (["-r", str(junk), *key], "bad_capture"),
        (["-r", str(tmp_path / "missing.pcap"), *key], "io_error"),
        (["-r", str(junk)], "config_invalid"),  # no key material
        (["-r", str(junk), "--key", str(work / "a.key")], "config_invalid"),  # no certificate
        (["-r", str(junk), "--keylog", str(junk)], "bad_keylog"),
        (["-r", str(junk), "--key", str(junk), "--cert", str(work / "a.pem")], "cert_malformed"),
    ]:
        code, _, err = run(capsys, *argv)
        assert code == 1 and "Traceback" not in err, argv
        assert err.startswith(f"skip-decrypt: error: {reason}"), (argv, err)
        assert len(err.strip().splitlines()) == 1
    existing = tmp_path / "out.pcap"
    existing.write_bytes(b"keep me")
    code, _, err = run(capsys, "-r", str(junk), *key, "-w", str(existing))
    assert code == 1 and "--force" in err and existing.read_bytes() == b"keep me"


def test_console_script_runs():
    done = subprocess.run([sys.executable, "-m", "skip.cli.decrypt", "--version"],
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("skip-decrypt ")

