"""Kernel plumbing through netlink (pyroute2): TUN addresses and MTU, the policy-routing table
that steers protected destinations into the TUN device, and its removal.

One rule per family, ``not fwmark M lookup T``, sends every unmarked packet through table T,
which holds only the protected prefixes (routes via the TUN device); anything T does not match
falls through to the main table as usual. skipd's own sockets carry mark M, so the SKIP packets
it emits toward a peer never re-enter the TUN device even when the peer's own address is a
protected (transport-mode) destination. All of it is set up once and torn down at exit; nothing
here runs per packet.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from skip.daemon.system_errors import from_os_error
from skip.errors import SkipError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

_FIB_RULE_INVERT = 0x2
_IFA_F_NODAD = 0x2
_FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}


def _sysctl(path: str, value: str) -> None:
    """Per-interface sysctls that netlink does not cover; absent files are not an error
    (IPv6 may be disabled), failures to write are."""
    target = Path("/proc/sys/net") / path
    if target.exists():
        try:
            target.write_text(value)
        except OSError as exc:
            raise from_os_error(f"cannot set {target}", exc) from None


class Routing:
    """Owns the kernel state skipd adds, so that :meth:`teardown` removes exactly that."""

    def __init__(self, interface: str, fwmark: int, table: int, priority: int) -> None:
        self.interface = interface
        self.fwmark = fwmark
        self.table = table
        self.priority = priority
        self.ipr = IPRoute()
        self.index = 0
        self.routes: dict[IPNetwork, str | None] = {}
        self.rules_added: list[int] = []

    def _fail(self, what: str, exc: NetlinkError) -> SkipError:
        return SkipError("io_error", f"netlink: {what}: {exc.args[-1] if exc.args else exc}")

    def configure_device(self, mtu: int, addresses: tuple[IPInterface, ...]) -> None:
        found = self.ipr.link_lookup(ifname=self.interface)
        if not found:
            raise SkipError("io_error", f"interface {self.interface} vanished")
        self.index = found[0]
        # the TUN device must accept packets whose reverse path is the underlay (gateway mode,
        # transport mode), and IPv6 duplicate address detection makes no sense on it
        _sysctl(f"ipv4/conf/{self.interface}/rp_filter", "0")
        _sysctl(f"ipv6/conf/{self.interface}/accept_dad", "0")
        # no link-local address: it would only make the kernel send router solicitations and
        # MLD reports into the tunnel; configured addresses work without it
        _sysctl(f"ipv6/conf/{self.interface}/addr_gen_mode", "1")
        try:
            # a longer queue toward skipd absorbs bursts (the default 500 packets is one
            # TCP window at 1.4 kB) while the single-threaded daemon is busy elsewhere
            self.ipr.link("set", index=self.index, mtu=mtu, txqlen=4096, state="up")
            for iface in addresses:
                self.ipr.addr("add", index=self.index, address=str(iface.ip),
                              prefixlen=iface.network.prefixlen,
                              family=_FAMILIES[iface.version], flags=_IFA_F_NODAD)
        except NetlinkError as exc:
            raise self._fail(f"configure {self.interface}", exc) from None

    def add_rules(self, ipv6: bool = True) -> None:
        """The policy rule per family; none for IPv6 when skipd runs IPv4-only."""
        for version, family in _FAMILIES.items():
            if version == 6 and not ipv6:
                continue
            try:
                self.ipr.rule("add", table=self.table, priority=self.priority,
                              fwmark=self.fwmark, fwmask=0xFFFFFFFF, flags=_FIB_RULE_INVERT,
                              family=family)
            except NetlinkError as exc:
                if version == 6 and exc.code in (97, 95):  # IPv6 disabled in this kernel
                    continue
                if exc.code != errno.EEXIST:  # EEXIST: left by a killed skipd; ours now
                    raise self._fail("add policy rule", exc) from None
            self.rules_added.append(family)

    def preferred_source(self, destination: ipaddress.IPv4Address | ipaddress.IPv6Address
                         ) -> str | None:
        """The address the underlay would use toward ``destination`` (for transport mode,
        where the TUN route must not make the kernel pick an overlay source address)."""
        try:
            answer = self.ipr.route("get", dst=str(destination), mark=self.fwmark,
                                    family=_FAMILIES[destination.version])
        except NetlinkError:
            return None
        for msg in answer:
            src = msg.get_attr("RTA_PREFSRC")
            if src:
                return src
        return None

    def set_routes(self, wanted: dict[IPNetwork, str | None]) -> None:
        """Make table T hold exactly ``wanted`` (prefix -> preferred source or None)."""
        for net in [n for n in self.routes if wanted.get(n, "-") != self.routes[n]]:
            self._route("del", net, self.routes.pop(net))
        for net, src in wanted.items():
            if net not in self.routes:
                self._route("add", net, src)
                self.routes[net] = src

    def _route(self, op: str, net: IPNetwork, src: str | None) -> None:
        """``add`` replaces a stale route (a killed skipd's) instead of failing on it."""
        extra = {"prefsrc": src} if src else {}
        try:
            self.ipr.route("replace" if op == "add" else op, dst=str(net), oif=self.index,
                           table=self.table, family=_FAMILIES[net.version], **extra)
        except NetlinkError as exc:
            if op == "add":
                raise self._fail(f"route {op} {net}", exc) from None

    def teardown(self) -> None:
        """Remove rules and routes; the TUN device itself goes when its descriptor closes."""
        for net, src in list(self.routes.items()):
            self._route("del", net, src)
        self.routes.clear()
        for family in self.rules_added:
            with contextlib.suppress(NetlinkError):
                self.ipr.rule("del", table=self.table, priority=self.priority,
                              fwmark=self.fwmark, fwmask=0xFFFFFFFF, flags=_FIB_RULE_INVERT,
                              family=family)
        self.rules_added.clear()
        self.ipr.close()
