"""The control socket: one JSON request per line in, one JSON reply per line out.

A Unix socket created with mode 0600 inside a 0700 directory, so only root (skipd's user)
can talk to it; no authentication protocol is needed on top. The socket is bound under a
restrictive umask so there is no window in which it exists with looser permissions.
Replies are ``{"ok": true, "result": ...}`` or ``{"ok": false, "reason": code, "error": text}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from skip.errors import SkipError

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
_MAX_REQUEST = 64 * 1024


class ControlServer:
    def __init__(self, path: Path, handlers: dict[str, Handler]) -> None:
        self.path = path
        self.handlers = handlers
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket from a crashed run
        old = os.umask(0o177)
        try:
            self.server = await asyncio.start_unix_server(self._client, path=str(self.path),
                                                          limit=_MAX_REQUEST)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(json.dumps(await self._dispatch(line)).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()

    async def _dispatch(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            command = request.get("command") if isinstance(request, dict) else None
        except ValueError:
            return {"ok": False, "reason": "config_invalid", "error": "request is not JSON"}
        handler = self.handlers.get(command) if isinstance(command, str) else None
        if handler is None:
            return {"ok": False, "reason": "config_invalid",
                    "error": f"unknown command {command!r}; known: {sorted(self.handlers)}"}
        try:
            return {"ok": True, "result": await handler(request)}
        except SkipError as exc:
            return {"ok": False, "reason": exc.reason, "error": str(exc)}

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def request(path: Path, command: str, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
    """Blocking client call (skipctl, tests): returns the decoded reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError as exc:
            raise SkipError("io_error", f"cannot reach skipd at {path}: {exc.strerror}") \
                from None
        sock.sendall(json.dumps({"command": command, **args}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    try:
        return json.loads(data)
    except ValueError:
        raise SkipError("io_error", "skipd closed the control connection without a reply") \
            from None
