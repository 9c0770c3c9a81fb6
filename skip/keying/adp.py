"""Algorithm discovery state (draft-ietf-ipsec-skip-adp-00): advice in, advice out.

Out: when a packet uses an algorithm we do not support or policy refuses (or Kij Alg 0, the
solicitation), we answer with a SKIP ICMP message, at most one per source per
``adp_interval`` seconds (A-ADP-2; the set of sources remembered is bounded).

In: an authenticated SKIP ICMP message replaces what we know of that peer's capabilities
(A-ADP-3) and we re-choose, class by class, the first algorithm in *our* preference order that
the peer lists.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace

from skip.crypto import skip_numbers as num
from skip.crypto.skip_numbers import MODERN_VERSION, AlgClass
from skip.keying.policy import KeyingPolicy
from skip.keying.ratelimit import TokenBucket
from skip.keying.suite import LEGACY_ADP, MODERN_ADP, Suite
from skip.wire.skip_icmp import AdpCode, SkipIcmp

#: Which code bit reports which class.
CODE_BITS = {
    AlgClass.KIJ: AdpCode.KIJ_UNSUPPORTED,
    AlgClass.CRYPT: AdpCode.CRYPT_UNSUPPORTED,
    AlgClass.MAC: AdpCode.MAC_UNSUPPORTED,
    AlgClass.COMP: AdpCode.COMP_UNSUPPORTED,
}


class AnswerLimiter:
    """At most one answer per source per interval, and ``per_second`` in all (a token bucket
    with a burst of as many); remembers a bounded number of sources."""

    def __init__(self, interval: float, sources: int, per_second: float = 20.0) -> None:
        self.interval = interval
        self.sources = sources
        self._last: OrderedDict[bytes, float] = OrderedDict()
        self._all = TokenBucket(per_second, max(1, int(per_second)))

    def allow(self, source: bytes, now: float) -> bool:
        last = self._last.get(source)
        if last is not None and now - last < self.interval:
            return False
        if not self._all.take(now):
            return False
        self._last[source] = now
        self._last.move_to_end(source)
        while len(self._last) > self.sources:
            self._last.popitem(last=False)
        return True


def failed_classes(policy: KeyingPolicy, version: int, algs: Sequence[int]) -> AdpCode:
    """Code bits for the algorithm bytes (Kij, Crypt, MAC, Comp) we cannot or will not use:
    numbers policy does not accept, or that our tables do not implement (whatever a policy
    built elsewhere lists)."""
    code = AdpCode.NONE
    prof = num.PROFILES[version]
    kij, crypt, mac, comp = algs
    checks = (
        (AlgClass.KIJ, kij, kij != 0),
        (AlgClass.CRYPT, crypt, crypt != 0),
        # the combined-transform rule: MAC Alg = Crypt Alg names the Crypt transform
        (AlgClass.MAC, mac, mac != 0 and not (mac == crypt and _is_aead(version, crypt))),
        (AlgClass.COMP, comp, comp != 0),
    )
    for cls, number, used in checks:
        if used and not (policy.accepts(version, cls, number) and number in prof.supported(cls)):
            code |= CODE_BITS[cls]
    return code


def _is_aead(version: int, crypt: int) -> bool:
    return Suite(version, 0, crypt, crypt).aead


def advertisement(policy: KeyingPolicy, version: int, code: AdpCode) -> SkipIcmp:
    """Our complete capability statement for header version ``version``, preferred first."""
    lists = [policy.preference(version, cls) for cls in AlgClass]
    return SkipIcmp(code, lists[0], lists[1], lists[2], lists[3])


def choose(policy: KeyingPolicy, current: Suite, advice: SkipIcmp) -> Suite | None:
    """The best suite both sides support, keeping the current suite's shape; None if none.

    Shape: whether traffic is encrypted, authenticated, or both (and AEAD or not) is a local
    policy decision that advice does not change; only the algorithm numbers move.
    """
    version = current.version
    offered = {AlgClass.KIJ: advice.kij, AlgClass.CRYPT: advice.crypt, AlgClass.MAC: advice.mac}

    def pick(cls: AlgClass, keep_if: bool, aead: bool | None = None) -> int | None:
        if not keep_if:
            return 0
        for number in policy.preference(version, cls):
            if number in offered[cls] and (aead is None or _is_aead(version, number) == aead):
                return number
        return None

    crypt = pick(AlgClass.CRYPT, current.crypt_alg != 0, current.aead if current.crypt_alg
                 else None)
    mac = crypt if current.aead else pick(AlgClass.MAC, current.mac_alg != 0)
    if crypt is None or mac is None:
        return None
    for kij in policy.preference(version, AlgClass.KIJ):  # strong enough for the traffic keys
        suite = Suite(version, kij, crypt, mac)
        if kij in advice.kij and not suite.kij_too_weak:
            return suite
    return None


def answer_suite(policy: KeyingPolicy, version: int) -> Suite | None:
    """How to protect a SKIP ICMP answer; None if policy leaves nothing usable.

    Version 1: AH with keyed MD5 (ADP-00 makes it mandatory), Kij Alg 3DES else DES
    (A-ADP-1). Version 2: our most preferred AEAD (every modern node implements them all).
    """
    if version == MODERN_VERSION:
        aeads = [c for c in policy.preference(version, AlgClass.CRYPT) if _is_aead(version, c)]
        kijs = policy.preference(version, AlgClass.KIJ)
        if not (aeads and kijs):
            return None
        return replace(MODERN_ADP, kij_alg=kijs[0], crypt_alg=aeads[0], mac_alg=aeads[0])
    if not policy.accepts(version, AlgClass.MAC, LEGACY_ADP.mac_alg):
        return None
    for kij in (2, 1):
        if policy.accepts(version, AlgClass.KIJ, kij):
            return replace(LEGACY_ADP, kij_alg=kij)
    return None
