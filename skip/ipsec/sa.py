"""The security association: configuration, per-SA precomputation and the public API.

``SecurityAssociation(protocol, spi, mode, ...)`` returns an :class:`~skip.ipsec.esp.EspSA` or
:class:`~skip.ipsec.ah.AhSA` (the protocol decides, as ``pathlib.Path`` picks its flavour):
both share this base, which validates the parameters once, builds the crypto contexts once and
holds what every packet needs (SPI bytes, the sequence counter, the replay window, the tunnel
header template, counters).  The per-packet work lives in the two subclasses.

See docs/engine.md for the API, the algorithm table and the replay semantics.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from typing import Any, ClassVar

from skip.crypto.integrity import MacContext
from skip.crypto.registry import IntegrityAlgorithm, get_integrity
from skip.crypto.replay import SequenceCounter, Window, new_window
from skip.errors import AlgorithmError, ParseError, SkipError
from skip.ipsec.counters import Counters
from skip.ipsec.layout import OuterHeader
from skip.wire.ip import IPV4_MIN_HEADER, BytesLike, PlainIPv4, locate_upper

Rng = Callable[[int], bytes]
Shim = tuple[int, bytes]
Address = str | IPv4Address | IPv6Address

MODES = ("transport", "tunnel")
_SEQ_HI = struct.Struct("!I")


def _bad_sa(detail: str) -> AlgorithmError:
    return AlgorithmError("bad_sa", detail)


def _check_shim(shim: Shim | None, shim_icv: BytesLike | None) -> None:
    if shim is None or not 0 <= shim[0] <= 255 or (
            shim_icv is not None and len(shim_icv) != len(shim[1])):
        raise _bad_sa("shim must be (protocol 0..255, bytes); shim_icv only with a shim, "
                      "of the same length")


class SecurityAssociation:
    """One direction of one ESP or AH security association.

    Parameters (keyword-only after ``mode``):

    protocol, spi, mode
        ``"esp"`` or ``"ah"``; the SPI (1 .. 2**32-1; 1 is SKIP's, RFC 1825 / IANA);
        ``"transport"`` or ``"tunnel"``.
    cipher, cipher_key
        ESP only: an algorithm name from :mod:`skip.crypto.registry` (``"null"`` allowed) and
        its key material, salt last (RFC 4106/4309/7634, as Linux does).
    integrity, integrity_key
        An integrity algorithm name and key.  Required for AH; for ESP omit it with an AEAD
        cipher, and without one an encrypting cipher also needs ``allow_unauthenticated``.
    sequence
        True: RFC 4302/4303 (sequence numbers, anti-replay).  False: the SKIP-era RFC 1826 AH /
        RFC 1827+1829 ESP formats with no sequence number and no replay window.
    esn, replay_window
        64-bit extended sequence numbers (high half only in the ICV); the receive window size
        in packets (default 64; any size from 1 to 2**31; 0 is refused, never a silent "off").
    tunnel_src, tunnel_dst, tunnel_ttl, df
        Tunnel mode: the outer addresses (IPv4 or IPv6, independent of the inner version), the
        outer TTL / hop limit and the IPv4 DF policy ``"copy"`` / ``"set"`` / ``"clear"``.
    ah_mutable
        AH only: which fields the ICV treats as mutable.  ``"rfc4302"`` (RFC 2402/4302:
        TOS, flags, fragment offset, TTL, checksum; IPv6 traffic class, flow label, hop
        limit) or ``"rfc1826"`` (the 1995 rule: TTL and checksum; IPv6 hop limit).  Default:
        ``"rfc4302"`` with ``sequence=True``, ``"rfc1826"`` with ``sequence=False``.
    allow_legacy
        Opt in to DES, 3DES, keyed MD5/SHA-1 and HMAC-MD5 (refused with ``legacy_refused``
        otherwise).
    rng
        ``rng(n) -> bytes`` for CBC IVs and the first IPv4 Identification (default os.urandom).
    """

    __slots__ = (
        "_outer",
        "_replay",
        "_send",
        "_spi_bytes",
        "counters",
        "esn",
        "integrity",
        "integrity_key",
        "mode",
        "sequence",
        "spi",
    )

    protocol: ClassVar[str]
    protocol_number: ClassVar[int]
    _by_protocol: ClassVar[dict[str, type[SecurityAssociation]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        SecurityAssociation._by_protocol[cls.protocol] = cls

    def __new__(cls, protocol: str, *args: Any, **kwargs: Any) -> SecurityAssociation:
        if cls is SecurityAssociation:
            sub = cls._by_protocol.get(protocol)
            if sub is None:
                raise _bad_sa(f"protocol must be 'esp' or 'ah', got {protocol!r}")
            return super().__new__(sub)
        return super().__new__(cls)

    def __init__(
        self,
        protocol: str,
        spi: int,
        mode: str,
        *,
        cipher: str | None = None,
        cipher_key: BytesLike = b"",
        integrity: str | None = None,
        integrity_key: BytesLike = b"",
        sequence: bool = True,
        esn: bool = False,
        replay_window: int = 64,
        tunnel_src: Address | None = None,
        tunnel_dst: Address | None = None,
        tunnel_ttl: int = 64,
        df: str = "copy",
        allow_legacy: bool = False,
        allow_unauthenticated: bool = False,
        ah_mutable: str | None = None,
        rng: Rng = os.urandom,
    ) -> None:
        if protocol != self.protocol:
            raise _bad_sa(f"{type(self).__name__} is {self.protocol}, not {protocol!r}")
        if isinstance(spi, bool) or not isinstance(spi, int) or not 1 <= spi <= 0xFFFFFFFF:
            raise _bad_sa(f"SPI must be 1 .. 2**32-1 (0 means 'no SA'), got {spi!r}")
        if mode not in MODES:
            raise _bad_sa(f"mode must be 'transport' or 'tunnel', got {mode!r}")
        if esn and not sequence:
            raise _bad_sa("esn needs sequence=True (RFC 1826/1827 have no sequence number)")
        self.spi = spi
        self.mode = mode
        self.sequence = sequence
        self.esn = esn
        self._spi_bytes = spi.to_bytes(4, "big")
        self.counters = Counters()
        # The sender's counter exists in both generations: without sequence numbers it still
        # makes the counter-based IVs (GCM, CTR, ChaCha20) unique per key.
        self._send = SequenceCounter(esn=esn or not sequence)
        self._replay = new_window(replay_window, esn) if sequence else None
        if mode == "tunnel":
            if tunnel_src is None or tunnel_dst is None:
                raise _bad_sa("tunnel mode needs tunnel_src and tunnel_dst")
            self._outer: OuterHeader | None = OuterHeader(
                tunnel_src, tunnel_dst, tunnel_ttl, df, int.from_bytes(rng(2), "big"))
        else:
            if tunnel_src is not None or tunnel_dst is not None:
                raise _bad_sa("tunnel_src/tunnel_dst only make sense in tunnel mode")
            self._outer = None
        self.integrity: IntegrityAlgorithm | None = None
        self.integrity_key = bytes(integrity_key)
        self._setup(cipher, bytes(cipher_key), integrity, allow_legacy, allow_unauthenticated,
                    ah_mutable, rng)

    # -- subclass hooks ---------------------------------------------------------------------
    def _setup(self, cipher: str | None, cipher_key: bytes, integrity: str | None,
               allow_legacy: bool, allow_unauthenticated: bool, ah_mutable: str | None,
               rng: Rng) -> None:
        raise NotImplementedError

    # The per-packet methods get ``bytes``: slices of bytes are the cheapest way into the
    # cryptography calls (a memoryview slice costs more there than copying 1400 bytes), and
    # the headers and payload they cut out join with ``+``.
    def _protect(self, packet: bytes, shim: Shim | None, shim_icv: BytesLike | None,
                 dummy: bool) -> bytes:
        raise NotImplementedError

    def _unprotect(self, packet: bytes, shim_len: int, shim_icv: BytesLike | None) -> bytes:
        raise NotImplementedError

    def _integrity_context(self, name: str, allow_legacy: bool) -> MacContext:
        self.integrity = get_integrity(name, allow_legacy=allow_legacy)
        return self.integrity.new(self.integrity_key)

    # -- public API -------------------------------------------------------------------------
    def lane(self, shim: Shim) -> tuple[object, ...] | None:
        """What skipd's compiled send loop (``skip._native.pump_out``) needs to protect under
        this SA as :meth:`protect` would, with ``shim``: (compiled core, sequence counter,
        outer header, shim bytes, shim protocol), sharing this SA's state. None when the SA
        has no compiled core (then every packet takes :meth:`protect`)."""
        return None

    def open_lane(self) -> tuple[object, ...] | None:
        """The receiving twin of :meth:`lane` (``skip._native.pump_in``): (compiled core,
        this SA's counters), or None."""
        return None

    def protect(self, packet: BytesLike, *, shim: Shim | None = None,
                shim_icv: BytesLike | None = None, dummy: bool = False) -> bytes:
        """Protect one whole IP datagram; returns the whole datagram to send.

        ``shim=(protocol, header)`` puts ``header`` between the IP header chain and AH/ESP and
        makes the chain's last Next Header ``protocol`` (SKIP: 57); the shim's own next-header
        byte is the caller's.  AH covers the shim: as sent, or as ``shim_icv`` (same length)
        when the shim's ICV image differs (SKIP zeroes RESERVED fields, draft-06 1.10.1).
        ``dummy``: send a dummy TFC packet (Next Header 59) whose content is the datagram's
        payload (transport) or ``packet`` itself, any bytes (tunnel).
        """
        if shim is not None or shim_icv is not None:
            _check_shim(shim, shim_icv)
        if type(packet) is not bytes:
            packet = bytes(packet)  # the per-packet path slices and joins bytes (see _protect)
        try:
            out = self._protect(packet, shim, shim_icv, dummy)
        except SkipError as err:
            self.counters.reject(err.reason)
            raise
        counters = self.counters
        counters.packets_out += 1
        counters.bytes_out += len(packet)
        return out

    def unprotect(self, packet: BytesLike, *, shim_len: int = 0,
                  shim_icv: BytesLike | None = None) -> bytes:
        """Check and remove AH/ESP from one whole received datagram; returns the datagram.

        Transport mode returns the original datagram (header chain restored); tunnel mode the
        inner datagram.  ``shim_len``: that many shim bytes sit before AH/ESP (the caller has
        parsed them); they are covered by AH (or ``shim_icv`` in their place) and stripped.
        Every rejection raises a :class:`~skip.errors.SkipError` subclass whose ``reason`` is
        also counted in :attr:`counters`.
        """
        if type(packet) is not bytes:
            packet = bytes(packet)
        try:
            out = self._unprotect(packet, shim_len, shim_icv)
        except SkipError as err:
            self.counters.reject(err.reason)
            raise
        counters = self.counters
        counters.packets_in += 1
        counters.bytes_in += len(out)
        return out

    @property
    def last_sequence(self) -> int:
        """The sequence number of the last packet sent (0 before the first)."""
        return self._send.last

    def set_sequence(self, last: int) -> None:
        """Continue sending after sequence number ``last`` (tests, SA migration)."""
        self._send = SequenceCounter(esn=self.esn or not self.sequence, last=last)

    @property
    def next_ipv4_id(self) -> int | None:
        """The Identification of the next outer IPv4 header (tunnel mode over IPv4)."""
        return self._outer.next_id if self._outer else None

    @next_ipv4_id.setter
    def next_ipv4_id(self, value: int) -> None:
        if self._outer is None:
            raise _bad_sa("only a tunnel-mode SA builds outer headers")
        self._outer.next_id = value & 0xFFFF

    @property
    def replay_window(self) -> Window | None:
        """The receive window (None for SKIP-era SAs, which have no sequence numbers)."""
        return self._replay

    @property
    def tunnel_src(self) -> IPv4Address | IPv6Address | None:
        return self._outer.src if self._outer else None

    @property
    def tunnel_dst(self) -> IPv4Address | IPv6Address | None:
        return self._outer.dst if self._outer else None

    @property
    def integrity_name(self) -> str | None:
        return self.integrity.name if self.integrity else None

    def describe(self) -> dict[str, object]:
        """Everything about the SA except key bytes (for logs, skipctl, tools)."""
        return {
            "protocol": self.protocol, "spi": self.spi, "mode": self.mode,
            "sequence": self.sequence, "esn": self.esn,
            "replay_window": self._replay.size if self._replay else None,
            "tunnel": (str(self.tunnel_src), str(self.tunnel_dst)) if self._outer else None,
            "integrity": self.integrity_name, "last_sequence": self.last_sequence,
            "counters": self.counters.as_dict(),
        }

    # -- shared per-packet helpers ----------------------------------------------------------
    def _seq_hi(self, seq: int) -> bytes:
        return _SEQ_HI.pack(seq >> 32)

    def _locate_received(self, packet: BytesLike, shim_len: int, fields: PlainIPv4 | None
                         ) -> tuple[int, int, int, int]:
        """``(version, nh_offset, ip_end, offset)``: the IP chain ends at ``ip_end``, the shim
        (if any) follows, and this SA's header starts at ``offset``.

        ``fields`` is ``plain_ipv4(packet, True)``, which the caller needs anyway: a verified
        option-free IPv4 header, or None for every other chain, which is walked here (IPv4
        checksums verified: transport ESP does not cover the header, so this is its guard).
        """
        if fields is not None:
            version, nh_off, ip_end, proto = 4, 9, IPV4_MIN_HEADER, fields[6]
        else:
            version, nh_off, ip_end, proto = locate_upper(packet)
        if shim_len:
            if shim_len < 0 or ip_end + shim_len > len(packet):
                raise ParseError("truncated", f"no room for a {shim_len}-byte shim header")
        elif proto != self.protocol_number:
            raise ParseError("unsupported_protocol",
                             f"expected {self.protocol.upper()} ({self.protocol_number}), "
                             f"found protocol {proto}")
        return version, nh_off, ip_end, ip_end + shim_len

    def _bad_spi(self, spi: int) -> None:
        raise SkipError("bad_spi", f"SPI {spi:#010x} is not this SA's {self.spi:#010x}")
