"""AH: RFC 4302 (sequence numbers, ESN, anti-replay) and RFC 1826 (SKIP era).

The ICV covers the whole datagram as the receiver will see it (RFC 4302 section 3.3.3.1):
the IP header chain with every mutable field zeroed or given its final value
(:func:`skip.wire.ip.zero_mutable_fields`; RFC 1826 SAs zero fewer base-header fields, see
``ah_mutable``), any shim header (SKIP's, as immutable data), the AH header with its ICV
field zeroed, the payload, and with ESN the high 32 bits of the sequence
number after the end (never sent).  The ICV field is padded with zeros so the AH header is a
multiple of 32 bits (IPv4) or 64 bits (IPv6); the padding is zero in the image too, so the
receiver does not depend on its content.

Receive order as for ESP: parse, SPI check, replay pre-check, ICV, window update.
"""

from __future__ import annotations

from skip.crypto.integrity import MacContext
from skip.errors import ParseError
from skip.ipsec.layout import check_inner, decapsulate, rebuild_transport, spliced_head
from skip.ipsec.sa import Rng, SecurityAssociation, Shim, _bad_sa
from skip.wire.ah import (
    HEAD_RFC1826,
    HEAD_RFC4302,
    fixed_size,
    icv_field_size,
    length_byte,
    parse_fields,
)
from skip.wire.ip import (
    IPV4_MIN_HEADER,
    PROTO_AH,
    BytesLike,
    insertion_point,
    ipv4_sum,
    plain_ipv4,
    respliced_ipv4,
    zero_mutable_fields,
)

#: The two readings of "mutable fields" (see zero_mutable_fields).
AH_MUTABLE = ("rfc4302", "rfc1826")


class AhSA(SecurityAssociation):
    """An AH security association; build it through :class:`SecurityAssociation`."""

    protocol = "ah"
    protocol_number = PROTO_AH
    #: AH never encrypts; these mirror EspSA's attributes so callers need not ask first.
    cipher = None
    cipher_key = b""

    __slots__ = ("_fixed", "_layout", "_mac", "_rfc1826", "ah_mutable")

    def _setup(self, cipher: str | None, cipher_key: bytes, integrity: str | None,
               allow_legacy: bool, allow_unauthenticated: bool, ah_mutable: str | None,
               rng: Rng) -> None:
        if ah_mutable is None:
            ah_mutable = "rfc4302" if self.sequence else "rfc1826"
        if ah_mutable not in AH_MUTABLE:
            raise _bad_sa(f"ah_mutable must be one of {AH_MUTABLE}, got {ah_mutable!r}")
        self.ah_mutable = ah_mutable
        self._rfc1826 = ah_mutable == "rfc1826"
        if cipher is not None or cipher_key:
            raise _bad_sa("AH does not encrypt: give no cipher")
        if integrity is None:
            raise _bad_sa("AH needs an integrity algorithm")
        self._mac: MacContext = self._integrity_context(integrity, allow_legacy)
        icv = self.integrity.icv_size if self.integrity else 0
        self._fixed = fixed_size(self.sequence)
        # Per IP version: (AH length, its length byte, the zeroed ICV field, ICV padding).
        self._layout: dict[int, tuple[int, int, bytes, bytes]] = {}
        for version in (4, 6):
            field = icv_field_size(icv, self.sequence, version == 6)
            self._layout[version] = (self._fixed + field, length_byte(field, self.sequence),
                                     bytes(field), bytes(field - icv))

    def _head(self, next_header: int, length: int, seq: int) -> bytes:
        if self.sequence:
            return HEAD_RFC4302.pack(next_header, length, 0, self.spi, seq & 0xFFFFFFFF)
        return HEAD_RFC1826.pack(next_header, length, 0, self.spi)

    # -- send -------------------------------------------------------------------------------
    def _protect(self, packet: bytes, shim: Shim | None, shim_icv: BytesLike | None,
                 dummy: bool) -> bytes:
        if dummy:
            raise _bad_sa("dummy (TFC) packets are an ESP feature (RFC 4303 section 2.6)")
        outer = self._outer
        if outer is None:
            fields = plain_ipv4(packet, False)
            if fields is not None:  # option-free IPv4: nearly every datagram
                version, offset, next_header = 4, IPV4_MIN_HEADER, fields[6]
            else:
                version, nh_off, offset, next_header = insertion_point(packet)
        else:
            version, offset, next_header = outer.version, 0, check_inner(packet)
        ah_len, length, zero_field, icv_pad = self._layout[version]
        seq = self._send.next()
        ah_head = self._head(next_header, length, seq)
        shim_bytes = b"" if shim is None else shim[1]
        protocol = PROTO_AH if shim is None else shim[0]
        extra = len(shim_bytes) + ah_len
        if outer is None:
            total = len(packet) + extra
            if fields is not None:
                ip_head = respliced_ipv4(fields, ipv4_sum(packet), total, protocol)
            else:
                ip_head = spliced_head(packet, nh_off, offset, protocol, total)
        else:
            ip_head = outer.build(packet, outer.size + extra + len(packet), protocol)
        image = bytearray(ip_head)
        zero_mutable_fields(image, len(ip_head), rfc1826=self._rfc1826)
        body = packet[offset:]
        # The small pieces before the payload in one MAC update instead of four.
        head = b"".join((image, shim_bytes if shim_icv is None else shim_icv, ah_head, zero_field))
        if self.esn:
            icv = self._mac.compute(head, body, self._seq_hi(seq))
        else:
            icv = self._mac.compute(head, body)
        return b"".join((ip_head, shim_bytes, ah_head, icv, icv_pad, body))

    # -- receive ----------------------------------------------------------------------------
    def _unprotect(self, packet: bytes, shim_len: int, shim_icv: BytesLike | None) -> bytes:
        fields = plain_ipv4(packet, True)
        version, nh_off, ip_end, offset = self._locate_received(packet, shim_len, fields)
        if shim_icv is not None and len(shim_icv) != shim_len:
            raise _bad_sa(f"shim_icv has {len(shim_icv)} bytes, the shim {shim_len}")
        ah_len, _, zero_field, icv_pad = self._layout[version]
        next_header, spi, seq_low, end = parse_fields(packet, offset, self.sequence)
        if spi != self.spi:
            self._bad_spi(spi)
        if end - offset != ah_len:
            raise ParseError("bad_length",
                             f"AH of {end - offset} bytes, this SA's is {ah_len} on IPv{version}")
        replay = self._replay
        if replay is not None:
            seq = replay.check(seq_low)
        image = bytearray(packet[:ip_end])
        zero_mutable_fields(image, ip_end, rfc1826=self._rfc1826)
        head_end = offset + self._fixed
        icv = packet[head_end : end - len(icv_pad)]
        # As on send: the pieces before the payload joined, one MAC update.
        head = b"".join((image, packet[ip_end:offset] if shim_icv is None else shim_icv,
                         packet[offset:head_end], zero_field))
        payload = packet[end:]
        if self.esn:
            self._mac.verify(icv, head, payload, self._seq_hi(seq))
        else:
            self._mac.verify(icv, head, payload)
        if replay is not None:
            replay.accept(seq)
        if self._outer is None:
            return rebuild_transport(packet, fields, nh_off, ip_end, next_header, payload)
        return decapsulate(packet, next_header, payload)
