"""The Internet checksum (RFC 1071): IPv4 headers, ICMP, ICMPv6 and SKIP ICMP all use it.

One implementation for the whole tree. The per-packet engine path does not call it: it keeps
two inlined forms in :mod:`skip.wire.ip` (:func:`~skip.wire.ip.ipv4_sum` and
:func:`~skip.wire.ip.finish_ipv4_header`) built on the same identity, because a function call
per packet is measurable there.
"""

from __future__ import annotations

BytesLike = bytes | bytearray | memoryview


def internet_checksum(data: BytesLike, start: int = 0, end: int | None = None) -> int:
    """The checksum of ``data[start:end]``; over bytes that hold their own correct checksum
    field it is 0.  An odd length is padded with a zero byte, as RFC 1071 says.

    Computed through one big integer instead of a Python loop over 16-bit words: a base-65536
    number modulo 0xFFFF is the sum of its digits modulo 0xFFFF (65536 = 1 mod 0xFFFF), which
    is the one's-complement sum; it is several times faster than ``struct.unpack`` plus
    ``sum``, and the gap grows with the length.
    """
    chunk = data[start:end]
    total = int.from_bytes(chunk, "big")
    if len(chunk) & 1:
        total <<= 8  # the zero pad byte: the last byte is the high half of its word
    total %= 0xFFFF
    # A non-zero multiple of 0xFFFF is one's-complement "negative zero": the sum is 0xFFFF.
    if total == 0 and any(chunk):
        total = 0xFFFF
    return ~total & 0xFFFF
