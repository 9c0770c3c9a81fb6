"""A classic BPF socket filter on skipd's raw protocol-57 receivers (issue 15, floods).

Under a flood the legitimate packets died in the kernel's raw-socket queue behind the
attacker's, before skipd read a byte (docs/skipd.md, "Under attack"). The filter drops in the
kernel, before the queue, what skipd would drop anyway after a read and a parse: a
protocol-57 packet from an outer address no protecting rule names, unless it goes to a
multicast group (members send from addresses no rule of ours names). What a known peer's
address sends still reaches skipd, so garbage from it is counted by reason as before.

Two lanes for what a known address sends (a flood may spoof one: a known peer's address
is easy to write into a packet). The first queue, read 64 packets a wake-up, admits only
packets whose wrapped Kp (the first four bytes of the EKp, right after the SKIP header's
fixed twelve) is one of a receive Kp skipd holds: the peers' live traffic. Everything else
from a known address (a peer's first packet under a new Kp, and forged EKps, garbage,
replays of old captures) goes to a second, small queue read 8 packets a wake-up, so a
flood there costs skipd a bounded share of its time and the live traffic none of its
queue. skipd re-attaches both filters whenever its set of receive Kps changes (new Kps
are rare: one per peer every 2 minutes or 10 MB by default); a new Kp's first packets wait
in the second queue until then. What the filter cannot tell: a replay of live traffic
captured in the last minutes (same EKp) still takes the first lane, where the replay
window refuses it cheaply.

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
_MAX_INSNS = 4096  # BPF_MAXINSNS; two lanes need 5 per address and 2 per EKp
SLOW_BATCH = 8  # packets read from the second lane per wake-up (the first: 64)
SLOW_BUFFER = 256 * 1024  # the second lane's receive buffer: a flood fills it, not skipd
_INSN = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k

# opcodes (linux/bpf_common.h)
_LD_W_ABS = 0x20
_LD_W_IND = 0x40  # A = the word at X + k
_LDX_MSH = 0xB1  # X = 4 * (byte k & 0xF): the IPv4 header length
_LD_W_LEN = 0x80  # A = the packet's length
_SUB_X = 0x1C  # A -= X
_JGE_K = 0x35
_AND_K = 0x54
_JEQ_K = 0x15
_JA = 0x05
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
    """The one-lane filter (the EKps unknown, or too many to test): to a multicast group,
    or from a known outer address, else drop. Jumps are relative and stay short (each
    accept is a ``ret`` right after its test), so any number of entries fits."""
    out: list[Insn] = [*_to_group(_ACCEPT)]
    for net in networks:
        out += [*_source_test(net), (_JEQ_K, 0, 1, int(net.network_address)),
                (_RET_K, 0, 0, _ACCEPT)]
    return [*out, (_RET_K, 0, 0, _DROP)]


def lane_programs(networks: list[ipaddress.IPv4Network], ekps: list[bytes]
                  ) -> tuple[list[Insn], list[Insn]]:
    """The two lanes' filters (see the module's doc): (first, second). Group traffic takes
    the first lane; from a known address, a packet under a live EKp the first, any other
    the second; from elsewhere, neither."""
    prefixes = sorted({int.from_bytes(e[:4]) for e in ekps if len(e) >= 4})
    return (_lanes(networks, prefixes, _ACCEPT, _ACCEPT, _DROP),
            _lanes(networks, prefixes, _DROP, _DROP, _ACCEPT))


def _lanes(networks: list[ipaddress.IPv4Network], prefixes: list[int], group: int,
           live: int, other: int) -> list[Insn]:
    out: list[Insn] = [*_to_group(group)]
    jumps = []
    for net in networks:  # a match jumps (unconditionally: the test may be far) to the EKp
        out += [*_source_test(net), (_JEQ_K, 0, 1, int(net.network_address))]
        jumps.append(len(out))
        out.append((_JA, 0, 0, 0))
    out.append((_RET_K, 0, 0, _DROP))  # from an address no rule names
    check = len(out)
    for at in jumps:
        out[at] = (_JA, 0, 0, check - at - 1)
    # too short to hold an EKp word: the second lane, where skipd counts it (truncated)
    out += [(_LDX_MSH, 0, 0, 0), (_LD_W_LEN, 0, 0, 0), (_SUB_X, 0, 0, 0),
            (_JGE_K, 1, 0, 16), (_RET_K, 0, 0, other),
            (_LD_W_IND, 0, 0, 12)]  # the EKp's first word
    for prefix in prefixes:
        out += [(_JEQ_K, 0, 1, prefix), (_RET_K, 0, 0, live)]
    return [*out, (_RET_K, 0, 0, other)]


def _to_group(verdict: int) -> list[Insn]:
    return [(_LD_W_ABS, 0, 0, 16), (_AND_K, 0, 0, 0xF0000000),
            (_JEQ_K, 0, 1, 0xE0000000), (_RET_K, 0, 0, verdict)]


def _source_test(net: ipaddress.IPv4Network) -> list[Insn]:
    out: list[Insn] = [(_LD_W_ABS, 0, 0, 12)]  # the source address
    if net.prefixlen < 32:
        out.append((_AND_K, 0, 0, int(net.netmask)))
    return out


DROP_ALL: list[Insn] = [(_RET_K, 0, 0, _DROP)]


def lanes_fit(networks: int, ekps: int) -> bool:
    return 4 + 5 * networks + 7 + 2 * ekps + 1 <= _MAX_INSNS


class Lanes:
    """The two IPv4 receivers' filters, kept in step with the configuration's outer
    addresses and the live EKps. ``two`` says whether the second lane is in use; with the
    filter off (``networks`` None) or too much to test, the first lane takes what the
    one-lane filter admits and the second nothing, so no packet is read twice."""

    def __init__(self, first: socket.socket, second: socket.socket) -> None:
        self.first, self.second = first, second
        self.ekps: list[bytes] = []
        self.two = False
        self.generation = -1  # the engine's rx_generation the EKps are from

    def apply(self, networks: list[ipaddress.IPv4Network] | None, ekps: list[bytes],
              generation: int) -> None:
        """Raises OSError (the caller turns the filter off and says so). In three steps,
        so that no packet finds neither lane admitting it: the first lane admits the old
        and the new EKps, the second the rest of the new, the first just the new. A packet
        may meanwhile be read twice: its copy is refused as a replay."""
        self.generation = generation
        if networks is None:
            detach(self.first)
            attach(self.second, DROP_ALL)
            self.two = False
            return
        if not lanes_fit(len(networks), len(ekps)):
            attach(self.first, program(networks))
            attach(self.second, DROP_ALL)
            self.two = False
            return
        first, second = lane_programs(networks, ekps)
        if self.two:
            attach(self.first, lane_programs(networks, self.ekps + ekps)[0])
        else:  # from one lane: the first admits every known source until the second is on
            attach(self.first, program(networks))
        attach(self.second, second)
        attach(self.first, first)
        self.ekps, self.two = ekps, True


def detach(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # ENOENT: none attached
        sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)


def attach(sock: socket.socket, insns: list[Insn]) -> None:
    """SO_ATTACH_FILTER: replaces any filter the socket had, atomically."""
    code = ctypes.create_string_buffer(b"".join(_INSN.pack(*i) for i in insns))
    fprog = struct.pack("@HP", len(insns), ctypes.addressof(code))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
