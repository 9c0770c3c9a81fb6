"""The control socket: one JSON request per line in, one JSON reply per line out.

A Unix socket created with mode 0600 inside a 0700 directory, so only root (skipd's user)
can talk to it; no authentication protocol is needed on top. The socket is bound under a
restrictive umask so there is no window in which it exists with looser permissions.

The socket path is also what makes a skipd instance: :meth:`ControlServer.claim` takes an
exclusive lock on ``<socket>.lock`` before skipd touches the kernel, so a second skipd given
the same socket stops with ``in_use`` instead of replacing the first one's socket and sharing
its routing rules. The kernel releases the lock when the process ends, however it ends, so a
killed skipd never blocks its successor; the (empty) lock file stays, since removing it would
let two starters lock two different files.

Replies are ``{"ok": true, "result": ...}`` or ``{"ok": false, "reason": code, "error": text}``.

A *stream* command (``monitor``) answers ``{"ok": true, "result": {"streaming": ...}}`` and
then one JSON line per event until the client closes the connection (or sends anything more);
the handler is an async iterator, consumed only as fast as the client reads, and raced
against the client's end of the connection so an idle stream notices a closed client.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import socket
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from skip.daemon import logs
from skip.daemon.system_errors import from_os_error
from skip.errors import REASONS, SkipError

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
#: called on the request: subscribes at once (or raises SkipError), then yields events
Stream = Callable[[dict[str, Any]], AsyncGenerator[dict[str, Any], None]]
_MAX_REQUEST = 64 * 1024


class ControlServer:
    def __init__(self, path: Path, handlers: dict[str, Handler],
                 streams: dict[str, Stream] | None = None) -> None:
        self.path = path
        self.handlers = handlers
        self.streams = streams or {}
        self.server: asyncio.AbstractServer | None = None
        self.lock: int | None = None  # descriptor holding the instance lock

    def claim(self) -> None:
        """Become the one skipd on this socket path, or raise ``in_use`` (see above)."""
        lock = self.path.with_name(self.path.name + ".lock")
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise from_os_error(f"cannot create the control socket's lock {lock}", exc) \
                from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SkipError("in_use", f"{self.path}: another skipd is running on this control "
                            "socket (stop it, or give this one its own daemon.control_socket, "
                            "interface, table, fwmark and rule_priority)") from None
        self.lock = fd

    async def start(self) -> None:
        if self.lock is None:
            self.claim()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket from a crashed run (we hold the lock)
        old = os.umask(0o177)
        try:
            self.server = await asyncio.start_unix_server(self._client, path=str(self.path),
                                                          limit=_MAX_REQUEST)
            os.chmod(self.path, 0o600)
        except OSError as exc:
            raise from_os_error(f"cannot create the control socket {self.path}", exc) \
                from None
        finally:
            os.umask(old)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                stream = self._stream_for(line)
                if stream is not None:
                    await self._stream(stream, reader, writer)
                    break
                writer.write(json.dumps(await self._dispatch(line)).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()

    def _stream_for(self, line: bytes) -> tuple[Stream, dict[str, Any]] | None:
        try:
            request = json.loads(line)
        except (ValueError, RecursionError):
            return None  # _dispatch answers it
        command = request.get("command") if isinstance(request, dict) else None
        stream = self.streams.get(command) if isinstance(command, str) else None
        return (stream, request) if stream is not None else None

    async def _stream(self, stream: tuple[Stream, dict[str, Any]],
                      reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler, request = stream
        try:
            events = handler(request)  # subscribes now, or refuses
        except SkipError as exc:
            writer.write(json.dumps({"ok": False, "reason": exc.reason,
                                     "error": str(exc)}).encode() + b"\n")
            await writer.drain()
            return
        gone = asyncio.ensure_future(reader.read(1))  # EOF (or more input) ends the stream
        pending: asyncio.Future[dict[str, Any]] | None = None
        try:
            writer.write(json.dumps({"ok": True, "result": {
                "streaming": request.get("command")}}).encode() + b"\n")
            await writer.drain()
            while True:
                pending = asyncio.ensure_future(anext(events))
                await asyncio.wait({pending, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not pending.done():
                    return  # the client went away
                try:
                    event = pending.result()
                except StopAsyncIteration:
                    return
                writer.write(json.dumps(event, default=str).encode() + b"\n")
                await writer.drain()
        finally:
            gone.cancel()
            if pending is not None and not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await pending
            await events.aclose()

    async def _dispatch(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            command = request.get("command") if isinstance(request, dict) else None
        except ValueError:
            return {"ok": False, "reason": "config_invalid", "error": "request is not JSON"}
        except RecursionError:  # json nests recursively: ~1000 "[" in one request line
            return {"ok": False, "reason": "config_invalid",
                    "error": "request is nested too deeply"}
        handler = self.handlers.get(command) if isinstance(command, str) else None
        if handler is None:
            return {"ok": False, "reason": "config_invalid",
                    "error": f"unknown command {command!r}; known: {sorted(self.handlers)}"}
        try:
            return {"ok": True, "result": await handler(request)}
        except SkipError as exc:
            return {"ok": False, "reason": exc.reason, "error": str(exc)}
        except Exception as exc:  # a bug in one command must not cost the client its answer
            logs.LOGGER.error("unexpected error in a control command", exc_info=exc,
                              extra=logs.fields(reason="internal_error", command=command))
            return {"ok": False, "reason": "internal_error",
                    "error": f"{command} failed unexpectedly ({type(exc).__name__}); see "
                    "skipd's log"}

    async def stop(self) -> None:
        """Close and remove the socket, and release the lock; a no-op for a server that never
        claimed its path (the socket then belongs to another skipd)."""
        if self.lock is None:
            return
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self.lock)
        self.lock = None


def request(path: Path, command: str, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
    """Blocking client call (skipctl, tests): returns the decoded reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError as exc:
            why = exc.strerror or str(exc)  # a path too long for AF_UNIX has no strerror
            raise SkipError("io_error", f"cannot reach skipd at {path}: {why}") from None
        sock.sendall(json.dumps({"command": command, **args}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    if not data:
        raise SkipError("io_error", "skipd closed the control connection without a reply")
    try:
        return json.loads(data)
    except ValueError:
        raise SkipError("io_error", f"{path} answered with something that is not skipd's "
                        "JSON (another program on the socket?)") from None


def stream(path: Path, command: str, **args: Any) -> Iterator[dict[str, Any]]:
    """Blocking client for a stream command (``skipctl monitor``): the events, one per line,
    until skipd closes the connection. Raises SkipError when skipd cannot be reached or
    refuses (its reason code)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10.0)
        try:
            sock.connect(str(path))
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise SkipError("io_error", f"cannot reach skipd at {path}: {why}") from None
        sock.sendall(json.dumps({"command": command, **args}).encode() + b"\n")
        lines = sock.makefile("rb")
        first = lines.readline()
        sock.settimeout(None)  # events come when they come
        try:
            reply = json.loads(first)
        except ValueError:
            raise SkipError("io_error", f"{path}: no skipd reply to {command}") from None
        if not isinstance(reply, dict) or reply.get("ok") is not True:
            reply = reply if isinstance(reply, dict) else {}
            reason = reply.get("reason")
            raise SkipError(reason if reason in REASONS else "io_error",
                            str(reply.get("error") or "refused"))
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                yield event
