"""skipd: protect IP traffic with SKIP (see docs/skipd.md).

    skipd -c /etc/skip/skipd.toml            run in the foreground (systemd: Type=notify)
    skipd -c /etc/skip/skipd.toml --check    validate the configuration and exit
    skipd -c /etc/skip/skipd.toml --cleanup  remove the block a stopped skipd leaves behind

Errors are one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from skip import __version__

if TYPE_CHECKING:
    from skip.daemon.config import Config

DEFAULT_CONFIG = "/etc/skip/skipd.toml"


def check_warnings(config: Config, now: float) -> list[str]:
    """What ``--check`` warns about without refusing the file: each certificate that no rule
    will use (one failing peer costs that peer, not the daemon, so skipd itself only logs
    it), and each file in the peer store that does not chain to a trust anchor, is revoked or
    out of date, whether or not a rule wants it today (one that a later rule would use fails
    then, not now)."""
    from skip.daemon import trust
    from skip.daemon.cert_store import CERT_SUFFIXES, MAX_STORE_FILES
    from skip.daemon.credentials import load_credentials
    from skip.errors import SkipError
    from skip.files import read_bounded
    from skip.pki.certificate import load_certificates

    validate = trust.validator(config)
    creds = load_credentials(config, now, validate)
    warnings = [f"{file}: {text}" if reason in text else f"{file}: {reason}: {text}"
                for file, reason, text in creds.refused]
    seen = {w.split(":", 1)[0] for w in warnings}
    directory = config.identity.peer_certificates
    paths: list[Path] = []
    if directory is not None and directory.is_dir():
        paths = sorted(p for p in directory.iterdir()
                       if p.suffix.lower() in CERT_SUFFIXES)[:MAX_STORE_FILES]
    for path in paths:
        if str(path) in seen:
            continue
        try:
            certs = load_certificates(read_bounded(path))
        except (OSError, SkipError):
            continue  # load_credentials reported what does not parse
        for cert in certs:
            try:
                validate(cert, now)
            except SkipError as exc:
                warnings.append(f"{path}: {exc.reason}: {cert.subject_text}: {exc.detail}")
    protecting = [r.name for r in config.peers if r.action == "protect"]
    warnings += [f"peer {name}: no valid certificate: its packets are dropped (unknown_mkid)"
                 + (" until discovery finds one" if config.daemon.discovery else "")
                 for name in protecting if name not in creds.peers]
    return warnings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skipd", description="SKIP daemon: protects IP traffic through a TUN device.",
        epilog="example: skipd -c /etc/skip/skipd.toml --check")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-c", "--config", default=DEFAULT_CONFIG,
                        help=f"configuration file (default {DEFAULT_CONFIG})")
    parser.add_argument("--check", action="store_true",
                        help="validate the configuration (and certificates) and exit")
    parser.add_argument("--cleanup", action="store_true",
                        help="remove the routing rules and blocking routes a stopped skipd "
                        "leaves in place (protected destinations then go out in clear)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Start-up makes what lives as long as the process (modules, classes, the configuration):
    # collecting while it runs finds nothing to free and cost a tenth of the start. The
    # daemon freezes all of it and turns the collector back on once it serves.
    gc.disable()
    import asyncio

    from skip.daemon import logs
    from skip.daemon.config import load_config
    from skip.daemon.keying_adapter import build_engine
    from skip.daemon.runtime import Daemon, cleanup, plural
    from skip.daemon.system_errors import from_os_error
    from skip.errors import SkipError

    try:
        config = load_config(args.config)
        logs.configure(config.daemon.log_format, config.daemon.log_level)
        if args.cleanup:
            # fail closed: skipd leaves its block when it stops, dies or is killed; this is
            # the operator's explicit way to lift it (refused while a skipd runs)
            print(f"skipd: {cleanup(config)}")
            return 0
        if args.check:
            now = time.time()
            logs.LOGGER.setLevel("ERROR")  # the warnings below say it once, without a log
            # the engine checks what only it knows (our other names); reading the identity
            # files again below also covers a configuration where nothing protects yet
            build_engine(config, now)
            warnings = check_warnings(config, now)
            for warning in warnings:
                print(f"skipd: warning: {warning}", file=sys.stderr)
            print(f"{config.path}: OK ({plural(len(config.peers), 'peer')}, "
                  f"default action {config.default.action}"
                  + (f", {plural(len(warnings), 'warning')})" if warnings else ")"))
            return 0
        asyncio.run(Daemon(config, build_engine).run())
    except SkipError as exc:
        print(f"skipd: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # where skipd claims a resource it names it; this is the safety net
        print(f"skipd: {from_os_error(str(exc.filename or 'a system call'), exc)}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
