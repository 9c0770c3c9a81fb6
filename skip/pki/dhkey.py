"""Diffie-Hellman keys in their X.509 and PKCS #8 clothes.

Three SubjectPublicKeyInfo encodings carry a SKIP public value:

- ``pkcs3``: PKCS #3 ``dhKeyAgreement`` with ``DHParameter {p, g, privateValueLength?}`` and
  y as a DER INTEGER inside the BIT STRING (draft-ietf-ipsec-skip-x509-00 section 1);
- ``x942``: ANSI X9.42 ``dhpublicnumber`` with ``DomainParameters {p, g, q, j?, ...}``
  (RFC 3279 section 2.3.3), what current OpenSSL writes for "DHX" keys;
- ``rfc8410``: ``id-X25519`` / ``id-X448`` with the raw 32 / 56 byte key (RFC 8410).

Parsing maps (p, g) back to a well-known group; other parameters come back as an *unvalidated*
group that :mod:`skip.pki.validation` checks (or refuses) according to policy.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Literal

from asn1crypto import algos, core, keys
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x448, x25519

from skip.crypto.dh import GROUPS, DHGroup, Rng, group_for, modp_group, quiet_ffdh_deprecation
from skip.errors import CertificateError
from skip.pki.asn1 import (
    OID_DH_KEY_AGREEMENT,
    OID_DH_PUBLIC_NUMBER,
    OID_X448,
    OID_X25519,
    PrivateKeyInfo,
    SubjectPublicKeyInfo,
    integer_der,
    integer_from_der,
    parsing,
)
from skip.pki.pemfile import pem_encode, read_pem_or_der

Encoding = Literal["pkcs3", "x942", "rfc8410"]
ENCODINGS: tuple[Encoding, ...] = ("pkcs3", "x942", "rfc8410")

ECX_OIDS = {OID_X25519: "x25519", OID_X448: "x448"}

MAX_PKCS8_ITERATIONS = 10_000_000
"""Most PBKDF2 iterations an encrypted key file may ask for (cryptography and OpenSSL write
2048; 10 million PBKDF2-HMAC-SHA-256 rounds take a few seconds). The count comes from the
file and would otherwise be run before the passphrase can even be checked: up to 2**63
rounds, a process that never ends."""
_ECX_OID_BY_NAME = {name: oid for oid, name in ECX_OIDS.items()}


@dataclass(frozen=True)
class DHPublicKey:
    """A certified public value: the group, the value (fixed-size bytes, as skip.crypto.dh
    wants them) and how it was encoded. ``well_known`` is False for parameters that are not
    one of :data:`skip.crypto.dh.GROUPS`: such a group has not been validated yet."""

    group: DHGroup
    public_value: bytes
    encoding: Encoding
    well_known: bool = True


@dataclass(frozen=True)
class DHPrivateKey:
    """A long-term private value with its group."""

    group: DHGroup
    private: bytes

    @functools.cached_property
    def public(self) -> DHPublicKey:
        return DHPublicKey(
            self.group, self.group.public_value(self.private), default_encoding(self.group)
        )


def default_encoding(group: DHGroup) -> Encoding:
    """RFC 8410 for X25519/X448; X9.42 where the subgroup order is known (it lets a relying
    party check y^q = 1); PKCS #3 otherwise (skip-2048, whose g generates the whole group)."""
    if group.kind == "ecx":
        return "rfc8410"
    return "x942" if group.q is not None else "pkcs3"


def generate_key(group: DHGroup, rng: Rng = os.urandom) -> DHPrivateKey:
    return DHPrivateKey(group, group.generate_private(rng))


# --- SubjectPublicKeyInfo -----------------------------------------------------------------------


def encode_spki(key: DHPublicKey, encoding: Encoding | None = None) -> bytes:
    """The DER SubjectPublicKeyInfo of ``key`` in ``encoding`` (default: the key's own)."""
    encoding = encoding or key.encoding
    group = key.group
    if group.kind == "ecx" or encoding == "rfc8410":
        if group.kind != "ecx" or encoding != "rfc8410":
            raise CertificateError(
                "cert_key_type", f"{group.name} keys cannot use the {encoding} encoding"
            )
        algorithm = {"algorithm": _ECX_OID_BY_NAME[group.name]}
        raw = key.public_value
    else:
        if encoding == "x942":
            if group.q is None:
                raise CertificateError(
                    "cert_key_type",
                    f"{group.name} has no prime-order subgroup for X9.42; use pkcs3",
                )
            params: core.Sequence = keys.DomainParameters(
                {"p": group.p, "g": group.g, "q": group.q}
            )
            oid = OID_DH_PUBLIC_NUMBER
        else:
            params = algos.DHParameters({"p": group.p, "g": group.g})
            oid = OID_DH_KEY_AGREEMENT
        algorithm = {"algorithm": oid, "parameters": params}
        raw = integer_der(int.from_bytes(key.public_value))
    return bytes(SubjectPublicKeyInfo({"algorithm": algorithm, "public_key": raw}).dump())


def spki_algorithm(spki_der: bytes) -> str:
    """The dotted OID of a SubjectPublicKeyInfo's algorithm (to tell DH keys from CA keys)."""
    return parsing(
        "SubjectPublicKeyInfo",
        lambda: str(
            SubjectPublicKeyInfo.load(spki_der, strict=True)["algorithm"]["algorithm"].dotted
        ),
    )


def decode_spki(spki_der: bytes) -> DHPublicKey:
    """Read a DH / X25519 / X448 SubjectPublicKeyInfo.

    Raises CertificateError: ``cert_malformed`` for bad DER, ``cert_key_type`` for a key that
    is not for key agreement, ``bad_public_value`` when y does not fit the modulus.
    """

    def decode() -> DHPublicKey:
        spki = SubjectPublicKeyInfo.load(spki_der, strict=True)
        oid = spki["algorithm"]["algorithm"].dotted
        raw = bytes(spki["public_key"].native)
        params = spki["algorithm"]["parameters"]
        if oid in ECX_OIDS:
            if params.native is not None:
                raise CertificateError("cert_malformed", "RFC 8410 keys have no parameters")
            group = GROUPS[ECX_OIDS[oid]]
            if len(raw) != group.public_size:
                raise CertificateError("bad_public_value", f"{group.name} key of {len(raw)} bytes")
            return DHPublicKey(group, raw, "rfc8410")
        if oid == OID_DH_KEY_AGREEMENT:
            dh_params = algos.DHParameters.load(params.dump(), strict=True)
            p, g, q = dh_params["p"].native, dh_params["g"].native, None
            encoding: Encoding = "pkcs3"
        elif oid == OID_DH_PUBLIC_NUMBER:
            domain = keys.DomainParameters.load(params.dump(), strict=True)
            p, g, q = domain["p"].native, domain["g"].native, domain["q"].native
            encoding = "x942"
        else:
            raise CertificateError("cert_key_type", f"key algorithm {oid} is not Diffie-Hellman")
        y = integer_from_der(raw, "DH public value")
        return dh_public_key(p, g, q, y, encoding)

    return parsing("SubjectPublicKeyInfo", decode)


def dh_public_key(p: int, g: int, q: int | None, y: int, encoding: Encoding) -> DHPublicKey:
    """Map explicit MODP parameters to a group (well known or provisional) and pad y."""
    if p <= 3 or not 1 < g < p:
        raise CertificateError("bad_group", "DH parameters out of range")
    group = group_for(p, g)
    well_known = group is not None
    if group is None:
        group = modp_group("custom", p, g, q)
    elif q is not None and q != group.q:
        raise CertificateError("bad_group", f"X9.42 q does not match {group.name}'s subgroup")
    if not 0 < y < p:
        raise CertificateError("bad_public_value", "public value out of range")
    return DHPublicKey(group, y.to_bytes(group.public_size), encoding, well_known)


# --- private keys (PKCS #8) -------------------------------------------------------------------


def private_key_der(key: DHPrivateKey) -> bytes:
    """Unencrypted PKCS #8 DER, in the form OpenSSL writes for DH / DHX / X25519 / X448."""
    if key.group.kind == "ecx":
        return _ecx_private_object(key).private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    spki = SubjectPublicKeyInfo.load(encode_spki(key.public, _private_encoding(key.group)))
    return bytes(
        PrivateKeyInfo(
            {
                "version": 0,
                "private_key_algorithm": spki["algorithm"],
                "private_key": integer_der(int.from_bytes(key.private)),
            }
        ).dump()
    )


def _private_encoding(group: DHGroup) -> Encoding:
    # OpenSSL writes safe-prime groups as PKCS #3 "DH" keys and only small-q groups as "DHX".
    if group.q is not None and group.q != (group.p - 1) // 2:
        return "x942"
    return "pkcs3"


def dump_private_key(key: DHPrivateKey, passphrase: bytes | None = None) -> bytes:
    """PEM PKCS #8, encrypted with the best scheme cryptography offers when a passphrase is
    given (PBES2, AES-256-CBC)."""
    der = private_key_der(key)
    if not passphrase:
        return pem_encode("PRIVATE KEY", der)
    with quiet_ffdh_deprecation():
        loaded = serialization.load_der_private_key(der, None)
    return loaded.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )


def load_private_key(data: bytes, passphrase: bytes | None = None) -> DHPrivateKey:
    """Read a PEM or DER PKCS #8 DH / X25519 / X448 private key (encrypted or not)."""
    label, der = read_pem_or_der(data, ("PRIVATE KEY", "ENCRYPTED PRIVATE KEY"))
    if label == "ENCRYPTED PRIVATE KEY":
        if not passphrase:
            raise CertificateError(
                "cert_malformed", "the private key is encrypted: give a passphrase"
            )
        _check_key_encryption(der)
        try:
            with quiet_ffdh_deprecation():
                loaded = serialization.load_der_private_key(der, passphrase)
        except UnsupportedAlgorithm as exc:  # decrypted fine, but not a key cryptography knows
            raise CertificateError(
                "cert_key_type", "the encrypted key is not a DH, X25519 or X448 key"
            ) from exc
        except (ValueError, TypeError) as exc:
            raise CertificateError(
                "cert_malformed", "cannot decrypt the private key (wrong passphrase?)"
            ) from exc
        try:
            der = loaded.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise CertificateError("cert_key_type", f"unusable decrypted key: {exc}") from exc

    def decode() -> DHPrivateKey:
        info = PrivateKeyInfo.load(der, strict=True)
        oid = info["private_key_algorithm"]["algorithm"].dotted
        inner = bytes(info["private_key"].native)
        if oid in ECX_OIDS:
            group = GROUPS[ECX_OIDS[oid]]
            raw = bytes(core.OctetString.load(inner, strict=True).native)
            return DHPrivateKey(group, raw)
        spki = SubjectPublicKeyInfo(
            {"algorithm": info["private_key_algorithm"], "public_key": integer_der(2)}
        ).dump()
        public = decode_spki(spki)  # resolves the group from the parameters
        x = integer_from_der(inner, "DH private value")
        group = public.group
        limit = group.q if group.q is not None else group.p - 1
        if not 1 < x < limit:
            raise CertificateError("cert_malformed", "DH private value out of range for its group")
        # our own keys keep their fixed length; longer (imported) exponents their own
        return DHPrivateKey(group, x.to_bytes(max(group.private_size, (x.bit_length() + 7) // 8)))

    return parsing("private key", decode)


def _check_key_encryption(der: bytes) -> None:
    """Read the PBKDF2 iteration count of an EncryptedPrivateKeyInfo (RFC 5958 / PKCS #5
    PBES2, or a PKCS #12 PBE scheme) and refuse it above :data:`MAX_PKCS8_ITERATIONS`,
    before anything is derived. A scheme whose cost cannot be read here (scrypt, unknown
    OIDs) is refused too: its work factor would be just as unchecked."""

    def iterations() -> int:
        info = keys.EncryptedPrivateKeyInfo.load(der, strict=True)
        algorithm = info["encryption_algorithm"]
        if algorithm["algorithm"].native == "pbes2":
            kdf = algorithm["parameters"]["key_derivation_func"]["algorithm"].native
            if kdf != "pbkdf2":
                raise CertificateError(
                    "cert_malformed", f"key encryption with {kdf} is not supported (use PBKDF2)"
                )
        return int(algorithm.kdf_iterations)

    count = parsing("encrypted private key", iterations)
    if not 1 <= count <= MAX_PKCS8_ITERATIONS:
        raise CertificateError(
            "cert_malformed",
            f"the key file asks for {count} key-derivation iterations "
            f"(at most {MAX_PKCS8_ITERATIONS} are run)",
        )


def _ecx_private_object(key: DHPrivateKey) -> x25519.X25519PrivateKey | x448.X448PrivateKey:
    cls = x25519.X25519PrivateKey if key.group.name == "x25519" else x448.X448PrivateKey
    return cls.from_private_bytes(key.private)


def load_public_key(data: bytes) -> DHPublicKey:
    """A PEM ("PUBLIC KEY") or DER SubjectPublicKeyInfo holding a DH value."""
    _, der = read_pem_or_der(data, ("PUBLIC KEY",))
    return decode_spki(der)


def dump_public_key(key: DHPublicKey, encoding: Encoding | None = None) -> bytes:
    return pem_encode("PUBLIC KEY", encode_spki(key, encoding))
