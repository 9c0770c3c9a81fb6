"""The few IP header fields skipd looks at before handing a packet to the keying engine.

Policy needs only version, addresses, protocol and (for the key-management bypass) UDP
ports; building full dataclasses per packet would be wasted work on the hot path, so this
reads them with ``struct.unpack_from`` and checks every length first (bounded parser: only
ParseError escapes). It also builds the ICMP "too big" errors skipd owes senders of packets
that do not fit, which must look exactly like the ones a router would send.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from skip.errors import ParseError

PROTO_ICMP = 1
PROTO_UDP = 17
PROTO_ICMPV6 = 58
PROTO_SKIP = 57
#: IPv6 extension headers walked to find the transport header (fragment handled apart).
_IPV6_EXTENSIONS = {0, 43, 60}
_IPV6_FRAGMENT = 44
_MAX_EXTENSIONS = 8

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Summary:
    """Policy-relevant facts about one IP packet. Addresses stay packed bytes: building
    ``ipaddress`` objects for every packet cost more than the policy lookup itself."""

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
    """Version, addresses, upper protocol and UDP/TCP ports of an IPv4 or IPv6 packet."""
    if len(packet) < 1:
        raise ParseError("truncated", "empty packet")
    version = packet[0] >> 4
    if version == 4:
        return _summarize_v4(packet)
    if version == 6:
        return _summarize_v6(packet)
    raise ParseError("bad_version", f"IP version {version}")


def _ports(packet: bytes | memoryview, offset: int, protocol: int) -> tuple[int | None, ...]:
    if protocol in (6, 17) and len(packet) >= offset + 4:
        return struct.unpack_from("!HH", packet, offset)
    return None, None


def _summarize_v4(packet: bytes | memoryview) -> Summary:
    if len(packet) < 20:
        raise ParseError("truncated", f"IPv4 header needs 20 bytes, got {len(packet)}")
    ihl = (packet[0] & 0x0F) * 4
    if ihl < 20 or len(packet) < ihl:
        raise ParseError("bad_length", f"IPv4 header length {ihl} with {len(packet)} bytes")
    frag = struct.unpack_from("!H", packet, 6)[0]
    protocol = packet[9]
    src, dst = bytes(packet[12:16]), bytes(packet[16:20])
    sport, dport = (None, None) if frag & 0x1FFF else _ports(packet, ihl, protocol)
    return Summary(4, src, dst, protocol, sport, dport)


def _summarize_v6(packet: bytes | memoryview) -> Summary:
    if len(packet) < 40:
        raise ParseError("truncated", f"IPv6 header needs 40 bytes, got {len(packet)}")
    src, dst = bytes(packet[8:24]), bytes(packet[24:40])
    nxt, offset = packet[6], 40
    for _ in range(_MAX_EXTENSIONS):
        if nxt == _IPV6_FRAGMENT:
            if len(packet) < offset + 8:
                raise ParseError("truncated", "IPv6 fragment header")
            first = struct.unpack_from("!H", packet, offset + 2)[0] & 0xFFF8 == 0
            nxt, offset = packet[offset], offset + 8
            if not first:
                return Summary(6, src, dst, nxt, None, None)
            continue
        if nxt not in _IPV6_EXTENSIONS:
            break
        if len(packet) < offset + 8:
            raise ParseError("truncated", f"IPv6 extension header {nxt}")
        nxt, offset = packet[offset], offset + (packet[offset + 1] + 1) * 8
    else:
        raise ParseError("bad_option", f"more than {_MAX_EXTENSIONS} IPv6 extension headers")
    sport, dport = _ports(packet, offset, nxt)
    return Summary(6, src, dst, nxt, sport, dport)


def internet_checksum(data: bytes) -> int:
    """RFC 1071 one's-complement sum (IPv4 header, ICMP, ICMPv6 with pseudo-header)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def too_big(packet: bytes, mtu: int, reporter: IPAddress) -> bytes:
    """ICMP "fragmentation needed" (IPv4) or "packet too big" (IPv6) for ``packet``.

    ``reporter`` is the source of the error: skipd's own address on the TUN device, as a
    router on the path would use its own. The quoted original is cut so the error fits the
    minimum MTU (576 / 1280), as RFC 1812 and RFC 4443 require.
    """
    info = summarize(packet)
    if info.version == 4:
        quote = packet[:548]
        body = struct.pack("!BBHHH", 3, 4, 0, 0, mtu) + quote
        body = body[:2] + struct.pack("!H", internet_checksum(body)) + body[4:]
        header = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0xC0, 20 + len(body), 0, 0, 64,
                                       PROTO_ICMP, 0, reporter.packed, info.src))
        header[10:12] = struct.pack("!H", internet_checksum(bytes(header)))
        return bytes(header) + body
    quote = packet[:1232]
    body = struct.pack("!BBHI", 2, 0, 0, mtu) + quote
    pseudo = reporter.packed + info.src + struct.pack("!I3xB", len(body), PROTO_ICMPV6)
    body = body[:2] + struct.pack("!H", internet_checksum(pseudo + body)) + body[4:]
    header = struct.pack("!IHBB16s16s", 6 << 28, len(body), PROTO_ICMPV6, 64, reporter.packed,
                         info.src)
    return header + body
