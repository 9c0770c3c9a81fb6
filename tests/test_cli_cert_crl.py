"""skip-cert and CRLs signed by the wrong key: the CRL is what is wrong, not the certificate.

docs/certificates.md section 3 (check 4) promises ``cert_crl_invalid`` for a CRL that does
not verify with its issuer's key; before, the signature failure came out as
``cert_bad_signature``, which reads as "the certificate's own signature is forged".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from skip.pki import load_crls
from skip.pki.pemfile import pem_encode

from .cli_support import ok, refused
from .pki_support import needs_openssl, openssl


@pytest.fixture
def impostor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Path:
    """ca/ (the real CA), evil/ (another key with the very same name), h.crt from ca, and
    evil.crl: a CRL that claims to come from the real CA but is signed by the impostor."""
    monkeypatch.chdir(tmp_path)
    ok(capsys, "init-ca", "ca", "--subject", "CN=Real CA,O=Example")
    ok(capsys, "init-ca", "evil", "--subject", "CN=Real CA,O=Example")
    ok(capsys, "genkey", "h.key", "--group", "x25519")
    ok(capsys, "issue", "--ca", "ca", "--key", "h.key", "--subject", "CN=h", "--out", "h.crt")
    ok(capsys, "crl", "--ca", "evil", "--out", "evil.crl")
    ok(capsys, "crl", "--ca", "ca", "--out", "good.crl")
    return tmp_path


def test_a_crl_signed_by_another_key_is_cert_crl_invalid(
    impostor: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = refused(capsys, "verify", "h.crt", "--ca", "ca/ca.crt", "--crl", "evil.crl")
    assert line.startswith("skip-cert: error: cert_crl_invalid: "), line
    assert "CN=Real CA" in line and "does not verify" in line
    # the certificate itself is fine: with the real CRL, or none, it verifies
    assert "OK" in ok(capsys, "verify", "h.crt", "--ca", "ca/ca.crt", "--crl", "good.crl")
    assert "OK" in ok(capsys, "verify", "h.crt", "--ca", "ca/ca.crt")


def test_a_bad_crl_next_to_a_good_one_is_still_refused(
    impostor: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A forged CRL is never skipped silently, even when a good one comes with it."""
    line = refused(capsys, "verify", "h.crt", "--ca", "ca/ca.crt", "--crl", "good.crl",
                   "--crl", "evil.crl")
    assert "cert_crl_invalid" in line


def tamper(path: str, out: str) -> None:
    """``out``: the CRL at ``path`` with the last bit of its signature flipped."""
    der = bytearray(load_crls(Path(path).read_bytes())[0].der)
    der[-1] ^= 1
    Path(out).write_bytes(pem_encode("X509 CRL", bytes(der)))


def test_a_tampered_crl_is_cert_crl_invalid(
    impostor: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tamper("good.crl", "tampered.crl")
    line = refused(capsys, "verify", "h.crt", "--ca", "ca/ca.crt", "--crl", "tampered.crl")
    assert "cert_crl_invalid" in line and "signature does not verify" in line


@needs_openssl
def test_openssl_also_blames_the_crl(impostor: Path) -> None:
    """openssl's verdicts: a tampered CRL is "CRL signature failure"; the impostor's CRL
    (whose authority key id is not the real CA's) is not taken as the CA's CRL at all,
    "unable to get certificate CRL". Neither is a certificate signature failure."""
    tamper("good.crl", "tampered.crl")
    for crl, verdict in (("tampered.crl", "CRL signature failure"),
                         ("evil.crl", "unable to get certificate CRL")):
        result = openssl("verify", "-crl_check", "-CRLfile", crl, "-CAfile", "ca/ca.crt",
                         "h.crt", check=False)
        text = result.stdout + result.stderr
        assert result.returncode != 0 and verdict in text, text
        assert "certificate signature failure" not in text
    good = openssl("verify", "-crl_check", "-CRLfile", "good.crl", "-CAfile", "ca/ca.crt",
                   "h.crt", check=False)
    assert good.returncode == 0, good.stdout + good.stderr
