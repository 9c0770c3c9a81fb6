"""The local DNSSEC validator (skip/discovery/dnssec.py) against zones signed in-process.

Requirements: next-wave.md s. 2.5 (DNS-20 chain walk, DNS-21 RRSIG checks, DNS-22 denial,
DNS-23 algorithm policy, DNS-25 outcomes). Every case here breaks one link of an otherwise
valid chain, so a validator that skipped that check would return the wrong outcome.
"""

from __future__ import annotations

from typing import cast

import dns.message
import dns.name
import dns.rdatatype
import dns.rrset
import pytest
from dns.rdtypes.ANY.DS import DS

from skip.discovery.dnssec import (
    AlgorithmPolicy,
    Evidence,
    Outcome,
    TrustAnchor,
    _closest_encloser,
    validate,
)
from tests.dns_zones import (
    EXPIRATION,
    INCEPTION,
    KSK,
    NOW,
    anchor_of,
    ds,
    flip_bit,
    key,
    name,
    nsec3_zone,
    sign_zone,
    with_sigs,
    without,
    world,
)

CERT = dns.rdatatype.CERT


@pytest.fixture(scope="module")
def signed() -> tuple[TrustAnchor, Evidence]:
    return world()


def check(anchor: TrustAnchor, evidence: Evidence, qname: str, qtype: int = CERT,
          now: float = NOW, policy: AlgorithmPolicy | None = None) -> Outcome:
    kwargs = {"policy": policy} if policy else {}
    return validate(anchor, evidence, name(qname), qtype, now, **kwargs).outcome


def test_dns20_secure_cert_in_the_anchor_zone(signed: tuple[TrustAnchor, Evidence]) -> None:
    """DNS-20/DNS-25: a CERT signed by the anchor zone is secure; the verdict carries the
    RRset, its TTL and the RRSIG expiration DNS-12 caps the cache with."""
    anchor, evidence = signed
    verdict = validate(anchor, evidence, name("host.example."), CERT, NOW)
    assert verdict.outcome is Outcome.SECURE and verdict.reason == ""
    assert verdict.answer is not None and verdict.answer.rdtype == CERT
    assert verdict.answer.name == name("host.example.")
    assert verdict.ttl == 300 and verdict.expires == EXPIRATION
    assert verdict.zone == name("example.") and not verdict.denied


def test_dns20_secure_through_a_signed_delegation(signed: tuple[TrustAnchor, Evidence]) -> None:
    """DNS-20: DS in example. -> DNSKEY of site.example. (another algorithm) -> CERT."""
    anchor, evidence = signed
    verdict = validate(anchor, evidence, name("www.site.example."), CERT, NOW)
    assert verdict.outcome is Outcome.SECURE and verdict.zone == name("site.example.")


def test_dns20_from_response_messages(signed: tuple[TrustAnchor, Evidence]) -> None:
    """Evidence.from_message: the RRSIGs of a response pair with their RRsets."""
    anchor, evidence = signed
    keys = next(evidence.find(name("example."), dns.rdatatype.DNSKEY))
    cert = next(evidence.find(name("host.example."), CERT))
    messages = []
    for qtype, (rrset, sigs) in ((dns.rdatatype.DNSKEY, keys), (CERT, cert)):
        query = dns.message.make_query(rrset.name, qtype, want_dnssec=True)
        response = dns.message.make_response(query)
        assert sigs is not None
        response.answer.extend([rrset, sigs])
        messages.append(dns.message.from_wire(response.to_wire()))
    gathered = Evidence.from_message(messages[0]).extend(Evidence.from_message(messages[1]))
    assert check(anchor, gathered, "host.example.") is Outcome.SECURE
    # the same answer without its RRSIGs in the message
    messages[1].answer = [r for r in messages[1].answer if r.rdtype != dns.rdatatype.RRSIG]
    stripped = Evidence.from_message(messages[0]).extend(Evidence.from_message(messages[1]))
    assert check(anchor, stripped, "host.example.") is Outcome.BOGUS


def test_dns21_flipped_bit_in_rrsig_is_bogus(signed: tuple[TrustAnchor, Evidence]) -> None:
    anchor, evidence = signed
    broken = with_sigs(evidence, "host.example.", CERT, flip_bit)
    verdict = validate(anchor, broken, name("host.example."), CERT, NOW)
    assert verdict.outcome is Outcome.BOGUS and verdict.reason == "dns_bogus"
    assert verdict.answer is None


def test_dns21_flipped_bit_in_dnskey_rrsig_is_bogus(signed: tuple[TrustAnchor, Evidence]) -> None:
    anchor, evidence = signed
    broken = with_sigs(evidence, "site.example.", dns.rdatatype.DNSKEY, flip_bit)
    assert check(anchor, broken, "www.site.example.") is Outcome.BOGUS


@pytest.mark.parametrize("now", [EXPIRATION + 1, INCEPTION - 1])
def test_dns21_outside_the_validity_window_is_bogus(signed: tuple[TrustAnchor, Evidence],
                                                    now: int) -> None:
    """DNS-14/DNS-21: after expiration or before inception, at an injected ``now``."""
    anchor, evidence = signed
    assert check(anchor, evidence, "host.example.", now=now) is Outcome.BOGUS
    assert check(anchor, evidence, "host.example.", now=EXPIRATION) is Outcome.SECURE


def test_dns21_signer_mismatch_is_bogus(signed: tuple[TrustAnchor, Evidence]) -> None:
    """An RRSIG naming another signer than the zone is refused before any cryptography."""
    anchor, evidence = signed
    broken = with_sigs(evidence, "host.example.", CERT,
                       lambda sig: sig.replace(signer=name("site.example.")))
    verdict = validate(anchor, broken, name("host.example."), CERT, NOW)
    assert verdict.outcome is Outcome.BOGUS and "not by the zone" in verdict.detail


def test_dns21_more_labels_than_the_owner_is_bogus(signed: tuple[TrustAnchor, Evidence]) -> None:
    anchor, evidence = signed
    broken = with_sigs(evidence, "host.example.", CERT, lambda sig: sig.replace(labels=3))
    assert check(anchor, broken, "host.example.") is Outcome.BOGUS


def test_dns20_missing_child_dnskey_is_bogus(signed: tuple[TrustAnchor, Evidence]) -> None:
    anchor, evidence = signed
    broken = without(evidence, "site.example.", dns.rdatatype.DNSKEY)
    assert check(anchor, broken, "www.site.example.") is Outcome.BOGUS


def test_dns20_missing_anchor_dnskey_is_bogus(signed: tuple[TrustAnchor, Evidence]) -> None:
    anchor, evidence = signed
    broken = without(evidence, "example.", dns.rdatatype.DNSKEY)
    assert check(anchor, broken, "host.example.") is Outcome.BOGUS


def test_dns20_ds_not_matching_the_child_key_is_bogus() -> None:
    anchor, evidence = world(child_ds=ds("site.example.", key(13, seed=1)[1]))
    assert check(anchor, evidence, "www.site.example.") is Outcome.BOGUS


def test_dns20_anchor_not_matching_is_bogus(signed: tuple[TrustAnchor, Evidence]) -> None:
    _anchor, evidence = signed
    other = anchor_of("example.", key(13, seed=1)[1])
    assert check(other, evidence, "host.example.") is Outcome.BOGUS


def test_dns20_dropping_the_ds_does_not_stay_in_the_parent(
        signed: tuple[TrustAnchor, Evidence]) -> None:
    """Without the DS RRset the parent's NSEC at site.example. says DS exists: the child is
    not proven unsigned, and the parent's NSEC at the cut must not deny the child's names."""
    anchor, evidence = signed
    broken = without(evidence, "site.example.", dns.rdatatype.DS)
    assert check(anchor, broken, "www.site.example.") is Outcome.BOGUS
    assert check(anchor, broken, "site.example.") is Outcome.BOGUS  # no NODATA from the cut
    broken = without(broken, "www.site.example.", CERT)
    assert check(anchor, broken, "nothere.site.example.") is Outcome.BOGUS


def test_dns25_unsigned_child_with_nsec_proof_is_insecure(
        signed: tuple[TrustAnchor, Evidence]) -> None:
    anchor, evidence = signed
    verdict = validate(anchor, evidence, name("www.plain.example."), CERT, NOW)
    assert verdict.outcome is Outcome.INSECURE and verdict.reason == "dns_insecure"
    assert verdict.answer is None


def test_dns25_unsigned_child_without_proof_is_bogus(
        signed: tuple[TrustAnchor, Evidence]) -> None:
    anchor, evidence = signed
    broken = without(evidence, "plain.example.", dns.rdatatype.NSEC)
    assert check(anchor, broken, "www.plain.example.") is Outcome.BOGUS
    forged = with_sigs(evidence, "plain.example.", dns.rdatatype.NSEC, flip_bit)
    assert check(anchor, forged, "www.plain.example.") is Outcome.BOGUS


def test_dns22_nodata_proven_by_nsec(signed: tuple[TrustAnchor, Evidence]) -> None:
    anchor, evidence = signed
    verdict = validate(anchor, evidence, name("host.example."), dns.rdatatype.TXT, NOW)
    assert verdict.outcome is Outcome.SECURE and verdict.denied and verdict.answer is None
    broken = with_sigs(evidence, "host.example.", dns.rdatatype.NSEC, flip_bit)
    assert check(anchor, broken, "host.example.", dns.rdatatype.TXT) is Outcome.BOGUS


def test_dns22_nxdomain_proven_by_nsec(signed: tuple[TrustAnchor, Evidence]) -> None:
    anchor, evidence = signed
    verdict = validate(anchor, evidence, name("nope.example."), CERT, NOW)
    assert verdict.outcome is Outcome.SECURE and verdict.denied
    assert verdict.expires == EXPIRATION


def test_dns22_nxdomain_without_the_wildcard_proof_is_bogus(
        signed: tuple[TrustAnchor, Evidence]) -> None:
    """The apex NSEC is the one covering *.example.: without it a wildcard could exist."""
    anchor, evidence = signed
    broken = without(evidence, "example.", dns.rdatatype.NSEC)
    assert check(anchor, broken, "nope.example.") is Outcome.BOGUS


def test_dns22_closest_encloser_is_the_deeper_of_owner_and_next() -> None:
    """RFC 4035 s. 5.4 / RFC 7129: for a.b.host.ce. covered by the NSEC *.host.ce. -> ce.,
    the closest encloser is host.ce. (the owner's ancestor), not ce. (the next's)."""
    nsec = dns.rrset.from_text("*.host.ce.", 300, "IN", "NSEC", "ce. CERT RRSIG NSEC")[0]
    assert _closest_encloser(name("a.b.host.ce."), name("*.host.ce."), nsec) == name("host.ce.")
    nsec = dns.rrset.from_text("a.ce.", 300, "IN", "NSEC", "z.host.ce. A RRSIG NSEC")[0]
    assert _closest_encloser(name("b.host.ce."), name("a.ce."), nsec) == name("host.ce.")


def test_dns22_existing_wildcard_cannot_be_denied_by_a_shallower_one() -> None:
    """*.host.ce. exists, so a.b.host.ce. is answered by it; the NSECs at *.host.ce. and at
    the apex (covering *.ce.) must not prove NXDOMAIN (a wrong closest encloser did)."""
    signing = key(13)
    zone = sign_zone("ce.", "host 300 IN A 192.0.2.1\n*.host 300 IN CERT PKIX 0 0 AAAA\n",
                     [signing])
    evidence = without(Evidence.from_zone(zone), "*.host.ce.", CERT)
    assert check(anchor_of("ce.", signing[1]), evidence, "a.b.host.ce.") is Outcome.BOGUS


def _expanded(evidence: Evidence, wildcard: str, qname: str) -> Evidence:
    """A wildcard answer as a server synthesises it: the RRset renamed, the RRSIGs kept."""
    rrset, sigs = next(evidence.find(name(wildcard), CERT))
    answer = dns.rrset.RRset(name(qname), rrset.rdclass, rrset.rdtype)
    answer.update(rrset)
    assert sigs is not None
    copied = dns.rrset.RRset(name(qname), sigs.rdclass, sigs.rdtype, sigs.covers)
    copied.update(sigs)
    return Evidence([*evidence.pairs, (answer, copied)])


def test_dns22_wildcard_answer_needs_proof_the_name_does_not_exist(
        signed: tuple[TrustAnchor, Evidence]) -> None:
    anchor, evidence = signed
    expanded = _expanded(evidence, "*.wild.example.", "x.wild.example.")
    verdict = validate(anchor, expanded, name("x.wild.example."), CERT, NOW)
    assert verdict.outcome is Outcome.SECURE and verdict.answer is not None
    assert verdict.answer.name == name("x.wild.example.")
    # the NSEC covering x.wild.example. is the one at *.wild.example.
    unproven = without(expanded, "*.wild.example.", dns.rdatatype.NSEC)
    assert check(anchor, unproven, "x.wild.example.") is Outcome.BOGUS


def test_dns22_wildcard_cannot_hide_an_existing_next_closer_name() -> None:
    """b.wild.wc. exists, so a.b.wild.wc. is NXDOMAIN, not the *.wild.wc. CERT: the NSEC
    covering a.b.wild.wc. is no proof, the next closer name b.wild.wc. must be covered."""
    signing = key(13)
    zone = sign_zone("wc.", "*.wild 300 IN CERT PKIX 0 0 AAAA\nb.wild 300 IN TXT x\n",
                     [signing])
    evidence = Evidence.from_zone(zone)
    anchor = anchor_of("wc.", signing[1])
    good = _expanded(evidence, "*.wild.wc.", "x.wild.wc.")
    assert check(anchor, good, "x.wild.wc.") is Outcome.SECURE
    hidden = _expanded(evidence, "*.wild.wc.", "a.b.wild.wc.")
    assert check(anchor, hidden, "a.b.wild.wc.") is Outcome.BOGUS


def test_dns22_nsec3_zero_iterations() -> None:
    anchor, evidence = nsec3_zone("n3.", key(13))
    assert check(anchor, evidence, "host.n3.") is Outcome.SECURE
    verdict = validate(anchor, evidence, name("host.n3."), dns.rdatatype.TXT, NOW)
    assert verdict.outcome is Outcome.SECURE and verdict.denied
    assert check(anchor, evidence, "host.n3.", dns.rdatatype.CERT) is Outcome.SECURE


def test_dns22_nsec3_nxdomain_closest_encloser_proof() -> None:
    anchor, evidence = nsec3_zone("n3.", key(13))
    verdict = validate(anchor, evidence, name("nope.n3."), CERT, NOW)
    assert verdict.outcome is Outcome.SECURE and verdict.denied
    verdict = validate(anchor, evidence, name("a.b.host.n3."), CERT, NOW)
    assert verdict.outcome is Outcome.SECURE and verdict.denied


def test_dns22_nsec3_500_iterations_is_insecure_never_secure() -> None:
    anchor, evidence = nsec3_zone("n5.", key(13), iterations=500)
    for qname, qtype in (("host.n5.", dns.rdatatype.TXT), ("nope.n5.", CERT)):
        verdict = validate(anchor, evidence, name(qname), qtype, NOW)
        assert verdict.outcome is Outcome.INSECURE and not verdict.denied
    lax = AlgorithmPolicy(max_nsec3_iterations=500)
    assert check(anchor, evidence, "host.n5.", dns.rdatatype.TXT, policy=lax) is Outcome.SECURE


def test_dns23_rsasha1_refused_unless_allowed() -> None:
    """RSASHA1 (5): not validated by default, so the zone counts as unsigned (RFC 4035
    s. 5.2), never as secure; allow_sha1 turns it on."""
    anchor, evidence = world(algorithm=5)
    assert check(anchor, evidence, "host.example.") is Outcome.INSECURE
    sha1 = AlgorithmPolicy(allow_sha1=True)
    assert check(anchor, evidence, "host.example.", policy=sha1) is Outcome.SECURE


def test_dns23_rsasha256_and_ed25519_validate() -> None:
    anchor, evidence = world(algorithm=8, child_algorithm=15)
    assert check(anchor, evidence, "host.example.") is Outcome.SECURE
    assert check(anchor, evidence, "www.site.example.") is Outcome.SECURE


def test_dns23_sha1_ds_digest_needs_the_policy(signed: tuple[TrustAnchor, Evidence]) -> None:
    _anchor, evidence = signed
    sha1_anchor = anchor_of("example.", key(13)[1], digest=1)
    assert check(sha1_anchor, evidence, "host.example.") is Outcome.INSECURE
    sha1 = AlgorithmPolicy(allow_sha1=True)
    assert check(sha1_anchor, evidence, "host.example.", policy=sha1) is Outcome.SECURE


def test_dns23_ds_naming_only_unknown_algorithms_is_insecure() -> None:
    unknown = cast(DS, ds("site.example.", key(15)[1]).replace(algorithm=253))
    anchor, evidence = world(child_ds=unknown)
    assert check(anchor, evidence, "www.site.example.") is Outcome.INSECURE
    assert check(anchor, evidence, "host.example.") is Outcome.SECURE


@pytest.mark.parametrize("flags", [KSK | 0x0080, 0x0001])
def test_dns21_revoked_or_non_zone_key_is_ignored(flags: int) -> None:
    """A DNSKEY with the REVOKE bit (RFC 5011) or without the zone-key flag authenticates
    nothing even when the anchor names it."""
    signing = key(13, flags=flags)
    zone = sign_zone("rk.", "host 300 IN CERT PKIX 0 0 AAAA\n", [signing])
    evidence = Evidence.from_zone(zone)
    assert check(anchor_of("rk.", signing[1]), evidence, "host.rk.") is Outcome.BOGUS
    good = key(13, seed=2)
    zone = sign_zone("rk.", "host 300 IN CERT PKIX 0 0 AAAA\n", [good])
    assert check(anchor_of("rk.", good[1]), Evidence.from_zone(zone), "host.rk.") \
        is Outcome.SECURE


def test_dns20_qname_outside_the_anchor_is_bogus(signed: tuple[TrustAnchor, Evidence]) -> None:
    anchor, evidence = signed
    verdict = validate(anchor, evidence, name("host.other."), CERT, NOW)
    assert verdict.outcome is Outcome.BOGUS and verdict.zone is None


def test_dns20_trust_anchor_from_text(signed: tuple[TrustAnchor, Evidence]) -> None:
    anchor, evidence = signed
    text = f"; lab anchor\nexample. 3600 IN DS {anchor.ds[0].to_text()}\n\n"
    parsed = TrustAnchor.from_text(text)
    assert parsed.zone == name("example.") and parsed.ds == anchor.ds and not parsed.dnskeys
    assert check(parsed, evidence, "host.example.") is Outcome.SECURE
    by_key = TrustAnchor.from_text(f"example. IN DNSKEY {key(13)[1].to_text()}")
    assert by_key.dnskeys == (key(13)[1],) and not by_key.ds
    assert check(by_key, evidence, "host.example.") is Outcome.SECURE


@pytest.mark.parametrize("text", [
    "",
    "; only a comment\n",
    "example. IN A 192.0.2.1",
    "example. IN DS",
    "example. IN DS 1 13 2 00",
    f"example. IN DS 1 13 2 {'00' * 32}\nother. IN DS 1 13 2 {'00' * 32}",
])
def test_dns20_trust_anchor_errors(text: str) -> None:
    with pytest.raises(ValueError):
        TrustAnchor.from_text(text)


def test_from_zone_pairs_rrsigs_with_their_rrsets() -> None:
    signing = key(15)
    zone = sign_zone("pz.", "host 300 IN CERT PKIX 0 0 AAAA\n", [signing])
    evidence = Evidence.from_zone(zone)
    for rrset, sigs in evidence.pairs:
        assert sigs is not None and all(s.type_covered == rrset.rdtype for s in sigs)
    assert not any(r.rdtype == dns.rdatatype.RRSIG for r, _ in evidence.pairs)

