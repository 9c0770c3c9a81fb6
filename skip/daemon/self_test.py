"""A start-up self-test of the keying path, which also warms it.

Before skipd serves, one packet goes through a throwaway pair of endpoints per (DH group,
suite) the configuration uses: fresh key pairs in the group, protect, unprotect, compare.
A crypto library that misbehaves stops the start (``self_test_failed``) instead of the
first peer's traffic; and the one-time costs of each algorithm's first use in OpenSSL and
Python (algorithm fetches, lazily built tables: about 0.4 ms on the development machine)
are paid here, not by the first packet to a new peer.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable

from skip import native
from skip.crypto.dh import GROUPS
from skip.errors import SkipError
from skip.keying.endpoint import SkipEndpoint
from skip.keying.identity import LocalIdentity, Peer
from skip.keying.policy import KeyingPolicy
from skip.keying.suite import Suite
from skip.wire.ip import build_ipv4

_A, _B = "192.0.2.1", "192.0.2.2"  # TEST-NET-1: never on the wire, nothing is sent
_PROBE = build_ipv4(_A, _B, 17, bytes.fromhex("d903d9030010000073656c662d74657374"))


def run_self_test(cases: Iterable[tuple[str, Suite]], now: float) -> None:
    """Raise SkipError (``self_test_failed``) unless every (group, suite) round-trips.

    With the compiled engine core built, each probe goes twice: from the core to the
    pure-Python engine (cryptography's AEAD) and back the other way, so the two must agree
    byte for byte; a round trip through one implementation would pass a symmetric bug."""
    directions = ((True, False), (False, True)) if native.core is not None else ((True, True),)
    for group_name, suite in sorted(set(cases), key=repr):
        for send_core, receive_core in directions:
            _round_trip(group_name, suite, now, send_core, receive_core)


def _round_trip(group_name: str, suite: Suite, now: float, send_core: bool,
                receive_core: bool) -> None:
    policy = KeyingPolicy(allow_legacy=True)
    dh = GROUPS[group_name]
    try:
        a = LocalIdentity.create("a", {group_name: dh.generate_private(os.urandom)},
                                 addresses=[_A])
        b = LocalIdentity.create("b", {group_name: dh.generate_private(os.urandom)},
                                 addresses=[_B])
        sender = SkipEndpoint([a], [Peer.create("b", group_name, b.publics[group_name],
                                                addresses=[_B], suite=suite)],
                              policy=policy, started=now)
        receiver = SkipEndpoint([b], [Peer.create("a", group_name, a.publics[group_name],
                                                  addresses=[_A], suite=suite)],
                                policy=policy, started=now)
        with contextlib.nullcontext() if send_core else native.reference_only():
            wire = sender.protect(_PROBE, now)
        with contextlib.nullcontext() if receive_core else native.reference_only():
            got = receiver.unprotect(wire, now) if wire is not None else None
    except SkipError as exc:
        raise SkipError("self_test_failed", f"{group_name} {suite}: {exc}") from None
    if got is None or got.packet != _PROBE:
        raise SkipError("self_test_failed", f"{group_name} {suite}: the probe did not "
                        "come back unchanged")
