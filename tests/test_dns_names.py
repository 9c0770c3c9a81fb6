"""From a SKIP name to the DNS owner name of its CERT records (next-wave.md s. 2.3, DNS-1..5)."""

from __future__ import annotations

import hashlib
import ipaddress

import dns.name
import pytest

from skip.discovery.dns_names import configured_name, owner_name, reverse_name
from skip.errors import CertificateError
from skip.pki.names import dns_name
from skip.wire.names import SkipName
from skip.wire.nsid import Nsid

V4 = ipaddress.ip_address("192.0.2.10").packed
V6 = ipaddress.ip_address("2001:db8::1").packed
V6_NAME = "1.0.0.0." + "0." * 20 + "8.b.d.0.1.0.0.2.ip6.arpa."
MKID = bytes(range(16))


def n(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def test_dns1_ipv4_reverse_name() -> None:
    """DNS-1: NSID 1, and NSID 0 with the packet's IPv4 address: d.c.b.a.in-addr.arpa."""
    assert owner_name(SkipName.of_address(V4)) == n("10.2.0.192.in-addr.arpa.")
    assert owner_name(SkipName(0), address=V4) == n("10.2.0.192.in-addr.arpa.")


def test_dns2_ipv6_reverse_name() -> None:
    """DNS-2: NSID 3, and NSID 0 with an IPv6 address: 32 nibbles under ip6.arpa."""
    assert len(V6_NAME.split(".")) == 32 + 3
    assert owner_name(SkipName.of_address(V6)) == n(V6_NAME)
    assert owner_name(SkipName(0), address=V6) == n(V6_NAME)


def test_dns1_nsid0_without_an_address_has_no_owner() -> None:
    assert owner_name(SkipName(0)) is None


@pytest.mark.parametrize("address", [b"", b"\x01\x02\x03", bytes(5), bytes(17)])
def test_dns1_reverse_name_of_a_bad_length_is_refused(address: bytes) -> None:
    with pytest.raises(CertificateError) as caught:
        reverse_name(address)
    assert caught.value.reason == "cert_name_mismatch"
    with pytest.raises(CertificateError):
        owner_name(SkipName(int(Nsid.IPV4), address))


def test_dns3_configured_name_whose_md5_is_the_mkid() -> None:
    """DNS-3: MD5 of the lower-case name without the trailing dot is the NSID 4 MKID."""
    mkid = hashlib.md5(b"host.example").digest()
    name = SkipName(int(Nsid.MD5_DNS_NAME), mkid)
    assert dns_name("host.example") == name
    for spelling in ("host.example", "Host.Example.", "HOST.EXAMPLE"):
        assert owner_name(name, configured=spelling) == n("host.example.")


def test_dns3_configured_name_with_another_md5_is_refused() -> None:
    """Asking it would fetch another principal's certificate."""
    name = SkipName(int(Nsid.MD5_DNS_NAME), hashlib.md5(b"host.example").digest())
    with pytest.raises(CertificateError) as caught:
        owner_name(name, configured="other.example")
    assert caught.value.reason == "cert_name_mismatch"
    with pytest.raises(CertificateError):
        owner_name(name, configured="other.example", skip_domain="lab.example")


def test_dns3_nsid4_without_configuration_has_no_owner() -> None:
    """MD5 cannot be inverted: without a configured name (or DNS-4's domain) nothing to ask."""
    assert owner_name(SkipName(int(Nsid.MD5_DNS_NAME), MKID)) is None


@pytest.mark.parametrize("nsid", [Nsid.MD5_DNS_NAME, Nsid.MD5_DN, Nsid.MD5_DH_PUBLIC,
                                  Nsid.MD5_RFC822, 250])
def test_dns4_hashed_label_under_a_configured_domain(nsid: int) -> None:
    """DNS-4: <32 hex digits of MKID>.<nsid>._skip.<domain>. (trailing dot optional)."""
    name = SkipName(int(nsid), MKID)
    expected = n(f"000102030405060708090a0b0c0d0e0f.{int(nsid)}._skip.lab.example.")
    assert owner_name(name, skip_domain="lab.example") == expected
    assert owner_name(name, skip_domain="lab.example.") == expected


@pytest.mark.parametrize("nsid", [Nsid.MD5_DN, Nsid.POSIX_UID, Nsid.MAC_802, 250])
def test_dns4_off_without_a_domain(nsid: int) -> None:
    assert owner_name(SkipName(int(nsid), MKID[:4])) is None


@pytest.mark.parametrize("mkid", [b"", bytes(32)])
def test_dns4_mkid_that_fits_no_label_has_no_owner(mkid: bytes) -> None:
    """A label holds 63 characters: an MKID over 31 bytes (or none) has no hashed name."""
    assert owner_name(SkipName(250, mkid), skip_domain="lab.example") is None
    assert owner_name(SkipName(250, bytes(31)), skip_domain="lab.example") is not None


def test_dns5_configured_name_is_absolute() -> None:
    """DNS-5: an outbound peer known by name is asked under that name, made absolute."""
    assert configured_name("peer.example") == n("peer.example.")
    assert configured_name("peer.example.") == n("peer.example.")
    assert configured_name("peer.example").is_absolute()
