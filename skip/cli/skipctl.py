"""skipctl: talk to a running skipd over its control socket (see docs/skipctl.md).

    skipctl status | peers | counters | discovery | flush | reload | stop   [--json]

Human tables by default; ``--json`` prints the daemon's reply unchanged for scripts.
Exit status 0 on success, 1 when skipd refused the request, 2 when it cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from skip.daemon.config import DaemonSettings, load_config
from skip.daemon.control import request
from skip.errors import SkipError

COMMANDS = {
    "status": "daemon state: interface, MTU, transport, uptime, totals",
    "peers": "configured peers: address, profile, algorithms, Kp age, bytes, last packet, skew",
    "counters": "packets dropped per reason code (like skipstat), traffic totals",
    "flush": "drop cached master and traffic keys (recomputed on the next packet)",
    "reload": "re-read configuration and certificates; a bad file is refused, old one kept",
    "stop": "stop skipd (it removes its TUN device, routes and rules)",
    "discovery": "certificate discovery (CDP): lookups in flight, learned peers, counters",
}


def _cell(value: Any) -> str:
    """A table cell; "-" where skipd knows nothing yet (JSON null, a missing or empty field)."""
    return "-" if value is None or value == "" else str(value)


def _age(seconds: Any) -> str:
    if seconds is None:
        return "-"
    seconds = float(seconds)
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}m"


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
    lines = ["dropped packets by reason:"]
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
    counters = result.get("counters", {})
    if counters:
        lines.append("counters:")
        lines += [f"  {count:>10}  {name}" for name, count in counters.items()]
    return "\n".join(lines)


FORMATTERS: dict[str, Callable[[Any], str]] = {
    "status": format_status, "peers": format_peers, "counters": format_counters,
    "discovery": format_discovery}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="skipctl", description="Query and control a running skipd.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {k:<9} {v}" for k, v in COMMANDS.items())
        + "\n\nexample: skipctl peers --json")
    parser.add_argument("command", choices=COMMANDS, metavar="COMMAND",
                        help="one of: " + ", ".join(COMMANDS))
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("-s", "--socket", help="control socket path (default: from -c, else "
                        f"{DaemonSettings().control_socket})")
    parser.add_argument("-c", "--config", help="read the socket path from this skipd config")
    args = parser.parse_args(argv)
    try:
        path = Path(args.socket) if args.socket else (
            load_config(args.config).daemon.control_socket if args.config
            else DaemonSettings().control_socket)
        reply = request(path, args.command)
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            raise SkipError("io_error", f"{path}: the reply is not a skipd reply")
        if args.json:
            text = json.dumps(reply, indent=2)
        elif reply["ok"]:
            text = FORMATTERS.get(args.command, format_plain)(reply.get("result"))
        else:
            print(f"skipctl: {args.command} refused: {reply.get('error') or 'no reason given'}",
                  file=sys.stderr)
            return 1
    except SkipError as exc:
        print(f"skipctl: {exc}", file=sys.stderr)
        return 2
    except (KeyError, TypeError, AttributeError, ValueError):
        # The socket answered, but not with what this skipctl knows how to show (another
        # program, or a skipd of another version): say so instead of a traceback.
        print(f"skipctl: io_error: {path}: unexpected {args.command} reply "
              "(another program or skipd version?); --json shows it", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
