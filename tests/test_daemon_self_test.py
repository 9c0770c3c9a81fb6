"""skipd's start-up self-test (skip/daemon/self_test.py): every configured (group, suite)
round-trips a probe, and a pairing that cannot work stops the start with a reason code."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from skip import native
from skip.daemon.self_test import run_self_test
from skip.errors import SkipError
from skip.keying.suite import LEGACY_DEFAULT, MODERN_DEFAULT, Suite
from tests.keying_harness import NOW


def test_the_configured_pairings_pass() -> None:
    run_self_test([("x25519", MODERN_DEFAULT), ("x448", Suite(2, 10, 12, 12)),
                   ("skip-1024", LEGACY_DEFAULT)], NOW)


def test_a_pairing_no_packet_can_use_fails_with_its_reason() -> None:
    with pytest.raises(SkipError) as err:
        run_self_test([("x25519", LEGACY_DEFAULT)], NOW)  # legacy SKIP is MODP only
    assert err.value.reason == "self_test_failed" and "bad_group" in err.value.detail


def test_a_crypto_library_that_corrupts_packets_stops_the_start(monkeypatch) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    real = AESGCM.encrypt

    def flipped(self, nonce, data, aad):  # a miscompiled cipher: one bit off
        out = bytearray(real(self, nonce, data, aad))
        out[0] ^= 1
        return bytes(out)

    monkeypatch.setattr(AESGCM, "encrypt", flipped)
    with pytest.raises(SkipError) as err:
        run_self_test([("x25519", MODERN_DEFAULT)], NOW)
    assert err.value.reason == "self_test_failed"


@pytest.mark.skipif(native.core is None, reason=native.describe())
def test_a_compiled_core_that_corrupts_packets_stops_the_start(monkeypatch) -> None:
    """The probe also goes from the compiled core (skip/_native.c) to the pure-Python
    engine: a core that disagrees with cryptography stops the start too."""
    real = native.core

    class Flipped:
        def __init__(self, *args) -> None:
            self.inner = real.AeadEsp(*args)

        def protect(self, *args):
            wire = self.inner.protect(*args)
            return None if wire is None else wire[:-1] + bytes([wire[-1] ^ 1])

        def unprotect(self, *args):
            return self.inner.unprotect(*args)

    monkeypatch.setattr(native, "core", SimpleNamespace(ReplayWindow=real.ReplayWindow,
                                                        AeadEsp=Flipped))
    with pytest.raises(SkipError) as err:
        run_self_test([("x25519", MODERN_DEFAULT)], NOW)
    assert err.value.reason == "self_test_failed"
