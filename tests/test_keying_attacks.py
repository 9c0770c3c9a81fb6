"""The modern profile tried as an attacker would (issue 9, section 1; modern revision 2.1).

Each test replays or rewrites packets an on-path attacker can see, with the two-endpoint
harness: reflection back to the sender, a captured packet re-wrapped in the other IP version,
a replay after the receiver restarted, a CA that certifies one public value under two names,
and algorithm-discovery answers to forged requests. Every one of them passed on revision 2.0.
"""

from __future__ import annotations

import pytest

from skip.crypto import skip_numbers as num
from skip.crypto.skip_numbers import AlgClass
from skip.errors import SkipError
from skip.keying import KeyingPolicy, Peer, SkipEndpoint, Suite
from skip.keying.events import Transmit
from skip.wire.ip import build_ipv4, build_ipv6

from .keying_harness import ADDR, NOW, Link, identity, pair, peer_of, udp

MODERN_GROUPS = ["x25519", "modp-2048"]


def _reason(call) -> str:
    with pytest.raises(SkipError) as err:
        call()
    return err.value.reason


def _outer(wire: bytes) -> tuple[int, bytes]:
    """(IP version, the SKIP header and everything after it) of a protected datagram."""
    if wire[0] >> 4 == 4:
        return 4, wire[(wire[0] & 15) * 4:]
    return 6, wire[40:]


def _rewrap(wire: bytes, src: str, dst: str, version: int) -> bytes:
    """The captured SKIP payload in a new IP header: what an attacker can send for free."""
    _v, body = _outer(wire)
    index = 0 if version == 4 else 1
    build = build_ipv4 if version == 4 else build_ipv6
    return build(ADDR[src][index], ADDR[dst][index], 57, body)


def _transmits(endpoint: SkipEndpoint) -> list[bytes]:
    return [e.packet for e in endpoint.events() if isinstance(e, Transmit)]


# --- 1. reflection ----------------------------------------------------------------------------

@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("group", MODERN_GROUPS)
def test_a_packet_reflected_to_its_sender_is_refused(group: str, v6: bool) -> None:
    """A -> B, sources swapped, back to A: Kijn is directional, so the EKp no longer unwraps."""
    link = pair(group)
    wire = link.a.protect(udp(v6=v6), NOW)
    reflected = _rewrap(wire, "b", "a", 6 if v6 else 4)
    assert _reason(lambda: link.a.unprotect(reflected, NOW)) == "kp_unwrap_failed"
    assert link.a.counters["rx_ok"] == 0
    assert link.b.unprotect(wire, NOW).packet == udp(v6=v6)  # the genuine direction works


def test_a_reply_under_the_reflected_kp_is_still_refused() -> None:
    """Both sides talking: each direction has its own Kp, and neither opens the other's."""
    link = pair("x25519")
    ab, _ = link.send(udp())
    ba, got = link.send(udp("b", "a"), a_to_b=False)
    assert got.peer == "b"
    assert _reason(lambda: link.b.unprotect(_rewrap(ba, "a", "b", 4), NOW)) == \
        "kp_unwrap_failed"
    assert _reason(lambda: link.a.unprotect(_rewrap(ab, "b", "a", 4), NOW)) == \
        "kp_unwrap_failed"


# --- 2. replay by re-wrapping -----------------------------------------------------------------

@pytest.mark.parametrize(("first", "second"), [(4, 6), (6, 4)])
@pytest.mark.parametrize("group", MODERN_GROUPS)
def test_a_rewrapped_packet_meets_the_same_replay_window(group: str, first: int,
                                                        second: int) -> None:
    """One Kp, one window: keyed by (local principal, peer, EKp), not by outer addresses."""
    link = pair(group)
    wire = link.a.protect(udp(v6=first == 6), NOW)
    assert link.b.unprotect(wire, NOW).peer == "a"
    again = _rewrap(wire, "a", "b", second)
    assert _reason(lambda: link.b.unprotect(again, NOW)) == "replay"
    assert link.b.counters["kp_decrypted"] == 1  # the second route found the known Kp
    # live traffic between the same two still flows over both address families
    assert link.b.unprotect(link.a.protect(udp(v6=second == 6), NOW), NOW).peer == "a"


def test_a_rewrapped_tunnel_packet_is_a_replay() -> None:
    link = pair("x25519")
    ida, idb = identity("a", ("x25519",)), identity("b", ("x25519",))
    link.a.add_peer(peer_of(idb, "x25519"), NOW, tunnel=ADDR["b"][0])
    link.b.add_peer(peer_of(ida, "x25519"), NOW, tunnel=ADDR["a"][0])
    wire, got = link.send(udp())
    assert wire[0] >> 4 == 4 and got.packet == udp()
    assert _reason(lambda: link.b.unprotect(_rewrap(wire, "a", "b", 6), NOW)) == "replay"


def test_a_rewrapped_packet_of_an_unseen_kp_is_delivered_once() -> None:
    """First seen in its re-wrapped form: accepted there, and the original is then the replay."""
    link = pair("x25519")
    wire = link.a.protect(udp(), NOW)
    assert link.b.unprotect(_rewrap(wire, "a", "b", 6), NOW).peer == "a"
    assert _reason(lambda: link.b.unprotect(wire, NOW)) == "replay"


# --- 3. replay after restart ------------------------------------------------------------------

def _restarted(link: Link, at: float, policy: KeyingPolicy | None = None) -> SkipEndpoint:
    """B again, as after a restart at ``at``: same identity and peer, no receive state."""
    return SkipEndpoint([identity("b", ("x25519",))], [peer_of(identity("a", ("x25519",)),
                                                                "x25519")],
                        policy=policy or KeyingPolicy(allow_legacy=True), started=at)


@pytest.mark.parametrize("later", [60.0, 3600.0, 5400.0])
def test_a_packet_captured_before_a_restart_is_refused(later: float) -> None:
    link = pair("x25519")
    wire, _ = link.send(udp())
    b = _restarted(link, NOW + later - 1)
    reason = _reason(lambda: b.unprotect(wire, NOW + later))
    # within the n window the creation time refuses it; an hour and a half on, n already does
    assert reason == ("kp_stale" if later < 3600 * 1.5 else "n_out_of_window")
    assert b.counters["rx_ok"] == 0


def test_after_a_restart_live_traffic_recovers_in_one_round_trip() -> None:
    """The restarted receiver refuses the old Kp and tells the sender (authenticated SKIP ICMP
    notice carrying its start time); the sender's very next packet uses a new Kp."""
    link = pair("x25519")
    link.send(udp())
    at = NOW + 60
    b = _restarted(link, at - 1)
    old = link.a.protect(udp(payload=bytes(160)), at)  # the Kp from before the restart
    assert _reason(lambda: b.unprotect(old, at)) == "kp_stale"
    [notice] = _transmits(b)
    assert b.counters["kp_notice_sent"] == 1
    assert link.a.unprotect(notice, at + 0.01) is None  # consumed: advice, not traffic
    assert link.a.counters["kp_notice_received"] == 1
    fresh = link.a.protect(udp(), at + 0.02)
    assert b.unprotect(fresh, at + 0.02).packet == udp()
    assert _reason(lambda: b.unprotect(old, at + 0.03)) == "kp_stale"  # still refused


def test_a_sender_whose_clock_is_behind_recovers_too() -> None:
    """The notice names the receiver's start, so a sender 30 s behind makes its next Kp with
    a creation time the receiver accepts instead of looping on kp_stale."""
    link = pair("x25519")
    at = NOW + 600
    b = _restarted(link, at)
    behind = at - 30
    assert _reason(lambda: b.unprotect(link.a.protect(udp(), behind), at)) == "kp_stale"
    [notice] = _transmits(b)
    assert link.a.unprotect(notice, behind) is None
    assert b.unprotect(link.a.protect(udp(), behind + 0.01), at + 0.01).packet == udp()


def test_a_notice_cannot_push_creation_times_far_ahead() -> None:
    """A floor more than an hour past the sender's newest Kp is not believed."""
    link = pair("x25519")
    link.send(udp())
    far = NOW + 2 * 3600
    b = _restarted(link, far)  # a receiver whose clock is two hours ahead
    assert _reason(lambda: b.unprotect(link.a.protect(udp(), NOW), far)) in (
        "kp_stale", "n_out_of_window")
    for notice in _transmits(b):
        link.a.unprotect(notice, NOW)
    assert link.a.counters["kp_notice_received"] == 0


def test_retired_kps_are_refused_once_the_sender_moved_on() -> None:
    """An older Kp keeps working for a grace period after a newer one arrives (packets in
    flight), then its window is let go and its packets are kp_superseded, never admitted to
    a fresh window."""
    policy = KeyingPolicy(allow_legacy=True, kp_max_seconds=60)
    link = pair("x25519", policy_a=policy)
    link.send(udp())
    in_flight, late = link.a.protect(udp(), NOW + 1), link.a.protect(udp(), NOW + 2)
    moved = NOW + 61
    link.send(udp(), moved)  # the sender's next Kp
    grace = link.b.policy.rx_superseded_seconds
    assert link.b.unprotect(in_flight, moved + grace / 2).packet == udp()
    link.send(udp(), moved + grace + 1)  # the receiver retires the old Kp
    assert _reason(lambda: link.b.unprotect(late, moved + grace + 2)) == "kp_superseded"


# --- 4. unknown key-share ---------------------------------------------------------------------

def test_one_public_value_cannot_be_two_peers() -> None:
    """A CA certified A's public value under E's name: refused, not accepted as E."""
    link = pair("x25519")
    ida = identity("a", ("x25519",))
    evil = Peer.create("e", "x25519", ida.publics["x25519"], addresses=[ADDR["c"][0]])
    assert _reason(lambda: link.b.add_peer(evil, NOW)) == "duplicate_public_value"
    assert link.b.unprotect(link.a.protect(udp(), NOW), NOW).peer == "a"


def test_a_peer_cannot_have_our_own_public_value() -> None:
    link = pair("x25519")
    idb = identity("b", ("x25519",))
    mirror = Peer.create("m", "x25519", idb.publics["x25519"], addresses=[ADDR["c"][0]])
    assert _reason(lambda: link.b.add_peer(mirror, NOW)) == "duplicate_public_value"


def test_renewing_a_peer_with_its_own_value_is_not_a_duplicate() -> None:
    link = pair("x25519")
    ida = identity("a", ("x25519",))
    link.b.add_peer(peer_of(ida, "x25519"), NOW)
    assert link.b.unprotect(link.a.protect(udp(), NOW), NOW).peer == "a"


def test_two_rules_for_one_principal_may_share_its_value() -> None:
    """skipd's tunnel and transport rules for one host carry one certificate: not a clash."""
    link = pair("x25519")
    ida = identity("a", ("x25519",))
    link.b.remove_peer("a")
    link.b.add_peer(Peer.create("a", "x25519", ida.publics["x25519"], principal="cert-a",
                                addresses=[ADDR["a"][0]]), NOW)
    link.b.add_peer(Peer.create("a6", "x25519", ida.publics["x25519"], principal="cert-a",
                                addresses=[ADDR["a"][1]]), NOW)
    assert link.b.unprotect(link.a.protect(udp(v6=True), NOW), NOW).peer == "a6"


# --- algorithm discovery answers (ADP) --------------------------------------------------------

def _refused_request(link: Link, src: str, size: int = 160) -> bytes:
    """A modern packet B refuses for its algorithms (AES-128-GCM is not in B's policy),
    as if sent from ``src``."""
    return _rewrap(link.a.protect(udp(payload=bytes(size)), NOW), src, "b", 4)


def _adp_pair() -> Link:
    base = KeyingPolicy(allow_legacy=True)
    accepted = dict(base.accepted)
    accepted[2] = accepted[2] - {(AlgClass.CRYPT, num.AES128_GCM)}
    refusing = KeyingPolicy(allow_legacy=True, accepted=accepted)
    return pair("x25519", Suite(2, 10, num.AES128_GCM, num.AES128_GCM), policy_b=refusing)


def test_an_algorithm_answer_goes_only_to_a_known_address() -> None:
    link = _adp_pair()
    assert _reason(lambda: link.b.unprotect(_refused_request(link, "a"), NOW)).startswith(
        "unsupported")
    assert len(_transmits(link.b)) == 1 and link.b.counters["adp_sent"] == 1
    spoofed = _refused_request(link, "c")  # the same request from an address A never had
    with pytest.raises(SkipError):
        link.b.unprotect(spoofed, NOW)
    assert _transmits(link.b) == [] and link.b.counters["adp_sent"] == 1


def test_an_algorithm_answer_is_never_larger_than_its_request() -> None:
    link = _adp_pair()
    with pytest.raises(SkipError):
        link.b.unprotect(_refused_request(link, "a", size=0), NOW)
    assert _transmits(link.b) == [] and link.b.counters["adp_too_large"] == 1


def test_algorithm_answers_have_a_global_rate() -> None:
    """Per-source limits do not stop a flood from many (known) addresses: a global one does."""
    link = _adp_pair()
    policy = link.b.policy
    sent = 0
    for i in range(int(policy.adp_per_second) * 3):
        with pytest.raises(SkipError):
            link.b.unprotect(_refused_request(link, "a"), NOW + i * 1e-4)
        sent += len(_transmits(link.b))
    assert 1 <= sent <= 2  # one per source per adp_interval
    assert link.b.counters["rate_limited"] >= policy.adp_per_second * 3 - 2


def test_solicitations_are_padded_to_cover_their_answer() -> None:
    link = pair("x25519")
    request = link.a.solicit("b", NOW)
    assert len(request) >= 256
    assert _reason(lambda: link.b.unprotect(request, NOW)) == "no_kp"
    [answer] = _transmits(link.b)
    assert len(answer) <= len(request)


# --- key strength (draft-06 s. 2.3) -----------------------------------------------------------

@pytest.mark.parametrize("suite", [Suite(1, 1, 2, 0), Suite(1, 1, 0, 1), Suite(1, 1, 2, 3)],
                         ids=str)
def test_a_weak_kij_alg_may_not_wrap_a_strong_traffic_key(suite: Suite) -> None:
    assert suite.kij_too_weak
    with pytest.raises(SkipError) as err:
        pair("skip-1024", suite).a.protect(udp(), NOW)
    assert err.value.reason == "kij_too_weak"


def test_a_weak_kij_alg_may_wrap_a_weak_traffic_key() -> None:
    suite = Suite(1, 1, 1, 0)  # DES Kij Alg over DES ESP: both 56-bit, the draft's example
    assert not suite.kij_too_weak
    assert pair("skip-1024", suite).send(udp())[1].packet == udp()


def test_legacy_next_header_must_match_the_transform() -> None:
    link = pair("skip-1024", Suite(1, 2, 2, 1))  # AH + ESP: Next Header 51
    wire = bytearray(link.a.protect(udp(), NOW))
    wire[20 + 3] = 50  # Next Header claims ESP alone
    assert _reason(lambda: link.b.unprotect(bytes(wire), NOW)) == "bad_header"



# --- receive-key slots (issue 15, defects 1 and 3) --------------------------------------------

@pytest.mark.parametrize("group", ["x25519", "skip-1024"])
def test_a_bulk_flow_never_fills_the_receive_keys(group: str) -> None:
    """A long transfer is a long run of Kps (one per kp_max_bytes): the receiver retires the
    ones the sender moved past, so far more than rx_keys_per_peer Kps pass without kp_limit.
    (Before: 512 Kps, i.e. 5.12 GB at 10 MB each, then every packet refused for good.)"""
    suite = Suite(1, 2, 2, 1) if group == "skip-1024" else None
    small = KeyingPolicy(allow_legacy=True, kp_max_bytes=300)
    link = pair(group, suite, policy_a=small)
    limit = link.b.policy.rx_keys_per_peer
    packet = udp(payload=bytes(200))
    for i in range(4 * limit):  # a new Kp every other packet
        at = NOW + i * 0.05  # 20 Kps a second: a 1.6 Gbit/s flow at 10 MB a Kp
        wire = link.a.protect(packet, at)
        assert link.b.unprotect(wire, at).packet == packet
    assert link.a.counters["kp_new"] >= 2 * limit
    assert link.b.counters["kp_limit"] == 0
    # modern: only the Kps within their grace period; legacy (no windows to lose): the most
    # recently admitted ones, least recent making room
    assert link.b.peer_status("a", at).rx_keys < (limit // 4 if suite is None else limit + 1)


def test_answers_to_forged_solicitations_use_no_receive_keys() -> None:
    """Peers named by MKID (no address to check): forged solicitations from anywhere make B
    answer A, but in the modern profile every answer travels under B's one current Kp, so A's
    receive keys for B do not fill and B's traffic keeps flowing."""
    link = pair("x25519", mkids=True)
    link.send(udp("b", "a"), a_to_b=False)  # B has a current Kp to A
    answers = 0
    for i in range(700):
        forged = link.a.solicit("b", NOW + i * 0.013)  # what an off-path sender can replay
        with pytest.raises(SkipError):
            link.b.unprotect(forged, NOW + i * 0.013)
        for answer in _transmits(link.b):
            answers += 1
            assert link.a.unprotect(answer, NOW + i * 0.013) is None
    assert answers >= 1
    assert link.a.peer_status("b", NOW + 10).rx_keys == 1
    _wire, got = link.send(udp("b", "a"), NOW + 10, a_to_b=False)
    assert got.peer == "b" and link.a.counters["kp_limit"] == 0


def test_kps_faster_than_the_grace_period_retire_the_oldest_early() -> None:
    """More Kps inside one grace period than the receiver holds (a fast sender with small
    Kps): the oldest superseded one goes early instead of the newest being refused."""
    small = KeyingPolicy(allow_legacy=True, kp_max_bytes=300)
    receiver = KeyingPolicy(allow_legacy=True, rx_keys_per_peer=16)
    link = pair("x25519", policy_a=small, policy_b=receiver)
    packet = udp(payload=bytes(200))
    first = link.a.protect(packet, NOW)
    link.b.unprotect(first, NOW)
    early = link.a.protect(packet, NOW)  # same Kp as `first`, held back
    for i in range(200):  # 100 Kps within a millisecond each: all inside the 5 s grace
        assert link.b.unprotect(link.a.protect(packet, NOW + i * 1e-3), NOW + i * 1e-3)
    assert link.b.counters["kp_limit"] == 0
    assert link.b.peer_status("a", NOW + 1).rx_keys <= 16
    assert _reason(lambda: link.b.unprotect(early, NOW + 1)) == "kp_superseded"
