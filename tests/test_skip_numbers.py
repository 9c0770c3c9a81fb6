"""The SKIP algorithm tables agree with the crypto registry and with the draft's length rules."""

from __future__ import annotations

import pytest

from skip.crypto import skip_numbers as num
from skip.crypto.registry import get_cipher, get_integrity


@pytest.mark.parametrize("prof", [num.LEGACY, num.MODERN], ids=["v1", "v2"])
def test_traffic_algorithms_match_the_registry(prof: num.Profile) -> None:
    for alg in prof.crypt.values():
        if alg.registry_name is None:
            continue
        rec = get_cipher(alg.registry_name, allow_legacy=True)
        assert alg.key_size == rec.key_sizes[0] + rec.salt_size, alg
        assert alg.aead == rec.aead
    for alg in prof.mac.values():
        if alg.registry_name is not None:
            assert alg.key_size == get_integrity(alg.registry_name, allow_legacy=True).key_size


def test_draft06_length_examples() -> None:
    # D06 s. 1.9: a 64-bit encryption key and a 128-bit MAC key give a 128-bit Kp.
    assert num.LEGACY.kp_length(1, 1) == 16
    # A 24-byte Kp under a 64-bit block Kij Alg stays 24 bytes; 20 bytes (keyed SHA) pads to 24.
    assert num.LEGACY.ekp_length(1, 2, 0) == 24
    assert num.LEGACY.ekp_length(2, 0, 3) == 24
    assert num.LEGACY.ekp_length(0, 2, 1) == 0  # Kij Alg 0: no Kp at all
    # the 32-byte Kp and its 8-byte creation time, plus RFC 3394's 8-byte integrity block
    assert num.MODERN.ekp_length(10, 12, 12) == 48


def test_mac_numbers_never_equal_crypt_numbers_in_the_modern_profile() -> None:
    assert not set(num.MODERN.crypt) & set(num.MODERN.mac)


def test_every_number_is_documented() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs/protocol/numbers.md").read_text()
    for prof in num.PROFILES.values():
        for table in (prof.kij, prof.crypt, prof.mac):
            for number, alg in table.items():
                assert f"| {number} |" in text, (prof.version, number, alg.name)
