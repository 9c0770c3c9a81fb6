"""Multicast traffic under a group key (mc-00 s. 1.1; next-wave.md 4.4, MC-M6, MC-M7).

Each sender picks its own random Kp and carries it in an ordinary SKIP header, wrapped under
Kgn instead of Kijn: Destination NSID 0, the header's algorithm bytes the group's (MC-14),
the ESP/AH keys E_kp/A_kp derived exactly as for unicast (:func:`traffic_keys`), so the
ESP engine is the one every unicast packet goes through. A receiver decides by the
destination address that a packet is multicast (MC-13), finds the group's key, and keeps one
SA (one replay window, modern profile) per sender Kp: per-sender replay protection falls out
of per-sender Kps (MC-M7).

Modern Kgn is bound to the group address and the key epoch (MC-M1). During a rekey a
receiver tries the current epoch and then the previous one while its grace period lasts; AES
key wrap's integrity check says which one fits (MC-M6). After the grace period, Kps of the
old epoch (an evicted member's, say) are refused, cached or not.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from skip.crypto import kdf
from skip.crypto import skip_numbers as num
from skip.crypto.kp_wrap import (
    legacy_decrypt_kp,
    legacy_encrypt_kp,
    modern_unwrap_kp,
    modern_wrap_kp,
)
from skip.errors import KeyingError, ParseError, SkipError
from skip.keying.events import TrafficKeys
from skip.keying.suite import Suite
from skip.keying.transforms import Transforms, build, traffic_keys
from skip.multicast.keys import legacy_kgn, modern_kgn
from skip.wire.gik import group_field, is_multicast
from skip.wire.ip import PROTO_AH, PROTO_ESP, locate_upper
from skip.wire.skip_header import IP_PROTOCOL_SKIP, SkipHeader, measure

Rng = Callable[[int], bytes]
GRACE_SECONDS = 60.0  # MC-M3: the old epoch is accepted this long after a rekey
MAX_SENDER_KPS = 4096  # MC-M7 / MC-M10: receive SAs per group


@dataclass(frozen=True, slots=True)
class GroupParams:
    """What the owner's response fixes for a group: its address, algorithms (MC-7) and the
    two key-change intervals (MC-6)."""

    group: bytes  # 4 or 16 bytes, a multicast address
    suite: Suite  # the header's version and algorithm bytes (Kg Alg in the Kij Alg byte)
    interval_seconds: int = 120
    interval_bytes: int = 10_000_000

    def __post_init__(self) -> None:
        if not is_multicast(self.group):
            raise KeyingError("group_unknown", "a group address must be multicast")
        self.suite.check()


@dataclass(slots=True)
class _Epoch:
    number: int
    kg: bytes
    expiry: float
    until: float  # when receivers stop accepting it (its expiry, or the end of its grace)


@dataclass(slots=True)
class _Tx:
    n: int
    epoch: int
    started: float
    transforms: Transforms
    shim: tuple[int, bytes]


@dataclass(slots=True)
class _Rx:
    epoch: int
    n: int
    transforms: Transforms


class GroupTraffic:
    """One group's send and receive keys on one node (member or owner)."""

    def __init__(self, params: GroupParams, rng: Rng, *, replay_window: int = 64,
                 max_sender_kps: int = MAX_SENDER_KPS) -> None:
        self.params = params
        self.rng = rng
        self.replay_window = replay_window
        self.max_sender_kps = max_sender_kps
        self.epochs: dict[int, _Epoch] = {}  # the current one and the previous in its grace
        self.current: _Epoch | None = None
        self.tx: _Tx | None = None
        self.rx: dict[bytes, _Rx] = {}
        self.group16 = group_field(params.group)
        self.key_log: Callable[[TrafficKeys], None] | None = None

    def log_traffic_keys_insecurely(self, callback: Callable[[TrafficKeys], None] | None
                                    ) -> None:
        """DANGEROUS, as :meth:`SkipEndpoint.log_traffic_keys_insecurely`: each group Kp this
        node makes or opens, in the clear (skipd's ``[daemon] key_log``). What a member never
        unwrapped never reaches its log: an evicted member's log shows it (docs/decrypt.md)."""
        self.key_log = callback

    # --- keys ----------------------------------------------------------------------------

    def set_key(self, epoch: int, kg: bytes, expiry: float, now: float) -> None:
        """A new group key (a response or a rekey): senders move to it at once; the previous
        epoch stays acceptable for GRACE_SECONDS."""
        if self.current is not None and epoch <= self.current.number:
            raise KeyingError("stale_epoch", f"epoch {epoch}, holding {self.current.number}")
        old = self.current
        if old is not None:
            old.until = min(old.expiry, now + GRACE_SECONDS)
        self.current = _Epoch(epoch, kg, expiry, expiry)
        self.epochs = {e.number: e for e in (old, self.current) if e is not None}
        self.tx = None

    def forget(self) -> None:
        """Drop every key (evicted, or the group left)."""
        self.epochs.clear()
        self.current = None
        self.tx = None
        self.rx.clear()

    def _live(self, now: float) -> dict[int, _Epoch]:
        return {n: e for n, e in self.epochs.items() if now < e.until}

    def _kek(self, epoch: _Epoch, n: int) -> bytes:
        if self.params.suite.version == num.LEGACY_VERSION:
            return legacy_kgn(epoch.kg, n)
        return modern_kgn(epoch.kg, self.group16, epoch.number, n)

    # --- send ------------------------------------------------------------------------------

    def protect(self, datagram: bytes, now: float) -> bytes:
        """``datagram`` (to the group address) with a SKIP header and ESP/AH under a Kp of
        ours, changed at the shorter of the two intervals, every n and every epoch (MC-6)."""
        current = self.current
        if current is None or now >= current.expiry:
            raise KeyingError("group_expired", "no live group key to send under")
        n = kdf.counter_n(now)
        tx = self.tx
        if tx is None or tx.n != n or tx.epoch != current.number or \
                now - tx.started >= self.params.interval_seconds or \
                tx.transforms.sas[-1].counters.bytes_out >= self.params.interval_bytes:
            tx = self.tx = self._new_kp(current, n, now)
        return tx.transforms.protect(datagram, shim=tx.shim)

    def _new_kp(self, epoch: _Epoch, n: int, now: float) -> _Tx:
        suite = self.params.suite
        prof = suite.profile
        kg_alg, crypt, mac, _ = suite.algorithms
        kp = self.rng(prof.kp_length(crypt, mac))
        ekp_len = prof.ekp_length(kg_alg, crypt, mac)
        kek = self._kek(epoch, n)
        if suite.version == num.LEGACY_VERSION:
            ekp = legacy_encrypt_kp(prof.kij[kg_alg], kek, kp, ekp_len, self.rng)
        else:
            ekp = modern_wrap_kp(kek, kp, int(now * 1000))
        next_header = PROTO_ESP if suite.layers[0] == "esp" else PROTO_AH
        header = SkipHeader(suite.version, 0, 0, next_header, n, kg_alg, crypt, mac, 0,
                            ekp).encode()
        return _Tx(n, epoch.number, now, self._transforms(kp, len(ekp), header, "out"),
                   (IP_PROTOCOL_SKIP, header))

    def _transforms(self, kp: bytes, ekp_len: int, header: bytes, direction: str
                    ) -> Transforms:
        suite = self.params.suite
        e_kp, a_kp = traffic_keys(suite, kp, ekp_len, header)
        if self.key_log is not None:
            self.key_log(TrafficKeys(direction, "group", _address(self.params.group),
                                     suite.version, header, kp, e_kp, a_kp))
        return build(suite, e_kp, a_kp, tunnel=None, replay_window=self.replay_window,
                     rng=self.rng)

    # --- receive -------------------------------------------------------------------------

    def unprotect(self, packet: bytes, now: float) -> bytes:
        """The datagram a multicast SKIP packet to this group carries, or SkipError."""
        version, _nh, off, proto = locate_upper(packet)
        if proto != IP_PROTOCOL_SKIP:
            raise ParseError("unsupported_protocol", f"protocol {proto} is not SKIP")
        dst = packet[16:20] if version == 4 else packet[24:40]
        if dst != self.params.group:
            raise KeyingError("group_unknown", "not this group's address")
        end = measure(packet, off, num.header_ekp_length)[0]
        header = packet[off:end]
        live = self._live(now)
        if not live:
            raise KeyingError("group_expired", "no live group key")
        rx = self.rx.get(header)
        if rx is None or rx.epoch not in live:
            rx = self._admit(header, live, now)
        try:
            return rx.transforms.unprotect(packet, shim_len=len(header))
        except SkipError as err:
            if err.reason in ("replay", "replay_too_old"):
                raise KeyingError("group_replay", "this sender's Kp delivered it already") \
                    from None
            raise

    def _admit(self, header: bytes, live: dict[int, _Epoch], now: float) -> _Rx:
        hdr = SkipHeader.parse(header, num.header_ekp_length)
        suite = self.params.suite
        if hdr.dst_nsid != 0:
            raise KeyingError("group_dst_nsid", f"Dest NSID {hdr.dst_nsid} (MC-13: 0)")
        if (hdr.version, hdr.kij_alg, hdr.crypt_alg, hdr.mac_alg, hdr.comp_alg) != \
                (suite.version, *suite.algorithms):
            raise KeyingError("group_algorithms", "the header's algorithms are not the "
                              "group's (MC-7, MC-14)")
        local_n = kdf.counter_n(now)
        if not -1 <= hdr.n - local_n <= 1:
            raise KeyingError("n_out_of_window", f"n {hdr.n}, local n {local_n}")
        prof = suite.profile
        found: tuple[int, bytes] | None = None
        for epoch in sorted(live.values(), key=lambda e: -e.number):  # newest first (MC-M6)
            kek = self._kek(epoch, hdr.n)
            if suite.version == num.LEGACY_VERSION:
                kp_len = prof.kp_length(hdr.crypt_alg, hdr.mac_alg)
                found = (epoch.number,
                         legacy_decrypt_kp(prof.kij[hdr.kij_alg], kek, hdr.ekp, kp_len))
                break  # legacy: one Kg, and nothing tells a wrong one but the ICV
            try:
                found = (epoch.number, modern_unwrap_kp(kek, hdr.ekp)[0])
                break
            except KeyingError:
                continue
        if found is None:
            raise KeyingError("group_epoch_unknown", "the Kp unwraps under no live epoch")
        if len(self.rx) >= self.max_sender_kps:
            # forget Kps no packet may use (n below local n - 1); never a live window, whose
            # loss would let its packets pass again
            for key in [k for k, r in self.rx.items() if r.n < local_n - 1]:
                del self.rx[key]
            if len(self.rx) >= self.max_sender_kps:
                raise KeyingError("group_limit", f"{len(self.rx)} sender keys in this group")
        rx = self.rx[header] = _Rx(found[0], hdr.n, self._transforms(found[1], len(hdr.ekp),
                                                                    header, "in"))
        return rx


def _address(packed: bytes) -> str:
    return str(ipaddress.ip_address(packed))

