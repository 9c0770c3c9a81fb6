"""The SKIP keying engine as skipd drives it: the only module that knows the keying API.

One :class:`~skip.keying.endpoint.SkipEndpoint` holds our principal and one
:class:`~skip.keying.identity.Peer` per protecting ``[[peer]]`` rule that has a valid
certificate, named after the rule, so every packet the engine authenticates names the rule it
may speak for. Reload adds, replaces and removes peers one by one: a peer whose certificate,
suite and tunnel are unchanged keeps its cached master key and traffic keys.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from skip.crypto import kdf
from skip.crypto import skip_numbers as num
from skip.crypto.registry import get_cipher, get_integrity
from skip.daemon import logs, trust
from skip.daemon.config import MKID_LENGTHS, Config, IPAddress, PeerPolicy, SkipName
from skip.daemon.credentials import Credentials, Validator, load_credentials
from skip.daemon.engine import CertificateNeeded, Inbound, KeyingEngine, Transmit
from skip.daemon.packet import internet_checksum
from skip.errors import ConfigError, KeyingError, SkipError
from skip.keying import events as kev
from skip.keying.endpoint import SkipEndpoint
from skip.keying.identity import LocalIdentity, Peer
from skip.keying.policy import KeyingPolicy
from skip.keying.suite import LEGACY_DEFAULT, MODERN_DEFAULT, Suite

LOCAL = "local"
#: the tunnel address of a nomadic peer not heard from yet (skipd sends nothing toward it)
_UNHEARD = ipaddress.ip_address("0.0.0.0")
_NUMBERS = {"legacy": num.LEGACY, "modern": num.MODERN}


def suite_for_rule(rule: PeerPolicy) -> Suite:
    """The rule's algorithm names as a SKIP suite (unset names: the profile's default)."""
    prof = _NUMBERS[rule.profile]
    base = LEGACY_DEFAULT if rule.profile == "legacy" else MODERN_DEFAULT

    def number(table: Mapping[int, Any], name: str | None, default: int) -> int:
        if name is None:
            return default
        return next(n for n, a in table.items() if a.name == name)

    crypt = number(prof.crypt, rule.crypt_alg, base.crypt_alg)
    aead = crypt in prof.crypt and prof.crypt[crypt].aead
    if aead:
        mac = crypt  # a combined transform: MAC Alg = Crypt Alg (draft-06 s. 1.12)
    elif rule.mac_alg is None and base.mac_alg == base.crypt_alg:
        mac = next(iter(prof.mac))  # the default was an AEAD: pair CBC with the best HMAC
    else:
        mac = number(prof.mac, rule.mac_alg, base.mac_alg)
    suite = Suite(base.version, number(prof.kij, rule.kij_alg, base.kij_alg), crypt, mac)
    try:
        return suite.check()
    except SkipError as exc:
        raise ConfigError("config_invalid", f"peer {rule.name}: {exc}") from None


def suite_overhead(suite: Suite, tunnel_v6: bool | None, mkid_bytes: int) -> int:
    """Worst-case bytes protection adds: outer header (tunnel), SKIP header, AH, ESP."""
    prof = suite.profile
    kij, crypt, mac, _ = suite.algorithms
    legacy = suite.version == num.LEGACY_VERSION
    total = 12 + prof.ekp_length(kij, crypt, mac) + mkid_bytes
    if tunnel_v6 is not None:
        total += 40 if tunnel_v6 else 20
    icv = 0
    if mac and not suite.aead:
        icv = get_integrity(prof.mac[mac].registry_name, allow_legacy=legacy).icv_size
    if "ah" in suite.layers:
        total += 12 + -(-icv // 8) * 8  # AH is padded to 8 bytes under IPv6
        icv = 0  # the MAC is in AH, not in ESP
    if "esp" in suite.layers and crypt:
        cipher = get_cipher(prof.crypt[crypt].registry_name, allow_legacy=legacy)
        block = max(cipher.block_size, 4)
        seq = 0 if legacy else 4
        total += 4 + seq + cipher.iv_size + (block - 1) + 2 + cipher.icv_size + icv
    return total


@dataclass(frozen=True)
class _PeerSpec:
    """What add_peer was called with; equal specs mean the peer and its keys can stay."""

    peer: Peer = field(compare=False)  # Peer compares by identity: compare its content below
    tunnel: IPAddress | None
    fingerprint: str
    content: tuple[object, ...]

    @classmethod
    def of(cls, peer: Peer, tunnel: IPAddress | None, fingerprint: str) -> _PeerSpec:
        return cls(peer, tunnel, fingerprint, (peer.group, peer.public, peer.nsid, peer.mkid,
                                               peer.addresses, peer.suite, peer.pre06))


ValidatorFactory = Callable[[Config], Validator]


class SkipKeying(KeyingEngine):
    def __init__(self, config: Config, now: float, validators: ValidatorFactory) -> None:
        self.validators = validators
        self.kp_born: dict[str, float] = {}
        self.skew: dict[str, int] = {}
        self.specs: dict[str, _PeerSpec] = {}
        #: nomadic peers now elsewhere than the tunnel address their SAs were built with
        self.moved: dict[str, IPAddress] = {}
        self.reconfigure(config, now, fresh=True)

    # --- configuration ----------------------------------------------------------------------

    def _policy(self, config: Config) -> KeyingPolicy:
        rules = (config.default, *config.peers)
        return KeyingPolicy(allow_legacy=any(r.profile == "legacy" for r in rules),
                            queue_per_peer=max(1, config.daemon.queue_limit),
                            kij_cache_size=max(64, 4 * len(config.peers)))

    def _identity(self, creds: Credentials, config: Config) -> LocalIdentity:
        if creds.private is None:
            raise ConfigError("config_invalid", f"{config.path}: identity: protect rules "
                              "need private_key and certificate")
        name = config.identity.name
        return LocalIdentity.create(LOCAL, {creds.private.group.name: creds.private.private},
                                    nsid=name.nsid, mkid=name.mkid,
                                    addresses=[str(a) for a in creds.addresses])

    def _specs(self, config: Config, creds: Credentials) -> dict[str, _PeerSpec]:
        specs = {}
        for rule in config.peers:
            key = creds.peers.get(rule.name)
            if rule.action != "protect" or key is None:
                continue
            if rule.mode != "tunnel":
                tunnel = None
            elif rule.nomadic:  # tunnel SAs from the start; the address comes with its packets
                known = self.specs.get(rule.name)
                tunnel = known.tunnel if known is not None else _UNHEARD
            else:
                tunnel = rule.tunnel
            hosts = [str(h) for h in rule.hosts] if rule.mode == "transport" else []
            try:
                peer = Peer.create(rule.name, key.public.group.name, key.public.public_value,
                                   nsid=rule.peer.nsid, mkid=rule.peer.mkid, addresses=hosts,
                                   suite=suite_for_rule(rule))
            except SkipError as exc:
                creds.refused.append((key.source, exc.reason, f"peer {rule.name}: {exc}"))
                continue
            specs[rule.name] = _PeerSpec.of(peer, tunnel, key.fingerprint)
        return specs

    def reconfigure(self, config: Config, now: float, fresh: bool = False) -> None:
        """All or nothing: everything is built before the running endpoint is touched."""
        creds = load_credentials(config, now, self.validators(config))  # fresh anchors, CRLs
        identity = self._identity(creds, config)
        specs = self._specs(config, creds)
        policy = self._policy(config)
        for path, reason, text in creds.refused:
            logs.LOGGER.warning("certificate not used", extra=logs.fields(
                reason=reason, file=path, error=text))
        rebuild = fresh or policy != self.endpoint.policy or \
            identity.publics != self.identity.publics or \
            (identity.nsid, identity.mkid, identity.addresses) != \
            (self.identity.nsid, self.identity.mkid, self.identity.addresses)
        if rebuild:
            self.endpoint = SkipEndpoint([identity], policy=policy)
            self.identity = identity
            self.specs: dict[str, _PeerSpec] = {}
        for name in [n for n in self.specs if n not in specs]:
            self.endpoint.remove_peer(name)
            self.kp_born.pop(name, None)
        for name, spec in specs.items():
            if self.specs.get(name) != spec:
                self._add(spec, now, self.specs.get(name))
        self.specs = specs
        self.rules = {r.name: r for r in config.peers}
        self.config = config

    def _add(self, spec: _PeerSpec, now: float | None,
             previous: _PeerSpec | None = None) -> None:
        if previous is not None and previous.tunnel != spec.tunnel:
            # the SAs of a live Kp embed the tunnel end points, and add_peer keeps the keys of
            # an unchanged public value: a new address needs the peer forgotten first
            self.endpoint.remove_peer(spec.peer.name)
        self.endpoint.add_peer(spec.peer, now,
                               tunnel=str(spec.tunnel) if spec.tunnel is not None else None)
        self.kp_born.pop(spec.peer.name, None)

    # --- packets ----------------------------------------------------------------------------

    def protect(self, packet: bytes, now: float, rule: PeerPolicy) -> bytes | None:
        spec = self.specs.get(rule.name)
        if spec is None:
            self.endpoint.counters.hit("unknown_mkid")  # the engine's counters hold its drops
            raise KeyingError("unknown_mkid", f"no valid certificate for peer {rule.name}")
        before = self.endpoint.counters["kp_new"]
        wire = self.endpoint.protect(packet, now, identity=LOCAL, peer=rule.name)
        if self.endpoint.counters["kp_new"] != before:
            self.kp_born[rule.name] = now
        moved = self.moved.get(rule.name)
        return _redirect(wire, moved) if wire is not None and moved is not None else wire

    def unprotect(self, datagram: bytes, now: float) -> Inbound | None:
        got = self.endpoint.unprotect(datagram, now)
        if got is None:
            return None
        return self._inbound(got, _outer_source(datagram), now)

    def _follow(self, name: str, outer: IPAddress, now: float) -> None:
        """A nomadic peer authenticated a packet from ``outer``: send there from now on.

        Only after authentication and the replay check under its current keys, so a forged
        or replayed packet cannot move it. The first contact replaces the placeholder tunnel
        (nothing was ever sent toward it). Later moves leave the engine's peer alone, since
        re-adding it would restart its replay windows, and redirect the protected packets
        instead (:meth:`protect`); only a change of address family re-adds it.
        """
        spec = self.specs.get(name)
        if spec is None or spec.tunnel is None:
            return
        if spec.tunnel == outer:
            self.moved.pop(name, None)
        elif spec.tunnel == _UNHEARD or spec.tunnel.version != outer.version:
            first = spec.tunnel == _UNHEARD
            self.specs[name] = replace(spec, tunnel=outer)
            self._add(self.specs[name], now, None if first else spec)
            self.moved.pop(name, None)
        else:
            self.moved[name] = outer

    def _inbound(self, got: kev.Received, outer: IPAddress | None, now: float) -> Inbound:
        self.skew[got.peer] = got.n - kdf.counter_n(now)
        rule = self.rules.get(got.peer)
        if rule is not None and rule.nomadic and outer is not None:
            self._follow(got.peer, outer, now)
        return Inbound(got.packet, got.peer, outer, got.version)

    def events(self) -> list[object]:
        out: list[object] = []
        for event in self.endpoint.events():
            if isinstance(event, kev.CertificateNeeded):
                # the CDP name: NSID|MKID, or NSID 1/3|address for peers named by address
                out.append(CertificateNeeded(SkipName(event.name[0], bytes(event.name[1:])),
                                             _address(event.address)))
            elif isinstance(event, kev.Transmit):
                out.append(Transmit(event.packet, event.why))
            elif isinstance(event, kev.Received):
                out.append(self._inbound(event, None, time.time()))
            elif isinstance(event, kev.AlgorithmsChanged):
                logs.LOGGER.info("peer advised other algorithms (ADP)", extra=logs.fields(
                    peer=event.peer, old=str(event.old), new=str(event.new)))
        return out

    # --- state ------------------------------------------------------------------------------

    def counters(self) -> Mapping[str, int]:
        return dict(self.endpoint.counters)

    def peers(self, now: float) -> list[dict[str, Any]]:
        rows = []
        for name, spec in self.specs.items():
            suite = self.endpoint.suite_for(spec.peer)
            prof = suite.profile
            kij, crypt, mac, _ = suite.algorithms
            algs = {"kij": prof.kij[kij].name, "crypt": prof.crypt[crypt].name if crypt else None,
                    "mac": None if suite.aead or not mac else prof.mac[mac].name}
            born = self.kp_born.get(name)
            rows.append({"rule": name, "algorithms": algs, "group": spec.peer.group,
                         "kp_age": round(now - born, 1) if born is not None else None,
                         "n_skew": self.skew.get(name), "certificate": spec.fingerprint[:16]})
        return rows

    def flush(self) -> int:
        """Forget every cached Kij and Kp by rebuilding the endpoint from the same peers."""
        count = len(self.specs)
        self.endpoint = SkipEndpoint([self.identity], policy=self.endpoint.policy)
        for spec in self.specs.values():
            self._add(spec, None)
        self.kp_born.clear()
        return count

    def overhead(self, rule: PeerPolicy) -> int:
        tunnel = rule.tunnel if rule.mode == "tunnel" else None
        v6 = None if tunnel is None and not rule.nomadic else \
            (True if tunnel is None else tunnel.version == 6)
        mkids = MKID_LENGTHS[rule.peer.nsid] + MKID_LENGTHS[self.config.identity.name.nsid]
        return suite_overhead(suite_for_rule(rule), v6, mkids)


def _redirect(datagram: bytes, destination: IPAddress) -> bytes:
    """The same protected datagram sent elsewhere: the modern profile's ESP does not cover
    the outer header (nomadic peers are modern-only for this reason), IPv4 needs its header
    checksum redone."""
    out = bytearray(datagram)
    if destination.version == 4:
        ihl = (out[0] & 0x0F) * 4
        out[16:20] = destination.packed
        out[10:12] = b"\0\0"
        out[10:12] = internet_checksum(bytes(out[:ihl])).to_bytes(2, "big")
    else:
        out[24:40] = destination.packed
    return bytes(out)


def _address(packed: bytes) -> IPAddress | None:
    return ipaddress.ip_address(packed) if len(packed) in (4, 16) else None


def _outer_source(datagram: bytes) -> IPAddress | None:
    packed = datagram[12:16] if datagram[0] >> 4 == 4 else datagram[8:24]
    return _address(bytes(packed))


def build_engine(config: Config, now: float) -> KeyingEngine | None:
    """None when no rule protects anything (skipd then only passes or denies cleartext)."""
    if not any(rule.action == "protect" for rule in (config.default, *config.peers)):
        return None
    return SkipKeying(config, now, trust.validator)
