"""skipd's steady state: what a packet to or from a peer with a current Kp skips.

The general path (:class:`skip.daemon.runtime.Daemon`'s ``outbound``, ``inbound`` and
``deliver``) summarises every datagram, asks policy, goes through the keying adapter and
drains the engine's events. Almost every packet of a flow gets the same answers as the one
before it, so once the general path has protected a datagram to an inner destination (or
delivered one from an inner source) it leaves a route here, and the next datagrams take a
few dict look-ups instead:

* out: the route for the inner destination holds the rule, its statistics and the engine's
  steady sender (:meth:`~skip.daemon.engine.KeyingEngine.steady_sender`): protect under the
  pair's current Kp, or None when there is none (expired, used up, retired: the general path
  then makes the next one);
* in: the route for the inner source says which authenticated peer, in which SKIP version,
  may send from it, and holds the rule's statistics.

A route stands for a policy decision, and a decision is a function of the destination (out)
or the source and the authenticated peer (in) alone, except for the cases that never take a
route: UDP to or from the key-management port (always cleartext), multicast groups (their
own keys), GIK messages (UDP to skipd itself, when groups are configured), IPv6 with
extension headers, IPv4 with options. Everything a route may hold goes stale only when the
configuration, the engine or the groups change: the daemon clears the routes then. Both
tables are bounded; past the bound the oldest route goes (the next packet rebuilds it).

With the compiled core, skipd's loops in C (``skip._native.pump_out`` / ``pump_in``,
docs/engine.md "skipd's compiled loops") read these same tables: a send route's ``lane``
(the engine's :meth:`~skip.daemon.engine.KeyingEngine.steady_lane`) and a receive route's
peer, version and statistics. The tables stay the one record of a decision; the loops
only follow it, and decline what has no route.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from skip.daemon.config import PeerPolicy
from skip.wire.ip import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP

#: routes kept per direction (as many as the policy cache holds decisions)
ROUTES = 4096
_PORTS = struct.Struct("!HH")
#: next headers after a bare IPv6 header that a route may carry (no extension header: the
#: general path walks those)
_IPV6_ROUTED = frozenset((PROTO_TCP, PROTO_UDP, PROTO_ICMPV6, 4, 41, 59))
#: inner protocols that can never be a GIK message (UDP), when groups are configured
_NOT_GIK = frozenset((PROTO_TCP, PROTO_ICMP, PROTO_ICMPV6))

Protect = Callable[[bytes, float], bytes | None]


@dataclass(slots=True)
class PeerStats:
    packets_in: int = 0
    packets_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    last_packet: float = 0.0


@dataclass(slots=True, eq=False)
class SendRoute:
    rule: PeerPolicy
    stats: PeerStats
    protect: Protect
    lane: object | None  # the engine's steady_lane: what the compiled send loop protects with


@dataclass(slots=True, eq=False)
class ReceiveRoute:
    peer: str  # the authenticated sender allowed this source
    version: int  # in the SKIP version its rule's profile wants
    stats: PeerStats


class Routes:
    """The two route tables and the tests that let a datagram use them."""

    __slots__ = ("gik", "kmp_port", "receives", "sends")

    def __init__(self, kmp_port: int, gik: bool) -> None:
        self.sends: dict[bytes, SendRoute] = {}
        self.receives: dict[bytes, ReceiveRoute] = {}
        self.kmp_port = kmp_port
        self.gik = gik  # groups configured: a UDP datagram may be a GIK message to us

    def clear(self, kmp_port: int, gik: bool) -> None:
        """Forget every route (a reload, an engine or groups change)."""
        self.sends.clear()
        self.receives.clear()
        self.kmp_port = kmp_port
        self.gik = gik

    def send_route(self, packet: bytes) -> SendRoute | None:
        """The route for a cleartext datagram from the TUN device, None: the general path."""
        first = packet[0] if packet else 0
        if first == 0x45:
            route = self.sends.get(packet[16:20])
            protocol, ports = packet[9], 20
        elif first >> 4 == 6:
            route = self.sends.get(packet[24:40])
            protocol, ports = packet[6], 40
            if protocol not in _IPV6_ROUTED:
                return None
        else:
            return None
        if route is not None and protocol == PROTO_UDP and (
                len(packet) < ports + 4 or self.kmp_port in _PORTS.unpack_from(packet, ports)):
            return None  # key management goes in cleartext: the general path says so
        return route

    def learn_send(self, destination: bytes, rule: PeerPolicy, stats: PeerStats,
                   protect: Protect | None, lane: object | None = None) -> None:
        if protect is None:
            return
        sends = self.sends
        if len(sends) >= ROUTES:
            del sends[next(iter(sends))]
        sends[destination] = SendRoute(rule, stats, protect, lane)

    def receive_route(self, packet: bytes, peer: str, version: int) -> ReceiveRoute | None:
        """The route for an authenticated inner datagram from ``peer``; None: policy asks."""
        first = packet[0] if packet else 0
        if first == 0x45 and len(packet) >= 20:
            route = self.receives.get(packet[12:16])
            protocol = packet[9]
        elif first >> 4 == 6 and len(packet) >= 40:
            route = self.receives.get(packet[8:24])
            protocol = packet[6]
        else:
            return None
        if route is None or route.peer != peer or route.version != version or (
                self.gik and protocol not in _NOT_GIK):
            return None
        return route

    def learn_receive(self, source: bytes, peer: str, version: int, stats: PeerStats) -> None:
        receives = self.receives
        if len(receives) >= ROUTES:
            del receives[next(iter(receives))]
        receives[source] = ReceiveRoute(peer, version, stats)
