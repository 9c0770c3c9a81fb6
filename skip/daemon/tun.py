"""The TUN device that carries cleartext between the kernel and skipd.

Opened through ``/dev/net/tun`` with ``IFF_TUN | IFF_NO_PI``: skipd reads and writes bare IP
packets (no 4-byte packet-info prefix, the version nibble says IPv4 or IPv6). The descriptor
is non-blocking so the asyncio loop can use ``add_reader`` instead of a thread per device.
Addresses, MTU and link state are set through netlink in :mod:`skip.daemon.routing`.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct

from skip.daemon.system_errors import from_os_error

_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
_MAX_PACKET = 65535


class TunDevice:
    """An open TUN interface; ``read()`` returns one IP packet or None when none is waiting."""

    def __init__(self, name: str) -> None:
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise from_os_error("cannot open /dev/net/tun", exc) from None
        try:
            ifr = struct.pack("16sH22x", name.encode(), _IFF_TUN | _IFF_NO_PI)
            result = fcntl.ioctl(fd, _TUNSETIFF, ifr)
        except OSError as exc:
            os.close(fd)
            hint = f" (is {name} an interface of another kind? ip link show {name})" \
                if exc.errno == errno.EINVAL else ""
            raise from_os_error(f"cannot create TUN device {name}{hint}", exc) from None
        self.fd = fd
        self.name = result[:16].rstrip(b"\0").decode()

    def fileno(self) -> int:
        return self.fd

    def read(self) -> bytes | None:
        """Raises SkipError when the device failed for good (deleted under skipd: EBADFD on
        every read from then on)."""
        try:
            return os.read(self.fd, _MAX_PACKET)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise from_os_error(f"TUN device {self.name} failed (deleted?)", exc) from None

    def write(self, packet: bytes) -> bool:
        """Hand a cleartext packet to the kernel; False if its queue is full (packet dropped,
        as a NIC would; the caller counts it)."""
        try:
            os.write(self.fd, packet)
        except (BlockingIOError, OSError):
            return False
        return True

    def close(self) -> None:
        """Closing the last descriptor removes the (non-persistent) device and its routes."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
