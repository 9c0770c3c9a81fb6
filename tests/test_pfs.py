"""Perfect forward secrecy (draft-ietf-ipsec-skip-pfs-00; next-wave.md part 3, ids PFS-n).

Two endpoints whose ephemeral exchange runs over an in-memory "CDP" (the PfsSend events of one
fed to the other's pfs_receive). Formulas are re-derived here from the draft and next-wave.md
with hashlib/hmac/cryptography, not by calling the code under test.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from skip.crypto import kdf
from skip.crypto.dh import GROUPS
from skip.crypto.skip_numbers import header_ekp_length
from skip.errors import KeyingError, ParseError, SkipError
from skip.keying import KeyingPolicy, Peer, SkipEndpoint
from skip.keying.ephemeral_key import EphemeralKey
from skip.keying.events import Dropped, PfsEstablished, PfsSend, Transmit
from skip.keying.suite import LEGACY_DEFAULT
from skip.wire.cdp import CdpMessage
from skip.wire.ephemeral import EMKID_NSID, EphemeralCertificate
from skip.wire.ip import build_ipv4, build_ipv6
from skip.wire.nsid import STANDARD_NSIDS
from skip.wire.skip_header import SkipHeader
from tests.keying_harness import ADDR, NOW, STARTED, identity

UDP = bytes.fromhex("04d2162e000d0000")
NSIDS = STANDARD_NSIDS.with_private(EMKID_NSID, 4)


def _peer(name: str, group: str, pfs: str) -> Peer:
    ident = identity(name, (group,))
    return Peer.create(name, group, ident.publics[group], addresses=ADDR[name], pfs=pfs)


class Recorder:
    """An rng that remembers what it gave (the test finds the ephemeral privates in it)."""

    def __init__(self) -> None:
        self.given: list[bytes] = []

    def __call__(self, n: int) -> bytes:
        out = os.urandom(n)
        self.given.append(out)
        return out


class PfsLink:
    def __init__(self, group: str = "x25519", pfs: tuple[str, str] = ("required", "required"),
                 policy_a: KeyingPolicy | None = None, policy_b: KeyingPolicy | None = None,
                 started: float = STARTED) -> None:
        legacy = group.startswith("skip-")
        policy = KeyingPolicy(allow_legacy=legacy,
                              legacy_default=LEGACY_DEFAULT)
        self.rng_a, self.rng_b = Recorder(), Recorder()
        self.a = SkipEndpoint([identity("a", (group,))], [_peer("b", group, pfs[0])],
                              policy=policy_a or policy, rng=self.rng_a, started=started)
        self.b = SkipEndpoint([identity("b", (group,))], [_peer("a", group, pfs[1])],
                              policy=policy_b or policy, rng=self.rng_b, started=started)
        self.group = group
        self.wire: list[bytes] = []  # every CDP datagram that crossed

    def sends(self, endpoint: SkipEndpoint) -> list[PfsSend]:
        return [e for e in endpoint.events() if isinstance(e, PfsSend)]

    def exchange(self, now: float = NOW, *, a_starts: bool = True) -> list[object]:
        """Deliver the initiator's request and the reply; returns what the reply released."""
        first, second = (self.a, self.b) if a_starts else (self.b, self.a)
        src1, src2 = ("a", "b") if a_starts else ("b", "a")
        (request,) = self.sends(first)
        self.wire.append(request.payload)
        second.pfs_receive(request.payload, ADDR[src1][0], now)
        (reply,) = self.sends(second)
        self.wire.append(reply.payload)
        return list(first.pfs_receive(reply.payload, ADDR[src2][0], now))


def newest_key(endpoint: SkipEndpoint, identity: str, peer: str) -> EphemeralKey:
    """The pair's newest ephemeral key, confirmed or not (a responder's waits for the
    initiator's first packet before it is the one to send under)."""
    return max((k for k in endpoint._pfs.by_emkid.values()
                if (k.identity, k.peer) == (identity, peer)), key=lambda k: k.established)


def _ipv4(src: str, dst: str, body: bytes = b"hello") -> bytes:
    return build_ipv4(ADDR[src][0], ADDR[dst][0], 17, UDP + body)


def _skip_header(wire: bytes) -> tuple[int, int, bytes]:
    """(Source NSID, Dest NSID, Dest MKID) of an IPv4 SKIP packet."""
    hdr = SkipHeader.parse_from(wire, 20, header_ekp_length, NSIDS)[0]
    return hdr.src_nsid, hdr.dst_nsid, hdr.dst_mkid


# --- derivations and wire format ------------------------------------------------------------

def test_legacy_ekijn_vector_from_the_digest():
    """PFS-1: next-wave.md 3.10's vector (digest ext s. 6.4)."""
    assert kdf.legacy_ekijn(b"\xaa" * 32, bytes.fromhex("0123"), 0xAFC8).hex() == \
        "f91ff9d104d4a3bba8973190350715d358098c05ebc720b390302e4f6e4c2ea0"


def test_legacy_ekijn_full_size_left_padded():
    """PFS-1, A-PFS-3: a 1024-bit g^xy as 128 bytes, high half MD5(..01h) first."""
    p = GROUPS["skip-1024"]
    gxy = pow(p.g, 0x1234567, p.p).to_bytes(128)
    kij, n = bytes(range(32)), 280_000
    mid = kij + gxy + struct.pack("!I", n)
    expected = hashlib.md5(mid + b"\x01").digest() + hashlib.md5(mid + b"\x00").digest()
    assert kdf.legacy_ekijn(kij, gxy, n) == expected


def _golden_v1() -> bytes:
    """The ephemeral certificate of pfs-00 s. 3 built field by field from next-wave.md 3.3."""
    out = bytes((0x10, 0, 0, 1)) + struct.pack("!I", 3600)
    for blob in (b"\x05" * 3, b"\x02", b"\xff" * 4):  # g^x, g, p: this order (not UDH's)
        out += struct.pack("!H", len(blob)) + blob
    out += struct.pack("!II", 0, 1001) + bytes((0, 1)) + struct.pack("!H", 2) + b"CC"
    return out + b"M" * 16


def test_ephemeral_certificate_golden_bytes_both_ways():
    cert = EphemeralCertificate.parse(_golden_v1())
    assert (cert.version, cert.mac_alg, cert.validity, cert.public, cert.generator,
            cert.modulus, cert.emkid_ij, cert.emkid_ji, cert.cert_type, cert.certificate) == \
        (1, 1, 3600, b"\x05" * 3, b"\x02", b"\xff" * 4, 0, 1001, 1, b"CC")
    assert cert.encode() == _golden_v1()
    assert cert.unsigned() == _golden_v1()[:-16] + bytes(16)  # the MAC input (PFS-3)


@pytest.mark.parametrize("mutate, reason", [
    (lambda b: bytes((0x30,)) + b[1:], "pfs_bad_certificate"),  # Ver 3
    (lambda b: b[:-1], "bad_length"),  # MAC cut short
    (lambda b: b + b"x", "bad_length"),  # bytes after the MAC
    (lambda b: b[:10], "truncated"),
    (lambda b: b[:3] + b"\x09" + b[4:], "unsupported_mac_alg"),
])
def test_ephemeral_certificate_parse_refuses(mutate, reason):
    with pytest.raises(ParseError) as err:
        EphemeralCertificate.parse(mutate(_golden_v1()))
    assert err.value.reason == reason


# --- the exchange and the data path ---------------------------------------------------------

@pytest.mark.parametrize("group", ["x25519", "x448", "modp-2048", "skip-1024"])
def test_exchange_then_data_both_ways_under_emkids(group):
    """PFS-10..15: required PFS holds the first packet, the exchange releases it under the
    peer's EMKID with Source NSID 0, and both directions decrypt."""
    link = PfsLink(group)
    packet = _ipv4("a", "b")
    assert link.a.protect(packet, NOW) is None  # held: no key yet (PFS-M6)
    released = link.exchange(NOW + 0.01)
    (sent,) = [e for e in released if isinstance(e, Transmit)]
    src_nsid, dst_nsid, dst_mkid = _skip_header(sent.packet)
    key_a = link.a._pfs.current[("a", "b")]
    key_b = newest_key(link.b, "b", "a")
    # I -> J packets carry the EMKID J chose; J -> I the one I chose (s. 4's 2007 / 1001)
    assert (src_nsid, dst_nsid, int.from_bytes(dst_mkid)) == (0, EMKID_NSID, key_b.rx_emkid)
    assert key_a.tx_emkid == key_b.rx_emkid and key_b.tx_emkid == key_a.rx_emkid
    assert key_a.rx_emkid != key_b.rx_emkid
    got = link.b.unprotect(sent.packet, NOW + 0.02)
    assert got is not None and got.packet == packet and got.peer == "a"
    back = _ipv4("b", "a", b"back")
    wire = link.b.protect(back, NOW + 0.03)
    assert wire is not None and int.from_bytes(_skip_header(wire)[2]) == key_a.rx_emkid
    got = link.a.unprotect(wire, NOW + 0.04)
    assert got is not None and got.packet == back


def test_ipv6_data_under_an_ephemeral_key():
    link = PfsLink("x25519")
    packet = build_ipv6(ADDR["a"][1], ADDR["b"][1], 17, UDP + b"six")
    assert link.a.protect(packet, NOW) is None
    (sent,) = [e for e in link.exchange(NOW) if isinstance(e, Transmit)]
    got = link.b.unprotect(sent.packet, NOW)
    assert got is not None and got.packet == packet


def test_modern_ekijn_recomputed_from_the_spec():
    """PFS-M2, M3: T, the PRK and EKijn of one direction, recomputed with cryptography's
    X25519 and HKDF from the two messages on the wire and the initiator's ephemeral private
    value (found in what its rng gave)."""
    link = PfsLink("x25519")
    link.a.protect(_ipv4("a", "b"), NOW)
    link.exchange(NOW)
    request, reply = (EphemeralCertificate.parse(CdpMessage.parse(w).records[0].certificate)
                      for w in link.wire)
    x = next(r for r in link.rng_a.given if len(r) == 32 and
             X25519PrivateKey.from_private_bytes(r).public_key().public_bytes_raw()
             == request.public)
    e_shared = X25519PrivateKey.from_private_bytes(x).exchange(
        X25519PublicKey.from_public_bytes(reply.public))
    a_priv = identity("a", ("x25519",)).keys["x25519"]
    pub_a = identity("a", ("x25519",)).publics["x25519"]
    pub_b = identity("b", ("x25519",)).publics["x25519"]
    s_shared = X25519PrivateKey.from_private_bytes(a_priv).exchange(
        X25519PublicKey.from_public_bytes(pub_b))

    def lv(v: bytes) -> bytes:
        return struct.pack("!H", len(v)) + v

    def expand(prk: bytes, info: bytes) -> bytes:
        return HKDFExpand(SHA256(), 32, info).derive(prk)

    lo, hi = sorted((pub_a, pub_b))
    kij = expand(hmac.digest(b"SKIP v2.1 Kij", s_shared, "sha256"),
                 b"SKIP v2.1 Kij\0" + lv(b"x25519") + lv(lo) + lv(hi))
    # the responder's MAC: keyed per role, over its message and the request's hash
    mac_key = expand(kij, b"SKIP v2.1 PFS mac\0J")
    assert hmac.digest(mac_key, reply.body() + hashlib.sha256(request.body()).digest(),
                       "sha256")[:16] == reply.mac
    transcript = hashlib.sha256(lv(pub_a) + lv(pub_b) + lv(request.body()) +
                                lv(reply.body())).digest()
    prk = hmac.digest(kij, e_shared, "sha256")
    n = kdf.counter_n(NOW)
    to_b = expand(prk, b"SKIP v2.1 EKijn\0\x01" + transcript + struct.pack("!I", n))
    to_a = expand(prk, b"SKIP v2.1 EKijn\0\x02" + transcript + struct.pack("!I", n))
    key_a = link.a._pfs.current[("a", "b")]
    key_b = newest_key(link.b, "b", "a")
    assert key_a.ekijn(n, True) == to_b == key_b.ekijn(n, False)
    assert key_a.ekijn(n, False) == to_a == key_b.ekijn(n, True)
    assert to_a != to_b  # a reflected packet does not unwrap at its sender


def test_legacy_mac_is_keyed_md5_under_kij():
    """PFS-3 (RFC 1828 keyed MD5: key, keyfill, data, key), recomputed with hashlib."""
    link = PfsLink("skip-1024")
    link.a.protect(_ipv4("a", "b"), NOW)
    link.exchange(NOW)
    request = EphemeralCertificate.parse(CdpMessage.parse(link.wire[0]).records[0].certificate)
    g = GROUPS["skip-1024"]
    a_priv = identity("a", ("skip-1024",)).keys["skip-1024"]
    b_pub = identity("b", ("skip-1024",)).publics["skip-1024"]
    kij = pow(int.from_bytes(b_pub), int.from_bytes(a_priv), g.p).to_bytes(128)[-32:]
    fill = b"\x80" + bytes((64 - 9 - 32) % 64) + (8 * 32).to_bytes(8, "little")
    assert hashlib.md5(kij + fill + request.unsigned() + kij).digest() == request.mac
    assert (request.generator, request.modulus) == (b"\x02", g.p.to_bytes(128))


def test_validity_is_the_smaller_offer():
    """PFS-12: effective validity = min(I's, J's)."""
    link = PfsLink(policy_b=KeyingPolicy(pfs_lifetime=30.0))
    link.a.protect(_ipv4("a", "b"), NOW)
    link.exchange(NOW)
    assert link.a._pfs.current[("a", "b")].expires == NOW + 30
    assert newest_key(link.b, "b", "a").expires == NOW + 30


def test_expiry_destroys_the_key_and_refuses_its_packets():
    """PFS-16, PFS-M7: at the end of the validity both sides erase EKijn's material, drop
    every Kp under it, and packets under the EMKID are refused."""
    link = PfsLink(policy_a=KeyingPolicy(pfs_lifetime=30.0))
    packet = _ipv4("a", "b")
    link.a.protect(packet, NOW)
    (sent,) = [e for e in link.exchange(NOW) if isinstance(e, Transmit)]
    assert link.b.unprotect(sent.packet, NOW) is not None
    key_a, key_b = link.a._pfs.current[("a", "b")], newest_key(link.b, "b", "a")
    assert link.b.get_timer() <= NOW + 30
    for side in (link.a, link.b):
        side.handle_timer(NOW + 30)
    assert not any(key_a.material) and not any(key_b.material)
    assert not link.a._pfs.by_emkid and not link.b._pfs.by_emkid
    assert not [rx for rx in link.b._receiver.kps.values() if rx.ephemeral is not None]
    assert not [tx for tx in link.a._sender.tx.values() if tx.ephemeral is not None]
    with pytest.raises(KeyingError) as err:
        link.b.unprotect(sent.packet, NOW + 31)
    assert err.value.reason == "pfs_expired"
    assert link.b.counters["pfs_expired"] == 1


def test_rekey_before_the_end_keeps_the_old_key_for_packets_in_flight():
    """3.6: the initiator starts a new exchange after pfs_rekey_fraction of the validity,
    sends under the new key once it is there, and the old one is still accepted."""
    link = PfsLink(policy_a=KeyingPolicy(pfs_lifetime=100.0))
    link.a.protect(_ipv4("a", "b"), NOW)
    (first,) = [e for e in link.exchange(NOW) if isinstance(e, Transmit)]
    assert link.b.unprotect(first.packet, NOW) is not None  # b's key is confirmed by it
    old = link.a._pfs.current[("a", "b")]
    late = link.a.protect(_ipv4("a", "b", b"late"), NOW + 81)  # past 80 %: an exchange starts
    assert late is not None and int.from_bytes(_skip_header(late)[2]) == old.tx_emkid
    link.exchange(NOW + 81.5)
    new = link.a._pfs.current[("a", "b")]
    assert new is not old and new.rx_emkid != old.rx_emkid
    fresh = link.a.protect(_ipv4("a", "b", b"new"), NOW + 82)
    assert fresh is not None and int.from_bytes(_skip_header(fresh)[2]) == new.tx_emkid
    assert link.b.unprotect(fresh, NOW + 82) is not None
    assert link.b.unprotect(late, NOW + 82.5) is not None  # in flight under the old key


def test_a_responder_key_is_used_only_once_the_initiator_used_it():
    """PFS-M2's key confirmation for J: until a packet from I verifies under the new key,
    J goes on sending under what it had, so a replayed request cannot steer J's traffic."""
    link = PfsLink(pfs=("required", "preferred"))
    link.a.protect(_ipv4("a", "b"), NOW)
    (first,) = [e for e in link.exchange(NOW) if isinstance(e, Transmit)]
    assert link.b.pfs_status("a", NOW)["pfs"] is False
    back = link.b.protect(_ipv4("b", "a", b"before"), NOW)
    assert back is not None and _skip_header(back)[1] == 0  # still the long-term key
    assert link.b.unprotect(first.packet, NOW) is not None
    assert link.b.pfs_status("a", NOW)["pfs"] is True
    after = link.b.protect(_ipv4("b", "a", b"after"), NOW)
    assert after is not None and _skip_header(after)[1] == EMKID_NSID


def test_a_replayed_request_is_refused_once_its_reply_is_gone():
    """3.8.1: pfs-00 requests carry no freshness; one answered before is refused (replay)
    even after the reply cache no longer holds it, and costs no DH."""
    link = PfsLink()
    link.a.protect(_ipv4("a", "b"), NOW)
    (request,) = link.sends(link.a)
    link.b.pfs_receive(request.payload, ADDR["a"][0], NOW)
    link.b._pfs.replies.clear()
    with pytest.raises(KeyingError) as err:
        link.b.pfs_receive(request.payload, ADDR["a"][0], NOW + 300)
    assert err.value.reason == "replay"
    assert link.b.counters["pfs_established"] == 1


def test_held_packets_are_dropped_while_no_exchange_can_run():
    """After a failed exchange, a required pair's packets are dropped, not hoarded, until
    the next attempt."""
    link = PfsLink()
    link.a.protect(_ipv4("a", "b"), NOW)
    t = NOW
    while link.a.counters["pfs_timeout"] == 0:
        t = link.a.get_timer()
        link.a.handle_timer(t)
    with pytest.raises(SkipError) as err:
        link.a.protect(_ipv4("a", "b"), t + 0.5)
    assert err.value.reason == "pfs_required"


def test_retransmitted_request_gets_the_same_reply_and_one_y():
    """3.5: J resends the same bytes to a duplicate request; a flood of one request costs
    one DH exchange (3.8.1)."""
    link = PfsLink()
    link.a.protect(_ipv4("a", "b"), NOW)
    (request,) = link.sends(link.a)
    link.b.pfs_receive(request.payload, ADDR["a"][0], NOW)
    (reply,) = link.sends(link.b)
    computed = link.b.counters["kij_computed"]
    for i in range(50):
        link.b.pfs_receive(request.payload, ADDR["a"][0], NOW + i / 100)
        (again,) = link.sends(link.b)
        assert again.payload == reply.payload
    assert link.b.counters["pfs_established"] == 1
    assert link.b.counters["kij_computed"] == computed


def test_initiator_retransmits_then_gives_up_and_never_falls_back():
    """PFS-M6: with required PFS and the exchange blocked, nothing leaves under the
    long-term key; after the retries the held packets are dropped (pfs_timeout)."""
    link = PfsLink()
    for i in range(3):
        assert link.a.protect(_ipv4("a", "b", b"%d" % i), NOW) is None
    requests = link.sends(link.a)
    t = NOW
    while True:
        t = link.a.get_timer()
        if t > NOW + 60:
            break
        link.a.handle_timer(t)
        events = link.a.events()
        requests += [e for e in events if isinstance(e, PfsSend)]
        assert not [e for e in events if isinstance(e, Transmit)]
        if any(isinstance(e, Dropped) for e in events):
            break
    assert len(requests) == 3 and len({r.payload for r in requests}) == 1
    assert link.a.counters["pfs_timeout"] == 1 and link.a.counters["pfs_required"] == 3
    assert link.a.counters["tx_ok"] == 0 and link.a.counters["kp_new"] == 0


def test_preferred_sends_under_kijn_until_the_ephemeral_key_is_there():
    link = PfsLink(pfs=("preferred", "preferred"))
    first = link.a.protect(_ipv4("a", "b"), NOW)
    assert first is not None and _skip_header(first)[1] == 0  # long-term key, NSID 0
    assert link.b.unprotect(first, NOW) is not None
    link.exchange(NOW)
    second = link.a.protect(_ipv4("a", "b"), NOW + 0.1)
    assert second is not None and _skip_header(second)[1] == EMKID_NSID
    assert link.b.unprotect(second, NOW + 0.1) is not None


def test_a_flipped_mac_is_discarded_and_leaves_no_state():
    """PFS-13: a request whose MAC does not verify is discarded (no key, no reply)."""
    link = PfsLink()
    link.a.protect(_ipv4("a", "b"), NOW)
    (request,) = link.sends(link.a)
    bad = request.payload[:-1] + bytes((request.payload[-1] ^ 1,))
    with pytest.raises(KeyingError) as err:
        link.b.pfs_receive(bad, ADDR["a"][0], NOW)
    assert err.value.reason == "pfs_mac"
    assert not link.b._pfs.by_emkid and not link.sends(link.b)


def test_reflected_and_replayed_messages_are_refused():
    """3.8.3: I's own request reflected back to I names no peer; J's reply replayed to J, or
    to I once its exchange is done, answers no exchange."""
    link = PfsLink()
    link.a.protect(_ipv4("a", "b"), NOW)
    (request,) = link.sends(link.a)
    link.b.pfs_receive(request.payload, ADDR["a"][0], NOW)
    (reply,) = link.sends(link.b)
    link.a.pfs_receive(reply.payload, ADDR["b"][0], NOW)
    cases = [(link.a, request.payload, ADDR["a"][0], "pfs_unknown_peer"),
             (link.b, reply.payload, ADDR["a"][0], "pfs_unexpected"),
             (link.a, reply.payload, ADDR["b"][0], "pfs_unexpected")]
    for endpoint, payload, src, reason in cases:
        with pytest.raises(SkipError) as err:
            endpoint.pfs_receive(payload, src, NOW + 1)
        assert err.value.reason == reason


def test_request_with_a_nonzero_emkid_ij_or_scope_is_refused():
    link = PfsLink()
    link.a.protect(_ipv4("a", "b"), NOW)
    (request,) = link.sends(link.a)
    message = CdpMessage.parse(request.payload)
    cert = EphemeralCertificate.parse(message.records[0].certificate)
    for field in ("emkid_ij", "port"):
        changed = cert.__class__(**{**{f: getattr(cert, f) for f in cert.__slots__},
                                    field: 7})
        record = message.records[0].__class__(
            message.records[0].action, message.records[0].name_type, message.records[0].name,
            message.records[0].cert_type, changed.encode())
        payload = message.__class__(message.action, message.requester_cookie, 0,
                                    (record,)).encode()
        with pytest.raises(ParseError) as err:
            link.b.pfs_receive(payload, ADDR["a"][0], NOW)
        assert err.value.reason == "pfs_bad_certificate"


def test_legacy_exchange_refused_unless_legacy_is_allowed():
    link = PfsLink("skip-1024", policy_b=KeyingPolicy(allow_legacy=False))
    link.a.protect(_ipv4("a", "b"), NOW)
    (request,) = link.sends(link.a)
    with pytest.raises(SkipError) as err:
        link.b.pfs_receive(request.payload, ADDR["a"][0], NOW)
    assert err.value.reason == "legacy_refused"


def test_restarted_receiver_refuses_packets_under_its_old_ephemeral_keys():
    """The keys die with the process: a capture replayed after a restart names an EMKID the
    new process never made (and could not unwrap: the ephemeral secret is gone)."""
    link = PfsLink()
    link.a.protect(_ipv4("a", "b"), NOW)
    (sent,) = [e for e in link.exchange(NOW) if isinstance(e, Transmit)]
    restarted = SkipEndpoint([identity("b", ("x25519",))], [_peer("a", "x25519", "required")],
                             started=NOW + 60)
    with pytest.raises(KeyingError) as err:
        restarted.unprotect(sent.packet, NOW + 61)
    assert err.value.reason == "pfs_expired"


def test_forward_secrecy_long_term_keys_do_not_open_recorded_pfs_traffic():
    """3.10's check: record traffic, then hand an attacker both long-term private keys. Base
    SKIP traffic decrypts; PFS traffic does not once its ephemeral keys expired."""
    base = PfsLink(pfs=("off", "off"))
    plain = base.a.protect(_ipv4("a", "b", b"base"), NOW)
    pfs = PfsLink()
    pfs.a.protect(_ipv4("a", "b", b"secret"), NOW)
    (recorded,) = [e for e in pfs.exchange(NOW) if isinstance(e, Transmit)]
    for side in (pfs.a, pfs.b):
        side.handle_timer(NOW + 200)  # the ephemeral keys are rotated away
    # the attacker: a fresh endpoint with b's long-term private key and a's public value
    attacker = SkipEndpoint([identity("b", ("x25519",))], [_peer("a", "x25519", "off")],
                            started=STARTED)
    got = attacker.unprotect(plain, NOW + 300)
    assert got is not None and got.packet.endswith(b"base")
    with pytest.raises(KeyingError) as err:
        attacker.unprotect(recorded.packet, NOW + 300)
    assert err.value.reason == "pfs_expired"
    # and what the endpoints kept of the exchange is zero
    assert not pfs.a._pfs.exchanges and not pfs.b._pfs.by_emkid


def test_established_event_and_status():
    link = PfsLink()
    assert link.a.pfs_status("b", NOW) == {"mode": "required", "pfs": False,
                                           "exchange_in_progress": False}
    link.a.protect(_ipv4("a", "b"), NOW)
    assert link.a.pfs_status("b", NOW)["exchange_in_progress"] is True
    link.exchange(NOW)
    assert any(isinstance(e, PfsEstablished) for e in link.a.events())
    status = link.a.pfs_status("b", NOW + 5)
    assert status["pfs"] is True and status["ephemeral_age"] == 5.0


def test_policy_and_peer_refuse_bad_pfs_settings():
    with pytest.raises(SkipError):
        KeyingPolicy(pfs_lifetime=1.0)
    with pytest.raises(SkipError):
        _peer("a", "x25519", "sometimes")
