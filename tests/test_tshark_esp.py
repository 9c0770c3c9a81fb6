"""tshark, an ESP implementation nobody here wrote, decrypts and ICV-checks our packets."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from skip.ipsec import SecurityAssociation
from skip.wire.ip import build_ipv4, build_ipv6
from tests import tshark_witness as tw
from tests.ipsec_cases import key

pytestmark = [
    pytest.mark.tshark,
    pytest.mark.skipif(not tw.available(), reason="tshark is not installed (tools/setup.sh)"),
]
VECTORS = Path(__file__).parent / "vectors"


def test_witness_decrypts_rfc3602_case5(tmp_path):
    """The harness itself: tshark must decrypt the RFC 3602 transport-mode sample packet."""
    case = json.loads((VECTORS / "rfc3602_aes_cbc_esp.json").read_text())["vectors"][4]
    sa = tw.TsharkSA(4, case["source_address"], case["destination_address"],
                     int(case["spi"], 16), "aes-cbc", bytes.fromhex(case["key"]), None, b"")
    (row,) = tw.dissect([bytes.fromhex(case["esp_packet_full"])], [sa], tmp_path)
    assert int(row["esp.protocol"], 0) == 1
    assert bytes.fromhex(row["esp.contained_data"].replace(":", "")) == bytes.fromhex(
        case["original_data"])


def test_wrong_key_is_not_decrypted(tmp_path):
    case = json.loads((VECTORS / "rfc3602_aes_cbc_esp.json").read_text())["vectors"][4]
    sa = tw.TsharkSA(4, case["source_address"], case["destination_address"],
                     int(case["spi"], 16), "aes-cbc", bytes(16), None, b"")
    (row,) = tw.dissect([bytes.fromhex(case["esp_packet_full"])], [sa], tmp_path)
    assert row["esp.contained_data"] == "" or bytes.fromhex(
        row["esp.contained_data"].replace(":", "")) != bytes.fromhex(case["original_data"])


# --- packets the engine wrote -----------------------------------------------------------------

SUITES = [  # (cipher, cipher key bytes incl. salt, integrity, integrity key bytes)
    ("aes-cbc", 16, "hmac-sha1-96", 20),
    ("aes-gcm-16", 20, None, 0),
    ("aes-cbc", 32, "hmac-sha2-256-128", 32),
    ("3des-cbc", 24, "hmac-md5-96", 16),
]
ADDRS = {4: ("192.0.2.10", "198.51.100.20"), 6: ("2001:db8:1::10", "2001:db8:2::20")}


def _datagram(version: int, marker: bytes) -> bytes:
    src, dst = ADDRS[version]
    udp = struct.pack("!HHHH", 40000, 9, 8 + len(marker), 0) + marker
    build = build_ipv4 if version == 4 else build_ipv6
    return build(src, dst, 17, udp)


@pytest.mark.parametrize("mode", ["transport", "tunnel"])
@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize(("cipher", "ck", "integrity", "ik"), SUITES,
                         ids=[f"{s[0]}-{s[2]}" for s in SUITES])
def test_tshark_decrypts_and_verifies_engine_esp(tmp_path, cipher, ck, integrity, ik,
                                                 version, mode):
    cipher_key = key(f"{cipher}-enc", ck)
    integrity_key = key(f"{integrity}-auth", ik) if integrity else b""
    outer = ADDRS[version] if mode == "transport" else ADDRS[10 - version]
    tunnel = {"tunnel_src": outer[0], "tunnel_dst": outer[1]} if mode == "tunnel" else {}
    sa = SecurityAssociation(
        "esp", 0x2000 + ck, mode, cipher=cipher, cipher_key=cipher_key, integrity=integrity,
        integrity_key=integrity_key, allow_legacy=True, **tunnel)
    inner = [_datagram(version, f"skip packet {k} ".encode() * (k + 1)) for k in range(3)]
    wire = [sa.protect(d) for d in inner]
    tampered = bytearray(wire[0])
    tampered[-1] ^= 0x01  # last ICV (or GCM tag) byte: tshark must call it bad
    outer_version = version if mode == "transport" else 10 - version
    witness = tw.TsharkSA(outer_version, outer[0], outer[1], sa.spi, cipher, cipher_key,
                          integrity, integrity_key)
    rows = tw.dissect([*wire, bytes(tampered)], [witness], tmp_path)

    for k, (row, datagram) in enumerate(zip(rows, inner, strict=False)):
        assert int(row["esp.spi"], 0) == sa.spi
        assert int(row["esp.sequence"]) == k + 1
        contained = bytes.fromhex(row["esp.contained_data"].replace(":", ""))
        if mode == "tunnel":  # tshark shows the whole inner datagram
            assert int(row["esp.protocol"], 0) == (4 if version == 4 else 41)
            assert contained == datagram
        else:
            assert int(row["esp.protocol"], 0) == 17
            assert contained == datagram[20 if version == 4 else 40:]
        assert row["esp.icv_good"] == "1", row  # HMAC or, for GCM, the tag
    assert rows[3]["esp.icv_bad"] == "1", rows[3]
