"""skipd's certificate discovery: the sockets and timers around the sans-I/O CDP requester and
responder (:mod:`skip.discovery.cdp`), and the DNS source (:mod:`skip.daemon.dns_source`).

- **Asking.** When a protecting rule has no certificate (an outbound packet for it waits in
  the engine's queue) or an unknown principal's packet arrives, the engine emits
  ``CertificateNeeded``; skipd asks CDP for the certificate the rule's name needs, first at
  the peer's own address (the tunnel or host the rule names, or where the packet came from),
  then at the configured ``cdp_servers``; then (or first: ``discovery`` gives the order) the
  DNS. A source that fails or whose certificate is refused hands over to the next: a forged or
  missing answer from one never blocks another. A found certificate is bound to the name and
  validated like a stored one (:meth:`~skip.daemon.keying_adapter.SkipKeying.learn`); the
  waiting packets are then released. Only names the configuration gives a rule are looked
  up, so spoofed SKIP packets cannot turn skipd into a CDP query generator for arbitrary
  principals (next-wave.md CDP threat 4), and the requester's own limits bound the rest.
- **Answering.** On ``key_management_port`` (1640) skipd answers GETs for the names its own
  certificate answers to, through the responder's cookies, 3x budget and rate limits.

Both sockets carry skipd's fwmark, so CDP goes around the tunnel in cleartext (CDP-4): there
are no keys before there are certificates.

The same two sockets carry the ephemeral exchange of PFS (next-wave.md 3.5: CDP PUT records of
the ephemeral certificate type): those datagrams go to the engine (``pfs``), not to the CDP
requester or responder (docs/pfs.md).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from skip.daemon import logs
from skip.daemon.config import Config, IPAddress, PeerPolicy
from skip.daemon.sockets import READ_BATCH, DatagramSocket
from skip.discovery.cdp import CdpRequester, CdpResponder
from skip.errors import SkipError
from skip.keying.pfs import carries_ephemeral
from skip.wire.cdp import CDP_PORT
from skip.wire.names import SkipName

if TYPE_CHECKING:  # the DNS source (and dnspython) loads when a configuration asks for it
    from skip.daemon.dns_source import DnsSource
    from skip.discovery.dns_lookup import DnsAnswer

REFRESH_AT = 0.8  # of what a DNS answer may be kept: ask again before it runs out
MIN_REFRESH = 5.0  # seconds: a tiny TTL does not make a query loop
RETRY_SECONDS = 30.0  # at most, after a re-fetch that did not settle it


class Learner(Protocol):
    """What discovery needs of the keying adapter."""

    def rule_for(self, name: SkipName) -> PeerPolicy | None: ...

    def learn(self, rule: PeerPolicy, name: SkipName, certificates: Sequence[tuple[int, bytes]],
              source: str, now: float, *, refresh: bool = False,
              anchored: bool = True) -> str: ...

    def unlearn(self, rule: PeerPolicy) -> None: ...

    def own_certificates(self, name: SkipName) -> tuple[tuple[int, bytes], ...]: ...


class Discovery:
    def __init__(self, config: Config, learner: Learner, *, ipv6: bool,
                 rng: Callable[[int], bytes] = os.urandom) -> None:
        cfg = config.daemon
        self.learner = learner
        self.servers = [(str(a), CDP_PORT) for a in cfg.cdp_servers]
        self.counters: Counter[str] = Counter()
        # 3 transmissions (0, 1, 3 s) to the peer alone; with servers to fall back on, 2 each
        # (0, 1 s, the next at 3 s), so the second is asked within the 5 s deadline
        self.requester = CdpRequester(rng=rng, tries=2 if self.servers else 3)
        self.responder = CdpResponder(learner.own_certificates, rng=rng)
        self.client = DatagramSocket(0, cfg.fwmark, ipv6=ipv6, what="CDP requester")
        self.server: DatagramSocket | None = None
        try:
            self.server = DatagramSocket(cfg.key_management_port, cfg.fwmark, ipv6=ipv6,
                                         what="CDP responder")
        except SkipError as exc:
            # another skipd (or CDP responder) on this host: we can still ask, not answer
            logs.LOGGER.warning("CDP responder not started", extra=logs.fields(
                reason=exc.reason, error=exc.detail))
        self.port = cfg.key_management_port
        self.sources = cfg.discovery
        self.dns_trust = cfg.dns_trust
        self.ipv6, self.rng = ipv6, rng
        self.dns: DnsSource | None = None
        self._configure_dns(config)
        #: where ephemeral-exchange datagrams go (the engine's pfs_receive); None: dropped
        self.pfs: Callable[[bytes, tuple[str, int], float], None] | None = None
        #: name -> (packet address, the sources not yet asked)
        self._waiting: dict[SkipName, tuple[IPAddress | None, list[str]]] = {}
        #: DNS-learned name -> when to fetch it again (DNS-12), and the interval that gave;
        #: and those being fetched now
        self._refresh: dict[SkipName, float] = {}
        self._interval: dict[SkipName, float] = {}
        self._refreshing: set[SkipName] = set()

    def reconfigure(self, config: Config) -> None:
        self.servers = [(str(a), CDP_PORT) for a in config.daemon.cdp_servers]
        self.sources = config.daemon.discovery
        self.dns_trust = config.daemon.dns_trust
        self._configure_dns(config)

    def _configure_dns(self, config: Config) -> None:
        if "dns" not in config.daemon.discovery:
            return  # a running source stays (its socket is watched) but is asked no more
        if self.dns is None:
            from skip.daemon.dns_source import DnsSource

            self.dns = DnsSource(config.daemon, ipv6=self.ipv6, rng=self.rng)
            self.dns.settle = self._settle_dns
        else:
            self.dns.configure(config.daemon)

    def readers(self) -> list[tuple[int, Callable[[float], None]]]:
        """The sockets to watch and what reads each."""
        out: list[tuple[int, Callable[[float], None]]] = [(self.client.fileno(), self.on_client)]
        if self.server is not None:
            out.append((self.server.fileno(), self.on_server))
        if self.dns is not None:
            out.append((self.dns.sock.fileno(), self.on_dns))
        return out

    def sockets(self) -> list[DatagramSocket]:
        return [s for s in (self.client, self.server, self.dns.sock if self.dns else None)
                if s is not None]

    def close(self) -> None:
        if self.dns is not None:
            self.dns.close()
        for sock in (self.client, self.server):
            if sock is not None:
                sock.close()

    # --- asking ----------------------------------------------------------------------------

    def need(self, name: SkipName, address: IPAddress | None, now: float) -> bool:
        """Look ``name`` up if a rule wants it; False when discovery cannot help (no rule
        names it, nowhere to ask, or it is recently known not to be found)."""
        if not self.sources:
            return False
        rule = self.learner.rule_for(name)
        if rule is None:
            self.counters["cdp_no_rule"] += 1
            return False
        if name in self._waiting:
            return True
        self._waiting[name] = (address, list(self.sources))
        return self._next_source(rule, name, now)

    def _next_source(self, rule: PeerPolicy, name: SkipName, now: float) -> bool:
        """Ask the next source for ``name``; False (and forgotten) when none is left."""
        address, remaining = self._waiting.get(name, (None, []))
        while remaining:
            source = remaining.pop(0)
            if source == "cdp":
                servers = [(str(address), CDP_PORT)] if address is not None else []
                servers += [s for s in self.servers if s not in servers]
                self.requester.lookup(name, servers, now)
                self._flush()
                if self.requester.looking_up(name):
                    return True
            elif source == "dns" and self.dns is not None \
                    and self.dns.lookup(rule, name, address, now):
                return True
        self._waiting.pop(name, None)
        return False

    def _flush(self) -> None:
        for data, to in self.requester.datagrams_to_send():
            try:
                self.client.send(data, to)
            except OSError as exc:
                self.counters["io_error"] += 1
                logs.LOGGER.info("CDP request not sent", extra=logs.fields(
                    reason="io_error", to=f"{to[0]}:{to[1]}", error=exc.strerror or str(exc)))

    def on_client(self, now: float) -> None:
        for _ in range(READ_BATCH):
            if (got := self.client.read()) is None:
                break
            data, source = got
            if carries_ephemeral(data):
                self._ephemeral(data, source, now)
                continue
            self.requester.receive_datagram(data, source, now)
        self._flush()
        self._settle(now)

    def _settle(self, now: float) -> None:
        for answer in self.requester.events():
            rule = self.learner.rule_for(answer.name)
            if rule is None:
                continue
            if answer.status == "found":
                server = f"{answer.server[0]}:{answer.server[1]}" if answer.server else "?"
                if self._learn(rule, answer.name, answer.certificates, f"cdp {server}", "cdp",
                               now):
                    continue
            else:
                reason = "cdp_timeout" if answer.status == "timeout" else "cdp_not_found"
                self.counters[reason] += 1
                logs.LOGGER.warning("peer certificate not found", extra=logs.fields(
                    peer=rule.name, name=str(answer.name), reason=reason, source="cdp"))
            self._next_source(rule, answer.name, now)

    def _learn(self, rule: PeerPolicy, name: SkipName, certificates: Sequence[tuple[int, bytes]],
               source: str, kind: str, now: float, *, anchored: bool = True) -> bool:
        result = self.learner.learn(rule, name, certificates, source, now, anchored=anchored)
        self.counters[f"{kind}_learned" if result == "ok" else result] += 1
        if result == "ok":
            self._waiting.pop(name, None)
            logs.LOGGER.info("peer certificate discovered", extra=logs.fields(
                peer=rule.name, name=str(name), source=source))
            return True
        logs.LOGGER.warning("discovered certificate not used", extra=logs.fields(
            peer=rule.name, name=str(name), reason=result, source=source))
        return False

    def on_dns(self, now: float) -> None:
        assert self.dns is not None
        self.dns.on_readable(now)
        self._settle_dns(now)

    def _settle_dns(self, now: float) -> None:
        if self.dns is None:
            return
        for answer in self.dns.events():
            rule = self.learner.rule_for(answer.name)
            if rule is None:
                continue
            if answer.name in self._refreshing:
                self._refreshing.discard(answer.name)
                self._refreshed(rule, answer, now)
                continue
            if answer.status == "found" and self._learn(
                    rule, answer.name, answer.certificates, _dns_source(answer), "dns", now,
                    anchored=self._anchored(answer)):
                self._schedule(answer, now)
                continue
            if answer.status != "found":
                logs.LOGGER.warning("peer certificate not found", extra=logs.fields(
                    peer=rule.name, name=str(answer.name), source=f"dns {answer.owner}",
                    reason="cdp_not_found" if answer.status == "not_found" else answer.status,
                    error=answer.detail))
            self._next_source(rule, answer.name, now)

    # --- answering -------------------------------------------------------------------------

    def on_server(self, now: float) -> None:
        if self.server is None:
            return
        for _ in range(READ_BATCH):
            if (got := self.server.read()) is None:
                break
            data, source = got
            if carries_ephemeral(data):
                self._ephemeral(data, source, now)
                continue
            reply = self.responder.handle(data, source, ("0.0.0.0", self.port), now)
            if reply is not None:
                try:
                    self.server.send(reply, source)
                except OSError:
                    self.counters["io_error"] += 1

    # --- the ephemeral exchange (PFS) --------------------------------------------------------

    def _ephemeral(self, data: bytes, source: tuple[str, int], now: float) -> None:
        if self.pfs is None:
            self.counters["pfs_off"] += 1
            return
        try:
            self.pfs(data, source, now)
        except SkipError as exc:  # counted by the engine; logged here with who sent it
            logs.LOGGER.info("ephemeral exchange refused", extra=logs.fields(
                reason=exc.reason, source=f"{source[0]}:{source[1]}", error=exc.detail))

    def send_pfs(self, payload: bytes, address: IPAddress | None, reply_to: object) -> None:
        """A request goes from the client socket to the peer's CDP port; a reply from the
        CDP port back to where the request came from."""
        if isinstance(reply_to, tuple) and self.server is not None:
            sock, to = self.server, (str(reply_to[0]), int(reply_to[1]))
        elif address is not None:
            sock, to = self.client, (str(address), self.port)
        else:
            return
        try:
            sock.send(payload, to)
        except OSError as exc:
            self.counters["io_error"] += 1
            logs.LOGGER.info("ephemeral exchange not sent", extra=logs.fields(
                reason="io_error", to=f"{to[0]}:{to[1]}", error=exc.strerror or str(exc)))

    # --- time and status ---------------------------------------------------------------------

    def _refreshed(self, rule: PeerPolicy, answer: DnsAnswer, now: float) -> None:
        """A re-fetch ended. Only a DNSSEC-secure answer can withdraw a certificate: a
        timeout, or an answer an off-path forger could have made, keeps it (it still
        validates against the CA and CRLs) and asks again later (docs/discovery.md)."""
        name = answer.name
        reason = answer.status
        if answer.status == "found":
            reason = self.learner.learn(rule, name, answer.certificates, _dns_source(answer),
                                        now, refresh=True, anchored=self._anchored(answer))
            if reason == "ok":
                self.counters["dns_refreshed"] += 1
                self._schedule(answer, now)
                return
        if answer.outcome != "secure":
            self.counters["dns_refresh_failed"] += 1
            self._refresh[name] = now + self._retry(name)
            logs.LOGGER.info("discovered certificate not re-fetched, kept", extra=logs.fields(
                peer=rule.name, name=str(name), reason="dns_refresh_failed",
                error=f"{reason}: {answer.detail}"))
            return
        self._refresh.pop(name, None)
        self._interval.pop(name, None)
        self.learner.unlearn(rule)
        self.counters["dns_withdrawn"] += 1
        logs.LOGGER.warning("discovered certificate withdrawn, peer dropped", extra=logs.fields(
            peer=rule.name, name=str(name), reason="dns_withdrawn", error=reason))

    def _anchored(self, answer: DnsAnswer) -> bool:
        """Whether a DNS answer's certificate must chain to a CA: always, unless ``dns_trust
        = "dnssec"`` and DNSSEC vouches for it (decisions.md, DNS certificate discovery)."""
        return not (self.dns_trust == "dnssec" and answer.outcome == "secure")

    def _schedule(self, answer: DnsAnswer, now: float) -> None:
        interval = max(answer.keep * REFRESH_AT, MIN_REFRESH)
        self._refresh[answer.name], self._interval[answer.name] = now + interval, interval

    def _retry(self, name: SkipName) -> float:
        return min(RETRY_SECONDS, self._interval.get(name, RETRY_SECONDS))

    def _refresh_due(self, now: float) -> None:
        for name, when in list(self._refresh.items()):
            if when > now or name in self._refreshing:
                continue
            rule = self.learner.rule_for(name)
            if rule is None or self.dns is None:
                del self._refresh[name]
                continue
            self._refresh[name] = now + self._retry(name)  # until the answer says otherwise
            if self.dns.lookup(rule, name, None, now):
                self._refreshing.add(name)

    def get_timer(self) -> float | None:
        timers = [self.requester.get_timer(), self.dns.get_timer() if self.dns else None,
                  min(self._refresh.values(), default=None)]
        return min((t for t in timers if t is not None), default=None)

    def handle_timer(self, now: float) -> None:
        self.requester.handle_timer(now)
        self._flush()
        self._settle(now)
        if self.dns is not None:
            self._refresh_due(now)
            self.dns.handle_timer(now)
            self._settle_dns(now)

    def status(self) -> dict[str, Any]:
        counters = Counter(self.counters)
        counters.update(self.requester.counters)
        counters.update({f"responder_{k}": v for k, v in self.responder.counters.items()})
        in_flight = list(self.requester.in_flight())
        if self.dns is not None:
            counters.update(self.dns.requester.counters)
            in_flight += self.dns.requester.in_flight()
        return {"in_flight": in_flight, "counters": dict(sorted(counters.items())),
                "responder": self.server is not None, "sources": list(self.sources)}


def _dns_source(answer: DnsAnswer) -> str:
    """Where a DNS certificate came from, and how far DNSSEC vouches for it."""
    server = answer.server[0] if answer.server else "?"
    return f"dns {answer.owner} @{server} ({answer.outcome})"

