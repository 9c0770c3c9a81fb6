"""A guided tour of skip's ESP/AH engine, run as ``python -m skip.demo``.

Everything happens in this process: we build security associations (SAs) with fixed demo keys,
protect a few IPv4/IPv6 datagrams in transport and tunnel mode with a modern and a legacy
(SKIP-era) suite, print what would go on the wire, unprotect it again, and show tampered and
replayed packets being refused with their reason codes.  The keys are printed so the hex can be
pasted into Wireshark's ESP preferences.  Read this file top to bottom: it is also the shortest
example of the engine's API (docs/engine.md has the full story).
"""

from __future__ import annotations

import hashlib
from ipaddress import ip_address
from typing import Any

from skip.errors import SkipError
from skip.ipsec import EspSA, SecurityAssociation
from skip.wire.ip import (
    PROTO_AH,
    PROTO_ESP,
    PROTO_SKIP,
    PROTO_UDP,
    build_ipv4,
    build_ipv6,
    finish_ipv4_header,
    locate_upper,
)
from skip.wire.skip_header import SKIP_SPI, SkipHeader

NAMES = {1: "ICMP", 4: "IPv4", 6: "TCP", 17: "UDP", 41: "IPv6", 50: "ESP", 51: "AH",
         57: "SKIP", 58: "ICMPv6"}


def demo_key(label: str, size: int) -> bytes:
    """Fixed, printable demo keys (never do this for real traffic)."""
    return hashlib.sha512(label.encode()).digest()[:size]


def hexdump(data: bytes, indent: str = "      ") -> str:
    lines = []
    for at in range(0, len(data), 16):
        chunk = data[at : at + 16]
        lines.append(f"{indent}{at:04x}  {chunk[:8].hex(' '):<23}  {chunk[8:].hex(' ')}")
    return "\n".join(lines)


def udp_payload(text: str) -> bytes:
    """A UDP header (port 5000 -> 7, checksum 0) and a text payload."""
    body = text.encode()
    return (5000).to_bytes(2, "big") + (7).to_bytes(2, "big") + (8 + len(body)).to_bytes(
        2, "big") + b"\0\0" + body


def describe_ip(packet: bytes) -> str:
    version = packet[0] >> 4
    _, _, offset, proto = locate_upper(packet, verify_checksum=False)
    if version == 4:
        src, dst = ip_address(packet[12:16]), ip_address(packet[16:20])
        extra = f"TTL {packet[8]}, ID {int.from_bytes(packet[4:6], 'big'):#06x}"
    else:
        src, dst = ip_address(packet[8:24]), ip_address(packet[24:40])
        extra = f"hop limit {packet[7]}"
    return (f"IPv{version} {src} -> {dst}, {len(packet)} bytes, {extra}, "
            f"header chain {offset} bytes, then {NAMES.get(proto, proto)}")


def show_wire(title: str, sa: SecurityAssociation, original: bytes, wire: bytes,
              shim_len: int = 0) -> None:
    print(f"  {title}")
    print(f"    original : {describe_ip(original)}")
    print(f"    on wire  : {describe_ip(wire)}")
    _, _, at, _ = locate_upper(wire, verify_checksum=False)
    at += shim_len
    if isinstance(sa, EspSA):
        fields = [("SPI", wire[at : at + 4])]
        pos = at + 4
        if sa.sequence:
            fields.append(("sequence number", wire[pos : pos + 4]))
            pos += 4
        iv = sa.cipher.iv_size
        icv = sa.cipher.icv_size + (sa.integrity.icv_size if sa.integrity else 0)
        fields += [("IV", wire[pos : pos + iv]),
                   ("ciphertext (payload, padding, pad length, next header)",
                    wire[pos + iv : len(wire) - icv]),
                   ("ICV", wire[len(wire) - icv :])]
    else:
        fixed = 12 if sa.sequence else 8
        length = "Payload Len (words - 2)" if sa.sequence else "Length (ICV words)"
        print(f"    next header       : {wire[at]} ({NAMES.get(wire[at], '?')}), "
              f"{length} {wire[at + 1]}")
        fields = [("SPI", wire[at + 4 : at + 8])]
        if sa.sequence:
            fields.append(("sequence number", wire[at + 8 : at + 12]))
        end = at + fixed + (4 * wire[at + 1] + 8 - fixed if sa.sequence else 4 * wire[at + 1])
        fields.append(("ICV (+ zero padding)", wire[at + fixed : end]))
    for name, value in fields:
        shown = value.hex() if len(value) <= 32 else f"{value[:24].hex()}... ({len(value)} bytes)"
        print(f"    {name:<18}: {shown}")
    print(hexdump(wire))


def make_pair(**kwargs: Any) -> tuple[SecurityAssociation, SecurityAssociation]:
    """The same SA twice: one end protects, the other unprotects (an SA is one-way)."""
    return SecurityAssociation(**kwargs), SecurityAssociation(**kwargs)


def attempt(label: str, sa: SecurityAssociation, wire: bytes, shim_len: int = 0) -> None:
    try:
        sa.unprotect(wire, shim_len=shim_len)
    except SkipError as err:
        print(f"    {label:<40} -> refused, reason '{err.reason}' ({type(err).__name__})")
    else:
        print(f"    {label:<40} -> accepted")


def modern() -> None:
    print("1. Modern suites (RFC 4302/4303: sequence numbers and an anti-replay window)\n")
    gcm_key = demo_key("gcm", 20)  # 16-byte AES key || 4-byte salt, as Linux and RFC 4106 do
    tx, rx = make_pair(protocol="esp", spi=0x1001, mode="tunnel", cipher="aes-gcm-16",
                       cipher_key=gcm_key, tunnel_src="2001:db8:a::1",
                       tunnel_dst="2001:db8:b::1", replay_window=128)
    print(f"  SA: ESP tunnel, AES-GCM-16 (RFC 4106), SPI 0x1001, key||salt {gcm_key.hex()}")
    inner = build_ipv4("192.0.2.10", "198.51.100.20", PROTO_UDP, udp_payload("hello, tunnel"))
    wire = tx.protect(inner)
    show_wire("IPv4 datagram inside an IPv6 tunnel (the IV is the packet counter, as RFC 4106"
              " allows):", tx, inner, wire)
    assert rx.unprotect(wire) == inner
    print("    unprotected: the inner datagram comes back byte for byte\n")

    enc, auth = demo_key("cbc", 32), demo_key("sha256", 32)
    tx6, rx6 = make_pair(protocol="esp", spi=0x1002, mode="transport", cipher="aes-cbc",
                         cipher_key=enc, integrity="hmac-sha2-256-128", integrity_key=auth,
                         esn=True)
    print(f"  SA: ESP transport, AES-256-CBC + HMAC-SHA-256-128, ESN, SPI 0x1002\n"
          f"      enc key {enc.hex()}\n      auth key {auth.hex()}")
    original = build_ipv6("2001:db8::10", "2001:db8::20", PROTO_UDP, udp_payload("hi v6"))
    tx6.set_sequence(2**32 - 1)  # the next packet crosses into the second 2**32 block
    wire6 = tx6.protect(original)
    show_wire("IPv6 datagram, transport mode, sequence number 2**32 (only the low half, 0, "
              "is sent):", tx6, original, wire6)
    window = rx6.replay_window
    assert window is not None  # every SA with sequence numbers has one
    window.accept(2**32 - 10)  # as if earlier packets had arrived
    assert rx6.unprotect(wire6) == original
    print(f"    unprotected; the receiver inferred the 64-bit number {window.top:#x}\n")

    ah_tx, ah_rx = make_pair(protocol="ah", spi=0x1003, mode="transport",
                             integrity="hmac-sha2-256-128", integrity_key=auth)
    plain = build_ipv4("192.0.2.10", "198.51.100.20", PROTO_UDP, udp_payload("signed"), ttl=64)
    ah_wire = ah_tx.protect(plain)
    show_wire("AH (RFC 4302) over IPv4: authenticated, not encrypted:", ah_tx, plain, ah_wire)
    routed = bytearray(ah_wire)
    routed[8] -= 3  # three routers later: TTL is a mutable field, left out of the ICV
    finish_ipv4_header(routed)
    assert ah_rx.unprotect(bytes(routed))[8] == plain[8] - 3
    print("    three routers decremented the TTL on the way: AH still verifies\n")

    print("  Attacks on the first SA (ESP/AES-GCM tunnel, receive window 128):")
    tampered = bytearray(tx.protect(inner))  # sequence number 2
    tampered[-20] ^= 0x01
    attempt("seq 2 with one ciphertext bit flipped", rx, bytes(tampered))
    attempt("seq 1 again (a replay)", rx, wire)
    later = [tx.protect(inner) for _ in range(200)]  # sequence numbers 3 .. 202
    attempt("seq 202 (jumps ahead: fine)", rx, later[-1])
    attempt("seq 3, now 199 behind the top", rx, later[0])
    attempt("seq 100, 102 behind, inside the window", rx, later[97])
    attempt("an SPI 0x1002 packet given to SA 0x1001", rx, wire6)
    print(f"    receiver: {rx.counters.packets_in} packets in, rejected by reason "
          f"{rx.counters.rejected}\n")


def legacy() -> None:
    print("2. The SKIP-era formats, as SKIP sends them (RFC 1826 AH, RFC 1827/1829 ESP, SPI 1)\n")
    e_kp, a_kp = demo_key("E_kp", 8), demo_key("A_kp", 16)
    try:
        SecurityAssociation("esp", SKIP_SPI, "tunnel", cipher="des-cbc", cipher_key=e_kp,
                            sequence=False, tunnel_src="192.0.2.1", tunnel_dst="192.0.2.2")
    except SkipError as err:
        print(f"  without opting in: refused, reason '{err.reason}':\n    {err.detail}\n")
    esp = dict(protocol="esp", spi=SKIP_SPI, mode="tunnel", cipher="des-cbc", cipher_key=e_kp,
               sequence=False, allow_legacy=True, allow_unauthenticated=True,
               tunnel_src="192.0.2.1", tunnel_dst="192.0.2.2")
    ah = dict(protocol="ah", spi=SKIP_SPI, mode="transport", integrity="keyed-md5",
              integrity_key=a_kp, sequence=False, allow_legacy=True)
    esp_tx, esp_rx = make_pair(**esp)
    ah_tx, ah_rx = make_pair(**ah)
    # A stand-in SKIP header (draft-06 1.8): version 1, next header AH, n for some hour,
    # DES / DES-CBC / keyed MD5, and 8 bytes of what would be Kp encrypted under Kijn.  The
    # real ones come from skip.keying; the engine only carries them as a "shim".
    skip_header = SkipHeader(version=1, src_nsid=0, dst_nsid=0, next_header=PROTO_AH,
                             n=255_000, kij_alg=1, crypt_alg=1, mac_alg=1,
                             ekp=demo_key("EKp", 8)).encode()
    print(f"  SAs: ESP DES-CBC (E_kp {e_kp.hex()}) and AH keyed MD5 (A_kp {a_kp.hex()}),"
          f" both SPI 1, no sequence numbers")
    inner = build_ipv4("10.1.0.5", "10.2.0.9", PROTO_UDP, udp_payload("SKIP, 1995 style"))
    wire = ah_tx.protect(esp_tx.protect(inner), shim=(PROTO_SKIP, skip_header))
    print(f"    IP({PROTO_SKIP}) | SKIP {len(skip_header)} bytes | AH(next {PROTO_ESP}) | ESP "
          f"| encrypted IPv4 datagram")
    show_wire("the AH layer:", ah_tx, inner, wire, shim_len=len(skip_header))
    inner_again = esp_rx.unprotect(ah_rx.unprotect(wire, shim_len=len(skip_header)))
    assert inner_again == inner
    print("    AH checked (over IP header, SKIP header, AH, ESP), then ESP decrypted: equal\n")
    tampered = bytearray(wire)
    tampered[20 + 4] ^= 0x01  # the SKIP header's counter n
    attempt("SKIP header's n changed in flight", ah_rx, bytes(tampered),
            shim_len=len(skip_header))
    attempt("the same packet again (no replay window)", ah_rx, wire, shim_len=len(skip_header))
    print("    (SKIP-era SAs carry no sequence number; SKIP bounds replays by its hour"
          " counter n)\n")


def main() -> None:
    print("skip: the shared ESP/AH engine, demonstrated in-process\n")
    modern()
    legacy()
    print("More: docs/engine.md (API, algorithms, replay), docs/architecture.md (layers).")


if __name__ == "__main__":
    main()
