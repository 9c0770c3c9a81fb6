"""The few ASN.1 structures asn1crypto does not know, and the one guard around parsing.

asn1crypto has no PKCS#3 ``dhKeyAgreement`` key type and no Sun ``ipAddress`` attribute, and
its typed SubjectPublicKeyInfo refuses unknown algorithms. SKIP's certificates need both, so
keys are parsed and built here with a generic ``AlgorithmIdentifier`` (parameters as ANY)
and re-parsed by OID.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from asn1crypto import core

from skip.errors import CertificateError, SkipError

OID_DH_KEY_AGREEMENT = "1.2.840.113549.1.3.1"  # PKCS #3, the encoding of skip-x509-00
OID_DH_PUBLIC_NUMBER = "1.2.840.10046.2.1"  # ANSI X9.42 / RFC 3279 section 2.3.3
OID_X25519 = "1.3.101.110"  # RFC 8410
OID_X448 = "1.3.101.111"
OID_IP_ADDRESS = "1.3.6.1.4.1.42.2.11.2.1"  # Sun ipAddress attribute, skip-x509-00 section 2
UB_IP_ADDRESS = 256


class AlgorithmIdentifier(core.Sequence):
    _fields = [  # noqa: RUF012 - asn1crypto's declaration style
        ("algorithm", core.ObjectIdentifier),
        ("parameters", core.Any, {"optional": True}),
    ]


class SubjectPublicKeyInfo(core.Sequence):
    _fields = [  # noqa: RUF012
        ("algorithm", AlgorithmIdentifier),
        ("public_key", core.OctetBitString),
    ]


class PrivateKeyInfo(core.Sequence):
    """PKCS #8 (RFC 5208) with the algorithm left generic, for DH private keys."""

    _fields = [  # noqa: RUF012
        ("version", core.Integer),
        ("private_key_algorithm", AlgorithmIdentifier),
        ("private_key", core.OctetString),
        ("attributes", core.Any, {"implicit": 0, "optional": True}),
    ]


T = TypeVar("T")


def parsing(what: str, action: Callable[[], T]) -> T:
    """Run ``action`` and turn whatever a third-party decoder throws into cert_malformed.

    asn1crypto decodes lazily and reports malformed input with ValueError, TypeError,
    KeyError, IndexError or OverflowError depending on where it trips; the rest of skip only
    ever sees CertificateError (or our own errors raised inside ``action``).
    """
    try:
        return action()
    except SkipError:
        raise
    except Exception as exc:  # the boundary between untrusted bytes and skip
        raise CertificateError("cert_malformed", f"{what}: {exc}") from exc


def integer_der(value: int) -> bytes:
    return bytes(core.Integer(value).dump())


def integer_from_der(data: bytes, what: str) -> int:
    def decode() -> int:
        parsed = core.Integer.load(data, strict=True)
        return int(parsed.native)

    return parsing(what, decode)
