"""Certificates that discovery (CDP) brought for skipd's rules, and the names rules want.

skipd discovers certificates only for principals its configuration names: a protecting
``[[peer]]`` rule whose certificate is not in the store. The rule says which name the
certificate must answer to (its NSID/MKID, or for NSID 0 its tunnel or host address), so a
discovered certificate is bound to that name (CDP-24) and validated like a stored one. What was
learned is kept per rule (so at most one per rule), survives a reload while the rule still
wants the same name, and is validated again at every reload under the anchors and CRLs of
the day: a revoked certificate goes whatever brought it.

The rules bound what may be learned, but a site of many peers should not have to hold every
certificate it ever met: past ``daemon.discovery_cache`` entries the least recently used
peer is forgotten (its next packet discovers it again). "Used" is the last packet protected
for or verified from the peer, which the engine already records; it is read only when an
entry must go, so the per-packet path pays nothing for the order.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

from skip.daemon.cert_store import CertificateStore, Validator
from skip.daemon.config import Config, DaemonSettings, PeerPolicy
from skip.daemon.credentials import Assigned
from skip.discovery.binding import Validate, bind
from skip.errors import CertificateError
from skip.pki.certificate import Certificate
from skip.pki.validation import PeerKey, validate_unanchored
from skip.wire.names import SkipName


@dataclass(frozen=True)
class _Entry:
    name: SkipName
    cert_type: int
    data: bytes
    source: str  # where it came from, for operators ("cdp 192.0.2.2:1640")
    assigned: Assigned
    learned_at: float  # the first use, until a packet says otherwise
    anchored: bool  # False: a DNSSEC-secure answer vouched for it, no CA chain needed


#: rule name -> when a packet last went to or came from its peer (None: never)
LastUse = Callable[[str], float | None]


class Learned:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}  # by rule name
        self._rules: dict[SkipName, PeerPolicy] = {}
        self._wanted: dict[str, tuple[SkipName, bytes]] = {}  # rule -> (name, address)
        self.capacity = DaemonSettings.discovery_cache
        self.evicted = 0  # entries forgotten to stay within capacity, since start

    def configure(self, config: Config) -> None:
        """The names the protecting rules want; what a rule no longer wants is forgotten."""
        self._rules.clear()
        self._wanted.clear()
        self.capacity = config.daemon.discovery_cache
        for rule in config.peers:
            if rule.action != "protect":
                continue
            if rule.peer.nsid:
                names = [rule.peer]
                address = rule.tunnel.packed if rule.tunnel is not None else b""
            else:
                outer = [rule.tunnel] if rule.tunnel is not None else list(rule.hosts)
                names = [SkipName.of_address(a.packed) for a in outer]
                address = outer[0].packed if outer else b""
            if not names:
                continue
            self._wanted[rule.name] = (names[0], address)
            for name in names:
                self._rules.setdefault(name, rule)
        for rule_name in [r for r, e in self._entries.items()
                          if self._rules.get(e.name) is None
                          or self._rules[e.name].name != r]:
            del self._entries[rule_name]

    def wanted(self, rule: PeerPolicy) -> tuple[SkipName, bytes] | None:
        """The name to ask for on ``rule``'s behalf, and the address to ask (b"": none)."""
        return self._wanted.get(rule.name)

    def rule_for(self, name: SkipName) -> PeerPolicy | None:
        return self._rules.get(name)

    def holds(self, rule: PeerPolicy) -> bool:
        """Whether ``rule``'s certificate is one discovery brought."""
        return rule.name in self._entries

    def forget(self, rule: PeerPolicy) -> None:
        self._entries.pop(rule.name, None)

    def take(self, rule: PeerPolicy, name: SkipName, cert_type: int, data: bytes, source: str,
             now: float, validate: Validator, store: CertificateStore, *,
             anchored: bool = True) -> Assigned:
        """Bind and validate a returned certificate for ``rule``; CertificateError if not.
        ``anchored`` False: a DNSSEC-secure answer vouches for it (``dns_trust =
        "dnssec"``), so a certificate that chains to no configured CA is taken too."""
        if self._rules.get(name) is not rule:
            raise CertificateError("cert_name_mismatch", f"{name} is not what peer "
                                   f"{rule.name} is named by")
        key = bind(name, cert_type, data, now, _cached(validate, store, anchored))
        assigned = Assigned(key, source, _fingerprint(key))
        old = self._entries.get(rule.name)
        self._entries[rule.name] = _Entry(name, cert_type, data, source, assigned,
                                          now if old is None else old.learned_at, anchored)
        return assigned

    def evict(self, last_use: LastUse, keep: str | None = None) -> list[str]:
        """Forget the least recently used entries beyond capacity (never ``keep``, the one
        just learned) and return their rule names."""
        over = len(self._entries) - self.capacity
        if over <= 0:
            return []
        def used(item: tuple[str, _Entry]) -> float:
            return max(item[1].learned_at, last_use(item[0]) or 0.0)
        gone = [rule for rule, _ in heapq.nsmallest(
            over, (i for i in self._entries.items() if i[0] != keep), key=used)]
        for rule in gone:
            del self._entries[rule]
        self.evicted += len(gone)
        return gone

    def recall(self, rule: PeerPolicy, now: float, validate: Validator,
               store: CertificateStore) -> Assigned | None:
        """What was learned for ``rule``, if it still answers and validates today."""
        entry = self._entries.get(rule.name)
        if entry is None:
            return None
        try:
            key = bind(entry.name, entry.cert_type, entry.data, now,
                       _cached(validate, store, entry.anchored))
        except CertificateError:
            del self._entries[rule.name]
            return None
        return Assigned(key, entry.source, entry.assigned.fingerprint)

    def __len__(self) -> int:
        return len(self._entries)

    def status(self) -> list[dict[str, object]]:
        return [{"rule": rule, "name": str(e.name), "source": e.source,
                 "not_after": e.assigned.key.not_after} for rule, e in self._entries.items()]


def _cached(validate: Validator, store: CertificateStore, anchored: bool) -> Validate:
    """The validator through the store's verdict cache; unless ``anchored``, a certificate
    that chains to no configured CA is checked on its own (a revoked one stays refused:
    CRLs apply whenever the issuer is known)."""
    def check(cert: Certificate, now: float) -> PeerKey:
        try:
            return store.validate(cert, now, validate)
        except CertificateError as exc:
            if anchored or exc.reason != "cert_untrusted":
                raise
        return validate_unanchored(cert, now)
    return check


def _fingerprint(key: PeerKey) -> str:
    return key.source.fingerprint
