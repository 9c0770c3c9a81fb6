"""The sans-I/O DNS certificate lookup (skip/discovery/dns_lookup.py, next-wave.md 2.4-2.5)
against a real authoritative server: Knot DNS on loopback, signing its zones itself, so the
signatures, DS records and NSEC denials validated here were made by software nobody here wrote.
The timer and limit rules (DNS-13) are checked with injected time and no server."""

from __future__ import annotations

import base64
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import pytest

from skip.discovery.dns_lookup import DnsAnswer, DnsRequester
from skip.discovery.dnssec import TrustAnchor
from skip.wire.names import SkipName
from tests.knot import KnotServer, Zone, have_knot

CERT1 = os.urandom(600)  # the requester hands bytes on; binding them is the learner's job
CERT2 = os.urandom(700)
CERT3 = os.urandom(500)
NAME = SkipName.of_address(bytes([192, 0, 2, 9]))


def _cert(data: bytes) -> str:
    return f"CERT PKIX 0 0 {base64.b64encode(data).decode()}"


@pytest.fixture(scope="module")
def knot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnotServer]:
    if not have_knot():
        pytest.skip("knotd is not installed (tools/setup.sh installs Debian's knot)")
    server = KnotServer(tmp_path_factory.mktemp("knot"), [
        Zone("example.", f"ns A 127.0.0.1\nhost {_cert(CERT1)}\ntwo {_cert(CERT1)}\n"
                         f"two {_cert(CERT2)}\nplain NS ns.plain\nns.plain A 127.0.0.1\n"
                         "text TXT hello\n"),
        Zone("plain.example.", f"ns A 127.0.0.1\nhost {_cert(CERT3)}\n", signed=False),
    ])
    server.start()
    yield server
    server.stop()


def _anchor(knot: KnotServer) -> TrustAnchor:
    return TrustAnchor.from_text(knot.anchor("example."))


def _resolve(requester: DnsRequester, knot: KnotServer, owner: str, *, skew: float = 0.0,
             name: SkipName = NAME) -> DnsAnswer:
    """Drive one lookup over a real UDP socket until it ends; ``skew`` moves the requester's
    clock (RRSIG validity) without waiting."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.05)
        assert requester.lookup(name, dns.name.from_text(owner), [(knot.address, knot.port)],
                                time.time() + skew)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for data, to in requester.datagrams_to_send():
                sock.sendto(data, to)
            for data, to in requester.tcp_to_send():
                with socket.create_connection(to, timeout=2) as tcp:
                    tcp.sendall(len(data).to_bytes(2, "big") + data)
                    size = int.from_bytes(_read(tcp, 2), "big")
                    requester.receive_datagram(_read(tcp, size), to, time.time() + skew)
            try:
                data, source = sock.recvfrom(65535)
            except TimeoutError:
                requester.handle_timer(time.time() + skew)
            else:
                requester.receive_datagram(data, source, time.time() + skew)
            if events := requester.events():
                assert len(events) == 1
                return events[0]
    raise AssertionError("the lookup did not end")


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise AssertionError("the server closed the TCP connection early")
        data += chunk
    return data


def test_a_signed_cert_rrset_is_found_secure(knot: KnotServer) -> None:
    """DNS-10/11/20: CERT, then DNSKEY at the anchor; knot's signatures verify."""
    requester = DnsRequester([_anchor(knot)])
    answer = _resolve(requester, knot, "host.example.")
    assert (answer.status, answer.outcome) == ("found", "secure"), answer.detail
    assert answer.certificates == ((1, CERT1),)
    assert 0 < answer.keep <= 300  # DNS-12: the RRset TTL caps it
    assert requester.counters["dns_queries"] == 2


def test_the_chain_is_reused_by_the_next_lookup_but_validated_again(knot: KnotServer) -> None:
    """The anchor zone's DNSKEY answer serves the next lookup for its TTL: one CERT query
    instead of two (the chain is still validated by each lookup)."""
    requester = DnsRequester([_anchor(knot)])
    assert _resolve(requester, knot, "host.example.").outcome == "secure"
    second = _resolve(requester, knot, "two.example.", name=SkipName(5, os.urandom(16)))
    assert second.outcome == "secure" and requester.counters["dns_chain_reused"] == 1
    assert requester.counters["dns_queries"] == 3  # CERT, DNSKEY, CERT (then TCP)


def test_a_bogus_outcome_drops_the_chain_it_relied_on(knot: KnotServer) -> None:
    fields = knot.anchor("example.").split()
    fields[-1] = ("0" if fields[-1][0] != "0" else "1") + fields[-1][1:]
    requester = DnsRequester([TrustAnchor.from_text(" ".join(fields))])
    assert _resolve(requester, knot, "host.example.").status == "dns_bogus"
    assert _resolve(requester, knot, "two.example.",
                    name=SkipName(5, os.urandom(16))).status == "dns_bogus"
    assert requester.counters["dns_chain_reused"] == 0  # the DNSKEY answer was asked again
    assert requester.counters["dns_queries"] == 4


def test_every_pkix_record_of_the_rrset_is_handed_on(knot: KnotServer) -> None:
    """DNS-11: a renewed certificate may sit beside the old one. Two certificates and their
    RRSIG exceed 1232 bytes: knot truncates, and the query is asked again over TCP (DNS-10)."""
    requester = DnsRequester([_anchor(knot)])
    answer = _resolve(requester, knot, "two.example.")
    assert answer.status == "found", answer.detail
    assert requester.counters["dns_truncated"] == 1 and requester.counters["dns_tcp_queries"]
    assert sorted(c for _, c in answer.certificates) == sorted([CERT1, CERT2])


def test_a_proven_absence_is_not_found_and_remembered_briefly(knot: KnotServer) -> None:
    """DNS-12/22: NXDOMAIN and NODATA proven by knot's NSEC records; the name is not asked
    again for min(TTL, 60 s), then it is."""
    requester = DnsRequester([_anchor(knot)], negative_seconds=60)
    for owner in ("nobody.example.", "text.example."):  # NXDOMAIN, NODATA
        name = SkipName(5, os.urandom(16))
        answer = _resolve(requester, knot, owner, name=name)
        assert (answer.status, answer.outcome) == ("not_found", "secure"), answer.detail
        assert 0 < answer.keep <= 60
        assert not requester.lookup(name, dns.name.from_text(owner), [("127.0.0.1", 1)],
                                    time.time())
        assert requester.lookup(name, dns.name.from_text(owner), [("127.0.0.1", 1)],
                                time.time() + 61)


def test_an_unsigned_delegation_is_insecure_and_refused_when_dnssec_is_required(
        knot: KnotServer) -> None:
    """DNS-25: plain.example. has no DS, which example.'s signed NSEC proves: insecure, usable
    only through a CA chain; a policy that requires DNSSEC refuses it."""
    answer = _resolve(DnsRequester([_anchor(knot)]), knot, "host.plain.example.")
    assert (answer.status, answer.outcome) == ("found", "insecure"), answer.detail
    assert answer.certificates == ((1, CERT3),)
    strict = _resolve(DnsRequester([_anchor(knot)], require_dnssec=True), knot,
                      "host.plain.example.")
    assert strict.status == "dns_insecure" and not strict.certificates


def test_expired_signatures_are_bogus_and_not_retried(knot: KnotServer) -> None:
    """DNS-21/25: knot's RRSIGs last two weeks; a month on they are expired: bogus, and the
    name is not asked again (no fallback to an unsigned answer) for the negative time."""
    requester = DnsRequester([_anchor(knot)])
    answer = _resolve(requester, knot, "host.example.", skew=30 * 86_400)
    assert (answer.status, answer.outcome) == ("dns_bogus", "bogus")
    assert "expired" in answer.detail and not answer.certificates
    assert not requester.lookup(NAME, dns.name.from_text("host.example."),
                                [("127.0.0.1", 1)], time.time() + 30 * 86_400)
    assert requester.counters["dns_bogus"] == 1


def test_a_trust_anchor_of_another_key_makes_the_answer_bogus(knot: KnotServer) -> None:
    """DNS-20: the chain starts at the configured DS; a DS no DNSKEY matches breaks it."""
    fields = knot.anchor("example.").split()
    fields[-1] = ("0" if fields[-1][0] != "0" else "1") + fields[-1][1:]
    answer = _resolve(DnsRequester([TrustAnchor.from_text(" ".join(fields))]), knot,
                      "host.example.")
    assert answer.status == "dns_bogus" and "DS" in answer.detail


def test_without_an_anchor_the_answer_is_unvalidated(knot: KnotServer) -> None:
    """No anchor above the name: one query, the CERT taken as is (a CA chain must carry it),
    unless DNSSEC is required."""
    requester = DnsRequester([])
    answer = _resolve(requester, knot, "host.example.")
    assert (answer.status, answer.outcome, answer.certificates) == ("found", "unvalidated",
                                                                   ((1, CERT1),))
    assert requester.counters["dns_queries"] == 1
    strict = _resolve(DnsRequester([], require_dnssec=True), knot, "host.example.")
    assert strict.status == "dns_insecure"


# --- DNS-13 with injected time, no server ---------------------------------------------------

def test_tries_back_off_then_move_to_the_next_server_within_the_deadline() -> None:
    requester = DnsRequester([], deadline=5.0)
    servers = [("192.0.2.53", 53), ("198.51.100.53", 53)]
    assert requester.lookup(NAME, dns.name.from_text("host.example."), servers, 100.0)
    sent: list[tuple[float, str]] = []
    for now in (100.0, 100.5, 101.0, 102.0, 103.0, 103.5, 104.0, 105.0):
        requester.handle_timer(now)
        sent += [(now, to[0]) for _, to in requester.datagrams_to_send()]
    assert sent == [(100.0, "192.0.2.53"), (101.0, "192.0.2.53"), (103.0, "198.51.100.53"),
                    (104.0, "198.51.100.53")]
    [answer] = requester.events()
    assert answer.status == "dns_timeout" and not requester.looking_up(NAME)


def test_answers_from_elsewhere_or_to_other_queries_are_ignored_and_truncation_goes_tcp(
        ) -> None:
    requester = DnsRequester([])
    servers = [("192.0.2.53", 53), ("198.51.100.53", 53)]
    requester.lookup(NAME, dns.name.from_text("host.example."), servers, 0.0)
    [(wire, _)] = requester.datagrams_to_send()
    query = dns.message.from_wire(wire)
    assert query.flags & dns.flags.CD and query.ednsflags & dns.flags.DO  # DNS-10
    assert query.payload == 1232
    response = dns.message.make_response(query)
    requester.receive_datagram(response.to_wire(), ("203.0.113.1", 53), 0.1)  # spoofed source
    other = dns.message.make_response(query)
    other.id ^= 1
    requester.receive_datagram(other.to_wire(), ("192.0.2.53", 53), 0.1)
    requester.receive_datagram(b"\x00" * 5, ("192.0.2.53", 53), 0.1)
    assert requester.counters["dns_unmatched"] == 2 and requester.counters["dns_malformed"] == 1
    assert requester.looking_up(NAME) and not requester.events()
    response.flags |= dns.flags.TC
    requester.receive_datagram(response.to_wire(), ("192.0.2.53", 53), 0.2)
    assert [to[0] for _, to in requester.tcp_to_send()] == ["192.0.2.53"]  # DNS-10
    requester.receive_datagram(response.to_wire(), ("192.0.2.53", 53), 0.3)  # TC over TCP
    assert [to[0] for _, to in requester.datagrams_to_send()] == ["198.51.100.53"]
    assert requester.counters["dns_truncated"] == 2


def test_lookups_are_rate_limited_and_one_per_name() -> None:
    """DNS-13: spoofed SKIP sources must not turn the host into a query generator."""
    requester = DnsRequester([], rate=1.0, burst=2.0)
    owner, servers = dns.name.from_text("host.example."), [("192.0.2.53", 53)]
    names = [SkipName(5, os.urandom(16)) for _ in range(3)]
    assert requester.lookup(names[0], owner, servers, 0.0)
    assert requester.lookup(names[0], owner, servers, 0.0)  # already running: no new query
    assert requester.lookup(names[1], owner, servers, 0.0)
    assert not requester.lookup(names[2], owner, servers, 0.0)
    assert requester.lookup(names[2], owner, servers, 1.0)  # a token a second
    assert requester.counters["dns_rate_limited"] == 1
    assert len(requester.datagrams_to_send()) == 3


def test_no_server_means_no_lookup(tmp_path: Path) -> None:
    assert not DnsRequester([]).lookup(NAME, dns.name.from_text("h.example."), [], 0.0)
