"""What the kernel refused, as the one line an operator reads (skipd's start-up and reload).

skipd meets the kernel's errno values where it claims resources: the TUN device, raw and UDP
sockets, the metrics port, the control socket, sysctls, files. Each such place turns an
:class:`OSError` into a :class:`~skip.errors.SkipError` that says what skipd was doing, so
``skipd`` can print ``skipd: <reason>: <what>: <why>`` and exit, never a traceback. Another
process holding the resource is its own reason (``in_use``): the fix is to find that process,
not to change permissions.
"""

from __future__ import annotations

import errno

from skip.errors import SkipError

_HELD = {errno.EADDRINUSE, errno.EBUSY}
_DENIED = {errno.EPERM, errno.EACCES}


def from_os_error(what: str, exc: OSError) -> SkipError:
    """``what`` names the resource ("cannot bind the metrics port 127.0.0.1:9657")."""
    why = exc.strerror or str(exc)
    if exc.errno in _HELD:
        return SkipError("in_use", f"{what}: {why} (held by another process; another skipd?)")
    if exc.errno in _DENIED:
        why += " (skipd needs root, or CAP_NET_ADMIN and CAP_NET_RAW and access to its files)"
    return SkipError("io_error", f"{what}: {why}")
