"""Certificate lookup through the DNS, sans-I/O: CERT queries and the DNSKEY/DS queries a local
DNSSEC validation needs, their timers, and the trust outcome (next-wave.md part 2, DNS-n).

- **DNS-10** one UDP query at a time per lookup, EDNS0 with the DO bit and a 1232-byte buffer,
  CD set (we validate ourselves, RFC 6840 s. 5.9). A truncated answer (``dns_truncated``:
  two certificates and their RRSIG exceed 1232 bytes) is asked again over TCP (RFC 7766): the
  caller sends what :meth:`DnsRequester.tcp_to_send` gives, framed, and hands the response to
  :meth:`~DnsRequester.receive_datagram` like any other.
- **DNS-11** every CERT RR of type 1 (PKIX) of the validated RRset is handed on; binding to the
  SKIP name and certificate validation are the caller's (the same rule as CDP-24).
- **DNS-12** an answer says how long it may be kept: min(RRset TTL, RRSIG expiration, the
  configured maximum); a proven absence or a bogus answer is remembered for at most
  ``negative_seconds`` and only for this name (DNS-25: no fallback to an unsigned answer).
- **DNS-13** 1 s then 2 s per server, then the next; one overall ``deadline``; a global
  token bucket so spoofed packets cannot make this host a query generator.
- **DNS-14** ``now`` is a parameter everywhere.
- The DNSKEY and DS answers are kept for their TTL (at most an hour, 1,024 of them) and
  reused by the next lookup under the same zones: a site's thousandth peer costs one CERT
  query, not three. They are kept as evidence, not as verdicts: every lookup validates the
  whole chain again at its own ``now``, and a bogus outcome drops what it relied on, so a
  forged DNSKEY answer cannot stick.
- **DNS-20..26** the chain is gathered by asking DNSKEY at the anchor and DS (then DNSKEY) at
  every name between it and the zone that signed the answer; :func:`dnssec.validate` decides.
  With no anchor for a name there is no DNSSEC: the answer is ``unvalidated``, usable only
  through a CA chain, and refused when the policy requires DNSSEC.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
from dns.rdtypes.ANY.CERT import CERT

from skip.discovery.dnssec import (
    DEFAULT_POLICY,
    AlgorithmPolicy,
    Evidence,
    Outcome,
    TrustAnchor,
    validate,
)
from skip.wire.cdp import CertType
from skip.wire.names import SkipName

DNS_PORT = 53
EDNS_PAYLOAD = 1232  # DNS flag day 2020; RFC 9715
PKIX = 1  # RFC 4398 s. 2.1
TRIES = (1.0, 2.0)  # seconds to wait for each try at one server (DNS-13)
CHAIN_ENTRIES = 1024
CHAIN_SECONDS = 3600.0

Server = tuple[str, int]


@dataclass(frozen=True)
class DnsAnswer:
    """How one lookup ended.

    ``status``: ``found`` (``certificates`` to bind and validate), ``not_found`` (a proven or
    unvalidated absence), or the reason it failed: ``dns_bogus``, ``dns_insecure`` (refused by
    a policy that requires DNSSEC), ``dns_timeout``, ``dns_malformed``. ``outcome`` is the
    DNSSEC verdict (``unvalidated`` without an anchor); ``keep`` how many seconds the answer
    may be relied on (DNS-12).
    """

    name: SkipName
    owner: dns.name.Name
    status: str
    outcome: str
    certificates: tuple[tuple[int, bytes], ...] = ()
    keep: float = 0.0
    detail: str = ""
    server: Server | None = None


@dataclass
class _Lookup:
    name: SkipName
    owner: dns.name.Name
    servers: list[Server]
    deadline: float
    anchor: TrustAnchor | None
    evidence: Evidence = field(default_factory=Evidence)
    todo: list[tuple[dns.name.Name, dns.rdatatype.RdataType]] = field(default_factory=list)
    asked: set[tuple[dns.name.Name, dns.rdatatype.RdataType]] = field(default_factory=set)
    query: dns.message.Message | None = None
    server: int = 0
    attempt: int = 0
    timer: float = 0.0
    tcp: bool = False


class DnsRequester:
    """CERT lookups for SKIP names, each ending in one :class:`DnsAnswer` event."""

    def __init__(self, anchors: Sequence[TrustAnchor] = (), *, require_dnssec: bool = False,
                 policy: AlgorithmPolicy = DEFAULT_POLICY, deadline: float = 5.0,
                 max_keep: float = 86_400.0, negative_seconds: float = 60.0,
                 rate: float = 20.0, burst: float = 50.0,
                 rng: Callable[[int], bytes] = os.urandom) -> None:
        self.anchors = list(anchors)
        self.require_dnssec = require_dnssec
        self.policy = policy
        self.deadline = deadline
        self.max_keep = max_keep
        self.negative_seconds = negative_seconds
        self.rate, self.burst = rate, burst
        self.rng = rng
        self.counters: Counter[str] = Counter()
        self._lookups: dict[SkipName, _Lookup] = {}
        self._negative: dict[SkipName, float] = {}  # name -> until (bogus or proven absent)
        self._tokens, self._filled = burst, 0.0
        #: (name, DNSKEY or DS) -> (the evidence that answer gave, until when it may be reused)
        self._chain: dict[tuple[dns.name.Name, int], tuple[Evidence, float]] = {}
        self._out: list[tuple[bytes, Server]] = []
        self._tcp: list[tuple[bytes, Server]] = []
        self._events: list[DnsAnswer] = []

    # --- starting --------------------------------------------------------------------------

    def lookup(self, name: SkipName, owner: dns.name.Name, servers: Sequence[Server],
               now: float) -> bool:
        """Start looking ``name`` up at ``owner``; False if it cannot be (no server, recently
        bogus or absent, or over the rate limit). A lookup already running is left alone."""
        if name in self._lookups:
            return True
        if not servers:
            return False
        if self._negative.get(name, 0.0) > now:
            self.counters["dns_negative_cached"] += 1
            return False
        if not self._take_token(now):
            self.counters["dns_rate_limited"] += 1
            return False
        anchor = self._anchor_for(owner)
        look = _Lookup(name, owner, list(servers), now + self.deadline, anchor)
        look.todo.append((owner, dns.rdatatype.CERT))
        self._lookups[name] = look
        self.counters["dns_lookups"] += 1
        self._ask(look, now)
        return True

    def looking_up(self, name: SkipName) -> bool:
        return name in self._lookups

    def _anchor_for(self, owner: dns.name.Name) -> TrustAnchor | None:
        """The deepest configured anchor above ``owner``."""
        best = None
        for anchor in self.anchors:
            if owner.is_subdomain(anchor.zone) and (best is None
                                                    or len(anchor.zone) > len(best.zone)):
                best = anchor
        return best

    def _take_token(self, now: float) -> bool:
        # a clock that steps back refills nothing (and takes nothing back)
        self._tokens = min(self.burst, self._tokens + max(0.0, now - self._filled) * self.rate)
        self._filled = max(self._filled, now)
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    # --- the wire --------------------------------------------------------------------------

    def _ask(self, look: _Lookup, now: float) -> None:
        while look.todo and (look.todo[0] in look.asked or self._from_chain(look, now)):
            look.todo.pop(0)
        if not look.todo:
            self._finish(look, now)
            return
        qname, qtype = look.todo[0]
        query = dns.message.make_query(qname, qtype, want_dnssec=True, use_edns=0,
                                       payload=EDNS_PAYLOAD)
        query.id = int.from_bytes(self.rng(2), "big")
        query.flags |= dns.flags.CD
        look.query, look.attempt, look.server, look.tcp = query, 0, 0, False
        self._send(look, now)

    def _send(self, look: _Lookup, now: float) -> None:
        assert look.query is not None
        look.timer = min(now + TRIES[look.attempt], look.deadline)
        wire = look.query.to_wire()
        (self._tcp if look.tcp else self._out).append((wire, look.servers[look.server]))
        self.counters["dns_tcp_queries" if look.tcp else "dns_queries"] += 1

    def datagrams_to_send(self) -> list[tuple[bytes, Server]]:
        out, self._out = self._out, []
        return out

    def tcp_to_send(self) -> list[tuple[bytes, Server]]:
        """Queries to send over TCP (each a DNS message, to be framed with its length)."""
        out, self._tcp = self._tcp, []
        return out

    def receive_datagram(self, data: bytes, source: Server, now: float) -> None:
        """A datagram on the client socket: the answer to one in-flight query, or dropped."""
        try:
            response = dns.message.from_wire(data)
        except dns.exception.DNSException:
            self.counters["dns_malformed"] += 1
            return
        for look in self._lookups.values():
            if (look.query is not None and look.query.is_response(response)
                    and source[0] == look.servers[look.server][0]):
                self._answered(look, response, now)
                return
        self.counters["dns_unmatched"] += 1

    def _answered(self, look: _Lookup, response: dns.message.Message, now: float) -> None:
        if response.flags & dns.flags.TC:
            self.counters["dns_truncated"] += 1
            if look.tcp:  # a server that truncates over TCP is broken
                self._next_server(look, now)
            else:
                look.tcp, look.attempt = True, 0
                self._send(look, now)
            return
        if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            self.counters[f"dns_rcode_{dns.rcode.to_text(response.rcode()).lower()}"] += 1
            self._next_server(look, now)
            return
        qname, qtype = look.todo.pop(0)
        look.asked.add((qname, qtype))
        evidence = Evidence.from_message(response)
        look.evidence.extend(evidence)
        if qtype == dns.rdatatype.CERT:
            self._plan_chain(look, response)
        else:
            self._keep_chain(qname, qtype, evidence, now)
            self._after_chain_answer(look, qname, qtype, evidence, at=0)
        self._ask(look, now)

    def _after_chain_answer(self, look: _Lookup, qname: dns.name.Name, qtype: int,
                            evidence: Evidence, *, at: int) -> None:
        """A DS RRset makes ``qname`` a signed child zone: its DNSKEY is asked next."""
        if qtype == dns.rdatatype.DS and any(evidence.find(qname, dns.rdatatype.DS)):
            look.todo.insert(at, (qname, dns.rdatatype.DNSKEY))

    def _from_chain(self, look: _Lookup, now: float) -> bool:
        """Take the next DNSKEY or DS answer from what an earlier lookup was given."""
        key = look.todo[0]
        kept = self._chain.get(key)
        if kept is None or kept[1] <= now:
            return False
        look.asked.add(key)
        look.evidence.extend(Evidence(list(kept[0].pairs)))
        self._after_chain_answer(look, key[0], key[1], kept[0], at=1)  # key is still todo[0]
        self.counters["dns_chain_reused"] += 1
        return True

    def _keep_chain(self, qname: dns.name.Name, qtype: int, evidence: Evidence,
                    now: float) -> None:
        ttls = [rrset.ttl for rrset, _ in evidence.pairs]
        if not ttls:
            return
        if len(self._chain) >= CHAIN_ENTRIES:
            self._chain.pop(min(self._chain, key=lambda k: self._chain[k][1]))
        self._chain[(qname, qtype)] = (evidence, now + min([*ttls, CHAIN_SECONDS]))

    def _plan_chain(self, look: _Lookup, response: dns.message.Message) -> None:
        """After the CERT answer: DNSKEY at the anchor, DS at each name below it down to the
        zone that signed the answer (or, unsigned, down to the owner itself: the proof of an
        unsigned delegation sits at some cut between)."""
        if look.anchor is None:
            return
        bottom = look.owner
        for rrset in (*response.answer, *response.authority):
            if rrset.rdtype == dns.rdatatype.RRSIG and len(rrset):
                signer = rrset[0].signer
                if look.owner.is_subdomain(signer) and signer.is_subdomain(look.anchor.zone):
                    bottom = signer
                    break
        look.todo.append((look.anchor.zone, dns.rdatatype.DNSKEY))
        for depth in range(len(look.anchor.zone) + 1, len(bottom) + 1):
            look.todo.append((bottom.split(depth)[1], dns.rdatatype.DS))

    def _next_server(self, look: _Lookup, now: float) -> None:
        look.attempt, look.tcp = 0, False
        look.server += 1
        if look.server >= len(look.servers):
            self._end(look, DnsAnswer(look.name, look.owner, "dns_timeout", "", detail=(
                "no server gave a usable answer")), now)
            return
        self._send(look, now)

    # --- time ------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        return min((look.timer for look in self._lookups.values()), default=None)

    def handle_timer(self, now: float) -> None:
        for look in list(self._lookups.values()):
            if now < look.timer:
                continue
            if now >= look.deadline:
                self._end(look, DnsAnswer(look.name, look.owner, "dns_timeout", "", detail=(
                    f"no answer within {self.deadline:g} s")), now)
            elif look.attempt + 1 < len(TRIES):
                look.attempt += 1
                self._send(look, now)
            else:
                self._next_server(look, now)

    # --- the outcome -----------------------------------------------------------------------

    def _finish(self, look: _Lookup, now: float) -> None:
        server = look.servers[look.server]
        certs = tuple((int(CertType.X509), rd.certificate)
                      for rrset, _sigs in look.evidence.find(look.owner, dns.rdatatype.CERT)
                      for rd in rrset if isinstance(rd, CERT) and rd.certificate_type == PKIX)
        if look.anchor is None:
            if self.require_dnssec:
                answer = DnsAnswer(look.name, look.owner, "dns_insecure", "unvalidated",
                                   detail="no trust anchor above the owner name", server=server)
            else:
                answer = DnsAnswer(look.name, look.owner, "found" if certs else "not_found",
                                   "unvalidated", certs, self._keep(look, now), server=server)
            self._end(look, answer, now)
            return
        verdict = validate(look.anchor, look.evidence, look.owner, dns.rdatatype.CERT, now,
                           self.policy)
        if verdict.outcome == Outcome.SECURE:
            keep = min(float(verdict.ttl or 0), (verdict.expires or now) - now, self.max_keep)
            if verdict.denied:
                answer = DnsAnswer(look.name, look.owner, "not_found", "secure",
                                   keep=min(keep, self.negative_seconds), server=server,
                                   detail=verdict.detail)
            else:
                assert verdict.answer is not None
                secure = tuple((int(CertType.X509), rd.certificate) for rd in verdict.answer
                               if isinstance(rd, CERT) and rd.certificate_type == PKIX)
                answer = DnsAnswer(look.name, look.owner, "found" if secure else "not_found",
                                   "secure", secure, keep, verdict.detail, server)
        elif verdict.outcome == Outcome.INSECURE and not self.require_dnssec:
            answer = DnsAnswer(look.name, look.owner, "found" if certs else "not_found",
                               "insecure", certs, self._keep(look, now), verdict.detail, server)
        else:
            status = "dns_insecure" if verdict.outcome == Outcome.INSECURE else "dns_bogus"
            if verdict.outcome == Outcome.BOGUS:
                for key in look.asked:  # what it relied on may be what was forged
                    self._chain.pop(key, None)
            answer = DnsAnswer(look.name, look.owner, status, str(verdict.outcome),
                               keep=self.negative_seconds, detail=verdict.detail, server=server)
        self._end(look, answer, now)

    def _keep(self, look: _Lookup, now: float) -> float:
        ttls = [rrset.ttl for rrset, _ in look.evidence.find(look.owner, dns.rdatatype.CERT)]
        return float(min([*ttls, self.max_keep]))

    def _end(self, look: _Lookup, answer: DnsAnswer, now: float) -> None:
        del self._lookups[look.name]
        if answer.status != "found":
            self.counters[answer.status] += 1
            if answer.status in ("dns_bogus", "not_found", "dns_insecure") and answer.keep:
                self._negative[answer.name] = now + min(answer.keep, self.negative_seconds)
        else:
            self.counters[f"dns_found_{answer.outcome}"] += 1
        self._events.append(answer)

    def events(self) -> list[DnsAnswer]:
        out, self._events = self._events, []
        return out

    def in_flight(self) -> list[dict[str, object]]:
        return [{"name": str(look.name), "owner": str(look.owner), "source": "dns",
                 "asking": f"{look.todo[0][0]} {dns.rdatatype.to_text(look.todo[0][1])}"
                 if look.todo else "", "server": look.servers[look.server][0]}
                for look in self._lookups.values()]
