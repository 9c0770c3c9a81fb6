"""Which rule governs a packet: host first, then network (longest prefix), then default.

This is the order SunScreen's SKIP ACLs used and the one administrators expect: a specific
host entry overrides the network it sits in, so a single machine can be exempted from (or
added to) a protected subnet without reordering rules. Inbound packets from nomadic peers are
matched by their SKIP name (NSID/MKID) instead, because their address changes. Key-management
traffic (UDP port 1640 by default, CDP) always bypasses protection: it is what fetches the
certificates protection needs, so protecting it would deadlock.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from skip.daemon.config import Config, IPAddress, PeerPolicy, SkipName
from skip.daemon.packet import Summary
from skip.wire.ip import PROTO_UDP

#: addresses whose decision is remembered; past it the oldest is forgotten (a scan of the
#: whole address space costs lookups, never memory)
CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of a lookup: the action, the rule that gave it, and why that rule."""

    action: str
    rule: PeerPolicy
    matched: str  # "host", "network", "default", "key-management", "nomadic"


class PolicyTable:
    """Immutable lookup structure built once per configuration (rebuilt on reload).

    Every Decision is made here, once per rule, and the decision for an address is remembered
    in a bounded cache: the per-packet path is then one dict lookup, with no allocation. A
    reload builds a new table, so nothing remembered outlives the configuration it came from.
    """

    def __init__(self, config: Config) -> None:
        self.default = config.default
        self.kmp_port = config.daemon.key_management_port
        self.hosts: dict[bytes, Decision] = {}  # packed address -> its rule's host decision
        # per family, prefix length -> {network address int -> decision}; lookups walk the
        # distinct prefix lengths longest first, so cost grows with those, not with the rules
        self._nets: dict[int, list[tuple[int, dict[int, Decision]]]] = {4: [], 6: []}
        self.by_name: dict[SkipName, PeerPolicy] = {}
        self.by_label: dict[str, PeerPolicy] = {}
        self._nomadic: dict[str, Decision] = {}  # rule name -> decision, nomadic-only rules
        self._default = Decision(self.default.action, self.default, "default")
        self._kmp = Decision("allow-cleartext", self.default, "key-management")
        self._cache: dict[bytes, Decision] = {}
        nets: dict[tuple[int, int], dict[int, Decision]] = {}
        for rule in config.peers:
            self.by_label[rule.name] = rule
            if rule.peer.nsid:
                self.by_name[rule.peer] = rule
            if rule.nomadic and not rule.hosts and not rule.networks:
                self._nomadic[rule.name] = Decision(rule.action, rule, "nomadic")
            host = Decision(rule.action, rule, "host")
            for address in rule.hosts:
                self.hosts[address.packed] = host
            network = Decision(rule.action, rule, "network")
            for net in rule.networks:
                key = (net.version, net.prefixlen)
                nets.setdefault(key, {})[int(net.network_address)] = network
        for (version, plen), table in sorted(nets.items(), key=lambda kv: -kv[0][1]):
            self._nets[version].append((plen, table))

    def for_address(self, address: IPAddress) -> Decision:
        """The rule for traffic whose remote (inner) address is ``address``."""
        return self.for_packed(address.packed)

    def for_packed(self, packed: bytes) -> Decision:
        """:meth:`for_address` on the 4 or 16 bytes a packet carries (the per-packet path)."""
        decision = self._cache.get(packed)
        if decision is None:
            decision = self._lookup(packed)
            cache = self._cache
            if len(cache) >= CACHE_SIZE:
                del cache[next(iter(cache))]  # oldest first: dicts keep insertion order
            cache[packed] = decision
        return decision

    def _lookup(self, packed: bytes) -> Decision:
        decision = self.hosts.get(packed)
        if decision is not None:
            return decision
        bits = len(packed) * 8
        value = int.from_bytes(packed, "big")
        for plen, table in self._nets[4 if bits == 32 else 6]:
            decision = table.get(value >> (bits - plen) << (bits - plen))
            if decision is not None:
                return decision
        return self._default

    def outbound(self, info: Summary) -> Decision:
        """Decision for a cleartext packet read from the TUN device (remote = destination).
        Key-management traffic first; a cache hit is answered here without a further call."""
        if info.protocol == PROTO_UDP and self.kmp_port in (info.sport, info.dport):
            return self._kmp
        return self._cache.get(info.dst) or self.for_packed(info.dst)

    def inbound(self, info: Summary, peer: str) -> Decision:
        """Decision for a packet that arrived (remote = source); ``peer`` is the rule name of
        the sender the keying engine authenticated, which wins for nomadic peers (the engine
        found them by MKID, their address is whatever it is today)."""
        return self._nomadic.get(peer) or self._cache.get(info.src) or self.for_packed(info.src)

    def authorised(self, decision: Decision, peer: str) -> bool:
        """May the authenticated ``peer`` send from the inner source that chose ``decision``?

        A configured peer owns exactly its rule's hosts and networks, so a peer cannot inject
        packets claiming another peer's (or a gateway's) addresses. Addresses covered only by
        a protecting default rule are open to authenticated peers that no rule names.
        """
        if decision.matched == "default":
            return peer not in self.by_label
        return decision.rule.name == peer

    def routed_prefixes(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """Destinations whose traffic must be steered into the TUN device (not overlay ones).

        Host and network entries of every rule that is not plain cleartext: protect needs
        skipd, and deny must reach skipd to be counted rather than leak to the underlay.
        """
        out: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for rule in self.by_label.values():
            if rule.action == "allow-cleartext":
                continue
            out.extend(ipaddress.ip_network(h) for h in rule.hosts)
            out.extend(rule.networks)
        return out
