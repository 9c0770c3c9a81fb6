"""skip-decrypt: open the SKIP packets of a capture after the fact (docs/decrypt.md).

Reads a pcap or pcapng file and key material (long-term private keys with the certificates
that name their hosts, and/or traffic-key logs), writes the inner datagrams as a pcap that
tshark reads, and reports, packet by packet, why what stayed closed did. A thin layer over
:mod:`skip.offline`: it reads files, prints, and turns every failure into one line.

Exit status: 0 when every SKIP packet opened, 3 when some did not (the report says why),
1 for an error (an unreadable file, a capture that is not one), 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from skip import __version__
from skip.errors import ConfigError, SkipError
from skip.files import read_bounded
from skip.offline.capture import PcapWriter, read_capture
from skip.offline.decryptor import Decryptor
from skip.offline.keylog import KeylogEntry, parse_keylog
from skip.offline.material import principals
from skip.pki.certificate import Certificate, load_certificates
from skip.pki.dhkey import DHPrivateKey, load_private_key
from skip.wire.ip import locate_upper
from skip.wire.skip_header import IP_PROTOCOL_SKIP

PROG = "skip-decrypt"
CERT_SUFFIXES = (".pem", ".crt", ".cer", ".der")
EXIT_SOME_CLOSED = 3
MAX_KEYLOG = 256 * 1024 * 1024


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Decrypt the SKIP packets of a pcap/pcapng capture with long-term keys or "
        "a traffic-key log; write the inner packets as a pcap.",
        epilog="example: skip-decrypt -r skip.pcapng -w clear.pcap --key a.key --cert a.crt "
        "--cert b.crt   (exit 0: all opened, 3: some did not, 1: error)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-r", "--read", required=True, metavar="CAPTURE",
                        help="the pcap or pcapng file to read")
    parser.add_argument("-w", "--write", metavar="PCAP",
                        help="write the decrypted inner packets here (pcap, raw IP)")
    parser.add_argument("--key", action="append", default=[], metavar="FILE",
                        help="a long-term DH private key (PKCS #8 PEM/DER; repeatable)")
    parser.add_argument("--passphrase-file", metavar="FILE",
                        help="the passphrase of encrypted private keys (first line)")
    parser.add_argument("--cert", action="append", default=[], metavar="FILE|DIR",
                        help="certificates naming the hosts (PEM bundle, DER, or a directory "
                        "of them; repeatable); every end of the traffic needs one")
    parser.add_argument("--keylog", action="append", default=[], metavar="FILE",
                        help="a traffic-key log (skipd's [daemon] key_log; repeatable)")
    parser.add_argument("--all", action="store_true",
                        help="also copy frames that are not SKIP, or that stay closed, to the "
                        "output unchanged (in capture order)")
    parser.add_argument("--force", action="store_true", help="overwrite the output file")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print only the summary, not a line per SKIP packet")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except SkipError as exc:
        reason, detail = exc.reason, exc.detail
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        reason, detail = "io_error", f"{where}{exc.strerror or exc}"
    message = f"{PROG}: error: {reason}: " + "; ".join(
        line.strip() for line in detail.splitlines() if line.strip())
    if args.json:
        print(json.dumps({"ok": False, "reason": reason, "detail": detail}, indent=2))
    print(message, file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    decryptor = Decryptor(principals(_certificates(args.cert), _private_keys(args)),
                          _keylogs(args.keylog))
    if not decryptor.principals and not decryptor.keylog:
        raise ConfigError("config_invalid", "no key material: give --key with --cert, or "
                          "--keylog")
    out_path = Path(args.write) if args.write else None
    if out_path is not None and out_path.exists() and not args.force:
        raise ConfigError("config_invalid", f"{out_path} exists (--force overwrites it)")
    report: list[dict[str, Any]] = []
    summary: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    with open(args.read, "rb") as capture:
        out = open(out_path, "wb") if out_path is not None else None  # noqa: SIM115
        try:
            writer = PcapWriter(out) if out is not None else None
            for frame in read_capture(capture):
                summary["frames"] += 1
                packet = frame.packet
                if packet is None or not _is_skip(packet):
                    if writer is not None and args.all and packet is not None:
                        writer.write(frame.time, packet)
                    continue
                summary["skip"] += 1
                entry: dict[str, Any] = {"frame": frame.number, "time": frame.time}
                try:
                    opened = decryptor.decrypt(packet)
                except SkipError as err:
                    reasons[err.reason] += 1
                    entry.update(decrypted=False, reason=err.reason, detail=err.detail)
                    if writer is not None and args.all:
                        writer.write(frame.time, packet)
                else:
                    summary["decrypted"] += 1
                    summary["duplicates"] += opened.duplicate
                    entry.update(decrypted=True, sender=opened.sender, receiver=opened.receiver,
                                 version=opened.version, via=opened.via, tunnel=opened.tunnel,
                                 duplicate=opened.duplicate, length=len(opened.packet))
                    if writer is not None:
                        writer.write(frame.time, opened.packet)
                report.append(entry)
        finally:
            if out is not None:
                out.close()
    closed = summary["skip"] - summary["decrypted"]
    result = {"ok": True, "frames": summary["frames"], "skip_packets": summary["skip"],
              "decrypted": summary["decrypted"], "not_decrypted": closed,
              "duplicates": summary["duplicates"], "reasons": dict(reasons),
              "output": str(out_path) if out_path else None}
    if args.json:
        print(json.dumps({**result, "packets": [] if args.quiet else report}, indent=2))
    else:
        if not args.quiet:
            for entry in report:
                print(_line(entry))
        why = ", ".join(f"{r} {n}" for r, n in reasons.most_common())
        print(f"{summary['frames']} frames, {summary['skip']} SKIP packets: "
              f"{summary['decrypted']} decrypted ({summary['duplicates']} duplicates), "
              f"{closed} not" + (f" ({why})" if why else ""))
    return EXIT_SOME_CLOSED if closed else 0


def _line(entry: dict[str, Any]) -> str:
    if not entry["decrypted"]:
        return f"frame {entry['frame']}: not decrypted: {entry['reason']}: {entry['detail']}"
    flags = [f"v{entry['version']}", entry["via"]] + ["tunnel"] * entry["tunnel"] + \
        ["duplicate"] * entry["duplicate"]
    return (f"frame {entry['frame']}: decrypted {entry['sender']} -> {entry['receiver']} "
            f"({', '.join(flags)}), {entry['length']} bytes")


def _is_skip(packet: bytes) -> bool:
    try:
        return locate_upper(packet, verify_checksum=False)[3] == IP_PROTOCOL_SKIP
    except SkipError as err:
        # a fragment of a SKIP datagram is still SKIP traffic the report must account for
        return err.reason == "fragment" and packet[0] >> 4 == 4 and \
            packet[9] == IP_PROTOCOL_SKIP


def _certificates(paths: Sequence[str]) -> list[Certificate]:
    certs: list[Certificate] = []
    for name in paths:
        path = Path(name)
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in CERT_SUFFIXES) \
            if path.is_dir() else [path]
        for file in files:
            try:
                certs += load_certificates(read_bounded(file))
            except SkipError as exc:
                raise type(exc)(exc.reason, f"{file}: {exc.detail}") from None
    return certs


def _private_keys(args: argparse.Namespace) -> list[DHPrivateKey]:
    passphrase = None
    if args.passphrase_file:
        lines = read_bounded(args.passphrase_file).splitlines()
        passphrase = lines[0] if lines else b""
    keys = []
    for file in args.key:
        try:
            keys.append(load_private_key(read_bounded(file), passphrase))
        except SkipError as exc:
            raise type(exc)(exc.reason, f"{file}: {exc.detail}") from None
    return keys


def _keylogs(paths: Sequence[str]) -> dict[bytes, KeylogEntry]:
    entries: dict[bytes, KeylogEntry] = {}
    for name in paths:
        with open(name, encoding="ascii", errors="replace") as text:
            if os.fstat(text.fileno()).st_size > MAX_KEYLOG:
                raise ConfigError("config_invalid", f"{name}: larger than {MAX_KEYLOG} bytes")
            try:
                entries.update(parse_keylog(text))
            except SkipError as exc:
                raise type(exc)(exc.reason, f"{name}: {exc.detail}") from None
    return entries


if __name__ == "__main__":
    sys.exit(main())
