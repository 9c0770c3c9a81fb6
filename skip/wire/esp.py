"""ESP framing: the clear header and the encrypted trailer, for both generations.

RFC 1827 + RFC 1829 (SKIP era, no sequence number)::

    SPI(32) | IV | E[ Payload | Padding | Pad Length(8) | Payload Type(8) ]

RFC 4303::

    SPI(32) | Sequence Number(32) | IV | E[ Payload | Padding | Pad Length | Next Header ] | ICV

Padding: both generations pad so that payload + padding + 2 fills whole cipher blocks (and at
least 4-byte alignment, RFC 4303 section 2.4).  RFC 4303 fills the padding with 1, 2, 3, ...
and the receiver checks it; RFC 1829 leaves the content unspecified and the receiver must not
look at it, so :func:`split_trailer` takes ``check_pattern``.  This module sends the 1, 2, 3
pattern in both generations: RFC 1829 allows any content, and one pattern keeps one code path.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from skip.errors import IntegrityError, ParseError
from skip.wire.ip import BytesLike

HEAD_RFC1827 = struct.Struct("!I")
HEAD_RFC4303 = struct.Struct("!II")

#: ``PADDING[n]`` is the RFC 4303 default padding of ``n`` bytes: 1, 2, ..., n.
PADDING: tuple[bytes, ...] = tuple(bytes(range(1, n + 1)) for n in range(256))


def header_size(sequence: bool) -> int:
    return 8 if sequence else 4


def pad_length(payload_len: int, block: int) -> int:
    """Minimal padding so that ``payload + padding + 2`` is a multiple of ``max(block, 4)``."""
    return -(payload_len + 2) % max(block, 4)


def trailer(pad: int, next_header: int) -> bytes:
    """Padding, Pad Length and Next Header for ``pad`` padding bytes."""
    return PADDING[pad] + bytes((pad, next_header))


def split_trailer(plaintext: BytesLike, check_pattern: bool) -> tuple[int, int]:
    """``(payload_end, next_header)`` of a decrypted ESP payload.

    Raises ``IntegrityError("bad_padding")`` if the pad length does not fit or, with
    ``check_pattern`` (RFC 4303), the padding is not 1, 2, 3, ...
    """
    n = len(plaintext)
    if n < 2:
        raise IntegrityError("bad_padding", f"decrypted ESP payload of {n} bytes has no trailer")
    pad = plaintext[n - 2]
    end = n - 2 - pad
    if end < 0:
        raise IntegrityError("bad_padding", f"pad length {pad} exceeds the {n - 2} payload bytes")
    if check_pattern and plaintext[end : n - 2] != PADDING[pad]:
        raise IntegrityError("bad_padding", "ESP padding is not 1, 2, 3, ...")
    return end, plaintext[n - 1]


def parse_fields(data: BytesLike, offset: int, sequence: bool) -> tuple[int, int, int]:
    """``(spi, sequence_or_0, payload_offset)`` of the ESP header at ``offset``; bounded."""
    if sequence:
        if offset + 8 > len(data):
            raise ParseError("truncated", "ESP header needs 8 bytes")
        spi, seq = HEAD_RFC4303.unpack_from(data, offset)
        return spi, seq, offset + 8
    if offset + 4 > len(data):
        raise ParseError("truncated", "ESP header needs 4 bytes")
    return HEAD_RFC1827.unpack_from(data, offset)[0], 0, offset + 4


@dataclass(frozen=True, slots=True)
class ESPHeader:
    """The clear ESP header; ``sequence`` is None in the RFC 1827 form.  The rest of the
    packet is opaque without the SA (IV and ICV sizes come from its algorithms)."""

    spi: int
    sequence: int | None = None

    @classmethod
    def parse_from(
        cls, data: BytesLike, offset: int = 0, *, sequence: bool
    ) -> tuple[ESPHeader, int]:
        spi, seq, end = parse_fields(data, offset, sequence)
        return cls(spi, seq if sequence else None), end

    def encode(self) -> bytes:
        if self.sequence is None:
            return HEAD_RFC1827.pack(self.spi)
        return HEAD_RFC4303.pack(self.spi, self.sequence)


@dataclass(frozen=True, slots=True)
class ESPTrailer:
    """The decrypted trailer, for tools and tests that want to show it."""

    padding: bytes
    next_header: int

    @classmethod
    def parse(cls, plaintext: bytes, *, check_pattern: bool = True) -> tuple[bytes, ESPTrailer]:
        """Split a decrypted payload into ``(payload, trailer)``."""
        end, nh = split_trailer(plaintext, check_pattern)
        return plaintext[:end], cls(bytes(plaintext[end:-2]), nh)

    def encode(self) -> bytes:
        return self.padding + bytes((len(self.padding), self.next_header))
