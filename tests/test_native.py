"""The compiled core (skip/_native.c) against the pure-Python reference and outside vectors.

The core may only ever be a faster way to the reference's answer: every test here runs the
same packets through an SA built with the core and one built without it and wants the same
bytes, the same reason codes, the same counters and the same window. The outside witnesses
are draft-mcgrew-gcm-test-01 (RFC 4106's vectors) and RFC 7634 Appendix A, opened by the
core's own code (not a fallback), and scapy's ESP (tests/test_ipsec_scapy.py, which runs on
whichever core is in use).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skip import native
from skip.crypto import skip_numbers as num
from skip.crypto.replay import ReplayWindow, new_window
from skip.errors import SkipError
from skip.ipsec import SecurityAssociation
from skip.keying.suite import Suite
from skip.wire.ip import IPV4_OPT_RR, IPv4Option, build_ipv4, build_ipv6
from tests.keying_harness import pair, udp

needs_core = pytest.mark.skipif(native.core is None, reason=native.describe())
VECTORS = Path(__file__).parent / "vectors"


def test_the_suite_runs_the_compiled_core_unless_told_not_to():
    """tools/setup.sh builds the core; a build that silently failed would leave only the
    reference tested. SKIP_PURE_PYTHON=1 is the suite's second, pure-Python pass."""
    if os.environ.get(native.PURE_PYTHON_ENV, "") in ("", "0"):
        assert native.core is not None, native.describe()


def pure(build, *args, **kwargs):
    """``build(...)`` with the compiled core switched off while it is constructed."""
    with native.reference_only():
        return build(*args, **kwargs)


def outcome(call, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except SkipError as err:
        return err.reason


# --- the replay window ------------------------------------------------------------------------

WINDOW_OPS = st.lists(st.tuples(st.sampled_from(("check", "accept", "infer")),
                                st.integers(0, 2**32 - 1)), max_size=60)


@needs_core
@settings(max_examples=300, deadline=None)
@given(size=st.sampled_from((1, 2, 63, 64, 65, 128, 1000, 4096)), esn=st.booleans(),
       start=st.sampled_from((0, 5, 2**32 - 70, 2**32 + 3, 7 * 2**32 - 1)),
       ops=WINDOW_OPS, spread=st.integers(1, 200))
def test_window_answers_as_the_reference(size, esn, start, ops, spread):
    reference, compiled = ReplayWindow(size, esn), native.core.ReplayWindow(size, esn)
    if esn and start:  # move both to a top near a 2**32 boundary first
        assert outcome(reference.accept, start) == outcome(compiled.accept, start)
    for op, value in ops:
        low = (start + value % spread) & 0xFFFFFFFF if value % 3 else value
        if op == "accept":
            seq = outcome(reference.check, low)
            if isinstance(seq, str):
                seq = low  # accept a number check refused: accept re-checks
            assert outcome(reference.accept, seq) == outcome(compiled.accept, seq)
        else:
            assert outcome(getattr(reference, op), low) == outcome(getattr(compiled, op), low)
        assert reference.top == compiled.top


@needs_core
def test_window_errors_carry_the_reference_codes_and_messages():
    reference, compiled = ReplayWindow(64), native.core.ReplayWindow(64)
    for window in (reference, compiled):
        window.accept(100)
    for seq in (100, 20, 0, -1):
        with pytest.raises(SkipError) as ref_err:
            reference.accept(seq)
        with pytest.raises(SkipError) as our_err:
            compiled.accept(seq)
        assert (type(ref_err.value), str(ref_err.value)) == (type(our_err.value),
                                                               str(our_err.value))


@needs_core
def test_an_sa_uses_one_window_for_both_paths():
    sa = SecurityAssociation("esp", 7, "transport", cipher="aes-gcm-16", cipher_key=bytes(20))
    assert type(sa.replay_window) is native.core.ReplayWindow
    assert type(pure(new_window, 64)) is ReplayWindow


# --- ESP: the same packets both ways --------------------------------------------------------

CIPHERS = [("aes-gcm-16", 20), ("aes-gcm-16", 28), ("aes-gcm-16", 36), ("chacha20-poly1305", 36),
           ("aes-256-gcm-16", 36), ("aes-128-gcm-16", 20)]
MODES = [("transport", None), ("tunnel", ("203.0.113.1", "203.0.113.2")),
         ("tunnel", ("2001:db8:a::1", "2001:db8:b::2"))]


def make_pair(cipher, keylen, mode, outer, esn, df, window):
    def build():
        kwargs = {"cipher": cipher, "cipher_key": bytes(range(keylen)), "esn": esn,
                  "replay_window": window, "rng": lambda n: b"\x5a" * n}
        if outer:
            kwargs.update(tunnel_src=outer[0], tunnel_dst=outer[1], df=df)
        return SecurityAssociation("esp", 0x1234, mode, **kwargs)
    return build


def inner_packets(draw_bytes: bytes, kind: int) -> bytes:
    payload = draw_bytes
    if kind == 0:
        return build_ipv4("192.0.2.1", "198.51.100.7", 17, payload)
    if kind == 1:  # IPv4 with options: the reference's general path
        return build_ipv4("192.0.2.1", "198.51.100.7", 6, payload,
                          options=[IPv4Option(IPV4_OPT_RR, bytes(5))])
    if kind == 2:
        return build_ipv6("2001:db8::1", "2001:db8::7", 17, payload)
    if kind == 3:  # a fragment with DF clear
        packet = bytearray(build_ipv4("192.0.2.1", "198.51.100.7", 17, payload))
        packet[6] = 0x20  # MF
        return _resum(packet)
    if kind == 4:  # ECN and DSCP bits, DF set
        packet = bytearray(build_ipv4("192.0.2.1", "198.51.100.7", 17, payload))
        packet[1], packet[6] = 0xB9, 0x40
        return _resum(packet)
    return payload  # not an IP datagram at all


def _resum(packet: bytearray) -> bytes:
    packet[10:12] = b"\0\0"
    words = struct.unpack("!10H", bytes(packet[:20]))
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    packet[10:12] = struct.pack("!H", ~total & 0xFFFF)
    return bytes(packet)


def tamper(wire: bytes, how: int) -> bytes:
    if how == 0 or not wire:
        return wire
    data = bytearray(wire)
    if how == 1:
        data[-1] ^= 1  # the tag
    elif how == 2:
        data[len(data) // 2] ^= 0x80  # the ciphertext or a header
    elif how == 3:
        return bytes(data[:-20])  # cut short
    elif how == 4:
        data[1] |= 3  # outer CE mark (tunnel: merged into an ECN-capable inner header)
        return _resum(data) if data[0] == 0x45 else bytes(data)
    return bytes(data)


@needs_core
@settings(max_examples=250, deadline=None)
@given(suite=st.sampled_from(CIPHERS), mode=st.sampled_from(MODES), esn=st.booleans(),
       df=st.sampled_from(("copy", "set", "clear")), window=st.sampled_from((1, 64, 200)),
       shim=st.sampled_from((None, (57, b"\x10" * 28))),
       traffic=st.lists(st.tuples(st.binary(min_size=0, max_size=300), st.integers(0, 5),
                                  st.integers(0, 5), st.booleans()), min_size=1, max_size=12))
def test_esp_matches_the_reference(suite, mode, esn, df, window, shim, traffic):
    build = make_pair(*suite, *mode, esn, df, window)
    tx_c, rx_c = build(), build()
    tx_p, rx_p = pure(build), pure(build)
    assert tx_c._core is not None and tx_p._core is None
    sent = []
    for payload, kind, how, replay in traffic:
        packet = inner_packets(payload, kind)
        ours = outcome(tx_c.protect, packet, shim=shim)
        theirs = outcome(tx_p.protect, packet, shim=shim)
        assert ours == theirs
        assert tx_c.last_sequence == tx_p.last_sequence
        assert tx_c.next_ipv4_id == tx_p.next_ipv4_id
        if isinstance(ours, bytes):
            sent.append(tamper(ours, how))
            if replay:
                sent.append(sent[-1])
    shim_len = len(shim[1]) if shim else 0
    for wire in reversed(sent):  # reversed: exercises the window's reordering
        assert outcome(rx_c.unprotect, wire, shim_len=shim_len) == \
            outcome(rx_p.unprotect, wire, shim_len=shim_len)
        assert rx_c.replay_window.top == rx_p.replay_window.top
    assert tx_c.counters.as_dict() == tx_p.counters.as_dict()
    assert rx_c.counters.as_dict() == rx_p.counters.as_dict()


@needs_core
@pytest.mark.parametrize("crypt", [None, num.CHACHA20_POLY1305], ids=["default", "chacha"])
def test_skip_modern_traffic_runs_on_the_core(crypt):
    """The SAs the keying layer builds for the modern profile's AEAD suites get the core
    (skipd's default, AES-256-GCM, is asked for by its sized registry name)."""
    link = pair("x25519", None if crypt is None else Suite(2, 10, crypt, crypt))
    _wire, got = link.send(udp())
    assert got.packet == udp()
    for end in (link.a, link.b):
        sas = [sa for key in [*end._tx.values(), *end._rx.values()]
               for sa in key.transforms.sas]
        assert sas and all(sa._core is not None for sa in sas), sas


@needs_core
def test_the_core_takes_the_common_case_and_declines_the_rest():
    """Not a fallback that always runs: the core itself protects and opens the common case,
    and a declined packet leaves the window as it was."""
    build = make_pair("aes-gcm-16", 36, "tunnel", ("203.0.113.1", "203.0.113.2"), False,
                      "copy", 64)
    tx, rx = build(), build()
    packet = inner_packets(b"x" * 100, 0)
    wire = tx._core.protect(packet, 1, b"", 50, 9)
    assert wire is not None and wire[4:6] == b"\x00\x09"
    assert rx._core.unprotect(wire, 0) == packet
    assert rx.replay_window.top == 1
    assert rx._core.unprotect(wire, 0) is None  # a replay: declined, nothing moved
    assert rx.replay_window.top == 1
    assert tx._core.protect(inner_packets(b"x" * 100, 1), 2, b"", 50, 10) is None  # options
    with pytest.raises(SkipError) as err:
        rx.unprotect(wire)
    assert err.value.reason == "replay"


# --- outside vectors opened by the core's own code ------------------------------------------

GCM_VECTORS = [v for v in json.loads((VECTORS / "gcm_test_01_esp.json").read_text())["vectors"]
               if int(v["aad"][:8], 16)]  # SPI 0 is no SA


@needs_core
@pytest.mark.parametrize("vector", GCM_VECTORS, ids=lambda v: v["id"])
def test_gcm_test_01_packets_open_in_the_core(vector):
    """draft-mcgrew-gcm-test-01 section 4, framed as transport-mode IPv4 datagrams."""
    aad = bytes.fromhex(vector["aad"])
    spi, seq_low = struct.unpack("!I", aad[:4])[0], struct.unpack("!I", aad[-4:])[0]
    seq = struct.unpack("!Q", aad[4:12])[0] if vector["esn"] else seq_low
    sa = SecurityAssociation("esp", spi, "transport", cipher="aes-gcm-16",
                             cipher_key=bytes.fromhex(vector["keymat"]), esn=vector["esn"])
    if seq > 1:
        sa.replay_window.accept(seq - 1)  # so an ESN receiver infers the vector's high half
    esp = (aad[:4] + aad[-4:] + bytes.fromhex(vector["iv"]) + bytes.fromhex(vector["ciphertext"])
           + bytes.fromhex(vector["tag"]))
    wire = build_ipv4("192.0.2.1", "198.51.100.7", 50, esp)
    plaintext = bytes.fromhex(vector["plaintext"])
    pad = plaintext[-2]
    inner = sa._core.unprotect(wire, 0)
    assert inner is not None
    assert inner[20:] == plaintext[:len(plaintext) - 2 - pad]
    assert inner[9] == plaintext[-1]
    assert sa.replay_window.top == seq


@needs_core
def test_rfc7634_packet_opens_in_the_core():
    vector = json.loads((VECTORS / "rfc7634_chacha_esp.json").read_text())["vectors"][0]
    wire = bytes.fromhex(vector["esp_packet_full"])
    sa = SecurityAssociation("esp", int(vector["spi"], 16), "tunnel", cipher="chacha20-poly1305",
                             cipher_key=bytes.fromhex(vector["keymat"]),
                             tunnel_src=wire[12:16], tunnel_dst=wire[16:20])
    assert sa._core.unprotect(wire, 0).hex() == vector["source_packet"]


@needs_core
def test_a_huge_shim_length_is_declined_not_read():
    """A shim length past the packet (any size) is declined before any arithmetic on it;
    the reference then says ``truncated`` (review finding: it once read wild memory)."""
    sa = SecurityAssociation("esp", 9, "transport", cipher="aes-gcm-16", cipher_key=bytes(20))
    packet = build_ipv4("192.0.2.1", "198.51.100.7", 57, b"")
    assert sa._core.unprotect(packet, 2**63 - 1) is None
    assert outcome(sa.unprotect, packet, shim_len=2**63 - 1) == "truncated"


@needs_core
def test_an_exhausted_counter_keeps_the_references_error_order():
    """A bad packet on an SA whose counter is used up: the reference checks the packet first
    (``bad_version``), and so must the core's path (review finding)."""
    build = make_pair("aes-gcm-16", 36, "tunnel", ("203.0.113.1", "203.0.113.2"), False,
                      "copy", 64)
    ours, theirs = build(), pure(build)
    for sa in (ours, theirs):
        sa.set_sequence(2**32 - 1)
    assert outcome(ours.protect, b"\x70junk") == outcome(theirs.protect, b"\x70junk") \
        == "bad_version"
    good = inner_packets(b"x" * 10, 0)
    assert outcome(ours.protect, good) == outcome(theirs.protect, good) == "seq_exhausted"
