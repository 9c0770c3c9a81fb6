"""The control socket and skipctl without a kernel: permissions, JSON framing, refusals,
human and --json output, exit statuses."""

from __future__ import annotations

import asyncio
import json
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skip.cli import skipctl
from skip.daemon.control import ControlServer, request
from skip.errors import ConfigError, SkipError

PEERS = [{"name": "beta", "address": "192.0.2.2", "action": "protect", "profile": "modern",
          "mode": "tunnel", "algorithms": {"crypt": "aes-gcm-16"}, "kp_age": 30.2,
          "bytes_in": 2_500_000, "bytes_out": 999, "last_packet": 1.5, "n_skew": 0,
          "packets_in": 3, "packets_out": 2, "skip_name": "nsid 0 (address)"},
         # a nomadic peer not heard from yet: the engine knows no address, key or skew
         {"name": "laptop", "address": None, "action": "protect", "profile": "modern",
          "mode": "tunnel", "algorithms": {"kij": None, "crypt": None, "mac": None},
          "kp_age": None, "bytes_in": 0, "bytes_out": 0, "last_packet": None, "n_skew": None,
          "packets_in": 0, "packets_out": 0, "skip_name": "nsid 1 0a390009"},
         # a rule without a valid certificate: no engine read-out at all
         {"name": "gamma", "action": "protect", "profile": "legacy", "mode": "transport",
          "bytes_in": 0, "bytes_out": 0, "last_packet": None, "packets_in": 0,
          "packets_out": 0, "skip_name": "nsid 0 (address)"}]


async def _status(_req: dict[str, Any]) -> Any:
    return {"interface": "skip0", "mtu": 1400}


async def _peers(_req: dict[str, Any]) -> Any:
    return PEERS


async def _counters(_req: dict[str, Any]) -> Any:
    return {"drops": {"bad_icv": 4}, "traffic": {"protected_in": 7}, "engine": {},
            "descriptions": {"bad_icv": "the integrity check value does not verify"}}


async def _reload(_req: dict[str, Any]) -> Any:
    raise ConfigError("config_invalid", "/etc/skipd.toml: peer[0].action: 'x' is not one of")


async def _broken(_req: dict[str, Any]) -> Any:
    raise RuntimeError("a bug in a command")


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "run" / "skipd.sock"
    loop = asyncio.new_event_loop()
    control = ControlServer(path, {"status": _status, "peers": _peers,
                                   "counters": _counters, "reload": _reload,
                                   "flush": _broken})
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(control.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(5)
    yield path
    asyncio.run_coroutine_threadsafe(control.stop(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    assert not path.exists()


def test_socket_is_private(server: Path) -> None:
    assert stat.S_IMODE(server.stat().st_mode) == 0o600
    assert stat.S_IMODE(server.parent.stat().st_mode) == 0o700


def test_replies_and_refusals(server: Path) -> None:
    assert request(server, "status") == {"ok": True,
                                         "result": {"interface": "skip0", "mtu": 1400}}
    refused = request(server, "reload")
    assert refused["ok"] is False and refused["reason"] == "config_invalid"
    assert "peer[0].action" in refused["error"]
    unknown = request(server, "format-disk")
    assert unknown["ok"] is False and "unknown command" in unknown["error"]


def test_a_failing_command_still_gets_a_reply(server: Path) -> None:
    reply = request(server, "flush")
    assert reply["ok"] is False and reply["reason"] == "internal_error"
    assert "RuntimeError" in reply["error"]
    assert request(server, "status")["ok"]  # still serving


def test_a_second_server_on_the_same_path_is_refused(server: Path) -> None:
    second = ControlServer(server, {})
    with pytest.raises(SkipError) as err:
        second.claim()
    assert err.value.reason == "in_use" and "another skipd is running" in str(err.value)
    asyncio.run(second.stop())  # it never claimed the path: the socket is not its to remove
    assert request(server, "status")["ok"]


def test_garbage_request_gets_an_error_not_a_crash(server: Path) -> None:
    import socket

    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(server))
        sock.sendall(b"\xff{not json\n")
        reply = json.loads(sock.makefile().readline())
    assert reply["ok"] is False
    assert request(server, "status")["ok"]  # still serving


def test_skipctl_human_tables(server: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert skipctl.main(["peers", "-s", str(server)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["NAME", "ADDRESS", "ACTION", "PROFILE"]
    assert out[1].split() == ["beta", "192.0.2.2", "protect", "modern", "tunnel", "aes-gcm-16",
                              "30s", "2.5MB", "999B", "2s", "0"]
    assert out[2].split() == ["laptop", "-", "protect", "modern", "tunnel", "-", "-", "0B",
                              "0B", "-", "-"]
    assert out[3].split() == ["gamma", "-", "protect", "legacy", "transport", "-", "-", "0B",
                              "0B", "-", "-"]
    assert skipctl.main(["counters", "-s", str(server)]) == 0
    text = capsys.readouterr().out
    assert "4  bad_icv" in text and "7  protected_in" in text


def test_no_column_prints_none() -> None:
    """JSON null is "not known yet": every formatter shows "-" for it, never Python's None."""
    assert "None" not in skipctl.format_peers(PEERS)
    status = skipctl.format_status({"interface": "skip0", "identity": None,
                                    "unknown_peers": [{"name": "nsid 1 0a", "seconds_ago": None}]})
    assert "None" not in status and status.splitlines()[1].split() == ["identity:", "-"]
    assert "None" not in skipctl.format_counters({"drops": {}, "traffic": {}, "engine": {}})


def test_skipctl_json_is_the_reply(server: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert skipctl.main(["peers", "--json", "-s", str(server)]) == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True, "result": PEERS}


def test_skipctl_exit_statuses(server: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert skipctl.main(["reload", "-s", str(server)]) == 1
    assert "reload refused" in capsys.readouterr().err
    assert skipctl.main(["status", "-s", str(tmp_path / "nowhere.sock")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("skipctl: io_error: cannot reach skipd") and "Traceback" not in err


def test_skipctl_reads_socket_path_from_config(server: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "skipd.toml"
    config.write_text(f'[daemon]\ncontrol_socket = "{server}"\n')
    assert skipctl.main(["status", "-c", str(config)]) == 0
    assert "skip0" in capsys.readouterr().out


def test_request_to_missing_socket_is_a_skip_error(tmp_path: Path) -> None:
    with pytest.raises(SkipError, match="cannot reach skipd"):
        request(tmp_path / "none.sock", "status")


def test_groups_table_and_group_replies() -> None:
    rows = [{"group": "239.1.1.1", "role": "owner", "epoch": 1796920200, "key_age": 30,
             "key_expires_in": 86370, "sender_keys": 2, "members": ["a", "b"]},
            {"group": "239.2.2.2", "role": "member", "epoch": 0, "key_age": None,
             "key_expires_in": None, "sender_keys": 0, "owner": "o", "state": "requesting"}]
    table = skipctl.format_groups(rows).splitlines()
    assert table[0].split() == ["GROUP", "ROLE", "EPOCH", "KEY", "AGE", "EXPIRES", "SENDERS",
                                "MEMBERS", "/", "OWNER"]
    assert table[1].split() == ["239.1.1.1", "owner", "1796920200", "30s", "23h", "59m", "2", "a,",
                                "b"]
    assert table[2].split() == ["239.2.2.2", "member", "-", "-", "-", "0", "o",
                                "(requesting)"]
    assert skipctl.format_groups([]) == "no groups configured"
    assert skipctl.format_group({"group": "239.1.1.1", "evicted": "c", "epoch": 9,
                                 "wrapped_keys": 3}) == \
        "evicted c from 239.1.1.1: epoch 9, one rekey of 3 wrapped keys"
    args = skipctl.build_parser().parse_args(["group", "evict", "239.1.1.1", "c", "--json"])
    assert (args.action, args.group, args.member, args.json) == ("evict", "239.1.1.1", "c", True)
    with pytest.raises(SystemExit):
        skipctl.build_parser().parse_args(["group", "remove", "239.1.1.1", "c"])
