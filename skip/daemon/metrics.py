"""Prometheus text exposition (format 0.0.4) on a local TCP address.

A tiny HTTP/1.0 responder on the asyncio loop rather than a framework: it serves one fixed
document, reads at most one request head, and closes. The document is rendered from the same
counters ``skipctl counters`` shows, so the two never disagree.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable

from skip.daemon.system_errors import from_os_error

Sample = tuple[str, str, str, dict[str, str], float]  # name, type, help, labels, value


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(samples: Iterable[Sample]) -> str:
    lines: list[str] = []
    seen: set[str] = set()
    for name, kind, text, labels, value in samples:
        if name not in seen:
            seen.add(name)
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")
        label = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
        lines.append(f"{name}{{{label}}} {value:g}" if label else f"{name} {value:g}")
    return "\n".join(lines) + "\n"


class MetricsServer:
    def __init__(self, host: str, port: int, collect: Callable[[], Iterable[Sample]]) -> None:
        self.host, self.port = host, port
        self.collect = collect
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        try:
            self.server = await asyncio.start_server(self._client, self.host, self.port)
        except OSError as exc:
            raise from_os_error(f"cannot serve metrics on {self.host}:{self.port}", exc) \
                from None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            path = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b""
            if path.split(b"?")[0] in (b"/metrics", b"/"):
                body, status = render(self.collect()).encode(), b"200 OK"
            else:
                body, status = b"not found: try /metrics\n", b"404 Not Found"
            writer.write(b"HTTP/1.0 " + status + b"\r\nContent-Type: text/plain; version=0.0.4"
                         b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
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
