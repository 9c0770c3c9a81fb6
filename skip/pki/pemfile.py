"""PEM armour (RFC 7468), strict enough for files an admin hands us.

asn1crypto's reader refuses labels with dots ("X9.42 DH PARAMETERS") and cannot split a file
holding several blocks with one call; this one does both and reports problems as
CertificateError instead of ValueError.
"""

from __future__ import annotations

import base64
import binascii
import re

from skip.errors import CertificateError

_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 .#-]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)


def pem_encode(label: str, der: bytes) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"".join(
        [
            f"-----BEGIN {label}-----\n".encode(),
            *(line + b"\n" for line in lines),
            f"-----END {label}-----\n".encode(),
        ]
    )


def is_pem(data: bytes) -> bool:
    return b"-----BEGIN " in data[:4096]


def pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    """Every (label, DER) block in ``data``, in order."""
    blocks = []
    for match in _BLOCK.finditer(data):
        try:
            der = base64.b64decode(b"".join(match.group(2).split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CertificateError("cert_malformed", f"bad base64 in PEM block: {exc}") from exc
        blocks.append((match.group(1).decode(), der))
    if not blocks and is_pem(data):
        raise CertificateError("cert_malformed", "unterminated or malformed PEM block")
    return blocks


def read_pem_or_der(data: bytes, labels: tuple[str, ...]) -> tuple[str, bytes]:
    """The first PEM block with one of ``labels``, or ``data`` itself taken as DER (reported
    with the first label)."""
    if not is_pem(data):
        return labels[0], data
    for label, der in pem_blocks(data):
        if label in labels:
            return label, der
    raise CertificateError("cert_malformed", f"no PEM block labelled {' or '.join(labels)}")
