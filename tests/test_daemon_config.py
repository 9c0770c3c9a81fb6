"""skipd configuration: valid files load into the documented values, every mistake is refused
with one line naming the file, the key and the problem."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skip.daemon.config import ipv6_uses, load_config, parse_config
from skip.errors import ConfigError
from tests.netns import make_pki, skipd_config

GOOD = """
[daemon]
interface = "skip7"
addresses = ["10.57.0.1/24", "fd57::1/64"]
control_socket = "run/skipd.sock"
metrics = "127.0.0.1:9657"
log_format = "json"
udp_port = 4057

[identity]
private_key = "keys/a.key"
certificate = "keys/a.pem"
trust_anchors = ["ca.pem"]
crls = ["ca.crl"]
peer_certificates = "peers"
nsid = 1
mkid = "c0000201"

[default]
action = "deny"
profile = "modern"

[[peer]]
name = "beta"
hosts = ["10.57.0.2", "fd57::2"]
tunnel = "192.0.2.2"
action = "protect"

[[peer]]
name = "site-c"
networks = ["10.9.0.0/24"]
tunnel = "192.0.2.3"
profile = "legacy"
crypt_alg = "des-cbc"
mac_alg = "keyed-md5"
nsid = 8
mkid = "00112233445566778899aabbccddeeff"

[[peer]]
name = "laptop"
nomadic = true
nsid = 4
mkid = "ffeeddccbbaa99887766554433221100"
action = "protect"
"""


def parse(text: str) -> object:
    return parse_config(text, Path("/etc/skip/skipd.toml"))


def test_complete_file_loads_with_paths_resolved(tmp_path: Path) -> None:
    path = tmp_path / "skipd.toml"
    path.write_text(GOOD)
    cfg = load_config(path)
    assert cfg.daemon.interface == "skip7"
    assert cfg.daemon.addresses[1] == ipaddress.ip_interface("fd57::1/64")
    assert cfg.daemon.control_socket == tmp_path / "run/skipd.sock"
    assert cfg.daemon.metrics == ("127.0.0.1", 9657)
    assert cfg.identity.private_key == tmp_path / "keys/a.key"
    assert cfg.identity.name.mkid == bytes([192, 0, 2, 1])
    beta, site, laptop = cfg.peers
    assert beta.action == "protect" and beta.profile == "modern"
    assert beta.tunnel == ipaddress.ip_address("192.0.2.2")
    # unset fields inherit [default]
    assert site.action == "deny" and site.profile == "legacy" and site.crypt_alg == "des-cbc"
    assert laptop.nomadic and laptop.peer.nsid == 4 and len(laptop.peer.mkid) == 16


@pytest.mark.parametrize(
    ("edit", "key", "problem"),
    [
        (("action = \"protect\"\n\n[[peer]]\nname = \"site-c\"",
          "action = \"protekt\"\n\n[[peer]]\nname = \"site-c\""), "peer[0].action", "not one of"),
        (("udp_port = 4057", "udp_port = 70000"), "daemon.udp_port", "outside 0..65535"),
        (("udp_port = 4057", "udp_port = \"4057\""), "daemon.udp_port", "expected an integer"),
        (("udp_port = 4057", "udp_prot = 4057"), "daemon.udp_prot", "unknown key"),
        (("udp_port = 4057", "udp_port = 4057\nrekey_bytes = 1000"), "daemon.rekey_bytes",
         "outside 65536..80000000000"),
        (("udp_port = 4057", "udp_port = 4057\nrekey_seconds = 0"), "daemon.rekey_seconds",
         "outside 10..3600"),
        (("mkid = \"c0000201\"", "mkid = \"c00002\""), "identity.mkid", "4-byte MKID"),
        (("mkid = \"c0000201\"", "mkid = \"zz\""), "identity.mkid", "not hexadecimal"),
        (("networks = [\"10.9.0.0/24\"]", "networks = [\"10.9.0.1/24\"]"),
         "peer[1].networks[0]", "host bits"),
        (("tunnel = \"192.0.2.2\"\n", ""), "peer[0].tunnel", "outer address"),
        (("metrics = \"127.0.0.1:9657\"", "metrics = \"localhost\""), "daemon.metrics",
         "HOST:PORT"),
        (("hosts = [\"10.57.0.2\", \"fd57::2\"]", "hosts = [\"10.57.0.2\", \"10.57.0.2\"]"),
         "peer[0].hosts", "already belongs"),
        (("nomadic = true\nnsid = 4", "nomadic = true\ntunnel = \"192.0.2.9\"\nnsid = 4"),
         "peer[2].tunnel", "learned"),
        (("name = \"laptop\"", "name = \"beta\""), "peer[2].name", "already belongs"),
        (("log_format = \"json\"", "log_format = true"), "daemon.log_format", "a boolean"),
        (("private_key = \"keys/a.key\"\n", ""), "identity.private_key", "together"),
        (("nomadic = true\nnsid = 4", "nomadic = true\nprofile = \"legacy\"\nnsid = 4"),
         "peer[2].nomadic", "modern profile"),
        (("crypt_alg = \"des-cbc\"", "crypt_alg = \"aes-256-gcm-16\""), "peer[1].crypt_alg",
         "not a legacy-profile algorithm"),
    ],
)
def test_mistakes_are_refused_naming_file_key_problem(edit, key, problem) -> None:
    old, new = edit
    assert old in GOOD
    with pytest.raises(ConfigError) as info:
        parse(GOOD.replace(old, new, 1))
    message = str(info.value)
    assert info.value.reason == "config_invalid"
    assert message.startswith("config_invalid: /etc/skip/skipd.toml: ")
    assert f": {key}: " in message and problem in message
    assert "\n" not in message


def test_not_toml_is_refused_with_position() -> None:
    with pytest.raises(ConfigError, match=r"skipd.toml: not valid TOML: .*line 2"):
        parse("[daemon]\ninterface = \n")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


def test_empty_file_means_deny_everything() -> None:
    cfg = parse("")
    assert cfg.default.action == "deny" and cfg.peers == ()


def test_documented_example_is_valid() -> None:
    """docs/skipd.md's complete example must stay a working configuration."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "skipd.md").read_text()
    example = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    cfg = parse_config(example, Path("/etc/skip/skipd.toml"))
    assert [p.name for p in cfg.peers] == ["beta", "site-c", "museum", "laptop", "printer"]
    assert cfg.peers[2].profile == "legacy" and cfg.peers[2].mac_alg == "keyed-md5"
    assert cfg.identity.peer_certificates == Path("/etc/skip/peers")


def test_skipd_check_validates_certificates_too(tmp_path: Path) -> None:
    """`skipd --check` (run by the systemd unit before start) reads keys, anchors, CRLs and
    the peer store, and refuses a revoked own certificate with one line."""
    pki = tmp_path / "pki"
    make_pki(pki, {"a": (["192.0.2.1"], "x25519"), "b": (["192.0.2.2"], "x25519")},
             time.time(), revoked=["a"])
    (tmp_path / "peers-a").mkdir()
    (tmp_path / "peers-a" / "b.pem").write_bytes((pki / "b.pem").read_bytes())
    config = skipd_config(tmp_path, "a", pki, peers=[
        {"name": "b", "hosts": ["10.57.0.2"], "tunnel": "192.0.2.2", "action": "protect"}])

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "skip.cli.skipd", "-c", str(config),
                               "--check"], capture_output=True, text=True)

    ok = check()
    assert ok.returncode == 0 and ok.stdout.strip().endswith("OK (1 peer, default action deny)")
    (pki / "ca.crl").write_bytes((pki / "revoked.crl").read_bytes())
    refused = check()
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "our own certificate" in refused.stderr and "cert_revoked" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_one_outer_address_names_one_peer() -> None:
    """With NSID 0 the outer address is all the keying engine sees of the sender: two
    protected rules may not share it (in tunnel or transport mode)."""
    twin = '\n[[peer]]\nname = "beta-too"\nhosts = ["10.57.0.3"]\ntunnel = "192.0.2.2"\n' \
        'action = "protect"\n'
    with pytest.raises(ConfigError, match=r"peer\[3\]\.tunnel: 192.0.2.2 already belongs to "
                       "peer 'beta'"):
        parse(GOOD + twin)
    transport = '\n[[peer]]\nname = "beta-host"\nhosts = ["192.0.2.2"]\n' \
        'mode = "transport"\naction = "protect"\n'
    with pytest.raises(ConfigError, match=r"peer\[3\]\.hosts: 192.0.2.2 already belongs"):
        parse(GOOD + transport)
    parse(GOOD + transport.replace("protect", "deny"))  # not protected: no SKIP name needed


OWNED = GOOD + """
[[group]]
address = "239.1.1.1"
owner = "self"
members = ["beta", "laptop"]
lifetime = 3600
"""


def test_groups_owned_and_joined() -> None:
    config = parse(OWNED + '\n[[group]]\naddress = "239.2.2.2"\nowner = "beta"\n'
                   '\n[[group]]\naddress = "ff15::1"\nowner = "beta"\n')
    owned, joined, joined6 = config.groups
    assert str(joined6.address) == "ff15::1"
    assert [u for u in ipv6_uses(config) if u.startswith("group")] == ["group ff15::1"]
    assert (str(owned.address), owned.owner, owned.members, owned.lifetime) == \
        ("239.1.1.1", "self", ("beta", "laptop"), 3600)
    assert owned.backward_secrecy and owned.interval_seconds == 120
    assert (str(joined.address), joined.owner, joined.members) == ("239.2.2.2", "beta", ())


@pytest.mark.parametrize(
    ("edit", "key", "problem"),
    [
        (('address = "239.1.1.1"', 'address = "10.1.1.1"'), "group[0].address", "multicast"),
        (('address = "239.1.1.1"', 'address = "ff02::1"'), "group[0].address", "scope"),
        (('address = "239.1.1.1"', 'address = "fd00::1"'), "group[0].address", "multicast"),
        (('owner = "self"\n', ""), "group[0].owner", '"self"'),
        (('owner = "self"', 'owner = "site-c"'), "group[0].owner",
         "not a protecting [[peer]] rule"),
        (('"beta", "laptop"', '"beta", "nobody"'), "group[0].members[1]", "'nobody'"),
        (('owner = "self"', 'owner = "beta"'), "group[0].members", "only the owner"),
        (("lifetime = 3600", "lifetime = 10"), "group[0].lifetime", "outside 300.."),
        (("lifetime = 3600", "lifetime = 3600\nbogus = 1"), "group[0].bogus", ""),
    ],
)
def test_group_mistakes_are_refused_naming_the_key(edit, key, problem) -> None:
    old, new = edit
    assert old in OWNED
    with pytest.raises(ConfigError) as info:
        parse(OWNED.replace(old, new, 1))
    assert info.value.reason == "config_invalid"
    assert f": {key}: " in str(info.value) and problem in str(info.value)


def test_a_permanent_group_reads_its_key_and_guards_it(tmp_path: Path) -> None:
    """MC-15: a configured Kg of 256 bits (MC-11), in a file only its owner can read; the
    legacy profile only for such a group (mc-00's key distribution cannot evict or tell a
    replayed response)."""
    key = tmp_path / "group.key"
    kg = bytes(range(1, 33))
    key.write_text(kg.hex()[:32] + "\n" + kg.hex()[32:] + "\n")
    key.chmod(0o600)
    text = f'[[group]]\naddress = "239.9.9.9"\nkey_file = "{key}"\nprofile = "legacy"\n'
    (group,) = parse_config(text, tmp_path / "skipd.toml").groups
    assert (group.owner, group.kg, group.profile) == (None, kg, "legacy")
    assert kg.hex() not in repr(group)  # never in a log line

    def refused(body: str, problem: str) -> None:
        with pytest.raises(ConfigError) as info:
            parse_config('[[group]]\naddress = "239.9.9.9"\n' + body, tmp_path / "s.toml")
        assert info.value.reason == "config_invalid" and problem in str(info.value), info.value

    refused(f'key_file = "{key}"\nowner = "self"\n', "has no owner")
    refused(f'key_file = "{key}"\nmembers = []\n', "has no members")
    refused(f'key_file = "{tmp_path}"\n', "not a regular file")
    refused('owner = "self"\nprofile = "legacy"\n', "only a permanent group")
    refused(f'key_file = "{tmp_path}/missing"\n', "cannot read the group key")
    for content in ("00" * 32, "ab" * 31, "zz" * 32, "\xff"):
        key.write_text(content)
        refused(f'key_file = "{key}"\n', "64 hex digits")
    key.write_text(kg.hex())
    key.chmod(0o640)
    refused(f'key_file = "{key}"\n', "readable by group or others (mode 0640)")


def test_a_group_address_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="group: an address appears twice"):
        parse(OWNED + '\n[[group]]\naddress = "239.1.1.1"\nowner = "beta"\n')
