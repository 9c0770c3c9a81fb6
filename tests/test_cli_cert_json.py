"""``--json`` on every skip-cert command: one JSON document on standard output, for
refusals too (``{"ok": false, "reason": ..., "detail": ...}``), with the exit status and the
stderr line of the plain mode."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from skip.pki import load_certificate, load_crls, parse_udh

from .cli_support import ok, run
from .pki_support import needs_openssl, openssl


@pytest.fixture
def pki(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.chdir(tmp_path)
    ok(capsys, "init-ca", "ca", "--subject", "CN=Json CA")
    ok(capsys, "init-ca", "other", "--subject", "CN=Other CA")
    ok(capsys, "genkey", "h.key", "--group", "ffdhe2048", "--public", "h.pub")
    ok(capsys, "issue", "--ca", "ca", "--key", "h.key", "--subject", "CN=h", "--ip", "10.0.0.1",
       "--out", "h.crt")
    return tmp_path


def json_run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code, out, err = run(capsys, *argv, "--json")
    return code, json.loads(out), err


# (argv, expected plain exit status) - each run twice, with and without --json
CASES = [
    (("verify", "h.crt", "--ca", "ca"), 0),
    (("verify", "h.crt", "--ca", "other"), 1),
    (("verify", "h.crt", "--ca", "ca", "--ip", "10.0.0.2"), 1),
    (("verify", "h.crt", "--ca", "ca", "--at", "2099-01-01"), 1),
    (("verify", "missing.crt", "--ca", "ca"), 1),
    (("issue", "--ca", "ca", "--public", "h.pub", "--subject", "CN=j", "--out", "j.crt"), 0),
    (("issue", "--ca", "ca", "--public", "h.pub", "--subject", "CN=j", "--out", "h.crt"), 1),
    (("issue", "--ca", "ca", "--public", "h.key", "--subject", "CN=j", "--out", "j2.crt"), 1),
    (("crl", "--ca", "ca", "--out", "ca.crl"), 0),
    (("crl", "--ca", "nowhere", "--out", "x.crl"), 1),
    (("init-ca", "ca2", "--subject", "CN=Two"), 0),
    (("init-ca", "ca", "--subject", "CN=Again"), 1),
    (("genkey", "k.key", "--group", "x25519"), 0),
    (("genkey", "small.key", "--group", "skip-1024"), 1),
    (("udh", "--key", "h.key", "--out", "h.udh"), 0),
    (("udh", "--public", "missing.pub", "--out", "x.udh"), 1),
    (("revoke", "--ca", "ca", "--serial", "abc"), 0),
    (("revoke", "--ca", "ca", "--serial", "zz"), 1),
    (("export", "h.crt", "--format", "dns"), 0),
    (("export", "h.pub", "--format", "dns"), 1),
    (("show", "h.crt"), 0),
    (("show", "garbage"), 1),
    (("name", "h.crt"), 0),
    (("name", "ca/ca.crt"), 1),
]


@pytest.mark.parametrize(("argv", "status"), CASES,
                         ids=[" ".join(argv)[:50] for argv, _ in CASES])
def test_json_and_plain_agree(
    pki: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory, argv: tuple[str, ...], status: int,
) -> None:
    Path("garbage").write_bytes(b"garbage")
    # each mode in its own copy of the directory, so the first run cannot change the second
    plain, as_json = tmp_path_factory.mktemp("plain"), tmp_path_factory.mktemp("json")
    for copy in (plain, as_json):
        shutil.copytree(pki, copy, dirs_exist_ok=True)
    monkeypatch.chdir(plain)
    plain_code, _, plain_err = run(capsys, *argv)
    monkeypatch.chdir(as_json)
    code, out, err = run(capsys, *argv, "--json")
    assert plain_code == code == status, (plain_err, err)
    assert err == plain_err  # the stderr line is the same; stdout is JSON instead
    document = json.loads(out)
    if code == 0:
        assert isinstance(document, list) or document.get("ok", True) is True
    else:
        reason = err.split(": ")[2]
        assert document == {"ok": False, "reason": reason,
                            "detail": err.strip().split(f"{reason}: ", 1)[1]}


def test_usage_errors_stay_exit_status_2(
    pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from skip.cli.cert import main

    for argv in (["verify", "--json"], ["crl", "--ca", "ca", "--json", "--days", "0"]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2
    capsys.readouterr()


@needs_openssl
def test_what_json_says_is_what_was_written(
    pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, issued, _ = json_run(capsys, "issue", "--ca", "ca", "--key", "h.key", "--subject",
                               "CN=j", "--dns", "j.example", "--out", "j.crt")
    assert code == 0 and issued["ok"] and issued["out"] == "j.crt"
    serial = openssl("x509", "-in", "j.crt", "-noout", "-serial").stdout.split("=")[1].strip()
    assert int(issued["certificate"]["serial"], 16) == int(serial, 16)
    assert issued["certificate"]["not_after"].endswith("Z")
    _, verified, _ = json_run(capsys, "verify", "j.crt", "--ca", "ca", "--dns", "j.example")
    assert verified["ok"] and verified["kind"] == "certificate" and verified["group"] == "ffdhe2048"
    assert any(n["label"] == "j.example" and n["nsid"] == 4 for n in verified["names"])
    _, revoked, _ = json_run(capsys, "revoke", "--ca", "ca", "j.crt", "--reason",
                             "key_compromise")
    assert [r["serial"] for r in revoked["revoked"]] == [issued["certificate"]["serial"]]
    _, again, _ = json_run(capsys, "revoke", "--ca", "ca", "j.crt")
    assert again["revoked"] == [] and again["already_revoked"] == [issued["certificate"]["serial"]]
    _, crl, _ = json_run(capsys, "crl", "--ca", "ca", "--out", "ca.crl")
    assert crl["crl"]["crl_number"] == load_crls(Path("ca.crl").read_bytes())[0].number == 1
    assert [r["reason"] for r in crl["crl"]["revoked"]] == ["key_compromise"]
    text = openssl("crl", "-in", "ca.crl", "-noout", "-text").stdout
    assert "Key Compromise" in text
    code, refused_doc, err = json_run(capsys, "verify", "j.crt", "--ca", "ca", "--crl", "ca.crl")
    assert code == 1 and refused_doc["reason"] == "cert_revoked" and "cert_revoked" in err
    witness = openssl("verify", "-crl_check", "-CRLfile", "ca.crl", "-CAfile", "ca/ca.crt",
                      "j.crt", check=False)
    assert witness.returncode != 0 and "revoked" in witness.stdout + witness.stderr


def test_json_of_the_other_commands(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, made, _ = json_run(capsys, "init-ca", "ca3", "--subject", "CN=Three", "--key-type",
                          "ecdsa-p256")
    assert made["certificate"]["ca"] is True and made["key_type"] == "ecdsa-p256"
    assert made["certificate"]["subject"] == load_certificate(
        Path("ca3/ca.crt").read_bytes()).subject_text
    _, key, _ = json_run(capsys, "genkey", "x.key", "--group", "x25519", "--public", "x.pub")
    assert key["key"]["group"] == "x25519" and key["encrypted"] is False
    assert key["public_out"] == "x.pub"
    _, udh, _ = json_run(capsys, "udh", "--key", "h.key", "--out", "h.udh", "--days", "3")
    assert udh["udh"]["md5_fingerprint"] == parse_udh(Path("h.udh").read_bytes()).fingerprint
    _, der, _ = json_run(capsys, "export", "h.crt", "--format", "der")
    assert base64.b64decode(der["base64"]) == load_certificate(Path("h.crt").read_bytes()).der
    _, pem, _ = json_run(capsys, "export", "h.crt", "--format", "pem")
    assert pem["text"] == Path("h.crt").read_text()
    _, written, _ = json_run(capsys, "export", "h.crt", "--format", "der", "--out", "h.der")
    assert written["bytes"] == Path("h.der").stat().st_size and "base64" not in written


def test_json_and_standard_output_data_do_not_mix(
    pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (("issue", "--ca", "ca", "--public", "h.pub", "--subject", "CN=q", "--out", "-"),
                 ("genkey", "-", "--group", "x25519"),
                 ("genkey", "q.key", "--group", "x25519", "--public", "-"),
                 ("crl", "--ca", "ca", "--out", "-")):
        code, document, err = json_run(capsys, *argv)
        assert code == 1 and document["reason"] == "config_invalid", err
    assert not Path("q.key").exists()
