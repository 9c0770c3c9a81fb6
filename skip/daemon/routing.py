"""Kernel plumbing through netlink (skip/daemon/netlink.py): TUN addresses and MTU, the
policy-routing table that steers protected destinations into the TUN device, and its removal.

One rule per family, ``not fwmark M lookup T``, sends every unmarked packet through table T,
which holds only the protected prefixes (routes via the TUN device); anything T does not match
falls through to the main table as usual. skipd's own sockets carry mark M, so the SKIP packets
it emits toward a peer never re-enter the TUN device even when the peer's own address is a
protected (transport-mode) destination. Nothing here runs per packet.

Fail closed: under every TUN route table T also holds an ``unreachable`` route for the same
prefix with a far higher metric. While skipd runs the TUN route wins; when skipd stops, is
killed or crashes, the kernel removes the TUN device and its routes, and the unreachable route
is what the lookup finds, so a protected destination never falls through to the main table
(where a default route would carry it in clear). A lookup that ends on an unreachable route
stops there: the rule does not fall through to the next one (the same pattern Linux's VRF
documentation uses for a VRF's table). skipd's own packets carry mark M and never consult
table T, so the block never catches the SKIP traffic itself. Rules and blocks stay after a
stop; only :meth:`Routing.cleanup` (``skipd --cleanup``) removes them, on purpose.

IPv6 multicast groups are the exception: Linux keeps a ``multicast ff00::/8`` route per
interface in the *local* table, which rule 0 consults before any rule of ours, so a route in
T would never be seen and what the host sends to the group would leave by the LAN in clear.
A group's TUN route and block therefore go into the local table as a /128, more specific
than ff00::/8. A lookup that names an interface (skipd's own sends to the group, with
IPV6_MULTICAST_IF, and every packet arriving from the LAN) matches only routes through that
interface, so it passes both by and finds ff00::/8 as before (docs/multicast.md).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from pathlib import Path

from skip.daemon.netlink import RTN_UNICAST, RTN_UNREACHABLE, NetlinkError, Rtnetlink
from skip.daemon.system_errors import from_os_error
from skip.errors import SkipError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

_FIB_RULE_INVERT = 0x2
_IFA_F_NODAD = 0x2
_FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}
_LOCAL_TABLE = 255
#: metric of the blocking routes: far above the TUN routes (IPv4 0, IPv6 1024), so those win
#: while they exist; the value Linux's VRF documentation gives its unreachable default route
BLOCK_METRIC = 4278198272


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
        self.ipr = Rtnetlink()
        self.index = 0
        self.routes: dict[IPNetwork, str | None] = {}
        self.rules_added: list[int] = []
        self.rules_found: list[int] = []  # families whose rule a stopped skipd left in place
        self.blocks: set[IPNetwork] = set()  # prefixes whose block is ours to keep
        self.blocks_found: set[IPNetwork] = set()  # blocks a stopped skipd left in place

    def _table(self, net: IPNetwork) -> int:
        """Table T, or the local table for an IPv6 multicast group (see the module's doc)."""
        return _LOCAL_TABLE if net.version == 6 and net.is_multicast else self.table

    def _fail(self, what: str, exc: NetlinkError) -> SkipError:
        return SkipError("io_error", f"netlink: {what}: {exc.strerror or exc}")

    def configure_device(self, mtu: int, addresses: tuple[IPInterface, ...]) -> None:
        try:
            self.index = socket.if_nametoindex(self.interface)
        except OSError:
            raise SkipError("io_error", f"interface {self.interface} vanished") from None
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
            self.ipr.set_link(self.index, mtu=mtu, txqlen=4096, up=True)
            for iface in addresses:
                self.ipr.add_address(self.index, _FAMILIES[iface.version], iface.ip.packed,
                                     iface.network.prefixlen, _IFA_F_NODAD)
        except NetlinkError as exc:
            raise self._fail(f"configure {self.interface}", exc) from None

    def add_rules(self, ipv6: bool = True) -> None:
        """The policy rule per family; none for IPv6 when skipd runs IPv4-only."""
        for version, family in _FAMILIES.items():
            if version == 6 and not ipv6:
                continue
            try:
                self._rule(True, family)
            except NetlinkError as exc:
                if version == 6 and exc.errno in (97, 95):  # IPv6 disabled in this kernel
                    continue
                if exc.errno != errno.EEXIST:  # EEXIST: left by a stopped skipd; ours now
                    raise self._fail("add policy rule", exc) from None
                self.rules_found.append(family)
            self.rules_added.append(family)

    def preferred_source(self, destination: ipaddress.IPv4Address | ipaddress.IPv6Address
                         ) -> str | None:
        """The address the underlay would use toward ``destination`` (for transport mode,
        where the TUN route must not make the kernel pick an overlay source address)."""
        try:
            src = self.ipr.preferred_source(_FAMILIES[destination.version],
                                            destination.packed, self.fwmark)
        except NetlinkError:
            return None
        return str(ipaddress.ip_address(src)) if src else None

    def survey(self) -> None:
        """Note the blocks a stopped skipd left (before this one adds any): they are what
        :meth:`drop_leftovers` later removes if the configuration no longer protects them,
        and what a failed start leaves as it found them."""
        self.blocks_found = set(self._blocks_in_table())

    def set_routes(self, wanted: dict[IPNetwork, str | None]) -> None:
        """Make table T hold exactly ``wanted`` (prefix -> preferred source or None), each
        prefix with its block under it. The block goes in before the TUN route and out only
        with the prefix, so no moment exists in which a protected prefix is routable in
        clear; a prefix whose source merely changed keeps its block."""
        for net in [n for n in self.routes if wanted.get(n, "-") != self.routes[n]]:
            self._route("del", net, self.routes.pop(net))
            if net not in wanted:
                self._block("del", net)
        for net, src in wanted.items():
            if net not in self.blocks:
                self._block("add", net)
            if net not in self.routes:
                self._route("add", net, src)
                self.routes[net] = src

    def drop_leftovers(self) -> int:
        """Remove the blocks a stopped skipd left for prefixes this configuration does not
        route (after a successful start: until then they keep protecting)."""
        stale = [net for net in self._blocks_in_table() if net not in self.blocks]
        for net in stale:
            self._block("del", net)
        return len(stale)

    def _blocks_in_table(self) -> list[IPNetwork]:
        """The unreachable routes of table T with skipd's metric, and of the local table for
        IPv6 groups: skipd's blocks, and only those (an operator's own routes are left
        alone)."""
        found = []
        for version, family in _FAMILIES.items():
            for table in (self.table, _LOCAL_TABLE) if version == 6 else (self.table,):
                try:
                    dump = self.ipr.routes(family)
                except NetlinkError:
                    break  # no IPv6 in this kernel
                for route in dump:
                    if route.kind != RTN_UNREACHABLE or route.table != table \
                            or route.priority != BLOCK_METRIC:
                        continue
                    dst = route.dst or bytes(4 if version == 4 else 16)
                    net = ipaddress.ip_network((dst, route.dst_len))
                    if self._table(net) == table:
                        found.append(net)
        return found

    def _block(self, op: str, net: IPNetwork) -> None:
        try:
            self.ipr.route("replace" if op == "add" else op, _FAMILIES[net.version],
                           net.network_address.packed, net.prefixlen, table=self._table(net),
                           kind=RTN_UNREACHABLE, priority=BLOCK_METRIC)
        except NetlinkError as exc:
            if op == "add":
                raise self._fail(f"route add unreachable {net}", exc) from None
        if op == "add":
            self.blocks.add(net)
        else:
            self.blocks.discard(net)

    def set_mtu(self, mtu: int) -> None:
        """The TUN MTU, when the underlay's path MTU changed under a running skipd."""
        try:
            self.ipr.set_link(self.index, mtu=mtu)
        except NetlinkError as exc:
            raise self._fail(f"set the MTU of {self.interface} to {mtu}", exc) from None

    def _route(self, op: str, net: IPNetwork, src: str | None) -> None:
        """``add`` replaces a stale route (a killed skipd's) instead of failing on it."""
        try:
            self.ipr.route("replace" if op == "add" else op, _FAMILIES[net.version],
                           net.network_address.packed, net.prefixlen, table=self._table(net),
                           kind=RTN_UNICAST, oif=self.index,
                           prefsrc=ipaddress.ip_address(src).packed if src else None)
        except NetlinkError as exc:
            if op == "add":
                raise self._fail(f"route {op} {net}", exc) from None

    def teardown(self, keep_block: bool = True) -> None:
        """At a stop: the TUN routes go with the device when its descriptor closes, and the
        rules and blocks stay (fail closed). ``keep_block`` False is for a start that failed
        half-way: it takes back what this start added and leaves what it found, so the kernel
        is as it was before (blocked if a stopped skipd had left its block, else open)."""
        if not keep_block:
            for net, src in list(self.routes.items()):
                self._route("del", net, src)
            for net in list(self.blocks - self.blocks_found):
                self._block("del", net)
            for family in self.rules_added:
                if family not in self.rules_found:
                    self._del_rule(family)
        self.routes.clear()
        self.rules_added.clear()
        self.ipr.close()

    def _del_rule(self, family: int) -> bool:
        try:
            self._rule(False, family)
        except NetlinkError:
            return False
        return True

    def _rule(self, add: bool, family: int) -> None:
        self.ipr.rule(add, family, table=self.table, priority=self.priority,
                      fwmark=self.fwmark, fwmask=0xFFFFFFFF, flags=_FIB_RULE_INVERT)

    def cleanup(self) -> tuple[int, int]:
        """``skipd --cleanup``: remove skipd's rules and blocks on purpose, so that the
        protected destinations follow the main table again (in clear). Returns how many rules
        and routes went; nothing there is not an error."""
        blocks = self._blocks_in_table()
        for net in blocks:
            self._block("del", net)
        rules = 0
        for family in _FAMILIES.values():
            for _ in range(16):  # one per family is the rule; more would be a kernel's dupes
                if not self._del_rule(family):
                    break
                rules += 1
        self.ipr.close()
        return rules, len(blocks)
