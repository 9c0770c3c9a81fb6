"""tshark, an ESP implementation nobody here wrote, decrypts and ICV-checks our packets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import tshark_witness as tw

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
