"""The ephemeral DH certificate of draft-ietf-ipsec-skip-pfs-00 s. 3 (next-wave.md 3.3).

Version 1 is the draft's layout, field by field as drawn (an 8-bit Port, A-PFS-1; the order
public value, generator, modulus). Version 2 is the modern profile's (PFS-M1, M2): the same
layout with a 16-byte random nonce after the two EMKIDs, empty generator and modulus (the
group is the pair's long-term one) and a 16-byte HMAC-SHA-256-128.

Parsing is bounded and all or nothing: every length must fit the datagram and nothing may
follow the MAC. What the fields mean for an exchange (who may set which EMKID, which group)
is checked by :mod:`skip.keying.pfs`, not here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

from skip.errors import ParseError

#: CDP CERT-Type and SKIP NSID of the ephemeral certificate and of EMKIDs: never assigned
#: by IANA, so private numbers (PFS-17), the same on both sides.
EPHEMERAL_CERT_TYPE = 250
EMKID_NSID = 250
EMKID_LENGTH = 4
NONCE_SIZE = 16

_HEAD = struct.Struct("!BBBBI")  # Ver|Rsvd, Protocol, Port, Cert MAC Alg, Validity
_LEN = struct.Struct("!H")
_EMKIDS = struct.Struct("!II")
_CERT = struct.Struct("!BBH")  # Cert Enc. Alg, Cert Type, Encrypted Cert. Length
#: Cert MAC Alg -> MAC length (MAC Alg numbers: 1 keyed MD5, 3 keyed SHA, 20 HMAC-SHA-256-128)
MAC_LENGTHS = {1: 16, 3: 20, 20: 16}
VERSIONS = (1, 2)


@dataclass(frozen=True, slots=True)
class EphemeralCertificate:
    version: int
    mac_alg: int
    validity: int  # seconds the ephemeral key may be used
    public: bytes  # g^x (initiator) or g^y (responder), big-endian / RFC 7748 bytes
    emkid_ij: int  # destination MKID of packets I -> J (chosen by J; 0 from I)
    emkid_ji: int  # destination MKID of packets J -> I (chosen by I, echoed by J)
    generator: bytes = b""
    modulus: bytes = b""
    nonce: bytes = b""  # version 2 only
    protocol: int = 0
    port: int = 0
    cert_enc_alg: int = 0
    cert_type: int = 0
    certificate: bytes = b""
    mac: bytes = b""

    def __post_init__(self) -> None:
        if self.version not in VERSIONS:
            raise ParseError("pfs_bad_certificate", f"ephemeral certificate version "
                             f"{self.version}")
        if self.mac_alg not in MAC_LENGTHS:
            raise ParseError("unsupported_mac_alg", f"Cert MAC Alg {self.mac_alg}")
        if len(self.nonce) != (NONCE_SIZE if self.version == 2 else 0):
            raise ParseError("pfs_bad_certificate", "a 16-byte nonce exactly in version 2")
        for value in (self.protocol, self.port, self.cert_enc_alg, self.cert_type):
            if not 0 <= value <= 0xFF:
                raise ParseError("bad_length", "a one-byte field out of range")
        for value in (self.validity, self.emkid_ij, self.emkid_ji):
            if not 0 <= value <= 0xFFFFFFFF:
                raise ParseError("bad_length", "a 32-bit field out of range")
        for blob in (self.public, self.generator, self.modulus, self.certificate):
            if len(blob) > 0xFFFF:
                raise ParseError("bad_length", "a field longer than 65,535 bytes")
        if self.mac and len(self.mac) != self.mac_length:
            raise ParseError("bad_length", f"a {len(self.mac)}-byte MAC for Cert MAC Alg "
                             f"{self.mac_alg}")

    @property
    def mac_length(self) -> int:
        return MAC_LENGTHS[self.mac_alg]

    def unsigned(self) -> bytes:
        """The certificate with the MAC field zero-filled: what the MAC covers (PFS-3)."""
        return self._body() + bytes(self.mac_length)

    def body(self) -> bytes:
        """Everything but the MAC field (the modern transcript hashes this, PFS-M2)."""
        return self._body()

    def _body(self) -> bytes:
        parts = [_HEAD.pack(self.version << 4, self.protocol, self.port, self.mac_alg,
                            self.validity)]
        for blob in (self.public, self.generator, self.modulus):
            parts += [_LEN.pack(len(blob)), blob]
        parts.append(_EMKIDS.pack(self.emkid_ij, self.emkid_ji))
        parts.append(self.nonce)
        parts.append(_CERT.pack(self.cert_enc_alg, self.cert_type, len(self.certificate)))
        parts.append(self.certificate)
        return b"".join(parts)

    def with_mac(self, mac: bytes) -> EphemeralCertificate:
        return replace(self, mac=mac)

    def encode(self) -> bytes:
        if len(self.mac) != self.mac_length:
            raise ParseError("bad_length", "an ephemeral certificate is sent with its MAC")
        return self._body() + self.mac

    @classmethod
    def parse(cls, data: bytes | memoryview) -> EphemeralCertificate:
        data = bytes(data)
        if len(data) < _HEAD.size:
            raise ParseError("truncated", "an ephemeral certificate is cut short")
        b0, protocol, port, mac_alg, validity = _HEAD.unpack_from(data)
        version = b0 >> 4
        if version not in VERSIONS:
            raise ParseError("pfs_bad_certificate", f"ephemeral certificate version {version}")
        off = _HEAD.size
        blobs = []
        for _ in range(3):
            if off + 2 > len(data):
                raise ParseError("truncated", "an ephemeral certificate is cut short")
            (length,) = _LEN.unpack_from(data, off)
            off += 2
            blob = data[off:off + length]
            if len(blob) != length:
                raise ParseError("truncated", "an ephemeral certificate field is cut short")
            blobs.append(blob)
            off += length
        nonce_size = NONCE_SIZE if version == 2 else 0
        if off + _EMKIDS.size + nonce_size + _CERT.size > len(data):
            raise ParseError("truncated", "an ephemeral certificate is cut short")
        emkid_ij, emkid_ji = _EMKIDS.unpack_from(data, off)
        off += _EMKIDS.size
        nonce = data[off:off + nonce_size]
        off += nonce_size
        enc_alg, cert_type, cert_len = _CERT.unpack_from(data, off)
        off += _CERT.size
        certificate = data[off:off + cert_len]
        off += cert_len
        if len(certificate) != cert_len:
            raise ParseError("truncated", "the long-lived certificate is cut short")
        if mac_alg not in MAC_LENGTHS:
            raise ParseError("unsupported_mac_alg", f"Cert MAC Alg {mac_alg}")
        mac = data[off:]
        if len(mac) != MAC_LENGTHS[mac_alg]:
            raise ParseError("bad_length", f"{len(mac)} bytes where a {MAC_LENGTHS[mac_alg]}"
                             "-byte MAC ends the certificate")
        return cls(version, mac_alg, validity, blobs[0], emkid_ij, emkid_ji, blobs[1],
                   blobs[2], nonce, protocol, port, enc_alg, cert_type, certificate, mac)
