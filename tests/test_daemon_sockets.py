"""skipd's underlay sockets on a host without IPv6: how it tells, and that the IPv4-only
sockets still carry IPv4 and refuse IPv6 with an error skipd counts (loopback only)."""

from __future__ import annotations

import errno
import os
import socket
import struct

import pytest

from skip.daemon import sockets
from skip.daemon.sockets import RawSender, UdpTransport, ipv6_unavailable
from skip.wire.ip import build_ipv4, build_ipv6

REAL_SOCKET = socket.socket


def no_ipv6_kernel(family: int = socket.AF_INET, *args: object) -> socket.socket:
    """What socket() does under ipv6.disable=1, which a test cannot switch on."""
    if family == socket.AF_INET6:
        raise OSError(errno.EAFNOSUPPORT, os.strerror(errno.EAFNOSUPPORT))
    return REAL_SOCKET(family, *args)


def test_a_kernel_without_ipv6_is_recognised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sockets.socket, "socket", no_ipv6_kernel)
    assert ipv6_unavailable() == (
        f"the kernel has no IPv6 sockets ({os.strerror(errno.EAFNOSUPPORT)})")


def test_the_disable_sysctl_is_recognised(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    flag = tmp_path / "disable_ipv6"
    monkeypatch.setattr(sockets, "_DISABLE_IPV6", flag)
    flag.write_text("0\n")
    assert ipv6_unavailable() is None
    flag.write_text("1\n")
    assert ipv6_unavailable() == "net.ipv6.conf.all.disable_ipv6 is 1"


def test_ipv4_only_udp_transport_carries_ipv4(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sockets.socket, "socket", no_ipv6_kernel)
    receiver = REAL_SOCKET(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    port = receiver.getsockname()[1]
    udp = UdpTransport(0, 0, ipv6=False)
    try:
        datagram = build_ipv4("127.0.0.2", "127.0.0.1", 57, b"skip")
        udp.send(datagram, port=port)  # to the carried datagram's destination
        receiver.settimeout(5)
        data, source = receiver.recvfrom(100)
        assert data == datagram and source[0] == "127.0.0.1"
        with pytest.raises(OSError) as err:
            udp.send(build_ipv6("::2", "::1", 57, b"skip"), port=port)
        assert err.value.errno == errno.EAFNOSUPPORT
    finally:
        udp.close()
        receiver.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="raw sockets need root")
def test_ipv4_only_raw_sender_refuses_ipv6(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sockets.socket, "socket", no_ipv6_kernel)
    sender = RawSender(0, ipv6=False)
    try:
        assert sender.v6 is None
        with pytest.raises(OSError) as err:
            sender.send(build_ipv6("::1", "::1", 57, struct.pack("!I", 0)))
        assert err.value.errno == errno.EAFNOSUPPORT
    finally:
        sender.close()



@pytest.mark.skipif(os.geteuid() != 0, reason="raw sockets need root")
def test_raw_sender_addresses_each_datagram_to_its_own_destination(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The sendto addresses RawSender keeps (the kernel routes by them) stay right past its
    bound, for IPv4 and IPv6 alike."""
    monkeypatch.setattr(sockets, "_DESTINATIONS", 2)
    sender = RawSender(0)
    sent: list[tuple[bytes, object]] = []

    class Socket:  # records what would reach the kernel
        def sendto(self, datagram: bytes, to: object) -> None:
            sent.append((datagram, to))

    real = (sender.v4, sender.v6)
    sender.v4 = sender.v6 = Socket()  # type: ignore[assignment]
    try:
        for dst in ("192.0.2.1", "192.0.2.2", "2001:db8::7", "192.0.2.1", "2001:db8::8",
                    "192.0.2.2", "2001:db8::7"):
            build = build_ipv6 if ":" in dst else build_ipv4
            datagram = build("2001:db8::1" if ":" in dst else "192.0.2.9", dst, 57, b"skip")
            sender.send(datagram)
            assert sent[-1] == (datagram, (dst, 0))
            assert len(sender._to) <= 2
    finally:
        sender.v4, sender.v6 = real
        sender.close()
