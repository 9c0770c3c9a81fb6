"""The underlay side: raw IP sockets for protocol 57, and optional SKIP-in-UDP.

Sending: one ``IPPROTO_RAW`` socket per family with the header included, because the keying
engine returns complete outer datagrams (their IP header is covered by AH in the legacy
profile, so skipd must send exactly those bytes). Each socket carries skipd's fwmark so its
own packets bypass the policy-routing table that steers protected destinations into the TUN
device: without the mark a transport-mode packet to a peer would loop back into skipd.

Receiving: a raw socket per family bound to protocol 57. IPv4 raw sockets deliver the IP
header; IPv6 ones never do (RFC 3542), so the receiver rebuilds it from ancillary data: the
fixed header from the packet info, hop limit, traffic class and flow label, and the
hop-by-hop, destination-options and routing headers in front of the SKIP header from
IPV6_HOPOPTS / IPV6_DSTOPTS / IPV6_RTHDR, in the order the kernel reports them (its order on
the wire), so a legacy AH that covers them still verifies. A fragment header is not rebuilt:
the kernel reassembled the datagram, as AH requires (RFC 4302 3.4.1).

IPv6 is optional: on a host without it (no IPv6 sockets, or net.ipv6.conf.all.disable_ipv6
set) skipd opens IPv4 sockets only, see :func:`ipv6_unavailable`.

SKIP-in-UDP carries the whole protocol-57 datagram as the UDP payload (as GRE-in-UDP keeps its
header), so a legacy AH over the IP header verifies unchanged; behind NAT, peers should name
themselves with an NSID other than 0, since addresses are rewritten.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from pathlib import Path

from skip.daemon.system_errors import from_os_error
from skip.wire.ip import PROTO_DSTOPTS, PROTO_HOPOPTS, PROTO_ROUTING, PROTO_SKIP

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_IPV6_FLOWINFO = 11
_IPV6_HDRINCL = 36
_IPV6_RECVPKTINFO = 49
_IPV6_PKTINFO = 50
_IPV6_RECVHOPLIMIT = 51
_IPV6_HOPLIMIT = 52
_IPV6_RECVTCLASS = 66
_IPV6_TCLASS = 67
#: ancillary type -> the extension header's own protocol number (RFC 3542 section 4)
_EXTENSION_CMSGS = {socket.IPV6_HOPOPTS: PROTO_HOPOPTS, socket.IPV6_RTHDR: PROTO_ROUTING,
                    socket.IPV6_DSTOPTS: PROTO_DSTOPTS}
_IPV6 = struct.Struct("!IHBB16s16s")
_MAX = 65535
#: datagrams a reader takes per wake-up: a flood on one socket leaves the event loop to the
#: rest (sockets are watched level-triggered, so what is left is read at the next turn)
READ_BATCH = 64
_DESTINATIONS = 1024  # sendto addresses RawSender keeps
#: room for the fixed-header items and four extension headers of the largest size (2048
#: bytes: hop-by-hop, destination options before and after a routing header, the routing
#: header); more is refused (MSG_CTRUNC) rather than passed on with headers missing
_CMSG_SPACE = socket.CMSG_SPACE(20) + 3 * socket.CMSG_SPACE(4) + 4 * socket.CMSG_SPACE(2048)
_SO_RCVBUFFORCE = 33
#: a burst of full-size packets arrives faster than one Python thread drains them; the default
#: ~200 kB buffer overflows within a TCP window and every overflow is a retransmission
RECEIVE_BUFFER = 4 * 1024 * 1024


_DISABLE_IPV6 = Path("/proc/sys/net/ipv6/conf/all/disable_ipv6")


def ipv6_unavailable() -> str | None:
    """Why this host cannot carry IPv6, or None when it can.

    Two ways to lack it: a kernel without IPv6 (``ipv6.disable=1``: no AF_INET6 socket at
    all), and the sysctl ``net.ipv6.conf.all.disable_ipv6 = 1``, under which IPv6 sockets
    still open but no interface has an address, so nothing would ever arrive on them.
    """
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close()
    except OSError as exc:
        return f"the kernel has no IPv6 sockets ({exc.strerror})"
    try:
        if _DISABLE_IPV6.read_text().strip() == "1":
            return "net.ipv6.conf.all.disable_ipv6 is 1"
    except OSError:
        pass  # no such sysctl: nothing disables IPv6
    return None


def _big_receive_buffer(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, RECEIVE_BUFFER)
    except PermissionError:  # without CAP_NET_ADMIN: as much as net.core.rmem_max allows
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)


def _open(family: int, kind: int, proto: int) -> socket.socket:
    try:
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        name = {int(socket.SOCK_RAW): "raw", int(socket.SOCK_DGRAM): "UDP"}.get(kind, "")
        version = 4 if family == socket.AF_INET else 6
        raise from_os_error(f"cannot open a {name} IPv{version} socket", exc) from None
    sock.setblocking(False)
    return sock


def marked(family: int, kind: int, proto: int, mark: int) -> socket.socket:
    """A non-blocking socket with skipd's fwmark, so what it sends never enters the TUN
    device; a failure is an ``io_error`` naming what could not be opened."""
    sock = _open(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
    except OSError as exc:
        sock.close()
        raise from_os_error(f"cannot put fwmark {mark:#x} on a socket", exc) from None
    return sock


def raw_ipv6_sender(mark: int) -> socket.socket:
    """A marked raw IPv6 socket that sends datagrams whole (IPV6_HDRINCL)."""
    sock = marked(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW, mark)
    sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_HDRINCL, 1)
    return sock


def marked_stream(ipv6: bool, mark: int) -> socket.socket:
    """A non-blocking TCP socket with skipd's fwmark (DNS over TCP goes around the tunnel)."""
    sock = marked(socket.AF_INET6 if ipv6 else socket.AF_INET, socket.SOCK_STREAM, 0, mark)
    sock.setblocking(False)
    return sock


_IP_MTU = 14  # getsockopt on a connected socket: the kernel's MTU for its route
_IPV6_MTU = 24


def path_mtu(packed: bytes, mark: int) -> int | None:
    """The MTU of the kernel's route toward ``packed`` (an IPv4 or IPv6 address) for packets
    carrying ``mark``, or None when there is no route.

    A UDP socket connected to the destination (connect sends nothing) answers ``IP_MTU`` /
    ``IPV6_MTU`` with what the kernel itself will enforce: the device MTU, a route's ``mtu``
    and any path MTU it learned from ICMP. It is one synchronous call of a few microseconds,
    so the per-packet path can ask it on a miss instead of waiting for a netlink thread; the
    mark makes it follow the route skipd's own packets take (not table 57 into the TUN)."""
    family = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            if mark:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
            sock.connect((socket.inet_ntop(family, packed), 9))
            if family == socket.AF_INET:
                return sock.getsockopt(socket.IPPROTO_IP, _IP_MTU)
            return sock.getsockopt(socket.IPPROTO_IPV6, _IPV6_MTU)
    except OSError:
        return None


class RawSender:
    """Sends complete IPv4/IPv6 datagrams with skipd's fwmark (IPv6 only with ``ipv6``)."""

    def __init__(self, mark: int, *, ipv6: bool = True) -> None:
        self.v4 = marked(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW, mark)
        self.v6: socket.socket | None = None
        if ipv6:
            self.v6 = raw_ipv6_sender(mark)
        self._to: dict[bytes, tuple[str, int]] = {}  # packed destination -> sendto address

    def send(self, datagram: bytes) -> None:
        """Raises OSError (EMSGSIZE, ENETUNREACH, ...) for the caller to count."""
        if datagram[0] >> 4 == 4:
            packed = datagram[16:20]
            self.v4.sendto(datagram, self._to.get(packed) or self._learn(packed))
        elif self.v6 is None:
            raise OSError(errno.EAFNOSUPPORT, "skipd runs IPv4-only")
        else:
            packed = datagram[24:40]
            self.v6.sendto(datagram, self._to.get(packed) or self._learn(packed))

    def _learn(self, packed: bytes) -> tuple[str, int]:
        """``sendto``'s address for a destination, kept: a tunnel sees a handful of them, and
        writing one as text cost more per packet than the lookup (at most _DESTINATIONS kept,
        all forgotten at once past that)."""
        if len(self._to) >= _DESTINATIONS:
            self._to.clear()
        family = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
        to = self._to[packed] = (socket.inet_ntop(family, packed), 0)
        return to

    def close(self) -> None:
        self.v4.close()
        if self.v6 is not None:
            self.v6.close()


class RawReceiver:
    """Protocol-57 datagrams addressed to this host, as complete IP datagrams."""

    def __init__(self, family: int) -> None:
        self.family = family
        self.sock = _open(family, socket.SOCK_RAW, PROTO_SKIP)
        _big_receive_buffer(self.sock)
        if family == socket.AF_INET6:
            # everything of the IPv6 header the kernel strips, so the rebuilt header is the
            # one that was sent: a legacy AH (RFC 1826) covers the flow label and class
            for option in (_IPV6_RECVPKTINFO, _IPV6_RECVHOPLIMIT, _IPV6_RECVTCLASS,
                           _IPV6_FLOWINFO, socket.IPV6_RECVHOPOPTS, socket.IPV6_RECVDSTOPTS,
                           socket.IPV6_RECVRTHDR):
                self.sock.setsockopt(socket.IPPROTO_IPV6, option, 1)

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> bytes | None:
        try:
            if self.family == socket.AF_INET:
                return self.sock.recv(_MAX)
            data, ancillary, flags, source = self.sock.recvmsg(_MAX, _CMSG_SPACE)
        except BlockingIOError:
            return None
        if flags & socket.MSG_CTRUNC:
            raise OSError(errno.EMSGSIZE, "IPv6 extension headers beyond the ancillary buffer")
        dst, hops, tclass, flow = b"\0" * 16, 64, 0, 0
        chain: list[tuple[int, bytes]] = []
        for level, kind, value in ancillary:
            if level != socket.IPPROTO_IPV6 or len(value) < 4:
                continue
            if kind in _EXTENSION_CMSGS:
                chain.append((_EXTENSION_CMSGS[kind], value))
            elif kind == _IPV6_PKTINFO and len(value) >= 16:
                dst = value[:16]
            elif kind == _IPV6_HOPLIMIT:
                hops = struct.unpack("=i", value[:4])[0]
            elif kind == _IPV6_TCLASS:
                tclass = struct.unpack("=i", value[:4])[0] & 0xFF
            elif kind == _IPV6_FLOWINFO:
                flow = struct.unpack("!I", value[:4])[0] & 0xFFFFF
        src = socket.inet_pton(socket.AF_INET6, source[0].split("%")[0])
        first = 6 << 28 | tclass << 20 | flow
        headers, next_header = b"", PROTO_SKIP
        if chain:
            # each header's Next Header names the one rebuilt after it, the last one SKIP
            kinds = [kind for kind, _ in chain[1:]] + [PROTO_SKIP]
            headers = b"".join(bytes((nxt,)) + value[1:]
                               for nxt, (_, value) in zip(kinds, chain, strict=True))
            next_header = chain[0][0]
        return _IPV6.pack(first, len(headers) + len(data), next_header, hops, src,
                          dst) + headers + data

    def close(self) -> None:
        self.sock.close()


class UdpTransport:
    """SKIP-in-UDP on one port, IPv4 and IPv6 on a single dual-stack socket (an IPv4 one
    without ``ipv6``)."""

    def __init__(self, port: int, mark: int, *, ipv6: bool = True) -> None:
        self.port = port
        self.ipv6 = ipv6
        #: (host, port) the last datagram came from: behind NAT, where replies must go
        self.last_source: tuple[str, int] | None = None
        self.sock = marked(socket.AF_INET6 if ipv6 else socket.AF_INET, socket.SOCK_DGRAM, 0,
                            mark)
        if ipv6:
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        _big_receive_buffer(self.sock)
        # no SO_REUSEADDR: UDP has no TIME_WAIT to wait out, and with it a second skipd on
        # the same port would silently share (and take over) this one's traffic
        try:
            self.sock.bind(("::" if ipv6 else "0.0.0.0", port))
        except OSError as exc:
            self.sock.close()
            raise from_os_error(f"cannot bind the SKIP-in-UDP port {port}", exc) from None

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, datagram: bytes, to: tuple[str, int] | None = None,
             port: int | None = None) -> None:
        """To ``to`` (an address a peer was seen at), else to the carried datagram's
        destination on ``port`` (default: our own port)."""
        if to is None:
            if datagram[0] >> 4 == 4:
                host = socket.inet_ntop(socket.AF_INET, datagram[16:20])
                if self.ipv6:
                    host = "::ffff:" + host  # the IPv4-mapped form a dual-stack socket takes
            elif not self.ipv6:
                raise OSError(errno.EAFNOSUPPORT, "skipd runs IPv4-only")
            else:
                host = socket.inet_ntop(socket.AF_INET6, datagram[24:40])
            to = (host, port or self.port)
        self.sock.sendto(datagram, to)

    def read(self) -> bytes | None:
        try:
            data, source = self.sock.recvfrom(_MAX)
        except BlockingIOError:
            return None
        self.last_source = (source[0], source[1])
        return data

    def close(self) -> None:
        self.sock.close()


class DatagramSocket:
    """A marked UDP socket for skipd's own protocols (CDP): dual-stack unless IPv4-only,
    non-blocking, addresses given and taken in their plain text form (an IPv4 peer is
    "192.0.2.2", never the "::ffff:" form a dual-stack socket uses underneath)."""

    def __init__(self, port: int, mark: int, *, ipv6: bool = True, what: str = "UDP") -> None:
        self.ipv6 = ipv6
        self.sock = marked(socket.AF_INET6 if ipv6 else socket.AF_INET, socket.SOCK_DGRAM, 0,
                            mark)
        if ipv6:
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        self.sock.setblocking(False)
        try:
            self.sock.bind(("::" if ipv6 else "0.0.0.0", port))
        except OSError as exc:
            self.sock.close()
            raise from_os_error(f"cannot bind the {what} port {port}", exc) from None
        self.port = self.sock.getsockname()[1]

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, data: bytes, to: tuple[str, int]) -> None:
        host = to[0]
        if self.ipv6 and ":" not in host:
            host = "::ffff:" + host
        elif not self.ipv6 and ":" in host:
            raise OSError(errno.EAFNOSUPPORT, "skipd runs IPv4-only")
        self.sock.sendto(data, (host, to[1]))

    def read(self) -> tuple[bytes, tuple[str, int]] | None:
        try:
            data, source = self.sock.recvfrom(_MAX)
        except BlockingIOError:
            return None
        host = source[0]
        if host.startswith("::ffff:") and "." in host:
            host = host[len("::ffff:"):]
        return data, (host, source[1])

    def close(self) -> None:
        self.sock.close()
