"""Reload at scale (issue 9 s. 2): the certificate store reads each file once per version and
looks rules up by SKIP name, verdicts are reused only under the same anchors and CRLs, the
slow half of a reload runs off the event loop, and the engine's timer drops a peer whose
certificate expires while skipd runs. The speed itself is in ``tools/bench reload``."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import time
from pathlib import Path
from typing import Any

import pytest

from skip.crypto.dh import GROUPS
from skip.daemon import cert_store, trust
from skip.daemon.config import load_config
from skip.daemon.keying_adapter import SkipKeying
from skip.daemon.runtime import Daemon
from skip.pki import Subject, issue
from skip.pki.dhkey import generate_key
from skip.pki.signing import generate_signer
from tests.netns import make_pki, skipd_config

A = "192.0.2.1"
PEERS = 40


def _address(i: int) -> str:
    return f"10.66.0.{i + 1}"


@pytest.fixture()
def site(tmp_path: Path) -> Path:
    """Our PKI plus PEERS peer certificates in the store, one transport rule each."""
    make_pki(tmp_path / "pki", {"a": ([A], "x25519"),
                                **{f"p{i}": ([_address(i)], "x25519") for i in range(PEERS)}},
             time.time(), revoked=["p0"])  # revoked.crl lists p0; ca.crl (in use) nothing
    store = tmp_path / "peers-a"
    store.mkdir()
    for i in range(PEERS):
        (store / f"p{i}.pem").write_bytes((tmp_path / "pki" / f"p{i}.pem").read_bytes())
    return skipd_config(tmp_path, "a", tmp_path / "pki", identity={"addresses": [A]}, peers=[
        {"name": f"p{i}", "hosts": [_address(i)], "mode": "transport", "action": "protect"}
        for i in range(PEERS)])


class _Counting:
    """Counts what the store parses and what the validator validates."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.parsed = self.validated = 0
        real_parse = cert_store.load_certificates
        real_validator = trust.validator

        def parse(data: bytes) -> Any:
            self.parsed += 1
            return real_parse(data)

        def validator(config: Any) -> Any:
            inner = real_validator(config)
            outer = self

            class Counted:
                token, until = inner.token, inner.until

                def __call__(self, cert: Any, now: float) -> Any:
                    outer.validated += 1
                    return inner(cert, now)

            return Counted()

        monkeypatch.setattr(cert_store, "load_certificates", parse)
        self.validator = validator


def test_a_load_reads_each_file_once_and_a_reload_only_what_changed(
        site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    count = _Counting(monkeypatch)
    now = time.time()
    engine = SkipKeying(load_config(site), now, count.validator)
    assert len(engine.specs) == PEERS
    # once per file and certificate, not once per rule and file (that was PEERS ** 2)
    assert (count.parsed, count.validated) == (PEERS, PEERS + 1)  # + our own certificate
    engine.reconfigure(load_config(site), now)
    assert (count.parsed, count.validated) == (PEERS, PEERS + 2)  # only our own, again
    # p3's file replaced by a certificate for the same name from a CA we do not trust
    signer = generate_signer()
    ca = issue(signer=signer, issuer=None, subject=Subject([("CN", "other CA")]),
               not_before=int(now) - 60, not_after=int(now) + 86400, ca=True)
    stranger = issue(signer=signer, issuer=ca, not_before=int(now) - 60,
                     not_after=int(now) + 86400, dh_key=generate_key(GROUPS["x25519"]).public,
                     subject=Subject([("CN", "p3")], (ipaddress.ip_address(_address(3)),)))
    (site.parent / "peers-a" / "p3.pem").write_bytes(stranger.pem())
    os.utime(site.parent / "peers-a" / "p3.pem", ns=(1, 1))  # another version for sure
    engine.reconfigure(load_config(site), now)
    assert count.parsed == PEERS + 1 and count.validated == PEERS + 4  # p3, and our own
    assert "p3" not in engine.specs and "p4" in engine.specs


def test_a_new_crl_is_applied_although_verdicts_are_cached(site: Path) -> None:
    now = time.time()
    engine = SkipKeying(load_config(site), now, trust.validator)
    assert {"p0", "p1"} <= set(engine.specs)
    pki = site.parent / "pki"
    (pki / "ca.crl").write_bytes((pki / "revoked.crl").read_bytes())
    engine.reconfigure(load_config(site), now)
    assert "p0" not in engine.specs and "p1" in engine.specs


def test_a_certificate_that_expires_while_skipd_runs_drops_its_peer(tmp_path: Path) -> None:
    now = time.time()
    make_pki(tmp_path / "pki", {"a": ([A], "x25519"), "b": (["192.0.2.2"], "x25519")}, now)
    (tmp_path / "peers-a").mkdir()
    (tmp_path / "peers-a" / "b.pem").write_bytes((tmp_path / "pki" / "b.pem").read_bytes())
    config = skipd_config(tmp_path, "a", tmp_path / "pki", identity={"addresses": [A]},
                          peers=[{"name": "b", "hosts": ["10.57.0.2"], "tunnel": "192.0.2.2",
                                  "action": "protect"}])
    engine = SkipKeying(load_config(config), now, trust.validator)
    not_after = engine.specs["b"].peer.not_after
    assert not_after is not None and not_after > now
    engine.handle_timer(now)
    assert engine.get_timer() <= not_after
    engine.handle_timer(not_after)
    engine.events()
    assert "b" not in engine.specs
    assert engine.counters().get("peer_expired") == 1


def test_the_slow_half_of_a_reload_runs_off_the_event_loop(tmp_path: Path) -> None:
    """While prepare() takes its time, the loop keeps ticking (packets keep flowing)."""
    path = tmp_path / "skipd.toml"
    from tests.test_daemon_runtime import CONFIG, DoubleEngine

    path.write_text(CONFIG)

    class Slow(DoubleEngine):
        def prepare(self, config: Any, now: float) -> Any:
            time.sleep(0.4)  # a real prepare validates thousands of certificates
            return config

    d = Daemon(load_config(path), lambda c, n: Slow())
    d.engine = d.engine_factory(d.config, 0)

    class Routes:
        def set_routes(self, wanted: dict) -> None:
            pass

    d.routing = Routes()  # type: ignore[assignment]

    async def scenario() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        await d.reload()
        task.cancel()
        return ticks

    ticks = asyncio.run(scenario())
    d.netlink.shutdown()
    assert ticks >= 20  # 0.4 s of 10 ms ticks, less scheduling slack
