"""Classic pcap encoding of raw IP packets (LINKTYPE_RAW).

Used to hand packets the engine wrote to outside dissectors (tshark) and to save captures
from the demo; bytes only, so the caller decides where they go.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable

from skip.errors import ParseError

LINKTYPE_RAW = 101  # packets start with an IPv4 or IPv6 header
_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
_MAGIC_USEC = 0xA1B2C3D4
_SNAPLEN = 65535  # a raw IP packet (without jumbogram) is never longer
_MAX_SECONDS = 2**32 - 1  # ts_sec is an unsigned 32-bit field: 1970 .. 2106


def encode_pcap(packets: Iterable[bytes], *, start: float = 0.0, step: float = 0.001) -> bytes:
    """A complete pcap file holding ``packets``, timestamped ``start + k*step`` seconds.

    A timestamp the record header cannot hold (negative, NaN, infinite, after 2106) is
    ``bad_header`` and a packet longer than the snap length ``bad_length``; struct.error and
    ValueError used to leak out instead.
    """
    out = [_GLOBAL.pack(_MAGIC_USEC, 2, 4, 0, 0, _SNAPLEN, LINKTYPE_RAW)]
    for k, pkt in enumerate(packets):
        when = start + k * step
        if not (math.isfinite(when) and 0 <= when < _MAX_SECONDS + 1):
            raise ParseError(
                "bad_header", f"pcap timestamp {when!r} is not 0 .. 2**32 seconds (1970-2106)"
            )
        sec, usec = divmod(round(when * 1_000_000), 1_000_000)
        if sec > _MAX_SECONDS:  # rounding up the last microsecond
            raise ParseError("bad_header", f"pcap timestamp {when!r} is after 2106")
        if len(pkt) > _SNAPLEN:
            raise ParseError(
                "bad_length", f"a {len(pkt)}-byte packet exceeds the pcap snap length {_SNAPLEN}"
            )
        out.append(_RECORD.pack(sec, usec, len(pkt), len(pkt)))
        out.append(bytes(pkt))
    return b"".join(out)
