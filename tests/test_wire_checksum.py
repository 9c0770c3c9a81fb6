"""The one Internet checksum (RFC 1071) against the RFC's example, scapy's implementation
(written elsewhere) and the engine's inlined IPv4 forms, which must agree with it."""

from __future__ import annotations

import scapy.utils
from hypothesis import given
from hypothesis import strategies as st

from skip.wire.checksum import internet_checksum
from skip.wire.ip import finish_ipv4_header, ipv4_sum


def test_rfc1071_example() -> None:
    # RFC 1071 section 3: the sum of 0001 f203 f4f5 f6f7 is ddf2 (complement 220d).
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


@given(st.binary(max_size=300), st.integers(0, 8), st.integers(0, 8))
def test_agrees_with_scapy_on_any_bytes_and_range(data: bytes, cut_front: int,
                                                  cut_back: int) -> None:
    start, end = min(cut_front, len(data)), max(len(data) - cut_back, 0)
    want = scapy.utils.checksum(data[start:end]) if start < end else 0xFFFF
    assert internet_checksum(data, start, end) == want
    assert internet_checksum(memoryview(data)[start:end]) == want


@given(st.binary(min_size=1, max_size=200))
def test_a_message_holding_its_checksum_sums_to_zero(data: bytes) -> None:
    buf = bytearray(b"\x08\x00\x00\x00" + data)  # an ICMP-like checksum field at offset 2
    buf[2:4] = internet_checksum(buf).to_bytes(2, "big")
    assert internet_checksum(buf) == 0


@given(st.binary(min_size=16, max_size=16), st.integers(20, 0xFFFF), st.integers(0, 255))
def test_engine_inlined_ipv4_forms_agree(rest: bytes, total: int, proto: int) -> None:
    header = bytearray(b"\x45\x00" + total.to_bytes(2, "big") + rest)
    header[9] = proto
    finish_ipv4_header(header)
    assert ipv4_sum(header) == 0
    stored = int.from_bytes(header[10:12], "big")
    header[10:12] = b"\0\0"
    assert stored == internet_checksum(header) == scapy.utils.checksum(bytes(header))
