"""skipd's peer certificates: read once per file version, indexed by SKIP name, validated once
per trust configuration.

A reload used to read and parse the whole certificate directory once per rule and validate
every candidate again (100 rules with 100 certificates: 2.3 s; 1,000 with 1,000: 200 s, all
of it inside the event loop). Here a reload costs a ``stat`` per file, a parse per file that
changed (same modification time, size and inode: the same file), one dictionary look-up per
rule name, and a validation per certificate whose verdict is not already known for the same
anchors and CRLs (:attr:`~skip.daemon.trust.TrustValidator.token`). Verdicts are reused only
while they hold: not past the certificate's expiry or the CRLs' next update, and never for a
``now`` earlier than the one they were reached at.

Fed by the directory today; certificates learnt by CDP or the DNS go through the same index.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from skip.errors import CertificateError, ConfigError, SkipError
from skip.files import read_bounded
from skip.pki.certificate import Certificate, iso_time, load_certificates
from skip.pki.validation import PeerKey

CERT_SUFFIXES = frozenset({".pem", ".crt", ".cer", ".der"})
MAX_STORE_FILES = 10_000
Name = tuple[int, bytes]  # (NSID, MKID), for NSID 0 the address's NSID 1/3 name


class Validator(Protocol):
    """What validates a certificate (:class:`skip.daemon.trust.TrustValidator`)."""

    token: bytes
    until: float

    def __call__(self, cert: Certificate, now: float) -> PeerKey: ...


@dataclass(frozen=True)
class _File:
    stamp: tuple[int, int, int]  # (mtime ns, size, inode)
    certs: tuple[Certificate, ...]
    error: tuple[str, str] | None  # (reason, message) when it does not parse
    names: tuple[tuple[Name, ...], ...] = ()  # per certificate, the SKIP names it answers to


@dataclass(frozen=True)
class _Verdict:
    token: bytes
    since: float  # the `now` it was reached at
    until: float
    outcome: PeerKey | CertificateError


class CertificateStore:
    def __init__(self) -> None:
        self._files: dict[Path, _File] = {}
        self._index: dict[Name, list[tuple[Path, Certificate]]] = {}
        self._verdicts: dict[str, _Verdict] = {}  # by certificate fingerprint

    # --- files ---------------------------------------------------------------------------

    def load(self, path: Path) -> _File:
        """One file's certificates, parsed again only if the file changed."""
        try:
            st = os.stat(path)
        except OSError as exc:
            raise ConfigError("config_invalid", f"{path}: cannot read a certificate: "
                              f"{exc.strerror}") from None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        known = self._files.get(path)
        if known is not None and known.stamp == stamp:
            return known
        try:
            data = read_bounded(path)
        except OSError as exc:
            raise ConfigError("config_invalid", f"{path}: cannot read a certificate: "
                              f"{exc.strerror}") from None
        try:
            certs = tuple(load_certificates(data))
            parsed = _File(stamp, certs, None, tuple(_names(c) for c in certs))
        except SkipError as exc:
            parsed = _File(stamp, (), (exc.reason, str(exc)))
        self._files[path] = parsed
        return parsed

    def refresh(self, directory: Path) -> list[tuple[str, str, str]]:
        """Bring the index up to date with ``directory``; returns (file, reason, message) for
        each file that does not parse."""
        if not directory.is_dir():
            raise ConfigError("config_invalid", f"{directory}: identity.peer_certificates is "
                              "not a directory")
        try:
            paths = sorted(p for p in directory.iterdir() if p.suffix.lower() in CERT_SUFFIXES)
        except OSError as exc:
            raise ConfigError("config_invalid", f"{directory}: cannot list "
                              f"identity.peer_certificates: {exc.strerror}") from None
        if len(paths) > MAX_STORE_FILES:
            raise ConfigError("config_invalid", f"{directory}: more than {MAX_STORE_FILES} "
                              "files")
        wanted = set(paths)
        for gone in [p for p in self._files if p.parent == directory and p not in wanted]:
            del self._files[gone]
        refused = []
        index: dict[Name, list[tuple[Path, Certificate]]] = {}
        for path in paths:
            entry = self.load(path)
            if entry.error is not None:
                refused.append((str(path), *entry.error))
            for cert, names in zip(entry.certs, entry.names, strict=True):
                for name in names:
                    index.setdefault(name, []).append((path, cert))
        self._index = index
        live = {c.fingerprint for f in self._files.values() for c in f.certs}
        for fingerprint in [f for f in self._verdicts if f not in live]:
            del self._verdicts[fingerprint]
        return refused

    def candidates(self, names: Iterable[Name]) -> list[tuple[Path, Certificate]]:
        """The directory's certificates that answer to any of ``names``, in file order."""
        seen: dict[str, tuple[Path, Certificate]] = {}
        for name in names:
            for path, cert in self._index.get(name, ()):
                seen.setdefault(cert.fingerprint, (path, cert))
        return sorted(seen.values(), key=lambda pc: pc[0])

    # --- verdicts --------------------------------------------------------------------------

    def validate(self, cert: Certificate, now: float, validate: Validator) -> PeerKey:
        """``validate(cert, now)``, or the verdict it gave before if that still holds."""
        verdict = self._verdicts.get(cert.fingerprint)
        if verdict is not None and verdict.token == validate.token and \
                verdict.since <= now < verdict.until:
            outcome = verdict.outcome
            if isinstance(outcome, CertificateError):
                raise CertificateError(outcome.reason, outcome.detail)
            return outcome
        try:
            key = validate(cert, now)
        except CertificateError as exc:
            # a refusal holds until the next change of anchors or CRLs, or of the clock's
            # side of the certificate's validity (not-yet-valid certificates become valid)
            until = min(validate.until, float(cert.not_before)) if now < cert.not_before \
                else validate.until
            self._verdicts[cert.fingerprint] = _Verdict(validate.token, now, until, exc)
            raise
        until = min(validate.until, float(key.not_after))
        self._verdicts[cert.fingerprint] = _Verdict(validate.token, now, until, key)
        return key


def _names(cert: Certificate) -> tuple[Name, ...]:
    try:
        return tuple((n.nsid, n.mkid) for n in cert.skip_names())
    except CertificateError:
        return ()  # a name that does not encode: the certificate answers to none


def describe_certificate(cert: Certificate, now: float) -> dict[str, Any]:
    """A certificate as ``skipctl certs`` shows it: who, which SKIP names, until when."""
    try:
        names = [str(n) for n in cert.skip_names()]
    except SkipError:
        names = []
    return {"certificate": cert.fingerprint[:16], "subject": cert.subject_text,
            "issuer": cert.issuer_text, "skip_names": names,
            "not_before": iso_time(cert.not_before), "not_after": iso_time(cert.not_after),
            "expires_in": round(cert.not_after - now)}
