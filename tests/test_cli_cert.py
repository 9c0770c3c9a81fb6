"""skip-cert end to end in a temporary directory: a CA, two hosts, a revoked host.

Most runs call ``main(argv)`` in-process (fast); one runs the installed console script to
prove the entry point and the exit status. openssl and dnspython read what the tool writes.
"""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
import sys
from pathlib import Path

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from skip.cli.cert import build_parser
from skip.crypto.dh import GROUPS
from skip.pki import DHPublicKey, load_certificate, parse_udh
from skip.pki.dhkey import dump_public_key

from .cli_support import ok, refused
from .pki_support import needs_openssl, openssl


@pytest.fixture
def pki(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A CA, host1 (ffdhe2048, v3), host2 (skip-1024, draft profile), host3 (x25519, revoked)."""
    monkeypatch.chdir(tmp_path)
    ok(capsys, "init-ca", "ca", "--subject", "CN=Test SKIP CA,O=Example")
    ok(capsys, "genkey", "host1.key", "--group", "ffdhe2048", "--public", "host1.pub")
    ok(capsys, "genkey", "host2.key", "--group", "skip-1024", "--allow-small")
    ok(capsys, "genkey", "host3.key", "--group", "x25519")
    for n, source, extra in (
        (1, "--public host1.pub", "--dns host1.example"),
        (2, "--key host2.key", "--profile draft"),
        (3, "--key host3.key", "--email ops@example.org"),
    ):
        ok(capsys, "issue", "--ca", "ca", *source.split(), "--subject", f"CN=host{n}",
           "--ip", f"10.0.0.{n}", *extra.split(), "--out", f"host{n}.crt")
    ok(capsys, "revoke", "--ca", "ca", "host3.crt", "--reason", "key_compromise")
    ok(capsys, "crl", "--ca", "ca", "--out", "ca.crl")
    return tmp_path


def test_the_small_pki(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for host in ("host1", "host2"):
        assert "OK" in ok(capsys, "verify", f"{host}.crt", "--ca", "ca/ca.crt", "--crl", "ca.crl")
    line = refused(capsys, "verify", "host3.crt", "--ca", "ca/ca.crt", "--crl", "ca.crl")
    assert "cert_revoked" in line and "key_compromise" in line
    assert "OK" in ok(capsys, "verify", "host3.crt", "--ca", "ca/ca.crt")  # without the CRL
    assert "OK" in ok(capsys, "verify", "host1.crt", "--ca", "ca", "--ip", "10.0.0.1")
    assert "cert_name_mismatch" in refused(
        capsys, "verify", "host1.crt", "--ca", "ca/ca.crt", "--ip", "10.0.0.2"
    )
    assert "cert_expired" in refused(
        capsys, "verify", "host1.crt", "--ca", "ca/ca.crt", "--at", "2099-01-01"
    )
    other = pki / "other"
    ok(capsys, "init-ca", other, "--subject", "CN=Other CA", "--key-type", "ecdsa-p256")
    assert "cert_untrusted" in refused(capsys, "verify", "host1.crt", "--ca", other / "ca.crt")


@needs_openssl
def test_openssl_agrees_with_the_cli(pki: Path) -> None:
    for host, good in (("host1", True), ("host2", True), ("host3", False)):
        result = openssl(
            "verify",
            "-crl_check",
            "-CRLfile",
            "ca.crl",
            "-CAfile",
            "ca/ca.crt",
            f"{host}.crt",
            check=False,
        )
        assert (result.returncode == 0) == good, result.stdout + result.stderr
    text = openssl("x509", "-text", "-noout", "-in", "host2.crt").stdout
    assert "Version: 1 (0x0)" in text and "dhKeyAgreement" in text
    crl_text = openssl("crl", "-text", "-noout", "-in", "ca.crl").stdout
    assert load_certificate(Path("host3.crt").read_bytes()).serial == int(
        crl_text.split("Serial Number: ")[1].split()[0], 16
    )


def test_json_output(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    info = json.loads(ok(capsys, "show", "host1.crt", "--json"))
    assert info["kind"] == "certificate" and info["version"] == 3
    assert info["key"]["group"] == "ffdhe2048" and info["key"]["encoding"] == "x942"
    assert info["subject_alt_names"] == {"ip": ["10.0.0.1"], "dns": ["host1.example"], "email": []}
    names = {(n["nsid"], n["mkid"]) for n in info["names"]}
    assert (1, "0a000001") in names
    assert (4, hashlib.md5(b"host1.example").hexdigest()) in names
    listed = json.loads(ok(capsys, "name", "host3.crt", "--json"))
    assert {
        "nsid": 9,
        "mkid": hashlib.md5(b"ops@example.org").hexdigest(),
        "label": "ops@example.org",
    } in listed
    crl = json.loads(ok(capsys, "show", "ca.crl", "--json"))
    assert crl["kind"] == "crl" and crl["crl_number"] == 1
    assert [r["reason"] for r in crl["revoked"]] == ["key_compromise"]
    key = json.loads(ok(capsys, "show", "host2.key", "--json"))
    assert key["kind"] == "private key" and key["key"]["group"] == "skip-1024"
    assert "host1" in ok(capsys, "show", "host1.crt")  # the human form too


def test_udh_flow(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = ok(capsys, "udh", "--key", "host1.key", "--out", "host1.udh", "--days", "30")
    name = out.split(": ")[1].strip()
    data = Path("host1.udh").read_bytes()
    assert hashlib.md5(data).hexdigest() == name
    assert parse_udh(data).fingerprint == name
    assert f"NSID 8   MKID {name}" in ok(capsys, "fingerprint", "host1.udh")
    assert "OK" in ok(capsys, "verify", "host1.udh", "--name", f"8:{name}")
    wrong = "8:" + "00" * 16
    assert "cert_name_mismatch" in refused(capsys, "verify", "host1.udh", "--name", wrong)
    # the UDH form of a certificate's key carries the certificate's validity
    ok(capsys, "export", "host2.crt", "--format", "udh", "--out", "host2.udh")
    assert (
        parse_udh(Path("host2.udh").read_bytes()).not_after
        == load_certificate(Path("host2.crt").read_bytes()).not_after
    )


def test_exports(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cert = load_certificate(Path("host1.crt").read_bytes())
    ok(capsys, "export", "host1.crt", "--format", "der", "--out", "host1.der")
    assert Path("host1.der").read_bytes() == cert.der
    ok(capsys, "export", "host1.der", "--format", "pem", "--out", "again.pem")
    assert Path("again.pem").read_bytes() == cert.pem()
    # one record per name: the dNSName first, then the address (tests/test_cli_cert_dns.py)
    first, second = ok(capsys, "export", "host1.crt", "--format", "dns").splitlines()
    assert second.split()[0] == "1.0.0.10.in-addr.arpa."
    owner, ttl, klass, rrtype, rdata = first.split(None, 4)
    assert (owner, ttl, klass, rrtype) == ("host1.example.", "3600", "IN", "CERT")
    parsed = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.CERT, rdata)
    assert parsed.certificate == cert.der and parsed.certificate_type == 1
    assert (parsed.key_tag, parsed.algorithm) == (0, 0)
    reverse = ok(capsys, "export", "host2.crt", "--format", "dns").split()[0]
    assert reverse == "2.0.0.10.in-addr.arpa."


def test_files_and_refusals(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for key in ("ca/ca.key", "host1.key", "host2.key"):
        assert stat.S_IMODE(Path(key).stat().st_mode) == 0o600
    before = Path("host1.key").read_bytes()
    assert "cert_exists" in refused(capsys, "genkey", "host1.key")
    assert Path("host1.key").read_bytes() == before
    ok(capsys, "genkey", "host1.key", "--force")
    assert Path("host1.key").read_bytes() != before
    assert "config_invalid" in refused(capsys, "genkey", "small.key", "--group", "skip-1024")
    assert "No such file" in refused(capsys, "show", "missing.crt")
    Path("junk.bin").write_bytes(b"\x30\x03\x02\x01")
    assert "cert_malformed" in refused(capsys, "show", "junk.bin")
    assert "cert_exists" in refused(capsys, "init-ca", "ca", "--subject", "CN=again")
    assert "cert_key_type" in refused(capsys, "name", "ca/ca.crt")
    group = GROUPS["ffdhe2048"]
    evil = DHPublicKey(group, (group.p - 1).to_bytes(group.public_size), "x942")
    Path("evil.pub").write_bytes(dump_public_key(evil))
    assert "bad_public_value" in refused(
        capsys,
        "issue",
        "--ca",
        "ca",
        "--public",
        "evil.pub",
        "--subject",
        "CN=evil",
        "--out",
        "evil.crt",
    )
    assert not Path("evil.crt").exists()


def test_passphrases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("pw").write_text("s3cret\n")
    ok(capsys, "init-ca", "ca", "--subject", "CN=Locked CA", "--key-type", "rsa-pss",
       "--rsa-bits", "2048", "--passphrase-file", "pw")
    ok(capsys, "genkey", "h.key", "--group", "x448", "--passphrase-file", "pw")
    assert b"ENCRYPTED PRIVATE KEY" in Path("h.key").read_bytes()
    issue_h = ("issue", "--ca", "ca", "--key", "h.key", "--key-passphrase-file", "pw",
               "--subject", "CN=h", "--out", "h.crt")
    assert "passphrase" in refused(capsys, *issue_h)  # the CA key's passphrase is missing
    ok(capsys, *issue_h, "--ca-passphrase-file", "pw")
    info = json.loads(ok(capsys, "show", "h.crt", "--json"))
    assert info["signature_algorithm"] == "rsassa_pss" and info["key"]["group"] == "x448"


def test_every_command_documents_an_example() -> None:
    parser = build_parser()
    assert "example:" in parser.format_help()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    for name, sub in subparsers.choices.items():
        text = sub.format_help()
        assert (
            "example:" in text and f"skip-cert {name if name != 'fingerprint' else 'name'}" in text
        )


def test_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("skip-cert")
    if not script.exists():
        pytest.skip("skip-cert is not installed in this environment")
    good = subprocess.run(
        [script, "genkey", tmp_path / "k", "--group", "x25519"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert good.returncode == 0, good.stderr
    bad = subprocess.run(
        [script, "show", tmp_path / "nothing"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    usage = subprocess.run([script, "frobnicate"], capture_output=True, text=True, check=False)
    assert usage.returncode == 2
