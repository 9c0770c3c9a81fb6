"""PEM armour (RFC 7468), strict enough for files an admin hands us.

asn1crypto's reader refuses labels with dots ("X9.42 DH PARAMETERS") and cannot split a file
holding several blocks with one call; this one does both and reports problems as
CertificateError instead of ValueError.

The reader is linear in the input: it finds each BEGIN line, then the first END line after
it, which must close the same label. A single regular expression spanning BEGIN ... END
(the first version) rescanned the rest of the file from every BEGIN line that had no END, so
a file of repeated BEGIN lines cost quadratic time (22 s for 288 KB). Blocks do not nest in
RFC 7468, so a BEGIN whose next END is missing or names another label is refused.
"""

from __future__ import annotations

import base64
import binascii
import re

from skip.errors import CertificateError

# The label is bounded so that a BEGIN line never makes the search look far ahead.
_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 .#-]{1,80})-----\r?\n")
_END = b"-----END "


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
    pos = 0
    while match := _BEGIN.search(data, pos):
        label = match.group(1)
        end = data.find(_END, match.end())
        closing = _END + label + b"-----"
        if end < 0 or not data.startswith(closing, end):
            raise CertificateError(
                "cert_malformed", f"PEM block {label.decode()!r} has no matching END line"
            )
        try:
            der = base64.b64decode(b"".join(data[match.end() : end].split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CertificateError("cert_malformed", f"bad base64 in PEM block: {exc}") from exc
        blocks.append((label.decode(), der))
        pos = end + len(closing)
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
