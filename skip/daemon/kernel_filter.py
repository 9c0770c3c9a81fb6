"""A classic BPF socket filter on skipd's raw protocol-57 receivers (issue 15, floods).

Under a flood the legitimate packets died in the kernel's raw-socket queue behind the
attacker's, before skipd read a byte (docs/skipd.md, "Under attack"). The filter drops in the
kernel, before the queue, what skipd would drop anyway after a read and a parse: a
protocol-57 packet from an outer address no protecting rule names, unless it goes to a
multicast group (members send from addresses no rule of ours names). What a known peer's
address sends still reaches skipd, so garbage from it is counted by reason as before.

Two lanes for what a known address sends (a flood may spoof one: a known peer's address
is easy to write into a packet). The first queue, read 64 packets a wake-up, admits only
the peers' live traffic: packets whose wrapped Kp (the first four bytes of the EKp, right
after the SKIP header's fixed twelve) is one of a receive Kp skipd holds and, under a
modern Kp, whose sequence number is above the highest skipd had accepted under it when the
filter was last set. Everything else from a known address (a peer's first packet under a
new Kp, forged EKps, garbage, replays, late packets) goes to a second queue, read 8 packets
a wake-up plus one for each it delivers (up to 64: a new Kp's first packets, which wait there
until the first lane follows, must not fall behind the replay window), so a flood there
costs skipd a bounded share of its time and the live traffic
none of its queue (the same 4 MB buffer: a burst that is not a flood is still read and
counted whole). skipd re-attaches both filters whenever its set of receive Kps changes
(new Kps are rare: one per peer every 2 minutes or 10 MB by default) and, while traffic
flows, every LANE_REFRESH seconds for the numbers: until then a new Kp's first packets take
the second lane, and a replay of traffic younger than that the first (where the replay
window refuses it cheaply).

IPv4 and IPv6 alike: an IPv6 raw socket's filter sees the packet from the SKIP header on
(so X is 0 where IPv4's is the header length), its addresses at SKF_NET_OFF. And only when
every protecting rule names its peer by address (NSID 0): a rule naming it by MKID (nomadic
or not) accepts it from any address, and turns the filter off, as do more outer addresses
than MAX_ADDRESSES (the kernel's 4,096-instruction bound).
Why BPF rather than nftables rules: it needs no other program, dies with the socket (nothing
to clean up after a crash), and reload replaces it atomically (SO_ATTACH_FILTER swaps it).
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import socket
import struct
from collections.abc import Sequence
from typing import Any

from skip.daemon.config import Config

SO_ATTACH_FILTER, SO_DETACH_FILTER = 26, 27
#: outer addresses the one-lane filter can test, by IP version: 3 instructions each (IPv4),
#: 9 (IPv6), under BPF_MAXINSNS
MAX_ADDRESSES = {4: 1000, 6: 400}
_MAX_INSNS = 4096  # BPF_MAXINSNS; see capacity() for what two lanes need
SLOW_BATCH = 8  # packets read from the second lane per wake-up (the first: 64)
LANE_REFRESH = 0.1  # seconds between moves of the first lane's sequence-number floors
_INSN = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k

# opcodes (linux/bpf_common.h)
_LD_W_ABS = 0x20
_LD_W_IND = 0x40  # A = the word at X + k
_LDX_MSH = 0xB1  # X = 4 * (byte k & 0xF): the IPv4 header length
_LDX_IMM = 0x01  # X = k
_LD_B_ABS = 0x30
_NET = 0x100000000 - 0x100000  # SKF_NET_OFF (as the unsigned k): the network header
_LD_W_LEN = 0x80  # A = the packet's length
_SUB_X = 0x1C  # A -= X
_JGE_K = 0x35
_JGT_K = 0x25
_AND_K = 0x54
_JEQ_K = 0x15
_JA = 0x05
_RET_K = 0x06
_ACCEPT, _DROP = 0x40000, 0

Insn = tuple[int, int, int, int]


def outer_networks(config: Config, version: int = 4) -> list[Any] | None:
    """The outer addresses (networks) of IP ``version`` SKIP packets may come from, or None
    when a rule makes that unknowable (a nomadic peer) or there are too many to test in the
    kernel."""
    nets: set[Any] = set()
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
        nets.update(n for n in outer if n.version == version)
    if len(nets) > MAX_ADDRESSES[version]:
        return None
    return sorted(nets)


def group_addresses(config: Config, version: int = 4) -> list[int]:
    """The configured group addresses of IP ``version`` (as integers): multicast to any
    other group is dropped (Linux is always in 224.0.0.1 and ff02::1, which anyone on the
    LAN could flood)."""
    return sorted(int(g.address) for g in config.groups if g.address.version == version)


def program(networks: list[Any], groups: Sequence[int] = (), v6: bool = False) -> list[Insn]:
    """The one-lane filter (the EKps unknown, or too many to test): to a configured group,
    or from a known outer address, else drop. Jumps are relative and stay short (each
    accept is a ``ret`` right after its test), so any number of entries fits."""
    out: list[Insn] = [*_to_group(_ACCEPT, groups, v6)]
    for net in networks:
        out += _match(_source_words(net), (_RET_K, 0, 0, _ACCEPT))
    return [*out, (_RET_K, 0, 0, _DROP)]


#: a receive Kp as the filter sees it: (EKp, sequence number offset from the SKIP header or
#: None, the highest accepted): what Receiver.live_keys gives
LiveKey = tuple[bytes, int | None, int]


def lane_programs(networks: list[Any], keys: list[LiveKey], groups: Sequence[int] = (),
                  v6: bool = False) -> tuple[list[Insn], list[Insn]]:
    """The two lanes' filters (see the module's doc): (first, second). Group traffic takes
    the first lane; from a known address, a packet under a live Kp numbered above the
    highest accepted the first, any other the second; from elsewhere, neither."""
    return (_lanes(networks, keys, groups, v6, _ACCEPT, _ACCEPT, _DROP),
            _lanes(networks, keys, groups, v6, _DROP, _DROP, _ACCEPT))


def _tests(keys: list[LiveKey]) -> dict[int, tuple[int, int]]:
    """EKp word -> (sequence offset, floor); two Kps sharing a word (one chance in four
    billion) share the more permissive test, and so does a Kp listed twice (the old and
    new sets while the lanes change)."""
    out: dict[int, tuple[int, int]] = {}
    for ekp, seq_at, top in keys:
        if len(ekp) < 4:
            continue
        word = int.from_bytes(ekp[:4])
        test = (-1, 0) if seq_at is None else (seq_at, top)
        old = out.get(word)
        if old is None:
            out[word] = test
        elif old[0] != test[0] or test[0] < 0:
            out[word] = (-1, 0)
        else:
            out[word] = (test[0], min(old[1], test[1]))
    return out


def _lanes(networks: list[Any], keys: list[LiveKey], groups: Sequence[int], v6: bool,
           group: int, live: int, other: int) -> list[Insn]:
    out: list[Insn] = [*_to_group(group, groups, v6)]
    jumps = []
    for net in networks:  # a match jumps (unconditionally: the test may be far) to the EKp
        out += _match(_source_words(net), (_JA, 0, 0, 0))
        jumps.append(len(out) - 1)
    out.append((_RET_K, 0, 0, _DROP))  # from an address no rule names
    check = len(out)
    for at in jumps:
        out[at] = (_JA, 0, 0, check - at - 1)
    # X: where the SKIP header starts (IPv4: after the IP header; an IPv6 raw socket's
    # filter sees the packet from the SKIP header on, its IP header at SKF_NET_OFF)
    out.append((_LDX_IMM, 0, 0, 0) if v6 else (_LDX_MSH, 0, 0, 0))
    # too short to hold an EKp word: the second lane, where skipd counts it (truncated)
    out += [(_LD_W_LEN, 0, 0, 0), (_SUB_X, 0, 0, 0),
            (_JGE_K, 1, 0, 16), (_RET_K, 0, 0, other),
            (_LD_W_IND, 0, 0, 12)]  # the EKp's first word
    for word, (seq_at, floor) in sorted(_tests(keys).items()):
        if seq_at < 0:  # legacy: no numbers to test
            out += [(_JEQ_K, 0, 1, word), (_RET_K, 0, 0, live)]
        else:  # too short for the number: the second lane (skipd counts it truncated)
            out += [(_JEQ_K, 0, 8, word), (_LD_W_LEN, 0, 0, 0), (_SUB_X, 0, 0, 0),
                    (_JGE_K, 1, 0, seq_at + 4), (_RET_K, 0, 0, other),
                    (_LD_W_IND, 0, 0, seq_at),
                    (_JGT_K, 0, 1, floor), (_RET_K, 0, 0, live), (_RET_K, 0, 0, other)]
    return [*out, (_RET_K, 0, 0, other)]


def _to_group(verdict: int, groups: Sequence[int], v6: bool) -> list[Insn]:
    """To a configured group: ``verdict``; to any other multicast address: drop."""
    out: list[Insn] = []
    for address in groups:
        words = _words(_NET + 24, address, 2**128 - 1) if v6 else [(16, 0xFFFFFFFF, address)]
        out += _match(words, (_RET_K, 0, 0, verdict))
    if v6:  # ff00::/8
        return [*out, (_LD_B_ABS, 0, 0, _NET + 24), (_JEQ_K, 0, 1, 0xFF), (_RET_K, 0, 0, _DROP)]
    return [*out, (_LD_W_ABS, 0, 0, 16), (_AND_K, 0, 0, 0xF0000000),
            (_JEQ_K, 0, 1, 0xE0000000), (_RET_K, 0, 0, _DROP)]


def _source_words(net: Any) -> list[tuple[int, int, int]]:
    """The source-address tests for ``net``: (load offset, mask, value) per 32-bit word
    (IPv6: at SKF_NET_OFF + 8)."""
    if net.version == 4:
        return [(12, int(net.netmask), int(net.network_address))]
    return _words(_NET + 8, int(net.network_address), int(net.netmask))


def _words(offset: int, value: int, mask: int) -> list[tuple[int, int, int]]:
    """A 128-bit address test as (load offset, mask, value) per 32-bit word, the words the
    mask leaves out skipped."""
    words = []
    for i in range(4):
        shift = 96 - 32 * i
        if m := mask >> shift & 0xFFFFFFFF:
            words.append((offset + 4 * i, m, value >> shift & 0xFFFFFFFF))
    return words


def _match(words: list[tuple[int, int, int]], action: Insn) -> list[Insn]:
    """``action`` when every word matches, else on past it: each test's false branch
    skips the rest (at most 16 instructions: short jumps)."""
    tail = [action]
    for offset, mask, value in reversed(words):
        block: list[Insn] = [(_LD_W_ABS, 0, 0, offset)]
        if mask != 0xFFFFFFFF:
            block.append((_AND_K, 0, 0, mask))
        tail = [*block, (_JEQ_K, 0, len(tail), value), *tail]
    return tail


DROP_ALL: list[Insn] = [(_RET_K, 0, 0, _DROP)]


def detach(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # ENOENT: none attached
        sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)


def attach(sock: socket.socket, insns: list[Insn]) -> None:
    """SO_ATTACH_FILTER: replaces any filter the socket had, atomically."""
    code = ctypes.create_string_buffer(b"".join(_INSN.pack(*i) for i in insns))
    fprog = struct.pack("@HP", len(insns), ctypes.addressof(code))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def capacity(networks: list[Any] | None, groups: Sequence[int], v6: bool = False) -> int:
    """How many live keys two lanes can test beside ``networks`` and ``groups`` (0: none,
    one lane): 9 instructions each, besides 3 per IPv4 address or group (9 per IPv6 one)
    and 12 more."""
    if networks is None:
        return 0
    each = 9 if v6 else 3
    return max(0, (_MAX_INSNS - 12 - each * len(groups) - (each + 2) * len(networks)) // 9)


class Lanes:
    """One IP version's two receivers' filters, kept in step with the configuration's outer
    addresses and the live receive Kps. ``two`` says whether the second lane is in use;
    with the filter off (``networks`` None) or too much to test, the first lane takes what
    the one-lane filter admits and the second nothing, so no packet is read twice."""

    def __init__(self, first: socket.socket, second: socket.socket, v6: bool = False) -> None:
        self.first, self.second, self.v6 = first, second, v6
        self.keys: list[LiveKey] = []
        self.two = False
        self.generation = -1  # the engine's rx_generation the keys are from
        self.applied = 0.0  # when (monotonic)

    def apply(self, networks: list[Any] | None, keys: list[LiveKey] | None,
              generation: int, now: float, groups: Sequence[int] = ()) -> None:
        """``keys`` None: more than :func:`capacity` (one lane). Raises OSError (the caller
        turns the filter off and says so). No packet may find neither lane admitting it
        while the filters change: with other keys, the first lane first admits every known
        source (a superset of old and new), then the second takes its new filter, then the
        first; when only the floors rose (the first lane admits less, the second more), the
        second goes first. Meanwhile a packet may be read from both lanes: only packets the
        first lane stops admitting (non-live ones, numbered at or below a floor that rose),
        counted again under their reason (a modern Kp's packet as a replay)."""
        same_keys = generation == self.generation
        self.generation, self.applied = generation, now
        if networks is None:
            detach(self.first)
            attach(self.second, DROP_ALL)
            self.two = False
            return
        v6 = self.v6
        if keys is None or len(keys) > capacity(networks, groups, v6):
            attach(self.first, program(networks, groups, v6))
            attach(self.second, DROP_ALL)
            self.two = False
            return
        first, second = lane_programs(networks, keys, groups, v6)
        if not (self.two and same_keys):
            attach(self.first, program(networks, groups, v6))
        attach(self.second, second)
        attach(self.first, first)
        self.keys, self.two = keys, True
