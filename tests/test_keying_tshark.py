"""tshark, an ESP implementation nobody here wrote, decrypts the ESP behind a modern SKIP header.

The modern profile's traffic is plain RFC 4303 ESP once the SKIP header is taken out; given the
E_kp / A_kp that modern-profile.md s. 4.4 derives (recorded in the frozen KAT file), tshark
must decrypt it and verify its ICV. That checks the framing and that the keys the document
specifies are the keys the packet was made with.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from skip.wire.checksum import internet_checksum
from tests import tshark_witness as tw

pytestmark = [
    pytest.mark.tshark,
    pytest.mark.skipif(not tw.available(), reason="tshark is not installed (tools/setup.sh)"),
]
MODERN = json.loads((Path(__file__).parent / "vectors" / "skip_modern_kat.json").read_text())
# KAT vector -> (tshark cipher, tshark integrity)
CASES = {
    "modern-x25519-aes256gcm": ("aes-gcm-16", None),
    "modern-x448-aes128cbc-hmac256": ("aes-cbc", "hmac-sha2-256-128"),
    "modern-modp2048-aes128gcm": ("aes-gcm-16", None),
}


def _without_skip_header(wire: bytes, header_len: int) -> bytes:
    """IPv4 | SKIP | ESP  ->  IPv4(protocol 50) | ESP, lengths and checksum fixed."""
    ip = bytearray(wire[:20])
    ip[9] = 50
    struct.pack_into("!H", ip, 2, len(wire) - header_len)
    struct.pack_into("!H", ip, 10, 0)
    struct.pack_into("!H", ip, 10, internet_checksum(ip, 0, 20))
    return bytes(ip) + wire[20 + header_len:]


@pytest.mark.parametrize("name", sorted(CASES))
def test_tshark_decrypts_modern_skip_esp(name: str, tmp_path: Path) -> None:
    v = next(x for x in MODERN["vectors"] if x["name"] == name)
    cipher, integrity = CASES[name]
    wire = bytes.fromhex(v["wire"])
    header = bytes.fromhex(v["skip_header"])
    assert wire[20:20 + len(header)] == header and header[3] == 50
    sa = tw.TsharkSA(4, "192.0.2.1", "192.0.2.2", 1, cipher, bytes.fromhex(v["crypt_key"]),
                     integrity, bytes.fromhex(v["mac_key"]))
    (row,) = tw.dissect([_without_skip_header(wire, len(header))], [sa], tmp_path)
    assert int(row["esp.spi"], 0) == 1 and int(row["esp.sequence"]) == 1
    assert int(row["esp.protocol"], 0) == 17  # the UDP datagram inside
    plaintext = bytes.fromhex(v["plaintext"])
    assert bytes.fromhex(row["esp.contained_data"].replace(":", "")) == plaintext[20:]
    if integrity:
        assert row["esp.icv_good"] == "1"
