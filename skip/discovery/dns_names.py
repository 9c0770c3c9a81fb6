"""From a SKIP name to the DNS owner name its CERT records are published under.

No SKIP draft defines owner names; next-wave.md s. 2.3 does, as project rules [PROJ]:

- **DNS-1** NSID 1 (or NSID 0 with an IPv4 address): ``d.c.b.a.in-addr.arpa.`` (RFC 1035
  s. 3.5).
- **DNS-2** NSID 3 (or NSID 0 with an IPv6 address): the 32-nibble ``ip6.arpa.`` name (RFC 3596
  s. 2.5).
- **DNS-3** NSID 4 (MD5 of a DNS name): the name itself, only when configuration gives it, and
  only if MD5 of its canonical spelling is the MKID (MD5 cannot be inverted).
- **DNS-4** NSID 5, 8, 9 and others: ``<32 hex digits of MKID>.<nsid>._skip.<domain>.`` under
  a configured search domain, off unless a domain is given (not interoperable with anyone).
- **DNS-5** outbound, a peer known by its DNS name in configuration: that name.

Everything here is pure: no resolver, no clock.
"""

from __future__ import annotations

import ipaddress

import dns.name
import dns.reversename

from skip.errors import CertificateError
from skip.pki.names import dns_name
from skip.wire.names import SkipName
from skip.wire.nsid import Nsid


def reverse_name(address: bytes) -> dns.name.Name:
    """DNS-1 / DNS-2: the in-addr.arpa. or ip6.arpa. name of a packed IPv4 or IPv6 address."""
    if len(address) not in (4, 16):
        raise CertificateError("cert_name_mismatch",
                               f"a {len(address)}-byte address has no reverse name")
    return dns.reversename.from_address(str(ipaddress.ip_address(address)))


def configured_name(text: str) -> dns.name.Name:
    """DNS-5: a peer's configured DNS name as an absolute owner name."""
    return dns.name.from_text(text.rstrip(".") + ".")


def owner_name(name: SkipName, *, address: bytes | None = None, configured: str | None = None,
               skip_domain: str | None = None) -> dns.name.Name | None:
    """The owner name to query CERT at for ``name``, or None when the DNS cannot be asked.

    ``address`` is the packet's address for NSID 0; ``configured`` the peer rule's ``dns``
    name (DNS-3, DNS-5); ``skip_domain`` turns on the hashed-name convention (DNS-4).
    A configured name whose MD5 is not an NSID 4 MKID is refused with ``cert_name_mismatch``
    (DNS-3): asking it would fetch another principal's certificate.
    """
    if name.nsid == Nsid.NONE:
        return reverse_name(address) if address is not None else None
    if name.nsid in (Nsid.IPV4, Nsid.IPV6):
        return reverse_name(name.mkid)
    if name.nsid == Nsid.MD5_DNS_NAME:
        if configured is None:
            return _hashed(name, skip_domain)
        if dns_name(configured).mkid != name.mkid:
            raise CertificateError("cert_name_mismatch", f"MD5 of the configured name "
                                   f"{configured!r} is not the NSID 4 MKID {name.mkid.hex()}")
        return configured_name(configured)
    return _hashed(name, skip_domain)


def _hashed(name: SkipName, skip_domain: str | None) -> dns.name.Name | None:
    """DNS-4: ``<hex MKID>.<nsid>._skip.<domain>.``, only under a configured domain."""
    if skip_domain is None or not name.mkid or len(name.mkid) > 31:
        return None  # a DNS label holds 63 characters: 31 bytes of hex
    return dns.name.from_text(f"{name.mkid.hex()}.{name.nsid}._skip.{skip_domain.rstrip('.')}.")
