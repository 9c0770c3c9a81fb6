"""The three tools under a demanding operator: wrong files, bad values, damaged state.

The rule (issue 4): a failure is one line ``<tool>: ... <reason>: <why>`` with a non-zero
exit status, never a traceback; nothing is overwritten without --force; an interrupted write
never leaves a half-written file. Each case here was found by trying it on the tools.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from skip import files
from skip.cli import cert, skipctl, skipd

from .cli_support import ok, refused
from .pki_support import needs_openssl, openssl

SKIP_CERT = Path(sys.executable).with_name("skip-cert")


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> str:
    """argparse's refusal: exit status 2 and the error as the last line."""
    with pytest.raises(SystemExit) as stop:
        cert.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err, err
    return err.strip().splitlines()[-1]


@pytest.fixture
def pki(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A CA, a DH key, a certificate, and a few wrong files to give where others belong."""
    monkeypatch.chdir(tmp_path)
    ok(capsys, "init-ca", "ca", "--subject", "CN=Robust CA")
    ok(capsys, "genkey", "h.key", "--group", "x25519", "--public", "h.pub")
    ok(capsys, "issue", "--ca", "ca", "--key", "h.key", "--subject", "CN=h", "--out", "h.crt")
    ok(capsys, "export", "h.crt", "--format", "der", "--out", "h.der")
    Path("garbage.pem").write_bytes(b"garbage\n")
    Path("empty.pem").write_bytes(b"")
    Path("truncated.pem").write_bytes(Path("h.crt").read_bytes()[:200])
    Path("adir").mkdir()
    return tmp_path


ISSUE = ("issue", "--ca", "ca", "--key", "h.key", "--subject", "CN=x", "--out", "x.crt")

WRONG_INPUTS = [
    ("show", "garbage.pem"),
    ("show", "empty.pem"),
    ("show", "truncated.pem"),
    ("show", "adir"),
    ("show", "missing.pem"),
    ("show", "ca/ca.key"),  # a signing key where a DH object is expected
    ("verify", "h.crt", "--ca", "h.key"),  # a private key as the trust anchor
    ("verify", "h.crt", "--ca", "h.der"),  # a DH certificate as the trust anchor
    ("verify", "h.crt", "--ca", "garbage.pem"),
    ("verify", "h.crt", "--ca", "adir"),  # a directory that is not a CA directory
    ("verify", "h.crt", "--ca", "ca", "--crl", "h.crt"),
    ("verify", "h.crt", "--ca", "ca", "--untrusted", "h.key"),
    ("verify", "h.pub", "--ca", "ca"),
    ("verify", "h.crt", "--ca", "ca", "--dns", "\u00fc.example"),
    ("verify", "h.crt", "--ca", "ca", "--ip", "999.1.1.1"),
    ("verify", "h.crt", "--ca", "ca", "--at", "@-99999999999"),
    ("issue", "--ca", "h.crt", "--key", "h.key", "--subject", "CN=x", "--out", "x.crt"),
    ("issue", "--ca", "ca", "--key", "h.crt", "--subject", "CN=x", "--out", "x.crt"),
    ("issue", "--ca", "ca", "--public", "h.der", "--subject", "CN=x", "--out", "x.crt"),
    (*ISSUE, "--ip", "999.1.1.1"),
    (*ISSUE, "--dns", "bad..name!"),
    (*ISSUE, "--dns", ""),
    (*ISSUE, "--email", "not-a-mailbox"),
    (*ISSUE, "--not-before", "yesterday"),
    (*ISSUE, "--not-before", "@-99999999999"),
    (*ISSUE, "--not-before", "@999999999999999999999"),
    ("issue", "--ca", "ca", "--key", "h.key", "--subject", "CN=x", "--out", "nodir/x.crt"),
    ("issue", "--ca", "ca", "--key", "h.key", "--subject", "CN=x", "--out", "adir", "--force"),
    ("revoke", "--ca", "ca", "--serial", "zz"),
    ("revoke", "--ca", "ca", "--serial", "-5"),
    ("revoke", "--ca", "ca", "--serial", "0"),
    ("init-ca", "h.crt", "--subject", "CN=x"),  # a file where a directory is expected
]


@pytest.mark.parametrize("argv", WRONG_INPUTS, ids=lambda a: " ".join(a)[:60])
def test_wrong_input_is_one_line_with_a_reason(
    pki: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    refused(capsys, *argv)
    assert not Path("x.crt").exists()


@pytest.mark.parametrize("argv", [
    ("issue", "--ca", "ca", "--key", "h.key", "--subject", "CN=x", "--out", "x.crt", "--days", d)
    for d in ("0", "-5", "99999999999999", "ten")
] + [
    ("crl", "--ca", "ca", "--out", "x.crl", "--days", d) for d in ("0", "999999999999")
] + [
    ("init-ca", "c2", "--subject", "CN=x", "--path-length", "-1"),
    ("init-ca", "c2", "--subject", "CN=x", "--key-type", "rsa-pss", "--rsa-bits", "99999"),
], ids=lambda a: " ".join(a[-2:]))
def test_absurd_numbers_are_refused_on_the_command_line(
    pki: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    """Before: --days 0 failed deep inside with a misleading cert_expired, a huge CRL --days
    failed with a bare "Value too large", --path-length -1 wrote pathlen:-1 into a CA
    certificate and --rsa-bits 99999 generated for tens of minutes."""
    usage_error(capsys, *argv)
    assert not Path("c2").exists() and not Path("x.crt").exists()


def test_messages_that_span_lines_are_folded(
    pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = refused(capsys, "issue", "--ca", "ca", "--public", "h.der", "--subject", "CN=x",
                   "--out", "x.crt")
    assert line.startswith("skip-cert: error: cert_malformed: ")


def test_empty_passphrase_file_does_not_write_an_unencrypted_key(
    pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Path("empty.pw").write_bytes(b"\n")
    assert "passphrase" in refused(capsys, "genkey", "k.pem", "--passphrase-file", "empty.pw")
    assert not Path("k.pem").exists()
    refused(capsys, "init-ca", "c2", "--subject", "CN=x", "--passphrase-file", "empty.pw")
    assert not Path("c2/ca.key").exists()


def test_issuing_from_an_expired_ca_says_so(
    pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(capsys, "init-ca", "old", "--subject", "CN=Old", "--not-before", "2020-01-01",
       "--days", "30")
    line = refused(capsys, "issue", "--ca", "old", "--key", "h.key", "--subject", "CN=x",
                   "--out", "x.crt")
    assert "cert_expired" in line and "CN=Old expired at 2020-01-31" in line


def test_revoking_twice_keeps_one_entry(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok(capsys, "revoke", "--ca", "ca", "--serial", "1234")
    assert "already" in ok(capsys, "revoke", "--ca", "ca", "--serial", "1234")
    assert len(json.loads(Path("ca/revoked.json").read_text())["revoked"]) == 1


@pytest.mark.parametrize("state", [
    "not json", "[1, 2]", '{"crl_number": "a", "revoked": []}',
    '{"crl_number": 1, "revoked": [{"serial": "xyz", "revoked_at": 1}]}',
    '{"crl_number": 1, "revoked": [{"serial": "-5", "revoked_at": 1}]}',
    '{"crl_number": 1, "revoked": [{"serial": "12"}]}',
])
@pytest.mark.parametrize("command", [
    ("revoke", "--ca", "ca", "--serial", "99"), ("crl", "--ca", "ca", "--out", "x.crl"),
])
def test_damaged_revocation_state_is_refused_and_left_alone(
    pki: Path, capsys: pytest.CaptureFixture[str], state: str, command: tuple[str, ...]
) -> None:
    Path("ca/revoked.json").write_text(state)
    assert "revoked.json" in refused(capsys, *command)
    assert Path("ca/revoked.json").read_text() == state
    assert not Path("x.crl").exists()


def test_huge_input_is_refused_not_read_into_memory(
    pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with open("huge.pem", "wb") as handle:
        handle.truncate(files.MAX_INPUT + 1)
    assert "larger than" in refused(capsys, "show", "huge.pem")


def test_failed_write_keeps_the_file_force_was_replacing(pki: Path) -> None:
    """A write that fails halfway (here: the file size limit, like a full disk) must leave
    the old key whole and no stray temporary file. Before, --force truncated the old key
    first and left a few hundred bytes of the new one."""
    old = Path("h.key").read_bytes()
    listing = sorted(os.listdir("."))

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))

    result = subprocess.run(
        [SKIP_CERT, "genkey", "h.key", "--group", "ffdhe2048", "--force"],
        capture_output=True, text=True, preexec_fn=small_files, check=False,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("skip-cert: error: io_error: h.key: File too large")
    assert Path("h.key").read_bytes() == old
    assert sorted(os.listdir(".")) == listing


def test_private_key_is_0600_from_the_first_byte(
    pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old_umask = os.umask(0)
    try:
        ok(capsys, "genkey", "k.pem", "--group", "x25519")
        ok(capsys, "genkey", "h.pub", "--group", "x25519", "--force")  # replaced a 0644 file
    finally:
        os.umask(old_umask)
    assert Path("k.pem").stat().st_mode & 0o777 == 0o600
    assert Path("h.pub").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("socket_path", ["missing.sock", "regular.file", "adir", "x" * 200])
def test_skipctl_without_a_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    socket_path: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("regular.file").write_text("not a socket\n")
    Path("adir").mkdir()
    assert skipctl.main(["status", "-s", socket_path]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("skipctl: io_error: "), err


@pytest.mark.parametrize("config", [
    b"garbage", b"\xff\xfe", b'[daemon]\nmtu = "x"\n', b"[daemon]\nmtu = 99999999999999999999\n",
    b"[[peer]]\nname = 1\n",
])
def test_skipd_check_with_broken_configs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config: bytes
) -> None:
    path = tmp_path / "skipd.toml"
    path.write_bytes(config)
    assert skipd.main(["-c", str(path), "--check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.match(r"^skipd: [a-z_]+: ", err[0]), err


@pytest.mark.parametrize("swap", ["cert-as-key", "key-as-cert", "garbage-crl", "no-anchor",
                                  "endless-key"])
def test_skipd_check_reads_identity_files_before_any_rule_protects(
    pki: Path, capsys: pytest.CaptureFixture[str], swap: str
) -> None:
    """Before, ``--check`` said OK for a certificate given as the private key whenever no
    rule protected yet: the files were first read when the operator turned protection on.
    A device as the key (/dev/zero) was read until the process was killed."""
    files = {"key": "h.key", "cert": "h.crt", "anchor": "ca/ca.crt", "crls": ""}
    files.update({"cert-as-key": {"key": "h.crt"}, "key-as-cert": {"cert": "h.key"},
                  "garbage-crl": {"crls": '"garbage.pem"'},
                  "no-anchor": {"anchor": "h.crt"},
                  "endless-key": {"key": "/dev/zero"}}[swap])  # was read until killed
    config = pki / "skipd.toml"
    config.write_text(
        f'[identity]\nprivate_key = "{files["key"]}"\ncertificate = "{files["cert"]}"\n'
        f'trust_anchors = ["{files["anchor"]}"]\ncrls = [{files["crls"]}]\n'
    )
    assert skipd.main(["-c", str(config), "--check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("skipd: config_invalid: "), err


def test_skipd_check_accepts_matching_identity_files(
    pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = pki / "skipd.toml"
    config.write_text('[identity]\nprivate_key = "h.key"\ncertificate = "h.crt"\n'
                      'trust_anchors = ["ca/ca.crt"]\n')
    assert skipd.main(["-c", str(config), "--check"]) == 0, capsys.readouterr().err


@pytest.mark.parametrize(("reply", "command"), [
    (b"[1, 2]\n", "status"),
    (b'{"ok": true, "result": [1]}\n', "status"),
    (b'{"ok": true, "result": [1]}\n', "peers"),
    (b'{"ok": true, "result": {"drops": 5}}\n', "counters"),
    (b'{"ok": "yes"}\n', "stop"),
])
def test_skipctl_with_something_else_on_the_socket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reply: bytes, command: str
) -> None:
    """Another program (or another skipd version) answering on the socket: before, skipctl
    printed an AttributeError/TypeError traceback while formatting the reply."""
    path = tmp_path / "other.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()

    def answer_once() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(reply)

    thread = threading.Thread(target=answer_once, daemon=True)
    thread.start()
    try:
        assert skipctl.main([command, "-s", str(path)]) == 2
    finally:
        thread.join(5)
        listener.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("skipctl: io_error: "), err


def test_a_crl_number_is_never_published_twice(
    pki: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, the CRL was written first and the new number saved after it: when saving
    failed (disk full), the next CRL went out with the same number (RFC 5280 section 5.2.3
    wants it to increase)."""
    def disk_full(self: cert.CaDir, state: dict[str, object]) -> None:
        raise OSError(28, "No space left on device", str(self.path / cert.CA_STATE))

    with monkeypatch.context() as patch:
        patch.setattr(cert.CaDir, "save_state", disk_full)
        assert "io_error" in refused(capsys, "crl", "--ca", "ca", "--out", "first.crl")
    ok(capsys, "crl", "--ca", "ca", "--out", "second.crl")
    numbers = [json.loads(ok(capsys, "show", p, "--json"))["crl_number"]
               for p in sorted(Path().glob("*.crl"))]
    assert len(numbers) == len(set(numbers)) == 1


def test_crl_refuses_an_existing_file_without_using_up_a_number(
    pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(capsys, "crl", "--ca", "ca", "--out", "a.crl")
    assert "cert_exists" in refused(capsys, "crl", "--ca", "ca", "--out", "a.crl")
    assert json.loads(Path("ca/revoked.json").read_text())["crl_number"] == 1


def test_init_ca_that_fails_halfway_can_be_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ca.key written, ca.crt refused (file size limit, like a full disk): before, the lone
    key stayed and the next init-ca said "ca.key exists"; a bad --subject left an empty
    directory behind."""
    monkeypatch.chdir(tmp_path)

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))  # ed25519 key fits, cert not

    def init_ca(*extra: str, limit: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SKIP_CERT, "init-ca", "ca", "--subject", "CN=x", *extra],
                              capture_output=True, text=True, check=False,
                              preexec_fn=small_files if limit else None)

    failed = init_ca(limit=True)
    assert failed.returncode == 1 and "io_error" in failed.stderr, failed.stderr
    assert list(Path("ca").iterdir()) == []
    assert init_ca().returncode == 0
    assert sorted(p.name for p in Path("ca").iterdir()) == ["ca.crt", "ca.key", "revoked.json"]
    bad = subprocess.run([SKIP_CERT, "init-ca", "ca2", "--subject", "XX=y"],
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 1 and not Path("ca2").exists(), bad.stderr


@pytest.mark.parametrize("public", ["h.pub", "k.pem", "./k.pem"])
def test_genkey_refuses_before_writing_the_key(
    pki: Path, capsys: pytest.CaptureFixture[str], public: str
) -> None:
    """Before, the key was written and only then the --public file refused (it existed, or
    was the key itself): a key without its public half was left, blocking the rerun."""
    refused(capsys, "genkey", "k.pem", "--group", "x25519", "--public", public)
    assert not Path("k.pem").exists()


@needs_openssl
def test_validity_before_1950_is_encoded_as_generalized_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """UTCTime covers 1950-2049 only (RFC 5280 section 4.1.2.5); before, an earlier
    --not-before failed inside asn1crypto instead of using GeneralizedTime."""
    monkeypatch.chdir(tmp_path)
    ok(capsys, "init-ca", "ca", "--subject", "CN=Old", "--not-before", "1949-12-31",
       "--days", "7")
    text = openssl("x509", "-in", "ca/ca.crt", "-noout", "-startdate", "-enddate").stdout
    assert "Dec 31 00:00:00 1949 GMT" in text and "Jan  7 00:00:00 1950 GMT" in text


def test_public_files_follow_the_umask(
    pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old_umask = os.umask(0o077)
    try:
        ok(capsys, "genkey", "k.pem", "--group", "x25519", "--public", "k.pub")
    finally:
        os.umask(old_umask)
    assert Path("k.pub").stat().st_mode & 0o777 == 0o600
    assert Path("k.pem").stat().st_mode & 0o777 == 0o600


def test_a_reader_that_stops_early_is_not_an_error(pki: Path) -> None:
    """`skip-cert show h.crt | head -1` printed `io_error: Broken pipe` and exited 1."""
    proc = subprocess.run(f"'{SKIP_CERT}' show h.crt --json | true; exit ${{PIPESTATUS[0]}}",
                          shell=True, executable="/bin/bash", capture_output=True, text=True,
                          cwd=pki, check=False)
    assert (proc.returncode, proc.stderr) == (0, "")


def test_skipd_refuses_a_private_key_others_can_read(
    pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 15 item 5, as ssh does: a world- or group-readable key is refused with the fix
    in the message, unless identity.allow_readable_key says the operator means it."""
    config = pki / "skipd.toml"
    body = ('[identity]\nprivate_key = "h.key"\ncertificate = "h.crt"\n'
            'trust_anchors = ["ca/ca.crt"]\n')
    config.write_text(body)
    (pki / "h.key").chmod(0o644)
    assert skipd.main(["-c", str(config), "--check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("skipd: config_invalid: ")
    assert "readable by group or others (mode 0644)" in err[0] and "chmod 600" in err[0]
    (pki / "h.key").chmod(0o640)
    assert skipd.main(["-c", str(config), "--check"]) == 2
    assert "mode 0640" in capsys.readouterr().err
    config.write_text(body + "allow_readable_key = true\n")
    assert skipd.main(["-c", str(config), "--check"]) == 0, capsys.readouterr().err
    config.write_text(body)
    (pki / "h.key").chmod(0o600)
    assert skipd.main(["-c", str(config), "--check"]) == 0, capsys.readouterr().err
