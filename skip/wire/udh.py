"""UDH: the unsigned Diffie-Hellman public value (draft-ietf-ipsec-skip-udh-01 section 2).

Layout, all big-endian, packed without padding::

    Not Valid Before  uint32   integer part of an NTP timestamp (seconds since 1900-01-01 UTC)
    Not Valid After   uint32   same
    PrimeLen          uint16   then p, PrimeLen bytes
    GenLen            uint16   then g, GenLen bytes
    PublicValueLen    uint16   then g^i mod p, PublicValueLen bytes

"All variable-length fields must begin with a non-zero byte": every number has exactly one
encoding. The parser enforces that, so ``parse(b).encode() == b`` for every accepted ``b``,
which matters because the holder's name (NSID 8) is the MD5 of these exact bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from skip.errors import ParseError

NTP_UNIX_OFFSET = 2_208_988_800
"""Seconds from the NTP epoch (1900-01-01) to the POSIX epoch (1970-01-01)."""

_TIMES = struct.Struct("!II")
_LEN = struct.Struct("!H")
_MAX_FIELD = 0xFFFF


def ntp_seconds(unix_time: float) -> int:
    """The uint32 NTP seconds of a POSIX time (era 0: until 2036-02-07)."""
    value = int(unix_time) + NTP_UNIX_OFFSET
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError("time outside NTP era 0 (1900-2036) cannot be encoded in UDH")
    return value


def unix_seconds(ntp: int) -> int:
    """The POSIX time of uint32 NTP seconds (era 0, as the 1996 draft assumes)."""
    return ntp - NTP_UNIX_OFFSET


def _magnitude(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8)


@dataclass(frozen=True, slots=True)
class UnsignedDH:
    """One UDH value: validity in NTP seconds, DH parameters and public value as integers."""

    not_before: int
    not_after: int
    p: int
    g: int
    public_value: int

    def __post_init__(self) -> None:
        for name in ("not_before", "not_after"):
            if not 0 <= getattr(self, name) <= 0xFFFFFFFF:
                raise ValueError(f"{name} is a uint32 NTP seconds value")
        for name in ("p", "g", "public_value"):
            value = getattr(self, name)
            if value <= 0 or value.bit_length() > 8 * _MAX_FIELD:
                raise ValueError(f"{name} must be positive and fit {_MAX_FIELD} bytes")

    def encode(self) -> bytes:
        parts = [_TIMES.pack(self.not_before, self.not_after)]
        for value in (self.p, self.g, self.public_value):
            raw = _magnitude(value)
            parts += (_LEN.pack(len(raw)), raw)
        return b"".join(parts)

    @classmethod
    def parse(cls, data: bytes | memoryview) -> UnsignedDH:
        """Decode exactly one UDH value; anything malformed or non-canonical is a ParseError."""
        if len(data) < _TIMES.size:
            raise ParseError("truncated", "UDH shorter than its two validity times")
        not_before, not_after = _TIMES.unpack_from(data, 0)
        pos = _TIMES.size
        values = []
        for name in ("prime", "generator", "public value"):
            if len(data) - pos < _LEN.size:
                raise ParseError("truncated", f"UDH ends before the {name} length")
            (length,) = _LEN.unpack_from(data, pos)
            pos += _LEN.size
            if length == 0:
                raise ParseError("bad_length", f"UDH {name} has length 0")
            if len(data) - pos < length:
                raise ParseError("truncated", f"UDH {name} declares {length} bytes")
            if data[pos] == 0:
                raise ParseError("bad_header", f"UDH {name} begins with a zero byte")
            values.append(int.from_bytes(data[pos : pos + length]))
            pos += length
        if pos != len(data):
            raise ParseError("bad_length", f"{len(data) - pos} bytes after the UDH value")
        p, g, y = values
        return cls(not_before, not_after, p, g, y)
