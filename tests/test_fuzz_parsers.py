"""Fuzz targets for the parsers that read untrusted input (docs/architecture.md, "Errors"):
whatever the bytes, the only exceptions that may come out are skip's own SkipError
subclasses with a listed reason code - never ValueError, UnicodeError, RecursionError, a
Rust panic from cryptography, or an unbounded wait.

Each target runs a short bounded pass in the normal suite (200 examples, a deadline per
example). For a long campaign set SKIP_FUZZ_EXAMPLES, e.g.
``SKIP_FUZZ_EXAMPLES=100000 .venv/bin/python -m pytest -q tests/test_fuzz_parsers.py``.
Inputs are mutations of valid objects (flipped, inserted and deleted bytes) as well as
structured edge cases, because random bytes alone rarely get past the first DER tag.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skip.crypto.dh import GROUPS, validate_parameters
from skip.crypto.replay import ReplayWindow
from skip.daemon.config import parse_config
from skip.daemon.control import ControlServer
from skip.errors import REASONS, SkipError
from skip.pki import Policy, dump_private_key, generate_key, parse_udh, validate_udh
from skip.pki.certificate import load_certificates, parse_certificate
from skip.pki.crl import load_crls
from skip.pki.dhkey import decode_spki, encode_spki, load_private_key, private_key_der
from skip.pki.names import build_name, parse_dn
from skip.pki.pemfile import pem_blocks, pem_encode
from skip.wire.pcap import encode_pcap
from skip.wire.udh import UnsignedDH, ntp_seconds

from .pki_support import DAY, NOW, make_ca, make_leaf

EXAMPLES = int(os.environ.get("SKIP_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=dt.timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=EXAMPLES <= 200,  # the suite's pass is reproducible; long runs explore
)


def refuses_only_with_reason_codes(action: Callable[[], Any]) -> Any:
    """Run ``action``; a SkipError is a proper refusal, anything else fails the test."""
    try:
        return action()
    except SkipError as exc:
        assert exc.reason in REASONS
        return None


# --- seeds: one valid object of each kind ------------------------------------------------------

_CA = make_ca("Fuzz CA")
_KEY = generate_key(GROUPS["modp-2048"])
_LEAF = make_leaf(_CA, _KEY, dns=("host.example",), email=("a@example.org",))
_X25519 = generate_key(GROUPS["x25519"])
SEEDS = {
    "certificate": _LEAF.der,
    "spki": encode_spki(_KEY.public),
    "pkcs8": private_key_der(_X25519),
    "pkcs8_dh": private_key_der(_KEY),
    "udh": UnsignedDH(
        ntp_seconds(NOW - DAY), ntp_seconds(NOW + DAY), _KEY.group.p, 4, 2**255 + 1
    ).encode(),
}


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """``seed`` with a few bytes replaced, inserted or deleted, or cut short."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and data:
            del data[at : at + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del data[at:]
    return bytes(data)


def der_input(seed: str) -> st.SearchStrategy[bytes]:
    return st.one_of(mutated(SEEDS[seed]), st.binary(max_size=512))


# --- PKI -----------------------------------------------------------------------------------------


@FUZZ
@given(der_input("certificate"))
def test_fuzz_certificate(data: bytes) -> None:
    cert = refuses_only_with_reason_codes(lambda: parse_certificate(data))
    if cert is not None:  # what skipd asks before validating: must never raise
        for name in cert.skip_names():
            assert name.mkid


PEM_PIECES = st.sampled_from([
    b"-----BEGIN CERTIFICATE-----\n", b"-----END CERTIFICATE-----\n", b"-----BEGIN A-----\n",
    b"-----END A-----\n", b"MAAA\n", b"====\n", b"\r\n", b"-----BEGIN X9.42 DH PARAMETERS-----\n",
    b"-----END ", b"-----", pem_encode("CERTIFICATE", _LEAF.der), b"\xff",
])


@FUZZ
@given(st.lists(PEM_PIECES, max_size=40).map(b"".join))
def test_fuzz_pem_and_bundles(data: bytes) -> None:
    refuses_only_with_reason_codes(lambda: pem_blocks(data))
    refuses_only_with_reason_codes(lambda: load_certificates(data))
    refuses_only_with_reason_codes(lambda: load_crls(data))


@FUZZ
@given(der_input("spki"))
def test_fuzz_subject_public_key_info(data: bytes) -> None:
    refuses_only_with_reason_codes(lambda: decode_spki(data))


@FUZZ
@given(st.one_of(der_input("pkcs8"), mutated(SEEDS["pkcs8_dh"])))
def test_fuzz_private_key(data: bytes) -> None:
    refuses_only_with_reason_codes(lambda: load_private_key(data))


_ENCRYPTED = dump_private_key(_X25519, b"pw")


@FUZZ
@given(mutated(_ENCRYPTED))
def test_fuzz_encrypted_private_key(data: bytes) -> None:
    refuses_only_with_reason_codes(lambda: load_private_key(data, b"pw"))


def _udh_inputs() -> st.SearchStrategy[bytes]:
    p = GROUPS["modp-2048"].p
    structured = st.builds(
        lambda g, y: UnsignedDH(ntp_seconds(NOW - DAY), ntp_seconds(NOW + DAY), p, g, y).encode(),
        st.one_of(st.integers(2, 64), st.sampled_from([p - 2, p - 1, (p - 1) // 2])),
        st.one_of(st.integers(1, 2**64), st.sampled_from([p - 1, p, (p - 1) // 2])),
    )
    return st.one_of(mutated(SEEDS["udh"]), structured, st.binary(max_size=300))


@FUZZ
@given(_udh_inputs())
def test_fuzz_udh_with_custom_groups(data: bytes) -> None:
    """The path of the Rust panic: a UDH value validated with custom groups allowed."""
    udh = refuses_only_with_reason_codes(lambda: parse_udh(data))
    if udh is not None:
        refuses_only_with_reason_codes(
            lambda: validate_udh(
                udh, NOW, expected_name=udh.name.mkid, policy=Policy(allow_custom_groups=True)
            )
        )


@FUZZ
@given(
    st.sampled_from([GROUPS[n].p for n in ("skip-1024", "modp-2048", "ffdhe2048")]),
    st.one_of(st.integers(-3, 70), st.integers(2**1023, 2**1025)),
    st.one_of(st.none(), st.integers(2**200, 2**1030)),
)
def test_fuzz_dh_parameters_over_named_primes(p: int, g: int, q: int | None) -> None:
    refuses_only_with_reason_codes(lambda: validate_parameters(p, g, q))


NAME_TEXT = st.text(
    st.one_of(st.sampled_from("CN=,OE@.\\-CDL xn"), st.characters()), max_size=60
)


@FUZZ
@given(NAME_TEXT)
def test_fuzz_subject_text(text: str) -> None:
    refuses_only_with_reason_codes(lambda: build_name(parse_dn(text)))


# --- skipd's configuration and control socket --------------------------------------------------

TOML_PIECES = st.sampled_from([
    "[daemon]\n", "[identity]\n", "[[peer]]\n", "[default]\n", 'name = "p"\n',
    'action = "protect"\n', 'hosts = ["10.0.0.2"]\n', 'tunnel = "10.0.0.2"\n',
    'private_key = "k\\u0000"\n', 'certificate = "c"\n', 'interface = "a\\u0000"\n',
    "mtu = 99999999999999999999\n", 'metrics = "[::1]:x"\n', "nsid = 4\n", 'mkid = "zz"\n',
    "x = [[[[[[[[[[", "]]]]]]]]]]\n", "x = {a = {b = 1}}\n", '"\\ud800"', "= =\n",
    'networks = ["10.0.0.1/24"]\n', "udp_port = -1\n", "nomadic = true\n",
])


@FUZZ
@given(st.one_of(st.lists(TOML_PIECES, max_size=30).map("".join), st.text(max_size=200)))
def test_fuzz_config(text: str) -> None:
    refuses_only_with_reason_codes(lambda: parse_config(text, Path("/etc/skip/skipd.toml")))


@FUZZ
@given(st.integers(0, 2000))
def test_fuzz_config_nesting(depth: int) -> None:
    text = "x = " + "[" * depth + "]" * depth + "\n"
    refuses_only_with_reason_codes(lambda: parse_config(text, Path("skipd.toml")))


async def _status(_req: dict[str, Any]) -> Any:
    return "fine"


_SERVER = ControlServer(Path("/nonexistent/skipd.sock"), {"status": _status})


@FUZZ
@given(st.one_of(
    st.binary(max_size=200),
    st.integers(0, 3000).map(lambda n: b"[" * n + b"\n"),
    st.integers(0, 3000).map(lambda n: b'{"command": "status", "a": ' + b"{" * n + b"\n"),
    st.sampled_from([b'{"command": "status"}', b'{"command": 1}', b"[]", b"null", b"1e999"]),
))
def test_fuzz_control_request(line: bytes) -> None:
    reply = asyncio.run(_SERVER._dispatch(line))
    assert reply["ok"] in (True, False)
    if not reply["ok"]:
        assert reply["reason"] in REASONS


# --- small encoders fed from outside -------------------------------------------------------------


@FUZZ
@given(st.floats(allow_nan=True, allow_infinity=True), st.floats(-10, 10, allow_nan=False))
def test_fuzz_pcap_timestamps(start: float, step: float) -> None:
    packets = [b"\x45" + b"\0" * 19] * 3
    out = refuses_only_with_reason_codes(lambda: encode_pcap(packets, start=start, step=step))
    if out is not None:
        assert len(out) == 24 + 3 * (16 + 20)
        assert all(math.isfinite(start + k * step) for k in range(3))


@FUZZ
@given(st.one_of(st.integers(-(2**40), 2**40), st.sampled_from([2**31, 2**64, 65536, 65537])))
def test_fuzz_replay_window_size(size: int) -> None:
    window = refuses_only_with_reason_codes(lambda: ReplayWindow(size))
    if window is not None:
        assert 1 <= window.size <= 65536


def test_fuzz_examples_are_configurable() -> None:
    """The suite's pass is short; SKIP_FUZZ_EXAMPLES asks for a long one."""
    assert EXAMPLES >= 1
    if "SKIP_FUZZ_EXAMPLES" not in os.environ:
        assert EXAMPLES == 200


@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_the_seeds_are_valid(seed: str) -> None:
    """Mutations start from objects that parse, so they exercise the deep paths."""
    data = SEEDS[seed]
    parse = {"certificate": parse_certificate, "spki": decode_spki, "pkcs8": load_private_key,
             "pkcs8_dh": load_private_key, "udh": parse_udh}[seed]
    assert parse(data) is not None
