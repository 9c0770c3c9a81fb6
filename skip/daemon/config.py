"""skipd's configuration: one TOML file validated into frozen dataclasses.

Why a strict, eager validator: skipd protects real traffic, so a typo must never silently turn
into "no protection". Every key is checked when the file is read; unknown keys are errors (a
misspelt ``acton = "deny"`` would otherwise be ignored), and every error names the file, the
key path and the problem in one line a person can act on. ``skipctl reload`` and SIGHUP rely on
this: a bad file is refused as a whole and the running configuration stays in force.

The format is documented with a complete example in ``docs/skipd.md``.
"""

from __future__ import annotations

import ipaddress
import os
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from skip.crypto import skip_numbers as num
from skip.errors import ConfigError
from skip.files import read_bounded
from skip.keying.policy import MAX_REPLAY_WINDOW
from skip.pki.names import dns_name
from skip.wire.names import SkipName
from skip.wire.nsid import Nsid

if TYPE_CHECKING:  # dnspython loads when a configuration names DNS things: a lighter start
    from skip.discovery.dnssec import TrustAnchor

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

ACTIONS = ("protect", "allow-cleartext", "deny")
PROFILES = ("legacy", "modern")
MODES = ("tunnel", "transport")
PFS_MODES = ("off", "preferred", "required")  # docs/pfs.md
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
DISCOVERY_SOURCES = ("cdp", "dns")
#: what a certificate found in the DNS needs: a DNSSEC-secure answer and a chain to a
#: configured CA ("both", the default), the CA chain alone ("ca": DNSSEC used where the
#: zone is signed, an unsigned one accepted), or the DNSSEC-secure answer alone ("dnssec":
#: the zone vouches for the key, as DANE-EE does; CRLs still apply to a known issuer)
DNS_TRUST = ("both", "ca", "dnssec")

#: MKID length per NSID (skip-core.md section 4.2); 250-255 are private and need an explicit
#: length, which skipd does not support, so they are refused here rather than guessed.
MKID_LENGTHS: dict[int, int] = {
    0: 0, 1: 4, 2: 4, 3: 16, 4: 16, 5: 16, 6: 16, 7: 6, 8: 16, 9: 16, 10: 16, 11: 16,
}


@dataclass(frozen=True)
class DaemonSettings:
    interface: str = "skip0"
    addresses: tuple[IPInterface, ...] = ()
    underlay_mtu: int = 1500
    mtu: int = 0  # 0: computed from underlay_mtu and the configured suites
    control_socket: Path = Path("/run/skipd/skipd.sock")
    metrics: tuple[str, int] | None = None
    log_format: str = "text"
    log_level: str = "info"
    fwmark: int = 0x5C1
    table: int = 57
    rule_priority: int = 5700
    udp_port: int = 0  # 0: raw IP protocol 57; otherwise SKIP-in-UDP on this port
    key_management_port: int = 1640
    max_peers: int = 1024
    queue_limit: int = 4  # packets held per peer while its certificate is missing
    rekey_bytes: int = 10_000_000  # plaintext bytes under one traffic key (draft-06 s. 2.2)
    rekey_seconds: int = 120  # seconds one traffic key is used at most
    pfs_lifetime: int = 120  # seconds one ephemeral key (PFS) is used at most
    #: packets a modern traffic key accepts out of order (docs/protocol/decisions.md,
    #: "Data-plane speed" 6): the two receive lanes reorder a new Kp's first packets
    replay_window: int = 1024
    #: DANGEROUS: append every traffic key here (docs/decrypt.md); None: off, the default
    key_log: Path | None = None
    # where a protecting rule's missing certificate is looked for, in order (docs/discovery.md)
    discovery: tuple[str, ...] = ("cdp",)
    cdp_servers: tuple[IPAddress, ...] = ()  # certificate servers asked after the peer itself
    # discovered certificates kept at most; past it the least recently used peer goes
    discovery_cache: int = 4096
    # the DNS source (docs/discovery.md "Through the DNS"): servers asked on port 53, the
    # DNSSEC anchors (DS or DNSKEY master-file lines), what a DNS certificate must have
    # behind it (DNS_TRUST), and the DNS-4 hashed-name domain
    dns_servers: tuple[IPAddress, ...] = ()
    dns_trust_anchors: tuple[TrustAnchor, ...] = ()
    dns_trust: str = "both"
    dns_skip_domain: str | None = None

    @property
    def dns_requires_dnssec(self) -> bool:
        return self.dns_trust != "ca"


@dataclass(frozen=True)
class Identity:
    private_key: Path | None = None
    certificate: Path | None = None
    trust_anchors: tuple[Path, ...] = ()
    crls: tuple[Path, ...] = ()
    peer_certificates: Path | None = None
    name: SkipName = field(default_factory=SkipName)
    addresses: tuple[IPAddress, ...] = ()  # underlay addresses; default: the certificate's
    allow_readable_key: bool = False  # accept a private key file others may read (as ssh won't)


@dataclass(frozen=True)
class PeerPolicy:
    """What to do with traffic to/from one peer (or the default rule).

    ``hosts`` are inner (protected) addresses matched exactly; ``networks`` are matched by
    longest prefix after every host; ``tunnel`` is the outer address the SKIP packets go to
    (a gateway for a network behind it); a nomadic peer has no fixed tunnel address and is
    recognised on input by its MKID, its current outer address learned from authenticated
    packets.
    """

    name: str
    action: str = "deny"
    profile: str = "modern"
    mode: str = "tunnel"
    hosts: tuple[IPAddress, ...] = ()
    networks: tuple[IPNetwork, ...] = ()
    tunnel: IPAddress | None = None
    peer: SkipName = field(default_factory=SkipName)
    local: SkipName | None = None
    kij_alg: str | None = None
    crypt_alg: str | None = None
    mac_alg: str | None = None
    certificate: Path | None = None
    nomadic: bool = False
    udp_port: int | None = None  # the peer's SKIP-in-UDP port (default: daemon.udp_port)
    pfs: str = "off"  # ephemeral keys (docs/pfs.md): off, preferred or required
    dns: str | None = None  # the DNS name its certificate is published under (DNS-3, DNS-5)


@dataclass(frozen=True)
class GroupPolicy:
    """A multicast group (docs/multicast.md): ``owner`` "self" makes this skipd its owner,
    handing the key to ``members`` (peer rule names); a name is the peer rule of the owner
    this skipd asks for the key; None is a permanent group (MC-15), whose key ``kg`` the
    operator configured (``key_file``) and whose ``profile`` may be legacy (mc-00's version
    1: MD5 Kgn, 3DES, keyed MD5)."""

    address: IPAddress
    owner: str | None
    members: tuple[str, ...] = ()
    kg: bytes | None = field(default=None, repr=False)  # a permanent group's key
    profile: str = "modern"
    lifetime: int = 86_400  # seconds one group key lives (it is refreshed before)
    backward_secrecy: bool = True  # a join rekeys (MC-M4)
    interval_seconds: int = 120  # MC-6: senders change Kp at the shorter of the two
    interval_bytes: int = 10_000_000


@dataclass(frozen=True)
class Config:
    path: Path
    daemon: DaemonSettings
    identity: Identity
    default: PeerPolicy
    peers: tuple[PeerPolicy, ...] = field(default=())
    groups: tuple[GroupPolicy, ...] = field(default=())


# --- reading --------------------------------------------------------------------------------

T = TypeVar("T")


class _Section:
    """A TOML table being validated: typed getters that name the key on every error."""

    def __init__(self, path: Path, where: str, table: Any) -> None:
        self.path = path
        self.where = where
        if not isinstance(table, Mapping):
            self.fail(where, f"must be a table, not {type(table).__name__}")
        self.table = dict(table)
        self.used: set[str] = set()

    def fail(self, key: str, problem: str) -> None:
        raise ConfigError("config_invalid", f"{self.path}: {key}: {problem}")

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def get(self, name: str, kind: type[T] | tuple[type, ...], default: Any = None) -> Any:
        self.used.add(name)
        if name not in self.table:
            return default
        value = self.table[name]
        # bool is an int subclass in Python, never a valid int here
        if isinstance(value, bool) and kind is not bool:
            self.fail(self.key(name), f"expected {_kind_name(kind)}, got a boolean")
        if not isinstance(value, kind):
            self.fail(self.key(name), f"expected {_kind_name(kind)}, got {type(value).__name__}")
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(name, str, default)
        if value not in choices:
            self.fail(self.key(name), f"{value!r} is not one of {', '.join(choices)}")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.get(name, int, default)
        if not low <= value <= high:
            self.fail(self.key(name), f"{value} is outside {low}..{high}")
        return value

    def parsed(self, name: str, parse: Callable[[str], T], what: str, default: Any = None) -> Any:
        raw = self.get(name, str)
        if raw is None:
            return default
        try:
            return parse(raw)
        except ValueError as exc:
            self.fail(self.key(name), f"{raw!r} is not {what} ({exc})")
        return None  # unreachable: fail() raises

    def parsed_list(self, name: str, parse: Callable[[str], T], what: str) -> tuple[T, ...]:
        raw = self.get(name, list, [])
        out = []
        for i, item in enumerate(raw):
            if not isinstance(item, str):
                self.fail(f"{self.key(name)}[{i}]", f"expected a string, got {type(item).__name__}")
            try:
                out.append(parse(item))
            except ValueError as exc:
                self.fail(f"{self.key(name)}[{i}]", f"{item!r} is not {what} ({exc})")
        return tuple(out)

    def path_value(self, name: str) -> Path | None:
        raw = self.get(name, str)
        return None if raw is None else self.resolve(raw)

    def resolve(self, raw: str) -> Path:
        # TOML allows "\u0000" in strings; no path can hold it (open() would raise ValueError)
        if "\0" in raw:
            self.fail(self.where or "path", f"{raw!r}: a path cannot contain a NUL byte")
        p = Path(raw)
        return p if p.is_absolute() else (self.path.parent / p)

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            self.fail(self.key(unknown[0]), "unknown key (misspelt?)")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", bool: "true or false", list: "a list",
             dict: "a table"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError("expected HOST:PORT")
    host = host.strip("[]")
    ipaddress.ip_address(host)
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError("port out of range")
    return host, number


def _mkid(section: _Section, prefix: str, required_nsid: bool = False) -> SkipName | None:
    nsid_key, mkid_key = f"{prefix}nsid", f"{prefix}mkid"
    nsid = section.get(nsid_key, int)
    mkid_hex = section.get(mkid_key, str)
    if nsid is None and mkid_hex is None:
        return SkipName() if required_nsid else None
    nsid = 0 if nsid is None else nsid
    if nsid not in MKID_LENGTHS:
        section.fail(section.key(nsid_key), f"NSID {nsid} is not supported (known: 0-11)")
    try:
        mkid = bytes.fromhex(mkid_hex or "")
    except ValueError:
        section.fail(section.key(mkid_key), f"{mkid_hex!r} is not hexadecimal")
    if len(mkid) != MKID_LENGTHS[nsid]:
        section.fail(section.key(mkid_key),
                     f"NSID {nsid} needs a {MKID_LENGTHS[nsid]}-byte MKID, got {len(mkid)} bytes")
    return SkipName(nsid, mkid)


def _daemon(s: _Section) -> DaemonSettings:
    d = DaemonSettings()
    iface = s.get("interface", str, d.interface)
    if not 0 < len(iface) < 16 or not iface.isprintable() or any(c in iface for c in "/ :"):
        s.fail(s.key("interface"), f"{iface!r} is not a valid Linux interface name")
    settings = DaemonSettings(
        interface=iface,
        addresses=s.parsed_list("addresses", lambda t: ipaddress.ip_interface(t),
                                "an address with prefix length"),
        underlay_mtu=s.integer("underlay_mtu", d.underlay_mtu, 1280, 65535),
        mtu=s.integer("mtu", d.mtu, 0, 65535),
        control_socket=s.path_value("control_socket") or d.control_socket,
        metrics=s.parsed("metrics", _host_port, "HOST:PORT"),
        log_format=s.choice("log_format", LOG_FORMATS, d.log_format),
        log_level=s.choice("log_level", LOG_LEVELS, d.log_level),
        fwmark=s.integer("fwmark", d.fwmark, 1, 0xFFFFFFFF),
        table=s.integer("table", d.table, 1, 0xFFFFFFFF - 1),
        rule_priority=s.integer("rule_priority", d.rule_priority, 1, 32000),
        udp_port=s.integer("udp_port", d.udp_port, 0, 65535),
        key_management_port=s.integer("key_management_port", d.key_management_port, 1, 65535),
        max_peers=s.integer("max_peers", d.max_peers, 1, 1_000_000),
        queue_limit=s.integer("queue_limit", d.queue_limit, 0, 64),
        rekey_bytes=s.integer("rekey_bytes", d.rekey_bytes, 65536, 80_000_000_000),
        rekey_seconds=s.integer("rekey_seconds", d.rekey_seconds, 10, 3600),
        pfs_lifetime=s.integer("pfs_lifetime", d.pfs_lifetime, 10, 86400),
        replay_window=s.integer("replay_window", d.replay_window, 32, MAX_REPLAY_WINDOW),
        key_log=s.path_value("key_log"),
        discovery=_sources(s),
        cdp_servers=s.parsed_list("cdp_servers", ipaddress.ip_address, "an IP address"),
        discovery_cache=s.integer("discovery_cache", d.discovery_cache, 1, 1_000_000),
        dns_servers=s.parsed_list("dns_servers", ipaddress.ip_address, "an IP address"),
        dns_trust_anchors=tuple(_trust_anchor(s, s.resolve(p)) for p in s.parsed_list(
            "dns_trust_anchors", str, "a path")),
        dns_trust=s.choice("dns_trust", DNS_TRUST, d.dns_trust),
        dns_skip_domain=s.parsed("dns_skip_domain", _domain, "a DNS domain"),
    )
    if "dns_require_dnssec" in s.table:  # the setting dns_trust replaced
        s.fail(s.key("dns_require_dnssec"), 'replaced by dns_trust: true is "both" (now the '
               'default), false is "ca"')
    if "dns" in settings.discovery and not settings.dns_servers:
        s.fail(s.key("dns_servers"), "discovery names \"dns\": give the servers to ask")
    if 0 < settings.mtu < 576:
        s.fail(s.key("mtu"), f"{settings.mtu} is below the IPv4 minimum of 576 (0 = automatic)")
    s.finish()
    return settings


def _trust_anchor(s: _Section, path: Path) -> TrustAnchor:
    import dns.exception

    from skip.discovery.dnssec import TrustAnchor

    try:
        return TrustAnchor.from_text(path.read_text())
    except OSError as exc:
        s.fail(s.key("dns_trust_anchors"), f"{path}: {exc.strerror or exc}")
    except (ValueError, dns.exception.DNSException) as exc:
        s.fail(s.key("dns_trust_anchors"), f"{path}: not DS or DNSKEY records of one zone "
               f"({exc})")
    raise AssertionError("unreachable: fail() raises")


def _domain(text: str) -> str:
    import dns.exception
    import dns.name

    try:
        name = dns.name.from_text(text.rstrip(".") + ".")
    except dns.exception.DNSException as exc:
        raise ValueError(str(exc)) from exc
    return name.to_text(omit_final_dot=True)


def _sources(s: _Section) -> tuple[str, ...]:
    raw = s.get("discovery", list, list(DaemonSettings.discovery))
    for item in raw:
        if item not in DISCOVERY_SOURCES:
            s.fail(s.key("discovery"), f"{item!r} is not a discovery source; known: "
                   f"{', '.join(DISCOVERY_SOURCES)}")
    if len(set(raw)) != len(raw):
        s.fail(s.key("discovery"), "a source is named twice")
    return tuple(raw)


def _identity(s: _Section) -> Identity:
    ident = Identity(
        private_key=s.path_value("private_key"),
        certificate=s.path_value("certificate"),
        trust_anchors=tuple(s.resolve(p) for p in s.parsed_list("trust_anchors", str, "a path")),
        crls=tuple(s.resolve(p) for p in s.parsed_list("crls", str, "a path")),
        peer_certificates=s.path_value("peer_certificates"),
        name=_mkid(s, "", required_nsid=True) or SkipName(),
        addresses=s.parsed_list("addresses", ipaddress.ip_address, "an IP address"),
        allow_readable_key=s.get("allow_readable_key", bool, False),
    )
    if (ident.private_key is None) != (ident.certificate is None):
        s.fail(s.key("private_key" if ident.private_key is None else "certificate"),
               "private_key and certificate must be given together")
    s.finish()
    return ident


def _algorithm(s: _Section, key: str, profile: str, inherited: str | None) -> str | None:
    """An algorithm name of the profile's table, implemented by this build (or None: the
    keying engine's default suite for the profile)."""
    name = s.get(key, str)
    if name is None:
        # an inherited name from [default] must also exist in this rule's profile
        return inherited if inherited in _algorithm_names(profile, key) else None
    known = _algorithm_names(profile, key)
    if name not in known:
        s.fail(s.key(key), f"{name!r} is not a {profile}-profile algorithm here; "
               f"known: {', '.join(known)}")
    return name


def _algorithm_names(profile: str, key: str) -> tuple[str, ...]:
    table = num.PROFILES[num.LEGACY_VERSION if profile == "legacy" else num.MODERN_VERSION]
    if key == "kij_alg":
        return tuple(a.name for a in table.kij.values() if a.implemented)
    entries = table.crypt if key == "crypt_alg" else table.mac
    return tuple(a.name for a in entries.values() if a.registry_name)


def _policy(s: _Section, name: str, base: PeerPolicy | None) -> PeerPolicy:
    b = base or PeerPolicy(name="default")
    profile = s.choice("profile", PROFILES, b.profile)
    return PeerPolicy(
        name=name,
        action=s.choice("action", ACTIONS, b.action),
        profile=profile,
        mode=s.choice("mode", MODES, b.mode),
        kij_alg=_algorithm(s, "kij_alg", profile, b.kij_alg),
        crypt_alg=_algorithm(s, "crypt_alg", profile, b.crypt_alg),
        mac_alg=_algorithm(s, "mac_alg", profile, b.mac_alg),
    )


def _peer(s: _Section, default: PeerPolicy) -> PeerPolicy:
    name = s.get("name", str)
    if not name:
        s.fail(s.key("name"), "every [[peer]] needs a non-empty name")
    base = _policy(s, name, default)
    hosts = s.parsed_list("hosts", ipaddress.ip_address, "an IP address")
    networks = s.parsed_list("networks", lambda t: ipaddress.ip_network(t, strict=True),
                             "a network (host bits must be zero)")
    tunnel = s.parsed("tunnel", ipaddress.ip_address, "an IP address")
    peer = _mkid(s, "", required_nsid=True) or SkipName()
    local = _mkid(s, "local_")
    nomadic = s.get("nomadic", bool, False)
    udp_port = s.integer("udp_port", 0, 0, 65535) or None
    pfs = s.choice("pfs", PFS_MODES, "off")
    cert = s.path_value("certificate")
    dns_text = s.parsed("dns", _domain, "a DNS name")
    if dns_text is not None and peer.nsid == Nsid.MD5_DNS_NAME \
            and dns_name(dns_text).mkid != peer.mkid:
        s.fail(s.key("dns"), f"MD5 of {dns_text!r} is not the peer's NSID 4 MKID: its "
               "certificate would name another principal (DNS-3)")
    if base.mode == "tunnel" and base.action == "protect" and tunnel is None and not nomadic:
        s.fail(s.key("tunnel"), "a protected tunnel-mode peer needs the outer address "
               "its SKIP packets go to (or nomadic = true)")
    if nomadic and peer.nsid == 0:
        s.fail(s.key("nsid"), "a nomadic peer is recognised by its MKID: give nsid and mkid")
    if nomadic and base.mode != "tunnel":
        s.fail(s.key("nomadic"), "nomadic peers use tunnel mode (their inner addresses stay, "
               "the outer one changes)")
    if nomadic and base.profile != "modern":
        s.fail(s.key("nomadic"), "nomadic peers need the modern profile (a legacy AH covers "
               "the outer address, which changes when the peer moves)")
    if nomadic and tunnel is not None:
        s.fail(s.key("tunnel"), "a nomadic peer's outer address is learned, not configured")
    if pfs != "off" and (nomadic or base.action != "protect"):
        s.fail(s.key("pfs"), "PFS needs a protecting rule with a fixed address (the ephemeral "
               "exchange is answered by the peer's address, docs/pfs.md)")
    if not hosts and not networks and not nomadic:
        s.fail(s.key("hosts"), "a peer needs hosts, networks, or nomadic = true")
    if base.mode == "transport" and networks:
        s.fail(s.key("networks"), "transport mode protects the peer's own address only; "
               "use mode = \"tunnel\" for a network behind a gateway")
    s.finish()
    return PeerPolicy(
        name=name, action=base.action, profile=base.profile, mode=base.mode, hosts=hosts,
        networks=networks, tunnel=tunnel, peer=peer, local=local, kij_alg=base.kij_alg,
        crypt_alg=base.crypt_alg, mac_alg=base.mac_alg, certificate=cert, nomadic=nomadic,
        udp_port=udp_port, pfs=pfs, dns=dns_text,
    )


def parse_config(text: str, path: Path) -> Config:
    """Validate TOML ``text`` (read from ``path``, used for messages and relative paths).

    tomllib parses nested arrays and inline tables recursively, so a few hundred ``[`` make
    it raise RecursionError, which is not a TOMLDecodeError; it is refused like any other
    malformed file (nothing in skipd's format nests more than two levels).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config_invalid", f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError("config_invalid", f"{path}: not valid TOML: nested too deeply") \
            from None
    top = _Section(path, "", data)
    daemon = _daemon(_Section(path, "daemon", top.get("daemon", dict, {})))
    identity = _identity(_Section(path, "identity", top.get("identity", dict, {})))
    dsec = _Section(path, "default", top.get("default", dict, {}))
    default = _policy(dsec, "default", None)
    dsec.finish()
    raw_peers = top.get("peer", list, [])
    peers = tuple(_peer(_Section(path, f"peer[{i}]", p), default)
                  for i, p in enumerate(raw_peers))
    groups = tuple(_group(_Section(path, f"group[{i}]", g), peers)
                   for i, g in enumerate(top.get("group", list, [])))
    top.finish()
    _check_unique(path, peers)
    if len({g.address for g in groups}) != len(groups):
        raise ConfigError("config_invalid", f"{path}: group: an address appears twice")
    if len(peers) > daemon.max_peers:
        raise ConfigError("config_invalid",
                          f"{path}: peer: {len(peers)} peers exceed daemon.max_peers "
                          f"({daemon.max_peers})")
    return Config(path=path, daemon=daemon, identity=identity, default=default, peers=peers,
                  groups=groups)


def _group(s: _Section, peers: tuple[PeerPolicy, ...]) -> GroupPolicy:
    d = GroupPolicy(ipaddress.ip_address("239.0.0.1"), "self")
    address = s.parsed("address", ipaddress.ip_address, "an IP address")
    if address is None or not address.is_multicast:
        s.fail(s.key("address"), "a multicast address is required (224.0.0.0/4 or ff00::/8)")
    if address.version == 6 and address.is_multicast and (address.packed[1] & 0x0F) < 3:
        # interface- and link-local scopes (ff01::/16, ff02::/16) never leave one link and
        # carry the kernel's own protocols (MLD, neighbour discovery): not ours to protect
        s.fail(s.key("address"), "an IPv6 group of admin-, site- or wider scope is required "
               "(ff03:: to ff0f::, e.g. ff15::1)")
    owner = s.get("owner", str)
    protecting = {p.name for p in peers if p.action == "protect"}
    key_file = s.path_value("key_file")
    profile = s.choice("profile", PROFILES, d.profile)
    if key_file is not None:
        if owner is not None:
            s.fail(s.key("key_file"), "a permanent group (key_file) has no owner")
        for key in ("members", "lifetime", "backward_secrecy"):
            if key in s.table:
                s.fail(s.key(key), "a permanent group (key_file) has no members, and its key "
                       "no lifetime")
        kg = _group_key(s, key_file)
        group = GroupPolicy(address=address, owner=None, kg=kg, profile=profile,
                            interval_seconds=s.integer("interval_seconds", d.interval_seconds,
                                                       10, 3600),
                            interval_bytes=s.integer("interval_bytes", d.interval_bytes, 65_536,
                                                     10**11))
        s.finish()
        return group
    if profile != "modern":
        s.fail(s.key("profile"), "only a permanent group (key_file) can be legacy: mc-00's "
               "key distribution has no epoch, nonce or owner authentication")
    if owner is None:
        s.fail(s.key("owner"), '"self", the name of the owner\'s [[peer]] rule, or key_file '
               "for a permanent group")
    elif owner != "self" and owner not in protecting:
        s.fail(s.key("owner"), f"{owner!r} is not a protecting [[peer]] rule")
    members = tuple(s.get("members", list, []))
    for i, name in enumerate(members):
        if not isinstance(name, str) or name not in protecting:
            s.fail(f"{s.key('members')}[{i}]", f"{name!r} is not a protecting [[peer]] rule")
    if owner != "self" and members:
        s.fail(s.key("members"), "only the owner (owner = \"self\") lists members")
    group = GroupPolicy(
        address=address, owner=owner or "self", members=members,
        lifetime=s.integer("lifetime", d.lifetime, 300, 30 * 86_400),
        backward_secrecy=s.get("backward_secrecy", bool, d.backward_secrecy),
        interval_seconds=s.integer("interval_seconds", d.interval_seconds, 10, 3600),
        interval_bytes=s.integer("interval_bytes", d.interval_bytes, 65_536, 10**11))
    s.finish()
    return group


def _group_key(s: _Section, path: Path) -> bytes:
    """A permanent group's Kg: 64 hex digits, 256 bits (MC-11), in a file only its owner
    may read (whoever reads it reads the group's traffic, past and future)."""
    where = s.key("key_file")
    try:
        # O_NONBLOCK: a FIFO in its place must not hang skipd; what is read is what was
        # checked (fstat of the same descriptor)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        s.fail(where, f"{path}: cannot read the group key: {exc.strerror}")
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        s.fail(where, f"{path}: not a regular file")
    with os.fdopen(fd, "rb") as handle:
        try:
            text = handle.read(4096).decode("ascii")
        except UnicodeDecodeError:
            text = ""
    if mode & 0o077:
        s.fail(where, f"{path}: the group key is readable by group or others (mode "
               f"{stat.S_IMODE(mode):04o}); run chmod 600 {path}")
    try:
        kg = bytes.fromhex("".join(text.split()))
    except ValueError:
        kg = b""
    if len(kg) != 32 or not any(kg):
        s.fail(where, f"{path}: a group key is 64 hex digits (256 random bits, MC-11; "
               "e.g. from `openssl rand -hex 32`)")
    return kg


def _check_unique(path: Path, peers: tuple[PeerPolicy, ...]) -> None:
    """Refuse overlaps the matcher would resolve silently: same name, host, network or MKID,
    or - for peers named by address (NSID 0) - the same outer address, which is then the only
    thing that tells the keying engine whose packet it holds."""
    seen: dict[object, str] = {}
    for i, peer in enumerate(peers):
        keys: list[tuple[str, object]] = [("name", peer.name)]
        keys += [("hosts", h) for h in peer.hosts]
        keys += [("networks", n) for n in peer.networks]
        if peer.peer.nsid:
            keys.append(("mkid", peer.peer))
        elif peer.action == "protect" and peer.mode == "tunnel" and peer.tunnel is not None:
            keys.append(("tunnel", peer.tunnel))
        elif peer.action == "protect" and peer.mode == "transport":
            keys += [("tunnel", h) for h in peer.hosts]  # the host is its own outer address
        for what, key in keys:
            if (what, key) in seen:
                field = "hosts" if what == "tunnel" and peer.mode == "transport" else what
                raise ConfigError("config_invalid",
                                  f"{path}: peer[{i}].{field}: {key} already belongs to "
                                  f"peer {seen[(what, key)]!r}")
            seen[(what, key)] = peer.name


def ipv6_uses(config: Config) -> list[str]:
    """Where the configuration names an IPv6 address or prefix (as ``key value`` for
    messages): what skipd cannot serve on a host without IPv6."""
    uses = [f"daemon.addresses {a}" for a in config.daemon.addresses if a.version == 6]
    uses += [f"identity.addresses {a}" for a in config.identity.addresses if a.version == 6]
    for rule in (config.default, *config.peers):
        tunnel = () if rule.tunnel is None else (rule.tunnel,)
        uses += [f"peer {rule.name!r}: {a}" for a in (*rule.hosts, *rule.networks, *tunnel)
                 if a.version == 6]
    uses += [f"group {g.address}" for g in config.groups if g.address.version == 6]
    return uses


def load_config(path: str | Path) -> Config:
    """Read and validate the configuration file at ``path``."""
    path = Path(path)
    try:
        text = read_bounded(path).decode("utf-8")
    except OSError as exc:
        raise ConfigError("config_invalid", f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError("config_invalid", f"{path}: not UTF-8 text") from None
    return parse_config(text, path)
