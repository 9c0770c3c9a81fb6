"""A classic BPF socket filter on skipd's raw protocol-57 receivers (issue 15, floods).

Under a flood the legitimate packets died in the kernel's raw-socket queue behind the
attacker's, before skipd read a byte (docs/skipd.md, "Under attack"). The filter drops in the
kernel, before the queue, what skipd would drop anyway after a read and a parse: a
protocol-57 packet from an outer address no protecting rule names, unless it goes to a
multicast group (members send from addresses no rule of ours names). What a known peer's
address sends still reaches skipd, so garbage from it is counted by reason as before.

IPv4 only: an IPv6 raw socket's filter sees no IP header. And only when every protecting rule
names its peer by address (NSID 0): a rule naming it by MKID (nomadic or not) accepts it from
any address, and turns the filter off, as do more than MAX_ADDRESSES outer addresses (the
kernel's 4,096-instruction bound).
Why BPF rather than nftables rules: it needs no other program, dies with the socket (nothing
to clean up after a crash), and reload replaces it atomically (SO_ATTACH_FILTER swaps it).
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import socket
import struct

from skip.daemon.config import Config

SO_ATTACH_FILTER, SO_DETACH_FILTER = 26, 27
MAX_ADDRESSES = 1000  # 4 instructions each, under BPF_MAXINSNS (4096)
_INSN = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k

# opcodes (linux/bpf_common.h)
_LD_W_ABS = 0x20
_AND_K = 0x54
_JEQ_K = 0x15
_RET_K = 0x06
_ACCEPT, _DROP = 0x40000, 0

Insn = tuple[int, int, int, int]


def outer_networks(config: Config) -> list[ipaddress.IPv4Network] | None:
    """The IPv4 outer addresses SKIP packets may come from, or None when a rule makes that
    unknowable (a nomadic peer) or there are too many to test in the kernel."""
    nets: set[ipaddress.IPv4Network] = set()
    for rule in config.peers:
        if rule.action != "protect":
            continue
        if rule.nomadic or rule.peer.nsid:
            # a peer named by MKID is known by its name, from whatever address it sends
            # (nomadic, multihomed, a tunnel moved by a reload): its source proves nothing
            return None
        if rule.tunnel is not None:
            outer = [ipaddress.ip_network(rule.tunnel)]
        else:  # transport mode: the peers are the hosts themselves
            outer = [ipaddress.ip_network(h) for h in rule.hosts]
        nets.update(n for n in outer if isinstance(n, ipaddress.IPv4Network))
    if len(nets) > MAX_ADDRESSES:
        return None
    return sorted(nets)


def program(networks: list[ipaddress.IPv4Network]) -> list[Insn]:
    """The filter for the IPv4 receiver, as (code, jt, jf, k) instructions: to a multicast
    group, or from a known outer address, else drop. Jumps are relative and stay short (each
    accept is a ``ret`` right after its test), so any number of entries fits."""
    out: list[Insn] = [(_LD_W_ABS, 0, 0, 16), (_AND_K, 0, 0, 0xF0000000),  # to a group
                       (_JEQ_K, 0, 1, 0xE0000000), (_RET_K, 0, 0, _ACCEPT)]
    for net in networks:
        out.append((_LD_W_ABS, 0, 0, 12))  # the source address
        if net.prefixlen < 32:
            out.append((_AND_K, 0, 0, int(net.netmask)))
        out += [(_JEQ_K, 0, 1, int(net.network_address)), (_RET_K, 0, 0, _ACCEPT)]
    return [*out, (_RET_K, 0, 0, _DROP)]


def detach(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # ENOENT: none attached
        sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)


def attach(sock: socket.socket, insns: list[Insn]) -> None:
    """SO_ATTACH_FILTER: replaces any filter the socket had, atomically."""
    code = ctypes.create_string_buffer(b"".join(_INSN.pack(*i) for i in insns))
    fprog = struct.pack("@HP", len(insns), ctypes.addressof(code))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
