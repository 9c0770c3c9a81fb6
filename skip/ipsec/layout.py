"""Where AH/ESP sit in a datagram: transport-mode splicing and tunnel-mode outer headers.

Both modes reduce to the same shape, ``head || [shim] || AH/ESP || body``:

* transport: ``head`` is the datagram's own header chain up to the insertion point (its
  Protocol / Next Header byte rewritten, lengths and IPv4 checksum fixed), ``body`` the rest;
* tunnel: ``head`` is a fresh outer header built from a per-SA :class:`OuterHeader`
  (precomputed addresses and checksum base), ``body`` the whole inner datagram.

Receiving reverses it: :func:`rebuild_transport` splices the header chain back onto the
payload, :func:`decapsulate` checks the inner datagram of a tunnel.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address, ip_address

from skip.errors import AlgorithmError, ParseError
from skip.wire.ip import (
    IPV4_FLAG_DF,
    PROTO_IPV4,
    PROTO_IPV6,
    BytesLike,
    PlainIPv4,
    check_ipv4,
    check_ipv6,
    finish_ipv4_header,
    respliced_ipv4,
    respliced_ipv6,
    set_payload_length,
)

_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_ECN_CE = 3
_IPV6_NEXT_HEADER = 6  # offset of the fixed IPv6 header's Next Header byte

#: Inner Next Header values accepted in tunnel mode.  0 means IPv4 in pre-IPsec SKIP code
#: (skip-core Q8: "accept 0 as IPv4 on input"); senders always use 4 or 41.
TUNNEL_NEXT_HEADERS = {PROTO_IPV4: 4, 0: 4, PROTO_IPV6: 6}

DF_POLICIES = ("copy", "set", "clear")


def traffic_class(packet: BytesLike) -> int:
    """DSCP + ECN of an IPv4 or IPv6 datagram (inner or outer)."""
    if packet[0] >> 4 == 4:
        return packet[1]
    return ((packet[0] & 0x0F) << 4) | (packet[1] >> 4)


def check_inner(packet: BytesLike) -> int:
    """Validate a datagram about to enter a tunnel; returns its Next Header value (4 or 41).

    Inner fragments are fine (the tunnel carries them opaquely); the lengths must add up.
    """
    if len(packet) >= 20 and packet[0] == 0x45 and packet[2] << 8 | packet[3] == len(packet):
        return PROTO_IPV4  # the common option-free IPv4 header, checked in one line
    if not packet:
        raise ParseError("truncated", "empty inner datagram")
    version = packet[0] >> 4
    if version == 4:
        check_ipv4(packet, verify_checksum=False)
        return PROTO_IPV4
    if version == 6:
        check_ipv6(packet)
        return PROTO_IPV6
    raise ParseError("bad_version", f"inner IP version {version}")


class OuterHeader:
    """The tunnel's outer IPv4 or IPv6 header, precomputed once per SA (RFC 4301 5.1.2).

    Fresh TTL / hop limit; DSCP and ECN copied from the inner header (RFC 6040 "normal mode"
    is a plain copy on encapsulation); IPv4 DF copied, set or cleared per ``df`` (an inner
    IPv6 datagram counts as DF clear, as RFC 4213 section 3.2 lets the outer IPv4 fragment);
    a fresh IPv4 Identification from :attr:`next_id`; IPv6 flow label 0 (RFC 6437 allows it).
    The IPv4 checksum is the template's precomputed one's-complement sum plus the few
    per-packet words, not a pass over the header.
    """

    __slots__ = ("_base", "_df", "_dst", "_src", "_ttl", "next_id", "size", "version")

    def __init__(self, src: str | IPv4Address | IPv6Address, dst: str | IPv4Address | IPv6Address,
                 ttl: int, df: str, first_id: int) -> None:
        # ip_address() of an address object goes through its text form: 3 us a tunnel
        s = src if isinstance(src, IPv4Address | IPv6Address) else ip_address(src)
        d = dst if isinstance(dst, IPv4Address | IPv6Address) else ip_address(dst)
        if s.version != d.version:
            raise AlgorithmError("bad_sa", f"tunnel endpoints {s} and {d} differ in IP version")
        if df not in DF_POLICIES:
            raise AlgorithmError("bad_sa", f"df must be one of {DF_POLICIES}, got {df!r}")
        if not 1 <= ttl <= 255:
            raise AlgorithmError("bad_sa", f"tunnel TTL / hop limit {ttl} is not 1..255")
        self.version = s.version
        self.size = 20 if s.version == 4 else 40
        self._src, self._dst, self._ttl = s.packed, d.packed, ttl
        #: None: copy DF from an inner IPv4 header; else the fixed flags word.
        self._df = None if df == "copy" else (IPV4_FLAG_DF if df == "set" else 0)
        words = struct.unpack("!4H", self._src + self._dst) if s.version == 4 else ()
        self._base = 0x4500 + (ttl << 8) + sum(words)
        self.next_id = first_id & 0xFFFF

    def template(self) -> tuple[bytes, bytes, int, int]:
        """``(src, dst, ttl, df)`` for the compiled core (df -1: copy from the inner header);
        the Identification stays here, in :attr:`next_id`."""
        return self._src, self._dst, self._ttl, -1 if self._df is None else self._df

    @property
    def src(self) -> IPv4Address | IPv6Address:
        return ip_address(self._src)

    @property
    def dst(self) -> IPv4Address | IPv6Address:
        return ip_address(self._dst)

    def build(self, inner: BytesLike, total: int, protocol: int) -> bytes:
        """The outer header of a datagram of ``total`` bytes whose next header is
        ``protocol``, for the inner datagram ``inner`` (empty for a dummy packet)."""
        tc = flags = 0
        if inner:
            b0 = inner[0]
            if b0 >> 4 == 4:
                tc = inner[1]
                flags = inner[6] << 8 & IPV4_FLAG_DF
            else:
                tc = (b0 & 0x0F) << 4 | inner[1] >> 4
        if self.version == 6:
            if total - 40 > 0xFFFF:
                raise ParseError("bad_length", f"outer IPv6 payload of {total - 40} bytes")
            return _IPV6.pack(0x60000000 | tc << 20, total - 40, protocol, self._ttl, self._src,
                              self._dst)
        if total > 0xFFFF:
            raise ParseError("bad_length", f"outer IPv4 datagram of {total} bytes")
        if self._df is not None:
            flags = self._df
        ident = self.next_id
        self.next_id = (ident + 1) & 0xFFFF
        # The negated word sum modulo 0xFFFF is the checksum (finish_ipv4_header's convention).
        checksum = -(self._base + tc + total + ident + flags + protocol) % 0xFFFF
        return _IPV4.pack(0x45, tc, total, ident, flags, self._ttl, protocol, checksum,
                          self._src, self._dst)


def spliced_head(packet: BytesLike, nh_off: int, offset: int, protocol: int,
                 total: int) -> bytes:
    """:func:`transport_head` with the checksum filled in, as bytes: the general transport
    splice (the engines rewrite an option-free IPv4 header with
    :func:`~skip.wire.ip.respliced_ipv4` first).  A lone fixed IPv6 header (its Next Header
    at byte 6 is the one to change) takes the one-pack :func:`~skip.wire.ip.respliced_ipv6`."""
    if nh_off == _IPV6_NEXT_HEADER:
        return respliced_ipv6(packet, total, protocol)
    return bytes(finish_head(transport_head(packet, nh_off, offset, protocol, total)))


def transport_head(packet: BytesLike, nh_off: int, offset: int, protocol: int,
                   total: int) -> bytearray:
    """``packet[:offset]`` with the Next Header at ``nh_off`` set to ``protocol`` and the
    length set to ``total``; an IPv4 checksum is left for :func:`finish_head`."""
    head = bytearray(packet[:offset])
    head[nh_off] = protocol
    set_payload_length(head, total)
    return head


def finish_head(head: bytearray) -> bytearray:
    """Fill in the IPv4 header checksum (IPv6 has none)."""
    if head[0] >> 4 == 4:
        finish_ipv4_header(head)
    return head


def rebuild_transport(packet: BytesLike, fields: PlainIPv4 | None, nh_off: int, offset: int,
                      next_header: int, payload: BytesLike) -> bytes:
    """The datagram after transport-mode AH/ESP removal: ``packet[:offset]`` (next header
    restored, length and checksum fixed) followed by ``payload``.

    ``packet`` is a received datagram whose IPv4 checksum was verified; ``fields`` are its
    option-free IPv4 header's (:func:`~skip.wire.ip.plain_ipv4`), rewritten in one pack
    without summing the header again, or None for any other header chain.
    """
    total = offset + len(payload)
    if fields is not None:
        return respliced_ipv4(fields, 0, total, next_header) + payload
    return spliced_head(packet, nh_off, offset, next_header, total) + payload


def decapsulate(outer: BytesLike, next_header: int, inner: BytesLike) -> bytes:
    """The inner datagram of a tunnel, checked against the Next Header that announced it.

    ``outer`` is the received datagram (for its ECN bits).  Trailing bytes past the inner
    datagram's own length (ESP TFC padding, RFC 4303 2.7) are dropped.  ECN (RFC 6040): an
    outer CE mark is copied into an ECN-capable inner header; a Not-ECT inner one is left
    alone (simplified: RFC 6040 would drop it).
    """
    want = TUNNEL_NEXT_HEADERS.get(next_header)
    if want is None:
        raise ParseError("unsupported_protocol",
                         f"tunnel-mode payload with Next Header {next_header}, not 4/41")
    size = len(inner)
    if want == 4:
        whole = size >= 20 and inner[0] == 0x45 and inner[2] << 8 | inner[3] == size
    else:
        whole = size >= 40 and inner[0] >> 4 == 6 and (inner[4] << 8 | inner[5]) + 40 == size
    if not whole:  # IPv4 options, TFC padding, or something to refuse: the general check
        inner = _trimmed_inner(want, next_header, inner)
    outer_ecn = (outer[1] if outer[0] >> 4 == 4 else outer[1] >> 4) & _ECN_CE
    if outer_ecn == _ECN_CE and traffic_class(inner) & _ECN_CE not in (0, _ECN_CE):
        return _mark_ce(inner)
    return bytes(inner)


def _trimmed_inner(want: int, next_header: int, inner: BytesLike) -> BytesLike:
    if not inner:
        raise ParseError("truncated", "empty inner datagram")
    if inner[0] >> 4 != want:
        raise ParseError("bad_version",
                         f"Next Header {next_header} announced IPv{want}, got IPv{inner[0] >> 4}")
    if len(inner) < (4 if want == 4 else 6):
        raise ParseError("truncated", "inner IP header cut short")
    length = inner[2] << 8 | inner[3] if want == 4 else (inner[4] << 8 | inner[5]) + 40
    if length > len(inner):
        raise ParseError("truncated", f"inner datagram claims {length} bytes, has {len(inner)}")
    inner = inner[:length]
    if want == 4:
        check_ipv4(inner, verify_checksum=False)
    else:
        check_ipv6(inner)
    return inner


def _mark_ce(inner: BytesLike) -> bytes:
    buf = bytearray(inner)
    if buf[0] >> 4 == 4:
        buf[1] |= _ECN_CE
        finish_ipv4_header(buf)
    else:
        buf[1] |= _ECN_CE << 4
    return bytes(buf)
