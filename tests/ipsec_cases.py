"""Shared cases for the wire and engine tests: algorithm suites, sample datagrams, SA pairs,
and routers that change datagrams in flight the way RFC 791 / RFC 8200 let them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from skip.crypto.registry import get_cipher, get_integrity
from skip.ipsec import SecurityAssociation
from skip.wire.ip import (
    EXTENSION_HEADERS,
    IPV4_OPT_LSRR,
    IPV4_OPT_RR,
    IPV4_OPT_SSRR,
    IPV6_OPT_MUTABLE,
    PROTO_HOPOPTS,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_ROUTING,
    PROTO_TCP,
    PROTO_UDP,
    ExtensionHeader,
    IPv4Option,
    IPv6Option,
    _extension_end,
    _walk_ipv4_options,
    _walk_ipv6_options,
    build_ipv4,
    build_ipv6,
    finish_ipv4_header,
)

V4 = ("192.0.2.1", "198.51.100.7")
V6 = ("2001:db8::1", "2001:db8:ff::7")
TUNNEL = {4: ("203.0.113.1", "203.0.113.2"), 6: ("2001:db8:a::1", "2001:db8:b::2")}


def key(label: str, size: int) -> bytes:
    """Deterministic, distinct key bytes per label (tests only)."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{label}/{counter}".encode()).digest()
        counter += 1
    return out[:size]


@dataclass(frozen=True)
class Suite:
    protocol: str
    cipher: str | None = None
    integrity: str | None = None
    sequence: bool = True
    esn: bool = False
    key_size: int | None = None  # AES key size without salt, default the smallest

    @property
    def legacy(self) -> bool:
        algs = []
        if self.cipher:
            algs.append(get_cipher(self.cipher, allow_legacy=True))
        if self.integrity:
            algs.append(get_integrity(self.integrity, allow_legacy=True))
        return any(a.legacy for a in algs)

    @property
    def id(self) -> str:
        parts = [self.protocol, self.cipher or "", self.integrity or ""]
        parts += [str(self.key_size or "")]
        parts += ["seq" if self.sequence else "noseq"] + (["esn"] if self.esn else [])
        return "-".join(p for p in parts if p)

    def keys(self) -> dict[str, bytes]:
        out = {}
        if self.cipher:
            alg = get_cipher(self.cipher, allow_legacy=True)
            out["cipher_key"] = key(self.id + "/enc", (self.key_size or alg.key_size)
                                    + alg.salt_size)
        if self.integrity:
            alg = get_integrity(self.integrity, allow_legacy=True)
            out["integrity_key"] = key(self.id + "/auth", alg.key_size)
        return out

    def sa(self, mode: str, outer: int | None = None, spi: int = 0x1234, **extra: object):
        tunnel = {}
        if mode == "tunnel":
            tunnel = {"tunnel_src": TUNNEL[outer][0], "tunnel_dst": TUNNEL[outer][1]}
        unauth = self.protocol == "esp" and self.integrity is None and self.cipher not in (
            "aes-gcm-8", "aes-gcm-12", "aes-gcm-16", "aes-gmac", "chacha20-poly1305")
        return SecurityAssociation(
            self.protocol, spi, mode, cipher=self.cipher, integrity=self.integrity,
            sequence=self.sequence, esn=self.esn, allow_legacy=self.legacy,
            allow_unauthenticated=unauth, **tunnel, **self.keys(), **extra)


ESP_SUITES = (
    Suite("esp", "null", "hmac-sha1-96"),
    Suite("esp", "des-cbc", "hmac-md5-96"),
    Suite("esp", "des-cbc-iv32", "keyed-md5"),
    Suite("esp", "3des-cbc", "hmac-md5-96"),
    Suite("esp", "aes-cbc", "hmac-sha1-96"),
    Suite("esp", "aes-cbc", "hmac-sha2-256-128", key_size=32),
    Suite("esp", "aes-cbc", "hmac-sha2-384-192", key_size=24),
    Suite("esp", "aes-cbc", "hmac-sha2-512-256", esn=True),
    Suite("esp", "aes-ctr", "hmac-sha2-256-128"),
    Suite("esp", "aes-gcm-8"),
    Suite("esp", "aes-gcm-12", key_size=24),
    Suite("esp", "aes-gcm-16", key_size=32, esn=True),
    Suite("esp", "aes-gmac"),
    Suite("esp", "chacha20-poly1305"),
    Suite("esp", "chacha20-poly1305", esn=True),
    # SKIP era: RFC 1827/1829 framing, no sequence number
    Suite("esp", "des-cbc", "keyed-md5", sequence=False),
    Suite("esp", "3des-cbc", "keyed-sha1", sequence=False),
    Suite("esp", "aes-gcm-16", sequence=False),
)
AH_SUITES = (
    Suite("ah", integrity="hmac-sha1-96"),
    Suite("ah", integrity="hmac-sha2-256-128"),
    Suite("ah", integrity="hmac-sha2-384-192", esn=True),
    Suite("ah", integrity="hmac-sha2-512-256"),
    Suite("ah", integrity="hmac-md5-96"),
    Suite("ah", integrity="hmac-md5-128", sequence=False),
    Suite("ah", integrity="keyed-md5", sequence=False),
    Suite("ah", integrity="keyed-sha1", sequence=False),
)
ALL_SUITES = ESP_SUITES + AH_SUITES

#: (mode, inner version, outer version or None)
LAYOUTS = (
    ("transport", 4, None),
    ("transport", 6, None),
    ("tunnel", 4, 4),
    ("tunnel", 6, 6),
    ("tunnel", 4, 6),
    ("tunnel", 6, 4),
)


def datagram(version: int, size: int = 64, *, fancy: bool = False) -> bytes:
    """A UDP/TCP/ICMP-ish datagram of ``size`` payload bytes; ``fancy`` adds IPv4 options or
    an IPv6 extension-header chain."""
    payload = bytes((i * 7 + size) & 0xFF for i in range(size))
    if version == 4:
        opts = [IPv4Option(148, b"\0\0"), IPv4Option(7, bytes([4]) + bytes(8))] if fancy else []
        return build_ipv4(*V4, PROTO_UDP if size % 2 else PROTO_ICMP, payload, tos=0x2A,
                          identification=size, options=opts, flags=2)
    chain = [ExtensionHeader.with_options(0, 0, [IPv6Option(0x3E, b"mut"), IPv6Option(5, b"\0\0")]),
             ExtensionHeader.with_options(60, 0, [IPv6Option(0x1E, b"end")])] if fancy else []
    return build_ipv6(*V6, PROTO_TCP if size % 2 else PROTO_ICMPV6, payload, traffic_class=0x29,
                      flow_label=0xBEEF, extension_headers=chain)


def ipv4_router_hop(pkt: bytes, me: bytes) -> bytes:
    """What a router does to an IPv4 datagram (RFC 791/1812): TTL, TOS, DF, record route,
    timestamps, and source-route processing; then a new checksum."""
    b = bytearray(pkt)
    b[8] -= 1
    b[1] ^= 0x03  # ECN marking
    b[6] |= 0x40  # a router may set DF
    hl = (b[0] & 15) * 4
    for kind, off, length in list(_walk_ipv4_options(b, 20, hl)):
        ptr = b[off + 2] if length > 2 else 0
        if kind == IPV4_OPT_RR and ptr + 3 <= length:
            b[off + ptr - 1 : off + ptr + 3] = me
            b[off + 2] += 4
        elif kind == 68 and ptr + 3 <= length:  # timestamp, flag 0: 32-bit timestamps
            b[off + ptr - 1 : off + ptr + 3] = b"\x00\x01\x02\x03"
            b[off + 2] += 4
        elif kind in (IPV4_OPT_LSRR, IPV4_OPT_SSRR) and ptr + 3 <= length:
            nxt = bytes(b[off + ptr - 1 : off + ptr + 3])
            b[off + ptr - 1 : off + ptr + 3] = me
            b[off + 2] += 4
            b[16:20] = nxt
    finish_ipv4_header(b)
    return bytes(b)


def ipv6_router_hops(pkt: bytes) -> bytes:
    """Every router on a type-0 route: hop limit, traffic class, flow label, the data of
    "may change" options in the hop-by-hop header, and the RFC 2460 address swap."""
    b = bytearray(pkt)
    off, nh = 40, b[6]
    while nh in EXTENSION_HEADERS:
        end = _extension_end(b, off, nh)
        if nh == PROTO_ROUTING:
            while b[off + 3]:
                count = (end - off - 8) // 16
                i = count - b[off + 3]
                at = off + 8 + 16 * i
                b[24:40], b[at : at + 16] = bytes(b[at : at + 16]), bytes(b[24:40])
                b[off + 3] -= 1
                b[7] -= 1
                b[1] ^= 0x5A
                b[3] ^= 0x77
        elif nh == PROTO_HOPOPTS:
            for kind, doff, dlen in _walk_ipv6_options(b, off + 2, end):
                if kind & IPV6_OPT_MUTABLE:
                    b[doff : doff + dlen] = bytes(x ^ 0xFF for x in b[doff : doff + dlen])
        nh, off = b[off], end
    return bytes(b)
