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


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of a lookup: the action, the rule that gave it, and why that rule."""

    action: str
    rule: PeerPolicy
    matched: str  # "host", "network", "default", "key-management", "nomadic"


class PolicyTable:
    """Immutable lookup structure built once per configuration (rebuilt on reload)."""

    def __init__(self, config: Config) -> None:
        self.default = config.default
        self.kmp_port = config.daemon.key_management_port
        self.hosts: dict[bytes, PeerPolicy] = {}  # packed address -> rule
        # per family, prefix length -> {network address int -> rule}; lookups walk the distinct
        # prefix lengths longest first, so cost grows with those, not with the number of rules
        self._nets: dict[int, list[tuple[int, dict[int, PeerPolicy]]]] = {4: [], 6: []}
        self.by_name: dict[SkipName, PeerPolicy] = {}
        self.by_label: dict[str, PeerPolicy] = {}
        nets: dict[tuple[int, int], dict[int, PeerPolicy]] = {}
        for rule in config.peers:
            self.by_label[rule.name] = rule
            if rule.peer.nsid:
                self.by_name[rule.peer] = rule
            for host in rule.hosts:
                self.hosts[host.packed] = rule
            for net in rule.networks:
                nets.setdefault((net.version, net.prefixlen), {})[int(net.network_address)] = rule
        for (version, plen), table in sorted(nets.items(), key=lambda kv: -kv[0][1]):
            self._nets[version].append((plen, table))

    def for_address(self, address: IPAddress) -> Decision:
        """The rule for traffic whose remote (inner) address is ``address``."""
        return self.for_packed(address.packed)

    def for_packed(self, packed: bytes) -> Decision:
        """:meth:`for_address` on the 4 or 16 bytes a packet carries (the per-packet path)."""
        rule = self.hosts.get(packed)
        if rule is not None:
            return Decision(rule.action, rule, "host")
        bits = len(packed) * 8
        value = int.from_bytes(packed, "big")
        for plen, table in self._nets[4 if bits == 32 else 6]:
            rule = table.get(value >> (bits - plen) << (bits - plen))
            if rule is not None:
                return Decision(rule.action, rule, "network")
        return Decision(self.default.action, self.default, "default")

    def outbound(self, info: Summary) -> Decision:
        """Decision for a cleartext packet read from the TUN device (remote = destination)."""
        if self.is_key_management(info):
            return Decision("allow-cleartext", self.default, "key-management")
        return self.for_packed(info.dst)

    def inbound(self, info: Summary, peer: str) -> Decision:
        """Decision for a packet that arrived (remote = source); ``peer`` is the rule name of
        the sender the keying engine authenticated, which wins for nomadic peers (the engine
        found them by MKID, their address is whatever it is today)."""
        rule = self.by_label.get(peer)
        if rule is not None and rule.nomadic and not rule.hosts and not rule.networks:
            return Decision(rule.action, rule, "nomadic")
        return self.for_packed(info.src)

    def authorised(self, decision: Decision, peer: str) -> bool:
        """May the authenticated ``peer`` send from the inner source that chose ``decision``?

        A configured peer owns exactly its rule's hosts and networks, so a peer cannot inject
        packets claiming another peer's (or a gateway's) addresses. Addresses covered only by
        a protecting default rule are open to authenticated peers that no rule names.
        """
        if decision.matched == "default":
            return peer not in self.by_label
        return decision.rule.name == peer

    def is_key_management(self, info: Summary) -> bool:
        return info.protocol == PROTO_UDP and self.kmp_port in (info.sport, info.dport)

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
