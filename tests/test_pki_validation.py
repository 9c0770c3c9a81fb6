"""Validation at a given time, with `openssl verify -attime` as the second opinion.

Every chain below is judged by both skip and openssl; they must agree on accept / refuse,
and skip must give the reason code a person would expect.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from asn1crypto import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from skip.crypto.dh import GROUPS
from skip.errors import CertificateError
from skip.pki import (
    Certificate,
    Crl,
    Policy,
    Revocation,
    Subject,
    TrustStore,
    issue,
    issue_crl,
    load_certificate,
    validate_certificate,
)
from skip.pki.certificate import parse_certificate
from skip.pki.dhkey import DHPublicKey
from skip.pki.signing import generate_signer

from .pki_support import DAY, NOW, Ca, Keys, make_ca, make_leaf, needs_openssl, openssl, write

pytest_plugins = ("tests.pki_fixtures",)


def skip_verdict(
    leaf: Certificate,
    anchors: Sequence[Certificate],
    *,
    intermediates: Sequence[Certificate] = (),
    crls: Sequence[Crl] = (),
    at: int = NOW,
    policy: Policy | None = None,
) -> str | None:
    """None when skip accepts, else its reason code."""
    try:
        validate_certificate(
            leaf,
            TrustStore(anchors),
            at,
            intermediates=intermediates,
            crls=crls,
            policy=policy or Policy(),
        )
    except CertificateError as exc:
        return exc.reason
    return None


def openssl_accepts(
    tmp: Path,
    leaf: Certificate,
    anchors: Sequence[Certificate],
    *,
    intermediates: Sequence[Certificate] = (),
    crls: Sequence[Crl] = (),
    at: int = NOW,
) -> bool:
    args: list[str | Path] = ["verify", "-attime", str(at)]
    args += ["-CAfile", write(tmp, "anchors.pem", b"".join(c.pem() for c in anchors))]
    if intermediates:
        args += ["-untrusted", write(tmp, "inter.pem", b"".join(c.pem() for c in intermediates))]
    if crls:
        args += [
            "-crl_check_all",
            "-CRLfile",
            write(tmp, "crls.pem", b"".join(c.pem() for c in crls)),
        ]
    result = openssl(*args, write(tmp, "leaf.pem", leaf.pem()), check=False)
    return result.returncode == 0


def both(tmp: Path, leaf: Certificate, anchors: Sequence[Certificate], **kw: object) -> str | None:
    """skip's verdict, after asserting that openssl reaches the same accept/refuse decision."""
    verdict = skip_verdict(leaf, anchors, **kw)  # type: ignore[arg-type]
    assert openssl_accepts(tmp, leaf, anchors, **kw) == (verdict is None), verdict  # type: ignore[arg-type]
    return verdict


@pytest.fixture(scope="module")
def leaf(root_ca: Ca, dh_keys: Keys) -> Certificate:
    return make_leaf(root_ca, dh_keys["ffdhe2048"], dns=("host1.example",))


def crl_of(
    ca: Ca, revoked: Sequence[Revocation] = (), *, start: int = NOW - DAY, days: int = 7
) -> Crl:
    return issue_crl(
        signer=ca.signer,
        issuer=ca.cert,
        revoked=revoked,
        this_update=start,
        next_update=start + days * DAY,
        number=1,
    )


# --- the basic cases, both witnesses ------------------------------------------------------------


@needs_openssl
def test_good_chain(tmp_path: Path, leaf: Certificate, root_ca: Ca) -> None:
    assert both(tmp_path, leaf, [root_ca.cert]) is None


@needs_openssl
@pytest.mark.parametrize(
    ("at", "reason"), [(NOW + 40 * DAY, "cert_expired"), (NOW - 3 * DAY, "cert_not_yet_valid")]
)
def test_outside_validity(
    tmp_path: Path, leaf: Certificate, root_ca: Ca, at: int, reason: str
) -> None:
    assert both(tmp_path, leaf, [root_ca.cert], at=at) == reason


@needs_openssl
def test_expired_certificate_made_in_the_past(tmp_path: Path, root_ca: Ca, dh_keys: Keys) -> None:
    old = make_leaf(root_ca, dh_keys["x25519"], start=NOW - 60 * DAY, days=30)
    assert both(tmp_path, old, [root_ca.cert]) == "cert_expired"


@needs_openssl
def test_wrong_ca(tmp_path: Path, leaf: Certificate, other_ca: Ca) -> None:
    assert both(tmp_path, leaf, [other_ca.cert]) == "cert_untrusted"


@needs_openssl
def test_same_name_different_key_is_a_bad_signature(tmp_path: Path, leaf: Certificate) -> None:
    impostor = make_ca("skip test root")  # same subject, different key
    assert both(tmp_path, leaf, [impostor.cert]) == "cert_bad_signature"


@needs_openssl
def test_tampered_certificate(tmp_path: Path, leaf: Certificate, root_ca: Ca) -> None:
    der = bytearray(leaf.der)
    der[-10] ^= 0x01  # inside the signature
    assert both(tmp_path, parse_certificate(bytes(der)), [root_ca.cert]) == "cert_bad_signature"


@needs_openssl
def test_expired_anchor(tmp_path: Path, dh_keys: Keys) -> None:
    short_root = make_ca("short-lived root", days=2, start=NOW - DAY)
    child = make_leaf(short_root, dh_keys["ffdhe2048"], days=30)
    assert both(tmp_path, child, [short_root.cert], at=NOW + 3 * DAY) == "cert_expired"


# --- revocation ----------------------------------------------------------------------------------


@needs_openssl
def test_revoked_by_crl(tmp_path: Path, root_ca: Ca, dh_keys: Keys) -> None:
    revoked = make_leaf(root_ca, dh_keys["skip-2048"], cn="host3")
    crl = crl_of(root_ca, [Revocation(revoked.serial, NOW - 3600, "key_compromise")])
    assert both(tmp_path, revoked, [root_ca.cert], crls=[crl]) == "cert_revoked"


@needs_openssl
def test_crl_that_does_not_list_us(tmp_path: Path, leaf: Certificate, root_ca: Ca) -> None:
    crl = crl_of(root_ca, [Revocation(12345, NOW - 3600)])
    assert both(tmp_path, leaf, [root_ca.cert], crls=[crl]) is None
    assert both(tmp_path, leaf, [root_ca.cert], crls=[crl_of(root_ca)]) is None  # empty CRL


@needs_openssl
def test_stale_crl(tmp_path: Path, leaf: Certificate, root_ca: Ca) -> None:
    stale = crl_of(root_ca, start=NOW - 10 * DAY, days=7)
    assert both(tmp_path, leaf, [root_ca.cert], crls=[stale]) == "cert_crl_invalid"


def test_crl_signed_by_someone_else(leaf: Certificate, root_ca: Ca) -> None:
    forged = issue_crl(
        signer=generate_signer(),
        issuer=root_ca.cert,
        revoked=[],
        this_update=NOW - DAY,
        next_update=NOW + DAY,
        number=9,
    )
    assert skip_verdict(leaf, [root_ca.cert], crls=[forged]) == "cert_crl_invalid"


def test_required_crl_missing(leaf: Certificate, root_ca: Ca) -> None:
    policy = Policy(require_crl=True)
    assert skip_verdict(leaf, [root_ca.cert], policy=policy) == "cert_crl_missing"
    assert skip_verdict(leaf, [root_ca.cert], crls=[crl_of(root_ca)], policy=policy) is None


def test_revocation_in_the_future_does_not_count_yet(root_ca: Ca, dh_keys: Keys) -> None:
    cert = make_leaf(root_ca, dh_keys["x448"])
    crl = crl_of(root_ca, [Revocation(cert.serial, NOW + 3600)])
    assert skip_verdict(cert, [root_ca.cert], crls=[crl]) is None


# --- intermediates -----------------------------------------------------------------------------


def intermediate(root: Ca, name: str, path_length: int | None = None) -> Ca:
    signer = generate_signer("ecdsa-p256")
    cert = issue(
        signer=root.signer,
        issuer=root.cert,
        subject=Subject([("CN", name)]),
        not_before=NOW - DAY,
        not_after=NOW + 365 * DAY,
        ca=True,
        path_length=path_length,
        ca_public_key=signer.public_spki(),
    )
    return Ca(signer, cert)


@needs_openssl
def test_chain_through_an_intermediate(tmp_path: Path, root_ca: Ca, dh_keys: Keys) -> None:
    sub = intermediate(root_ca, "site CA")
    cert = make_leaf(sub, dh_keys["x25519"])
    assert both(tmp_path, cert, [root_ca.cert], intermediates=[sub.cert]) is None
    assert both(tmp_path, cert, [root_ca.cert]) == "cert_untrusted"  # intermediate not given
    revoke_sub = crl_of(root_ca, [Revocation(sub.cert.serial, NOW - 60)])
    crls = [revoke_sub, crl_of(sub)]
    assert (
        both(tmp_path, cert, [root_ca.cert], intermediates=[sub.cert], crls=crls) == "cert_revoked"
    )


@needs_openssl
def test_path_length_constraint(tmp_path: Path, dh_keys: Keys) -> None:
    strict = make_ca("no intermediates allowed")
    strict = Ca(
        strict.signer,
        issue(
            signer=strict.signer,
            issuer=None,
            subject=Subject([("CN", "pathlen 0 root")]),
            not_before=NOW - DAY,
            not_after=NOW + 365 * DAY,
            ca=True,
            path_length=0,
        ),
    )
    sub = intermediate(strict, "too deep")
    cert = make_leaf(sub, dh_keys["ffdhe2048"])
    assert both(tmp_path, cert, [strict.cert], intermediates=[sub.cert]) == "cert_bad_usage"


# --- DH checks and names -------------------------------------------------------------------


def test_modulus_policy(root_ca: Ca, dh_keys: Keys) -> None:
    legacy = make_leaf(root_ca, dh_keys["skip-1024"], profile="draft")
    assert skip_verdict(legacy, [root_ca.cert]) is None
    assert skip_verdict(legacy, [root_ca.cert], policy=Policy(min_modp_bits=2048)) == "bad_group"


@pytest.mark.parametrize("group", ["ffdhe2048", "skip-1024"])
def test_certified_degenerate_public_value(group: str, root_ca: Ca) -> None:
    g = GROUPS[group]
    for y in (1, g.p - 1):
        key = DHPublicKey(g, y.to_bytes(g.public_size), "pkcs3")
        cert = issue(
            signer=root_ca.signer,
            issuer=root_ca.cert,
            subject=Subject([("CN", "evil")]),
            not_before=NOW - DAY,
            not_after=NOW + DAY,
            dh_key=key,
            profile="draft",
        )
        assert skip_verdict(cert, [root_ca.cert]) == "bad_public_value"


def test_name_binding(leaf: Certificate, root_ca: Ca) -> None:
    trust = TrustStore([root_ca.cert])
    ok = [
        (1, bytes([10, 0, 0, 1])),
        (0, bytes([10, 0, 0, 1])),
        (4, hashlib.md5(b"host1.example").digest()),
        (5, hashlib.md5(leaf.subject).digest()),
    ]
    for name in ok:
        peer = validate_certificate(leaf, trust, NOW, name=name)
        assert peer.group is GROUPS["ffdhe2048"]
        assert peer.not_after == leaf.not_after
    for name in [
        (1, bytes([10, 0, 0, 2])),
        (3, ipaddress.ip_address("::1").packed),
        (9, bytes(16)),
        (0, b"\x01"),
    ]:
        with pytest.raises(CertificateError) as err:
            validate_certificate(leaf, trust, NOW, name=name)
        assert err.value.reason == "cert_name_mismatch"


def test_a_ca_certificate_is_not_a_dh_key(root_ca: Ca) -> None:
    assert skip_verdict(root_ca.cert, [root_ca.cert]) == "cert_key_type"


# --- certificates made by openssl ----------------------------------------------------------------


@pytest.fixture(scope="module")
def openssl_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An openssl-made Ed25519 root and DH / DHX / X25519 / RFC 5114 / EC leaves."""
    d = tmp_path_factory.mktemp("openssl-pki")
    openssl("genpkey", "-algorithm", "ed25519", "-out", d / "ca.key")
    openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        d / "ca.key",
        "-subj",
        "/CN=OpenSSL Root",
        "-set_serial",
        "1",
        "-days",
        "3650",
        "-out",
        d / "ca.crt",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    openssl("genpkey", "-algorithm", "ed25519", "-out", d / "csr.key")
    openssl("req", "-new", "-key", d / "csr.key", "-subj", "/CN=dhhost", "-out", d / "h.csr")
    (d / "ext.cnf").write_text(
        "keyUsage=critical,keyAgreement\nsubjectAltName=IP:10.9.9.9,DNS:dhhost.example\n"
    )
    keys = {
        "dh": ["-algorithm", "DH", "-pkeyopt", "group:ffdhe2048"],
        "dhx": ["-algorithm", "DHX", "-pkeyopt", "group:ffdhe3072"],
        "x25519": ["-algorithm", "X25519"],
        "rfc5114": ["-algorithm", "DHX", "-pkeyopt", "dh_rfc5114:2"],
        "ec": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    }
    for name, args in keys.items():
        if name == "rfc5114":  # a parameter file first, then a key from it
            openssl("genpkey", "-genparam", *args, "-out", d / "rfc5114.params")
            openssl("genpkey", "-paramfile", d / "rfc5114.params", "-out", d / f"{name}.key")
        else:
            openssl("genpkey", *args, "-out", d / f"{name}.key")
        openssl("pkey", "-in", d / f"{name}.key", "-pubout", "-out", d / f"{name}.pub")
        openssl(
            "x509",
            "-req",
            "-in",
            d / "h.csr",
            "-CA",
            d / "ca.crt",
            "-CAkey",
            d / "ca.key",
            "-set_serial",
            str(100 + len(name)),
            "-force_pubkey",
            d / f"{name}.pub",
            "-extfile",
            d / "ext.cnf",
            "-days",
            "3650",
            "-out",
            d / f"{name}.crt",
        )
    return d


@needs_openssl
@pytest.mark.parametrize(
    ("name", "group", "encoding"),
    [("dh", "ffdhe2048", "pkcs3"), ("dhx", "ffdhe3072", "x942"), ("x25519", "x25519", "rfc8410")],
)
def test_openssl_made_certificates_validate(
    openssl_pki: Path, name: str, group: str, encoding: str
) -> None:
    cert = load_certificate((openssl_pki / f"{name}.crt").read_bytes())
    anchor = load_certificate((openssl_pki / "ca.crt").read_bytes())
    now = int(time.time())  # openssl stamped them with the real clock
    peer = validate_certificate(cert, TrustStore([anchor]), now, name=(1, bytes([10, 9, 9, 9])))
    assert peer.group is GROUPS[group]
    assert cert.dh_key is not None and cert.dh_key.encoding == encoding
    assert (4, hashlib.md5(b"dhhost.example").digest()) in {(n.nsid, n.mkid) for n in peer.names}


@needs_openssl
def test_openssl_rfc5114_group_needs_the_custom_group_policy(openssl_pki: Path) -> None:
    cert = load_certificate((openssl_pki / "rfc5114.crt").read_bytes())
    anchor = load_certificate((openssl_pki / "ca.crt").read_bytes())
    now = int(time.time())
    assert cert.dh_key is not None and not cert.dh_key.well_known
    assert skip_verdict(cert, [anchor], at=now) == "bad_group"
    policy = Policy(allow_custom_groups=True)
    assert skip_verdict(cert, [anchor], at=now, policy=policy) is None


@needs_openssl
def test_openssl_signing_key_leaf_is_not_a_dh_certificate(openssl_pki: Path) -> None:
    cert = load_certificate((openssl_pki / "ec.crt").read_bytes())
    anchor = load_certificate((openssl_pki / "ca.crt").read_bytes())
    assert skip_verdict(cert, [anchor], at=int(time.time())) == "cert_key_type"


def test_legacy_sha1_signatures_need_opting_in(dh_keys: Keys) -> None:
    """An RFC 1422-era signature: sha1WithRSAEncryption, refused unless policy allows."""
    rsa_ca = make_ca("legacy RSA root", "rsa-pkcs1")
    modern = make_leaf(rsa_ca, dh_keys["skip-1024"], profile="draft")
    tbs = x509.TbsCertificate.load(modern.tbs)
    tbs["signature"] = {"algorithm": "sha1_rsa"}
    signature = rsa_ca.signer.key.sign(tbs.dump(), padding.PKCS1v15(), hashes.SHA1())
    legacy = parse_certificate(
        x509.Certificate(
            {
                "tbs_certificate": tbs,
                "signature_algorithm": {"algorithm": "sha1_rsa"},
                "signature_value": signature,
            }
        ).dump()
    )
    assert skip_verdict(legacy, [rsa_ca.cert]) == "cert_bad_signature"
    assert skip_verdict(legacy, [rsa_ca.cert], policy=Policy(allow_legacy_signatures=True)) is None
