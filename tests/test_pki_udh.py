"""UDH values (draft-ietf-ipsec-skip-udh-01): the wire layout, the MD5 name, validation."""

from __future__ import annotations

import calendar
import contextlib
import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skip.crypto.dh import GROUPS
from skip.errors import CertificateError, ParseError
from skip.pki import DHPrivateKey, Policy, generate_key, make_udh, parse_udh, validate_udh
from skip.pki.dhkey import DHPublicKey
from skip.wire.udh import NTP_UNIX_OFFSET, UnsignedDH, ntp_seconds, unix_seconds

from .pki_support import DAY, NOW

EXAMPLES = json.loads((Path(__file__).parent / "vectors" / "skip_udh.json").read_text())["examples"]


def _posix(text: str) -> int:
    return calendar.timegm(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timetuple())


def test_ntp_epoch_offset_is_70_years_with_17_leap_days() -> None:
    assert NTP_UNIX_OFFSET == (70 * 365 + 17) * DAY
    assert unix_seconds(ntp_seconds(NOW)) == NOW
    with pytest.raises(ValueError, match="era"):
        ntp_seconds(_posix("2036-02-08T00:00:00Z"))


def test_skip_1024_example_from_the_digest() -> None:
    example = EXAMPLES[0]
    group = GROUPS[example["group"]]
    i = int.from_bytes(hashlib.md5(b"skip-example-i").digest() * 2)
    y = pow(group.g, i, group.p)  # plain pow, not skip.crypto
    value = UnsignedDH(
        ntp_seconds(_posix(example["not_before"])),
        ntp_seconds(_posix(example["not_after"])),
        group.p,
        group.g,
        y,
    )
    encoding = value.encode()
    assert encoding[:4].hex() == example["ntp_not_before"]
    assert encoding[4:8].hex() == example["ntp_not_after"]
    assert len(encoding) == example["encoding_length"]
    assert encoding.startswith(bytes.fromhex(example["encoding_prefix"]))
    assert encoding[-128:][:8].hex() == example["public_value_first8"]
    assert encoding[-8:].hex() == example["public_value_last8"]
    assert hashlib.md5(encoding).hexdigest() == example["mkid"]
    udh = parse_udh(encoding)
    assert udh.name.nsid == 8 and udh.fingerprint == example["mkid"]
    assert udh.dh_key.group is group


def test_toy_example_layout() -> None:
    example = EXAMPLES[1]
    value = UnsignedDH(
        ntp_seconds(_posix(example["not_before"])),
        ntp_seconds(_posix(example["not_after"])),
        example["p"],
        example["g"],
        example["y"],
    )
    assert value.encode().hex() == example["encoding"]
    assert hashlib.md5(value.encode()).hexdigest() == example["mkid"]
    assert UnsignedDH.parse(bytes.fromhex(example["encoding"])) == value


@pytest.mark.parametrize(
    ("hex_bytes", "reason"),
    [
        ("b491a280b67427", "truncated"),
        ("b491a280b6742780", "truncated"),
        ("b491a280b67427800001", "truncated"),
        ("b491a280b674278000011700", "truncated"),
        ("b491a280b674278000020017000105000108", "bad_header"),  # leading zero in p
        ("b491a280b6742780000117000005000108", "bad_length"),  # GenLen 0
        ("b491a280b674278000011700010500010800", "bad_length"),  # trailing byte
        ("b491a280b67427800001170001050002", "truncated"),
    ],
)
def test_parser_refuses_malformed_values(hex_bytes: str, reason: str) -> None:
    with pytest.raises(ParseError) as err:
        UnsignedDH.parse(bytes.fromhex(hex_bytes))
    assert err.value.reason == reason


@given(st.binary(max_size=64))
def test_parser_never_escapes_with_foreign_errors(data: bytes) -> None:
    try:
        value = UnsignedDH.parse(data)
    except ParseError:
        return
    assert value.encode() == data  # accepted input is canonical: the MD5 name is stable


@given(
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(1, 2**2048),
    st.integers(1, 2**64),
    st.integers(1, 2**2048),
)
def test_round_trip(nvb: int, nva: int, p: int, g: int, y: int) -> None:
    value = UnsignedDH(nvb, nva, p, g, y)
    assert UnsignedDH.parse(value.encode()) == value


@given(st.binary(max_size=300))
def test_pki_parser_raises_only_skip_errors(data: bytes) -> None:
    with contextlib.suppress(ParseError, CertificateError):
        parse_udh(data)


# --- as a certificate ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def udh_key() -> DHPrivateKey:
    return generate_key(GROUPS["ffdhe2048"])


def test_make_and_validate(udh_key: DHPrivateKey) -> None:
    udh = make_udh(udh_key.public, NOW - DAY, NOW + DAY)
    assert parse_udh(udh.encoding) == udh
    peer = validate_udh(udh, NOW, expected_name=hashlib.md5(udh.encoding).digest())
    assert peer.group is GROUPS["ffdhe2048"]
    assert peer.public_value == udh_key.public.public_value
    assert peer.answers_to(8, hashlib.md5(udh.encoding).digest())


def test_validation_refusals(udh_key: DHPrivateKey) -> None:
    udh = make_udh(udh_key.public, NOW - DAY, NOW + DAY)
    name = udh.name.mkid
    cases = [
        (lambda: validate_udh(udh, NOW, expected_name=bytes(16)), "cert_name_mismatch"),
        (lambda: validate_udh(udh, NOW + 2 * DAY, expected_name=name), "cert_expired"),
        (lambda: validate_udh(udh, NOW - 2 * DAY, expected_name=name), "cert_not_yet_valid"),
        (
            lambda: validate_udh(udh, NOW, expected_name=name, policy=Policy(min_modp_bits=3072)),
            "bad_group",
        ),
    ]
    for call, reason in cases:
        with pytest.raises(CertificateError) as err:
            call()
        assert err.value.reason == reason


def test_degenerate_public_value_is_refused() -> None:
    group = GROUPS["skip-1024"]
    bad = make_udh(
        DHPublicKey(group, (1).to_bytes(group.public_size), "pkcs3"), NOW - DAY, NOW + DAY
    )
    with pytest.raises(CertificateError) as err:
        validate_udh(bad, NOW, expected_name=bad.name.mkid)
    assert err.value.reason == "bad_public_value"


def test_unknown_group_needs_policy() -> None:
    toy = parse_udh(bytes.fromhex(EXAMPLES[1]["encoding"]))
    assert not toy.dh_key.well_known
    with pytest.raises(CertificateError) as err:
        validate_udh(toy, _posix("1996-06-01T00:00:00Z"), expected_name=toy.name.mkid)
    assert err.value.reason == "bad_group"
    with pytest.raises(CertificateError) as err:  # allowed, but 5 bits is far too small
        validate_udh(
            toy,
            _posix("1996-06-01T00:00:00Z"),
            expected_name=toy.name.mkid,
            policy=Policy(allow_custom_groups=True),
        )
    assert err.value.reason == "bad_group"


def test_x25519_has_no_udh_form() -> None:
    with pytest.raises(CertificateError) as err:
        make_udh(generate_key(GROUPS["x25519"]).public, NOW, NOW + DAY)
    assert err.value.reason == "cert_key_type"
