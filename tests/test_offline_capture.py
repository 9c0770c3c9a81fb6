"""skip.offline.capture: the pcap/pcapng reader against files other programs wrote (scapy's
pcapng writer, editcap's nanosecond pcap and pcapng conversions) and hand-made big-endian
ones, its bounds, and the writer read back by scapy."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skip.errors import ParseError
from skip.offline.capture import (
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    PcapWriter,
    ip_of,
    read_capture,
)
from skip.wire.ip import build_ipv4, build_ipv6

V4 = build_ipv4("192.0.2.1", "192.0.2.2", 57, b"\x20" + b"\0" * 40)
V6 = build_ipv6("2001:db8::1", "2001:db8::2", 57, b"\x20" + b"\0" * 40)


def test_scapy_pcapng_with_times(tmp_path):
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Dot1Q, Ether
    from scapy.utils import PcapNgWriter

    path = tmp_path / "x.pcapng"
    frames = [Ether() / IP(V4), Ether() / Dot1Q(vlan=7) / IPv6(V6), Ether() / b"\x01\x02"]
    for i, f in enumerate(frames):
        f.time = 1_800_000_000.25 + i
    with PcapNgWriter(str(path)) as w:
        for f in frames:
            w.write(f)
    got = list(read_capture(path.open("rb")))
    assert [f.packet for f in got] == [V4, V6, None]  # the last is not IP
    assert [round(f.time, 3) for f in got] == [1_800_000_000.25, 1_800_000_001.25,
                                               1_800_000_002.25]
    assert [f.number for f in got] == [1, 2, 3]


@pytest.mark.skipif(not shutil.which("editcap"), reason="editcap is not installed")
@pytest.mark.parametrize("options", [["-F", "nsecpcap"], ["-F", "pcapng"]])
def test_editcap_conversions(tmp_path, options):
    plain = tmp_path / "plain.pcap"
    with plain.open("wb") as f:
        w = PcapWriter(f)
        w.write(1_800_000_000.5, V4)
        w.write(1_800_000_001.000001, V6)
    out = tmp_path / "out"
    subprocess.run(["editcap", *options, str(plain), str(out)], check=True)
    got = list(read_capture(out.open("rb")))
    assert [f.packet for f in got] == [V4, V6]
    assert abs(got[1].time - 1_800_000_001.000001) < 1e-6


def test_writer_is_read_by_scapy(tmp_path):
    from scapy.utils import rdpcap

    path = tmp_path / "w.pcap"
    with path.open("wb") as f:
        w = PcapWriter(f)
        w.write(1.5, V4)
        w.write(2.0, V6)
    packets = rdpcap(str(path))
    assert [bytes(p) for p in packets] == [V4, V6]
    assert float(packets[0].time) == 1.5


def test_big_endian_pcap_and_bsd_loopback():
    head = struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_LOOP)
    frame = struct.pack(">I", 2) + V4
    record = struct.pack(">IIII", 10, 500_000, len(frame), len(frame)) + frame
    (got,) = read_capture(io.BytesIO(head + record))
    assert got.packet == V4 and got.time == 10.5
    # LINKTYPE_NULL: the family in the writer's byte order (macOS IPv6 = 30)
    assert ip_of(LINKTYPE_NULL, struct.pack("<I", 30) + V6) == V6
    assert ip_of(LINKTYPE_NULL, struct.pack("<I", 17) + V6) is None


def test_snap_length_cut_frames_are_not_decrypted():
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 40, 101)
    record = struct.pack("<IIII", 1, 0, 40, len(V4)) + V4[:40]
    (got,) = read_capture(io.BytesIO(head + record))
    assert got.truncated and got.packet is None


@pytest.mark.parametrize("data", [
    b"",  # empty
    b"\xd4\xc3\xb2",  # shorter than a magic number
    b"GIF89a" + b"\0" * 30,  # not a capture
    struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)[:10],  # header cut short
    struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) +
    struct.pack("<IIII", 0, 0, 0x7FFFFFFF, 0x7FFFFFFF),  # a record of 2 GB
    struct.pack("<III", 0x0A0D0D0A, 13, 0x1A2B3C4D),  # block length not a multiple of 4
    struct.pack("<III", 0x0A0D0D0A, 28, 0x12345678) + b"\0" * 16,  # bad byte-order magic
    struct.pack("<III", 0x0A0D0D0A, 28, 0x1A2B3C4D) + b"\0" * 12 + struct.pack("<I", 28) +
    struct.pack("<II", 6, 32) + struct.pack("<IIIII", 3, 0, 0, 0, 0) + struct.pack("<I", 32),
])
def test_broken_files_are_bad_capture_or_end_cleanly(data):
    try:
        list(read_capture(io.BytesIO(data)))
    except ParseError as err:
        assert err.reason == "bad_capture"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([
    struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1),
    struct.pack("<III", 0x0A0D0D0A, 28, 0x1A2B3C4D) + b"\0" * 16,
]))
def test_any_bytes_after_a_valid_header_are_bounded(tail, head):
    try:
        for frame in read_capture(io.BytesIO(head + tail)):
            assert len(frame.data) <= len(tail)
    except ParseError as err:
        assert err.reason == "bad_capture"
