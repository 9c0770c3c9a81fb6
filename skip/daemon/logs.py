"""Structured logging for skipd: text for people, JSON lines for collectors.

Every event about a packet carries its reason code (the same code counted by ``skipctl
counters`` and the metrics), so a log line can be looked up in docs/skipd.md's troubleshooting
table. Per-packet drops are rate limited per reason: an attacker spraying garbage must not be
able to fill the disk, while the counters still see every packet. Key material never reaches a
log call: callers pass names, addresses and codes only, and :func:`fields` refuses byte strings
so a key cannot slip in by accident.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

from skip.errors import SkipError

LOGGER = logging.getLogger("skipd")
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def fields(**values: object) -> dict[str, object]:
    """The ``extra`` mapping for a log call, refusing bytes (the shape of key material)."""
    for key, value in values.items():
        if isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"log field {key!r} is bytes: log hex names via str(), never keys")
    return {"skip": values}


class Deferred:
    """A log field worked out only when a line is written. Drops are counted per packet but
    logged a few times per interval (:class:`DropLog`), so turning an address into text for
    every dropped packet was work thrown away under a flood; the field's value is
    ``function(argument)``, refused if bytes, as :func:`fields` refuses them."""

    __slots__ = ("_argument", "_function")

    def __init__(self, function: Callable[[Any], object], argument: Any) -> None:
        self._function = function
        self._argument = argument

    def __str__(self) -> str:
        value = self._function(self._argument)
        if isinstance(value, bytes | bytearray | memoryview):
            raise TypeError("deferred log field is bytes: log hex names via str(), never keys")
        return str(value)


def record_fields(record: logging.LogRecord) -> dict[str, object]:
    """One log event as the JSON log line (and ``skipctl monitor``) carries it."""
    out: dict[str, object] = {
        "ts": round(record.created, 3),
        "level": record.levelname.lower(),
        "msg": record.getMessage(),
    }
    out.update(getattr(record, "skip", {}))
    return out


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = record_fields(record)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = getattr(record, "skip", {})
        tail = " ".join(f"{k}={v}" for k, v in extra.items())
        line = f"skipd {record.levelname.lower()}: {record.getMessage()}"
        return f"{line} [{tail}]" if tail else line


def configure(log_format: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(level.upper())
    LOGGER.propagate = False


class DropLog:
    """At most ``burst`` log lines per reason per ``interval`` seconds; the rest are summed
    and reported with the next line that is let through."""

    def __init__(self, interval: float = 10.0, burst: int = 3) -> None:
        self.interval = interval
        self.burst = burst
        self.window: dict[str, tuple[float, int, int]] = {}  # reason -> (start, logged, held)

    def allow(self, reason: str) -> int | None:
        """None if a line for ``reason`` must be suppressed now, else how many were."""
        now = time.monotonic()
        start, logged, held = self.window.get(reason, (now, 0, 0))
        if now - start >= self.interval:
            start, logged = now, 0
        if logged >= self.burst:
            self.window[reason] = (start, logged, held + 1)
            return None
        self.window[reason] = (start, logged + 1, 0)
        return held

    def drop(self, reason: str, message: str, **values: object) -> None:
        held = self.allow(reason)
        if held is None:
            return
        if held:
            values["suppressed"] = held
        LOGGER.info(message, extra=fields(reason=reason, **values))


class Subscriber:
    """One ``skipctl monitor``: a bounded queue, and how many events it missed when full."""

    def __init__(self, depth: int) -> None:
        self.queue: asyncio.Queue[dict[str, object]] = asyncio.Queue(depth)
        self.lost = 0


class Monitor(logging.Handler):
    """The feed of ``skipctl monitor``: every event skipd logs (at the configured level),
    fanned out to its subscribers as JSON-ready dicts.

    Publishing never waits: a subscriber whose queue is full (a client that reads slowly, or
    not at all) loses events, and is told how many (``{"msg": "events lost", "lost": N}``)
    where they would have been, so a stalled ``skipctl monitor`` cannot slow the packet path or grow
    skipd's memory. Records logged on another thread (a reload validates certificates on a
    worker) are handed to the loop, as asyncio queues belong to it."""

    def __init__(self, depth: int = 256, limit: int = 16) -> None:
        super().__init__()
        self.depth = depth
        self.limit = limit
        self.subscribers: list[Subscriber] = []
        self.loop: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:
        loop = self.loop
        if not self.subscribers or loop is None or loop.is_closed():
            return
        try:
            event: dict[str, object] = {
                k: v if isinstance(v, str | int | float | bool | None) else str(v)
                for k, v in record_fields(record).items()}
        except Exception:  # a field that cannot be shown must not break logging
            self.handleError(record)
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self.publish(event)
        else:
            loop.call_soon_threadsafe(self.publish, event)

    def publish(self, event: dict[str, object]) -> None:
        """Queue ``event`` for every subscriber with room; where events were lost before it,
        the notice goes first, at the place of the gap (it needs a slot of its own)."""
        for sub in self.subscribers:
            room = sub.queue.maxsize - sub.queue.qsize()
            if room < (2 if sub.lost else 1):
                sub.lost += 1
                continue
            if sub.lost:
                sub.queue.put_nowait({"ts": event.get("ts"), "level": "warning",
                                      "msg": "events lost", "lost": sub.lost})
                sub.lost = 0
            sub.queue.put_nowait(event)

    def stream(self) -> AsyncGenerator[dict[str, object], None]:
        """A subscription for ``skipctl monitor``, refused at once when ``limit`` are attached;
        it subscribes when first iterated and unsubscribes when closed (the client went
        away), so a stream never started holds nothing."""
        if len(self.subscribers) >= self.limit:
            raise SkipError("rate_limited", f"{self.limit} monitors are already attached; "
                            "close one")
        self.loop = asyncio.get_running_loop()
        return self._events()

    async def _events(self) -> AsyncGenerator[dict[str, object], None]:
        sub = Subscriber(self.depth)
        self.subscribers.append(sub)
        try:
            while True:
                yield await sub.queue.get()
        finally:
            self.subscribers.remove(sub)
