"""Every single-byte change of a protected datagram: rejected with the right reason, or (for
bytes AH/ESP deliberately do not cover) accepted, and we say which bytes those are.

Each byte is flipped in two ways, bit 0 and bit 7.  IPv4 header bytes are tested twice: as
flipped (the header checksum catches it: ``bad_checksum`` or an earlier parse error) and
"as a router would", with the checksum recomputed after the change.
"""

from __future__ import annotations

import pytest

from skip.crypto.registry import get_cipher, get_integrity
from skip.errors import ParseError, SkipError
from skip.wire import ah as wire_ah
from skip.wire.ip import build_ipv4, finish_ipv4_header
from tests.ipsec_cases import ALL_SUITES, datagram

PARSE = "parse"  # any ParseError reason
ACCEPT = "accept"


def ip_expectations(suite, version: int, rebuilt_checksum: bool) -> dict[int, set[str]]:
    """What changing each byte of a plain (option-free) outer header must give."""
    covered_by_ah = suite.protocol == "ah"
    # RFC 1826 AH (no sequence numbers) also covers TOS, flags, traffic class, flow label
    old_ah = {"bad_icv"} if covered_by_ah and not suite.sequence else {ACCEPT}
    if version == 4:
        if not rebuilt_checksum:
            return {i: {PARSE} for i in range(20)}
        addr = {"bad_icv"} if covered_by_ah else {ACCEPT}
        exp = {0: {PARSE}, 1: old_ah, 2: {PARSE}, 3: {PARSE}, 4: addr, 5: addr,
               6: old_ah | {PARSE}, 7: {PARSE}, 8: {ACCEPT}, 9: {PARSE}}
        exp.update({i: addr for i in range(12, 20)})
        return exp  # 10, 11: the checksum itself, restored by the rebuild
    addr = {"bad_icv"} if covered_by_ah else {ACCEPT}
    exp = {0: {PARSE} | old_ah, 1: old_ah, 2: old_ah, 3: old_ah, 4: {PARSE}, 5: {PARSE},
           6: {PARSE}, 7: {ACCEPT}}
    exp.update({i: addr for i in range(8, 40)})
    return exp


def header_expectations(suite, version: int, start: int, size: int) -> dict[int, set[str]]:
    """What changing each byte from ``start`` (the AH/ESP header) to the end must give."""
    exp: dict[int, set[str]] = {}
    if suite.protocol == "esp":
        exp.update({start + i: {"bad_spi"} for i in range(4)})
        rest = start + 4
        if suite.sequence:
            exp.update({start + 4 + i: {"bad_icv", "seq_zero"} for i in range(4)})
            rest += 4
        exp.update({i: {"bad_icv"} for i in range(rest, size)})
        return exp
    icv = get_integrity(suite.integrity, allow_legacy=True).icv_size
    fixed = wire_ah.fixed_size(suite.sequence)
    field = wire_ah.icv_field_size(icv, suite.sequence, version == 6)
    exp[start] = {"bad_icv"}  # next header
    exp[start + 1] = {"bad_length", "truncated"}
    exp[start + 2] = exp[start + 3] = {"bad_icv"}  # reserved: covered by the ICV
    exp.update({start + 4 + i: {"bad_spi"} for i in range(4)})
    if suite.sequence:
        exp.update({start + 8 + i: {"bad_icv", "seq_zero"} for i in range(4)})
    exp.update({start + fixed + i: {"bad_icv"} for i in range(icv)})
    # ICV padding: zero in the ICV image, so nobody depends on its content (RFC 4302 2.6)
    exp.update({start + fixed + i: {ACCEPT} for i in range(icv, field)})
    exp.update({i: {"bad_icv"} for i in range(start + fixed + field, size)})
    return exp


def outcome(receiver_factory, wire: bytes) -> str:
    try:
        receiver_factory().unprotect(wire)
    except ParseError as err:
        return f"{PARSE}:{err.reason}"
    except SkipError as err:
        return err.reason
    return ACCEPT


def matches(result: str, allowed: set[str]) -> bool:
    kind, _, reason = result.partition(":")
    return result in allowed or (kind == PARSE and (PARSE in allowed or reason in allowed))


@pytest.mark.parametrize("outer", [4, 6])
@pytest.mark.parametrize("mode", ["transport", "tunnel"])
@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.id)
def test_every_byte_flip(suite, mode, outer):
    sender = suite.sa(mode, outer)
    sender.protect(datagram(outer, 24))  # sequence number 1 is behind us: seq flips to 0 matter
    wire = sender.protect(datagram(outer, 24))
    hl = 20 if outer == 4 else 40

    def fresh():
        return suite.sa(mode, outer)

    expectations = {
        **ip_expectations(suite, outer, rebuilt_checksum=False),
        **header_expectations(suite, outer, hl, len(wire)),
    }
    assert sorted(expectations) == list(range(len(wire)))
    router = ip_expectations(suite, outer, rebuilt_checksum=True) if outer == 4 else {}
    failures = []
    accepted = set()
    for i in range(len(wire)):
        for bit in (0x01, 0x80):
            changed = bytearray(wire)
            changed[i] ^= bit
            result = outcome(fresh, bytes(changed))
            if not matches(result, expectations[i]):
                failures.append((i, bit, result, expectations[i]))
            if result == ACCEPT:
                accepted.add(i)
            if i in router:
                finish_ipv4_header(changed)
                result = outcome(fresh, bytes(changed))
                if not matches(result, router[i]):
                    failures.append(("router", i, bit, result, router[i]))
    assert failures == []
    # what was accepted without a checksum rebuild: IPv6 header fields ESP/AH leave alone,
    # and AH's ICV padding
    if outer == 4:
        assert all(i >= hl for i in accepted)
    if suite.protocol == "ah":
        assert not accepted & set(range(8, 40))  # AH covers the addresses


def test_unauthenticated_esp_padding_tamper_is_bad_padding():
    """With null integrity a ciphertext change reaches the padding check (RFC 4303 2.4)."""
    from tests.ipsec_cases import Suite

    suite = Suite("esp", "aes-cbc")
    wire = suite.sa("tunnel", 4).protect(datagram(4, 27))  # 48 inner bytes -> 14 pad bytes
    # CBC: changing ciphertext block n-1 flips the same bit of plaintext block n, the last
    # one, which holds padding, pad length and next header.
    last_block = len(wire) - 16
    reasons = set()
    for offset in range(16 - 2):  # the padding bytes of the last plaintext block
        changed = bytearray(wire)
        changed[last_block - 16 + offset] ^= 0x01
        with pytest.raises(SkipError) as e:
            suite.sa("tunnel", 4).unprotect(bytes(changed))
        reasons.add(e.value.reason)
    assert reasons == {"bad_padding"}


@pytest.mark.parametrize(("sequence", "accepted"), [(False, True), (True, False)])
def test_padding_content_checked_by_rfc4303_only(sequence, accepted):
    """A packet built by hand around the registry's cipher, with padding that is not
    1, 2, 3, ...: RFC 1829 receivers ignore the pad content, RFC 4303 receivers reject it."""
    from tests.ipsec_cases import TUNNEL, Suite

    suite = Suite("esp", "des-cbc", sequence=sequence)
    key = suite.keys()["cipher_key"]
    inner = datagram(4, 27)
    pad = -(len(inner) + 2) % 8
    assert pad > 1
    plaintext = inner + b"\xaa" * pad + bytes([pad, 4])
    sealed = get_cipher("des-cbc", allow_legacy=True).new(key).seal(plaintext, b"", 1)
    head = (0x1234).to_bytes(4, "big") + ((1).to_bytes(4, "big") if sequence else b"")
    wire = build_ipv4(*TUNNEL[4], 50, head + sealed)
    receiver = suite.sa("tunnel", 4)
    if accepted:
        assert receiver.unprotect(wire) == inner
    else:
        with pytest.raises(SkipError) as e:
            receiver.unprotect(wire)
        assert e.value.reason == "bad_padding"


def test_cipher_block_sizes_reported_by_registry_are_used():
    for name in ("des-cbc", "aes-cbc"):
        block = get_cipher(name, allow_legacy=True).block_size
        from tests.ipsec_cases import Suite

        wire = Suite("esp", name, "hmac-sha1-96").sa("transport").protect(datagram(4, 5))
        assert (len(wire) - 20 - 8 - block - 12) % block == 0
