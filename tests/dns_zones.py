"""Signed test zones built in-process with dnspython, for the DNSSEC validator tests.

The world: a signed parent ``example.`` (its DS is the trust anchor), a signed child
``site.example.`` (DS in the parent), an unsigned child ``plain.example.`` (NS in the parent,
the parent's NSEC proving no DS), a wildcard, and CERT PKIX records. Every signature is made
at a fixed instant so tests inject ``now`` (DNS-14).
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from dns.rdtypes.ANY.DS import DS
from dns.rdtypes.ANY.RRSIG import RRSIG

from skip.discovery.dnssec import Evidence, TrustAnchor

NOW = 1_800_000_000
INCEPTION = NOW - 86_400
EXPIRATION = NOW + 30 * 86_400
KSK = 0x0101  # zone key + SEP
ZSK = 0x0100

CERT_DER = base64.b64encode(b"\x30\x03\x02\x01\x01" * 4).decode()  # not parsed here

Key = tuple[object, DNSKEY]


def name(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


@functools.cache
def key(algorithm: int, flags: int = KSK, seed: int = 0) -> Key:
    """A private key and its DNSKEY; ``seed`` only makes distinct keys of one algorithm."""
    del seed
    private: object
    if algorithm == 15:
        private = ed25519.Ed25519PrivateKey.generate()
    elif algorithm == 13:
        private = ec.generate_private_key(ec.SECP256R1())
    elif algorithm in (5, 7, 8):
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        raise ValueError(algorithm)
    dnskey = dns.dnssec.make_dnskey(private.public_key(), algorithm, flags=flags)
    return private, dnskey


def sign_zone(origin: str, body: str, keys: list[Key], *, inception: int = INCEPTION,
              expiration: int = EXPIRATION) -> dns.zone.Zone:
    """``body`` (master-file lines, relative to ``origin``) signed with NSEC by ``keys``."""
    text = f"@ 3600 IN SOA ns.other. admin.other. 1 7200 3600 1209600 300\n" \
           f"@ 3600 IN NS ns.other.\n{body}"
    zone = dns.zone.from_text(text, origin=origin, relativize=False)
    dns.dnssec.sign_zone(zone, keys=keys, inception=inception,  # type: ignore[arg-type]
                         expiration=expiration, policy=dns.dnssec.allow_all_policy)
    return zone


def ds(owner: str, dnskey: DNSKEY, digest: int = 2) -> DS:
    return dns.dnssec.make_ds(name(owner), dnskey, dns.dnssec.DSDigest(digest),
                              policy=dns.dnssec.allow_all_policy)


def anchor_of(owner: str, dnskey: DNSKEY, digest: int = 2) -> TrustAnchor:
    return TrustAnchor(name(owner), (ds(owner, dnskey, digest),))


def world(algorithm: int = 13, child_algorithm: int = 15, *, child_ds: DS | None = None,
          expiration: int = EXPIRATION) -> tuple[TrustAnchor, Evidence]:
    """The anchor and the evidence of the three zones of this module's docstring."""
    parent_key = key(algorithm)
    child_key = key(child_algorithm)
    delegated = child_ds if child_ds is not None else ds("site.example.", child_key[1])
    parent = sign_zone("example.", f"""\
host 300 IN CERT PKIX 0 0 {CERT_DER}
deep.host 300 IN TXT "exists, so host has children"
*.wild 300 IN CERT PKIX 0 0 {CERT_DER}
plain 3600 IN NS ns.other.
site 3600 IN NS ns.other.
site 3600 IN DS {delegated.to_text()}
""", [parent_key], expiration=expiration)
    child = sign_zone("site.example.", f"www 300 IN CERT PKIX 0 0 {CERT_DER}\n",
                      [child_key], expiration=expiration)
    plain = dns.zone.from_text(
        "@ 3600 IN SOA ns.other. admin.other. 1 7200 3600 1209600 300\n"
        "@ 3600 IN NS ns.other.\n"
        f"www 300 IN CERT PKIX 0 0 {CERT_DER}\n", origin="plain.example.", relativize=False)
    evidence = Evidence.from_zone(parent).extend(Evidence.from_zone(child))
    evidence.extend(Evidence.from_zone(plain))
    return anchor_of("example.", parent_key[1]), evidence


def without(evidence: Evidence, owner: str, rdtype: int) -> Evidence:
    """``evidence`` minus every pair of ``owner`` and ``rdtype`` (a link an attacker drops)."""
    return Evidence([(r, s) for r, s in evidence.pairs
                     if not (r.name == name(owner) and r.rdtype == rdtype)])


def only(evidence: Evidence, keep: Callable[[dns.rrset.RRset], bool]) -> Evidence:
    return Evidence([(r, s) for r, s in evidence.pairs if keep(r)])


def with_sigs(evidence: Evidence, owner: str, rdtype: int,
              change: Callable[[RRSIG], dns.rdata.Rdata]) -> Evidence:
    """``evidence`` with every RRSIG over (``owner``, ``rdtype``) replaced by ``change(sig)``."""
    pairs = []
    for rrset, sigs in evidence.pairs:
        if rrset.name == name(owner) and rrset.rdtype == rdtype and sigs is not None:
            new = dns.rrset.RRset(sigs.name, sigs.rdclass, sigs.rdtype, sigs.covers)
            new.update_ttl(sigs.ttl)
            for sig in sigs:
                new.add(change(sig))
            sigs = new
        pairs.append((rrset, sigs))
    return Evidence(pairs)


def flip_bit(sig: RRSIG) -> dns.rdata.Rdata:
    raw = bytearray(sig.signature)
    raw[len(raw) // 2] ^= 0x01
    return sig.replace(signature=bytes(raw))


def rrset(owner: str, rdtype: str, *rdatas: str, ttl: int = 300) -> dns.rrset.RRset:
    return dns.rrset.from_text(owner, ttl, "IN", rdtype, *rdatas)


def sign_rrset(target: dns.rrset.RRset, signer: str, signing_key: Key) -> dns.rrset.RRset:
    """The RRSIG RRset of ``signer`` over ``target`` (for hand-made NSEC3 chains)."""
    sig = dns.dnssec.sign(target, signing_key[0], name(signer),  # type: ignore[arg-type]
                          signing_key[1], inception=INCEPTION, expiration=EXPIRATION,
                          policy=dns.dnssec.allow_all_policy)
    out = dns.rrset.RRset(target.name, dns.rdataclass.IN, dns.rdatatype.RRSIG, target.rdtype)
    out.update_ttl(target.ttl)
    out.add(sig)
    return out


def nsec3_zone(origin: str, signing_key: Key, iterations: int = 0,
               salt: str = "-") -> tuple[TrustAnchor, Evidence]:
    """A zone ``origin`` with a CERT at ``host`` and an NSEC3 chain (hash 1, no opt-out)
    built by hand, since dnspython signs only with NSEC."""
    apex = name(origin)
    owners = {apex: "SOA NS DNSKEY RRSIG NSEC3PARAM", name("host." + origin): "CERT RRSIG"}
    salt_bytes = b"" if salt == "-" else bytes.fromhex(salt)
    hashed = sorted((dns.dnssec.nsec3_hash(o, salt_bytes, iterations, 1), types)
                    for o, types in owners.items())
    evidence = Evidence()
    dnskey = rrset(origin, "DNSKEY", signing_key[1].to_text(), ttl=3600)
    evidence.add(dnskey, sign_rrset(dnskey, origin, signing_key))
    cert = rrset("host." + origin, "CERT", f"PKIX 0 0 {CERT_DER}")
    evidence.add(cert, sign_rrset(cert, origin, signing_key))
    for i, (label, types) in enumerate(hashed):
        following = hashed[(i + 1) % len(hashed)][0]
        nsec3 = rrset(f"{label}.{origin}", "NSEC3",
                      f"1 0 {iterations} {salt} {following} {types}")
        evidence.add(nsec3, sign_rrset(nsec3, origin, signing_key))
    return anchor_of(origin, signing_key[1]), evidence
