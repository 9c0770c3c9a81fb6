"""The SKIP ICMP message (type 39, algorithm discovery), draft-ietf-ipsec-skip-adp-00.

A stateless "statement of capabilities": which algorithm of the offending packet failed (the
code bits) and, most preferred first, every Kij / Crypt / MAC / Comp algorithm the sender
supports. Layout: ``Type(39) Code Checksum | VER(4) RESRVD(4) Protocol Port(16) |`` then four
counted lists ``nKij kij... nCrypt crypt... nMAC mac... nComp comp...`` packed back to back.

The modern profile (revision 2.1) may append one 8-byte field after the lists, ``kp_floor``:
"make your next traffic key with a creation time of at least this many milliseconds" (a
receiver that restarted refuses older Kps; docs/protocol/modern-profile.md s. 7).

Authentication is not this module's business: the message only counts when it arrived inside
an authenticated SKIP packet (the keying layer checks that).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntFlag

from skip.errors import ParseError
from skip.wire.checksum import internet_checksum

ICMP_TYPE_SKIP = 39
ADP_VERSION = 1
_FIXED = struct.Struct("!BBHBBH")
_MAX_LIST = 255
_FLOOR = struct.Struct("!Q")


class AdpCode(IntFlag):
    """The code byte; the draft numbers its bits 7..0 with I as bit 7."""

    KIJ_UNSUPPORTED = 0x80  # I
    CRYPT_UNSUPPORTED = 0x40  # P
    MAC_UNSUPPORTED = 0x20  # M
    COMP_UNSUPPORTED = 0x10  # C
    REPLAY_REQUIRED = 0x08  # R
    NONE = 0


_DEFINED_CODE_BITS = 0xF8


@dataclass(frozen=True, slots=True)
class SkipIcmp:
    code: AdpCode
    kij: tuple[int, ...]
    crypt: tuple[int, ...]
    mac: tuple[int, ...]
    comp: tuple[int, ...] = ()
    protocol: int = 0  # 0: the advice applies per MKID / node, and port is ignored
    port: int = 0
    version: int = ADP_VERSION
    kp_floor: int | None = None  # modern only: ms, the least creation time of the next Kp

    def __post_init__(self) -> None:
        for lst in (self.kij, self.crypt, self.mac, self.comp):
            if len(lst) > _MAX_LIST or any(not 0 <= a <= 0xFF for a in lst):
                raise ValueError("an algorithm list holds at most 255 one-byte ids")
        if not (0 <= self.protocol <= 0xFF and 0 <= self.port <= 0xFFFF):
            raise ValueError("protocol is one byte, port two")
        if self.kp_floor is not None and not 0 <= self.kp_floor < 2**64:
            raise ValueError("kp_floor is an unsigned 64-bit number of milliseconds")

    def encode(self) -> bytes:
        body = bytearray(
            _FIXED.pack(ICMP_TYPE_SKIP, int(self.code) & _DEFINED_CODE_BITS, 0,
                        self.version << 4, self.protocol, self.port)
        )
        for lst in (self.kij, self.crypt, self.mac, self.comp):
            body.append(len(lst))
            body += bytes(lst)
        if self.kp_floor is not None:
            body += _FLOOR.pack(self.kp_floor)
        struct.pack_into("!H", body, 2, internet_checksum(body))
        return bytes(body)

    @classmethod
    def parse(cls, data: bytes | memoryview, *, verify_checksum: bool = True) -> SkipIcmp:
        """Decode one whole ICMP message (the IP payload); reserved bits are ignored."""
        if len(data) < _FIXED.size + 4:
            raise ParseError("truncated", "SKIP ICMP shorter than its fixed part and 4 counts")
        icmp_type, code, _csum, ver_rsvd, protocol, port = _FIXED.unpack_from(data, 0)
        if icmp_type != ICMP_TYPE_SKIP:
            raise ParseError("bad_header", f"ICMP type {icmp_type} is not SKIP_ICMP (39)")
        if ver_rsvd >> 4 != ADP_VERSION:
            raise ParseError("bad_version", f"SKIP ICMP version {ver_rsvd >> 4}")
        if verify_checksum and internet_checksum(data) != 0:
            raise ParseError("bad_checksum", "SKIP ICMP checksum")
        lists: list[tuple[int, ...]] = []
        pos = _FIXED.size
        for _ in range(4):
            if pos >= len(data):
                raise ParseError("truncated", "SKIP ICMP ends before an algorithm count")
            count = data[pos]
            if pos + 1 + count > len(data):
                raise ParseError("truncated", "SKIP ICMP algorithm list overruns the message")
            lists.append(tuple(bytes(data[pos + 1 : pos + 1 + count])))
            pos += 1 + count
        floor: int | None = None
        if len(data) - pos == _FLOOR.size:
            floor = _FLOOR.unpack_from(data, pos)[0]
        elif pos != len(data):
            raise ParseError("bad_length", f"{len(data) - pos} bytes after the algorithm lists")
        kij, crypt, mac, comp = lists
        return cls(AdpCode(code & _DEFINED_CODE_BITS), kij, crypt, mac, comp, protocol=protocol,
                   port=port, kp_floor=floor)

