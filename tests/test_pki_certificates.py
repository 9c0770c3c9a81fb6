"""Issuing and reading SKIP certificates; openssl is the outside reader of every kind."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
from pathlib import Path

import pytest
from asn1crypto import algos, core, x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skip.crypto.dh import GROUPS
from skip.errors import CertificateError, ParseError
from skip.pki import (
    DHPrivateKey,
    Revocation,
    dump_private_key,
    issue_crl,
    load_certificate,
    load_certificates,
    load_crls,
    load_private_key,
    load_public_key,
)
from skip.pki.asn1 import SubjectPublicKeyInfo
from skip.pki.certificate import parse_certificate
from skip.pki.dhkey import decode_spki, dump_public_key, encode_spki
from skip.pki.names import parse_ip_attribute

from .pki_support import NOW, Ca, Keys, make_ca, make_leaf, needs_openssl, openssl, write

pytest_plugins = ("tests.pki_fixtures",)  # the shared session fixtures: dh_keys, root_ca

# group -> (profile, what `openssl x509 -text` calls the key)
KINDS = [
    ("ffdhe2048", "v3", "X9.42 DH"),
    ("modp-3072", "v3", "X9.42 DH"),
    ("skip-2048", "v3", "dhKeyAgreement"),
    ("skip-1024", "draft", "dhKeyAgreement"),
    ("skip-2048", "draft", "dhKeyAgreement"),
    ("x25519", "v3", "X25519"),
    ("x448", "v3", "X448"),
]


@pytest.mark.parametrize(("group", "profile", "_label"), KINDS)
def test_issue_and_read_back(
    group: str, profile: str, _label: str, dh_keys: Keys, root_ca: Ca
) -> None:
    key = dh_keys[group]
    cert = make_leaf(
        root_ca, key, profile=profile, dns=("host1.example",) if profile == "v3" else ()
    )
    again = load_certificate(cert.pem())
    assert again == cert
    assert cert.version == (1 if profile == "draft" else 3)
    assert cert.dh_key is not None
    assert cert.dh_key.group is GROUPS[group]
    assert cert.dh_key.public_value == key.public.public_value
    assert cert.issuer == root_ca.cert.subject
    assert cert.ip_attributes == (ipaddress.ip_address("10.0.0.1"),)
    if profile == "draft":
        assert cert.dh_key.encoding == "pkcs3"
        assert cert.key_usage is None and cert.san_addresses == ()
        tbs = x509.Certificate.load(cert.der)["tbs_certificate"].dump()
        # no [0] version field: the DER starts with the serial number INTEGER
        assert tbs[2 + (tbs[1] & 0x7F if tbs[1] & 0x80 else 0)] == 0x02
    else:
        assert cert.key_usage == frozenset({"key_agreement"})
        assert cert.san_addresses == (ipaddress.ip_address("10.0.0.1"),)
        assert cert.authority_key_id == root_ca.cert.subject_key_id


@needs_openssl
@pytest.mark.parametrize(("group", "profile", "label"), KINDS)
def test_openssl_parses_every_kind(
    group: str,
    profile: str,
    label: str,
    dh_keys: Keys,
    root_ca: Ca,
    tmp_path: Path,
) -> None:
    cert = make_leaf(
        root_ca, dh_keys[group], profile=profile, dns=("host1.example",) * (profile == "v3")
    )
    text = openssl("x509", "-text", "-noout", "-in", write(tmp_path, "c.pem", cert.pem())).stdout
    assert f"Public Key Algorithm: {label}" in text
    assert f"Version: {cert.version} " in text
    assert "1.3.6.1.4.1.42.2.11.2.1 = 10.0.0.1" in text  # the Sun ipAddress RDN
    if profile == "v3":
        assert "IP Address:10.0.0.1, DNS:host1.example" in text
        assert "Key Agreement" in text
    # openssl's view of the public value equals ours
    pub = openssl("x509", "-pubkey", "-noout", "-in", tmp_path / "c.pem").stdout.encode()
    assert load_public_key(pub).public_value == dh_keys[group].public.public_value


@needs_openssl
@pytest.mark.parametrize("scheme", ["ed25519", "ecdsa-p256", "ecdsa-p384", "rsa-pss", "rsa-pkcs1"])
def test_every_ca_key_type_signs_what_openssl_verifies(
    scheme: str,
    dh_keys: Keys,
    tmp_path: Path,
) -> None:
    ca = make_ca(f"{scheme} root", scheme)
    leaf = make_leaf(ca, dh_keys["ffdhe2048"])
    result = openssl(
        "verify",
        "-attime",
        NOW,
        "-CAfile",
        write(tmp_path, "ca.pem", ca.cert.pem()),
        write(tmp_path, "leaf.pem", leaf.pem()),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = openssl("x509", "-text", "-noout", "-in", tmp_path / "ca.pem").stdout
    assert "CA:TRUE" in text and "Certificate Sign, CRL Sign" in text


def test_names_of_a_v3_certificate(dh_keys: Keys, root_ca: Ca) -> None:
    cert = make_leaf(
        root_ca,
        dh_keys["x25519"],
        ips=("10.0.0.1", "2001:db8::1"),
        dns=("Host1.Example.",),
        email=("ops@example.org",),
    )
    names = {(n.nsid, n.mkid) for n in cert.skip_names()}
    assert (1, bytes([10, 0, 0, 1])) in names
    assert (3, ipaddress.ip_address("2001:db8::1").packed) in names
    assert (4, hashlib.md5(b"host1.example").digest()) in names  # lower case, no dot
    assert (5, hashlib.md5(x509.Certificate.load(cert.der).subject.dump()).digest()) in names
    assert (9, hashlib.md5(b"ops@example.org").digest()) in names
    assert len(names) == 5


def test_v1_certificates_answer_to_a_host_name_cn(dh_keys: Keys, root_ca: Ca) -> None:
    cert = make_leaf(root_ca, dh_keys["skip-1024"], cn="gw.example.com", profile="draft")
    assert (4, hashlib.md5(b"gw.example.com").digest()) in {
        (n.nsid, n.mkid) for n in cert.skip_names()
    }
    plain = make_leaf(root_ca, dh_keys["skip-1024"], cn="Gateway One", profile="draft")
    assert 4 not in {n.nsid for n in plain.skip_names()}


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("10.0.0.1", "10.0.0.1"),
        ("0a000001", "10.0.0.1"),
        ("0x0A000001", "10.0.0.1"),
        ("2001:db8::1", "2001:db8::1"),
        ("20010db8000000000000000000000001", "2001:db8::1"),
        ("2001:0db8:0:0:0:0:0:1", "2001:db8::1"),
    ],
)
def test_ip_address_attribute_forms(text: str, address: str) -> None:
    assert parse_ip_attribute(text) == ipaddress.ip_address(address)


def test_ip_address_attribute_rejects_garbage() -> None:
    with pytest.raises(CertificateError):
        parse_ip_attribute("host.example")


@pytest.mark.parametrize("group", ["ffdhe2048", "skip-1024", "modp-3072"])
def test_all_spki_encodings_round_trip(group: str, dh_keys: Keys) -> None:
    public = dh_keys[group].public
    for encoding in ("pkcs3", "x942"):
        back = decode_spki(encode_spki(public, encoding))
        assert (back.group, back.public_value, back.encoding) == (
            public.group,
            public.public_value,
            encoding,
        )


def test_skip_2048_has_no_x942_form(dh_keys: Keys) -> None:
    with pytest.raises(CertificateError, match="pkcs3"):
        encode_spki(dh_keys["skip-2048"].public, "x942")


def test_pkcs3_private_value_length_is_accepted(dh_keys: Keys) -> None:
    """PKCS #3 DHParameter may carry privateValueLength; skip-extensions A-X509-1."""
    group = GROUPS["skip-1024"]
    y = int.from_bytes(dh_keys["skip-1024"].public.public_value)
    spki = SubjectPublicKeyInfo(
        {
            "algorithm": {
                "algorithm": "1.2.840.113549.1.3.1",
                "parameters": algos.DHParameters(
                    {"p": group.p, "g": 2, "private_value_length": 256}
                ),
            },
            "public_key": core.Integer(y).dump(),
        }
    ).dump()
    assert decode_spki(spki).group is group


def test_spki_byte_skeleton_of_the_digest(dh_keys: Keys) -> None:
    """skip-extensions.md 2.2: the 1024-bit PKCS #3 SPKI header bytes."""
    der = encode_spki(dh_keys["skip-1024"].public, "pkcs3")
    assert der[:4] == bytes.fromhex("30820120") or der[:4] == bytes.fromhex("3082011f")
    assert der[4:26] == bytes.fromhex("30819506092a864886f70d01030130818702818100f4")


# --- keys on disk -------------------------------------------------------------------------------


@pytest.mark.parametrize("group", ["ffdhe2048", "skip-1024", "x25519", "x448"])
def test_private_key_files_round_trip(group: str, dh_keys: Keys) -> None:
    key: DHPrivateKey = dh_keys[group]
    assert load_private_key(dump_private_key(key)) == key
    encrypted = dump_private_key(key, b"correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in encrypted
    assert load_private_key(encrypted, b"correct horse") == key
    with pytest.raises(CertificateError, match="passphrase"):
        load_private_key(encrypted, b"wrong")
    with pytest.raises(CertificateError, match="passphrase"):
        load_private_key(encrypted)


@needs_openssl
@pytest.mark.parametrize("group", ["ffdhe2048", "skip-1024", "x25519"])
def test_openssl_reads_our_private_keys(group: str, dh_keys: Keys, tmp_path: Path) -> None:
    key = dh_keys[group]
    path = write(tmp_path, "k.pem", dump_private_key(key))
    public = openssl("pkey", "-in", path, "-pubout").stdout.encode()
    assert load_public_key(public).public_value == key.public.public_value


@needs_openssl
@pytest.mark.parametrize(
    ("algorithm", "option"),
    [("DH", "group:ffdhe2048"), ("DHX", "group:ffdhe3072"), ("X25519", None)],
)
def test_we_read_openssl_private_keys(algorithm: str, option: str | None, tmp_path: Path) -> None:
    args = ["genpkey", "-algorithm", algorithm, "-out", tmp_path / "k.pem"]
    if option:
        args += ["-pkeyopt", option]
    openssl(*args)
    key = load_private_key((tmp_path / "k.pem").read_bytes())
    public = openssl("pkey", "-in", tmp_path / "k.pem", "-pubout").stdout.encode()
    assert key.public.public_value == load_public_key(public).public_value
    assert key.group.name in ("ffdhe2048", "ffdhe3072", "x25519")


def test_public_key_files_round_trip(dh_keys: Keys) -> None:
    for key in dh_keys.values():
        assert load_public_key(dump_public_key(key.public)).public_value == key.public.public_value


# --- robustness ---------------------------------------------------------------------------------


def test_pem_bundles(dh_keys: Keys, root_ca: Ca) -> None:
    leaf = make_leaf(root_ca, dh_keys["x25519"])
    both = load_certificates(leaf.pem() + root_ca.cert.pem())
    assert [c.der for c in both] == [leaf.der, root_ca.cert.der]


@pytest.fixture(scope="module")
def sample_der(dh_keys: Keys, root_ca: Ca) -> bytes:
    return make_leaf(root_ca, dh_keys["skip-1024"], dns=("a.example",)).der


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_der_parser_raises_only_certificate_errors(sample_der: bytes, data: st.DataObject) -> None:
    blob = bytearray(sample_der)
    for _ in range(data.draw(st.integers(1, 4))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(blob)))
    for candidate in (bytes(blob), bytes(blob[:cut])):
        try:
            cert = parse_certificate(candidate)
        except (CertificateError, ParseError):
            continue
        cert.skip_names()  # whatever parses must also be usable


@given(st.binary(max_size=200))
def test_der_parser_on_random_bytes(data: bytes) -> None:
    with pytest.raises(CertificateError):
        parse_certificate(data)


@given(st.binary(max_size=300))
def test_spki_parser_on_random_bytes(data: bytes) -> None:
    with contextlib.suppress(CertificateError):
        decode_spki(data)


def test_crl_round_trip(root_ca: Ca) -> None:
    revoked = [Revocation(7, NOW - 100, "key_compromise"), Revocation(3, NOW - 50)]
    crl = issue_crl(
        signer=root_ca.signer,
        issuer=root_ca.cert,
        revoked=revoked,
        this_update=NOW - 10,
        next_update=NOW + 10,
        number=42,
    )
    (again,) = load_crls(crl.pem())
    assert again.revoked == {r.serial: r for r in revoked}
    assert (again.number, again.this_update, again.next_update) == (42, NOW - 10, NOW + 10)
    assert again.issuer == root_ca.cert.subject
    empty = issue_crl(
        signer=root_ca.signer,
        issuer=root_ca.cert,
        revoked=[],
        this_update=NOW,
        next_update=NOW + 1,
        number=1,
    )
    assert load_crls(empty.der)[0].revoked == {}


@given(st.binary(max_size=300))
def test_crl_and_key_parsers_on_random_bytes(data: bytes) -> None:
    for parse in (load_crls, load_private_key, load_public_key):
        with contextlib.suppress(CertificateError):
            parse(data)
