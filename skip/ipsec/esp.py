"""ESP: RFC 4303 (sequence numbers, ESN, anti-replay) and RFC 1827 + 1829 (SKIP era).

Send: ``payload || padding || pad length || next header`` is sealed in one cipher call
(the crypto contexts return ``IV || ciphertext [|| tag]`` ready for the wire), then an
encrypt-then-MAC ICV over ``SPI || Seq || IV || ciphertext`` (+ the ESN high half, never sent)
for non-AEAD ciphers.  AEAD ciphers authenticate ``SPI || Seq`` (or ``SPI || ESN``) as AAD.

Receive, in RFC 4303 section 3.4 order: parse, SPI check, replay pre-check, ICV, decrypt,
window update, padding check, then Next Header 59 (dummy TFC) is discarded with reason
``tfc_dummy``.  RFC 1829 receivers do not check the padding content; RFC 4303 ones do.

Project extension: a ``sequence=False`` SA may still carry an integrity transform or an AEAD
cipher (RFC 1827 leaves the transform to the SA).  The ICV then covers ``SPI || IV ||
ciphertext`` and the AAD is the SPI alone.  SKIP-era peers use encryption-only ESP, with AH
for integrity.

Each direction is one method: the option-free IPv4 header that nearly every datagram has is
recognised and rewritten inline (:func:`~skip.wire.ip.plain_ipv4`,
:func:`~skip.wire.ip.respliced_ipv4`); any other header chain falls back to the general walk
(:func:`~skip.wire.ip.insertion_point`, :meth:`SecurityAssociation._locate_received`).  Why
one method and not a per-SA fast twin in Python: docs/engine.md, "Performance".  The compiled
core (skip/_native.c) goes first for AEAD SAs and declines, changing nothing, whatever is not
the common case; these methods are then the reference that answers (docs/engine.md,
"Compiled core").
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from skip import native
from skip.crypto.ciphers import CipherContext
from skip.crypto.integrity import MacContext
from skip.crypto.registry import CipherAlgorithm, get_cipher
from skip.errors import ParseError, ReplayError, SkipError
from skip.ipsec.kat import FixedIvForTesting
from skip.ipsec.layout import check_inner, decapsulate, rebuild_transport, spliced_head
from skip.ipsec.sa import Rng, SecurityAssociation, Shim, _bad_sa
from skip.wire.esp import header_size, split_trailer, trailer
from skip.wire.ip import (
    IPV4_MIN_HEADER,
    PROTO_ESP,
    PROTO_NONE,
    BytesLike,
    insertion_point,
    ipv4_sum,
    plain_ipv4,
    respliced_ipv4,
)

if TYPE_CHECKING:
    from skip._native import AeadEsp

_HEAD_SEQ = struct.Struct("!II")
_HEAD_SPI = struct.Struct("!I")
_AAD_ESN = struct.Struct("!III")
_LOW32 = 0xFFFFFFFF


class EspSA(SecurityAssociation):
    """An ESP security association; build it through :class:`SecurityAssociation`."""

    protocol = "esp"
    protocol_number = PROTO_ESP

    __slots__ = ("_align", "_core", "_head_size", "_icv_size", "_mac", "_min_body", "_open",
                 "_seal", "cipher", "cipher_key")

    def _setup(self, cipher: str | None, cipher_key: bytes, integrity: str | None,
               allow_legacy: bool, allow_unauthenticated: bool, ah_mutable: str | None,
               rng: Rng) -> None:
        if ah_mutable is not None:
            raise _bad_sa("ah_mutable is an AH parameter; ESP never covers the IP header")
        if cipher is None:
            raise _bad_sa("ESP needs a cipher ('null' for integrity-only ESP)")
        alg: CipherAlgorithm = get_cipher(cipher, allow_legacy=allow_legacy)
        self.cipher = alg
        self.cipher_key = cipher_key
        self._use_cipher(alg.new(cipher_key, rng=rng))
        self._mac: MacContext | None = None
        if integrity is not None:
            if alg.aead:
                raise _bad_sa(f"{alg.name} authenticates by itself; give no integrity algorithm")
            self._mac = self._integrity_context(integrity, allow_legacy)
        elif not alg.aead:
            if not alg.encrypts:
                raise _bad_sa("ESP with neither encryption nor integrity protects nothing")
            if not allow_unauthenticated:
                raise _bad_sa(
                    f"{alg.name} without integrity is unauthenticated (RFC 8221: MUST NOT); "
                    "add an integrity algorithm, use AH on top, or pass "
                    "allow_unauthenticated=True")
        self._icv_size = self.integrity.icv_size if self.integrity else 0
        self._head_size = header_size(self.sequence)
        self._align = max(alg.block_size, 4)
        # Smallest body: IV, one block of ciphertext holding at least the 2-byte trailer, tag.
        self._min_body = alg.iv_size + max(alg.block_size, 2) + alg.icv_size
        self._core = self._compiled(alg, cipher_key)

    def _compiled(self, alg: CipherAlgorithm, cipher_key: bytes) -> AeadEsp | None:
        """The compiled core's twin of this SA, when it is built and covers the SA (AEAD with
        sequence numbers); it shares the replay window with the Python path below."""
        core, window = native.core, self._replay
        name = native.COMPILED_CIPHERS.get(alg.name)
        if core is None or name is None or window is None:
            return None
        key_size = len(cipher_key) - alg.salt_size
        outer = self._outer.template() if self._outer is not None else None
        return core.AeadEsp(name, cipher_key[:key_size], cipher_key[key_size:], self.spi,
                            self.esn, window, outer)

    def lane(self, shim: Shim) -> tuple[object, ...] | None:
        if self._core is None:
            return None
        protocol, header = shim
        return (self._core, self._send, self._outer, bytes(header), protocol)

    def open_lane(self) -> tuple[object, ...] | None:
        return None if self._core is None else (self._core, self.counters)

    def dangerously_fix_iv_for_testing(self, iv: bytes) -> None:
        """Send every following packet with ``iv``.  Known-answer tests ONLY: a repeated IV
        breaks CBC confidentiality and destroys GCM/ChaCha20 entirely (see skip.ipsec.kat)."""
        self._use_cipher(FixedIvForTesting(self.cipher, self.cipher_key, iv))
        self._core = None  # the compiled core makes its IVs from the sequence number

    def _use_cipher(self, context: CipherContext) -> None:
        # The per-packet pair, bound once: one attribute load per packet instead of two.
        self._seal, self._open = context.seal, context.open

    # -- send -------------------------------------------------------------------------------
    def _protect(self, packet: bytes, shim: Shim | None, shim_icv: BytesLike | None,
                 dummy: bool) -> bytes:
        core = self._core
        if core is not None and not dummy:
            outer, send = self._outer, self._send
            try:
                seq = send.next()
            except ReplayError:  # exhausted: the Python path checks the packet first
                return self._protect_python(packet, shim, dummy)
            ident = outer.next_id if outer is not None else 0
            protocol, shim_bytes = shim if shim is not None else (PROTO_ESP, b"")
            wire = core.protect(packet, seq, shim_bytes, protocol, ident)
            if wire is not None:
                if outer is not None and outer.version == 4:
                    outer.next_id = (ident + 1) & 0xFFFF
                return wire
            send.give_back(seq)  # declined before anything was sent: the Python path's turn
        return self._protect_python(packet, shim, dummy)

    def _protect_python(self, packet: bytes, shim: Shim | None, dummy: bool) -> bytes:
        outer = self._outer
        if outer is None:
            fields = plain_ipv4(packet, False)
            if fields is not None:  # option-free IPv4: nearly every datagram
                offset, next_header = IPV4_MIN_HEADER, fields[6]
            else:
                _, nh_off, offset, next_header = insertion_point(packet)
            body = packet[offset:]
        else:
            body = packet
            next_header = 0 if dummy else check_inner(packet)
        if dummy:
            next_header = PROTO_NONE
        seq = self._send.next()
        if self.sequence:
            head = _HEAD_SEQ.pack(self.spi, seq & _LOW32)
            aad = _AAD_ESN.pack(self.spi, seq >> 32, seq & _LOW32) if self.esn else head
        else:
            head = aad = self._spi_bytes
        sealed = self._seal(body + trailer(-(len(body) + 2) % self._align, next_header), aad, seq)
        mac = self._mac
        if mac is None:
            icv = b""
        elif self.esn:
            icv = mac.compute(head, sealed, self._seq_hi(seq))
        else:
            icv = mac.compute(head, sealed)
        esp_len = len(head) + len(sealed) + len(icv)
        if shim is None:
            shim_bytes, protocol = b"", PROTO_ESP
        else:
            protocol, shim_bytes = shim
            esp_len += len(shim_bytes)
        if outer is None:
            if fields is not None:
                ip_head = respliced_ipv4(fields, ipv4_sum(packet), offset + esp_len, protocol)
            else:
                ip_head = spliced_head(packet, nh_off, offset, protocol, offset + esp_len)
        else:
            ip_head = outer.build(b"" if dummy else packet, outer.size + esp_len, protocol)
        return b"".join((ip_head, shim_bytes, head, sealed, icv))

    # -- receive ----------------------------------------------------------------------------
    def _unprotect(self, packet: bytes, shim_len: int, shim_icv: BytesLike | None) -> bytes:
        core = self._core
        if core is not None:
            inner = core.unprotect(packet, shim_len)
            if inner is not None:
                return inner
            # declined with nothing changed: anything but a good common-case packet, which
            # the reference below opens or names (its reason code, its counter)
        fields = plain_ipv4(packet, True)
        if fields is not None and fields[6] == PROTO_ESP and not shim_len:
            nh_off, ip_end, offset = 9, IPV4_MIN_HEADER, IPV4_MIN_HEADER  # the common case
        else:
            _, nh_off, ip_end, offset = self._locate_received(packet, shim_len, fields)
        body = offset + self._head_size
        size = len(packet)
        end = size - self._icv_size
        if end - body < self._min_body:
            raise ParseError("truncated", f"ESP packet of {size - offset} bytes is too short")
        replay = self._replay  # None exactly when the SA has no sequence numbers
        if replay is not None:
            spi, seq_low = _HEAD_SEQ.unpack_from(packet, offset)
            if spi != self.spi:
                self._bad_spi(spi)
            seq = replay.check(seq_low)
            aad = _AAD_ESN.pack(spi, seq >> 32, seq_low) if self.esn else packet[offset:body]
        else:
            spi = _HEAD_SPI.unpack_from(packet, offset)[0]
            if spi != self.spi:
                self._bad_spi(spi)
            aad = packet[offset:body]
        mac = self._mac
        if mac is not None:
            if self.esn:
                mac.verify(packet[end:], packet[offset:end], self._seq_hi(seq))
            else:
                mac.verify(packet[end:], packet[offset:end])
        plaintext = self._open(packet[body:end], aad)
        if replay is not None:
            replay.accept(seq)
        payload_end, next_header = split_trailer(plaintext, self.sequence)
        if next_header == PROTO_NONE:
            raise SkipError("tfc_dummy", "dummy packet (Next Header 59) discarded")
        payload = plaintext[:payload_end]
        if self._outer is None:
            return rebuild_transport(packet, fields, nh_off, ip_end, next_header, payload)
        return decapsulate(packet, next_header, payload)
