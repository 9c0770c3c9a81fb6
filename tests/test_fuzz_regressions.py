"""Regression tests for the findings of the fuzzing campaign: each one replays the input that
used to escape as a foreign exception (a Rust panic, UnicodeEncodeError, ValueError,
RecursionError, struct.error) or to take unbounded time or memory, and checks the
reason-coded answer that replaced it. The fuzz targets themselves are in
tests/test_fuzz_parsers.py."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path

import pytest
from asn1crypto import algos, keys, x509
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from skip.cli import skipd
from skip.crypto.dh import GROUPS, MAX_CUSTOM_MODP_BITS, validate_parameters
from skip.crypto.replay import MAX_WINDOW, ReplayWindow
from skip.daemon.config import load_config, parse_config
from skip.daemon.control import ControlServer
from skip.errors import (
    AlgorithmError,
    CertificateError,
    ConfigError,
    KeyingError,
    ParseError,
    ReplayError,
)
from skip.files import read_bounded
from skip.pki import Certificate, Policy, Subject, generate_key, issue, parse_udh, validate_udh
from skip.pki.asn1 import PrivateKeyInfo
from skip.pki.certificate import load_certificate, parse_certificate
from skip.pki.dhkey import MAX_PKCS8_ITERATIONS, load_private_key, private_key_der
from skip.pki.names import build_name, dns_name, mailbox_name, parse_dn
from skip.pki.pemfile import pem_blocks, pem_encode
from skip.wire.pcap import encode_pcap
from skip.wire.udh import UnsignedDH, ntp_seconds

from .cli_support import ok, refused
from .pki_support import DAY, NOW, Ca, make_ca, make_leaf


def parse_certificate_file(path: Path) -> Certificate:
    return load_certificate(path.read_bytes())

MODP2048 = GROUPS["modp-2048"]
CUSTOM = Policy(allow_custom_groups=True)


def _udh(p: int, g: int, y: int) -> bytes:
    return UnsignedDH(ntp_seconds(NOW - DAY), ntp_seconds(NOW + DAY), p, g, y).encode()


# --- 1. custom generators over an OpenSSL-named prime (was: pyo3_runtime.PanicException) -----


def test_square_generator_over_an_rfc3526_prime_is_a_q_order_group_not_a_panic() -> None:
    """g = 4 over the RFC 3526 2048-bit prime: g^q = 1, which OpenSSL refuses to output."""
    p, q = MODP2048.p, MODP2048.q
    group = validate_parameters(p, 4)
    assert group.q == q
    a, b = group.generate_private(), group.generate_private()
    assert group.shared_secret(a, group.public_value(b)) == group.shared_secret(
        b, group.public_value(a)
    )


def test_non_residue_generator_over_an_rfc3526_prime_computes_in_python() -> None:
    """g = p-2 generates the whole group (q None): g^q = p-1, another result OpenSSL refuses;
    such a group must never reach the OpenSSL path."""
    p, q = MODP2048.p, MODP2048.q
    group = validate_parameters(p, p - 2)
    assert group.q is None
    assert group.public_value(q.to_bytes(group.public_size)) == (p - 1).to_bytes(256)


def test_x942_q_with_a_generator_outside_the_subgroup_is_refused() -> None:
    p, q = MODP2048.p, MODP2048.q
    with pytest.raises(KeyingError, match="order-q subgroup") as err:
        validate_parameters(p, p - 2, q)
    assert err.value.reason == "bad_group"


def test_udh_with_g4_over_modp2048_validates_and_skip_cert_verify_says_ok(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = MODP2048.p
    y = pow(4, 0x1234567890ABCDEF1234567890ABCDEF, p)
    encoding = _udh(p, 4, y)
    udh = parse_udh(encoding)
    assert not udh.dh_key.well_known
    peer = validate_udh(udh, NOW, expected_name=udh.name.mkid, policy=CUSTOM)
    assert peer.group.q == MODP2048.q
    path = tmp_path / "g4.udh"
    path.write_bytes(encoding)
    name = f"8:{hashlib.md5(encoding).hexdigest()}"
    at = f"@{NOW}"
    out = ok(capsys, "verify", path, "--name", name, "--at", at, "--allow-custom-groups")
    assert "OK" in out
    line = refused(capsys, "verify", path, "--name", name, "--at", at)
    assert "bad_group" in line


# --- 7. the size of a custom modulus (was: hours of Miller-Rabin) ------------------------------


def test_custom_modulus_above_the_bound_is_refused_before_any_primality_test() -> None:
    p = (1 << (8 * 65535)) - 1  # the largest p a UDH value can carry
    start = time.perf_counter()
    with pytest.raises(KeyingError, match="above 8192") as err:
        validate_parameters(p, 2)
    assert err.value.reason == "bad_group"
    assert time.perf_counter() - start < 0.5
    udh = parse_udh(_udh(p, 2, 5))
    with pytest.raises(CertificateError) as cert_err:
        validate_udh(udh, NOW, expected_name=udh.name.mkid, policy=CUSTOM)
    assert cert_err.value.reason == "bad_group"
    assert MAX_CUSTOM_MODP_BITS == 8192


# --- 2. names that asn1crypto decodes to Unicode (was: UnicodeEncodeError in skip_names) ------


@pytest.fixture(scope="module")
def ca() -> Ca:
    return make_ca("Fuzz CA")


def _leaf(ca: Ca, **kwargs: object) -> Certificate:
    return make_leaf(ca, generate_key(GROUPS["x25519"]), **kwargs)  # type: ignore[arg-type]


def test_an_a_label_dns_name_keeps_its_certified_spelling(ca: Ca) -> None:
    """asn1crypto turned SAN dNSName xn--bcher-kva.example into "bücher.example", on which
    the MD5 name crashed; NSID 4 is the MD5 of the A-label, as DNS spells it."""
    cert = _leaf(ca, dns=("xn--bcher-kva.example",), email=("a@xn--bcher-kva.example",))
    assert cert.san_dns == ("xn--bcher-kva.example",)
    assert cert.san_email == ("a@xn--bcher-kva.example",)
    names = {(n.nsid, n.mkid) for n in cert.skip_names()}
    assert (4, hashlib.md5(b"xn--bcher-kva.example").digest()) in names
    assert (9, hashlib.md5(b"a@xn--bcher-kva.example").digest()) in names


def test_an_invalid_a_label_no_longer_makes_the_certificate_unreadable(ca: Ca) -> None:
    """"xn--zz" is not valid punycode: asn1crypto's IDNA decoding raised on it."""
    cert = _leaf(ca, dns=("xn--zz.example",))
    assert (4, hashlib.md5(b"xn--zz.example").digest()) in {
        (n.nsid, n.mkid) for n in cert.skip_names()
    }


def _with_high_bytes(cert: Certificate, ascii_text: bytes, raw: bytes) -> Certificate:
    """The same certificate with a name's bytes replaced (the signature no longer matches,
    which is the case of a file anyone can drop in the peer directory)."""
    assert len(ascii_text) == len(raw) and cert.der.count(ascii_text) == 1
    return parse_certificate(cert.der.replace(ascii_text, raw))


def test_non_ascii_mailbox_bytes_are_left_out_of_the_skip_names(ca: Ca) -> None:
    """rfc822Name bytes above 127 were decoded as cp1252 and the MD5 name crashed."""
    cert = _with_high_bytes(_leaf(ca, email=("zz@example.org",)), b"zz@", b"\xe9\xe9@")
    assert cert.san_email == ("\xe9\xe9@example.org",)
    assert all(n.nsid != 9 for n in cert.skip_names())
    cert = _with_high_bytes(_leaf(ca, dns=("zz.example",)), b"zz.ex", b"\xe9\xe9.ex")
    assert all(n.nsid != 4 for n in cert.skip_names())
    subject = issue(
        signer=ca.signer,
        issuer=ca.cert,
        subject=Subject([("CN", "h"), ("E", "qq@example.org")]),
        not_before=NOW - DAY,
        not_after=NOW + DAY,
        dh_key=generate_key(GROUPS["x25519"]).public,
    )
    cert = _with_high_bytes(subject, b"qq@", b"\xfc\xfc@")
    assert cert.subject_emails == ("\xfc\xfc@example.org",)
    assert [n.nsid for n in cert.skip_names()] == [5]
    with pytest.raises(CertificateError) as err:
        mailbox_name("\xfc@example.org")
    assert err.value.reason == "cert_malformed"
    with pytest.raises(CertificateError):
        dns_name("bücher.example")


def test_skipd_check_survives_a_peer_certificate_with_a_non_ascii_mailbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ok(capsys, "init-ca", "ca", "--subject", "CN=Fuzz CA")
    ok(capsys, "genkey", "h.key", "--group", "x25519")
    ok(capsys, "issue", "--ca", "ca", "--key", "h.key", "--subject", "CN=h", "--ip", "10.0.0.1",
       "--out", "h.crt")
    ok(capsys, "genkey", "p.key", "--group", "x25519")
    ok(capsys, "issue", "--ca", "ca", "--key", "p.key", "--subject", "CN=p", "--ip", "10.0.0.2",
       "--email", "zz@example.org", "--out", "p.crt")
    ok(capsys, "export", "p.crt", "--format", "der", "--out", "p.der")
    Path("peers").mkdir()
    Path("peers/p.der").write_bytes(Path("p.der").read_bytes().replace(b"zz@", b"\xe9\xe9@"))
    Path("skipd.toml").write_text(
        '[identity]\nprivate_key = "h.key"\ncertificate = "h.crt"\n'
        'trust_anchors = ["ca/ca.crt"]\npeer_certificates = "peers"\n'
        '[[peer]]\nname = "p"\naction = "protect"\nhosts = ["10.0.0.2"]\n'
        'tunnel = "10.0.0.2"\n'
    )
    code = skipd.main(["-c", "skipd.toml", "--check"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code == 0, err  # one bad peer file costs that peer, not the daemon
    assert "peers/p.der: peer p: cert_bad_signature" in err, err


# --- 4. subjects skip-cert advertises (was: C= always failed; ValueError, UnicodeError) -------


def test_init_ca_with_a_country(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok(capsys, "init-ca", tmp_path / "ca", "--subject", "CN=x,C=US")
    out = ok(capsys, "show", tmp_path / "ca" / "ca.crt")
    assert "CN=x,C=US" in out
    der = parse_certificate_file(tmp_path / "ca" / "ca.crt")
    (rdn,) = [atv for rdn in x509.Name.load(der.subject).chosen for atv in rdn
              if atv["type"].native == "country_name"]
    assert rdn["value"].name == "printable_string"  # RFC 5280: PrintableString (SIZE (2))


@pytest.mark.parametrize(("subject", "why"), [
    ("CN=x,C=USA", "two letters"),
    ("CN=x,C=U1", "two letters"),
    ("CN=x,emailAddress=\u00fc@example.org", "not ASCII"),
    ("CN=x,DC=b\u00fccher", "not ASCII"),
    ("CN=x,DC=" + "a" * 70, "cannot be encoded"),
    ("CN=x,E=a@b..c", "cannot be encoded"),
])
def test_subjects_asn1crypto_cannot_encode_are_config_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], subject: str, why: str
) -> None:
    with pytest.raises(ConfigError, match=why) as err:
        build_name(parse_dn(subject))
    assert err.value.reason == "config_invalid"
    line = refused(capsys, "init-ca", tmp_path / "ca", "--subject", subject)
    assert "config_invalid" in line and why in line


def test_issue_refuses_san_names_asn1crypto_cannot_encode(ca: Ca) -> None:
    for names in ({"dns": ("b\u00fccher.example",)}, {"dns": ("a" * 70 + ".example",)},
                  {"email": ("\u00fc@example.org",)}):
        with pytest.raises(ConfigError) as err:
            _leaf(ca, **names)
        assert err.value.reason == "config_invalid"


# --- 3. and 7. encrypted PKCS #8 (was: UnsupportedAlgorithm; unbounded iteration count) ------


def _encrypted_pkcs8(inner: bytes, passphrase: bytes, iterations: int) -> bytes:
    """PBES2 / PBKDF2-HMAC-SHA-256 / AES-256-CBC around ``inner``, built by hand so that the
    iteration count and the inner key can be anything (cryptography writes only good ones)."""
    salt, iv = b"s" * 16, b"i" * 16
    key = PBKDF2HMAC(hashes.SHA256(), 32, salt, min(iterations, 1000)).derive(passphrase)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(inner) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    blob = encryptor.update(padded) + encryptor.finalize()
    info = keys.EncryptedPrivateKeyInfo({
        "encryption_algorithm": {
            "algorithm": "pbes2",
            "parameters": {
                "key_derivation_func": {
                    "algorithm": "pbkdf2",
                    "parameters": {
                        "salt": algos.Pbkdf2Salt(name="specified", value=salt),
                        "iteration_count": iterations,
                        "prf": {"algorithm": "sha256"},
                    },
                },
                "encryption_scheme": {"algorithm": "aes256_cbc", "parameters": iv},
            },
        },
        "encrypted_data": blob,
    })
    return pem_encode("ENCRYPTED PRIVATE KEY", info.dump())


def test_encrypted_key_of_an_unknown_algorithm_is_cert_key_type() -> None:
    inner = PrivateKeyInfo({
        "version": 0,
        "private_key_algorithm": {"algorithm": "1.2.3.4.5"},
        "private_key": b"\x04\x20" + b"k" * 32,
    }).dump()
    data = _encrypted_pkcs8(inner, b"pw", 1000)
    with pytest.raises(CertificateError) as err:
        load_private_key(data, b"pw")
    assert err.value.reason == "cert_key_type"


def test_a_hand_built_encrypted_key_loads() -> None:
    """The builder above is right: with a real key inside, the file loads."""
    key = generate_key(GROUPS["x25519"])
    data = _encrypted_pkcs8(private_key_der(key), b"pw", 1000)
    assert load_private_key(data, b"pw").private == key.private


@pytest.mark.parametrize("iterations", [MAX_PKCS8_ITERATIONS + 1, 2**63 - 1])
def test_iteration_count_is_bounded_before_decrypting(iterations: int) -> None:
    key = generate_key(GROUPS["x25519"])
    data = _encrypted_pkcs8(private_key_der(key), b"pw", iterations)
    start = time.perf_counter()
    with pytest.raises(CertificateError, match="iterations") as err:
        load_private_key(data, b"pw")
    assert err.value.reason == "cert_malformed"
    assert time.perf_counter() - start < 0.5


# --- 7. PEM armour (was: quadratic in repeated BEGIN lines) ------------------------------------


def _refuse_time(size: int) -> float:
    data = b"-----BEGIN A-----\n" * (size // 18)
    start = time.perf_counter()
    with pytest.raises(CertificateError) as err:
        pem_blocks(data)
    assert err.value.reason == "cert_malformed"
    return time.perf_counter() - start


def test_repeated_begin_lines_are_refused_in_linear_time() -> None:
    """72, 144 and 288 KB took 1.45, 5.6 and 22.6 s; 1 MiB now takes well under a second,
    and 16 times the input takes nowhere near 256 times as long."""
    small = min(_refuse_time(64 << 10) for _ in range(3))
    large = min(_refuse_time(1 << 20) for _ in range(3))
    assert large < 0.5
    assert large < 64 * small + 0.01


def test_pem_blocks_still_split_bundles_and_refuse_an_unclosed_block() -> None:
    one, two = pem_encode("CERTIFICATE", b"\x30\x00"), pem_encode("X509 CRL", b"\x30\x01")
    assert pem_blocks(b"text\n" + one + b"more text\n" + two) == [
        ("CERTIFICATE", b"\x30\x00"), ("X509 CRL", b"\x30\x01"),
    ]
    for bad in (b"-----BEGIN A-----\nAAAA\n", one.replace(b"END CERTIFICATE", b"END CRL")):
        with pytest.raises(CertificateError, match="no matching END") as err:
            pem_blocks(bad)
        assert err.value.reason == "cert_malformed"


# --- 5. and 6. skipd's configuration (was: ValueError: embedded null byte; RecursionError) --


def test_a_nul_byte_in_a_config_path_is_config_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "skipd.toml"
    config.write_text('[identity]\nprivate_key = "h\\u0000.key"\ncertificate = "h.crt"\n')
    with pytest.raises(ConfigError, match="NUL") as err:
        load_config(config)
    assert err.value.reason == "config_invalid"
    assert skipd.main(["-c", str(config), "--check"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skipd: config_invalid: "), lines
    with pytest.raises(ConfigError) as err:
        read_bounded("a\0b")
    assert err.value.reason == "config_invalid"


def test_a_nul_byte_in_the_interface_name_is_config_invalid(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="interface") as err:
        parse_config('[daemon]\ninterface = "sk\\u0000ip"\n', tmp_path / "skipd.toml")
    assert err.value.reason == "config_invalid"


@pytest.mark.parametrize("text", ["x = " + "[" * 600 + "]" * 600, "x = " + "{a = " * 600 + "1"
                                  + "}" * 600])
def test_deeply_nested_toml_is_config_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    config = tmp_path / "skipd.toml"
    config.write_text(text + "\n")
    with pytest.raises(ConfigError, match="nested too deeply") as err:
        load_config(config)
    assert err.value.reason == "config_invalid"
    assert skipd.main(["-c", str(config), "--check"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skipd: config_invalid: "), lines


def test_a_config_file_is_read_bounded(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="larger than") as err:
        load_config("/dev/zero")
    assert err.value.reason == "config_invalid"


def test_a_deeply_nested_control_request_gets_a_reply(tmp_path: Path) -> None:
    """~1000 "[" made json.loads raise RecursionError past the handler: no reply at all."""

    async def status(_req: dict[str, object]) -> object:
        return "fine"

    async def session() -> list[dict[str, object]]:
        path = tmp_path / "run" / "skipd.sock"
        server = ControlServer(path, {"status": status})
        await server.start()
        try:
            reader, writer = await asyncio.open_unix_connection(str(path))
            writer.write(b"[" * 1000 + b"\n" + b'{"command": "status"}\n')
            await writer.drain()
            replies = [json.loads(await reader.readline()) for _ in range(2)]
            writer.close()
            return replies
        finally:
            await server.stop()

    nested, after = asyncio.run(asyncio.wait_for(session(), 10))
    assert nested == {"ok": False, "reason": "config_invalid",
                      "error": "request is nested too deeply"}
    assert after == {"ok": True, "result": "fine"}  # the connection still serves


# --- 7. the replay window (was: ReplayWindow(2**31) peaked at 558 MB) -------------------------


def test_a_replay_window_of_2_31_is_refused_before_allocating() -> None:
    for size in (2**31, MAX_WINDOW + 1):
        with pytest.raises(AlgorithmError) as err:
            ReplayWindow(size)
        assert err.value.reason == "bad_sa"
    window = ReplayWindow(MAX_WINDOW)
    window.accept(window.check(MAX_WINDOW + 5))
    assert window.check(6) == 6
    with pytest.raises(ReplayError):
        window.check(5)


# --- 8. pcap timestamps (was: struct.error for start=-1, ValueError for nan) ----------------


@pytest.mark.parametrize("start", [-1.0, float("nan"), float("inf"), -float("inf"), 2.0**32])
def test_pcap_timestamps_the_header_cannot_hold_are_bad_header(start: float) -> None:
    with pytest.raises(ParseError) as err:
        encode_pcap([b"\x45" + b"\0" * 19], start=start)
    assert err.value.reason == "bad_header"


def test_pcap_packets_longer_than_the_snap_length_are_bad_length() -> None:
    with pytest.raises(ParseError) as err:
        encode_pcap([b"\0" * 65536])
    assert err.value.reason == "bad_length"
    pcap = encode_pcap([b"\x45" + b"\0" * 19], start=2.0**32 - 1)
    assert len(pcap) == 24 + 16 + 20
