"""``-`` as a file name: skip-cert reads standard input and writes standard output, so that
it composes with pipes (and with openssl, the outside witness on the other end of them)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from skip import files
from skip.pki import load_certificate, load_private_key, load_public_key, parse_udh

from .cli_support import ok
from .pki_support import needs_openssl

SKIP_CERT = Path(sys.executable).with_name("skip-cert")
pytestmark = pytest.mark.skipif(not SKIP_CERT.exists(), reason="skip-cert is not installed")


def sh(command: str, cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """``command`` in bash with ``skip-cert`` meaning this checkout's console script."""
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"skip-cert() {{ '{SKIP_CERT}' \"$@\"; }}; {command}"],
        input=stdin, capture_output=True, cwd=cwd, check=False,
    )


def good(command: str, cwd: Path, stdin: bytes | None = None) -> tuple[bytes, str]:
    result = sh(command, cwd, stdin)
    assert result.returncode == 0, result.stderr.decode()
    assert b"Traceback" not in result.stderr
    return result.stdout, result.stderr.decode()


def bad(command: str, cwd: Path, stdin: bytes | None = None) -> str:
    """Exit status 1 and one error line (the last command of the pipe is skip-cert)."""
    result = sh(command, cwd, stdin)
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr.decode()
    assert lines[0].startswith("skip-cert: error: ")
    return lines[0]


@pytest.fixture
def pki(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.chdir(tmp_path)
    ok(capsys, "init-ca", "ca", "--subject", "CN=Pipe CA")
    ok(capsys, "genkey", "h.key", "--group", "ffdhe2048", "--public", "h.pub")
    ok(capsys, "issue", "--ca", "ca", "--key", "h.key", "--subject", "CN=h", "--ip", "10.0.0.1",
       "--out", "h.crt")
    return tmp_path


def test_a_whole_pki_in_pipes(pki: Path) -> None:
    out, _ = good("skip-cert genkey - --group x25519 | skip-cert issue --ca ca --key - "
                    "--subject CN=p --ip 10.0.0.9 --out - | tee p.crt | skip-cert verify - "
                    "--ca ca --ip 10.0.0.9", pki)
    assert out.decode().startswith("standard input: OK (x25519")
    cert = load_certificate(Path("p.crt").read_bytes())
    assert cert.subject_text == "CN=p,ipAddress=10.0.0.9"


def test_genkey_to_standard_output(pki: Path) -> None:
    out, err = good("skip-cert genkey - --group x25519", pki)
    assert out.startswith(b"-----BEGIN PRIVATE KEY-----\n") and out.endswith(b"-----\n")
    assert load_private_key(out).group.name == "x25519"
    assert "x25519 key written to standard output" in err  # the status line moved to stderr
    assert not Path("-").exists()
    out, err = good("skip-cert genkey k.pem --group x25519 --public -", pki)
    assert load_public_key(out) == load_private_key(Path("k.pem").read_bytes()).public
    assert "written to k.pem" in err
    assert "config_invalid" in bad("skip-cert genkey - --public -", pki)


@needs_openssl
def test_openssl_on_the_other_end_of_the_pipe(pki: Path) -> None:
    out, _ = good("skip-cert genkey - --group ffdhe2048 | openssl pkey -pubout", pki)
    assert out.startswith(b"-----BEGIN PUBLIC KEY-----")
    out, _ = good("skip-cert issue --ca ca --public h.pub --subject CN=q --out - "
                  "| openssl x509 -noout -subject", pki)
    assert out.decode().strip() == "subject=CN = q"
    ok_revoke, _ = good("skip-cert revoke --ca ca - --reason superseded < h.crt", pki)
    assert b"revoked serial" in ok_revoke
    out, err = good("skip-cert crl --ca ca --out - | openssl crl -noout -text", pki)
    serial = f"{load_certificate(Path('h.crt').read_bytes()).serial:X}"
    assert serial in out.decode().replace(":", "").upper() and "CRL 1 with 1" in err
    out, _ = good("openssl x509 -in h.crt -outform DER | skip-cert show - --json", pki)
    assert json.loads(out)["subject"] == "CN=h,ipAddress=10.0.0.1"
    out, _ = good("skip-cert export h.crt --format der --out - | openssl x509 -inform DER "
                  "-noout -subject", pki)
    assert b"CN = h" in out


def test_every_reader_takes_standard_input(pki: Path) -> None:
    crt = Path("h.crt").read_bytes()
    assert b"NSID 1   MKID 0a000001" in good("skip-cert name -", pki, crt)[0]
    assert good("skip-cert export - --format der", pki, crt)[0] == load_certificate(crt).der
    good("skip-cert crl --ca ca --out ca.crl", pki)
    for command, stdin in (
        ("skip-cert verify h.crt --ca -", Path("ca/ca.crt").read_bytes()),
        ("skip-cert verify h.crt --ca ca --crl -", Path("ca.crl").read_bytes()),
        ("skip-cert verify h.crt --ca ca --untrusted - ", b""),  # an empty bundle is refused
    ):
        result = sh(command, pki, stdin)
        assert (result.returncode == 0) == bool(stdin), result.stderr.decode()
    out, err = good("skip-cert issue --ca ca --public - --subject CN=r --out r.crt", pki,
                    Path("h.pub").read_bytes())
    assert "issued serial" in out.decode() and err == ""
    out, _ = good("skip-cert udh --key - --out - --days 1", pki, Path("h.key").read_bytes())
    public = load_private_key(Path("h.key").read_bytes()).public
    assert parse_udh(out).dh_key.public_value == public.public_value
    out, err = good("skip-cert udh --key h.key --out - --days 1", pki)
    assert hashlib.md5(out).hexdigest() in err  # the name printed beside the value


def test_passphrase_and_key_on_one_standard_input(pki: Path) -> None:
    subprocess.run([SKIP_CERT, "genkey", "locked.key", "--group", "x25519", "--passphrase-fd",
                    "0"], input=b"pw\n", cwd=pki, check=True, capture_output=True)
    key = Path("locked.key").read_bytes()
    out, _ = good("skip-cert show - --passphrase-fd 0 --json", pki, b"pw\n" + key)
    assert json.loads(out)["key"]["group"] == "x25519"


def test_standard_input_is_read_once(pki: Path) -> None:
    line = bad("skip-cert verify - --ca -", pki, Path("h.crt").read_bytes())
    assert "config_invalid" in line and "only one input" in line


def test_a_file_called_dash(pki: Path) -> None:
    good("skip-cert genkey ./- --group x25519", pki)
    assert load_private_key(Path("-").read_bytes()).group.name == "x25519"
    out, _ = good("skip-cert show ./- --json", pki, b"not this")
    assert json.loads(out)["kind"] == "private key"


def test_standard_input_is_bounded_and_checked(pki: Path) -> None:
    assert "larger than" in bad("head -c 1048577 /dev/zero | skip-cert show -", pki)
    assert "cert_malformed" in bad("skip-cert show - < /dev/null", pki)
    exactly = sh(f"head -c {files.MAX_INPUT} /dev/zero | skip-cert show -", pki)
    assert b"larger than" not in exactly.stderr and b"cert_malformed" in exactly.stderr
