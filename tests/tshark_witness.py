"""Drive tshark as an outside witness: it decrypts and ICV-checks ESP that skip wrote.

tshark reads a pcap of raw IP packets plus ESP SAs given as its ``esp_sa`` UAT preference and
reports, per packet, what its own ESP dissector made of it. Nothing here reuses skip's crypto.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from skip.wire.pcap import encode_pcap

# skip algorithm name -> the string tshark 4.x's ESP preferences use for it.
TSHARK_ENCRYPTION = {
    "null": "NULL",
    "des-cbc": "DES-CBC [RFC2405]",
    "3des-cbc": "TripleDES-CBC [RFC2451]",
    "aes-cbc": "AES-CBC [RFC3602]",
    "aes-ctr": "AES-CTR [RFC3686]",
    "aes-gcm-8": "AES-GCM with 8 octet ICV [RFC4106]",
    "aes-gcm-12": "AES-GCM with 12 octet ICV [RFC4106]",
    "aes-gcm-16": "AES-GCM with 16 octet ICV [RFC4106]",
}
TSHARK_INTEGRITY = {
    None: "NULL",
    "hmac-md5-96": "HMAC-MD5-96 [RFC2403]",
    "hmac-sha1-96": "HMAC-SHA-1-96 [RFC2404]",
    "hmac-sha2-256-128": "HMAC-SHA-256-128 [RFC4868]",
    "hmac-sha2-384-192": "HMAC-SHA-384-192 [RFC4868]",
    "hmac-sha2-512-256": "HMAC-SHA-512-256 [RFC4868]",
}

FIELDS = (
    "frame.number",
    "esp.spi",
    "esp.sequence",
    "esp.icv_good",
    "esp.icv_bad",
    "esp.protocol",
    "esp.pad_len",
    "esp.decrypted_data",
    "esp.contained_data",
)


def _unsized(name: str) -> str:
    """tshark infers the AES key size from the key: aes-256-gcm-16 -> aes-gcm-16."""
    for bits in ("128", "192", "256"):
        name = name.replace(f"aes-{bits}-", "aes-")
    return name


@dataclass(frozen=True)
class TsharkSA:
    ip_version: int
    src: str
    dst: str
    spi: int
    encryption: str
    encryption_key: bytes
    integrity: str | None
    integrity_key: bytes

    def uat(self) -> str:
        cells = (
            "IPv4" if self.ip_version == 4 else "IPv6",
            self.src,
            self.dst,
            f"0x{self.spi:08x}",
            TSHARK_ENCRYPTION[_unsized(self.encryption)],
            "0x" + self.encryption_key.hex() if self.encryption_key else "",
            TSHARK_INTEGRITY[self.integrity],
            "0x" + self.integrity_key.hex() if self.integrity_key else "",
        )
        return "uat:esp_sa:" + ",".join(f'"{c}"' for c in cells)


def available() -> bool:
    return shutil.which("tshark") is not None


def dissect(packets: list[bytes], sas: list[TsharkSA], workdir: Path) -> list[dict[str, str]]:
    """tshark's view of each packet: a dict of FIELDS (empty string when absent)."""
    pcap = workdir / "witness.pcap"
    pcap.write_bytes(encode_pcap(packets))
    cmd = ["tshark", "-n", "-r", str(pcap), "-o", "esp.enable_encryption_decode:TRUE",
           "-o", "esp.enable_authentication_check:TRUE", "-T", "fields", "-E", "separator=|",
           "-E", "occurrence=l"]
    for sa in sas:
        cmd += ["-o", sa.uat()]
    for field in FIELDS:
        cmd += ["-e", field]
    # HOME is pointed at the work dir so no personal wireshark profile leaks in.
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env={"HOME": str(workdir), "PATH": "/usr/bin:/bin"}, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"tshark failed ({proc.returncode}): {proc.stderr}")
    rows = [line.split("|") for line in proc.stdout.splitlines() if line.strip()]
    return [dict(zip(FIELDS, row, strict=True)) for row in rows]
