"""Multicast key distribution (issue 12; next-wave.md part 4): an owner and members over an
in-memory link. Derivations are recomputed here from the spec with hashlib and
cryptography's HKDF, not by calling the code under test; the golden bytes are next-wave.md
4.9's."""

from __future__ import annotations

import hashlib
import math
import os
import struct

import pytest
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap

from skip.crypto import kdf
from skip.crypto.skip_numbers import header_ekp_length
from skip.errors import SkipError
from skip.keying.suite import Suite
from skip.multicast.keys import legacy_kgn, modern_kgn
from skip.multicast.lkh import KeyTree, MemberKeys
from skip.multicast.member import REBUILD_SPREAD, Evicted, GroupMember, Joined, Rebuilding
from skip.multicast.owner import EPOCH_1995, GroupOwner
from skip.multicast.traffic import GRACE_SECONDS, GroupParams
from skip.wire.gik import GikRekey, GikRequestV1, GikResponseV1, group_field, parse_gik
from skip.wire.ip import build_ipv4, build_ipv6
from skip.wire.skip_header import SkipHeader
from tests.keying_harness import NOW

M4 = bytes([239, 1, 1, 1])
M6 = bytes.fromhex("ff15" + "00" * 13 + "01")
MODERN = Suite(2, 10, 11, 11)  # AES-256 key wrap, AES-256-GCM
LEGACY = Suite(1, 2, 2, 1)  # 3DES Kg Alg, 3DES, keyed MD5: mc-00's algorithms
PLAIN = struct.pack("!HHHH", 5000, 5001, 8 + 11, 0) + b"hello group"


def datagram(src: str, group: bytes, body: bytes = PLAIN) -> bytes:
    if len(group) == 4:
        return build_ipv4(src, ".".join(map(str, group)), 17, body)
    import ipaddress
    return build_ipv6(src, str(ipaddress.ip_address(group)), 17, body)


def err(fn, *args):
    with pytest.raises(SkipError) as e:
        fn(*args)
    return e.value.reason


# --- derivations and golden bytes ---------------------------------------------------------------


def test_mc10_legacy_kgn_vector_and_formula():
    kg = bytes(range(32))
    n = 0xAFC8
    want = "799c5dd3dc461bb1beca7f296f34828188e456e5b2c1f97c9f55034e9b3d1be3"
    mine = hashlib.md5(kg + n.to_bytes(4) + b"\1").digest() + \
        hashlib.md5(kg + n.to_bytes(4) + b"\0").digest()
    assert mine.hex() == want == legacy_kgn(kg, n).hex()


def test_mc_m1_modern_kgn_recomputed_with_hkdf():
    kg, n, epoch = os.urandom(32), 280_000, 7
    info = b"SKIP v2 Kgn\0" + group_field(M4) + epoch.to_bytes(4) + n.to_bytes(4)
    want = HKDF(SHA256(), 32, b"SKIP v2 Kg", info).derive(kg)
    assert modern_kgn(kg, group_field(M4), epoch, n) == want
    assert group_field(M4) == bytes(10) + b"\xff\xff" + M4  # IPv4-mapped (MC-M1)
    assert modern_kgn(kg, group_field(M4), epoch + 1, n) != want


def test_golden_gik_v1_request_and_response():
    req = GikRequestV1(bytes([224, 1, 2, 3]))
    assert req.encode().hex() == "01000000e0010203"
    resp = GikResponseV1(bytes([224, 1, 2, 3]), 0x3B9ACA00, 0x78, 0xA00000, 2, 2, 1, 0,
                         bytes(range(32)))
    assert resp.encode().hex() == ("01000000e00102033b9aca0000000078" "00a0000002020100"
                                   + bytes(range(32)).hex())
    assert len(resp.encode()) == 56 and parse_gik(resp.encode()) == resp
    reserved = bytearray(req.encode())
    reserved[1:4] = b"\xaa\xbb\xcc"  # RESERVED ignored on receive
    assert parse_gik(bytes(reserved)) == req


def test_the_owner_answers_a_version_1_request_byte_exactly():
    params = GroupParams(bytes([224, 1, 2, 3]), LEGACY, 0x78, 0xA00000)
    expiry = EPOCH_1995 + 0x3B9ACA00
    owner = GroupOwner(params, ["a"], NOW, os.urandom, lifetime=expiry - NOW)
    out = owner.handle_request(GikRequestV1(bytes([224, 1, 2, 3])).encode(), "a", NOW)
    assert out[:24].hex() == "01000000e00102033b9aca000000007800a0000002020100"
    assert out[24:] == owner.kg and len(out) == 56
    assert err(owner.handle_request, GikRequestV1(bytes([224, 1, 2, 3])).encode(), "x",
               NOW) == "not_a_member"


# --- an owner and members -----------------------------------------------------------------------


class Group:
    def __init__(self, members=("a", "b", "c"), group=M4, suite=MODERN, **owner_kw):
        self.params = GroupParams(group, suite, interval_seconds=120, interval_bytes=10**7)
        self.owner = GroupOwner(self.params, members, NOW, os.urandom, **owner_kw)
        self.members = {m: GroupMember(self.params, "owner", os.urandom) for m in members}
        for name in members:
            self.join(name)

    def join(self, name, now=NOW):
        member = self.members.setdefault(name, GroupMember(self.params, "owner", os.urandom))
        response = self.owner.handle_request(member.request(now), name, now)
        assert member.receive(response, "owner", now) == Joined(self.owner.epoch, "response")

    def multicast(self, payload, now=NOW, skip=()):
        return {m: member.receive(payload, None, now) for m, member in self.members.items()
                if m not in skip}


def test_a_member_sends_and_the_others_decrypt_under_kgn():
    g = Group()
    sent = datagram("10.0.0.1", M4)
    wire = g.members["a"].traffic.protect(sent, NOW)
    assert wire[9] == 57 and wire[16:20] == M4  # SKIP to the group address
    hdr = SkipHeader.parse(wire[20:20 + len(g.members["a"].traffic.tx.shim[1])],
                           header_ekp_length)
    assert hdr.dst_nsid == 0 and (hdr.kij_alg, hdr.crypt_alg, hdr.mac_alg) == (10, 11, 11)
    for name in ("b", "c"):
        assert g.members[name].traffic.unprotect(wire, NOW + 1) == sent
    assert g.owner.traffic.unprotect(wire, NOW + 1) == sent
    assert b"hello group" not in wire


def test_the_kp_unwraps_under_kgn_recomputed_from_the_spec():
    g = Group()
    wire = g.members["a"].traffic.protect(datagram("10.0.0.1", M4), NOW)
    header = g.members["a"].traffic.tx.shim[1]
    ekp = header[12:]
    n = kdf.counter_n(NOW)
    info = b"SKIP v2 Kgn\0" + group_field(M4) + g.owner.epoch.to_bytes(4) + n.to_bytes(4)
    kgn = HKDF(SHA256(), 32, b"SKIP v2 Kg", info).derive(g.owner.kg)
    unwrapped = aes_key_unwrap(kgn, ekp)
    assert len(unwrapped) == 32 + 8  # Kp and its creation stamp (modern-profile.md 4.3)
    assert wire[20:20 + len(header)] == header


def test_ipv6_groups_and_the_legacy_profile():
    v6 = Group(group=M6)
    sent = datagram("2001:db8::1", M6)
    assert v6.members["b"].traffic.unprotect(v6.members["a"].traffic.protect(sent, NOW),
                                             NOW) == sent
    old = Group(group=bytes([224, 1, 2, 3]), suite=LEGACY)
    sent = datagram("10.0.0.1", bytes([224, 1, 2, 3]))
    wire = old.members["a"].traffic.protect(sent, NOW)
    assert wire[20] >> 4 == 1  # SKIP version 1
    assert old.members["c"].traffic.unprotect(wire, NOW) == sent


def test_receive_rules_mc13_mc14_and_per_sender_replay():
    g = Group()
    a, b, c = (g.members[m].traffic for m in "abc")
    wire_a = a.protect(datagram("10.0.0.1", M4), NOW)
    wire_c = c.protect(datagram("10.0.0.3", M4, PLAIN[:8] + b"from c !!!!"), NOW)
    assert b.unprotect(wire_a, NOW)
    assert err(b.unprotect, wire_a, NOW) == "group_replay"
    assert b.unprotect(wire_c, NOW)  # another sender's window is its own (MC-M7)
    assert b.unprotect(a.protect(datagram("10.0.0.1", M4), NOW), NOW)
    nsid = bytearray(wire_a)
    nsid[22] = 1  # Dest NSID 1 without an MKID: refused before anything else
    assert err(b.unprotect, bytes(nsid), NOW) in ("group_dst_nsid", "truncated", "bad_length")
    algs = bytearray(c.protect(datagram("10.0.0.3", M4), NOW + 200))
    algs[29] = algs[30] = 12  # Crypt and MAC Alg: ChaCha20-Poly1305 is not the group's
    assert err(b.unprotect, bytes(algs), NOW + 200) == "group_algorithms"
    other = bytearray(wire_a)
    other[19] = 2  # 239.1.1.2: not this group
    assert err(b.unprotect, bytes(other), NOW) in ("group_unknown", "bad_checksum")


def test_mc6_the_sender_changes_kp_at_the_shorter_interval():
    g = Group()
    a = g.members["a"].traffic
    a.protect(datagram("10.0.0.1", M4), NOW)
    first = a.tx.shim[1]
    a.protect(datagram("10.0.0.1", M4), NOW + 60)
    assert a.tx.shim[1] == first
    a.protect(datagram("10.0.0.1", M4), NOW + 121)  # interval_seconds = 120
    assert a.tx.shim[1] != first
    small = GroupMember(GroupParams(M4, MODERN, 3600, 2000), "owner", os.urandom).traffic
    small.set_key(1, os.urandom(32), NOW + 3600, NOW)
    headers = set()
    for i in range(6):
        small.protect(datagram("10.0.0.1", M4, PLAIN[:8] + bytes(600)), NOW + i)
        headers.add(small.tx.shim[1])
    assert len(headers) >= 2  # 2000 bytes per Kp: the byte interval came first


def test_non_members_get_nothing_and_responses_only_count_from_the_owner():
    g = Group()
    stranger = GroupMember(g.params, "owner", os.urandom)
    assert err(g.owner.handle_request, stranger.request(NOW), "mallory", NOW) == "not_a_member"
    a = g.members["a"]
    request = a.request(NOW)
    response = g.owner.handle_request(request, "a", NOW)
    assert err(a.receive, response, "b", NOW) == "gik_wrong_owner"
    # from the owner it answers the request in progress (a is current: nothing changes)
    assert a.receive(response, "owner", NOW) == Joined(g.owner.epoch, "response")
    # replayed: no request is in progress, or its nonce is not the one asked with now
    assert err(a.receive, response, "owner", NOW) == "gik_unexpected"
    a.request(NOW)
    assert err(a.receive, response, "owner", NOW) == "gik_unexpected"


def test_after_expiry_traffic_is_refused():
    g = Group(lifetime=3600)
    a, b = g.members["a"].traffic, g.members["b"].traffic
    wire = a.protect(datagram("10.0.0.1", M4), NOW)
    assert err(a.protect, datagram("10.0.0.1", M4), NOW + 3601) == "group_expired"
    assert err(b.unprotect, wire, NOW + 3601) == "group_expired"


# --- eviction, join, catching up ------------------------------------------------------------------


def test_eviction_rekeys_the_others_and_locks_the_evicted_member_out():
    g = Group()
    before = g.members["c"].traffic.protect(datagram("10.0.0.3", M4), NOW)
    rekey = g.owner.evict("c", NOW + 1)
    results = g.multicast(rekey.payload, NOW + 1)
    assert results["a"] == results["b"] == Joined(g.owner.epoch, "rekey")
    assert results["c"] == Evicted(g.owner.epoch)
    a, b, c = (g.members[m].traffic for m in "abc")
    sent = datagram("10.0.0.1", M4)
    after = a.protect(sent, NOW + 2)
    assert b.unprotect(after, NOW + 2) == sent
    assert err(c.unprotect, after, NOW + 2) == "group_expired"  # c holds no key at all
    # c's packets under the old epoch: accepted during the grace period, then refused, even
    # with a Kp a receiver had cached (MC-M3)
    assert b.unprotect(before, NOW + 2)
    again = g.members["c"].traffic  # c kept nothing: it cannot make a new Kp either
    assert err(again.protect, datagram("10.0.0.3", M4), NOW + 2) == "group_expired"
    fresh = bytearray(before)
    assert err(b.unprotect, bytes(fresh), NOW + 2 + GRACE_SECONDS) == "group_epoch_unknown"


def test_lkh_eviction_costs_log_n_wraps_and_only_the_evicted_member_is_left_out():
    rng = os.urandom
    n = 64
    tree = KeyTree.for_members(n, rng)
    names = [f"m{i}" for i in range(n)]
    for name in names:
        tree.add(name)
    holders = {name: MemberKeys(tree.leaf_of[name], dict(tree.path_keys(name)))
               for name in names}
    evicted = holders.pop("m17")
    wraps = tree.evict("m17")
    assert len(wraps) <= 2 * math.ceil(math.log2(n))
    for name, keys in holders.items():
        keys.apply(wraps)
        assert keys.root_key == tree.root_key, name
        assert keys.keys == dict(tree.path_keys(name))
    old_root = evicted.root_key
    evicted.apply(wraps)
    assert evicted.root_key == old_root != tree.root_key


def test_ten_thousand_members_one_eviction_one_message():
    tree = KeyTree.for_members(10_000, os.urandom)
    for i in range(10_000):
        tree.add(f"m{i}")
    wraps = tree.evict("m4242")
    assert len(wraps) <= 2 * math.ceil(math.log2(10_000))  # 28
    message = GikRekey(M4, 2, 1, int(NOW), 1, tuple(wraps), bytes(64)).encode()
    assert parse_gik(message).wraps == tuple(wraps)


def test_a_late_member_cannot_read_what_was_sent_before_it_joined():
    g = Group(members=("a", "b"))
    earlier = g.members["a"].traffic.protect(datagram("10.0.0.1", M4), NOW)
    rekey = g.owner.add("d", NOW + 1)  # backward secrecy (MC-M4): a join rekey
    assert rekey is not None
    g.multicast(rekey.payload, NOW + 1)
    g.join("d", NOW + 1)
    d = g.members["d"].traffic
    assert err(d.unprotect, earlier, NOW + 2) == "group_epoch_unknown"
    later = g.members["a"].traffic.protect(datagram("10.0.0.1", M4), NOW + 2)
    assert d.unprotect(later, NOW + 2) and g.members["b"].traffic.unprotect(later, NOW + 2)


def test_a_member_offline_during_a_rekey_catches_up_over_unicast():
    g = Group(members=("a", "b", "c", "e"))
    first = g.owner.evict("e", NOW + 1)
    g.multicast(first.payload, NOW + 1, skip=("b", "e"))  # b was offline
    second = g.owner.evict("c", NOW + 2)
    g.multicast(second.payload, NOW + 2, skip=("b", "c", "e"))
    b = g.members["b"]
    assert err(b.receive, second.payload, None, NOW + 3) == "gik_epoch_gap"
    response = g.owner.handle_request(b.request(NOW + 3), "b", NOW + 3)
    assert b.receive(response, "owner", NOW + 3) == Joined(g.owner.epoch, "response")
    sent = datagram("10.0.0.1", M4)
    assert b.traffic.unprotect(g.members["a"].traffic.protect(sent, NOW + 4), NOW + 4) == sent


def test_rekeys_are_signed_replays_refused_and_resent():
    g = Group()
    rekey = g.owner.evict("c", NOW + 1)
    forged = bytearray(rekey.payload)
    forged[-1] ^= 1
    a = g.members["a"]
    assert err(a.receive, bytes(forged), None, NOW + 1) == "gik_bad_signature"
    assert a.receive(rekey.payload, None, NOW + 1) == Joined(g.owner.epoch, "rekey")
    assert err(a.receive, rekey.payload, None, NOW + 2) == "stale_epoch"  # a replay
    assert g.owner.next_timer() == NOW + 2
    assert g.owner.on_timer(NOW + 2) == rekey.payload
    assert g.owner.on_timer(NOW + 2) is None


def test_the_member_retransmits_its_request_with_back_off_and_gives_up():
    params = GroupParams(M4, MODERN)
    member = GroupMember(params, "owner", os.urandom)
    member.request(NOW)
    times = []
    while member.next_timer() is not None:
        due = member.next_timer()
        times.append(due - NOW)
        member.on_timer(due)
    assert times == [1, 3, 7, 15, 31] and member.state == "failed"


def test_an_owner_restart_moves_the_epoch_up_and_members_catch_up():
    g = Group()
    g.owner.evict("c", NOW + 1)  # the lost rekey: nobody heard it
    held = g.members["a"].epoch
    # the owner restarts from its config an hour later: new keys, a new rekey key, no state
    restarted = GroupOwner(g.params, ["a", "b"], NOW + 3600, os.urandom)
    assert restarted.epoch > held  # MC-M1: strictly increasing across the restart
    rekey = restarted.evict("b", NOW + 3601)
    a = g.members["a"]
    # signed with a key a does not know: refused, and a asks its owner over unicast
    assert err(a.receive, rekey.payload, None, NOW + 3601) == "gik_bad_signature"
    request = a.on_timer(NOW + 3601)
    assert request is not None and parse_gik(request).epoch == held
    assert a.receive(restarted.receive(request, "a", NOW + 3601), "owner", NOW + 3601) == \
        Joined(restarted.epoch, "response")
    sent = datagram("10.0.0.9", M4)
    assert a.traffic.unprotect(restarted.traffic.protect(sent, NOW + 3602), NOW + 3602) == sent
    # forged rekeys cannot make a member flood its owner: one catch-up per spacing
    forged = bytearray(rekey.payload)
    forged[-1] ^= 1
    assert err(a.receive, bytes(forged), None, NOW + 3603) == "gik_bad_signature"
    assert a.on_timer(NOW + 3603) is None  # 2 s after the last catch-up
    err(a.receive, bytes(forged), None, NOW + 3610)
    request = a.on_timer(NOW + 3610)
    assert request is not None
    same = a.receive(restarted.receive(request, "a", NOW + 3610), "owner", NOW + 3610)
    assert same == Joined(restarted.epoch, "response")  # current already: nothing changes
    err(a.receive, bytes(forged), None, NOW + 3611)
    assert a.on_timer(NOW + 3611) is None
    # a saved epoch wins over the clock
    assert GroupOwner(g.params, ["a"], NOW, os.urandom, first_epoch=9).epoch == 9


def test_a_member_that_sees_a_gap_asks_on_its_next_timer():
    g = Group(members=("a", "b", "c"))
    first = g.owner.evict("c", NOW + 1)
    second = g.owner.evict("b", NOW + 2)
    a = g.members["a"]
    assert a.next_timer() is None
    assert err(a.receive, second.payload, None, NOW + 2) == "gik_epoch_gap"
    assert a.next_timer() == NOW + 2
    response = g.owner.receive(a.on_timer(NOW + 2), "a", NOW + 2)
    assert a.receive(response, "owner", NOW + 2) == Joined(g.owner.epoch, "response")
    assert a.next_timer() is None
    assert err(a.receive, first.payload, None, NOW + 3) == "stale_epoch"  # a late resend


def test_a_full_key_tree_is_rebuilt_and_every_member_asks_again():
    g = Group(members=("a",))  # room for 4 leaves: the owner's, a's and two more
    for name in ("b", "c"):
        rekey = g.owner.add(name, NOW + 1)
        g.multicast(rekey.payload, NOW + 1)
        g.join(name, NOW + 1)
    earlier = g.members["a"].traffic.protect(datagram("10.0.0.1", M4), NOW + 1)
    rebuild = g.owner.add("d", NOW + 2)
    assert rebuild is not None and rebuild.wraps == 0 and g.owner.tree.depth == 4
    for name, event in g.multicast(rebuild.payload, NOW + 2).items():
        assert isinstance(event, Rebuilding) and NOW + 2 <= event.ask_at <= NOW + 2 + REBUILD_SPREAD
        member = g.members[name]
        assert member.on_timer(event.ask_at - 0.001) is None
        answer = g.owner.receive(member.on_timer(event.ask_at), name, event.ask_at)
        assert member.receive(answer, "owner", NOW + 8) == Joined(g.owner.epoch, "response")
    g.join("d", NOW + 8)
    sent = datagram("10.0.0.1", M4)
    wire = g.members["a"].traffic.protect(sent, NOW + 9)
    assert all(g.members[m].traffic.unprotect(wire, NOW + 9) == sent for m in "bcd")
    assert err(g.members["d"].traffic.unprotect, earlier, NOW + 9) == "group_epoch_unknown"
    evict = g.owner.evict("b", NOW + 10)  # the rebuilt tree still evicts in O(log n)
    results = g.multicast(evict.payload, NOW + 10)
    assert results["b"] == Evicted(g.owner.epoch)
    assert results["a"] == results["c"] == results["d"] == Joined(g.owner.epoch, "rekey")


def test_traffic_no_key_opens_makes_a_member_ask_again_spaced():
    """A member that missed every resend of a rekey learns of it from the group's traffic
    (group_epoch_unknown): it asks its owner, at most once per CATCH_UP_SPACING; an evicted
    member that asks stays "evicted", refused, until the owner adds it back."""
    from skip.multicast.member import CATCH_UP_SPACING
    g = Group()
    rekey = g.owner.evict("c", NOW + 1)
    b, c = g.members["b"], g.members["c"]
    heard = g.multicast(rekey.payload, NOW + 1, skip=("b",))  # b hears nothing
    assert isinstance(heard["c"], Evicted)
    sent = datagram("10.0.0.1", M4)
    wire = g.owner.traffic.protect(sent, NOW + 10)
    assert err(b.traffic.unprotect, wire, NOW + 10) == "group_epoch_unknown"
    assert b.on_timer(NOW + 10) is None  # nothing due until the traffic says so
    b.unreadable(NOW + 10)
    request = b.on_timer(NOW + 10)
    assert request is not None
    assert b.receive(g.owner.receive(request, "b", NOW + 10), "owner", NOW + 10) == \
        Joined(g.owner.epoch, "response")
    assert b.traffic.unprotect(wire, NOW + 10) == sent
    b.unreadable(NOW + 11)  # current again: a second catch-up waits out the spacing
    assert b.on_timer(NOW + 11) is None
    # the evicted member asks too; the owner refuses it and it stays evicted
    assert err(c.traffic.unprotect, wire, NOW + 12) == "group_expired"
    c.unreadable(NOW + 12)
    ask = c.on_timer(NOW + 12)
    assert ask is not None and c.state == "evicted"
    assert err(g.owner.receive, ask, "c", NOW + 12) == "not_a_member"
    # added back (a join rekey for the others): c's next ask gets the new keys, not the old
    g.multicast(g.owner.add("c", NOW + 20).payload, NOW + 20, skip=("c",))
    c.unreadable(NOW + 12 + CATCH_UP_SPACING + 10)
    now = NOW + 12 + CATCH_UP_SPACING + 10
    assert c.receive(g.owner.receive(c.on_timer(now), "c", now), "owner", now) == \
        Joined(g.owner.epoch, "response")
    assert c.state == "member"
    assert err(c.traffic.unprotect, wire, now) == "group_epoch_unknown"  # before it rejoined
    later = datagram("10.0.0.1", M4, PLAIN[:-1] + b"!")
    assert c.traffic.unprotect(g.members["a"].traffic.protect(later, now), now) == later


def test_the_key_log_holds_what_a_node_opened_and_nothing_after_its_eviction():
    """DANGEROUS key log (docs/decrypt.md): the sender logs each Kp it makes ("out"), a member
    each it opens ("in"); the logged E_kp/A_kp are the unicast derivation's of the logged Kp
    and header (what skip-decrypt uses; tests/test_daemon_multicast.py decrypts with it)."""
    from skip.keying.transforms import traffic_keys
    g = Group()
    logs = {m: [] for m in ("a", "c")}
    for m, entries in logs.items():
        g.members[m].traffic.log_traffic_keys_insecurely(entries.append)
    wire = g.members["a"].traffic.protect(datagram("10.0.0.1", M4), NOW)
    g.members["c"].traffic.unprotect(wire, NOW)
    (out,), (into,) = logs["a"], logs["c"]
    assert (out.direction, into.direction, out.peer) == ("out", "in", "239.1.1.1")
    assert out.header == into.header == wire[20:20 + len(out.header)] and out.kp == into.kp
    ekp_len = len(SkipHeader.parse(out.header, header_ekp_length).ekp)
    assert (out.e_kp, out.a_kp) == traffic_keys(MODERN, out.kp, ekp_len, out.header)
    g.multicast(g.owner.evict("c", NOW + 1).payload, NOW + 1)
    later = g.members["a"].traffic.protect(datagram("10.0.0.1", M4), NOW + 2)
    assert err(g.members["c"].traffic.unprotect, later, NOW + 2) == "group_expired"
    assert len(logs["c"]) == 1 and len(logs["a"]) == 2  # a new Kp for the new epoch
