"""skip-cert: run a small SKIP PKI (CA, DH keys, certificates, UDH values, CRLs).

A thin layer over :mod:`skip.pki`: it parses arguments, reads and writes files, reads the
clock, and prints. Every failure is one line on stderr and exit status 1 (2 for usage errors);
nothing is overwritten without ``--force``; private keys are written with mode 0600.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import ipaddress
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.CERT import CERT

from skip.crypto.dh import GROUPS, MIN_NEW_MODP_BITS
from skip.discovery.dns_names import owner_name
from skip.errors import CertificateError, ConfigError, SkipError
from skip.files import MAX_INPUT, read_bounded
from skip.pki.certificate import (
    Certificate,
    Subject,
    iso_time,
    issue,
    load_certificate,
    load_certificates,
    random_serial,
)
from skip.pki.crl import REASONS, Crl, Revocation, issue_crl, load_crls
from skip.pki.dhkey import (
    ENCODINGS,
    DHPrivateKey,
    DHPublicKey,
    dump_private_key,
    dump_public_key,
    encode_spki,
    generate_key,
    load_private_key,
    load_public_key,
)
from skip.pki.names import SkipName, dns_name, mailbox_name, parse_dn
from skip.pki.pemfile import is_pem, pem_blocks, pem_encode
from skip.pki.signing import (
    CA_KEY_TYPES,
    Signer,
    dump_signer,
    generate_signer,
    load_signer,
    scheme_of_algorithm,
)
from skip.pki.udh import UdhCertificate, make_udh, parse_udh
from skip.pki.validation import (
    Policy,
    TrustStore,
    check_dh_key,
    validate_certificate,
    validate_udh,
)
from skip.wire.nsid import Nsid

PROG = "skip-cert"
CA_CERT, CA_KEY, CA_STATE = "ca.crt", "ca.key", "revoked.json"
DAY = 86_400
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
RSA_BITS = (2048, 3072, 4096)  # larger ones take minutes to generate
MAX_DAYS = 36_525  # 100 years
BACKDATE = 300
"""Seconds by which a start time of ``now`` is moved back in what the tool signs or records:
the not-before of certificates (init-ca, issue) and UDH values, a CRL's thisUpdate, a
revocation date. A host whose clock is a little behind the CA's would otherwise refuse a
certificate or CRL fresh from the CA as not yet valid (``cert_not_yet_valid``,
``cert_crl_invalid``). ``--backdate SECONDS`` overrides it; explicit times are used as given."""
MAX_BACKDATE = DAY
clock: Callable[[], float] = time.time  # the one place the tool reads the time (tests set it)


# --- small helpers: time, files, passphrases -------------------------------------------------


def parse_time(text: str) -> int:
    """``now``, ``@POSIX`` or ISO 8601 (a date alone means midnight UTC; no zone means UTC).

    Bounded to years 1..9999 so that every accepted moment can be printed and encoded."""
    if text == "now":
        return int(clock())
    try:
        if text.startswith("@"):
            when = int(text[1:])
            iso(when)  # out of range raises here, not later inside an encoder
            return when
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise ConfigError(
            "config_invalid", f"bad time {text!r} (use ISO 8601, @seconds or now)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp())


def validity(args: argparse.Namespace) -> tuple[int, int]:
    """(not before, not after) from ``--not-before``, ``--days`` and ``--backdate`` (see
    :func:`_validity`): a not-before of ``now`` is moved back by the margin, the end is still
    ``--days`` from the nominal start."""
    nominal = parse_time(args.not_before)
    return nominal - backdate(args.not_before, args.backdate), nominal + args.days * DAY


def backdate(text: str, seconds: int | None) -> int:
    """How far a start time given as ``text`` is moved back: :data:`BACKDATE` (or
    ``--backdate``) for ``now``, nothing for an explicit time, which is taken as given."""
    if text != "now":
        if seconds is not None:
            raise ConfigError(
                "config_invalid",
                f"--backdate moves a start time of 'now' only; {text!r} is used as given",
            )
        return 0
    return BACKDATE if seconds is None else seconds


def backdate_seconds(text: str) -> int:
    """``--backdate``: whole seconds from 0 to a day."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None
    if not 0 <= value <= MAX_BACKDATE:
        raise argparse.ArgumentTypeError(f"{value} is outside 0..{MAX_BACKDATE}")
    return value


def path_length(text: str) -> int:
    """pathLenConstraint is INTEGER (0..MAX) (RFC 5280 section 4.2.1.9)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return value


def day_count(text: str) -> int:
    """``--days``: a whole number of days from 1 to 100 years; zero, negative and absurd
    values are refused on the command line rather than deep inside an encoder."""
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if not 1 <= days <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"{days} is outside 1..{MAX_DAYS}")
    return days


def iso(when: int) -> str:
    """The one form skip-cert prints times in, human and JSON: ISO 8601 UTC."""
    return iso_time(when)


STDIO = "-"
"""The file name that means standard input (where a file is read) or standard output (where
one is written). A file really called ``-`` is ``./-``."""
_stdin_read = False  # standard input can be read once per run (main() resets it)


def shown(path: str | Path) -> str:
    """A file name for messages: ``-`` (the string, never a Path) is said as standard input."""
    return "standard input" if path == STDIO else str(path)


def read_input(path: str | Path) -> bytes:
    """The bytes of ``path``, or of standard input for ``-`` (bounded alike, at most
    :data:`skip.files.MAX_INPUT`). Only the command-line string ``-`` means standard input:
    ``./-`` is a file of that name."""
    global _stdin_read
    if isinstance(path, Path) or path != STDIO:
        return read_bounded(path)
    if _stdin_read:
        raise ConfigError("config_invalid", "only one input can come from standard input (-)")
    _stdin_read = True
    if sys.stdin is None:
        raise ConfigError("config_invalid", "there is no standard input to read - from")
    data = sys.stdin.buffer.read(MAX_INPUT + 1)
    if len(data) > MAX_INPUT:
        raise ConfigError("config_invalid", f"standard input: larger than {MAX_INPUT} bytes")
    return data


def write_output(path: str, data: bytes, *, force: bool, private: bool = False) -> None:
    """:func:`write_file`, or standard output for ``-`` (where the shell's redirection, not
    this tool, decides where the bytes land and with which mode)."""
    if path == STDIO:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        write_file(Path(path), data, force=force, private=private)


def same_output(first: str, second: str) -> bool:
    """Whether two output names land in the same place (both ``-``, or one file)."""
    if STDIO in (first, second):
        return first == second
    return Path(first).resolve() == Path(second).resolve()


def say(text: str, *outputs: str | None) -> None:
    """A status line for people: on standard output, or on standard error when one of the
    command's ``outputs`` is standard output (``--out -``), which then carries the data."""
    print(text, file=sys.stderr if STDIO in outputs else sys.stdout)


def report(args: argparse.Namespace, human: str, result: dict[str, Any],
           *outputs: str | None) -> None:
    """A command's outcome: ``human`` (one or more lines, see :func:`say`), or with
    ``--json`` the object ``{"ok": true, **result}`` on standard output."""
    if getattr(args, "json", False):
        print(json.dumps({"ok": True, **result}, indent=2))
    else:
        say(human, *outputs)


def write_file(path: Path, data: bytes, *, force: bool, private: bool = False) -> None:
    """Create ``path`` (mode 0600 for private keys); refuse to replace it without ``force``.

    The data goes to a temporary file in the same directory first, which is then linked (or,
    with ``force``, renamed) into place: an interrupted or failed write (disk full, a signal)
    never leaves a half-written key or truncates the file --force was about to replace."""
    if path.exists() and not force:
        raise CertificateError("cert_exists", f"{path} exists (use --force to replace it)")
    if path.is_dir():
        raise CertificateError("cert_exists", f"{path} is a directory")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # name the file asked for, not the temporary one
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, 0o600 if private else 0o644 & ~_umask())  # before any byte is written
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:  # disk full, file size limit: name the file asked for
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        if force:
            tmp.replace(path)
        else:
            try:
                os.link(tmp, path)  # atomic, and fails if someone created path meanwhile
            except FileExistsError:
                raise CertificateError(
                    "cert_exists", f"{path} exists (use --force to replace it)"
                ) from None
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    """The process umask (only readable by setting it; the CLI is single-threaded)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_passphrase(path: str | None) -> bytes | None:
    """The first line of ``path``; an empty one is refused, because taking it as "no
    passphrase" would silently write an unencrypted key the operator asked to protect."""
    if path is None:
        return None
    lines = read_input(path).splitlines()
    if not lines or not lines[0]:
        raise ConfigError(
            "config_invalid", f"{shown(path)}: the passphrase (first line) is empty"
        )
    return lines[0]


MAX_PASSPHRASE = 64 * 1024  # far above any passphrase; bounds a --passphrase-fd that never ends


def passphrase_from(args: argparse.Namespace, prefix: str = "") -> bytes | None:
    """The passphrase the options ``--{prefix}passphrase-file/-env/-fd`` name (at most one of
    them, argparse sees to that), or None when none is given."""
    name = prefix.replace("-", "_")
    path = getattr(args, f"{name}passphrase_file", None)
    variable = getattr(args, f"{name}passphrase_env", None)
    fd = getattr(args, f"{name}passphrase_fd", None)
    if path is not None:
        return read_passphrase(path)
    if variable is not None:
        return env_passphrase(variable)
    if fd is not None:
        return fd_passphrase(fd)
    return None


def env_passphrase(variable: str) -> bytes:
    """The value of environment variable ``variable``, exactly (bytes as the OS holds them);
    unset or empty is refused, like an empty passphrase file."""
    if not variable or "=" in variable or "\0" in variable:
        raise ConfigError("config_invalid", f"bad environment variable name {variable!r}")
    value = os.environb.get(os.fsencode(variable))
    if value is None:
        raise ConfigError("config_invalid", f"environment variable {variable} is not set")
    if not value:
        raise ConfigError("config_invalid", f"environment variable {variable} is empty")
    return value


def fd_passphrase(fd: int) -> bytes:
    """The first line read from file descriptor ``fd``. It is read one byte at a time and
    only up to the newline, so whatever follows on the same descriptor (a key on standard
    input after ``--passphrase-fd 0``) is left for the next reader. The descriptor is not
    closed."""
    line = bytearray()
    try:
        while len(line) <= MAX_PASSPHRASE:
            byte = os.read(fd, 1)
            if not byte or byte == b"\n":
                break
            line += byte
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, f"file descriptor {fd}") from None
    if len(line) > MAX_PASSPHRASE:
        raise ConfigError(
            "config_invalid", f"file descriptor {fd}: a passphrase line over {MAX_PASSPHRASE} bytes"
        )
    if line.endswith(b"\r"):
        line = line[:-1]
    if not line:
        raise ConfigError("config_invalid", f"file descriptor {fd}: the passphrase is empty")
    return bytes(line)


def fd_number(text: str) -> int:
    """``--passphrase-fd``: a file descriptor number (0 is standard input)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 1 << 31:  # a C int; larger ones overflowed inside os.read
        raise argparse.ArgumentTypeError(f"{text!r} is not a file descriptor number")
    return value


class CaDir:
    """A CA's directory: certificate, key and the list of revocations."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def certificate(self) -> Certificate:
        return load_certificate(read_bounded(self.path / CA_CERT))

    def signer(self, passphrase: bytes | None) -> Signer:
        cert = self.certificate()
        scheme = scheme_of_algorithm(cert.signature_algorithm) or "rsa-pss"
        return load_signer(read_bounded(self.path / CA_KEY), passphrase, scheme)

    def state(self) -> dict[str, Any]:
        """revoked.json, checked: a hand-edited or damaged file is refused with its name
        before any command acts on it (and before a CRL is signed from it)."""
        path = self.path / CA_STATE
        if not path.exists():
            return {"crl_number": 0, "revoked": []}
        try:
            state = json.loads(read_bounded(path))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError("config_invalid", f"{path}: {exc}") from None
        if not (
            isinstance(state, dict)
            and isinstance(state.get("crl_number", 0), int)
            and isinstance(state.get("revoked"), list)
            and all(_revocation_entry_ok(r) for r in state["revoked"])
        ):
            raise ConfigError(
                "config_invalid",
                f"{path}: want {{\"crl_number\": N, \"revoked\": [{{\"serial\": HEX, "
                f"\"revoked_at\": SECONDS, \"reason\": ...}}]}}",
            )
        return state

    def save_state(self, state: dict[str, Any]) -> None:
        write_file(self.path / CA_STATE, (json.dumps(state, indent=2) + "\n").encode(),
                   force=True)

    def revocations(self) -> list[Revocation]:
        return [
            Revocation(serial_number(r["serial"]), r["revoked_at"], r.get("reason"))
            for r in self.state()["revoked"]
        ]


def _revocation_entry_ok(entry: object) -> bool:
    if not isinstance(entry, dict) or not isinstance(entry.get("revoked_at"), int):
        return False
    try:
        return serial_number(entry["serial"]) > 0
    except (KeyError, TypeError, ConfigError):
        return False


def serial_number(text: str) -> int:
    """A serial as the tool prints it: positive hexadecimal (RFC 5280 section 4.1.2.2 allows
    at most 20 octets, so below 2**159)."""
    try:
        serial = int(text, 16)
    except ValueError:
        serial = 0
    if not 0 < serial < 1 << 159:
        raise ConfigError("config_invalid", f"bad serial {text!r} (want positive hexadecimal)")
    return serial


def dns_names(names: Sequence[str]) -> tuple[str, ...]:
    """--dns values as RFC 1035 preferred-syntax host names (RFC 5280 section 4.2.1.6)."""
    for name in names:
        labels = name.rstrip(".").split(".")
        if len(name) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
            raise ConfigError("config_invalid", f"bad DNS name {name!r}")
    return tuple(names)


def mailboxes(addresses: Sequence[str]) -> tuple[str, ...]:
    """--email values: ASCII local@domain (an rfc822Name, RFC 5280 section 4.2.1.6)."""
    for address in addresses:
        local, at, domain = address.rpartition("@")
        if not (at and local and address.isascii() and " " not in address):
            raise ConfigError("config_invalid", f"bad e-mail address {address!r}")
        dns_names([domain])
    return tuple(addresses)


# --- reading any of the objects the tool knows ------------------------------------------------


def read_object(
    path: str, passphrase: bytes | None = None
) -> Certificate | UdhCertificate | Crl | DHPublicKey | DHPrivateKey:
    """Whatever ``path`` holds: certificate, CRL, public or private key (PEM/DER) or UDH."""
    data = read_input(path)
    if is_pem(data):
        blocks = pem_blocks(data)
        label = blocks[0][0] if blocks else ""
        if label == "CERTIFICATE":
            return load_certificate(data)
        if label == "X509 CRL":
            return load_crls(data)[0]
        if label == "PUBLIC KEY":
            return load_public_key(data)
        if label in ("PRIVATE KEY", "ENCRYPTED PRIVATE KEY"):
            return load_private_key(data, passphrase)
        raise CertificateError(
            "cert_malformed", f"{shown(path)}: unsupported PEM block {label!r}"
        )
    for loader in (load_certificate, lambda d: load_crls(d)[0], load_public_key, parse_udh):
        try:
            return loader(data)
        except SkipError:
            continue
    raise CertificateError(
        "cert_malformed", f"{shown(path)}: not a certificate, CRL, public key or UDH value"
    )


def read_dh_public(args: argparse.Namespace) -> DHPublicKey:
    """The holder's public value, checked like a peer would check it: a CA must not certify
    parameters or values that every relying party would refuse."""
    if args.key:
        passphrase = passphrase_from(args, "key-")  # first: --key-passphrase-fd 0 --key -
        key = load_private_key(read_input(args.key), passphrase).public
    elif args.public:
        key = load_public_key(read_input(args.public))
    else:
        key = parse_udh(read_input(args.udh)).dh_key
    check_dh_key(key)
    return key


def anchor_file(path: str) -> Path:
    """``--ca`` takes a certificate file or a CA directory made by init-ca."""
    return Path(path) / CA_CERT if Path(path).is_dir() else Path(path)


def read_anchors(path: str) -> bytes:
    """The trust anchor file ``--ca`` names (``-``: standard input)."""
    return read_input(path) if path == STDIO else read_bounded(anchor_file(path))


# --- descriptions (show / name / --json) -------------------------------------------------------


def key_description(key: DHPublicKey) -> dict[str, Any]:
    return {
        "group": key.group.name if key.well_known else f"custom ({key.group.bits} bits)",
        "kind": key.group.kind,
        "bits": key.group.bits,
        "encoding": key.encoding,
        "public_value": key.public_value.hex(),
    }


def describe(obj: object) -> dict[str, Any]:
    if isinstance(obj, Certificate):
        return {
            "kind": "certificate",
            "version": obj.version,
            "serial": f"{obj.serial:x}",
            "subject": obj.subject_text,
            "issuer": obj.issuer_text,
            "not_before": iso(obj.not_before),
            "not_after": iso(obj.not_after),
            "signature_algorithm": obj.signature_algorithm["algorithm"].native,
            "ca": bool(obj.is_ca),
            "key_usage": sorted(obj.key_usage) if obj.key_usage is not None else None,
            "key": key_description(obj.dh_key) if obj.dh_key else {"kind": "signature"},
            "subject_alt_names": {
                "ip": [str(a) for a in obj.san_addresses],
                "dns": list(obj.san_dns),
                "email": list(obj.san_email),
            },
            "names": [n.as_json() for n in obj.skip_names()] if obj.dh_key else [],
            "sha256_fingerprint": obj.fingerprint,
        }
    if isinstance(obj, UdhCertificate):
        return {
            "kind": "udh",
            "not_before": iso(obj.not_before),
            "not_after": iso(obj.not_after),
            "key": key_description(obj.dh_key),
            "names": [n.as_json() for n in obj.skip_names()],
            "md5_fingerprint": obj.fingerprint,
        }
    if isinstance(obj, Crl):
        return {
            "kind": "crl",
            "issuer": obj.issuer_text,
            "this_update": iso(obj.this_update),
            "next_update": iso(obj.next_update) if obj.next_update is not None else None,
            "crl_number": obj.number,
            "revoked": [
                {"serial": f"{r.serial:x}", "revoked_at": iso(r.revoked_at), "reason": r.reason}
                for r in sorted(obj.revoked.values())
            ],
        }
    if isinstance(obj, DHPrivateKey):
        return {"kind": "private key", "key": key_description(obj.public)}
    assert isinstance(obj, DHPublicKey)
    return {"kind": "public key", "key": key_description(obj)}


def print_human(info: dict[str, Any], indent: str = "") -> None:
    for key, value in info.items():
        label = key.replace("_", " ")
        if isinstance(value, dict):
            print(f"{indent}{label}:")
            print_human(value, indent + "  ")
        elif isinstance(value, list):
            print(f"{indent}{label}:" + ("" if value else " -"))
            for item in value:
                if isinstance(item, dict):
                    print(f"{indent}  - " + ", ".join(f"{k}={v}" for k, v in item.items()))
                else:
                    print(f"{indent}  - {item}")
        else:
            print(f"{indent}{label}: {value}")


def names_of(obj: object) -> tuple[SkipName, ...]:
    if isinstance(obj, Certificate | UdhCertificate) and obj.dh_key is not None:
        return obj.skip_names()
    raise CertificateError("cert_key_type", "only DH certificates and UDH values have SKIP names")


# --- commands ---------------------------------------------------------------------------------


def cmd_init_ca(args: argparse.Namespace) -> None:
    directory = Path(args.dir)
    for name in (CA_CERT, CA_KEY):
        if (directory / name).exists() and not args.force:
            raise CertificateError("cert_exists", f"{directory / name} exists (use --force)")
    passphrase = passphrase_from(args)
    signer = generate_signer(args.key_type, args.rsa_bits)
    start, end = validity(args)
    cert = issue(
        signer=signer,
        issuer=None,
        subject=Subject(parse_dn(args.subject)),
        not_before=start,
        not_after=end,
        ca=True,
        path_length=args.path_length,
    )
    directory.mkdir(parents=True, exist_ok=True)  # only once everything above succeeded
    write_file(directory / CA_KEY, dump_signer(signer, passphrase), force=args.force,
               private=True)
    try:
        write_file(directory / CA_CERT, cert.pem(), force=args.force)
    except (OSError, SkipError):
        if not args.force:  # a key without its certificate would block the next init-ca
            (directory / CA_KEY).unlink(missing_ok=True)
        raise
    CaDir(args.dir).save_state({"crl_number": 0, "revoked": []})
    report(
        args,
        f"CA {cert.subject_text} ({args.key_type}) in {directory}, "
        f"valid until {iso(cert.not_after)}",
        {"dir": str(directory), "key_type": args.key_type, "certificate": describe(cert)},
    )


def cmd_genkey(args: argparse.Namespace) -> None:
    group = GROUPS[args.group]
    if group.kind == "modp" and group.bits < MIN_NEW_MODP_BITS and not args.allow_small:
        raise ConfigError(
            "config_invalid",
            f"{group.name} is below {MIN_NEW_MODP_BITS} bits; pass --allow-small for legacy peers",
        )
    if args.public and same_output(args.public, args.out):
        raise ConfigError("config_invalid", "--public must name another file than the key")
    for path in (args.out, args.public):  # both refused up front: no key left without its pair
        if path and path != STDIO and Path(path).exists() and not args.force:
            raise CertificateError("cert_exists", f"{path} exists (use --force to replace it)")
    passphrase = passphrase_from(args)
    key = generate_key(group)
    write_output(args.out, dump_private_key(key, passphrase), force=args.force, private=True)
    if args.public:
        write_output(args.public, dump_public_key(key.public), force=args.force)
    where = "standard output" if args.out == STDIO else args.out
    report(
        args,
        f"{group.name} key written to {where}",
        {"out": args.out, "public_out": args.public, "encrypted": passphrase is not None,
         "key": key_description(key.public)},
        args.out, args.public,
    )


def cmd_issue(args: argparse.Namespace) -> None:
    ca = CaDir(args.ca)
    ca_cert = ca.certificate()
    key = read_dh_public(args)
    start, end = validity(args)
    if ca_cert.not_after <= start:  # else the clipped validity below would be empty
        raise CertificateError(
            "cert_expired", f"the CA {ca_cert.subject_text} expired at {iso(ca_cert.not_after)}"
        )
    addresses = tuple(ipaddress.ip_address(a) for a in args.ip)
    cert = issue(
        signer=ca.signer(passphrase_from(args, "ca-")),
        issuer=ca_cert,
        subject=Subject(
            parse_dn(args.subject), addresses, dns_names(args.dns), mailboxes(args.email)
        ),
        not_before=start,
        not_after=min(end, ca_cert.not_after),
        dh_key=key,
        profile=args.profile,
        serial=random_serial(),
    )
    write_output(args.out, cert.pem(), force=args.force)
    report(
        args,
        f"issued serial {cert.serial:x} to {cert.subject_text}, valid until {iso(cert.not_after)}",
        {"out": args.out, "certificate": describe(cert)},
        args.out,
    )


def cmd_udh(args: argparse.Namespace) -> None:
    udh = make_udh(read_dh_public(args), *validity(args))
    write_output(args.out, udh.encoding, force=args.force)
    report(args, f"UDH name (NSID 8 MKID): {udh.fingerprint}",
           {"out": args.out, "udh": describe(udh)}, args.out)


def cmd_show(args: argparse.Namespace) -> None:
    info = describe(read_object(args.file, passphrase_from(args)))
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print_human(info)


def cmd_verify(args: argparse.Namespace) -> None:
    policy = Policy(
        min_modp_bits=args.min_bits,
        allow_custom_groups=args.allow_custom_groups,
        require_crl=args.require_crl,
        allow_legacy_signatures=args.allow_legacy,
    )
    now = parse_time(args.at)
    obj = read_object(args.file)
    name = wanted_name(args)
    if isinstance(obj, UdhCertificate):
        if name is None or name[0] != 8:
            raise ConfigError(
                "config_invalid", "a UDH value is verified against --name 8:<md5 hex>"
            )
        peer = validate_udh(obj, now, expected_name=name[1], policy=policy)
    elif isinstance(obj, Certificate):
        if not args.ca:
            raise ConfigError("config_invalid", "give the trust anchors with --ca FILE")
        anchors = [c for path in args.ca
                   for c in load_certificates(read_anchors(path))]
        intermediates = [c for p in args.untrusted for c in load_certificates(read_input(p))]
        crls = [c for path in args.crl for c in load_crls(read_input(path))]
        peer = validate_certificate(
            obj,
            TrustStore(anchors),
            now,
            intermediates=intermediates,
            crls=crls,
            policy=policy,
            name=name,
        )
    else:
        raise CertificateError(
            "cert_key_type", f"{shown(args.file)} is not a certificate or UDH value"
        )
    result: dict[str, Any] = {
        "file": shown(args.file),
        "at": iso(now),
        "kind": "udh" if isinstance(obj, UdhCertificate) else "certificate",
    }
    if isinstance(obj, Certificate):
        result.update(subject=obj.subject_text, serial=f"{obj.serial:x}")
    result.update(
        group=peer.group.name,
        not_after=iso(peer.not_after),  # the earliest expiry on the chain
        names=[n.as_json() for n in peer.names],
    )
    report(
        args,
        f"{shown(args.file)}: OK ({peer.group.name}, valid until {iso(peer.not_after)})",
        result,
    )


def wanted_name(args: argparse.Namespace) -> tuple[int, bytes] | None:
    if args.name:
        nsid_text, _, mkid_hex = args.name.partition(":")
        try:
            return int(nsid_text), bytes.fromhex(mkid_hex)
        except ValueError:
            raise ConfigError(
                "config_invalid", f"bad --name {args.name!r} (want NSID:MKIDHEX)"
            ) from None
    if args.ip:
        address = ipaddress.ip_address(args.ip)
        return (1 if address.version == 4 else 3), address.packed
    if args.dns:
        wanted = dns_name(dns_names([args.dns])[0])
        return wanted.nsid, wanted.mkid
    if args.email:
        wanted = mailbox_name(args.email)
        return wanted.nsid, wanted.mkid
    return None


def cmd_name(args: argparse.Namespace) -> None:
    obj = read_object(args.file)
    names = names_of(obj)
    if args.json:
        print(json.dumps([n.as_json() for n in names], indent=2))
        return
    for name in names:
        print(f"NSID {name.nsid:<3} MKID {name.mkid.hex():<32}  {name.label}")


def cmd_export(args: argparse.Namespace) -> None:
    obj = read_object(args.file)
    fmt = args.format
    if fmt == "dns":  # the alias of dns-export
        data, info = dns_records(obj, args)
        write_dns(args, data, info)
        return
    given = [f"--{o}" for o in DNS_OPTIONS if getattr(args, o) not in (None, [], DNS_TTL)]
    if given:
        raise ConfigError("config_invalid", f"{', '.join(given)}: only with --format dns")
    if fmt == "udh":
        if isinstance(obj, UdhCertificate):
            data = obj.encoding
        elif isinstance(obj, Certificate) and obj.dh_key is not None:
            data = make_udh(obj.dh_key, obj.not_before, obj.not_after).encoding
        else:
            raise CertificateError(
                "cert_key_type", "UDH export needs a DH certificate or UDH value"
            )
    elif isinstance(obj, UdhCertificate):
        raise CertificateError("cert_key_type", "a UDH value has no PEM/DER form; export udh")
    else:
        der, label = der_and_label(obj)
        data = der if fmt == "der" else pem_encode(label, der)
    if not args.json:
        write_output(args.out or STDIO, data, force=args.force)
        return
    result: dict[str, Any] = {"format": fmt, "out": args.out, "bytes": len(data)}
    if args.out:
        write_output(args.out, data, force=args.force)
    elif fmt == "pem":
        result["text"] = data.decode("ascii")
    else:
        result["base64"] = base64.b64encode(data).decode()
    report(args, "", result)


def der_and_label(obj: object) -> tuple[bytes, str]:
    if isinstance(obj, Certificate):
        return obj.der, "CERTIFICATE"
    if isinstance(obj, Crl):
        return obj.der, "X509 CRL"
    if isinstance(obj, DHPublicKey):
        return encode_spki(obj), "PUBLIC KEY"
    raise CertificateError("cert_key_type", "private keys are not exported")


DNS_TTL = 3600
CERT_PKIX = 1  # RFC 4398 s. 2.1: an X.509 certificate, DER
DNS_OPTIONS = ("owner", "zone", "ttl", "origin")


def dns_owner(text: str, what: str) -> dns.name.Name:
    """An absolute DNS name from the command line or a certificate (a trailing dot optional)."""
    try:
        return dns.name.from_text(text.rstrip(".") + ".")
    except dns.exception.DNSException as exc:
        raise ConfigError("config_invalid", f"{what} {text!r} is not a DNS name: {exc}") from exc


def dns_owners(cert: Certificate, owners: Sequence[str], zone: str | None
               ) -> list[tuple[dns.name.Name, str]]:
    """The owner names of a certificate's CERT records, each with why (next-wave.md s. 2.3).

    Without ``owners``: each dNSName it answers to (DNS-3/DNS-5, the name itself), then each
    address (IP attributes and SAN addresses) as its reverse name (DNS-1 in-addr.arpa.,
    DNS-2 ip6.arpa.), RFC 4398 s. 3.1's order. ``owners`` replace those. ``zone`` adds the
    project's hashed name ``<hex MKID>.<nsid>._skip.<zone>.`` (DNS-4) of every name that is not
    an address. A certificate without a DH key answers to no SKIP name: only ``owners`` count.
    """
    names = cert.skip_names() if cert.dh_key is not None else ()
    found: list[tuple[dns.name.Name, str]] = []
    if owners:
        found += [(dns_owner(owner, "--owner"), "--owner") for owner in owners]
    else:
        for name in names:
            if name.nsid == Nsid.MD5_DNS_NAME:
                found.append((dns_owner(name.label, "the dNSName"), f"dNSName {name.label}"))
        for name in names:
            if name.nsid in (Nsid.IPV4, Nsid.IPV6):
                owner = owner_name(name)
                assert owner is not None  # an address always has a reverse name
                found.append((owner, f"address {name.label}"))
    if zone is not None:
        dns_owner(zone, "--zone")
        for name in names:
            if name.nsid in (Nsid.IPV4, Nsid.IPV6):
                continue
            try:
                owner = owner_name(name, skip_domain=zone)
            except dns.exception.DNSException as exc:
                raise ConfigError("config_invalid", f"--zone {zone!r}: {exc}") from exc
            if owner is not None:
                found.append((owner, f"hashed NSID {name.nsid} {name.label}"))
    unique = list({owner: (owner, why) for owner, why in reversed(found)}.values())[::-1]
    if not unique:
        raise ConfigError(
            "config_invalid", "no DNS name or address in the certificate: give --owner or --zone"
        )
    return unique


def dns_cert_rrsets(cert: Certificate, owners: Sequence[str] = (), zone: str | None = None,
                    ttl: int = DNS_TTL) -> list[tuple[dns.rrset.RRset, str]]:
    """RFC 4398 CERT RRsets, one per owner name: type PKIX, key tag 0, algorithm 0 (a DH key
    has no DNSSEC algorithm number; RFC 4398 s. 2.1). Built with dnspython, not text."""
    rdata = CERT(dns.rdataclass.IN, dns.rdatatype.CERT, CERT_PKIX, 0, 0, cert.der)
    rrsets = []
    for owner, why in dns_owners(cert, owners, zone):
        rrset = dns.rrset.RRset(owner, dns.rdataclass.IN, dns.rdatatype.CERT)
        rrset.add(rdata, ttl)
        rrsets.append((rrset, why))
    return rrsets


def dns_cert_text(rrsets: Sequence[tuple[dns.rrset.RRset, str]],
                  origin: dns.name.Name | None = None) -> str:
    """Master-file text (RFC 1035 s. 5): with ``origin``, a ``$ORIGIN`` line and owner names
    relative to it where they are below it (the others stay absolute)."""
    lines = [f"$ORIGIN {origin.to_text()}"] if origin is not None else []
    lines += [rrset.to_text(origin=origin, relativize=origin is not None)
              for rrset, _ in rrsets]
    return "\n".join(lines) + "\n"


def dns_records(obj: object, args: argparse.Namespace) -> tuple[bytes, dict[str, Any]]:
    """What ``dns-export`` (and its alias ``export --format dns``) writes, and its JSON."""
    if isinstance(obj, UdhCertificate):
        raise CertificateError("cert_key_type", "a UDH value has no DNS CERT form (RFC 4398 "
                               "carries X.509 certificates); export the certificate")
    if not isinstance(obj, Certificate):
        raise CertificateError("cert_key_type", "DNS CERT records carry certificates")
    if not 0 <= args.ttl <= 2**31 - 1:  # RFC 2181 s. 8
        raise ConfigError("config_invalid", f"--ttl {args.ttl}: from 0 to {2**31 - 1}")
    origin = dns_owner(args.origin, "--origin") if args.origin is not None else None
    rrsets = dns_cert_rrsets(obj, args.owner, args.zone, args.ttl)
    text = dns_cert_text(rrsets, origin)
    records = [
        {"owner": rrset.name.to_text(), "ttl": rrset.ttl, "class": "IN", "type": "CERT",
         "certificate_type": "PKIX", "key_tag": 0, "algorithm": 0, "source": why}
        for rrset, why in rrsets
    ]
    return text.encode("ascii"), {"records": records,
                                  "certificate": base64.b64encode(obj.der).decode()}


def cmd_dns_export(args: argparse.Namespace) -> None:
    data, info = dns_records(read_object(args.file), args)
    write_dns(args, data, info)


def write_dns(args: argparse.Namespace, data: bytes, info: dict[str, Any]) -> None:
    if not args.json:
        write_output(args.out or STDIO, data, force=args.force)
        return
    if args.out:
        write_output(args.out, data, force=args.force)
    result: dict[str, Any] = {"format": "dns", "out": args.out, "bytes": len(data), **info}
    if not args.out:
        result["text"] = data.decode("ascii")
    report(args, "", result)


PUBKEY_FORMATS = ("pem", "der", "hex", "base64")


def cmd_pubkey(args: argparse.Namespace) -> None:
    """The public key of a private key (or of a public key, DH certificate or UDH value)."""
    obj = read_object(args.file, passphrase_from(args))
    if isinstance(obj, DHPrivateKey):
        key = obj.public
    elif isinstance(obj, DHPublicKey):
        key = obj
    elif isinstance(obj, Certificate | UdhCertificate) and obj.dh_key is not None:
        key = obj.dh_key
    else:
        raise CertificateError(
            "cert_key_type", f"{shown(args.file)} holds no Diffie-Hellman key"
        )
    spki = encode_spki(key, args.encoding)
    data = {
        "pem": pem_encode("PUBLIC KEY", spki),
        "der": spki,
        "hex": key.public_value.hex().encode() + b"\n",
        "base64": base64.b64encode(key.public_value) + b"\n",
    }[args.format]
    if not args.json:
        write_output(args.out or STDIO, data, force=args.force)
        return
    if args.out:
        write_output(args.out, data, force=args.force)
    described = key_description(key)
    described["encoding"] = args.encoding or key.encoding
    report(args, "", {
        "out": args.out,
        "format": args.format,
        "key": described,
        "pem": pem_encode("PUBLIC KEY", spki).decode("ascii"),
        "spki_sha256": hashlib.sha256(spki).hexdigest(),
    })


def cmd_revoke(args: argparse.Namespace) -> None:
    ca = CaDir(args.ca)
    ca_cert = ca.certificate()
    serials = [serial_number(s) for s in args.serial]
    for path in args.cert:
        cert = load_certificate(read_input(path))
        if cert.issuer != ca_cert.subject:
            raise CertificateError(
                "cert_untrusted", f"{shown(path)} was not issued by {ca_cert.subject_text}"
            )
        serials.append(cert.serial)
    if not serials:
        raise ConfigError("config_invalid", "name certificates or --serial values to revoke")
    state = ca.state()
    known = {serial_number(r["serial"]) for r in state["revoked"]}
    when = parse_time(args.at) - backdate(args.at, args.backdate)
    lines, revoked, already = [], [], []
    for serial in dict.fromkeys(serials):
        if serial in known:
            lines.append(f"serial {serial:x} was already revoked")
            already.append(f"{serial:x}")
            continue
        state["revoked"].append(
            {"serial": f"{serial:x}", "revoked_at": when, "reason": args.reason}
        )
        lines.append(f"revoked serial {serial:x}; run '{PROG} crl' to publish a new CRL")
        revoked.append({"serial": f"{serial:x}", "revoked_at": iso(when), "reason": args.reason})
    ca.save_state(state)
    report(args, "\n".join(lines), {"revoked": revoked, "already_revoked": already})


def cmd_crl(args: argparse.Namespace) -> None:
    ca = CaDir(args.ca)
    state = ca.state()
    now = parse_time(args.at)
    next_update = now + args.days * DAY
    state["crl_number"] = state.get("crl_number", 0) + 1
    crl = issue_crl(
        signer=ca.signer(passphrase_from(args, "ca-")),
        issuer=ca.certificate(),
        revoked=ca.revocations(),
        this_update=now - backdate(args.at, args.backdate),
        next_update=next_update,
        number=state["crl_number"],
    )
    # refused before the number is used up
    if args.out != STDIO and Path(args.out).exists() and not args.force:
        raise CertificateError("cert_exists", f"{args.out} exists (use --force to replace it)")
    # The number is saved before the CRL is published: a failure in between skips a number
    # (allowed) instead of publishing the same number twice (RFC 5280 section 5.2.3).
    ca.save_state(state)
    write_output(args.out, crl.pem(), force=args.force)
    report(
        args,
        f"CRL {crl.number} with {len(crl.revoked)} revocation(s), "
        f"next update {iso(next_update)}",
        {"out": args.out, "crl": describe(crl)},
        args.out,
    )


# --- argument parsing ---------------------------------------------------------------------------


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: Callable[[argparse.Namespace], None],
    help_text: str,
    example: str,
    aliases: Sequence[str] = (),
) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        name,
        help=help_text,
        description=help_text,
        aliases=list(aliases),
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler)
    return parser


def _key_source(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--key", help="the holder's DH private key (PKCS#8; - for stdin)")
    source.add_argument(
        "--public", help="the holder's DH public key (PEM/DER SubjectPublicKeyInfo; - for stdin)"
    )
    source.add_argument("--udh", help="the holder's UDH value (- for stdin)")
    _passphrase(parser, "key-", "the passphrase of --key")


def _passphrase(parser: argparse.ArgumentParser, prefix: str, what: str) -> None:
    """``--{prefix}passphrase-file FILE | -env VAR | -fd N``, at most one of them."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument(f"--{prefix}passphrase-file", metavar="FILE",
                        help=f"{what}: the first line of FILE (- for stdin)")
    source.add_argument(f"--{prefix}passphrase-env", metavar="VAR",
                        help=f"{what}: the value of environment variable VAR")
    source.add_argument(f"--{prefix}passphrase-fd", metavar="N", type=fd_number,
                        help=f"{what}: the first line read from file descriptor N")


def _validity(parser: argparse.ArgumentParser, days: int) -> None:
    parser.add_argument("--days", type=day_count, default=days, help=f"validity (default {days})")
    parser.add_argument("--not-before", default="now", help="ISO 8601, @seconds or now")
    _backdate(parser, "a not-before of now")


def _backdate(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--backdate",
        type=backdate_seconds,
        metavar="SECONDS",
        help=f"move {what} back by SECONDS, for hosts whose clock is behind "
        f"(default {BACKDATE})",
    )


def _dns_options(parser: argparse.ArgumentParser, only: str) -> None:
    parser.add_argument("--owner", action="append", default=[], metavar="NAME",
                        help="publish under NAME instead of the names the certificate answers "
                        f"to (absolute; repeatable){only}")
    parser.add_argument("--zone", metavar="DOMAIN",
                        help="also publish under <hex MKID>.<nsid>._skip.DOMAIN. for each name "
                        f"that is not an address (a skip convention){only}")
    parser.add_argument("--ttl", type=int, default=DNS_TTL,
                        help=f"TTL of the records (default {DNS_TTL}){only}")
    parser.add_argument("--origin", metavar="DOMAIN",
                        help=f"write $ORIGIN DOMAIN and owner names relative to it{only}")


def _json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true",
        help="machine-readable output on stdout, refusals too (same exit status)",
    )


def _output(parser: argparse.ArgumentParser, *, required: bool = True,
            help_text: str = "file to write (- for standard output)") -> None:
    parser.add_argument("--out", required=required, help=help_text)
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    _json(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run a small SKIP PKI: a CA, DH keys, certificates, UDH values and CRLs.",
        epilog=(
            "example:\n"
            f"  {PROG} init-ca ca --subject 'CN=Example SKIP CA'\n"
            f"  {PROG} genkey host1.key --group ffdhe2048\n"
            f"  {PROG} issue --ca ca --key host1.key --subject CN=host1 --ip 10.0.0.1 \\\n"
            "        --out host1.crt\n"
            f"  {PROG} verify host1.crt --ca ca/ca.crt --ip 10.0.0.1\n"
            f"  {PROG} genkey - --group x25519 | {PROG} pubkey --format hex\n"
            "\n"
            "A file name of - reads standard input or writes standard output (./- is a file);\n"
            "status lines then go to standard error."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from skip import __version__  # here, so this one edit carries all of --version

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(
        sub,
        "init-ca",
        cmd_init_ca,
        "create a CA directory (ca.crt, ca.key, revoked.json)",
        f"{PROG} init-ca ca --subject 'CN=Example SKIP CA,O=Example' --key-type ed25519",
    )
    p.add_argument("dir", help="directory for ca.crt, ca.key and revoked.json")
    p.add_argument("--subject", required=True, help="CA name, e.g. 'CN=Example CA,O=Example'")
    p.add_argument("--key-type", choices=CA_KEY_TYPES, default="ed25519")
    p.add_argument("--rsa-bits", type=int, default=3072, choices=RSA_BITS)
    _validity(p, 3650)
    p.add_argument(
        "--path-length", type=path_length, default=0, help="intermediate CAs allowed below"
    )
    _passphrase(p, "", "encrypt ca.key with a passphrase")
    p.add_argument("--force", action="store_true")
    _json(p)

    p = _command(
        sub,
        "genkey",
        cmd_genkey,
        "generate a long-term DH private key",
        f"{PROG} genkey host1.key --group ffdhe3072 --public host1.pub",
    )
    p.add_argument("out", help="private key file to write (PKCS#8 PEM, mode 0600; - for stdout)")
    p.add_argument("--group", choices=sorted(GROUPS), default="ffdhe2048")
    p.add_argument("--public", help="also write the public key (PEM) here (- for stdout)")
    p.add_argument(
        "--allow-small", action="store_true", help=f"allow groups below {MIN_NEW_MODP_BITS} bits"
    )
    _passphrase(p, "", "encrypt the key with a passphrase")
    p.add_argument("--force", action="store_true")
    _json(p)

    p = _command(
        sub,
        "issue",
        cmd_issue,
        "issue a DH certificate from a CA",
        f"{PROG} issue --ca ca --key host1.key --subject CN=host1 --ip 10.0.0.1 "
        "--dns host1.example --out host1.crt",
    )
    p.add_argument("--ca", required=True, help="CA directory made by init-ca")
    _key_source(p)
    p.add_argument("--subject", required=True, help="holder name, e.g. CN=host1")
    p.add_argument("--ip", action="append", default=[], help="address (NSID 1/3); repeatable")
    p.add_argument("--dns", action="append", default=[], help="DNS name (NSID 4); repeatable")
    p.add_argument("--email", action="append", default=[], help="mailbox (NSID 9); repeatable")
    p.add_argument(
        "--profile",
        choices=("v3", "draft"),
        default="v3",
        help="v3 (RFC 5280) or draft (skip-x509-00: v1, PKCS#3, ipAddress RDNs)",
    )
    _validity(p, 365)
    _passphrase(p, "ca-", "the passphrase of ca.key")
    _output(p)

    p = _command(
        sub,
        "udh",
        cmd_udh,
        "make an unsigned DH public value (named by its MD5, NSID 8)",
        f"{PROG} udh --key host1.key --out host1.udh --days 365",
    )
    _key_source(p)
    _validity(p, 365)
    _output(p)

    p = _command(
        sub,
        "show",
        cmd_show,
        "describe a certificate, UDH value, CRL or key",
        f"{PROG} show host1.crt --json",
    )
    p.add_argument("file", help="certificate, UDH value, CRL, public or private key (- for stdin)")
    _json(p)
    _passphrase(p, "", "the passphrase of an encrypted private key")

    p = _command(
        sub,
        "verify",
        cmd_verify,
        "validate a certificate or UDH value at a given time",
        f"{PROG} verify host1.crt --ca ca/ca.crt --crl ca.crl --at 2026-06-01 --ip 10.0.0.1",
    )
    p.add_argument("file", help="certificate (PEM/DER) or UDH value (- for stdin)")
    p.add_argument(
        "--ca", action="append", default=[], help="trust anchor file(s) or CA directory (or -)"
    )
    p.add_argument(
        "--untrusted", action="append", default=[], help="intermediate CA file(s) (or -)"
    )
    p.add_argument("--crl", action="append", default=[], help="CRL file(s) (or -)")
    p.add_argument("--at", default="now", help="validation time: ISO 8601, @seconds or now")
    wanted = p.add_mutually_exclusive_group()
    wanted.add_argument("--name", help="NSID:MKIDHEX the key must answer to (8:<md5> for UDH)")
    wanted.add_argument("--ip", help="address the key must answer to (NSID 1/3)")
    wanted.add_argument("--dns", help="DNS name the key must answer to (NSID 4)")
    wanted.add_argument("--email", help="mailbox the key must answer to (NSID 9)")
    p.add_argument("--require-crl", action="store_true", help="refuse issuers without a CRL")
    p.add_argument(
        "--allow-custom-groups",
        action="store_true",
        help="accept DH parameters that are not a well-known group (slow checks)",
    )
    p.add_argument("--allow-legacy", action="store_true", help="accept MD5/SHA-1 signatures")
    p.add_argument("--min-bits", type=int, default=1024, help="smallest MODP modulus accepted")
    _json(p)

    p = _command(
        sub,
        "name",
        cmd_name,
        "list the SKIP names (NSID, MKID) a certificate answers to",
        f"{PROG} name host1.crt",
        aliases=("fingerprint",),
    )
    p.add_argument("file", help="DH certificate or UDH value (- for stdin)")
    _json(p)

    p = _command(
        sub,
        "export",
        cmd_export,
        "convert to PEM, DER, UDH or DNS CERT records (--format dns is dns-export)",
        f"{PROG} export host1.crt --format der --out host1.der",
    )
    p.add_argument("file", help="certificate, CRL, public key or UDH value (- for stdin)")
    p.add_argument("--format", choices=("pem", "der", "udh", "dns"), required=True)
    _dns_options(p, " (--format dns only)")
    _output(p, required=False, help_text="write here instead of standard output")

    p = _command(
        sub,
        "dns-export",
        cmd_dns_export,
        "write RFC 4398 CERT records (PKIX, key tag 0, algorithm 0) for a certificate, one per "
        "name it answers to: each dNSName, each address as its in-addr.arpa./ip6.arpa. name",
        f"{PROG} dns-export host1.crt --zone example.net --ttl 600 --origin example.net",
    )
    p.add_argument("file", help="X.509 certificate, PEM or DER (- for stdin)")
    _dns_options(p, "")
    _output(p, required=False, help_text="write here instead of standard output")

    p = _command(
        sub,
        "pubkey",
        cmd_pubkey,
        "print the public key of a private key (like openssl pkey -pubout, wg pubkey)",
        f"{PROG} genkey - --group x25519 | {PROG} pubkey --format hex",
    )
    p.add_argument(
        "file", nargs="?", default=STDIO,
        help="private key (also a public key, DH certificate or UDH value); default - (stdin)",
    )
    p.add_argument(
        "--format", choices=PUBKEY_FORMATS, default="pem",
        help="pem / der: SubjectPublicKeyInfo; hex / base64: the bare public value, as the "
        "group encodes it (what a peer's Kij is computed from)",
    )
    p.add_argument(
        "--encoding", choices=ENCODINGS, default=None,
        help="SubjectPublicKeyInfo form (default: the one certificates carry; pkcs3 for a "
        "safe-prime group is what openssl pkey -pubout writes)",
    )
    _passphrase(p, "", "the passphrase of an encrypted private key")
    _output(p, required=False, help_text="write here instead of standard output")

    p = _command(
        sub,
        "revoke",
        cmd_revoke,
        "record revocations in a CA directory",
        f"{PROG} revoke --ca ca host2.crt --reason key_compromise",
    )
    p.add_argument("cert", nargs="*", help="certificate(s) to revoke (- for stdin)")
    p.add_argument("--ca", required=True)
    p.add_argument("--serial", action="append", default=[], help="serial number in hex")
    p.add_argument("--reason", choices=REASONS, default=None)
    p.add_argument("--at", default="now", help="revocation date: ISO 8601, @seconds or now")
    _backdate(p, "a revocation date of now")
    _json(p)

    p = _command(
        sub,
        "crl",
        cmd_crl,
        "sign a CRL with the CA's current revocations",
        f"{PROG} crl --ca ca --out ca.crl --days 7",
    )
    p.add_argument("--ca", required=True)
    p.add_argument("--days", type=day_count, default=7)
    p.add_argument("--at", default="now", help="thisUpdate time: ISO 8601, @seconds or now")
    _backdate(p, "a thisUpdate of now (nextUpdate stays --days from now)")
    _passphrase(p, "ca-", "the passphrase of ca.key")
    _output(p)
    return parser


def one_line(reason: str, text: str) -> str:
    """``skip-cert: error: <reason>: <why>`` on one line, even when a parser's message (an
    asn1crypto one says "while parsing ..." on extra lines) spans several."""
    return f"{PROG}: error: {reason}: " + "; ".join(
        line.strip() for line in text.splitlines() if line.strip()
    ) if text else f"{PROG}: error: {reason}"


def main(argv: Sequence[str] | None = None) -> int:
    global _stdin_read
    _stdin_read = False
    args = build_parser().parse_args(argv)
    try:
        json_output_check(args)
        args.handler(args)
    except SkipError as exc:
        reason, detail = exc.reason, exc.detail
    except BrokenPipeError:
        # `skip-cert show x.crt | head`: the reader has what it wanted; say nothing, and keep
        # Python from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        reason, detail = "io_error", f"{where}{exc.strerror or exc}"
    except ValueError as exc:  # bad addresses and similar command-line input
        reason, detail = "config_invalid", str(exc)
    else:
        return 0
    message = one_line(reason, detail)
    if getattr(args, "json", False):  # the same refusal, for the program reading stdout
        folded = message.removeprefix(f"{PROG}: error: {reason}").removeprefix(": ")
        print(json.dumps({"ok": False, "reason": reason, "detail": folded}, indent=2))
    print(message, file=sys.stderr)
    return 1


def json_output_check(args: argparse.Namespace) -> None:
    """``--json`` and ``--out -`` (or ``genkey -``) would both write standard output."""
    if getattr(args, "json", False) and STDIO in (
        getattr(args, "out", None), getattr(args, "public", None) if args.command == "genkey"
        else None
    ):
        raise ConfigError(
            "config_invalid", "--json and an output of - would both write standard output"
        )


if __name__ == "__main__":
    sys.exit(main())
