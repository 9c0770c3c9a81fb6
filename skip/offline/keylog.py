"""The traffic-key log: one line per Kp, what SSLKEYLOGFILE is to TLS (docs/decrypt.md).

DANGEROUS by design: whoever holds the file reads every packet sent under the keys in it,
PFS or not. skipd writes it only when ``[daemon] key_log`` names a file; skip-decrypt reads
it. A line::

    SKIP_TRAFFIC_KEY <version> <header> <kp> <e_kp> <a_kp>

all hex, ``-`` for an empty key (a cipher-only or MAC-only suite). The SKIP header is the
key's name: it holds the EKp, which differs for every Kp, so a capture's packets find their
key by their own header. Kp itself is logged so the line stays useful to a tool that derives
E_kp/A_kp itself; skip-decrypt uses E_kp/A_kp as given. Lines starting with ``#`` and blank
lines are ignored, so the file can say what it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from skip.errors import ParseError
from skip.keying.events import TrafficKeys

LABEL = "SKIP_TRAFFIC_KEY"
HEADER_COMMENT = ("# SKIP traffic-key log (docs/decrypt.md). DANGEROUS: whoever holds this "
                  "file reads the traffic under these keys.\n")
MAX_LINE = 4096  # a header of two 256-byte MKIDs and a 512-byte EKp fits many times over
MAX_ENTRIES = 1_000_000


@dataclass(frozen=True, slots=True)
class KeylogEntry:
    version: int
    header: bytes
    kp: bytes
    e_kp: bytes
    a_kp: bytes


def format_keylog_line(keys: TrafficKeys) -> str:
    """The log line of one traffic key, newline included (what skipd appends per Kp)."""
    fields = (keys.header, keys.kp, keys.e_kp, keys.a_kp)
    return " ".join((LABEL, str(keys.version), *(f.hex() or "-" for f in fields))) + "\n"


def parse_keylog(lines: Iterable[str]) -> dict[bytes, KeylogEntry]:
    """Entries by SKIP header. Raises ParseError (``bad_keylog``) naming the first bad line:
    a key log is written by a program, so a line that does not parse is a damaged file, and
    guessing past it could hide that."""
    entries: dict[bytes, KeylogEntry] = {}
    for number, line in enumerate(lines, 1):
        if len(line) > MAX_LINE:
            raise ParseError("bad_keylog", f"line {number} is longer than {MAX_LINE} characters")
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split()
        if len(parts) != 6 or parts[0] != LABEL or parts[1] not in ("1", "2"):
            raise ParseError("bad_keylog", f"line {number}: expected '{LABEL} <version 1|2> "
                             "<header> <kp> <e_kp> <a_kp>'")
        try:
            header, kp, e_kp, a_kp = (b"" if p == "-" else bytes.fromhex(p) for p in parts[2:])
        except ValueError:
            raise ParseError("bad_keylog", f"line {number}: a field is not hex") from None
        if len(header) < 12 or not (e_kp or a_kp):
            raise ParseError("bad_keylog", f"line {number}: no SKIP header or no key")
        if len(entries) >= MAX_ENTRIES:
            raise ParseError("bad_keylog", f"more than {MAX_ENTRIES} keys")
        entries[header] = KeylogEntry(int(parts[1]), header, kp, e_kp, a_kp)
    return entries
