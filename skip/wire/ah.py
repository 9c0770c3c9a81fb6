"""The IP Authentication Header in its two generations.

RFC 1826 (1995, what SKIP draft-06 puts behind its header with SPI 1)::

    Next Header(8) | Length(8) | Reserved(16) | SPI(32) | Authentication Data (Length words)

``Length`` counts the Authentication Data only, in 32-bit words; there is no sequence number.

RFC 4302 (and 2402)::

    Next Header(8) | Payload Len(8) | Reserved(16) | SPI(32) | Sequence Number(32) | ICV

``Payload Len`` is the whole AH length in 32-bit words minus 2.  In both forms the ICV field
holds the algorithm's ICV plus zero padding to 32 bits (IPv4) or 64 bits (IPv6) of total AH
length (RFC 4302 section 3.3.3.2.1); :func:`icv_field_size` computes that.

:class:`AHHeader` is the control-path view; the engine uses :func:`parse_fields` and
precomputed :class:`struct.Struct` objects on the hot path.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from skip.errors import ParseError
from skip.wire.ip import BytesLike

#: Fixed part before the ICV: RFC 1826 (no sequence) and RFC 4302.
FIXED_RFC1826 = 8
FIXED_RFC4302 = 12

HEAD_RFC1826 = struct.Struct("!BBHI")
HEAD_RFC4302 = struct.Struct("!BBHII")


def fixed_size(sequence: bool) -> int:
    return FIXED_RFC4302 if sequence else FIXED_RFC1826


def icv_field_size(icv_size: int, sequence: bool, ipv6: bool) -> int:
    """Bytes of the ICV field: the ICV padded so the AH length aligns to 4 (IPv4) or 8 (IPv6)."""
    align = 8 if ipv6 else 4
    return icv_size + (-(fixed_size(sequence) + icv_size) % align)


def length_byte(icv_field: int, sequence: bool) -> int:
    """The value of the second byte for an ICV field of ``icv_field`` bytes."""
    if sequence:
        return (FIXED_RFC4302 + icv_field) // 4 - 2
    return icv_field // 4


def total_length(length: int, sequence: bool) -> int:
    """Whole AH length in bytes from its second byte."""
    return (length + 2) * 4 if sequence else FIXED_RFC1826 + 4 * length


def parse_fields(data: BytesLike, offset: int, sequence: bool) -> tuple[int, int, int, int]:
    """``(next_header, spi, sequence_or_0, end)`` of the AH at ``offset``; bounded."""
    fixed = fixed_size(sequence)
    if offset + fixed > len(data):
        raise ParseError("truncated", f"AH header needs {fixed} bytes")
    if sequence:
        nh, length, _, spi, seq = HEAD_RFC4302.unpack_from(data, offset)
    else:
        nh, length, _, spi = HEAD_RFC1826.unpack_from(data, offset)
        seq = 0
    end = offset + total_length(length, sequence)
    if end < offset + fixed:
        raise ParseError("bad_length", f"AH Payload Len {length} is shorter than the header")
    if end > len(data):
        raise ParseError("truncated", f"AH claims {end - offset} bytes, {len(data) - offset} left")
    return nh, spi, seq, end


@dataclass(frozen=True, slots=True)
class AHHeader:
    """An AH header; ``sequence`` is None for the RFC 1826 form.  ``icv`` is the whole ICV
    field, padding included."""

    next_header: int
    spi: int
    icv: bytes
    sequence: int | None = None
    reserved: int = 0

    @classmethod
    def parse_from(
        cls, data: BytesLike, offset: int = 0, *, sequence: bool
    ) -> tuple[AHHeader, int]:
        nh, spi, seq, end = parse_fields(data, offset, sequence)
        reserved = (data[offset + 2] << 8) | data[offset + 3]
        fixed = fixed_size(sequence)
        icv = bytes(data[offset + fixed : end])
        return cls(nh, spi, icv, seq if sequence else None, reserved), end

    def encode(self) -> bytes:
        if len(self.icv) % 4:
            raise ParseError("bad_length", f"unaligned AH ICV field ({len(self.icv)} bytes)")
        seq = self.sequence is not None
        length = length_byte(len(self.icv), seq)
        if not 0 <= length <= 255:
            raise ParseError("bad_length", f"AH ICV field of {len(self.icv)} bytes")
        if seq:
            head = HEAD_RFC4302.pack(
                self.next_header, length, self.reserved, self.spi, self.sequence
            )
        else:
            head = HEAD_RFC1826.pack(self.next_header, length, self.reserved, self.spi)
        return head + self.icv
