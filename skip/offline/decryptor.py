"""Offline decryption of captured SKIP packets (docs/decrypt.md).

A receiver in reverse: given key material after the fact, open every SKIP packet a capture
holds, in either direction. Two kinds of material:

- **Long-term keys**: certificates (or UDH values) name the principals and give their public
  values; the private key of *either* end of a packet opens it, because Kij = g^ij is the
  same from both sides. The key hierarchy is the live code's (:mod:`skip.crypto.kdf`,
  :mod:`skip.crypto.kp_wrap`, :func:`skip.keying.transforms.traffic_keys`): nothing here
  derives a key of its own, so what decrypts offline is what the endpoint accepts.
- **A traffic-key log** (:mod:`skip.offline.keylog`): E_kp/A_kp per SKIP header. This is the
  only way into packets under an ephemeral key (PFS): their EKijn came from private values
  that were erased, which is the point of PFS.

Offline there is no "now" to judge n by and no replay window to keep: a packet is opened
whatever its age and order, and a packet seen before (the same bytes behind the same header)
is opened again and marked ``duplicate``, so a replay in a capture shows up rather than
hides. Failures raise :class:`~skip.errors.SkipError` with the live code's reason codes
(``kp_unwrap_failed``, ``bad_icv``, ...) or the offline ones (``no_principal``,
``no_private_key``, ``ephemeral_key``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from skip.crypto import kdf
from skip.crypto import skip_numbers as num
from skip.crypto.dh import DHGroup
from skip.crypto.kp_wrap import legacy_decrypt_kp, modern_unwrap_kp
from skip.errors import KeyingError, ParseError, SkipError
from skip.keying.suite import Suite, check_group
from skip.keying.transforms import Transforms, build, traffic_keys
from skip.offline.keylog import KeylogEntry
from skip.wire.ephemeral import EMKID_LENGTH, EMKID_NSID
from skip.wire.ip import locate_upper
from skip.wire.names import SkipName
from skip.wire.nsid import STANDARD_NSIDS, NsidTable
from skip.wire.skip_header import IP_PROTOCOL_SKIP, SkipHeader, measure

_IP_IN_IP = (4, 41)
_MAX_CACHED = 65_536  # Kps kept; past it the cache starts again
_MAX_SEEN = 1 << 22  # packet digests kept to report duplicates (~100 MB at the bound)


@dataclass(frozen=True, slots=True)
class Principal:
    """One end of SKIP traffic the key material knows: its public value and names, and its
    private value if given."""

    label: str
    group: DHGroup
    public: bytes
    names: frozenset[SkipName]
    private: bytes | None = None

    @property
    def addresses(self) -> frozenset[bytes]:
        return frozenset(n.mkid for n in self.names if n.nsid in (1, 3))


@dataclass(frozen=True, slots=True)
class Decrypted:
    """An opened packet: the inner datagram (tunnel mode: the inner one) and how it opened.

    ``sender``/``receiver``: principal labels (``?`` when the key log opened it and the
    material does not name them); ``created``: a modern Kp's creation time (ms), else -1."""

    packet: bytes
    version: int
    algorithms: tuple[int, int, int, int]
    sender: str
    receiver: str
    via: str  # "long-term" or "keylog"
    tunnel: bool
    duplicate: bool
    created: int = -1


@dataclass(slots=True)
class _Key:
    """One Kp's keys and the SAs built from them (built again for a fresh replay window)."""

    suite: Suite
    e_kp: bytes
    a_kp: bytes
    sender: str
    receiver: str
    via: str
    created: int
    transforms: Transforms | None = None

    def sas(self) -> Transforms:
        self.transforms = build(self.suite, self.e_kp, self.a_kp, tunnel=None,
                                replay_window=64, rng=_no_rng)
        return self.transforms


class Decryptor:
    def __init__(self, principals: Iterable[Principal] = (),
                 keylog: Mapping[bytes, KeylogEntry] | None = None, *,
                 nsids: NsidTable = STANDARD_NSIDS) -> None:
        self.principals = list(principals)
        self.keylog = dict(keylog or {})
        if EMKID_NSID not in nsids.lengths:  # packets under ephemeral keys (PFS-17)
            nsids = nsids.with_private(EMKID_NSID, EMKID_LENGTH)
        self.nsids = nsids
        self._by_name: dict[SkipName, Principal] = {}
        for p in self.principals:
            for name in p.names:
                self._by_name.setdefault(name, p)
        self._keys: dict[bytes, _Key] = {}
        self._seen: set[bytes] = set()

    def decrypt(self, packet: bytes) -> Decrypted:
        """Open one captured IP datagram that carries SKIP, or raise SkipError saying why."""
        _version, _nh, off, proto = locate_upper(packet)
        if proto != IP_PROTOCOL_SKIP:
            raise ParseError("unsupported_protocol", f"IP protocol {proto}, not SKIP")
        end = measure(packet, off, num.header_ekp_length, self.nsids)[0]
        header = packet[off:end]
        shim_icv = None
        if header[0] & 0x0F:  # Rsvd: zero in the AH ICV, ignored on receive (draft-06 s. 1.8)
            shim_icv = bytes((header[0] & 0xF0,)) + header[1:]
        key = self._keys.get(header) or self._key(packet, header, shim_icv or header)
        sas = key.transforms or key.sas()
        try:
            inner = sas.unprotect(packet, shim_len=len(header), shim_icv=shim_icv)
        except SkipError as err:
            if err.reason not in ("replay", "replay_too_old"):
                raise
            # offline, order and repetition are facts to report, not reasons to refuse
            inner = key.sas().unprotect(packet, shim_len=len(header), shim_icv=shim_icv)
        digest = hashlib.blake2b(packet[off:], digest_size=16).digest()
        duplicate = digest in self._seen
        if not duplicate and len(self._seen) < _MAX_SEEN:
            self._seen.add(digest)
        inner, tunnel = _decapsulate(inner)
        return Decrypted(inner, key.suite.version, key.suite.algorithms, key.sender,
                         key.receiver, key.via, tunnel, duplicate, key.created)

    # --- keys ----------------------------------------------------------------------------

    def _key(self, packet: bytes, header: bytes, icv_header: bytes) -> _Key:
        hdr = SkipHeader.parse(header, num.header_ekp_length, self.nsids)
        suite = Suite(hdr.version, hdr.kij_alg, hdr.crypt_alg, hdr.mac_alg, hdr.comp_alg)
        if hdr.kij_alg == 0:
            raise KeyingError("no_kp", "Kij Alg 0: an algorithm-discovery solicitation")
        suite.check()
        src, dst = _addresses(packet)
        sender = self._find(hdr.src_nsid, hdr.src_mkid, src)
        receiver = None if hdr.dst_nsid == EMKID_NSID else \
            self._find(hdr.dst_nsid, hdr.dst_mkid, dst)
        entry = self.keylog.get(header) or self.keylog.get(icv_header)
        if entry is not None:
            key = _Key(suite, entry.e_kp, entry.a_kp, _label(sender), _label(receiver),
                       "keylog", -1)
        elif hdr.dst_nsid == EMKID_NSID:
            raise KeyingError("ephemeral_key", f"under the ephemeral key EMKID "
                              f"{hdr.dst_mkid.hex()} (PFS): only a key-log entry opens it")
        elif sender is None or receiver is None:
            side = "sender" if sender is None else "receiver"
            nsid, mkid, address = (hdr.src_nsid, hdr.src_mkid, src) if sender is None \
                else (hdr.dst_nsid, hdr.dst_mkid, dst)
            raise KeyingError("no_principal", f"the {side} ({_describe(nsid, mkid, address)})"
                              " matches no certificate given")
        else:
            kp, created = self._recover_kp(hdr, suite, sender, receiver)
            e_kp, a_kp = traffic_keys(suite, kp, len(hdr.ekp), icv_header)
            key = _Key(suite, e_kp, a_kp, sender.label, receiver.label, "long-term", created)
        if len(self._keys) >= _MAX_CACHED:
            self._keys.clear()
        self._keys[header] = key
        return key

    def _recover_kp(self, hdr: SkipHeader, suite: Suite, sender: Principal,
                    receiver: Principal) -> tuple[bytes, int]:
        """Kij from whichever end's private value we hold, then Kijn and Kp as the live
        receiver computes them (skip-core s. 1.4; modern-profile.md s. 4)."""
        if sender.group.name != receiver.group.name:
            raise KeyingError("bad_group", f"{sender.label} and {receiver.label} are in "
                              "different DH groups")
        dh = sender.group
        check_group(hdr.version, dh)
        if receiver.private is not None:
            secret = dh.shared_secret(receiver.private, sender.public)
        elif sender.private is not None:
            secret = dh.shared_secret(sender.private, receiver.public)
        else:
            raise KeyingError("no_private_key", f"neither {sender.label}'s nor "
                              f"{receiver.label}'s private key was given")
        prof = suite.profile
        if hdr.version == num.LEGACY_VERSION:
            kijn = kdf.legacy_kijn(kdf.legacy_kij(secret), hdr.n)
            kp_len = prof.kp_length(hdr.crypt_alg, hdr.mac_alg)
            return legacy_decrypt_kp(prof.kij[hdr.kij_alg], kijn, hdr.ekp, kp_len), -1
        kij = kdf.modern_kij(secret, dh.name, sender.public, receiver.public)
        kijn = kdf.modern_kijn(kij, hdr.n, sender.public, receiver.public)
        return modern_unwrap_kp(kijn, hdr.ekp)

    def _find(self, nsid: int, mkid: bytes, address: bytes) -> Principal | None:
        if nsid:
            return self._by_name.get(SkipName(nsid, bytes(mkid)))
        return self._by_name.get(SkipName.of_address(address))


def _no_rng(size: int) -> bytes:
    """Receive-only SAs draw no randomness; a tunnel SA's IPv4 ID seed is never used."""
    return bytes(size)


def _addresses(packet: bytes) -> tuple[bytes, bytes]:
    if packet[0] >> 4 == 4:
        return packet[12:16], packet[16:20]
    return packet[8:24], packet[24:40]


def _decapsulate(datagram: bytes) -> tuple[bytes, bool]:
    """A transport-mode result whose payload is an IP datagram is tunnel mode's inner one."""
    _version, _nh, off, proto = locate_upper(datagram, verify_checksum=False)
    if proto in _IP_IN_IP and len(datagram) > off:
        return datagram[off:], True
    return datagram, False


def _label(p: Principal | None) -> str:
    return p.label if p is not None else "?"


def _describe(nsid: int, mkid: bytes, address: bytes) -> str:
    if nsid:
        return f"NSID {nsid} MKID {mkid.hex()}"
    return str(SkipName.of_address(address).label)
