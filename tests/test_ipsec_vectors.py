"""Published ESP packets reproduced byte for byte: RFC 3602 section 4 cases 5-8 (AES-CBC,
transport and tunnel) and RFC 7634 Appendix A (ChaCha20-Poly1305, tunnel)."""

from __future__ import annotations

import json
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from skip.errors import IntegrityError
from skip.ipsec import SecurityAssociation, peek

VECTORS = Path(__file__).parent / "vectors"
RFC3602 = [v for v in json.loads((VECTORS / "rfc3602_aes_cbc_esp.json").read_text())["vectors"]
           if v["kind"] == "esp_packet"]
RFC7634 = json.loads((VECTORS / "rfc7634_chacha_esp.json").read_text())["vectors"][0]


def rfc3602_sa(case: dict) -> SecurityAssociation:
    tunnel = {}
    if case["mode"] == "tunnel":
        tunnel = {"tunnel_src": case["source_address"], "tunnel_dst": case["destination_address"]}
    # The RFC's packets carry no ICV, hence the explicit opt-in to unauthenticated ESP.
    return SecurityAssociation("esp", int(case["spi"], 16), case["mode"], cipher="aes-cbc",
                               cipher_key=bytes.fromhex(case["key"]),
                               allow_unauthenticated=True, **tunnel)


@pytest.mark.parametrize("case", RFC3602, ids=[c["id"] for c in RFC3602])
def test_rfc3602_packet_is_reproduced(case):
    sa = rfc3602_sa(case)
    sa.set_sequence(case["sequence_number"] - 1)
    sa.dangerously_fix_iv_for_testing(bytes.fromhex(case["iv"]))
    if case["mode"] == "tunnel":  # the outer Identification the RFC's sender happened to use
        sa.next_ipv4_id = int(case["post_encryption_ip_header"][8:12], 16)
    original = bytes.fromhex(case["original_ip_header"] + case["original_data"])
    assert sa.protect(original).hex() == case["esp_packet_full"]
    assert sa.last_sequence == case["sequence_number"]


@pytest.mark.parametrize("case", RFC3602, ids=[c["id"] for c in RFC3602])
def test_rfc3602_packet_is_decrypted(case):
    sa = rfc3602_sa(case)
    wire = bytes.fromhex(case["esp_packet_full"])
    assert peek(wire) == (50, int(case["spi"], 16))
    original = bytes.fromhex(case["original_ip_header"] + case["original_data"])
    assert sa.unprotect(wire) == original
    assert sa.replay_window.top == case["sequence_number"]


def test_rfc3602_default_iv_is_random_not_fixed():
    case = RFC3602[0]
    sa = rfc3602_sa(case)
    original = bytes.fromhex(case["original_ip_header"] + case["original_data"])
    a, b = sa.protect(original), sa.protect(original)
    ivs = {a[28:44], b[28:44], bytes.fromhex(case["iv"])}
    assert len(ivs) == 3
    assert rfc3602_sa(case).unprotect(b) == original


def rfc7634_sa() -> SecurityAssociation:
    wire = bytes.fromhex(RFC7634["esp_packet_full"])
    return SecurityAssociation(
        "esp", int(RFC7634["spi"], 16), "tunnel", cipher="chacha20-poly1305",
        cipher_key=bytes.fromhex(RFC7634["keymat"]),  # 32-byte key || 4-byte salt
        tunnel_src=IPv4Address(wire[12:16]), tunnel_dst=IPv4Address(wire[16:20]))


def test_rfc7634_packet_is_reproduced():
    sa = rfc7634_sa()
    sa.set_sequence(int(RFC7634["seq"], 16) - 1)
    sa.next_ipv4_id = 0x2345
    sa.dangerously_fix_iv_for_testing(bytes.fromhex(RFC7634["iv"]))
    assert sa.protect(bytes.fromhex(RFC7634["source_packet"])).hex() == RFC7634["esp_packet_full"]


def test_rfc7634_packet_is_decrypted_and_its_tag_checked():
    wire = bytes.fromhex(RFC7634["esp_packet_full"])
    assert rfc7634_sa().unprotect(wire).hex() == RFC7634["source_packet"]
    bad = bytearray(wire)
    bad[-1] ^= 1
    with pytest.raises(IntegrityError) as e:
        rfc7634_sa().unprotect(bytes(bad))
    assert e.value.reason == "bad_icv"
