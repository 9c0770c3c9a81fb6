"""skipd's asyncio runtime: TUN -> policy -> keying engine -> underlay, and back.

One thread, one event loop: the kernel descriptors (TUN, raw/UDP sockets) are watched with
``add_reader`` and drained in batches, so a busy link costs one wake-up per batch rather than
per packet. Every packet that is not delivered is counted under its reason code; the same
counters feed ``skipctl counters`` and the Prometheus metrics. State is bounded: per-peer
statistics exist only for configured rules, and the keying engine bounds its own caches.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import errno
import functools
import gc
import ipaddress
import os
import signal
import socket
import time
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import TYPE_CHECKING, Any

from skip import __version__, native
from skip.daemon import kernel_filter, logs
from skip.daemon.cert_store import describe_certificate
from skip.daemon.config import (
    Config,
    IPAddress,
    PeerPolicy,
    SkipName,
    ipv6_uses,
    load_config,
    parse_config,
)
from skip.daemon.control import ControlServer
from skip.daemon.engine import CertificateNeeded, Inbound, KeyingEngine, PfsDatagram, Transmit
from skip.daemon.fastpath import PeerStats, Routes
from skip.daemon.keying_adapter import SkipKeying
from skip.daemon.packet import Summary, summarize, too_big
from skip.daemon.policy import PolicyTable
from skip.daemon.routing import Routing
from skip.daemon.sockets import (
    RawReceiver,
    RawSender,
    UdpTransport,
    ipv6_unavailable,
    path_mtu,
)
from skip.daemon.system_errors import from_os_error
from skip.daemon.tun import TunDevice
from skip.errors import REASONS, ConfigError, SkipError
from skip.files import read_bounded
from skip.pki.certificate import iso_time, load_certificate
from skip.wire.gik import GIK_PORT, is_multicast

if TYPE_CHECKING:  # imported when a configuration uses them: a lighter start
    from skip.daemon.discovery import Discovery
    from skip.daemon.groups import Groups, GroupUnderlay
    from skip.daemon.metrics import MetricsServer, Sample
    from skip.multicast.traffic import GroupTraffic

EngineFactory = Callable[[Config, float], KeyingEngine | None]
_BATCH = 64
_DUMMY_V4 = ipaddress.ip_address("192.0.0.8")
#: seconds between fresh looks at the underlay's path MTUs (a link's MTU changed, or the kernel
#: learned a smaller path MTU from a router's ICMP); an EMSGSIZE looks at once
PATH_REFRESH = 10.0
_LIMITS = 1024  # destinations whose underlay limit is kept
#: seconds of master-key precomputation per turn of the event loop (one X25519: 0.1 ms)
WARM_SLICE = 0.002
#: seconds from a batch that changed the receive Kps to the kernel lanes following them
FOLLOW_DELAY = 0.005
#: settings that name kernel objects skipd created; changing them needs a restart
_RESTART_ONLY = ("interface", "control_socket", "udp_port", "fwmark", "table", "rule_priority",
                 "metrics")


class Daemon:
    def __init__(self, config: Config, engine_factory: EngineFactory) -> None:
        self.config = config
        self.engine_factory = engine_factory
        self.policy = PolicyTable(config)
        self.wire_limit = _wire_limit(config)
        #: the largest protected datagram per outer destination (packed address): the
        #: configured limit, or less where the kernel's route toward it is narrower
        self.limits: dict[bytes, int] = {}
        #: the kernel's MTU toward a packed address (None: no route); nothing is known
        #: until start() asks the kernel (unit tests run without one)
        self.path_mtu: Callable[[bytes], int | None] = lambda packed: None
        self.refresh: asyncio.TimerHandle | None = None
        self.forced: asyncio.TimerHandle | None = None  # a refresh a too-big packet asked for
        self.following: asyncio.TimerHandle | None = None  # the lanes' next update
        self.last_forced = 0.0  # monotonic time it last ran
        self.engine: KeyingEngine | None = None
        self.drops: collections.Counter[str] = collections.Counter()
        self.traffic: collections.Counter[str] = collections.Counter()
        #: the totals at the last ``skipctl counters --reset`` (by group), and when
        self.baseline: dict[str, dict[str, int]] = {}
        self.reset_at: float | None = None
        self.stats: dict[str, PeerStats] = {}
        #: the steady state's routes (skip/daemon/fastpath.py), cleared whenever what they
        #: stand for may have changed
        self.routes = Routes(config.daemon.key_management_port, bool(config.groups))
        self.udp_peers: dict[str, tuple[str, int]] = {}  # authenticated UDP sources by peer
        self.unknown: collections.OrderedDict[SkipName, float] = collections.OrderedDict()
        self.droplog = logs.DropLog()
        self.monitor = logs.Monitor()  # skipctl monitor's feed: what skipd logs
        self.started = time.time()
        self.mtu = 0
        self.tun: TunDevice | None = None
        self.routing: Routing | None = None
        self.sender: RawSender | None = None
        #: (TUN, raw IPv4 socket) descriptors for the compiled send loop (_pump_tun), or
        #: None: the Python loop (no compiled core, SKIP over UDP, unit tests' fakes)
        self.pump_fds: tuple[int, int] | None = None
        self.receivers: list[RawReceiver] = []
        self.udp: UdpTransport | None = None
        self.ipv6 = True  # False: IPv6 was unavailable at start and skipd runs IPv4-only
        self.control: ControlServer | None = None
        self.metrics: MetricsServer | None = None
        self.stopping: asyncio.Event | None = None
        self.serving = False  # start() completed
        self.failure: SkipError | None = None  # what made skipd stop on its own
        self.background: set[asyncio.Task[None]] = set()  # SIGHUP reloads in progress
        # netlink requests block until the kernel answers, so all netlink work runs on one
        # dedicated thread (set-up, reload, teardown: never per packet)
        self.netlink = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="netlink")
        # a reload reads and validates certificates here, off the event loop (one at a time)
        self.reloader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="reload")
        self.reloading: asyncio.Lock | None = None
        self.keying_timer: asyncio.TimerHandle | None = None  # the engine's one timer
        self.warming: asyncio.Handle | None = None  # master keys computed ahead (_warm)
        self.discovery: Discovery | None = None  # CDP (docs/discovery.md)
        self.groups: Groups | None = None  # multicast groups (docs/multicast.md)
        self.rekeys: GroupUnderlay | None = None
        #: the kernel filter's sources by IP version (None: off), and its two lanes
        self.filtered: dict[int, list[Any] | None] = {4: None, 6: None}
        self.lanes: dict[int, kernel_filter.Lanes] = {}  # raw sockets only

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config.daemon
        loop = asyncio.get_running_loop()
        # first of all: a SIGTERM during start-up must still run the clean-up in run()
        self.stopping = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._sighup)
        # before any kernel state: a second skipd on this socket must leave the first alone
        self.control = ControlServer(cfg.control_socket, {
            "status": self._cmd_status, "peers": self._cmd_peers,
            "counters": self._cmd_counters, "flush": self._cmd_flush,
            "reload": self._cmd_reload, "stop": self._cmd_stop,
            "discovery": self._cmd_discovery, "certs": self._cmd_certs,
            "groups": self._cmd_groups, "group": self._cmd_group},
            streams={"monitor": self._stream_monitor})
        self.control.claim()
        logs.LOGGER.addHandler(self.monitor)
        self.ipv6 = self._ipv6_decision()
        self.engine = self.engine_factory(self.config, time.time())
        self.path_mtu = functools.partial(path_mtu, mark=cfg.fwmark)
        self.mtu = self._device_mtu()
        self.tun = TunDevice(cfg.interface)
        self.routing = await self._netlink(Routing, self.tun.name, cfg.fwmark, cfg.table,
                                           cfg.rule_priority)
        await self._netlink(self.routing.survey)
        await self._netlink(self.routing.configure_device, self.mtu, cfg.addresses)
        await self._netlink(self.routing.add_rules, self.ipv6)
        await self._netlink(self._install_routes)
        self.sender = RawSender(cfg.fwmark, ipv6=self.ipv6)
        if native.core is not None and not cfg.udp_port:
            self.pump_fds = (self.tun.fileno(), self.sender.v4.fileno())
        loop.add_reader(self.tun.fileno(), self._on_tun)
        if cfg.udp_port:
            self.udp = UdpTransport(cfg.udp_port, cfg.fwmark, ipv6=self.ipv6)
            loop.add_reader(self.udp.fileno(), self._on_wire, self.udp)
        else:
            for version, family in ((4, socket.AF_INET), (6, socket.AF_INET6)):
                if version == 6 and not self.ipv6:
                    continue
                first = RawReceiver(family)
                # the second lane (skip/daemon/kernel_filter.py): read a little at a time
                second = RawReceiver(family)
                self.receivers += [first, second]
                self.lanes[version] = kernel_filter.Lanes(first.sock, second.sock, version == 6)
                loop.add_reader(first.fileno(), self._on_wire, first)
                loop.add_reader(second.fileno(), self._on_wire, second,
                                kernel_filter.SLOW_BATCH)
            self._filter_receivers()
        self._ensure_discovery()
        self._ensure_groups()
        await self.control.start()
        if cfg.metrics:
            from skip.daemon.metrics import MetricsServer

            self.metrics = MetricsServer(cfg.metrics[0], cfg.metrics[1], self.samples)
            await self.metrics.start()
        self.serving = True
        # what start-up made lives as long as the process: the collector need not walk it
        # again at every full collection (gc.freeze, as long-running servers do)
        gc.freeze()
        gc.enable()  # skipd's main turned it off for the start (skip/cli/skipd.py)
        # systemd (Type=notify): the TUN device, routes, sockets and control socket are up
        notify_ready(f"serving on {self.tun.name}")
        # a stopped skipd's blocks for prefixes this configuration no longer routes: only now,
        # so that a start failing before this point leaves them protecting
        await self._netlink(self.routing.drop_leftovers)
        self.refresh = loop.call_later(PATH_REFRESH, self._refresh_paths)
        self._arm_timer()
        self._warm_soon()
        logs.LOGGER.info("skipd started", extra=logs.fields(
            interface=self.tun.name, mtu=self.mtu, peers=len(self.config.peers),
            transport=f"udp/{cfg.udp_port}" if cfg.udp_port else "ip/57",
            ip_versions="4, 6" if self.ipv6 else "4", engine=native.describe()))

    def _ipv6_decision(self) -> bool:
        """Whether to open IPv6 sockets and rules: when the host has IPv6 (a peer may show up
        there later, through a reload or a nomadic move); refused when the configuration names
        IPv6 addresses the host cannot carry; else IPv4-only, said in the log."""
        why_not = ipv6_unavailable()
        if why_not is None:
            return True
        uses = ipv6_uses(self.config)
        if uses:
            raise ConfigError("config_invalid", f"{self.config.path}: {uses[0]} needs IPv6, "
                              f"but {why_not}")
        logs.LOGGER.info("IPv6 unavailable: running IPv4-only, no IPv6 socket or rule opened",
                         extra=logs.fields(why=why_not))
        return False

    async def run(self) -> None:
        """Start, serve until SIGTERM/SIGINT or ``skipctl stop``, and always clean up; raises
        what made skipd stop on its own (its exit status then says so)."""
        try:
            await self.start()
            assert self.stopping is not None
            await self.stopping.wait()
        finally:
            await self.stop()
        if self.failure is not None:
            raise self.failure

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        for timer in (self.refresh, self.forced, self.keying_timer, self.following):
            if timer is not None:
                timer.cancel()
        for source in [self.tun, self.udp, *self.receivers,
                       *(self.rekeys.sockets() if self.rekeys else ()),
                       *(self.discovery.sockets() if self.discovery else ())]:
            if source is not None and source.fileno() >= 0:
                loop.remove_reader(source.fileno())
                source.close()
        if self.rekeys is not None:
            self.rekeys.close()
        self.receivers.clear()
        self.discovery = None
        if self.metrics:
            await self.metrics.stop()
        if self.control:
            await self.control.stop()
        if self.sender:
            self.sender.close()
        if self.routing:
            # fail closed: a skipd that served leaves its rules and blocks (skipd --cleanup
            # removes them); a start that failed takes back what it added
            await self._netlink(self.routing.teardown, self.serving)
            self.routing = None
        self.netlink.shutdown()
        self.reloader.shutdown(wait=False, cancel_futures=True)
        self.tun = None
        if self.serving:  # after a failed start, the error skipd prints is the whole story
            logs.LOGGER.info("skipd stopped", extra=logs.fields(
                uptime_seconds=round(time.time() - self.started, 1)))
        self.serving = False
        logs.LOGGER.removeHandler(self.monitor)

    # --- configuration ----------------------------------------------------------------------

    @staticmethod
    def _compute_mtu(config: Config, engine: KeyingEngine | None, path: int | None = None,
                     floor: int = 0) -> int:
        """The TUN MTU: leave room for the worst-case overhead of every protected rule, so the
        kernel itself sends "fragmentation needed" / "packet too big" for what cannot fit.

        ``path``: the narrowest MTU the kernel reports toward the peers; ``underlay_mtu`` is
        an upper bound, not a promise (a 1400-byte link under the default 1500 made every
        full-size packet fail with EMSGSIZE). ``floor``: never below what the device needs
        for IPv6 (1280, else the kernel takes IPv6 off it); what still does not fit is then
        answered per packet with ICMP."""
        cfg = config.daemon
        if cfg.mtu:
            return cfg.mtu
        rules = [r for r in (config.default, *config.peers) if r.action == "protect"]
        overhead = max((engine.overhead(r) for r in rules), default=0) if engine else 0
        if cfg.udp_port:
            overhead += 48  # outer IPv6 + UDP header around the carried datagram
        underlay = cfg.underlay_mtu if path is None else min(cfg.underlay_mtu, path)
        return max(underlay - overhead, floor)

    def _device_mtu(self) -> int:
        return self._compute_mtu(self.config, self.engine, self._narrowest_path(),
                                 1280 if ipv6_uses(self.config) else 576)

    def _narrowest_path(self) -> int | None:
        """The smallest path MTU toward the outer addresses of the protecting rules (tunnel
        addresses, transport-mode hosts) the kernel has a route for; nomadic peers have no
        address to ask about until they are heard from, and are covered per packet. Each
        answer is kept as that address's limit, so a first packet there does not ask again
        (five system calls on a first contact's path)."""
        found = []
        for rule in (self.config.default, *self.config.peers):
            if rule.action != "protect" or rule.nomadic:
                continue
            outer = [rule.tunnel] if rule.tunnel else list(rule.hosts)
            for address in outer:
                packed = ipaddress.ip_address(address).packed
                mtu = self.path_mtu(packed)
                self._keep_limit(packed, mtu)
                if mtu is not None:
                    found.append(mtu)
        return min(found, default=None)

    def _learn_limit(self, dst: bytes) -> int:
        """The largest datagram toward ``dst``: the configured limit, or the kernel's MTU for
        its route when that is smaller (SKIP-in-UDP: less the outer UDP and IP headers)."""
        return self._keep_limit(dst, self.path_mtu(dst))

    def _keep_limit(self, dst: bytes, mtu: int | None) -> int:
        limit = self.wire_limit
        if mtu is not None:
            limit = min(limit, mtu - (48 if self.config.daemon.udp_port else 0))
        if len(self.limits) >= _LIMITS:
            self.limits.clear()
        self.limits[dst] = limit
        return limit

    def _refresh_paths(self) -> None:
        """Every PATH_REFRESH seconds, and at once after an EMSGSIZE: forget the per
        destination limits (the next packet to each asks the kernel again) and let the TUN MTU
        follow the narrowest path, down or back up."""
        loop = asyncio.get_running_loop()
        if self.refresh is not None:
            self.refresh.cancel()
        self.refresh = loop.call_later(PATH_REFRESH, self._refresh_paths)
        self.limits.clear()
        if not self.serving or self.routing is None:
            return
        mtu = self._device_mtu()
        if mtu != self.mtu:
            self.background.add(task := loop.create_task(self._set_mtu(mtu)))
            task.add_done_callback(self.background.discard)

    def _refresh_soon(self) -> None:
        """A path turned out narrower than the TUN MTU: refresh now rather than at the next
        period, but at most once a second (a nomadic peer, which the TUN MTU does not follow,
        would otherwise make every packet ask about every peer)."""
        if not self.serving or self.forced is not None:
            return  # one is on its way
        self.forced = asyncio.get_running_loop().call_later(
            max(0.0, self.last_forced + 1.0 - time.monotonic()), self._forced_refresh)

    def _forced_refresh(self) -> None:
        self.forced, self.last_forced = None, time.monotonic()
        self._refresh_paths()

    async def _set_mtu(self, mtu: int) -> None:
        old, self.mtu = self.mtu, mtu
        try:
            assert self.routing is not None
            await self._netlink(self.routing.set_mtu, mtu)
        except SkipError as exc:
            self.mtu = old
            logs.LOGGER.warning("cannot change the TUN MTU", extra=logs.fields(
                reason=exc.reason, error=exc.detail))
            return
        logs.LOGGER.info("TUN MTU follows the underlay path MTU", extra=logs.fields(
            interface=self.config.daemon.interface, mtu=mtu, was=old))

    async def _netlink(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.netlink, function, *args)

    def _install_routes(self) -> None:
        assert self.routing is not None
        wanted: dict[Any, str | None] = {}
        for net in self.policy.routed_prefixes():
            rule = self.policy.for_address(net.network_address).rule
            src = None
            if rule.mode == "transport" and net.num_addresses == 1:
                src = self.routing.preferred_source(net.network_address)
            wanted[net] = src
        for group in self.config.groups:  # what the host sends to a group goes to skipd
            wanted[ipaddress.ip_network(group.address)] = None
        self.routing.set_routes(wanted)

    async def reload(self) -> str:
        """Re-read the configuration file and certificates; all or nothing.

        The reading and validating runs on a worker thread, so packets keep flowing meanwhile
        (10,000 certificates take seconds to validate the first time); only applying the
        difference to the running engine happens on the event loop."""
        if self.reloading is None:
            self.reloading = asyncio.Lock()
        async with self.reloading:  # a SIGHUP and a skipctl reload: one after the other
            return await self._reload()

    async def _reload(self) -> str:
        loop = asyncio.get_running_loop()
        try:
            new = await loop.run_in_executor(self.reloader, load_config, self.config.path)
            if new == parse_config("", new.path):
                # every setting at its default: most likely a file truncated by an editor
                # or a failed copy, not an operator who wants every rule gone
                raise ConfigError("config_invalid", f"{new.path}: the file is empty; a reload "
                                  "would drop every rule (kept the running configuration)")
            changed = [k for k in _RESTART_ONLY
                       if getattr(new.daemon, k) != getattr(self.config.daemon, k)]
            if changed:
                key = changed[0]
                raise ConfigError("config_invalid", f"{new.path}: daemon.{key}: the file says "
                                  f"{_shown(getattr(new.daemon, key))}, skipd runs with "
                                  f"{_shown(getattr(self.config.daemon, key))}; changing it "
                                  "needs a restart (kept the running configuration)")
            if not self.ipv6 and (uses := ipv6_uses(new)):
                raise ConfigError("config_invalid", f"{new.path}: {uses[0]} needs IPv6; skipd "
                                  "runs IPv4-only as IPv6 was unavailable at start")
            if self.engine is not None:
                plan = await loop.run_in_executor(self.reloader, self.engine.prepare, new,
                                                  time.time())
                self.engine.commit(plan, time.time())
            elif any(r.action == "protect" for r in (new.default, *new.peers)):
                self.engine = self.engine_factory(new, time.time())
        except SkipError as exc:
            logs.LOGGER.warning("reload refused, old configuration kept",
                                extra=logs.fields(reason=exc.reason, error=str(exc)))
            raise
        self.config = new
        self.policy = PolicyTable(new)
        self.routes.clear(new.daemon.key_management_port, bool(new.groups))
        self.wire_limit = _wire_limit(new)
        self.limits.clear()
        self.stats = {k: v for k, v in self.stats.items() if k in self.policy.by_label
                      or k == "default"}
        try:
            await self._netlink(self._install_routes)
        except SkipError as exc:  # the kernel's part cannot be all or nothing: say so
            logs.LOGGER.error("configuration reloaded, but the kernel refused a route",
                              extra=logs.fields(reason=exc.reason, error=exc.detail))
            raise
        if self.serving:
            self._refresh_paths()  # other peers, other overhead, another underlay_mtu
            self._filter_receivers()
            self._ensure_discovery()
            self._ensure_groups()
            self._arm_timer()  # other peers, other certificate expiries
            self._warm_soon()
        logs.LOGGER.info("configuration reloaded", extra=logs.fields(peers=len(new.peers)))
        return f"reloaded {new.path}: {plural(len(new.peers), 'peer')}"

    def _sighup(self) -> None:
        self.background.add(task := asyncio.get_running_loop().create_task(self._reload_quietly()))
        task.add_done_callback(self.background.discard)

    async def _reload_quietly(self) -> None:
        try:
            await self.reload()
        except SkipError:
            pass  # logged by reload(); the old configuration stays
        except Exception as exc:  # a bug: into the log with its traceback, skipd runs on
            logs.LOGGER.error("unexpected error during reload", exc_info=exc,
                              extra=logs.fields(reason="internal_error"))

    # --- data plane -------------------------------------------------------------------------

    def _drop(self, reason: str, message: str, counted: bool = False, **values: object) -> None:
        """Count (unless the keying engine already ``counted`` it: its counters are merged
        into :meth:`counters`) and log, rate limited."""
        if not counted:
            self.drops[reason] += 1
        self.droplog.drop(reason, message, **values)

    def _new_stats(self, rule: PeerPolicy) -> PeerStats:
        """The rule's statistics, made on its first packet (the per-packet path looks them up
        inline and comes here once per rule)."""
        stats = self.stats[rule.name] = PeerStats()
        return stats

    def _on_tun(self) -> None:
        """A batch from the TUN device. A datagram with a route (skip/daemon/fastpath.py)
        is protected here under its current Kp; any other, or one whose route has no Kp
        now, or one the steady sender refuses, takes :meth:`outbound` (which says why).
        With the compiled core, :meth:`_pump_tun` runs the steady state in C instead."""
        assert self.tun is not None
        now = time.time()  # one clock reading per batch: a batch takes well under a second
        if self.pump_fds is not None:
            self._pump_tun(now, *self.pump_fds)
            return
        read, one = self.tun.read, self._from_tun
        for _ in range(_BATCH):
            try:
                packet = read()
            except SkipError as exc:
                self._fail(exc)
                return
            if packet is None:
                return
            one(packet, now)

    def _from_tun(self, packet: bytes, now: float) -> None:
        try:
            route = self.routes.send_route(packet)
            if route is not None:
                try:
                    wire = route.protect(packet, now)
                except SkipError:
                    wire = None  # the general path refuses it again, and counts it
                if wire is not None:
                    self._transmit(packet, wire, route.rule, route.stats, now)
                    return
            self.outbound(packet, now)
        except Exception as exc:  # any bug: one packet lost, see _bug
            self._bug(exc)

    def _pump_tun(self, now: float, tun_fd: int, sock_fd: int) -> None:
        """The batch through the compiled send loop (``skip._native.pump_out``): it reads
        the TUN device and sends every datagram whose route has a live Kp with a compiled
        lane, and hands back, unchanged, the first one it does not (the key-management
        port, a Kp to make, a path limit to learn or exceeded, options...), which
        :meth:`_from_tun` takes as it takes every datagram without the loop."""
        assert native.core is not None and self.tun is not None
        pump, routes, budget = native.core.pump_out, self.routes, _BATCH
        while budget > 0:
            try:
                taken, left = pump(tun_fd, sock_fd, routes.sends, self.limits, routes.kmp_port,
                                   self.traffic, now, budget)
            except OSError as exc:
                self._fail(from_os_error(f"TUN device {self.tun.name} failed (deleted?)", exc))
                return
            except Exception as exc:  # any bug: the packet in hand lost, see _bug
                self._bug(exc)
                return
            budget -= taken
            if left is None:
                return
            if type(left) is bytes:
                self._from_tun(left, now)
            else:  # the socket refused a protected datagram: what _send does about it
                packet, wire, route, code = left
                self._send_failed(OSError(code, os.strerror(code)), wire, route.rule, packet)

    def _fail(self, exc: SkipError) -> None:
        """Stop on an error skipd cannot serve past (its TUN device went away, and the routes
        with it): one log line, then a clean stop and a non-zero exit, so that a supervisor
        restarts it (systemd: Restart=on-failure)."""
        assert self.tun is not None and self.stopping is not None
        asyncio.get_running_loop().remove_reader(self.tun.fileno())
        logs.LOGGER.error("stopping", extra=logs.fields(reason=exc.reason, error=exc.detail))
        self.failure = exc
        self.stopping.set()

    def _bug(self, exc: Exception) -> None:
        """A bug on one packet must cost that packet, not the daemon (and not the loop's
        reader): the batch loops catch everything around each packet (inline, not through a
        wrapper call per packet) and hand it here to be counted and logged with its traceback
        (rate limited like every drop)."""
        self.drops["internal_error"] += 1
        if self.droplog.allow("internal_error") is not None:
            logs.LOGGER.error("unexpected error while handling a packet", exc_info=exc,
                              extra=logs.fields(reason="internal_error"))

    def outbound(self, packet: bytes, now: float) -> None:
        try:
            info = summarize(packet)
        except SkipError as exc:
            self._drop(exc.reason, "malformed packet from the TUN device")
            return
        if self.groups is not None and (group := self.groups.traffic(info.dst)) is not None:
            self._group_out(group, packet, now)
            return
        decision = self.policy.outbound(info)
        rule = decision.rule
        if decision.action == "deny":
            self._drop("policy_deny", "outbound packet denied", peer=rule.name,
                       dst=logs.Deferred(ipaddress.ip_address, info.dst), matched=decision.matched)
            return
        if decision.action == "allow-cleartext":
            self.traffic["cleartext_out"] += 1
            self._send(packet, None)
            return
        if self.engine is None:
            self._drop("config_invalid", "protect rule without a keying engine", peer=rule.name)
            return
        try:
            wire = self.engine.protect(packet, now, rule)
        except SkipError as exc:
            self._drop(exc.reason, "protect failed", counted=True, peer=rule.name,
                       dst=logs.Deferred(ipaddress.ip_address, info.dst))
            return
        finally:
            self._drain_events()
        if wire is None:
            self.traffic["queued_for_certificate"] += 1
            return
        stats = self.stats.get(rule.name) or self._new_stats(rule)
        self.routes.learn_send(info.dst, rule, stats, self.engine.steady_sender(rule),
                               self.engine.steady_lane(rule) if self.pump_fds else None)
        self._transmit(packet, wire, rule, stats, now)

    def _transmit(self, packet: bytes, wire: bytes, rule: PeerPolicy, stats: PeerStats,
                  now: float) -> None:
        """Send ``wire``, ``packet`` protected for ``rule``, if it fits the underlay."""
        dst = wire[16:20] if wire[0] >> 4 == 4 else wire[24:40]
        limit = self.limits.get(dst) or self._learn_limit(dst)
        if len(wire) > limit:
            self._too_big(packet, len(wire), limit, rule)
            return
        if self._send(wire, rule, packet):
            stats.packets_out += 1
            stats.bytes_out += len(packet)
            stats.last_packet = now
            self.traffic["protected_out"] += 1

    def _too_big(self, packet: bytes, wire: int, limit: int, rule: PeerPolicy) -> None:
        """``packet`` became ``wire`` bytes, over ``limit``. The MTU the ICMP names is what
        fits for this packet, or less: the rule's worst-case overhead (ESP padding varies
        with the length), the same figure the TUN MTU is made from, so one answer suffices."""
        mtu = len(packet) - (wire - limit)
        if self.engine is not None:
            mtu = min(mtu, limit - self.engine.overhead(rule))  # limit: less UDP already
        self._drop("packet_too_big", "packet too big once protected", peer=rule.name, mtu=mtu)
        if mtu < self.mtu:  # the TUN device is wider than this path: let it follow soon
            self._refresh_soon()
        info = summarize(packet)
        if self.tun is not None:
            self.tun.write(too_big(packet, max(mtu, 576 if info.version == 4 else 1280),
                                   self._reporter(info)))

    @staticmethod
    def _reporter(info: Summary) -> IPAddress:
        """Source of skipd's ICMP errors. Not an address of this host: the kernel would take
        an error "from itself" arriving on the TUN device for a spoof and drop it. IPv4 has
        the dummy address for exactly this case (RFC 7600); for IPv6 the error speaks for the
        destination whose path is too narrow."""
        return _DUMMY_V4 if info.version == 4 else info.destination

    def _send(self, datagram: bytes, rule: PeerPolicy | None, inner: bytes | None = None
              ) -> bool:
        """Cleartext (``rule`` None) goes out raw; SKIP over UDP goes where the peer was last
        authenticated from (its NAT mapping), else to its configured port. ``inner``: the
        cleartext ``datagram`` protects, owed an ICMP "too big" if the kernel refuses the
        size (see :meth:`_path_shrank`)."""
        try:
            if self.udp is not None and rule is not None:
                self.udp.send(datagram, self.udp_peers.get(rule.name), rule.udp_port)
            else:
                assert self.sender is not None
                self.sender.send(datagram)
        except OSError as exc:
            self._send_failed(exc, datagram, rule, inner)
            return False
        return True

    def _send_failed(self, exc: OSError, datagram: bytes, rule: PeerPolicy | None,
                     inner: bytes | None) -> None:
        if exc.errno == errno.EMSGSIZE and self._path_shrank(datagram, inner, rule):
            return
        self._drop("io_error", "send failed", error=exc.strerror or str(exc))

    def _path_shrank(self, datagram: bytes, inner: bytes | None, rule: PeerPolicy | None
                     ) -> bool:
        """EMSGSIZE: the route toward the peer is narrower than skipd knew (a link's MTU went
        down under it). Ask the kernel again; if the datagram is indeed too big, answer the
        cleartext's sender with ICMP so its path-MTU discovery works through the tunnel
        (rather than a silent loss that stalls TCP), and let the TUN MTU follow. False when
        the size was not the problem after all (counted as ``io_error`` by the caller)."""
        dst = datagram[16:20] if datagram[0] >> 4 == 4 else datagram[24:40]
        old = self.limits.pop(dst, None)
        limit = self._learn_limit(dst)
        if len(datagram) <= limit:
            return False
        if limit != old:  # the first packet to find out; the ones after it are caught above
            logs.LOGGER.info("underlay path MTU is smaller than assumed", extra=logs.fields(
                dst=str(ipaddress.ip_address(dst)), limit=limit, was=old))
        if inner is None or rule is None:  # skipd's own packet (SKIP ICMP): nobody to tell
            self._drop("packet_too_big", "own packet too big for the underlay", mtu=limit)
            return True
        self._too_big(inner, len(datagram), limit, rule)
        return True

    def _on_wire(self, source: RawReceiver | UdpTransport, batch: int = _BATCH) -> None:
        """Up to ``batch`` datagrams from ``source``, and with a smaller batch (the kernel
        filter's second lane) one more for each datagram delivered, up to _BATCH: garbage
        there still costs at most ``batch`` reads a wake-up, while a new Kp's first packets,
        which wait there until the first lane follows, drain as fast as the first lane
        (else they fall behind the replay window as ``replay_too_old``)."""
        udp = source if isinstance(source, UdpTransport) else None
        now = time.time()  # per batch, as _on_tun
        lane = None
        if self.pump_fds is not None and self.engine is not None and \
                isinstance(source, RawReceiver) and source.family == socket.AF_INET:
            lane = self.engine.receive_lane()
        traffic = self.traffic
        first, reads, limit = traffic["protected_in"], 0, batch
        while reads < limit:
            if lane is not None:
                assert isinstance(source, RawReceiver)
                taken, more = self._pump_wire(source, lane, limit - reads, now)
                reads += taken
                if not more:
                    break
            else:
                try:
                    datagram = source.read()
                except OSError as exc:  # a socket reports an error once: count it, read on
                    self._drop("io_error", "receive failed", error=exc.strerror or str(exc))
                    break
                if datagram is None:
                    break
                reads += 1
                try:
                    self.inbound(datagram, now, udp.last_source if udp is not None else None)
                except Exception as exc:  # any bug: one packet lost, see _bug
                    self._bug(exc)
            if batch < _BATCH:
                limit = min(_BATCH, batch + traffic["protected_in"] - first)
        self._follow_live_keys()

    def _pump_wire(self, source: RawReceiver, lane: object, budget: int, now: float
                   ) -> tuple[int, bool]:
        """Raw IPv4 datagrams through the compiled receive loop (``skip._native.pump_in``):
        it delivers every datagram under a cached Kp from a source with a receive route and
        hands back, before its replay window moves, the first one it does not, which
        :meth:`inbound` takes as it takes every datagram without the loop. Returns how many
        were read, and whether the socket may hold more."""
        assert native.core is not None and self.pump_fds is not None
        try:
            taken, left = native.core.pump_in(
                source.fileno(), self.pump_fds[0], lane, self.routes.receives, self.routes.gik,
                self.groups is not None, self.traffic, now, budget)
        except OSError as exc:  # a socket reports an error once: count it, read on
            self._drop("io_error", "receive failed", error=exc.strerror or str(exc))
            return 0, False
        except Exception as exc:  # any bug: the datagram in hand lost, see _bug
            self._bug(exc)
            return 0, False
        if left is None:
            return taken, taken == budget
        if left is True:
            self._drop("io_error", "TUN queue full")
        else:
            try:
                self.inbound(left, now)
            except Exception as exc:  # any bug: one packet lost, see _bug
                self._bug(exc)
        return taken, True

    def inbound(self, datagram: bytes, now: float, via: tuple[str, int] | None = None) -> None:
        """``via``: the UDP source it came from (SKIP-in-UDP), learned once authenticated."""
        if self.groups is not None and is_multicast(_destination(datagram)):
            self._group_in(datagram, now)
            return
        if self.engine is None:
            self._drop("unknown_mkid", "SKIP packet but no protect rule is configured")
            return
        try:
            result = self.engine.unprotect(datagram, now)
        except SkipError as exc:
            self._drop(exc.reason, "inbound SKIP packet dropped", counted=True,
                       src=logs.Deferred(_source, datagram))
            return
        finally:
            self._drain_events()
        if result is not None and self.deliver(result, now) and via is not None:
            known = self.udp_peers.get(result.peer)
            # an endpoint moves only on the peer's newest packet (as WireGuard's): a replay
            # that got through (or a late packet) from elsewhere must not steer our traffic
            if known != via and (known is None or self.engine.is_newest(datagram)):
                self.udp_peers[result.peer] = via

    def deliver(self, result: Inbound, now: float) -> bool:
        """Policy for an authenticated packet, then hand it to the kernel; a datagram
        from a source this peer was allowed before takes its route (fastpath.py)."""
        assert self.tun is not None
        packet = result.packet
        route = self.routes.receive_route(packet, result.peer, result.version)
        if route is not None:
            return self._hand_over(packet, route.stats, now)
        try:
            info = summarize(result.packet)
        except SkipError as exc:
            self._drop(exc.reason, "malformed inner packet", peer=result.peer)
            return False
        decision = self.policy.inbound(info, result.peer)
        rule = decision.rule
        if decision.action != "protect":
            self._drop("policy_deny", "protected packet for a rule that does not protect",
                       peer=rule.name, src=logs.Deferred(ipaddress.ip_address, info.src))
            return False
        if self.groups is not None and info.protocol == 17 and info.dport == GIK_PORT and \
                info.sport is not None and \
                any(i.ip.packed == info.dst for i in self.config.daemon.addresses):
            # a GIK message to us, authenticated as the peer's (docs/multicast.md)
            self.groups.gik(result.packet[_udp_payload(result.packet):], result.peer,
                            info.src, info.sport, now)
            self._arm_timer()
            return True
        if not self.policy.authorised(decision, result.peer):
            self._drop("inner_source_mismatch", "peer sent an inner address it does not own",
                       peer=result.peer, src=logs.Deferred(ipaddress.ip_address, info.src),
                       rule=rule.name)
            return False
        if (result.version == 1) != (rule.profile == "legacy"):
            self._drop("legacy_refused" if result.version == 1 else "unsupported_algorithm",
                       "SKIP version does not match the rule's profile", peer=rule.name,
                       version=result.version)
            return False
        stats = self.stats.get(rule.name) or self._new_stats(rule)
        if not self._hand_over(packet, stats, now):
            return False
        self.routes.learn_receive(info.src, result.peer, result.version, stats)
        return True

    def _hand_over(self, packet: bytes, stats: PeerStats, now: float) -> bool:
        """Write an accepted cleartext datagram to the TUN device and count it."""
        assert self.tun is not None
        if not self.tun.write(packet):
            self._drop("io_error", "TUN queue full")
            return False
        stats.packets_in += 1
        stats.bytes_in += len(packet)
        stats.last_packet = now
        self.traffic["protected_in"] += 1
        return True

    def _warm_soon(self) -> None:
        if self.warming is None and self.engine is not None:
            self.warming = asyncio.get_running_loop().call_soon(self._warm)

    def _warm(self) -> None:
        """Master keys for the configured peers ahead of their first packet (a first
        contact then costs symmetric work only), in slices of at most WARM_SLICE seconds
        so that the packets flowing meanwhile wait no longer than that."""
        self.warming = None
        if self.engine is None:
            return
        deadline = time.monotonic() + WARM_SLICE
        try:
            while self.engine.precompute(1):
                if time.monotonic() >= deadline:
                    self._warm_soon()
                    return
        except Exception as exc:  # any bug: logged with its traceback, skipd runs on
            self._bug(exc)

    def _arm_timer(self) -> None:
        """(Re)schedule the engine's one timer at the time it names (``get_timer``)."""
        if self.keying_timer is not None:
            self.keying_timer.cancel()
            self.keying_timer = None
        if self.engine is None or not self.serving:
            return
        when = self.engine.get_timer()
        if self.discovery is not None:
            when = min(when, self.discovery.get_timer() or when)
        if self.groups is not None:
            when = min(when, self.groups.next_timer() or when)
        delay = max(0.0, when - time.time())
        self.keying_timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self.keying_timer = None
        if self.engine is not None:
            now = time.time()
            self.engine.handle_timer(now)
            if self.discovery is not None:
                self.discovery.handle_timer(now)
            if self.groups is not None:
                self.groups.on_timer(now)
            self._drain_events()
            self._follow_live_keys()  # Kps retired by time
        self._arm_timer()

    def _filter_receivers(self, keys_only: bool = False) -> None:
        """The kernel filter on the raw receivers (skip/daemon/kernel_filter.py): only
        known outer addresses and groups, so a flood from elsewhere dies before the queue,
        and the known peers' live Kps in a lane of their own, so a flood that spoofs a
        known address does not starve them. Again whenever the receive Kps change."""
        engine = self.engine
        for version, lanes in self.lanes.items():
            networks = self.filtered[version] if keys_only else \
                kernel_filter.outer_networks(self.config, version)
            groups = kernel_filter.group_addresses(self.config, version)
            generation = engine.rx_generation() if engine is not None else 0
            keys = engine.live_keys(kernel_filter.capacity(networks, groups, version == 6)) \
                if engine is not None else []
            try:
                lanes.apply(networks, keys, generation, time.monotonic(), groups)
            except OSError as exc:
                # the second lane may now admit what the first does too: such packets are
                # read twice (a copy refused as a replay), better than unread
                logs.LOGGER.warning("kernel filter not attached; every protocol-57 packet "
                                    "reaches skipd", extra=logs.fields(
                                        error=exc.strerror, ip_version=version))
                networks = None
                lanes.two = False
                kernel_filter.detach(lanes.first)
                with contextlib.suppress(OSError):
                    kernel_filter.attach(lanes.second, kernel_filter.DROP_ALL)
            self.filtered[version] = networks  # skipctl status shows it

    def _follow_live_keys(self) -> None:
        """After a batch: when the receive Kps changed (a peer's new Kp, a retired one), or
        their numbers moved and LANE_REFRESH passed, the first lanes follow, FOLLOW_DELAY
        later. Not at once: attaching the four filters takes 0.1 to 0.3 ms, and the answer
        to the datagram just delivered (a ping's reply, a TCP ACK) is usually already
        waiting on the TUN device; done inline it doubled a steady ping's round trip."""
        engine = self.engine
        if engine is None or self.following is not None:
            return
        try:
            for version, lanes in self.lanes.items():
                if self.filtered[version] is None:
                    continue
                if engine.rx_generation() != lanes.generation or (
                        time.monotonic() - lanes.applied >= kernel_filter.LANE_REFRESH and
                        lanes.two and engine.live_keys(len(lanes.keys)) != lanes.keys):
                    self.following = asyncio.get_running_loop().call_later(
                        FOLLOW_DELAY, self._follow_now)
                    return
        except Exception as exc:  # any bug: logged with its traceback, skipd runs on
            self._bug(exc)

    def _follow_now(self) -> None:
        self.following = None
        try:
            self._filter_receivers(keys_only=True)
        except Exception as exc:  # any bug: logged with its traceback, skipd runs on
            self._bug(exc)

    # --- multicast groups (docs/multicast.md) ------------------------------------------------

    def _ensure_groups(self) -> None:
        now = time.time()
        if not self.config.groups:
            if self.groups is not None:
                self.groups.configure(self.config, now)
            return
        if self.groups is None:
            assert self.tun is not None
            from skip.daemon.groups import Groups, GroupUnderlay

            self.rekeys = GroupUnderlay(self.config.daemon.fwmark, self.tun.name,
                                        ipv6=self.ipv6)
            for sock in self.rekeys.sockets():
                asyncio.get_running_loop().add_reader(sock.fileno(), self._on_rekey, sock)
            self.groups = Groups(self.config, now, lambda d: self.outbound(d, time.time()),
                                 self.rekeys.send, self._drop, self._count_gik)
        else:
            self.groups.configure(self.config, now)
        assert self.rekeys is not None
        self.rekeys.join([g.address.packed for g in self.config.groups])
        self.groups.log_traffic_keys_insecurely(self.engine.key_log if self.engine else None)

    def _count_gik(self, kind: str) -> None:
        self.traffic[kind] += 1

    def _on_rekey(self, sock: socket.socket) -> None:
        assert self.rekeys is not None and self.groups is not None
        while (payload := self.rekeys.read(sock)) is not None:
            try:
                self.groups.rekey(payload, time.time())
            except Exception as exc:  # any bug: logged with its traceback, skipd runs on
                self._bug(exc)
        self._arm_timer()

    def _group_out(self, group: GroupTraffic, packet: bytes, now: float) -> None:
        try:
            wire = group.protect(packet, now)
        except SkipError as exc:
            self._drop(exc.reason, "multicast packet not protected",
                       group=str(ipaddress.ip_address(group.params.group)))
            return
        if wire[0] >> 4 == 6:  # out of each LAN interface by name (GroupUnderlay)
            assert self.rekeys is not None
            if self.rekeys.send_data(wire):
                self.traffic["group_out"] += 1
            else:
                self._drop("io_error", "multicast send failed on every interface",
                           group=str(ipaddress.ip_address(group.params.group)))
        elif self._send(wire, None):
            self.traffic["group_out"] += 1

    def _group_in(self, datagram: bytes, now: float) -> None:
        assert self.groups is not None and self.tun is not None
        group = self.groups.traffic(_destination(datagram))
        if any(i.ip.packed == (datagram[12:16] if datagram[0] >> 4 == 4 else datagram[8:24])
               for i in self.config.daemon.addresses):
            return  # our own packet, looped back by the kernel's multicast delivery
        if group is None:
            self._drop("group_unknown", "multicast SKIP packet for a group not configured")
            return
        try:
            inner = group.unprotect(datagram, now)
        except SkipError as exc:
            self._drop(exc.reason, "multicast SKIP packet dropped",
                       src=logs.Deferred(_source, datagram))
            if exc.reason in ("group_expired", "group_epoch_unknown"):
                self.groups.unreadable(_destination(datagram), now)  # a missed rekey?
                self._arm_timer()
            return
        if self.tun.write(inner):
            self.traffic["group_in"] += 1

    def _ensure_discovery(self) -> None:
        """CDP and the DNS once an engine exists and the configuration asks for them
        (docs/discovery.md)."""
        cfg = self.config.daemon
        if self.discovery is not None:
            self.discovery.reconfigure(self.config)
        else:
            pfs = any(rule.pfs != "off" for rule in self.config.peers)
            if self.engine is None or (not cfg.discovery and not pfs):
                return
            from skip.daemon.discovery import Discovery

            self.discovery = Discovery(self.config, self.engine, ipv6=self.ipv6)
            self.discovery.pfs = self.engine.pfs_receive  # the exchange shares the CDP sockets
        if self.discovery.dns is not None:
            self.discovery.dns.wake = self._on_discovery
        loop = asyncio.get_running_loop()
        for fd, handler in self.discovery.readers():  # a reload may have added the DNS one
            loop.add_reader(fd, self._on_discovery, handler)

    def _on_discovery(self, handler: Callable[[float], None]) -> None:
        try:
            handler(time.time())
            self._drain_events()  # a learned peer releases its waiting packets
            self._warm_soon()  # and its reply needs no DH on the way back either
        except Exception as exc:  # any bug: logged with its traceback, skipd runs on
            self._bug(exc)
        self._arm_timer()

    def _drain_events(self) -> None:
        assert self.engine is not None
        for event in self.engine.events():
            if isinstance(event, CertificateNeeded | PfsDatagram):
                if isinstance(event, CertificateNeeded):
                    self._unknown_peer(event)
                elif self.discovery is not None:
                    self.discovery.send_pfs(event.payload, event.address, event.reply_to)
                if self.keying_timer is None or self.keying_timer.when() > \
                        asyncio.get_running_loop().time() + 1.0:
                    # a packet now waits, or an exchange will retransmit: that may come first
                    self._arm_timer()
            elif isinstance(event, Transmit):
                if self._send(event.packet, self.config.default):
                    self.traffic[f"sent_{event.why}"] += 1
            elif isinstance(event, Inbound):
                self.deliver(event, time.time())

    def _unknown_peer(self, event: CertificateNeeded) -> None:
        if self.discovery is not None and self.discovery.need(event.name, event.address,
                                                              time.time()):
            return  # the packet waits for the lookup (the engine counts cert_pending)
        self._not_found(event)

    def _not_found(self, event: CertificateNeeded) -> None:
        """Neither the store nor discovery can name the principal's certificate: it is logged
        by its SKIP name and counted (skipctl status lists the last 64)."""
        self.unknown[event.name] = time.time()
        self.unknown.move_to_end(event.name)
        while len(self.unknown) > 64:
            self.unknown.popitem(last=False)
        self._drop("unknown_mkid", "unknown peer: no certificate known or discoverable",
                   name=str(event.name), address=str(event.address))

    # --- control ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        cfg = self.config.daemon
        return {
            "config": str(self.config.path), "pid": os.getpid(),
            "uptime_seconds": round(time.time() - self.started, 1),
            "started": iso_time(self.started),
            "interface": self.tun.name if self.tun else cfg.interface, "mtu": self.mtu,
            "transport": f"udp/{cfg.udp_port}" if cfg.udp_port else "ip/57",
            "engine": native.describe(),  # the compiled core or the pure-Python reference
            # protocol-57 sources the kernel admits (docs/skipd.md, "Under attack")
            "kernel_filter": _sources(self.filtered[4]),
            "kernel_filter_v6": _sources(self.filtered[6]),
            "kernel_lanes": 2 if 4 in self.lanes and self.lanes[4].two else 1,
            "ip_versions": [4, 6] if self.ipv6 else [4],
            "identity": str(self.config.identity.name),
            "peers": len(self.config.peers), "default_action": self.config.default.action,
            "protected_in": self.traffic["protected_in"],
            "protected_out": self.traffic["protected_out"],
            "dropped": sum(self.counters()["drops"].values()),
            "monitors": len(self.monitor.subscribers),  # skipctl monitor clients attached
            # principals heard from without a certificate (most recent last; at most 64)
            "unknown_peers": [{"name": str(name), "seconds_ago": round(time.time() - seen, 1)}
                              for name, seen in self.unknown.items()],
        }

    def peers(self) -> list[dict[str, Any]]:
        now = time.time()
        engine_view: dict[str, dict[str, Any]] = {}
        if self.engine is not None:
            engine_view = {p.get("rule", p.get("name", "")): p for p in self.engine.peers(now)}
        out = []
        for rule in self.config.peers:
            stats = self.stats.get(rule.name, PeerStats())
            # a nomadic peer's address is the engine's to tell (the row's update below): none
            # until the peer is heard from
            address = None if rule.nomadic else \
                rule.tunnel or (rule.hosts[0] if rule.hosts else None)
            row: dict[str, Any] = {
                "name": rule.name, "action": rule.action, "profile": rule.profile,
                "mode": rule.mode, "address": str(address) if address else None,
                "skip_name": str(rule.peer),
                "bytes_in": stats.bytes_in, "bytes_out": stats.bytes_out,
                "packets_in": stats.packets_in, "packets_out": stats.packets_out,
                "last_packet": round(now - stats.last_packet, 1) if stats.last_packet else None,
            }
            row.update({k: v for k, v in engine_view.get(rule.name, {}).items()
                        if k not in ("rule", "name")})
            out.append(row)
        return out

    def totals(self) -> dict[str, Any]:
        """Every count since skipd started (the metrics: a Prometheus counter never goes
        back), drops merged from the daemon's and the engine's."""
        engine = dict(self.engine.counters()) if self.engine else {}
        drops = collections.Counter(self.drops)
        for key, value in engine.items():
            if key in REASONS:
                drops[key] += value
        return {"drops": dict(sorted(drops.items())),
                "traffic": dict(sorted(self.traffic.items())),
                "engine": {k: v for k, v in sorted(engine.items()) if k not in REASONS}}

    def counters(self) -> dict[str, Any]:
        """:meth:`totals` less what they were at the last ``skipctl counters --reset`` (only
        skipctl's view resets; the metrics and the engine keep counting)."""
        totals = self.totals()
        out: dict[str, Any] = {}
        for group, values in totals.items():
            base = self.baseline.get(group, {})
            out[group] = {k: v - base.get(k, 0) for k, v in values.items()
                          if v - base.get(k, 0)}
        out["descriptions"] = {k: REASONS[k] for k in out["drops"] if k in REASONS}
        if self.reset_at is not None:
            out["since"] = iso_time(self.reset_at)
        return out

    def samples(self) -> Iterable[Sample]:
        """The metrics (docs/skipd.md, "Metrics"): every reason code from the start, at 0
        until it happens, so that ``rate()`` and alerts see a series before the first drop."""
        totals = self.totals()
        drops = dict.fromkeys(REASONS, 0) | totals["drops"]
        for reason, value in sorted(drops.items()):
            yield ("skipd_dropped_packets_total", "counter",
                   "packets dropped, by reason code", {"reason": reason}, value)
        for kind, value in totals["traffic"].items():
            yield ("skipd_packets_total", "counter", "packets handled, by kind",
                   {"kind": kind}, value)
        for event, value in totals["engine"].items():
            yield ("skipd_keying_events_total", "counter", "keying engine events (skipctl "
                   "counters, engine part), by event", {"event": event}, value)
        yield from self._discovery_samples()
        for rule in self.config.peers:
            stats = self.stats.get(rule.name) or PeerStats()
            labels = {"peer": rule.name}
            yield ("skipd_peer_received_bytes_total", "counter", "cleartext bytes received "
                   "from a peer", labels, stats.bytes_in)
            yield ("skipd_peer_sent_bytes_total", "counter", "cleartext bytes sent to a peer",
                   labels, stats.bytes_out)
            yield ("skipd_peer_received_packets_total", "counter", "packets received from a "
                   "peer", labels, stats.packets_in)
            yield ("skipd_peer_sent_packets_total", "counter", "packets sent to a peer",
                   labels, stats.packets_out)
        yield ("skipd_peers", "gauge", "configured [[peer]] rules", {}, len(self.config.peers))
        yield ("skipd_start_time_seconds", "gauge", "when skipd started, in seconds since "
               "the epoch", {}, self.started)
        yield ("skipd_build_info", "info", "skipd's version", {"version": __version__}, 1)

    def _discovery_samples(self) -> Iterable[Sample]:
        if self.discovery is None or self.engine is None:
            return
        status = self.discovery.status()
        for event, value in status["counters"].items():
            yield ("skipd_discovery_events_total", "counter", "certificate discovery events "
                   "(skipctl discovery), by event", {"event": event}, value)
        yield ("skipd_discovery_in_flight", "gauge", "certificate lookups in flight", {},
               len(status["in_flight"]))
        cache = self.engine.learned_status().get("cache", {})
        yield ("skipd_discovery_learned", "gauge", "discovered certificates held", {},
               cache.get("entries", 0))
        yield ("skipd_discovery_evicted_total", "counter", "discovered certificates forgotten "
               "to stay within daemon.discovery_cache", {}, cache.get("evicted", 0))

    def certificates(self) -> dict[str, Any]:
        """``skipctl certs``: our certificate and the one in use for each protecting rule,
        with names and validity (times ISO 8601, and seconds left)."""
        now = time.time()
        ident = self.config.identity
        own: dict[str, Any] | None = None
        if ident.certificate is not None:
            try:
                own = describe_certificate(load_certificate(read_bounded(ident.certificate)), now)
                own["file"] = str(ident.certificate)
            except (OSError, SkipError) as exc:
                own = {"file": str(ident.certificate), "error": str(exc)}
        in_use = self.engine.certificates_in_use(now) \
            if isinstance(self.engine, SkipKeying) else {}
        peers = []
        for rule in self.config.peers:
            if rule.action != "protect":
                continue
            row: dict[str, Any] = {"peer": rule.name, "skip_name": str(rule.peer)}
            row.update(in_use.get(rule.name) or {"certificate": None})
            peers.append(row)
        return {"own": own, "peers": peers}

    async def _cmd_status(self, _req: dict[str, Any]) -> Any:
        return self.status()

    async def _cmd_peers(self, _req: dict[str, Any]) -> Any:
        return self.peers()

    async def _cmd_counters(self, req: dict[str, Any]) -> Any:
        """``{"reset": true}``: the reply has the counts up to now, then they start again
        from 0 (for skipctl only: :meth:`totals` and the metrics go on counting)."""
        shown = self.counters()
        if req.get("reset") is True:
            totals = self.totals()
            self.baseline = {k: v for k, v in totals.items() if isinstance(v, dict)}
            self.reset_at = time.time()
            logs.LOGGER.info("counters reset (skipctl view; metrics keep counting)")
        return shown

    async def _cmd_certs(self, _req: dict[str, Any]) -> Any:
        return self.certificates()

    def _stream_monitor(self, _req: dict[str, Any]) -> AsyncGenerator[dict[str, object], None]:
        return self.monitor.stream()

    async def _cmd_flush(self, _req: dict[str, Any]) -> Any:
        flushed = self.engine.flush(time.time()) if self.engine else 0
        logs.LOGGER.info("key caches flushed", extra=logs.fields(entries=flushed))
        return {"flushed": flushed}

    async def _cmd_reload(self, _req: dict[str, Any]) -> Any:
        return {"message": await self.reload()}

    async def _cmd_discovery(self, _req: dict[str, Any]) -> Any:
        if self.discovery is None:
            return {"enabled": False}
        learned = self.engine.learned_status() if self.engine is not None else {"learned": []}
        return {"enabled": True, **self.discovery.status(), **learned}

    async def _cmd_groups(self, _req: dict[str, Any]) -> Any:
        return self.groups.status(time.time()) if self.groups is not None else []

    async def _cmd_group(self, req: dict[str, Any]) -> Any:
        """``{"action": "evict"|"add", "group": ADDRESS, "member": RULE}``."""
        action, group, member = req.get("action"), req.get("group"), req.get("member")
        if self.groups is None or not isinstance(group, str) or not isinstance(member, str) \
                or action not in ("evict", "add"):
            raise ConfigError("config_invalid", "group: action evict|add, a group address "
                              "this skipd owns, and a member")
        now = time.time()
        done = (self.groups.evict if action == "evict" else self.groups.add)(group, member, now)
        logs.LOGGER.info(f"group member {action}ed", extra=logs.fields(**done))
        self._arm_timer()
        return done

    async def _cmd_stop(self, _req: dict[str, Any]) -> Any:
        assert self.stopping is not None
        asyncio.get_running_loop().call_soon(self.stopping.set)
        return {"message": "stopping"}


def cleanup(config: Config) -> str:
    """``skipd --cleanup``: remove the rules and blocks a stopped skipd left (fail closed), on
    purpose. Refused with ``in_use`` while a skipd runs on this control socket: taking its
    rule away would send what it protects to the main table, in clear."""
    cfg = config.daemon
    control = ControlServer(cfg.control_socket, {})
    control.claim()
    try:
        rules, routes = Routing(cfg.interface, cfg.fwmark, cfg.table,
                                cfg.rule_priority).cleanup()
    finally:
        assert control.lock is not None
        os.close(control.lock)
    if not rules and not routes:
        return f"nothing to remove: no rule for table {cfg.table} and no blocking route in it"
    return (f"removed {rules} policy rule(s) (not fwmark {cfg.fwmark:#x} lookup {cfg.table}) "
            f"and {routes} blocking route(s) from table {cfg.table} (and the local table, for "
            "IPv6 groups): the destinations skipd "
            "protected now follow the main table, in clear")


def _sources(networks: list[Any] | None) -> str:
    return "off" if networks is None else plural(len(networks), "source")


def _shown(value: object) -> str:
    return "unset (off)" if value is None else str(value)


def _wire_limit(config: Config) -> int:
    """The largest protected datagram the underlay takes (SKIP-in-UDP: less the outer IPv6
    and UDP headers); the per-packet path compares against it, made once per configuration."""
    return config.daemon.underlay_mtu - (48 if config.daemon.udp_port else 0)


def _destination(datagram: bytes) -> bytes:
    return datagram[16:20] if datagram[0] >> 4 == 4 else datagram[24:40]


def _udp_payload(packet: bytes) -> int:
    """Where the UDP payload of an option-free IPv4 or plain IPv6 datagram starts."""
    return (packet[0] & 0x0F) * 4 + 8 if packet[0] >> 4 == 4 else 48


def _source(datagram: bytes) -> str:
    try:
        return str(summarize(datagram).source)
    except SkipError:
        return "?"


def plural(count: int, noun: str) -> str:
    """"1 peer", "2 peers"."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def notify_ready(status: str) -> bool:
    """sd_notify(3) ``READY=1`` for systemd's ``Type=notify``: one datagram to the socket in
    ``$NOTIFY_SOCKET`` (a path, or ``@`` for the abstract namespace), no library needed.
    False when not run by systemd or the socket cannot be reached (start-up goes on: a
    missing readiness message is systemd's timeout to report, not a reason to stop)."""
    target = os.environ.get("NOTIFY_SOCKET")
    if not target or target[0] not in "/@":
        return False
    address = "\0" + target[1:] if target[0] == "@" else target
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(f"READY=1\nSTATUS={status}\nMAINPID={os.getpid()}\n".encode())
    except OSError as exc:
        logs.LOGGER.warning("cannot tell systemd skipd is ready", extra=logs.fields(
            reason="io_error", socket=target, error=exc.strerror or str(exc)))
        return False
    return True
