"""The traffic-key log (``log_traffic_keys_insecurely``, issue 11): off by default; when on,
one entry per Kp in each direction, and the entry alone (no long-term or ephemeral key)
decrypts the Kp's packets. The modern E_kp is re-derived here from modern-profile.md s. 4.4
with cryptography's HKDF, not by calling the code under test."""

from __future__ import annotations

import hmac

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from skip.keying.events import TrafficKeys
from tests.keying_harness import NOW, pair
from tests.test_pfs import PfsLink, _ipv4


def test_off_by_default_and_one_entry_per_kp_each_way():
    link = pair("x25519")
    logged: list[TrafficKeys] = []
    link.send(_ipv4("a", "b"))  # before: nothing to log into
    link.a.log_traffic_keys_insecurely(logged.append)
    link.b.log_traffic_keys_insecurely(logged.append)
    link.a.flush(NOW)  # the next packet makes a new Kp
    wire, _got = link.send(_ipv4("a", "b"), NOW + 1)
    link.send(_ipv4("a", "b", b"again"), NOW + 1)
    assert [(e.direction, e.identity, e.peer) for e in logged] == [("out", "a", "b"),
                                                                    ("in", "b", "a")]
    assert logged[0].kp == logged[1].kp and logged[0].header == logged[1].header
    assert logged[0].header in wire
    link.a.log_traffic_keys_insecurely(None)
    link.a.flush(NOW)
    link.send(_ipv4("a", "b"), NOW + 2)
    assert len(logged) == 3  # only b's admission of the new Kp


def test_an_entry_alone_decrypts_a_pfs_packet():
    """The log opens what forward secrecy protects: an EMKID packet, after its ephemeral key
    was destroyed, decrypts from the logged Kp and header with AES-GCM (RFC 4106 ESP)."""
    link = PfsLink()
    logged: list[TrafficKeys] = []
    link.a.log_traffic_keys_insecurely(logged.append)
    link.a.protect(_ipv4("a", "b", b"forward-secret"), NOW)
    sent = next(e for e in link.exchange(NOW) if hasattr(e, "packet")).packet
    link.a.handle_timer(NOW + 500)  # the ephemeral key is gone
    (entry,) = logged
    prk = hmac.digest(b"SKIP v2.1 Kp", entry.kp, "sha256")
    e_kp = HKDFExpand(SHA256(), 36, b"SKIP v2.1 E_kp\0" + entry.header).derive(prk)
    assert e_kp == entry.e_kp
    esp = sent[20 + len(entry.header):]
    spi_seq, iv, body = esp[:8], esp[8:16], esp[16:]
    plain = AESGCM(e_kp[:32]).decrypt(e_kp[32:] + iv, body, spi_seq)
    pad, next_header = plain[-2], plain[-1]
    assert next_header == 17  # transport mode: the UDP datagram follows the ESP header
    assert plain[:-2 - pad] == _ipv4("a", "b", b"forward-secret")[20:]
