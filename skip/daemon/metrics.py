"""Prometheus metrics on a local TCP address, rendered by prometheus_client.

The exposition text is prometheus_client's (text 0.0.4, or OpenMetrics when the scraper asks
for it), not hand formatted: an earlier ``{value:g}`` rounded every counter past 10^6 to six
digits, and ``rate()`` over a rounded counter is wrong. The numbers are the ones ``skipctl
counters`` shows, read at scrape time from the daemon (a custom collector, so the per-packet
path keeps counting in plain ``Counter`` objects and pays nothing for metrics).

The HTTP side stays a small asyncio responder on skipd's own loop rather than
prometheus_client's threaded server: one fixed document, at most one request head, then close.
Process metrics (CPU, memory, descriptors, start time) come from prometheus_client's
ProcessCollector, and the Python runtime from its PlatformCollector.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from skip.daemon.system_errors import from_os_error

#: name, type ("counter", "gauge" or "info"), help, labels, value. A counter's name ends in
#: ``_total`` as exposed; an info's value is its labels (the number is ignored).
Sample = tuple[str, str, str, dict[str, str], int | float]


def families(samples: Iterable[Sample]) -> Iterator[Metric]:
    """prometheus_client metric families from ``samples``, one family per name, in order."""
    made: dict[str, Metric] = {}
    for name, kind, text, labels, value in samples:
        family = made.get(name)
        keys = sorted(labels)
        if family is None:
            if kind == "counter":
                family = CounterMetricFamily(name.removesuffix("_total"), text, labels=keys)
            elif kind == "info":
                family = InfoMetricFamily(name.removesuffix("_info"), text, labels=[])
            else:
                family = GaugeMetricFamily(name, text, labels=keys)
            made[name] = family
        if isinstance(family, InfoMetricFamily):
            family.add_metric([], labels)
        elif isinstance(family, CounterMetricFamily | GaugeMetricFamily):
            family.add_metric([labels[k] for k in keys], value)
    yield from made.values()


class _Daemon(Collector):
    """Reads the daemon's samples at every scrape."""

    def __init__(self, collect: Callable[[], Iterable[Sample]]) -> None:
        self.read = collect

    def collect(self) -> Iterable[Metric]:
        return list(families(self.read()))


def registry(collect: Callable[[], Iterable[Sample]]) -> CollectorRegistry:
    """skipd's own registry (not the process-global default one: tests and a second daemon in
    one interpreter must not see each other's metrics)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Daemon(collect))
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    return reg


class MetricsServer:
    def __init__(self, host: str, port: int, collect: Callable[[], Iterable[Sample]]) -> None:
        self.host, self.port = host, port
        self.registry = registry(collect)
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        try:
            self.server = await asyncio.start_server(self._client, self.host, self.port)
        except OSError as exc:
            raise from_os_error(f"cannot serve metrics on {self.host}:{self.port}", exc) \
                from None

    def document(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition for a scraper that sent ``accept``, and its content type."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            path = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b""
            accept = ""
            for line in head.split(b"\r\n")[1:]:
                key, _, value = line.partition(b":")
                if key.strip().lower() == b"accept":
                    accept = value.strip().decode("latin-1")
            if path.split(b"?")[0] in (b"/metrics", b"/"):
                body, content_type = self.document(accept)
                status = b"200 OK"
            else:
                body, content_type = b"not found: try /metrics\n", "text/plain"
                status = b"404 Not Found"
            writer.write(b"HTTP/1.0 " + status + b"\r\nContent-Type: " + content_type.encode()
                         + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
                         + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()
