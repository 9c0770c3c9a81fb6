"""Per-packet cost of skip's crypto contexts against the bare cryptography calls.

"Bare" is the least work an algorithm needs with objects created in advance: for AEAD one
``encrypt`` and one ``decrypt``; for CBC + HMAC one ``update()`` on an existing CBC context and
one HMAC (copied from a keyed state) in each direction. "skip" is the same round trip through
the contexts the engine uses: ``seal`` + ``compute`` on the sender, ``verify`` + ``open`` on the
receiver (ESP's header bytes included in the MAC, as the engine does). The anti-replay window
(check + accept, in order) is timed alone. Run with ``tools/bench crypto``.
"""

from __future__ import annotations

import os
import timeit
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.ciphers.algorithms import AES

from skip.crypto.registry import get_cipher, get_integrity
from skip.crypto.replay import ReplayWindow

SIZES = (64, 512, 1400)
HEADER = bytes.fromhex("0000123400000001")  # SPI || sequence number, as ESP authenticates


def _per_call_us(fn: Callable[[], object], quick: bool) -> float:
    number = 500 if quick else 5000
    return min(timeit.repeat(fn, number=number, repeat=3 if quick else 7)) / number * 1e6


def _aead_pair(bare, name: str, key: bytes, size: int) -> tuple[Callable, Callable]:
    data = os.urandom(size)
    nonce = key[-4:] + bytes(8)
    sealed_bare = bare.encrypt(nonce, data, HEADER)

    def bare_round() -> None:
        bare.encrypt(nonce, data, HEADER)
        bare.decrypt(nonce, sealed_bare, HEADER)

    ctx = get_cipher(name).new(key)
    sealed = ctx.seal(data, HEADER, 1)

    def skip_round() -> None:
        ctx.seal(data, HEADER, 1)
        ctx.open(sealed, HEADER)

    return bare_round, skip_round


def _cbc_hmac_pair(size: int) -> tuple[Callable, Callable]:
    key, mac_key = os.urandom(16), os.urandom(32)
    data = os.urandom(size - size % 16)
    cipher = Cipher(AES(key), modes.CBC(bytes(16)))
    enc, dec = cipher.encryptor(), cipher.decryptor()
    keyed = crypto_hmac.HMAC(mac_key, hashes.SHA256())

    def bare_round() -> None:
        ct = enc.update(data)
        h = keyed.copy()
        h.update(ct)
        h.finalize()
        h = keyed.copy()
        h.update(ct)
        h.finalize()
        dec.update(ct)

    ctx = get_cipher("aes-cbc").new(key)
    mac = get_integrity("hmac-sha2-256-128").new(mac_key)

    def skip_round() -> None:
        sealed = ctx.seal(data, b"", 1)
        icv = mac.compute(HEADER, sealed)
        mac.verify(icv, HEADER, sealed)
        ctx.open(sealed, b"")

    return bare_round, skip_round


def _legacy_round(size: int) -> Callable:
    ctx = get_cipher("des-cbc", allow_legacy=True).new(os.urandom(8))
    mac = get_integrity("keyed-md5", allow_legacy=True).new(os.urandom(16))
    data = os.urandom(size - size % 8)

    def skip_round() -> None:
        sealed = ctx.seal(data, b"", 1)
        icv = mac.compute(HEADER, sealed)
        mac.verify(icv, HEADER, sealed)
        ctx.open(sealed, b"")

    return skip_round


def _replay_us(size: int, quick: bool) -> float:
    window = ReplayWindow(size=size)
    numbers = iter(range(1, 10**9))

    def one() -> None:
        window.accept(window.check(next(numbers)))

    return _per_call_us(one, quick)


def run(quick: bool) -> dict:
    """Microseconds per round trip (sender + receiver) for each payload size."""
    figures: dict = {"sizes": list(SIZES), "rows": {}}
    for size in SIZES:
        pairs = {
            "aes-gcm-16": _aead_pair(AESGCM(k := os.urandom(16)), "aes-gcm-16",
                                     k + os.urandom(4), size),
            "chacha20-poly1305": _aead_pair(ChaCha20Poly1305(c := os.urandom(32)),
                                            "chacha20-poly1305", c + os.urandom(4), size),
            "aes-cbc+hmac-sha2-256-128": _cbc_hmac_pair(size),
        }
        for name, (bare, ours) in pairs.items():
            row = figures["rows"].setdefault(name, {})
            row[str(size)] = {"bare_us": _per_call_us(bare, quick),
                              "skip_us": _per_call_us(ours, quick)}
        legacy = figures["rows"].setdefault("des-cbc+keyed-md5", {})
        legacy[str(size)] = {"bare_us": None, "skip_us": _per_call_us(_legacy_round(size), quick)}
    figures["replay_us"] = {str(w): _replay_us(w, quick) for w in (64, 1024, 4096)}
    return figures


def report(figures: dict) -> str:
    """The human table: us per round trip and the rate ratio skip / bare."""
    lines = [f"{'algorithm':28s} {'bytes':>6s} {'bare us':>8s} {'skip us':>8s} {'ratio':>6s}"]
    for name, row in figures["rows"].items():
        for size, cell in row.items():
            bare, ours = cell["bare_us"], cell["skip_us"]
            ratio = f"{bare / ours:6.2f}" if bare else "     -"
            bare_text = f"{bare:8.2f}" if bare else "       -"
            lines.append(f"{name:28s} {size:>6s} {bare_text} {ours:8.2f} {ratio}")
    lines.append("ratio = skip packets/s / bare packets/s (goal at 1400 B: GCM >= 0.5, "
                 "CBC+HMAC >= 0.4, end to end in the engine)")
    replay = ", ".join(f"W={w}: {us:.2f} us" for w, us in figures["replay_us"].items())
    lines.append(f"replay window check+accept (in order): {replay}")
    return "\n".join(lines)
