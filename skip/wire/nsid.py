"""SKIP name spaces (NSIDs) and the length of the Master Key-ID each one implies.

The SKIP header is not self-describing: the MKID fields carry no length, so a receiver must
know every NSID it is sent (draft-ietf-ipsec-skip-06 section 1.7, 4.3). This module is that
knowledge, as data. NSIDs 250-255 are private ("local uniqueness only"), so their lengths are
supplied by configuration through :meth:`NsidTable.with_private`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import IntEnum
from types import MappingProxyType

from skip.errors import ParseError


class Nsid(IntEnum):
    """The name spaces assigned by draft-06 section 4.3."""

    NONE = 0  # MKID absent: the IP address is the key identifier
    IPV4 = 1
    POSIX_UID = 2
    IPV6 = 3
    MD5_DNS_NAME = 4
    MD5_DN = 5
    MD5_ASCII = 6
    MAC_802 = 7
    MD5_DH_PUBLIC = 8
    MD5_RFC822 = 9
    MD5_BANK_ACCOUNT = 10
    MD5_NIS_NAME = 11


#: MKID length in bytes for each assigned NSID (draft-06 section 4.3).
ASSIGNED_MKID_LENGTHS: MappingProxyType[int, int] = MappingProxyType(
    {
        Nsid.NONE: 0,
        Nsid.IPV4: 4,
        Nsid.POSIX_UID: 4,
        Nsid.IPV6: 16,
        Nsid.MD5_DNS_NAME: 16,
        Nsid.MD5_DN: 16,
        Nsid.MD5_ASCII: 16,
        Nsid.MAC_802: 6,
        Nsid.MD5_DH_PUBLIC: 16,
        Nsid.MD5_RFC822: 16,
        Nsid.MD5_BANK_ACCOUNT: 16,
        Nsid.MD5_NIS_NAME: 16,
    }
)

PRIVATE_NSIDS = range(250, 256)
_MAX_MKID = 255  # a sanity bound for private name spaces, not a protocol number


@dataclass(frozen=True)
class NsidTable:
    """NSID -> MKID length, the assigned ones plus whatever private ones were configured."""

    lengths: MappingProxyType[int, int] = field(default_factory=lambda: ASSIGNED_MKID_LENGTHS)

    def with_private(self, nsid: int, mkid_length: int) -> NsidTable:
        """A copy that also knows private NSID ``nsid`` (250-255) with ``mkid_length`` bytes."""
        if nsid not in PRIVATE_NSIDS:
            raise ValueError(f"NSID {nsid} is not in the private range 250-255")
        if not 1 <= mkid_length <= _MAX_MKID:
            raise ValueError(f"MKID length {mkid_length} out of range 1-{_MAX_MKID}")
        return NsidTable(MappingProxyType({**self.lengths, nsid: mkid_length}))

    def mkid_length(self, nsid: int) -> int:
        """MKID bytes for ``nsid``; an NSID nobody told us about makes the header unparseable."""
        try:
            return self.lengths[nsid]
        except KeyError:
            raise ParseError("unknown_nsid", f"NSID {nsid}") from None

    def check(self, nsid: int, mkid: bytes) -> None:
        """Refuse an MKID whose length does not match its NSID (used when building headers)."""
        if len(mkid) != self.mkid_length(nsid):
            raise ParseError(
                "bad_length", f"NSID {nsid} needs a {self.mkid_length(nsid)}-byte MKID"
            )


STANDARD_NSIDS = NsidTable()


def address_mkid(address: str | bytes) -> tuple[int, bytes]:
    """(NSID, MKID) naming an IPv4 or IPv6 address: NSID 1 or 3, the address in network order."""
    ip = ipaddress.ip_address(address)
    return (Nsid.IPV4 if ip.version == 4 else Nsid.IPV6), ip.packed
