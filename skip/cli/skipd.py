"""skipd: protect IP traffic with SKIP (see docs/skipd.md).

    skipd -c /etc/skip/skipd.toml            run in the foreground (systemd: Type=exec)
    skipd -c /etc/skip/skipd.toml --check    validate the configuration and exit
    skipd -c /etc/skip/skipd.toml --cleanup  remove the block a stopped skipd leaves behind

Errors are one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from skip.daemon import logs, trust
from skip.daemon.config import load_config
from skip.daemon.credentials import load_credentials
from skip.daemon.keying_adapter import build_engine
from skip.daemon.runtime import Daemon, cleanup
from skip.daemon.system_errors import from_os_error
from skip.errors import SkipError

DEFAULT_CONFIG = "/etc/skip/skipd.toml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="skipd", description="SKIP daemon: protects IP traffic through a TUN device.",
        epilog="example: skipd -c /etc/skip/skipd.toml --check")
    parser.add_argument("-c", "--config", default=DEFAULT_CONFIG,
                        help=f"configuration file (default {DEFAULT_CONFIG})")
    parser.add_argument("--check", action="store_true",
                        help="validate the configuration (and certificates) and exit")
    parser.add_argument("--cleanup", action="store_true",
                        help="remove the routing rules and blocking routes a stopped skipd "
                        "leaves in place (protected destinations then go out in clear)")
    args = parser.parse_args(argv)
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
            if build_engine(config, now) is None:
                # Nothing protects yet, so the engine never opened the identity files; the
                # check still reads them, or a broken key surfaces only once a rule needs it.
                load_credentials(config, now, trust.validator(config))
            print(f"{config.path}: OK ({len(config.peers)} peers, "
                  f"default action {config.default.action})")
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
