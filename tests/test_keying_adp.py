"""Algorithm discovery (SKIP ICMP, ADP-00) between two endpoints, and the Kij cache bounds."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import pytest

from skip.crypto import skip_numbers as num
from skip.crypto.skip_numbers import AlgClass
from skip.errors import SkipError
from skip.keying import adp
from skip.keying.events import AlgorithmsChanged, Transmit
from skip.keying.kij_cache import KijCache
from skip.keying.policy import KeyingPolicy
from skip.keying.suite import Suite
from skip.wire.ip import locate_upper
from skip.wire.skip_header import SkipHeader
from skip.wire.skip_icmp import AdpCode, SkipIcmp

from .keying_harness import NOW, pair, udp

#: A datagram large enough that the SKIP ICMP answer to it is no larger (decisions.md 3.14)
BIG = bytes(160)


def _refusing(version: int, cls: AlgClass, *numbers: int) -> KeyingPolicy:
    base = KeyingPolicy(allow_legacy=True)
    accepted = dict(base.accepted)
    accepted[version] = accepted[version] - {(cls, n) for n in numbers}
    return KeyingPolicy(allow_legacy=True, accepted=accepted)


def _adp_answer(endpoint) -> bytes:
    [event] = [e for e in endpoint.events() if isinstance(e, Transmit)]
    assert event.why == "adp"
    return event.packet


def test_modern_round_trip_switches_the_sender() -> None:
    policy_b = _refusing(2, AlgClass.CRYPT, num.AES256_GCM)
    link = pair("x25519", Suite(2, 10, num.AES256_GCM, num.AES256_GCM), policy_b=policy_b)
    with pytest.raises(SkipError) as err:
        link.send(udp(payload=BIG))
    assert err.value.reason == "unsupported_crypt_alg"
    answer = _adp_answer(link.b)
    # The answer is itself a modern SKIP packet (authenticated ESP) carrying ICMP type 39.
    _v, _nh, off, proto = locate_upper(answer)
    header = SkipHeader.parse_from(answer, off, num.header_ekp_length)[0]
    assert proto == 57 and header.version == 2 and header.mac_alg == header.crypt_alg
    assert link.a.unprotect(answer, NOW) is None  # consumed as advice
    advice = link.a.capabilities["b"]
    assert advice.code == AdpCode.CRYPT_UNSUPPORTED and num.AES256_GCM not in advice.crypt
    [changed] = [e for e in link.a.events() if isinstance(e, AlgorithmsChanged)]
    assert changed.new == (10, num.CHACHA20_POLY1305, num.CHACHA20_POLY1305, 0)
    _wire, got = link.send(udp(payload=BIG), NOW + 1)
    assert got.algorithms == changed.new


def test_legacy_round_trip_uses_keyed_md5_and_switches() -> None:
    policy_b = _refusing(1, AlgClass.CRYPT, 2)  # b refuses 3DES traffic
    link = pair("skip-1024", Suite(1, 2, 2, 1), policy_b=policy_b)
    with pytest.raises(SkipError):
        link.send(udp(payload=BIG))
    answer = _adp_answer(link.b)
    _v, _nh, off, _p = locate_upper(answer)
    header, end = SkipHeader.parse_from(answer, off, num.header_ekp_length)
    # ADP-00: SKIP + AH with keyed MD5 around ICMP type 39; Kij Alg 3DES (A-ADP-1).
    assert (header.kij_alg, header.crypt_alg, header.mac_alg, header.next_header) == (2, 0, 1, 51)
    assert answer[end] == 1 and answer[end + 8 + 16] == 39
    assert link.a.unprotect(answer, NOW) is None
    # A-ADP-3: per class, our first preference the peer lists (keyed SHA before keyed MD5).
    assert link.send(udp(payload=BIG), NOW + 1)[1].algorithms == (2, 1, 3, 0)


def test_kij_alg_zero_solicits_advice() -> None:
    link = pair("x25519")
    solicitation = link.a.solicit("b", NOW)
    _v, _nh, off, proto = locate_upper(solicitation)
    header = SkipHeader.parse_from(solicitation, off, num.header_ekp_length)[0]
    assert proto == 57 and header.kij_alg == 0 and header.ekp == b""
    with pytest.raises(SkipError) as err:
        link.b.unprotect(solicitation, NOW)
    assert err.value.reason == "no_kp"  # nothing is delivered
    answer = _adp_answer(link.b)
    assert link.a.unprotect(answer, NOW) is None
    advice = link.a.capabilities["b"]
    assert advice.code == AdpCode.NONE and advice.kij == (10,)
    assert set(advice.crypt) == {10, 11, 12, 13, 14} and advice.comp == ()


def test_answers_are_rate_limited() -> None:
    policy_b = _refusing(2, AlgClass.CRYPT, num.AES256_GCM)
    link = pair("x25519", Suite(2, 10, num.AES256_GCM, num.AES256_GCM), policy_b=policy_b)
    for _ in range(3):
        with pytest.raises(SkipError):
            link.send(udp(payload=BIG))
    assert len([e for e in link.b.events() if isinstance(e, Transmit)]) == 1
    assert link.b.counters["rate_limited"] == 2
    with pytest.raises(SkipError):
        link.send(udp(payload=BIG), NOW + 2)
    assert len([e for e in link.b.events() if isinstance(e, Transmit)]) == 1


def test_skip_icmp_is_never_answered_with_skip_icmp() -> None:
    # a refuses DES traffic and answers b with SKIP + AH(keyed MD5) under Kij Alg 3DES (A-ADP-1);
    # b refuses Kij Alg 3DES, so it cannot read the answer, and it could answer it (it has DES
    # and keyed MD5) but must not: the AH it cannot check carries ICMP. (DES Kij Alg with DES
    # traffic: a DES Kp may be wrapped by DES, draft-06 s. 2.3.)
    policy_a = _refusing(1, AlgClass.CRYPT, 1)
    policy_b = _refusing(1, AlgClass.KIJ, 2)
    link = pair("skip-1024", Suite(1, 1, 1, 0), policy_a=policy_a, policy_b=policy_b)
    with pytest.raises(SkipError):
        link.send(udp("b", "a", payload=BIG), a_to_b=False)
    answer = _adp_answer(link.a)
    with pytest.raises(SkipError) as err:
        link.b.unprotect(answer, NOW)
    assert err.value.reason == "unsupported_kij_alg"
    assert not [e for e in link.b.events() if isinstance(e, Transmit)]


def test_unauthenticated_skip_icmp_is_discarded() -> None:
    link = pair("skip-1024", Suite(1, 1, 1, 0))  # ESP DES only: no authentication
    message = SkipIcmp(AdpCode.NONE, (1,), (1,), (1,)).encode()
    from skip.wire.ip import build_ipv4
    forged = build_ipv4("10.0.0.2", "10.0.0.1", 1, message)
    wire = link.b.protect(forged, NOW)
    with pytest.raises(SkipError) as err:
        link.a.unprotect(wire, NOW)
    assert err.value.reason == "icmp_refused"
    assert "b" not in link.a.capabilities


def test_choose_keeps_shape_and_our_preference() -> None:
    policy = KeyingPolicy(allow_legacy=True)
    advice = SkipIcmp(AdpCode.NONE, (1, 2), (1,), (3, 1))
    assert adp.choose(policy, Suite(1, 2, 2, 1), advice) == Suite(1, 2, 1, 3)
    assert adp.choose(policy, Suite(1, 2, 2, 0), advice) == Suite(1, 2, 1, 0)
    assert adp.choose(policy, Suite(1, 2, 2, 1), SkipIcmp(AdpCode.NONE, (1,), (), (1,))) is None


# --- the Kij cache -------------------------------------------------------------------------


def test_cache_is_bounded_lru_with_pinned_entries() -> None:
    cache = KijCache(capacity=3, dh_per_second=1000, dh_burst=1000)
    cache.precompute(("me", "admin", 1), lambda: b"admin")
    for i in range(10):
        cache.get(("me", f"p{i}", 1), lambda i=i: bytes([i]), NOW)
    assert len(cache) == 3
    assert ("me", "admin", 1) in cache and ("me", "p9", 1) in cache
    assert ("me", "p0", 1) not in cache


def test_cache_refuses_when_everything_is_pinned() -> None:
    cache = KijCache(capacity=2, dh_per_second=1000, dh_burst=1000)
    cache.precompute(("me", "a", 1), lambda: b"a")
    cache.precompute(("me", "b", 1), lambda: b"b")
    calls = []
    with pytest.raises(SkipError) as err:
        cache.get(("me", "c", 1), lambda: calls.append(1) or b"c", NOW)
    assert err.value.reason == "kij_cache_full" and not calls  # no DH work was done


def test_dh_budget_stops_new_master_keys_but_not_cached_ones() -> None:
    cache = KijCache(capacity=100, dh_per_second=1, dh_burst=2)
    for i in range(2):
        cache.get(("me", f"p{i}", 1), lambda: b"k", NOW)
    with pytest.raises(SkipError) as err:
        cache.get(("me", "p2", 1), lambda: b"k", NOW)
    assert err.value.reason == "rate_limited"
    assert cache.get(("me", "p0", 1), lambda: b"never", NOW).kij == b"k"
    assert cache.get(("me", "p2", 1), lambda: b"k", NOW + 1).kij == b"k"  # budget refilled


def test_endpoint_precompute_pins_and_avoids_the_budget() -> None:
    policy = KeyingPolicy(dh_per_second=0.0, dh_burst=0)
    link = pair("x25519", policy_a=policy, policy_b=policy)
    with pytest.raises(SkipError) as err:
        link.send(udp(payload=BIG))
    assert err.value.reason == "rate_limited"
    link.a.precompute("b")
    link.b.precompute("a")
    assert link.send(udp(payload=BIG))[1].packet == udp(payload=BIG)


# --- algorithm numbers the receiver does not know ------------------------------------------
#
# An unknown number leaves the header's length unknown (the EKp's follows from the numbers),
# so nothing behind its 12 fixed bytes can be read; the sender is named by its address only.

_ALGS = 20 + 8  # the Kij/Crypt/MAC/Comp bytes of a SKIP header after an option-free IPv4 header
_UNKNOWN = 200  # a number neither profile assigns


def _with_number(wire: bytes, field: int, number: int = _UNKNOWN) -> bytes:
    raw = bytearray(wire)
    raw[_ALGS + field] = number
    return bytes(raw)


def _transmitted(endpoint) -> list[Transmit]:
    return [e for e in endpoint.events() if isinstance(e, Transmit)]


def _tables_without(version: int, crypt: int):
    """The algorithm tables of a node that never implemented Crypt Alg ``crypt``."""
    prof = num.PROFILES[version]
    older = replace(prof, crypt=MappingProxyType({k: v for k, v in prof.crypt.items()
                                                  if k != crypt}))
    return MappingProxyType({**num.PROFILES, version: older})


def test_unknown_crypt_number_is_answered_and_the_sender_switches(monkeypatch) -> None:
    chacha = num.CHACHA20_POLY1305
    link = pair("x25519", Suite(2, 10, chacha, chacha))
    older = _tables_without(2, chacha)

    def at_b(wire: bytes, now: float):  # b is a node whose tables lack ChaCha20-Poly1305
        with monkeypatch.context() as m:
            m.setattr(num, "PROFILES", older)
            return link.b.unprotect(wire, now)

    with pytest.raises(SkipError) as err:
        at_b(link.a.protect(udp(payload=BIG), NOW), NOW)
    assert err.value.reason == "unsupported_crypt_alg"
    assert link.b.counters["unsupported_crypt_alg"] == 1
    [answer] = _transmitted(link.b)
    assert answer.why == "adp"
    assert link.a.unprotect(answer.packet, NOW) is None  # authenticated advice, consumed
    advice = link.a.capabilities["b"]
    # b cannot know that MAC Alg = Crypt Alg names a combined transform: M is set too
    assert advice.code == AdpCode.CRYPT_UNSUPPORTED | AdpCode.MAC_UNSUPPORTED
    assert chacha not in advice.crypt and num.AES256_GCM in advice.crypt
    [changed] = [e for e in link.a.events() if isinstance(e, AlgorithmsChanged)]
    assert changed.old == (10, chacha, chacha, 0)
    assert changed.new == (10, num.AES256_GCM, num.AES256_GCM, 0)
    got = at_b(link.a.protect(udp(payload=BIG), NOW + 1), NOW + 1)
    assert got.packet == udp(payload=BIG) and got.algorithms == changed.new


@pytest.mark.parametrize(("group", "suite", "field", "reason", "bit"), [
    ("x25519", Suite(2, 10, num.AES256_GCM, num.AES256_GCM), 0, "unsupported_kij_alg",
     AdpCode.KIJ_UNSUPPORTED),
    ("x25519", Suite(2, 10, num.AES128_CBC, num.HMAC_SHA256_128), 1, "unsupported_crypt_alg",
     AdpCode.CRYPT_UNSUPPORTED),
    ("x25519", Suite(2, 10, num.AES128_CBC, num.HMAC_SHA256_128), 2, "unsupported_mac_alg",
     AdpCode.MAC_UNSUPPORTED),
    ("skip-1024", Suite(1, 2, 2, 1), 2, "unsupported_mac_alg", AdpCode.MAC_UNSUPPORTED),
    ("skip-1024", Suite(1, 2, 1, 0), 0, "unsupported_kij_alg", AdpCode.KIJ_UNSUPPORTED),
])
def test_unknown_numbers_are_answered_once_per_interval(group, suite, field, reason,
                                                         bit) -> None:
    link = pair(group, suite)
    wire = _with_number(link.a.protect(udp(payload=BIG), NOW), field)
    for _ in range(2):
        with pytest.raises(SkipError) as err:
            link.b.unprotect(wire, NOW)
        assert err.value.reason == reason
    assert link.b.counters[reason] == 2 and link.b.counters["rate_limited"] == 1
    [answer] = _transmitted(link.b)
    _v, _nh, off, _p = locate_upper(answer.packet)
    header = SkipHeader.parse_from(answer.packet, off, num.header_ekp_length)[0]
    assert header.version == suite.version
    if suite.version == 1:  # ADP-00: SKIP + AH with keyed MD5
        assert (header.crypt_alg, header.mac_alg, header.next_header) == (0, 1, 51)
    assert link.a.unprotect(answer.packet, NOW) is None
    assert link.a.capabilities["b"].code == bit


def test_unknown_numbers_behind_an_mkid_get_no_answer() -> None:
    # Source NSID 8: the name of the sender sits behind the EKp, whose length is unknown
    link = pair("x25519", Suite(2, 10, num.AES256_GCM, num.AES256_GCM), mkids=True)
    with pytest.raises(SkipError) as err:
        link.b.unprotect(_with_number(link.a.protect(udp(payload=BIG), NOW), 1), NOW)
    assert err.value.reason == "unsupported_crypt_alg"
    assert not _transmitted(link.b) and link.b.counters["adp_sent"] == 0


def test_unknown_numbers_in_ah_alone_get_no_answer() -> None:
    # AH alone may carry SKIP ICMP, and where its Next Header sits is unknown: never answered
    link = pair("skip-1024", Suite(1, 2, 0, 1))
    with pytest.raises(SkipError) as err:
        link.b.unprotect(_with_number(link.a.protect(udp(payload=BIG), NOW), 2), NOW)
    assert err.value.reason == "unsupported_mac_alg"
    assert not _transmitted(link.b)


def test_unknown_numbers_are_checked_for_the_destination_and_n_first() -> None:
    link = pair("x25519", Suite(2, 10, num.AES256_GCM, num.AES256_GCM))
    wire = _with_number(link.a.protect(udp(payload=BIG), NOW), 1)
    with pytest.raises(SkipError) as err:
        link.b.unprotect(wire, NOW + 2 * 3600)
    assert err.value.reason == "n_out_of_window"
    assert not _transmitted(link.b)


def test_a_solicitation_with_unknown_numbers_is_answered() -> None:
    # Kij Alg 0 has no EKp whatever the other numbers are, so the header still parses
    link = pair("x25519")
    solicitation = _with_number(link.a.solicit("b", NOW), 1)
    with pytest.raises(SkipError) as err:
        link.b.unprotect(solicitation, NOW)
    assert err.value.reason == "no_kp"
    [answer] = _transmitted(link.b)
    assert link.a.unprotect(answer.packet, NOW) is None
    assert link.a.capabilities["b"].code & AdpCode.CRYPT_UNSUPPORTED
