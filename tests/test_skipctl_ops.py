"""skipctl's operator contract without a kernel (issue 13): ``--json`` exits as plain mode
does and prints JSON when skipd cannot be reached, ``-c CONFIG`` finds the socket in a file
that does not validate (or parse), the human forms (uptime with a unit, IP versions,
certificates), and ``monitor``'s bounded subscriber queues: a stalled client loses events (and
is told how many) while skipd's loop keeps answering."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skip.cli import skipctl
from skip.daemon import logs
from skip.daemon.config import DaemonSettings
from skip.daemon.control import ControlServer, request, stream
from skip.errors import ConfigError, SkipError

SEEN: list[dict[str, Any]] = []


async def _reload(req: dict[str, Any]) -> Any:
    SEEN.append(req)
    raise ConfigError("config_invalid", "/etc/skipd.toml: [default]: unknown key 'bogus'")


async def _status(_req: dict[str, Any]) -> Any:
    return {"interface": "skip0", "uptime_seconds": 3725.4, "ip_versions": [4, 6],
            "unknown_peers": []}


async def _counters(req: dict[str, Any]) -> Any:
    SEEN.append(req)
    return {"drops": {}, "traffic": {"protected_in": 3}, "engine": {}, "descriptions": {}}


class Served:
    def __init__(self, path: Path, monitor: logs.Monitor, loop: asyncio.AbstractEventLoop
                 ) -> None:
        self.path, self.monitor, self.loop = path, monitor, loop

    def publish(self, count: int, size: int = 10) -> float:
        """Publish on the server's loop; returns how long the loop took for it."""
        async def burst() -> float:
            start = time.perf_counter()
            for n in range(count):
                self.monitor.publish({"msg": "event", "n": n, "pad": "x" * size})
            return time.perf_counter() - start
        return asyncio.run_coroutine_threadsafe(burst(), self.loop).result(10)


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[Served]:
    path = tmp_path / "run" / "skipd.sock"
    loop = asyncio.new_event_loop()
    monitor = logs.Monitor(depth=4, limit=2)
    control = ControlServer(path, {"reload": _reload, "status": _status,
                                   "counters": _counters},
                            streams={"monitor": lambda _req: monitor.stream()})
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(control.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(5)
    SEEN.clear()
    yield Served(path, monitor, loop)
    asyncio.run_coroutine_threadsafe(control.stop(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_json_exit_status_matches_plain_mode(served: Served,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    sock = str(served.path)
    assert skipctl.main(["reload", "-s", sock]) == 1
    capsys.readouterr()
    assert skipctl.main(["reload", "--json", "-s", sock]) == 1
    reply = json.loads(capsys.readouterr().out)
    assert reply["ok"] is False and reply["reason"] == "config_invalid"
    assert skipctl.main(["--json", "status", "-s", sock]) == 0  # --json before the command
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_unreachable_skipd_is_json_too(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "nowhere.sock")
    assert skipctl.main(["status", "-s", missing]) == 2
    assert capsys.readouterr().err.startswith("skipctl: io_error: cannot reach skipd")
    assert skipctl.main(["status", "--json", "-s", missing]) == 2
    out = capsys.readouterr()
    reply = json.loads(out.out)
    assert reply == {"ok": False, "reason": "io_error", "error": reply["error"]}
    assert "cannot reach skipd" in reply["error"] and out.err == ""


def test_config_that_does_not_validate_still_names_the_socket(
        served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "skipd.toml"
    broken.write_text(f'[daemon]\ncontrol_socket = "{served.path}"\nmtu = 5\n'
                      "[default]\nbogus = 1\n")
    assert skipctl.main(["-c", str(broken), "reload"]) == 1  # refused by skipd, not skipctl
    assert SEEN == [{"command": "reload"}]
    assert "unknown key 'bogus'" in capsys.readouterr().err
    broken.write_text(f"[daemon]\ncontrol_socket = '{served.path}'\n[[peer\nname=\n")
    assert skipctl.socket_from_config(str(broken)) == served.path  # not even TOML
    relative = tmp_path / "rel.toml"
    relative.write_text('[daemon]\ncontrol_socket = "run/skipd.sock"\n')
    assert skipctl.socket_from_config(str(relative)) == tmp_path / "run" / "skipd.sock"
    other = tmp_path / "other.toml"
    other.write_text('[identity]\ncontrol_socket = "/elsewhere.sock"\n')  # wrong section
    assert skipctl.socket_from_config(str(other)) == DaemonSettings().control_socket
    assert skipctl.main(["-c", str(tmp_path / "absent.toml"), "status"]) == 2


def test_counters_reset_is_sent(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    assert skipctl.main(["counters", "--reset", "-s", str(served.path)]) == 0
    assert skipctl.main(["counters", "-s", str(served.path)]) == 0
    assert SEEN == [{"command": "counters", "reset": True}, {"command": "counters"}]


def test_human_status_has_units_and_a_list_of_versions(
        served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    assert skipctl.main(["status", "-s", str(served.path)]) == 0
    lines = dict(line.strip().split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert lines["uptime"] == "1h 02m" and lines["ip_versions"] == "4, 6"
    assert skipctl._duration(42.9) == "42s" and skipctl._duration(185) == "3m 05s"
    assert skipctl._duration(90000) == "1d 01h"


def test_monitor_queue_is_bounded_and_counts_what_was_lost(served: Served) -> None:
    events = stream(served.path, "monitor")
    first = threading.Event()
    got: list[dict[str, Any]] = []

    def read() -> None:
        for event in events:
            got.append(event)
            first.set()
            if len(got) == 6:
                return

    reader = threading.Thread(target=read, daemon=True)
    deadline = time.monotonic() + 5
    # the subscription exists once skipd has answered the request
    reader.start()
    while not served.monitor.subscribers and time.monotonic() < deadline:
        time.sleep(0.01)
    assert served.monitor.subscribers
    # nobody drains the queue between these: 4 fit, 6 are lost
    async def burst() -> None:
        for n in range(10):
            served.monitor.publish({"msg": "event", "n": n})
    asyncio.run_coroutine_threadsafe(burst(), served.loop).result(5)
    assert first.wait(5)
    time.sleep(0.2)
    served.publish(1)  # the next one that fits: the notice of the gap goes first
    reader.join(5)
    assert [e.get("n") for e in got[:4]] == [0, 1, 2, 3]
    assert got[4]["msg"] == "events lost" and got[4]["lost"] == 6
    assert got[5]["n"] == 0


def test_a_stalled_monitor_does_not_block_skipd(served: Served) -> None:
    with socket.socket(socket.AF_UNIX) as stalled:
        stalled.connect(str(served.path))
        stalled.sendall(b'{"command": "monitor"}\n')
        stalled.recv(1)  # the reply has started: subscribed; then never read again
        deadline = time.monotonic() + 5
        while not served.monitor.subscribers and time.monotonic() < deadline:
            time.sleep(0.01)
        took = served.publish(20_000, size=4096)  # ~80 MB of events no one reads
        assert took < 2.0
        assert served.monitor.subscribers[0].lost > 19_000
        assert request(served.path, "status")["ok"]  # the loop still answers
        # a second monitor fits (limit 2), a third is refused with a reason
        with socket.socket(socket.AF_UNIX) as second:
            second.connect(str(served.path))
            second.sendall(b'{"command": "monitor"}\n')
            assert json.loads(second.makefile().readline())["ok"] is True
            with pytest.raises(SkipError) as refused:
                next(stream(served.path, "monitor"))
            assert refused.value.reason == "rate_limited"
    # both clients gone: both subscriptions end
    deadline = time.monotonic() + 5
    while served.monitor.subscribers and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not served.monitor.subscribers


def test_log_records_reach_the_monitor_from_any_thread(served: Served) -> None:
    """A reload logs from its worker thread: the record is handed to the loop."""
    logger = logging.getLogger("skipd")
    logger.addHandler(served.monitor)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        got: list[dict[str, Any]] = []
        reader = threading.Thread(target=lambda: got.append(
            next(stream(served.path, "monitor"))), daemon=True)
        reader.start()
        deadline = time.monotonic() + 5
        while not served.monitor.subscribers and time.monotonic() < deadline:
            time.sleep(0.01)
        worker = threading.Thread(target=lambda: logger.warning(
            "certificate not used", extra=logs.fields(reason="cert_untrusted",
                                                      file=Path("/x/b.pem"))))
        worker.start()
        worker.join()
        reader.join(5)
        event = got[0]
        assert event["msg"] == "certificate not used" and event["reason"] == "cert_untrusted"
        assert event["file"] == "/x/b.pem" and event["level"] == "warning"
    finally:
        logger.removeHandler(served.monitor)
        logger.setLevel(old)


def test_certs_table() -> None:
    text = skipctl.format_certs({
        "own": {"certificate": "3f0c1e2a9b7d4c51", "subject": "CN=a", "skip_names": [
            "nsid 1 c0000201"], "not_after": "2030-01-01T00:00:00Z", "expires_in": 86400 * 40,
            "file": "/etc/skip/a.pem"},
        "peers": [{"peer": "b", "skip_name": "nsid 0 (address)", "certificate": None},
                  {"peer": "c", "certificate": "aa", "subject": "CN=c", "skip_names": [],
                   "not_after": "2020-01-01T00:00:00Z", "expires_in": -5, "source": "x"}]})
    rows = [line.split() for line in text.splitlines()]
    assert rows[1][0] == "(ours)" and "40d" in rows[1]
    assert rows[2][:3] == ["b", "-", "-"]
    assert "EXPIRED" in rows[3]
