"""GIK messages of the multicast extension (draft-ietf-ipsec-skip-mc-00 s. 1.1, port 1660).

Two versions share the port:

- **Version 1**, the draft byte for byte (next-wave.md 4.2, 4.3): the request names an IPv4
  group address M; the response carries Kg, its expiry (uint32 seconds since 1995-01-01), the
  two recommended key-change intervals and the four algorithms every sender to M must use.
  Kg is always 32 bytes (MC-11, A-MC-1).
- **Version 2** (MC-M1, this project's extension; docs/multicast.md "Wire format"): a type
  byte after the version, a 16-byte M (IPv4-mapped for IPv4), a requester nonce echoed in the
  response, a strictly increasing key epoch, uint64 POSIX expiry, and two messages the draft
  lacks: the response also hands the member its logical-key-hierarchy path (the keys from its
  leaf to the root, whose root is Kg), and a **rekey** message, multicast by the owner and
  signed with the owner's Ed25519 rekey key, carries new node keys wrapped (RFC 3394) under
  keys that every member except the evicted ones holds.

Like every wire module this one only moves bytes: no crypto, no policy. Parsers are bounded
(every count and length is checked against the buffer before anything is read) and raise
:class:`~skip.errors.ParseError` with a reason code, never ``struct.error`` or ``IndexError``.
RESERVED fields are 0 on send and ignored on receive (mc-00 s. 1.1).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from skip.errors import ParseError

GIK_PORT = 1660  # skip-mc-gikreq (mc-00 s. 3.1)
VERSION_LEGACY = 1
VERSION_MODERN = 2

KG_SIZE = 32  # MC-11: Kg MUST be 256 bits
NONCE_SIZE = 16
KEY_SIZE = 32  # every LKH node key
WRAPPED_SIZE = KEY_SIZE + 8  # RFC 3394 adds one 64-bit block
OWNER_KEY_SIZE = 32  # Ed25519 public key
SIGNATURE_SIZE = 64  # Ed25519 signature
MAX_PATH = 32  # node keys a response may carry (a tree of 2**32 leaves)
MAX_WRAPS = 128  # wrapped keys one rekey message may carry

TYPE_REQUEST = 1
TYPE_RESPONSE = 2
TYPE_REKEY = 3

REKEY_EVICT = 1
REKEY_JOIN = 2
REKEY_REFRESH = 3
REKEY_REBUILD = 4  # the key tree was rebuilt (it grew): every member asks again by unicast

_V1_REQUEST = struct.Struct("!B3s4s")  # 8
_V1_RESPONSE = struct.Struct("!B3s4sIIIBBBB")  # 24, then Kg
_V2_HEAD = struct.Struct("!BBH16s")  # 20: version, type, reserved, M
_V2_REQUEST = struct.Struct("!16sI")  # nonce, epoch held (0: none)
_V2_RESPONSE = struct.Struct("!16sIQIQBBBBI32s32sB")  # after the head; then the path
_PATH_ENTRY = struct.Struct("!I32s")  # node, key
_V2_REKEY = struct.Struct("!IIQBBH")  # epoch, previous epoch, expiry, reason, rsvd, count
_WRAP_ENTRY = struct.Struct("!II40s")  # target node, wrapping node, wrapped key


def group_field(address: bytes) -> bytes:
    """The 16-byte M of version 2: IPv6 as is, IPv4 as an IPv4-mapped address (MC-M1)."""
    if len(address) == 16:
        return address
    if len(address) == 4:
        return bytes(10) + b"\xff\xff" + address
    raise ValueError("a group address has 4 or 16 bytes")


def group_address(field: bytes) -> bytes:
    """The group address a 16-byte M names (4 bytes for an IPv4-mapped one)."""
    if field[:12] == bytes(10) + b"\xff\xff":
        return field[12:]
    return field


def is_multicast(address: bytes) -> bool:
    """MC-13: the destination decides multicast processing (224/4 for IPv4, ff00::/8)."""
    if len(address) == 4:
        return address[0] & 0xF0 == 0xE0
    return len(address) == 16 and address[0] == 0xFF


def _check_multicast(address: bytes) -> None:
    if not is_multicast(address):
        raise ParseError("bad_header", f"{ipaddress.ip_address(address)} is not a multicast "
                         "address")


def _need(data: bytes | memoryview, size: int, what: str) -> None:
    if len(data) < size:
        raise ParseError("truncated", f"{what} needs {size} bytes, got {len(data)}")


def _exact(data: bytes | memoryview, size: int, what: str) -> None:
    _need(data, size, what)
    if len(data) != size:
        raise ParseError("bad_length", f"{len(data) - size} bytes after the {what}")


# --- version 1 (mc-00, byte-exact) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GikRequestV1:
    group: bytes  # 4 bytes, IPv4

    def encode(self) -> bytes:
        return _V1_REQUEST.pack(VERSION_LEGACY, bytes(3), self.group)

    @classmethod
    def parse(cls, data: bytes | memoryview) -> GikRequestV1:
        _exact(data, _V1_REQUEST.size, "GIK request")
        version, _reserved, group = _V1_REQUEST.unpack_from(data)
        if version != VERSION_LEGACY:
            raise ParseError("bad_version", f"GIK version {version}")
        _check_multicast(group)
        return cls(group)


@dataclass(frozen=True, slots=True)
class GikResponseV1:
    group: bytes  # 4 bytes
    expiry: int  # uint32 seconds since 1995-01-01 00:00:00 UT
    interval_seconds: int
    interval_bytes: int
    kg_alg: int
    crypt_alg: int
    mac_alg: int
    comp_alg: int
    kg: bytes

    def __post_init__(self) -> None:
        if len(self.kg) != KG_SIZE:
            raise ValueError("Kg is 32 bytes (MC-11)")

    def encode(self) -> bytes:
        return _V1_RESPONSE.pack(VERSION_LEGACY, bytes(3), self.group, self.expiry,
                                 self.interval_seconds, self.interval_bytes, self.kg_alg,
                                 self.crypt_alg, self.mac_alg, self.comp_alg) + self.kg

    @classmethod
    def parse(cls, data: bytes | memoryview) -> GikResponseV1:
        _exact(data, _V1_RESPONSE.size + KG_SIZE, "GIK response")
        version, _rsvd, group, expiry, secs, nbytes, kg_alg, crypt, mac, comp = \
            _V1_RESPONSE.unpack_from(data)
        if version != VERSION_LEGACY:
            raise ParseError("bad_version", f"GIK version {version}")
        _check_multicast(group)
        kg = bytes(data[_V1_RESPONSE.size:])
        return cls(group, expiry, secs, nbytes, kg_alg, crypt, mac, comp, kg)


# --- version 2 (MC-M1, project extension) --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GikRequest:
    """A member asks for the group key, or (``epoch`` > 0) to catch up from that epoch."""

    group: bytes  # 4 or 16 bytes
    nonce: bytes
    epoch: int = 0

    def encode(self) -> bytes:
        return _V2_HEAD.pack(VERSION_MODERN, TYPE_REQUEST, 0, group_field(self.group)) + \
            _V2_REQUEST.pack(self.nonce, self.epoch)


@dataclass(frozen=True, slots=True)
class GikResponse:
    """The group key and this member's path of the key hierarchy (leaf first, root excluded:
    the root key is ``kg``)."""

    group: bytes
    nonce: bytes
    epoch: int
    expiry: int  # POSIX seconds
    interval_seconds: int
    interval_bytes: int
    kg_alg: int
    crypt_alg: int
    mac_alg: int
    comp_alg: int
    leaf: int  # the member's leaf node (heap numbering: root 1, children 2i and 2i+1)
    owner_key: bytes  # Ed25519 public key that signs this group's rekey messages
    kg: bytes
    path: tuple[tuple[int, bytes], ...] = ()  # (node, key), leaf first, the root not included

    def encode(self) -> bytes:
        if len(self.path) > MAX_PATH:
            raise ValueError("too many path keys")
        head = _V2_HEAD.pack(VERSION_MODERN, TYPE_RESPONSE, 0, group_field(self.group))
        body = _V2_RESPONSE.pack(self.nonce, self.epoch, self.expiry, self.interval_seconds,
                                 self.interval_bytes, self.kg_alg, self.crypt_alg, self.mac_alg,
                                 self.comp_alg, self.leaf, self.owner_key, self.kg,
                                 len(self.path))
        return head + body + b"".join(_PATH_ENTRY.pack(n, k) for n, k in self.path)


@dataclass(frozen=True, slots=True)
class Wrap:
    """``wrapped`` is node ``target``'s new key, RFC 3394-wrapped under node ``under``'s key
    (the newest one: a key replaced earlier in the same message counts as replaced)."""

    target: int
    under: int
    wrapped: bytes


@dataclass(frozen=True, slots=True)
class GikRekey:
    """Multicast by the owner to M, UDP 1660: the keys of ``epoch``, built on ``previous``."""

    group: bytes
    epoch: int
    previous: int
    expiry: int
    reason: int
    wraps: tuple[Wrap, ...]
    signature: bytes = bytes(SIGNATURE_SIZE)

    def signed_part(self) -> bytes:
        """Everything the owner's signature covers: the whole message before it."""
        if len(self.wraps) > MAX_WRAPS:
            raise ValueError("too many wrapped keys")
        head = _V2_HEAD.pack(VERSION_MODERN, TYPE_REKEY, 0, group_field(self.group))
        body = _V2_REKEY.pack(self.epoch, self.previous, self.expiry, self.reason, 0,
                              len(self.wraps))
        return head + body + b"".join(_WRAP_ENTRY.pack(w.target, w.under, w.wrapped)
                                      for w in self.wraps)

    def encode(self) -> bytes:
        return self.signed_part() + self.signature


GikMessage = GikRequestV1 | GikResponseV1 | GikRequest | GikResponse | GikRekey


def parse_gik(data: bytes | memoryview) -> GikMessage:
    """Any GIK message. Version 1 has no type byte: its request and response differ in length
    (8 and 56 bytes), which is how a version-1 receiver tells them apart."""
    _need(data, 1, "GIK message")
    version = data[0]
    if version == VERSION_LEGACY:
        if len(data) == _V1_REQUEST.size:
            return GikRequestV1.parse(data)
        return GikResponseV1.parse(data)
    if version != VERSION_MODERN:
        raise ParseError("bad_version", f"GIK version {version}")
    _need(data, _V2_HEAD.size, "GIK v2 header")
    _v, kind, _rsvd, m = _V2_HEAD.unpack_from(data)
    group = group_address(m)
    _check_multicast(group)
    body = memoryview(data)[_V2_HEAD.size:]
    if kind == TYPE_REQUEST:
        _exact(body, _V2_REQUEST.size, "GIK v2 request")
        nonce, epoch = _V2_REQUEST.unpack_from(body)
        return GikRequest(group, nonce, epoch)
    if kind == TYPE_RESPONSE:
        _need(body, _V2_RESPONSE.size, "GIK v2 response")
        (nonce, epoch, expiry, secs, nbytes, kg_alg, crypt, mac, comp, leaf, owner_key, kg,
         count) = _V2_RESPONSE.unpack_from(body)
        if count > MAX_PATH:
            raise ParseError("bad_length", f"{count} path keys (at most {MAX_PATH})")
        _exact(body, _V2_RESPONSE.size + count * _PATH_ENTRY.size, "GIK v2 response")
        path = tuple(_PATH_ENTRY.unpack_from(body, _V2_RESPONSE.size + i * _PATH_ENTRY.size)
                     for i in range(count))
        return GikResponse(group, nonce, epoch, expiry, secs, nbytes, kg_alg, crypt, mac, comp,
                           leaf, owner_key, kg, path)
    if kind == TYPE_REKEY:
        _need(body, _V2_REKEY.size + SIGNATURE_SIZE, "GIK v2 rekey")
        epoch, previous, expiry, reason, _r, count = _V2_REKEY.unpack_from(body)
        if count > MAX_WRAPS:
            raise ParseError("bad_length", f"{count} wrapped keys (at most {MAX_WRAPS})")
        size = _V2_REKEY.size + count * _WRAP_ENTRY.size
        _exact(body, size + SIGNATURE_SIZE, "GIK v2 rekey")
        wraps = tuple(Wrap(*_WRAP_ENTRY.unpack_from(body, _V2_REKEY.size + i * _WRAP_ENTRY.size))
                      for i in range(count))
        return GikRekey(group, epoch, previous, expiry, reason, wraps, bytes(body[size:]))
    raise ParseError("bad_header", f"GIK v2 message type {kind}")
