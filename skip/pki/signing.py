"""Signature keys of certificate authorities: generate, sign, verify, store.

DH keys cannot sign, so every SKIP certificate is signed by a separate CA key. The CA's key
type fixes the signature algorithm: Ed25519 (default), ECDSA P-256 with SHA-256 or P-384 with
SHA-384, RSA (>= 2048 bits) with RSASSA-PSS or PKCS #1 v1.5, both SHA-256. For RSA the scheme
is remembered in the CA certificate's own signature algorithm, so issuing needs no extra state.

Verification accepts what these produce plus Ed448 and the SHA-2 family; SHA-1 and MD5 RSA
signatures (the RFC 1422 era the drafts lived in) only when the caller opts in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from asn1crypto import algos
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

from skip.errors import CertificateError
from skip.pki.asn1 import parsing
from skip.pki.pemfile import read_pem_or_der

CaKeyType = Literal["ed25519", "ecdsa-p256", "ecdsa-p384", "rsa-pss", "rsa-pkcs1"]
CA_KEY_TYPES: tuple[CaKeyType, ...] = (
    "ed25519",
    "ecdsa-p256",
    "ecdsa-p384",
    "rsa-pss",
    "rsa-pkcs1",
)
MIN_RSA_BITS = 2048

SigningKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "md5": hashes.MD5,
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_LEGACY_HASHES = frozenset({"md5", "sha1"})


@dataclass(frozen=True)
class Signer:
    """A CA private key and the signature scheme it signs with."""

    key: SigningKey
    scheme: CaKeyType

    def algorithm(self) -> algos.SignedDigestAlgorithm:
        """The AlgorithmIdentifier that goes into certificates and CRLs."""
        if self.scheme == "ed25519":
            return algos.SignedDigestAlgorithm({"algorithm": "ed25519"})
        if self.scheme == "ecdsa-p256":
            return algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"})
        if self.scheme == "ecdsa-p384":
            return algos.SignedDigestAlgorithm({"algorithm": "sha384_ecdsa"})
        if self.scheme == "rsa-pkcs1":
            return algos.SignedDigestAlgorithm({"algorithm": "sha256_rsa"})  # adds the NULL
        return algos.SignedDigestAlgorithm(
            {
                "algorithm": "rsassa_pss",
                "parameters": {
                    "hash_algorithm": {"algorithm": "sha256"},
                    "mask_gen_algorithm": {
                        "algorithm": "mgf1",
                        "parameters": {"algorithm": "sha256"},
                    },
                    "salt_length": 32,
                },
            }
        )

    def sign(self, data: bytes) -> bytes:
        key = self.key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(data)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            digest = hashes.SHA384() if self.scheme == "ecdsa-p384" else hashes.SHA256()
            return key.sign(data, ec.ECDSA(digest))
        if self.scheme == "rsa-pss":
            return key.sign(data, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def public_spki(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def generate_signer(scheme: CaKeyType = "ed25519", rsa_bits: int = 3072) -> Signer:
    if scheme == "ed25519":
        return Signer(ed25519.Ed25519PrivateKey.generate(), scheme)
    if scheme in ("ecdsa-p256", "ecdsa-p384"):
        curve = ec.SECP256R1() if scheme == "ecdsa-p256" else ec.SECP384R1()
        return Signer(ec.generate_private_key(curve), scheme)
    if scheme in ("rsa-pss", "rsa-pkcs1"):
        if rsa_bits < MIN_RSA_BITS:
            raise CertificateError("cert_key_type", f"RSA keys need at least {MIN_RSA_BITS} bits")
        return Signer(rsa.generate_private_key(65537, rsa_bits), scheme)
    raise CertificateError("cert_key_type", f"unknown CA key type {scheme!r}")


def scheme_for(key: SigningKey, rsa_scheme: CaKeyType = "rsa-pss") -> CaKeyType:
    """The scheme a loaded key signs with; RSA keys take ``rsa_scheme`` (from the CA cert)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name == "secp256r1":
            return "ecdsa-p256"
        if key.curve.name == "secp384r1":
            return "ecdsa-p384"
        raise CertificateError("cert_key_type", f"unsupported CA curve {key.curve.name}")
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise CertificateError(
                "cert_key_type", f"RSA CA key of {key.key_size} bits is too small"
            )
        return rsa_scheme
    raise CertificateError("cert_key_type", "the CA key is not an Ed25519, ECDSA or RSA key")


def scheme_of_algorithm(algorithm: algos.SignedDigestAlgorithm) -> CaKeyType | None:
    """The RSA scheme named by a certificate's signature algorithm (None for non-RSA)."""
    name = algorithm["algorithm"].native
    if name == "rsassa_pss":
        return "rsa-pss"
    if name.endswith("_rsa"):
        return "rsa-pkcs1"
    return None


def dump_signer(signer: Signer, passphrase: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return signer.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def load_signer(
    data: bytes, passphrase: bytes | None = None, rsa_scheme: CaKeyType = "rsa-pss"
) -> Signer:
    label, der = read_pem_or_der(data, ("PRIVATE KEY", "ENCRYPTED PRIVATE KEY"))
    if label == "ENCRYPTED PRIVATE KEY" and not passphrase:
        raise CertificateError("cert_malformed", "the CA key is encrypted: give a passphrase")
    try:
        key = serialization.load_der_private_key(
            der, passphrase if label == "ENCRYPTED PRIVATE KEY" else None
        )
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CertificateError("cert_malformed", f"cannot read the CA key: {exc}") from exc
    if not isinstance(
        key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    ):
        raise CertificateError("cert_key_type", "the CA key is not an Ed25519, ECDSA or RSA key")
    return Signer(key, scheme_for(key, rsa_scheme))


def verify_signature(
    spki_der: bytes,
    algorithm: algos.SignedDigestAlgorithm,
    data: bytes,
    signature: bytes,
    *,
    allow_legacy: bool = False,
) -> None:
    """Check ``signature`` over ``data`` with the issuer key ``spki_der``.

    Raises CertificateError("cert_bad_signature") for a wrong signature, an algorithm that
    does not fit the key, or a legacy hash (MD5/SHA-1) without ``allow_legacy``.
    """
    try:
        public = serialization.load_der_public_key(spki_der)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateError("cert_bad_signature", "the issuer key cannot verify") from exc
    name = parsing("signature algorithm", lambda: algorithm["algorithm"].native)

    def refuse(why: str) -> CertificateError:
        return CertificateError("cert_bad_signature", why)

    try:
        if isinstance(public, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey) and name in (
            "ed25519",
            "ed448",
        ):
            if name != ("ed25519" if isinstance(public, ed25519.Ed25519PublicKey) else "ed448"):
                raise refuse(f"signature algorithm {name} does not fit the issuer's key")
            public.verify(signature, data)
        elif name.endswith("_ecdsa") and isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, data, ec.ECDSA(_hash(name.split("_")[0], allow_legacy)))
        elif name == "rsassa_pss" and isinstance(public, rsa.RSAPublicKey):
            params = algorithm["parameters"]
            digest = _hash(params["hash_algorithm"]["algorithm"].native, allow_legacy)
            mgf = params["mask_gen_algorithm"]
            if mgf["algorithm"].native != "mgf1":
                raise refuse("RSASSA-PSS with an unknown mask generation function")
            mgf_hash = _hash(mgf["parameters"]["algorithm"].native, allow_legacy)
            pss = padding.PSS(padding.MGF1(mgf_hash), params["salt_length"].native)
            public.verify(signature, data, pss, digest)
        elif name.endswith("_rsa") and isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, data, padding.PKCS1v15(), _hash(name[:-4], allow_legacy))
        else:
            raise refuse(f"signature algorithm {name} does not fit the issuer's key")
    except InvalidSignature as exc:
        raise refuse("signature does not verify") from exc
    except (ValueError, KeyError, TypeError, UnsupportedAlgorithm) as exc:
        raise refuse(f"unusable signature parameters: {exc}") from exc


def _hash(name: str, allow_legacy: bool) -> hashes.HashAlgorithm:
    if name not in _HASHES:
        raise CertificateError("cert_bad_signature", f"unsupported hash {name}")
    if name in _LEGACY_HASHES and not allow_legacy:
        raise CertificateError(
            "cert_bad_signature", f"{name.upper()} signatures are refused unless legacy is allowed"
        )
    return _HASHES[name]()
