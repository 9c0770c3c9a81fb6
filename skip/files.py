"""Bounded reads of the small files the daemon and the CLIs parse (keys, certificates, CRLs).

A device such as /dev/zero or a huge file named by mistake is refused instead of filling
memory or hanging: nothing skip parses from a file comes near :data:`MAX_INPUT`.
"""

from __future__ import annotations

from pathlib import Path

from skip.errors import ConfigError

MAX_INPUT = 1 << 20  # far above any certificate chain, key, CRL or revoked.json


def read_bounded(path: str | Path) -> bytes:
    """The bytes of ``path``, at most :data:`MAX_INPUT` of them (``config_invalid`` beyond).

    ``OSError`` is left to the caller, which knows what the file was for. A NUL byte in the
    path, which no file name can hold and ``open`` reports as a bare ValueError, is
    ``config_invalid`` here: paths come from config files and command lines.
    """
    if "\0" in str(path):
        raise ConfigError("config_invalid", f"{str(path)!r}: a path cannot contain a NUL byte")
    with open(path, "rb") as handle:
        data = handle.read(MAX_INPUT + 1)
    if len(data) > MAX_INPUT:
        raise ConfigError("config_invalid", f"{path}: larger than {MAX_INPUT} bytes")
    return data
