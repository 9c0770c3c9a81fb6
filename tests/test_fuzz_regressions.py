"""Regression tests for the findings of the fuzzing campaign: each one replays the input that
used to escape as a foreign exception (a Rust panic, UnicodeEncodeError, ValueError,
RecursionError, struct.error) or to take unbounded time or memory, and checks the
reason-coded answer that replaced it. The fuzz targets themselves are in
tests/test_fuzz_parsers.py."""

from __future__ import annotations

import hashlib
import time

import pytest

from skip.crypto.dh import GROUPS, MAX_CUSTOM_MODP_BITS, validate_parameters
from skip.errors import CertificateError, KeyingError
from skip.pki import Policy, parse_udh, validate_udh
from skip.wire.udh import UnsignedDH, ntp_seconds

from .cli_support import ok, refused
from .pki_support import DAY, NOW

MODP2048 = GROUPS["modp-2048"]
CUSTOM = Policy(allow_custom_groups=True)


def _udh(p: int, g: int, y: int) -> bytes:
    return UnsignedDH(ntp_seconds(NOW - DAY), ntp_seconds(NOW + DAY), p, g, y).encode()


# --- 1. custom generators over an OpenSSL-named prime (was: pyo3_runtime.PanicException) -----


def test_square_generator_over_an_rfc3526_prime_is_a_q_order_group_not_a_panic() -> None:
    """g = 4 over the RFC 3526 2048-bit prime: g^q = 1, which OpenSSL refuses to output."""
    p, q = MODP2048.p, MODP2048.q
    group = validate_parameters(p, 4)
    assert group.q == q
    a, b = group.generate_private(), group.generate_private()
    assert group.shared_secret(a, group.public_value(b)) == group.shared_secret(
        b, group.public_value(a)
    )


def test_non_residue_generator_over_an_rfc3526_prime_computes_in_python() -> None:
    """g = p-2 generates the whole group (q None): g^q = p-1, another result OpenSSL refuses;
    such a group must never reach the OpenSSL path."""
    p, q = MODP2048.p, MODP2048.q
    group = validate_parameters(p, p - 2)
    assert group.q is None
    assert group.public_value(q.to_bytes(group.public_size)) == (p - 1).to_bytes(256)


def test_x942_q_with_a_generator_outside_the_subgroup_is_refused() -> None:
    p, q = MODP2048.p, MODP2048.q
    with pytest.raises(KeyingError, match="order-q subgroup") as err:
        validate_parameters(p, p - 2, q)
    assert err.value.reason == "bad_group"


def test_udh_with_g4_over_modp2048_validates_and_skip_cert_verify_says_ok(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = MODP2048.p
    y = pow(4, 0x1234567890ABCDEF1234567890ABCDEF, p)
    encoding = _udh(p, 4, y)
    udh = parse_udh(encoding)
    assert not udh.dh_key.well_known
    peer = validate_udh(udh, NOW, expected_name=udh.name.mkid, policy=CUSTOM)
    assert peer.group.q == MODP2048.q
    path = tmp_path / "g4.udh"
    path.write_bytes(encoding)
    name = f"8:{hashlib.md5(encoding).hexdigest()}"
    at = f"@{NOW}"
    out = ok(capsys, "verify", path, "--name", name, "--at", at, "--allow-custom-groups")
    assert "OK" in out
    line = refused(capsys, "verify", path, "--name", name, "--at", at)
    assert "bad_group" in line


# --- 7. the size of a custom modulus (was: hours of Miller-Rabin) ------------------------------


def test_custom_modulus_above_the_bound_is_refused_before_any_primality_test() -> None:
    p = (1 << (8 * 65535)) - 1  # the largest p a UDH value can carry
    start = time.perf_counter()
    with pytest.raises(KeyingError, match="above 8192") as err:
        validate_parameters(p, 2)
    assert err.value.reason == "bad_group"
    assert time.perf_counter() - start < 0.5
    udh = parse_udh(_udh(p, 2, 5))
    with pytest.raises(CertificateError) as cert_err:
        validate_udh(udh, NOW, expected_name=udh.name.mkid, policy=CUSTOM)
    assert cert_err.value.reason == "bad_group"
    assert MAX_CUSTOM_MODP_BITS == 8192
