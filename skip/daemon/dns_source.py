"""skipd's DNS certificate source: the UDP socket, the TCP retries and the owner names around
the sans-I/O :class:`~skip.discovery.dns_lookup.DnsRequester` (docs/discovery.md, "Through
the DNS").

A rule's certificate is asked at the rule's ``dns`` name when it has one (DNS-3, DNS-5),
else at the reverse name of the address the SKIP name carries (DNS-1, DNS-2), else under the
configured ``dns_skip_domain`` (DNS-4). Queries leave with skipd's fwmark: like CDP they go
around the tunnel, in cleartext (there are no keys before there are certificates). A
truncated answer is asked again over TCP on a short-lived connection, its answer handed back
through ``wake`` so the runtime drains what it released.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from collections.abc import Callable

import dns.name

from skip.daemon import logs
from skip.daemon.config import DaemonSettings, IPAddress, PeerPolicy
from skip.daemon.sockets import READ_BATCH, DatagramSocket, marked_stream
from skip.discovery.dns_lookup import DNS_PORT, DnsAnswer, DnsRequester
from skip.discovery.dns_names import configured_name, owner_name
from skip.errors import SkipError
from skip.wire.names import SkipName

TCP_SECONDS = 3.0  # one TCP exchange, connect to last byte


class DnsSource:
    def __init__(self, cfg: DaemonSettings, *, ipv6: bool,
                 rng: Callable[[int], bytes] = os.urandom) -> None:
        self.ipv6 = ipv6
        self.mark = cfg.fwmark
        self.requester = DnsRequester(cfg.dns_trust_anchors,
                                      require_dnssec=cfg.dns_requires_dnssec, rng=rng)
        self.configure(cfg)
        self.sock = DatagramSocket(0, cfg.fwmark, ipv6=ipv6, what="DNS client")
        #: the runtime's way back in for a TCP answer: run this handler, then drain
        self.wake: Callable[[Callable[[float], None]], None] | None = None
        #: what takes the finished lookups (Discovery's), run after a TCP answer
        self.settle: Callable[[float], None] = lambda now: None
        self._tasks: set[asyncio.Task[None]] = set()

    def configure(self, cfg: DaemonSettings) -> None:
        self.servers = [(str(a), DNS_PORT) for a in cfg.dns_servers]
        self.skip_domain = cfg.dns_skip_domain
        self.requester.anchors = list(cfg.dns_trust_anchors)
        self.requester.require_dnssec = cfg.dns_requires_dnssec

    def owner(self, rule: PeerPolicy, name: SkipName,
              address: IPAddress | None) -> dns.name.Name | None:
        if rule.dns is not None:
            return configured_name(rule.dns)
        packed = address.packed if address is not None else None
        try:
            return owner_name(name, address=packed, skip_domain=self.skip_domain)
        except SkipError:
            return None

    def lookup(self, rule: PeerPolicy, name: SkipName, address: IPAddress | None,
               now: float) -> bool:
        """Start a lookup; False when the DNS cannot be asked for this name."""
        owner = self.owner(rule, name, address)
        if owner is None:
            self.requester.counters["dns_no_owner_name"] += 1
            return False
        started = self.requester.lookup(name, owner, self.servers, now)
        self.flush()
        return started

    def flush(self) -> None:
        for data, to in self.requester.datagrams_to_send():
            try:
                self.sock.send(data, to)
            except OSError as exc:
                self.requester.counters["io_error"] += 1
                logs.LOGGER.info("DNS query not sent", extra=logs.fields(
                    reason="io_error", to=to[0], error=exc.strerror or str(exc)))
        for data, to in self.requester.tcp_to_send():
            task = asyncio.get_running_loop().create_task(self._tcp(data, to))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _tcp(self, query: bytes, to: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        host = to[0]
        if self.ipv6 and ipaddress.ip_address(host).version == 4:
            host = "::ffff:" + host
        sock = marked_stream(self.ipv6, self.mark)
        try:
            async with asyncio.timeout(TCP_SECONDS):
                await loop.sock_connect(sock, (host, to[1]))
                await loop.sock_sendall(sock, len(query).to_bytes(2, "big") + query)
                size = int.from_bytes(await _read(loop, sock, 2), "big")
                answer = await _read(loop, sock, size)
        except (OSError, TimeoutError, EOFError) as exc:
            self.requester.counters["dns_tcp_failed"] += 1
            logs.LOGGER.info("DNS over TCP failed", extra=logs.fields(
                reason="dns_timeout", to=to[0], error=str(exc) or type(exc).__name__))
            return  # the requester's timer moves on
        finally:
            sock.close()
        if self.wake is not None:
            self.wake(lambda now: self._answer(answer, to, now))

    def _answer(self, data: bytes, source: tuple[str, int], now: float) -> None:
        self.requester.receive_datagram(data, source, now)
        self.flush()
        self.settle(now)

    def on_readable(self, now: float) -> None:
        for _ in range(READ_BATCH):  # a flood of forged answers cannot hold the loop
            if (got := self.sock.read()) is None:
                break
            self.requester.receive_datagram(*got, now)
        self.flush()

    def events(self) -> list[DnsAnswer]:
        return self.requester.events()

    def get_timer(self) -> float | None:
        return self.requester.get_timer()

    def handle_timer(self, now: float) -> None:
        self.requester.handle_timer(now)
        self.flush()

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.sock.close()


async def _read(loop: asyncio.AbstractEventLoop, sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await loop.sock_recv(sock, size - len(data))
        if not chunk:
            raise EOFError("the server closed the connection")
        data += chunk
    return data
