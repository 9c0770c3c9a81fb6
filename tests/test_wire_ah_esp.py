"""AH and ESP framing: both header generations, padding and trailers, against the lengths
the RFCs and their published packets state."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skip.errors import IntegrityError, ParseError
from skip.wire import ah, esp
from skip.wire.ah import AHHeader
from skip.wire.esp import ESPHeader, ESPTrailer
from skip.wire.ip import IPv4Header, IPv6Header

VECTORS = Path(__file__).parent / "vectors"


def test_rfc1826_length_counts_auth_data_words():
    # RFC 1826 3.2 / skip-core 1.5: keyed MD5's 128 bits give Length 4
    head = AHHeader(next_header=6, spi=1, icv=bytes(16))
    raw = head.encode()
    assert raw[:8] == bytes([6, 4, 0, 0, 0, 0, 0, 1]) and len(raw) == 24
    assert AHHeader.parse_from(raw, sequence=False) == (head, 24)


def test_rfc4302_payload_len_is_words_minus_two():
    # RFC 4302 2.2: with a 96-bit ICV the AH is 6 words, Payload Len 4
    head = AHHeader(next_header=17, spi=0x100, icv=bytes(12), sequence=7)
    raw = head.encode()
    assert raw[1] == 4 and raw[8:12] == (7).to_bytes(4, "big") and len(raw) == 24
    assert AHHeader.parse_from(raw, sequence=True) == (head, 24)


@pytest.mark.parametrize(("icv", "sequence", "ipv6", "field"), [
    (12, True, False, 12), (12, True, True, 12),  # 24 bytes: aligned either way
    (16, True, False, 16), (16, True, True, 20),  # 28 -> 32 on IPv6
    (24, True, True, 28), (32, True, True, 36),
    (16, False, True, 16), (20, False, True, 24),  # RFC 1826 keyed SHA-1 on IPv6: 28 -> 32
])
def test_icv_padding_to_32_or_64_bits(icv, sequence, ipv6, field):
    assert ah.icv_field_size(icv, sequence, ipv6) == field
    assert (ah.fixed_size(sequence) + field) % (8 if ipv6 else 4) == 0


@pytest.mark.parametrize(("data", "sequence", "reason"), [
    (bytes(7), False, "truncated"),
    (bytes(11), True, "truncated"),
    (bytes([6, 9, 0, 0, 0, 0, 0, 1]) + bytes(16), False, "truncated"),  # claims 36 bytes
    (bytes([6, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]), True, "bad_length"),  # shorter than fixed
])
def test_ah_parse_rejections(data, sequence, reason):
    with pytest.raises(ParseError) as e:
        AHHeader.parse_from(data, sequence=sequence)
    assert e.value.reason == reason


def test_esp_headers_of_both_generations():
    assert ESPHeader(0x1234).encode() == bytes.fromhex("00001234")
    assert ESPHeader(0x1234, 5).encode() == bytes.fromhex("0000123400000005")
    assert ESPHeader.parse_from(bytes.fromhex("0000123400000005"), sequence=True) == (
        ESPHeader(0x1234, 5), 8)
    with pytest.raises(ParseError):
        ESPHeader.parse_from(bytes(7), sequence=True)


def published_trailers():
    """(payload length, block, padding, pad length, next header) from RFC 3602 and 7634."""
    cases = []
    for v in json.loads((VECTORS / "rfc3602_aes_cbc_esp.json").read_text())["vectors"][4:]:
        payload = len(v["original_data"]) // 2
        if v["mode"] == "tunnel":
            payload += len(v["original_ip_header"]) // 2
        cases.append((payload, 16, bytes.fromhex(v["padding"]), v["next_header"],
                      bytes.fromhex(v["plaintext_before_encryption"])))
    v = json.loads((VECTORS / "rfc7634_chacha_esp.json").read_text())["vectors"][0]
    trailer = v["plaintext_trailer"]
    cases.append((len(v["source_packet"]) // 2, 1, bytes.fromhex(trailer["padding"]),
                  trailer["next_header"], bytes.fromhex(v["plaintext"])))
    return cases


@pytest.mark.parametrize(("payload", "block", "padding", "next_header", "plaintext"),
                         published_trailers())
def test_padding_matches_published_packets(payload, block, padding, next_header, plaintext):
    pad = esp.pad_length(payload, block)
    assert pad == len(padding)
    assert esp.trailer(pad, int(next_header, 16)) == plaintext[payload:]
    body, parsed = ESPTrailer.parse(plaintext)
    assert len(body) == payload and parsed == ESPTrailer(padding, int(next_header, 16))
    assert parsed.encode() == plaintext[payload:]


def test_trailer_checks():
    with pytest.raises(IntegrityError) as e:
        esp.split_trailer(b"\x05", True)
    assert e.value.reason == "bad_padding"
    with pytest.raises(IntegrityError) as e:
        esp.split_trailer(b"abc\x09\x04", True)  # pad length beyond the data
    assert e.value.reason == "bad_padding"
    assert esp.split_trailer(b"ab\x01\x07\x02\x04", False) == (2, 4)  # RFC 1829: not checked
    with pytest.raises(IntegrityError):
        esp.split_trailer(b"ab\x01\x07\x02\x04", True)  # RFC 4303: 1, 2 expected


@given(st.integers(0, 2000), st.sampled_from([1, 4, 8, 16]))
def test_pad_length_is_minimal_and_aligned(payload, block):
    pad = esp.pad_length(payload, block)
    assert (payload + pad + 2) % max(block, 4) == 0 and 0 <= pad < max(block, 4)


@given(st.builds(IPv4Header, src=st.builds(IPv4Address, st.integers(0, 2**32 - 1)),
                 dst=st.builds(IPv4Address, st.integers(0, 2**32 - 1)),
                 protocol=st.integers(0, 255), total_length=st.integers(20, 65535),
                 tos=st.integers(0, 255), identification=st.integers(0, 65535),
                 flags=st.integers(0, 7), fragment_offset=st.integers(0, 8191),
                 ttl=st.integers(0, 255)))
def test_ipv4_header_round_trip(header):
    raw = header.encode()
    parsed = IPv4Header.parse(raw, verify_checksum=True)
    assert parsed.encode() == raw and parsed.src == header.src and parsed.ttl == header.ttl


@given(st.builds(IPv6Header, src=st.builds(IPv6Address, st.integers(0, 2**128 - 1)),
                 dst=st.builds(IPv6Address, st.integers(0, 2**128 - 1)),
                 next_header=st.integers(0, 255), payload_length=st.integers(0, 65535),
                 traffic_class=st.integers(0, 255), flow_label=st.integers(0, 2**20 - 1),
                 hop_limit=st.integers(0, 255)))
def test_ipv6_header_round_trip(header):
    assert IPv6Header.parse(header.encode()) == header


@given(st.integers(0, 255), st.integers(1, 2**32 - 1),
       st.integers(1, 60).map(lambda words: bytes(4 * words)),
       st.one_of(st.none(), st.integers(0, 2**32 - 1)))
def test_ah_round_trip(next_header, spi, icv, sequence):
    head = AHHeader(next_header, spi, icv, sequence)
    assert AHHeader.parse_from(head.encode(), sequence=sequence is not None) == (
        head, len(head.encode()))
