"""skipd's keying adapter on the real keying engine, without a kernel: certificates from a
PKI on disk, the peer played by a SkipEndpoint holding the peer's private key. What is checked
is what skipd's operations (reload, flush) do to keys: the adapter never rebuilds the engine,
so a packet captured before a reload or a flush is still a replay after it."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from skip.daemon import trust
from skip.daemon.config import load_config
from skip.daemon.keying_adapter import SkipKeying
from skip.errors import SkipError
from skip.keying import LocalIdentity, Peer, SkipEndpoint
from skip.pki.dhkey import load_private_key
from skip.wire.ip import build_ipv4
from tests.netns import make_pki, skipd_config

A, B = "192.0.2.1", "192.0.2.2"
RULE_B = {"name": "b", "hosts": ["10.57.0.2"], "tunnel": B, "action": "protect"}
#: a legacy rule (allow_legacy turns on) and 20 more rules (the master-key cache grows): both
#: change the engine's policy, which once meant a new engine
MORE = [{"name": "museum", "hosts": ["198.51.100.7"], "mode": "transport",
         "profile": "legacy", "action": "protect"},
        *({"name": f"h{i}", "hosts": [f"10.58.0.{i}"], "action": "deny"} for i in range(20))]


class Site:
    def __init__(self, work: Path) -> None:
        self.work, self.now = work, time.time()
        self.pki = work / "pki"
        make_pki(self.pki, {"a": ([A], "x25519"), "a2": ([A], "x25519"), "b": ([B], "x25519")},
                 self.now)
        (work / "peers-a").mkdir()
        shutil.copy(self.pki / "b.pem", work / "peers-a")
        self.engine = SkipKeying(load_config(self.config()), self.now, trust.validator)
        b_private = load_private_key((self.pki / "b.key").read_bytes()).private
        self.b = SkipEndpoint([LocalIdentity.create("b", {"x25519": b_private}, addresses=[B])],
                              started=self.now)
        self.b.add_peer(self.peer_a("a"), self.now, tunnel=A)

    def peer_a(self, key: str) -> Peer:
        public = load_private_key((self.pki / f"{key}.key").read_bytes()).public.public_value
        return Peer.create("a", "x25519", public, addresses=[A])

    def config(self, peers: list[dict] = (RULE_B,), me: str = "a") -> Path:  # type: ignore
        return skipd_config(self.work, me, self.pki, peers=list(peers),
                            store=self.work / "peers-a", identity={"addresses": [A]})

    def reload(self, *args: object, **kw: object) -> None:
        self.engine.reconfigure(load_config(self.config(*args, **kw)), self.now)

    def from_b(self, payload: bytes = b"hello") -> bytes:
        inner = build_ipv4("10.57.0.2", "10.57.0.1", 17, bytes(8) + payload)
        wire = self.b.protect(inner, self.now, identity="b", peer="a")
        assert wire is not None
        return wire

    def to_b(self) -> bytes:
        rule = next(r for r in self.engine.config.peers if r.name == "b")
        wire = self.engine.protect(build_ipv4("10.57.0.1", "10.57.0.2", 17, bytes(8)),
                                   self.now, rule)
        assert wire is not None
        return wire

    def engine_counter(self, name: str) -> int:
        return self.engine.counters().get(name, 0)


@pytest.fixture()
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def _refused(call: Callable[[], object], reason: str) -> None:
    with pytest.raises(SkipError) as err:
        call()
    assert err.value.reason == reason


def test_a_reload_that_changes_the_policy_keeps_replay_windows_and_keys(site: Site) -> None:
    captured = site.from_b()
    assert site.engine.unprotect(captured, site.now).peer == "b"
    site.b.unprotect(site.to_b(), site.now)
    site.reload([RULE_B, *MORE])
    assert site.engine.endpoint.policy.allow_legacy
    _refused(lambda: site.engine.unprotect(captured, site.now), "replay")
    assert site.engine.unprotect(site.from_b(b"next"), site.now).peer == "b"
    assert site.b.unprotect(site.to_b(), site.now).peer == "a"  # a new send Kp, same Kij
    assert site.engine_counter("kij_computed") == 1 and site.engine_counter("kp_new") == 2


def test_a_flush_keeps_replay_windows(site: Site) -> None:
    captured = site.from_b()
    site.engine.unprotect(captured, site.now)
    site.b.unprotect(site.to_b(), site.now)
    assert site.engine.flush(site.now) == 2  # the master key and the send Kp toward b
    _refused(lambda: site.engine.unprotect(captured, site.now), "replay")
    assert site.b.unprotect(site.to_b(), site.now).peer == "a"
    assert site.engine_counter("kij_computed") == 2


def test_a_new_key_pair_on_reload_ends_the_old_keys(site: Site) -> None:
    captured = site.from_b()
    site.engine.unprotect(captured, site.now)
    site.reload(me="a2")  # a2: a new key pair and certificate for the same address
    # b has not seen the new certificate: its Kp is wrapped for the old public value
    _refused(lambda: site.engine.unprotect(captured, site.now), "kp_unwrap_failed")
    site.b.add_peer(site.peer_a("a2"), site.now, tunnel=A)
    assert site.engine.unprotect(site.from_b(), site.now).peer == "b"
    assert site.b.unprotect(site.to_b(), site.now).peer == "a"


def test_local_nsid_and_mkid_choose_the_name_we_send_under(site: Site) -> None:
    """docs/skipd.md: `local_nsid`/`local_mkid` are one of our certificate's SKIP names."""
    from skip.crypto import skip_numbers as num
    from skip.pki.certificate import load_certificate
    from skip.wire.skip_header import SkipHeader

    ours = load_certificate((site.pki / "a.pem").read_bytes()).skip_names()
    dn = next(n for n in ours if n.nsid == 5)  # MD5 of our distinguished name
    rule = {**RULE_B, "local_nsid": 5, "local_mkid": dn.mkid.hex()}
    site.reload([rule])
    wire = site.to_b()
    header = SkipHeader.parse_from(wire, 20, num.header_ekp_length)[0]
    assert (header.src_nsid, header.src_mkid) == (5, dn.mkid)
    # b knows a by that name (no address) and accepts it
    site.b.add_peer(Peer.create("a", "x25519", site.peer_a("a").public, nsid=5, mkid=dn.mkid),
                    site.now)
    assert site.b.unprotect(wire, site.now).peer == "a"
    # a name our certificate does not give us is refused, and the old configuration stays
    _refused(lambda: site.reload([{**rule, "local_mkid": "00" * 16}]), "config_invalid")
    assert SkipHeader.parse_from(site.to_b(), 20, num.header_ekp_length)[0].src_nsid == 5
