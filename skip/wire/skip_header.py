"""The SKIP header (IP protocol 57), draft-ietf-ipsec-skip-06 section 1.8.

Layout: a fixed 12-byte part ``Ver|Rsvd, Source NSID, Dest NSID, Next Header, n (uint32),
Kij Alg, Crypt Alg, MAC Alg, Comp Alg``, then, packed without padding, the encrypted Kp, the
source MKID (if Source NSID != 0) and the destination MKID (if Dest NSID != 0).

The header is not self-describing: the length of the encrypted Kp follows from the algorithm
bytes and the MKID lengths from the NSIDs. The wire layer does not import the crypto layer, so
the caller passes the algorithm knowledge in as ``ekp_length`` (normally
:func:`skip.crypto.skip_numbers.header_ekp_length`), and the NSID knowledge as ``nsids``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from skip.errors import ParseError
from skip.wire.nsid import STANDARD_NSIDS, NsidTable

IP_PROTOCOL_SKIP = 57
SKIP_SPI = 1
FIXED = struct.Struct("!BBBBIBBBB")
FIXED_SIZE = FIXED.size  # 12

#: (version, kij_alg, crypt_alg, mac_alg) -> EKp bytes; raises ParseError with a reason code
#: (bad_version, unsupported_kij_alg, ...) when the numbers are unknown.
EkpLength = Callable[[int, int, int, int], int]


@dataclass(frozen=True, slots=True)
class SkipHeader:
    version: int
    src_nsid: int
    dst_nsid: int
    next_header: int
    n: int
    kij_alg: int
    crypt_alg: int
    mac_alg: int
    comp_alg: int = 0
    ekp: bytes = b""
    src_mkid: bytes = b""
    dst_mkid: bytes = b""
    reserved: int = 0  # the Rsvd nibble: 0 on send, ignored on receive

    def __post_init__(self) -> None:
        for name in ("src_nsid", "dst_nsid", "next_header", "kij_alg", "crypt_alg", "mac_alg",
                     "comp_alg"):
            if not 0 <= getattr(self, name) <= 0xFF:
                raise ValueError(f"{name} must fit one byte")
        if not (0 <= self.version <= 0xF and 0 <= self.reserved <= 0xF):
            raise ValueError("version and reserved are 4-bit fields")
        if not 0 <= self.n <= 0xFFFFFFFF:
            raise ValueError("n is a uint32")
        if bool(self.src_mkid) != bool(self.src_nsid) or bool(self.dst_mkid) != bool(
            self.dst_nsid
        ):
            raise ValueError("an MKID is present exactly when its NSID is non-zero")

    @property
    def length(self) -> int:
        return FIXED_SIZE + len(self.ekp) + len(self.src_mkid) + len(self.dst_mkid)

    def encode(self) -> bytes:
        return (
            FIXED.pack(
                (self.version << 4) | self.reserved,
                self.src_nsid,
                self.dst_nsid,
                self.next_header,
                self.n,
                self.kij_alg,
                self.crypt_alg,
                self.mac_alg,
                self.comp_alg,
            )
            + self.ekp
            + self.src_mkid
            + self.dst_mkid
        )

    @classmethod
    def parse_from(
        cls,
        data: bytes | memoryview,
        offset: int,
        ekp_length: EkpLength,
        nsids: NsidTable = STANDARD_NSIDS,
    ) -> tuple[SkipHeader, int]:
        """Decode the header at ``offset``; returns it and the offset of what follows."""
        end, ekp_len, src_len, dst_len = measure(data, offset, ekp_length, nsids)
        b0, src_nsid, dst_nsid, nxt, n, kij, crypt, mac, comp = FIXED.unpack_from(data, offset)
        pos = offset + FIXED_SIZE
        ekp = bytes(data[pos : pos + ekp_len])
        pos += ekp_len
        src = bytes(data[pos : pos + src_len])
        pos += src_len
        dst = bytes(data[pos : pos + dst_len])
        header = cls(b0 >> 4, src_nsid, dst_nsid, nxt, n, kij, crypt, mac, comp, ekp, src, dst,
                     b0 & 0xF)
        return header, end

    @classmethod
    def parse(
        cls, data: bytes | memoryview, ekp_length: EkpLength, nsids: NsidTable = STANDARD_NSIDS
    ) -> SkipHeader:
        """Decode a buffer that holds exactly one SKIP header."""
        header, end = cls.parse_from(data, 0, ekp_length, nsids)
        if end != len(data):
            raise ParseError("bad_length", f"{len(data) - end} bytes after the SKIP header")
        return header


def measure(
    data: bytes | memoryview, offset: int, ekp_length: EkpLength, nsids: NsidTable = STANDARD_NSIDS
) -> tuple[int, int, int, int]:
    """(end, EKp length, source MKID length, dest MKID length) of the header at ``offset``.

    The hot path uses this instead of building a dataclass: it is all the receiver needs to
    slice the header out and look it up in its cache.
    """
    if offset < 0 or len(data) - offset < FIXED_SIZE:
        raise ParseError("truncated", "SKIP header shorter than its 12 fixed bytes")
    b0, src_nsid, dst_nsid, _nxt, _n, kij, crypt, mac, _comp = FIXED.unpack_from(data, offset)
    ekp_len = ekp_length(b0 >> 4, kij, crypt, mac)
    src_len = nsids.mkid_length(src_nsid)
    dst_len = nsids.mkid_length(dst_nsid)
    end = offset + FIXED_SIZE + ekp_len + src_len + dst_len
    if end > len(data):
        raise ParseError("truncated", "SKIP header ends before its EKp / MKIDs")
    return end, ekp_len, src_len, dst_len
