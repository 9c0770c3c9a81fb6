"""The SKIP keying engine as skipd drives it: the only module that knows the keying API.

One :class:`~skip.keying.endpoint.SkipEndpoint` holds our principal (one more per other
SKIP name of ours that a rule chooses with ``local_nsid``/``local_mkid``: the same key pair,
another name) and one :class:`~skip.keying.identity.Peer` per protecting ``[[peer]]`` rule
that has a valid certificate, named after the rule, so every packet the engine authenticates
names the rule it may speak for. The endpoint is made once and changed in place: reload adds,
replaces and removes peers one by one, and hands a changed policy or principal to the
endpoint itself. A peer whose certificate is unchanged keeps its cached master key and receive
keys (with their replay windows) whatever else changed, and the engine renews its send keys
when its tunnel or algorithms did. Nomadic peers are the engine's too: it learns their address
from their verified packets.

A reload is two steps: :meth:`SkipKeying.prepare` reads and validates everything and touches
nothing that packets use, so the daemon runs it on a worker thread while the data plane goes
on forwarding; :meth:`SkipKeying.commit` then applies the difference on the event loop, in
time proportional to what changed.
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skip.crypto import skip_numbers as num
from skip.crypto.dh import GROUPS
from skip.crypto.registry import get_cipher, get_integrity
from skip.daemon import logs, trust
from skip.daemon.cert_store import CertificateStore, Validator, describe_certificate
from skip.daemon.config import MKID_LENGTHS, Config, IPAddress, PeerPolicy, SkipName
from skip.daemon.credentials import Assigned, Credentials, expected_names, load_credentials
from skip.daemon.engine import (
    CertificateNeeded,
    Inbound,
    KeyingEngine,
    PfsDatagram,
    Transmit,
)
from skip.daemon.key_log import KeyLogFile
from skip.daemon.learned import Learned
from skip.daemon.self_test import run_self_test
from skip.errors import ConfigError, KeyingError, SkipError
from skip.keying import events as kev
from skip.keying.endpoint import SkipEndpoint
from skip.keying.identity import LocalIdentity, Peer
from skip.keying.policy import KeyingPolicy
from skip.keying.suite import LEGACY_DEFAULT, MODERN_DEFAULT, Suite, check_group
from skip.pki.certificate import Certificate, iso_time
from skip.wire.cdp import CertType

LOCAL = "local"
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
    mac_name = prof.mac[mac].registry_name if mac and not suite.aead else None
    if mac_name is not None:
        icv = get_integrity(mac_name, allow_legacy=legacy).icv_size
    if "ah" in suite.layers:
        total += 12 + -(-icv // 8) * 8  # AH is padded to 8 bytes under IPv6
        icv = 0  # the MAC is in AH, not in ESP
    crypt_name = prof.crypt[crypt].registry_name if crypt else None
    if "esp" in suite.layers and crypt_name is not None:
        cipher = get_cipher(crypt_name, allow_legacy=legacy)
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
    rule: PeerPolicy = field(compare=False)  # what it was made from (a reload may reuse it)

    @classmethod
    def of(cls, peer: Peer, tunnel: IPAddress | None, fingerprint: str, rule: PeerPolicy
           ) -> _PeerSpec:
        return cls(peer, tunnel, fingerprint, (peer.group, peer.public, peer.nsid, peer.mkid,
                                               peer.addresses, peer.suite, peer.pre06,
                                               peer.nomadic, peer.not_after, peer.local),
                   rule)


@dataclass(frozen=True)
class Plan:
    """A configuration read and validated, not yet applied (:meth:`SkipKeying.prepare`)."""

    config: Config
    identities: dict[str, LocalIdentity]  # LOCAL first, then the names rules choose
    specs: dict[str, _PeerSpec]
    policy: KeyingPolicy
    validator: Validator
    own: dict[SkipName, tuple[tuple[int, bytes], ...]]  # what our CDP responder hands out


ValidatorFactory = Callable[[Config], Validator]


class SkipKeying(KeyingEngine):
    def __init__(self, config: Config, now: float, validators: ValidatorFactory) -> None:
        self.validators = validators
        self.store = CertificateStore()  # kept across reloads: they re-read what changed
        self.learned = Learned()  # certificates discovery brought, by rule
        self.specs: dict[str, _PeerSpec] = {}
        self.identities: dict[str, LocalIdentity] = {}
        self.key_log: KeyLogFile | None = None
        #: rules whose Kij is not precomputed yet (see precompute)
        self.unwarmed: collections.deque[str] = collections.deque()
        self.commit(self.prepare(config, now), now, fresh=True)
        run_self_test(self._self_test_cases(config), now)

    def _self_test_cases(self, config: Config) -> set[tuple[str, Suite]]:
        """Each (group of ours, suite of a protecting rule) traffic can use."""
        cases = set()
        for rule in (config.default, *config.peers):
            if rule.action != "protect":
                continue
            suite = suite_for_rule(rule)
            for name in self.identity.keys:
                try:
                    check_group(suite.version, GROUPS[name])
                except SkipError:
                    continue  # a pairing no packet can use (skipd --check says so)
                cases.add((name, suite))
        return cases

    # --- configuration ----------------------------------------------------------------------

    def _policy(self, config: Config) -> KeyingPolicy:
        rules = (config.default, *config.peers)
        return KeyingPolicy(allow_legacy=any(r.profile == "legacy" for r in rules),
                            queue_per_peer=max(1, config.daemon.queue_limit),
                            kp_max_bytes=config.daemon.rekey_bytes,
                            kp_max_seconds=float(config.daemon.rekey_seconds),
                            kij_cache_size=max(64, 4 * len(config.peers)),
                            pfs_lifetime=float(config.daemon.pfs_lifetime),
                            replay_window=config.daemon.replay_window)

    def _identities(self, creds: Credentials, config: Config) -> dict[str, LocalIdentity]:
        """Our principal, and one more per other name of ours a rule chooses (``local_nsid``
        / ``local_mkid``): the same key pair under that name, which our certificate must
        give us."""
        if creds.private is None:
            raise ConfigError("config_invalid", f"{config.path}: identity: protect rules "
                              "need private_key and certificate")
        keys = {creds.private.group.name: creds.private.private}
        addresses = [str(a) for a in creds.addresses]
        name = config.identity.name
        out = {LOCAL: LocalIdentity.create(LOCAL, keys, nsid=name.nsid, mkid=name.mkid,
                                           addresses=addresses)}
        ours = {(n.nsid, n.mkid) for n in creds.certificate.skip_names()} \
            if creds.certificate is not None else set()
        for rule in config.peers:
            local = rule.local
            if rule.action != "protect" or local is None or local == name:
                continue
            if local.nsid and (local.nsid, local.mkid) not in ours:
                raise ConfigError("config_invalid", f"{config.path}: peer {rule.name}: "
                                  f"local {local} is not a name our certificate gives us")
            out.setdefault(_local_label(local), LocalIdentity.create(
                _local_label(local), keys, nsid=local.nsid, mkid=local.mkid,
                addresses=addresses))
        return out

    def _specs(self, config: Config, creds: Credentials, validate: Validator,
               now: float) -> dict[str, _PeerSpec]:
        specs = {}
        for rule in config.peers:
            if rule.action != "protect":
                continue
            # the store first; else what discovery brought, checked again under today's
            # anchors and CRLs
            assigned = creds.peers.get(rule.name) or self.learned.recall(rule, now, validate,
                                                                          self.store)
            if assigned is None:
                continue
            try:
                specs[rule.name] = self._spec(rule, assigned, config)
            except SkipError as exc:
                creds.refused.append((assigned.file, exc.reason, f"peer {rule.name}: {exc}"))
        return specs

    def _spec(self, rule: PeerPolicy, assigned: Assigned, config: Config) -> _PeerSpec:
        """The peer a rule and its certificate make (the previous one if nothing changed,
        so no Peer is validated again)."""
        key = assigned.key
        # a nomadic peer's tunnel address is learned by the engine from its packets
        tunnel = rule.tunnel if rule.mode == "tunnel" and not rule.nomadic else None
        hosts = [str(h) for h in rule.hosts] if rule.mode == "transport" else []
        label = _label_for(rule, config)
        old = self.specs.get(rule.name)
        if old is not None and old.fingerprint == assigned.fingerprint and \
                old.rule == rule and old.peer.local == label:
            return old
        peer = Peer.create(rule.name, key.group.name, key.public_value,
                           nsid=rule.peer.nsid, mkid=rule.peer.mkid, addresses=hosts,
                           suite=suite_for_rule(rule), nomadic=rule.nomadic,
                           principal=assigned.fingerprint,
                           not_after=float(key.not_after), local=label, pfs=rule.pfs)
        return _PeerSpec.of(peer, tunnel, assigned.fingerprint, rule)

    def prepare(self, config: Config, now: float) -> Plan:
        """Read and validate everything a configuration needs; touches nothing packets use
        (only the certificate store's caches), so it may run on another thread. Raises
        SkipError for a configuration that cannot be used."""
        validate = self.validators(config)
        creds = load_credentials(config, now, validate, self.store)
        identities = self._identities(creds, config)
        specs = self._specs(config, creds, validate, now)
        for path, reason, text in creds.refused:
            logs.LOGGER.warning("certificate not used", extra=logs.fields(
                reason=reason, file=path, error=text))
        own = _own_names(creds)
        return Plan(config, identities, specs, self._policy(config), validate, own)

    def certificates_in_use(self, now: float) -> dict[str, dict[str, Any]]:
        """Per rule, the certificate used for it (``skipctl certs``): from the certificate
        store (the rule's own file, or the directory), else what discovery brought."""
        learned = {e["rule"]: e for e in self.learned.status()}
        out: dict[str, dict[str, Any]] = {}
        for name, spec in self.specs.items():
            rule = spec.rule
            candidates: list[tuple[Any, Certificate]] = []
            with contextlib.suppress(SkipError):
                if rule.certificate is not None:
                    entry = self.store.load(rule.certificate)
                    candidates = [(rule.certificate, c) for c in entry.certs]
                candidates += self.store.candidates(expected_names(rule))
            found = next(((p, c) for p, c in candidates if c.fingerprint == spec.fingerprint),
                         None)
            if found is not None:
                out[name] = {**describe_certificate(found[1], now), "source": str(found[0])}
                continue
            # learned by discovery (perhaps not X.509): what the validated key says
            not_after = float(spec.peer.not_after or 0)
            out[name] = {"certificate": spec.fingerprint[:16],
                         "skip_names": [learned[name]["name"]] if name in learned else [],
                         "not_after": iso_time(not_after) if not_after else None,
                         "expires_in": round(not_after - now) if not_after else None,
                         "source": learned.get(name, {}).get("source", "-")}
        return out

    def _key_log(self, path: Path | None) -> None:
        """Start, move or stop the DANGEROUS traffic-key log as the configuration says. A
        log that cannot be opened is an error in the log, not a reason to stop protecting
        traffic."""
        old = self.key_log
        if (old.path if old else None) == path:
            return
        if old is not None:
            old.close()
            self.key_log = None
        if path is not None:
            try:
                self.key_log = KeyLogFile(path)
            except OSError as exc:
                logs.LOGGER.error("key_log not written", extra=logs.fields(
                    reason="io_error", file=str(path), error=exc.strerror or str(exc)))
        self.endpoint.log_traffic_keys_insecurely(self.key_log)

    def commit(self, plan: object, now: float, fresh: bool = False) -> None:
        """Apply a prepared configuration: the endpoint changes in place, peer by peer, in
        time proportional to what changed.

        The endpoint is made once and then changed in place, never rebuilt: a new one would
        give every peer's current Kp a fresh replay window, so that each packet captured under
        it would pass again, and would cost a DH computation per peer.
        """
        if not isinstance(plan, Plan):
            raise TypeError(f"commit takes what prepare returned, not {type(plan).__name__}")
        if fresh:
            self.endpoint = SkipEndpoint(plan.identities.values(), policy=plan.policy,
                                         started=now)
        else:
            if plan.policy != self.endpoint.policy:
                self.endpoint.set_policy(plan.policy)
            for name, identity in plan.identities.items():
                old = self.identities.get(name)
                if old is None:
                    self.endpoint.add_identity(identity)
                elif _principal(identity) != _principal(old):
                    self.endpoint.replace_identity(identity)
        specs = plan.specs
        for name in [n for n in self.specs if n not in specs]:
            self.endpoint.remove_peer(name)
        for name, spec in specs.items():
            if self.specs.get(name) != spec:
                # the engine keeps what an unchanged public value allows (for a nomadic peer,
                # without a tunnel: the address it learned) and renews the rest
                tunnel = str(spec.tunnel) if spec.tunnel is not None else None
                self.endpoint.add_peer(spec.peer, now, tunnel=tunnel)
                self.unwarmed.append(name)
        if not fresh:
            for name in [n for n in self.identities if n not in plan.identities]:
                self.endpoint.remove_identity(name)
        self._key_log(plan.config.daemon.key_log)
        self.identities = plan.identities
        self.identity = plan.identities[LOCAL]
        self.specs = specs
        self.config = plan.config
        self.validator = plan.validator
        self.own = plan.own
        self.learned.configure(plan.config)
        self._evict()  # a smaller daemon.discovery_cache takes effect at once

    def reconfigure(self, config: Config, now: float) -> None:
        """All or nothing: everything is built before the running endpoint is touched."""
        self.commit(self.prepare(config, now), now)

    # --- time -------------------------------------------------------------------------------

    def get_timer(self) -> float:
        return self.endpoint.get_timer()

    def handle_timer(self, now: float) -> None:
        self.endpoint.handle_timer(now)

    # --- packets ----------------------------------------------------------------------------

    def protect(self, packet: bytes, now: float, rule: PeerPolicy) -> bytes | None:
        if rule.name not in self.specs:
            wanted = self.learned.wanted(rule) if self.config.daemon.discovery else None
            if wanted is None:
                self.endpoint.counters.hit("unknown_mkid")  # the engine counts its drops
                raise KeyingError("unknown_mkid", f"no valid certificate for peer {rule.name}")
            # discovery: the packet waits, and the engine asks for the certificate
            name, address = wanted
            self.endpoint.hold(packet, name, address, now, peer=rule.name,
                               identity=_label_for(rule, self.config) or LOCAL)
            return None
        return self.endpoint.protect(packet, now, identity=self.specs[rule.name].peer.local
                                     or LOCAL, peer=rule.name)

    def precompute(self, count: int) -> int:
        """Kij for up to ``count`` more peers (pinned, as draft-06 s. 1.6.3 has it for
        expected peers), so that the first packet to or from them pays no Diffie-Hellman.
        Returns how many still wait. A peer that went or changed since it was queued is
        skipped (a changed one was queued again)."""
        todo = self.unwarmed
        while count > 0 and todo:
            name = todo.popleft()
            spec = self.specs.get(name)
            if spec is None:
                continue
            count -= 1
            with contextlib.suppress(SkipError):  # a group no suite can use
                self.endpoint.precompute(name, spec.peer.local or LOCAL)
        return len(todo)

    def steady_sender(self, rule: PeerPolicy) -> Callable[[bytes, float], bytes | None] | None:
        spec = self.specs.get(rule.name)
        if spec is None:
            return None
        return self.endpoint.steady_sender(spec.peer.local or LOCAL, rule.name)

    def receive_lane(self) -> object | None:
        return self.endpoint.receive_lane()

    def steady_lane(self, rule: PeerPolicy) -> object | None:
        spec = self.specs.get(rule.name)
        if spec is None:
            return None
        return self.endpoint.steady_lane(spec.peer.local or LOCAL, rule.name)

    # --- discovery ------------------------------------------------------------------------

    def rule_for(self, name: SkipName) -> PeerPolicy | None:
        """The protecting rule whose certificate must answer to ``name``, if any."""
        return self.learned.rule_for(name)

    def learn(self, rule: PeerPolicy, name: SkipName, certificates: Sequence[tuple[int, bytes]],
              source: str, now: float, *, refresh: bool = False, anchored: bool = True) -> str:
        """Take the first of ``certificates`` (from discovery, for ``rule``'s ``name``) that
        answers to the name and validates; the peer is added and its waiting packets are
        released. Returns "ok" or the reason none was taken. ``refresh``: a re-fetch that
        replaces what discovery brought before (never a stored certificate). ``anchored``
        False: a DNSSEC-secure answer vouches for the certificates, no CA chain needed."""
        if rule.name in self.specs and not (refresh and self.learned.holds(rule)):
            return "ok"  # the store (a reload) was quicker
        reason = "cdp_not_found"
        for cert_type, data in certificates:
            try:
                assigned = self.learned.take(rule, name, cert_type, data, source, now,
                                             self.validator, self.store, anchored=anchored)
                spec = self._spec(rule, assigned, self.config)
            except SkipError as exc:
                reason = exc.reason
                continue
            self.specs[rule.name] = spec
            tunnel = str(spec.tunnel) if spec.tunnel is not None else None
            self.endpoint.add_peer(spec.peer, now, tunnel=tunnel)
            self.unwarmed.append(rule.name)
            self._evict(keep=rule.name)
            return "ok"
        return reason

    def _evict(self, keep: str | None = None) -> None:
        """Past ``daemon.discovery_cache``, the least recently used discovered peers go
        (docs/discovery.md): their next packet discovers them again."""
        for name in self.learned.evict(self.endpoint.last_activity, keep):
            if self.specs.pop(name, None) is not None:
                self.endpoint.remove_peer(name)
            logs.LOGGER.info("discovered certificate evicted (least recently used)",
                             extra=logs.fields(peer=name, reason="discovery_evicted",
                                               capacity=self.learned.capacity))

    def unlearn(self, rule: PeerPolicy) -> None:
        """Drop a discovered certificate its source has withdrawn (a proven DNS absence):
        the peer goes, and its next packet asks again."""
        if not self.learned.holds(rule):
            return
        self.learned.forget(rule)
        if self.specs.pop(rule.name, None) is not None:
            self.endpoint.remove_peer(rule.name)

    def learned_status(self) -> dict[str, Any]:
        learned = self.learned
        return {"learned": learned.status(), "cache": {
            "entries": len(learned), "capacity": learned.capacity, "evicted": learned.evicted}}

    def own_certificates(self, name: SkipName) -> tuple[tuple[int, bytes], ...]:
        """What our CDP responder hands out for ``name``: our certificate, if it answers."""
        return self.own.get(name, ())

    def unprotect(self, datagram: bytes, now: float) -> Inbound | None:
        got = self.endpoint.unprotect(datagram, now)
        if got is None:
            return None
        return _inbound(got)

    def is_newest(self, datagram: bytes) -> bool:
        return self.endpoint.is_newest(datagram)

    def rx_generation(self) -> int:
        return self.endpoint.rx_generation()

    def live_keys(self, limit: int) -> list[tuple[bytes, int | None, int]] | None:
        return self.endpoint.live_keys(limit)

    def pfs_receive(self, payload: bytes, source: tuple[str, int], now: float) -> None:
        self.endpoint.pfs_receive(payload, source[0], now, reply_to=source)

    def events(self) -> Sequence[object]:
        pending = self.endpoint.events()
        if not pending:
            return ()
        out: list[object] = []
        for event in pending:
            if isinstance(event, kev.CertificateNeeded):
                # the CDP name: NSID|MKID, or NSID 1/3|address for peers named by address
                out.append(CertificateNeeded(event.name,
                                             _address(event.address)))
            elif isinstance(event, kev.Transmit):
                out.append(Transmit(event.packet, event.why))
            elif isinstance(event, kev.Received):
                out.append(_inbound(event))
            elif isinstance(event, kev.PeerExpired):
                self.specs.pop(event.peer, None)  # until a reload finds a valid certificate
                logs.LOGGER.warning("peer certificate expired, peer dropped", extra=logs.fields(
                    reason="cert_expired", peer=event.peer))
            elif isinstance(event, kev.PfsSend):
                out.append(PfsDatagram(event.payload, _address(event.address),
                                       event.reply_to))
            elif isinstance(event, kev.PfsEstablished):
                logs.LOGGER.info("ephemeral key established (PFS)", extra=logs.fields(
                    peer=event.peer, expires=round(event.expires, 3)))
            elif isinstance(event, kev.AlgorithmsChanged):
                logs.LOGGER.info("peer advised other algorithms (ADP)", extra=logs.fields(
                    peer=event.peer, old=str(event.old), new=str(event.new)))
        return out

    # --- state ------------------------------------------------------------------------------

    def counters(self) -> Mapping[str, int]:
        return dict(self.endpoint.counters)

    def peers(self, now: float) -> list[dict[str, Any]]:
        """The engine's read-out per peer (``SkipEndpoint.peer_status``), named for skipctl."""
        rows = []
        for name, spec in self.specs.items():
            status = self.endpoint.peer_status(name, now)
            kij, crypt, mac, _ = status.algorithms
            suite = Suite(status.version, kij, crypt, mac)
            prof = suite.profile
            algs = {"kij": prof.kij[kij].name, "crypt": prof.crypt[crypt].name if crypt else None,
                    "mac": None if suite.aead or not mac else prof.mac[mac].name}
            row = {"rule": name, "algorithms": algs, "group": spec.peer.group,
                   "kp_age": round(status.kp_age, 1) if status.kp_age is not None else None,
                   "kp_bytes": status.kp_bytes, "kp_packets": status.kp_packets,
                   "n_skew": status.n_skew, "rx_keys": status.rx_keys,
                   "certificate": spec.fingerprint[:16],
                   "pfs": self.endpoint.pfs_status(name, now)}
            if status.tunnel is not None:
                row["address"] = status.tunnel  # where its packets go (learned, if nomadic)
            rows.append(row)
        return rows

    def flush(self, now: float) -> int:
        """Forget master keys and send keys. The endpoint keeps the live receive keys with
        their replay windows (``SkipEndpoint.flush``): rebuilding it instead would give every
        peer's current Kp a fresh window, and each packet captured under it would pass again."""
        return self.endpoint.flush(now)

    def overhead(self, rule: PeerPolicy) -> int:
        tunnel = rule.tunnel if rule.mode == "tunnel" else None
        v6 = None if tunnel is None and not rule.nomadic else \
            (True if tunnel is None else tunnel.version == 6)
        mkids = MKID_LENGTHS[rule.peer.nsid] + MKID_LENGTHS[self.config.identity.name.nsid]
        return suite_overhead(suite_for_rule(rule), v6, mkids)


def _label_for(rule: PeerPolicy, config: Config) -> str:
    """The endpoint's name of our principal toward ``rule`` ("" : the default one)."""
    local = rule.local
    return "" if local is None or local == config.identity.name else _local_label(local)


def _own_names(creds: Credentials) -> dict[SkipName, tuple[tuple[int, bytes], ...]]:
    if creds.certificate is None:
        return {}
    entry = ((int(CertType.X509), creds.certificate.der),)
    return {SkipName(n.nsid, n.mkid): entry for n in creds.certificate.skip_names()}


def _local_label(name: SkipName) -> str:
    """The endpoint's name for our principal under another SKIP name of ours."""
    return f"{LOCAL}:{name.nsid}:{name.mkid.hex()}"


def _principal(identity: LocalIdentity) -> tuple[object, ...]:
    """What an identity is made of (LocalIdentity compares by identity)."""
    return dict(identity.keys), identity.nsid, identity.mkid, identity.addresses


def _inbound(got: kev.Received) -> Inbound:
    return Inbound(got.packet, got.peer, got.version)


def _address(packed: bytes) -> IPAddress | None:
    return ipaddress.ip_address(packed) if len(packed) in (4, 16) else None



def build_engine(config: Config, now: float) -> KeyingEngine | None:
    """None when no rule protects anything (skipd then only passes or denies cleartext)."""
    if not any(rule.action == "protect" for rule in (config.default, *config.peers)):
        return None
    return SkipKeying(config, now, trust.validator)
