"""Which engine core runs: the compiled one (skip/_native.c) or the pure-Python reference.

The compiled core does the common case of AEAD ESP (AES-GCM-16, ChaCha20-Poly1305 with
sequence numbers) and the anti-replay window in C; it declines everything else to the Python
path, which stays the reference and the only place errors are made (docs/engine.md,
"Compiled core"). It is used when it was built and ``SKIP_PURE_PYTHON`` is not set to a
non-empty value other than ``0``; the test suite runs the engine's tests both ways.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

PURE_PYTHON_ENV = "SKIP_PURE_PYTHON"

#: registry cipher names the compiled core protects, to the core's name for them (the rest
#: take the Python path); the sized AES names are what SKIP's modern profile asks for
COMPILED_CIPHERS = {
    "aes-gcm-16": "aes-gcm-16", "aes-128-gcm-16": "aes-gcm-16",
    "aes-192-gcm-16": "aes-gcm-16", "aes-256-gcm-16": "aes-gcm-16",
    "chacha20-poly1305": "chacha20-poly1305",
}


def _load() -> ModuleType | None:
    if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0"):
        return None
    try:
        from skip import _native
    except ImportError:  # not built (no compiler or OpenSSL headers): the reference runs
        return None
    return _native


core = _load()


def describe() -> str:
    """One line for logs and ``skipd --version``: which core runs, and why."""
    if core is not None:
        return "compiled (skip._native, OpenSSL libcrypto)"
    if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0"):
        return f"pure Python ({PURE_PYTHON_ENV} is set)"
    return "pure Python (skip._native is not built)"


@contextmanager
def reference_only() -> Iterator[None]:
    """SAs built inside use the pure-Python engine even where the core is built (skipd's
    self-test opens the core's packets with the reference and the other way round, so a
    miscompiled core or a broken cryptography build stops the start). Not thread-safe: a
    process-wide switch, for start-up and tests."""
    global core
    saved, core = core, None
    try:
        yield
    finally:
        core = saved
