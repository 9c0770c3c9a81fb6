"""Times as skip-cert shows them: ISO 8601 UTC (``2027-01-10T00:00:00Z``) everywhere, in
refusals as much as in listings; before, validation errors said "expired at 1801958400"."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .cli_support import ok, refused

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
POSIX = re.compile(r"(?<![0-9a-f])\d{9,}(?![0-9a-f])")  # a bare count of seconds


@pytest.fixture
def dated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A CA from 2027-01-01, h.crt valid 2027-01-10 .. 2027-02-09, revoked 2027-01-20, and a
    CRL of 2027-01-21 valid for 7 days: every time explicit, so messages can be predicted."""
    monkeypatch.chdir(tmp_path)
    ok(capsys, "init-ca", "ca", "--subject", "CN=Dated CA", "--not-before", "2027-01-01")
    ok(capsys, "genkey", "h.key", "--group", "x25519")
    ok(capsys, "issue", "--ca", "ca", "--key", "h.key", "--subject", "CN=h", "--out", "h.crt",
       "--not-before", "2027-01-10", "--days", "30")
    ok(capsys, "revoke", "--ca", "ca", "h.crt", "--at", "2027-01-20")
    ok(capsys, "crl", "--ca", "ca", "--out", "ca.crl", "--at", "2027-01-21", "--days", "7")
    return tmp_path


def verify_at(capsys: pytest.CaptureFixture[str], when: str, *extra: str) -> str:
    line = refused(capsys, "verify", "h.crt", "--ca", "ca", "--at", when, *extra)
    assert not POSIX.search(line), line
    return line


@pytest.mark.parametrize(("when", "extra", "expected"), [
    ("2027-01-05", (), "cert_not_yet_valid: CN=h is not valid before 2027-01-10T00:00:00Z "
                       "(now 2027-01-05T00:00:00Z)"),
    ("2027-03-01T12:30:00Z", (), "cert_expired: CN=h expired at 2027-02-09T00:00:00Z "
                                 "(now 2027-03-01T12:30:00Z)"),
    ("2027-01-22", ("--crl", "ca.crl"), "cert_revoked: serial "),
    ("2027-02-01", ("--crl", "ca.crl"),
     "cert_crl_invalid: the CRL of CN=Dated CA is not current (this update "
     "2027-01-21T00:00:00Z, next update 2027-01-28T00:00:00Z, now 2027-02-01T00:00:00Z)"),
])
def test_refusals_name_times_in_iso_8601(
    dated: Path, capsys: pytest.CaptureFixture[str], when: str, extra: tuple[str, ...],
    expected: str,
) -> None:
    line = verify_at(capsys, when, *extra)
    assert expected in line, line
    if "revoked" in expected:
        assert "revoked at 2027-01-20T00:00:00Z" in line, line


def test_a_udh_value_out_of_its_time_says_when(
    dated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(capsys, "genkey", "u.key", "--group", "ffdhe2048")
    out = ok(capsys, "udh", "--key", "u.key", "--out", "h.udh", "--not-before", "2027-01-10",
             "--days", "1")
    name = out.split(": ")[1].strip()
    line = refused(capsys, "verify", "h.udh", "--name", f"8:{name}", "--at", "2027-01-12")
    assert "expired at 2027-01-11T00:00:00Z (now 2027-01-12T00:00:00Z)" in line, line


def test_listings_show_iso_times(dated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for path in ("h.crt", "ca.crl", "ca/ca.crt"):
        info = json.loads(ok(capsys, "show", path, "--json"))
        times = [v for k, v in info.items() if k.endswith(("_before", "_after", "_update"))]
        times += [r["revoked_at"] for r in info.get("revoked", [])]
        assert times and all(ISO.fullmatch(t) for t in times), info
        human = ok(capsys, "show", path)
        assert ISO.search(human) and not POSIX.search(human.replace(info.get(
            "sha256_fingerprint", "-"), "")), human
    info = json.loads(ok(capsys, "show", "h.crt", "--json"))
    assert (info["not_before"], info["not_after"]) == ("2027-01-10T00:00:00Z",
                                                       "2027-02-09T00:00:00Z")
