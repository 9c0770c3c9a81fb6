"""The Certificate Discovery Protocol message (draft-ietf-ipsec-cdp-01 s. 3; next-wave.md 1.2,
1.3): a 12-byte header and the number of records it announces, nothing before, between or
after them.

Header: ``VERS ACTION/STATUS #-OF-RECS Reserved | Requester Cookie | Responder Cookie``
(``!BBBBII``). Record: ``Action/Status NameType NameLength Name CERT-Type CERT-Length(16)
Certificate``, packed. Parsing is all or nothing (CDP-2): a record that overruns the datagram,
a count that does not match, bytes after the last record, or a version other than 1 is a
:class:`~skip.errors.ParseError` and the whole message is refused.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from skip.errors import ParseError

CDP_PORT = 1640  # "cert-responder" (cdp-01 s. 4.1)
CDP_VERSION = 1
HEADER = struct.Struct("!BBBBII")
_RECORD_HEAD = struct.Struct("!BBB")
_CERT_HEAD = struct.Struct("!BH")
MAX_RECORDS = 255
MAX_DATAGRAM = 65_507  # the largest UDP payload over IPv4


class Action(IntEnum):
    """ACTION/STATUS of the header (cdp-01 s. 3.1)."""

    REQUEST = 0
    RESPONSE = 1
    COOKIE_REQUIRED = 2
    REQUEST_TOO_LARGE = 3


class RecordAction(IntEnum):
    """Action/Status of a record (cdp-01 s. 3.2)."""

    GET = 1
    PUT = 2
    GET_SUCCEEDED = 100
    GET_FAILED = 101
    PUT_SUCCEEDED = 102
    PUT_FAILED = 103


class NameType(IntEnum):
    SKIP = 1  # NSID byte || MKID (draft-06 s. 5.2)
    PGP_PRINTABLE = 2
    PGP_KEYID = 3
    DNS = 4
    RFC822 = 5
    X509_DN = 6


class CertType(IntEnum):
    NONE = 0
    X509 = 1
    PGP = 2
    SECURE_DNS = 3
    UDH = 4
    UNSIGNED_EC = 5
    UNSIGNED_RSA = 6
    X509_CRL = 7


_REQUEST_ACTIONS = frozenset({RecordAction.GET, RecordAction.PUT})


@dataclass(frozen=True, slots=True)
class CdpRecord:
    action: int
    name_type: int
    name: bytes
    cert_type: int = CertType.NONE
    certificate: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.action <= 0xFF or not 0 <= self.name_type <= 0xFF or \
                not 0 <= self.cert_type <= 0xFF:
            raise ParseError("bad_header", "a CDP record field is out of range")
        if len(self.name) > 0xFF:
            raise ParseError("bad_length", f"a CDP name of {len(self.name)} bytes (at most 255)")
        if len(self.certificate) > 0xFFFF:
            raise ParseError("bad_length", "a CDP certificate longer than 65,535 bytes")
        if (self.cert_type == CertType.NONE) != (not self.certificate):
            raise ParseError("bad_length", "a certificate exactly when CERT-Type is not 0")

    @property
    def size(self) -> int:
        return 3 + len(self.name) + 3 + len(self.certificate)

    def encode(self) -> bytes:
        return (_RECORD_HEAD.pack(self.action, self.name_type, len(self.name)) + self.name +
                _CERT_HEAD.pack(self.cert_type, len(self.certificate)) + self.certificate)


@dataclass(frozen=True, slots=True)
class CdpMessage:
    action: int
    requester_cookie: int
    responder_cookie: int = 0
    records: tuple[CdpRecord, ...] = ()
    version: int = CDP_VERSION

    def __post_init__(self) -> None:
        if len(self.records) > MAX_RECORDS:
            raise ParseError("bad_length", f"{len(self.records)} CDP records (at most 255)")
        for cookie in (self.requester_cookie, self.responder_cookie):
            if not 0 <= cookie <= 0xFFFFFFFF:
                raise ParseError("bad_header", "a CDP cookie is 32 bits")

    @property
    def is_request(self) -> bool:
        return self.action == Action.REQUEST

    @property
    def size(self) -> int:
        return HEADER.size + sum(r.size for r in self.records)

    def encode(self) -> bytes:
        head = HEADER.pack(self.version, self.action, len(self.records), 0,
                           self.requester_cookie, self.responder_cookie)
        return head + b"".join(r.encode() for r in self.records)

    @classmethod
    def parse(cls, data: bytes | memoryview) -> CdpMessage:
        data = bytes(data)
        if len(data) < HEADER.size:
            raise ParseError("truncated", f"a CDP header is 12 bytes, got {len(data)}")
        version, action, count, _reserved, req_cookie, resp_cookie = HEADER.unpack_from(data)
        if version != CDP_VERSION:
            raise ParseError("cdp_bad_version", f"CDP version {version}")
        if action not in Action._value2member_map_:
            raise ParseError("bad_header", f"CDP action {action}")
        off, records = HEADER.size, []
        for _ in range(count):
            if off + 3 > len(data):
                raise ParseError("truncated", "a CDP record is cut short")
            rec_action, name_type, name_len = _RECORD_HEAD.unpack_from(data, off)
            off += 3
            name = data[off:off + name_len]
            off += name_len
            if len(name) != name_len or off + 3 > len(data):
                raise ParseError("truncated", "a CDP record is cut short")
            cert_type, cert_len = _CERT_HEAD.unpack_from(data, off)
            off += 3
            cert = data[off:off + cert_len]
            off += cert_len
            if len(cert) != cert_len:
                raise ParseError("truncated", "a CDP certificate is cut short")
            requesting = rec_action in _REQUEST_ACTIONS
            if requesting != (action == Action.REQUEST) or \
                    rec_action not in RecordAction._value2member_map_:
                raise ParseError("bad_header", f"record action {rec_action} in a message "
                                 f"with action {action}")
            records.append(CdpRecord(rec_action, name_type, name, cert_type, cert))
        if off != len(data):
            raise ParseError("bad_length", f"{len(data) - off} bytes after the last CDP record")
        return cls(action, req_cookie, resp_cookie, tuple(records), version)
