"""SA lookup support: which protocol and SPI a received datagram names, without an SA."""

from __future__ import annotations

import struct

from skip.errors import ParseError
from skip.wire.ip import PROTO_AH, PROTO_ESP, BytesLike, locate_upper

_U32 = struct.Struct("!I")


def peek(packet: BytesLike, *, shim_len: int = 0,
         protocol: int | None = None) -> tuple[int, int]:
    """``(protocol, spi)`` of the AH/ESP header in a received datagram.

    Without a shim the protocol is read from the IP header chain.  After a shim of
    ``shim_len`` bytes the caller says which ``protocol`` follows (it parsed the shim).
    The SPI sits at byte 0 of ESP and byte 4 of AH, in both generations.  Checks only what
    it reads; ``unprotect`` validates the rest.
    """
    _, _, offset, found = locate_upper(packet)
    if shim_len:
        if protocol is None:
            raise ParseError("unsupported_protocol", "after a shim, say which protocol follows")
        found, offset = protocol, offset + shim_len
    if found not in (PROTO_ESP, PROTO_AH):
        raise ParseError("unsupported_protocol", f"protocol {found} is neither ESP nor AH")
    at = offset + (4 if found == PROTO_AH else 0)
    if at + 4 > len(packet):
        raise ParseError("truncated", "no room for an SPI")
    return found, _U32.unpack_from(packet, at)[0]
