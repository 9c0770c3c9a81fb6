"""``skip-cert pubkey``: the public key of an existing private key, like ``openssl pkey
-pubout`` (PEM/DER SubjectPublicKeyInfo) and ``wg pubkey`` (the bare value), with openssl
computing the same public value from the same private key as the witness."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from skip.pki import load_certificate, load_private_key, load_public_key

from .cli_support import ok, refused
from .pki_support import needs_openssl, openssl

SKIP_CERT = Path(sys.executable).with_name("skip-cert")
GROUPS = ("x25519", "x448", "ffdhe2048", "skip-2048", "modp-2048")


@pytest.fixture
def keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.chdir(tmp_path)
    for group in GROUPS:
        ok(capsys, "genkey", f"{group}.key", "--group", group, "--public", f"{group}.pub")
    return tmp_path


@pytest.mark.parametrize("group", GROUPS)
def test_pem_is_the_public_key_genkey_wrote(
    keys: Path, capsys: pytest.CaptureFixture[str], group: str
) -> None:
    assert ok(capsys, "pubkey", f"{group}.key") == Path(f"{group}.pub").read_text()


@needs_openssl
@pytest.mark.parametrize("group", GROUPS)
def test_openssl_computes_the_same_public_key(
    keys: Path, capsys: pytest.CaptureFixture[str], group: str
) -> None:
    theirs = openssl("pkey", "-in", f"{group}.key", "-pubout").stdout
    # OpenSSL writes a safe-prime group's key as PKCS #3 "DH" (as skip writes the private
    # key); skip's certificates carry X9.42 where q is known, so ask for pkcs3 to compare
    encoding = ("--encoding", "pkcs3") if not group.startswith("x") else ()
    assert ok(capsys, "pubkey", f"{group}.key", *encoding) == theirs
    der = subprocess.run(["openssl", "pkey", "-in", f"{group}.key", "-pubout", "-outform",
                          "DER"], capture_output=True, check=True).stdout
    value = load_public_key(der).public_value
    assert ok(capsys, "pubkey", f"{group}.key", "--format", "hex") == value.hex() + "\n"
    assert base64.b64decode(ok(capsys, "pubkey", f"{group}.key", "--format", "base64")) == value


@needs_openssl
def test_x25519_base64_is_what_wg_pubkey_prints(keys: Path, capsys: pytest.CaptureFixture[str]
                                                ) -> None:
    """wg pubkey prints base64 of the raw 32-byte X25519 key: the last 32 bytes of the DER
    SubjectPublicKeyInfo openssl writes."""
    der = subprocess.run(["openssl", "pkey", "-in", "x25519.key", "-pubout", "-outform", "DER"],
                         capture_output=True, check=True).stdout
    expected = base64.b64encode(der[-32:]).decode() + "\n"
    assert ok(capsys, "pubkey", "x25519.key", "--format", "base64") == expected


def test_der_and_the_other_inputs(keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok(capsys, "pubkey", "ffdhe2048.key", "--format", "der", "--out", "k.der")
    assert load_public_key(Path("k.der").read_bytes()) == load_private_key(
        Path("ffdhe2048.key").read_bytes()).public
    assert "cert_exists" in refused(capsys, "pubkey", "ffdhe2048.key", "--out", "k.der")
    ok(capsys, "pubkey", "ffdhe2048.key", "--format", "der", "--out", "k.der", "--force")
    # a public key, a DH certificate and a UDH value give their key too
    ok(capsys, "init-ca", "ca", "--subject", "CN=CA")
    ok(capsys, "issue", "--ca", "ca", "--key", "ffdhe2048.key", "--subject", "CN=h",
       "--out", "h.crt")
    ok(capsys, "udh", "--key", "ffdhe2048.key", "--out", "h.udh")
    hexed = ok(capsys, "pubkey", "ffdhe2048.key", "--format", "hex")
    for other in ("ffdhe2048.pub", "h.crt", "h.udh"):
        assert ok(capsys, "pubkey", other, "--format", "hex") == hexed
    cert = load_certificate(Path("h.crt").read_bytes())
    assert cert.dh_key is not None and hexed == cert.dh_key.public_value.hex() + "\n"


def test_encrypted_keys_and_refusals(
    keys: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PW", "pw")
    ok(capsys, "genkey", "locked.key", "--group", "x25519", "--passphrase-env", "PW",
       "--public", "locked.pub")
    assert "passphrase" in refused(capsys, "pubkey", "locked.key")
    assert ok(capsys, "pubkey", "locked.key", "--passphrase-env", "PW") == Path(
        "locked.pub").read_text()
    ok(capsys, "init-ca", "ca", "--subject", "CN=CA")
    Path("garbage").write_bytes(b"garbage")
    assert "cert_key_type" in refused(capsys, "pubkey", "ca/ca.key")  # a signing key
    assert "cert_key_type" in refused(capsys, "pubkey", "ca/ca.crt")
    assert "cert_malformed" in refused(capsys, "pubkey", "garbage")
    assert "cert_key_type" in refused(capsys, "pubkey", "ffdhe2048.key", "--encoding", "rfc8410")
    assert "No such file" in refused(capsys, "pubkey", "missing.key")


def test_json(keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    info = json.loads(ok(capsys, "pubkey", "ffdhe2048.key", "--json"))
    public = load_private_key(Path("ffdhe2048.key").read_bytes()).public
    assert info["ok"] and info["key"]["group"] == "ffdhe2048"
    assert info["key"]["public_value"] == public.public_value.hex()
    assert info["key"]["encoding"] == "x942" and info["pem"] == Path("ffdhe2048.pub").read_text()
    der = load_public_key(info["pem"].encode())
    assert der == public
    spki = base64.b64decode("".join(info["pem"].splitlines()[1:-1]))
    assert info["spki_sha256"] == hashlib.sha256(spki).hexdigest()
    assert json.loads(ok(capsys, "pubkey", "ffdhe2048.key", "--json", "--encoding",
                         "pkcs3"))["key"]["encoding"] == "pkcs3"


@pytest.mark.skipif(not SKIP_CERT.exists(), reason="skip-cert is not installed")
def test_from_standard_input_like_wg_pubkey(tmp_path: Path) -> None:
    result = subprocess.run(
        f"'{SKIP_CERT}' genkey - --group x25519 2>/dev/null | tee k.pem | '{SKIP_CERT}' pubkey",
        shell=True, capture_output=True, cwd=tmp_path, check=False, text=True,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    key = load_private_key((tmp_path / "k.pem").read_bytes())
    assert load_public_key(result.stdout.encode()) == key.public
