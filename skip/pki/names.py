"""SKIP names (NSID + MKID) and the X.509 names they are computed from.

draft-ietf-ipsec-skip-06 section 1.7 names principals in name spaces; a certificate "answers
to" a name when the MKID can be derived from what the certificate certifies:

====  =====================================  ===========================================
NSID  MKID                                   taken from
====  =====================================  ===========================================
1, 3  the IPv4 / IPv6 address                Sun ``ipAddress`` subject attributes
                                             (dotted, hex or IPv6 text), SAN iPAddress
4     MD5 of the DNS name (lower case, no    SAN dNSName; for v1 certificates, which
      trailing dot)                          have no extensions, a CN that is a host name
5     MD5 of the DER subject Name            the subject, byte for byte as certified
8     MD5 of the UDH encoding                UDH values only (skip-udh-01)
9     MD5 of the mailbox (addr-spec as       SAN rfc822Name, subject emailAddress
      written)
====  =====================================  ===========================================

NSID 0 ("use the packet's IP address") is answered like NSID 1/3 with that address.
The spelling choices for NSID 4, 5 and 9 follow skip-extensions.md A-X509-5; the drafts
never fixed them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Sequence

from asn1crypto import core, x509

from skip.errors import CertificateError, ConfigError
from skip.pki.asn1 import OID_IP_ADDRESS, UB_IP_ADDRESS
from skip.wire.names import SkipName
from skip.wire.nsid import Nsid, address_mkid

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def address_name(address: IPAddress) -> SkipName:
    nsid, mkid = address_mkid(address.packed)
    return SkipName(int(nsid), mkid, str(address))


def dns_name(name: str) -> SkipName:
    """NSID 4 is the MD5 of the name's ASCII spelling (an internationalised name as its
    ``xn--`` A-label, as it travels in DNS and in a dNSName): a name that is not ASCII has no
    MKID, and is refused with ``cert_malformed`` rather than guessed at."""
    canonical = name.rstrip(".").lower()
    return SkipName(int(Nsid.MD5_DNS_NAME), md5(_ascii(canonical, "DNS name")), canonical)


def dn_name(subject_der: bytes, text: str) -> SkipName:
    return SkipName(int(Nsid.MD5_DN), md5(subject_der), text)


def mailbox_name(mailbox: str) -> SkipName:
    """NSID 9 is the MD5 of the addr-spec's ASCII bytes (rfc822Name and emailAddress are
    IA5String); a mailbox that is not ASCII is refused like a non-ASCII DNS name."""
    return SkipName(int(Nsid.MD5_RFC822), md5(_ascii(mailbox, "mailbox")), mailbox)


def _ascii(text: str, what: str) -> bytes:
    if not text.isascii():
        raise CertificateError("cert_malformed", f"{what} {text!r} is not ASCII")
    return text.encode("ascii")


def ia5_text(value: core.Asn1Value) -> str:
    """The text of a dNSName, rfc822Name, emailAddress or domainComponent exactly as
    certified (each byte one character).

    asn1crypto's own decoding of these types turns ``xn--`` labels into Unicode (and fails
    on labels IDNA refuses) and reads the bytes of a mailbox as cp1252: what came out was
    neither the certified bytes nor always ASCII, and the MD5 names crashed on it. Here an
    A-label stays an A-label; bytes above 127, which IA5String does not allow, become
    non-ASCII characters that :meth:`Certificate.skip_names` leaves out."""
    if value.method == 0:  # primitive: contents are the string itself
        return bytes(value.contents or b"").decode("latin-1")
    native = value.native  # a constructed (BER) string: rare enough to leave to asn1crypto
    return native if isinstance(native, str) else repr(native)


def udh_name(encoding: bytes) -> SkipName:
    digest = md5(encoding)
    return SkipName(int(Nsid.MD5_DH_PUBLIC), digest, f"UDH {digest.hex()}")


def parse_ip_attribute(text: str) -> IPAddress:
    """An ipAddress attribute value: dotted quad, any IPv6 text form, or hex (8 or 32 digits,
    optionally with 0x) - skip-x509-00 section 2 allows "either the hexadecimal
    representation or standard dot notation"."""
    value = text.strip()
    hex_digits = value[2:] if value.lower().startswith("0x") else value
    if re.fullmatch(r"[0-9a-fA-F]{8}|[0-9a-fA-F]{32}", hex_digits):
        return ipaddress.ip_address(bytes.fromhex(hex_digits))
    try:
        return ipaddress.ip_address(value)
    except ValueError as exc:
        raise CertificateError("cert_malformed", f"bad ipAddress attribute {text!r}") from exc


_HOSTNAME = re.compile(
    r"(?=.{1,253}\.?$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{1,63}\.?"
)


def looks_like_hostname(text: str) -> bool:
    # isascii first: a few non-ASCII letters (the Kelvin sign) lower-case to ASCII ones
    return text.isascii() and bool(_HOSTNAME.fullmatch(text.lower()))


# --- distinguished names as text ----------------------------------------------------------------

_ATTRIBUTES = {
    "CN": "common_name",
    "O": "organization_name",
    "OU": "organizational_unit_name",
    "C": "country_name",
    "L": "locality_name",
    "ST": "state_or_province_name",
    "DC": "domain_component",
    "EMAILADDRESS": "email_address",
    "E": "email_address",
    "SERIALNUMBER": "serial_number",
}
_SHORT = {
    "common_name": "CN",
    "organization_name": "O",
    "organizational_unit_name": "OU",
    "country_name": "C",
    "locality_name": "L",
    "state_or_province_name": "ST",
    "domain_component": "DC",
    "email_address": "emailAddress",
    "serial_number": "serialNumber",
    OID_IP_ADDRESS: "ipAddress",
}


def parse_dn(text: str) -> list[tuple[str, str]]:
    """ "CN=host1,O=Example" -> [("CN", "host1"), ("O", "Example")]; ``\\,`` escapes a comma."""
    pairs = []
    for part in re.split(r"(?<!\\),", text):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not value.strip():
            raise ConfigError("config_invalid", f"bad name component {part!r} (want KEY=value)")
        pairs.append((key.strip(), value.strip().replace("\\,", ",")))
    return pairs


def build_name(
    pairs: Sequence[tuple[str, str]], ip_attributes: Sequence[IPAddress] = ()
) -> x509.Name:
    """A Name with one RDN per attribute, in the order given, then one Sun ipAddress RDN per
    address (skip-x509-00: "iterating on the SEQUENCE-OF" of the RDN sequence)."""
    rdns = []
    for key, value in pairs:
        if key.upper() == "IPADDRESS":
            ip_attributes = (*ip_attributes, parse_ip_attribute(value))
            continue
        name_type = _ATTRIBUTES.get(key.upper())
        if name_type is None:
            raise ConfigError("config_invalid", f"unknown name attribute {key!r}")
        rdns.append(_attribute(name_type, key, value))
    for address in ip_attributes:
        text = str(address)
        if len(text) > UB_IP_ADDRESS:
            raise ConfigError("config_invalid", "ipAddress longer than ub-ipAddress")
        rdns.append(
            x509.RelativeDistinguishedName(
                [
                    x509.NameTypeAndValue(
                        {"type": OID_IP_ADDRESS, "value": core.PrintableString(text)}
                    )
                ]
            )
        )
    return x509.Name(name="", value=x509.RDNSequence(rdns))


_COUNTRY = re.compile(r"[A-Za-z]{2}")


def _attribute(name_type: str, key: str, value: str) -> x509.RelativeDistinguishedName:
    """One single-attribute RDN, in the string type X.520 / RFC 5280 give the attribute.

    countryName is a two-letter PrintableString (ISO 3166); emailAddress and
    domainComponent are IA5String, so ASCII only (write an internationalised domain as its
    ``xn--`` A-label); everything else is a UTF8String. Values asn1crypto cannot encode are
    ``config_invalid`` like any other bad --subject, never a bare ValueError.
    """
    value_obj: core.Asn1Value
    try:
        if name_type == "country_name":
            if not _COUNTRY.fullmatch(value):
                raise ConfigError(
                    "config_invalid", f"{key}={value!r}: a country is two letters (ISO 3166)"
                )
            value_obj = x509.DirectoryString(name="printable_string", value=value)
        elif name_type in ("email_address", "domain_component"):
            if not value.isascii():
                raise ConfigError(
                    "config_invalid",
                    f"{key}={value!r} is not ASCII (an IA5String; give a domain as xn--)",
                )
            value_obj = x509.NameTypeAndValue._oid_specs[name_type](value)
        else:
            value_obj = x509.DirectoryString(name="utf8_string", value=value)
        atv = x509.NameTypeAndValue({"type": name_type, "value": value_obj})
    except (ValueError, TypeError, UnicodeError) as exc:  # IDNA limits, label lengths
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError("config_invalid", f"{key}={value!r} cannot be encoded: {why}") from None
    return x509.RelativeDistinguishedName([atv])


def name_attributes(name: x509.Name) -> list[tuple[str, str]]:
    """(type, value) for every attribute, in order; types are short names or dotted OIDs."""
    out = []
    for rdn in name.chosen:
        for atv in rdn:
            type_name = atv["type"].native
            key = _SHORT.get(type_name) or _SHORT.get(atv["type"].dotted) or atv["type"].dotted
            if isinstance(atv["value"], core.IA5String):  # emailAddress, domainComponent
                out.append((key, ia5_text(atv["value"])))
                continue
            value = atv["value"].native
            out.append((key, value if isinstance(value, str) else repr(value)))
    return out


def format_name(name: x509.Name) -> str:
    """RFC 4514-like text in certificate order: "CN=host1,ipAddress=10.0.0.1"."""
    return ",".join(f"{key}={_escape(value)}" for key, value in name_attributes(name))


def _escape(value: str) -> str:
    """Commas inside a value are written as backslash-comma, which :func:`parse_dn` reads."""
    return value.replace(",", r"\,")
