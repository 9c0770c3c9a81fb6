"""SKIP header and SKIP ICMP: layouts from draft-06 / ADP-00, and bounded parsing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skip.crypto.skip_numbers import header_ekp_length
from skip.errors import ParseError
from skip.wire.checksum import internet_checksum
from skip.wire.nsid import STANDARD_NSIDS, Nsid, address_mkid
from skip.wire.skip_header import SkipHeader, measure
from skip.wire.skip_icmp import AdpCode, SkipIcmp


def test_example_a_header_bytes() -> None:
    # skip-core.md 9.2 example A: Kij DES, Crypt DES, NSIDs 0, next ESP, n = 0x2238.
    raw = bytes.fromhex("10000032" "00002238" "01010000" "c433e95db3a03616")
    header = SkipHeader.parse(raw, header_ekp_length)
    assert (header.version, header.next_header, header.n) == (1, 50, 0x2238)
    assert (header.kij_alg, header.crypt_alg, header.mac_alg, header.ekp.hex()) == (
        1, 1, 0, "c433e95db3a03616")
    assert header.encode() == raw


def test_mkids_follow_ekp_in_order() -> None:
    src = address_mkid("10.0.0.1")
    dst = (Nsid.MAC_802, bytes.fromhex("0800200a0b0c"))
    header = SkipHeader(1, src[0], dst[0], 51, 9000, 2, 2, 1, 0, bytes(range(24)), src[1], dst[1])
    raw = header.encode()
    assert raw[12:36] == bytes(range(24))
    assert raw[36:40] == bytes([10, 0, 0, 1]) and raw[40:] == dst[1]
    assert len(raw) == 46  # NSID 7 makes a header that is not a multiple of 4; no padding
    assert SkipHeader.parse(raw, header_ekp_length) == header


def test_rsvd_nibble_is_kept_for_the_caller_and_ignored_by_layout() -> None:
    raw = bytearray(bytes.fromhex("10000032" "00002238" "01010000" "c433e95db3a03616"))
    raw[0] = 0x1F
    header = SkipHeader.parse(bytes(raw), header_ekp_length)
    assert header.version == 1 and header.reserved == 0xF


@pytest.mark.parametrize(
    ("patch", "reason"),
    [((0, 0x30), "bad_version"), ((8, 9), "unsupported_kij_alg"),
     ((9, 99), "unsupported_crypt_alg"), ((10, 99), "unsupported_mac_alg"),
     ((1, 12), "unknown_nsid"), ((2, 249), "unknown_nsid")],
)
def test_unknown_numbers_make_the_header_unparseable(patch: tuple[int, int], reason: str) -> None:
    raw = bytearray(bytes.fromhex("10000032" "00002238" "01010000" "c433e95db3a03616"))
    raw[patch[0]] = patch[1]
    with pytest.raises(ParseError) as err:
        SkipHeader.parse(bytes(raw), header_ekp_length)
    assert err.value.reason == reason


def test_private_nsid_needs_configuration() -> None:
    raw = bytes.fromhex("10fa0032" "00002238" "01010000" "c433e95db3a03616" "aabb")
    with pytest.raises(ParseError):
        SkipHeader.parse(raw, header_ekp_length)
    table = STANDARD_NSIDS.with_private(250, 2)
    assert SkipHeader.parse(raw, header_ekp_length, table).src_mkid == b"\xaa\xbb"


def test_modern_header_carries_a_48_byte_wrapped_kp() -> None:
    header = SkipHeader(2, 0, 0, 50, 1, 10, 11, 11, 0, bytes(48))
    assert measure(header.encode(), 0, header_ekp_length)[:2] == (60, 48)


@settings(max_examples=400)
@given(st.binary(max_size=80), st.integers(0, 4))
def test_header_parser_is_bounded(data: bytes, offset: int) -> None:
    try:
        header, end = SkipHeader.parse_from(data, offset, header_ekp_length)
    except ParseError:
        return
    assert end <= len(data) and header.encode() == bytes(data[offset:end])


@given(
    st.sampled_from([(1, 1, 1, 0), (1, 2, 2, 1), (1, 3, 0, 3), (1, 0, 1, 1), (2, 10, 12, 12),
                     (2, 10, 13, 20), (2, 10, 0, 22)]),
    st.sampled_from([0, 1, 3, 7, 8]), st.sampled_from([0, 2, 4]), st.integers(0, 2**32 - 1),
    st.integers(0, 255), st.data(),
)
def test_header_round_trip(algs, src_nsid, dst_nsid, n, nxt, data) -> None:
    version, kij, crypt, mac = algs
    ekp = data.draw(st.binary(min_size=header_ekp_length(*algs), max_size=header_ekp_length(*algs)))
    src = data.draw(st.binary(min_size=STANDARD_NSIDS.mkid_length(src_nsid),
                              max_size=STANDARD_NSIDS.mkid_length(src_nsid)))
    dst = data.draw(st.binary(min_size=STANDARD_NSIDS.mkid_length(dst_nsid),
                              max_size=STANDARD_NSIDS.mkid_length(dst_nsid)))
    header = SkipHeader(version, src_nsid, dst_nsid, nxt, n, kij, crypt, mac, 0, ekp, src, dst)
    assert SkipHeader.parse(header.encode(), header_ekp_length) == header


# --- SKIP ICMP -------------------------------------------------------------------------------


def test_adp_example_bytes() -> None:
    # skip-extensions.md 4.2: Crypt unsupported, Kij {2,1}, Crypt {2,1}, MAC {1}, Comp {}.
    expected = bytes.fromhex("2740c2b9" "10000000" "020201" "020201" "0101" "00")
    msg = SkipIcmp(AdpCode.CRYPT_UNSUPPORTED, (2, 1), (2, 1), (1,), ())
    assert msg.encode() == expected
    assert SkipIcmp.parse(expected) == msg


def test_reserved_bits_are_ignored_and_bad_checksum_refused() -> None:
    raw = bytearray(SkipIcmp(AdpCode.MAC_UNSUPPORTED, (2,), (1,), (1,), (), 6, 80).encode())
    raw[1] |= 0x07
    raw[4] |= 0x0F
    raw[2:4] = b"\0\0"
    raw[2:4] = internet_checksum(raw).to_bytes(2, "big")
    msg = SkipIcmp.parse(bytes(raw))
    assert msg.code == AdpCode.MAC_UNSUPPORTED and (msg.protocol, msg.port) == (6, 80)
    raw[-1] ^= 0xFF
    with pytest.raises(ParseError) as err:
        SkipIcmp.parse(bytes(raw))
    assert err.value.reason in {"bad_checksum", "bad_length", "truncated"}


@settings(max_examples=400)
@given(st.binary(max_size=40))
def test_icmp_parser_is_bounded(data: bytes) -> None:
    try:
        msg = SkipIcmp.parse(data, verify_checksum=False)
    except ParseError:
        return
    assert len(msg.encode()) == len(data)


@given(st.lists(st.integers(0, 255), max_size=5), st.lists(st.integers(0, 255), max_size=5),
       st.lists(st.integers(0, 255), max_size=5), st.integers(0, 0xF8))
def test_icmp_round_trip(kij, crypt, mac, code) -> None:
    msg = SkipIcmp(AdpCode(code & 0xF8), tuple(kij), tuple(crypt), tuple(mac))
    assert SkipIcmp.parse(msg.encode()) == msg
