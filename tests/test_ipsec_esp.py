"""ESP specifics and SA construction: dummy TFC packets, malformed and misrouted packets,
tunnel decapsulation details, legacy gating, parameter checks, accessors for harnesses."""

from __future__ import annotations

import pytest

from skip.crypto.registry import get_cipher
from skip.errors import AlgorithmError, ParseError, SkipError
from skip.ipsec import AhSA, EspSA, SecurityAssociation
from skip.ipsec.layout import decapsulate
from skip.wire.checksum import internet_checksum
from skip.wire.ip import IPv4Header, build_ipv4, finish_ipv4_header
from tests.ipsec_cases import TUNNEL, Suite, datagram

GCM = Suite("esp", "aes-gcm-16")
CBC = Suite("esp", "aes-cbc", "hmac-sha2-256-128")


@pytest.mark.parametrize("suite", [GCM, CBC, Suite("esp", "des-cbc", sequence=False)],
                         ids=lambda s: s.id)
@pytest.mark.parametrize("mode", ["transport", "tunnel"])
def test_dummy_tfc_packet_is_checked_then_discarded(suite, mode):
    tx, rx = suite.sa(mode, 4), suite.sa(mode, 4)
    dummy = tx.protect(datagram(4, 30), dummy=True)
    with pytest.raises(SkipError) as e:
        rx.unprotect(dummy)
    assert e.value.reason == "tfc_dummy"
    assert rx.counters.rejected == {"tfc_dummy": 1} and rx.counters.packets_in == 0
    if suite.sequence:
        assert rx.replay_window.top == 1  # authenticated, so the window moved
    real = tx.protect(datagram(4, 30))
    assert rx.unprotect(real) == datagram(4, 30)
    if suite.integrity or get_cipher(suite.cipher, allow_legacy=True).aead:
        forged = bytearray(tx.protect(b"any filler" if mode == "tunnel" else datagram(4, 5),
                                      dummy=True))
        forged[-1] ^= 1
        with pytest.raises(SkipError) as e:
            rx.unprotect(bytes(forged))
        assert e.value.reason == "bad_icv"  # checked before it is recognised as a dummy


def test_tunnel_trailing_tfc_padding_is_dropped():
    inner = datagram(6, 10)
    assert decapsulate(b"\x45\x00", 41, inner + b"\0" * 17) == inner


def test_tunnel_ecn_ce_is_propagated_to_ect_inner():
    tx, rx = GCM.sa("tunnel", 4), GCM.sa("tunnel", 4)
    inner = build_ipv4("10.0.0.1", "10.0.0.2", 17, b"ecn", tos=0x02)  # ECT(0)
    wire = bytearray(tx.protect(inner))
    assert wire[1] == 0x02  # copied on encapsulation
    wire[1] |= 0x03  # a router marks congestion on the outer header
    finish_ipv4_header(wire)
    out = rx.unprotect(bytes(wire))
    assert out[1] == 0x03 and internet_checksum(out, 0, 20) == 0 and out[2:] == inner[2:10] + out[
        10:12] + inner[12:]


def test_legacy_inner_next_header_zero_is_ipv4():
    """skip-core Q8: pre-IPsec SKIP code sent payload type 0 for "IP follows"."""
    suite = Suite("esp", "des-cbc", sequence=False)
    inner = datagram(4, 21)
    pad = -(len(inner) + 2) % 8
    sealed = get_cipher("des-cbc", allow_legacy=True).new(suite.keys()["cipher_key"]).seal(
        inner + bytes(range(1, pad + 1)) + bytes([pad, 0]), b"", 1)
    wire = build_ipv4(*TUNNEL[4], 50, (0x1234).to_bytes(4, "big") + sealed)
    assert suite.sa("tunnel", 4).unprotect(wire) == inner


@pytest.mark.parametrize(("next_header", "inner", "reason"), [
    (41, datagram(4, 8), "bad_version"),
    (4, datagram(6, 8), "bad_version"),
    (17, datagram(4, 8), "unsupported_protocol"),
    (4, datagram(4, 8)[:-1], "truncated"),
])
def test_tunnel_payload_must_match_its_next_header(next_header, inner, reason):
    with pytest.raises(ParseError) as e:
        decapsulate(b"\x45\x00", next_header, inner)
    assert e.value.reason == reason


def test_tunnel_refuses_non_ip_inner():
    with pytest.raises(ParseError) as e:
        GCM.sa("tunnel", 4).protect(b"\x10not an ip datagram")
    assert e.value.reason == "bad_version"


def test_fragments_are_refused_both_ways():
    frag = build_ipv4("10.0.0.1", "10.0.0.2", 17, b"x" * 16, flags=1)  # MF
    with pytest.raises(ParseError) as e:
        GCM.sa("transport").protect(frag)
    assert e.value.reason == "fragment"
    wire = bytearray(GCM.sa("transport").protect(datagram(4, 16)))
    wire[6] |= 0x20
    finish_ipv4_header(wire)
    with pytest.raises(ParseError) as e:
        GCM.sa("transport").unprotect(bytes(wire))
    assert e.value.reason == "fragment"
    # inside a tunnel a fragment is just data
    assert GCM.sa("tunnel", 6).unprotect(GCM.sa("tunnel", 6).protect(frag)) == frag


@pytest.mark.parametrize(("body", "reason"), [
    (bytes(7), "truncated"),  # not even SPI + sequence number
    ((0x1234).to_bytes(4, "big") + (1).to_bytes(4, "big") + bytes(20), "truncated"),
    ((0x1234).to_bytes(4, "big") + (1).to_bytes(4, "big") + bytes(16 + 17), "bad_block_size"),
    ((0x9999).to_bytes(4, "big") + (1).to_bytes(4, "big") + bytes(48), "bad_spi"),
])
def test_malformed_esp(body, reason):
    sa = Suite("esp", "aes-cbc").sa("tunnel", 4)
    with pytest.raises(SkipError) as e:
        sa.unprotect(build_ipv4(*TUNNEL[4], 50, body))
    assert e.value.reason == reason
    assert sa.counters.rejected == {reason: 1}


def test_every_truncation_is_rejected():
    for suite in (GCM, CBC, Suite("ah", integrity="hmac-sha1-96")):
        wire = suite.sa("transport").protect(datagram(4, 30))
        for cut in range(len(wire)):
            short = bytearray(wire[:cut])
            if cut >= 20:  # keep the IP header consistent so the AH/ESP layer is reached
                short[2:4] = cut.to_bytes(2, "big")
                finish_ipv4_header(short)
            with pytest.raises(SkipError):
                suite.sa("transport").unprotect(bytes(short))


def test_gmac_leaves_payload_readable():
    inner = datagram(4, 40)
    wire = Suite("esp", "aes-gmac").sa("tunnel", 4).protect(inner)
    assert inner in wire


def test_esp_sa_rejects_ah_packet():
    wire = Suite("ah", integrity="hmac-sha1-96").sa("transport").protect(datagram(4, 12))
    with pytest.raises(ParseError) as e:
        GCM.sa("transport").unprotect(wire)
    assert e.value.reason == "unsupported_protocol"


# --- building SAs ------------------------------------------------------------------------


def test_protocol_picks_the_class_and_harness_accessors():
    sa = CBC.sa("tunnel", 6)
    assert isinstance(sa, EspSA) and isinstance(Suite("ah", integrity="hmac-sha1-96").sa(
        "transport"), AhSA)
    assert (sa.cipher.name, sa.integrity_name) == ("aes-cbc", "hmac-sha2-256-128")
    assert sa.cipher_key == CBC.keys()["cipher_key"]
    assert sa.integrity_key == CBC.keys()["integrity_key"]
    assert (str(sa.tunnel_src), str(sa.tunnel_dst)) == TUNNEL[6]
    info = sa.describe()
    assert info["protocol"] == "esp" and info["replay_window"] == 64
    assert CBC.keys()["cipher_key"].hex() not in repr(info)
    assert GCM.sa("transport").integrity_name is None
    ah = Suite("ah", integrity="hmac-sha1-96").sa("transport")
    assert (ah.cipher, ah.cipher_key, ah.integrity_name) == (None, b"", "hmac-sha1-96")


def test_legacy_needs_explicit_opt_in():
    key = bytes(8)
    with pytest.raises(AlgorithmError) as e:
        SecurityAssociation("esp", 1, "transport", cipher="des-cbc", cipher_key=key,
                            allow_unauthenticated=True, sequence=False)
    assert e.value.reason == "legacy_refused" and "allow_legacy=True" in str(e.value)
    with pytest.raises(AlgorithmError) as e:
        SecurityAssociation("ah", 1, "transport", integrity="keyed-md5", integrity_key=key)
    assert e.value.reason == "legacy_refused"
    SecurityAssociation("ah", 1, "transport", integrity="keyed-md5", integrity_key=key,
                        allow_legacy=True)


KEY16, KEY20 = bytes(range(16)), bytes(range(20))


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"protocol": "gre"}, "bad_sa"),
    ({"spi": 0}, "bad_sa"),
    ({"spi": 2**32}, "bad_sa"),
    ({"mode": "beet"}, "bad_sa"),
    ({"mode": "tunnel"}, "bad_sa"),  # no endpoints
    ({"tunnel_src": "10.0.0.1", "tunnel_dst": "10.0.0.2"}, "bad_sa"),  # transport + endpoints
    ({"mode": "tunnel", "tunnel_src": "10.0.0.1", "tunnel_dst": "::2"}, "bad_sa"),
    ({"mode": "tunnel", "tunnel_src": "10.0.0.1", "tunnel_dst": "10.0.0.2", "df": "x"},
     "bad_sa"),
    ({"esn": True, "sequence": False}, "bad_sa"),
    ({"cipher": None}, "bad_sa"),
    ({"cipher": "aes-gcm-16", "cipher_key": bytes(20)}, "bad_sa"),  # + integrity
    ({"cipher": "null", "cipher_key": b"", "integrity": None, "integrity_key": b""}, "bad_sa"),
    ({"integrity": None, "integrity_key": b""}, "bad_sa"),  # aes-cbc unauthenticated
    ({"cipher": "rot13"}, "unsupported_algorithm"),
    ({"cipher_key": bytes(15)}, "bad_key"),
    ({"integrity_key": bytes(5)}, "bad_key"),
    ({"replay_window": 0}, "bad_sa"),
    ({"ah_mutable": "rfc4302"}, "bad_sa"),  # an AH parameter
])
def test_inconsistent_parameters(kwargs, reason):
    args = {"protocol": "esp", "spi": 300, "mode": "transport", "cipher": "aes-cbc",
            "cipher_key": KEY16, "integrity": "hmac-sha1-96", "integrity_key": KEY20}
    args.update(kwargs)
    with pytest.raises(AlgorithmError) as e:
        SecurityAssociation(args.pop("protocol"), args.pop("spi"), args.pop("mode"), **args)
    assert e.value.reason == reason


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"cipher": "aes-cbc", "cipher_key": KEY16}, "bad_sa"),
    ({"integrity": None}, "bad_sa"),
    ({"ah_mutable": "rfc2402"}, "bad_sa"),
])
def test_inconsistent_ah_parameters(kwargs, reason):
    args = {"integrity": "hmac-sha1-96", "integrity_key": KEY20, **kwargs}
    with pytest.raises(AlgorithmError) as e:
        SecurityAssociation("ah", 300, "transport", **args)
    assert e.value.reason == reason


def test_ah_has_no_dummy_packets():
    with pytest.raises(AlgorithmError):
        Suite("ah", integrity="hmac-sha1-96").sa("transport").protect(datagram(4, 3), dummy=True)


def test_rng_is_injectable():
    """CBC IVs and the first outer IPv4 Identification come from the given rng."""
    calls = []

    def rng(n: int) -> bytes:
        calls.append(n)
        return bytes([0x42]) * n

    sa = SecurityAssociation("esp", 7, "tunnel", cipher="aes-cbc", cipher_key=KEY16,
                             integrity="hmac-sha1-96", integrity_key=KEY20,
                             tunnel_src="10.0.0.1", tunnel_dst="10.0.0.2", rng=rng)
    a, b = sa.protect(datagram(4, 1)), sa.protect(datagram(4, 1))
    assert IPv4Header.parse(a).identification == 0x4242
    assert calls == [2, 16, 16]
    assert a[28:44] != b[28:44]  # the CBC chain makes equal random blocks distinct IVs
