"""The endpoint's timer (issue 9 s. 2: ``get_timer`` / ``handle_timer``, in the spirit of
aioquic): what happens without a packet - waiting packets time out, certificates expire while
running, hours pass - and the choice of local principal toward a peer (``Peer.local``)."""

from __future__ import annotations

import math

import pytest

from skip.crypto import skip_numbers as num
from skip.crypto.kdf import counter_n, n_start
from skip.errors import SkipError
from skip.keying.endpoint import SkipEndpoint
from skip.keying.events import CertificateNeeded, PeerExpired, Transmit
from skip.keying.identity import LocalIdentity, Peer
from skip.wire.skip_header import SkipHeader

from .keying_harness import ADDR, NOW, STARTED, identity, pair, peer_of, udp


def _refused(call, reason: str) -> None:
    with pytest.raises(SkipError) as err:
        call()
    assert err.value.reason == reason


def _swept(endpoint: SkipEndpoint, now: float = NOW) -> SkipEndpoint:
    """The harness's endpoints started two hours before NOW: their first hourly sweep is due."""
    assert endpoint.get_timer() <= now
    endpoint.handle_timer(now)
    return endpoint


def test_the_timer_is_the_next_hour_when_nothing_else_is_due() -> None:
    link = pair("x25519")
    _swept(link.a)
    assert link.a.get_timer() == n_start(counter_n(NOW) + 1)


def test_a_packet_waiting_for_a_certificate_times_out_on_the_timer() -> None:
    a = SkipEndpoint([identity("a", ("x25519",))], started=STARTED)
    _swept(a)
    assert a.protect(udp(), NOW) is None  # b is unknown: queued, a certificate asked for
    assert isinstance(a.events()[0], CertificateNeeded)
    due = a.get_timer()
    assert due == math.nextafter(NOW + a.policy.pending_seconds, math.inf)
    a.handle_timer(due)
    assert a.counters["cert_wait_expired"] == 1
    # the certificate comes late: nothing stale is released
    assert a.add_peer(peer_of(identity("b", ("x25519",)), "x25519"), due) == []


def test_a_certificate_that_expires_while_running_stops_being_used() -> None:
    """Issue 9 s. 2: not_after enforced while running, not at the next reload."""
    link = pair("x25519")
    ida = identity("a", ("x25519",))
    expiring = Peer.create("a", "x25519", ida.publics["x25519"], addresses=ADDR["a"],
                           not_after=NOW + 10)
    link.b.add_peer(expiring, NOW)
    _swept(link.b)
    _wire, got = link.send(udp(), NOW)
    assert got.peer == "a"
    back = link.b.protect(udp("b", "a"), NOW)
    assert link.a.unprotect(back, NOW).peer == "b"
    assert link.b.get_timer() == NOW + 10
    # the send Kp ends with the certificate, even before the timer runs
    _refused(lambda: link.b.protect(udp("b", "a"), NOW + 10.5), "cert_expired")
    link.b.handle_timer(NOW + 10.5)
    assert [e for e in link.b.events() if isinstance(e, PeerExpired)] == [
        PeerExpired("a", NOW + 10)]
    assert link.b.counters["peer_expired"] == 1
    # a's live Kp is no longer accepted: its packets now ask for a certificate again
    later = link.a.protect(udp(payload=b"later"), NOW + 11)
    assert link.b.unprotect(later, NOW + 11) is None
    assert isinstance(link.b.events()[0], CertificateNeeded)


def test_a_peer_learnt_again_does_not_get_fresh_replay_windows() -> None:
    """remove_peer + add_peer with the same public value (a reload, a certificate fetched
    again): the Kps that were live are kp_stale, the sender is told, traffic recovers."""
    link = pair("x25519")
    wire, _ = link.send(udp())
    ida = identity("a", ("x25519",))
    link.b.remove_peer("a")
    link.b.add_peer(peer_of(ida, "x25519"), NOW + 1)
    _refused(lambda: link.b.unprotect(wire, NOW + 1), "kp_stale")
    notices = [e for e in link.b.events() if isinstance(e, Transmit)]
    assert len(notices) == 1
    assert link.a.unprotect(notices[0].packet, NOW + 1) is None  # consumed: a new Kp next
    fresh = link.a.protect(udp(payload=b"fresh"), NOW + 1)
    assert link.b.unprotect(fresh, NOW + 1).packet == udp(payload=b"fresh")


def test_the_hourly_sweep_forgets_receive_keys_without_traffic() -> None:
    link = pair("x25519")
    link.send(udp())
    _swept(link.b)
    assert link.b.peer_status("a", NOW).rx_keys == 1
    two_hours = n_start(counter_n(NOW) + 2)
    assert link.b.get_timer() == n_start(counter_n(NOW) + 1)
    link.b.handle_timer(n_start(counter_n(NOW) + 1))
    assert link.b.peer_status("a", NOW).rx_keys == 1  # n - 1 is still accepted
    link.b.handle_timer(two_hours)
    assert link.b.peer_status("a", two_hours).rx_keys == 0


def test_the_local_principal_toward_a_peer_is_the_one_it_names() -> None:
    """docs/skipd.md local_nsid/local_mkid: one key pair, two SKIP names; the peer rule picks."""
    base = identity("a", ("x25519",))
    by_address = LocalIdentity.create("a", base.keys, addresses=ADDR["a"])
    by_mkid = LocalIdentity.create("a-dns", base.keys, nsid=4, mkid=b"D" * 16,
                                   addresses=ADDR["a"])
    idb = identity("b", ("x25519",))
    b_peer = Peer.create("b", "x25519", idb.publics["x25519"], addresses=ADDR["b"],
                         local="a-dns")
    a = SkipEndpoint([by_address, by_mkid], [b_peer], started=STARTED)
    wire = a.protect(udp(), NOW)
    header = SkipHeader.parse_from(wire, 20, num.header_ekp_length)[0]
    assert (header.src_nsid, header.src_mkid) == (4, b"D" * 16)
    # the other side knows a by that name and accepts it
    a_peer = Peer.create("a", "x25519", base.publics["x25519"], nsid=4, mkid=b"D" * 16,
                         addresses=ADDR["a"])
    b = SkipEndpoint([idb], [a_peer], started=STARTED)
    assert b.unprotect(wire, NOW).peer == "a"
    # without the choice, the source address picks the principal that owns it first
    plain = SkipEndpoint([by_address, by_mkid], [peer_of(idb, "x25519")], started=STARTED)
    header = SkipHeader.parse_from(plain.protect(udp(), NOW), 20,
                                   num.header_ekp_length)[0]
    assert header.src_nsid == 0
