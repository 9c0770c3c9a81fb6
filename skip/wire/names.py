"""The SKIP name of a principal: one type for the whole project.

Draft-06 s. 1.7 names a principal by a name space id (NSID) and a Master Key-ID (MKID) in
that space; CDP (draft-06 s. 5.2) carries it as NSID || MKID, with NSID 1/3 and the IP
address for a principal a packet names only by address (NSID 0). Certificates answer to
names (:mod:`skip.pki.names` derives them), the daemon's rules are written with them, the
keying engine asks for certificates by them, and the pending queue and policy tables are
keyed by them: so they compare by NSID and MKID only, and ``label`` (what the MKID was made
from: an address, a DNS name, a subject) is for people.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from skip.wire.nsid import Nsid


@dataclass(frozen=True, order=True)
class SkipName:
    nsid: int = 0
    mkid: bytes = b""
    label: str = field(default="", compare=False)

    @classmethod
    def of_address(cls, packed: bytes) -> SkipName:
        """The name an IPv4 or IPv6 address answers to (NSID 1 or 3)."""
        nsid = Nsid.IPV4 if len(packed) == 4 else Nsid.IPV6
        return cls(int(nsid), bytes(packed), str(ipaddress.ip_address(packed)))

    @classmethod
    def of_header(cls, nsid: int, mkid: bytes, address: bytes) -> SkipName:
        """The name of a principal as a SKIP header gives it: its MKID, or for NSID 0 the
        address the packet carries (the CDP name to ask for)."""
        return cls(nsid, bytes(mkid)) if nsid else cls.of_address(address)

    def encode(self) -> bytes:
        """The CDP wire form: NSID || MKID."""
        return bytes((self.nsid,)) + self.mkid

    def as_json(self) -> dict[str, object]:
        return {"nsid": self.nsid, "mkid": self.mkid.hex(), "label": self.label}

    def __str__(self) -> str:
        if self.nsid in (Nsid.IPV4, Nsid.IPV6) and len(self.mkid) in (4, 16):
            return f"nsid {self.nsid} {ipaddress.ip_address(self.mkid)}"
        return f"nsid {self.nsid} mkid {self.mkid.hex()}" if self.nsid else "nsid 0 (address)"
