"""Classic pcap encoding of raw IP packets (LINKTYPE_RAW).

Used to hand packets the engine wrote to outside dissectors (tshark) and to save captures
from the demo; bytes only, so the caller decides where they go.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

LINKTYPE_RAW = 101  # packets start with an IPv4 or IPv6 header
_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
_MAGIC_USEC = 0xA1B2C3D4


def encode_pcap(packets: Iterable[bytes], *, start: float = 0.0, step: float = 0.001) -> bytes:
    """A complete pcap file holding ``packets``, timestamped ``start + k*step`` seconds."""
    out = [_GLOBAL.pack(_MAGIC_USEC, 2, 4, 0, 0, 65535, LINKTYPE_RAW)]
    for k, pkt in enumerate(packets):
        usec_total = round((start + k * step) * 1_000_000)
        sec, usec = divmod(usec_total, 1_000_000)
        out.append(_RECORD.pack(sec, usec, len(pkt), len(pkt)))
        out.append(bytes(pkt))
    return b"".join(out)
