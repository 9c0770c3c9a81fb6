"""Hypothesis: unprotect, peek and the wire parsers either succeed or raise the project's
own error type, whatever bytes arrive."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skip.errors import SkipError
from skip.ipsec import peek
from skip.wire.ah import AHHeader
from skip.wire.esp import ESPHeader, ESPTrailer
from skip.wire.ip import finish_ipv4_header
from tests.ipsec_cases import LAYOUTS, Suite, datagram

SUITES = (
    Suite("esp", "aes-gcm-16"),
    Suite("esp", "aes-cbc", "hmac-sha1-96"),
    Suite("esp", "null", "hmac-sha2-256-128"),
    Suite("esp", "aes-cbc"),  # unauthenticated: garbage reaches decryption and padding
    Suite("esp", "des-cbc", sequence=False),
    Suite("ah", integrity="hmac-sha2-256-128", esn=True),
    Suite("ah", integrity="keyed-md5", sequence=False),
)
RECEIVERS = [(s, layout, s.sa(layout[0], layout[2])) for s in SUITES for layout in LAYOUTS]
SAMPLES = [s.sa(la[0], la[2]).protect(datagram(la[1], 24, fancy=True)) for s, la, _ in RECEIVERS]


def survive(call, *args, **kwargs) -> None:
    with contextlib.suppress(SkipError):
        call(*args, **kwargs)


def with_valid_checksum(packet: bytearray) -> bytes:
    """Mutations usually break the IPv4 checksum first; repair it to reach the layers below."""
    if len(packet) >= 20 and packet[0] >> 4 == 4 and 20 <= (packet[0] & 15) * 4 <= len(packet):
        finish_ipv4_header(packet)
    return bytes(packet)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(RECEIVERS) - 1), st.binary(max_size=200))
def test_unprotect_noise(index, data):
    _, _, rx = RECEIVERS[index]
    survive(rx.unprotect, data)
    survive(rx.unprotect, data, shim_len=len(data) % 24)
    survive(peek, data)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_unprotect_mutated_packets(data):
    index = data.draw(st.integers(0, len(RECEIVERS) - 1))
    _, _, rx = RECEIVERS[index]
    packet = bytearray(SAMPLES[index])
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(packet) - 1))
        packet[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(packet)))
    survive(rx.unprotect, bytes(packet))
    survive(rx.unprotect, bytes(packet[:cut]))
    survive(rx.unprotect, with_valid_checksum(packet))
    survive(peek, bytes(packet))


@given(st.binary(max_size=64), st.integers(0, 70), st.booleans())
def test_header_parsers(data, offset, sequence):
    survive(AHHeader.parse_from, data, offset, sequence=sequence)
    survive(ESPHeader.parse_from, data, offset, sequence=sequence)
    survive(ESPTrailer.parse, data, check_pattern=sequence)
