"""skip.crypto.dh against things nobody here wrote: the RFC formulas for the primes, OpenSSL's
built-in copies of the groups, the SKIP seed procedure, RFC 7748 vectors and plain ``pow``."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from asn1crypto import algos
from asn1crypto.keys import DomainParameters

from skip.crypto import dh
from skip.crypto.dh import GROUPS, group_for, validate_parameters
from skip.errors import KeyingError

VECTORS = Path(__file__).parent / "vectors"
MODP = [g for g in GROUPS.values() if g.kind == "modp"]
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


# --- where the primes come from ------------------------------------------------------------


def _atan_inv(x: int, one: int) -> int:
    total = term = one // x
    n, sign = 1, -1
    while term:
        term //= x * x
        n += 2
        total += sign * (term // n)
        sign = -sign
    return total


def _pi_bits(bits: int) -> int:
    """floor(2^bits * pi) by Machin's formula, with 64 guard bits."""
    one = 1 << (bits + 64)
    return (16 * _atan_inv(5, one) - 4 * _atan_inv(239, one)) >> 64


def _e_bits(bits: int) -> int:
    """floor(2^bits * e) from the series sum 1/k!, with 64 guard bits."""
    one = 1 << (bits + 64)
    total, term, k = 0, one, 0
    while term:
        total += term
        k += 1
        term //= k
    return total >> 64


# RFC 3526 §2-5: p = 2^n - 2^(n-64) - 1 + 2^64 * { [2^(n-130) pi] + k }
RFC3526 = {"modp-1536": 741804, "modp-2048": 124476, "modp-3072": 1690314, "modp-4096": 240904}
# RFC 7919 App. A: p = 2^n - 2^(n-64) + {[2^(n-130) e] + k} * 2^64 - 1
RFC7919 = {
    "ffdhe2048": 560316,
    "ffdhe3072": 2625351,
    "ffdhe4096": 5736041,
    "ffdhe6144": 15705020,
    "ffdhe8192": 10965728,
}


@pytest.mark.parametrize("name", sorted(RFC3526))
def test_rfc3526_primes_follow_their_formula(name: str) -> None:
    n = GROUPS[name].bits
    assert GROUPS[name].p == 2**n - 2 ** (n - 64) - 1 + 2**64 * (_pi_bits(n - 130) + RFC3526[name])


@pytest.mark.parametrize("name", sorted(RFC7919))
def test_rfc7919_primes_follow_their_formula(name: str) -> None:
    n = GROUPS[name].bits
    assert GROUPS[name].p == 2**n - 2 ** (n - 64) + (_e_bits(n - 130) + RFC7919[name]) * 2**64 - 1


def _openssl_group(openssl_name: str) -> algos.DHParameters:
    out = subprocess.run(
        [
            "openssl",
            "genpkey",
            "-genparam",
            "-algorithm",
            "DH",
            "-pkeyopt",
            f"group:{openssl_name}",
        ],
        check=True,
        capture_output=True,
    ).stdout
    return algos.DHParameters.load(_pem_body(out))


def _pem_body(text: bytes) -> bytes:
    """The DER inside one PEM block (asn1crypto's reader rejects "X9.42" in the label)."""
    lines = text.decode().strip().splitlines()
    assert lines[0].startswith("-----BEGIN ") and lines[-1].startswith("-----END ")
    return base64.b64decode("".join(lines[1:-1]))


@needs_openssl
@pytest.mark.parametrize("name", sorted(RFC3526) + sorted(RFC7919))
def test_groups_match_openssl_builtin_copies(name: str) -> None:
    params = _openssl_group(name.replace("modp-", "modp_"))
    assert (params["p"].native, params["g"].native) == (GROUPS[name].p, GROUPS[name].g)


SKIP_SEED = b"Whatever you do will be insignificant, but it is very important that you do it."


def _skip_start(bits: int) -> int:
    """draft-06 §5.3.1: N from SHA-1 of the incrementing seed, top two bits forced."""
    seed, n, shift = int.from_bytes(SKIP_SEED), 0, 0
    while shift < bits:
        n |= int.from_bytes(hashlib.sha1(seed.to_bytes(len(SKIP_SEED))).digest()) << shift
        shift += 160
        seed = (seed + 1) % (1 << (8 * len(SKIP_SEED)))
    return (n % 2 ** (bits - 2)) + 2 ** (bits - 1) + 2 ** (bits - 2)


@pytest.mark.parametrize(
    ("name", "offset", "md5"),
    [
        ("skip-1024", 505_479, "6c67b4172ca107e5e20a3a3241cc5996"),
        ("skip-2048", 674_043, "fef88b21b23aff75bd89c896d54de120"),
    ],
)
def test_skip_primes_rederive_from_the_gandhi_seed(name: str, offset: int, md5: str) -> None:
    group = GROUPS[name]
    # The search for the first safe prime >= t stops at t + offset (recomputed independently
    # with sympy in the spec digest); here we check the start point and the end point.
    assert group.p - _skip_start(group.bits) == offset
    assert hashlib.md5(group.p.to_bytes(group.public_size)).hexdigest() == md5
    q = (group.p - 1) // 2
    for base in (2, 3, 5, 7):  # Fermat witnesses for p and q
        assert pow(base, group.p - 1, group.p) == 1
        assert pow(base, q - 1, q) == 1


def test_subgroup_orders_are_what_the_groups_claim() -> None:
    for group in MODP:
        safe_q = (group.p - 1) // 2
        if group.q is None:  # skip-2048: 2 is a non-residue, it generates the whole group
            assert group.name == "skip-2048"
            assert pow(group.g, safe_q, group.p) == group.p - 1
        else:
            assert group.q == safe_q
            assert pow(group.g, group.q, group.p) == 1


def test_group_for_finds_groups_by_parameters() -> None:
    for group in MODP:
        assert group_for(group.p, group.g) is group
    assert group_for(GROUPS["ffdhe2048"].p, 5) is None


# --- arithmetic --------------------------------------------------------------------------------


class CountingRng:
    """Deterministic bytes so key generation is reproducible inside a test."""

    def __init__(self, seed: bytes) -> None:
        self.state = seed

    def __call__(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            self.state = hashlib.sha256(self.state).digest()
            out += self.state
        return out[:n]


@pytest.mark.parametrize("name", ["skip-1024", "skip-2048", "modp-1536", "ffdhe2048", "modp-3072"])
def test_modp_exchange_matches_plain_pow(name: str) -> None:
    group = GROUPS[name]
    rng = CountingRng(name.encode())
    a, b = group.generate_private(rng), group.generate_private(rng)
    x, y = int.from_bytes(a), int.from_bytes(b)
    assert x.bit_length() == 8 * group.private_size >= dh.MIN_EXPONENT_BITS
    public_a, public_b = group.public_value(a), group.public_value(b)
    assert public_a == pow(group.g, x, group.p).to_bytes(group.public_size)
    secret = group.shared_secret(a, public_b)
    assert secret == group.shared_secret(b, public_a)
    assert secret == pow(group.g, x * y, group.p).to_bytes(group.public_size)


def test_shared_secret_is_left_padded_to_the_modulus() -> None:
    group = GROUPS["ffdhe2048"]
    rng = CountingRng(b"pad")
    me = group.generate_private(rng)
    # Search a peer whose secret with us starts with a zero byte (1 in 256 tries).
    for _ in range(2000):
        peer = group.public_value(group.generate_private(rng))
        secret = group.shared_secret(me, peer)
        if secret[0] == 0:
            assert len(secret) == group.public_size
            return
    pytest.fail("no short secret found")


@pytest.mark.parametrize(
    "entry", json.loads((VECTORS / "rfc7748_ecdh.json").read_text())["vectors"]
)
def test_rfc7748_vectors(entry: dict[str, str]) -> None:
    group = GROUPS[entry["curve"]]
    h = bytes.fromhex
    assert group.public_value(h(entry["alice_private"])) == h(entry["alice_public"])
    assert group.public_value(h(entry["bob_private"])) == h(entry["bob_public"])
    assert group.shared_secret(h(entry["alice_private"]), h(entry["bob_public"])) == h(
        entry["shared"]
    )
    assert group.shared_secret(h(entry["bob_private"]), h(entry["alice_public"])) == h(
        entry["shared"]
    )
    # the prepared form long-term keys are held in gives the same values
    prepared = group.prepare(h(entry["alice_private"]))
    assert group.prepared_public(prepared) == h(entry["alice_public"])
    assert group.agree(prepared, h(entry["bob_public"])) == h(entry["shared"])
    assert h(entry["alice_private"]).hex() not in repr(prepared)


@pytest.mark.parametrize("name", ["skip-1024", "ffdhe2048"])
def test_prepared_modp_keys_agree_like_plain_ones(name: str) -> None:
    group = GROUPS[name]
    x, y = group.generate_private(), group.generate_private()
    prepared = group.prepare(x)
    assert group.prepared_public(prepared) == group.public_value(x) == \
        pow(group.g, int.from_bytes(x), group.p).to_bytes(group.public_size)
    assert group.agree(prepared, group.public_value(y)) == \
        group.shared_secret(y, group.public_value(x))
    with pytest.raises(KeyingError) as err:
        GROUPS["ffdhe3072"].agree(prepared, group.public_value(y))
    assert err.value.reason == "bad_key"


# --- peer value validation -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["skip-1024", "skip-2048", "ffdhe2048", "modp-4096"])
def test_modp_refuses_degenerate_public_values(name: str) -> None:
    group = GROUPS[name]
    for y in (0, 1, group.p - 1, group.p, group.p + 1):
        raw = y.to_bytes(group.public_size + 1).lstrip(b"\0") or b"\0"
        with pytest.raises(KeyingError) as err:
            group.validate_public(raw)
        assert err.value.reason == "bad_public_value"


@pytest.mark.parametrize("name", ["skip-1024", "modp-2048", "ffdhe3072"])
def test_modp_refuses_values_outside_the_subgroup(name: str) -> None:
    group = GROUPS[name]
    assert group.q is not None
    outsider = next(y for y in range(3, 100) if pow(y, group.q, group.p) != 1)
    with pytest.raises(KeyingError, match="subgroup"):
        group.validate_public(outsider.to_bytes(group.public_size))
    me = group.generate_private()
    with pytest.raises(KeyingError):
        group.shared_secret(me, outsider.to_bytes(group.public_size))
    # Its negation p - outsider is a member (-1 is a non-residue when p = 3 mod 4).
    group.validate_public((group.p - outsider).to_bytes(group.public_size))


def test_skip_2048_accepts_both_halves_of_its_group() -> None:
    """g = 2 generates all of Z_p* for skip-2048, so honest public values with odd exponents
    lie outside the order-q subgroup; a subgroup check would refuse half of all keys."""
    group = GROUPS["skip-2048"]
    odd = group.public_value((2**255 + 1).to_bytes(32))
    even = group.public_value((2**255 + 2).to_bytes(32))
    q = (group.p - 1) // 2
    assert {pow(int.from_bytes(v), q, group.p) for v in (odd, even)} == {1, group.p - 1}
    group.validate_public(odd)
    group.validate_public(even)


def test_modp_refuses_public_values_longer_than_the_modulus() -> None:
    group = GROUPS["ffdhe2048"]
    good = group.public_value(group.generate_private())
    with pytest.raises(KeyingError, match="bytes"):
        group.validate_public(b"\0" + good)
    group.validate_public(good.lstrip(b"\0"))


X25519_LOW_ORDER = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    (2**255 - 19 - 1).to_bytes(32, "little"),
]


@pytest.mark.parametrize("point", X25519_LOW_ORDER, ids=lambda b: b.hex()[:8])
def test_x25519_refuses_low_order_points(point: bytes) -> None:
    group = GROUPS["x25519"]
    with pytest.raises(KeyingError) as err:
        group.validate_public(point)
    assert err.value.reason == "bad_public_value"
    with pytest.raises(KeyingError):
        group.shared_secret(group.generate_private(), point)


def test_x448_refuses_low_order_points_and_wrong_lengths() -> None:
    group = GROUPS["x448"]
    p448 = 2**448 - 2**224 - 1
    for u in (0, 1, p448 - 1):
        with pytest.raises(KeyingError):
            group.validate_public(u.to_bytes(56, "little"))
    with pytest.raises(KeyingError):
        group.validate_public(bytes(32))


def test_private_values_are_checked() -> None:
    group = GROUPS["ffdhe2048"]
    assert group.q is not None
    for bad in (
        b"",
        b"\x01",
        group.q.to_bytes(group.public_size),
        b"\x02" * (group.public_size + 1),
    ):
        with pytest.raises(KeyingError) as err:
            group.public_value(bad)
        assert err.value.reason == "bad_key"
    # imported keys may be longer than ours (OpenSSL uses longer exponents)
    long_x = (group.q - 5).to_bytes(group.public_size)
    assert group.public_value(long_x) == pow(2, group.q - 5, group.p).to_bytes(group.public_size)
    with pytest.raises(KeyingError):
        group.generate_private(lambda n: b"\0" * (n - 1))
    with pytest.raises(KeyingError):
        GROUPS["x25519"].public_value(b"\x01" * 31)


# --- parameters from outside ---------------------------------------------------------------------


def test_validate_parameters_accepts_a_safe_prime_and_finds_its_subgroup() -> None:
    skip1024 = GROUPS["skip-1024"]
    group = validate_parameters(skip1024.p, 2)
    assert (group.p, group.g, group.q) == (skip1024.p, 2, skip1024.q)


@needs_openssl
def test_validate_parameters_accepts_openssl_x942_group_with_small_q() -> None:
    out = subprocess.run(
        ["openssl", "genpkey", "-genparam", "-algorithm", "DHX", "-pkeyopt", "dh_rfc5114:2"],
        check=True,
        capture_output=True,
    ).stdout
    x942 = DomainParameters.load(_pem_body(out))
    p, g, q = (x942[k].native for k in ("p", "g", "q"))
    group = validate_parameters(p, g, q)
    assert group.q == q and q.bit_length() == 224
    me, peer = group.generate_private(), group.generate_private()
    assert group.shared_secret(me, group.public_value(peer)) == group.shared_secret(
        peer, group.public_value(me)
    )


@pytest.mark.parametrize(
    ("p", "g", "why"),
    [
        (GROUPS["skip-1024"].p + 2, 2, "safe prime"),  # composite neighbour
        (GROUPS["skip-1024"].p, 1, "generator"),
        (GROUPS["skip-1024"].p, GROUPS["skip-1024"].p - 1, "generator"),
        ((1 << 767) + 1, 2, "below 1024"),
    ],
)
def test_validate_parameters_refuses_bad_groups(p: int, g: int, why: str) -> None:
    with pytest.raises(KeyingError, match=why) as err:
        validate_parameters(p, g)
    assert err.value.reason == "bad_group"


# --- the certs/ parameter files ----------------------------------------------------------------

CERTS = Path(__file__).parent.parent / "certs"


def _pem_blocks(text: bytes) -> list[bytes]:
    return [_pem_body(b"-----BEGIN" + block) for block in text.split(b"-----BEGIN")[1:]]


def test_skip_primes_match_the_copies_shipped_by_postgresql_and_openssl() -> None:
    """PostgreSQL's be-secure-openssl.c (and OpenSSL's old apps/dh*.pem) carry the SKIP
    primes as "DH PARAMETERS" PEM blocks; tests/vectors/README.md gives the source."""
    blocks = _pem_blocks((VECTORS / "skip_primes_postgresql.pem").read_bytes())
    found = [algos.DHParameters.load(der) for der in blocks]
    assert [(f["p"].native, f["g"].native) for f in found] == [
        (GROUPS["skip-1024"].p, 2),
        (GROUPS["skip-2048"].p, 2),
    ]


@pytest.mark.parametrize("group", MODP, ids=lambda g: g.name)
def test_certs_folder_holds_every_modp_group(group: dh.DHGroup) -> None:
    (der,) = _pem_blocks((CERTS / f"{group.name}.pem").read_bytes())
    params = algos.DHParameters.load(der)
    assert (params["p"].native, params["g"].native) == (group.p, group.g)


@needs_openssl
@pytest.mark.parametrize("name", sorted(RFC3526) + sorted(RFC7919))
def test_openssl_recognises_the_certs_files_as_its_named_groups(name: str) -> None:
    text = subprocess.run(
        ["openssl", "pkeyparam", "-noout", "-text", "-in", CERTS / f"{name}.pem"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert f"GROUP: {name.replace('modp-', 'modp_')}" in text
