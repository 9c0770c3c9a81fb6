"""skip.offline's decryptor (issue 11, "Offline decryption"): real SKIP packets from two
endpoints (tests/keying_harness.py), opened afterwards with the long-term private key of
either end, or with the traffic-key log alone; the inner datagrams are compared with what was
sent. Both profiles, IPv4 and IPv6, transport and tunnel mode, ESP and AH+ESP."""

from __future__ import annotations

import pytest

from skip.crypto.dh import GROUPS
from skip.errors import SkipError
from skip.keying import KeyingPolicy, Suite
from skip.keying.events import TrafficKeys
from skip.keying.identity import LocalIdentity
from skip.offline.decryptor import Decryptor, Principal
from skip.offline.keylog import format_keylog_line, parse_keylog
from skip.wire.ip import build_ipv4, build_ipv6
from skip.wire.names import SkipName
from tests.keying_harness import ADDR, NOW, identity, pair
from tests.test_pfs import PfsLink

CASES = [  # (group, suite): the legacy mandatory set and AH alone, modern defaults
    ("skip-1024", Suite(1, 2, 2, 1)),
    ("skip-1024", Suite(1, 2, 0, 1)),
    ("x25519", None),
    ("modp-2048", None),
    ("x448", Suite(2, 10, 12, 12)),  # AES-256 key wrap, ChaCha20-Poly1305
]


def udp(v6: bool, payload: bytes, a_to_b: bool = True) -> bytes:
    src, dst = ("a", "b") if a_to_b else ("b", "a")
    body = bytes.fromhex("04d2162e") + (8 + len(payload)).to_bytes(2) + b"\0\0" + payload
    if v6:
        return build_ipv6(ADDR[src][1], ADDR[dst][1], 17, body)
    return build_ipv4(ADDR[src][0], ADDR[dst][0], 17, body)


def principal(name: str, group: str, *, private: bool, mkid: SkipName | None = None
              ) -> Principal:
    ident: LocalIdentity = identity(name, (group,))
    names = {SkipName.of_address(a) for a in ident.addresses}
    if mkid is not None:
        names.add(mkid)
    return Principal(name, GROUPS[group], ident.publics[group], frozenset(names),
                     ident.private(group) if private else None)


def traffic(group: str, suite: Suite | None, mode: str = "transport") -> list[tuple[bytes, bytes]]:
    """(wire, sent) both ways, IPv4 and IPv6, two Kps per direction (a flush between)."""
    policy = KeyingPolicy(allow_legacy=True, mode=mode)
    link = pair(group, suite, policy_a=policy, policy_b=policy)
    out = []
    for round_ in range(2):
        for v6 in (False, True):
            for a_to_b in (True, False):
                sent = udp(v6, b"round %d" % round_, a_to_b)
                wire, got = link.send(sent, a_to_b=a_to_b)
                assert got.packet == sent
                out.append((wire, sent))
        link.a.flush(NOW)
        link.b.flush(NOW)
    return out


@pytest.mark.parametrize(("group", "suite"), CASES)
@pytest.mark.parametrize("holder", ["a", "b"])
def test_either_ends_private_key_opens_both_directions(group, suite, holder):
    packets = traffic(group, suite)
    dec = Decryptor([principal("a", group, private=holder == "a"),
                     principal("b", group, private=holder == "b")])
    for wire, sent in packets:
        got = dec.decrypt(wire)
        assert got.packet == sent and got.via == "long-term" and not got.tunnel
        assert got.version == (1 if group == "skip-1024" else 2)
        assert {got.sender, got.receiver} == {"a", "b"}
        assert (got.sender == "a") == (sent[12:16] == bytes([10, 0, 0, 1]) or
                                       sent[8:24] == bytes.fromhex("20010db8" + "0" * 23 + "1"))


@pytest.mark.parametrize(("group", "suite"), [CASES[0], CASES[2]])
def test_tunnel_mode_yields_the_inner_datagram(group, suite):
    packets = traffic(group, suite, mode="tunnel")
    dec = Decryptor([principal("a", group, private=True), principal("b", group, private=False)])
    for wire, sent in packets:
        got = dec.decrypt(wire)
        assert got.tunnel and got.packet == sent


def test_no_private_key_and_unknown_principals_say_so():
    (wire, _), *_ = traffic("x25519", None)
    publics_only = Decryptor([principal("a", "x25519", private=False),
                              principal("b", "x25519", private=False)])
    with pytest.raises(SkipError) as err:
        publics_only.decrypt(wire)
    assert err.value.reason == "no_private_key"
    one_side = Decryptor([principal("a", "x25519", private=True)])
    with pytest.raises(SkipError) as err:
        one_side.decrypt(wire)
    assert err.value.reason == "no_principal" and "10.0.0.2" in err.value.detail
    with pytest.raises(SkipError) as err:
        Decryptor().decrypt(build_ipv4("10.0.0.1", "10.0.0.2", 17, b"\0" * 8))
    assert err.value.reason == "unsupported_protocol"


@pytest.mark.parametrize(("group", "suite", "reasons"), [
    ("x25519", None, {"kp_unwrap_failed"}),  # the modern EKp is authenticated (AES-KW)
    ("skip-1024", Suite(1, 2, 2, 1), {"bad_icv"}),  # legacy: a wrong Kp fails at AH
])
def test_a_wrong_private_key_fails_with_the_live_reason(group, suite, reasons):
    (wire, _), *_ = traffic(group, suite)
    c = identity("c", (group,))
    wrong = Principal("a", GROUPS[group], identity("a", (group,)).publics[group],
                      principal("a", group, private=False).names, c.private(group))
    dec = Decryptor([wrong, principal("b", group, private=False)])
    with pytest.raises(SkipError) as err:
        dec.decrypt(wire)
    assert err.value.reason in reasons


def test_a_damaged_packet_is_refused_and_a_duplicate_is_opened_and_marked():
    (wire, sent), *_ = traffic("x25519", None)
    dec = Decryptor([principal("a", "x25519", private=True), principal("b", "x25519",
                                                                        private=False)])
    first = dec.decrypt(wire)
    again = dec.decrypt(wire)  # the live receiver would say replay
    assert first.packet == again.packet == sent
    assert not first.duplicate and again.duplicate
    damaged = bytearray(wire)
    damaged[-1] ^= 1
    with pytest.raises(SkipError) as err:
        dec.decrypt(bytes(damaged))
    assert err.value.reason == "bad_icv"


def test_keylog_lines_alone_open_the_packets_and_round_trip():
    policy = KeyingPolicy(allow_legacy=True)
    link = pair("x25519", None, policy_a=policy, policy_b=policy)
    logged: list[TrafficKeys] = []
    link.a.log_traffic_keys_insecurely(logged.append)
    sent = udp(False, b"logged")
    wire, _ = link.send(sent)
    text = [format_keylog_line(e) for e in logged]
    assert text[0].startswith("SKIP_TRAFFIC_KEY 2 ") and text[0].endswith("\n")
    entries = parse_keylog(["# a comment\n", "\n", *text])
    (entry,) = entries.values()
    assert entry.e_kp == logged[0].e_kp and entry.header == logged[0].header
    got = Decryptor(keylog=entries).decrypt(wire)  # no certificates at all
    assert got.packet == sent and got.via == "keylog" and got.sender == "?"


def test_pfs_packets_open_only_from_the_key_log():
    """The proof in miniature: the long-term keys of both ends do not open a packet under an
    ephemeral key; its key-log line does."""
    link = PfsLink()
    logged: list[TrafficKeys] = []
    link.a.log_traffic_keys_insecurely(logged.append)
    sent = build_ipv4(ADDR["a"][0], ADDR["b"][0], 17, b"\x04\xd2\x16\x2e\x00\x0e\x00\x00secret")
    link.a.protect(sent, NOW)
    wire = next(e for e in link.exchange(NOW) if hasattr(e, "packet")).packet
    long_term = Decryptor([principal("a", link.group, private=True),
                           principal("b", link.group, private=True)])
    with pytest.raises(SkipError) as err:
        long_term.decrypt(wire)
    assert err.value.reason == "ephemeral_key"
    keyed = Decryptor(keylog=parse_keylog(format_keylog_line(e) for e in logged))
    assert keyed.decrypt(wire).packet == sent


@pytest.mark.parametrize("line", [
    "SKIP_TRAFFIC_KEY 2 00",
    "SKIP_TRAFFIC_KEY 3 " + "00" * 12 + " - 11 -",
    "SKIP_TRAFFIC_KEY 2 " + "00" * 12 + " - zz -",
    "SKIP_TRAFFIC_KEY 2 " + "00" * 12 + " - - -",
    "OTHER 2 " + "00" * 12 + " - 11 -",
    "SKIP_TRAFFIC_KEY 2 " + "00" * 3000 + " - 11 -",
])
def test_bad_keylog_lines_name_their_line(line):
    with pytest.raises(SkipError) as err:
        parse_keylog(["# ok\n", line])
    assert err.value.reason == "bad_keylog" and "line 2" in err.value.detail
