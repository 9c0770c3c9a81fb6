"""Blowfish-CBC and CAST5-CBC for ESP (RFC 2451): legacy, opt-in, and checked by outsiders.

* Schneier's Blowfish "set_key" vectors (one block under the first 1..24 bytes of a key) and
  a 448-bit row (tests/vectors/blowfish_set_key.json) through the engine's own CBC context:
  RFC 2451 section 2.2's 40-448-bit range is enforced (rows 1-4 refused), the rest must match.
* tshark's ESP dissector (libgcrypt's Blowfish and CAST5, code nobody here wrote) decrypts
  and ICV-checks ESP packets our engine sends, transport and tunnel, and flags a tampered one
  (128-bit keys: tshark 4.0 decrypts nothing else for these two; the shorter CAST-128 keys
  are RFC 2144's own 80- and 40-bit vectors).
* Both refuse to build an SA without ``allow_legacy=True`` (docs/engine.md, "Legacy gating").

The published CAST-128 vectors (RFC 2144 B.1) and the first Blowfish ECB rows are in
tests/test_ipsec_linux_algs.py; the Linux kernel as a third witness is there too.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import Blowfish
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from skip.crypto.registry import get_cipher
from skip.errors import AlgorithmError
from skip.ipsec import SecurityAssociation
from skip.wire.ip import build_ipv4
from tests import tshark_witness as tw

SET_KEY = json.loads((Path(__file__).parent / "vectors" / "blowfish_set_key.json").read_text())
h = bytes.fromhex


@pytest.mark.parametrize("row", [*SET_KEY["set_key"], SET_KEY["max_key"]],
                         ids=lambda r: f"{r['key_bytes']}-byte")
def test_blowfish_set_key_vectors_and_the_rfc2451_key_range(row):
    """Under a zero IV one CBC block is the ECB block, so the engine's context must open
    ``0^8 || published ciphertext`` to the published clear block."""
    alg = get_cipher("blowfish-cbc", allow_legacy=True)
    key, pt, ct = h(row["key"]), h(row["plaintext"]), h(row["ciphertext"])
    if row["key_bytes"] < 5:  # below RFC 2451's 40 bits
        with pytest.raises(AlgorithmError) as err:
            alg.new(key)
        assert err.value.reason == "bad_key" and "5 to 56" in err.value.detail
        return
    assert Cipher(Blowfish(key), modes.ECB()).encryptor().update(pt) == ct
    ctx = alg.new(key)
    assert ctx.open(bytes(8) + ct, b"") == pt
    # and what the context seals opens to the same block under a fresh context
    assert alg.new(key).open(ctx.seal(pt, b"", 1), b"") == pt


def test_a_57_byte_blowfish_key_is_refused():
    with pytest.raises(AlgorithmError) as err:
        get_cipher("blowfish-cbc", allow_legacy=True).new(bytes(57))
    assert err.value.reason == "bad_key"


@pytest.mark.parametrize("cipher", ["blowfish-cbc", "cast5-cbc"])
def test_sa_needs_the_legacy_opt_in(cipher):
    kwargs = {"cipher": cipher, "cipher_key": bytes(range(16)), "integrity": "hmac-sha1-96",
              "integrity_key": bytes(20)}
    with pytest.raises(AlgorithmError) as err:
        SecurityAssociation("esp", 0x300, "transport", **kwargs)
    assert err.value.reason == "legacy_refused" and "allow_legacy=True" in err.value.detail
    sa = SecurityAssociation("esp", 0x300, "transport", allow_legacy=True, **kwargs)
    assert sa.describe()["spi"] == 0x300


# --- tshark as the witness ------------------------------------------------------------------

TSHARK_NAMES = {"blowfish-cbc": "BLOWFISH-CBC [RFC2451]", "cast5-cbc": "CAST5-CBC [RFC2144]"}


class _TsharkSA(tw.TsharkSA):
    """tests/tshark_witness.py's SA with the two RFC 2451 ciphers its table lacks."""

    def uat(self) -> str:
        cells = ("IPv4" if self.ip_version == 4 else "IPv6", self.src, self.dst,
                 f"0x{self.spi:08x}", TSHARK_NAMES[self.encryption],
                 "0x" + self.encryption_key.hex(), tw.TSHARK_INTEGRITY[self.integrity],
                 "0x" + self.integrity_key.hex())
        return "uat:esp_sa:" + ",".join(f'"{c}"' for c in cells)


INNER_SRC, INNER_DST = "192.0.2.10", "198.51.100.20"
OUTER_SRC, OUTER_DST = "203.0.113.1", "203.0.113.2"


@pytest.mark.tshark
@pytest.mark.skipif(not tw.available(), reason="tshark is not installed (tools/setup.sh)")
@pytest.mark.parametrize("mode", ["transport", "tunnel"])
@pytest.mark.parametrize(("cipher", "integrity", "ik"),
                         [("blowfish-cbc", "hmac-sha2-256-128", 32),
                          ("cast5-cbc", "hmac-sha1-96", 20)])
def test_tshark_decrypts_and_verifies_engine_esp(tmp_path, cipher, integrity, ik, mode):
    key, auth = bytes(range(40, 56)), bytes(range(100, 100 + ik))
    tunnel = {"tunnel_src": OUTER_SRC, "tunnel_dst": OUTER_DST} if mode == "tunnel" else {}
    sa = SecurityAssociation("esp", 0x4100 + ik, mode, cipher=cipher, cipher_key=key,
                             integrity=integrity, integrity_key=auth, allow_legacy=True,
                             **tunnel)
    inner = [build_ipv4(INNER_SRC, INNER_DST, 17,
                        struct.pack("!HHHH", 40000, 9, 8 + 11 * (k + 1), 0)
                        + b"legacy esp " * (k + 1)) for k in range(3)]
    wire = [sa.protect(d) for d in inner]
    tampered = bytearray(wire[0])
    tampered[-1] ^= 1  # the last ICV byte
    src, dst = (OUTER_SRC, OUTER_DST) if mode == "tunnel" else (INNER_SRC, INNER_DST)
    witness = _TsharkSA(4, src, dst, sa.spi, cipher, key, integrity, auth)
    wrong = _TsharkSA(4, src, dst, sa.spi + 1, cipher, bytes(16), integrity, auth)
    rows = tw.dissect([*wire, bytes(tampered)], [witness, wrong], tmp_path)
    for k, (row, datagram) in enumerate(zip(rows, inner, strict=False)):
        assert int(row["esp.spi"], 0) == sa.spi and int(row["esp.sequence"]) == k + 1
        contained = bytes.fromhex(row["esp.contained_data"].replace(":", ""))
        if mode == "tunnel":
            assert int(row["esp.protocol"], 0) == 4 and contained == datagram
        else:
            assert int(row["esp.protocol"], 0) == 17 and contained == datagram[20:]
        assert row["esp.icv_good"] == "1", row
    assert rows[3]["esp.icv_bad"] == "1", rows[3]


@pytest.mark.tshark
@pytest.mark.skipif(not tw.available(), reason="tshark is not installed (tools/setup.sh)")
@pytest.mark.parametrize("cipher", ["blowfish-cbc", "cast5-cbc"])
def test_tshark_with_the_wrong_key_sees_no_datagram(tmp_path, cipher):
    """The control: the witness really decrypts (a wrong key yields no UDP inside)."""
    key = bytes(range(40, 56))
    sa = SecurityAssociation("esp", 0x4200, "transport", cipher=cipher, cipher_key=key,
                             integrity="hmac-sha1-96", integrity_key=bytes(20),
                             allow_legacy=True)
    datagram = build_ipv4(INNER_SRC, INNER_DST, 17,
                          struct.pack("!HHHH", 40000, 9, 8 + 16, 0) + b"sixteen bytes!!!")
    bad_key = bytes(16 - 1) + b"\x01"
    witness = _TsharkSA(4, INNER_SRC, INNER_DST, sa.spi, cipher, bad_key, "hmac-sha1-96",
                        bytes(20))
    (row,) = tw.dissect([sa.protect(datagram)], [witness], tmp_path)
    contained = row["esp.contained_data"].replace(":", "")
    assert b"sixteen bytes!!!".hex() not in contained
    assert b"sixteen bytes!!!".hex() not in row["esp.decrypted_data"].replace(":", "")
