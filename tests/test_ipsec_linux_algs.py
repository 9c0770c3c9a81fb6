"""AES-CCM (RFC 4309), Blowfish-CBC and CAST5-CBC (RFC 2451): the published vectors through
the contexts the ESP engine uses, and ESP packets exchanged with the Linux kernel's own
implementation (``ip xfrm``, rfc4309(ccm(aes)) with 8/12/16-byte ICVs, cbc(blowfish),
cbc(cast5)) in both directions, between two network namespaces the test creates (skipped,
with the kernel's own reason, where it lacks the algorithm). scapy is the other witness for
the same algorithms (tests/test_ipsec_scapy.py)."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import CAST5, Blowfish
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from skip.crypto.registry import get_cipher
from skip.errors import AlgorithmError, IntegrityError
from skip.ipsec import SecurityAssociation
from skip.wire.ip import build_ipv4

VECTORS = json.loads((Path(__file__).parent / "vectors" / "ccm_blowfish_cast5.json").read_text())
h = bytes.fromhex


@pytest.mark.parametrize("v", VECTORS["ccm"], ids=lambda v: v["name"])
def test_rfc3610_vector(v):
    out = AESCCM(h(v["key"]), tag_length=len(h(v["tag"]))).encrypt(
        h(v["nonce"]), h(v["plaintext"]), h(v["aad"]))
    assert out == h(v["ciphertext"]) + h(v["tag"])


@pytest.mark.parametrize(("name", "primitive"), [("blowfish_ecb", Blowfish),
                                                 ("cast5_ecb", CAST5)])
def test_blowfish_and_cast5_vectors_through_the_esp_contexts(name, primitive):
    """The published ECB block, then the same key through the engine's CBC context: under an
    all-zero IV one CBC block is the ECB block, so the context must open ``0^8 || ct``."""
    alg = get_cipher(name.replace("_ecb", "-cbc"), allow_legacy=True)
    for v in VECTORS[name]:
        key, pt, ct = h(v["key"]), h(v["plaintext"]), h(v["ciphertext"])
        ecb = Cipher(primitive(key), modes.ECB()).encryptor()
        assert ecb.update(pt) == ct
        assert alg.new(key).open(bytes(8) + ct, b"") == pt


def test_legacy_ciphers_need_the_opt_in_and_ccm_does_not():
    for name in ("blowfish-cbc", "cast5-cbc"):
        with pytest.raises(AlgorithmError) as err:
            get_cipher(name)
        assert err.value.reason == "legacy_refused"
    assert get_cipher("aes-ccm-8").icv_size == 8


@pytest.mark.parametrize("icv", [8, 12, 16])
def test_ccm_esp_round_trip_and_tamper(icv):
    key = bytes(range(16)) + b"SLT"
    tx = SecurityAssociation("esp", 0x200, "transport", cipher=f"aes-ccm-{icv}", cipher_key=key)
    rx = SecurityAssociation("esp", 0x200, "transport", cipher=f"aes-ccm-{icv}", cipher_key=key)
    packet = build_ipv4("192.0.2.1", "192.0.2.2", 17, b"\x00\x01\x00\x02\x00\x0c\x00\x00abcd")
    wire = tx.protect(packet)
    assert len(wire) == len(packet) + 8 + 8 + 4 + icv  # SPI/seq, IV, pad to 4 + trailer, ICV
    assert rx.unprotect(wire) == packet
    bad = bytearray(tx.protect(packet))
    bad[-1] ^= 1
    with pytest.raises(IntegrityError):
        rx.unprotect(bytes(bad))


# --- the Linux kernel as the other implementation -------------------------------------------

A, B = "10.99.0.1", "10.99.0.2"  # A: the kernel's xfrm states; B: this engine, raw sockets
CASES = {  # our name -> (ip xfrm algorithm arguments, key material)
    "aes-ccm-8": (["aead", "rfc4309(ccm(aes))", "64"], bytes(range(16)) + b"\x01\x02\x03"),
    "aes-ccm-12": (["aead", "rfc4309(ccm(aes))", "96"], bytes(range(32)) + b"\x04\x05\x06"),
    "aes-ccm-16": (["aead", "rfc4309(ccm(aes))", "128"], bytes(range(24)) + b"\x07\x08\x09"),
    "blowfish-cbc": (["enc", "cbc(blowfish)"], bytes(range(100, 116))),
    "cast5-cbc": (["enc", "cbc(cast5)"], bytes(range(50, 66))),
}
AUTH = bytes(range(200, 232))  # the CBC ciphers with HMAC-SHA-256-128, as Linux pairs them

KERNEL_SIDE = f"""
import socket, sys
recv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
recv.bind(("{A}", 4501)); recv.settimeout(5)
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"from the kernel", ("{B}", 4502))
print("sent", flush=True)
print(recv.recvfrom(65535)[0].hex(), flush=True)
"""
ENGINE_SIDE = f"""
import socket, sys
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, 50); raw.settimeout(5)
print("ready", flush=True)
print(raw.recv(65535).hex(), flush=True)
inject = bytes.fromhex(sys.stdin.readline().strip())
socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW).sendto(inject, ("{A}", 0))
"""


#: the modules that provide ESP and these algorithms where they are not built in
MODULES = ("esp4", "xfrm_user", "ccm", "blowfish_generic", "cast5_generic")


def _load_modules() -> str:
    """Try ``modprobe`` (best effort: built-in code needs none); what failed, for the skip."""
    if shutil.which("modprobe") is None:
        return "no modprobe"
    failed = [m for m in MODULES
              if subprocess.run(["modprobe", "-q", m], capture_output=True).returncode]
    return f"modprobe failed for {', '.join(failed)}" if failed else "modules loaded"


def _kernel_has_esp(ns) -> str | None:
    """None if the kernel takes an ESP state at all (cbc(aes) + hmac(sha256), which every
    ESP-capable kernel has); else why not. Without it each algorithm's refusal would blame
    the algorithm when the whole ESP protocol (CONFIG_INET_ESP) is missing."""
    done = ns.run("ip", "xfrm", "state", "add", "src", A, "dst", B, "proto", "esp",
                  "spi", "0x100", "mode", "transport", "enc", "cbc(aes)", "0x" + "11" * 16,
                  "auth-trunc", "hmac(sha256)", "0x" + "22" * 32, "128", check=False)
    ns.run("ip", "xfrm", "state", "flush", check=False)
    return None if done.returncode == 0 else done.stderr.strip()


@pytest.fixture(scope="module")
def lab():
    from tests.netns import Lab, can_run
    reason = can_run()
    if reason is not None:
        pytest.skip(reason)
    modules = _load_modules()
    with Lab() as lab:
        kernel, engine = lab.host("k"), lab.host("e")
        lab.link(kernel, [f"{A}/24"], engine, [f"{B}/24"])
        missing = _kernel_has_esp(kernel)
        if missing is not None:
            pytest.skip(f"this kernel has no XFRM ESP (CONFIG_INET_ESP / esp4; {modules}): "
                        f"even cbc(aes) is refused: {missing}")
        yield kernel, engine


def _xfrm(ns, name: str, spi_out: int, spi_in: int) -> None:
    ns.run("ip", "xfrm", "state", "flush")
    ns.run("ip", "xfrm", "policy", "flush")
    args, key = CASES[name]
    alg = [*args[:2], "0x" + key.hex(), *args[2:]]
    if args[0] == "enc":
        alg += ["auth-trunc", "hmac(sha256)", "0x" + AUTH.hex(), "128"]
    for spi, src, dst in ((spi_out, A, B), (spi_in, B, A)):
        done = ns.run("ip", "xfrm", "state", "add", "src", src, "dst", dst, "proto", "esp",
                      "spi", hex(spi), "mode", "transport", *alg, check=False)
        if done.returncode:
            pytest.skip(f"the kernel has ESP but refuses {name} ({' '.join(args[:2])}; "
                        f"module missing?): {done.stderr.strip()}")
    for direction, src, dst in (("out", A, B), ("in", B, A)):
        ns.run("ip", "xfrm", "policy", "add", "src", f"{src}/32", "dst", f"{dst}/32",
               "proto", "udp", "dir", direction, "tmpl", "src", src, "dst", dst,
               "proto", "esp", "mode", "transport")


def _sa(name: str, spi: int) -> SecurityAssociation:
    _args, key = CASES[name]
    if name.startswith("aes-ccm"):
        return SecurityAssociation("esp", spi, "transport", cipher=name, cipher_key=key)
    return SecurityAssociation("esp", spi, "transport", cipher=name, cipher_key=key,
                               integrity="hmac-sha2-256-128", integrity_key=AUTH,
                               allow_legacy=True)


@pytest.mark.netns
@pytest.mark.parametrize("name", sorted(CASES))
def test_packets_both_ways_with_the_linux_kernel(lab, name):
    """The kernel encrypts a UDP datagram A -> B; a raw socket on B reads the ESP packet and
    our SA opens it. Our SA encrypts a datagram B -> A; the kernel decrypts it and hands the
    payload to a UDP socket on A (so its ICV and padding checks passed)."""
    kernel, engine = lab
    spi_out, spi_in = 0x5000 + len(name), 0x6000 + len(name)
    _xfrm(kernel, name, spi_out, spi_in)
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE,
             "text": True}
    eng = engine.popen(sys.executable, "-c", ENGINE_SIDE, **pipes)
    assert eng.stdout is not None and eng.stdin is not None
    assert eng.stdout.readline().strip() == "ready"
    ker = kernel.popen(sys.executable, "-c", KERNEL_SIDE, **pipes)
    assert ker.stdout is not None
    assert ker.stdout.readline().strip() == "sent", ker.stderr
    kernel_esp = bytes.fromhex(eng.stdout.readline().strip())
    assert kernel_esp[9] == 50 and struct.unpack("!I", kernel_esp[20:24])[0] == spi_out
    opened = _sa(name, spi_out).unprotect(kernel_esp)
    assert opened[9] == 17 and opened[28:] == b"from the kernel"
    body = struct.pack("!HHHH", 4999, 4501, 8 + 13, 0) + b"from skip now"
    eng.stdin.write(_sa(name, spi_in).protect(build_ipv4(B, A, 17, body)).hex() + "\n")
    eng.stdin.flush()
    delivered = ker.stdout.readline().strip()
    assert delivered and bytes.fromhex(delivered) == b"from skip now", ker.stderr.read()
    for proc in (eng, ker):
        proc.wait(timeout=10)
