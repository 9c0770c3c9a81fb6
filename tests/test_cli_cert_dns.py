"""skip-cert dns-export (and its alias export --format dns): RFC 4398 CERT records under every
owner name a certificate answers to (next-wave.md s. 2.3, DNS-1 to DNS-5; s. 2.9.3).

dnspython parses what the tool writes; ldns-read-zone (and kzonecheck where installed) are the
outside witnesses that the text is a valid master file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import dns.rdataclass
import dns.rdatatype
import dns.zone
import pytest

from skip.pki import load_certificate

from .cli_support import ok, refused

ZONE = "example.net."
SOA = f"$ORIGIN {ZONE}\n$TTL 3600\n@ IN SOA ns1 hostmaster 1 3600 600 86400 60\n@ IN NS ns1\n" \
      "ns1 IN A 192.0.2.53\n"


@pytest.fixture
def pki(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Path:
    """h.crt: 10.0.0.1, 2001:db8::1, h.example; draft.crt: draft profile (ipAddress RDN);
    bare.crt: a subject name only; h.udh: a UDH value."""
    monkeypatch.chdir(tmp_path)
    ok(capsys, "init-ca", "ca", "--subject", "CN=Dns CA")
    ok(capsys, "genkey", "h.key", "--group", "x25519")
    ok(capsys, "genkey", "d.key", "--group", "skip-1024", "--allow-small")
    ok(capsys, "issue", "--ca", "ca", "--key", "h.key", "--subject", "CN=h", "--ip", "10.0.0.1",
       "--ip", "2001:db8::1", "--dns", "h.example", "--dns", "www.h.example", "--out", "h.crt")
    ok(capsys, "issue", "--ca", "ca", "--key", "d.key", "--subject", "CN=d", "--ip", "10.0.0.2",
       "--profile", "draft", "--out", "draft.crt")
    ok(capsys, "issue", "--ca", "ca", "--key", "h.key", "--subject", "CN=bare", "--out",
       "bare.crt")
    ok(capsys, "udh", "--key", "d.key", "--out", "h.udh")
    return tmp_path


ROOT = "$ORIGIN .\n$TTL 3600\n@ IN SOA ns1.example.net. hostmaster.example.net. 1 3600 600 " \
       "86400 60\n@ IN NS ns1.example.net.\n"


def records(text: str) -> dict[str, bytes]:
    """owner (absolute) -> the DER of its one CERT record, checking type, tag and algorithm
    (read as part of a root zone, so that every owner name is inside it)."""
    zone = dns.zone.from_text(ROOT + text, origin=".", relativize=False)
    found = {}
    for name, node in zone.nodes.items():
        rdataset = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CERT)
        if rdataset is None:
            continue
        assert len(rdataset) == 1
        (rdata,) = rdataset
        assert (rdata.certificate_type, rdata.key_tag, rdata.algorithm) == (1, 0, 0)
        found[name.to_text()] = rdata.certificate
    return found


def test_one_record_per_name(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """DNS-1, DNS-2, DNS-5: each dNSName, each address as its reverse name."""
    der = load_certificate(Path("h.crt").read_bytes()).der
    text = ok(capsys, "dns-export", "h.crt")
    found = records(text)
    assert set(found) == {
        "h.example.", "www.h.example.", "1.0.0.10.in-addr.arpa.",
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
    }
    assert all(value == der for value in found.values())
    assert load_certificate(found["h.example."]).fingerprint == hashlib.sha256(der).hexdigest()
    assert all(line.split()[1] == "3600" for line in text.splitlines())
    # the alias writes the same text
    assert ok(capsys, "export", "h.crt", "--format", "dns") == text


def test_ip_attribute_of_the_draft_profile(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    found = records(ok(capsys, "dns-export", "draft.crt"))
    assert set(found) == {"2.0.0.10.in-addr.arpa."}


def test_owner_ttl_origin(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = ok(capsys, "dns-export", "h.crt", "--owner", "a.example.net", "--owner",
              "b.example.net.", "--ttl", "60", "--origin", ZONE)
    lines = text.splitlines()
    assert lines[0] == f"$ORIGIN {ZONE}"
    assert [line.split()[:2] for line in lines[1:]] == [["a", "60"], ["b", "60"]]
    assert set(records(text)) == {"a.example.net.", "b.example.net."}
    # owners outside the origin stay absolute
    outside = ok(capsys, "dns-export", "draft.crt", "--origin", ZONE)
    assert outside.splitlines()[1].startswith("2.0.0.10.in-addr.arpa. ")


def test_zone_adds_hashed_names(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """DNS-4: <hex MKID>.<nsid>._skip.<zone>. for every name that is not an address."""
    cert = load_certificate(Path("h.crt").read_bytes())
    found = records(ok(capsys, "dns-export", "h.crt", "--zone", "example.net"))
    hashed = {f"{n.mkid.hex()}.{n.nsid}._skip.example.net." for n in cert.skip_names()
              if n.nsid not in (1, 3)}
    assert f"{hashlib.md5(b'h.example').hexdigest()}.4._skip.example.net." in hashed
    assert len(hashed) == 3  # two dNSNames and the subject DN
    plain = set(records(ok(capsys, "dns-export", "h.crt")))
    assert len(plain) == 4 and set(found) == hashed | plain
    # a certificate with a subject name only is published under its hashed name alone
    assert set(records(ok(capsys, "dns-export", "bare.crt", "--zone", "example.net"))) == {
        f"{n.mkid.hex()}.5._skip.example.net."
        for n in load_certificate(Path("bare.crt").read_bytes()).skip_names()
    }


def test_json(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = json.loads(ok(capsys, "dns-export", "draft.crt", "--json"))
    der = load_certificate(Path("draft.crt").read_bytes()).der
    assert document["ok"] is True and base64.b64decode(document["certificate"]) == der
    assert document["records"] == [{
        "owner": "2.0.0.10.in-addr.arpa.", "ttl": 3600, "class": "IN", "type": "CERT",
        "certificate_type": "PKIX", "key_tag": 0, "algorithm": 0, "source": "address 10.0.0.2",
    }]
    assert set(records(document["text"])) == {"2.0.0.10.in-addr.arpa."}


def test_out_file(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok(capsys, "dns-export", "h.crt", "--out", "h.zone")
    assert Path("h.zone").read_text() == ok(capsys, "dns-export", "h.crt")
    assert "cert_exists" in refused(capsys, "dns-export", "h.crt", "--out", "h.zone")


def test_refusals(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "cert_key_type" in refused(capsys, "dns-export", "h.udh")
    assert "cert_key_type" in refused(capsys, "export", "h.udh", "--format", "dns")
    line = refused(capsys, "dns-export", "bare.crt")
    assert "config_invalid" in line and "--owner" in line
    assert "config_invalid" in refused(capsys, "dns-export", "ca/ca.crt")  # no DH key, no names
    assert "cert_key_type" in refused(capsys, "dns-export", "h.key")
    assert "config_invalid" in refused(capsys, "dns-export", "h.crt", "--owner", "a..b")
    assert "config_invalid" in refused(capsys, "dns-export", "h.crt", "--ttl", "-1")
    assert "config_invalid" in refused(capsys, "export", "h.crt", "--format", "pem",
                                       "--owner", "x.example")


def zone_file(tmp: Path, text: str) -> Path:
    path = tmp / "example.net.zone"
    path.write_text(SOA + text)
    return path


@pytest.mark.skipif(shutil.which("ldns-read-zone") is None, reason="ldns-read-zone not installed")
def test_ldns_reads_the_records(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Outside witness: ldns parses the zone and prints each CERT with the same base64."""
    der = load_certificate(Path("h.crt").read_bytes()).der
    text = ok(capsys, "dns-export", "h.crt", "--zone", "example.net", "--origin", ZONE)
    result = subprocess.run(["ldns-read-zone", str(zone_file(pki, text))],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    certs = [line.split(None, 7) for line in result.stdout.splitlines()
             if line.split()[3:4] == ["CERT"]]
    assert len(certs) == 7
    for _owner, ttl, klass, _type, kind, tag, algorithm, data in certs:
        assert (ttl, klass, kind, tag, algorithm) == ("3600", "IN", "PKIX", "0", "0")
        assert base64.b64decode("".join(data.split())) == der
    assert {c[0] for c in certs} == set(records(text))


@pytest.mark.skipif(shutil.which("kzonecheck") is None, reason="kzonecheck (knot) not installed")
def test_kzonecheck_accepts_the_zone(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = ok(capsys, "dns-export", "h.crt", "--owner", "h.example.net", "--zone", "example.net",
              "--origin", ZONE)
    result = subprocess.run(["kzonecheck", "-o", ZONE, str(zone_file(pki, text))],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
