"""The Certificate Discovery Protocol (draft-ietf-ipsec-cdp-01), sans-I/O: a responder that
answers GETs without becoming an amplifier, and a requester that asks for one SKIP name at a
time with retransmission, cookie handling and strict answer matching.

Requirements are next-wave.md part 1 (CDP-n); what goes beyond the draft:

- **Stateless cookies** (CDP-M1): the responder cookie is the first 4 bytes of
  HMAC-SHA-256(secret, the four addresses and ports), the secret rotated every 120 s with the
  previous one still accepted; nothing is remembered about a requester before it returns one.
- **Anti-amplification** (CDP-M2): to an address that has not returned a valid cookie the
  responder sends at most 3x the bytes it received; a GET is ~23 bytes and a certificate 0.4-1 KB,
  so a first GET gets COOKIE_REQUIRED (12 bytes) and the retry with the cookie gets the
  certificate: one round trip more, and a spoofed source gets nothing larger than its request.
- **Rate limits** per source and in all (CDP-M6), on both sides.
- **Requester cookies are 32 random bits** and answers must come from the address and port the
  request went to with that cookie (CDP-M3, CDP-23); anything else is dropped and counted.
- **Negative answers are hints** (CDP-M4): GET FAILED moves on to the next server and at the
  end reports ``not_found``, which only suppresses asking CDP again for ``negative_ttl``.

Certificates are not validated here: :mod:`skip.discovery.binding` does the name binding and
the driver's validator the chain (CDP-24).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from skip.errors import ParseError
from skip.keying.ratelimit import PerSource, TokenBucket
from skip.wire.cdp import (
    CDP_VERSION,
    HEADER,
    MAX_DATAGRAM,
    Action,
    CdpMessage,
    CdpRecord,
    CertType,
    NameType,
    RecordAction,
)
from skip.wire.names import SkipName

Rng = Callable[[int], bytes]
Address = tuple[str, int]  # (IP address text, UDP port), as sockets give them
#: what a responder may hand out for a name: (CERT-Type, certificate bytes) pairs
Lookup = Callable[[SkipName], Sequence[tuple[int, bytes]]]

AMPLIFICATION = 3  # bytes out per byte in, to an unproven address (RFC 9000 s. 8.1)
SECRET_SECONDS = 120.0


def _packed(address: Address) -> bytes:
    return ipaddress.ip_address(address[0]).packed + address[1].to_bytes(2, "big")


class Cookies:
    """Stateless responder cookies (CDP-M1): a function of the addresses and a secret."""

    def __init__(self, rng: Rng, lifetime: float = SECRET_SECONDS) -> None:
        self.rng = rng
        self.lifetime = lifetime
        self._epoch = -1
        self._secrets: tuple[bytes, bytes] = (b"", b"")  # (current, previous)

    def _rotate(self, now: float) -> None:
        epoch = int(now // self.lifetime)
        if epoch == self._epoch:
            return
        current = self.rng(32)
        previous = self._secrets[0] if epoch == self._epoch + 1 else b""
        self._secrets, self._epoch = (current, previous), epoch

    def _of(self, secret: bytes, src: Address, dst: Address) -> int:
        mac = hmac.new(secret, _packed(src) + _packed(dst) + bytes((CDP_VERSION,)),
                       hashlib.sha256).digest()
        return int.from_bytes(mac[:4], "big") or 1  # 0 means "no cookie"

    def make(self, src: Address, dst: Address, now: float) -> int:
        self._rotate(now)
        return self._of(self._secrets[0], src, dst)

    def check(self, cookie: int, src: Address, dst: Address, now: float) -> bool:
        self._rotate(now)
        return cookie != 0 and any(
            secret and hmac.compare_digest(self._of(secret, src, dst).to_bytes(4, "big"),
                                           cookie.to_bytes(4, "big"))
            for secret in self._secrets)


class CdpResponder:
    """Answers CDP requests from ``lookup`` (the names this node will hand out).

    PUT is refused record by record (PUT FAILED, CDP-13): a node accepts certificates only
    from its own configuration and its own lookups, never pushed by whoever sends one.
    ``max_answer`` caps an answer below IP fragmentation (CDP-M9; the draft's cap is 64 KB).
    ``always_cookie``: demand a cookie even for answers that would fit the 3x budget.
    """

    def __init__(self, lookup: Lookup, *, rng: Rng, max_answer: int = 8192,
                 always_cookie: bool = False, per_source: float = 5.0, burst: int = 10,
                 total: float = 200.0, sources: int = 4096) -> None:
        self.lookup = lookup
        self.cookies = Cookies(rng)
        self.max_answer = min(max_answer, MAX_DATAGRAM)
        self.always_cookie = always_cookie
        self.limits = PerSource(per_source, burst, sources, None)
        # answers to unproven addresses in all; past it, only COOKIE_REQUIRED. That one is
        # not limited in all, on purpose: it is never larger than the request (no
        # amplification) and each address gets at most ``burst`` + ``per_source``/s of them,
        # so it reflects nothing an attacker could not send itself; and a global cap would
        # let a flood of spoofed GETs take every cookie, so that the requester that would
        # prove itself never got one (docs/protocol/decisions.md, "CDP under a flood")
        self.work = TokenBucket(total, max(1, int(total)))
        self.counters: Counter[str] = Counter()

    def handle(self, data: bytes, src: Address, dst: Address, now: float) -> bytes | None:
        """The answer to send back to ``src`` (from ``dst``), or None to stay silent."""
        try:
            request = CdpMessage.parse(data)
        except ParseError as exc:
            self.counters[exc.reason if exc.reason.startswith("cdp_") else "cdp_malformed"] += 1
            return None
        if not request.is_request:
            self.counters["cdp_unsolicited"] += 1
            return None
        if not self.limits.allow(src[0], now):
            self.counters["rate_limited"] += 1
            return None
        proven = self.cookies.check(request.responder_cookie, src, dst, now)
        if not proven and (self.always_cookie or not self.work.take(now)):
            return self._cookie_required(request, src, dst, now)
        records = self._answer(request)
        budget = self.max_answer if proven else min(self.max_answer, AMPLIFICATION * len(data))
        answer = self._fit(request, records, budget)
        if answer is None:
            return self._cookie_required(request, src, dst, now)
        self.counters["cdp_answered"] += 1
        return answer

    def _answer(self, request: CdpMessage) -> list[CdpRecord]:
        """At least one record per request record, with its Name Type and Name (CDP-10, 11),
        an error on one record not stopping the others (CDP-12)."""
        out: list[CdpRecord] = []
        for rec in request.records:
            if rec.action == RecordAction.PUT:
                out.append(CdpRecord(RecordAction.PUT_FAILED, rec.name_type, rec.name))
                continue
            found: Sequence[tuple[int, bytes]] = ()
            if rec.name_type == NameType.SKIP and len(rec.name) >= 1:
                found = self.lookup(SkipName(rec.name[0], rec.name[1:]))
            if not found:
                out.append(CdpRecord(RecordAction.GET_FAILED, rec.name_type, rec.name))
            for cert_type, cert in found:
                out.append(CdpRecord(RecordAction.GET_SUCCEEDED, rec.name_type, rec.name,
                                     cert_type, cert))
        return out

    def _fit(self, request: CdpMessage, records: list[CdpRecord], budget: int) -> bytes | None:
        """The response if it fits ``budget``; else REQUEST_TOO_LARGE with what fits (CDP-15)
        when the budget is the size cap, None (ask for a cookie) when it is the 3x limit."""
        size = HEADER.size + sum(r.size for r in records)
        if size <= budget and len(records) <= 255:
            return CdpMessage(Action.RESPONSE, request.requester_cookie,
                              request.responder_cookie, tuple(records)).encode()
        if budget < self.max_answer:
            return None  # over the amplification budget: the requester must prove its address
        kept: list[CdpRecord] = []
        used = HEADER.size
        for rec in records:
            if used + rec.size > budget or len(kept) == 255:
                break
            kept.append(rec)
            used += rec.size
        self.counters["cdp_too_large"] += 1
        return CdpMessage(Action.REQUEST_TOO_LARGE, request.requester_cookie,
                          request.responder_cookie, tuple(kept)).encode()

    def _cookie_required(self, request: CdpMessage, src: Address, dst: Address,
                         now: float) -> bytes:
        """12 bytes, no records (next-wave.md 1.10.4): never more than the request."""
        self.counters["cdp_cookie_sent"] += 1
        return CdpMessage(Action.COOKIE_REQUIRED, request.requester_cookie,
                          self.cookies.make(src, dst, now)).encode()


@dataclass(frozen=True, slots=True)
class CdpAnswer:
    """The outcome of one lookup: ``found`` (certificates, not yet validated), ``not_found``
    (every server said GET FAILED: a hint, CDP-M4) or ``timeout``."""

    name: SkipName
    status: str
    certificates: tuple[tuple[int, bytes], ...] = ()
    server: Address | None = None


@dataclass(slots=True)
class _Lookup:
    name: SkipName
    servers: list[Address]  # still to try after the current one
    server: Address
    cookie: int
    responder_cookie: int
    sent: int  # transmissions to the current server
    due: float  # when to retransmit (or move on)
    give_up: float
    wire: bytes = b""


class CdpRequester:
    """Looks SKIP names up, one GET per name in flight, server after server.

    Timing (CDP-22): a retransmission after ``timeout``, doubling, ``tries`` transmissions per
    server, the whole lookup given up after ``deadline`` (the keying engine drops the packets
    that wait for the certificate after 5 s anyway). A COOKIE_REQUIRED answer is retried at
    once with the cookie, at most twice per server (CDP-20); a forged one can therefore cost
    at most two extra datagrams.
    """

    def __init__(self, *, rng: Rng, timeout: float = 1.0, tries: int = 3,
                 deadline: float = 5.0, max_in_flight: int = 64, negative_ttl: float = 30.0,
                 per_server: float = 5.0, total: float = 100.0) -> None:
        self.rng = rng
        self.timeout, self.tries, self.deadline = timeout, tries, deadline
        self.max_in_flight = max_in_flight
        self.negative_ttl = negative_ttl
        self.limits = PerSource(per_server, max(1, int(per_server)), 1024, total)
        self.counters: Counter[str] = Counter()
        self._lookups: dict[SkipName, _Lookup] = {}
        self._by_key: dict[tuple[Address, int], _Lookup] = {}
        self._negative: OrderedDict[SkipName, float] = OrderedDict()
        self._outbox: list[tuple[bytes, Address]] = []
        self._events: list[CdpAnswer] = []
        self._cookie_retries: Counter[tuple[SkipName, Address]] = Counter()

    # --- starting ------------------------------------------------------------------------

    def lookup(self, name: SkipName, servers: Sequence[Address], now: float) -> bool:
        """Ask ``servers`` in order for ``name``'s certificate. False when nothing was started:
        already in flight, recently not found, too many in flight, or no server."""
        if name in self._lookups:
            return False
        until = self._negative.get(name)
        if until is not None:
            if now < until:
                self.counters["cdp_negative_cached"] += 1
                return False
            del self._negative[name]
        if len(self._lookups) >= self.max_in_flight:
            self.counters["cdp_busy"] += 1
            return False
        if not servers:
            return False
        first, *rest = servers
        entry = _Lookup(name, list(rest), first, 0, 0, 0, now, now + self.deadline)
        self._lookups[name] = entry
        self._send(entry, now)
        return True

    def _send(self, entry: _Lookup, now: float, *, fresh_cookie: bool = True) -> None:
        if not self.limits.allow(entry.server, now):
            self.counters["rate_limited"] += 1
            entry.due = now + self.timeout  # try again later, counted as a transmission
            entry.sent += 1
            return
        if fresh_cookie or not entry.cookie:
            self._by_key.pop((entry.server, entry.cookie), None)
            entry.cookie = int.from_bytes(self.rng(4), "big")
            self._by_key[(entry.server, entry.cookie)] = entry
        record = CdpRecord(RecordAction.GET, NameType.SKIP, entry.name.encode())
        entry.wire = CdpMessage(Action.REQUEST, entry.cookie, entry.responder_cookie,
                                (record,)).encode()
        self._outbox.append((entry.wire, entry.server))
        entry.due = now + self.timeout * (2 ** entry.sent)
        entry.sent += 1
        self.counters["cdp_sent"] += 1

    # --- I/O -----------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        out, self._outbox = self._outbox, []
        return out

    def receive_datagram(self, data: bytes, src: Address, now: float) -> None:
        try:
            answer = CdpMessage.parse(data)
        except ParseError as exc:
            self.counters[exc.reason if exc.reason.startswith("cdp_") else "cdp_malformed"] += 1
            return
        entry = self._by_key.get((src, answer.requester_cookie))
        if entry is None or answer.is_request:
            self.counters["cdp_unsolicited"] += 1  # wrong address, port or cookie (CDP-23)
            return
        if answer.action == Action.COOKIE_REQUIRED:
            tried = self._cookie_retries[(entry.name, entry.server)]
            if tried >= 2 or answer.responder_cookie == 0:
                self.counters["cdp_cookie_refused"] += 1
                return
            self._cookie_retries[(entry.name, entry.server)] = tried + 1
            entry.responder_cookie = answer.responder_cookie
            entry.sent = 0  # a new exchange with the cookie
            self._send(entry, now, fresh_cookie=False)
            return
        ours = entry.name.encode()
        found = tuple((r.cert_type, r.certificate) for r in answer.records
                      if r.action == RecordAction.GET_SUCCEEDED and r.name_type == NameType.SKIP
                      and r.name == ours and r.cert_type != CertType.NONE)
        if found:
            self._finish(entry, CdpAnswer(entry.name, "found", found, entry.server))
            return
        self.counters["cdp_get_failed"] += 1  # a hint (CDP-M4): try the next server
        self._next_server(entry, now)

    # --- time ------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        return min((min(e.due, e.give_up) for e in self._lookups.values()), default=None)

    def handle_timer(self, now: float) -> None:
        for entry in list(self._lookups.values()):
            if now >= entry.give_up:
                self.counters["cdp_timeout"] += 1
                self._finish(entry, CdpAnswer(entry.name, "timeout"))
            elif now >= entry.due:
                if entry.sent < self.tries:
                    self.counters["cdp_retransmitted"] += 1
                    self._send(entry, now, fresh_cookie=False)
                else:
                    self._next_server(entry, now, timed_out=True)

    def events(self) -> list[CdpAnswer]:
        out, self._events = self._events, []
        return out

    def looking_up(self, name: SkipName) -> bool:
        return name in self._lookups

    def in_flight(self) -> list[dict[str, object]]:
        """For operators (skipctl discovery): what is being looked up, and where."""
        return [{"name": str(e.name), "server": f"{e.server[0]}:{e.server[1]}", "sent": e.sent}
                for e in self._lookups.values()]

    # --- endings -----------------------------------------------------------------------------

    def _next_server(self, entry: _Lookup, now: float, *, timed_out: bool = False) -> None:
        if entry.servers:
            self._by_key.pop((entry.server, entry.cookie), None)
            entry.server = entry.servers.pop(0)
            entry.cookie = entry.responder_cookie = entry.sent = 0
            self._send(entry, now)
            return
        if timed_out:
            self.counters["cdp_timeout"] += 1
            self._finish(entry, CdpAnswer(entry.name, "timeout"))
        else:
            self._negative[entry.name] = now + self.negative_ttl
            while len(self._negative) > 4 * self.max_in_flight:
                self._negative.popitem(last=False)
            self._finish(entry, CdpAnswer(entry.name, "not_found"))

    def _finish(self, entry: _Lookup, answer: CdpAnswer) -> None:
        self._lookups.pop(entry.name, None)
        self._by_key.pop((entry.server, entry.cookie), None)
        for key in [k for k in self._cookie_retries if k[0] == entry.name]:
            del self._cookie_retries[key]
        self._events.append(answer)
