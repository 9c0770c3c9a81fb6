"""pcap and pcapng, as far as reading a capture of IP traffic and writing one takes.

Hand-written on ``struct`` rather than a dependency: the formats are small, and a reader of
files from anywhere must be bounded (every length checked before it is used, a cap on any one
block), which is easier to promise for 200 lines one can read than for a general library.
The reader yields the IP datagram of each frame, whatever the link layer (Ethernet with
VLAN tags, Linux cooked v1/v2, BSD loopback, raw IP); frames that carry something else are
yielded with ``packet`` None so the caller can count them. The writer emits classic pcap with
LINKTYPE_RAW, which every tool reads.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from skip.errors import ParseError

MAX_BLOCK = 16 * 1024 * 1024  # no real frame or block comes near; a corrupt length does
MAX_INTERFACES = 1024

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
_RAW_ALIASES = (12, 14)  # DLT_RAW on some BSDs
LINK_TYPES = (LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LOOP, LINKTYPE_LINUX_SLL,
              LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2, *_RAW_ALIASES)

_ETH_IP = (0x0800, 0x86DD)
_ETH_VLAN = (0x8100, 0x88A8, 0x9100)
_AF_INET = 2
_AF_INET6 = (10, 24, 28, 30)  # Linux, NetBSD/OpenBSD, FreeBSD, macOS

_PCAP_MAGIC_US, _PCAP_MAGIC_NS = 0xA1B2C3D4, 0xA1B23C4D
_PCAPNG_SHB, _PCAPNG_IDB, _PCAPNG_SPB, _PCAPNG_EPB = 0x0A0D0D0A, 1, 3, 6
_PCAPNG_BOM = 0x1A2B3C4D


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured frame: its time (POSIX seconds), number (from 1), link type, the bytes
    captured, and the IP datagram in them (None: not IP, or cut short by the snap length)."""

    number: int
    time: float
    linktype: int
    data: bytes
    packet: bytes | None
    truncated: bool = False


def ip_of(linktype: int, data: bytes) -> bytes | None:
    """The IP datagram a frame of ``linktype`` carries, or None."""
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6, *_RAW_ALIASES):
        payload = data
    elif linktype == LINKTYPE_ETHERNET:
        off, ethertype = 12, 0
        while len(data) >= off + 2:
            ethertype = int.from_bytes(data[off:off + 2])
            off += 2
            if ethertype not in _ETH_VLAN:
                break
            off += 2  # the tag's TCI; the next two bytes are the inner type
        if ethertype not in _ETH_IP:
            return None
        payload = data[off:]
    elif linktype == LINKTYPE_LINUX_SLL:
        if len(data) < 16 or int.from_bytes(data[14:16]) not in _ETH_IP:
            return None
        payload = data[16:]
    elif linktype == LINKTYPE_LINUX_SLL2:
        if len(data) < 20 or int.from_bytes(data[0:2]) not in _ETH_IP:
            return None
        payload = data[20:]
    elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(data) < 4:
            return None
        # NULL: the address family in the writer's byte order; LOOP: network order
        family = int.from_bytes(data[:4], "big")
        if linktype == LINKTYPE_NULL and family > 0xFFFF:
            family = int.from_bytes(data[:4], "little")
        if family != _AF_INET and family not in _AF_INET6:
            return None
        payload = data[4:]
    else:
        return None
    if not payload or payload[0] >> 4 not in (4, 6):
        return None
    return payload


def read_capture(stream: BinaryIO) -> Iterator[Frame]:
    """Every frame of a pcap or pcapng file (told apart by their first four bytes).

    Raises ParseError (``bad_capture``) for a file that is neither, or whose structure breaks
    a bound; a file cut short in the middle of its last record ends the iteration there, as
    tcpdump's own reader does with a capture that was interrupted."""
    head = stream.read(4)
    if len(head) < 4:
        raise ParseError("bad_capture", "shorter than any pcap or pcapng header")
    if int.from_bytes(head, "little") == _PCAPNG_SHB:
        yield from _pcapng(stream, head)
    else:
        yield from _pcap(stream, head)


def _pcap(stream: BinaryIO, magic: bytes) -> Iterator[Frame]:
    for order in ("<", ">"):
        value = struct.unpack(order + "I", magic)[0]
        if value in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS):
            break
    else:
        raise ParseError("bad_capture", "not a pcap or pcapng file (unknown magic number)")
    scale = 1e-9 if value == _PCAP_MAGIC_NS else 1e-6
    rest = stream.read(20)
    if len(rest) < 20:
        raise ParseError("bad_capture", "pcap file header cut short")
    _major, _minor, _zone, _sigfigs, _snap, linktype = struct.unpack(order + "HHiIII", rest)
    linktype &= 0x0FFFFFFF  # the high bits carry FCS information (pcap-linktype(7))
    record = struct.Struct(order + "IIII")
    number = 0
    while True:
        raw = stream.read(record.size)
        if len(raw) < record.size:
            return
        seconds, fraction, caplen, origlen = record.unpack(raw)
        if caplen > MAX_BLOCK:
            raise ParseError("bad_capture", f"record {number + 1} claims {caplen} bytes")
        data = stream.read(caplen)
        if len(data) < caplen:
            return
        number += 1
        yield _frame(number, seconds + fraction * scale, linktype, data, caplen < origlen)


def _pcapng(stream: BinaryIO, first: bytes) -> Iterator[Frame]:
    order = "<"
    interfaces: list[tuple[int, float]] = []  # (link type, seconds per timestamp unit)
    number = 0
    head = first + stream.read(4)
    while len(head) == 8:
        block_type = struct.unpack(order + "I", head[:4])[0]
        if block_type == _PCAPNG_SHB:
            bom = stream.read(4)
            if len(bom) < 4:
                return
            order = "<" if int.from_bytes(bom, "little") == _PCAPNG_BOM else ">"
            if struct.unpack(order + "I", bom)[0] != _PCAPNG_BOM:
                raise ParseError("bad_capture", "pcapng section header with a bad byte-order "
                                 "magic")
            length = struct.unpack(order + "I", head[4:])[0]
            rest = _body(stream, length, 12)
            body = None if rest is None else bom + rest
            interfaces = []  # a new section numbers its interfaces afresh
        else:
            length = struct.unpack(order + "I", head[4:])[0]
            body = _body(stream, length, 8)
        if body is None:
            return
        trailer = stream.read(4)
        if len(trailer) < 4:
            return
        if block_type == _PCAPNG_IDB:
            if len(body) < 8 or len(interfaces) >= MAX_INTERFACES:
                raise ParseError("bad_capture", "bad pcapng interface description block")
            linktype = struct.unpack(order + "H", body[:2])[0]
            interfaces.append((linktype, _resolution(body[8:], order)))
        elif block_type == _PCAPNG_EPB:
            if len(body) < 20:
                raise ParseError("bad_capture", "pcapng enhanced packet block cut short")
            iface, high, low, caplen, origlen = struct.unpack(order + "IIIII", body[:20])
            if iface >= len(interfaces) or 20 + caplen > len(body):
                raise ParseError("bad_capture", "pcapng packet of an undeclared interface or "
                                 "longer than its block")
            linktype, unit = interfaces[iface]
            number += 1
            yield _frame(number, ((high << 32) | low) * unit, linktype,
                         body[20:20 + caplen], caplen < origlen)
        elif block_type == _PCAPNG_SPB:
            if len(body) < 4 or not interfaces:
                raise ParseError("bad_capture", "pcapng simple packet block without interface")
            origlen = struct.unpack(order + "I", body[:4])[0]
            linktype = interfaces[0][0]
            data = body[4:4 + origlen]
            number += 1
            yield _frame(number, 0.0, linktype, data, len(data) < origlen)
        head = stream.read(8)


def _body(stream: BinaryIO, length: int, consumed: int) -> bytes | None:
    """A pcapng block's body: ``length`` is the whole block, ``consumed`` of it already read,
    4 (the trailing length) left for the caller."""
    if length % 4 or length < consumed + 4 or length > MAX_BLOCK:
        raise ParseError("bad_capture", f"pcapng block of {length} bytes")
    body = stream.read(length - consumed - 4)
    return body if len(body) == length - consumed - 4 else None


def _resolution(options: bytes, order: str) -> float:
    """if_tsresol (option 9): 10^-n or 2^-n seconds per unit; microseconds by default."""
    off = 0
    while off + 4 <= len(options):
        code, size = struct.unpack(order + "HH", options[off:off + 4])
        if code == 0:
            break
        if code == 9 and size >= 1 and off + 5 <= len(options):
            value = options[off + 4]
            exponent = value & 0x7F
            return 2.0 ** -exponent if value & 0x80 else 10.0 ** -exponent
        off += 4 + (size + 3) // 4 * 4
    return 1e-6


def _frame(number: int, time: float, linktype: int, data: bytes, truncated: bool) -> Frame:
    packet = None if truncated else ip_of(linktype, data)
    return Frame(number, time, linktype, data, packet, truncated)


class PcapWriter:
    """Classic pcap, LINKTYPE_RAW, microsecond timestamps: the format every reader takes."""

    def __init__(self, stream: BinaryIO, snaplen: int = 262_144) -> None:
        self.stream = stream
        stream.write(struct.pack("<IHHiIII", _PCAP_MAGIC_US, 2, 4, 0, 0, snaplen, LINKTYPE_RAW))

    def write(self, time: float, packet: bytes) -> None:
        micros = round(time * 1e6)
        seconds, fraction = divmod(micros, 1_000_000)
        self.stream.write(struct.pack("<IIII", seconds, fraction, len(packet), len(packet)))
        self.stream.write(packet)
