"""CDP (draft-ietf-ipsec-cdp-01), the wire format and the sans-I/O responder and requester:
every test names the next-wave.md requirement (CDP-n) it checks."""

from __future__ import annotations

import ipaddress
import itertools
import os
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skip.crypto.dh import GROUPS
from skip.discovery.binding import bind
from skip.discovery.cdp import AMPLIFICATION, CdpAnswer, CdpRequester, CdpResponder, Cookies
from skip.errors import CertificateError, ParseError
from skip.pki import generate_key, make_udh
from skip.pki.validation import TrustStore, validate_certificate
from skip.wire.cdp import Action, CdpMessage, CdpRecord, CertType, NameType, RecordAction
from skip.wire.names import SkipName

from .pki_support import DAY, NOW, make_ca, make_leaf

REQUESTER = ("192.0.2.1", 40123)
RESPONDER = ("192.0.2.2", 1640)
LOCALHOST = SkipName(1, bytes([127, 0, 0, 1]))


def _counter_rng():
    """Deterministic bytes: the n-th call returns n's bytes (cookies and secrets differ)."""
    counter = itertools.count(1)
    return lambda size: next(counter).to_bytes(size, "big")


# --- the wire format (next-wave.md 1.2, 1.3) --------------------------------------------------


def test_the_worked_bytes_of_next_wave_1_3() -> None:
    """CDP-2, CDP-5: a GET for NSID 1 / 127.0.0.1, a COOKIE_REQUIRED, a GET FAILED."""
    get = CdpMessage(Action.REQUEST, 0x11223344, 0,
                     (CdpRecord(RecordAction.GET, NameType.SKIP, LOCALHOST.encode()),))
    assert get.encode().hex() == "0100010011223344000000000101050" "17f00000100" "0000"
    assert len(get.encode()) == 23
    cookie = CdpMessage(Action.COOKIE_REQUIRED, 0x11223344, 0xCAFEF00D)
    assert cookie.encode().hex() == "0102000011223344cafef00d"
    failed = CdpMessage(Action.RESPONSE, 0x11223344, 0xCAFEF00D,
                        (CdpRecord(RecordAction.GET_FAILED, NameType.SKIP, LOCALHOST.encode()),))
    assert failed.encode().hex() == "0101010011223344cafef00d" "650105017f000001000000"
    for message in (get, cookie, failed):
        assert CdpMessage.parse(message.encode()) == message


@pytest.mark.parametrize(("data", "reason"), [
    (bytes.fromhex("0100010011223344000000000101050" "17f00000100" "00"), "truncated"),
    (bytes.fromhex("0100020011223344000000000101050" "17f00000100" "0000"), "truncated"),
    (bytes.fromhex("0100010011223344000000000101050" "17f00000100" "0000ff"), "bad_length"),
    (bytes.fromhex("0200000011223344cafef00d"), "cdp_bad_version"),
    (bytes.fromhex("0109000011223344cafef00d"), "bad_header"),
    (bytes.fromhex("0101010011223344000000000101050" "17f00000100" "0000"), "bad_header"),
    (bytes.fromhex("01000100112233440000000065" "01050" "17f00000100" "0000"), "bad_header"),
    (bytes.fromhex("0100000011"), "truncated"),
])
def test_a_malformed_message_is_refused_whole(data: bytes, reason: str) -> None:
    """CDP-2 and the parsing rules of 1.3: count mismatch, overrun, trailing bytes, version,
    a GET in a response or a status in a request: the whole message goes."""
    with pytest.raises(ParseError) as err:
        CdpMessage.parse(data)
    assert err.value.reason == reason


@settings(max_examples=int(os.environ.get("SKIP_FUZZ_EXAMPLES", "300")), deadline=None)
@given(st.binary(max_size=600))
def test_every_byte_string_parses_or_is_a_parse_error(data: bytes) -> None:
    try:
        message = CdpMessage.parse(data)
    except ParseError:
        return
    assert message.encode() == data  # one encoding per message


# --- the responder --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki():  # type: ignore[no-untyped-def]
    ca = make_ca("cdp test CA")
    keys = [generate_key(GROUPS["x25519"]) for _ in range(3)]
    certs = [make_leaf(ca, key, cn=f"h{i}", ips=(f"10.1.0.{i + 1}",))
             for i, key in enumerate(keys)]
    return ca, certs


def _name(address: str) -> SkipName:
    return SkipName.of_address(ipaddress.ip_address(address).packed)


def _table(certs) -> dict[SkipName, list[tuple[int, bytes]]]:  # type: ignore[no-untyped-def]
    table: dict[SkipName, list[tuple[int, bytes]]] = {}
    for cert in certs:
        for n in cert.skip_names():
            table.setdefault(SkipName(n.nsid, n.mkid), []).append((CertType.X509, cert.der))
    return table


def _request(names: list[SkipName], cookie: int = 7, responder_cookie: int = 0,
             put: bytes = b"") -> bytes:
    records = [CdpRecord(RecordAction.GET, NameType.SKIP, n.encode()) for n in names]
    if put:
        records.append(CdpRecord(RecordAction.PUT, NameType.SKIP, names[0].encode(),
                                 CertType.X509, put))
    return CdpMessage(Action.REQUEST, cookie, responder_cookie, tuple(records)).encode()


def _proven(responder: CdpResponder, request: bytes, now: float = NOW) -> CdpMessage:
    """Send, get the cookie, send again with it: the answer to a proven address."""
    first = CdpMessage.parse(responder.handle(request, REQUESTER, RESPONDER, now) or b"")
    if first.action != Action.COOKIE_REQUIRED:
        return first
    again = CdpMessage.parse(request)
    retry = CdpMessage(again.action, again.requester_cookie, first.responder_cookie,
                       again.records).encode()
    return CdpMessage.parse(responder.handle(retry, REQUESTER, RESPONDER, now) or b"")


def test_five_gets_two_known_give_five_records_with_their_names(pki) -> None:  # type: ignore[no-untyped-def]
    """CDP-10, CDP-11, CDP-12: the draft's own example."""
    _ca, certs = pki
    table = _table(certs[:2])
    responder = CdpResponder(lambda n: table.get(n, []), rng=_counter_rng())
    asked = [_name("10.1.0.1"), _name("10.9.9.1"), _name("10.1.0.2"), _name("10.9.9.2"),
             SkipName(4, b"D" * 16)]
    answer = _proven(responder, _request(asked))
    assert answer.action == Action.RESPONSE and answer.requester_cookie == 7
    assert [r.name for r in answer.records] == [n.encode() for n in asked]
    assert [r.action for r in answer.records] == [
        RecordAction.GET_SUCCEEDED, RecordAction.GET_FAILED, RecordAction.GET_SUCCEEDED,
        RecordAction.GET_FAILED, RecordAction.GET_FAILED]
    assert answer.records[0].certificate == certs[0].der
    assert all(r.cert_type == CertType.NONE for r in answer.records if r.action == 101)


def test_a_name_with_two_certificates_gets_two_records_and_a_put_is_refused(pki) -> None:  # type: ignore[no-untyped-def]
    """CDP-11 (one record per certificate), CDP-13/14 (PUT FAILED, nothing stored)."""
    _ca, certs = pki
    name = _name("10.1.0.1")
    stored = {name: [(CertType.X509, certs[0].der), (CertType.X509, certs[2].der)]}
    responder = CdpResponder(lambda n: stored.get(n, []), rng=_counter_rng())
    answer = _proven(responder, _request([name], put=certs[1].der))
    assert [r.action for r in answer.records] == [
        RecordAction.GET_SUCCEEDED, RecordAction.GET_SUCCEEDED, RecordAction.PUT_FAILED]
    assert answer.records[2].cert_type == CertType.NONE
    assert stored[name] == [(CertType.X509, certs[0].der), (CertType.X509, certs[2].der)]


def test_an_unproven_address_gets_at_most_three_times_its_bytes(pki) -> None:  # type: ignore[no-untyped-def]
    """CDP-M2, CDP-16: a 23-byte GET from a (possibly spoofed) source gets the 12-byte
    COOKIE_REQUIRED, not a kilobyte certificate; the retry with the cookie gets it."""
    _ca, certs = pki
    table = _table(certs)
    responder = CdpResponder(lambda n: table.get(n, []), rng=_counter_rng())
    request = _request([_name("10.1.0.1")])
    reply = responder.handle(request, REQUESTER, RESPONDER, NOW)
    assert reply is not None and len(reply) <= AMPLIFICATION * len(request)
    cookie = CdpMessage.parse(reply)
    assert cookie.action == Action.COOKIE_REQUIRED and cookie.records == ()
    assert cookie.requester_cookie == 7 and cookie.responder_cookie != 0
    retry = _request([_name("10.1.0.1")], responder_cookie=cookie.responder_cookie)
    answer = CdpMessage.parse(responder.handle(retry, REQUESTER, RESPONDER, NOW + 1) or b"")
    assert answer.action == Action.RESPONSE and answer.records[0].certificate == certs[0].der
    # a small answer (GET FAILED) fits the budget and needs no cookie
    nothing = CdpMessage.parse(responder.handle(_request([_name("10.9.9.9")]), REQUESTER,
                                                RESPONDER, NOW) or b"")
    assert nothing.action == Action.RESPONSE and nothing.records[0].action == 101


def test_cookies_are_bound_to_the_addresses_and_expire() -> None:
    """CDP-M1: another source (or port) cannot use a cookie; the previous secret is still
    accepted, the one before it is not."""
    cookies = Cookies(_counter_rng(), lifetime=120.0)
    cookie = cookies.make(REQUESTER, RESPONDER, NOW)
    assert cookies.check(cookie, REQUESTER, RESPONDER, NOW + 10)
    assert not cookies.check(cookie, ("192.0.2.66", 40123), RESPONDER, NOW)
    assert not cookies.check(cookie, ("192.0.2.1", 40124), RESPONDER, NOW)
    assert not cookies.check(cookie, REQUESTER, ("192.0.2.3", 1640), NOW)
    assert not cookies.check(0, REQUESTER, RESPONDER, NOW)
    start = (NOW // 120) * 120
    fresh = cookies.make(REQUESTER, RESPONDER, start)
    assert cookies.check(fresh, REQUESTER, RESPONDER, start + 130)  # the previous epoch
    assert not cookies.check(fresh, REQUESTER, RESPONDER, start + 250)  # two epochs on


def test_an_answer_too_large_sends_what_fits(pki) -> None:  # type: ignore[no-untyped-def]
    """CDP-15, CDP-M9: over the size cap, REQUEST_TOO_LARGE with as many records as fit."""
    _ca, certs = pki
    name = _name("10.1.0.1")
    many = {name: [(CertType.X509, c.der) for c in certs]}
    cap = 12 + 2 * (3 + 5 + 3 + len(certs[0].der)) + 10
    responder = CdpResponder(lambda n: many.get(n, []), rng=_counter_rng(), max_answer=cap)
    answer = _proven(responder, _request([name]))
    assert answer.action == Action.REQUEST_TOO_LARGE
    assert [r.certificate for r in answer.records] == [certs[0].der, certs[1].der]
    assert answer.size <= cap


def test_a_flood_from_spoofed_sources_is_bounded_and_the_real_requester_answered(
        pki) -> None:  # type: ignore[no-untyped-def]
    """CDP-M6, issue 10 ("a flood of CDP requests from spoofed addresses does not make the
    responder send more than the limits allow nor stop answering the legitimate requester"):
    per source; past the global rate only COOKIE_REQUIRED, never larger than the request;
    a requester that turns up in the middle of the flood, with no cookie yet, gets one and
    then its certificate (decisions.md "CDP under a flood")."""
    _ca, certs = pki
    table = _table(certs)
    responder = CdpResponder(lambda n: table.get(n, []), rng=_counter_rng(), per_source=1.0,
                             burst=2, total=50.0)
    request = _request([_name("10.1.0.1")])
    sent = sum(responder.handle(request, ("192.0.2.9", 5000), RESPONDER, NOW) is not None
               for _ in range(10))
    assert sent == 2 and responder.counters["rate_limited"] == 8
    received = out = 0
    per_address: Counter[str] = Counter()
    cookie = None
    for i in range(4000):  # 4,000 GETs from 2,000 spoofed sources within one second
        source = f"198.51.{i // 500}.{i % 250}"
        reply = responder.handle(request, (source, 5000 + i), RESPONDER, NOW + 1)
        received += len(request)
        out += len(reply or b"")
        per_address[source] += reply is not None
        assert reply is None or CdpMessage.parse(reply).action == Action.COOKIE_REQUIRED
        if i == 2000:  # the real requester's first GET, in the middle of it
            cookie = CdpMessage.parse(responder.handle(request, REQUESTER, RESPONDER, NOW + 1)
                                      or b"")
    assert out <= received  # no amplification at all under the flood
    assert max(per_address.values()) <= 2  # no address gets more than its burst
    assert cookie is not None and cookie.action == Action.COOKIE_REQUIRED
    # ...and its retry with the cookie, still in the flood, gets the certificate
    retry = _request([_name("10.1.0.1")], responder_cookie=cookie.responder_cookie)
    answer = CdpMessage.parse(responder.handle(retry, REQUESTER, RESPONDER, NOW + 1) or b"")
    assert answer.action == Action.RESPONSE and answer.records[0].certificate == certs[0].der


# --- the requester --------------------------------------------------------------------------


def _deliver(requester: CdpRequester, responder: CdpResponder, now: float,
             src: tuple[str, int] = REQUESTER) -> int:
    """Carry the requester's datagrams to the responder and back; returns how many went."""
    count = 0
    for data, server in requester.datagrams_to_send():
        count += 1
        reply = responder.handle(data, src, server, now)
        if reply is not None:
            requester.receive_datagram(reply, server, now)
    return count


def test_a_lookup_through_the_cookie_exchange_finds_the_certificate(pki) -> None:  # type: ignore[no-untyped-def]
    _ca, certs = pki
    table = _table(certs)
    responder = CdpResponder(lambda n: table.get(n, []), rng=_counter_rng())
    requester = CdpRequester(rng=os.urandom)
    assert requester.lookup(_name("10.1.0.2"), [RESPONDER], NOW)
    assert not requester.lookup(_name("10.1.0.2"), [RESPONDER], NOW)  # one in flight per name
    assert _deliver(requester, responder, NOW) == 1  # GET -> COOKIE_REQUIRED
    assert _deliver(requester, responder, NOW) == 1  # GET with the cookie -> the certificate
    [answer] = requester.events()
    assert answer == CdpAnswer(_name("10.1.0.2"), "found", ((CertType.X509, certs[1].der),),
                               RESPONDER)
    assert requester.get_timer() is None


def test_answers_are_matched_by_address_port_and_cookie(pki) -> None:  # type: ignore[no-untyped-def]
    """CDP-23, CDP-M3: a forged answer from elsewhere, or with another cookie, is ignored."""
    _ca, certs = pki
    requester = CdpRequester(rng=os.urandom)
    requester.lookup(_name("10.1.0.1"), [RESPONDER], NOW)
    [(request, _)] = requester.datagrams_to_send()
    ours = CdpMessage.parse(request)
    forged = CdpMessage(Action.RESPONSE, ours.requester_cookie, 0, (CdpRecord(
        RecordAction.GET_SUCCEEDED, NameType.SKIP, _name("10.1.0.1").encode(), CertType.X509,
        certs[2].der),)).encode()
    requester.receive_datagram(forged, ("192.0.2.66", 1640), NOW)
    requester.receive_datagram(forged, ("192.0.2.2", 1641), NOW)
    other = CdpMessage.parse(forged)
    requester.receive_datagram(CdpMessage(other.action, other.requester_cookie ^ 1, 0,
                                          other.records).encode(), RESPONDER, NOW)
    assert requester.events() == [] and requester.counters["cdp_unsolicited"] == 3
    requester.receive_datagram(forged, RESPONDER, NOW)  # the right triple: accepted (as raw
    [answer] = requester.events()                      # material; binding decides next)
    assert answer.status == "found"


def test_retransmission_doubles_then_moves_on_then_gives_up() -> None:
    """CDP-22: 1, 2, 4 s per server, the next server, the overall deadline."""
    requester = CdpRequester(rng=os.urandom, timeout=1.0, tries=3, deadline=9.0)
    other = ("192.0.2.3", 1640)
    requester.lookup(_name("10.1.0.1"), [RESPONDER, other], NOW)
    sent_at = []
    now = NOW
    while requester.get_timer() is not None and now < NOW + 20:
        sent_at += [(now - NOW, server) for _, server in requester.datagrams_to_send()]
        now = requester.get_timer() or now
        requester.handle_timer(now)
    assert sent_at == [(0.0, RESPONDER), (1.0, RESPONDER), (3.0, RESPONDER), (7.0, other),
                       (8.0, other)]
    [answer] = requester.events()
    assert answer.status == "timeout" and requester.counters["cdp_timeout"] == 1


def test_get_failed_is_a_hint_that_moves_to_the_next_server(pki) -> None:  # type: ignore[no-untyped-def]
    """CDP-M4: a GET FAILED (forged or not) does not end the lookup while servers remain;
    after all said it, not_found, and CDP is not asked again for that name for a while."""
    _ca, certs = pki
    table = _table(certs)
    empty = CdpResponder(lambda n: [], rng=_counter_rng())
    full = CdpResponder(lambda n: table.get(n, []), rng=_counter_rng())
    second = ("192.0.2.3", 1640)
    requester = CdpRequester(rng=os.urandom, negative_ttl=30.0)
    requester.lookup(_name("10.1.0.3"), [RESPONDER, second], NOW)
    for data, server in requester.datagrams_to_send():
        requester.receive_datagram(empty.handle(data, REQUESTER, server, NOW) or b"", server,
                                   NOW)
    assert requester.events() == []  # moved on to the second server
    for _ in range(2):
        for data, server in requester.datagrams_to_send():
            assert server == second
            requester.receive_datagram(full.handle(data, REQUESTER, server, NOW) or b"",
                                       server, NOW)
    [answer] = requester.events()
    assert answer.status == "found" and answer.server == second
    requester.lookup(_name("10.9.9.9"), [RESPONDER], NOW)
    _deliver(requester, empty, NOW)
    assert [a.status for a in requester.events()] == ["not_found"]
    assert not requester.lookup(_name("10.9.9.9"), [RESPONDER], NOW + 29)
    assert requester.lookup(_name("10.9.9.9"), [RESPONDER], NOW + 31)


def test_a_forged_cookie_request_costs_at_most_two_datagrams() -> None:
    requester = CdpRequester(rng=os.urandom)
    requester.lookup(_name("10.1.0.1"), [RESPONDER], NOW)
    sent = 0
    for _ in range(5):
        for data, server in requester.datagrams_to_send():
            sent += 1
            cookie = CdpMessage.parse(data).requester_cookie
            requester.receive_datagram(CdpMessage(Action.COOKIE_REQUIRED, cookie,
                                                  0xBAD).encode(), server, NOW)
    assert sent == 3 and requester.counters["cdp_cookie_refused"] == 1


# --- the name binding -----------------------------------------------------------------------


def test_a_valid_certificate_for_another_name_is_refused(pki) -> None:  # type: ignore[no-untyped-def]
    """CDP-24: chain and validity are not enough; it must answer to the name asked for."""
    ca, certs = pki
    trust = TrustStore([ca.cert])

    def validate(cert, now):  # type: ignore[no-untyped-def]
        return validate_certificate(cert, trust, now)

    key = bind(_name("10.1.0.1"), CertType.X509, certs[0].der, NOW, validate)
    assert key.public_value == certs[0].dh_key.public_value
    with pytest.raises(CertificateError) as err:
        bind(_name("10.1.0.1"), CertType.X509, certs[1].der, NOW, validate)
    assert err.value.reason == "cert_name_mismatch"
    with pytest.raises(CertificateError) as err:
        bind(_name("10.1.0.1"), CertType.X509, b"\x30\x03junk", NOW, validate)
    assert err.value.reason == "cert_malformed"
    stranger = make_ca("stranger")
    forged = make_leaf(stranger, generate_key(GROUPS["x25519"]), ips=("10.1.0.1",))
    with pytest.raises(CertificateError) as err:
        bind(_name("10.1.0.1"), CertType.X509, forged.der, NOW, validate)
    assert err.value.reason == "cert_untrusted"


def test_an_unsigned_dh_value_answers_only_an_nsid_8_name() -> None:
    """CDP-25, udh-01 s. 4: a UDH value is believed because its MD5 is the name."""
    udh = make_udh(generate_key(GROUPS["ffdhe2048"]).public, NOW - DAY, NOW + DAY)

    def never(cert, now):  # type: ignore[no-untyped-def]
        raise AssertionError("UDH values have no chain to validate")

    assert bind(udh.name, CertType.UDH, udh.encoding, NOW, never).public_value == \
        udh.dh_key.public_value
    for name in (_name("10.1.0.1"), SkipName(8, bytes(16))):
        with pytest.raises(CertificateError) as err:
            bind(name, CertType.UDH, udh.encoding, NOW, never)
        assert err.value.reason == "cert_name_mismatch"
