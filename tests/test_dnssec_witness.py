"""Outside witnesses for the DNSSEC validator (DNS-20..DNS-22): zones signed by BIND's
``dnssec-signzone`` and by ldns's ``ldns-signzone``, code nobody here wrote; the trust anchor is
the DS their own tools print (``dnssec-dsfromkey``, ``ldns-key2ds``). Our validator must call
their signatures secure, their NSEC/NSEC3 chains proofs of absence, and a corrupted byte or a
late ``now`` bogus. tools/setup.sh installs bind9-utils and ldnsutils; a test skips only when
its tool is absent.
"""

from __future__ import annotations

import calendar
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import dns.name
import dns.rdatatype
import dns.zone
import pytest
from dns.rdtypes.ANY.DS import DS

from skip.discovery.dnssec import Evidence, Outcome, TrustAnchor, validate

ORIGIN = "w.test."
START, END = "20260101000000", "20270101000000"
NOW = calendar.timegm(time.strptime("20260601", "%Y%m%d"))
LATE = calendar.timegm(time.strptime(END, "%Y%m%d%H%M%S")) + 1
ZONE = f"""$ORIGIN {ORIGIN}
$TTL 300
@ IN SOA ns.other. admin.other. 1 7200 3600 1209600 300
@ IN NS ns.other.
host IN CERT PKIX 0 0 MAMCAQEwAwIBATADAgEB
other IN TXT "a second name, so the chain has three links"
"""

Signer = Callable[[Path, bool], tuple[Path, str]]


def _run(*argv: str, cwd: Path) -> str:
    return subprocess.run(argv, cwd=cwd, check=True, capture_output=True, text=True,
                          timeout=30).stdout


def _need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (tools/setup.sh installs it)")


def bind_signer(tmp: Path, nsec3: bool) -> tuple[Path, str]:
    """dnssec-keygen (one ECDSA P-256 KSK used for everything, -z) and dnssec-signzone."""
    _need("dnssec-keygen", "dnssec-signzone", "dnssec-dsfromkey")
    keyname = _run("dnssec-keygen", "-q", "-K", ".", "-a", "ECDSAP256SHA256", "-f", "KSK",
                   ORIGIN, cwd=tmp).strip()
    extra = ["-3", "-", "-H", "0"] if nsec3 else []
    _run("dnssec-signzone", "-q", "-K", ".", "-S", "-z", "-O", "full", *extra, "-s", START,
         "-e", END, "-o", ORIGIN, "-f", "signed", "zone", cwd=tmp)
    return tmp / "signed", _run("dnssec-dsfromkey", "-2", f"{keyname}.key", cwd=tmp)


def ldns_signer(tmp: Path, nsec3: bool) -> tuple[Path, str]:
    """ldns-keygen (Ed25519) and ldns-signzone (-n: NSEC3, 0 iterations, no salt)."""
    _need("ldns-keygen", "ldns-signzone", "ldns-key2ds")
    keyname = _run("ldns-keygen", "-a", "ED25519", "-k", ORIGIN, cwd=tmp).strip()
    extra = ["-n", "-t", "0"] if nsec3 else []
    _run("ldns-signzone", *extra, "-i", START, "-e", END, "-f", "signed", "zone", keyname,
         cwd=tmp)
    return tmp / "signed", _run("ldns-key2ds", "-n", "-2", f"{keyname}.key", cwd=tmp)


SIGNERS = {"bind": bind_signer, "ldns": ldns_signer}


@pytest.fixture(params=[(s, n) for s in SIGNERS for n in (False, True)],
                ids=lambda p: f"{p[0]}-{'nsec3' if p[1] else 'nsec'}")
def signed(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, TrustAnchor]:
    signer_name, nsec3 = request.param
    (tmp_path / "zone").write_text(ZONE)
    path, ds_text = SIGNERS[signer_name](tmp_path, nsec3)
    text = path.read_text()
    assert ("NSEC3PARAM" in text) == nsec3
    return path, TrustAnchor.from_text(ds_text)


def _evidence(path: Path) -> Evidence:
    zone = dns.zone.from_file(str(path), origin=ORIGIN, relativize=False)
    return Evidence.from_zone(zone)


def _validate(path: Path, anchor: TrustAnchor, qname: str, qtype: int = dns.rdatatype.CERT,
              now: float = NOW) -> Outcome:
    verdict = validate(anchor, _evidence(path), dns.name.from_text(qname), qtype, now)
    return verdict.outcome


def test_dns20_witness_signed_cert_is_secure(signed: tuple[Path, TrustAnchor]) -> None:
    path, anchor = signed
    verdict = validate(anchor, _evidence(path), dns.name.from_text(f"host.{ORIGIN}"),
                       dns.rdatatype.CERT, NOW)
    assert verdict.outcome is Outcome.SECURE, verdict.detail
    assert verdict.answer is not None and verdict.ttl == 300
    assert verdict.expires == LATE - 1


def test_dns21_witness_corrupted_signature_is_bogus(signed: tuple[Path, TrustAnchor]) -> None:
    """One base64 character of the CERT RRSIG changed in the signer's own file."""
    path, anchor = signed
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        fields = line.split()
        # owner ttl IN RRSIG CERT alg labels ttl expiration inception tag signer <signature>
        if fields[3:5] == ["RRSIG", "CERT"] and len(fields) > 12:
            token = fields[12]
            changed = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
            lines[i] = line.replace(token, changed, 1)
            break
    else:
        pytest.fail("no RRSIG over CERT in the signed zone")
    before = _cert_signature(path)
    path.write_text("\n".join(lines) + "\n")
    assert _cert_signature(path) != before
    assert _validate(path, anchor, f"host.{ORIGIN}") is Outcome.BOGUS


def _cert_signature(path: Path) -> bytes:
    zone = dns.zone.from_file(str(path), origin=ORIGIN, relativize=False)
    sigs = zone.find_rdataset(f"host.{ORIGIN}", dns.rdatatype.RRSIG, dns.rdatatype.CERT)
    return b"".join(sig.signature for sig in sigs)


def test_dns21_witness_after_signature_end_is_bogus(signed: tuple[Path, TrustAnchor]) -> None:
    path, anchor = signed
    assert _validate(path, anchor, f"host.{ORIGIN}", now=LATE) is Outcome.BOGUS


def test_dns22_witness_nxdomain_proven(signed: tuple[Path, TrustAnchor]) -> None:
    """The signer's NSEC or NSEC3 chain proves a name absent (and a type absent)."""
    path, anchor = signed
    evidence = _evidence(path)
    for qname, qtype in ((f"nope.{ORIGIN}", dns.rdatatype.CERT),
                         (f"a.b.host.{ORIGIN}", dns.rdatatype.CERT),
                         (f"host.{ORIGIN}", dns.rdatatype.TXT)):
        verdict = validate(anchor, evidence, dns.name.from_text(qname), qtype, NOW)
        assert verdict.outcome is Outcome.SECURE and verdict.denied, (qname, verdict.detail)
        late = validate(anchor, evidence, dns.name.from_text(qname), qtype, LATE)
        assert late.outcome is Outcome.BOGUS


def test_dns20_witness_other_anchor_is_bogus(signed: tuple[Path, TrustAnchor]) -> None:
    path, anchor = signed
    digest = bytearray(anchor.ds[0].digest)
    digest[0] ^= 1
    wrong = TrustAnchor(anchor.zone, (cast(DS, anchor.ds[0].replace(digest=bytes(digest))),))
    assert _validate(path, wrong, f"host.{ORIGIN}") is Outcome.BOGUS
