"""Passphrases for skip-cert from a file (as before), an environment variable or a file
descriptor: ``--passphrase-env VAR`` / ``--passphrase-fd N`` and the ``--key-`` and ``--ca-``
variants, so that scripts need not write a passphrase to disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .cli_support import ok, refused
from .pki_support import needs_openssl, openssl

SKIP_CERT = Path(sys.executable).with_name("skip-cert")
SECRET = "s3cret pass"


@pytest.fixture
def workdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SKIP_PW", SECRET)
    monkeypatch.delenv("SKIP_UNSET", raising=False)
    monkeypatch.setenv("SKIP_EMPTY", "")
    return tmp_path


def pipe_with(text: bytes) -> int:
    """A file descriptor to read ``text`` from (the write end is closed: EOF after it)."""
    read_end, write_end = os.pipe()
    os.write(write_end, text)
    os.close(write_end)
    return read_end


def test_passphrase_from_the_environment(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(capsys, "init-ca", "ca", "--subject", "CN=Env CA", "--passphrase-env", "SKIP_PW")
    ok(capsys, "genkey", "h.key", "--group", "x25519", "--passphrase-env", "SKIP_PW")
    assert b"ENCRYPTED PRIVATE KEY" in Path("h.key").read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in Path("ca/ca.key").read_bytes()
    assert "passphrase" in refused(capsys, "show", "h.key")
    info = json.loads(ok(capsys, "show", "h.key", "--json", "--passphrase-env", "SKIP_PW"))
    assert info["key"]["group"] == "x25519"
    ok(capsys, "issue", "--ca", "ca", "--key", "h.key", "--key-passphrase-env", "SKIP_PW",
       "--ca-passphrase-env", "SKIP_PW", "--subject", "CN=h", "--out", "h.crt")
    ok(capsys, "crl", "--ca", "ca", "--out", "ca.crl", "--ca-passphrase-env", "SKIP_PW")
    assert "OK" in ok(capsys, "verify", "h.crt", "--ca", "ca", "--crl", "ca.crl")


def test_passphrase_from_a_file_descriptor(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fd = pipe_with(SECRET.encode() + b"\n")
    ok(capsys, "genkey", "h.key", "--group", "ffdhe2048", "--passphrase-fd", str(fd))
    os.close(fd)
    ok(capsys, "init-ca", "ca", "--subject", "CN=Fd CA")
    fd = pipe_with(SECRET.encode() + b"\r\nignored second line\n")  # CRLF as from Windows
    ok(capsys, "issue", "--ca", "ca", "--key", "h.key", "--key-passphrase-fd", str(fd),
       "--subject", "CN=h", "--out", "h.crt")
    os.close(fd)
    fd = pipe_with(b"wrong\n")
    assert "wrong passphrase" in refused(capsys, "show", "h.key", "--passphrase-fd", str(fd))
    os.close(fd)


def test_only_the_first_line_is_taken_from_the_descriptor(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The rest of the stream stays for the next reader (a key on standard input after
    ``--passphrase-fd 0``), and the descriptor stays open."""
    fd = pipe_with(SECRET.encode() + b"\nthe rest\n")
    ok(capsys, "genkey", "h.key", "--group", "x25519", "--passphrase-fd", str(fd))
    assert os.read(fd, 100) == b"the rest\n"
    os.close(fd)


def test_a_descriptor_handed_to_the_console_script(workdir: Path) -> None:
    """As a shell does it: ``skip-cert genkey ... --passphrase-fd 3 3<pw`` (here: pass_fds)."""
    made = subprocess.run(
        [SKIP_CERT, "genkey", "h.key", "--group", "x25519", "--passphrase-fd", "0"],
        input=f"{SECRET}\n", capture_output=True, text=True, check=False,
    )
    assert made.returncode == 0, made.stderr
    fd = pipe_with(f"{SECRET}\n".encode())
    shown = subprocess.run(
        [SKIP_CERT, "show", "h.key", "--passphrase-fd", str(fd)],
        capture_output=True, text=True, check=False, pass_fds=(fd,),
    )
    os.close(fd)
    assert shown.returncode == 0 and "x25519" in shown.stdout, shown.stderr


@needs_openssl
def test_openssl_decrypts_what_the_environment_encrypted(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(capsys, "genkey", "h.key", "--group", "x25519", "--passphrase-env", "SKIP_PW",
       "--public", "h.pub")
    out = openssl("pkey", "-in", "h.key", "-passin", "env:SKIP_PW", "-pubout").stdout
    assert out == Path("h.pub").read_text()
    wrong = openssl("pkey", "-in", "h.key", "-passin", "pass:nope", "-noout", check=False)
    assert wrong.returncode != 0


@pytest.mark.parametrize(("option", "value", "why"), [
    ("--passphrase-env", "SKIP_UNSET", "not set"),
    ("--passphrase-env", "SKIP_EMPTY", "is empty"),
    ("--passphrase-env", "A=B", "bad environment variable"),
    ("--passphrase-fd", "97", "file descriptor 97: Bad file descriptor"),
    ("--passphrase-fd", "EMPTY", "the passphrase is empty"),
])
def test_bad_sources_are_refused_before_a_key_is_written(
    workdir: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, why: str
) -> None:
    fd = pipe_with(b"\n") if value == "EMPTY" else None
    line = refused(capsys, "genkey", "k.pem", "--group", "x25519", option,
                   str(fd) if fd is not None else value)
    if fd is not None:
        os.close(fd)
    assert why in line, line
    assert not Path("k.pem").exists()
    refused(capsys, "init-ca", "c2", "--subject", "CN=x", option,
            value if fd is None else str(pipe_with(b"")))
    assert not Path("c2/ca.key").exists()


@pytest.mark.parametrize("argv", [
    ("genkey", "k.pem", "--passphrase-file", "pw", "--passphrase-env", "SKIP_PW"),
    ("genkey", "k.pem", "--passphrase-env", "SKIP_PW", "--passphrase-fd", "0"),
    ("genkey", "k.pem", "--passphrase-fd", "-1"),
    ("genkey", "k.pem", "--passphrase-fd", "stdin"),
    ("genkey", "k.pem", "--passphrase-fd", "99999999999999999999"),  # was an OverflowError
])
def test_two_sources_or_a_bad_number_are_usage_errors(
    workdir: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    from skip.cli.cert import main

    with pytest.raises(SystemExit) as stop:
        main(list(argv))
    assert stop.value.code == 2 and "Traceback" not in capsys.readouterr().err
    assert not Path("k.pem").exists()
