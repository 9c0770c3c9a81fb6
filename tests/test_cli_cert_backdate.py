"""skip-cert moves a start time of ``now`` back by BACKDATE (5 minutes), so that a host whose
clock is a little behind the CA's can use a certificate, UDH value or CRL fresh from the CA.

Before, the not-before was exactly the CA's "now": a peer one second behind refused the new
certificate as ``cert_not_yet_valid`` and a fresh CRL as ``cert_crl_invalid``.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest

from skip.cli import cert
from skip.pki import load_certificate, load_crls, parse_udh

from .cli_support import ok, refused
from .pki_support import needs_openssl, openssl

NOW = 1_800_000_000  # 2027-01-15T08:00:00Z
DAY = 86_400


def openssl_time(text: str) -> int:
    """``notBefore=Jan 15 07:55:00 2027 GMT`` -> POSIX seconds."""
    value = text.split("=", 1)[1].strip()
    moment = dt.datetime.strptime(value, "%b %d %H:%M:%S %Y %Z")
    return int(moment.replace(tzinfo=dt.UTC).timestamp())


@pytest.fixture
def frozen(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A CA and a key made with the tool's clock stopped at NOW."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cert, "clock", lambda: NOW + 0.75)
    ok(capsys, "init-ca", "ca", "--subject", "CN=Backdate CA")
    ok(capsys, "genkey", "h.key", "--group", "ffdhe2048")
    return tmp_path


def test_the_margin_is_five_minutes() -> None:
    assert cert.BACKDATE == 300


@needs_openssl
def test_issue_and_init_ca_backdate_not_before(
    frozen: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(capsys, "issue", "--ca", "ca", "--key", "h.key", "--subject", "CN=h", "--out", "h.crt",
       "--days", "30")
    for path, days in (("ca/ca.crt", 3650), ("h.crt", 30)):
        text = openssl("x509", "-in", path, "-noout", "-startdate", "-enddate").stdout
        start, end = (openssl_time(line) for line in text.splitlines())
        assert start == NOW - cert.BACKDATE, path
        assert end == NOW + days * DAY, path  # --days still counts from now
        parsed = load_certificate(Path(path).read_bytes())
        assert (parsed.not_before, parsed.not_after) == (start, end)


def test_the_margin_can_be_changed_or_switched_off(
    frozen: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ("issue", "--ca", "ca", "--key", "h.key", "--subject", "CN=h")
    ok(capsys, *base, "--out", "exact.crt", "--backdate", "0")
    ok(capsys, *base, "--out", "hour.crt", "--backdate", "3600")
    ok(capsys, *base, "--out", "given.crt", "--not-before", "2027-02-01")
    starts = {p: load_certificate(Path(p).read_bytes()).not_before
              for p in ("exact.crt", "hour.crt", "given.crt")}
    assert starts == {"exact.crt": NOW, "hour.crt": NOW - 3600,
                      "given.crt": NOW + 17 * DAY - 8 * 3600}  # explicit: taken as given
    line = refused(capsys, *base, "--out", "x.crt", "--not-before", "2027-02-01",
                   "--backdate", "60")
    assert "config_invalid" in line and "--backdate" in line
    assert not Path("x.crt").exists()


@pytest.mark.parametrize("value", ["-1", "86401", "5m", ""])
def test_absurd_margins_are_usage_errors(
    frozen: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    with pytest.raises(SystemExit) as stop:
        cert.main(["issue", "--ca", "ca", "--key", "h.key", "--subject", "CN=h", "--out",
                   "x.crt", "--backdate", value])
    assert stop.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_udh_crl_and_revocation_are_backdated_too(
    frozen: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(capsys, "udh", "--key", "h.key", "--out", "h.udh", "--days", "1")
    udh = parse_udh(Path("h.udh").read_bytes())
    assert (udh.not_before, udh.not_after) == (NOW - cert.BACKDATE, NOW + DAY)
    ok(capsys, "revoke", "--ca", "ca", "--serial", "abc")
    recorded = json.loads(Path("ca/revoked.json").read_text())["revoked"][0]["revoked_at"]
    assert recorded == NOW - cert.BACKDATE
    ok(capsys, "crl", "--ca", "ca", "--out", "ca.crl", "--days", "7")
    (crl,) = load_crls(Path("ca.crl").read_bytes())
    assert (crl.this_update, crl.next_update) == (NOW - cert.BACKDATE, NOW + 7 * DAY)
    assert crl.revoked[0xABC].revoked_at <= crl.this_update  # listed as of the CRL's date


def test_a_host_two_minutes_behind_accepts_fresh_material(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the real clock: everything made just now verifies at now - 120 s (a lagging
    peer), but not 10 minutes behind, which is beyond the margin."""
    monkeypatch.chdir(tmp_path)
    ok(capsys, "init-ca", "ca", "--subject", "CN=Fresh CA")
    ok(capsys, "genkey", "h.key", "--group", "x25519")
    ok(capsys, "issue", "--ca", "ca", "--key", "h.key", "--subject", "CN=h", "--out", "h.crt")
    ok(capsys, "crl", "--ca", "ca", "--out", "ca.crl")
    behind = int(time.time()) - 120
    assert "OK" in ok(capsys, "verify", "h.crt", "--ca", "ca", "--crl", "ca.crl", "--require-crl",
                      "--at", f"@{behind}")
    line = refused(capsys, "verify", "h.crt", "--ca", "ca", "--at", f"@{behind - 480}")
    assert "cert_not_yet_valid" in line


@needs_openssl
def test_openssl_agrees_about_the_lagging_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ok(capsys, "init-ca", "ca", "--subject", "CN=Fresh CA")
    ok(capsys, "genkey", "h.key", "--group", "x25519")
    ok(capsys, "issue", "--ca", "ca", "--key", "h.key", "--subject", "CN=h", "--out", "h.crt")
    ok(capsys, "crl", "--ca", "ca", "--out", "ca.crl")
    behind = int(time.time()) - 120
    good = openssl("verify", "-attime", str(behind), "-crl_check", "-CRLfile", "ca.crl",
                   "-CAfile", "ca/ca.crt", "h.crt", check=False)
    assert good.returncode == 0, good.stdout + good.stderr
    early = openssl("verify", "-attime", str(behind - 480), "-CAfile", "ca/ca.crt", "h.crt",
                    check=False)
    assert early.returncode != 0 and "not yet valid" in early.stdout + early.stderr
