"""IPv4 and IPv6 headers, IPv4 options and the IPv6 extension-header chain.

Two kinds of code live here, on purpose:

* frozen dataclasses (:class:`IPv4Header`, :class:`IPv6Header`, :class:`ExtensionHeader`,
  options) with ``parse``/``encode`` for control paths, tests, tools and the demo;
* small functions on ``bytes``/``bytearray`` for the per-packet path of the ESP/AH engine:
  :func:`insertion_point` (where AH/ESP goes on output), :func:`locate_upper` (where it is on
  input), :func:`zero_mutable_fields` (the AH "mutable fields zeroed" image of RFC 4302
  section 3.3.3.1 and Appendix A, or of RFC 1826), :func:`set_payload_length` and
  :func:`finish_ipv4_header`, :func:`ipv6_extension_headers` (the one walk of the IPv6
  chain), and the shortcuts for the common layouts: :func:`plain_ipv4`
  (an option-free IPv4 header read in one unpack), :func:`lone_ipv6` (no extension header),
  :func:`ipv4_sum`, :func:`respliced_ipv4` and :func:`respliced_ipv6` (the transport splice
  in one pack). They build no objects per packet beyond the bytes they return.

Every parser is bounded: malformed bytes raise :class:`~skip.errors.ParseError` with a reason
code, never ``IndexError`` or ``struct.error``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from skip.errors import ParseError
from skip.wire.checksum import internet_checksum

#: What the parsers accept: slices of a received packet arrive as memoryviews.
BytesLike = bytes | bytearray | memoryview

# IP protocol / next-header numbers the engine and its callers use.
PROTO_HOPOPTS = 0
PROTO_ICMP = 1
PROTO_IPV4 = 4
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_IPV6 = 41
PROTO_ROUTING = 43
PROTO_FRAGMENT = 44
PROTO_ESP = 50
PROTO_AH = 51
PROTO_SKIP = 57
PROTO_ICMPV6 = 58
PROTO_NONE = 59
PROTO_DSTOPTS = 60

#: IPv6 extension headers this module walks through (RFC 8200 section 4).
EXTENSION_HEADERS = frozenset({PROTO_HOPOPTS, PROTO_ROUTING, PROTO_FRAGMENT, PROTO_DSTOPTS})
#: Headers that precede AH/ESP when present (RFC 4302 section 3.1.1, RFC 4303 section 3.1.1):
#: hop-by-hop, routing and fragment.  Destination options go before AH/ESP only when a
#: routing header follows them; that falls out of "insert after the last of these".
_BEFORE_IPSEC = frozenset({PROTO_HOPOPTS, PROTO_ROUTING, PROTO_FRAGMENT})

IPV4_MIN_HEADER = 20
IPV6_HEADER = 40

#: IPv4 options that stay in the AH ICV (RFC 4302 Appendix A1, "IMMUTABLE"): EOL, NOP,
#: Security, Extended Security, Commercial Security, Router Alert, SDMDD.  Every other option,
#: known or not, is zeroed whole (type, length and data), as Appendix A1 lists them all as
#: mutable or experimental and an unknown option cannot be trusted to stay put.
IPV4_IMMUTABLE_OPTIONS = frozenset({0, 1, 130, 133, 134, 148, 149})
#: The options RFC 791 routers rewrite in flight: record route, timestamp, loose and strict
#: source route.  The RFC 1826 image zeroes only these.
IPV4_ROUTER_OPTIONS = frozenset({7, 68, 131, 137})
IPV4_OPT_EOL = 0
IPV4_OPT_NOP = 1
IPV4_OPT_LSRR = 131
IPV4_OPT_SSRR = 137
IPV4_OPT_RR = 7

IPV4_FLAG_DF = 0x4000
IPV4_FLAG_MF = 0x2000
IPV4_OFFSET_MASK = 0x1FFF

#: Bit of an IPv6 option type meaning "option data may change en route" (RFC 8200 4.2).
IPV6_OPT_MUTABLE = 0x20
IPV6_OPT_PAD1 = 0

_IPV4 = struct.Struct("!BBHHHBBH4s4s")
#: The option-free IPv4 header as the per-packet fast path sees it: version/IHL, TOS, Total
#: Length, Identification, flags + fragment offset, TTL, Protocol, Checksum, both addresses.
_IPV4_PLAIN = struct.Struct("!BBHHHBBH8s")
PlainIPv4 = tuple[int, int, int, int, int, int, int, int, bytes]
#: The fixed IPv6 header split around the two fields a transport splice changes: version to
#: flow label, Payload Length, Next Header, hop limit and both addresses.
_IPV6_SPLICE = struct.Struct("!4sHB33s")
_IPV6 = struct.Struct("!IHBB16s16s")
_H = struct.Struct("!H")
_from_bytes = int.from_bytes  # bound once: looking it up on ``int`` per packet costs more


# --------------------------------------------------------------------------------------------
# IPv4 options
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IPv4Option:
    """One IPv4 option.  EOL and NOP are one byte and carry no data."""

    type: int
    data: bytes = b""

    @property
    def mutable(self) -> bool:
        """Whether AH zeroes this option for its ICV (RFC 4302 Appendix A1)."""
        return self.type not in IPV4_IMMUTABLE_OPTIONS

    def encode(self) -> bytes:
        if self.type in (IPV4_OPT_EOL, IPV4_OPT_NOP):
            return bytes((self.type,))
        if len(self.data) > 253:
            raise ParseError("bad_option", f"IPv4 option {self.type}: {len(self.data)} data bytes")
        return bytes((self.type, len(self.data) + 2)) + self.data


def _walk_ipv4_options(data: BytesLike, start: int, end: int) -> Iterable[tuple[int, int, int]]:
    """Yield ``(type, offset, length)`` for each option in ``data[start:end]``.

    Stops at EOL (the rest of the area is padding).  Raises ``ParseError("bad_option")`` for
    an option whose length byte is missing, below 2 or runs past the header.
    """
    i = start
    while i < end:
        kind = data[i]
        if kind == IPV4_OPT_EOL:
            yield kind, i, 1
            return
        if kind == IPV4_OPT_NOP:
            yield kind, i, 1
            i += 1
            continue
        if i + 1 >= end:
            raise ParseError("bad_option", f"IPv4 option {kind} at {i} has no length byte")
        length = data[i + 1]
        if length < 2 or i + length > end:
            raise ParseError("bad_option", f"IPv4 option {kind} at {i} has length {length}")
        yield kind, i, length
        i += length


def parse_ipv4_options(raw: bytes) -> tuple[IPv4Option, ...]:
    """The options in an IPv4 option area (padding after EOL is dropped)."""
    return tuple(
        IPv4Option(kind, bytes(raw[off + 2 : off + length]) if length > 1 else b"")
        for kind, off, length in _walk_ipv4_options(raw, 0, len(raw))
    )


def encode_ipv4_options(options: Iterable[IPv4Option]) -> bytes:
    """Options followed by zero padding (EOL) to a 32-bit boundary, at most 40 bytes."""
    raw = b"".join(o.encode() for o in options)
    raw += bytes(-len(raw) % 4)
    if len(raw) > 40:
        raise ParseError("bad_option", f"IPv4 options need {len(raw)} bytes, at most 40 fit")
    return raw


# --------------------------------------------------------------------------------------------
# IPv4 header
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IPv4Header:
    """An IPv4 header (RFC 791).  ``flags`` holds the 3 flag bits (DF = 2, MF = 1)."""

    src: IPv4Address
    dst: IPv4Address
    protocol: int
    total_length: int = IPV4_MIN_HEADER
    tos: int = 0
    identification: int = 0
    flags: int = 0
    fragment_offset: int = 0
    ttl: int = 64
    checksum: int = 0
    options: bytes = b""

    @property
    def header_length(self) -> int:
        return IPV4_MIN_HEADER + len(self.options)

    @classmethod
    def parse(cls, data: BytesLike, *, verify_checksum: bool = False) -> IPv4Header:
        """Parse the header at the start of ``data`` (which may hold more after it)."""
        hl = check_ipv4(data, verify_checksum=verify_checksum, whole=False)
        _, tos, total, ident, frag, ttl, proto, csum, src, dst = _IPV4.unpack_from(data, 0)
        options = bytes(data[IPV4_MIN_HEADER:hl])
        for _ in _walk_ipv4_options(options, 0, len(options)):
            pass
        return cls(
            src=IPv4Address(src), dst=IPv4Address(dst), protocol=proto, total_length=total,
            tos=tos, identification=ident, flags=frag >> 13,
            fragment_offset=frag & IPV4_OFFSET_MASK, ttl=ttl, checksum=csum, options=options,
        )

    def encode(self, *, fix_checksum: bool = True) -> bytes:
        """The header bytes; with ``fix_checksum`` the checksum field is computed."""
        if len(self.options) % 4 or len(self.options) > 40:
            raise ParseError("bad_length", f"IPv4 options length {len(self.options)}")
        buf = bytearray(self.header_length)
        _IPV4.pack_into(
            buf, 0, 0x40 | (self.header_length // 4), self.tos, self.total_length,
            self.identification, (self.flags << 13) | self.fragment_offset, self.ttl,
            self.protocol, self.checksum, self.src.packed, self.dst.packed,
        )
        buf[IPV4_MIN_HEADER:] = self.options
        if fix_checksum:
            finish_ipv4_header(buf)
        return bytes(buf)


def check_ipv4(data: BytesLike, *, verify_checksum: bool, whole: bool = True) -> int:
    """Validate the IPv4 header at ``data[0]`` and return its length.

    ``whole``: the Total Length must equal ``len(data)`` (the engine works on whole datagrams;
    a mismatch means truncation or trailing junk).
    """
    n = len(data)
    if n < IPV4_MIN_HEADER:
        raise ParseError("truncated", f"IPv4 header needs 20 bytes, got {n}")
    vihl = data[0]
    if vihl >> 4 != 4:
        raise ParseError("bad_version", f"IP version {vihl >> 4} where 4 was expected")
    hl = (vihl & 0x0F) * 4
    if hl < IPV4_MIN_HEADER:
        raise ParseError("bad_header", f"IPv4 IHL {vihl & 0x0F} is below 5")
    if hl > n:
        raise ParseError("truncated", f"IPv4 header is {hl} bytes, only {n} present")
    total = (data[2] << 8) | data[3]
    if total < hl:
        raise ParseError("bad_length", f"IPv4 total length {total} is shorter than its header")
    if whole and total != n:
        reason = "truncated" if total > n else "bad_length"
        raise ParseError(reason, f"IPv4 total length {total}, datagram has {n} bytes")
    if verify_checksum and internet_checksum(data, 0, hl) != 0:
        raise ParseError("bad_checksum", "IPv4 header checksum does not verify")
    return hl


def build_ipv4(
    src: IPv4Address | str,
    dst: IPv4Address | str,
    protocol: int,
    payload: bytes,
    *,
    ttl: int = 64,
    tos: int = 0,
    identification: int = 0,
    flags: int = 0,
    options: Iterable[IPv4Option] = (),
) -> bytes:
    """A whole IPv4 datagram with correct lengths and checksum (for tests, tools, the demo)."""
    raw = encode_ipv4_options(options)
    header = IPv4Header(
        src=IPv4Address(src), dst=IPv4Address(dst), protocol=protocol,
        total_length=IPV4_MIN_HEADER + len(raw) + len(payload), tos=tos,
        identification=identification, flags=flags, ttl=ttl, options=raw,
    )
    return header.encode() + payload


# --------------------------------------------------------------------------------------------
# IPv6 header and extension headers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IPv6Header:
    """The fixed IPv6 header (RFC 8200 section 3)."""

    src: IPv6Address
    dst: IPv6Address
    next_header: int
    payload_length: int = 0
    traffic_class: int = 0
    flow_label: int = 0
    hop_limit: int = 64

    @classmethod
    def parse(cls, data: BytesLike) -> IPv6Header:
        check_ipv6(data, whole=False)
        vtf, plen, nh, hlim, src, dst = _IPV6.unpack_from(data, 0)
        return cls(
            src=IPv6Address(src), dst=IPv6Address(dst), next_header=nh, payload_length=plen,
            traffic_class=(vtf >> 20) & 0xFF, flow_label=vtf & 0xFFFFF, hop_limit=hlim,
        )

    def encode(self) -> bytes:
        vtf = (6 << 28) | (self.traffic_class << 20) | self.flow_label
        return _IPV6.pack(vtf, self.payload_length, self.next_header, self.hop_limit,
                          self.src.packed, self.dst.packed)


def check_ipv6(data: BytesLike, *, whole: bool = True) -> None:
    """Validate the fixed IPv6 header; ``whole`` as for :func:`check_ipv4`.

    Jumbograms (Payload Length 0 with a hop-by-hop Jumbo option) are refused: the engine
    never sees one on the links it serves, and accepting them would complicate every length.
    """
    n = len(data)
    if n < IPV6_HEADER:
        raise ParseError("truncated", f"IPv6 header needs 40 bytes, got {n}")
    if data[0] >> 4 != 6:
        raise ParseError("bad_version", f"IP version {data[0] >> 4} where 6 was expected")
    plen = (data[4] << 8) | data[5]
    if whole and plen + IPV6_HEADER != n:
        reason = "truncated" if plen + IPV6_HEADER > n else "bad_length"
        raise ParseError(reason, f"IPv6 payload length {plen}, datagram has {n - IPV6_HEADER}")


@dataclass(frozen=True, slots=True)
class IPv6Option:
    """One option of a hop-by-hop or destination-options header.  Pad1 (type 0) has no data."""

    type: int
    data: bytes = b""

    @property
    def mutable(self) -> bool:
        """The "may change en route" bit; AH zeroes the data of such options."""
        return bool(self.type & IPV6_OPT_MUTABLE)

    def encode(self) -> bytes:
        if self.type == IPV6_OPT_PAD1:
            return b"\x00"
        if len(self.data) > 255:
            raise ParseError("bad_option", f"IPv6 option {self.type}: {len(self.data)} data bytes")
        return bytes((self.type, len(self.data))) + self.data


def _walk_ipv6_options(data: BytesLike, start: int, end: int) -> Iterable[tuple[int, int, int]]:
    """Yield ``(type, data_offset, data_length)`` per option in ``data[start:end]``."""
    i = start
    while i < end:
        kind = data[i]
        if kind == IPV6_OPT_PAD1:
            yield kind, i + 1, 0
            i += 1
            continue
        if i + 1 >= end:
            raise ParseError("bad_option", f"IPv6 option {kind} at {i} has no length byte")
        length = data[i + 1]
        if i + 2 + length > end:
            raise ParseError("bad_option", f"IPv6 option {kind} at {i} runs past its header")
        yield kind, i + 2, length
        i += 2 + length


@dataclass(frozen=True, slots=True)
class ExtensionHeader:
    """One IPv6 extension header: ``kind`` is its own protocol number (0, 43, 44, 60) and
    ``body`` everything after the Next Header and length bytes (6 bytes for a fragment header).
    """

    kind: int
    next_header: int
    body: bytes

    @classmethod
    def parse_from(cls, data: BytesLike, offset: int, kind: int) -> tuple[ExtensionHeader, int]:
        """Parse the header of type ``kind`` at ``offset``; returns it and its end offset."""
        end = _extension_end(data, offset, kind)
        if kind in (PROTO_HOPOPTS, PROTO_DSTOPTS):
            for _ in _walk_ipv6_options(data, offset + 2, end):
                pass
        elif kind == PROTO_ROUTING:
            _check_routing(data, offset, end)
        return cls(kind, data[offset], bytes(data[offset + 2 : end])), end

    def encode(self) -> bytes:
        if self.kind == PROTO_FRAGMENT:
            if len(self.body) != 6:
                raise ParseError("bad_length", "a fragment header body is 6 bytes")
            return bytes((self.next_header, 0)) + self.body
        if (2 + len(self.body)) % 8:
            raise ParseError("bad_length", f"extension header of {2 + len(self.body)} bytes")
        return bytes((self.next_header, (2 + len(self.body)) // 8 - 1)) + self.body

    # -- constructors for tests and tools ----------------------------------------------------
    @classmethod
    def with_options(
        cls, kind: int, next_header: int, options: Iterable[IPv6Option]
    ) -> ExtensionHeader:
        """A hop-by-hop (0) or destination-options (60) header padded to 8 bytes."""
        raw = b"".join(o.encode() for o in options)
        pad = -(2 + len(raw)) % 8
        if pad == 1:
            raw += b"\x00"
        elif pad:
            raw += bytes((1, pad - 2)) + bytes(pad - 2)  # PadN
        return cls(kind, next_header, raw)

    @classmethod
    def routing(cls, next_header: int, addresses: Iterable[IPv6Address | str], *,
                segments_left: int | None = None, routing_type: int = 0) -> ExtensionHeader:
        """A type 0 (or type 2) routing header; ``segments_left`` defaults to all addresses."""
        addrs = [IPv6Address(a).packed for a in addresses]
        left = len(addrs) if segments_left is None else segments_left
        body = bytes((routing_type, left)) + bytes(4) + b"".join(addrs)
        return cls(PROTO_ROUTING, next_header, body)

    @classmethod
    def fragment(
        cls, next_header: int, offset: int, more: bool, identification: int
    ) -> ExtensionHeader:
        return cls(PROTO_FRAGMENT, next_header,
                   struct.pack("!HI", (offset << 3) | int(more), identification))

    def options(self) -> tuple[IPv6Option, ...]:
        """The options of a hop-by-hop or destination-options header."""
        if self.kind not in (PROTO_HOPOPTS, PROTO_DSTOPTS):
            raise ParseError("bad_header", f"header {self.kind} carries no options")
        raw = bytes(2) + self.body
        return tuple(IPv6Option(k, raw[off : off + n] if k else b"")
                     for k, off, n in _walk_ipv6_options(raw, 2, len(raw)))


def _extension_end(data: BytesLike, offset: int, kind: int) -> int:
    if offset + 8 > len(data):
        raise ParseError("truncated", f"IPv6 extension header {kind} at {offset} is cut short")
    end = offset + 8 if kind == PROTO_FRAGMENT else offset + (data[offset + 1] + 1) * 8
    if end > len(data):
        raise ParseError("truncated", f"IPv6 extension header {kind} at {offset} runs past the end")
    return end


def _check_routing(data: BytesLike, offset: int, end: int) -> None:
    """Type 0 and 2 routing headers: the address count must hold Segments Left."""
    rtype, left = data[offset + 2], data[offset + 3]
    if rtype in (0, 2):
        count = (end - offset - 8) // 16
        if (end - offset - 8) % 16 or left > count:
            raise ParseError("bad_header", f"routing header: {left} segments left of {count}")


def build_ipv6(
    src: IPv6Address | str,
    dst: IPv6Address | str,
    next_header: int,
    payload: bytes,
    *,
    hop_limit: int = 64,
    traffic_class: int = 0,
    flow_label: int = 0,
    extension_headers: Iterable[ExtensionHeader] = (),
) -> bytes:
    """A whole IPv6 packet.  The chain is linked for you: each extension header's Next
    Header is rewritten to point at the following one, the last one at ``next_header``."""
    headers = list(extension_headers)
    kinds = [h.kind for h in headers] + [next_header]
    chain = b"".join(
        ExtensionHeader(h.kind, kinds[i + 1], h.body).encode() for i, h in enumerate(headers)
    )
    fixed = IPv6Header(src=IPv6Address(src), dst=IPv6Address(dst), next_header=kinds[0],
                       payload_length=len(chain) + len(payload), traffic_class=traffic_class,
                       flow_label=flow_label, hop_limit=hop_limit)
    return fixed.encode() + chain + payload


# --------------------------------------------------------------------------------------------
# per-packet helpers for the engine
# --------------------------------------------------------------------------------------------


def _version(packet: BytesLike) -> int:
    if not packet:
        raise ParseError("truncated", "empty packet")
    version = packet[0] >> 4
    if version not in (4, 6):
        raise ParseError("bad_version", f"IP version {version}")
    return version


def _ipv4_reject_fragment(packet: BytesLike) -> None:
    frag = (packet[6] << 8) | packet[7]
    if frag & (IPV4_FLAG_MF | IPV4_OFFSET_MASK):
        raise ParseError("fragment", "an IPv4 fragment: AH/ESP work on whole datagrams")


def _ipv6_reject_fragment(packet: BytesLike, offset: int) -> None:
    word = (packet[offset + 2] << 8) | packet[offset + 3]
    if word & 0xFFF9:  # offset (13 bits) or M; an atomic fragment (RFC 6946) is whole
        raise ParseError("fragment", "an IPv6 fragment: AH/ESP work on whole datagrams")


def plain_ipv4(packet: BytesLike, verify_checksum: bool) -> PlainIPv4 | None:
    """The common case in one test: the header fields of a whole, unfragmented IPv4 datagram
    without options (with a good checksum if asked: a correct header sums to 0xFFFF, 0 modulo
    0xFFFF), else None.  None sends the caller down the general path, which also says what is
    wrong.  The fields are what :func:`respliced_ipv4` needs to rewrite the header."""
    size = len(packet)
    if size < IPV4_MIN_HEADER or packet[0] != 0x45:
        return None
    fields = _IPV4_PLAIN.unpack_from(packet)
    if fields[2] != size or fields[4] & 0x3FFF or (verify_checksum and ipv4_sum(packet)):
        return None
    return fields


def lone_ipv6(packet: BytesLike) -> bool:
    """The IPv6 common case in one test: a whole datagram whose fixed header is followed by no
    extension header, so AH/ESP sits (or goes) right after byte 40.  False sends the caller
    down the general chain walk, which also says what is wrong."""
    size = len(packet)
    return (size >= IPV6_HEADER and packet[0] >> 4 == 6
            and (packet[4] << 8 | packet[5]) + IPV6_HEADER == size
            and packet[6] not in EXTENSION_HEADERS)


def ipv6_extension_headers(
    packet: BytesLike, *, keep_fragments: bool = False
) -> list[tuple[int, int, int]]:
    """The extension-header chain of the IPv6 datagram at ``packet[0]`` (fixed header already
    checked): ``(kind, offset, end)`` per header, in order, each checked to fit (routing
    headers also to hold their Segments Left).  The header after the chain starts at the last
    ``end`` and its protocol is the byte at the last ``offset`` (at 40 and 6 for an empty
    chain).

    A fragment is refused (reason ``fragment``: IPsec works on whole datagrams; an atomic
    fragment, RFC 6946, is whole) unless ``keep_fragments``, where the walk ends after a later
    fragment's header, as what follows it is the middle of a payload.

    The one walk for the engine (:func:`insertion_point`, :func:`locate_upper`,
    :func:`zero_mutable_fields`) and skipd's policy summary.  A list and not a generator: the
    generator cost a fifth more on a two-header chain.  Bounded by the packet: every header
    is at least 8 bytes.
    """
    chain = []
    off, nh = IPV6_HEADER, packet[6]
    while nh in EXTENSION_HEADERS:
        end = _extension_end(packet, off, nh)
        chain.append((nh, off, end))
        if nh == PROTO_ROUTING:
            _check_routing(packet, off, end)
        elif nh == PROTO_FRAGMENT:
            if not keep_fragments:
                _ipv6_reject_fragment(packet, off)
            elif (packet[off + 2] << 8 | packet[off + 3]) & 0xFFF8:
                break
        off, nh = end, packet[off]
    return chain


def insertion_point(packet: BytesLike) -> tuple[int, int, int, int]:
    """Where an AH/ESP (or shim) header goes in a whole datagram, for transport mode.

    Returns ``(version, nh_offset, offset, protocol)``: the byte at ``nh_offset`` is the
    Protocol / Next Header field that will name the inserted header, ``offset`` is where it
    goes and ``protocol`` is the value that field holds now (the inserted header's own Next
    Header).  IPv4: right after the header.  IPv6: after hop-by-hop, routing and fragment
    headers (and any destination options in front of a routing header); destination options
    that follow them stay behind AH/ESP, end-to-end (RFC 4303 section 3.1.1).
    Fragments are refused (reason ``fragment``): IPsec works on whole datagrams.
    """
    if plain_ipv4(packet, False) is not None:
        return 4, 9, IPV4_MIN_HEADER, packet[9]
    if lone_ipv6(packet):
        return 6, 6, IPV6_HEADER, packet[6]
    if _version(packet) == 4:
        hl = check_ipv4(packet, verify_checksum=False)
        _ipv4_reject_fragment(packet)
        return 4, 9, hl, packet[9]
    check_ipv6(packet)
    nh_off, off = 6, IPV6_HEADER
    for kind, start, end in ipv6_extension_headers(packet):
        if kind in _BEFORE_IPSEC:
            nh_off, off = start, end
    return 6, nh_off, off, packet[nh_off]


def locate_upper(packet: BytesLike, *, verify_checksum: bool = True) -> tuple[int, int, int, int]:
    """Find the first header after the IP header chain of a received datagram.

    Returns ``(version, nh_offset, offset, protocol)`` like :func:`insertion_point`, but walks
    past every IPv6 extension header (AH/ESP ends the walk).  IPv4 checksums are verified by
    default: transport-mode ESP does not cover the IP header, so this is its only guard.
    """
    if plain_ipv4(packet, verify_checksum) is not None:
        return 4, 9, IPV4_MIN_HEADER, packet[9]
    if lone_ipv6(packet):
        return 6, 6, IPV6_HEADER, packet[6]
    if _version(packet) == 4:
        hl = check_ipv4(packet, verify_checksum=verify_checksum)
        _ipv4_reject_fragment(packet)
        return 4, 9, hl, packet[9]
    check_ipv6(packet)
    chain = ipv6_extension_headers(packet)
    if not chain:
        return 6, 6, IPV6_HEADER, packet[6]
    _, nh_off, off = chain[-1]
    return 6, nh_off, off, packet[nh_off]


def zero_mutable_fields(buf: bytearray, header_end: int, *, rfc1826: bool = False) -> None:
    """Turn ``buf[:header_end]`` (an IP header chain) into its AH ICV image, in place.

    RFC 4302 section 3.3.3.1 and Appendix A.  IPv4: TOS, flags + fragment offset, TTL and
    checksum become 0; each mutable option is zeroed whole; with an unfinished loose/strict
    source route the destination becomes the route's final address.  IPv6: traffic class,
    flow label and hop limit become 0; options with the "may change" bit keep type and length
    but get zero data; a routing header and the destination address take the values the
    final receiver will see (segments left 0).

    ``rfc1826``: the 1995 rule instead, "TTL and Header Checksum are the only fields in the
    IPv4 base header handled specially" and, for IPv6, the Hop Limit only; of the IPv4
    options only those RFC 791 routers rewrite (record route, timestamp, source routes) are
    zeroed, an unrecognised one is included.  Extension headers are treated as above.
    """
    if buf[0] >> 4 == 4:
        buf[8] = buf[10] = buf[11] = 0
        if not rfc1826:
            buf[1] = buf[6] = buf[7] = 0
        if header_end == IPV4_MIN_HEADER:
            return  # no options: spare the walk (a generator per packet)
        for kind, off, length in _walk_ipv4_options(buf, IPV4_MIN_HEADER, header_end):
            if kind in IPV4_IMMUTABLE_OPTIONS or (rfc1826 and kind not in IPV4_ROUTER_OPTIONS):
                continue
            if kind in (IPV4_OPT_LSRR, IPV4_OPT_SSRR) and length >= 7:
                pointer = buf[off + 2]
                if pointer <= length - 3:  # route not exhausted: last entry is the final hop
                    buf[16:20] = buf[off + length - 4 : off + length]
            buf[off : off + length] = bytes(length)
        return
    buf[7] = 0
    if not rfc1826:
        buf[0] &= 0xF0
        buf[1] = buf[2] = buf[3] = 0
    if header_end == IPV6_HEADER:
        return  # no extension header: spare the walk
    # the chain of an image ends at header_end: its last Next Header names AH or the shim
    for nh, off, end in ipv6_extension_headers(buf):
        if nh in (PROTO_HOPOPTS, PROTO_DSTOPTS):
            for kind, doff, dlen in _walk_ipv6_options(buf, off + 2, end):
                if kind & IPV6_OPT_MUTABLE:
                    buf[doff : doff + dlen] = bytes(dlen)
        elif nh == PROTO_ROUTING:
            _finalise_routing(buf, off, end)


def _finalise_routing(buf: bytearray, off: int, end: int) -> None:
    """Give a routing header and the destination address their values at the final receiver.

    Types 0 and 2 (RFC 2460 / RFC 6275) swap the destination with the next listed address at
    each hop; we play the remaining swaps.  A header with Segments Left 0 is final already;
    other types with segments left are refused, as their final form is not defined for AH here.
    """
    rtype, left = buf[off + 2], buf[off + 3]
    if left == 0:
        return
    if rtype not in (0, 2):
        raise ParseError("unsupported_protocol", f"AH over routing header type {rtype}")
    count = (end - off - 8) // 16
    dst = bytes(buf[24:40])
    for i in range(count - left, count):
        at = off + 8 + 16 * i
        dst, buf[at : at + 16] = bytes(buf[at : at + 16]), dst
    buf[24:40] = dst
    buf[off + 3] = 0


def set_payload_length(buf: bytearray, total: int) -> None:
    """Write the datagram's length (IPv4 Total Length / IPv6 Payload Length) into ``buf``."""
    if buf[0] >> 4 == 4:
        if total > 0xFFFF:
            raise ParseError("bad_length", f"IPv4 datagram of {total} bytes")
        _H.pack_into(buf, 2, total)
    else:
        if total - IPV6_HEADER > 0xFFFF:
            raise ParseError("bad_length", f"IPv6 payload of {total - IPV6_HEADER} bytes")
        _H.pack_into(buf, 4, total - IPV6_HEADER)


def ipv4_sum(packet: BytesLike) -> int:
    """The one's-complement sum of the option-free IPv4 header at ``packet[0]``, modulo 0xFFFF
    (0 for a header whose checksum is right).

    A base-65536 number modulo 0xFFFF is the sum of its digits modulo 0xFFFF (65536 = 1 mod
    0xFFFF), so one ``int.from_bytes`` replaces a Python loop over the ten words.
    """
    return _from_bytes(packet[:IPV4_MIN_HEADER], "big") % 0xFFFF


def respliced_ipv4(fields: PlainIPv4, header_sum: int, total: int, protocol: int) -> bytes:
    """The option-free IPv4 header ``fields`` (from :func:`plain_ipv4`) with Total Length
    ``total``, Protocol ``protocol`` and a fresh checksum: the transport-mode splice.

    ``header_sum`` is the old header's :func:`ipv4_sum` (0 when its checksum was verified).
    The new checksum is updated from the old one (RFC 1624: take the old words out of the sum,
    put the new ones in) instead of summing the header again; with the old header's sum taken
    into account a wrong old checksum does not carry over, so the result equals a full
    recomputation, in :func:`finish_ipv4_header`'s convention (0, never 0xFFFF, for a sum of 0).
    """
    if total > 0xFFFF:
        raise ParseError("bad_length", f"IPv4 datagram of {total} bytes")
    vihl, tos, old_total, ident, frag, ttl, old_protocol, checksum, addresses = fields
    checksum = (checksum - header_sum + old_total - total + old_protocol - protocol) % 0xFFFF
    return _IPV4_PLAIN.pack(vihl, tos, total, ident, frag, ttl, protocol, checksum, addresses)


def respliced_ipv6(packet: BytesLike, total: int, next_header: int) -> bytes:
    """The fixed IPv6 header of ``packet`` with the Payload Length of a ``total``-byte datagram
    and Next Header ``next_header``: the transport splice when no extension header precedes
    AH/ESP, in one unpack and one pack."""
    if total - IPV6_HEADER > 0xFFFF:
        raise ParseError("bad_length", f"IPv6 payload of {total - IPV6_HEADER} bytes")
    first, _, _, rest = _IPV6_SPLICE.unpack_from(packet)
    return _IPV6_SPLICE.pack(first, total - IPV6_HEADER, next_header, rest)


def finish_ipv4_header(buf: bytearray) -> None:
    """Recompute the checksum of the IPv4 header at the start of ``buf``.

    :func:`~skip.wire.checksum.internet_checksum` inlined for the per-packet path: the header
    is never all zeros (its version nibble is 4), so a sum of 0 modulo 0xFFFF is the
    one's-complement 0xFFFF.
    """
    hl = (buf[0] & 0x0F) * 4
    buf[10] = buf[11] = 0
    total = int.from_bytes(buf[:hl], "big") % 0xFFFF or 0xFFFF
    _H.pack_into(buf, 10, ~total & 0xFFFF)
