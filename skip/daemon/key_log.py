"""The traffic-key log file (``[daemon] key_log``): DANGEROUS, off unless configured.

Every traffic key skipd makes or admits is appended as one line of
:mod:`skip.offline.keylog`'s format, so that ``skip-decrypt --keylog`` opens a capture of it,
PFS included: the log defeats forward secrecy by design, which is why it exists only on an
explicit request, says so loudly in the log when it starts, and is written mode 0600.
Each line is written with one ``write`` on an ``O_APPEND`` descriptor (a reader tailing the
file never sees half a line); a symlink is refused, so the option cannot be turned into a
write to some other file.
"""

from __future__ import annotations

import os
from pathlib import Path

from skip.daemon import logs
from skip.keying.events import TrafficKeys
from skip.offline.keylog import HEADER_COMMENT, format_keylog_line


class KeyLogFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW |
                          os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(self.fd, 0o600)
            if os.fstat(self.fd).st_size == 0:
                os.write(self.fd, HEADER_COMMENT.encode())
        except OSError:
            os.close(self.fd)
            raise
        self.lines = 0
        logs.LOGGER.warning(
            "DANGEROUS: key_log is on: every traffic key is written in the clear; whoever "
            "reads the file reads the traffic, PFS or not (docs/decrypt.md)",
            extra=logs.fields(file=str(path)))

    def __call__(self, keys: TrafficKeys) -> None:
        try:
            os.write(self.fd, format_keylog_line(keys).encode())
            self.lines += 1
        except OSError as exc:
            logs.LOGGER.error("cannot write the key log", extra=logs.fields(
                reason="io_error", file=str(self.path), error=exc.strerror or str(exc)))

    def close(self) -> None:
        os.close(self.fd)
