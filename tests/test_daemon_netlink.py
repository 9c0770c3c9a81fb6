"""skip/daemon/netlink.py against the kernel: every request skipd makes, its effect read back
with iproute2 (``ip -json``, a second implementation of the same messages), and the kernel's
refusals as NetlinkError with the kernel's errno (and words, where it gives them).

Each test runs a short script inside a fresh network namespace (netlink speaks to the
namespace of the process) on a persistent TUN device, printing JSON the test then checks.
"""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from tests.netns import Lab, can_run

pytestmark = pytest.mark.skipif(can_run() is not None, reason=str(can_run()))

SCRIPT = """
import ipaddress, json, socket
from skip.daemon.netlink import RTN_UNICAST, RTN_UNREACHABLE, NetlinkError, Rtnetlink
nl = Rtnetlink()
index = socket.if_nametoindex("sknl0")
out = {}
def refused(call):
    try:
        call()
    except NetlinkError as exc:
        return [exc.errno, exc.strerror]
    return None
"""


def run_in_namespace(body: str) -> dict:
    with Lab() as lab:
        ns = lab.host("n")
        ns.run("ip", "link", "set", "lo", "up")
        ns.run("ip", "tuntap", "add", "dev", "sknl0", "mode", "tun")  # outlives the script
        script = SCRIPT + textwrap.dedent(body) + "\nprint(json.dumps(out))\n"
        result = ns.run(sys.executable, "-c", script)
        out = json.loads(result.stdout.splitlines()[-1])
        out["ip"] = {what: json.loads(ns.run("ip", "-json", *args).stdout or "[]")
                     for what, args in (("link", ("link", "show", "sknl0")),
                                        ("addr", ("addr", "show", "sknl0")),
                                        ("rules", ("rule", "show")),
                                        ("routes57", ("route", "show", "table", "57")),
                                        ("local6", ("-6", "route", "show", "table", "local")))}
    return out


def test_link_address_rule_and_routes_are_what_iproute2_reads_back() -> None:
    out = run_in_namespace("""
        nl.set_link(index, mtu=1345, txqlen=4096, up=True)
        nl.add_address(index, socket.AF_INET, bytes([10, 57, 0, 1]), 24, 0x2)
        nl.add_address(index, socket.AF_INET6, ipaddress.ip_address("fd57::1").packed, 64, 0x2)
        nl.rule(True, socket.AF_INET, table=57, priority=100, fwmark=0x57, fwmask=0xFFFFFFFF,
                flags=0x2)
        nl.route("replace", socket.AF_INET, bytes([10, 9, 0, 0]), 16, table=57,
                 kind=RTN_UNREACHABLE, priority=4278198272)
        nl.route("replace", socket.AF_INET, bytes([10, 9, 0, 0]), 16, table=57,
                 kind=RTN_UNICAST, oif=index, prefsrc=bytes([10, 57, 0, 1]))
        nl.route("replace", socket.AF_INET, bytes([10, 8, 0, 0]), 16, table=57,
                 kind=RTN_UNICAST, oif=index)
        nl.route("del", socket.AF_INET, bytes([10, 8, 0, 0]), 16, table=57, kind=RTN_UNICAST,
                 oif=index)
        nl.route("replace", socket.AF_INET6, ipaddress.ip_address("ff05::57").packed, 128,
                 table=255, kind=RTN_UNICAST, oif=index)
        out["dump"] = sorted([r.kind, r.table, r.dst.hex(), r.dst_len, r.priority]
                             for r in nl.routes(socket.AF_INET) if r.table == 57)
        out["source"] = nl.preferred_source(socket.AF_INET, bytes([127, 0, 0, 1]), 0x57).hex()
    """)
    ip = out["ip"]
    (link,) = ip["link"]
    assert link["mtu"] == 1345 and link["txqlen"] == 4096 and "UP" in link["flags"]
    addresses = {(a["family"], a["local"], a["prefixlen"]) for a in ip["addr"][0]["addr_info"]}
    assert addresses == {("inet", "10.57.0.1", 24), ("inet6", "fd57::1", 64)}
    (rule,) = [r for r in ip["rules"] if r.get("priority") == 100]
    assert rule["table"] == "57" and rule["fwmark"] == "0x57" and "not" in rule  # inverted
    table = {(r.get("type", "unicast"), r["dst"], r.get("metric"), r.get("prefsrc"))
             for r in ip["routes57"]}
    assert table == {("unreachable", "10.9.0.0/16", 4278198272, None),
                     ("unicast", "10.9.0.0/16", None, "10.57.0.1")}
    assert any(r["dst"] == "ff05::57" and r.get("dev") == "sknl0" for r in ip["local6"])
    assert out["dump"] == [[1, 57, "0a090000", 16, None], [7, 57, "0a090000", 16, 4278198272]]
    assert out["source"] == "7f000001"


def test_refusals_carry_the_kernels_errno() -> None:
    out = run_in_namespace("""
        nl.set_link(index, up=True)
        nl.add_address(index, socket.AF_INET, bytes([10, 57, 0, 1]), 24)
        rule = dict(table=57, priority=100, fwmark=0x57, fwmask=0xFFFFFFFF, flags=0x2)
        nl.rule(True, socket.AF_INET, **rule)
        out["address twice"] = refused(
            lambda: nl.add_address(index, socket.AF_INET, bytes([10, 57, 0, 1]), 24))
        out["rule twice"] = refused(lambda: nl.rule(True, socket.AF_INET, **rule))
        nl.rule(False, socket.AF_INET, **rule)
        out["rule gone"] = refused(lambda: nl.rule(False, socket.AF_INET, **rule))
        out["no device"] = refused(lambda: nl.route(
            "replace", socket.AF_INET, bytes([10, 9, 0, 0]), 16, table=57, oif=4242))
        out["no route"] = refused(
            lambda: nl.preferred_source(socket.AF_INET, bytes([192, 0, 2, 9]), 0x57))
        out["mtu"] = refused(lambda: nl.set_link(index, mtu=10))
    """)
    assert out["address twice"][0] == 17 and out["rule twice"][0] == 17  # EEXIST
    assert out["rule gone"][0] == 2 and out["no device"][0] == 19  # ENOENT, ENODEV
    assert out["no route"][0] == 101 and out["mtu"][0] == 22  # ENETUNREACH, EINVAL
    assert out["address twice"][1].startswith("File exists")
