"""The few IP header fields skipd looks at before handing a packet to the keying engine.

Policy needs only version, addresses, protocol and (for the key-management bypass) UDP
ports; building full dataclasses per packet would be wasted work on the hot path, so this
reads them in place after skip.wire.ip's header checks (bounded parser: only ParseError
escapes). It also builds the ICMP "too big" errors skipd owes senders of packets
that do not fit, which must look exactly like the ones a router would send.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import NamedTuple

from skip.errors import ParseError
from skip.wire.checksum import internet_checksum
from skip.wire.ip import (
    IPV4_OFFSET_MASK,
    IPV6_HEADER,
    PROTO_FRAGMENT,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    build_ipv4,
    build_ipv6,
    check_ipv4,
    check_ipv6,
    ipv6_extension_headers,
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_PORTS = struct.Struct("!HH")
_PORTED = frozenset((PROTO_TCP, PROTO_UDP))  # upper layers whose ports policy may read
_ICMP_TOO_BIG_V4 = struct.Struct("!BBHHH")  # type 3 code 4, checksum, unused, next-hop MTU
_ICMP_TOO_BIG_V6 = struct.Struct("!BBHI")  # type 2 code 0, checksum, MTU
_PSEUDO_V6_TAIL = struct.Struct("!I3xB")  # upper-layer length, zeros, next header


class Summary(NamedTuple):
    """Policy-relevant facts about one IP packet. Addresses stay packed bytes: building
    ``ipaddress`` objects for every packet cost more than the policy lookup itself; and a
    named tuple, as a frozen dataclass cost three times as much to make (six
    ``object.__setattr__`` calls per packet)."""

    version: int
    src: bytes
    dst: bytes
    protocol: int
    sport: int | None
    dport: int | None

    @property
    def source(self) -> IPAddress:
        return ipaddress.ip_address(self.src)

    @property
    def destination(self) -> IPAddress:
        return ipaddress.ip_address(self.dst)


def summarize(packet: bytes | memoryview) -> Summary:
    """Version, addresses, upper protocol and UDP/TCP ports of an IPv4 or IPv6 packet.

    The header checks are skip.wire.ip's; what is skipd's own is that a fragment is not
    refused (the engine refuses it later, or policy lets it through in clear): a later
    fragment has no ports, the first one has them.
    """
    if len(packet) < 1:
        raise ParseError("truncated", "empty packet")
    offset: int | None
    if not isinstance(packet, bytes):  # slices of bytes are bytes: the addresses need no copy
        packet = bytes(packet)
    version = packet[0] >> 4
    if version == 4:
        hl = check_ipv4(packet, verify_checksum=False, whole=False)
        later_fragment = (packet[6] << 8 | packet[7]) & IPV4_OFFSET_MASK
        return _summary(4, packet, packet[12:16], packet[16:20], packet[9],
                        None if later_fragment else hl)
    if version == 6:
        check_ipv6(packet, whole=False)
        chain = ipv6_extension_headers(packet, keep_fragments=True)
        kind, nh_off, offset = chain[-1] if chain else (0, 6, IPV6_HEADER)
        if kind == PROTO_FRAGMENT and (packet[nh_off + 2] << 8 | packet[nh_off + 3]) & 0xFFF8:
            offset = None
        return _summary(6, packet, packet[8:24], packet[24:40], packet[nh_off], offset)
    raise ParseError("bad_version", f"IP version {version}")


def _summary(version: int, packet: bytes, src: bytes, dst: bytes, protocol: int,
             offset: int | None) -> Summary:
    """``offset``: where the upper-layer header starts; None for a later fragment (no ports)."""
    if offset is not None and protocol in _PORTED \
            and len(packet) >= offset + 4:
        return Summary(version, src, dst, protocol, *_PORTS.unpack_from(packet, offset))
    return Summary(version, src, dst, protocol, None, None)


def too_big(packet: bytes, mtu: int, reporter: IPAddress) -> bytes:
    """ICMP "fragmentation needed" (IPv4) or "packet too big" (IPv6) for ``packet``.

    ``reporter`` is the source of the error: skipd's own address on the TUN device, as a
    router on the path would use its own. The quoted original is cut so the error fits the
    minimum MTU (576 / 1280), as RFC 1812 and RFC 4443 require.
    """
    info = summarize(packet)
    if info.version == 4:
        body = bytearray(_ICMP_TOO_BIG_V4.pack(3, 4, 0, 0, mtu) + packet[:548])
        struct.pack_into("!H", body, 2, internet_checksum(body))
        # TOS 0xC0 (internetwork control), as routers mark their ICMP errors
        return build_ipv4(ipaddress.IPv4Address(reporter.packed),
                          ipaddress.IPv4Address(info.src), PROTO_ICMP, bytes(body), tos=0xC0)
    body = bytearray(_ICMP_TOO_BIG_V6.pack(2, 0, 0, mtu) + packet[:1232])
    pseudo = reporter.packed + info.src + _PSEUDO_V6_TAIL.pack(len(body), PROTO_ICMPV6)
    struct.pack_into("!H", body, 2, internet_checksum(pseudo + body))
    return build_ipv6(ipaddress.IPv6Address(reporter.packed), ipaddress.IPv6Address(info.src),
                      PROTO_ICMPV6, bytes(body))
