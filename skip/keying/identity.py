"""Who is talking: local principals (our DH private values) and peers (their public values).

SKIP keys a packet by *principal*, not by host: a node may hold several principals, each with
its own DH key pair and Master Key-ID (draft-06 section 1.7), and a principal named by an MKID
is looked up by that MKID and never by the IP address. Both classes are plain data that can be
built from raw DH values, so the engine runs without certificates or files; the PKI layer
produces the same objects from certificates.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from skip.crypto.dh import GROUPS, DHGroup, PreparedPrivate
from skip.errors import CertificateError, ConfigError, KeyingError
from skip.keying.suite import Suite
from skip.pki.validation import PeerKey
from skip.wire.nsid import STANDARD_NSIDS, Nsid, NsidTable


def packed_addresses(addresses: Iterable[str | bytes]) -> frozenset[bytes]:
    """IP addresses as their 4- or 16-byte network form (what packets carry)."""
    out = set()
    for a in addresses:
        if isinstance(a, bytes) and len(a) in (4, 16):
            out.add(a)
        else:
            out.add(ipaddress.ip_address(a).packed)
    return frozenset(out)


def group(name: str) -> DHGroup:
    try:
        return GROUPS[name]
    except KeyError:
        raise KeyingError("bad_group", f"unknown DH group {name!r}") from None


def _check_name(nsid: int, mkid: bytes, nsids: NsidTable) -> None:
    if (nsid == Nsid.NONE) != (not mkid):
        raise KeyingError("bad_header", "an MKID is given exactly when its NSID is non-zero")
    nsids.check(nsid, mkid)


@dataclass(frozen=True, eq=False)
class LocalIdentity:
    """One local principal: a DH private value per group, and how it is named on the wire.

    ``nsid``/``mkid`` go into the Source MKID of what it sends (0/empty: the source address
    names it); ``addresses`` are the IP addresses it sends from and answers on.
    """

    name: str
    keys: Mapping[str, bytes]  # DH group name -> private value
    nsid: int = 0
    mkid: bytes = b""
    addresses: frozenset[bytes] = frozenset()
    publics: Mapping[str, bytes] = field(init=False)
    #: the private values made ready for agreement once (DHGroup.prepare), not per packet
    prepared: Mapping[str, PreparedPrivate] = field(init=False, repr=False)

    @classmethod
    def create(cls, name: str, keys: Mapping[str, bytes], *, nsid: int = 0, mkid: bytes = b"",
               addresses: Iterable[str | bytes] = (),
               nsids: NsidTable = STANDARD_NSIDS) -> LocalIdentity:
        _check_name(nsid, mkid, nsids)
        for g in keys:
            group(g)
        return cls(name, MappingProxyType(dict(keys)), nsid, bytes(mkid),
                   packed_addresses(addresses))

    def __post_init__(self) -> None:
        prepared = {g: group(g).prepare(priv) for g, priv in self.keys.items()}
        publics = {g: group(g).prepared_public(k) for g, k in prepared.items()}
        object.__setattr__(self, "prepared", MappingProxyType(prepared))
        object.__setattr__(self, "publics", MappingProxyType(publics))

    def private(self, group_name: str) -> bytes:
        try:
            return self.keys[group_name]
        except KeyError:
            raise KeyingError(
                "bad_group", f"identity {self.name!r} has no key in group {group_name!r}"
            ) from None


@dataclass(frozen=True, eq=False)
class Peer:
    """A remote principal: its certified (or configured) DH public value and its names.

    ``nsid``/``mkid`` name it in headers (its Source MKID when it sends, our Destination MKID
    when we send to it); ``addresses`` map IP addresses to it (needed for NSID 0 and to find the
    peer of an outgoing packet). ``suite`` is the per-peer algorithm choice (None: the
    endpoint's default for the group); ``pre06`` selects the draft-04/05 E_kp/A_kp for peers
    from the 1995 interop builds. ``nomadic``: the peer's outer address is not configured but
    learned from its authenticated packets (tunnel mode, modern profile, named by MKID; see
    docs/keying.md, "Nomadic peers"). ``principal`` names the certified holder of the public
    value (skipd: the certificate's fingerprint; default: ``name``): several peers, e.g. one
    host's tunnel and transport rules, may share a public value only if they share it.
    ``not_after``: when the public value stops being believed (its certificate chain's
    earliest expiry); the endpoint stops using it then, while running. ``local``: the name of
    the local principal to speak as toward this peer (default: the packet's source address
    decides, else the first principal with a key in the peer's group). ``pfs``: ``off`` (the
    long-term key alone), ``preferred`` (an ephemeral key once one is established, the
    long-term key meanwhile) or ``required`` (nothing is sent under the long-term key;
    packets wait for the ephemeral exchange, docs/pfs.md).
    """

    name: str
    group: str
    public: bytes
    nsid: int = 0
    mkid: bytes = b""
    addresses: frozenset[bytes] = frozenset()
    suite: Suite | None = None
    pre06: bool = False
    nomadic: bool = False
    principal: str = ""
    not_after: float | None = None
    local: str = ""
    pfs: str = "off"

    @classmethod
    def create(cls, name: str, group_name: str, public: bytes, *, nsid: int = 0,
               mkid: bytes = b"", addresses: Iterable[str | bytes] = (), suite: Suite | None = None,
               pre06: bool = False, nomadic: bool = False, principal: str | None = None,
               not_after: float | None = None, local: str = "", pfs: str = "off",
               nsids: NsidTable = STANDARD_NSIDS) -> Peer:
        """Validate and build; a bad public value is refused here, before any DH work."""
        _check_name(nsid, mkid, nsids)
        if nomadic and not nsid:
            # with NSID 0 the source address *is* the peer's name: it cannot move
            raise ConfigError("config_invalid", f"nomadic peer {name!r} needs an NSID/MKID")
        if pfs not in ("off", "preferred", "required"):
            raise ConfigError("config_invalid", f"pfs must be off, preferred or required: "
                              f"{pfs!r}")
        group(group_name).validate_public(public)
        return cls(name, group_name, bytes(public), nsid, bytes(mkid),
                   packed_addresses(addresses), suite, pre06, nomadic,
                   name if principal is None else principal, not_after, local, pfs)

    @classmethod
    def from_peer_key(cls, name: str, key: PeerKey, *, nsid: int | None = None,
                      suite: Suite | None = None, pre06: bool = False) -> Peer:
        """A peer from a validated certificate or UDH value (:mod:`skip.pki`).

        Its IPv4/IPv6 names become its addresses. It is named on the wire by the name of
        NSID ``nsid`` it answers to; by default by its address (NSID 0) when it has one, else
        by its first other name (NSID 8 for a UDH value).
        """
        addresses = [n.mkid for n in key.names if n.nsid in (Nsid.IPV4, Nsid.IPV6)]
        if nsid is None:
            nsid = Nsid.NONE if addresses else key.names[0].nsid if key.names else Nsid.NONE
        mkid = b""
        if nsid != Nsid.NONE:
            match = next((n.mkid for n in key.names if n.nsid == nsid), None)
            if match is None:
                raise CertificateError("cert_name_mismatch", f"the key has no NSID {nsid} name")
            mkid = match
        return cls.create(name, key.group.name, key.public_value, nsid=nsid, mkid=mkid,
                          addresses=addresses, suite=suite, pre06=pre06,
                          not_after=float(key.not_after))
