"""skipd's multicast groups (docs/multicast.md): the owners and members skip.multicast
defines, wired to skipd's packets.

- Group data: a packet from the TUN device to a configured group address is protected under
  the group's traffic key and sent to the group address on the underlay; a SKIP packet that
  arrives for a group address is opened and handed to the TUN device (MC-13).
- GIK requests and responses travel as UDP port 1660 datagrams between the members' and the
  owner's own (TUN-side) addresses, so the ordinary unicast rules protect them: a request is
  accepted only as a packet the keying engine authenticated as coming from a member's rule
  (MC-2, MC-5, MC-M9), and a response only from the owner's rule (MC-4, MC-M2).
- Rekey messages are signed by the owner and multicast to the group address on UDP 1660 over
  the underlay (their keys are wrapped; the signature, not the channel, makes them the
  owner's).

Evictions and additions made with ``skipctl group`` are kept across reloads (the
configuration's member list is the start; the operator's changes apply on top).
"""

from __future__ import annotations

import ipaddress
import math
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from skip.daemon.config import Config, GroupPolicy
from skip.daemon.sockets import marked, raw_ipv6_sender
from skip.errors import KeyingError, SkipError
from skip.keying.events import TrafficKeys
from skip.keying.suite import LEGACY_DEFAULT, MODERN_DEFAULT
from skip.multicast.member import Evicted, GroupMember
from skip.multicast.owner import GroupOwner
from skip.multicast.traffic import GroupParams, GroupTraffic
from skip.wire.gik import GIK_PORT, is_multicast
from skip.wire.ip import build_ipv4, build_ipv6

_UDP = struct.Struct("!HHHH")
#: a permanent group's one epoch (bound into its modern Kgn; legacy Kgn has none)
PERMANENT_EPOCH = 1
_MREQN = struct.Struct("4s4si")  # struct ip_mreqn: group, local address, interface index
_MREQ6 = struct.Struct("=16sI")  # struct ipv6_mreq: group, interface index


@dataclass
class Group:
    policy: GroupPolicy
    traffic: GroupTraffic
    owner: GroupOwner | None = None
    member: GroupMember | None = None
    epoch: int = 0  # the epoch ``since`` refers to (for skipctl's key age)
    since: float = 0.0

    def touch(self, now: float) -> None:
        current = self.traffic.current
        number = current.number if current is not None else 0
        if number != self.epoch:
            self.epoch, self.since = number, now

    @property
    def address(self) -> bytes:
        return self.policy.address.packed


class Groups:
    """Every configured group, by its address. ``send_unicast(datagram)`` puts a GIK datagram
    into the protect path (as if read from the TUN device); ``send_multicast(payload, group)``
    multicasts a rekey on the underlay; ``drop(reason, message)`` counts and logs a refusal
    with skipd's other drops; ``count(kind)`` counts a GIK message handled."""

    def __init__(self, config: Config, now: float,
                 send_unicast: Callable[[bytes], None],
                 send_multicast: Callable[[bytes, bytes], None],
                 drop: Callable[[str, str], None], count: Callable[[str], None]) -> None:
        self.send_unicast = send_unicast
        self.send_multicast = send_multicast
        self.drop = drop
        self.count = count
        self.groups: dict[bytes, Group] = {}
        self.evicted: dict[bytes, set[str]] = {}  # skipctl group evict, kept over reloads
        self.added: dict[bytes, set[str]] = {}
        self.key_log: Callable[[TrafficKeys], None] | None = None
        self.configure(config, now)

    def log_traffic_keys_insecurely(self, callback: Callable[[TrafficKeys], None] | None
                                    ) -> None:
        """DANGEROUS: every group's Kps to skipd's key log (docs/decrypt.md)."""
        self.key_log = callback
        for group in self.groups.values():
            group.traffic.log_traffic_keys_insecurely(callback)

    # --- configuration --------------------------------------------------------------------

    def configure(self, config: Config, now: float) -> None:
        """Apply a (re)loaded configuration: groups keep their keys and members where the
        policy did not change; new groups start (a member asks its owner at once)."""
        self.config = config
        wanted = {g.address.packed: g for g in config.groups}
        for address in [a for a in self.groups if a not in wanted]:
            del self.groups[address]
        for address, policy in wanted.items():
            old = self.groups.get(address)
            if old is not None and old.policy == policy:
                continue
            self.groups[address] = group = self._start(policy, now)
            group.traffic.log_traffic_keys_insecurely(self.key_log)
            group.touch(now)

    def _start(self, policy: GroupPolicy, now: float) -> Group:
        suite = LEGACY_DEFAULT if policy.profile == "legacy" else MODERN_DEFAULT
        params = GroupParams(policy.address.packed, suite, policy.interval_seconds,
                             policy.interval_bytes)
        address = policy.address.packed
        if policy.owner is None:  # permanent (MC-15): the configured Kg, never expiring
            assert policy.kg is not None
            traffic = GroupTraffic(params, os.urandom)
            traffic.set_key(PERMANENT_EPOCH, policy.kg, math.inf, now)
            return Group(policy, traffic)
        if policy.owner == "self":
            members = (set(policy.members) | self.added.get(address, set())) - \
                self.evicted.get(address, set())
            owner = GroupOwner(params, members, now, os.urandom, lifetime=policy.lifetime,
                               backward_secrecy=policy.backward_secrecy)
            return Group(policy, owner.traffic, owner=owner)
        member = GroupMember(params, policy.owner, os.urandom)
        group = Group(policy, member.traffic, member=member)
        self._ask(group, now)
        return group

    def _ask(self, group: Group, now: float) -> None:
        assert group.member is not None
        self._unicast(group.member.request(now), self._owner_address(group.policy))

    def _owner_address(self, policy: GroupPolicy) -> bytes:
        rule = next(p for p in self.config.peers if p.name == policy.owner)
        hosts = rule.hosts or tuple(n.network_address for n in rule.networks)
        return hosts[0].packed

    def _own_address(self, family: int) -> bytes:
        for iface in self.config.daemon.addresses:
            if len(iface.ip.packed) == family:
                return iface.ip.packed
        raise KeyingError("no_identity", "multicast groups need a daemon.addresses entry "
                          "(the TUN-side address GIK messages are sent from)")

    def _unicast(self, payload: bytes, to: bytes, port: int = GIK_PORT) -> None:
        self.send_unicast(udp_datagram(self._own_address(len(to)), to, GIK_PORT, port,
                                       payload))

    # --- packets ----------------------------------------------------------------------------

    def traffic(self, destination: bytes) -> GroupTraffic | None:
        group = self.groups.get(destination)
        return group.traffic if group is not None else None

    def gik(self, payload: bytes, peer: str, src: bytes, sport: int, now: float) -> None:
        """A GIK datagram that arrived authenticated from the unicast peer ``peer``."""
        for group in self.groups.values():
            try:
                if group.owner is not None:
                    if peer not in group.owner.members:
                        continue
                    self._unicast(group.owner.handle_request(payload, peer, now), src, sport)
                    self.count("gik_answered")
                    group.touch(now)
                    return
                if group.member is not None and peer == group.policy.owner:
                    group.member.receive(payload, peer, now)
                    self.count("gik_joined")
                    group.touch(now)
                    return
            except SkipError as exc:
                if exc.reason in ("group_unknown",):
                    continue  # a request for another of our groups
                self.drop(exc.reason, f"GIK message from {peer} refused: {exc.detail}")
                return
        self.drop("not_a_member", f"GIK message from {peer}, a member or owner of none of "
                  "our groups")

    def unreadable(self, destination: bytes, now: float) -> None:
        """Traffic for ``destination`` that no key we hold opens: a member asks again."""
        group = self.groups.get(destination)
        if group is not None and group.member is not None:
            group.member.unreadable(now)

    def rekey(self, payload: bytes, now: float) -> None:
        """A rekey message off the underlay: each group we are a member of tries it (the
        owner's signature decides); a gap makes the member ask again over unicast."""
        for group in self.groups.values():
            if group.member is None:
                continue
            try:
                result = group.member.receive(payload, None, now)
            except SkipError as exc:  # a gap or a bad signature: the member asks again
                if exc.reason not in ("stale_epoch", "group_unknown"):
                    # stale: a resend of a rekey we applied; unknown: another group's
                    self.drop(exc.reason, f"rekey refused: {exc.detail}")
                continue
            group.touch(now)
            self.count("gik_evicted" if isinstance(result, Evicted) else "gik_rekeyed")

    # --- operator actions -------------------------------------------------------------------

    def _owned(self, address: str) -> Group:
        try:
            packed = ipaddress.ip_address(address).packed
        except ValueError:
            raise KeyingError("group_unknown", f"{address!r} is not an address") from None
        group = self.groups.get(packed)
        if group is not None and group.policy.owner is None:
            raise KeyingError("group_unknown", f"{address} is a permanent group: no members, "
                              "its key is configured (key_file)")
        if group is None or group.owner is None:
            raise KeyingError("group_unknown", f"this skipd owns no group {address}")
        return group

    def evict(self, address: str, member: str, now: float) -> dict[str, Any]:
        group = self._owned(address)
        assert group.owner is not None
        rekey = group.owner.evict(member, now)
        self.evicted.setdefault(group.address, set()).add(member)
        self.added.get(group.address, set()).discard(member)
        self.send_multicast(rekey.payload, group.address)
        group.touch(now)
        return {"group": address, "evicted": member, "epoch": rekey.epoch,
                "wrapped_keys": rekey.wraps}

    def add(self, address: str, member: str, now: float) -> dict[str, Any]:
        group = self._owned(address)
        assert group.owner is not None
        if member not in {p.name for p in self.config.peers if p.action == "protect"}:
            raise KeyingError("not_a_member", f"{member!r} is not a protecting [[peer]] rule")
        rekey = group.owner.add(member, now)
        self.added.setdefault(group.address, set()).add(member)
        self.evicted.get(group.address, set()).discard(member)
        if rekey is not None:
            self.send_multicast(rekey.payload, group.address)
        group.touch(now)
        return {"group": address, "added": member, "epoch": group.owner.epoch}

    # --- time -----------------------------------------------------------------------------

    def next_timer(self) -> float | None:
        times = [t for g in self.groups.values() for t in (
            g.owner.next_timer() if g.owner else None,
            g.member.next_timer() if g.member else None) if t is not None]
        return min(times, default=None)

    def on_timer(self, now: float) -> None:
        for group in self.groups.values():
            if group.owner is not None:
                payload = group.owner.on_timer(now)
                if payload is not None:
                    self.send_multicast(payload, group.address)
            if group.member is not None:
                payload = group.member.on_timer(now)
                if payload is not None:
                    self._unicast(payload, self._owner_address(group.policy))
            group.touch(now)

    def status(self, now: float) -> list[dict[str, Any]]:
        out = []
        for group in self.groups.values():
            current = group.traffic.current
            permanent = group.policy.owner is None
            row: dict[str, Any] = {
                "group": str(group.policy.address),
                "role": "owner" if group.owner else "permanent" if permanent else "member",
                "epoch": current.number if current else 0,
                "key_age": round(now - group.since) if current else None,
                "key_expires_in": None if current is None or permanent else
                round(current.expiry - now),
                "sender_keys": len(group.traffic.rx)}
            if group.owner is not None:
                row["members"] = sorted(group.owner.members)
            elif permanent:
                row["profile"] = group.policy.profile
            else:
                assert group.member is not None
                row["owner"] = group.policy.owner
                row["state"] = group.member.state
            out.append(row)
        return out


def udp_datagram(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    """An IPv4 or IPv6 UDP datagram with its checksum (mandatory for IPv6)."""
    length = 8 + len(payload)
    pseudo = src + dst + (struct.pack("!BBH", 0, 17, length) if len(src) == 4 else
                          struct.pack("!IxxxB", length, 17))
    data = pseudo + _UDP.pack(sport, dport, length, 0) + payload
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    checksum = (~total & 0xFFFF) or 0xFFFF
    udp = _UDP.pack(sport, dport, length, checksum) + payload
    if len(src) == 4:
        return build_ipv4(str(ipaddress.ip_address(src)), str(ipaddress.ip_address(dst)), 17,
                          udp)
    return build_ipv6(str(ipaddress.ip_address(src)), str(ipaddress.ip_address(dst)), 17, udp)


class GroupUnderlay:
    """The groups' side of the underlay: UDP port 1660 for rekey messages out to the group
    addresses and in, with the groups joined on every interface but the TUN device and
    loopback (that join is also what lets the raw protocol-57 sockets see the group's data
    packets), and the sending of IPv6 group data.

    Each send goes out of every such interface, named (IP_MULTICAST_IF, IPV6_MULTICAST_IF):
    for IPv6 the route a lookup without one finds is the group's /128 into the TUN device
    (skip/daemon/routing.py), and a lookup that names an interface passes it by."""

    def __init__(self, mark: int, tun: str, *, ipv6: bool) -> None:
        self.mark = mark
        self.v4 = self._udp(socket.AF_INET, mark)
        self.v6 = self._udp(socket.AF_INET6, mark) if ipv6 else None
        #: IPv6 group data: one raw socket per LAN interface, its IPV6_MULTICAST_IF set
        #: once (not per packet)
        self.data6: dict[int, socket.socket] = {}
        self.tun = tun
        self.joined: set[tuple[bytes, int]] = set()
        self._interfaces: list[int] = []
        self._listed = -1e9

    @staticmethod
    def _udp(family: int, mark: int) -> socket.socket:
        sock = marked(family, socket.SOCK_DGRAM, 0, mark)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
            sock.bind(("0.0.0.0", GIK_PORT))
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            sock.bind(("::", GIK_PORT))
        return sock

    def sockets(self) -> list[socket.socket]:
        """The sockets rekey messages arrive on, for the event loop."""
        return [s for s in (self.v4, self.v6) if s is not None]

    def interfaces(self) -> list[int]:
        """The LAN interfaces, asked of the kernel at most once a second (it costs about
        60 us, and IPv6 group data is sent through this list per packet)."""
        now = time.monotonic()
        if now - self._listed >= 1.0:
            self._interfaces = [i for i, name in socket.if_nameindex()
                                if name not in (self.tun, "lo")]
            self._listed = now
            for gone in [i for i in self.data6 if i not in self._interfaces]:
                self.data6.pop(gone).close()
        return self._interfaces

    def join(self, groups: list[bytes]) -> None:
        for group in groups:
            if not is_multicast(group):
                continue
            for index in self.interfaces():
                if (group, index) in self.joined:
                    continue
                try:
                    if len(group) == 4:
                        self.v4.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                                           _MREQN.pack(group, bytes(4), index))
                    elif self.v6 is not None:
                        self.v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                                           _MREQ6.pack(group, index))
                    else:
                        continue
                    self.joined.add((group, index))
                except OSError:
                    continue  # an interface without multicast (or already joined)

    def _each_interface(self, sock: socket.socket, group: bytes,
                        send: Callable[[socket.socket], object]) -> int:
        """How many interfaces took it."""
        sent = 0
        for index in self.interfaces():
            try:
                if len(group) == 4:
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                                    _MREQN.pack(bytes(4), bytes(4), index))
                else:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
                send(sock)
                sent += 1
            except OSError:
                continue  # an interface that is down or without multicast
        return sent

    def send(self, payload: bytes, group: bytes) -> None:
        """A rekey message to ``group`` port 1660."""
        sock = self.v4 if len(group) == 4 else self.v6
        if sock is None:
            return
        to = (str(ipaddress.ip_address(group)), GIK_PORT)
        self._each_interface(sock, group, lambda s: s.sendto(payload, to))

    def send_data(self, datagram: bytes) -> bool:
        """A protected IPv6 datagram to its group (IPv4 ones go by skipd's raw sender and
        the main table's multicast route); False when no interface took it."""
        if self.v6 is None:
            return False
        to = (socket.inet_ntop(socket.AF_INET6, datagram[24:40]), 0)
        sent = 0
        for index in self.interfaces():
            try:
                sock = self.data6.get(index) or self._data_socket(index)
                sock.sendto(datagram, to)
                sent += 1
            except (OSError, SkipError):
                continue  # an interface that is down or without multicast
        return sent > 0

    def _data_socket(self, index: int) -> socket.socket:
        sock = raw_ipv6_sender(self.mark)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        self.data6[index] = sock
        return sock

    @staticmethod
    def read(sock: socket.socket) -> bytes | None:
        try:
            return sock.recv(65535)
        except BlockingIOError:
            return None

    def close(self) -> None:
        for sock in (self.v4, self.v6, *self.data6.values()):
            if sock is not None:
                sock.close()
