"""Packets per second through the ESP/AH engine against the bare crypto, in one run.

For each suite and payload size (64, 512, 1400 bytes after the IPv4 header) one round is
``protect`` on a sending SA plus ``unprotect`` on the receiving SA (transport mode, so the
receiver's replay window moves every packet as in real traffic). "Bare" is the least work the
algorithm needs on the same payload with every object created in advance:

- AES-GCM-16: one ``AESGCM.encrypt`` and one ``AESGCM.decrypt``;
- AES-CBC + HMAC-SHA-256-128: one ``update()`` on an existing CBC context plus one HMAC over
  the payload (copied from a keyed state), in each direction;
- DES-CBC + keyed MD5 (SKIP's legacy AH over ESP, no sequence numbers): the same with single
  DES and RFC 1828 keyed MD5.

ratio = engine rate / bare rate. Goals at 1400 B: AES-GCM >= 0.5, AES-CBC+HMAC >= 0.4.
Run with ``tools/bench engine`` (``--json FILE`` for the figures).
"""

from __future__ import annotations

import hashlib
import os
import struct
import timeit
from collections.abc import Callable

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.ciphers.algorithms import AES

from skip.crypto.keyed import keyfill
from skip.ipsec import SecurityAssociation
from skip.wire.ip import build_ipv4

SIZES = (64, 512, 1400)
GOALS = {"aes-gcm-16": 0.5, "aes-cbc+hmac-sha2-256-128": 0.4}
SRC, DST = "192.0.2.1", "198.51.100.2"


def _rate(fn: Callable[[], object], quick: bool) -> float:
    """Rounds per second, best of several repeats (the least disturbed measurement)."""
    number = 300 if quick else 3000
    best = min(timeit.repeat(fn, number=number, repeat=3 if quick else 7))
    return number / best


def _datagram(size: int) -> bytes:
    payload = os.urandom(size - 8)
    return build_ipv4(SRC, DST, 17, struct.pack("!HHHH", 5000, 5001, size, 0) + payload)


def _engine_round(make: Callable[[], tuple[Callable, Callable]],
                  datagram: bytes) -> Callable[[], object]:
    protect, unprotect = make()

    def round_trip() -> object:
        return unprotect(protect(datagram))

    assert round_trip() == datagram, "engine round trip changed the datagram"
    return round_trip


def _gcm_sas() -> tuple[Callable, Callable]:
    key = os.urandom(20)
    tx = SecurityAssociation("esp", 0x100, "transport", cipher="aes-gcm-16", cipher_key=key)
    rx = SecurityAssociation("esp", 0x100, "transport", cipher="aes-gcm-16", cipher_key=key)
    return tx.protect, rx.unprotect


def _cbc_hmac_sas() -> tuple[Callable, Callable]:
    key, mac = os.urandom(16), os.urandom(32)
    args = {"cipher": "aes-cbc", "cipher_key": key, "integrity": "hmac-sha2-256-128",
            "integrity_key": mac}
    tx = SecurityAssociation("esp", 0x101, "transport", **args)
    rx = SecurityAssociation("esp", 0x101, "transport", **args)
    return tx.protect, rx.unprotect


def _legacy_sas() -> tuple[Callable, Callable]:
    key, mac = os.urandom(8), os.urandom(16)
    esp = {"cipher": "des-cbc", "cipher_key": key, "sequence": False, "allow_legacy": True,
           "allow_unauthenticated": True}
    ah = {"integrity": "keyed-md5", "integrity_key": mac, "sequence": False,
          "allow_legacy": True}
    esp_tx = SecurityAssociation("esp", 1, "transport", **esp)
    esp_rx = SecurityAssociation("esp", 1, "transport", **esp)
    ah_tx = SecurityAssociation("ah", 1, "transport", **ah)
    ah_rx = SecurityAssociation("ah", 1, "transport", **ah)
    return (lambda d: ah_tx.protect(esp_tx.protect(d)),
            lambda w: esp_rx.unprotect(ah_rx.unprotect(w)))


def _bare_gcm(payload: bytes) -> Callable[[], object]:
    aead, nonce, aad = AESGCM(os.urandom(16)), os.urandom(12), os.urandom(8)
    sealed = aead.encrypt(nonce, payload, aad)

    def bare() -> object:
        aead.encrypt(nonce, payload, aad)
        return aead.decrypt(nonce, sealed, aad)

    return bare


def _bare_cbc_mac(cipher: Cipher, block: int, mac: Callable[[bytes], bytes],
                  payload: bytes) -> Callable[[], object]:
    data = payload + bytes(-len(payload) % block)
    enc, dec = cipher.encryptor(), cipher.decryptor()

    def bare() -> object:
        ct = enc.update(data)
        mac(ct)
        mac(ct)
        return dec.update(ct)

    return bare


def _hmac_sha256() -> Callable[[bytes], bytes]:
    keyed = crypto_hmac.HMAC(os.urandom(32), hashes.SHA256())

    def mac(data: bytes) -> bytes:
        h = keyed.copy()
        h.update(data)
        return h.finalize()[:16]

    return mac


def _keyed_md5() -> Callable[[bytes], bytes]:
    key = os.urandom(16)
    keyed = hashlib.md5(key + keyfill("md5", len(key)))

    def mac(data: bytes) -> bytes:
        h = keyed.copy()
        h.update(data)
        h.update(key)
        return h.digest()

    return mac


def run(quick: bool = False) -> dict:
    suites = {
        "aes-gcm-16": (_gcm_sas, _bare_gcm),
        "aes-cbc+hmac-sha2-256-128": (
            _cbc_hmac_sas,
            lambda p: _bare_cbc_mac(Cipher(AES(os.urandom(16)), modes.CBC(bytes(16))), 16,
                                    _hmac_sha256(), p)),
        "des-cbc+keyed-md5 (SKIP AH over ESP)": (
            _legacy_sas,
            lambda p: _bare_cbc_mac(Cipher(TripleDES(os.urandom(8) * 3), modes.CBC(bytes(8))),
                                    8, _keyed_md5(), p)),
    }
    figures: dict[str, dict] = {}
    for name, (make_sas, make_bare) in suites.items():
        for size in SIZES:
            datagram = _datagram(size)
            engine_pps = _rate(_engine_round(make_sas, datagram), quick)
            bare_pps = _rate(make_bare(datagram[20:]), quick)
            figures[f"{name} @ {size}"] = {
                "suite": name,
                "payload_bytes": size,
                "engine_pps": round(engine_pps),
                "bare_pps": round(bare_pps),
                "ratio": round(engine_pps / bare_pps, 3),
                "goal": GOALS.get(name) if size == 1400 else None,
            }
    return figures


def report(figures: dict) -> str:
    lines = [f"{'suite':40} {'bytes':>5} {'engine pkt/s':>13} {'bare pkt/s':>11} "
             f"{'ratio':>6}  goal"]
    for row in figures.values():
        goal = row["goal"]
        verdict = "" if goal is None else (
            f">= {goal} {'met' if row['ratio'] >= goal else 'MISSED'}")
        lines.append(f"{row['suite']:40} {row['payload_bytes']:>5} {row['engine_pps']:>13,} "
                     f"{row['bare_pps']:>11,} {row['ratio']:>6.2f}  {verdict}")
    lines.append("one round = protect + unprotect (engine) or the same crypto calls (bare)")
    return "\n".join(lines)
