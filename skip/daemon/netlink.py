"""The few rtnetlink requests skipd makes (RFC 3549; linux/rtnetlink.h), and nothing else.

skipd configures its TUN device (MTU, queue length, up, addresses), one policy rule per
family and the routes of its table: eight kinds of request, none per packet. pyroute2 did
this before, and importing it cost 0.14 to 0.19 s of a start-up that is meant to take 0.3 s
in all (its package imports every netlink family it knows, unittest.mock included), so the
requests are built here: a header, a fixed family struct, type-length-value attributes; the
kernel answers each with an acknowledgement or an error number, and a dump with messages
until NLMSG_DONE. Errors raise :class:`NetlinkError`, an OSError whose ``errno`` is the
kernel's. The extended acknowledgement's text (NETLINK_EXT_ACK) is kept in the message where
the kernel gives one. Synchronous and blocking: skipd runs it on its netlink thread.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_ATTR = struct.Struct("=HH")  # rtattr: length, type
_IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg and fib_rule_hdr share this layout
_ERROR = struct.Struct("=i")
_U32 = struct.Struct("=I")

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
RTM_NEWLINK, RTM_NEWADDR = 16, 20
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWRULE, RTM_DELRULE = 32, 33
IFLA_MTU, IFLA_TXQLEN = 4, 13
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_PRIORITY, RTA_PREFSRC, RTA_TABLE, RTA_MARK = 1, 4, 6, 7, 15, 16
FRA_PRIORITY, FRA_FWMARK, FRA_TABLE, FRA_FWMASK = 6, 10, 15, 16
RTN_UNICAST, RTN_UNREACHABLE = 1, 7
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE, RT_SCOPE_NOWHERE = 0, 255  # NOWHERE in a deletion: any scope
RT_TABLE_UNSPEC = 0
FR_ACT_TO_TBL = 1
IFF_UP = 0x1
_SOL_NETLINK, _NETLINK_EXT_ACK = 270, 11
_NLM_F_ACK_TLVS = 0x200  # in an error's flags: attributes follow the quoted request
_NLMSGERR_ATTR_MSG = 1
_RECEIVE = 1 << 16


class NetlinkError(OSError):
    """The kernel refused a request: ``errno`` says why, the message says which."""


@dataclass(frozen=True, slots=True)
class Route:
    """The parts of a dumped route skipd reads."""

    family: int
    kind: int  # RTN_*
    table: int
    dst: bytes  # packed; empty for a default route
    dst_len: int
    priority: int | None


def _attr(kind: int, value: bytes) -> bytes:
    size = _ATTR.size + len(value)
    return _ATTR.pack(size, kind) + value + bytes(-size % 4)


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, _U32.pack(value))


def attributes(data: bytes, offset: int) -> dict[int, bytes]:
    """The rtattrs from ``offset`` to the end, by type (bounded by the data: a length that
    runs past it ends the walk)."""
    found: dict[int, bytes] = {}
    end = len(data)
    while offset + _ATTR.size <= end:
        size, kind = _ATTR.unpack_from(data, offset)
        if size < _ATTR.size or offset + size > end:
            break
        found[kind & 0x3FFF] = data[offset + _ATTR.size:offset + size]  # less NLA_F_ flags
        offset += (size + 3) & ~3
    return found


class Rtnetlink:
    """One NETLINK_ROUTE socket; each request waits for the kernel's answer."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.bind((0, 0))
        # a kernel without extended acknowledgements: plain error numbers
        with contextlib.suppress(OSError):
            self.sock.setsockopt(_SOL_NETLINK, _NETLINK_EXT_ACK, 1)
        self._seq = itertools.count(1)

    def close(self) -> None:
        self.sock.close()

    # --- requests ----------------------------------------------------------------------------

    def set_link(self, index: int, *, mtu: int | None = None, txqlen: int | None = None,
                 up: bool = False) -> None:
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, IFF_UP if up else 0,
                            IFF_UP if up else 0)
        if mtu is not None:
            body += _u32(IFLA_MTU, mtu)
        if txqlen is not None:
            body += _u32(IFLA_TXQLEN, txqlen)
        self._ack(RTM_NEWLINK, 0, body)

    def add_address(self, index: int, family: int, address: bytes, prefixlen: int,
                    flags: int = 0) -> None:
        body = _IFADDR.pack(family, prefixlen, flags, RT_SCOPE_UNIVERSE, index)
        self._ack(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL,
                  body + _attr(IFA_LOCAL, address) + _attr(IFA_ADDRESS, address))

    def rule(self, add: bool, family: int, *, table: int, priority: int, fwmark: int,
             fwmask: int, flags: int) -> None:
        """``add``: create it (EEXIST if the same rule is there); else delete it (ENOENT)."""
        body = _RTMSG.pack(family, 0, 0, 0, table if table < 256 else RT_TABLE_UNSPEC, 0, 0,
                           FR_ACT_TO_TBL, flags)
        body += _u32(FRA_PRIORITY, priority) + _u32(FRA_FWMARK, fwmark) + \
            _u32(FRA_FWMASK, fwmask) + _u32(FRA_TABLE, table)
        if add:
            self._ack(RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL, body)
        else:
            self._ack(RTM_DELRULE, 0, body)

    def route(self, op: str, family: int, dst: bytes, dst_len: int, *, table: int,
              kind: int = RTN_UNICAST, oif: int | None = None, priority: int | None = None,
              prefsrc: bytes | None = None) -> None:
        """``op`` "replace" (add, or change what is there) or "del"."""
        body = _RTMSG.pack(family, dst_len, 0, 0, table if table < 256 else RT_TABLE_UNSPEC,
                           RTPROT_BOOT if op == "replace" else 0,
                           RT_SCOPE_UNIVERSE if op == "replace" else RT_SCOPE_NOWHERE, kind, 0)
        body += _attr(RTA_DST, dst) + _u32(RTA_TABLE, table)
        if oif is not None:
            body += _u32(RTA_OIF, oif)
        if priority is not None:
            body += _u32(RTA_PRIORITY, priority)
        if prefsrc is not None:
            body += _attr(RTA_PREFSRC, prefsrc)
        if op == "replace":
            self._ack(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, body)
        elif op == "del":
            self._ack(RTM_DELROUTE, 0, body)
        else:
            raise ValueError(f"route op {op!r}")

    def preferred_source(self, family: int, dst: bytes, mark: int) -> bytes | None:
        """``ip route get DST mark M``'s source address (None: no route, or none named)."""
        body = _RTMSG.pack(family, len(dst) * 8, 0, 0, 0, 0, 0, 0, 0) + \
            _attr(RTA_DST, dst) + _u32(RTA_MARK, mark)
        for kind, data in self._request(RTM_GETROUTE, 0, body):
            if kind == RTM_NEWROUTE:
                return attributes(data, _RTMSG.size).get(RTA_PREFSRC)
        return None

    def routes(self, family: int) -> list[Route]:
        """Every route of ``family``, of every table (the caller picks)."""
        out = []
        body = _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
        for kind, data in self._request(RTM_GETROUTE, NLM_F_DUMP, body):
            if kind != RTM_NEWROUTE or len(data) < _RTMSG.size:
                continue
            fam, dst_len, _src, _tos, table, _proto, _scope, rtype, _flags = \
                _RTMSG.unpack_from(data)
            attrs = attributes(data, _RTMSG.size)
            if RTA_TABLE in attrs:
                table = _U32.unpack(attrs[RTA_TABLE])[0]
            priority = _U32.unpack(attrs[RTA_PRIORITY])[0] if RTA_PRIORITY in attrs else None
            out.append(Route(fam, rtype, table, attrs.get(RTA_DST, b""), dst_len, priority))
        return out

    # --- the exchange ------------------------------------------------------------------------

    def _ack(self, kind: int, flags: int, body: bytes) -> None:
        for _ in self._request(kind, flags | NLM_F_ACK, body):
            pass

    def _request(self, kind: int, flags: int, body: bytes) -> Iterator[tuple[int, bytes]]:
        """Send one request; yield the (type, payload) of each answer until it is complete:
        the acknowledgement (an error message with errno 0), NLMSG_DONE after a dump, or the
        one answer of a plain request. A refusal raises NetlinkError."""
        seq = next(self._seq)
        self.sock.send(_HEADER.pack(_HEADER.size + len(body), kind, NLM_F_REQUEST | flags,
                                    seq, 0) + body)
        while True:
            data = self.sock.recv(_RECEIVE)
            offset = 0
            while offset + _HEADER.size <= len(data):
                size, mtype, mflags, mseq, _port = _HEADER.unpack_from(data, offset)
                if size < _HEADER.size or offset + size > len(data):
                    raise NetlinkError(errno.EBADMSG, "truncated netlink answer")
                payload = data[offset + _HEADER.size:offset + size]
                offset += (size + 3) & ~3
                if mseq != seq:
                    continue  # an answer to an earlier request that gave up
                if mtype == NLMSG_ERROR:
                    code = -_ERROR.unpack_from(payload)[0] if len(payload) >= 4 else errno.EIO
                    if code:
                        raise NetlinkError(code, _error_text(code, payload, mflags))
                    return  # the acknowledgement
                if mtype == NLMSG_DONE:
                    return
                yield mtype, payload
            if not flags & (NLM_F_ACK | NLM_F_DUMP):
                return  # a plain request's one answer


def _error_text(code: int, payload: bytes, flags: int) -> str:
    """The errno's text, and the kernel's own words after it when it sent some (extended
    acknowledgement: attributes after the quoted request, whose length it gives)."""
    text = os.strerror(code)
    if flags & _NLM_F_ACK_TLVS and len(payload) >= 4 + _HEADER.size:
        quoted = _HEADER.unpack_from(payload, 4)[0]
        # with NETLINK_CAP_ACK off the whole request is quoted; its length says where the
        # attributes start
        message = attributes(payload, 4 + ((quoted + 3) & ~3)).get(_NLMSGERR_ATTR_MSG)
        if message:
            text += f": {message.rstrip(bytes(1)).decode(errors='replace')}"
    return text
