"""skipctl: talk to a running skipd over its control socket (see docs/skipctl.md).

    skipctl status | peers | counters [--reset] | certs | discovery | groups | monitor |
            flush | reload | stop | group evict|add GROUP MEMBER
            [--json] [-s SOCKET | -c CONFIG]

Human tables by default; ``--json`` prints the daemon's reply unchanged for scripts (and a
JSON error when skipd cannot be reached). The exit status is the same either way: 0 on
success, 1 when skipd refused the request, 2 when it cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from skip import __version__
from skip.daemon.config import DaemonSettings
from skip.daemon.control import request, stream
from skip.errors import SkipError
from skip.files import read_bounded

COMMANDS = {
    "status": "daemon state: interface, MTU, transport, engine, uptime, totals",
    "peers": "configured peers: address, profile, algorithms, Kp age, bytes, last packet, skew",
    "counters": "packets dropped per reason code (like skipstat), traffic totals",
    "certs": "certificates in use: ours and each peer's, their names and expiry",
    "monitor": "follow skipd's events as JSON lines until interrupted (like swanctl "
    "--monitor-sa)",
    "flush": "drop the send traffic keys and on-demand master keys (renewed on the next packet)",
    "reload": "re-read configuration and certificates; a bad file is refused, old one kept",
    "stop": "stop skipd (it removes its TUN device, routes and rules)",
    "discovery": "certificate discovery (CDP, DNS): lookups in flight, learned peers and "
                 "their cache, counters",
    "groups": "multicast groups: role, key epoch and age, members (owner), state (member) "
              "or the configured key's profile (permanent)",
    "group": "evict a member from a group this skipd owns, or add one: group evict|add "
    "GROUP MEMBER (one signed rekey; kept across reloads)",
}


def _cell(value: Any) -> str:
    """A table cell; "-" where skipd knows nothing yet (JSON null, a missing or empty field)."""
    return "-" if value is None or value == "" else str(value)


def _age(seconds: Any) -> str:
    if seconds is None:
        return "-"
    seconds = float(seconds)
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}m"


def _duration(seconds: Any) -> str:
    """An uptime with its unit: "42s", "3m 05s", "2h 03m", "4d 01h"."""
    if seconds is None:
        return "-"
    total = int(float(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _bytes(value: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1000
    return str(value)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def format_status(result: dict[str, Any]) -> str:
    unknown = result.pop("unknown_peers", [])
    if "uptime_seconds" in result:
        result["uptime"] = _duration(result.pop("uptime_seconds"))
    if isinstance(result.get("ip_versions"), list):
        result["ip_versions"] = ", ".join(str(v) for v in result["ip_versions"])
    lines = [f"{k:>15}: {_cell(v)}" for k, v in result.items()]
    lines += [f"{'unknown peer':>15}: {u['name']} ({_age(u['seconds_ago'])} ago)"
              for u in unknown]
    return "\n".join(lines)


def format_peers(result: list[dict[str, Any]]) -> str:
    if not result:
        return "no peers configured"
    rows = [["NAME", "ADDRESS", "ACTION", "PROFILE", "MODE", "ALGORITHMS", "KP AGE", "IN",
             "OUT", "LAST", "N SKEW"]]
    for p in result:
        algs = p.get("algorithms")
        if isinstance(algs, dict):
            algs = "/".join(str(v) for v in algs.values() if v)
        rows.append([p["name"], _cell(p.get("address")), p["action"], p["profile"],
                     p["mode"], _cell(algs), _age(p.get("kp_age")), _bytes(p["bytes_in"]),
                     _bytes(p["bytes_out"]), _age(p.get("last_packet")),
                     _cell(p.get("n_skew"))])
    return _table(rows)


def format_counters(result: dict[str, Any]) -> str:
    lines = [f"since the reset at {result['since']}:"] if result.get("since") else []
    lines.append("dropped packets by reason:")
    drops = result.get("drops", {})
    if not drops:
        lines.append("  none")
    for reason, count in drops.items():
        lines.append(f"  {count:>10}  {reason:<22} {result['descriptions'].get(reason, '')}")
    lines.append("traffic:")
    for kind, count in {**result.get("traffic", {}), **result.get("engine", {})}.items():
        lines.append(f"  {count:>10}  {kind}")
    return "\n".join(lines)


def format_plain(result: Any) -> str:
    if isinstance(result, dict) and "message" in result:
        return str(result["message"])
    if isinstance(result, dict) and "flushed" in result:
        return f"flushed {result['flushed']} cached keys"
    return json.dumps(result)


def format_discovery(result: dict[str, Any]) -> str:
    if not result.get("enabled"):
        return "discovery is off (daemon.discovery = [])"
    lines = [f"responder: {'answering' if result.get('responder') else 'not running'}"]
    lines.append("in flight:" if result.get("in_flight") else "in flight: none")
    lines += [f"  {e['name']}  asking {e['server']} (sent {e['sent']})"
              for e in result.get("in_flight", [])]
    lines.append("learned:" if result.get("learned") else "learned: none")
    lines += [f"  {e['rule']}  {e['name']}  from {e['source']}"
              for e in result.get("learned", [])]
    cache = result.get("cache")
    if cache:
        lines.append(f"cache: {cache['entries']} of {cache['capacity']} "
                     f"(evicted {cache['evicted']}, least recently used first)")
    counters = result.get("counters", {})
    if counters:
        lines.append("counters:")
        lines += [f"  {count:>10}  {name}" for name, count in counters.items()]
    return "\n".join(lines)


def _expiry(seconds: Any) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds <= 0:
        return "EXPIRED"
    return f"{seconds // 86400}d" if seconds >= 86400 else _duration(seconds)


def format_certs(result: dict[str, Any]) -> str:
    rows = [["PEER", "CERTIFICATE", "SUBJECT", "SKIP NAMES", "NOT AFTER", "LEFT", "FROM"]]
    own = result.get("own")
    if own:
        rows.append(["(ours)", _cell(own.get("certificate")), _cell(own.get("subject")),
                     _cell(", ".join(own.get("skip_names", []))), _cell(own.get("not_after")),
                     _cell(own.get("error")) if own.get("error") else _expiry(
                         own.get("expires_in")), _cell(own.get("file"))])
    for p in result.get("peers", []):
        rows.append([p["peer"], _cell(p.get("certificate")), _cell(p.get("subject")),
                     _cell(", ".join(p.get("skip_names", [])) or p.get("skip_name")),
                     _cell(p.get("not_after")), _expiry(p.get("expires_in")),
                     _cell(p.get("source"))])
    return _table(rows)


def format_groups(result: list[dict[str, Any]]) -> str:
    if not result:
        return "no groups configured"
    rows = [["GROUP", "ROLE", "EPOCH", "KEY AGE", "EXPIRES", "SENDERS", "MEMBERS / OWNER"]]
    for g in result:
        if g["role"] == "owner":
            who = ", ".join(g["members"])
        elif g["role"] == "permanent":
            who = f"configured key ({g['profile']})"
        else:
            who = f"{g['owner']} ({g['state']})"
        rows.append([g["group"], g["role"], _cell(g.get("epoch") or None),
                     _age(g.get("key_age")), _expiry(g.get("key_expires_in")),
                     _cell(g.get("sender_keys")), _cell(who)])
    return _table(rows)


def format_group(result: dict[str, Any]) -> str:
    if "evicted" in result:
        return (f"evicted {result['evicted']} from {result['group']}: epoch "
                f"{result['epoch']}, one rekey of {result['wrapped_keys']} wrapped keys")
    return f"added {result['added']} to {result['group']}: epoch {result['epoch']}"


FORMATTERS: dict[str, Callable[[Any], str]] = {
    "status": format_status, "peers": format_peers, "counters": format_counters,
    "discovery": format_discovery, "certs": format_certs, "groups": format_groups,
    "group": format_group}


def socket_from_config(config: str) -> Path:
    """The control socket a skipd configuration names, found without validating the file:
    ``skipctl -c FILE reload`` must reach a running skipd even when FILE is broken, so that
    skipd itself refuses the reload (with the exact key, and a line in its log) instead of
    skipctl failing on its own. TOML that parses is read for ``daemon.control_socket``; a
    file that does not parse is searched for that one line; else the default path."""
    path = Path(config)
    try:
        text = read_bounded(path).decode("utf-8", "replace")
    except OSError as exc:
        raise SkipError("io_error", f"{path}: cannot read: {exc.strerror}") from None
    raw: object = None
    try:
        daemon = tomllib.loads(text).get("daemon")
        raw = daemon.get("control_socket") if isinstance(daemon, dict) else None
    except (tomllib.TOMLDecodeError, RecursionError):
        section = ""
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("["):
                section = line
            elif section == "[daemon]" and (found := _SOCKET_LINE.match(line)):
                raw = found.group(1)
    if not isinstance(raw, str) or not raw or "\0" in raw:
        return DaemonSettings().control_socket
    socket = Path(raw)
    return socket if socket.is_absolute() else path.parent / socket


_SOCKET_LINE = re.compile(r"""control_socket\s*=\s*["']([^"']+)["']""")


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The options every command takes, before or after it (``skipctl --json peers`` and
    ``skipctl peers --json``): on the sub-parsers they default to SUPPRESS, so an option
    given before the command is not reset by the sub-parser's default."""
    default: Any = argparse.SUPPRESS
    parser.add_argument("--json", action="store_true", default=False if top else default,
                        help="machine-readable output: skipd's reply, or a JSON error")
    parser.add_argument("-s", "--socket", default=None if top else default,
                        help="control socket path (default: from -c, else "
                        f"{DaemonSettings().control_socket})")
    parser.add_argument("-c", "--config", default=None if top else default,
                        help="read the socket path from this skipd configuration (the file "
                        "need not be valid: skipd judges it on reload)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skipctl", description="Query and control a running skipd.",
        epilog="exit status: 0 success, 1 skipd refused the request, 2 skipd cannot be "
        "reached\n\nexample: skipctl peers --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in COMMANDS.items():
        command = sub.add_parser(name, help=text, description=text)
        _common(command, top=False)
        if name == "counters":
            command.add_argument("--reset", action="store_true",
                                 help="show the counters, then start them again from 0 "
                                 "(skipctl's view only: the metrics keep counting)")
        if name == "group":
            command.add_argument("action", choices=("evict", "add"))
            command.add_argument("group", help="the group address, e.g. 239.1.1.1")
            command.add_argument("member", help="the member's [[peer]] rule name")
    return parser


def _fail(args: argparse.Namespace, reason: str, text: str, status: int) -> int:
    if args.json:
        print(json.dumps({"ok": False, "reason": reason, "error": text}, indent=2))
    else:
        print(f"skipctl: {reason}: {text}", file=sys.stderr)
    return status


def _monitor(path: Path, args: argparse.Namespace) -> int:
    """``skipctl monitor``: skipd's events as JSON lines until interrupted (or skipd stops)."""
    try:
        for event in stream(path, "monitor"):
            print(json.dumps(event), flush=True)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `skipctl monitor | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except SkipError as exc:
        if exc.reason == "io_error":
            return _fail(args, exc.reason, exc.detail, 2)
        return _fail(args, exc.reason, f"monitor refused: {exc.detail}", 1)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = Path(args.socket) if args.socket else None
    try:
        if path is None:
            path = socket_from_config(args.config) if args.config else \
                DaemonSettings().control_socket
        if args.command == "monitor":
            return _monitor(path, args)
        extra: dict[str, Any] = {"reset": True} if getattr(args, "reset", False) else {}
        if args.command == "group":
            extra = {"action": args.action, "group": args.group, "member": args.member}
        reply = request(path, args.command, **extra)
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            raise SkipError("io_error", f"{path}: the reply is not a skipd reply")
        if args.json:
            # the same exit status as without --json: scripts test $? either way
            print(json.dumps(reply, indent=2))
            return 0 if reply["ok"] else 1
        if not reply["ok"]:
            print(f"skipctl: {args.command} refused: {reply.get('error') or 'no reason given'}",
                  file=sys.stderr)
            return 1
        text = FORMATTERS.get(args.command, format_plain)(reply.get("result"))
    except SkipError as exc:
        return _fail(args, exc.reason, exc.detail, 2)
    except (KeyError, TypeError, AttributeError, ValueError):
        # The socket answered, but not with what this skipctl knows how to show (another
        # program, or a skipd of another version): say so instead of a traceback.
        return _fail(args, "io_error", f"{path}: unexpected {args.command} reply (another "
                     "program or skipd version?); --json shows it", 2)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
