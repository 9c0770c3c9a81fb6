"""Structured logging for skipd: text for people, JSON lines for collectors.

Every event about a packet carries its reason code (the same code counted by ``skipctl
counters`` and the metrics), so a log line can be looked up in docs/skipd.md's troubleshooting
table. Per-packet drops are rate limited per reason: an attacker spraying garbage must not be
able to fill the disk, while the counters still see every packet. Key material never reaches a
log call: callers pass names, addresses and codes only, and :func:`fields` refuses byte strings
so a key cannot slip in by accident.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

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


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
        }
        out.update(getattr(record, "skip", {}))
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
