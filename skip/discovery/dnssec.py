"""Local DNSSEC validation of a CERT lookup, sans-I/O: from a trust anchor and the RRsets a
lookup gathered to **secure**, **insecure** or **bogus** at an injected ``now``.

Requirements are next-wave.md part 2 (DNS-n):

- **DNS-20** the chain walk of RFC 4035 s. 5: the anchor's DS (or DNSKEY) authenticates the
  anchor zone's DNSKEY RRset; at each zone cut below it a signed DS RRset authenticates the
  child's DNSKEY RRset; the answer (or its denial) must be signed by the deepest zone reached.
  dnspython checks one signature over one RRset (``dns.dnssec.validate_rrsig``) and computes DS
  digests (``dns.dnssec.make_ds``) and NSEC3 hashes; the walk and the outcome are here.
- **DNS-21** every RRSIG relied on passes RFC 4035 s. 5.3.1 before any cryptography: same owner
  and class as the RRset, signer = the zone being validated, type covered, labels no more than
  the owner's, inception <= now <= expiration, key tag and algorithm of a DNSKEY with the
  zone-key flag (and not revoked).
- **DNS-22** authenticated denial: NSEC (RFC 4035 s. 5.4) for NODATA, NXDOMAIN and an unsigned
  delegation; NSEC3 (RFC 5155) matching a hashed name (NODATA, unsigned delegation) or the
  closest encloser proof of s. 8.4 (NXDOMAIN, opt-out spans refused), with more iterations than
  :attr:`AlgorithmPolicy.max_nsec3_iterations` treated as insecure (RFC 9276), never as a proof.
  Not handled, so bogus: wildcard answers in NSEC3 zones, opt-out delegations, CNAME chains.
- **DNS-23** algorithm policy of RFC 8624: RSASHA256/512, ECDSA P-256/P-384, Ed25519, Ed448 are
  validated; RSAMD5, DSA and GOST never; SHA-1 based signatures and DS digests only if
  :attr:`AlgorithmPolicy.allow_sha1`. A delegation whose DS RRset names only algorithms this
  policy cannot validate is insecure (RFC 4035 s. 5.2), not bogus.
- **DNS-25** the outcome: secure, insecure (a provably unsigned delegation), bogus (anything
  else: a bad, expired or missing signature, a missing link, an unproven absence).

The gathered RRsets are an :class:`Evidence`: (RRset, its RRSIGs) pairs as a zone file or a
response message held them, possibly from several zones (a parent's NSEC at a delegation and
the child's apex NSEC share an owner, so pairs are kept apart, never merged).
"""

from __future__ import annotations

import base64
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from cryptography.utils import CryptographyDeprecationWarning

# dnspython's DNSSEC module imports its DSA support (which skip never validates with: RFC 8624
# forbids it, this module refuses it) and cryptography warns about DSA on import; an operator
# should not read that on every skipd start
with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    import dns.dnssec
import dns.exception
import dns.message
import dns.name
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import dns.zone
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from dns.rdtypes.ANY.DS import DS
from dns.rdtypes.ANY.NSEC import NSEC
from dns.rdtypes.ANY.NSEC3 import NSEC3
from dns.rdtypes.ANY.RRSIG import RRSIG

ZONE_KEY = 0x0100  # DNSKEY flags bit 7 (RFC 4034 s. 2.1.1)
REVOKE = 0x0080  # RFC 5011 s. 3

#: RFC 8624 s. 3.1 "MUST" / "RECOMMENDED" to validate
MODERN_ALGORITHMS = frozenset({8, 10, 13, 14, 15, 16})
SHA1_ALGORITHMS = frozenset({5, 7})  # RSASHA1, RSASHA1-NSEC3-SHA1: "MUST NOT" sign with
NEVER_ALGORITHMS = frozenset({1, 3, 6, 12})  # RSAMD5, DSA, DSA-NSEC3-SHA1, ECC-GOST
MODERN_DIGESTS = frozenset({2, 4})  # SHA-256, SHA-384 (RFC 8624 s. 3.3)
SHA1_DIGEST = 1


class Outcome(StrEnum):
    SECURE = "secure"
    INSECURE = "insecure"
    BOGUS = "bogus"


@dataclass(frozen=True)
class AlgorithmPolicy:
    """DNS-22 / DNS-23: what this validator will rely on."""

    allow_sha1: bool = False
    #: RFC 9276 s. 3.2: validators may treat counts above a limit as insecure; 0 is advised
    max_nsec3_iterations: int = 100

    def algorithm_ok(self, algorithm: int) -> bool:
        if algorithm in NEVER_ALGORITHMS:
            return False
        return algorithm in MODERN_ALGORITHMS or (self.allow_sha1 and algorithm in SHA1_ALGORITHMS)

    def digest_ok(self, digest_type: int) -> bool:
        return digest_type in MODERN_DIGESTS or (self.allow_sha1 and digest_type == SHA1_DIGEST)


DEFAULT_POLICY = AlgorithmPolicy()


@dataclass(frozen=True)
class TrustAnchor:
    """A configured anchor (DNS-20): the DS records or DNSKEYs of one zone (the IANA root
    KSK, or a private lab zone)."""

    zone: dns.name.Name
    ds: tuple[DS, ...] = ()
    dnskeys: tuple[DNSKEY, ...] = ()

    @classmethod
    def from_text(cls, text: str) -> TrustAnchor:
        """From master-file lines such as ``example. IN DS 32396 13 2 c27f...`` (DS or DNSKEY,
        all of one owner). Every malformed input raises ValueError."""
        zone: dns.name.Name | None = None
        ds: list[DS] = []
        keys: list[DNSKEY] = []
        for line in text.splitlines():
            line = line.split(";", 1)[0].strip()
            if not line:
                continue
            try:
                rrset = dns.rrset.from_text(*_split_rr(line))
            except dns.exception.DNSException as exc:  # one error type for configuration
                raise ValueError(f"not a trust anchor record: {line!r}: {exc}") from exc
            if zone is not None and rrset.name != zone:
                raise ValueError(f"a trust anchor is for one zone: {rrset.name} is not {zone}")
            zone = rrset.name
            for rdata in rrset:
                if isinstance(rdata, DS):
                    ds.append(rdata)
                elif isinstance(rdata, DNSKEY):
                    keys.append(rdata)
                else:
                    raise ValueError("a trust anchor is DS or DNSKEY records, not "
                                     f"{dns.rdatatype.to_text(rrset.rdtype)}")
        if zone is None:
            raise ValueError("an empty trust anchor")
        return cls(zone, tuple(ds), tuple(keys))


def _split_rr(line: str) -> tuple[str, int, str, str, str]:
    fields = line.split()
    owner, rest = fields[0], fields[1:]
    ttl = 0
    if rest and rest[0].isdigit():
        ttl, rest = int(rest[0]), rest[1:]
    if rest and rest[0].upper() == "IN":
        rest = rest[1:]
    if len(rest) < 2:
        raise ValueError(f"not a resource record: {line!r}")
    return owner, ttl, "IN", rest[0], " ".join(rest[1:])


Pair = tuple[dns.rrset.RRset, dns.rrset.RRset | None]


@dataclass
class Evidence:
    """The RRsets a lookup gathered, each with the RRSIGs that came with it."""

    pairs: list[Pair] = field(default_factory=list)

    def add(self, rrset: dns.rrset.RRset, sigs: dns.rrset.RRset | None) -> None:
        self.pairs.append((rrset, sigs))

    def extend(self, other: Evidence) -> Evidence:
        self.pairs.extend(other.pairs)
        return self

    def find(self, name: dns.name.Name, rdtype: int) -> Iterator[Pair]:
        for rrset, sigs in self.pairs:
            if rrset.name == name and rrset.rdtype == rdtype:
                yield rrset, sigs

    def of_type(self, rdtype: int) -> Iterator[Pair]:
        for rrset, sigs in self.pairs:
            if rrset.rdtype == rdtype:
                yield rrset, sigs

    @classmethod
    def from_zone(cls, zone: dns.zone.Zone) -> Evidence:
        """Every RRset of a (signed) zone, paired with its RRSIGs: what an authoritative
        server would hand out, for tests and for a locally configured zone."""
        evidence = cls()
        for name, node in zone.nodes.items():
            owner = name.derelativize(zone.origin) if zone.origin is not None else name
            for rdataset in node.rdatasets:
                if rdataset.rdtype == dns.rdatatype.RRSIG:
                    continue
                sigs = node.get_rdataset(rdataset.rdclass, dns.rdatatype.RRSIG, rdataset.rdtype)
                evidence.add(_rrset(owner, rdataset), _rrset(owner, sigs) if sigs else None)
        return evidence

    @classmethod
    def from_message(cls, message: dns.message.Message) -> Evidence:
        """The answer, authority and additional sections of a response, RRSIGs paired with
        the RRset of the same owner and covered type in the same section."""
        evidence = cls()
        for section in (message.answer, message.authority, message.additional):
            sigs = {(r.name, r.covers): r for r in section if r.rdtype == dns.rdatatype.RRSIG}
            for rrset in section:
                if rrset.rdtype not in (dns.rdatatype.RRSIG, dns.rdatatype.OPT):
                    evidence.add(rrset, sigs.get((rrset.name, rrset.rdtype)))
        return evidence


def _rrset(owner: dns.name.Name, rdataset: dns.rdataset.Rdataset) -> dns.rrset.RRset:
    rrset = dns.rrset.RRset(owner, rdataset.rdclass, rdataset.rdtype, rdataset.covers)
    rrset.update(rdataset)
    return rrset


@dataclass(frozen=True)
class Verdict:
    """The outcome of one validation (DNS-25).

    ``answer`` is the validated RRset (None for a denial or a failure); ``denied`` says the
    absence of the RRset was proven; ``expires`` is the earliest RRSIG expiration the verdict
    relies on and ``ttl`` the smallest TTL among the final RRsets (both for DNS-12's cache
    caps); ``zone`` is the deepest zone reached; ``detail`` says why, for people.
    """

    outcome: Outcome
    detail: str = ""
    zone: dns.name.Name | None = None
    answer: dns.rrset.RRset | None = None
    denied: bool = False
    expires: float | None = None
    ttl: int | None = None

    @property
    def reason(self) -> str:
        """The reason code to count: ``dns_bogus``, ``dns_insecure`` or "" when secure."""
        return {Outcome.SECURE: "", Outcome.INSECURE: "dns_insecure"}.get(self.outcome,
                                                                          "dns_bogus")


class _Bogus(Exception):
    pass


class _Insecure(Exception):
    pass


@dataclass
class _Zone:
    name: dns.name.Name
    keys: dns.rrset.RRset
    expires: float


def validate(anchor: TrustAnchor, evidence: Evidence, qname: dns.name.Name, qtype: int,
             now: float, policy: AlgorithmPolicy = DEFAULT_POLICY) -> Verdict:
    """Validate the answer to (``qname``, ``qtype``), or the proof that it does not exist,
    from ``anchor`` down through ``evidence`` at ``now`` (DNS-20..DNS-23, DNS-25)."""
    zone: _Zone | None = None
    try:
        if not qname.is_subdomain(anchor.zone):
            raise _Bogus(f"{qname} is not under the trust anchor {anchor.zone}")
        zone = _anchor_zone(anchor, evidence, now, policy)
        for depth in range(len(anchor.zone) + 1, len(qname) + 1):
            child = qname.split(depth)[1]
            zone = _descend(zone, child, evidence, now, policy)
        return _final(zone, qname, qtype, evidence, now, policy)
    except _Insecure as exc:
        return Verdict(Outcome.INSECURE, str(exc), zone.name if zone else None)
    except _Bogus as exc:
        return Verdict(Outcome.BOGUS, str(exc), zone.name if zone else None)


def _anchor_zone(anchor: TrustAnchor, evidence: Evidence, now: float,
                 policy: AlgorithmPolicy) -> _Zone:
    if anchor.ds:
        return _dnskeys_by_ds(anchor.zone, anchor.ds, evidence, now, policy)
    usable = [k for k in anchor.dnskeys if policy.algorithm_ok(k.algorithm)]
    if not usable:
        raise _Insecure(f"the trust anchor for {anchor.zone} names no algorithm this policy "
                        "validates")
    return _keyset(anchor.zone, usable, evidence, now, policy)


def _dnskeys_by_ds(zone: dns.name.Name, ds_set: Iterable[DS], evidence: Evidence, now: float,
                   policy: AlgorithmPolicy) -> _Zone:
    usable = [ds for ds in ds_set
              if policy.algorithm_ok(ds.algorithm) and policy.digest_ok(ds.digest_type)]
    if not usable:
        # RFC 4035 s. 5.2: no DS this validator supports -> treat the zone as unsigned
        raise _Insecure(f"the DS of {zone} names no algorithm or digest this policy validates")
    matched: list[DNSKEY] = []
    for rrset, _sigs in evidence.find(zone, dns.rdatatype.DNSKEY):
        for key in rrset:
            if not key.flags & ZONE_KEY or key.flags & REVOKE:
                continue
            for ds in usable:
                if (ds.key_tag == dns.dnssec.key_id(key) and ds.algorithm == key.algorithm
                        and _ds_of(zone, key, ds.digest_type) == ds):
                    matched.append(key)
    if not matched:
        raise _Bogus(f"no DNSKEY of {zone} matches its DS")
    return _keyset(zone, matched, evidence, now, policy)


def _ds_of(zone: dns.name.Name, key: DNSKEY, digest_type: int) -> DS | None:
    try:
        return dns.dnssec.make_ds(zone, key, dns.dnssec.DSDigest(digest_type),
                                  policy=dns.dnssec.allow_all_policy)
    except (ValueError, dns.dnssec.UnsupportedAlgorithm, dns.exception.DNSException):
        return None


def _keyset(zone: dns.name.Name, trusted: list[DNSKEY], evidence: Evidence, now: float,
            policy: AlgorithmPolicy) -> _Zone:
    """The zone's DNSKEY RRset, self-signed by one of the ``trusted`` keys (RFC 4035 s. 5.2)."""
    failures = []
    for rrset, sigs in evidence.find(zone, dns.rdatatype.DNSKEY):
        anchor_keys = dns.rrset.RRset(zone, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
        for key in trusted:
            anchor_keys.add(key)
        try:
            expires = _verify(rrset, sigs, zone, anchor_keys, now, policy)
        except _Bogus as exc:
            failures.append(str(exc))
            continue
        return _Zone(zone, rrset, expires)
    raise _Bogus(f"DNSKEY of {zone}: " + ("; ".join(failures) or "missing"))


def _descend(zone: _Zone, child: dns.name.Name, evidence: Evidence, now: float,
             policy: AlgorithmPolicy) -> _Zone:
    """One step of the walk: a signed DS at ``child`` makes it the zone; a proof that ``child``
    is a delegation without DS ends the walk as insecure; anything else stays in ``zone``."""
    failures = []
    for rrset, sigs in evidence.find(child, dns.rdatatype.DS):
        try:
            expires = _verify(rrset, sigs, zone.name, zone.keys, now, policy)
        except _Bogus as exc:
            failures.append(str(exc))
            continue
        below = _dnskeys_by_ds(child, list(rrset), evidence, now, policy)
        below.expires = min(below.expires, expires, zone.expires)
        return below
    if failures:
        raise _Bogus(f"DS of {child}: " + "; ".join(failures))
    if _proves_unsigned_delegation(zone, child, evidence, now, policy):
        raise _Insecure(f"{child} is a delegation from {zone.name} without DS (proven)")
    return zone


def _proves_unsigned_delegation(zone: _Zone, child: dns.name.Name, evidence: Evidence,
                                now: float, policy: AlgorithmPolicy) -> bool:
    for rrset, sigs in _denials_at(zone, child, evidence, policy):
        types = _types(rrset[0])
        if dns.rdatatype.NS in types and dns.rdatatype.DS not in types \
                and dns.rdatatype.SOA not in types:
            try:
                _verify(rrset, sigs, zone.name, zone.keys, now, policy)
            except _Bogus:
                continue
            return True
    return False


def _denials_at(zone: _Zone, name: dns.name.Name, evidence: Evidence,
                policy: AlgorithmPolicy) -> Iterator[Pair]:
    """NSEC at ``name``, and NSEC3 whose hashed owner is ``name``'s hash in ``zone``; NSEC3
    over the iteration limit raises _Insecure (DNS-22: never a proof)."""
    yield from evidence.find(name, dns.rdatatype.NSEC)
    for rrset, sigs in evidence.of_type(dns.rdatatype.NSEC3):
        if rrset.name.parent() != zone.name:
            continue
        param: NSEC3 = rrset[0]
        if param.algorithm != 1:
            continue
        _check_iterations(zone, param, policy)
        hashed = dns.dnssec.nsec3_hash(name, param.salt, param.iterations, 1)
        if rrset.name.labels[0].decode().upper() != hashed.upper():
            continue
        yield rrset, sigs


def _check_iterations(zone: _Zone, param: NSEC3, policy: AlgorithmPolicy) -> None:
    """DNS-22: checked before hashing, so a zone with a huge count neither costs the hashing
    nor can prove anything (RFC 9276 s. 3.2: treat it as insecure)."""
    if param.iterations > policy.max_nsec3_iterations:
        raise _Insecure(f"NSEC3 of {zone.name} uses {param.iterations} iterations, more "
                        f"than {policy.max_nsec3_iterations}: not trusted (RFC 9276)")


def _types(rdata: NSEC | NSEC3) -> set[int]:
    types = set()
    for window, bitmap in rdata.windows:
        for i, byte in enumerate(bitmap):
            for bit in range(8):
                if byte & (0x80 >> bit):
                    types.add(window * 256 + i * 8 + bit)
    return types


def _final(zone: _Zone, qname: dns.name.Name, qtype: int, evidence: Evidence, now: float,
           policy: AlgorithmPolicy) -> Verdict:
    failures = []
    for rrset, sigs in evidence.find(qname, qtype):
        try:
            expires = _verify(rrset, sigs, zone.name, zone.keys, now, policy)
        except _Bogus as exc:
            failures.append(str(exc))
            continue
        wildcard = sigs is not None and _wildcard(rrset, sigs)
        if wildcard and sigs is not None and not all(
                _nsec_covers(zone, _next_closer(qname, sig.labels), evidence, now, policy)
                for sig in sigs):
            failures.append("a wildcard answer without proof that the next closer name "
                            "does not exist")
            continue
        return Verdict(Outcome.SECURE, "signed answer", zone.name, rrset,
                       expires=min(expires, zone.expires), ttl=_ttl(rrset, sigs))
    if failures:
        raise _Bogus(f"{qname} {_type_text(qtype)}: " + "; ".join(failures))
    return _denial(zone, qname, qtype, evidence, now, policy)


def _type_text(rdtype: int) -> str:
    return dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype))


def _next_closer(qname: dns.name.Name, labels: int) -> dns.name.Name:
    """RFC 4035 s. 5.3.4: a wildcard RRSIG of ``labels`` labels was expanded at the closest
    encloser of that many labels; the name one label longer must be proven absent, or a
    name that exists between the wildcard and ``qname`` would be hidden by the expansion."""
    return qname.split(labels + 2)[1]


def _wildcard(rrset: dns.rrset.RRset, sigs: dns.rrset.RRset) -> bool:
    owner_labels = len(rrset.name) - 1
    return all(sig.labels < owner_labels for sig in sigs)


def _ttl(rrset: dns.rrset.RRset, sigs: dns.rrset.RRset | None) -> int:
    return min([rrset.ttl, *(sig.original_ttl for sig in sigs or ())])


def _denial(zone: _Zone, qname: dns.name.Name, qtype: int, evidence: Evidence, now: float,
            policy: AlgorithmPolicy) -> Verdict:
    # NODATA: a record at qname whose bitmap has neither qtype nor CNAME (RFC 4035 s. 5.4)
    for rrset, sigs in _denials_at(zone, qname, evidence, policy):
        types = _types(rrset[0])
        if qtype in types or dns.rdatatype.CNAME in types:
            continue
        if dns.rdatatype.NS in types and dns.rdatatype.SOA not in types:
            continue  # a parent-side NSEC at a cut says nothing about the child's data
        try:
            expires = _verify(rrset, sigs, zone.name, zone.keys, now, policy)
        except _Bogus:
            continue
        return Verdict(Outcome.SECURE, "NODATA proven", zone.name, denied=True,
                       expires=min(expires, zone.expires), ttl=_ttl(rrset, sigs))
    # NXDOMAIN with NSEC: qname covered, and the wildcard at its closest encloser covered too
    covering = _nsec_covering(zone, qname, evidence, now, policy)
    if covering is not None:
        owner, cover, expires, ttl = covering
        encloser = _closest_encloser(qname, owner, cover)
        wildcard = dns.name.Name((b"*", *encloser.labels))
        wild = _nsec_covering(zone, wildcard, evidence, now, policy)
        if wild is not None:
            return Verdict(Outcome.SECURE, "NXDOMAIN proven", zone.name, denied=True,
                           expires=min(expires, wild[2], zone.expires), ttl=min(ttl, wild[3]))
    proven = _nsec3_nxdomain(zone, qname, evidence, now, policy)
    if proven is not None:
        expires, ttl = proven
        return Verdict(Outcome.SECURE, "NXDOMAIN proven (NSEC3)", zone.name, denied=True,
                       expires=min(expires, zone.expires), ttl=ttl)
    raise _Bogus(f"no signed answer and no proof of absence for {qname} "
                 f"{_type_text(qtype)} in {zone.name}")


def _nsec_covering(zone: _Zone, name: dns.name.Name, evidence: Evidence, now: float,
                   policy: AlgorithmPolicy) -> tuple[dns.name.Name, NSEC, float, int] | None:
    """A signed NSEC of ``zone`` whose span covers ``name``: (owner, NSEC, expiration, TTL).

    An NSEC at a delegation (NS without SOA) or at a DNAME says nothing about the names
    below its owner (RFC 6840 s. 4.1, "ancestor delegation"): those belong to the child, and a
    parent's NSEC there would otherwise deny every name of a signed child."""
    for rrset, sigs in evidence.of_type(dns.rdatatype.NSEC):
        nsec: NSEC = rrset[0]
        if not rrset.name.is_subdomain(zone.name) or not _between(rrset.name, name, nsec.next,
                                                                   zone.name):
            continue
        types = _types(nsec)
        if name.is_subdomain(rrset.name) and (
                dns.rdatatype.DNAME in types
                or (dns.rdatatype.NS in types and dns.rdatatype.SOA not in types)):
            continue
        try:
            expires = _verify(rrset, sigs, zone.name, zone.keys, now, policy)
        except _Bogus:
            continue
        return rrset.name, nsec, expires, _ttl(rrset, sigs)
    return None


def _nsec3_nxdomain(zone: _Zone, qname: dns.name.Name, evidence: Evidence, now: float,
                    policy: AlgorithmPolicy) -> tuple[float, int] | None:
    """RFC 5155 s. 8.4: the closest encloser proof (an NSEC3 matching an ancestor of
    ``qname``, one covering the next closer name) plus one covering the wildcard at the
    closest encloser. An opt-out span proves nothing about existence, so it is no proof."""
    chain = []
    for rrset, sigs in evidence.of_type(dns.rdatatype.NSEC3):
        param: NSEC3 = rrset[0]
        if rrset.name.parent() != zone.name or param.algorithm != 1:
            continue
        _check_iterations(zone, param, policy)
        try:
            owner_hash = base64.b32hexdecode(rrset.name.labels[0].upper())
        except ValueError:
            continue
        chain.append((owner_hash, rrset, sigs))

    def hashed(name: dns.name.Name, param: NSEC3) -> bytes:
        return base64.b32hexdecode(dns.dnssec.nsec3_hash(name, param.salt, param.iterations, 1))

    def signed(rrset: dns.rrset.RRset, sigs: dns.rrset.RRset | None) -> tuple[float, int] | None:
        try:
            return _verify(rrset, sigs, zone.name, zone.keys, now, policy), _ttl(rrset, sigs)
        except _Bogus:
            return None

    def matching(name: dns.name.Name) -> tuple[float, int] | None:
        for owner_hash, rrset, sigs in chain:
            types = _types(rrset[0])
            if owner_hash != hashed(name, rrset[0]) or dns.rdatatype.DNAME in types or (
                    dns.rdatatype.NS in types and dns.rdatatype.SOA not in types):
                continue  # a cut or DNAME is not an encloser of names below it
            if (found := signed(rrset, sigs)) is not None:
                return found
        return None

    def covering(name: dns.name.Name) -> tuple[float, int] | None:
        for owner_hash, rrset, sigs in chain:
            param = rrset[0]
            target, following = hashed(name, param), param.next
            inside = (owner_hash < target < following if owner_hash < following
                      else target > owner_hash or target < following)
            if inside and not param.flags & 1 and (found := signed(rrset, sigs)) is not None:
                return found
        return None

    for depth in range(len(qname) - 1, len(zone.name) - 1, -1):
        encloser = qname.split(depth)[1]
        found = matching(encloser)
        if found is None:
            continue
        next_closer = covering(qname.split(depth + 1)[1])
        wildcard = covering(dns.name.Name((b"*", *encloser.labels)))
        if next_closer is None or wildcard is None:
            return None
        proofs = (found, next_closer, wildcard)
        return min(p[0] for p in proofs), min(p[1] for p in proofs)
    return None


def _nsec_covers(zone: _Zone, name: dns.name.Name, evidence: Evidence, now: float,
                 policy: AlgorithmPolicy) -> bool:
    return _nsec_covering(zone, name, evidence, now, policy) is not None


def _between(owner: dns.name.Name, name: dns.name.Name, next_name: dns.name.Name,
             apex: dns.name.Name) -> bool:
    """``owner < name < next`` in canonical order, the last NSEC (next = apex) wrapping."""
    if next_name == apex or next_name <= owner:
        return owner < name
    return owner < name < next_name


def _closest_encloser(qname: dns.name.Name, owner: dns.name.Name,
                      nsec: NSEC) -> dns.name.Name:
    """The longest ancestor of ``qname`` shared with the covering NSEC's owner or next (RFC
    4035 s. 5.4, RFC 7129 s. 5.5): both names exist, so the deeper common ancestor is the
    closest encloser. Looking at ``next`` alone picks a shallower one when the owner is the
    deeper relative, and the wildcard proven absent is then the wrong one."""
    best = dns.name.root
    for other in (owner, nsec.next):
        common = qname.fullcompare(other)[2]
        if common > len(best):
            best = qname.split(common)[1]
    return best


def _verify(rrset: dns.rrset.RRset, sigs: dns.rrset.RRset | None, signer: dns.name.Name,
            keys: dns.rrset.RRset, now: float, policy: AlgorithmPolicy) -> float:
    """DNS-21: one RRSIG of ``signer`` over ``rrset`` that passes every check and verifies;
    returns its expiration. Raises _Bogus listing why each signature failed."""
    if sigs is None or not len(sigs):
        raise _Bogus(f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} is unsigned")
    failures = []
    owner_labels = len(rrset.name) - 1 - (1 if rrset.name.is_wild() else 0)
    for sig in sigs:
        assert isinstance(sig, RRSIG)
        why = _precheck(rrset, sigs, sig, signer, owner_labels, now, policy)
        if why:
            failures.append(why)
            continue
        candidates = dns.rrset.RRset(signer, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
        for key in keys:
            if (key.flags & ZONE_KEY and not key.flags & REVOKE and key.algorithm == sig.algorithm
                    and dns.dnssec.key_id(key) == sig.key_tag):
                candidates.add(key)
        if not len(candidates):
            failures.append(f"no zone key {sig.key_tag}/{sig.algorithm} of {signer}")
            continue
        try:
            dns.dnssec.validate_rrsig(rrset, sig, {signer: candidates}, now=now,
                                      policy=dns.dnssec.allow_all_policy)
        except (dns.dnssec.ValidationFailure, dns.dnssec.UnsupportedAlgorithm,
                dns.exception.DNSException) as exc:
            failures.append(f"signature by key {sig.key_tag}: {exc}")
            continue
        return float(sig.expiration)
    raise _Bogus(f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)}: " + "; ".join(failures))


def _precheck(rrset: dns.rrset.RRset, sigs: dns.rrset.RRset, sig: RRSIG, signer: dns.name.Name,
              owner_labels: int, now: float, policy: AlgorithmPolicy) -> str:
    """The RFC 4035 s. 5.3.1 checks, before any cryptography: why not, or ""."""
    if sigs.name != rrset.name or sigs.rdclass != rrset.rdclass:
        return "RRSIG owner or class differs from the RRset's"
    if sig.signer != signer:
        return f"signed by {sig.signer}, not by the zone {signer}"
    if sig.type_covered != rrset.rdtype:
        return "RRSIG covers another type"
    if sig.labels > owner_labels:
        return f"RRSIG labels {sig.labels} exceed the owner's {owner_labels}"
    if now < sig.inception:
        return "RRSIG not yet valid"
    if now > sig.expiration:
        return "RRSIG expired"
    if not policy.algorithm_ok(sig.algorithm):
        return f"algorithm {sig.algorithm} refused by policy (RFC 8624)"
    return ""
