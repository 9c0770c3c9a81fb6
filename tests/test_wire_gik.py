"""skip/wire/gik.py: every GIK message round-trips, and the parser is bounded: any prefix,
any byte flipped, any random input gives a message or a ParseError with a reason code, never
another exception (next-wave.md 4.2, 4.3, MC-M1)."""

from __future__ import annotations

import contextlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skip.errors import ParseError
from skip.wire.gik import (
    MAX_PATH,
    MAX_WRAPS,
    GikRekey,
    GikRequest,
    GikRequestV1,
    GikResponse,
    GikResponseV1,
    Wrap,
    is_multicast,
    parse_gik,
)

M4, M6 = bytes([239, 1, 1, 1]), bytes.fromhex("ff15" + "00" * 13 + "01")
MESSAGES = [
    GikRequestV1(bytes([224, 1, 2, 3])),
    GikResponseV1(bytes([224, 1, 2, 3]), 1, 2, 3, 2, 2, 1, 0, bytes(range(32))),
    GikRequest(M4, os.urandom(16), 0),
    GikRequest(M6, os.urandom(16), 9),
    GikResponse(M6, os.urandom(16), 3, 1_800_000_000, 120, 10**7, 10, 11, 11, 0, 70,
                os.urandom(32), os.urandom(32), ((70, os.urandom(32)), (35, os.urandom(32)))),
    GikRekey(M4, 4, 3, 1_800_000_000, 1, (Wrap(35, 70, os.urandom(40)),
                                          Wrap(1, 2, os.urandom(40))), os.urandom(64)),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip_and_every_prefix_is_refused(message):
    wire = message.encode()
    assert parse_gik(wire) == message
    for cut in range(len(wire)):
        if cut == 8 and isinstance(message, GikResponseV1):
            # version 1 tells request from response by length alone (mc-00 has no type)
            assert parse_gik(wire[:cut]) == GikRequestV1(message.group)
            continue
        with pytest.raises(ParseError):
            parse_gik(wire[:cut])
    with pytest.raises(ParseError):
        parse_gik(wire + b"\0")


def test_bounds_and_addresses():
    assert is_multicast(M4) and is_multicast(M6) and not is_multicast(bytes([10, 0, 0, 1]))
    with pytest.raises(ParseError) as err:
        parse_gik(GikRequestV1(bytes([10, 0, 0, 1])).encode())
    assert err.value.reason == "bad_header"
    big = bytearray(MESSAGES[4].encode())
    big[20 + 16 + 4 + 8 + 4 + 8 + 4 + 4 + 32 + 32] = MAX_PATH + 1  # the path count
    with pytest.raises(ParseError) as err:
        parse_gik(bytes(big))
    assert err.value.reason == "bad_length"
    with pytest.raises(ValueError):
        GikRekey(M4, 2, 1, 0, 1, tuple(Wrap(1, 2, bytes(40)) for _ in range(MAX_WRAPS + 1))
                 ).encode()
    for version in (0, 3, 255):
        with pytest.raises(ParseError) as err:
            parse_gik(bytes([version]) + bytes(40))
        assert err.value.reason == "bad_version"
    with pytest.raises(ParseError) as err:
        parse_gik(bytes([2, 9, 0, 0]) + bytes(12) + M4 + bytes(20))
    assert err.value.reason in ("bad_header",)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([m.encode() for m in MESSAGES]), st.data())
def test_any_flip_or_noise_is_a_parse_error_or_a_message(wire, data):
    flipped = bytearray(wire)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(flipped) - 1))
        flipped[i] = data.draw(st.integers(0, 255))
    for candidate in (bytes(flipped), data.draw(st.binary(max_size=300))):
        with contextlib.suppress(ParseError):  # anything else fails the test
            parse_gik(candidate)
