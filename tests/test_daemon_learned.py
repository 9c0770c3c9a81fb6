"""Discovered certificates are bounded, least recently used first (issue 10: "bounded in
number (evicted least recently used)"; docs/discovery.md "How many are kept").

A real SkipKeying (skipd's keying adapter and engine) with protecting rules whose
certificates are not stored; certificates minted by an in-memory CA are handed to it as the
DNS/CDP sources do; traffic is real packets through the engine.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from skip.daemon import trust
from skip.daemon.config import load_config
from skip.daemon.keying_adapter import SkipKeying
from skip.errors import SkipError
from skip.wire.names import SkipName
from tests.memory_pki import Pki
from tests.netns import skipd_config
from tests.test_daemon_runtime import udp

ME = "192.0.2.1"
PEERS = 4


def _peer(i: int) -> str:
    return f"198.18.0.{i + 1}"


def _inner(i: int) -> str:
    return f"10.128.0.{i + 1}"


@pytest.fixture
def setup(tmp_path: Path) -> tuple[SkipKeying, Pki, Path, float]:
    now = time.time()
    pki = Pki(now)
    pki.write(tmp_path / "pki", "a", ME)
    (tmp_path / "peers-a").mkdir()
    rules = [{"name": f"p{i}", "hosts": [_inner(i)], "tunnel": _peer(i), "action": "protect"}
             for i in range(PEERS)]
    path = skipd_config(tmp_path, "a", tmp_path / "pki", peers=rules,
                        identity={"addresses": [ME]},
                        daemon={"discovery_cache": 2, "discovery": ["cdp"]})
    return SkipKeying(load_config(path), now, trust.validator), pki, path, now


def _learn(engine: SkipKeying, pki: Pki, i: int, now: float) -> str:
    rule = engine.config.peers[i]
    name = SkipName.of_address(bytes(int(x) for x in _peer(i).split(".")))
    _, cert = pki.leaf(f"p{i}", _peer(i))
    return engine.learn(rule, name, [(1, cert.der)], f"cdp {_peer(i)}:1640", now)


def _held(engine: SkipKeying) -> list[str]:
    return sorted(e["rule"] for e in engine.learned_status()["learned"])


def test_past_the_cache_the_least_recently_used_peer_goes(setup) -> None:
    engine, pki, _, now = setup
    assert _learn(engine, pki, 0, now) == "ok"
    assert _learn(engine, pki, 1, now + 1) == "ok"
    # p0, learned first, carries traffic: p1 is now the least recently used
    assert engine.protect(udp(ME, _inner(0)), now + 2, engine.config.peers[0]) is not None
    assert _learn(engine, pki, 2, now + 3) == "ok"
    assert _held(engine) == ["p0", "p2"]
    status = engine.learned_status()["cache"]
    assert status == {"entries": 2, "capacity": 2, "evicted": 1}
    # the evicted peer is gone from the engine too: its next packet waits for discovery
    assert {row["rule"] for row in engine.peers(now + 3)} == {"p0", "p2"}
    assert engine.protect(udp(ME, _inner(1)), now + 4, engine.config.peers[1]) is None
    needed = [e for e in engine.events() if type(e).__name__ == "CertificateNeeded"]
    assert [e.name for e in needed] == [SkipName.of_address(bytes([198, 18, 0, 2]))]
    # and it can be learned again, evicting the least recently used: p0 (last packet at +2)
    # before p2 (learned at +3, no packet since)
    assert _learn(engine, pki, 1, now + 5) == "ok"
    assert _held(engine) == ["p1", "p2"]
    assert engine.learned_status()["cache"]["evicted"] == 2


def test_without_traffic_the_first_learned_goes_first(setup) -> None:
    engine, pki, _, now = setup
    assert _learn(engine, pki, 0, now) == "ok"
    assert _learn(engine, pki, 1, now + 1) == "ok"
    assert engine.endpoint.last_activity("p1") is None
    assert engine.endpoint.last_activity("nobody") is None
    # nothing sent or received: the order is that of learning, the older goes first
    assert _learn(engine, pki, 2, now + 2) == "ok"
    assert _held(engine) == ["p1", "p2"]


def test_a_smaller_cache_on_reload_evicts_at_once(setup, tmp_path: Path) -> None:
    engine, pki, path, now = setup
    assert _learn(engine, pki, 0, now) == "ok"
    assert _learn(engine, pki, 1, now + 1) == "ok"
    path.write_text(path.read_text().replace("discovery_cache = 2", "discovery_cache = 1"))
    engine.reconfigure(load_config(path), now + 2)
    assert _held(engine) == ["p1"]
    assert {row["rule"] for row in engine.peers(now + 2)} == {"p1"}


@pytest.mark.parametrize("value", [0, -1, 1_000_001, '"many"'])
def test_a_cache_size_out_of_range_is_refused(setup, value: object) -> None:
    _, _, path, _ = setup
    path.write_text(path.read_text().replace("discovery_cache = 2", f"discovery_cache = {value}"))
    with pytest.raises(SkipError) as caught:
        load_config(path)
    assert caught.value.reason == "config_invalid" and "discovery_cache" in str(caught.value)


def test_by_default_4096_are_kept(setup) -> None:
    _, _, path, _ = setup
    path.write_text(path.read_text().replace("discovery_cache = 2\n", ""))
    assert load_config(path).daemon.discovery_cache == 4096


def test_dnssec_alone_takes_a_certificate_of_an_unknown_ca_and_nothing_else(setup) -> None:
    """dns_trust = "dnssec" (decisions.md, DNS certificate discovery 1): a DNSSEC-secure
    answer vouches for a certificate of a CA skipd does not know (``anchored`` False);
    otherwise the same certificate is ``cert_untrusted``; an expired one is refused either
    way, and so is one that names a configured CA but is not signed by it."""
    engine, _, _, now = setup
    foreign = Pki(now, "another CA")
    rule = engine.config.peers[0]
    name = SkipName.of_address(bytes([198, 18, 0, 1]))
    _, cert = foreign.leaf("p0", _peer(0))
    assert engine.learn(rule, name, [(1, cert.der)], "dns", now) == "cert_untrusted"
    assert engine.learn(rule, name, [(1, cert.der)], "dns", now, anchored=False) == "ok"
    assert _held(engine) == ["p0"]
    # it stays through a reload: validated again the way it was taken
    engine.reconfigure(engine.config, now + 1)
    assert _held(engine) == ["p0"]
    late = now + 40 * 86_400  # past the certificate's end
    assert engine.learn(engine.config.peers[1], SkipName.of_address(bytes([198, 18, 0, 2])),
                        [(1, foreign.leaf("p1", _peer(1))[1].der)], "dns", late,
                        anchored=False) == "cert_expired"
    forged = Pki(now)  # same CA name as skipd's anchor, another key
    assert engine.learn(engine.config.peers[2], SkipName.of_address(bytes([198, 18, 0, 3])),
                        [(1, forged.leaf("p2", _peer(2))[1].der)], "dns", now,
                        anchored=False) == "cert_bad_signature"


def test_the_replaced_dns_require_dnssec_says_what_replaced_it(setup) -> None:
    _, _, path, _ = setup
    path.write_text(path.read_text().replace("[daemon]\n", "[daemon]\ndns_require_dnssec = true\n"))
    with pytest.raises(SkipError) as caught:
        load_config(path)
    assert caught.value.reason == "config_invalid" and "replaced by dns_trust" in str(caught.value)
