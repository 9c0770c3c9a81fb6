"""Shared material for the PKI tests: one fixed clock, keys from the fixed groups (no
parameter generation, so no test waits for primes), CAs made once per session, and a thin
wrapper around the openssl command that serves as the outside witness."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from skip.pki import Certificate, DHPrivateKey, Subject, issue
from skip.pki.signing import Signer, generate_signer

NOW = 1_800_000_000  # 2027-01-15T08:00:00Z: every test validates at this instant
DAY = 86_400

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@dataclass(frozen=True)
class Ca:
    signer: Signer
    cert: Certificate


def make_ca(name: str, scheme: str = "ed25519", *, days: int = 3650, start: int = NOW - DAY) -> Ca:
    signer = generate_signer(scheme, 2048)  # type: ignore[arg-type]
    cert = issue(
        signer=signer,
        issuer=None,
        subject=Subject([("CN", name), ("O", "skip tests")]),
        not_before=start,
        not_after=start + days * DAY,
        ca=True,
    )
    return Ca(signer, cert)


def make_leaf(
    ca: Ca,
    key: DHPrivateKey,
    *,
    cn: str = "host1",
    ips: tuple[str, ...] = ("10.0.0.1",),
    dns: tuple[str, ...] = (),
    email: tuple[str, ...] = (),
    profile: str = "v3",
    start: int = NOW - DAY,
    days: int = 30,
) -> Certificate:
    return issue(
        signer=ca.signer,
        issuer=ca.cert,
        subject=Subject([("CN", cn)], tuple(ipaddress.ip_address(a) for a in ips), dns, email),
        not_before=start,
        not_after=start + days * DAY,
        dh_key=key.public,
        profile=profile,  # type: ignore[arg-type]
    )


Keys = dict[str, DHPrivateKey]


def openssl(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *map(str, args)], capture_output=True, text=True, check=check, timeout=60
    )


def write(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    return path
