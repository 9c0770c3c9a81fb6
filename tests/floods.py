"""The floods of issue 15 as packets and flooders, shared by tests/test_daemon_kernel_filter.py
and tools/benchmarks/flood.py: protocol-57 datagrams (IPv4, IP_HDRINCL: the kernel fills in
length and checksum) that pass more or fewer of skipd's checks, and a process that sends one
of them as fast as Python can."""

from __future__ import annotations

import ipaddress
import os
import struct
import subprocess
import sys
import time

from skip.crypto import kdf
from skip.crypto import skip_numbers as num
from tests.netns import Namespace

#: flood kind -> the reason skipd counts it under (what it reads of it)
REASONS = {"unknown_source": "", "forged_ekp": "kp_unwrap_failed", "garbage": "bad_version",
           "unknown_algorithm": "unsupported_kij_alg", "replay": "replay"}


def ipv4(src: str, dst: str, body: bytes) -> bytes:
    """An IPv4 (or, for IPv6 addresses, IPv6) protocol-57 datagram around ``body``."""
    if ":" in src:
        return struct.pack("!IHBB16s16s", 6 << 28, len(body), 57, 64,
                           ipaddress.ip_address(src).packed,
                           ipaddress.ip_address(dst).packed) + body
    return bytes([0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 57, 0, 0]) + \
        bytes(map(int, src.split("."))) + bytes(map(int, dst.split("."))) + body


def forged_ekp(src: str, dst: str) -> bytes:
    """A well-formed modern SKIP header from ``src`` (AES-256 key wrap, AES-256-GCM, the
    current n) whose wrapped Kp is random: it passes every test but the unwrap."""
    skip = bytes([0x20, 0, 0, 50]) + kdf.counter_n(time.time()).to_bytes(4, "big") + \
        bytes([num.AES256_KEY_WRAP, num.AES256_GCM, num.AES256_GCM, 0]) + os.urandom(40)
    return ipv4(src, dst, skip + b"\0\0\0\1" + os.urandom(76))  # ESP: SPI 1, seq, IV, ICV


def datagram(kind: str, src: str, dst: str, captured: bytes) -> bytes:
    """One flood packet of ``kind`` from ``src`` (``captured``: a real packet, replayed)."""
    if kind == "unknown_source":
        return ipv4(src, dst, bytes([0x20]) + os.urandom(99))
    if kind == "forged_ekp":
        return forged_ekp(src, dst)
    if kind == "garbage":  # a SKIP version nobody speaks, then noise
        return ipv4(src, dst, bytes([0xF0]) + os.urandom(120))
    if kind == "unknown_algorithm":  # Kij Alg 250
        skip = forged_ekp(src, dst)[40 if ":" in src else 20:]
        return ipv4(src, dst, skip[:8] + bytes([250]) + os.urandom(120))
    if kind == "replay":
        return captured
    raise ValueError(kind)


def flooder(ns: Namespace, packet: bytes, seconds: float) -> subprocess.Popen:
    """``packet`` from ``ns`` as fast as one Python process sends, for ``seconds``; prints
    how many it sent."""
    v6 = packet[0] >> 4 == 6
    setup = ("s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)\n"
             "s.setsockopt(socket.IPPROTO_IPV6, 36, 1)\n"  # IPV6_HDRINCL
             "to = (socket.inet_ntop(socket.AF_INET6, d[24:40]), 0)\n") if v6 else (
             "s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)\n"
             "to = (socket.inet_ntoa(d[16:20]), 0)\n")
    return ns.popen(sys.executable, "-c", (
        "import socket, time\n"
        f"d = {packet!r}\n" + setup +
        f"end = time.monotonic() + {seconds}; n = 0\n"
        "while time.monotonic() < end:\n"
        "    for _ in range(1000):\n"
        "        s.sendto(d, to)\n"
        "    n += 1000\n"
        "print(n)\n"), stdout=subprocess.PIPE, text=True)


def capture_one(ns: Namespace, trigger: object) -> bytes:
    """The first protocol-57 packet ``ns`` receives after ``trigger()`` (e.g. a ping through
    the tunnel), read off a raw socket: a real packet to replay."""
    listener = ns.popen(sys.executable, "-c", (
        "import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 57)\n"
        "s.settimeout(10); sys.stdout.write(s.recv(65535).hex())\n"),
        stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    assert callable(trigger) and trigger()
    return bytes.fromhex(listener.communicate(timeout=10)[0])


def ping_loss(output: str) -> float:
    """The loss in per cent from ping -q's summary."""
    return float(output.split("% packet loss")[0].rsplit(" ", 1)[-1])
