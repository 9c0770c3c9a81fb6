"""tools/wireshark/skip.lua, run by tshark (an outside program), on packets skip itself made.

Each test builds packets with the project's own code (the keying engine, the CDP requester and
responder, the PFS exchange, the wire builders), writes them as a pcap, runs
``tshark -X lua_script:tools/wireshark/skip.lua -T fields`` and asserts that what the
dissector shows is what the builder put in: NSIDs and MKIDs, both header versions, the
algorithm names of skip/crypto/skip_numbers.py, n as a date (draft-06 s. 5.1: hours since
1995-01-01 00:00 UTC, computed here with datetime, not with skip's code), the hand-over to
Wireshark's ESP and AH dissectors, SKIP ICMP (ADP-00) and CDP (cdp-01; CDP-n of
next-wave.md), including PFS's CERT-Type 250 (PFS-17). Issue 13, "Seeing SKIP on the wire".
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import struct
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import pytest

from skip.crypto import skip_numbers as num
from skip.discovery.cdp import CdpRequester, CdpResponder
from skip.errors import SkipError
from skip.keying.events import TrafficKeys, Transmit
from skip.keying.suite import Suite
from skip.wire.cdp import CdpMessage
from skip.wire.ephemeral import EphemeralCertificate
from skip.wire.ip import build_ipv4, build_ipv6
from skip.wire.names import SkipName
from skip.wire.nsid import ASSIGNED_MKID_LENGTHS
from skip.wire.pcap import encode_pcap
from skip.wire.skip_header import SkipHeader
from skip.wire.skip_icmp import AdpCode, SkipIcmp
from tests.keying_harness import ADDR, NOW, pair, udp

SCRIPT = Path(__file__).resolve().parent.parent / "tools" / "wireshark" / "skip.lua"


@cache
def _tshark_has_lua() -> bool:
    if shutil.which("tshark") is None:
        return False
    out = subprocess.run(["tshark", "-v"], capture_output=True, text=True, check=False)
    return "with Lua" in out.stdout


pytestmark = [
    pytest.mark.tshark,
    pytest.mark.skipif(not _tshark_has_lua(), reason="tshark with Lua is not installed"),
]

SEP, AGG = "|", "~"


def dissect(packets: Sequence[bytes], fields: Sequence[str], workdir: Path,
            options: Sequence[str] = ()) -> list[dict[str, list[str]]]:
    """One row per packet: each field's occurrences (empty list when absent)."""
    pcap = workdir / "skip.pcap"
    pcap.write_bytes(encode_pcap(packets))
    wanted = [*fields, "_ws.expert.message"]
    cmd = ["tshark", "-n", "-X", f"lua_script:{SCRIPT}", "-r", str(pcap), "-T", "fields",
           "-E", f"separator={SEP}", "-E", "occurrence=a", "-E", f"aggregator={AGG}"]
    for opt in options:
        cmd += ["-o", opt]
    for field in wanted:
        cmd += ["-e", field]
    # HOME is the work dir: no personal profile or plugin leaks in
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False,
                          env={"HOME": str(workdir), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "Lua" not in proc.stderr, proc.stderr
    rows = []
    for line in proc.stdout.splitlines():
        cells = line.split(SEP)
        row = {f: (c.split(AGG) if c else []) for f, c in zip(wanted, cells, strict=True)}
        messages = row["_ws.expert.message"]
        assert not any("Lua Error" in m for m in messages), messages
        rows.append(row)
    assert len(rows) == len(packets)
    return rows


def one(row: dict[str, list[str]], field: str) -> str:
    values = row[field]
    assert len(values) == 1, (field, values)
    return values[0]


def hexbytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def n_date(n: int) -> str:
    """draft-06 s. 5.1: "Jan 1, 1995 00:00:00 UTC ... hours since this start time"."""
    return (datetime(1995, 1, 1, tzinfo=UTC) + timedelta(hours=n)).strftime("%Y-%m-%dT%H:%M:%SZ")


HEADER_FIELDS = ("skip.version", "skip.reserved", "skip.src_nsid", "skip.dst_nsid",
                 "skip.next_header", "skip.n", "skip.n_date", "skip.kij_alg",
                 "skip.kij_alg.name", "skip.crypt_alg", "skip.crypt_alg.name", "skip.mac_alg",
                 "skip.mac_alg.name", "skip.comp_alg", "skip.ekp", "skip.ekp_len",
                 "skip.header_len", "skip.src_mkid", "skip.dst_mkid")


def _expected_mac_name(version: int, crypt: int, mac: int) -> str:
    prof = num.PROFILES[version]
    if mac == 0:
        return "none"
    if mac == crypt and crypt in prof.crypt and prof.crypt[crypt].aead:
        return "combined with Crypt Alg (AEAD)"
    return prof.mac[mac].name


def _every_combination() -> list[tuple[int, int, int, int]]:
    """Every (version, Kij, Crypt, MAC) a header of skip_numbers can carry, parse-only too."""
    out = []
    for version, prof in num.PROFILES.items():
        for kij in prof.kij:
            for crypt in (0, *prof.crypt):
                macs = [0, *prof.mac]
                if crypt in prof.crypt and prof.crypt[crypt].aead:
                    macs = [crypt]
                for mac in macs:
                    if num.header_ekp_length(version, kij, crypt, mac):
                        out.append((version, kij, crypt, mac))
    return out


def _ip(payload: bytes, proto: int = 57, *, v6: bool = False) -> bytes:
    if v6:
        return build_ipv6(ADDR["a"][1], ADDR["b"][1], proto, payload)
    return build_ipv4(ADDR["a"][0], ADDR["b"][0], proto, payload)


# --- the header, field by field, against the project's tables -------------------------------

def test_every_algorithm_number_is_named_and_sized_as_skip_numbers_says(tmp_path: Path) -> None:
    """The Lua tables are a copy of skip_numbers.py: every combination of both versions gets
    the project's algorithm names and the EKp length header_ekp_length computes (a wrong
    length would misplace the MKIDs and the ESP that follow)."""
    combos = _every_combination()
    assert len(combos) > 40
    packets, headers = [], []
    for k, (version, kij, crypt, mac) in enumerate(combos):
        ekp = bytes((k + i) % 256 for i in range(num.header_ekp_length(version, kij, crypt, mac)))
        nxt = 50 if crypt else 51
        h = SkipHeader(version, 1, 0, nxt, 250_000 + k, kij, crypt, mac, 0, ekp,
                       bytes([k, 2, 3, 4]))
        headers.append(h)
        if crypt:  # ESP: SPI 1, sequence number, then anything
            after = struct.pack("!II", 1, k + 1) + bytes(32)
        else:  # RFC 4302 AH: Next Header 59, Payload Len 4 (24 bytes), SPI 1, sequence
            after = bytes([59, 4, 0, 0]) + struct.pack("!II", 1, k + 1) + bytes(12)
        packets.append(_ip(h.encode() + after))
    rows = dissect(packets, [*HEADER_FIELDS, "esp.spi", "ah.spi"], tmp_path)
    for h, row in zip(headers, rows, strict=True):
        prof = num.PROFILES[h.version]
        assert int(one(row, "skip.version")) == h.version
        assert one(row, "skip.kij_alg.name") == prof.kij[h.kij_alg].name
        assert one(row, "skip.crypt_alg.name") == (prof.crypt[h.crypt_alg].name
                                                    if h.crypt_alg else "none")
        assert one(row, "skip.mac_alg.name") == _expected_mac_name(h.version, h.crypt_alg,
                                                                   h.mac_alg)
        assert int(one(row, "skip.ekp_len")) == len(h.ekp)
        assert hexbytes(one(row, "skip.ekp")) == h.ekp
        assert int(one(row, "skip.header_len")) == h.length
        assert hexbytes(one(row, "skip.src_mkid")) == h.src_mkid
        assert int(one(row, "skip.n")) == h.n and one(row, "skip.n_date") == n_date(h.n)
        # what follows the header went to Wireshark's own ESP / AH dissector, at the right byte
        spi_field = "esp.spi" if h.crypt_alg else "ah.spi"
        assert int(one(row, spi_field), 0) == 1


MKIDS = {
    1: ipaddress.ip_address("192.0.2.7").packed,
    2: (1000).to_bytes(4, "big"),
    3: ipaddress.ip_address("2001:db8::42").packed,
    7: bytes.fromhex("020000a1b2c3"),
    250: (0xDEADBEEF).to_bytes(4, "big"),
}


def _mkid(nsid: int) -> bytes:
    if nsid in MKIDS:
        return MKIDS[nsid]
    return bytes((nsid * 17 + i) % 256 for i in range(ASSIGNED_MKID_LENGTHS[nsid]))


MKID_FIELDS = ("ipv4", "ipv6", "uid", "mac", "md5", "emkid")


def test_every_nsid_and_its_mkid_form(tmp_path: Path) -> None:
    """Each name space of draft-06 s. 4.3, and the PFS EMKID (NSID 250, 4 bytes), as source and
    destination: the raw MKID and its typed reading (address, uid, MAC address, MD5 hash)."""
    nsids = [*sorted(ASSIGNED_MKID_LENGTHS), 250]
    headers = []
    for k, src in enumerate(nsids):
        dst = nsids[(k + 5) % len(nsids)]
        headers.append(SkipHeader(2, src, dst, 50, 280_000, 10, 11, 11, 0, bytes(48),
                                  _mkid(src) if src else b"", _mkid(dst) if dst else b""))
    fields = ["skip.src_nsid", "skip.dst_nsid", "skip.src_mkid", "skip.dst_mkid",
              "skip.header_len"]
    for side in ("src", "dst"):
        fields += [f"skip.{side}_mkid.{kind}" for kind in MKID_FIELDS]
    rows = dissect([_ip(h.encode() + struct.pack("!II", 1, 1) + bytes(40)) for h in headers],
                   fields, tmp_path)
    for h, row in zip(headers, rows, strict=True):
        assert int(one(row, "skip.header_len")) == h.length
        for side, nsid, mkid in (("src", h.src_nsid, h.src_mkid), ("dst", h.dst_nsid, h.dst_mkid)):
            assert int(one(row, f"skip.{side}_nsid")) == nsid
            typed = {kind: row[f"skip.{side}_mkid.{kind}"] for kind in MKID_FIELDS}
            if nsid == 0:
                assert row[f"skip.{side}_mkid"] == [] and not any(typed.values())
                continue
            assert hexbytes(one(row, f"skip.{side}_mkid")) == mkid
            expected = {
                1: ("ipv4", "192.0.2.7"), 2: ("uid", "1000"), 3: ("ipv6", "2001:db8::42"),
                7: ("mac", "02:00:00:a1:b2:c3"), 250: ("emkid", "0xdeadbeef"),
            }.get(nsid, ("md5", mkid.hex()))
            kind, text = expected
            got = typed[kind][0]
            assert (hexbytes(got).hex() if kind == "md5" else got) == text
            assert all(not v for other, v in typed.items() if other != kind)


def test_n_is_shown_as_the_start_of_its_hour(tmp_path: Path) -> None:
    ns = [0, 1, 24 * 365, 280_000, 2**26]
    packets = [_ip(SkipHeader(2, 0, 0, 50, n, 10, 10, 10, 0, bytes(48)).encode() + bytes(24))
               for n in [*ns, 2**32 - 1]]
    rows = dissect(packets, ["skip.n", "skip.n_date", "skip.n_time"], tmp_path,
                   ["gui.column.format:\"Time\",\"%t\""])
    assert [one(r, "skip.n_date") for r in rows[:-1]] == [n_date(n) for n in ns]
    assert one(rows[-1], "skip.n") == str(2**32 - 1)  # year 491,954: shown, not a Lua error
    assert one(rows[0], "skip.n_date") == "1995-01-01T00:00:00Z"
    assert one(rows[2], "skip.n_date") == "1996-01-01T00:00:00Z"  # 1995 is no leap year
    assert one(rows[0], "skip.n_time").startswith("Jan  1, 1995 00:00:00")


def test_a_malformed_header_is_flagged_not_misread(tmp_path: Path) -> None:
    good = SkipHeader(2, 0, 0, 50, 280_000, 10, 11, 11, 0, bytes(48)).encode()
    unknown_alg = good[:9] + bytes([99]) + good[10:]
    unknown_nsid = good[:1] + bytes([40]) + good[2:]
    reserved = bytes([0x21]) + good[1:]
    version = bytes([0x30]) + good[1:]
    short = good[:30]
    packets = [_ip(p + bytes(24)) for p in (unknown_alg, unknown_nsid, reserved, version)]
    packets.append(_ip(short))
    rows = dissect(packets, ["skip.header_len", "esp.spi"], tmp_path)
    messages = [" ".join(r["_ws.expert.message"]) for r in rows]
    assert "Crypt Alg unknown in version 2" in messages[0] and not rows[0]["esp.spi"]
    assert "Unknown NSID" in messages[1] and not rows[1]["esp.spi"]
    assert "Rsvd is not 0" in messages[2] and rows[2]["esp.spi"]
    assert "version 3" in messages[3] and not rows[3]["skip.header_len"]
    assert "needs 60 bytes, has 30" in messages[4]


# --- packets the keying engine sent ---------------------------------------------------------

def test_engine_packets_both_versions_and_ip_versions(tmp_path: Path) -> None:
    """What SkipEndpoint.protect wrote: modern (NSID 8 MKIDs, AES-GCM ESP; IPv4 and IPv6) and
    legacy (3DES Kij, DES ESP behind keyed-MD5 AH), n from the engine's clock."""
    modern = pair("x25519", mkids=True)
    legacy = pair("skip-1024", Suite(1, 2, 1, 1))
    sent = [modern.a.protect(udp(), NOW), modern.a.protect(udp(v6=True), NOW),
            legacy.a.protect(udp(), NOW)]
    rows = dissect(sent, [*HEADER_FIELDS, "ipv6.nxt", "esp.spi", "esp.sequence", "ah.spi",
                          "ah.next_header"], tmp_path)
    n = int((NOW - 788918400) // 3600)
    for wire, row in zip(sent, rows, strict=True):
        off = 20 if wire[0] >> 4 == 4 else 40
        h = SkipHeader.parse_from(wire, off, num.header_ekp_length)[0]
        assert int(one(row, "skip.version")) == h.version
        assert int(one(row, "skip.n")) == h.n == n and one(row, "skip.n_date") == n_date(n)
        assert hexbytes(one(row, "skip.ekp")) == h.ekp
        assert int(one(row, "skip.src_nsid")) == h.src_nsid
        assert [hexbytes(v) for v in row["skip.src_mkid"]] == ([h.src_mkid] if h.src_nsid else [])
        assert [hexbytes(v) for v in row["skip.dst_mkid"]] == ([h.dst_mkid] if h.dst_nsid else [])
    assert int(one(rows[0], "skip.src_nsid")) == 8 and hexbytes(one(rows[0], "skip.src_mkid")) \
        == b"A" * 16 and hexbytes(one(rows[0], "skip.dst_mkid")) == b"B" * 16
    assert one(rows[0], "skip.crypt_alg.name") == "aes-256-gcm-16"
    assert int(one(rows[0], "esp.spi"), 0) == 1 and int(one(rows[0], "esp.sequence")) == 1
    assert int(one(rows[1], "ipv6.nxt")) == 57 and int(one(rows[1], "esp.spi"), 0) == 1
    assert one(rows[2], "skip.kij_alg.name") == "3des-ede-cbc"
    assert one(rows[2], "skip.crypt_alg.name") == "des-cbc"
    assert one(rows[2], "skip.mac_alg.name") == "keyed-md5"
    # RFC 1826 AH, then RFC 1827 ESP inside it (draft-06 s. 3: AH first)
    assert int(one(rows[2], "ah.spi"), 0) == 1 and int(one(rows[2], "ah.next_header")) == 50
    assert int(one(rows[2], "esp.spi"), 0) == 1


ICMP_FIELDS = ("skip_icmp.type", "skip_icmp.code", "skip_icmp.code.flags",
               "skip_icmp.checksum.good", "skip_icmp.version", "skip_icmp.protocol",
               "skip_icmp.port", "skip_icmp.kij", "skip_icmp.kij.name", "skip_icmp.crypt",
               "skip_icmp.crypt.name", "skip_icmp.mac", "skip_icmp.mac.name", "skip_icmp.comp",
               "skip_icmp.numbers_version", "skip_icmp.kp_floor", "skip_icmp.kp_floor_time")


def _check_icmp(row: dict[str, list[str]], msg: SkipIcmp, version: int) -> None:
    prof = num.PROFILES[version]
    assert int(one(row, "skip_icmp.type")) == 39
    assert int(one(row, "skip_icmp.code"), 0) == int(msg.code)
    assert one(row, "skip_icmp.checksum.good") == "1"
    assert int(one(row, "skip_icmp.version")) == 1
    assert int(one(row, "skip_icmp.numbers_version")) == version
    assert [int(x) for x in row["skip_icmp.kij"]] == list(msg.kij)
    assert [int(x) for x in row["skip_icmp.crypt"]] == list(msg.crypt)
    assert [int(x) for x in row["skip_icmp.mac"]] == list(msg.mac)
    assert row["skip_icmp.comp"] == [str(x) for x in msg.comp]
    assert row["skip_icmp.kij.name"] == [prof.kij[x].name for x in msg.kij]
    assert row["skip_icmp.crypt.name"] == [prof.crypt[x].name for x in msg.crypt]
    assert row["skip_icmp.mac.name"] == [prof.mac[x].name for x in msg.mac]


def test_legacy_skip_icmp_answer_behind_ah(tmp_path: Path) -> None:
    """ADP-00's answer as the engine sends it: SKIP + keyed-MD5 AH + ICMP type 39 in the clear;
    the code bit says which algorithm was refused (here P: 3DES traffic)."""
    from skip.crypto.skip_numbers import AlgClass
    from skip.keying.policy import KeyingPolicy

    base = KeyingPolicy(allow_legacy=True)
    accepted = dict(base.accepted)
    accepted[1] = accepted[1] - {(AlgClass.CRYPT, 2)}
    link = pair("skip-1024", Suite(1, 2, 2, 1),
                policy_b=KeyingPolicy(allow_legacy=True, accepted=accepted))
    request = link.a.protect(udp(payload=bytes(160)), NOW)
    with pytest.raises(SkipError) as err:
        link.b.unprotect(request, NOW)
    assert err.value.reason == "unsupported_crypt_alg"
    [answer] = [e.packet for e in link.b.events() if isinstance(e, Transmit)]
    _h, end = SkipHeader.parse_from(answer, 20, num.header_ekp_length)
    icmp_at = end + 8 + 16  # RFC 1826 AH with a 16-byte keyed-MD5 ICV
    msg = SkipIcmp.parse(answer[icmp_at:])
    rows = dissect([request, answer], [*ICMP_FIELDS, "skip.mac_alg.name", "ah.next_header"],
                   tmp_path)
    assert rows[0]["skip_icmp.type"] == []
    row = rows[1]
    assert one(row, "skip.mac_alg.name") == "keyed-md5" and one(row, "ah.next_header") == "1"
    _check_icmp(row, msg, 1)
    assert msg.code == AdpCode.CRYPT_UNSUPPORTED and one(row, "skip_icmp.code.flags") == "P"
    assert 2 not in msg.crypt and row["skip_icmp.kp_floor"] == []


def test_modern_solicitation_and_its_answer_decrypted_by_tshark(tmp_path: Path) -> None:
    """A Kij Alg 0 solicitation (modern-profile.md s. 6) is shown as such; b's answer is ESP
    under b's current Kp, which tshark decrypts with the E_kp from b's traffic-key log, and
    the SKIP ICMP inside lists the version-2 numbers with version-2 names."""
    link = pair("x25519")
    logged: list[TrafficKeys] = []
    link.b.log_traffic_keys_insecurely(logged.append)
    solicitation = link.a.solicit("b", NOW)
    with pytest.raises(SkipError) as err:
        link.b.unprotect(solicitation, NOW)
    assert err.value.reason == "no_kp"
    [answer] = [e.packet for e in link.b.events() if isinstance(e, Transmit)]
    [keys] = [k for k in logged if k.direction == "out"]
    h = SkipHeader.parse_from(answer, 20, num.header_ekp_length)[0]
    assert keys.header == answer[20:20 + h.length] and h.crypt_alg == num.AES256_GCM
    sa = ",".join(f'"{c}"' for c in ("IPv4", ADDR["b"][0], ADDR["a"][0], "0x00000001",
                                      "AES-GCM with 16 octet ICV [RFC4106]",
                                      "0x" + keys.e_kp.hex(), "NULL", ""))
    rows = dissect([solicitation, answer],
                   [*ICMP_FIELDS, "skip.kij_alg", "skip.solicitation", "skip.padding",
                    "esp.icv_good", "skip.ekp_len"], tmp_path,
                   ["esp.enable_encryption_decode:TRUE", "esp.enable_authentication_check:TRUE",
                    f"uat:esp_sa:{sa}"])
    sol = rows[0]
    assert one(sol, "skip.kij_alg") == "0" and one(sol, "skip.solicitation") == "1"
    assert one(sol, "skip.ekp_len") == "0"
    assert len(hexbytes(one(sol, "skip.padding"))) == len(solicitation) - 20 - 12
    ans = rows[1]
    assert one(ans, "esp.icv_good") == "1"
    _check_icmp(ans, _decrypted_icmp(answer, h.length, keys.e_kp), 2)
    assert one(ans, "skip_icmp.kij.name") == "aes-256-key-wrap"


def _decrypted_icmp(wire: bytes, header_len: int, e_kp: bytes) -> SkipIcmp:
    """The answer's SKIP ICMP, opened independently of tshark with AES-GCM (RFC 4106)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    esp = wire[20 + header_len:]
    plain = AESGCM(e_kp[:32]).decrypt(e_kp[32:] + esp[8:16], esp[16:], esp[:8])
    assert plain[-1] == 1  # transport mode, ICMP
    return SkipIcmp.parse(plain[:-2 - plain[-2]])


def test_kp_floor_notice_and_skip_icmp_inside_ipv6(tmp_path: Path) -> None:
    """The 2.1 kp_floor field, and SKIP ICMP as IP protocol 1 inside IPv6 (decisions.md 3.7);
    with no SKIP header in front the dissector guesses the numbers' version, and says so."""
    floor = 1_796_919_634_123
    msg = SkipIcmp(AdpCode.KIJ_UNSUPPORTED | AdpCode.MAC_UNSUPPORTED, (10,), (11, 12, 10),
                   (20, 22, 21), kp_floor=floor)
    legacy = SkipIcmp(AdpCode.NONE, (2, 3, 1), (2, 1), (3, 1), protocol=17, port=5000)
    bad = bytearray(legacy.encode())
    bad[2] ^= 0xFF
    rows = dissect([_ip(msg.encode(), 1, v6=True), _ip(legacy.encode(), 1), _ip(bytes(bad), 1),
                    _ip(b"\x08\x00\xf7\xff\x00\x00\x00\x00", 1)],
                   [*ICMP_FIELDS, "icmp.type"], tmp_path)
    _check_icmp(rows[0], msg, 2)
    assert one(rows[0], "skip_icmp.code.flags") == "IM"
    assert int(one(rows[0], "skip_icmp.kp_floor")) == floor
    expected = datetime.fromtimestamp(floor // 1000, UTC).strftime("%b %e, %Y %H:%M:%S")
    assert one(rows[0], "skip_icmp.kp_floor_time").startswith(expected + ".123")
    _check_icmp(rows[1], legacy, 1)
    assert (one(rows[1], "skip_icmp.protocol"), one(rows[1], "skip_icmp.port")) == ("17", "5000")
    assert one(rows[2], "skip_icmp.checksum.good") == "0"
    assert "Bad SKIP ICMP checksum" in rows[2]["_ws.expert.message"]
    # any other ICMP still goes to Wireshark's ICMP dissector
    assert one(rows[3], "icmp.type") == "8" and rows[3]["skip_icmp.type"] == []


# --- CDP on UDP 1640 ------------------------------------------------------------------------

CDP_FIELDS = ("skip_cdp.version", "skip_cdp.action", "skip_cdp.count",
              "skip_cdp.requester_cookie", "skip_cdp.responder_cookie",
              "skip_cdp.record.action", "skip_cdp.record.name_type", "skip_cdp.record.nsid",
              "skip_cdp.record.name", "skip_cdp.record.mkid", "skip_cdp.record.mkid.ipv4",
              "skip_cdp.record.mkid.ipv6", "skip_cdp.record.mkid.md5",
              "skip_cdp.record.cert_type", "skip_cdp.record.cert_len", "skip_cdp.record.cert")


def _udp(sport: int, dport: int, payload: bytes, src: str = "a", dst: str = "b") -> bytes:
    body = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    return build_ipv4(ADDR[src][0], ADDR[dst][0], 17, body)


def _counter_rng() -> object:
    state = [0]

    def rng(n: int) -> bytes:
        state[0] += 1
        return bytes((state[0] * 37 + i) % 256 for i in range(n))

    return rng


def test_cdp_request_cookie_and_response(tmp_path: Path) -> None:
    """A lookup by CdpRequester, CdpResponder's COOKIE_REQUIRED, the retry with the cookie and
    the answer (CDP-20: cookies; cdp-01 s. 3): every header and record field as built."""
    wanted = [SkipName.of_address(ipaddress.ip_address("10.0.0.2").packed),
              SkipName(8, bytes(range(16))),
              SkipName(3, ipaddress.ip_address("2001:db8::2").packed)]
    certs = {wanted[0]: [(1, b"\x30\x03\x02\x01\x05")], wanted[1]: [(4, b"udh-bytes")]}
    requester = CdpRequester(rng=_counter_rng(), per_server=100)  # type: ignore[arg-type]
    responder = CdpResponder(lambda name: certs.get(name, ()), rng=_counter_rng(),  # type: ignore[arg-type]
                             always_cookie=True)
    client, server = ("10.0.0.1", 40000), ("10.0.0.2", 1640)
    wire: list[bytes] = []
    for name in wanted:
        requester.lookup(name, [server], NOW)
    for _ in range(2):
        for data, _dst in requester.datagrams_to_send():
            wire.append(_udp(40000, 1640, data))
            answer = responder.handle(data, client, server, NOW)
            assert answer is not None
            wire.append(_udp(1640, 40000, answer, "b", "a"))
            requester.receive_datagram(answer, server, NOW)
    assert len(wire) == 12
    rows = dissect(wire, CDP_FIELDS, tmp_path)
    for packet, row in zip(wire, rows, strict=True):
        msg = CdpMessage.parse(packet[28:])
        assert int(one(row, "skip_cdp.version")) == 1
        assert int(one(row, "skip_cdp.action")) == msg.action
        assert int(one(row, "skip_cdp.count")) == len(msg.records)
        assert int(one(row, "skip_cdp.requester_cookie"), 0) == msg.requester_cookie
        assert int(one(row, "skip_cdp.responder_cookie"), 0) == msg.responder_cookie
        assert [int(x) for x in row["skip_cdp.record.action"]] == [r.action for r in msg.records]
        assert [hexbytes(x) for x in row["skip_cdp.record.name"]] == [r.name for r in msg.records]
        assert [int(x) for x in row["skip_cdp.record.nsid"]] == [r.name[0] for r in msg.records]
        assert [hexbytes(x) for x in row["skip_cdp.record.mkid"]] == \
            [r.name[1:] for r in msg.records]
        assert [int(x) for x in row["skip_cdp.record.cert_type"]] == \
            [r.cert_type for r in msg.records]
        assert [hexbytes(x) for x in row["skip_cdp.record.cert"]] == \
            [r.certificate for r in msg.records if r.certificate]
    actions = [int(one(r, "skip_cdp.action")) for r in rows]
    assert actions == [0, 2] * 3 + [0, 1] * 3  # request, cookie required; retry, response
    assert int(one(rows[6], "skip_cdp.responder_cookie"), 0) == \
        int(one(rows[1], "skip_cdp.responder_cookie"), 0) != 0
    assert one(rows[7], "skip_cdp.record.mkid.ipv4") == "10.0.0.2"
    assert one(rows[11], "skip_cdp.record.mkid.ipv6") == "2001:db8::2"
    assert one(rows[11], "skip_cdp.record.action") == "101"  # GET failed
    assert hexbytes(one(rows[9], "skip_cdp.record.mkid.md5")) == bytes(range(16))


EPH_FIELDS = ("skip_cdp.record.cert_type", "skip_cdp.eph.version", "skip_cdp.eph.mac_alg",
              "skip_cdp.eph.validity", "skip_cdp.eph.public", "skip_cdp.eph.emkid_ij",
              "skip_cdp.eph.emkid_ji", "skip_cdp.eph.nonce", "skip_cdp.eph.mac",
              "skip.dst_nsid", "skip.dst_mkid.emkid")


def test_pfs_exchange_and_emkid_packets(tmp_path: Path) -> None:
    """PFS (docs/pfs.md): the ephemeral certificates of CERT-Type 250 that the two engines
    exchange over CDP, field by field, then a packet under the new key: Dest NSID 250 and
    the EMKID the responder chose (PFS-17)."""
    from tests.test_pfs import PfsLink, _ipv4

    link = PfsLink()
    link.a.protect(_ipv4("a", "b", b"forward-secret"), NOW)
    released = link.exchange(NOW)
    sent = next(e.packet for e in released if hasattr(e, "packet"))
    cdp = [_udp(1640, 1640, link.wire[0]), _udp(1640, 1640, link.wire[1], "b", "a")]
    rows = dissect([*cdp, sent], EPH_FIELDS, tmp_path)
    certs = []
    for payload, row in zip(link.wire, rows[:2], strict=True):
        msg = CdpMessage.parse(payload)
        [rec] = [r for r in msg.records if r.cert_type == 250]
        cert = EphemeralCertificate.parse(rec.certificate)
        certs.append(cert)
        assert one(row, "skip_cdp.record.cert_type") == "250"
        assert int(one(row, "skip_cdp.eph.version")) == cert.version
        assert int(one(row, "skip_cdp.eph.mac_alg")) == cert.mac_alg
        assert int(one(row, "skip_cdp.eph.validity")) == cert.validity
        assert hexbytes(one(row, "skip_cdp.eph.public")) == cert.public
        assert int(one(row, "skip_cdp.eph.emkid_ij"), 0) == cert.emkid_ij
        assert int(one(row, "skip_cdp.eph.emkid_ji"), 0) == cert.emkid_ji
        assert [hexbytes(x) for x in row["skip_cdp.eph.nonce"]] == \
            ([cert.nonce] if cert.nonce else [])
        assert hexbytes(one(row, "skip_cdp.eph.mac")) == cert.mac
    assert certs[1].emkid_ij != 0
    assert one(rows[2], "skip.dst_nsid") == "250"
    assert int(one(rows[2], "skip.dst_mkid.emkid"), 0) == certs[1].emkid_ij


# --- two skipd in network namespaces --------------------------------------------------------

@pytest.mark.netns
def test_skipd_capture_in_netns_cdp_discovery_then_skip(tmp_path: Path) -> None:
    """Two skipd that do not know each other (tests/netns.py TwoHosts): the capture of a's LAN
    interface shows the CDP lookups each way (GET, COOKIE_REQUIRED, GET with the cookie, the
    X.509 certificate: CDP-M2, CDP-20) and then SKIP version 2 with n of the current hour."""
    import time

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from tests.netns import LAN_AB, OVERLAY_AB, Capture, Lab, TwoHosts, can_run

    if can_run() is not None or shutil.which("dumpcap") is None:
        pytest.skip(str(can_run() or "needs dumpcap (Debian package tshark)"))
    with Lab() as lab:
        hosts = TwoHosts(lab, tmp_path)
        try:
            hosts.start("a")
            hosts.start("b")
            cap = Capture(hosts.ns["a"], hosts.lan["a"], tmp_path / "lan.pcapng")
            before = time.time()
            assert hosts.ping("a", OVERLAY_AB["b"], count=2), (tmp_path / "a.log").read_text()
            after = time.time()
            cap.stop()
        finally:
            hosts.stop_all()
    fields = [*CDP_FIELDS, "skip.version", "skip.n", "skip.n_date", "skip.src_nsid",
              "skip.dst_nsid", "skip.crypt_alg.name", "esp.spi", "ip.src", "udp.srcport",
              "x509af.serialNumber"]
    cmd = ["tshark", "-n", "-X", f"lua_script:{SCRIPT}", "-r", str(cap.path), "-Y",
           "skip or skip_cdp", "-T", "fields", "-E", f"separator={SEP}", "-E", "occurrence=a",
           "-E", f"aggregator={AGG}"]
    for field in [*fields, "_ws.expert.message"]:
        cmd += ["-e", field]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True,
                         env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}).stdout
    rows = [{f: (c.split(AGG) if c else []) for f, c in
             zip([*fields, "_ws.expert.message"], line.split(SEP), strict=True)}
            for line in out.splitlines()]
    assert not any("Lua Error" in m for r in rows for m in r["_ws.expert.message"])
    cdp = [r for r in rows if r["skip_cdp.version"]]
    skip = [r for r in rows if r["skip.version"]]
    assert len(cdp) == 8 and len(skip) >= 4
    for src in ("a", "b"):
        asked = [r for r in cdp if one(r, "ip.src") == LAN_AB[src] and
                 one(r, "udp.srcport") != "1640"]
        answers = [r for r in cdp if one(r, "ip.src") != LAN_AB[src] and
                   one(r, "udp.srcport") == "1640" and
                   one(r, "skip_cdp.requester_cookie") in
                   {one(q, "skip_cdp.requester_cookie") for q in asked}]
        assert [one(r, "skip_cdp.action") for r in asked] == ["0", "0"]
        assert [one(r, "skip_cdp.action") for r in answers] == ["2", "1"]
        other = "b" if src == "a" else "a"
        for r in asked:
            assert one(r, "skip_cdp.record.nsid") == "1"
            assert one(r, "skip_cdp.record.mkid.ipv4") == LAN_AB[other]
        # the retry carries the responder's cookie from COOKIE_REQUIRED (CDP-20)
        assert one(asked[1], "skip_cdp.responder_cookie") == \
            one(answers[0], "skip_cdp.responder_cookie") != "0x00000000"
        cert = x509.load_pem_x509_certificate((tmp_path / "pki" / f"{other}.pem").read_bytes())
        got = answers[1]
        assert one(got, "skip_cdp.record.action") == "100"  # GET succeeded
        assert one(got, "skip_cdp.record.cert_type") == "1"  # X.509
        assert hexbytes(one(got, "skip_cdp.record.cert")) == cert.public_bytes(Encoding.DER)
        # Wireshark's own X.509 dissector read the certificate we handed it
        assert int.from_bytes(hexbytes(one(got, "x509af.serialNumber"))) == cert.serial_number
    hours = {int((t - 788918400) // 3600) for t in (before, after)}
    for r in skip:
        assert one(r, "skip.version") == "2" and int(one(r, "skip.n")) in hours
        assert one(r, "skip.n_date") == n_date(int(one(r, "skip.n")))
        assert int(one(r, "esp.spi"), 0) == 1
        assert one(r, "skip.crypt_alg.name") in {a.name for a in num.MODERN.crypt.values()}


def test_installed_per_user_and_private_nsids_from_the_preference(tmp_path: Path) -> None:
    """tools/wireshark/install.sh puts skip.lua where tshark loads it by itself (no -X), and
    the private NSID lengths come from the skip.private_nsids preference (numbers.md)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    subprocess.run(["bash", str(SCRIPT.parent / "install.sh")], check=True, env=env,
                   capture_output=True, timeout=60)
    assert (home / ".local/lib/wireshark/plugins/skip.lua").read_bytes() == SCRIPT.read_bytes()
    h = SkipHeader(2, 251, 250, 50, 280_000, 10, 11, 11, 0, bytes(48), b"private!",
                   bytes.fromhex("01020304"))
    pcap = tmp_path / "p.pcap"
    pcap.write_bytes(encode_pcap([_ip(h.encode() + struct.pack("!II", 1, 1) + bytes(40))]))

    def run(*opts: str) -> list[str]:
        cmd = ["tshark", "-n", "-r", str(pcap), *opts, "-T", "fields", "-E", "separator=|",
               "-e", "skip.header_len", "-e", "skip.src_mkid", "-e", "skip.dst_mkid.emkid",
               "-e", "esp.spi", "-e", "_ws.expert.message"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env,
                              timeout=60)
        return proc.stdout.rstrip("\n").split("|")

    # 251 is unknown by default: the header length cannot be known, nothing is misread
    hlen, src, _emkid, spi, messages = run()
    assert (hlen, src, spi) == ("", "", "") and "Unknown NSID" in messages
    hlen, src, emkid, spi, _ = run("-o", "skip.private_nsids:250:4,251:8")
    assert int(hlen) == h.length == 12 + 48 + 8 + 4
    assert hexbytes(src) == b"private!" and emkid == "0x01020304" and int(spi, 0) == 1
    # the installed plugin's fields are exactly the ones docs/wireshark.md lists
    glossary = subprocess.run(["tshark", "-G", "fields"], capture_output=True, text=True,
                              check=True, env=env, timeout=60).stdout
    registered = {cols[2] for cols in (line.split("\t") for line in glossary.splitlines())
                  if cols[0] == "F" and len(cols) > 4 and cols[4].startswith("skip")}
    doc = (SCRIPT.parent.parent.parent / "docs" / "wireshark.md").read_text()
    listed = set(re.findall(r"^\| `(skip[a-z_]*\.[a-z0-9_.]+)` \|", doc, re.MULTILINE))
    assert len(registered) > 100 and registered == listed, (registered ^ listed)


# --- GIK on UDP 1660 (multicast; skip/wire/gik.py, when present) ---------------------------

GIK_FIELDS = ("skip_gik.version", "skip_gik.type", "skip_gik.group.ipv4", "skip_gik.group.ipv6",
              "skip_gik.nonce", "skip_gik.epoch", "skip_gik.previous_epoch", "skip_gik.expiry",
              "skip_gik.expiry_time", "skip_gik.interval_seconds", "skip_gik.interval_bytes",
              "skip_gik.kg_alg.name", "skip_gik.crypt_alg.name", "skip_gik.mac_alg.name",
              "skip_gik.leaf", "skip_gik.owner_key", "skip_gik.kg", "skip_gik.path.node",
              "skip_gik.path.key", "skip_gik.reason", "skip_gik.wrap.target",
              "skip_gik.wrap.under", "skip_gik.wrap.wrapped", "skip_gik.signature")


def test_gik_messages_of_both_versions(tmp_path: Path) -> None:
    """Every GIK message skip/wire/gik.py builds (mc-00 version 1 byte for byte; MC-M1
    version 2 request, response with its key path, signed rekey), field by field; version-1
    expiry counts from 1995-01-01 (mc-00), version 2's is POSIX."""
    gik = pytest.importorskip("skip.wire.gik")
    m4 = ipaddress.ip_address("239.1.2.3").packed
    m6 = ipaddress.ip_address("ff15::57").packed
    kg = bytes(range(32))
    v1_req = gik.GikRequestV1(m4)
    v1_resp = gik.GikResponseV1(m4, 1_000_000_000, 120, 10_000_000, 2, 2, 3, 0, kg)
    v2_req = gik.GikRequest(m6, bytes(range(100, 116)), 7)
    v2_resp = gik.GikResponse(m4, bytes(range(16)), 8, 1_800_000_000, 60, 2**40, 10, 11, 11, 0,
                              9, bytes([7]) * 32, kg, ((9, bytes([1]) * 32), (4, bytes([2]) * 32)))
    wraps = (gik.Wrap(4, 8, bytes([3]) * 40), gik.Wrap(1, 4, bytes([4]) * 40))
    rekey = gik.GikRekey(m6, 9, 8, 1_800_003_600, gik.REKEY_EVICT, wraps, bytes([5]) * 64)
    msgs = [v1_req, v1_resp, v2_req, v2_resp, rekey]
    for msg in msgs:
        assert gik.parse_gik(msg.encode()) == msg
    rows = dissect([_udp(40001, 1660, m.encode()) for m in msgs], GIK_FIELDS, tmp_path)
    r = rows[0]
    assert one(r, "skip_gik.version") == "1" and one(r, "skip_gik.group.ipv4") == "239.1.2.3"
    r = rows[1]
    assert int(one(r, "skip_gik.expiry")) == v1_resp.expiry  # the wire value
    when = datetime(1995, 1, 1, tzinfo=UTC) + timedelta(seconds=v1_resp.expiry)
    assert one(r, "skip_gik.expiry_time").startswith(when.strftime("%b %e, %Y %H:%M:%S"))
    assert (one(r, "skip_gik.interval_seconds"), one(r, "skip_gik.interval_bytes")) == \
        ("120", "10000000")
    assert (one(r, "skip_gik.kg_alg.name"), one(r, "skip_gik.crypt_alg.name"),
            one(r, "skip_gik.mac_alg.name")) == ("3des-ede-cbc", "3des-ede-cbc", "keyed-sha")
    assert hexbytes(one(r, "skip_gik.kg")) == kg
    r = rows[2]
    assert (one(r, "skip_gik.version"), one(r, "skip_gik.type")) == ("2", "1")
    assert one(r, "skip_gik.group.ipv6") == "ff15::57" and one(r, "skip_gik.epoch") == "7"
    assert hexbytes(one(r, "skip_gik.nonce")) == v2_req.nonce
    r = rows[3]
    assert one(r, "skip_gik.type") == "2" and one(r, "skip_gik.group.ipv4") == "239.1.2.3"
    assert int(one(r, "skip_gik.expiry")) == v2_resp.expiry
    when = datetime.fromtimestamp(v2_resp.expiry, UTC)
    assert one(r, "skip_gik.expiry_time").startswith(when.strftime("%b %e, %Y %H:%M:%S"))
    assert one(r, "skip_gik.interval_bytes") == str(2**40)
    assert (one(r, "skip_gik.kg_alg.name"), one(r, "skip_gik.crypt_alg.name")) == \
        ("aes-256-key-wrap", "aes-256-gcm-16")
    assert one(r, "skip_gik.leaf") == "9" and hexbytes(one(r, "skip_gik.kg")) == kg
    assert hexbytes(one(r, "skip_gik.owner_key")) == v2_resp.owner_key
    assert [int(x) for x in r["skip_gik.path.node"]] == [n for n, _ in v2_resp.path]
    assert [hexbytes(x) for x in r["skip_gik.path.key"]] == [k for _, k in v2_resp.path]
    r = rows[4]
    assert (one(r, "skip_gik.type"), one(r, "skip_gik.reason")) == ("3", "1")
    assert (one(r, "skip_gik.epoch"), one(r, "skip_gik.previous_epoch")) == ("9", "8")
    assert [int(x) for x in r["skip_gik.wrap.target"]] == [w.target for w in wraps]
    assert [int(x) for x in r["skip_gik.wrap.under"]] == [w.under for w in wraps]
    assert [hexbytes(x) for x in r["skip_gik.wrap.wrapped"]] == [w.wrapped for w in wraps]
    assert hexbytes(one(r, "skip_gik.signature")) == rekey.signature


# --- SKIP-in-UDP (skipd's daemon.udp_port) ---------------------------------------------------

def _in_udp(datagram: bytes, port: int = 5757) -> bytes:
    """What skipd's UDP socket sends: the whole protocol-57 datagram as the payload."""
    v6 = datagram[0] >> 4 == 6
    body = struct.pack("!HHHH", port, port, 8 + len(datagram), 0) + datagram
    index = 1 if v6 else 0
    return (build_ipv6 if v6 else build_ipv4)(ADDR["a"][index], ADDR["b"][index], 17, body)


def test_skip_in_udp_by_content_and_by_the_port_preference(tmp_path: Path) -> None:
    """docs/skipd.md SKIP-in-UDP: found by its content (an IP header of protocol 57 whose
    length is the payload's) on any port, or on the port of the skip_udp.port preference."""
    link = pair("x25519", mkids=True)
    inner = [link.a.protect(udp(), NOW), link.a.protect(udp(v6=True), NOW)]
    plain = _udp(5757, 5757, b"not a SKIP datagram at all, just bytes")
    packets = [_in_udp(p) for p in inner] + [plain]
    fields = ["skip_udp.ip_version", "skip.version", "skip.src_mkid", "esp.spi", "udp.dstport"]
    by_content = dissect(packets, fields, tmp_path)
    by_port = _dissect_raw(packets, fields, tmp_path,
                           ("-o", "skip_udp.port:5757", "--disable-heuristic", "skip_udp_udp"))
    for rows in (by_content, by_port):
        for wire, row in zip(inner, rows[:2], strict=True):
            assert one(row, "skip_udp.ip_version") == str(wire[0] >> 4)
            assert one(row, "skip.version") == "2"
            assert hexbytes(one(row, "skip.src_mkid")) == b"A" * 16
            assert int(one(row, "esp.spi"), 0) == 1
    # by content, an ordinary datagram on that port is left alone
    assert by_content[2]["skip_udp.ip_version"] == [] and by_content[2]["skip.version"] == []
    # neither the heuristic nor the port: plain UDP
    rows = _dissect_raw(packets, fields, tmp_path, ("--disable-heuristic", "skip_udp_udp"))
    assert all(r["skip.version"] == [] for r in rows)


def _dissect_raw(packets: Sequence[bytes], fields: Sequence[str], workdir: Path,
                 args: Sequence[str]) -> list[dict[str, list[str]]]:
    """Like dissect, with raw tshark arguments (-o pairs, --disable-heuristic)."""
    pcap = workdir / "raw.pcap"
    pcap.write_bytes(encode_pcap(packets))
    cmd = ["tshark", "-n", "-X", f"lua_script:{SCRIPT}", "-r", str(pcap), *args, "-T",
           "fields", "-E", f"separator={SEP}", "-E", "occurrence=a", "-E", f"aggregator={AGG}"]
    for field in fields:
        cmd += ["-e", field]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True,
                         env={"HOME": str(workdir), "PATH": "/usr/bin:/bin"}).stdout
    return [{f: (c.split(AGG) if c else []) for f, c in zip(fields, line.split(SEP),
                                                             strict=True)}
            for line in out.splitlines()]


@pytest.mark.netns
def test_skipd_skip_in_udp_capture_in_netns(tmp_path: Path) -> None:
    """Two skipd with daemon.udp_port = 5757 (docs/skipd.md): every datagram between them is
    recognised as SKIP-in-UDP by content, and the SKIP header inside is read."""
    from tests.netns import OVERLAY_AB, Capture, Lab, TwoHosts, can_run

    if can_run() is not None or shutil.which("dumpcap") is None:
        pytest.skip(str(can_run() or "needs dumpcap (Debian package tshark)"))
    with Lab() as lab:
        hosts = TwoHosts(lab, tmp_path)
        try:
            hosts.start("a", known=True, udp_port=5757)
            hosts.start("b", known=True, udp_port=5757)
            cap = Capture(hosts.ns["a"], hosts.lan["a"], tmp_path / "udp.pcapng")
            assert hosts.ping("a", OVERLAY_AB["b"], count=2), (tmp_path / "a.log").read_text()
            cap.stop()
        finally:
            hosts.stop_all()
    fields = ["udp.srcport", "udp.dstport", "skip_udp.ip_version", "skip.version",
              "skip.src_nsid", "esp.spi", "_ws.expert.message"]
    cmd = ["tshark", "-n", "-X", f"lua_script:{SCRIPT}", "-r", str(cap.path), "-Y",
           "udp.port == 5757", "-T", "fields", "-E", f"separator={SEP}", "-E",
           "occurrence=f"]
    for field in fields:
        cmd += ["-e", field]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True,
                         env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}).stdout
    lines = [dict(zip(fields, line.split(SEP), strict=True)) for line in out.splitlines()]
    assert len(lines) >= 4  # two pings, each way
    for row in lines:
        assert (row["udp.srcport"], row["udp.dstport"]) == ("5757", "5757")
        assert row["skip_udp.ip_version"] == "4" and row["skip.version"] == "2", row
        assert int(row["esp.spi"], 0) == 1 and "Lua Error" not in row["_ws.expert.message"]


def test_truncated_and_corrupted_messages_never_raise_lua_errors(tmp_path: Path) -> None:
    """Every prefix of a SKIP packet, a SKIP ICMP message, CDP (with an ephemeral
    certificate) and GIK messages, plus byte-flipped copies: flagged or shown, never a Lua
    error (dissect() fails on any "Lua Error" expert item)."""
    from tests.test_pfs import PfsLink, _ipv4

    link = pair("x25519", mkids=True)
    skip_payload = link.a.protect(udp(), NOW)[20:]
    icmp = SkipIcmp(AdpCode.NONE, (10,), (11, 12), (20,), kp_floor=5).encode()
    pfs = PfsLink()
    pfs.a.protect(_ipv4("a", "b"), NOW)
    pfs.exchange(NOW)
    messages = [(57, 0, skip_payload), (1, 0, icmp), (17, 1640, pfs.wire[0])]
    try:
        from skip.wire import gik
    except ImportError:
        pass
    else:
        req = gik.GikRequest(ipaddress.ip_address("ff15::57").packed, bytes(16), 1).encode()
        messages.append((17, 1660, req))

    def packet(proto: int, port: int, body: bytes) -> bytes:
        if port:  # a correct UDP length, so that UDP hands the payload on
            body = struct.pack("!HHHH", port, port, 8 + len(body), 0) + body
        return _ip(body, proto)

    packets = []
    for proto, port, body in messages:
        for cut in range(len(body)):
            packets.append(packet(proto, port, body[:cut]))
        for i in range(0, len(body), 2):
            flipped = bytearray(body)
            flipped[i] ^= 0xA5
            packets.append(packet(proto, port, bytes(flipped)))
    rows = dissect(packets, ["frame.number", "skip.version", "skip_icmp.type",
                             "skip_cdp.version", "skip_gik.version"], tmp_path)
    assert len(rows) == len(packets) > 300
    # each kind was actually reached by its dissector
    for field in ("skip.version", "skip_icmp.type", "skip_cdp.version"):
        assert sum(bool(r[field]) for r in rows) > 15, field
